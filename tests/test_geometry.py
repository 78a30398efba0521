"""Box and pose geometry shared by SynthTrack, famipose test, the tracker and video inference."""

from __future__ import annotations

import numpy as np

from famipose.data.keypoints import OKS_SIGMAS
from famipose.geometry import box_iou, oks_nms, pose_oks, xywh_to_xyxy, xyxy_to_xywh
from famipose.inference.steps import pose_nms


def test_box_conversions_are_inverse() -> None:
    boxes = np.array([[10.0, 20, 30, 40], [0, 0, 1, 2]])
    np.testing.assert_allclose(xywh_to_xyxy(boxes), [[10, 20, 40, 60], [0, 0, 1, 2]])
    np.testing.assert_allclose(xyxy_to_xywh(xywh_to_xyxy(boxes)), boxes)
    assert box_iou(boxes[:1], np.array([[10.0, 20, 0, 0]]))[0, 0] == 0.0  # an empty box overlaps nothing


def test_all_joint_oks_is_the_coco_formula() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 100, (1, 17, 2)), rng.uniform(0, 100, (3, 17, 2))
    area = np.array([900.0, 1600.0, 2500.0])
    variances = (2 * np.asarray(OKS_SIGMAS)) ** 2
    expected = np.exp(-((b - a) ** 2).sum(-1) / variances / area[:, None] / 2).mean(-1)  # (3,)
    np.testing.assert_allclose(pose_oks(a, b, area)[0], expected, rtol=1e-12)


def test_pose_nms_keeps_the_better_of_two_duplicates_best_first() -> None:
    pose = np.concatenate([np.random.default_rng(1).uniform(0, 100, (17, 2)), np.full((17, 1), 0.8)], 1)
    other = pose + np.array([300.0, 0, 0])  # a second person far away
    poses = np.stack([other, pose, pose + np.array([0.5, 0, 0.1])])  # the third: the second, better scored
    keep = pose_nms(poses, np.array([0.9, 0.9, 0.9]), np.full(3, 200.0 * 300.0))
    assert keep.tolist() == [2, 0]
    assert oks_nms(poses[:, :, :2], np.array([0.1, 0.2, 0.3]), np.full(3, 200.0 * 300.0)) == [2, 0]
