"""Video pose estimation: frames → person boxes → temporal windows → poses → tracks → outputs.

``VideoPoseEstimator(model, ...).run(path)`` streams a video (or an image folder) through the
network in bounded memory and returns a :class:`VideoResult`; :func:`write_posetrack_json` and
:func:`write_coco_results` save it, and ``run(..., overlay=...)`` renders an mp4 on the way.

The stages are plain functions, testable one by one: :func:`crop_geometry` and
:func:`crop_windows` (preprocess), :meth:`FamiPose.forward_features` (FAMI-Pose after the backbone, from
cached features) and :func:`famipose.codecs.pose.decode_pose_logits` (postprocess).

Two modes, chosen by ``EstimatorOptions.mode``:

* ``exact``: for every box of key frame t, the frames t+δ are cropped with that box (as in
  training) and the backbone runs on all 1+S crops; tracks are then linked on box IoU and pose OKS.
* ``fast``: tracks are linked on box IoU when frames arrive; every frame is cropped once per track
  with that track's own box in the frame (the key crop of exact mode), its backbone feature is
  cached per (track, frame, box) and reused by each key frame whose window holds it, re-framed
  from its own crop into the key-frame crop by a bilinear feature resampling
  (:func:`reframe_features`; a frame where the track has no box is replaced by the next one toward
  the key frame, like a frame outside the video). Key frames are processed ``chunk_length`` at a
  time so that backbone and alignment calls are batched across persons and frames. With boxes that
  do not move, both modes compute the same features and poses.

Memory: ``exact`` keeps the frames t-2..t+2 plus the tracker's confirmation delay; ``fast`` keeps
one chunk plus its window margins, and the feature cache of those frames.

Shape symbols: N persons, B batch, S supports, C channels, K joints, H/W input size, h/w feature
size.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import logging
import time
from abc import ABC, abstractmethod
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch import Tensor

from famipose.codecs.pose import decode_pose_logits
from famipose.codecs.transforms import box_to_center_scale, reframe_theta, warp_crop
from famipose.config import Config, ConfigError, from_dict, load_config
from famipose.data.dataset import normalize_crops
from famipose.data.errors import DataError, get_field, load_json
from famipose.data.windows import resolve_support_index
from famipose.device import resolve_device
from famipose.evaluation.io import PosePrediction, write_predictions
from famipose.files import atomic_path, remove_stale_temporaries, write_text_atomic
from famipose.geometry import OKS_NMS_THRESHOLD, oks_nms, xywh_to_xyxy
from famipose.inference.detector import (
    BoxFileDetector,
    Detector,
    FrameNames,
    check_images,
    clean_detections,
    detect_frames,
    make_detector,
)
from famipose.inference.draw import DrawnPerson, draw_frame
from famipose.inference.tracker import PoseTracker, TrackerConfig
from famipose.inference.video_io import (
    Frame,
    FrameSource,
    ImageFolderSource,
    VideoReadError,
    open_frames,
)
from famipose.models.alignment import warp_features
from famipose.models.checkpoint import (
    is_official_hrnet,
    load_model,
    official_hrnet_model,
    read_checkpoint_file,
    read_state_dict,
)
from famipose.models.famipose import FamiPose
from famipose.models.heads import PoseLogits
from famipose.video_writer import VideoWriter

logger = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("exact", "fast")
# "alignment" covers everything after the backbone (GTM, LCM, fusion and the head, whose cost is negligible).
STAGES: tuple[str, ...] = ("decode", "detect", "track", "crop", "backbone", "alignment", "postprocess", "render")


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PersonPose:
    """One tracked person in one frame.

    Attributes:
        track_id: public track id.
        box: (4,) ``(x, y, w, h)`` detection box in image pixels.
        box_score: detection confidence.
        keypoints: (K, 2) joints in image pixels.
        scores: (K,) joint confidences.
    """

    track_id: int
    box: np.ndarray
    box_score: float
    keypoints: np.ndarray
    scores: np.ndarray

    @property
    def score(self) -> float:
        """Person score: box score × mean joint score."""
        return float(self.box_score * self.scores.mean())


@dataclass(frozen=True, eq=False)
class FramePoses:
    """The persons of one frame.

    Attributes:
        index: 0-based frame index.
        name: frame file name (``%06d.jpg`` for videos).
        decoded: False for a frame that failed to decode (it has no persons).
        persons: the frame's tracked persons.
    """

    index: int
    name: str
    decoded: bool
    persons: tuple[PersonPose, ...] = ()


@dataclass
class VideoResult:
    """Everything a run produced.

    Attributes:
        source: the input path.
        fps: frame rate of the input.
        frames: one entry per frame index 0..last, in order.
        image_prefix: folder written before frame names in output files (``images/<split>/<video>``).
        gt_images: GT ``images`` entries to copy into the PoseTrack output, or ``None``.
        timings: seconds spent per stage (see :data:`STAGES`).
        wall_seconds: wall-clock duration of the run.
        messages: warnings about the input, in words.
    """

    source: str
    fps: float
    frames: list[FramePoses] = field(default_factory=list)
    image_prefix: str = ""
    gt_images: list[dict[str, Any]] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    messages: list[str] = field(default_factory=list)

    @property
    def num_decoded(self) -> int:
        """Frames that decoded."""
        return sum(frame.decoded for frame in self.frames)

    @property
    def throughput(self) -> float:
        """Decoded frames processed per wall-clock second."""
        return self.num_decoded / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def track_ids(self) -> set[int]:
        """Every track id in the result."""
        return {person.track_id for frame in self.frames for person in frame.persons}


# ---------------------------------------------------------------------------------------------
# Preprocess, inference after the backbone, postprocess
# ---------------------------------------------------------------------------------------------


def crop_geometry(boxes: np.ndarray, input_size: tuple[int, int], padding: float) -> tuple[np.ndarray, np.ndarray]:
    """Crop centres and sizes of boxes at the network's aspect ratio.

    Args:
        boxes: (N, 4) ``(x, y, w, h)``.
        input_size: network input ``(w, h)``.
        padding: enlargement after aspect fixing.

    Returns:
        centers (N, 2) and scales (N, 2) in image pixels.
    """
    aspect = input_size[0] / input_size[1]
    pairs = [box_to_center_scale(box, aspect, padding) for box in np.asarray(boxes).reshape(-1, 4)]
    if not pairs:
        return np.zeros((0, 2)), np.zeros((0, 2))
    centers, scales = zip(*pairs, strict=True)
    return np.stack(centers), np.stack(scales)


def crop_windows(
    images: Sequence[np.ndarray], centers: np.ndarray, scales: np.ndarray, input_size: tuple[int, int]
) -> Tensor:
    """Cut crops and normalise them for the network (ImageNet mean / std, RGB, CHW).

    Args:
        images: N (H, W, 3) uint8 RGB frames, one per crop.
        centers: (N, 2) crop centres.
        scales: (N, 2) crop sizes.
        input_size: network input ``(w, h)``.

    Returns:
        (N, 3, H, W) float32 crops.
    """
    if not len(images):
        return torch.zeros(0, 3, input_size[1], input_size[0])
    crops = np.stack(
        [warp_crop(image, c, s, input_size) for image, c, s in zip(images, centers, scales, strict=True)]
    )  # (N, H, W, 3)
    return normalize_crops(crops)  # (N, 3, H, W)


def suppress_duplicate_poses(item: _Item, input_size: tuple[int, int], padding: float) -> None:
    """Remove a frame's duplicate persons by OKS NMS, as ``famipose test`` does (in place).

    Two boxes on one person give two nearly equal poses; the one with the lower person score
    (box score × mean joint score) goes when their OKS, on the crop areas, exceeds
    :data:`~famipose.geometry.OKS_NMS_THRESHOLD`. The remaining persons are ordered best
    first, also as ``famipose test`` writes them (the PoseTrack evaluator's greedy matching breaks
    ties in file order).
    """
    if item.poses is None or not len(item.poses):
        return
    _, scales = crop_geometry(item.boxes, input_size, padding)  # (N, 2)
    scores = item.box_scores * item.poses[:, :, 2].mean(1)  # (N,)
    keep = oks_nms(item.poses, scores, scales.prod(1), OKS_NMS_THRESHOLD)
    item.boxes, item.box_scores, item.poses = item.boxes[keep], item.box_scores[keep], item.poses[keep]
    if item.keys is not None:
        item.keys = item.keys[keep]


# ---------------------------------------------------------------------------------------------
# Options, timing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EstimatorOptions:
    """How a video is processed.

    Attributes:
        mode: ``exact`` or ``fast`` (see the module docstring).
        batch_size: crops per backbone call; feature maps (windows × (1 + S)) per alignment call.
        score_threshold: person boxes below this score are dropped.
        nms_iou: IoU above which a lower-scored box is suppressed.
        box_padding: crop enlargement after aspect fixing (as in training).
        chunk_length: fast mode: key frames processed together (batching; latency in frames).
        detect_batch: frames decoded and given to the detector together (learned detectors run
            them as one batch).
        tracker: tracking settings.
    """

    mode: str = "exact"
    batch_size: int = 32
    score_threshold: float = 0.4
    nms_iou: float = 0.5
    box_padding: float = 1.25
    chunk_length: int = 16
    detect_batch: int = 4
    tracker: TrackerConfig = field(default_factory=TrackerConfig)

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: unknown mode (the message lists the valid ones), or a size below 1.
        """
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; valid modes: {', '.join(MODES)}")
        if min(self.batch_size, self.chunk_length, self.detect_batch) < 1:
            raise ValueError(
                f"batch_size, chunk_length and detect_batch must be >= 1, got "
                f"{self.batch_size}, {self.chunk_length}, {self.detect_batch}"
            )


