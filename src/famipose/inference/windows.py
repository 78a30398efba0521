"""Window engines: decoded frames with person boxes in, tracked poses out, in one of two modes.

:func:`make_engine` is the one place that turns ``EstimatorOptions.mode`` into an engine; each
engine owns how its persons are tracked:

* :class:`ExactEngine` (``exact``): for every box of key frame t, the frames t+δ are cropped with
  that box (as in training) and the backbone runs on all 1+S crops; the frame's persons are then
  linked to tracks on box IoU and pose OKS.
* :class:`FastEngine` (``fast``): the boxes are linked to tracks on box IoU when a frame arrives;
  every frame is cropped once per track with that track's own box in the frame (the key crop of
  exact mode), its backbone feature is cached per (track, frame) and reused by each key frame
  whose window holds it, re-framed from its own crop into the key-frame crop
  (:func:`~famipose.inference.steps.reframe_features`; a frame where the track has no box is
  replaced by the next one toward the key frame, like a frame outside the video). Key frames are
  processed ``chunk_length`` at a time so that backbone and alignment calls are batched across
  persons and frames. With boxes that do not move, both modes compute the same features and poses.

Both remove a frame's duplicate persons (:func:`~famipose.inference.steps.pose_nms`) on the crop
areas they estimated the poses in. Memory: ``exact`` keeps the frames t-2..t+2; ``fast`` keeps one
chunk plus its window margins, and the feature cache of those frames.

Values between stages are frozen: an engine takes :class:`DetectedFrame` and returns
:class:`EstimatedFrame`.

Shape symbols: N persons, B windows, S supports, C channels, K joints, h/w feature size.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from famipose.codecs.pose import PoseLogits, decode_pose_logits
from famipose.data.windows import resolve_support_index
from famipose.inference.steps import crop_geometry, crop_windows, pose_nms, reframe_features
from famipose.inference.timing import StageTimer
from famipose.inference.tracker import PoseTracker
from famipose.inference.video_io import Frame
from famipose.models.famipose import FamiPose
from famipose.models.flip import average_logits, unflip_logits

MODES: tuple[str, ...] = ("exact", "fast")


@dataclass(frozen=True, eq=False)
class DetectedFrame:
    """A decoded frame and its cleaned person boxes.

    Attributes:
        frame: the frame.
        boxes: (N, 4) ``(x, y, w, h)`` in image pixels.
        box_scores: (N,) box confidences.
    """

    frame: Frame
    boxes: np.ndarray
    box_scores: np.ndarray


@dataclass(frozen=True, eq=False)
class EstimatedFrame(DetectedFrame):
    """A frame's persons as an engine hands them out: duplicates removed, best first, tracked.

    Attributes (beyond :class:`DetectedFrame`'s, whose boxes are here the kept ones):
        poses: (N, K, 3) ``(x, y, score)`` in image pixels.
        areas: (N,) areas of the crops the poses were estimated in.
        keys: (N,) tracker keys (map them with :meth:`PoseTracker.track_id`).
        tracker_step: :attr:`PoseTracker.num_updates` once this frame was tracked.
    """

    poses: np.ndarray
    areas: np.ndarray
    keys: np.ndarray
    tracker_step: int


@dataclass(frozen=True, eq=False)
class _TrackedFrame(DetectedFrame):
    """Fast mode: a frame's boxes with the tracker keys they got on arrival."""

    keys: np.ndarray  # (N,)
    tracker_step: int


class Network:
    """The model's stages, batched and timed.

    Args:
        model: the network (in eval mode, on ``device``).
        device: where the network runs.
        batch_size: crops per backbone call; feature maps (windows × (1 + S)) per alignment call.
        padding: crop enlargement after aspect fixing.
        timer: the run's stage timer.
        flip_perm: the joint permutation of a horizontal flip, for the flip test; ``None`` for none.
        dark_sigma: DARK decoding of heatmaps with this target sigma, or ``None``.
    """

    def __init__(
        self,
        model: FamiPose,
        device: torch.device,
        batch_size: int,
        padding: float,
        timer: StageTimer,
        flip_perm: Sequence[int] | None = None,
        dark_sigma: float | None = None,
    ) -> None:
        self.model = model
        self.config = model.config
        self.device = device
        self.batch_size = batch_size
        self.padding = padding
        self.timer = timer
        self.flip_perm = flip_perm
        self.dark_sigma = dark_sigma

    def crop_geometry(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crop centres (N, 2) and sizes (N, 2) of (N, 4) boxes at the network's input size."""
        return crop_geometry(boxes, self.config.input_size, self.padding)

    def features(
        self, images: Sequence[np.ndarray], centers: np.ndarray, scales: np.ndarray, mirrored: bool = False
    ) -> Tensor:
        """Backbone features (N, C, h, w) of N crops (of their mirror images with ``mirrored``)."""
        with self.timer("crop"):
            crops = crop_windows(images, centers, scales, self.config.input_size)  # (N, 3, H, W)
            crops = crops.flip(-1) if mirrored else crops
        with self.timer("backbone"):
            chunks = [
                self.model.backbone.features(crops[i : i + self.batch_size].to(self.device))
                for i in range(0, len(crops), self.batch_size)
            ]
        return torch.cat(chunks)  # (N, C, h, w)

    def logits(self, z_key: Tensor, z_sup: Tensor | None) -> PoseLogits:
        """Head output for key (B, C, h, w) and support (B, S, C, h, w) features.

        Windows go through the alignment ``batch_size // (1 + S)`` at a time, i.e. as many feature
        maps per call as a backbone batch has crops: on CPU, larger alignment batches are slower per
        window (their activations outgrow the caches), unlike the backbone's.
        """
        parts = []
        step = max(1, self.batch_size // (1 + (0 if z_sup is None else z_sup.shape[1])))
        for i in range(0, len(z_key), step):
            with self.timer("alignment"):  # GTM, LCM, fusion and the head
                support = None if z_sup is None else z_sup[i : i + step]
                parts.append(self.model.forward_from_features(z_key[i : i + step], support).pose)
        return PoseLogits(**{
            name: torch.cat([getattr(part, name) for part in parts])
            for name in ("heatmaps", "simcc_x", "simcc_y")
            if getattr(parts[0], name) is not None
        })  # fmt: skip

    def poses(
        self,
        z_key: Tensor,
        z_sup: Tensor | None,
        centers: np.ndarray,
        scales: np.ndarray,
        mirrored: tuple[Tensor, Tensor | None] | None = None,
    ) -> np.ndarray:
        """Image-space poses (B, K, 3) from key (B, C, h, w) and support (B, S, C, h, w) features.

        Args:
            z_key: key features.
            z_sup: support features, or ``None`` for the single-frame model.
            centers: (B, 2) key-crop centres.
            scales: (B, 2) key-crop sizes.
            mirrored: the flip test's features of the mirrored crops, ``(z_key, z_sup)`` alike.
        """
        logits = self.logits(z_key, z_sup)
        if mirrored is not None:
            assert self.flip_perm is not None
            split_ratio = self.config.head.simcc_split_ratio
            logits = average_logits(logits, unflip_logits(self.logits(*mirrored), self.flip_perm, split_ratio))
        with self.timer("postprocess"):
            return decode_pose_logits(
                logits, centers, scales, self.config.input_size, self.config.head.simcc_split_ratio, self.dark_sigma
            )

    def no_poses(self) -> np.ndarray:
        """(0, K, 3): the poses of a frame without a person."""
        return np.zeros((0, self.config.num_joints, 3))


class WindowEngine(ABC):
    """Buffer of decoded frames and the support-frame rule shared by both modes.

    Args:
        network: the model's stages.
        tracker: links the persons of consecutive frames; the engine decides when it is called.
        timer: the run's stage timer.
    """

    def __init__(self, network: Network, tracker: PoseTracker, timer: StageTimer) -> None:
        self.network = network
        self.tracker = tracker
        self.timer = timer
        deltas = network.config.deltas if network.config.num_supports else ()
        self.deltas = tuple(deltas)
        self.before = max([0, *(-d for d in self.deltas)])
        self.after = max([0, *self.deltas])
        self.buffer: dict[int, DetectedFrame] = {}
        self.last_index = -1

    def add(self, item: DetectedFrame) -> None:
        """Buffer a frame."""
        self.buffer[item.frame.index] = item
        self.last_index = item.frame.index

    def support_indices(self, key: int, finished: bool, usable: Callable[[int], bool] | None = None) -> list[int]:
        """Frames used for key frame ``key``'s supports: missing (or not ``usable``) frames are
        replaced by the next frame toward the key, as in training."""
        nframes = self.last_index + 1 if finished else self.last_index + self.after + 1
        usable = usable or self.buffer.__contains__
        return [resolve_support_index(key, d, nframes, usable) for d in self.deltas]

    def drop_before(self, index: int) -> None:
        """Forget the frames before ``index``."""
        for old in [i for i in self.buffer if i < index]:
            del self.buffer[old]

    def distinct(self, poses: np.ndarray, box_scores: np.ndarray, areas: np.ndarray) -> np.ndarray:
        """Indices (N',) of a frame's persons that are no duplicate, best first (timed as postprocess).

        Args:
            poses: (N, K, 3) poses.
            box_scores: (N,) box confidences.
            areas: (N,) areas of the crops the poses were estimated in.
        """
        with self.timer("postprocess"):
            return pose_nms(poses, box_scores, areas)

    @abstractmethod
    def push(self, frame: DetectedFrame) -> list[EstimatedFrame]:
        """Add a frame; return the frames whose persons became ready, in frame order."""

    @abstractmethod
    def flush(self) -> list[EstimatedFrame]:
        """The end of the stream: return every remaining frame with its persons."""


class ExactEngine(WindowEngine):
    """Each box's window cropped with the key-frame box; the backbone runs on all 1+S crops.

    Tracking: once a frame's poses are known, on box IoU and pose OKS.
    """

    def __init__(self, network: Network, tracker: PoseTracker, timer: StageTimer) -> None:
        super().__init__(network, tracker, timer)
        self.pending: deque[int] = deque()

    def push(self, frame: DetectedFrame) -> list[EstimatedFrame]:
        """Add a frame; return the key frames whose supports have all arrived."""
        self.add(frame)
        self.pending.append(frame.frame.index)
        ready = []
        while self.pending and self.pending[0] + self.after <= self.last_index:
            ready.append(self._process(self.pending.popleft(), finished=False))
        return ready

    def flush(self) -> list[EstimatedFrame]:
        """Process the key frames still waiting for supports past the end."""
        ready = [self._process(index, finished=True) for index in self.pending]
        self.pending.clear()
        return ready

    def _process(self, key: int, finished: bool) -> EstimatedFrame:
        item = self.buffer[key]
        frames = [key, *self.support_indices(key, finished)]  # 1 + S
        window = [self.buffer[f].frame.image for f in frames]
        self.drop_before(key + 1 - self.before)  # what the next key frame no longer needs
        centers, scales = self.network.crop_geometry(item.boxes)  # (N, 2), (N, 2)
        poses = self.network.no_poses()
        if len(item.boxes):
            images = [image for _ in item.boxes for image in window]
            crops = (images, centers.repeat(len(frames), 0), scales.repeat(len(frames), 0))

            def window_features(mirrored: bool) -> tuple[Tensor, Tensor | None]:
                features = self.network.features(*crops, mirrored=mirrored)
                features = features.unflatten(0, (len(item.boxes), len(frames)))  # (N, 1+S, C, h, w)
                return features[:, 0], features[:, 1:] if self.deltas else None

            mirrored = window_features(mirrored=True) if self.network.flip_perm is not None else None
            poses = self.network.poses(*window_features(mirrored=False), centers, scales, mirrored)  # (N, K, 3)
        areas = scales.prod(1)  # (N,)
        keep = self.distinct(poses, item.box_scores, areas)
        boxes, poses = item.boxes[keep], poses[keep]
        with self.timer("track"):
            keys = self.tracker.update(boxes, poses)
        step = self.tracker.num_updates
        return EstimatedFrame(item.frame, boxes, item.box_scores[keep], poses, areas[keep], keys, step)


class FastEngine(WindowEngine):
    """Each frame cropped once per track with the track's own box there; the backbone features are
    cached per (track, frame) and re-framed into the key-frame crop by every window using them.

    Tracking: on box IoU as each frame arrives (the crops follow the tracks).

    Args:
        network: the model's stages.
        tracker: links the boxes of consecutive frames.
        timer: the run's stage timer.
        chunk_length: key frames processed together.
    """

    def __init__(self, network: Network, tracker: PoseTracker, timer: StageTimer, chunk_length: int) -> None:
        super().__init__(network, tracker, timer)
        self.buffer: dict[int, _TrackedFrame] = {}  # what push adds: boxes with their tracker keys
        self.chunk_length = chunk_length
        self.chunk_start = 0
        self.cache: dict[tuple[int, int], Tensor] = {}  # (track, frame) -> (C, h, w)

    def push(self, frame: DetectedFrame) -> list[EstimatedFrame]:
        """Track the frame's boxes, add it; return the frames of every chunk whose windows are complete."""
        with self.timer("track"):
            keys = self.tracker.update(frame.boxes)
        self.add(_TrackedFrame(frame.frame, frame.boxes, frame.box_scores, keys, self.tracker.num_updates))
        ready = []
        while self.chunk_start + self.chunk_length - 1 + self.after <= self.last_index:
            ready += self._process_chunk(finished=False)
        return ready

    def flush(self) -> list[EstimatedFrame]:
        """Process the remaining chunks."""
        ready = []
        while self.chunk_start <= self.last_index:
            ready += self._process_chunk(finished=True)
        return ready

    def _track_box(self, track: int, frame: int) -> np.ndarray | None:
        """The track's (4,) box in a buffered frame, or None when the frame or the track's box is missing."""
        item = self.buffer.get(frame)
        hits = np.flatnonzero(item.keys == track) if item is not None else ()
        return item.boxes[hits[0]] if item is not None and len(hits) else None

    def _process_chunk(self, finished: bool) -> list[EstimatedFrame]:
        start, stop = self.chunk_start, self.chunk_start + self.chunk_length
        items = [self.buffer[i] for i in range(start, stop) if i in self.buffer]
        self.chunk_start = stop
        # One window per (track, key frame): the key frame, then its supports. A frame where the track
        # has no box is replaced by the next frame toward the key (as frames outside the video are).
        windows = [
            (int(key), [item.frame.index, *self.support_indices(
                item.frame.index, finished, lambda frame, track=int(key): self._track_box(track, frame) is not None
            )])
            for item in items
            for key in item.keys
        ]  # fmt: skip
        poses, areas = self._poses(windows) if windows else (self.network.no_poses(), np.zeros(0))
        counts = np.cumsum([len(item.keys) for item in items])[:-1]
        splits = zip(items, np.split(poses, counts), np.split(areas, counts), strict=True)
        ready = [self._persons(item, item_poses, item_areas) for item, item_poses, item_areas in splits]
        self.drop_before(stop - self.before)
        self.cache = {k: v for k, v in self.cache.items() if k[1] >= stop - self.before}
        return ready

    def _persons(self, item: _TrackedFrame, poses: np.ndarray, areas: np.ndarray) -> EstimatedFrame:
        """A frame's distinct persons from its (N, K, 3) poses and (N,) key-crop areas."""
        keep = self.distinct(poses, item.box_scores, areas)
        return EstimatedFrame(
            item.frame, item.boxes[keep], item.box_scores[keep], poses[keep], areas[keep], item.keys[keep],
            item.tracker_step,
        )  # fmt: skip

    def _poses(self, windows: list[tuple[int, list[int]]]) -> tuple[np.ndarray, np.ndarray]:
        """Poses (B, K, 3) and key-crop areas (B,) of B windows (track, 1+S frames), from cached
        (or newly computed) features."""
        self._fill_cache([(track, frame) for track, frames in windows for frame in frames])
        features = torch.stack([
            torch.stack([self.cache[track, frame] for frame in frames]) for track, frames in windows
        ])  # (B, 1+S, C, h, w)
        boxes = np.stack([[self._track_box(track, frame) for frame in frames] for track, frames in windows])
        centers, scales = self.network.crop_geometry(boxes.reshape(-1, 4))
        centers, scales = centers.reshape(*boxes.shape[:2], 2), scales.reshape(*boxes.shape[:2], 2)  # (B, 1+S, 2)
        z_sup = None
        if self.deltas:
            with self.timer("alignment"):
                z_sup = reframe_features(
                    features[:, 1:].flatten(0, 1),
                    centers[:, 1:].reshape(-1, 2),
                    scales[:, 1:].reshape(-1, 2),
                    centers[:, :1].repeat(len(self.deltas), 1).reshape(-1, 2),
                    scales[:, :1].repeat(len(self.deltas), 1).reshape(-1, 2),
                ).unflatten(0, (len(windows), len(self.deltas)))  # (B, S, C, h, w) in the key crop
        return self.network.poses(features[:, 0], z_sup, centers[:, 0], scales[:, 0]), scales[:, 0].prod(1)

    def _fill_cache(self, needed: list[tuple[int, int]]) -> None:
        """Compute the features of the (track, frame) pairs not in the cache, in batched backbone calls."""
        missing = sorted({pair for pair in needed if pair not in self.cache})
        if not missing:
            return
        boxes = np.stack([self._track_box(track, frame) for track, frame in missing])
        centers, scales = self.network.crop_geometry(boxes)
        images = [self.buffer[frame].frame.image for _, frame in missing]
        for pair, feature in zip(missing, self.network.features(images, centers, scales), strict=True):
            self.cache[pair] = feature


def check_mode(mode: str) -> None:
    """Check a mode name.

    Raises:
        ValueError: ``mode`` is not one of :data:`MODES` (the message lists the valid ones).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")


def make_engine(
    mode: str, network: Network, tracker: PoseTracker, timer: StageTimer, chunk_length: int
) -> WindowEngine:
    """The engine of a mode: the one place where the mode is decided.

    Args:
        mode: one of :data:`MODES`.
        network: the model's stages.
        tracker: the run's tracker (the engine calls it).
        timer: the run's stage timer.
        chunk_length: fast mode: key frames processed together.

    Raises:
        ValueError: an unknown mode (the message lists the valid ones).
    """
    check_mode(mode)
    if mode == "exact":
        return ExactEngine(network, tracker, timer)
    return FastEngine(network, tracker, timer, chunk_length)
