"""SynthTrack: a synthetic multi-person video benchmark written in the PoseTrack18 layout.

SynthTrack is the project's embedded default data set. :func:`generate_synthtrack` writes, under
``OUT``::

    images/<split>/<video>/<frame:06d>.jpg      frames
    annotations/<split>/<video>.json            PoseTrack18 per-video annotations
    videos/<split>/<video>.mp4                  the same frames as a video
    detections/<split>.json                     noisy person detections (COCO result list)
    synthtrack_flags/<split>/<video>.json       per-joint degradation flags of the generator
    synthtrack_meta.json                        generation parameters and statistics per split

Each video shows 2-4 articulated people (the 17 PoseTrack joints) that walk, wave, jump and turn,
filmed by a panning, zooming, shaking camera in front of a cluttered background with small
unlabelled crowds (PoseTrack ignore regions). Occluders pass in front, fast limbs are motion
blurred (shutter sub-samples), and brief defocus/noise bursts hit single frames, so that a joint
that is hard to see in one frame is often clear in a neighbouring one. The generator records, for
every joint, whether it is degraded (motion blur above a threshold, near an occluder, on a burst
frame) and reports the fraction of labelled joints that are degraded but clearly visible within
two frames (``recoverable``): the cases where temporal information should help.

Randomness comes from streams derived from ``(seed, split, video index, purpose)``, so a video is
reproduced byte for byte from the same arguments, and splits never share videos.

Shape symbols: T frames, M shutter sub-samples per frame (:data:`SUBSAMPLES`), P people, K joints
(17), R render points (K joints then the extra points of :mod:`famipose.data.synth_render`),
G fine time-grid steps, V polygon vertices.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from famipose.data.keypoints import NUM_JOINTS, POSETRACK_JOINTS, SKELETON, UNANNOTATED_JOINTS
from famipose.data.synth_render import (
    EXTRA_POINTS,
    PersonStyle,
    background,
    composite_motion,
    draw_crowd,
    draw_occluder,
    draw_person,
    head_box,
    random_style,
)
from famipose.geometry import box_iou
from famipose.video_writer import VideoWriter

Difficulty = Literal["easy", "hard"]

SUBSAMPLES = 9
"""Shutter sub-samples per frame (odd, so the middle one is the frame's own time)."""
_KEY = SUBSAMPLES // 2
_GRID_STEP = 1.0 / 8.0  # frames between fine time-grid samples
_GRID_START = -1.0
_CROSSFADE = 8.0  # frames over which one action blends into the next
_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
_MAX_VIDEOS = 100_000
_MAX_FRAMES = 10_000
_OCCLUDER_LABEL = 255
_NEIGHBOURS = (-2, -1, 1, 2)
_LABELLED_JOINTS = np.array([k not in UNANNOTATED_JOINTS for k in range(NUM_JOINTS)])


# ---------------------------------------------------------------------------------------------
# Configuration and statistics
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthConfig:
    """Generation knobs. Spatial values are fractions of the frame so statistics do not depend on size.

    Attributes:
        name: preset name written to the metadata.
        people: (min, max) foreground people per video.
        tempo: speed multiplier of every action (walk cadence, waving, jumping, turning).
        shutter: exposure as a fraction of the frame interval (longer = more motion blur).
        pan: largest camera pan speed, fraction of the frame width per frame.
        zoom: amplitude of the slow camera zoom (log-scale).
        shake: standard deviation of the per-frame camera shake, fraction of the shorter side.
        occluders: (min, max) foreground occluders passing in front per video.
        occluder_speed: largest occluder speed, fraction of the frame width per frame.
        burst_rate: defocus/noise bursts (1-2 frames each) starting per frame, on average.
        defocus: Gaussian defocus sigma of a burst, fraction of the shorter side.
        burst_noise: pixel noise standard deviation of a burst (grey levels).
        noise: sensor noise standard deviation on every frame (grey levels).
        clutter: density of background objects.
        crowds: (min, max) small unlabelled background crowds (written as ignore regions).
        detector_miss: probability that the detector misses a fully visible person.
        detector_jitter: detection box noise, fraction of the box size.
        detector_false_positives: mean number of false-positive detections per frame.
        blur_threshold: motion blur (path of a joint while the shutter is open), as a fraction of
            the person's head size (0.6 × head-box diagonal, the PCKh normaliser), above which a
            joint counts as degraded; 0.5 = the PCKh@0.5 tolerance.
        near_occluder: distance to an occluder, fraction of the shorter side, under which a visible
            joint counts as degraded.
        fps: frame rate of the mp4 videos.
        jpeg_quality: JPEG quality of the frames.
    """

    name: str = "easy"
    people: tuple[int, int] = (2, 3)
    tempo: float = 1.0
    shutter: float = 0.5
    pan: float = 0.004
    zoom: float = 0.05
    shake: float = 0.002
    occluders: tuple[int, int] = (0, 1)
    occluder_speed: float = 0.02
    burst_rate: float = 0.02
    defocus: float = 0.012
    burst_noise: float = 25.0
    noise: float = 2.0
    clutter: float = 0.6
    crowds: tuple[int, int] = (0, 1)
    detector_miss: float = 0.03
    detector_jitter: float = 0.05
    detector_false_positives: float = 0.1
    blur_threshold: float = 0.5
    near_occluder: float = 0.04
    fps: int = 25
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        """Reject knob values the generator cannot honour (ValueError naming the knob)."""
        for name in ("people", "occluders", "crowds"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be (min, max) with 0 <= min <= max; got {(low, high)}")
        if self.people[1] >= _OCCLUDER_LABEL:
            raise ValueError(f"people must be at most {_OCCLUDER_LABEL - 1} per video; got {self.people[1]}")
        negative = [
            f.name for f in fields(self) if isinstance(getattr(self, f.name), float) and getattr(self, f.name) < 0
        ]
        if negative:
            raise ValueError(f"knobs must be >= 0: {', '.join(negative)}")
        if not 0 < self.shutter <= 1:
            raise ValueError(f"shutter must be in (0, 1] (a fraction of the frame interval); got {self.shutter}")
        if self.fps < 1 or not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"fps must be >= 1 and jpeg_quality in 1..100; got {self.fps}, {self.jpeg_quality}")

    @classmethod
    def preset(cls, difficulty: str) -> SynthConfig:
        """The knobs of a difficulty preset.

        Args:
            difficulty: ``easy`` or ``hard``.

        Returns:
            The preset configuration.

        Raises:
            ValueError: for an unknown difficulty (the message lists the valid ones).
        """
        if difficulty not in _PRESETS:
            raise ValueError(f"unknown difficulty {difficulty!r}; valid values: {', '.join(_PRESETS)}")
        return _PRESETS[difficulty]


_PRESETS: dict[str, SynthConfig] = {
    "easy": SynthConfig(),
    "hard": SynthConfig(
        name="hard",
        people=(2, 4),
        tempo=1.9,
        shutter=1.0,
        pan=0.012,
        zoom=0.15,
        shake=0.012,
        occluders=(2, 4),
        occluder_speed=0.05,
        burst_rate=0.18,
        defocus=0.025,
        burst_noise=45.0,
        noise=5.0,
        clutter=1.5,
        crowds=(1, 2),
        detector_miss=0.1,
        detector_jitter=0.12,
        detector_false_positives=0.4,
    ),
}


@dataclass(frozen=True)
class SynthStats:
    """Counts of one generated split and its degradation statistics.

    Joint counts are over labelled joints (visible joints on labelled frames, ears excluded).
    A joint is *degraded* when motion blur exceeds the threshold, it lies near an occluder, or its
    frame is a defocus/noise burst; it is *recoverable* when it is degraded but the same joint is
    visible and not degraded in at least one of the frames t±1, t±2.

    Attributes:
        split: split name.
        difficulty: preset name.
        videos: number of videos.
        frames: number of frames over all videos.
        labeled_frames: frames with ``is_labeled``.
        tracks: people over all videos.
        annotations: person annotations written.
        labeled_joints: labelled joints.
        degraded_joints: labelled joints that are degraded.
        recoverable_joints: degraded labelled joints that are clear in a neighbouring frame.
        blurred_joints: labelled joints with motion blur above the threshold.
        occluder_joints: labelled joints near an occluder.
        burst_joints: labelled joints on burst frames.
        detections: detections written (false positives included).
    """

    split: str
    difficulty: str
    videos: int
    frames: int
    labeled_frames: int
    tracks: int
    annotations: int
    labeled_joints: int
    degraded_joints: int
    recoverable_joints: int
    blurred_joints: int
    occluder_joints: int
    burst_joints: int
    detections: int

    @property
    def degraded_fraction(self) -> float:
        """Fraction of labelled joints that are degraded."""
        return self.degraded_joints / max(1, self.labeled_joints)

    @property
    def recoverable_fraction(self) -> float:
        """Fraction of labelled joints that are degraded but clear in a frame within ±2."""
        return self.recoverable_joints / max(1, self.labeled_joints)

    def to_dict(self) -> dict[str, Any]:
        """All counts and fractions as a JSON-ready dict."""
        fractions = {
            "degraded_fraction": self.degraded_fraction,
            "recoverable_fraction": self.recoverable_fraction,
            "blurred_fraction": self.blurred_joints / max(1, self.labeled_joints),
            "occluder_fraction": self.occluder_joints / max(1, self.labeled_joints),
            "burst_fraction": self.burst_joints / max(1, self.labeled_joints),
        }
        return {**asdict(self), **{k: round(v, 6) for k, v in fractions.items()}}

    def summary(self) -> str:
        """A few human-readable lines."""
        d = self.to_dict()
        return (
            f"SynthTrack {self.split} ({self.difficulty}): {self.videos} videos, {self.frames} frames "
            f"({self.labeled_frames} labelled), {self.tracks} tracks, {self.annotations} annotations, "
            f"{self.detections} detections\n"
            f"labelled joints {self.labeled_joints}: degraded {d['degraded_fraction']:.1%} "
            f"(blur {d['blurred_fraction']:.1%}, occluder {d['occluder_fraction']:.1%}, "
            f"burst {d['burst_fraction']:.1%}); recoverable from t±1/t±2 {d['recoverable_fraction']:.1%}"
        )


_COUNT_FIELDS = (
    "frames", "labeled_frames", "tracks", "annotations", "labeled_joints", "degraded_joints",
    "recoverable_joints", "blurred_joints", "occluder_joints", "burst_joints", "detections",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Video identity and random streams
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoSpec:
    """Identity of one video: where it belongs and what seeds it.

    Attributes:
        split: ``train``, ``val`` or ``test``.
        index: video index within the split.
        seed: data set seed.
        frames: number of frames.
        width: frame width in pixels.
        height: frame height in pixels.
    """

    split: str
    index: int
    seed: int
    frames: int
    width: int
    height: int

    @property
    def number(self) -> int:
        """PoseTrack-style video number, unique across splits (split code × 100000 + index)."""
        return _SPLIT_CODES[self.split] * _MAX_VIDEOS + self.index

    @property
    def name(self) -> str:
        """Video name, e.g. ``100003_synth_train``."""
        return f"{self.number:06d}_synth_{self.split}"

    def image_id(self, frame: int) -> int:
        """PoseTrack-style image id ``1VVVVVVFFFF`` (video number, frame)."""
        return 10_000_000_000 + self.number * _MAX_FRAMES + frame

    def rng(self, stream: str, *extra: int) -> np.random.Generator:
        """An independent random stream of this video for one purpose (and e.g. a frame index)."""
        key = [self.seed, _SPLIT_CODES[self.split], self.index, zlib.crc32(stream.encode()), *extra]
        return np.random.default_rng(key)


# ---------------------------------------------------------------------------------------------
# People: actions → joint angles → 2D points
# ---------------------------------------------------------------------------------------------

# Angle columns: per side (left block at 0, right block at 7) then the torso lean.
_LEFT, _RIGHT = 0, 7
_SH_SWING, _SH_ABD, _EL_FLEX, _EL_ABD, _HIP_SWING, _HIP_ABD, _KNEE = range(7)
_LEAN = 14
_N_ANGLES = 15
_POINTS = POSETRACK_JOINTS + EXTRA_POINTS
_P = {name: i for i, name in enumerate(_POINTS)}
# Body frame in body heights, pelvis at the origin: x = the person's left, y = up, z = forward.
_UPPER_BODY = {
    "nose": (0.0, 0.405, 0.085),
    "head_bottom": (0.0, 0.34, 0.0),
    "head_top": (0.0, 0.50, 0.0),
    "left_ear": (0.085, 0.42, 0.0),
    "right_ear": (-0.085, 0.42, 0.0),
    "left_shoulder": (0.13, 0.28, 0.0),
    "right_shoulder": (-0.13, 0.28, 0.0),
    "left_eye": (0.03, 0.43, 0.07),
    "right_eye": (-0.03, 0.43, 0.07),
}
_HIP_WIDTH = 0.09
_UPPER_ARM, _FOREARM, _THIGH, _SHIN, _FOOT = 0.16, 0.15, 0.245, 0.245, 0.075


@dataclass(frozen=True)
class _Drive:
    """What one action asks of the body on the fine time grid.

    Attributes:
        angles: (G, 15) joint angles in radians.
        vx: (G,) root speed in body heights per frame (+ = image right).
        lift: (G,) root lift above the ground in body heights.
        yaw: (G,) body rotation about the vertical axis (0 = facing the camera, +π/2 = facing right).
    """

    angles: np.ndarray
    vx: np.ndarray
    lift: np.ndarray
    yaw: np.ndarray


def _rest(g: int) -> np.ndarray:
    """(g, 15) relaxed standing angles."""
    angles = np.zeros((g, _N_ANGLES))
    for side in (_LEFT, _RIGHT):
        angles[:, side + _SH_ABD] = 0.12
        angles[:, side + _EL_FLEX] = 0.2
        angles[:, side + _HIP_ABD] = 0.04
        angles[:, side + _KNEE] = 0.06
    return angles


def _walk(t: np.ndarray, rng: np.random.Generator, tempo: float, heading: int) -> _Drive:
    """Walking (running at high tempo) towards ``heading``, seen in profile or three-quarter view."""
    freq = rng.uniform(0.03, 0.05) * np.sqrt(tempo)
    amp = rng.uniform(0.35, 0.5) * min(np.sqrt(tempo), 1.3)
    phase = 2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)
    s, c = np.sin(phase), np.cos(phase)
    angles = _rest(len(t))
    for side, sign in ((_LEFT, 1.0), (_RIGHT, -1.0)):
        angles[:, side + _HIP_SWING] = sign * amp * s
        angles[:, side + _KNEE] = 0.1 + 1.6 * amp * np.clip(sign * c, 0, None) ** 2
        angles[:, side + _SH_SWING] = -0.8 * sign * amp * s
        angles[:, side + _EL_FLEX] = 0.3 + 0.4 * amp * (1 + sign * s)
    angles[:, _LEAN] = 0.06 * tempo
    vx = np.full(len(t), heading * 2 * _THIGH * 2 * np.sin(amp) * freq)
    return _Drive(angles, vx, np.zeros(len(t)), np.full(len(t), heading * rng.uniform(0.9, 1.5)))


def _wave(t: np.ndarray, rng: np.random.Generator, tempo: float, heading: int) -> _Drive:
    """Standing and waving one raised forearm."""
    side = (_LEFT, _RIGHT)[int(rng.integers(0, 2))]
    phase = 2 * np.pi * rng.uniform(0.08, 0.14) * tempo * t + rng.uniform(0, 2 * np.pi)
    angles = _rest(len(t))
    angles[:, side + _SH_ABD] = rng.uniform(1.9, 2.5)
    angles[:, side + _SH_SWING] = 0.3
    angles[:, side + _EL_FLEX] = 0.0
    angles[:, side + _EL_ABD] = 0.55 + 0.55 * np.sin(phase)
    angles[:, _LEAN] = 0.05 * np.sin(phase / 3)
    zeros = np.zeros(len(t))
    return _Drive(angles, zeros, zeros, np.full(len(t), rng.uniform(-0.7, 0.7)))


def _jump(t: np.ndarray, rng: np.random.Generator, tempo: float, heading: int) -> _Drive:
    """Repeated jumps: crouch, take off with the arms thrown up, land."""
    phase = 2 * np.pi * rng.uniform(0.03, 0.05) * tempo * t + rng.uniform(0, 2 * np.pi)
    air, crouch = np.clip(np.sin(phase), 0, None), np.clip(-np.sin(phase), 0, None)
    angles = _rest(len(t))
    for side in (_LEFT, _RIGHT):
        angles[:, side + _HIP_SWING] = 0.7 * crouch
        angles[:, side + _KNEE] = 0.08 + 1.3 * crouch
        angles[:, side + _SH_SWING] = -0.4 * crouch + 2.4 * air
        angles[:, side + _SH_ABD] = 0.25 + 0.5 * air
    angles[:, _LEAN] = 0.35 * crouch
    lift = rng.uniform(0.12, 0.28) * air
    return _Drive(angles, np.full(len(t), heading * 0.004), lift, np.full(len(t), rng.uniform(-0.6, 0.6)))


def _turn(t: np.ndarray, rng: np.random.Generator, tempo: float, heading: int) -> _Drive:
    """Spinning on the spot with the arms spread: whole turns that start and stop, stepping lightly."""
    u = rng.uniform(0.025, 0.05) * tempo * t + rng.uniform(0, 1)
    yaw = rng.uniform(0, 2 * np.pi) + heading * (2 * np.pi * u - np.sin(2 * np.pi * u))  # speed ∝ 1 - cos
    angles = _rest(len(t))
    step = np.sin(4 * np.pi * u)
    for side, sign in ((_LEFT, 1.0), (_RIGHT, -1.0)):
        angles[:, side + _SH_ABD] = rng.uniform(0.8, 1.5)
        angles[:, side + _EL_FLEX] = 0.4
        angles[:, side + _HIP_SWING] = 0.15 * sign * step
        angles[:, side + _KNEE] = 0.1 + 0.3 * np.clip(sign * step, 0, None)
    zeros = np.zeros(len(t))
    return _Drive(angles, zeros, zeros, yaw)


_ACTIONS: tuple[Callable[[np.ndarray, np.random.Generator, float, int], _Drive], ...] = (_walk, _wave, _jump, _turn)
_ACTION_P = (0.4, 0.2, 0.2, 0.2)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """Smooth 0 → 1 ramp over x in [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _blend_actions(t: np.ndarray, rng: np.random.Generator, tempo: float) -> _Drive:
    """A schedule of random actions (15-40 frames each) cross-faded into one drive."""
    bounds = [float(t[0])]
    while bounds[-1] < t[-1]:
        bounds.append(bounds[-1] + rng.uniform(15, 40))
    heading = int(rng.choice((-1, 1)))
    angles, vx, lift = np.zeros((len(t), _N_ANGLES)), np.zeros(len(t)), np.zeros(len(t))
    facing = np.zeros((len(t), 2))
    for i in range(len(bounds) - 1):
        rise = _smoothstep((t - bounds[i] + _CROSSFADE / 2) / _CROSSFADE) if i else 1.0
        fall = 1.0 - _smoothstep((t - bounds[i + 1] + _CROSSFADE / 2) / _CROSSFADE)
        weight = rise * fall
        if rng.random() < 0.3:
            heading = -heading
        drive = _ACTIONS[int(rng.choice(len(_ACTIONS), p=_ACTION_P))](t, rng, tempo, heading)
        angles += weight[:, None] * drive.angles
        vx += weight * drive.vx
        lift += weight * drive.lift
        facing += weight[:, None] * np.stack([np.cos(drive.yaw), np.sin(drive.yaw)], axis=1)
    return _Drive(angles, vx, lift, np.arctan2(facing[:, 1], facing[:, 0]))


def _direction(swing: np.ndarray, abduction: np.ndarray, sign: float) -> np.ndarray:
    """(G, 3) unit limb direction: hanging down, swung forward by ``swing``, out by ``abduction``."""
    return np.stack(
        [sign * np.sin(abduction), -np.cos(abduction) * np.cos(swing), np.cos(abduction) * np.sin(swing)], axis=-1
    )


def _skeleton(angles: np.ndarray) -> np.ndarray:
    """Forward kinematics in the body frame (before yaw).

    Args:
        angles: (G, 15) joint angles.

    Returns:
        (G, R, 3) point positions relative to the pelvis, in body heights.
    """
    g = len(angles)
    pts = np.zeros((g, len(_POINTS), 3))
    lean = angles[:, _LEAN, None]
    for name, (x, y, z) in _UPPER_BODY.items():  # rigid upper body, tilted forward by the lean
        pts[:, _P[name]] = np.concatenate([np.full((g, 1), x), y * np.cos(lean) - z * np.sin(lean),
                                           y * np.sin(lean) + z * np.cos(lean)], axis=1)  # fmt: skip
    for side, sign, prefix in ((_LEFT, 1.0, "left_"), (_RIGHT, -1.0, "right_")):
        a = angles[:, side : side + 7]
        shoulder = pts[:, _P[prefix + "shoulder"]]
        elbow = shoulder + _UPPER_ARM * _direction(a[:, _SH_SWING], a[:, _SH_ABD], sign)
        wrist = elbow + _FOREARM * _direction(a[:, _SH_SWING] + a[:, _EL_FLEX], a[:, _SH_ABD] + a[:, _EL_ABD], sign)
        hip = np.array([sign * _HIP_WIDTH, 0.0, 0.0])
        knee = hip + _THIGH * _direction(a[:, _HIP_SWING], a[:, _HIP_ABD], sign)
        ankle = knee + _SHIN * _direction(a[:, _HIP_SWING] - a[:, _KNEE], a[:, _HIP_ABD], sign)
        for joint, value in (("elbow", elbow), ("wrist", wrist), ("hip", hip), ("knee", knee), ("ankle", ankle)):
            pts[:, _P[prefix + joint]] = value
        pts[:, _P[prefix + "toe"]] = ankle + np.array((0.0, -0.02, _FOOT))
    return pts


def _sample_grid(values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Linearly interpolate values (G, ...) on the fine grid at ``times`` → (*times.shape, ...)."""
    pos = (times - _GRID_START) / _GRID_STEP
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, len(values) - 2)
    frac = (pos - i0).reshape(times.shape + (1,) * (values.ndim - 1))
    return values[i0] * (1 - frac) + values[i0 + 1] * frac


