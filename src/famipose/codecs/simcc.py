"""SimCC coordinate-classification codec (Li et al., "SimCC", ECCV 2022).

Each axis of the input is split into ``split_ratio`` bins per pixel: ``Nx = round(w * k)`` and
``Ny = round(h * k)``. A keypoint at input pixel ``x`` sits at bin coordinate ``mu = k * x`` (pixel
centres at integer coordinates, as everywhere in ``famipose.codecs``), and decoding divides the
winning bin by ``k``, so round trips are accurate to ``0.5 / k`` input pixels.

Modes: ``"sa-simdr"`` labels are Gaussians centred on the unrounded ``mu`` (label smoothing), with
``sigma`` in bins; ``"simdr"`` labels are one-hot at the nearest bin and ignore ``sigma``.

Which joints are labelled follows mmpose's ``SimCCLabel``: a Gaussian label is kept while any part
of its ``3 sigma`` window overlaps the bins (so a joint just outside the crop still teaches the
classifier to point at the border), a one-hot label while its bin exists.

Shape symbols: N instances, K joints, Nx/Ny SimCC bins along x/y.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from famipose.codecs.transforms import Size

SimCCMode = Literal["sa-simdr", "simdr"]
MODES: tuple[str, ...] = ("sa-simdr", "simdr")
LABEL_WINDOW_SIGMAS = 3.0  # a Gaussian label counts while mu ± 3 sigma overlaps the bins (mmpose)


def simcc_bins(input_size: Size, split_ratio: float) -> tuple[int, int]:
    """Number of bins ``(Nx, Ny)`` for an input of ``(w, h)`` pixels."""
    return round(input_size[0] * split_ratio), round(input_size[1] * split_ratio)


def _labels_1d(centers: np.ndarray, num_bins: int, sigma: float, mode: SimCCMode) -> np.ndarray:
    """Labels along one axis, peak value 1.

    Args:
        centers: (N, K) bin coordinates ``mu``.
        num_bins: bins along the axis.
        sigma: Gaussian standard deviation in bins (``"sa-simdr"`` only).
        mode: ``"sa-simdr"`` or ``"simdr"``.

    Returns:
        (N, K, num_bins) float64 labels.
    """
    bins = np.arange(num_bins)
    if mode == "simdr":
        return (bins == np.rint(centers)[..., None]).astype(np.float64)
    return np.exp(-((bins - centers[..., None]) ** 2) / (2 * sigma**2))


def encode_simcc(
    keypoints: np.ndarray,
    visible: np.ndarray,
    input_size: Size,
    split_ratio: float,
    sigma: float | tuple[float, float] = 6.0,
    normalize: bool = False,
    mode: SimCCMode = "sa-simdr",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build SimCC x/y classification targets.

    Args:
        keypoints: (N, K, 2) keypoints in input pixels; NaN marks a missing joint (weight 0).
        visible: (N, K) visibility flags {0, 1} or per-joint loss weights.
        input_size: network input ``(w, h)``.
        split_ratio: bins per input pixel ``k >= 1``.
        sigma: Gaussian standard deviation in bins, one value or ``(sigma_x, sigma_y)``.
        normalize: scale each label to sum 1 (for KL / cross-entropy) instead of peak 1.
        mode: ``"sa-simdr"`` (Gaussian labels) or ``"simdr"`` (one-hot labels).

    Returns:
        target_x: (N, K, Nx) float32 labels (all zero where the weight is 0).
        target_y: (N, K, Ny) float32 labels.
        weights: (N, K) float32 ``visible``, set to 0 for joints without a label: for
            ``"sa-simdr"`` those whose window ``mu ± 3 sigma`` misses ``[0, N - 1]`` on an axis, for
            ``"simdr"`` those whose nearest bin lies outside it.

    Raises:
        ValueError: unknown ``mode`` or ``split_ratio < 1``.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown SimCC mode {mode!r}; valid modes: {', '.join(MODES)}")
    if split_ratio < 1:
        raise ValueError(f"split_ratio must be >= 1, got {split_ratio}")
    sigma_x, sigma_y = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (2,))
    num_x, num_y = simcc_bins(input_size, split_ratio)
    centers = np.asarray(keypoints, dtype=np.float64) * split_ratio  # (N, K, 2)
    last_bin = np.array([num_x - 1, num_y - 1])
    if mode == "simdr":
        nearest = np.rint(centers)
        in_range = np.all((nearest >= 0) & (nearest <= last_bin), axis=-1)
    else:
        reach = LABEL_WINDOW_SIGMAS * np.array([sigma_x, sigma_y])
        in_range = np.all((centers + reach >= 0) & (centers - reach <= last_bin), axis=-1)
    weights = np.asarray(visible, dtype=np.float32) * in_range
    keep = (weights > 0)[..., None]
    targets = []
    for axis, num_bins, axis_sigma in ((0, num_x, sigma_x), (1, num_y, sigma_y)):
        labels = np.where(keep, _labels_1d(centers[..., axis], num_bins, float(axis_sigma), mode), 0.0)
        if normalize:
            labels = labels / np.maximum(labels.sum(-1, keepdims=True), np.finfo(np.float64).tiny)
        targets.append(labels.astype(np.float32))
    return targets[0], targets[1], weights


def decode_simcc(
    simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """Decode SimCC vectors by per-axis argmax.

    Coordinates are always the argmax bin divided by ``split_ratio``; no sentinel marks weak
    joints, so threshold ``scores`` downstream. Pass probabilities (e.g. softmax outputs) to get
    comparable scores.

    Args:
        simcc_x: (N, K, Nx) x-axis scores.
        simcc_y: (N, K, Ny) y-axis scores.
        split_ratio: bins per input pixel used to encode.

    Returns:
        coords: (N, K, 2) float64 ``(x, y)`` in input pixels.
        scores: (N, K) float64 minimum of the two axis maxima.
    """
    simcc_x, simcc_y = np.asarray(simcc_x), np.asarray(simcc_y)
    index_x, index_y = simcc_x.argmax(-1), simcc_y.argmax(-1)
    coords = np.stack([index_x, index_y], -1) / split_ratio
    max_x = np.take_along_axis(simcc_x, index_x[..., None], -1)[..., 0]
    max_y = np.take_along_axis(simcc_y, index_y[..., None], -1)[..., 0]
    return coords, np.minimum(max_x, max_y).astype(np.float64)
