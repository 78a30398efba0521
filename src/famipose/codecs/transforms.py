"""Geometric transforms between image, crop (network input) and heatmap coordinates.

Conventions, used by every codec in this package:

* **Pixel centres.** A continuous coordinate ``x`` lies at the centre of pixel ``round(x)``; pixel
  ``i`` covers ``[i - 0.5, i + 0.5]``, as in ``cv2.warpAffine``. Boxes are ``(x, y, w, h)`` in image
  pixels with centre ``(x + w / 2, y + h / 2)``.
* **Unbiased (UDP) mapping.** Resampling between two grids maps the first pixel centre onto the first
  and the last onto the last: ``x_dst = x_src * (size_dst - 1) / (size_src - 1)``. A crop of size
  ``(w, h)`` maps the box centre to ``((w - 1) / 2, (h - 1) / 2)`` and a box of ``scale`` pixels onto
  ``w - 1`` (resp. ``h - 1``) crop pixels. The same rule maps input pixels to heatmap pixels, so
  image → crop → heatmap → crop → image round trips are exact, and a horizontal flip is
  ``x → size - 1 - x`` on every grid (flip test needs no one-pixel shift).
* **Crop description.** ``center`` (2,) is the box centre in image pixels and ``scale`` (2,) is the
  box size ``(w, h)`` in image pixels after aspect fixing and padding (not HRNet's ``/ 200`` units).
* **Rotation.** ``rotation_deg > 0`` turns the image content counter-clockwise in the crop (HRNet
  convention): a point right of the box centre lands above the crop centre for 90°.

Shape symbols: N instances, K joints, H/W image, h/w crop or heatmap size.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

Size = tuple[int, int]


def box_to_center_scale(
    box_xywh: np.ndarray, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """Turn a box into the crop that contains it at the network's aspect ratio.

    The shorter side (relative to ``aspect_ratio``) is extended about the box centre until
    ``w / h == aspect_ratio``; both sides are then multiplied by ``padding``.

    Args:
        box_xywh: (4,) box ``(x, y, w, h)`` in image pixels.
        aspect_ratio: input width divided by input height.
        padding: enlargement factor applied after aspect fixing.

    Returns:
        center: (2,) box centre in image pixels.
        scale: (2,) crop size ``(w, h)`` in image pixels.
    """
    x, y, w, h = np.asarray(box_xywh, dtype=np.float64)
    center = np.array([x + 0.5 * w, y + 0.5 * h])
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w, h]) * padding


def _affine_matrices(
    centers: np.ndarray,
    scales: np.ndarray,
    output_size: Size,
    rotation_deg: np.ndarray,
    shift: np.ndarray,
) -> np.ndarray:
    """Batched homogeneous image → crop matrices.

    Args:
        centers: (N, 2) box centres in image pixels.
        scales: (N, 2) box sizes ``(w, h)`` in image pixels.
        output_size: crop size ``(w, h)``.
        rotation_deg: (N,) counter-clockwise rotation in degrees.
        shift: (N, 2) centre shift as a fraction of ``scales``.

    Returns:
        (N, 3, 3) float64 matrices acting on homogeneous column vectors ``(x, y, 1)``.
    """
    out_w, out_h = output_size
    theta = np.deg2rad(rotation_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    sx = (out_w - 1) / scales[:, 0]
    sy = (out_h - 1) / scales[:, 1]
    # Image y points down, so [[cos, sin], [-sin, cos]] turns content counter-clockwise on screen.
    linear = np.stack([np.stack([sx * cos, sx * sin], -1), np.stack([-sy * sin, sy * cos], -1)], -2)
    src_center = centers + shift * scales
    dst_center = np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0])
    translation = dst_center - np.einsum("nij,nj->ni", linear, src_center)
    matrices = np.zeros((len(centers), 3, 3))
    matrices[:, :2, :2] = linear
    matrices[:, :2, 2] = translation
    matrices[:, 2, 2] = 1.0
    return matrices


def get_affine_matrix(
    center: np.ndarray,
    scale: np.ndarray,
    output_size: Size,
    rotation_deg: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    inverse: bool = False,
) -> np.ndarray:
    """Affine matrix that maps image pixels to crop pixels (UDP mapping, see module docstring).

    Args:
        center: (2,) box centre in image pixels.
        scale: (2,) box size ``(w, h)`` in image pixels.
        output_size: crop size ``(w, h)``.
        rotation_deg: rotation about the box centre; positive turns content counter-clockwise.
        shift: moves the box centre by ``shift * scale`` image pixels before cropping.
        inverse: return the crop → image matrix instead.

    Returns:
        (2, 3) float64 matrix for ``transform_points`` and ``cv2.warpAffine``.
    """
    matrix = _affine_matrices(
        np.asarray(center, dtype=np.float64)[None],
        np.asarray(scale, dtype=np.float64)[None],
        output_size,
        np.array([rotation_deg], dtype=np.float64),
        np.asarray(shift, dtype=np.float64)[None],
    )[0]
    if inverse:
        matrix = np.linalg.inv(matrix)
    return matrix[:2]


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply affine matrices to 2D points.

    Args:
        points: (..., 2) points.
        matrix: (2, 3) matrix, or (..., 2, 3) matrices broadcastable against the points' leading
            dimensions.

    Returns:
        (..., 2) float64 transformed points.
    """
    points = np.asarray(points, dtype=np.float64)
    return np.einsum("...ij,...j->...i", matrix[..., :2], points) + matrix[..., 2]


