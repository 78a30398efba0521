"""Tests for famipose.evaluation.tracking: poseval's per-joint MOT metrics through motmetrics."""

from __future__ import annotations

import numpy as np
import pytest

from famipose.data.errors import DataError
from famipose.data.keypoints import NUM_JOINTS
from famipose.evaluation import EVALUATED_JOINTS, EvalFrame, EvalPerson, VideoPair, evaluate_videos
from famipose.evaluation.posetrack_ap import summarize_joints
from famipose.evaluation.tracking import JointObservations, evaluate_tracking, frame_observations

pytest.importorskip("motmetrics")


def two_people(hyp_ids: tuple[int, int], distance: float = 0.0) -> tuple[JointObservations]:
    """One joint, GT tracks 0 and 1 each matched (at ``distance``) by the hypothesis of ``hyp_ids``."""
    distances = np.array([[distance, np.nan], [np.nan, distance]])
    return (JointObservations(np.array([0, 1]), np.array(hyp_ids), distances),)


def test_perfect_track_scores_100() -> None:
    frames = [two_people((10, 11)) for _ in range(3)]
    result = evaluate_tracking([frames], joints=[0])
    for metric in (result.mota, result.motp, result.precision, result.recall):
        assert metric[0] == 100.0
        assert np.isnan(metric[1:]).all()


def test_identity_switch_costs_one_over_the_objects() -> None:
    # Frames 0-2 are scored (poseval drops the last one): 6 GT objects, track 1 changes hypothesis at frame 2.
    frames = [two_people((10, 11)), two_people((10, 11)), two_people((10, 12)), two_people((10, 12))]
    result = evaluate_tracking([frames], joints=[0])
    assert result.switches[0] == 1
    assert result.mota[0] == pytest.approx(100.0 * (1 - 1 / 6))
    assert result.precision[0] == 100.0 and result.recall[0] == 100.0


def test_last_frame_of_each_video_is_not_scored() -> None:
    frames = [two_people((10, 11)), two_people((10, 11)), two_people((12, 13))]
    assert evaluate_tracking([frames], joints=[0]).mota[0] == 100.0
    single_frame = evaluate_tracking([[two_people((10, 11))]], joints=[0])
    assert np.isnan(single_frame.mota[0])


def test_motp_is_100_minus_mean_matched_distance() -> None:
    frames = [two_people((10, 11), distance=0.1) for _ in range(3)]
    assert evaluate_tracking([frames], joints=[0]).motp[0] == pytest.approx(90.0)


def test_counts_add_up_over_videos() -> None:
    # Video 1 has one switch in 6 objects, video 2 none in 4: MOTA = 1 - 1/10.
    switching = [two_people((10, 11)), two_people((10, 11)), two_people((10, 12)), two_people((10, 12))]
    steady = [two_people((10, 11)) for _ in range(3)]
    assert evaluate_tracking([switching, steady], joints=[0]).mota[0] == pytest.approx(90.0)


def test_frame_observations_keep_pairs_within_threshold() -> None:
    distances = np.array([[[0.5], [0.9]], [[0.50001], [0.2]], [[0.1], [0.1]]])  # (P=3, G=2, K=1)
    gt_present = np.array([[True], [True]])
    pred_present = np.array([[True], [True], [False]])
    (observed,) = frame_observations(
        distances, gt_present, pred_present, np.array([4, 5]), np.array([7, 8, 9]), joints=[0], threshold=0.5
    )
    np.testing.assert_array_equal(observed.gt_ids, [4, 5])
    np.testing.assert_array_equal(observed.pred_ids, [7, 8])
    np.testing.assert_array_equal(observed.distances, [[0.5, np.nan], [np.nan, 0.2]])


def test_frame_without_predictions_counts_one_miss_and_one_false_positive() -> None:
    # poseval's placeholder: 2 GT persons but no prediction in frame 1 -> objects 2 + 1 + 2, one miss, one FP.
    empty = frame_observations(
        np.zeros((0, 2, 1)), np.ones((2, 1), bool), np.zeros((0, 1), bool), np.array([0, 1]), np.zeros(0, int), [0], 0.5
    )
    frames = [two_people((10, 11)), empty, two_people((10, 11)), two_people((10, 11))]
    result = evaluate_tracking([frames], joints=[0])
    assert result.mota[0] == pytest.approx(100.0 * (1 - 2 / 5))
    assert result.precision[0] == pytest.approx(80.0)
    assert result.recall[0] == pytest.approx(80.0)


def _frame(name: str, track_ids: list[int | None]) -> EvalFrame:
    """Persons in slots 0, 1, ... 1000 px apart, with the given track ids."""
    people = []
    for slot, track_id in enumerate(track_ids):
        keypoints = np.stack([1000.0 * slot + 9.0 * np.arange(NUM_JOINTS), np.full(NUM_JOINTS, 50.0)], axis=-1)
        present = np.isin(np.arange(NUM_JOINTS), EVALUATED_JOINTS)
        people.append(EvalPerson(keypoints, present, np.ones(NUM_JOINTS), track_id, np.array([0.0, 0, 30, 40])))
    return EvalFrame(name, (), tuple(people))


def test_evaluate_videos_tracks_every_evaluated_joint() -> None:
    names = [f"{i:06d}.jpg" for i in range(4)]
    gt = tuple(_frame(name, [0, 1]) for name in names)
    pred = tuple(_frame(name, [3, 4] if i < 2 else [3, 5]) for i, name in enumerate(names))
    result = evaluate_videos([VideoPair("v.json", gt, pred)], track=True)
    assert result.total == 100.0
    assert result.tracking is not None
    np.testing.assert_allclose(result.tracking.mota[list(EVALUATED_JOINTS)], 100.0 * (1 - 1 / 6))
    assert np.isnan(result.tracking.mota[3]) and np.isnan(result.tracking.mota[4])
    assert summarize_joints(result.tracking.mota)["Total"] == pytest.approx(100.0 * (1 - 1 / 6))
    assert result.to_json()["tracking"]["MOTA"]["Wrist"] == pytest.approx(100.0 * (1 - 1 / 6))


def test_tracking_needs_track_ids() -> None:
    gt = (_frame("a.jpg", [0]), _frame("b.jpg", [0]))
    pred = (_frame("a.jpg", [None]), _frame("b.jpg", [None]))
    with pytest.raises(DataError, match="track_id"):
        evaluate_videos([VideoPair("v.json", gt, pred)], track=True)
    assert evaluate_videos([VideoPair("v.json", gt, pred)]).total == 100.0
