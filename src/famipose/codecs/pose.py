"""Head logits of a batch of crops -> keypoints in image pixels (shared by testing and video inference).

:class:`PoseLogits`, the heads' output, lives here beside its decoder rather than in
:mod:`famipose.models.heads`: the codecs sit at the bottom of the import graph (they import no
model, config, data, engine or inference module), and the heads, the losses and the decoder all
read the one container from here. The decoder takes the sizes it needs as arguments instead of a
model config for the same reason.

Shape symbols: N crops, K joints, h/w heatmap size, Wx/Ny SimCC bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from famipose.codecs.heatmap import decode_heatmaps, decode_heatmaps_torch
from famipose.codecs.simcc import decode_simcc
from famipose.codecs.transforms import Size, crop_to_image, heatmap_to_image


@dataclass
class PoseLogits:
    """Raw head outputs; exactly one representation is set.

    Attributes:
        heatmaps: (N, K, h, w) heatmap logits, or ``None``.
        simcc_x: (N, K, Wx) horizontal bin logits, or ``None``.
        simcc_y: (N, K, Ny) vertical bin logits, or ``None``.
    """

    heatmaps: Tensor | None = None
    simcc_x: Tensor | None = None
    simcc_y: Tensor | None = None

    def __post_init__(self) -> None:
        has_heatmaps = self.heatmaps is not None
        has_simcc = self.simcc_x is not None and self.simcc_y is not None
        if has_heatmaps == has_simcc:
            raise ValueError("PoseLogits needs either heatmaps or both simcc_x and simcc_y")

    @property
    def is_simcc(self) -> bool:
        """Whether the logits are SimCC bins."""
        return self.heatmaps is None

    def flat_distributions(self) -> list[Tensor]:
        """Logits flattened to one categorical axis per distribution.

        Returns:
            ``[(N, K, h*w)]`` for heatmaps, ``[(N, K, Wx), (N, K, Ny)]`` for SimCC.
        """
        if self.heatmaps is not None:
            return [self.heatmaps.flatten(2)]
        return [self.simcc_x, self.simcc_y]  # type: ignore[list-item]


def decode_pose_logits(
    logits: PoseLogits,
    centers: np.ndarray,
    scales: np.ndarray,
    input_size: Size,
    simcc_split_ratio: float,
    dark_sigma: float | None = None,
) -> np.ndarray:
    """Image-space joints from head logits.

    Heatmaps: argmax with the quarter-pixel shift, on the logits' device (only the (N, K, 3)
    result is copied to the host), score = heatmap maximum; with ``dark_sigma``, DARK refinement
    instead (on the host). SimCC: per-axis argmax of the softmax, score = the smaller axis
    probability.

    Args:
        logits: Head output for N crops.
        centers: (N, 2) crop centres in image pixels.
        scales: (N, 2) crop sizes in image pixels.
        input_size: Crop size (w, h) the network read (``ModelConfig.input_size``).
        simcc_split_ratio: SimCC bins per input pixel (``ModelConfig.head.simcc_split_ratio``);
            unused for heatmaps, whose size comes from the logits themselves.
        dark_sigma: Heatmaps: the target Gaussian's sigma in heatmap pixels (``data.sigma``) for
            DARK decoding (``predict.dark``), or ``None`` for the quarter-pixel shift.

    Returns:
        (N, K, 3) float64 ``(x, y, score)`` in image pixels.
    """
    if logits.is_simcc:
        probabilities = [t.float().softmax(-1).cpu().numpy() for t in (logits.simcc_x, logits.simcc_y)]  # (N, K, n)
        coords, scores = decode_simcc(*probabilities, simcc_split_ratio)  # (N, K, 2) input px
        image = crop_to_image(coords, centers, scales, input_size)
    else:
        heatmaps = logits.heatmaps.float()  # (N, K, h, w)
        if dark_sigma is None:
            found = decode_heatmaps_torch(heatmaps)  # (N, K, 2) heatmap px, (N, K)
            coords, scores = (t.double().cpu().numpy() for t in found)
        else:
            coords, scores = decode_heatmaps(heatmaps.cpu().numpy(), dark=True, sigma=dark_sigma)
        heatmap_size = (heatmaps.shape[-1], heatmaps.shape[-2])  # (w, h)
        image = heatmap_to_image(coords, centers, scales, heatmap_size, input_size)
    return np.concatenate([image, scores[..., None]], axis=-1)  # (N, K, 3)
