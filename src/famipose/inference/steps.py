"""The video pipeline's pure steps: crop geometry and crops, feature re-framing, duplicate removal.

Each step is a plain function of arrays, testable on its own: :func:`crop_geometry` and
:func:`crop_windows` (preprocess), :func:`reframe_features` (fast mode: a support frame's features
moved from its own crop into the key frame's) and :func:`pose_nms` (postprocess). The network
itself runs in :mod:`famipose.inference.windows`.

Shape symbols: N crops or persons, C channels, K joints, H/W input size, h/w feature size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from famipose.codecs.transforms import box_to_center_scale, reframe_theta, warp_crop
from famipose.data.dataset import normalize_crops
from famipose.geometry import OKS_NMS_THRESHOLD, oks_nms
from famipose.models.alignment import warp_features


def crop_geometry(boxes: np.ndarray, input_size: tuple[int, int], padding: float) -> tuple[np.ndarray, np.ndarray]:
    """Crop centres and sizes of boxes at the network's aspect ratio.

    Args:
        boxes: (N, 4) ``(x, y, w, h)``.
        input_size: network input ``(w, h)``.
        padding: enlargement after aspect fixing.

    Returns:
        centers (N, 2) and scales (N, 2) in image pixels.
    """
    aspect = input_size[0] / input_size[1]
    pairs = [box_to_center_scale(box, aspect, padding) for box in np.asarray(boxes).reshape(-1, 4)]
    if not pairs:
        return np.zeros((0, 2)), np.zeros((0, 2))
    centers, scales = zip(*pairs, strict=True)
    return np.stack(centers), np.stack(scales)


def crop_windows(
    images: Sequence[np.ndarray], centers: np.ndarray, scales: np.ndarray, input_size: tuple[int, int]
) -> Tensor:
    """Cut crops and normalise them for the network (ImageNet mean / std, RGB, CHW).

    Args:
        images: N (H, W, 3) uint8 RGB frames, one per crop.
        centers: (N, 2) crop centres.
        scales: (N, 2) crop sizes.
        input_size: network input ``(w, h)``.

    Returns:
        (N, 3, H, W) float32 crops.
    """
    if not len(images):
        return torch.zeros(0, 3, input_size[1], input_size[0])
    crops = np.stack(
        [warp_crop(image, c, s, input_size) for image, c, s in zip(images, centers, scales, strict=True)]
    )  # (N, H, W, 3)
    return normalize_crops(crops)  # (N, 3, H, W)


def reframe_features(
    features: Tensor, src_centers: np.ndarray, src_scales: np.ndarray, dst_centers: np.ndarray, dst_scales: np.ndarray
) -> Tensor:
    """Resample feature maps (N, C, h, w) of crops ``src`` into crops ``dst`` (zeros outside ``src``).

    Bilinear, UDP-consistent (see :func:`famipose.codecs.transforms.reframe_theta`); maps whose
    crops are equal are returned untouched, so static boxes give exactly the features of a direct crop.
    """
    theta = reframe_theta(src_centers, src_scales, dst_centers, dst_scales)  # (N, 2, 3)
    moved = torch.from_numpy(np.flatnonzero(np.any(theta != np.eye(2, 3), axis=(1, 2)))).to(features.device)
    if not len(moved):
        return features
    resampled = warp_features(features[moved], torch.from_numpy(theta).to(features)[moved], align_corners=True)
    return features.index_copy(0, moved, resampled)  # (N, C, h, w)


def pose_nms(poses: np.ndarray, box_scores: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """The persons of one frame that are no duplicate, as ``famipose test`` keeps them.

    Two boxes on one person give two nearly equal poses; the one with the lower person score
    (box score × mean joint score) goes when their OKS on the crop areas exceeds
    :data:`~famipose.geometry.OKS_NMS_THRESHOLD`. The kept persons come best first, also as
    ``famipose test`` writes them (the PoseTrack evaluator's greedy matching breaks ties in file
    order).

    Args:
        poses: (N, K, 3) ``(x, y, score)`` in image pixels.
        box_scores: (N,) box confidences.
        areas: (N,) areas of the crops the poses were estimated in.

    Returns:
        (N',) int64 indices of the persons to keep, best first.
    """
    scores = box_scores * poses[:, :, 2].mean(1)  # (N,)
    return np.asarray(oks_nms(poses, scores, areas, OKS_NMS_THRESHOLD), dtype=np.int64)