def warp_affine(image: np.ndarray, matrix: np.ndarray, output_size: Size) -> np.ndarray:
    """Resample an image with an image -> crop matrix: bilinear, zeros outside the image.

    Args:
        image: (H, W, C) or (H, W) image.
        matrix: (2, 3) image -> crop matrix.
        output_size: crop size ``(w, h)``.

    Returns:
        (h, w, C) or (h, w) crop with the image's dtype.
    """
    return cv2.warpAffine(
        image,
        matrix,
        (int(output_size[0]), int(output_size[1])),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def warp_crop(
    image: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    output_size: Size,
    rotation_deg: float = 0.0,
) -> np.ndarray:
    """Cut the (optionally rotated) box out of an image and resize it to ``output_size``.

    Bilinear interpolation; pixels outside the image are 0. Flipping is left to augmentation.

    Args:
        image: (H, W, C) or (H, W) image.
        center: (2,) box centre in image pixels.
        scale: (2,) box size ``(w, h)`` in image pixels.
        output_size: crop size ``(w, h)``.
        rotation_deg: rotation about the box centre; positive turns content counter-clockwise.

    Returns:
        (h, w, C) or (h, w) crop with the image's dtype.
    """
    return warp_affine(image, get_affine_matrix(center, scale, output_size, rotation_deg), output_size)


def rescale_points(points: np.ndarray, src_size: Size, dst_size: Size) -> np.ndarray:
    """Map points between two grids covering the same area (e.g. input ↔ heatmap), UDP style.

    Args:
        points: (..., 2) points in ``src_size`` pixels.
        src_size: source grid ``(w, h)``, both > 1.
        dst_size: destination grid ``(w, h)``.

    Returns:
        (..., 2) float64 points in ``dst_size`` pixels.
    """
    ratio = (np.asarray(dst_size, dtype=np.float64) - 1) / (np.asarray(src_size, dtype=np.float64) - 1)
    return np.asarray(points, dtype=np.float64) * ratio


def crop_to_image(
    coords: np.ndarray, centers: np.ndarray, scales: np.ndarray, input_size: Size
) -> np.ndarray:
    """Map crop (network input) coordinates of unrotated crops back to the image.

    Args:
        coords: (N, K, 2) points in input pixels.
        centers: (N, 2) box centres in image pixels.
        scales: (N, 2) box sizes ``(w, h)`` in image pixels.
        input_size: crop size ``(w, h)``.

    Returns:
        (N, K, 2) float64 points in image pixels.
    """
    centers = np.asarray(centers, dtype=np.float64)
    n = len(centers)
    forward = _affine_matrices(
        centers, np.asarray(scales, dtype=np.float64), input_size, np.zeros(n), np.zeros((n, 2))
    )
    return transform_points(coords, np.linalg.inv(forward)[:, None, :2])


def heatmap_to_image(
    coords: np.ndarray, centers: np.ndarray, scales: np.ndarray, heatmap_size: Size, input_size: Size
) -> np.ndarray:
    """Map decoded heatmap coordinates back to the image.

    Args:
        coords: (N, K, 2) points in heatmap pixels.
        centers: (N, 2) box centres in image pixels.
        scales: (N, 2) box sizes ``(w, h)`` in image pixels.
        heatmap_size: heatmap size ``(w, h)``.
        input_size: crop size ``(w, h)``.

    Returns:
        (N, K, 2) float64 points in image pixels.
    """
    return crop_to_image(rescale_points(coords, heatmap_size, input_size), centers, scales, input_size)


def reframe_theta(
    src_centers: np.ndarray, src_scales: np.ndarray, dst_centers: np.ndarray, dst_scales: np.ndarray
) -> np.ndarray:
    """Affine grids that resample crops (or feature maps of crops) of one box into the crops of another.

    Under the UDP mapping the first and last pixel centres of a crop lie at ``c ∓ s / 2``, i.e. at
    the normalised coordinates ∓1 of ``grid_sample(..., align_corners=True)`` on any grid of that
    crop (input or stride-4 features). A destination position ``n`` is the image point
    ``c_dst + n * s_dst / 2``, found at ``(c_dst - c_src + n * s_dst / 2) * 2 / s_src`` in the source.

    Args:
        src_centers, src_scales: (N, 2) crops the data was cut with.
        dst_centers, dst_scales: (N, 2) crops to express it in.

    Returns:
        (N, 2, 3) float64 theta for ``F.affine_grid(theta, size, align_corners=True)``; exactly the
        identity where source and destination crops are equal.
    """
    src_scales = np.asarray(src_scales, dtype=np.float64)
    ratio = np.asarray(dst_scales, dtype=np.float64) / src_scales  # (N, 2)
    shift = 2.0 * (np.asarray(dst_centers, dtype=np.float64) - np.asarray(src_centers, dtype=np.float64)) / src_scales
    theta = np.zeros((len(ratio), 2, 3))
    theta[:, 0, 0], theta[:, 1, 1] = ratio[:, 0], ratio[:, 1]
    theta[:, :, 2] = shift
    return theta


def flip_keypoints(keypoints: np.ndarray, width: float, flip_perm: Sequence[int]) -> np.ndarray:
    """Mirror keypoints horizontally and swap left/right joints.

    Args:
        keypoints: (..., K, D) with x in channel 0 and D >= 2; extra channels (y, visibility)
            are carried along.
        width: width in pixels of the image (or crop) being flipped; ``x → width - 1 - x``.
        flip_perm: (K,) joint permutation, e.g. ``famipose.data.keypoints.flip_permutation()``.

    Returns:
        (..., K, D) flipped copy.
    """
    flipped = np.array(keypoints, dtype=np.float64)[..., list(flip_perm), :]
    flipped[..., 0] = width - 1 - flipped[..., 0]
    return flipped


def flip_heatmaps_back(heatmaps: torch.Tensor, flip_perm: Sequence[int], shift: bool = False) -> torch.Tensor:
    """Undo the flip of heatmaps predicted on a horizontally flipped input (flip test).

    Under this package's UDP mapping the mirrored heatmap is already aligned, so ``shift`` defaults
    to False. ``shift=True`` reproduces HRNet's one-pixel right shift for models trained with the
    biased (``x * stride``) mapping.

    Args:
        heatmaps: (B, K, h, w) heatmaps of the flipped input.
        flip_perm: (K,) joint permutation.
        shift: move the result one pixel right, repeating column 0.

    Returns:
        (B, K, h, w) heatmaps in the original orientation and joint order.
    """
    restored = heatmaps[:, list(flip_perm)].flip(-1)
    if shift:
        restored = torch.cat([restored[..., :1], restored[..., :-1]], dim=-1)
    return restored


def flip_simcc_back(
    simcc_x: torch.Tensor, simcc_y: torch.Tensor, flip_perm: Sequence[int], split_ratio: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Undo the flip of SimCC vectors predicted on a horizontally flipped input (flip test).

    Input pixel ``x`` sits at bin ``k * x`` (:mod:`famipose.codecs.simcc`) and mirrors to
    ``x' = w - 1 - x``, so bin ``i`` of the original is bin ``k * (w - 1) - i`` of the mirrored
    vector: the reversed vector moved ``k - 1`` bins (rounded) towards 0, its last bins repeating
    the edge. mmpose reverses without the move, a ``(k - 1) / k`` pixel bias.

    Args:
        simcc_x: (B, K, Wx) horizontal vectors of the flipped input.
        simcc_y: (B, K, Ny) vertical vectors of the flipped input.
        flip_perm: (K,) joint permutation.
        split_ratio: Bins per input pixel ``k``.

    Returns:
        ``(simcc_x, simcc_y)`` in the original orientation and joint order.
    """
    order = list(flip_perm)
    restored = simcc_x[:, order].flip(-1)
    move = round(split_ratio - 1)
    if move:
        edge = restored[..., -1:].expand(*restored.shape[:-1], move)
        restored = torch.cat([restored[..., move:], edge], dim=-1)
    return restored, simcc_y[:, order]
