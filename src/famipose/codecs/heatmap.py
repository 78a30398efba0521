"""MSRA Gaussian heatmap codec (Xiao et al. 2018) with DARK decoding (Zhang et al., CVPR 2020).

Keypoints enter in input (crop) pixels and are mapped to heatmap pixels with the unbiased rule of
``famipose.codecs.transforms.rescale_points``. Each joint's target is a Gaussian evaluated at its
true sub-pixel position (no rounding of the centre), truncated to a square of half-side ``3 * sigma``
as in MSRA. Decoded coordinates are in heatmap pixels; map them back with
``transforms.heatmap_to_image``.

Shape symbols: N instances, K joints, h/w heatmap height/width.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from famipose.codecs.transforms import Size, rescale_points

TRUNCATE_SIGMAS = 3.0  # Gaussian support half-width, in sigmas, for targets and DARK smoothing.
QUARTER = 0.25


def _truncated_gaussian_1d(grid: np.ndarray, centers: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian profiles exp(-(t - mu)^2 / 2 sigma^2), zero beyond ``TRUNCATE_SIGMAS * sigma``.

    Args:
        grid: (L,) sample positions.
        centers: (N, K) centres ``mu``.
        sigma: standard deviation in grid units.

    Returns:
        (N, K, L) profiles.
    """
    distance = grid - centers[..., None]
    inside = np.abs(distance) <= TRUNCATE_SIGMAS * sigma
    return np.where(inside, np.exp(-(distance**2) / (2 * sigma**2)), 0.0)


