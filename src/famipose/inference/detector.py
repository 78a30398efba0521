"""Person boxes for video inference: a box file, a built-in detector, or a detector from local weights.

Built-in detectors: ``hog``, OpenCV's bundled HOG people detector (OpenCV 4 only: OpenCV 5 dropped
``cv2.HOGDescriptor`` from its main package), and ``motion``, moving upright blobs found by
background subtraction (static cameras; works on any OpenCV). From local weights (never
downloaded, :mod:`famipose.inference.learned_detectors`): the torchvision COCO detectors of
:data:`TORCHVISION_DETECTORS` and ``onnx``, a YOLO-style ONNX model. ``auto`` runs the best
torchvision detector whose weights are in the torch hub cache, else ``hog`` when OpenCV has it,
else ``motion``.

Every detector maps a :class:`~famipose.inference.video_io.Frame` to :class:`Detections`
(:func:`detect_frames` gives several frames to a :class:`BatchDetector` at once); the boxes are
then cleaned by :func:`clean_detections` (score threshold, clipping to the image, NMS).

Box files are read by :func:`load_box_file` in two layouts:

* a COCO result list ``[{"bbox": [x, y, w, h], "score", "category_id"?, <frame key>}]`` where
  the frame key is ``frame_index`` (0-based), ``image_id`` / ``frame_id`` (the position of that id
  in the GT ``images`` list when one is given, else taken as the frame index) or ``image_name``
  (matched by base name against the GT images or the input's frame names, else the trailing
  digits of its stem, so ``images/val/v/000012.jpg`` is frame 12);
* a PoseTrack18 annotation file (``images`` + ``annotations`` with ``bbox``): its GT boxes, score 1,
  each matched to the position of its ``image_id`` in that file's own ``images`` list.

Shape symbols: N boxes of one frame.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np
import torch
import torchvision.ops

from famipose.data.errors import DataError, get_field, get_int, get_number, get_numbers, json_type_name, load_json
from famipose.geometry import xywh_to_xyxy
from famipose.inference.video_io import Frame

logger = logging.getLogger(__name__)

PERSON_CATEGORY_ID = 1
# torchvision COCO detectors, best COCO box AP first (the order ``auto`` tries them in).
TORCHVISION_DETECTORS: tuple[str, ...] = (
    "fasterrcnn_resnet50_fpn_v2",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "fasterrcnn_resnet50_fpn",
    "retinanet_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "ssd300_vgg16",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "ssdlite320_mobilenet_v3_large",
)
DETECTORS: tuple[str, ...] = ("auto", "hog", "motion", "none", "onnx", *TORCHVISION_DETECTORS)
_TRAILING_DIGITS = re.compile(r"(\d+)\D*$")
_MOTION_THRESHOLD = 25  # grey levels a pixel must change by to count as moving


@dataclass(frozen=True, eq=False)
class Detections:
    """Person boxes of one frame.

    Attributes:
        boxes: (N, 4) float32 ``(x, y, w, h)`` in image pixels.
        scores: (N,) float32 confidences.
    """

    boxes: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        """No boxes."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        """Number of boxes."""
        return len(self.scores)


class Detector(Protocol):
    """Anything that finds person boxes in a frame."""

    def __call__(self, frame: Frame) -> Detections:
        """Boxes of ``frame`` (not yet cleaned)."""
        ...


@runtime_checkable
class BatchDetector(Detector, Protocol):
    """A detector that is faster on several frames at once (the learned ones)."""

    def detect_batch(self, frames: Sequence[Frame]) -> list[Detections]:
        """Boxes of each frame, in order (not yet cleaned)."""
        ...


def detect_frames(detector: Detector, frames: Sequence[Frame]) -> list[Detections]:
    """Boxes of several frames in order: one batched call where the detector has one."""
    if isinstance(detector, BatchDetector):
        return detector.detect_batch(frames)
    return [detector(frame) for frame in frames]


def clean_detections(
    detections: Detections,
    image_size: tuple[int, int],
    score_threshold: float = 0.4,
    nms_iou: float | None = 0.5,
    min_size: float = 4.0,
) -> tuple[Detections, int]:
    """Drop weak boxes and boxes outside the image, and suppress duplicates.

    Kept boxes are not clipped: a person partly outside the frame keeps a crop centred on the whole
    box, as in training (ground-truth boxes may extend past the image).

    Args:
        detections: raw boxes of one frame.
        image_size: image ``(w, h)``.
        score_threshold: keep ``score >= score_threshold``.
        nms_iou: boxes overlapping a higher-scoring box by more than this IoU are removed; ``None``
            keeps overlapping boxes (ground-truth boxes of persons that cross).
        min_size: boxes whose part inside the image is narrower or lower than this are dropped.

    Returns:
        The kept boxes, highest score first, and how many were dropped for lying (almost)
        outside the image.
    """
    width, height = image_size
    xyxy = xywh_to_xyxy(detections.boxes)  # (N, 4)
    visible = np.clip(xyxy, 0.0, [width, height, width, height])
    inside = ((visible[:, 2:] - visible[:, :2]) >= min_size).all(axis=1)
    confident = detections.scores >= score_threshold
    keep = np.flatnonzero(inside & confident)
    scores = torch.from_numpy(detections.scores[keep].astype(np.float64))
    if nms_iou is None:
        order = torch.argsort(scores, descending=True, stable=True).numpy()
    else:
        order = torchvision.ops.nms(torch.from_numpy(xyxy[keep].astype(np.float64)), scores, nms_iou).numpy()
    kept = keep[order]
    return (
        Detections(detections.boxes[kept].astype(np.float32), detections.scores[kept].astype(np.float32)),
        int((confident & ~inside).sum()),
    )


class HOGPersonDetector:
    """OpenCV's bundled HOG + linear SVM people detector (Dalal & Triggs); needs no download.

    The image is resized to ``working_height`` rows first (the detector window is 64x128 pixels,
    so this sets the smallest person found). Scores are ``sigmoid(svm margin)``: every reported
    hit has a positive margin, so scores lie in (0.5, 1).

    Args:
        working_height: image height the detector runs at.
        scale: pyramid step between detection scales.
        win_stride: window step in pixels.
    """

    def __init__(self, working_height: int = 480, scale: float = 1.08, win_stride: int = 8) -> None:
        self.working_height = working_height
        self.scale = scale
        self.win_stride = win_stride
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __call__(self, frame: Frame) -> Detections:
        """Detect people in one frame."""
        height, width = frame.image.shape[:2]
        factor = self.working_height / height
        gray = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
        resized = cv2.resize(gray, (max(1, round(width * factor)), self.working_height))
        stride = (self.win_stride, self.win_stride)
        rects, weights = self._hog.detectMultiScale(resized, winStride=stride, padding=stride, scale=self.scale)
        if len(rects) == 0:
            return Detections.empty()
        boxes = np.asarray(rects, np.float32).reshape(-1, 4) / factor
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))
        return Detections(boxes, scores.astype(np.float32))


class MotionPersonDetector:
    """Moving, roughly upright blobs as person boxes: a weight-free detector for static cameras.

    A Gaussian-mixture background model (``cv2.createBackgroundSubtractorMOG2``, updated at the
    rate ``1 / history``) marks foreground pixels; after morphological clean-up each connected blob
    at least ``min_height`` of the image tall and no wider than it is tall becomes a box scored by
    its fill ratio (foreground pixels / box area, in (0, 1]). A blob must also hold pixels that
    changed since the previous frame (at least ``min_motion`` of its area): that drops the "ghost"
    a person leaves where the first frame showed them. The first frame only initialises the model;
    frames must come in order.

    Args:
        working_height: image height the detector runs at.
        history: frames over which the background model adapts.
        min_height: smallest blob height as a fraction of the image height.
        min_motion: smallest fraction of a blob's pixels that changed since the previous frame.
    """

    def __init__(
        self, working_height: int = 240, history: int = 100, min_height: float = 0.08, min_motion: float = 0.02
    ) -> None:
        self.working_height = working_height
        self.min_height = min_height
        self.min_motion = min_motion
        self.learning_rate = 1.0 / history
        self._subtractor = cv2.createBackgroundSubtractorMOG2(history=history, detectShadows=False)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self._previous: np.ndarray | None = None

    def __call__(self, frame: Frame) -> Detections:
        """Detect moving people in the next frame of the sequence."""
        height, width = frame.image.shape[:2]
        factor = self.working_height / height
        small = cv2.resize(frame.image, (max(1, round(width * factor)), self.working_height))
        previous, self._previous = self._previous, small
        # OpenCV's default rate (1 / frames seen) would absorb a slowly moving person in a few frames.
        mask = self._subtractor.apply(small, learningRate=1.0 if previous is None else self.learning_rate)
        if previous is None:
            return Detections.empty()
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        mask = cv2.dilate(mask, self._kernel, iterations=2)
        count, labels, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8))
        changed = cv2.absdiff(small, previous).max(axis=2) > _MOTION_THRESHOLD  # (h, w)
        moving = np.bincount(labels[changed], minlength=count)[1:]  # changed pixels per blob
        x, y, w, h, area = stats[1:].T.astype(np.float32)  # background label 0 dropped
        keep = (h >= self.min_height * self.working_height) & (w <= h) & (moving >= self.min_motion * area)
        boxes = np.stack([x, y, w, h], axis=1)[keep] / factor  # (N, 4)
        return Detections(boxes.astype(np.float32), (area / (w * h))[keep].astype(np.float32))


def hog_available() -> bool:
    """Whether this OpenCV build has the HOG people detector (OpenCV 4)."""
    return hasattr(cv2, "HOGDescriptor")


@dataclass
class BoxFileDetector:
    """Boxes read from a file, looked up by frame index.

    Attributes:
        source: the file, for messages.
        per_frame: frame index → boxes.
        num_entries: entries read from the file.
        num_skipped: entries skipped (non-positive size, other category, unknown image).
        ground_truth: the boxes are annotations (persons may overlap: no duplicate suppression).
        seen: frame indices the detector was asked about.
    """

    source: str
    per_frame: Mapping[int, Detections]
    num_entries: int
    num_skipped: int = 0
    ground_truth: bool = False
    seen: set[int] = field(default_factory=set)

    def __call__(self, frame: Frame) -> Detections:
        """The file's boxes for this frame (none when it lists no box for it)."""
        self.seen.add(frame.index)
        return self.per_frame.get(frame.index, Detections.empty())

    def unused_frames(self) -> list[int]:
        """Frame indices that have boxes in the file but were never decoded from the input."""
        return sorted(set(self.per_frame) - self.seen)


