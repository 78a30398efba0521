"""Tests for famipose.codecs.heatmap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from famipose.codecs.heatmap import dark_offsets, decode_heatmaps, decode_heatmaps_torch, encode_heatmaps
from famipose.codecs.transforms import flip_heatmaps_back, flip_keypoints, rescale_points
from famipose.data.keypoints import flip_permutation

INPUT, HEATMAP = (192, 256), (48, 64)


def random_heatmap_points(rng: np.random.Generator, margin: float, n: int = 8) -> np.ndarray:
    """(n, 17, 2) sub-pixel heatmap positions at least ``margin`` from the border."""
    low, high = np.array([margin, margin]), np.array(HEATMAP) - 1 - margin
    return rng.uniform(low, high, size=(n, 17, 2))


@pytest.mark.parametrize("sigma", [2.0, 3.0])
def test_dark_round_trip_within_005_px(sigma: float) -> None:
    truth = random_heatmap_points(np.random.default_rng(int(sigma)), margin=2 * sigma)
    keypoints = rescale_points(truth, HEATMAP, INPUT)
    heatmaps, weights = encode_heatmaps(keypoints, np.ones(truth.shape[:2]), INPUT, HEATMAP, sigma)
    coords, scores = decode_heatmaps(heatmaps, dark=True, sigma=sigma)
    assert np.abs(coords - truth).max() <= 0.05
    assert weights.min() == 1.0 and scores.min() > 0.75


@pytest.mark.parametrize("sigma", [2.0, 3.0])
def test_classic_round_trip_within_quarter_px_anywhere_in_map(sigma: float) -> None:
    truth = random_heatmap_points(np.random.default_rng(7), margin=0.0, n=16)
    heatmaps, _ = encode_heatmaps(truth, np.ones(truth.shape[:2]), HEATMAP, HEATMAP, sigma)
    coords, _ = decode_heatmaps(heatmaps)
    assert np.abs(coords - truth).max() <= 0.25 + 1e-9
    # Plain argmax would be off by up to half a pixel; the quarter step must actually help.
    assert np.abs(coords - truth).mean() < 0.2


@settings(max_examples=40, deadline=None)
@given(x=st.floats(0, 47), y=st.floats(0, 63), sigma=st.floats(1.0, 4.0))
def test_classic_decode_property(x: float, y: float, sigma: float) -> None:
    heatmaps, _ = encode_heatmaps(np.array([[[x, y]]]), np.ones((1, 1)), HEATMAP, HEATMAP, sigma)
    coords, _ = decode_heatmaps(heatmaps)
    assert np.abs(coords[0, 0] - [x, y]).max() <= 0.25 + 1e-9


def test_dark_taylor_step_by_hand() -> None:
    # log N((0.3, -0.2), I) sampled on a 3x3 grid around the origin: f = -((x-0.3)^2 + (y+0.2)^2) / 2.
    # Central differences: dx = 0.3, dy = -0.2, dxx = dyy = -1, dxy = 0 -> offset = (0.3, -0.2).
    grid = np.arange(-1, 2)
    patch = -((grid[None, :] - 0.3) ** 2 + (grid[:, None] + 0.2) ** 2) / 2
    offsets, valid = dark_offsets(patch[None, None])
    np.testing.assert_allclose(offsets[0, 0], [0.3, -0.2], atol=1e-12)
    assert valid.all()


def test_dark_taylor_step_exact_for_correlated_quadratic() -> None:
    # Any quadratic with negative definite Hessian: one Newton step lands on its maximum.
    centre = np.array([-0.45, 0.35])
    hessian = np.array([[-1.3, 0.4], [0.4, -0.7]])
    grid = np.stack(np.meshgrid(np.arange(-1, 2), np.arange(-1, 2)), -1) - centre  # (3, 3, 2) as (x, y)
    patch = 0.5 * np.einsum("...i,ij,...j->...", grid, hessian, grid)
    offsets, valid = dark_offsets(patch[None, None])
    np.testing.assert_allclose(offsets[0, 0], centre, atol=1e-12)
    assert valid.all()


def test_dark_rejects_non_maximum_and_border_patches() -> None:
    saddle = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    border = np.full((3, 3), -1.0)
    border[1, 1] = 0.0
    border[:, 0] = np.nan
    _, valid = dark_offsets(np.stack([saddle, border])[None])
    assert not valid.any()


def test_dark_falls_back_to_classic_on_border() -> None:
    heatmaps, _ = encode_heatmaps(np.array([[[0.1, 30.0]]]), np.ones((1, 1)), HEATMAP, HEATMAP, 2.0)
    dark, _ = decode_heatmaps(heatmaps, dark=True, sigma=2.0)
    classic, _ = decode_heatmaps(heatmaps)
    np.testing.assert_array_equal(dark, classic)
    assert dark[0, 0, 0] == 0.25  # border maximum steps inward


def test_encode_peak_weights_and_out_of_map_joints() -> None:
    sigma = 2.0
    keypoints = np.array([[[10.0, 20.0], [-6.0, 5.0], [-6.5, 5.0], [20.0, 69.0], [5.0, 5.0], [np.nan, 1.0]]])
    visible = np.array([[1.0, 1.0, 1.0, 1.0, 0.0, 1.0]])
    heatmaps, weights = encode_heatmaps(keypoints, visible, HEATMAP, HEATMAP, sigma)
    assert heatmaps.shape == (1, 6, 64, 48) and heatmaps.dtype == np.float32
    # Joints 1 and 3 are 3 sigma = 6 px outside the map: their truncated Gaussians still touch it.
    np.testing.assert_array_equal(weights, [[1.0, 1.0, 0.0, 1.0, 0.0, 0.0]])
    assert heatmaps[0, 0, 20, 10] == 1.0 and heatmaps[0, 0].argmax() == 20 * 48 + 10
    assert heatmaps[0, 0, 20, 11] == pytest.approx(np.exp(-1 / 8))
    assert heatmaps[0, 0, 20, 17] == 0.0 and heatmaps[0, 0, 20, 16] > 0.0  # truncated beyond 3 sigma
    assert heatmaps[0, 1, 5, 0] == pytest.approx(np.exp(-36 / 8))
    assert not heatmaps[0, 2].any() and not heatmaps[0, 4].any() and not heatmaps[0, 5].any()


def test_encode_passes_soft_weights_and_maps_input_pixels() -> None:
    corner = np.array([[[191.0, 255.0]]])
    heatmaps, weights = encode_heatmaps(corner, np.full((1, 1), 0.5), INPUT, HEATMAP, 2.0)
    assert weights[0, 0] == 0.5 and weights.dtype == np.float32
    assert heatmaps[0, 0, 63, 47] == 1.0  # last input pixel centre -> last heatmap pixel centre


def test_flipped_targets_align_without_shift() -> None:
    rng = np.random.default_rng(3)
    keypoints = rng.uniform([0, 0], [191, 255], size=(2, 17, 2))
    perm = flip_permutation()
    visible = np.ones((2, 17))
    targets, _ = encode_heatmaps(keypoints, visible, INPUT, HEATMAP, 2.0)
    flipped, _ = encode_heatmaps(flip_keypoints(keypoints, INPUT[0], perm), visible, INPUT, HEATMAP, 2.0)
    restored = flip_heatmaps_back(torch.from_numpy(flipped), perm)
    torch.testing.assert_close(restored, torch.from_numpy(targets), atol=1e-6, rtol=0)


def test_torch_decode_matches_numpy_classic() -> None:
    rng = np.random.default_rng(4)
    truth = random_heatmap_points(rng, margin=0.0, n=4)
    encoded, _ = encode_heatmaps(truth, np.ones(truth.shape[:2]), HEATMAP, HEATMAP, 2.0)
    noisy = rng.random((3, 17, 64, 48)).astype(np.float32)
    for heatmaps in (encoded, noisy):
        coords, scores = decode_heatmaps(heatmaps)
        coords_t, scores_t = decode_heatmaps_torch(torch.from_numpy(heatmaps))
        np.testing.assert_allclose(coords_t.numpy(), coords, atol=1e-6)
        np.testing.assert_allclose(scores_t.numpy(), scores, atol=1e-6)


def test_pose_decoder_classic_on_device_equals_numpy_and_dark_is_closer_to_the_truth() -> None:
    """``decode_pose_logits``: the quarter-pixel path (torch) gives the numpy decoder's numbers; with
    ``dark_sigma`` it refines them (DARK's ~0.05 px against the quarter pixel's 0.25)."""
    from famipose.codecs.pose import PoseLogits, decode_pose_logits
    from famipose.codecs.transforms import heatmap_to_image

    sigma = 2.0
    truth = random_heatmap_points(np.random.default_rng(7), margin=2 * sigma)  # (8, 17, 2) heatmap px
    keypoints = rescale_points(truth, HEATMAP, INPUT)
    heatmaps, _ = encode_heatmaps(keypoints, np.ones(truth.shape[:2]), INPUT, HEATMAP, sigma)
    centers, scales = np.tile([[300.0, 200.0]], (8, 1)), np.tile([[192.0, 256.0]], (8, 1))  # crop = input size
    logits = PoseLogits(heatmaps=torch.from_numpy(heatmaps))
    classic = decode_pose_logits(logits, centers, scales, INPUT, 1.0)
    coords, scores = decode_heatmaps(heatmaps.astype(np.float32))
    expected = heatmap_to_image(coords, centers, scales, HEATMAP, INPUT)
    assert np.array_equal(classic[..., :2], expected) and np.array_equal(classic[..., 2], scores)
    dark = decode_pose_logits(logits, centers, scales, INPUT, 1.0, dark_sigma=sigma)
    image_truth = heatmap_to_image(truth, centers, scales, HEATMAP, INPUT)
    stride = INPUT[0] / HEATMAP[0]
    assert np.abs(dark[..., :2] - image_truth).max() <= 0.05 * stride
    assert np.abs(classic[..., :2] - image_truth).max() > 0.1 * stride