@dataclass(frozen=True)
class PersonTrack:
    """One foreground person over the whole video, in image pixels.

    Attributes:
        track_id: PoseTrack ``track_id`` (0-based within the video).
        style: colours.
        points: (T, M, R, 2) render points at every shutter sub-sample.
        depth: (T, M, R) depth towards the camera in body heights (larger is nearer).
        height: (T, M) body height in pixels (changes with the camera zoom).
    """

    track_id: int
    style: PersonStyle
    points: np.ndarray
    depth: np.ndarray
    height: np.ndarray


@dataclass(frozen=True)
class Occluder:
    """A foreground object passing in front of everything.

    Attributes:
        polygon: (T, M, V, 2) convex outline in image pixels at every sub-sample.
        colour: main BGR colour.
        inner: BGR colour of the inner panel.
    """

    polygon: np.ndarray
    colour: tuple[int, int, int]
    inner: tuple[int, int, int]


@dataclass(frozen=True)
class Scene:
    """Everything needed to render every frame of one video.

    Attributes:
        spec: the video's identity.
        config: generation knobs.
        canvas: (Hc, Wc, 3) uint8 world background (with the crowds drawn in).
        origin: (2,) world position of canvas pixel (0, 0).
        camera: (T, M, 3) per sub-sample ``(s, tx, ty)`` mapping world → image as ``s * p + t``.
        people: people in drawing order (far to near).
        occluders: occluders, drawn over the people.
        crowd_boxes: world boxes ``(x0, y0, x1, y1)`` of the unlabelled crowds.
        defocus: (T,) defocus sigma in pixels (0 = none).
        burst_noise: (T,) burst noise standard deviation (0 = none).
    """

    spec: VideoSpec
    config: SynthConfig
    canvas: np.ndarray
    origin: np.ndarray
    camera: np.ndarray
    people: tuple[PersonTrack, ...]
    occluders: tuple[Occluder, ...]
    crowd_boxes: tuple[tuple[float, float, float, float], ...]
    defocus: np.ndarray
    burst_noise: np.ndarray

    @property
    def bursts(self) -> np.ndarray:
        """(T,) bool: frames hit by a defocus or noise burst."""
        return (self.defocus > 0) | (self.burst_noise > 0)


