"""Flip test: the network's logits averaged with those of the mirrored crops, un-mirrored.

HRNet's ``TEST.FLIP_TEST`` and mmpose's ``flip_test``: the key and support crops are mirrored
horizontally, the network runs again, and its output is mirrored back (heatmaps or SimCC
vectors, left and right joints swapped) and averaged with the plain output before decoding.
The joint permutation is an argument (``famipose.data.keypoints.flip_permutation()``), so the
model layer knows nothing of a data set.

Shape symbols: B batch, S supports, K joints, H/W input size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from famipose.codecs.pose import PoseLogits
from famipose.codecs.transforms import flip_heatmaps_back, flip_simcc_back


def unflip_logits(logits: PoseLogits, flip_perm: Sequence[int], split_ratio: float) -> PoseLogits:
    """Logits of a mirrored input in the original orientation and joint order.

    Heatmaps are mirrored back without HRNet's one-pixel shift: under this package's unbiased
    mapping the mirrored map is already aligned (:func:`famipose.codecs.transforms.flip_heatmaps_back`).
    """
    if logits.is_simcc:
        x, y = flip_simcc_back(logits.simcc_x, logits.simcc_y, flip_perm, split_ratio)  # type: ignore[arg-type]
        return PoseLogits(simcc_x=x, simcc_y=y)
    return PoseLogits(heatmaps=flip_heatmaps_back(logits.heatmaps, flip_perm))  # type: ignore[arg-type]


def average_logits(first: PoseLogits, second: PoseLogits) -> PoseLogits:
    """The mean of two outputs of the same head."""
    if first.is_simcc:
        return PoseLogits(simcc_x=(first.simcc_x + second.simcc_x) / 2, simcc_y=(first.simcc_y + second.simcc_y) / 2)  # type: ignore[operator]
    return PoseLogits(heatmaps=(first.heatmaps + second.heatmaps) / 2)  # type: ignore[operator]


def flip_test(
    predict: Callable[[Tensor, Tensor | None], PoseLogits],
    key: Tensor,
    supports: Tensor | None,
    flip_perm: Sequence[int],
    split_ratio: float,
) -> PoseLogits:
    """Average of ``predict`` on the crops and, un-mirrored, on their mirror images.

    Args:
        predict: ``predict(key (B, 3, H, W), supports (B, S, 3, H, W) | None) -> PoseLogits``, e.g.
            ``lambda k, s: model(k, s).pose``.
        key: Key-frame crops (B, 3, H, W).
        supports: Support crops (B, S, 3, H, W), or ``None`` for the single-frame model.
        flip_perm: (K,) joint permutation of a horizontal flip.
        split_ratio: SimCC bins per input pixel (read only for SimCC logits).

    Returns:
        The averaged logits, in the layout of ``predict``'s.
    """
    plain = predict(key, supports)
    mirrored = predict(key.flip(-1), None if supports is None else supports.flip(-1))  # (B, 3, H, W) mirrored
    return average_logits(plain, unflip_logits(mirrored, flip_perm, split_ratio))