@dataclass(frozen=True)
class FrameNames:
    """How box-file entries find their frame.

    Attributes:
        by_id: image id → frame index (from a GT ``images`` list).
        by_name: image base name → frame index.
    """

    by_id: Mapping[int, int] = field(default_factory=dict)
    by_name: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_gt_images(cls, images: Sequence[Mapping[str, Any]]) -> FrameNames:
        """Index a PoseTrack18 ``images`` list: entry ``i`` is frame ``i``."""
        by_id = {}
        for index, image in enumerate(images):
            image_id = image.get("id", image.get("frame_id"))
            if image_id is not None:
                by_id[int(image_id)] = index
        by_name = {PurePosixPath(str(image.get("file_name", ""))).name: i for i, image in enumerate(images)}
        return cls(by_id, by_name)

    def merged(self, other: FrameNames) -> FrameNames:
        """This mapping, with ``other``'s entries added where this one has none."""
        return FrameNames({**other.by_id, **self.by_id}, {**other.by_name, **self.by_name})

    def frame_of_name(self, name: str) -> int | None:
        """Frame index of an image name (base name match, else trailing digits of the stem)."""
        base = PurePosixPath(name.replace("\\", "/")).name
        if base in self.by_name:
            return self.by_name[base]
        match = _TRAILING_DIGITS.search(PurePosixPath(base).stem)
        return int(match.group(1)) if match else None


