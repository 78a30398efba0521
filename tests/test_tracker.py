"""Tracking: IoU / OKS similarities, identities through a crossing, hysteresis."""

from __future__ import annotations

import numpy as np
import pytest

from famipose.geometry import box_iou, pose_oks
from famipose.inference.tracker import PoseTracker, TrackerConfig

K = 17
SIGMAS = np.full(K, 0.07)


def _pose(box: np.ndarray, arms_up: bool) -> np.ndarray:
    """A (K, 3) pose inside ``box`` (x, y, w, h); wrists above the head when ``arms_up``."""
    x, y, w, h = box
    rng = np.random.default_rng(0)
    rel = rng.uniform(0.2, 0.8, size=(K, 2))
    rel[9:11, 1] = 0.02 if arms_up else 0.6  # wrists
    rel[9:11, 0] = (0.05, 0.95) if arms_up else (0.3, 0.7)
    return np.concatenate([np.array([x, y]) + rel * np.array([w, h]), np.ones((K, 1))], axis=1)


def test_box_iou_known_values() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]])


def test_oks_is_one_for_equal_poses_and_nan_without_common_joints() -> None:
    pose = _pose(np.array([0, 0, 50, 100]), arms_up=False)
    hidden = pose.copy()
    hidden[:, 2] = 0.0
    oks = pose_oks(pose[None], np.stack([pose, hidden]), np.array([5000.0, 5000.0]), 0.2, SIGMAS)
    assert oks[0, 0] == pytest.approx(1.0)
    assert np.isnan(oks[0, 1])
    moved = pose.copy()
    moved[:, 0] += 30
    assert pose_oks(pose[None], moved[None], np.array([5000.0]), 0.2, SIGMAS)[0, 0] < 0.5


@pytest.mark.parametrize("use_poses", [True, False])
def test_identities_survive_a_crossing(use_poses: bool) -> None:
    """A walks right, B walks left; their boxes coincide at frame 10 and swap sides after it."""
    tracker = PoseTracker(TrackerConfig(min_hits=2, max_misses=2))
    ids: dict[str, set[int | None]] = {"A": set(), "B": set()}
    for t in range(21):
        box_a = np.array([10.0 * t, 50, 60, 120])
        box_b = np.array([200.0 - 10.0 * t, 50, 60, 120])
        order = ("B", "A") if t % 2 else ("A", "B")  # detection order must not matter
        boxes = {"A": box_a, "B": box_b}
        poses = {"A": _pose(box_a, arms_up=True), "B": _pose(box_b, arms_up=False)}
        keys = tracker.update(
            np.stack([boxes[n] for n in order]), np.stack([poses[n] for n in order]) if use_poses else None
        )
        if t >= 1:
            for name, key in zip(order, keys, strict=True):
                ids[name].add(tracker.track_id(int(key)))
    assert len(ids["A"]) == 1 and len(ids["B"]) == 1
    assert ids["A"] != ids["B"] and None not in ids["A"] | ids["B"]


def test_oks_breaks_a_tie_that_iou_cannot() -> None:
    """Two static people with identical boxes are told apart only by their poses."""
    box = np.array([100.0, 100, 60, 120])
    up, down = _pose(box, arms_up=True), _pose(box, arms_up=False)
    tracker = PoseTracker(TrackerConfig(min_hits=1, iou_weight=0.2, oks_weight=0.8))
    first = tracker.update(np.stack([box, box]), np.stack([up, down]))
    swapped = tracker.update(np.stack([box, box]), np.stack([down, up]))
    assert list(swapped) == [first[1], first[0]]


def test_hysteresis_births_and_ends() -> None:
    config = TrackerConfig(min_hits=3, max_misses=2)
    tracker = PoseTracker(config)
    box = np.array([[0.0, 0, 50, 100]])
    blip = np.array([[300.0, 300, 40, 80]])
    keys = [tracker.update(np.concatenate([box, blip])) for _ in range(1)]  # the blip appears once
    keys += [tracker.update(box) for _ in range(2)]
    person = int(keys[0][0])
    assert tracker.track_id(int(keys[0][1])) is None  # one hit: never confirmed
    assert tracker.track_id(person) == 0  # confirmed after 3 consecutive hits
    assert tracker.confirmation_delay == 2
    for _ in range(config.max_misses):  # a short occlusion keeps the identity
        tracker.update(np.zeros((0, 4)))
    assert tracker.track_id(int(tracker.update(box)[0])) == 0
    for _ in range(config.max_misses + 1):  # a long one ends the track
        tracker.update(np.zeros((0, 4)))
    reborn = [int(tracker.update(box)[0]) for _ in range(3)]
    assert reborn[0] != person and tracker.track_id(reborn[-1]) == 1


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="min_hits"):
        TrackerConfig(min_hits=0)
    with pytest.raises(ValueError, match="weight"):
        TrackerConfig(iou_weight=0.0, oks_weight=0.0)
