"""Head logits of a batch of crops -> keypoints in image pixels (shared by testing and video inference).

Shape symbols: N crops, K joints.
"""

from __future__ import annotations

import numpy as np

from famipose.codecs.heatmap import decode_heatmaps
from famipose.codecs.simcc import decode_simcc
from famipose.codecs.transforms import crop_to_image, heatmap_to_image
from famipose.config import ModelConfig
from famipose.models.heads import PoseLogits


def decode_pose_logits(logits: PoseLogits, centers: np.ndarray, scales: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Image-space joints from head logits.

    Heatmaps: argmax with the quarter-pixel shift, score = heatmap maximum. SimCC: per-axis argmax
    of the softmax, score = the smaller axis probability.

    Args:
        logits: Head output for N crops.
        centers: (N, 2) crop centres in image pixels.
        scales: (N, 2) crop sizes in image pixels.
        config: Input/heatmap sizes and SimCC split ratio.

    Returns:
        (N, K, 3) float64 ``(x, y, score)`` in image pixels.
    """
    if logits.is_simcc:
        probabilities = [t.float().softmax(-1).cpu().numpy() for t in (logits.simcc_x, logits.simcc_y)]  # (N, K, n)
        coords, scores = decode_simcc(*probabilities, config.head.simcc_split_ratio)  # (N, K, 2) input px
        image = crop_to_image(coords, centers, scales, config.input_size)
    else:
        coords, scores = decode_heatmaps(logits.heatmaps.float().cpu().numpy())  # (N, K, 2) heatmap px
        image = heatmap_to_image(coords, centers, scales, config.heatmap_size, config.input_size)
    return np.concatenate([image, scores[..., None]], axis=-1)  # (N, K, 3)