def _frame_index(raw: Mapping[str, Any], names: FrameNames, source: Path, entry: str) -> int | None:
    """The frame an entry refers to (None when its image is unknown)."""
    if raw.get("frame_index") is not None:
        return get_int(dict(raw), "frame_index", source, entry)
    for key in ("image_id", "frame_id"):
        if raw.get(key) is not None:
            image_id = get_int(dict(raw), key, source, entry)
            return names.by_id.get(image_id) if names.by_id else image_id
    if raw.get("image_name") is not None:
        return names.frame_of_name(get_field(dict(raw), "image_name", str, source, entry))
    raise DataError(source, "missing field 'frame_index' (or 'image_id' / 'frame_id' / 'image_name')", entry)


def _entries(document: Any, names: FrameNames, source: Path) -> tuple[list[Any], FrameNames, bool]:
    """The box entries of either layout, the frame mapping to use and whether they are GT boxes."""
    if isinstance(document, list):
        return document, names, False
    if isinstance(document, dict) and isinstance(document.get("annotations"), list):
        images = check_images(get_field(document, "images", list, source, "top level"), source)
        return document["annotations"], FrameNames.from_gt_images(images).merged(names), True
    raise DataError(
        source, f"expected a COCO result list or a PoseTrack18 annotation file, got {json_type_name(document)}"
    )


