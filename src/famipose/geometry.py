"""Person-box and pose geometry, in pure numpy: box conversions, box IoU, OKS and OKS NMS.

One home for what data generation (:mod:`famipose.data.synthtrack`), testing
(:mod:`famipose.engine.evaluate`), tracking and video inference all compute; it imports nothing of
theirs, so any layer may use it.

Boxes are ``(x, y, w, h)`` in image pixels unless a name says ``xyxy``. Poses are (K, 2+) arrays:
image ``(x, y)`` first, then (where present) the joint score.

Object keypoint similarity (OKS), as in COCO: joint k of two poses at distance d contributes
``exp(-d² / (2 A (2σ_k)²))`` for the pair's scale area A, and the OKS is the mean over the joints that
count (all of them, or those confident in both poses).

Shape symbols: N, M boxes or persons, K joints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from famipose.data.keypoints import OKS_SIGMAS

OKS_NMS_THRESHOLD = 0.9
"""OKS above which the lower-scored of two persons of a frame is a duplicate (HRNet / DCPose protocol)."""


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) ``(x, y, w, h)`` → (N, 4) ``(x1, y1, x2, y2)``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) ``(x1, y1, x2, y2)`` → (N, 4) float32 ``(x, y, w, h)``, the inverse of :func:`xywh_to_xyxy`."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) ``(x, y, w, h)`` boxes → (N, M); 0 where the union is empty."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(-1)  # (N, M)
    union = a[:, None, 2:].prod(-1) + b[None, :, 2:].prod(-1) - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0)


def pose_oks(
    a: np.ndarray,
    b: np.ndarray,
    areas: np.ndarray,
    min_score: float | None = None,
    sigmas: Sequence[float] | np.ndarray = OKS_SIGMAS,
) -> np.ndarray:
    """Pairwise object keypoint similarity.

    Args:
        a: (N, K, 2+) poses.
        b: (M, K, 2+) poses.
        areas: scale areas of the pairs, broadcastable to (N, M) (e.g. (M,), the areas of ``b``);
            areas below 1 count as 1, so that a degenerate box gives no infinite distance.
        min_score: ``None``: every joint counts; else only joints scored at least this in both
            poses (which then need a score column).
        sigmas: (K,) per-joint falloff.

    Returns:
        (N, M) OKS in [0, 1]; with ``min_score``, NaN where the two poses share no confident joint.
    """
    variances = (2 * np.asarray(sigmas, np.float64)) ** 2  # (K,)
    scale = np.maximum(np.asarray(areas, np.float64), 1.0)[..., None]  # (N or 1, M, 1)
    distance2 = ((a[:, None, :, :2] - b[None, :, :, :2]) ** 2).sum(-1)  # (N, M, K)
    similarity = np.exp(-distance2 / variances / scale / 2)  # (N, M, K)
    if min_score is None:
        return similarity.mean(-1)
    common = (a[:, None, :, 2] >= min_score) & (b[None, :, :, 2] >= min_score)  # (N, M, K)
    count = common.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (similarity * common).sum(-1) / count, np.nan)


def oks_nms(
    keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float = OKS_NMS_THRESHOLD
) -> list[int]:
    """Greedy non-maximum suppression of one frame's persons by OKS (on every joint).

    The scale of a pair is the mean of the two persons' areas.

    Args:
        keypoints: (N, K, 2+) persons of one frame.
        scores: (N,) person scores.
        areas: (N,) scale areas (the crop areas of top-down estimation).
        threshold: persons with OKS above this to a kept, higher-scored person are dropped.

    Returns:
        Indices of the kept persons, best first.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        overlap = pose_oks(keypoints[best][None], keypoints[rest], (areas[best] + areas[rest]) / 2)[0]  # (len(rest),)
        order = rest[overlap <= threshold]
    return kept
