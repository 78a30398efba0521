"""Readers for PoseTrack ground truth: typed frame / person records and a split with lookups.

Supported layouts, all with the same per-entry schema:

* PoseTrack18 / PoseTrack21 per-video files, ``annotations/{train,val}/<video>.json`` (pass the
  directory or one file);
* the merged single-file variant (many videos in one file);
* PoseTrack17 in the COCO-converted form used by video pose methods (8-digit, 1-based frame file
  names such as ``00000001.jpg``).

Schema. ``images[i]``: ``file_name`` (relative to the dataset root), ``id``, ``nframes`` required;
``vid_id`` (default: the name of the frame's directory), ``is_labeled`` (default true), ``width``,
``height``, ``ignore_regions_x`` / ``ignore_regions_y`` optional. ``annotations[j]``: ``image_id``,
``keypoints`` (K * 3 numbers) and ``bbox`` (x, y, w, h) required; ``track_id`` (default -1) and
``bbox_head`` optional. A missing ``annotations`` list means "no persons" (test splits).

Frame index. The number in the frame's file name, made 0-based: 6-digit names (PoseTrack18/21)
are 0-based already, 8-digit names (PoseTrack17) are 1-based.

Bad-input policy (messages name the file, the entry and the problem):

* raised as :class:`DataError`: unreadable file, invalid JSON, wrong top-level structure, any bad
  image entry (frames are the index every other lookup relies on), duplicate image ids or frames,
  an annotation without ``image_id`` / ``keypoints``, keypoints of the wrong length or not finite;
* skipped with a record in ``PoseTrackSplit.skipped`` (and one warning per file), or raised when
  ``strict=True``: an annotation whose ``bbox`` is missing or has non-positive size (these occur in
  the real PoseTrack files) and an annotation whose ``image_id`` is not an image of its file.

Shape symbols: K joints, P polygon vertices.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np

from famipose.data.errors import (
    DataError,
    SkippableDataError,
    SkippedEntry,
    count_skipped,
    get_field,
    get_int,
    get_numbers,
    json_type_name,
    load_json,
)
from famipose.data.keypoints import NUM_JOINTS

logger = logging.getLogger(__name__)

# PoseTrack17 frame files have 8 digits and start at 1; PoseTrack18/21 have 6 and start at 0.
_ONE_BASED_NAME_DIGITS = 8


@dataclass(frozen=True)
class FrameRecord:
    """One video frame (labelled or not) as listed in the annotation file.

    Attributes:
        image_id: the image ``id`` of the annotation file.
        video_id: the video (``vid_id``, or the frame's directory name when absent).
        frame_index: 0-based position of the frame in its video (from the file name).
        file_name: path relative to the dataset root, as written in the file.
        path: ``image_root / file_name``.
        nframes: number of frames of the video.
        is_labeled: whether persons of this frame are annotated.
        width: image width in pixels, when the file says.
        height: image height in pixels, when the file says.
        ignore_regions: polygons (P, 2) float32 ``(x, y)`` whose persons are not annotated.
    """

    image_id: int
    video_id: str
    frame_index: int
    file_name: str
    path: Path
    nframes: int
    is_labeled: bool = True
    width: int | None = None
    height: int | None = None
    ignore_regions: tuple[np.ndarray, ...] = field(default=(), compare=False, repr=False)

    def frame_path(self, frame_index: int) -> Path:
        """Path of another frame of the same video, named like this one.

        Args:
            frame_index: 0-based index of the wanted frame.

        Returns:
            The path; it may not exist.
        """
        digits = len(self.path.stem)
        number = frame_index + _first_frame_number(digits)
        return self.path.with_name(f"{number:0{digits}d}{self.path.suffix}")


@dataclass(frozen=True, eq=False)
class PersonRecord:
    """One annotated person in one frame.

    Attributes:
        image_id: the frame's image id.
        track_id: identity across the video (-1 when the file has none).
        keypoints: (K, 3) float32 ``(x, y, visibility)`` in image pixels; read-only.
        bbox: (4,) float32 ``(x, y, w, h)`` with ``w, h > 0``; read-only.
        head_bbox: (4,) float32 head box ``(x, y, w, h)``, or None; read-only.
    """

    image_id: int
    track_id: int
    keypoints: np.ndarray
    bbox: np.ndarray
    head_bbox: np.ndarray | None = None

    @property
    def num_visible(self) -> int:
        """Number of joints with visibility > 0."""
        return int((self.keypoints[:, 2] > 0).sum())


@dataclass(frozen=True, eq=False)
class VideoRecord:
    """The frames of one video, sorted by frame index.

    Attributes:
        video_id: the video.
        frames: frames sorted by ``frame_index`` (only those listed in the annotation files).
    """

    video_id: str
    frames: tuple[FrameRecord, ...]
    _by_index: Mapping[int, FrameRecord] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Build the frame-index lookup."""
        object.__setattr__(self, "_by_index", {frame.frame_index: frame for frame in self.frames})

    def frame_at(self, frame_index: int) -> FrameRecord | None:
        """The listed frame with this 0-based index, or None."""
        return self._by_index.get(frame_index)


@dataclass(frozen=True, eq=False)
class PoseTrackSplit:
    """All frames and persons of a split, with lookups. Build with :meth:`from_records`.

    Attributes:
        videos: video id → video.
        frames_by_id: image id → frame.
        persons_by_image: image id → persons of that frame (frames without persons are absent).
        skipped: entries the reader skipped, with reasons.
    """

    videos: Mapping[str, VideoRecord]
    frames_by_id: Mapping[int, FrameRecord]
    persons_by_image: Mapping[int, tuple[PersonRecord, ...]]
    skipped: tuple[SkippedEntry, ...] = ()

    @classmethod
    def from_records(
        cls,
        frames: Iterable[FrameRecord],
        persons: Iterable[PersonRecord],
        skipped: tuple[SkippedEntry, ...] = (),
    ) -> PoseTrackSplit:
        """Index frames and persons.

        Args:
            frames: frames with unique image ids and unique (video, frame index) pairs.
            persons: persons whose image ids are among the frames.
            skipped: entries skipped while reading.

        Returns:
            The split.

        Raises:
            ValueError: duplicate frames or a person of an unknown image (a caller's bug;
                ``load_posetrack`` reports these in file terms before calling this).
        """
        frames_by_id: dict[int, FrameRecord] = {}
        per_video: dict[str, dict[int, FrameRecord]] = {}
        for frame in frames:
            if frame.image_id in frames_by_id:
                raise ValueError(f"duplicate image id {frame.image_id}")
            video = per_video.setdefault(frame.video_id, {})
            if frame.frame_index in video:
                raise ValueError(f"duplicate frame {frame.frame_index} of video {frame.video_id}")
            frames_by_id[frame.image_id] = frame
            video[frame.frame_index] = frame
        persons_by_image: dict[int, list[PersonRecord]] = {}
        for person in persons:
            if person.image_id not in frames_by_id:
                raise ValueError(f"person of unknown image id {person.image_id}")
            persons_by_image.setdefault(person.image_id, []).append(person)
        videos = {
            video_id: VideoRecord(video_id, tuple(by_index[i] for i in sorted(by_index)))
            for video_id, by_index in sorted(per_video.items())
        }
        return cls(
            videos=MappingProxyType(videos),
            frames_by_id=MappingProxyType(frames_by_id),
            persons_by_image=MappingProxyType({k: tuple(v) for k, v in persons_by_image.items()}),
            skipped=skipped,
        )

    @property
    def frames(self) -> tuple[FrameRecord, ...]:
        """All frames, video by video, in frame order."""
        return tuple(frame for video in self.videos.values() for frame in video.frames)

    @property
    def num_persons(self) -> int:
        """Number of annotated persons."""
        return sum(len(persons) for persons in self.persons_by_image.values())

    def persons(self, image_id: int) -> tuple[PersonRecord, ...]:
        """Persons of a frame (empty for an unlabelled or unknown frame)."""
        return self.persons_by_image.get(image_id, ())

    def frame_at(self, video_id: str, frame_index: int) -> FrameRecord | None:
        """The listed frame of a video at a 0-based index, or None."""
        video = self.videos.get(video_id)
        return None if video is None else video.frame_at(frame_index)

    def skip_counts(self) -> dict[str, int]:
        """Number of skipped entries per reason."""
        return count_skipped(self.skipped)


def load_posetrack(path: str | Path, image_root: str | Path, strict: bool = False) -> PoseTrackSplit:
    """Read PoseTrack annotations: one JSON file, or a directory of per-video JSON files.

    Args:
        path: an annotation file, or a directory whose ``*.json`` files are read (not recursive).
        image_root: dataset root that the files' ``file_name`` entries are relative to.
        strict: raise on skippable annotation problems instead of skipping them.

    Returns:
        The split.

    Raises:
        DataError: bad input (see the module docstring for what is raised and what is skipped).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise DataError(path, "no .json annotation files in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(path, "no such file or directory")
    frames: list[FrameRecord] = []
    persons: list[PersonRecord] = []
    skipped: list[SkippedEntry] = []
    first_image: dict[int, str] = {}
    first_frame: dict[tuple[str, int], str] = {}
    for file in files:
        file_frames, file_persons, file_skipped = _read_file(file, Path(image_root), strict)
        for index, frame in enumerate(file_frames):
            entry = f"images[{index}] (id {frame.image_id})"
            key = (frame.video_id, frame.frame_index)
            if frame.image_id in first_image:
                raise DataError(file, f"duplicate image id (first in {first_image[frame.image_id]})", entry)
            if key in first_frame:
                raise DataError(
                    file, f"duplicate frame {key[1]} of video {key[0]!r} (first in {first_frame[key]})", entry
                )
            first_image[frame.image_id] = first_frame[key] = f"{file} images[{index}]"
        frames.extend(file_frames)
        persons.extend(file_persons)
        skipped.extend(file_skipped)
    return PoseTrackSplit.from_records(frames, persons, tuple(skipped))


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB.

    Args:
        path: image file.

    Returns:
        (H, W, 3) uint8 RGB image.

    Raises:
        DataError: the file is missing or does not decode as an image.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise DataError(path, f"cannot read image file ({err.strerror or err})") from err
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(path, "cannot decode image (corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _first_frame_number(digits: int) -> int:
    """Number in the file name of a video's first frame, from the name's digit count."""
    return 1 if digits == _ONE_BASED_NAME_DIGITS else 0


def _read_file(
    path: Path, image_root: Path, strict: bool
) -> tuple[list[FrameRecord], list[PersonRecord], list[SkippedEntry]]:
    """Parse one annotation file (the frames, the persons and the skipped annotations)."""
    document = load_json(path)
    if not isinstance(document, dict):
        raise DataError(path, f"top level must be an object, got {json_type_name(document)}")
    raw_images = get_field(document, "images", list, path, "top level")
    raw_annotations = get_field(document, "annotations", list, path, "top level", default=[])
    frames = [_parse_image(raw, path, image_root, i) for i, raw in enumerate(raw_images)]
    image_ids = {frame.image_id for frame in frames}
    persons: list[PersonRecord] = []
    skipped: list[SkippedEntry] = []
    for index, raw in enumerate(raw_annotations):
        try:
            persons.append(_parse_annotation(raw, path, index, image_ids))
        except SkippableDataError as err:
            if strict:
                raise
            logger.debug("skipped %s", err)
            skipped.append(err.to_skipped())
    if skipped:
        logger.warning("%s: skipped %d annotations: %s", path, len(skipped), count_skipped(tuple(skipped)))
    return frames, persons, skipped


def _parse_image(raw: Any, path: Path, image_root: Path, index: int) -> FrameRecord:
    """Turn ``images[index]`` into a FrameRecord."""
    entry = f"images[{index}]"
    if not isinstance(raw, dict):
        raise DataError(path, f"must be an object, got {json_type_name(raw)}", entry)
    image_id = get_int(raw, "id", path, entry)
    entry = f"images[{index}] (id {image_id})"
    file_name = get_field(raw, "file_name", str, path, entry)
    stem = Path(file_name).stem
    if not stem.isdigit():
        raise DataError(path, f"file_name {file_name!r} does not end in a frame number", entry)
    frame_index = int(stem) - _first_frame_number(len(stem))
    if frame_index < 0:
        raise DataError(path, f"file_name {file_name!r}: 8-digit frame numbers start at 1", entry)
    nframes = get_int(raw, "nframes", path, entry)
    if nframes < 1:
        raise DataError(path, f"nframes must be >= 1, got {nframes}", entry)
    video_id = raw.get("vid_id", Path(file_name).parent.name)
    if not isinstance(video_id, (str, int)) or isinstance(video_id, bool):
        raise DataError(path, f"vid_id must be a string, got {json_type_name(video_id)}", entry)
    return FrameRecord(
        image_id=image_id,
        video_id=str(video_id),
        frame_index=frame_index,
        file_name=file_name,
        path=image_root / file_name,
        nframes=nframes,
        is_labeled=_is_labeled(raw, path, entry),
        width=get_int(raw, "width", path, entry, optional=True),
        height=get_int(raw, "height", path, entry, optional=True),
        ignore_regions=_parse_ignore_regions(raw, path, entry),
    )


def _is_labeled(raw: dict[str, Any], path: Path, entry: str) -> bool:
    """The ``is_labeled`` flag: a boolean or 0/1 (converted files use integers); true when absent."""
    value = raw.get("is_labeled", True)
    if value not in (0, 1) or not isinstance(value, int):
        raise DataError(path, f"field 'is_labeled' must be a boolean, got {value!r}", entry)
    return bool(value)


def _parse_ignore_regions(raw: dict[str, Any], path: Path, entry: str) -> tuple[np.ndarray, ...]:
    """Polygons (P, 2) from the parallel ``ignore_regions_x`` / ``ignore_regions_y`` lists."""
    xs = get_field(raw, "ignore_regions_x", list, path, entry, default=[])
    ys = get_field(raw, "ignore_regions_y", list, path, entry, default=[])
    if len(xs) != len(ys):
        raise DataError(path, f"ignore_regions_x has {len(xs)} polygons, ignore_regions_y {len(ys)}", entry)
    polygons = []
    for i, (px, py) in enumerate(zip(xs, ys, strict=True)):
        name = f"ignore region {i}"
        x = get_numbers(px, None, path, entry, name)
        y = get_numbers(py, None, path, entry, name)
        if len(x) != len(y):
            raise DataError(path, f"{name} has {len(x)} x and {len(y)} y coordinates", entry)
        polygons.append(_readonly(np.stack([x, y], axis=-1)))  # (P, 2)
    return tuple(polygons)


def _parse_annotation(raw: Any, path: Path, index: int, image_ids: set[int]) -> PersonRecord:
    """Turn ``annotations[index]`` into a PersonRecord; skippable problems raise SkippableDataError."""
    entry = f"annotations[{index}]"
    if not isinstance(raw, dict):
        raise DataError(path, f"must be an object, got {json_type_name(raw)}", entry)
    annotation_id = raw.get("id")
    if isinstance(annotation_id, (int, str)) and not isinstance(annotation_id, bool):
        entry = f"annotations[{index}] (id {annotation_id})"
    image_id = get_int(raw, "image_id", path, entry)
    raw_keypoints = get_field(raw, "keypoints", list, path, entry)
    keypoints = get_numbers(raw_keypoints, NUM_JOINTS * 3, path, entry, "keypoints")
    track_id = get_int(raw, "track_id", path, entry, optional=True)
    raw_head = raw.get("bbox_head")
    head_bbox = None if raw_head is None else get_numbers(raw_head, 4, path, entry, "bbox_head")
    if "bbox" not in raw:
        raise SkippableDataError(path, "missing field 'bbox'", entry, kind="missing bbox")
    bbox = get_numbers(raw["bbox"], 4, path, entry, "bbox")
    if bbox[2] <= 0 or bbox[3] <= 0:
        raise SkippableDataError(
            path, f"bbox has non-positive size (w={bbox[2]}, h={bbox[3]})", entry, kind="non-positive bbox"
        )
    if image_id not in image_ids:
        raise SkippableDataError(
            path, f"image_id {image_id} is not an image of this file", entry, kind="unknown image_id"
        )
    return PersonRecord(
        image_id=image_id,
        track_id=-1 if track_id is None else track_id,
        keypoints=_readonly(keypoints.reshape(NUM_JOINTS, 3)),  # (K, 3)
        bbox=_readonly(bbox),
        head_bbox=None if head_bbox is None else _readonly(head_bbox),
    )


def _readonly(array: np.ndarray) -> np.ndarray:
    """Mark an array read-only (records are frozen) and return it."""
    array.setflags(write=False)
    return array