def check_images(images: list[Any], source: str | Path) -> list[dict[str, Any]]:
    """A PoseTrack18 ``images`` list whose entries are objects with integer ids (when given).

    Raises:
        DataError: an entry is not an object, or its ``id`` / ``frame_id`` is not an integer.
    """
    for index, image in enumerate(images):
        entry = f"images[{index}]"
        if not isinstance(image, dict):
            raise DataError(source, f"must be an object, got {json_type_name(image)}", entry)
        for key in ("id", "frame_id"):
            get_int(image, key, source, entry, optional=True)
    return images


def _has_visible_joint(person: dict[str, Any]) -> bool:
    """Whether a GT person has a joint with visibility > 0 (or no ``keypoints`` list at all)."""
    keypoints = person.get("keypoints")
    if not isinstance(keypoints, list) or not keypoints:
        return True
    return any(isinstance(v, int | float) and v > 0 for v in keypoints[2::3])


def load_box_file(path: str | Path, names: FrameNames | None = None) -> BoxFileDetector:
    """Read person boxes for one video from a COCO result list or a PoseTrack18 annotation file.

    From an annotation file, persons whose keypoints are all invisible are left out, as
    ``famipose test --boxes gt`` gives them no window.

    Args:
        path: the JSON file.
        names: how ids and image names map to frames; for COCO results that use PoseTrack image
            ids, give the GT ``images`` list (:meth:`FrameNames.from_gt_images`).

    Returns:
        A detector serving the file's boxes by frame index.

    Raises:
        DataError: the file is unreadable, not one of the two layouts, or an entry is malformed
            (not an object, missing ``bbox`` or its frame key, non-numbers).
    """
    source = Path(path)
    entries, names, ground_truth = _entries(load_json(source), names or FrameNames(), source)
    kept: dict[int, list[tuple[np.ndarray, float]]] = {}
    skipped = 0
    for index, raw in enumerate(entries):
        entry = f"[{index}]"
        if not isinstance(raw, dict):
            raise DataError(source, f"must be an object, got {json_type_name(raw)}", entry)
        if ground_truth and ("bbox" not in raw or not _has_visible_joint(raw)):
            skipped += 1
            continue
        box = get_numbers(get_field(raw, "bbox", object, source, entry), 4, source, entry, "bbox")
        score = 1.0 if ground_truth else get_number(raw, "score", source, entry)
        category = get_int(raw, "category_id", source, entry, optional=True)
        frame = _frame_index(raw, names, source, entry)
        if frame is None or frame < 0 or box[2] <= 0 or box[3] <= 0 or category not in (None, PERSON_CATEGORY_ID):
            skipped += 1
            continue
        kept.setdefault(frame, []).append((box, score))
    if skipped:
        logger.warning("%s: skipped %d of %d box entries (empty box, no visible joint, other category or "
                       "unknown image)", source, skipped, len(entries))
    per_frame = {
        frame: Detections(
            np.stack([box for box, _ in items]).astype(np.float32),  # (N, 4)
            np.array([score for _, score in items], np.float32),  # (N,)
        )
        for frame, items in kept.items()
    }
    return BoxFileDetector(str(source), per_frame, len(entries), skipped, ground_truth)


