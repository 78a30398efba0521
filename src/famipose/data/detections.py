"""Person boxes for evaluation: detector results (COCO result list) or ground-truth boxes.

A COCO result file is a JSON list of ``{"image_id" | "image_name" | "frame_id", "bbox": [x, y, w,
h], "score", "category_id"?}``. An entry is matched to a frame of the split by ``image_id``;
without it by ``image_name`` (compared on its last two path components, ``<video>/<frame>.jpg``,
so any dataset-root prefix works); without that by ``frame_id`` taken as an image id (PoseTrack18
uses the same number for both). Entries with a ``category_id`` other than 1 (person) or a score
below the threshold are dropped.

Bad-input policy: a file that is not a JSON list, an entry that is not an object, lacks ``bbox`` /
``score`` / every image key, or holds non-numbers raises :class:`DataError`; an entry with a
non-positive box size or naming an image that is not in the split is skipped with a record in
``DetectionBoxes.skipped`` (raised when ``strict=True``).

Shape symbols: N boxes of one image.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

import numpy as np

from famipose.data.errors import (
    DataError,
    SkippableDataError,
    SkippedEntry,
    count_skipped,
    get_field,
    get_int,
    get_number,
    get_numbers,
    json_type_name,
    load_json,
)
from famipose.data.posetrack import PoseTrackSplit

logger = logging.getLogger(__name__)

PERSON_CATEGORY_ID = 1


@dataclass(frozen=True, eq=False)
class ImageBoxes:
    """The person boxes of one image.

    Attributes:
        boxes: (N, 4) float32 ``(x, y, w, h)`` in image pixels, ``w, h > 0``.
        scores: (N,) float32 confidences (1 for ground truth).
    """

    boxes: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True, eq=False)
class DetectionBoxes:
    """Person boxes per image of a split.

    Attributes:
        per_image: image id → boxes; images without kept boxes are absent.
        num_entries: entries read (kept, dropped by score or category, and skipped).
        skipped: entries skipped as bad input, with reasons.
    """

    per_image: Mapping[int, ImageBoxes]
    num_entries: int
    skipped: tuple[SkippedEntry, ...] = ()

    @property
    def num_kept(self) -> int:
        """Number of boxes kept over all images."""
        return sum(len(item.scores) for item in self.per_image.values())


def load_detections(
    path: str | Path, split: PoseTrackSplit, score_threshold: float = 0.2, strict: bool = False
) -> DetectionBoxes:
    """Read a COCO result file of person detections.

    Args:
        path: the JSON file.
        split: the split whose frames the detections belong to.
        score_threshold: keep boxes with ``score >= score_threshold``.
        strict: raise on skippable entries instead of skipping them.

    Returns:
        The kept boxes per image.

    Raises:
        DataError: bad input (see the module docstring).
    """
    return parse_detections(load_json(Path(path)), split, Path(path), score_threshold, strict)


def parse_detections(
    entries: Any,
    split: PoseTrackSplit,
    source: str | Path = "<detections>",
    score_threshold: float = 0.2,
    strict: bool = False,
) -> DetectionBoxes:
    """Turn a decoded COCO result list into boxes per image.

    Args:
        entries: the decoded JSON document (a list of result objects).
        split: the split whose frames the detections belong to.
        source: where the entries came from, for messages.
        score_threshold: keep boxes with ``score >= score_threshold``.
        strict: raise on skippable entries instead of skipping them.

    Returns:
        The kept boxes per image.

    Raises:
        DataError: bad input (see the module docstring).
    """
    if not isinstance(entries, list):
        raise DataError(source, f"top level must be a list of results, got {json_type_name(entries)}")
    by_name = {_name_key(frame.file_name): frame.image_id for frame in split.frames}
    kept: dict[int, list[tuple[np.ndarray, float]]] = {}
    skipped: list[SkippedEntry] = []
    for index, raw in enumerate(entries):
        try:
            match = _parse_entry(raw, source, index, split, by_name)
        except SkippableDataError as err:
            if strict:
                raise
            skipped.append(err.to_skipped())
            continue
        if match is not None and match[2] >= score_threshold:
            image_id, box, score = match
            kept.setdefault(image_id, []).append((box, score))
    if skipped:
        logger.warning("%s: skipped %d detections: %s", source, len(skipped), count_skipped(tuple(skipped)))
    per_image = {
        image_id: ImageBoxes(
            boxes=np.stack([box for box, _ in items]).astype(np.float32),  # (N, 4)
            scores=np.array([score for _, score in items], dtype=np.float32),  # (N,)
        )
        for image_id, items in kept.items()
    }
    return DetectionBoxes(MappingProxyType(per_image), len(entries), tuple(skipped))


def boxes_from_persons(split: PoseTrackSplit, min_visible_joints: int = 1) -> DetectionBoxes:
    """Ground-truth person boxes as detections with score 1.

    Args:
        split: the split.
        min_visible_joints: keep persons with at least this many visible joints.

    Returns:
        The boxes per image.
    """
    per_image = {}
    num_entries = 0
    for image_id, persons in split.persons_by_image.items():
        num_entries += len(persons)
        chosen = [person.bbox for person in persons if person.num_visible >= min_visible_joints]
        if chosen:
            per_image[image_id] = ImageBoxes(np.stack(chosen), np.ones(len(chosen), dtype=np.float32))
    return DetectionBoxes(MappingProxyType(per_image), num_entries)


def _parse_entry(
    raw: Any, source: str | Path, index: int, split: PoseTrackSplit, by_name: Mapping[str, int]
) -> tuple[int, np.ndarray, float] | None:
    """One result entry → (image id, box (4,), score), or None when it is not a person."""
    entry = f"[{index}]"
    if not isinstance(raw, dict):
        raise DataError(source, f"must be an object, got {json_type_name(raw)}", entry)
    category = get_int(raw, "category_id", source, entry, optional=True)
    score = get_number(raw, "score", source, entry)
    box = get_numbers(get_field(raw, "bbox", object, source, entry), 4, source, entry, "bbox")
    image_id = _image_id(raw, source, entry, by_name)
    if category is not None and category != PERSON_CATEGORY_ID:
        return None
    if box[2] <= 0 or box[3] <= 0:
        raise SkippableDataError(
            source, f"bbox has non-positive size (w={box[2]}, h={box[3]})", entry, kind="non-positive bbox"
        )
    if image_id is None or image_id not in split.frames_by_id:
        raise SkippableDataError(source, "the image is not in the split", entry, kind="unknown image")
    return image_id, box, score


def _image_id(raw: dict[str, Any], source: str | Path, entry: str, by_name: Mapping[str, int]) -> int | None:
    """The image id an entry refers to (None when its name matches no frame)."""
    if raw.get("image_id") is not None:
        return get_int(raw, "image_id", source, entry)
    if raw.get("image_name") is not None:
        return by_name.get(_name_key(get_field(raw, "image_name", str, source, entry)))
    if raw.get("frame_id") is not None:
        return get_int(raw, "frame_id", source, entry)
    raise DataError(source, "missing field 'image_id' (or 'image_name' / 'frame_id')", entry)


def _name_key(file_name: str) -> str:
    """``<video>/<frame>`` part of a frame path, for matching names with different root prefixes."""
    return "/".join(PurePosixPath(file_name.replace("\\", "/")).parts[-2:])
