"""Window augmentation: one random geometric transform shared by the key and all support frames.

Every frame of a window is cropped with the key frame's box, so a person who moves between frames
stays where the image puts them and the model has to align the features (the point of FAMI-Pose).
Augmentation happens in two pure steps:

1. :func:`sample_augmentation` draws :class:`AugmentParams` from a seeded generator: half-body
   crop, scale, rotation, horizontal flip, and (optionally) a small per-support shift of the crop
   that simulates a misaligned box.
2. :func:`apply_augmentation` turns the params and the key box into one affine matrix per frame
   (image pixels → input pixels, flip included); :func:`famipose.codecs.transforms.warp_affine` and
   :func:`transform_keypoints` apply them to images and keypoints.

The settings are :class:`famipose.config.AugmentConfig`, whose defaults follow HRNet / DCPose
training on PoseTrack: ``SCALE_FACTOR 0.35`` (scale multiplier
``clip(1 + 0.35 N(0, 1), 0.65, 1.35)``), ``ROT_FACTOR 45`` (angle ``clip(45 N(0, 1), -90, 90)``
with probability 0.6), ``FLIP`` with probability 0.5, ``PROB_HALF_BODY 0.3`` for persons with more
than ``NUM_JOINTS_HALF_BODY 8`` visible joints, half-body boxes enlarged 1.5 times.

Geometry follows ``famipose.codecs.transforms`` (UDP mapping, pixel centres at integers): a flip
mirrors the crop, ``x → w - 1 - x``, and swaps left/right joints.

Shape symbols: K joints, S support frames, h/w input height/width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from famipose.codecs.transforms import Size, box_to_center_scale, get_affine_matrix, transform_points
from famipose.config import AugmentConfig
from famipose.data.keypoints import UPPER_BODY_JOINTS, flip_permutation

MIN_HALF_BODY_JOINTS = 2  # a half-body box needs at least two joints of the chosen half


@dataclass(frozen=True)
class Crop:
    """A crop of the image: centre and size ``(w, h)`` in image pixels."""

    center: tuple[float, float]
    scale: tuple[float, float]


@dataclass(frozen=True)
class AugmentParams:
    """One draw of augmentation for a window.

    Attributes:
        support_shifts: per support ``(dx, dy)`` shift as a fraction of the crop size, (S,) pairs.
        scale_multiplier: multiplies the crop size (> 1 zooms out).
        rotation_deg: rotation, positive turns the content counter-clockwise.
        flip: mirror the crops horizontally and swap left/right joints.
        half_body: crop replacing the key box, or None.
    """

    support_shifts: tuple[tuple[float, float], ...]
    scale_multiplier: float = 1.0
    rotation_deg: float = 0.0
    flip: bool = False
    half_body: Crop | None = None

    @classmethod
    def identity(cls, num_supports: int) -> AugmentParams:
        """No augmentation (evaluation)."""
        return cls(support_shifts=((0.0, 0.0),) * num_supports)


@dataclass(frozen=True, eq=False)
class WindowTransform:
    """Image → input affine matrices of one window.

    Attributes:
        key_matrix: (2, 3) matrix of the key frame, flip included.
        support_matrices: (S, 2, 3) matrices of the support frames, flip included.
        crop: the key crop (after half-body and scaling), unrotated and unflipped.
        rotation_deg: rotation applied about the crop centre.
        flip: whether the crops are mirrored and joints swapped.
    """

    key_matrix: np.ndarray
    support_matrices: np.ndarray
    crop: Crop
    rotation_deg: float = 0.0
    flip: bool = False


def sample_augmentation(
    rng: np.random.Generator,
    config: AugmentConfig,
    keypoints: np.ndarray,
    num_supports: int,
    aspect_ratio: float,
) -> AugmentParams:
    """Draw the augmentation of one window.

    Args:
        rng: the generator; the same seed gives the same params.
        config: ranges and probabilities.
        keypoints: (K, 3) key-frame keypoints ``(x, y, visibility)`` in image pixels (half-body).
        num_supports: S, the number of support frames.
        aspect_ratio: network input width / height (half-body crop).

    Returns:
        The params.
    """
    half_body = None
    num_visible = int((keypoints[:, 2] > 0).sum())
    if num_visible > config.half_body_min_joints and rng.random() < config.half_body_prob:
        half_body = half_body_crop(keypoints, rng.random() < 0.5, aspect_ratio, config.half_body_padding)
    factor = config.scale_factor
    scale_multiplier = float(np.clip(1.0 + factor * rng.standard_normal(), 1.0 - factor, 1.0 + factor))
    rotation = 0.0
    if rng.random() < config.rotation_prob:
        limit = 2.0 * config.rotation_factor
        rotation = float(np.clip(config.rotation_factor * rng.standard_normal(), -limit, limit))
    flip = bool(rng.random() < config.flip_prob)
    shifts = rng.uniform(-config.support_shift, config.support_shift, size=(num_supports, 2))  # (S, 2)
    return AugmentParams(
        support_shifts=tuple((float(dx), float(dy)) for dx, dy in shifts),
        scale_multiplier=scale_multiplier,
        rotation_deg=rotation,
        flip=flip,
        half_body=half_body,
    )


def half_body_crop(
    keypoints: np.ndarray, prefer_upper: bool, aspect_ratio: float, padding: float
) -> Crop | None:
    """Crop around the visible joints of the upper or the lower body.

    The preferred half is used when it has more than two visible joints, else the other half when
    that has more than two, else the preferred half anyway.

    Args:
        keypoints: (K, 3) ``(x, y, visibility)`` in image pixels.
        prefer_upper: try the upper body first.
        aspect_ratio: crop width / height.
        padding: enlargement of the joints' box.

    Returns:
        The crop, or None when the chosen half has fewer than two visible joints or no extent.
    """
    visible = keypoints[:, 2] > 0
    is_upper = np.zeros(len(keypoints), dtype=bool)
    is_upper[list(UPPER_BODY_JOINTS)] = True
    halves = [visible & is_upper, visible & ~is_upper]
    preferred, other = halves if prefer_upper else halves[::-1]
    chosen = preferred if preferred.sum() > 2 or other.sum() <= 2 else other
    if chosen.sum() < MIN_HALF_BODY_JOINTS:
        return None
    points = keypoints[chosen, :2].astype(np.float64)  # (J, 2)
    low, high = points.min(0), points.max(0)
    if np.all(high - low <= 0):
        return None
    center, scale = box_to_center_scale(np.concatenate([low, high - low]), aspect_ratio, padding)
    return Crop((float(center[0]), float(center[1])), (float(scale[0]), float(scale[1])))


def apply_augmentation(
    params: AugmentParams, center: np.ndarray, scale: np.ndarray, output_size: Size
) -> WindowTransform:
    """Affine matrices of the key and support frames for one draw.

    Args:
        params: the draw (``AugmentParams.identity(S)`` for none).
        center: (2,) key box centre in image pixels.
        scale: (2,) key crop size ``(w, h)`` in image pixels.
        output_size: network input ``(w, h)``.

    Returns:
        The window's transform.
    """
    base = params.half_body or Crop((float(center[0]), float(center[1])), (float(scale[0]), float(scale[1])))
    multiplier = params.scale_multiplier
    crop = Crop(base.center, (base.scale[0] * multiplier, base.scale[1] * multiplier))
    crop_center, crop_scale = np.array(crop.center), np.array(crop.scale)
    to_input = np.eye(3)
    if params.flip:
        to_input[0] = (-1.0, 0.0, output_size[0] - 1.0)  # x → w - 1 - x

    def matrix(shift: tuple[float, float]) -> np.ndarray:
        affine = get_affine_matrix(crop_center, crop_scale, output_size, params.rotation_deg, shift)
        return (to_input @ np.vstack([affine, (0.0, 0.0, 1.0)]))[:2]  # (2, 3)

    supports = [matrix(shift) for shift in params.support_shifts]
    return WindowTransform(
        key_matrix=matrix((0.0, 0.0)),
        support_matrices=np.stack(supports) if supports else np.zeros((0, 2, 3)),  # (S, 2, 3)
        crop=crop,
        rotation_deg=params.rotation_deg,
        flip=params.flip,
    )


def transform_keypoints(transform: WindowTransform, keypoints: np.ndarray) -> np.ndarray:
    """Key-frame keypoints in input pixels, with left/right joints swapped after a flip.

    Args:
        transform: the window's transform.
        keypoints: (K, 3) ``(x, y, visibility)`` in image pixels.

    Returns:
        (K, 3) float32 ``(x, y, visibility)`` in input pixels; visibility is carried over.
    """
    moved = np.array(keypoints, dtype=np.float32)
    moved[:, :2] = transform_points(keypoints[:, :2], transform.key_matrix)
    return moved[flip_permutation()] if transform.flip else moved
