"""Tests for famipose.data.windows."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from famipose.data.detections import load_detections, parse_detections
from famipose.data.posetrack import PoseTrackSplit, load_posetrack
from famipose.data.windows import GroundTruthBoxes, WindowStats, build_windows, resolve_support_index

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "posetrack18_sample"
needs_sample = pytest.mark.skipif(
    not SAMPLE.is_dir(), reason=f"PoseTrack18 sample not found at {SAMPLE} (shared data folder absent)"
)
NFRAMES = 6
MISSING_FRAME = 3
LABELLED = (0, 2, 5)


def _keypoints(num_visible: int) -> list[float]:
    return [float(v) for j in range(17) for v in (10 + j, 20 + j, 1 if j < num_visible else 0)]


@pytest.fixture
def video_split(tmp_path: Path) -> PoseTrackSplit:
    """One 6-frame video on disk without frame 3; frames 0, 2, 5 labelled (one person each)."""
    folder = tmp_path / "images" / "train" / "vid"
    folder.mkdir(parents=True)
    for index in range(NFRAMES):
        if index != MISSING_FRAME:
            cv2.imwrite(str(folder / f"{index:06d}.jpg"), np.full((8, 8, 3), 10 * index, np.uint8))
    images = [
        {"file_name": f"images/train/vid/{i:06d}.jpg", "id": 100 + i, "nframes": NFRAMES, "vid_id": "vid"}
        for i in range(NFRAMES)
    ]
    annotations = [
        {"image_id": 100 + i, "keypoints": _keypoints(17), "bbox": [1, 1, 5, 6], "track_id": i} for i in LABELLED
    ]
    annotations.append({"image_id": 102, "keypoints": _keypoints(0), "bbox": [1, 1, 5, 6], "track_id": 9})
    path = tmp_path / "vid.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return load_posetrack(path, tmp_path)


@pytest.mark.parametrize(
    ("key", "delta", "nframes", "present", "expected"),
    [
        (5, 2, 10, range(10), 7),  # inside, present
        (0, -2, 10, range(10), 0),  # left edge: falls back to t
        (1, -2, 10, range(10), 0),  # left edge: nearest existing frame toward t
        (8, 2, 10, range(10), 9),  # right edge
        (9, 2, 10, range(10), 9),
        (4, 2, 10, [4, 5], 5),  # missing file
        (4, -3, 10, [2, 4], 2),
        (4, -3, 10, [4], 4),
        (4, 0, 10, [], 4),  # delta 0 is the key frame
    ],
)
def test_resolve_support_index(key: int, delta: int, nframes: int, present: range, expected: int) -> None:
    assert resolve_support_index(key, delta, nframes, lambda i: i in set(present)) == expected


def test_padding_at_both_edges_and_for_a_missing_middle_frame(video_split: PoseTrackSplit) -> None:
    windows, stats = build_windows(video_split, (-2, -1, 1, 2))
    assert [w.key_frame.frame_index for w in windows] == list(LABELLED)  # the 0-visible person has no window
    offsets = {w.key_frame.frame_index: w.support_offsets for w in windows}
    assert offsets[0] == (0, 0, 1, 2)  # left edge
    assert offsets[2] == (-2, -1, 0, 2)  # frame 3 is missing: falls back to t
    assert offsets[5] == (-1, -1, 0, 0)  # right edge, and frame 3 missing for δ = -2 → frame 4
    assert stats == WindowStats(
        num_windows=3,
        num_slots=12,
        num_padded_windows=3,
        num_padded_slots=6,
        num_outside_video=4,
        num_missing_files=2,
    )
    assert [w.num_padded for w in windows] == [2, 1, 3]
    last = windows[2]
    assert [p.name for p in last.support_paths] == ["000004.jpg", "000004.jpg", "000005.jpg", "000005.jpg"]
    assert all(p.is_file() for w in windows for p in w.support_paths)
    assert last.deltas == (-2, -1, 1, 2) and last.track_id == 5 and last.score == 1.0
    np.testing.assert_array_equal(last.box, [1, 1, 5, 6])
    assert last.person is not None and last.keypoints is last.person.keypoints


def test_no_padding_inside_the_video(video_split: PoseTrackSplit) -> None:
    windows, stats = build_windows(video_split, (-1,))
    assert [w.support_offsets for w in windows] == [(0,), (-1,), (-1,)]
    assert (stats.num_padded_slots, stats.num_outside_video, stats.num_padded_windows) == (1, 1, 1)


def test_min_visible_joints_and_injected_file_test(video_split: PoseTrackSplit) -> None:
    windows, _ = build_windows(video_split, (1,), GroundTruthBoxes(min_visible_joints=0))
    assert [w.track_id for w in windows] == [0, 2, 9, 5]
    windows, stats = build_windows(video_split, (1,), file_exists=lambda path: True)
    assert [w.support_offsets for w in windows] == [(1,), (1,), (0,)]  # frame 3 "exists" now
    assert stats.num_missing_files == 0 and stats.num_outside_video == 1


def test_detection_windows(video_split: PoseTrackSplit) -> None:
    entries = [
        {"image_id": 104, "bbox": [0, 0, 4, 4], "score": 0.7},
        {"image_id": 101, "bbox": [1, 1, 2, 2], "score": 0.9},
        {"image_id": 104, "bbox": [2, 2, 4, 4], "score": 0.3},
    ]
    windows, stats = build_windows(video_split, (2,), parse_detections(entries, video_split))
    assert [w.key_frame.frame_index for w in windows] == [1, 4, 4]
    np.testing.assert_allclose([w.score for w in windows], [0.9, 0.7, 0.3], rtol=1e-6)
    assert all(w.person is None and w.track_id == -1 for w in windows)
    np.testing.assert_array_equal(windows[0].keypoints, np.zeros((17, 3)))
    assert [w.support_offsets for w in windows] == [(1,), (1,), (1,)]  # 3 missing → 2; 6 outside → 5
    assert (stats.num_missing_files, stats.num_outside_video) == (1, 2)


def test_windows_without_deltas_hold_the_key_frame_alone(video_split: PoseTrackSplit) -> None:
    """The single-frame model's windows: no support slot (its key frame is not cropped a second time)."""
    windows, stats = build_windows(video_split, ())
    with_supports, _ = build_windows(video_split, (-1, 1))
    assert [w.key_frame for w in windows] == [w.key_frame for w in with_supports]
    assert all(w.support_paths == () and w.deltas == () for w in windows)
    assert (stats.num_slots, stats.num_padded_slots) == (0, 0)


@needs_sample
def test_real_sample_windows_are_padded_to_the_key_frame() -> None:
    split = load_posetrack(SAMPLE / "annotations" / "val", SAMPLE)
    windows, stats = build_windows(split)
    assert stats == WindowStats(14, 56, 14, 56, num_outside_video=28, num_missing_files=28)
    for window in windows:
        assert window.support_offsets == (0, 0, 0, 0)
        assert window.support_paths == (window.key_frame.path,) * 4
    path = SAMPLE / "annotations" / "test_posetrack18_human_detections.json"
    raw = json.loads(path.read_text())
    windows, stats = build_windows(split, (-1, 1), load_detections(path, split))
    assert stats.num_windows == sum(d["score"] >= 0.2 for d in raw) == len(windows)
    assert stats.num_padded_slots == 2 * len(windows)