class StageTimer:
    """Wall-clock seconds per pipeline stage (CUDA work is synchronised before reading the clock)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time the body as ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[stage] += time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Window engines
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Item:
    """A decoded frame moving through the pipeline."""

    frame: Frame
    boxes: np.ndarray  # (N, 4) x, y, w, h
    box_scores: np.ndarray  # (N,)
    keys: np.ndarray | None = None  # (N,) tracker keys
    poses: np.ndarray | None = None  # (N, K, 3)
    tracker_step: int = 0


class _Network:
    """The model's stages, batched and timed."""

    def __init__(self, model: FamiPose, device: torch.device, options: EstimatorOptions, timer: StageTimer) -> None:
        self.model = model
        self.config = model.config
        self.device = device
        self.batch_size = options.batch_size
        self.padding = options.box_padding
        self.timer = timer

    def features(self, images: Sequence[np.ndarray], centers: np.ndarray, scales: np.ndarray) -> Tensor:
        """Backbone features (N, C, h, w) of N crops."""
        with self.timer("crop"):
            crops = crop_windows(images, centers, scales, self.config.input_size)  # (N, 3, H, W)
        with self.timer("backbone"):
            chunks = [
                self.model.backbone.features(crops[i : i + self.batch_size].to(self.device))
                for i in range(0, len(crops), self.batch_size)
            ]
        return torch.cat(chunks)  # (N, C, h, w)

    def poses(self, z_key: Tensor, z_sup: Tensor | None, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """Image-space poses (B, K, 3) from key (B, C, h, w) and support (B, S, C, h, w) features.

        Windows go through the alignment ``batch_size // (1 + S)`` at a time, i.e. as many feature
        maps per call as a backbone batch has crops: on CPU, larger alignment batches are slower per
        window (their activations outgrow the caches), unlike the backbone's.
        """
        logits = []
        step = max(1, self.batch_size // (1 + (0 if z_sup is None else z_sup.shape[1])))
        for i in range(0, len(z_key), step):
            with self.timer("alignment"):  # GTM, LCM, fusion and the head
                support = None if z_sup is None else z_sup[i : i + step]
                logits.append(self.model.forward_features(z_key[i : i + step], support).pose)
        with self.timer("postprocess"):
            merged = PoseLogits(**{
                name: torch.cat([getattr(part, name) for part in logits])
                for name in ("heatmaps", "simcc_x", "simcc_y")
                if getattr(logits[0], name) is not None
            })  # fmt: skip
            return decode_pose_logits(merged, centers, scales, self.config)


class _Windows(ABC):
    """Buffer of decoded frames and the support-frame rule shared by both modes."""

    def __init__(self, network: _Network) -> None:
        self.network = network
        deltas = network.config.deltas if network.config.num_supports else ()
        self.deltas = tuple(deltas)
        self.before = max([0, *(-d for d in self.deltas)])
        self.after = max([0, *self.deltas])
        self.buffer: dict[int, _Item] = {}
        self.last_index = -1

    def add(self, item: _Item) -> None:
        self.buffer[item.frame.index] = item
        self.last_index = item.frame.index

    def support_indices(self, key: int, finished: bool, usable: Callable[[int], bool] | None = None) -> list[int]:
        """Frames used for key frame ``key``'s supports: missing (or not ``usable``) frames are
        replaced by the next frame toward the key, as in training."""
        nframes = self.last_index + 1 if finished else self.last_index + self.after + 1
        usable = usable or self.buffer.__contains__
        return [resolve_support_index(key, d, nframes, usable) for d in self.deltas]

    def drop_before(self, index: int) -> None:
        for old in [i for i in self.buffer if i < index]:
            del self.buffer[old]

    @abstractmethod
    def push(self, item: _Item) -> list[_Item]:
        """Add a frame; return the items whose poses became ready, in frame order."""

    @abstractmethod
    def flush(self) -> list[_Item]:
        """The end of the stream: return every remaining item with its poses."""


class _ExactWindows(_Windows):
    """Each box's window cropped with the key-frame box; the backbone runs on all 1+S crops."""

    def __init__(self, network: _Network) -> None:
        super().__init__(network)
        self.pending: deque[int] = deque()

    def push(self, item: _Item) -> list[_Item]:
        self.add(item)
        self.pending.append(item.frame.index)
        ready = []
        while self.pending and self.pending[0] + self.after <= self.last_index:
            ready.append(self._process(self.pending.popleft(), finished=False))
        return ready

    def flush(self) -> list[_Item]:
        ready = [self._process(index, finished=True) for index in self.pending]
        self.pending.clear()
        return ready

    def _process(self, key: int, finished: bool) -> _Item:
        item = self.buffer[key]
        frames = [key, *self.support_indices(key, finished)]  # 1 + S
        window = [self.buffer[f].frame.image for f in frames]
        self.drop_before(key + 1 - self.before)  # what the next key frame no longer needs
        if not len(item.boxes):
            item.poses = np.zeros((0, self.network.config.num_joints, 3))
            return item
        centers, scales = crop_geometry(item.boxes, self.network.config.input_size, self.network.padding)
        images = [image for _ in item.boxes for image in window]
        features = self.network.features(images, centers.repeat(len(frames), 0), scales.repeat(len(frames), 0))
        features = features.unflatten(0, (len(item.boxes), len(frames)))  # (N, 1+S, C, h, w)
        z_sup = features[:, 1:] if self.deltas else None
        item.poses = self.network.poses(features[:, 0], z_sup, centers, scales)
        return item


class _FastWindows(_Windows):
    """Each frame cropped once per track with the track's own box there; the backbone features are
    cached per (track, frame) and re-framed into the key-frame crop by every window using them."""

    def __init__(self, network: _Network, chunk_length: int) -> None:
        super().__init__(network)
        self.chunk_length = chunk_length
        self.chunk_start = 0
        self.cache: dict[tuple[int, int], Tensor] = {}  # (track, frame) -> (C, h, w)

    def push(self, item: _Item) -> list[_Item]:
        self.add(item)
        ready = []
        while self.chunk_start + self.chunk_length - 1 + self.after <= self.last_index:
            ready += self._process_chunk(finished=False)
        return ready

    def flush(self) -> list[_Item]:
        ready = []
        while self.chunk_start <= self.last_index:
            ready += self._process_chunk(finished=True)
        return ready

    def _track_box(self, track: int, frame: int) -> np.ndarray | None:
        """The track's (4,) box in a buffered frame, or None when the frame or the track's box is missing."""
        item = self.buffer.get(frame)
        hits = np.flatnonzero(item.keys == track) if item is not None else ()
        return item.boxes[hits[0]] if len(hits) else None

    def _process_chunk(self, finished: bool) -> list[_Item]:
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
        poses = self._poses(windows) if windows else np.zeros((0, self.network.config.num_joints, 3))
        counts = np.cumsum([len(item.keys) for item in items])[:-1]
        for item, item_poses in zip(items, np.split(poses, counts), strict=True):
            item.poses = item_poses
        self.drop_before(stop - self.before)
        self.cache = {k: v for k, v in self.cache.items() if k[1] >= stop - self.before}
        return items

    def _poses(self, windows: list[tuple[int, list[int]]]) -> np.ndarray:
        """Poses (B, K, 3) of B windows (track, 1+S frames), from cached (or newly computed) features."""
        config = self.network.config
        self._fill_cache([(track, frame) for track, frames in windows for frame in frames])
        features = torch.stack([
            torch.stack([self.cache[track, frame] for frame in frames]) for track, frames in windows
        ])  # (B, 1+S, C, h, w)
        boxes = np.stack([[self._track_box(track, frame) for frame in frames] for track, frames in windows])
        centers, scales = crop_geometry(boxes.reshape(-1, 4), config.input_size, self.network.padding)
        centers, scales = centers.reshape(*boxes.shape[:2], 2), scales.reshape(*boxes.shape[:2], 2)  # (B, 1+S, 2)
        z_sup = None
        if self.deltas:
            with self.network.timer("alignment"):
                z_sup = reframe_features(
                    features[:, 1:].flatten(0, 1),
                    centers[:, 1:].reshape(-1, 2),
                    scales[:, 1:].reshape(-1, 2),
                    centers[:, :1].repeat(len(self.deltas), 1).reshape(-1, 2),
                    scales[:, :1].repeat(len(self.deltas), 1).reshape(-1, 2),
                ).unflatten(0, (len(windows), len(self.deltas)))  # (B, S, C, h, w) in the key crop
        return self.network.poses(features[:, 0], z_sup, centers[:, 0], scales[:, 0])

    def _fill_cache(self, needed: list[tuple[int, int]]) -> None:
        """Compute the features of the (track, frame) pairs not in the cache, in batched backbone calls."""
        missing = sorted({pair for pair in needed if pair not in self.cache})
        if not missing:
            return
        boxes = np.stack([self._track_box(track, frame) for track, frame in missing])
        centers, scales = crop_geometry(boxes, self.network.config.input_size, self.network.padding)
        images = [self.buffer[frame].frame.image for _, frame in missing]
        for pair, feature in zip(missing, self.network.features(images, centers, scales), strict=True):
            self.cache[pair] = feature


def reframe_features(
    features: Tensor, src_centers: np.ndarray, src_scales: np.ndarray, dst_centers: np.ndarray, dst_scales: np.ndarray
) -> Tensor:
    """Resample feature maps (N, C, h, w) of crops ``src`` into crops ``dst`` (zeros outside ``src``).

    Bilinear, UDP-consistent (see :func:`famipose.codecs.transforms.reframe_theta`); maps whose
    crops are equal are returned untouched, so static boxes give exactly the features of a direct crop.
    """
    theta = reframe_theta(src_centers, src_scales, dst_centers, dst_scales)  # (N, 2, 3)
    moved = torch.from_numpy(np.flatnonzero(np.any(theta != np.eye(2, 3), axis=(1, 2)))).to(features.device)
    if not len(moved):
        return features
    resampled = warp_features(features[moved], torch.from_numpy(theta).to(features)[moved], align_corners=True)
    return features.index_copy(0, moved, resampled)  # (N, C, h, w)


# ---------------------------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------------------------


def read_gt_images(path: str | Path) -> list[dict[str, Any]]:
    """The ``images`` list of a PoseTrack18 annotation file.

    Raises:
        DataError: unreadable file or no ``images`` list.
    """
    document = load_json(Path(path))
    if not isinstance(document, dict):
        raise DataError(path, "top level must be an object with an 'images' list")
    return check_images(get_field(document, "images", list, path, "top level"), path)


def default_image_prefix(path: str | Path) -> str:
    """PoseTrack-style folder of a video's frames: ``images/<split>/<video>``.

    ``<video>`` is the video file's stem or the image folder's name, ``<split>`` the name of the
    folder holding it: ``videos/val/v.mp4``, ``images/val/v/`` and ``images/val/v/*.jpg`` all give
    ``images/val/v``, the names SynthTrack and PoseTrack GT files use.
    """
    path = Path(path)
    if glob.has_magic(str(path)):
        path = path.parent
    video = path.name if path.is_dir() else path.stem
    return "/".join(part for part in ("images", path.parent.name, video) if part)


def load_model_and_config(
    checkpoint: str | Path | None,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    input_size: tuple[int, int] | None = None,
) -> tuple[FamiPose, Config]:
    """Build the network from a config file (or a training checkpoint's embedded config) and weights.

    Without a config, an official HRNet COCO state dict (``pose_hrnet_w48_384x288.pth``) gives
    the single-frame model it describes (:func:`~famipose.models.checkpoint.official_hrnet_model`).

    Args:
        checkpoint: training checkpoint, ``.safetensors`` export, state-dict file or official HRNet
            state dict; ``None`` keeps the random initialisation (with a warning).
        config: experiment YAML; required unless ``checkpoint`` is a training checkpoint or an
            official HRNet state dict.
        overrides: ``section.key=value`` overrides.
        input_size: crop size ``(w, h)`` of an official HRNet state dict whose file name has none.

    Returns:
        The network in eval mode on the CPU, and its config.

    Raises:
        ConfigError: no config can be found, it is invalid, overrides come without ``config``, or
            ``input_size`` comes with anything but an official HRNet state dict.
        CheckpointError: the weights cannot be read or do not fit.
    """
    if config is not None:
        cfg = load_config(config, overrides)
    elif overrides:
        raise ConfigError("overrides need --config (a checkpoint's embedded config is used as it is)")
    elif checkpoint is not None and Path(checkpoint).suffix != ".safetensors":
        content = read_checkpoint_file(checkpoint)  # an unreadable file is a CheckpointError, not a config problem
        if isinstance(content, dict) and isinstance(content.get("config"), dict):
            cfg = from_dict(Config, content["config"])
        else:
            state = read_state_dict(content) if isinstance(content, dict) else {}
            if not is_official_hrnet(state):
                raise ConfigError(
                    f"{checkpoint}: holds weights without a config, and not an official HRNet pose state dict; "
                    "pass --config (the experiment YAML)"
                )
            model, model_config = official_hrnet_model(state, checkpoint, input_size)
            return model, Config(model=model_config)
    else:
        raise ConfigError(f"{checkpoint}: the weights file carries no configuration; pass --config")
    if input_size is not None:
        raise ConfigError("--input-size applies to an official HRNet state dict alone; a config sets model.input_size")
    if checkpoint is None:
        logger.warning("no checkpoint given: the network keeps its random initialisation")
        model = FamiPose(cfg.model)
    else:
        model = load_model(cfg.model, checkpoint)
    return model.eval(), cfg


@contextlib.contextmanager
def _progress_bar(enabled: bool, title: str, total: int | None) -> Iterator[Callable[[], None]]:
    """A rich progress bar with the running frame rate; yields ``advance()``."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[fps]:.1f} fps"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns) as bar:
        task = bar.add_task(title, total=total, fps=0.0)
        start, count = time.perf_counter(), 0

        def advance() -> None:
            nonlocal count
            count += 1
            bar.update(task, advance=1, fps=count / max(time.perf_counter() - start, 1e-9))

        yield advance


class VideoPoseEstimator:
    """Pose estimation and tracking over a whole video, in bounded memory.

    Args:
        model: the network (any variant and head).
        detector: detector name (:data:`~famipose.inference.detector.DETECTORS`) used when
            ``boxes`` is None.
        detector_weights: weights of an ``onnx`` or torchvision detector.
        boxes: a box file (COCO results or PoseTrack18 annotations, see
            :func:`famipose.inference.detector.load_box_file`).
        gt_json: a PoseTrack18 annotation file of the same video: its ``images`` list maps box-file
            image ids to frames and is copied into the PoseTrack output (so the evaluator pairs
            frames by the GT file names).
        options: processing options.
        device: ``auto``, ``cpu`` or ``cuda``.

    Raises:
        ValueError: an unknown detector or device, or ``none`` without boxes.
        DataError: ``gt_json`` is unreadable.
        CheckpointError: detector weights are missing or do not fit.
    """

    def __init__(
        self,
        model: FamiPose,
        *,
        detector: str = "auto",
        detector_weights: str | Path | None = None,
        boxes: str | Path | None = None,
        gt_json: str | Path | None = None,
        options: EstimatorOptions | None = None,
        device: str = "auto",
    ) -> None:
        self.device = resolve_device(device, setting="--device")
        self.model = model.eval().to(self.device)
        self.options = options or EstimatorOptions()
        self.gt_images = read_gt_images(gt_json) if gt_json is not None else None
        self.boxes = boxes
        self.detector_name = detector
        self.detector_weights = detector_weights
        self._names = FrameNames.from_gt_images(self.gt_images) if self.gt_images else FrameNames()
        # Built now to fail early on bad arguments or files; the first run uses it.
        self._unused_detector: Detector | None = self._make_detector(self._names)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path | None,
        config: str | Path | None = None,
        overrides: Sequence[str] = (),
        options: EstimatorOptions | None = None,
        input_size: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> VideoPoseEstimator:
        """Build the network with :func:`load_model_and_config` (crop padding from ``data.box_padding``).

        Args:
            checkpoint: weights file, or None for random weights.
            config: experiment YAML (optional for training checkpoints and official HRNet files).
            overrides: config overrides.
            options: processing options; by default :class:`EstimatorOptions` with the config's padding.
            input_size: crop size ``(w, h)`` of an official HRNet file whose name states none.
            **kwargs: the remaining constructor arguments.
        """
        model, cfg = load_model_and_config(checkpoint, config, overrides, input_size)
        return cls(model, options=options or EstimatorOptions(box_padding=cfg.data.box_padding), **kwargs)

    def _make_detector(self, names: FrameNames) -> Detector:
        return make_detector(self.detector_name, self.boxes, names, self.detector_weights, self.device)

    def _detector(self, source: FrameSource) -> Detector:
        """The detector of one run: the constructor's for the first run, a new one for later runs
        (the motion detector and box files keep per-run state) and for a box file read with an
        image folder's file names."""
        if self.boxes is not None and isinstance(source, ImageFolderSource):
            self._unused_detector = None
            names = self._names.merged(FrameNames(by_name={file.name: i for i, file in enumerate(source.files)}))
            return self._make_detector(names)
        detector, self._unused_detector = self._unused_detector or self._make_detector(self._names), None
        return detector

    def run(self, path: str | Path, overlay: str | Path | None = None, progress: bool = False) -> VideoResult:
        """Estimate and track the poses of every person in a video.

        Args:
            path: video file, image folder or glob pattern.
            overlay: mp4 to render the poses into (written while the video is processed).
            progress: show a progress bar with the frame rate.

        Returns:
            The per-frame poses, stage timings and warnings.

        Raises:
            VideoReadError: the input cannot be opened.
        """
        start = time.perf_counter()
        source = open_frames(path)
        detector = self._detector(source)
        timer = StageTimer(self.device)
        network = _Network(self.model, self.device, self.options, timer)
        fast = self.options.mode == "fast"
        windows = _FastWindows(network, self.options.chunk_length) if fast else _ExactWindows(network)
        tracker = PoseTracker(self.options.tracker)
        result = VideoResult(str(path), source.fps, image_prefix=default_image_prefix(path), gt_images=self.gt_images)
        pending: deque[_Item] = deque()
        counts = {"outside": 0, "empty": 0}
        writer = VideoWriter(overlay, source.fps) if overlay is not None else None
        frames = iter(source)
        with (
            torch.inference_mode(),
            _progress_bar(progress, Path(path).name, source.num_frames) as advance,
            writer or contextlib.nullcontext(),
        ):
            while True:
                with timer("decode"):
                    batch = list(itertools.islice(frames, self.options.detect_batch))
                if not batch:
                    break
                for item in self._detect(batch, detector, timer, counts):
                    if fast:
                        with timer("track"):
                            item.keys = tracker.update(item.boxes)
                            item.tracker_step = tracker.num_updates
                    pending.extend(self._track(windows.push(item), tracker, timer, fast))
                    self._emit(pending, tracker, result, writer, timer, advance, finished=False)
            pending.extend(self._track(windows.flush(), tracker, timer, fast))
            self._emit(pending, tracker, result, writer, timer, advance, finished=True)
        if writer is not None and not writer.frames_written:
            result.messages.append(f"{overlay}: not written, no frame was decoded")
        self._finish(result, source, detector, counts)
        result.timings = {stage: timer.seconds.get(stage, 0.0) for stage in STAGES}
        result.wall_seconds = time.perf_counter() - start
        return result

    def _detect(
        self, frames: list[Frame], detector: Detector, timer: StageTimer, counts: dict[str, int]
    ) -> list[_Item]:
        """Cleaned person boxes of a batch of frames (one detector call where it batches)."""
        exact_boxes = isinstance(detector, BoxFileDetector) and detector.ground_truth
        items = []
        with timer("detect"):
            for frame, raw in zip(frames, detect_frames(detector, frames), strict=True):
                height, width = frame.image.shape[:2]
                kept, outside = clean_detections(
                    raw, (width, height), self.options.score_threshold, None if exact_boxes else self.options.nms_iou
                )
                counts["outside"] += outside
                counts["empty"] += not len(kept)
                items.append(_Item(frame, kept.boxes, kept.scores))
        return items

    def _track(self, items: list[_Item], tracker: PoseTracker, timer: StageTimer, fast: bool) -> list[_Item]:
        """Drop duplicate poses, then link exact-mode poses into tracks (fast mode tracked the boxes on arrival)."""
        with timer("postprocess"):
            for item in items:
                suppress_duplicate_poses(item, self.model.config.input_size, self.options.box_padding)
        if not fast:
            with timer("track"):
                for item in items:
                    item.keys = tracker.update(item.boxes, item.poses)
                    item.tracker_step = tracker.num_updates
        return items

    @staticmethod
    def _emit(
        pending: deque[_Item],
        tracker: PoseTracker,
        result: VideoResult,
        writer: VideoWriter | None,
        timer: StageTimer,
        advance: Callable[[], None],
        finished: bool,
    ) -> None:
        """Output the frames whose tracks' confirmation is settled (all of them at the end)."""
        while pending and (finished or tracker.num_updates >= pending[0].tracker_step + tracker.confirmation_delay):
            item = pending.popleft()
            persons = []
            for key, box, score, pose in zip(item.keys, item.boxes, item.box_scores, item.poses, strict=True):
                track_id = tracker.track_id(int(key))
                if track_id is not None:
                    persons.append(PersonPose(track_id, box, float(score), pose[:, :2], pose[:, 2]))
            result.frames.append(FramePoses(item.frame.index, item.frame.name, True, tuple(persons)))
            if writer is not None:
                with timer("render"):
                    drawn = [DrawnPerson(p.track_id, p.box, p.keypoints, p.scores) for p in persons]
                    writer.write(draw_frame(item.frame.image, drawn, item.frame.index))
            advance()

    def _finish(self, result: VideoResult, source: FrameSource, detector: Detector, counts: dict[str, int]) -> None:
        """Add the undecoded frames and the warnings about the input."""
        names = [file.name for file in source.files] if isinstance(source, ImageFolderSource) else []
        for skipped in source.skipped:
            name = names[skipped.index] if skipped.index < len(names) else f"{skipped.index:06d}.jpg"
            result.frames.append(FramePoses(skipped.index, name, decoded=False))
        result.frames.sort(key=lambda frame: frame.index)
        messages = result.messages
        if source.skipped:
            indices = ", ".join(str(s.index) for s in source.skipped[:10])
            messages.append(f"{len(source.skipped)} frame(s) failed to decode and were skipped (indices {indices})")
        if not result.num_decoded:
            messages.append(f"{source.path}: no frame could be decoded")
        if counts["outside"]:
            messages.append(f"{counts['outside']} box(es) lay outside the image and were dropped")
        if counts["empty"]:
            messages.append(f"{counts['empty']} of {result.num_decoded} decoded frame(s) had no person box")
        if isinstance(detector, BoxFileDetector):
            undecoded = {skipped.index for skipped in source.skipped}
            unused = [index for index in detector.unused_frames() if index not in undecoded]
            if unused and len(unused) == len(detector.per_frame):
                messages.append(f"{detector.source}: no box refers to a frame of the input (box frames "
                                f"{unused[0]}..{unused[-1]}); check --gt-json or the file's frame keys")
            elif unused:
                messages.append(f"{detector.source}: boxes for {len(unused)} frame(s) not in the input were "
                                f"ignored ({unused[0]}..{unused[-1]})")
        if self.gt_images is not None and len(result.frames) > len(self.gt_images):
            messages.append(f"the input has {len(result.frames)} frames but the GT lists {len(self.gt_images)}; "
                            "frames past the GT are left out of the PoseTrack output")
        for message in messages:
            logger.warning(message)


# ---------------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------------


def _image_entries(result: VideoResult) -> list[dict[str, Any]]:
    """The PoseTrack ``images`` list: the GT's, or one entry per frame named ``<prefix>/<name>``."""
    if result.gt_images is not None:
        return result.gt_images
    return [
        {"file_name": f"{result.image_prefix}/{frame.name}", "id": frame.index, "frame_id": frame.index,
         "nframes": len(result.frames), "is_labeled": True}
        for frame in result.frames
    ]  # fmt: skip


def write_posetrack_json(result: VideoResult, path: str | Path) -> Path:
    """Write the result as a PoseTrack18 prediction file that ``famipose evaluate`` scores.

    Frame ``i`` goes to ``images[i]`` (the GT's images when the run had ``gt_json``); each person is
    written with its track id, joints as (x, y, score) and its box.

    Args:
        result: the run's result.
        path: output JSON file; name it like the GT file (``<video>.json``) for the evaluator.

    Returns:
        The written file.
    """
    images = _image_entries(result)
    by_index = {frame.index: frame for frame in result.frames}
    predictions = [
        [
            PosePrediction(np.concatenate([p.keypoints, p.scores[:, None]], 1), p.track_id, xywh_to_xyxy(p.box)[0])
            for p in (by_index[i].persons if i in by_index else ())
        ]
        for i in range(len(images))
    ]
    path = Path(path)
    return write_predictions(path.parent, path.name, images, predictions)


def write_coco_results(result: VideoResult, path: str | Path) -> Path:
    """Write the result as a COCO keypoint result list (one entry per person and frame).

    Each entry has ``image_id`` (the GT image id with ``gt_json``, else the frame index),
    ``image_name``, ``frame_index``, ``category_id`` 1, ``bbox`` (x, y, w, h), ``score`` (box score ×
    mean joint score), ``keypoints`` (K × (x, y, score)) and ``track_id``.

    Args:
        result: the run's result.
        path: output JSON file.

    Returns:
        The written file.
    """
    import json

    images = _image_entries(result)
    entries = []
    for frame in result.frames:
        image = images[frame.index] if frame.index < len(images) else {}
        for person in frame.persons:
            joints = np.concatenate([person.keypoints, person.scores[:, None]], 1)  # (K, 3)
            entries.append({
                "image_id": image.get("id", image.get("frame_id", frame.index)),
                "image_name": str(PurePosixPath(image.get("file_name", f"{result.image_prefix}/{frame.name}"))),
                "frame_index": frame.index,
                "category_id": 1,
                "bbox": [round(float(v), 2) for v in person.box],
                "score": round(person.score, 5),
                "keypoints": [round(float(v), 3) for v in joints.ravel()],
                "track_id": person.track_id,
            })  # fmt: skip
    return write_text_atomic(path, json.dumps(entries))


def process_video(
    estimator: VideoPoseEstimator,
    path: str | Path,
    json_path: str | Path,
    coco_path: str | Path | None = None,
    overlay: str | Path | None = None,
    progress: bool = False,
    allow_empty: bool = False,
) -> VideoResult:
    """Run the estimator and write its output files, all of them or none.

    The overlay is rendered into a temporary file and every output is renamed into place only once
    the run has succeeded, so a failed or killed run leaves no partial file under an output name
    (and the temporaries of a killed run are removed by the next one).

    Args:
        estimator: the configured estimator.
        path: video file, image folder or glob pattern.
        json_path: PoseTrack18 prediction file to write.
        coco_path: COCO result file to write, or None.
        overlay: mp4 overlay to render, or None.
        progress: show a progress bar.
        allow_empty: write the outputs even when no person was found in the whole video.

    Returns:
        The result (``messages`` holds the warnings about the input).

    Raises:
        VideoReadError: the input cannot be opened, no frame decodes, or (unless ``allow_empty``) no
            person was found; nothing is written.
    """
    outputs = [Path(p) for p in (json_path, coco_path, overlay) if p is not None]
    for output in outputs:
        remove_stale_temporaries(output)
    with contextlib.ExitStack() as stack:
        rendered = stack.enter_context(atomic_path(overlay)) if overlay is not None else None
        result = estimator.run(path, overlay=rendered, progress=progress)
        if not result.num_decoded:
            raise VideoReadError(f"{path}: no frame could be decoded")
        if not allow_empty and not result.track_ids:
            raise VideoReadError(
                f"{path}: no person found in {result.num_decoded} decoded frames; pass --boxes (SynthTrack writes "
                "detections/<split>.json) with --gt-json, another --detector, or --allow-empty"
            )
        write_posetrack_json(result, json_path)
        if coco_path is not None:
            write_coco_results(result, coco_path)
    return result
