"""Tests for famipose.evaluation.posetrack_ap: poseval's AP, checked against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from famipose.data.keypoints import NUM_JOINTS, POSETRACK_JOINTS
from famipose.evaluation import EVALUATED_JOINTS, EvalFrame, EvalPerson, VideoPair, evaluate_videos
from famipose.evaluation.posetrack_ap import (
    average_precision,
    evaluate_posetrack,
    head_size_from_boxes,
    match_frame,
    points_in_polygon,
    summarize_joints,
)

SAMPLE_VAL = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "posetrack18_sample" / "annotations" / "val"
)

# A 30 × 40 head box: head size 0.6 × 50 = 30 px, so PCKh@0.5 accepts distances up to 15 px.
HEAD_BOX = np.array([0.0, 0.0, 30.0, 40.0])
LEFT_WRIST = POSETRACK_JOINTS.index("left_wrist")
PRESENT = np.isin(np.arange(NUM_JOINTS), EVALUATED_JOINTS)


def pose(slot: int) -> np.ndarray:
    """(K, 2) joints of a person standing in slot ``slot``; slots are 1000 px apart, far beyond PCKh."""
    joints = np.arange(NUM_JOINTS, dtype=float)
    return np.stack([1000.0 * slot + 9.0 * joints, 40.0 + 13.0 * (joints % 6)], axis=-1)


def person(keypoints: np.ndarray, score: float = 1.0, present: np.ndarray = PRESENT) -> EvalPerson:
    """A person with the evaluated joints of ``keypoints``, each scored ``score``."""
    return EvalPerson(keypoints, present.copy(), np.full(NUM_JOINTS, score), None, HEAD_BOX)


def evaluate_frame(
    gt: list[EvalPerson], pred: list[EvalPerson], regions: tuple[np.ndarray, ...] = ()
) -> np.ndarray:
    """Per-joint AP (percent) of a single-frame video."""
    video = VideoPair("v.json", (EvalFrame("f0.jpg", regions, tuple(gt)),), (EvalFrame("f0.jpg", (), tuple(pred)),))
    return evaluate_videos([video]).ap


def test_average_precision_of_hand_ranked_list() -> None:
    # Ranked by score: TP FP TP FP TP with 4 positives. Precision 1, 1/2, 2/3, 1/2, 3/5 at recall
    # 1/4, 1/4, 2/4, 2/4, 3/4; envelope at the recall steps: 1, 2/3, 3/5 -> AP = (1 + 2/3 + 3/5) / 4 = 17/30.
    scores = np.array([0.6, 0.9, 0.5, 0.7, 0.8])
    is_tp = np.array([False, True, True, True, False])
    assert average_precision(scores, is_tp, num_gt=4) == pytest.approx(17 / 30)


def test_average_precision_edge_cases_follow_poseval() -> None:
    assert average_precision(np.zeros(0), np.zeros(0, bool), num_gt=3) == 0.0
    assert np.isnan(average_precision(np.array([0.5]), np.array([False]), num_gt=0))
    assert average_precision(np.array([0.5, 0.4]), np.array([True, True]), num_gt=2) == 1.0


def test_head_size_is_six_tenths_of_the_box_diagonal() -> None:
    np.testing.assert_allclose(head_size_from_boxes(np.array([HEAD_BOX, [10.0, 10.0, 16.0, 18.0]])), [30.0, 6.0])


def test_perfect_predictions_score_100_and_ears_are_not_evaluated() -> None:
    gt = [person(pose(slot)) for slot in range(3)]
    ap = evaluate_frame(gt, [person(pose(slot)) for slot in range(3)])
    np.testing.assert_array_equal(ap[list(EVALUATED_JOINTS)], 100.0)
    assert np.isnan(ap[POSETRACK_JOINTS.index("left_ear")]) and np.isnan(ap[POSETRACK_JOINTS.index("right_ear")])


@pytest.mark.parametrize(("shift", "moved_score", "expected"), [
    (15.0, 0.1, 100.0),  # exactly 0.5 head sizes: still a match (inclusive threshold)
    (15.001, 0.1, 75.0),  # ranked TP TP TP FP: recall stops at 3/4 with precision 1
    (15.001, 0.9, 56.25),  # ranked FP TP TP TP: precision envelope 3/4 up to recall 3/4
])  # fmt: skip
def test_one_joint_moved_past_pckh_threshold(shift: float, moved_score: float, expected: float) -> None:
    gt = [person(pose(slot)) for slot in range(4)]
    pred = [person(pose(slot), score=0.5 - 0.1 * slot) for slot in range(3)]
    moved = pose(3)
    moved[LEFT_WRIST, 0] += shift
    pred.append(person(moved, score=moved_score))
    ap = evaluate_frame(gt, pred)
    assert ap[LEFT_WRIST] == pytest.approx(expected)
    others = [j for j in EVALUATED_JOINTS if j != LEFT_WRIST]
    np.testing.assert_array_equal(ap[others], 100.0)


@pytest.mark.parametrize(("fp_score", "expected"), [(0.9, 200 / 3), (0.1, 100.0)])
def test_false_positive_person_lowers_ap_by_its_rank(fp_score: float, expected: float) -> None:
    # Two GT persons found with score 0.5; a third prediction far from both. Ranked first: FP TP TP gives
    # precision 1/2 at recall 1/2 and 2/3 at recall 1, envelope 2/3 everywhere -> 66.7. Ranked last: 100.
    gt = [person(pose(0)), person(pose(1))]
    pred = [person(pose(0), 0.5), person(pose(1), 0.5), person(pose(5), fp_score)]
    ap = evaluate_frame(gt, pred)
    np.testing.assert_allclose(ap[list(EVALUATED_JOINTS)], expected)
    assert summarize_joints(ap)["Total"] == pytest.approx(expected)


def test_prediction_in_ignore_region_is_neither_tp_nor_fp() -> None:
    gt = [person(pose(0))]
    pred = [person(pose(0), 0.5), person(pose(5), 0.9)]
    np.testing.assert_allclose(evaluate_frame(gt, pred)[list(EVALUATED_JOINTS)], 50.0)  # FP ranked first
    around_slot_5 = np.array([[4900.0, 0.0], [5300.0, 0.0], [5300.0, 200.0], [4900.0, 200.0]])
    np.testing.assert_array_equal(evaluate_frame(gt, pred, (around_slot_5,))[list(EVALUATED_JOINTS)], 100.0)


def test_ignore_region_removes_single_joints() -> None:
    # The region holds only the first three joints (nose, head bottom, head top) of the false positive.
    gt = [person(pose(0))]
    pred = [person(pose(0), 0.5), person(pose(5), 0.9)]
    first_three = np.array([[4990.0, 0.0], [5020.0, 0.0], [5020.0, 100.0], [4990.0, 100.0]])
    ap = evaluate_frame(gt, pred, (first_three,))
    np.testing.assert_array_equal(ap[[0, 1, 2]], 100.0)
    np.testing.assert_allclose(ap[list(EVALUATED_JOINTS[3:])], 50.0)


def test_gt_person_in_ignore_region_is_not_a_miss() -> None:
    gt = [person(pose(0)), person(pose(5))]
    pred = [person(pose(0))]
    np.testing.assert_allclose(evaluate_frame(gt, pred)[list(EVALUATED_JOINTS)], 50.0)  # recall 1/2
    around_slot_5 = np.array([[4900.0, 0.0], [5300.0, 0.0], [5300.0, 200.0], [4900.0, 200.0]])
    np.testing.assert_array_equal(evaluate_frame(gt, pred, (around_slot_5,))[list(EVALUATED_JOINTS)], 100.0)


def test_points_in_polygon_excludes_the_boundary() -> None:
    square = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    points = np.array([[5.0, 5.0], [10.0, 5.0], [0.0, 0.0], [5.0, 10.0], [11.0, 5.0], [0.001, 9.999]])
    np.testing.assert_array_equal(points_in_polygon(points, square), [True, False, False, False, False, True])
    concave = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [5.0, 2.0], [0.0, 10.0]])
    np.testing.assert_array_equal(points_in_polygon(np.array([[5.0, 5.0], [2.0, 2.0]]), concave), [False, True])
    assert not points_in_polygon(np.array([[0.5, 0.0]]), square[:2]).any()


def test_gt_frame_without_persons_is_not_evaluated() -> None:
    gt_frames = (EvalFrame("f0.jpg", (), (person(pose(0)),)), EvalFrame("f1.jpg", (), ()))
    pred_frames = (EvalFrame("f0.jpg", (), (person(pose(0)),)), EvalFrame("f1.jpg", (), (person(pose(1)),)))
    result = evaluate_videos([VideoPair("v.json", gt_frames, pred_frames)])
    assert result.num_frames == 1
    assert result.total == 100.0


def test_match_threshold_is_inclusive() -> None:
    gt_kpts = np.zeros((1, 1, 2))
    pred_kpts = np.array([[[15.0, 0.0]], [[9.0, 12.0]], [[15.000001, 0.0]]])
    match = match_frame(gt_kpts, np.ones((1, 1), bool), np.array([30.0]), pred_kpts, np.ones((3, 1), bool))
    np.testing.assert_allclose(match.distances[:, 0, 0], [0.5, 0.5, 0.5000000333], rtol=1e-9)
    # one GT person: only the first of the tied predictions gets it
    np.testing.assert_array_equal(match.pred_to_gt, [0, -1, -1])
    np.testing.assert_array_equal(match.is_tp[:, 0], [True, False, False])


def test_assignment_is_poseval_greedy_not_hungarian() -> None:
    # 10 joints, GT A in slot 0 and GT B in slot 1, head size 10 (threshold 5 px).
    # p: joints 0-5 on A (PCKh 0.6 with A), joints 6-9 on B (0.4 with B); q: joints 0-6 on A (0.7).
    # poseval: p keeps only A, A prefers q, so p is unassigned. Hungarian on match counts would give p -> B.
    gt = np.stack([pose(0)[:10], pose(1)[:10]])
    p = np.concatenate([pose(0)[:6], pose(1)[6:10]])
    q = np.concatenate([pose(0)[:7], pose(7)[7:10]])
    match = match_frame(gt, np.ones((2, 10), bool), np.full(2, 10.0), np.stack([p, q]), np.ones((2, 10), bool))
    np.testing.assert_array_equal(match.pred_to_gt, [-1, 0])
    assert not match.is_tp[0].any()
    np.testing.assert_array_equal(match.is_tp[1], np.arange(10) < 7)
    counts = (match.distances <= 0.5).sum(axis=2)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    assert cols[list(rows).index(0)] == 1  # the optimal assignment differs


def test_assignment_compares_fractions_of_annotated_joints() -> None:
    # GT A has all 10 joints annotated, GT B only joints 6-9. p has 3 joints on A (3/10) and 2 on B (2/4):
    # PCKh prefers B although A has more matched joints.
    gt = np.stack([pose(0)[:10], pose(1)[:10]])
    gt_vis = np.stack([np.ones(10, bool), np.arange(10) >= 6])
    p = np.concatenate([pose(0)[:3], pose(7)[3:6], pose(1)[6:8], pose(7)[8:10]])
    match = match_frame(gt, gt_vis, np.full(2, 10.0), p[None], np.ones((1, 10), bool))
    np.testing.assert_array_equal(match.pred_to_gt, [1])
    np.testing.assert_array_equal(np.flatnonzero(match.is_tp[0]), [6, 7])


def test_assignment_ignores_person_scores() -> None:
    # GT A; p (score 0.9) has the first half of A's joints right, q (score 0.1) all of them. A goes to q by
    # PCKh, so p's joints are all false positives ranked first: precision 1/2 at full recall for every joint.
    far = pose(0) + 100.0
    p_kpts = np.where((np.arange(NUM_JOINTS) < 8)[:, None], pose(0), far)
    ap = evaluate_frame([person(pose(0))], [person(p_kpts, 0.9), person(pose(0), 0.1)])
    np.testing.assert_allclose(ap[list(EVALUATED_JOINTS)], 50.0)


def test_summarize_joints_groups_and_total() -> None:
    values = np.full(NUM_JOINTS, np.nan)
    values[list(EVALUATED_JOINTS)] = np.arange(15, dtype=float)
    summary = summarize_joints(values)
    assert summary["Head"] == pytest.approx(1.0)  # nose 0, head_bottom 1, head_top 2
    assert summary["Ankle"] == pytest.approx(13.5)
    assert summary["Total"] == pytest.approx(7.0)
    assert list(summary) == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Total"]


@pytest.mark.skipif(
    not SAMPLE_VAL.is_dir(), reason="PoseTrack18 sample not present (../shared/data/posetrack18_sample)"
)
def test_sample_gt_as_predictions_scores_100() -> None:
    result = evaluate_posetrack(SAMPLE_VAL, SAMPLE_VAL)
    assert result.num_frames == 3
    np.testing.assert_array_equal(result.ap[list(EVALUATED_JOINTS)], 100.0)
    assert result.grouped == dict.fromkeys(("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle"), 100.0)
    assert result.total == 100.0
