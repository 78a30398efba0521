"""Flip test: un-mirroring SimCC vectors, averaging, and the mirror symmetry of the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from famipose.codecs.heatmap import encode_heatmaps
from famipose.codecs.pose import PoseLogits
from famipose.codecs.simcc import decode_simcc, encode_simcc
from famipose.codecs.transforms import flip_keypoints, flip_simcc_back
from famipose.config import load_config
from famipose.data.keypoints import flip_permutation
from famipose.models.famipose import FamiPose
from famipose.models.flip import flip_test, unflip_logits

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
INPUT, HEATMAP = (48, 64), (12, 16)  # (w, h)


def _joints(seed: int) -> np.ndarray:
    """(2, 17, 2) input-pixel positions well inside the crop."""
    return np.random.default_rng(seed).uniform([8, 8], [INPUT[0] - 9, INPUT[1] - 9], size=(2, 17, 2))


@pytest.mark.parametrize("split_ratio", [1.0, 2.0, 3.0])
def test_unflipped_simcc_labels_of_mirrored_joints_are_the_labels_of_the_joints(split_ratio: float) -> None:
    joints, perm, visible = _joints(1), flip_permutation(), np.ones((2, 17))
    x, y, _ = encode_simcc(joints, visible, INPUT, split_ratio, sigma=2.0, mode="sa-simdr")
    mirrored = flip_keypoints(joints, INPUT[0], perm)
    mx, my, _ = encode_simcc(mirrored, visible, INPUT, split_ratio, sigma=2.0, mode="sa-simdr")
    rx, ry = flip_simcc_back(torch.from_numpy(mx), torch.from_numpy(my), perm, split_ratio)
    torch.testing.assert_close(rx, torch.from_numpy(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(ry, torch.from_numpy(y), atol=0, rtol=0)
    decoded, _ = decode_simcc(rx.numpy(), ry.numpy(), split_ratio)
    np.testing.assert_allclose(decoded, np.round(joints * split_ratio) / split_ratio, atol=1e-9)


def test_reversing_without_the_move_is_off_by_k_minus_1_bins() -> None:
    """The move is what mmpose's plain reversal lacks: at k = 3 a joint lands 2 bins (2/3 px) too far right."""
    joints, perm, visible = _joints(2).round(), flip_permutation(), np.ones((2, 17))
    x, _, _ = encode_simcc(joints, visible, INPUT, 3.0, sigma=2.0, mode="sa-simdr")
    mx, _, _ = encode_simcc(flip_keypoints(joints, INPUT[0], perm), visible, INPUT, 3.0, sigma=2.0, mode="sa-simdr")
    reversed_only = mx[:, perm, ::-1]
    assert np.array_equal(reversed_only.argmax(-1), x.argmax(-1) + 2)


def test_flip_test_mirrors_the_supports_and_averages_to_the_consistent_answer() -> None:
    """A network that is right on both views: the flip test returns its plain answer."""
    joints, perm, visible = _joints(3), flip_permutation(), np.ones((2, 17))
    plain, _ = encode_heatmaps(joints, visible, INPUT, HEATMAP, 1.5)
    mirrored, _ = encode_heatmaps(flip_keypoints(joints, INPUT[0], perm), visible, INPUT, HEATMAP, 1.5)
    key = torch.rand(2, 3, INPUT[1], INPUT[0])
    supports = torch.rand(2, 4, 3, INPUT[1], INPUT[0])
    seen = []

    def predict(k: torch.Tensor, s: torch.Tensor | None) -> PoseLogits:
        seen.append(s)
        return PoseLogits(heatmaps=torch.from_numpy(plain if torch.equal(k, key) else mirrored))

    averaged = flip_test(predict, key, supports, perm, 1.0)
    torch.testing.assert_close(averaged.heatmaps, torch.from_numpy(plain), atol=1e-6, rtol=0)
    assert torch.equal(seen[1], supports.flip(-1))
    wrong = flip_test(predict, key, supports, list(range(17)), 1.0)  # left and right not swapped
    assert (wrong.heatmaps - torch.from_numpy(plain)).abs().max() > 0.1


@pytest.mark.parametrize("name", ["single_frame_tiny", "famipose_tiny"])
def test_flip_test_of_a_network_is_mirror_symmetric(name: str) -> None:
    """F(mirror x) = unflip(F(x)) for any network: the flip test itself is mirror-equivariant."""
    torch.manual_seed(0)
    config = load_config(CONFIGS / f"{name}.yaml")
    model = FamiPose(config.model).eval()
    width, height = config.model.input_size
    key = torch.rand(2, 3, height, width, dtype=torch.float64)
    supports = torch.rand(2, config.model.num_supports, 3, height, width, dtype=torch.float64)
    supports = supports if config.model.num_supports else None
    model = model.double()
    with torch.no_grad():  # random weights of unit-order outputs (heads start near 0, the residual fusion at 0)
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.1)
    perm = flip_permutation()
    with torch.no_grad():

        def predict(k: torch.Tensor, s: torch.Tensor | None) -> PoseLogits:
            return model(k, s).pose

        direct = flip_test(predict, key, supports, perm, 1.0)
        of_mirror = flip_test(predict, key.flip(-1), None if supports is None else supports.flip(-1), perm, 1.0)
    scale = direct.heatmaps.abs().max()
    assert scale > 1e-3
    expected = unflip_logits(direct, perm, 1.0).heatmaps
    torch.testing.assert_close(of_mirror.heatmaps, expected, atol=1e-10 * float(scale), rtol=0)
    with torch.no_grad():
        plain = predict(key, supports).heatmaps
    assert (direct.heatmaps - plain).abs().max() > 1e-3 * scale  # the mirrored pass counts