def _sample_camera(spec: VideoSpec, config: SynthConfig, grid: np.ndarray) -> np.ndarray:
    """(G, 3) camera ``(s, tx, ty)`` on the fine grid: slow pan and zoom plus jerky shake."""
    rng = spec.rng("camera")
    w, h, short = spec.width, spec.height, min(spec.width, spec.height)
    zoom = config.zoom * rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * grid / rng.uniform(40, 120) + rng.uniform(0, 7))
    scale = np.exp(zoom)
    pan = config.pan * np.array([w * rng.uniform(-1, 1), 0.3 * h * rng.uniform(-1, 1)])
    centre = np.array([w / 2, h / 2]) + grid[:, None] * pan
    knots = np.arange(-2, spec.frames + 3)
    gain = np.where(rng.random((len(knots), 1)) < 0.25, 2.5, 0.3)  # occasional jolts
    jitter = rng.normal(0, config.shake * short * rng.uniform(0.3, 1.0), (len(knots), 2)) * gain
    shake = np.stack([np.interp(grid, knots, jitter[:, i]) for i in range(2)], axis=1)
    offset = np.array([w / 2, h / 2]) - scale[:, None] * centre + shake
    return np.concatenate([scale[:, None], offset], axis=1)


def _sample_person(
    spec: VideoSpec, config: SynthConfig, track_id: int, grid: np.ndarray, times: np.ndarray, camera: np.ndarray
) -> tuple[PersonTrack, float]:
    """One person's motion in image pixels, and its ground line (the drawing-order key)."""
    rng = spec.rng("person", track_id)
    depth_u = rng.uniform()
    tall = spec.height * (0.3 + 0.55 * depth_u)
    ground = spec.height * (0.8 + 0.18 * depth_u)
    drive = _blend_actions(grid, rng, config.tempo)
    body = _skeleton(drive.angles)  # (G, R, 3)
    yaw = drive.yaw[:, None]
    x = body[..., 0] * np.cos(yaw) + body[..., 2] * np.sin(yaw)
    z = -body[..., 0] * np.sin(yaw) + body[..., 2] * np.cos(yaw)
    feet = body[:, [_P["left_ankle"], _P["right_ankle"]], 1].min(axis=1, keepdims=True)
    root_x = spec.width * rng.uniform(-0.05, 1.05) + tall * np.cumsum(drive.vx) * _GRID_STEP
    world = np.stack(
        [root_x[:, None] + tall * x, ground - tall * (body[..., 1] - feet + 0.02 + drive.lift[:, None])], -1
    )
    cam = _sample_grid(camera, times)  # (T, M, 3)
    points = cam[..., None, :1] * _sample_grid(world, times) + cam[..., None, 1:]
    track = PersonTrack(track_id, random_style(rng), points, _sample_grid(z, times), cam[..., 0] * tall)
    return track, ground