def encode_heatmaps(
    keypoints: np.ndarray,
    visible: np.ndarray,
    input_size: Size,
    heatmap_size: Size,
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Render unbiased MSRA Gaussian heatmaps.

    Args:
        keypoints: (N, K, 2) keypoints in input pixels; NaN marks a missing joint (weight 0).
        visible: (N, K) visibility flags {0, 1} or per-joint loss weights.
        input_size: network input ``(w, h)``.
        heatmap_size: heatmap ``(w, h)``.
        sigma: Gaussian standard deviation in heatmap pixels.

    Returns:
        heatmaps: (N, K, h, w) float32 targets with peak value 1 (all zero where the weight is 0).
        target_weights: (N, K) float32 ``visible``, set to 0 for joints whose truncated Gaussian
            covers no heatmap pixel.
    """
    width, height = heatmap_size
    centers = rescale_points(keypoints, input_size, heatmap_size)  # (N, K, 2)
    profile_x = _truncated_gaussian_1d(np.arange(width), centers[..., 0], sigma)  # (N, K, w)
    profile_y = _truncated_gaussian_1d(np.arange(height), centers[..., 1], sigma)  # (N, K, h)
    covers_map = (profile_x > 0).any(-1) & (profile_y > 0).any(-1)
    weights = np.asarray(visible, dtype=np.float32) * covers_map
    heatmaps = profile_y[..., :, None] * profile_x[..., None, :] * (weights > 0)[..., None, None]
    return heatmaps.astype(np.float32), weights


def _argmax_2d(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer location and value of each map's maximum.

    Args:
        heatmaps: (N, K, h, w).

    Returns:
        ix: (N, K) column, iy: (N, K) row, scores: (N, K) float64 maximum.
    """
    flat = heatmaps.reshape(*heatmaps.shape[:-2], -1)
    index = flat.argmax(-1)
    scores = np.take_along_axis(flat, index[..., None], -1)[..., 0].astype(np.float64)
    iy, ix = np.divmod(index, heatmaps.shape[-1])
    return ix, iy, scores


def _neighbourhood(maps: np.ndarray, ix: np.ndarray, iy: np.ndarray, fill: float) -> np.ndarray:
    """3x3 patch of each map around (ix, iy); cells outside the map hold ``fill``.

    Args:
        maps: (N, K, h, w).
        ix: (N, K) columns.
        iy: (N, K) rows.
        fill: value for cells beyond the border.

    Returns:
        (N, K, 3, 3) float64 patch indexed [row offset + 1, column offset + 1].
    """
    height, width = maps.shape[-2:]
    offsets = np.arange(-1, 2)
    rows = iy[..., None, None] + offsets[:, None]  # (N, K, 3, 1)
    cols = ix[..., None, None] + offsets[None, :]  # (N, K, 1, 3)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)  # (N, K, 3, 3)
    flat_index = np.clip(rows, 0, height - 1) * width + np.clip(cols, 0, width - 1)
    lead = maps.shape[:-2]
    values = np.take_along_axis(maps.reshape(*lead, -1), flat_index.reshape(*lead, 9), -1)
    return np.where(inside, values.reshape(*lead, 3, 3), fill).astype(np.float64)


def _quarter_offsets(heatmaps: np.ndarray, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """Classic refinement: a quarter pixel toward the higher neighbour on each axis.

    Neighbours beyond the border count as -inf, so border maxima move inward (HRNet leaves them).

    Args:
        heatmaps: (N, K, h, w).
        ix: (N, K) argmax columns.
        iy: (N, K) argmax rows.

    Returns:
        (N, K, 2) offsets in {-0.25, 0, 0.25}.
    """
    patch = _neighbourhood(heatmaps, ix, iy, -np.inf)
    low = np.stack([patch[..., 1, 0], patch[..., 0, 1]], -1)  # left, up
    high = np.stack([patch[..., 1, 2], patch[..., 2, 1]], -1)  # right, down
    return QUARTER * ((high > low).astype(np.float64) - (low > high))


def dark_offsets(log_patch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One Newton step on a log-heatmap: offset ``-H^-1 g`` from second-order central differences.

    Exact when ``log_patch`` samples a quadratic, i.e. the log of a Gaussian.

    Args:
        log_patch: (N, K, 3, 3) log-likelihood around the maximum, NaN outside the map.

    Returns:
        offsets: (N, K, 2) sub-pixel offsets (x, y).
        valid: (N, K) True where the patch is inside the map and the Hessian is negative definite.
    """
    centre = log_patch[..., 1, 1]
    dx = 0.5 * (log_patch[..., 1, 2] - log_patch[..., 1, 0])
    dy = 0.5 * (log_patch[..., 2, 1] - log_patch[..., 0, 1])
    dxx = log_patch[..., 1, 2] - 2 * centre + log_patch[..., 1, 0]
    dyy = log_patch[..., 2, 1] - 2 * centre + log_patch[..., 0, 1]
    dxy = 0.25 * (log_patch[..., 2, 2] - log_patch[..., 2, 0] - log_patch[..., 0, 2] + log_patch[..., 0, 0])
    det = dxx * dyy - dxy**2
    valid = (dxx < 0) & (det > 0)
    safe_det = np.where(valid, det, 1.0)
    offset_x = -(dyy * dx - dxy * dy) / safe_det
    offset_y = -(dxx * dy - dxy * dx) / safe_det
    return np.stack([offset_x, offset_y], -1), valid


def decode_heatmaps(
    heatmaps: np.ndarray, dark: bool = False, sigma: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Locate each joint's maximum with sub-pixel refinement.

    Classic: argmax plus a quarter pixel toward the higher neighbour on each axis (error <= 0.25 px
    on a Gaussian target). DARK: the map is smoothed with a Gaussian of ``sigma`` (truncated at
    ``3 * sigma``, zero padding, as in the DARK reference code) and the argmax is refined by a Taylor
    (Newton) step on the log of the smoothed map; joints where that step is undefined (maximum on the
    border, Hessian not negative definite) keep the classic estimate. On targets from
    ``encode_heatmaps`` DARK is accurate to ~0.01 px for peaks at least ``2 * sigma`` from the
    border; closer in, the zero padding of the smoothing biases it.

    Args:
        heatmaps: (N, K, h, w) heatmaps.
        dark: use DARK refinement.
        sigma: target Gaussian sigma in heatmap pixels; sets the DARK smoothing kernel.

    Returns:
        coords: (N, K, 2) float64 ``(x, y)`` in heatmap pixels.
        scores: (N, K) float64 heatmap maxima.
    """
    heatmaps = np.asarray(heatmaps)
    ix, iy, scores = _argmax_2d(heatmaps)
    peaks = np.stack([ix, iy], -1).astype(np.float64)
    coords = peaks + _quarter_offsets(heatmaps, ix, iy)
    if dark:
        smoothed = gaussian_filter(
            heatmaps.astype(np.float64), sigma, mode="constant", truncate=TRUNCATE_SIGMAS, axes=(-2, -1)
        )
        log_patch = _neighbourhood(np.log(np.maximum(smoothed, 1e-10)), ix, iy, np.nan)
        offsets, valid = dark_offsets(log_patch)
        coords = np.where(valid[..., None], peaks + offsets, coords)
    return coords, scores


def decode_heatmaps_torch(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Classic decoding on any device: argmax plus a quarter pixel toward the higher neighbour.

    Matches ``decode_heatmaps(..., dark=False)``.

    Args:
        heatmaps: (B, K, h, w) heatmaps.

    Returns:
        coords: (B, K, 2) ``(x, y)`` in heatmap pixels, dtype of ``heatmaps``.
        scores: (B, K) heatmap maxima.
    """
    width = heatmaps.shape[-1]
    scores, index = heatmaps.flatten(-2).max(-1)
    iy, ix = index // width, index % width
    padded = F.pad(heatmaps, (1, 1, 1, 1), value=float("-inf")).flatten(-2)  # (B, K, (h+2)(w+2))

    def at(row_offset: int, col_offset: int) -> torch.Tensor:
        flat_index = (iy + 1 + row_offset) * (width + 2) + ix + 1 + col_offset
        return padded.gather(-1, flat_index.unsqueeze(-1)).squeeze(-1)

    def step(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return QUARTER * ((high > low).to(heatmaps.dtype) - (low > high).to(heatmaps.dtype))

    coords = torch.stack([ix + step(at(0, -1), at(0, 1)), iy + step(at(-1, 0), at(1, 0))], -1)
    return coords.to(heatmaps.dtype), scores
