"""Temporal windows: a person box in key frame t plus the support frames t + δ.

For every box (training: ground-truth persons with visible joints; evaluation: ground-truth or
detection boxes) :func:`build_windows` picks the support frames ``t + δ`` for a fixed δ set. A
support frame that lies outside the video (``[0, nframes)``) or whose image file does not exist is
replaced by the nearest existing frame between it and ``t`` (finally ``t`` itself), and the
replacement is counted in :class:`WindowStats`.

Support frames are found on disk next to the key frame (``FrameRecord.frame_path``), not in the
annotation file: PoseTrack annotates only some frames, and PoseTrack17's converted files list only
those.

Shape symbols: K joints, S support frames.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from famipose.data.detections import DetectionBoxes
from famipose.data.keypoints import NUM_JOINTS
from famipose.data.posetrack import FrameRecord, PersonRecord, PoseTrackSplit

DEFAULT_DELTAS: tuple[int, ...] = (-2, -1, 1, 2)


@dataclass(frozen=True)
class GroundTruthBoxes:
    """Box source: the annotated persons of each frame.

    Attributes:
        min_visible_joints: persons with fewer visible joints get no window.
    """

    min_visible_joints: int = 1


BoxSource = GroundTruthBoxes | DetectionBoxes


@dataclass(frozen=True, eq=False)
class Window:
    """One person box in a key frame and the frames that support it.

    Attributes:
        key_frame: the frame the box belongs to.
        deltas: requested offsets δ, one per support slot.
        support_offsets: offsets actually used after padding, one per slot (0 = the key frame).
        support_paths: image files of the support frames, in δ order.
        box: (4,) float32 ``(x, y, w, h)`` in image pixels.
        score: box confidence (1 for ground truth).
        track_id: the person's track id (-1 for detections).
        person: the annotated person, or None for a detection box.
    """

    key_frame: FrameRecord
    deltas: tuple[int, ...]
    support_offsets: tuple[int, ...]
    support_paths: tuple[Path, ...]
    box: np.ndarray
    score: float = 1.0
    track_id: int = -1
    person: PersonRecord | None = None

    @property
    def keypoints(self) -> np.ndarray:
        """(K, 3) ``(x, y, visibility)`` of the person; all zeros for a detection box."""
        if self.person is None:
            return np.zeros((NUM_JOINTS, 3), dtype=np.float32)
        return self.person.keypoints

    @property
    def num_padded(self) -> int:
        """Number of support slots that use another frame than ``t + δ``."""
        return sum(used != wanted for used, wanted in zip(self.support_offsets, self.deltas, strict=True))


@dataclass(frozen=True)
class WindowStats:
    """How many windows and support slots had to be padded.

    Attributes:
        num_windows: windows built.
        num_slots: support slots (windows × len(deltas)).
        num_padded_windows: windows with at least one padded slot.
        num_padded_slots: slots that use another frame than ``t + δ``.
        num_outside_video: padded slots whose ``t + δ`` lies outside ``[0, nframes)``.
        num_missing_files: padded slots whose ``t + δ`` lies inside the video but has no image file.
    """

    num_windows: int = 0
    num_slots: int = 0
    num_padded_windows: int = 0
    num_padded_slots: int = 0
    num_outside_video: int = 0
    num_missing_files: int = 0


def resolve_support_index(
    key_index: int, delta: int, nframes: int, frame_exists: Callable[[int], bool]
) -> int:
    """The frame used for support slot ``key_index + delta``.

    Walks from ``key_index + delta`` toward ``key_index`` and returns the first frame inside
    ``[0, nframes)`` whose image exists; the key frame itself ends the walk.

    Args:
        key_index: 0-based index t of the key frame.
        delta: requested offset δ.
        nframes: number of frames of the video.
        frame_exists: whether the image of a 0-based frame index exists.

    Returns:
        The 0-based frame index to use.
    """
    step = -1 if delta > 0 else 1
    for index in range(key_index + delta, key_index, step):
        if 0 <= index < nframes and frame_exists(index):
            return index
    return key_index


def build_windows(
    split: PoseTrackSplit,
    deltas: Sequence[int] = DEFAULT_DELTAS,
    boxes_source: BoxSource = GroundTruthBoxes(),
    file_exists: Callable[[Path], bool] | None = None,
) -> tuple[list[Window], WindowStats]:
    """Build one window per box of the split.

    Args:
        split: frames and persons.
        deltas: support offsets δ, in the order the model receives the supports; none for the
            single-frame model (its windows hold the key frame alone).
        boxes_source: :class:`GroundTruthBoxes`, or detections from ``detections.load_detections``.
        file_exists: whether an image file exists; default: one directory listing per video
            directory, made during this call.

    Returns:
        The windows (video by video, frame order, box order) and the padding statistics.
    """
    deltas = tuple(int(delta) for delta in deltas)
    exists = file_exists or _directory_listing_lookup()
    windows = []
    outside = missing = 0
    for frame, box, score, track_id, person in _boxes(split, boxes_source):
        offsets = []
        for delta in deltas:
            target = frame.frame_index + delta
            index = resolve_support_index(
                frame.frame_index, delta, frame.nframes, lambda i, f=frame: exists(f.frame_path(i))
            )
            offsets.append(index - frame.frame_index)
            if index != target:
                if 0 <= target < frame.nframes:
                    missing += 1
                else:
                    outside += 1
        paths = tuple(frame.frame_path(frame.frame_index + offset) for offset in offsets)
        windows.append(Window(frame, deltas, tuple(offsets), paths, box, score, track_id, person))
    stats = WindowStats(
        num_windows=len(windows),
        num_slots=len(windows) * len(deltas),
        num_padded_windows=sum(window.num_padded > 0 for window in windows),
        num_padded_slots=outside + missing,
        num_outside_video=outside,
        num_missing_files=missing,
    )
    return windows, stats


def _boxes(
    split: PoseTrackSplit, source: BoxSource
) -> Iterator[tuple[FrameRecord, np.ndarray, float, int, PersonRecord | None]]:
    """(frame, box (4,), score, track id, person) for every box of the source, in split order."""
    for frame in split.frames:
        if isinstance(source, GroundTruthBoxes):
            for person in split.persons(frame.image_id):
                if person.num_visible >= source.min_visible_joints:
                    yield frame, person.bbox, 1.0, person.track_id, person
        elif frame.image_id in source.per_image:
            detections = source.per_image[frame.image_id]
            for box, score in zip(detections.boxes, detections.scores, strict=True):
                yield frame, box, float(score), -1, None


def _directory_listing_lookup() -> Callable[[Path], bool]:
    """A file-existence test that lists each directory once (a missing directory is empty)."""
    listings: dict[Path, frozenset[str]] = {}

    def exists(path: Path) -> bool:
        names = listings.get(path.parent)
        if names is None:
            try:
                names = frozenset(os.listdir(path.parent))
            except OSError:
                names = frozenset()
            listings[path.parent] = names
        return path.name in names

    return exists