def _sample_occluder(spec: VideoSpec, config: SynthConfig, index: int, count: int, times: np.ndarray) -> Occluder:
    """A pole, panel or blob crossing the frame; occluder ``index`` of ``count`` crosses in that part of the video."""
    rng = spec.rng("occluder", index)
    w, h = spec.width, spec.height
    kind = int(rng.integers(0, 3))
    if kind == 0:  # pole
        half = np.array([w * rng.uniform(0.02, 0.05), h])
        outline = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    elif kind == 1:  # panel
        half = np.array([w * rng.uniform(0.06, 0.12), h * rng.uniform(0.15, 0.3)])
        outline = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    else:  # blob
        angle = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        radius = min(w, h) * rng.uniform(0.1, 0.2)
        outline = np.stack([np.cos(angle) * radius * rng.uniform(0.6, 1.2), np.sin(angle) * radius], axis=1)
    speed = config.occluder_speed * w * rng.uniform(0.5, 1.0) * rng.choice((-1, 1))
    cross_t = spec.frames * (index + rng.uniform()) / count  # crossings spread over the video
    cross_x, y = w * rng.uniform(0.2, 0.8), h * rng.uniform(0.3, 0.8)
    x = cross_x + speed * (times - cross_t)  # (T, M)
    centre = np.stack([x, np.full_like(x, y)], axis=-1)
    return Occluder(centre[..., None, :] + outline, random_style(rng).shirt, random_style(rng).stripe)