def make_detector(
    name: str,
    boxes: str | Path | None = None,
    names: FrameNames | None = None,
    weights: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> Detector:
    """The person detector for ``--boxes`` / ``--detector`` / ``--detector-weights``.

    ``auto`` runs the first of :data:`TORCHVISION_DETECTORS` whose weights are in the torch hub
    cache, else ``hog`` (``motion`` on an OpenCV without HOG), and logs which one in a line.

    Args:
        name: one of :data:`DETECTORS`; ignored when ``boxes`` is given.
        boxes: a box file (see :func:`load_box_file`).
        names: frame mapping for the box file.
        weights: the weights of ``onnx`` (required) or a torchvision detector (default: the
            torch hub cache).
        device: where a torchvision detector runs.

    Returns:
        The detector.

    Raises:
        ValueError: an unknown name, ``"none"`` without a box file, ``"hog"`` on an OpenCV
            without it, or weights for a detector that takes none.
        DataError: the box file is malformed.
        CheckpointError: detector weights are missing, unreadable or do not fit.
    """
    from famipose.inference import learned_detectors as learned  # it imports this module's Detections

    if boxes is not None:
        return load_box_file(boxes, names)
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; valid names: {', '.join(DETECTORS)}")
    if weights is not None and name not in ("onnx", *TORCHVISION_DETECTORS):
        raise ValueError(f"--detector-weights needs --detector onnx or a torchvision detector, not {name!r}")
    if name == "none":
        raise ValueError("detector 'none' needs a box file (--boxes DETECTIONS.json)")
    if name == "onnx":
        if weights is None:
            raise ValueError("detector 'onnx' needs --detector-weights MODEL.onnx")
        return learned.OnnxYoloDetector(weights)
    if name in TORCHVISION_DETECTORS:
        return learned.TorchvisionDetector(learned.build_torchvision_detector(name, weights), device)
    if name == "auto":
        cached = next((tv for tv in TORCHVISION_DETECTORS if learned.find_hub_weights(tv) is not None), None)
        if cached is not None:
            logger.info("detector auto: %s, weights from %s", cached, learned.hub_checkpoint_dir())
            return learned.TorchvisionDetector(learned.build_torchvision_detector(cached), device)
        name = "hog" if hog_available() else "motion"
        logger.info("detector auto: %s (no torchvision detection weights in %s)", name, learned.hub_checkpoint_dir())
    if name == "hog" and not hog_available():
        raise ValueError(
            f"OpenCV {cv2.__version__} has no HOG people detector (OpenCV 5 removed cv2.HOGDescriptor); "
            "install opencv-python-headless<5, or use --detector motion or --boxes"
        )
    return MotionPersonDetector() if name == "motion" else HOGPersonDetector()