def _sample_bursts(spec: VideoSpec, config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """(T,) defocus sigmas and (T,) burst noise levels of 1-2 frame bursts spread over the video.

    Bursts start ``burst_rate`` times per frame on average, 0.5-1.5 mean gaps apart, so every
    video gets its share and clean frames separate the bursts.
    """
    rng = spec.rng("bursts")
    defocus, noise = np.zeros(spec.frames), np.zeros(spec.frames)
    if config.burst_rate <= 0:
        return defocus, noise
    gap = 1.0 / config.burst_rate
    start = rng.uniform(0, gap)
    while start < spec.frames:
        t, length, kind = int(start), int(rng.integers(1, 3)), int(rng.integers(0, 3))
        if kind != 1:
            defocus[t : t + length] = config.defocus * min(spec.width, spec.height) * rng.uniform(0.6, 1.0)
        if kind != 0:
            noise[t : t + length] = config.burst_noise * rng.uniform(0.6, 1.0)
        start = max(start + gap * rng.uniform(0.5, 1.5), t + length + 1)
    return defocus, noise


def sample_scene(spec: VideoSpec, config: SynthConfig) -> Scene:
    """Draw everything random about one video (deterministic in ``spec``).

    Args:
        spec: the video's identity.
        config: generation knobs.

    Returns:
        The scene, ready for :func:`render_frame`.
    """
    grid = np.arange(_GRID_START, spec.frames + 1 + _GRID_STEP, _GRID_STEP)
    offsets = config.shutter * (np.arange(SUBSAMPLES) / (SUBSAMPLES - 1) - 0.5)
    times = np.arange(spec.frames)[:, None] + offsets  # (T, M)
    camera = _sample_camera(spec, config, grid)
    cam = _sample_grid(camera, times)
    rng = spec.rng("scene")
    n_people = int(rng.integers(config.people[0], config.people[1] + 1))
    placed = [_sample_person(spec, config, i, grid, times, camera) for i in range(n_people)]
    people = tuple(track for track, _ in sorted(placed, key=lambda item: item[1]))
    n_occ = int(rng.integers(config.occluders[0], config.occluders[1] + 1))
    occluders = tuple(_sample_occluder(spec, config, i, n_occ, times) for i in range(n_occ))
    # World extent seen by the camera over the video → background canvas.
    corners = np.array([[0, 0], [spec.width, 0], [0, spec.height], [spec.width, spec.height]], float)
    seen = (corners[None, None] - cam[..., None, 1:]) / cam[..., None, :1]
    lo, hi = np.floor(seen.min(axis=(0, 1, 2))) - 2, np.ceil(seen.max(axis=(0, 1, 2))) + 2
    canvas = background(rng, int(hi[0] - lo[0]), int(hi[1] - lo[1]), config.clutter)
    crowd_boxes = []
    for _ in range(int(rng.integers(config.crowds[0], config.crowds[1] + 1))):
        bw, bh = spec.width * rng.uniform(0.15, 0.3), spec.height * rng.uniform(0.07, 0.12)
        x0, y0 = rng.uniform(0, spec.width - bw), spec.height * rng.uniform(0.12, 0.4)
        crowd_boxes.append((x0, y0, x0 + bw, y0 + bh))
        draw_crowd(canvas, rng, (x0 - lo[0], y0 - lo[1], x0 + bw - lo[0], y0 + bh - lo[1]), int(rng.integers(5, 14)))
    defocus, burst_noise = _sample_bursts(spec, config)
    return Scene(spec, config, canvas, lo, cam, people, occluders, tuple(crowd_boxes), defocus, burst_noise)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameRender:
    """One rendered frame and what the renderer knows about it.

    Attributes:
        image: (H, W, 3) uint8 BGR frame.
        labels: (H, W) uint8 owner of each pixel at the frame's own time: 0 background,
            ``1 + i`` person ``scene.people[i]``, 255 occluder.
        boxes: (P, 4) float tight ``(x, y, w, h)`` of each whole person (occluded parts included)
            clipped to the frame; NaN rows for people not in the frame.
        areas: (P,) pixels of each whole person in the frame.
    """

    image: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray


def _subsamples(path: float) -> np.ndarray:
    """Sub-sample indices to draw for a layer whose points travel ``path`` pixels per exposure."""
    if path < 1.5:
        return np.array([_KEY])
    count = 3 if path < 5 else 5 if path < 10 else SUBSAMPLES
    return np.round(np.linspace(0, SUBSAMPLES - 1, count)).astype(int)


def _path_length(points: np.ndarray) -> np.ndarray:
    """(..., N) distance travelled during the exposure by points (M, ..., N, 2)."""
    return np.linalg.norm(np.diff(points, axis=0), axis=-1).sum(axis=0)


def _crop_box(points: np.ndarray, margin: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Frame crop holding ``points`` (..., 2) plus ``margin``; None when it misses the frame."""
    flat = points.reshape(-1, 2)
    x0, y0 = np.floor(flat.min(axis=0) - margin).astype(int)
    x1, y1 = np.ceil(flat.max(axis=0) + margin).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return (int(x0), int(y0), int(x1), int(y1)) if x1 > x0 and y1 > y0 else None


def _render_background(scene: Scene, frame: int) -> np.ndarray:
    """(H, W, 3) float32 background seen through the (moving) camera, averaged over the exposure."""
    spec, cam = scene.spec, scene.camera[frame]
    corners = np.array([[0, 0], [spec.width, spec.height]], float)
    world = (corners - cam[_KEY, 1:]) / cam[_KEY, 0]
    moved = cam[:, None, :1] * world + cam[:, None, 1:]  # (M, 2, 2)
    out = np.zeros((spec.height, spec.width, 3), np.float32)
    chosen = _subsamples(float(_path_length(moved).max()))
    for k in chosen:
        s, tx, ty = cam[k]
        affine = np.array([[s, 0, s * scene.origin[0] + tx], [0, s, s * scene.origin[1] + ty]])
        out += cv2.warpAffine(scene.canvas, affine, (spec.width, spec.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    out /= len(chosen)
    return out


def _person_drawer(
    person: PersonTrack, frame: int, chosen: np.ndarray, box: tuple[int, int, int, int]
) -> Callable[[np.ndarray, int], None]:
    """``draw(crop, k)`` for :func:`composite_motion`: the person at sub-sample ``chosen[k]``."""
    corner = np.array(box[:2], float)

    def draw(buf: np.ndarray, k: int) -> None:
        m = chosen[k]
        draw_person(
            buf, person.points[frame, m] - corner, person.depth[frame, m], person.height[frame, m], person.style
        )

    return draw


def _occluder_drawer(
    occluder: Occluder, frame: int, chosen: np.ndarray, box: tuple[int, int, int, int]
) -> Callable[[np.ndarray, int], None]:
    """``draw(crop, k)`` for :func:`composite_motion`: the occluder at sub-sample ``chosen[k]``."""
    corner = np.array(box[:2], float)

    def draw(buf: np.ndarray, k: int) -> None:
        draw_occluder(buf, occluder.polygon[frame, chosen[k]] - corner, occluder.colour, occluder.inner)

    return draw


def render_frame(scene: Scene, frame: int, *, people: bool = True) -> FrameRender:
    """Render one frame: background, people (far to near), occluders, then bursts and sensor noise.

    Args:
        scene: the video.
        frame: frame index.
        people: draw the people (``False`` renders the same frame without them, for checks).

    Returns:
        The frame and its per-pixel ownership.
    """
    spec, config = scene.spec, scene.config
    size = (spec.width, spec.height)
    image = _render_background(scene, frame)
    labels = np.zeros((spec.height, spec.width), np.uint8)
    boxes = np.full((len(scene.people), 4), np.nan)
    areas = np.zeros(len(scene.people), np.int64)
    for i, person in enumerate(scene.people if people else ()):
        pts, tall = person.points[frame], person.height[frame]
        chosen = _subsamples(float(_path_length(pts[:, :NUM_JOINTS]).max()))
        box = _crop_box(pts[chosen], 0.12 * float(tall.max()) + 2, *size)
        if box is None:
            continue
        draw = _person_drawer(person, frame, chosen, box)
        mask = composite_motion(image, box, len(chosen), len(chosen) // 2, draw)
        labels[box[1] : box[3], box[0] : box[2]][mask] = i + 1
        bx, by, bw, bh = cv2.boundingRect(mask.astype(np.uint8))
        areas[i] = int(np.count_nonzero(mask))
        if areas[i]:
            boxes[i] = (bx + box[0], by + box[1], bw, bh)
    for occluder in scene.occluders:
        polygon = occluder.polygon[frame]
        chosen = _subsamples(float(_path_length(polygon).max()))
        box = _crop_box(polygon[chosen], 2, *size)
        if box is None:
            continue

        draw = _occluder_drawer(occluder, frame, chosen, box)
        mask = composite_motion(image, box, len(chosen), len(chosen) // 2, draw)
        labels[box[1] : box[3], box[0] : box[2]][mask] = _OCCLUDER_LABEL
    if scene.defocus[frame] > 0:
        image = cv2.GaussianBlur(image, (0, 0), float(scene.defocus[frame]))
    sigma = float(np.hypot(config.noise, scene.burst_noise[frame]))
    if sigma > 0:
        image += spec.rng("noise", frame).standard_normal(image.shape, dtype=np.float32) * sigma
    return FrameRender(np.clip(image + 0.5, 0, 255).astype(np.uint8), labels, boxes, areas)


# ---------------------------------------------------------------------------------------------
# Labels and degradation flags
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JointFlags:
    """Per-joint ground truth and degradation flags of one video.

    Attributes:
        keypoints: (T, P, K, 2) joint positions in pixels at each frame's own time.
        visible: (T, P, K) bool: inside the frame and not covered by an occluder or a nearer
            person (ears are never visible: PoseTrack leaves them unannotated).
        blur: (T, P, K) motion blur in pixels (path of the joint during the exposure).
        near_occluder: (T, P, K) bool: within ``near_occluder`` of an occluder.
        burst: (T,) bool: defocus/noise burst frames.
        head_boxes: (T, P, 4) head boxes ``(x, y, w, h)`` in pixels.
        blur_threshold: fraction of the head size (0.6 × head-box diagonal) above which motion blur
            degrades a joint.
    """

    keypoints: np.ndarray
    visible: np.ndarray
    blur: np.ndarray
    near_occluder: np.ndarray
    burst: np.ndarray
    head_boxes: np.ndarray
    blur_threshold: float

    @property
    def blur_limit(self) -> np.ndarray:
        """(T, P) blur in pixels above which a joint of that person is degraded."""
        return self.blur_threshold * 0.6 * np.hypot(self.head_boxes[..., 2], self.head_boxes[..., 3])

    @property
    def blurred(self) -> np.ndarray:
        """(T, P, K) bool: visible joints with motion blur above the limit."""
        return self.visible & (self.blur > self.blur_limit[..., None])

    @property
    def degraded(self) -> np.ndarray:
        """(T, P, K) bool: visible joints that are blurred, near an occluder or on a burst frame."""
        return self.blurred | (self.visible & (self.near_occluder | self.burst[:, None, None]))

    @property
    def clean(self) -> np.ndarray:
        """(T, P, K) bool: visible and not degraded."""
        return self.visible & ~self.degraded

    @property
    def recoverable(self) -> np.ndarray:
        """(T, P, K) bool: degraded joints that are clean in at least one of t±1, t±2."""
        clean = self.clean
        nearby = np.zeros_like(clean)
        for d in _NEIGHBOURS:
            if d > 0:
                nearby[:-d] |= clean[d:]
            else:
                nearby[-d:] |= clean[:d]
        return self.degraded & nearby


def _frame_flags(scene: Scene, frame: int, render: FrameRender) -> tuple[np.ndarray, ...]:
    """Keypoints (P, K, 2), visibility (P, K), blur (P, K), occluder proximity (P, K) and head boxes (P, 4)."""
    spec = scene.spec
    heads = np.array([head_box(p.points[frame, _KEY], float(p.height[frame, _KEY])) for p in scene.people])
    pts = np.stack([p.points[frame, :, :NUM_JOINTS] for p in scene.people], axis=1)  # (M, P, K, 2)
    key = pts[_KEY]
    inside = (
        (key[..., 0] >= 0) & (key[..., 0] <= spec.width - 1) & (key[..., 1] >= 0) & (key[..., 1] <= spec.height - 1)
    )
    col = np.clip(np.round(key[..., 0]).astype(int), 0, spec.width - 1)
    row = np.clip(np.round(key[..., 1]).astype(int), 0, spec.height - 1)
    owner = render.labels[row, col]
    visible = inside & (owner == np.arange(1, len(scene.people) + 1)[:, None]) & _LABELLED_JOINTS
    occluder = render.labels == _OCCLUDER_LABEL
    near = np.zeros_like(visible)
    if occluder.any():
        distance = cv2.distanceTransform((~occluder).astype(np.uint8), cv2.DIST_L2, 3)
        near = visible & (distance[row, col] < scene.config.near_occluder * min(spec.width, spec.height))
    return key, visible, _path_length(pts), near, heads.reshape(-1, 4)


def _annotation(spec: VideoSpec, frame: int, track_id: int, keypoints: np.ndarray, visible: np.ndarray,
                box: np.ndarray, head: np.ndarray) -> dict[str, Any]:  # fmt: skip
    """One PoseTrack18 person annotation."""
    kps = np.zeros((NUM_JOINTS, 3))
    kps[visible, :2] = keypoints[visible]
    kps[visible, 2] = 1
    image_id = spec.image_id(frame)
    return {
        "keypoints": [round(float(v), 2) for v in kps.reshape(-1)],
        "bbox": [round(float(v), 2) for v in box],
        "bbox_head": [round(float(v), 2) for v in head],
        "track_id": track_id,
        "image_id": image_id,
        "id": image_id * 100 + track_id,
        "category_id": 1,
        "iscrowd": False,
        "num_keypoints": int(visible.sum()),
    }


def _ignore_regions(scene: Scene, frame: int) -> tuple[list[list[float]], list[list[float]]]:
    """Crowd boxes seen in this frame as PoseTrack ignore-region polygons (x lists, y lists)."""
    spec, (s, tx, ty) = scene.spec, scene.camera[frame, _KEY]
    xs, ys = [], []
    for x0, y0, x1, y1 in scene.crowd_boxes:
        ix0, ix1 = max(s * x0 + tx, 0.0), min(s * x1 + tx, spec.width - 1.0)
        iy0, iy1 = max(s * y0 + ty, 0.0), min(s * y1 + ty, spec.height - 1.0)
        if ix1 > ix0 and iy1 > iy0:
            xs.append([round(float(v), 2) for v in (ix0, ix1, ix1, ix0)])
            ys.append([round(float(v), 2) for v in (iy0, iy0, iy1, iy1)])
    return xs, ys


def _detections(scene: Scene, frame: int, render: FrameRender, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Noisy detector output for one frame: jittered boxes, misses, false positives.

    The miss rate grows with occlusion, and scores follow the box's IoU with the true box (plus a
    little noise), so better boxes score higher.
    """
    spec, config = scene.spec, scene.config
    image_id, results = spec.image_id(frame), []
    visible_px = np.bincount(render.labels.ravel(), minlength=len(scene.people) + 1)[1 : len(scene.people) + 1]
    for i, box in enumerate(render.boxes):
        if np.isnan(box[0]):
            continue
        seen = visible_px[i] / max(1, render.areas[i])
        if rng.random() < config.detector_miss + 0.6 * (1 - seen) ** 2:
            continue
        jitter = config.detector_jitter * (1 + 3 * (rng.random() < 0.1))
        noisy = _jitter_box(box, rng, jitter, spec.width, spec.height)
        quality = float(box_iou(box, noisy)[0, 0])
        score = np.clip(0.1 + 0.85 * quality**2 * (0.5 + 0.5 * seen) + rng.normal(0, 0.03), 0.01, 0.999)
        results.append(_detection(image_id, noisy, score))
    for _ in range(rng.poisson(config.detector_false_positives)):
        bh = spec.height * rng.uniform(0.15, 0.6)
        bw = bh * rng.uniform(0.3, 0.7)
        fake = np.array([rng.uniform(0, spec.width - bw), rng.uniform(0, spec.height - bh), bw, bh])
        results.append(_detection(image_id, fake, rng.uniform(0.02, 0.45)))
    return sorted(results, key=lambda d: -d["score"])


def _jitter_box(box: np.ndarray, rng: np.random.Generator, jitter: float, width: int, height: int) -> np.ndarray:
    """Box (x, y, w, h) with its centre and size perturbed by ``jitter`` × size, clipped to the frame."""
    x, y, w, h = box
    cx, cy = x + w / 2 + rng.normal(0, jitter) * w, y + h / 2 + rng.normal(0, jitter) * h
    w, h = w * np.exp(rng.normal(0, jitter)), h * np.exp(rng.normal(0, jitter))
    x0, y0 = np.clip(cx - w / 2, 0, width - 1), np.clip(cy - h / 2, 0, height - 1)
    x1, y1 = np.clip(cx + w / 2, x0 + 1, width), np.clip(cy + h / 2, y0 + 1, height)
    return np.array([x0, y0, x1 - x0, y1 - y0])


def _detection(image_id: int, box: np.ndarray, score: float) -> dict[str, Any]:
    """One COCO result entry."""
    return {"image_id": image_id, "bbox": [round(float(v), 2) for v in box], "score": round(float(score), 4),
            "category_id": 1}  # fmt: skip


def categories() -> list[dict[str, Any]]:
    """The PoseTrack18 ``categories`` entry (skeleton 1-based)."""
    return [{
        "supercategory": "person", "id": 1, "name": "person", "keypoints": list(POSETRACK_JOINTS),
        "skeleton": [[a + 1, b + 1] for a, b in SKELETON],
    }]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Writing one video
# ---------------------------------------------------------------------------------------------


# Close enough to the JPEG frames for models trained on them: at 1 bit per pixel the codec cost the
# demo's FAMI-Pose 3.9 AP on the val mp4s (51.8 vs 55.7 on the frames), at 4 bits 0.9 (54.8).
VIDEO_BITS_PER_PIXEL = 4


def _video_writer(path: Path, width: int, height: int, fps: int) -> VideoWriter:
    """An MPEG-4 Part 2 writer of (H, W, 3) uint8 BGR frames at the frame size (odd sizes kept).

    MPEG-4 Part 2 rather than h264: single-threaded libx264 here still gives slightly different
    bytes from run to run, FFmpeg's own mpeg4 encoder does not, so the whole data set is reproducible.
    """
    bit_rate = width * height * fps * VIDEO_BITS_PER_PIXEL
    return VideoWriter(path, fps, "mpeg4", pixel_format="bgr24", bit_rate=bit_rate, threads=1, pad_odd=False)


@dataclass(frozen=True)
class _VideoJob:
    """Arguments of one video's generation (picklable for the process pool)."""

    out_dir: Path
    spec: VideoSpec
    config: SynthConfig
    labeled_every: int


@dataclass(frozen=True)
class _VideoResult:
    """What one video's generation hands back: its detections and its share of the statistics."""

    detections: list[dict[str, Any]]
    counts: dict[str, int]


def _dump(path: Path, obj: Any) -> None:
    """Write compact, key-sorted JSON (byte-identical for identical content)."""
    path.write_text(json.dumps(obj, separators=(",", ":"), sort_keys=True))


def _generate_video(job: _VideoJob) -> _VideoResult:
    """Render, label and write one video; return its detections and counts."""
    spec, config, out = job.spec, job.config, job.out_dir
    split = spec.split
    scene = sample_scene(spec, config)
    image_dir = out / "images" / split / spec.name
    if image_dir.exists():
        shutil.rmtree(image_dir)
    image_dir.mkdir(parents=True)
    n_people = len(scene.people)
    shape = (spec.frames, n_people, NUM_JOINTS)
    keypoints = np.zeros((*shape, 2))
    visible, near = np.zeros(shape, bool), np.zeros(shape, bool)
    blur = np.zeros(shape)
    boxes = np.full((spec.frames, n_people, 4), np.nan)
    heads = np.zeros((spec.frames, n_people, 4))
    images, detections = [], []
    det_rng = spec.rng("detections")
    labeled = np.arange(spec.frames) % job.labeled_every == 0
    writer = _video_writer(out / "videos" / split / f"{spec.name}.mp4", spec.width, spec.height, config.fps)
    try:
        for t in range(spec.frames):
            render = render_frame(scene, t)
            cv2.imwrite(str(image_dir / f"{t:06d}.jpg"), render.image, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
            writer.write(render.image)
            keypoints[t], visible[t], blur[t], near[t], heads[t] = _frame_flags(scene, t, render)
            boxes[t] = render.boxes
            detections += _detections(scene, t, render, det_rng)
            regions_x, regions_y = _ignore_regions(scene, t)
            images.append({
                "file_name": f"images/{split}/{spec.name}/{t:06d}.jpg", "id": spec.image_id(t),
                "frame_id": spec.image_id(t), "vid_id": f"{spec.number:06d}", "nframes": spec.frames,
                "is_labeled": bool(labeled[t]), "width": spec.width, "height": spec.height,
                "ignore_regions_x": regions_x, "ignore_regions_y": regions_y,
            })  # fmt: skip
    finally:
        writer.close()
    flags = JointFlags(keypoints, visible, blur, near, scene.bursts, heads, config.blur_threshold)
    annotations = []
    for t in np.flatnonzero(labeled):
        for i, person in enumerate(scene.people):
            if visible[t, i].any() and not np.isnan(boxes[t, i, 0]):
                annotations.append(_annotation(spec, int(t), person.track_id, keypoints[t, i], visible[t, i],
                                               boxes[t, i], heads[t, i]))  # fmt: skip
    _dump(out / "annotations" / split / f"{spec.name}.json",
          {"images": images, "annotations": annotations, "categories": categories()})  # fmt: skip
    _dump(out / "synthtrack_flags" / split / f"{spec.name}.json", _flags_json(spec, scene, flags, labeled))
    return _VideoResult(detections, _counts(flags, labeled, len(annotations), len(detections), n_people))


def _flags_json(spec: VideoSpec, scene: Scene, flags: JointFlags, labeled: np.ndarray) -> dict[str, Any]:
    """The generator's per-joint flags of one video, as written to ``synthtrack_flags``."""
    return {
        "video": spec.name,
        "image_ids": [spec.image_id(t) for t in range(spec.frames)],
        "track_ids": [p.track_id for p in scene.people],
        "is_labeled": labeled.tolist(),
        "visible": flags.visible.astype(int).tolist(),
        "motion_blur_px": np.round(flags.blur, 2).tolist(),
        "blurred": flags.blurred.astype(int).tolist(),
        "near_occluder": flags.near_occluder.astype(int).tolist(),
        "burst": flags.burst.tolist(),
        "degraded": flags.degraded.astype(int).tolist(),
        "blur_limit_px": np.round(flags.blur_limit, 2).tolist(),
    }


def _counts(flags: JointFlags, labeled: np.ndarray, annotations: int, detections: int, tracks: int) -> dict[str, int]:
    """Per-video counts that add up to :class:`SynthStats`."""
    sel = flags.visible & labeled[:, None, None]
    return {
        "frames": len(labeled),
        "labeled_frames": int(labeled.sum()),
        "tracks": tracks,
        "annotations": annotations,
        "labeled_joints": int(sel.sum()),
        "degraded_joints": int((sel & flags.degraded).sum()),
        "recoverable_joints": int((sel & flags.recoverable).sum()),
        "blurred_joints": int((sel & flags.blurred).sum()),
        "occluder_joints": int((sel & flags.near_occluder).sum()),
        "burst_joints": int((sel & flags.burst[:, None, None]).sum()),
        "detections": detections,
    }


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WxH`` (e.g. ``384x288``) into ``(width, height)``.

    Raises:
        ValueError: when the text is not two positive integers joined by ``x``.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match[1]) <= 0 or int(match[2]) <= 0:
        raise ValueError(f"size must be WxH with positive integers, e.g. 384x288; got {text!r}")
    return int(match[1]), int(match[2])


def _check_args(
    videos: int, frames: int, size: tuple[int, int], seed: int, split: str, labeled_every: int, workers: int
) -> None:
    """Raise ValueError for arguments the generator cannot honour."""
    if not 1 <= videos <= _MAX_VIDEOS:
        raise ValueError(f"videos must be in 1..{_MAX_VIDEOS}; got {videos}")
    if not 1 <= frames <= _MAX_FRAMES:
        raise ValueError(f"frames must be in 1..{_MAX_FRAMES}; got {frames}")
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"size must be (width, height) with positive values; got {size}")
    if min(size) < 16:
        raise ValueError(f"size must be at least 16 pixels on each side; got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0; got {seed}")
    if split not in _SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; valid values: {', '.join(_SPLIT_CODES)}")
    if labeled_every < 1:
        raise ValueError(f"labeled_every must be >= 1; got {labeled_every}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")


def _remove_stale(out_dir: Path, split: str, names: set[str]) -> None:
    """Delete SynthTrack videos of ``split`` left by an earlier run that this run did not write."""
    pattern = re.compile(rf"\d{{6}}_synth_{re.escape(split)}")
    for folder, suffix in (("images", ""), ("annotations", ".json"), ("videos", ".mp4"), ("synthtrack_flags", ".json")):
        for path in (out_dir / folder / split).glob(f"*_synth_{split}{suffix}"):
            stem = path.name.removesuffix(suffix) if suffix else path.name
            if pattern.fullmatch(stem) and stem not in names:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()


def _write_meta(out_dir: Path, stats: SynthStats, params: dict[str, Any]) -> None:
    """Add this split's parameters and statistics to ``synthtrack_meta.json`` (other splits kept)."""
    path = out_dir / "synthtrack_meta.json"
    meta = json.loads(path.read_text()) if path.exists() else {}
    meta.update({"generator": "famipose.data.synthtrack", "format": "posetrack18"})
    meta.setdefault("splits", {})[stats.split] = {"params": params, "stats": stats.to_dict()}
    path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _init_worker() -> None:
    """Process-pool initializer: one OpenCV thread per worker process."""
    cv2.setNumThreads(1)


def generate_synthtrack(
    out_dir: Path,
    *,
    videos: int,
    frames: int,
    size: tuple[int, int],
    seed: int,
    difficulty: Difficulty = "easy",
    split: str = "train",
    labeled_every: int = 1,
    config: SynthConfig | None = None,
    workers: int = 1,
) -> SynthStats:
    """Generate one split of SynthTrack under ``out_dir`` (layout in the module docstring).

    Args:
        out_dir: data set root (created if missing; other splits already there are kept).
        videos: number of videos.
        frames: frames per video.
        size: frame ``(width, height)`` in pixels.
        seed: data set seed; the same arguments give byte-identical JSON and images.
        difficulty: knob preset, ``easy`` or ``hard``.
        split: ``train``, ``val`` or ``test``.
        labeled_every: label every k-th frame (``is_labeled``); 1 labels all frames.
        config: knobs to use instead of the ``difficulty`` preset.
        workers: processes rendering videos in parallel (``spawn`` start method, so a calling
            script needs an ``if __name__ == "__main__":`` guard); the output does not depend on it.

    Returns:
        Counts and degradation statistics of the split.

    Raises:
        ValueError: for invalid arguments (the message names the valid values).
    """
    config = config or SynthConfig.preset(difficulty)
    _check_args(videos, frames, size, seed, split, labeled_every, workers)
    out_dir = Path(out_dir)
    for folder in ("annotations", "videos", "synthtrack_flags", "images"):
        (out_dir / folder / split).mkdir(parents=True, exist_ok=True)
    (out_dir / "detections").mkdir(exist_ok=True)
    jobs = [_VideoJob(out_dir, VideoSpec(split, i, seed, frames, *size), config, labeled_every) for i in range(videos)]
    workers = min(workers, videos)
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
            results = list(pool.map(_generate_video, jobs))
    else:
        results = [_generate_video(job) for job in jobs]
    _remove_stale(out_dir, split, {job.spec.name for job in jobs})
    detections = [d for result in results for d in result.detections]
    _dump(out_dir / "detections" / f"{split}.json", detections)
    totals = {key: sum(r.counts[key] for r in results) for key in _COUNT_FIELDS}
    stats = SynthStats(split=split, difficulty=config.name, videos=videos, **totals)
    params = {"videos": videos, "frames": frames, "size": list(size), "seed": seed, "split": split,
              "labeled_every": labeled_every, "config": asdict(config)}  # fmt: skip
    _write_meta(out_dir, stats, params)
    return stats


__all__ = [
    "SUBSAMPLES",
    "Difficulty",
    "FrameRender",
    "JointFlags",
    "Occluder",
    "PersonTrack",
    "Scene",
    "SynthConfig",
    "SynthStats",
    "VideoSpec",
    "categories",
    "generate_synthtrack",
    "parse_size",
    "render_frame",
    "sample_scene",
]
