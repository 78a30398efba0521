"""Tests for famipose.codecs.simcc."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from famipose.codecs.simcc import decode_simcc, encode_simcc, simcc_bins

INPUT = (192, 256)


@pytest.mark.parametrize("mode", ["sa-simdr", "simdr"])
@pytest.mark.parametrize("split_ratio", [1.0, 2.0, 2.5, 3.0])
def test_round_trip_within_half_bin(split_ratio: float, mode: str) -> None:
    keypoints = np.random.default_rng(0).uniform([0, 0], np.array(INPUT) - 1, size=(8, 17, 2))
    target_x, target_y, weights = encode_simcc(
        keypoints, np.ones((8, 17)), INPUT, split_ratio, sigma=(4.9, 5.66), mode=mode
    )
    assert target_x.shape == (8, 17, round(192 * split_ratio))
    assert target_y.shape == (8, 17, round(256 * split_ratio))
    coords, scores = decode_simcc(target_x, target_y, split_ratio)
    assert np.abs(coords - keypoints).max() <= 0.5 / split_ratio + 1e-9
    assert weights.min() == 1.0 and scores.min() > 0.9


@settings(max_examples=50, deadline=None)
@given(
    x=st.floats(0, 191),
    y=st.floats(0, 255),
    split_ratio=st.floats(1.0, 4.0),
    sigma=st.floats(0.5, 8.0),
)
def test_round_trip_property(x: float, y: float, split_ratio: float, sigma: float) -> None:
    target_x, target_y, _ = encode_simcc(np.array([[[x, y]]]), np.ones((1, 1)), INPUT, split_ratio, sigma)
    coords, _ = decode_simcc(target_x, target_y, split_ratio)
    assert np.abs(coords[0, 0] - [x, y]).max() <= 0.5 / split_ratio + 1e-9


def test_gaussian_labels_by_hand() -> None:
    # x = 10.2 px, k = 2 -> mu_x = 20.4 bins; sigma_x = 2 bins, sigma_y = 3 bins.
    target_x, target_y, _ = encode_simcc(np.array([[[10.2, 30.0]]]), np.ones((1, 1)), INPUT, 2.0, (2.0, 3.0))
    assert target_x[0, 0, 20] == pytest.approx(np.exp(-(0.4**2) / 8))
    assert target_x[0, 0, 22] == pytest.approx(np.exp(-(1.6**2) / 8))
    assert target_y[0, 0, 60] == 1.0 and target_y[0, 0, 63] == pytest.approx(np.exp(-0.5))


def test_normalized_labels_sum_to_one() -> None:
    keypoints = np.array([[[0.0, 0.0], [100.3, 200.7], [191.0, 255.0]]])
    for mode in ("sa-simdr", "simdr"):
        target_x, target_y, _ = encode_simcc(keypoints, np.ones((1, 3)), INPUT, 2.0, 4.0, True, mode)
        np.testing.assert_allclose(target_x.sum(-1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(target_y.sum(-1), 1.0, rtol=1e-5)


def test_simdr_labels_are_one_hot_at_nearest_bin() -> None:
    keypoints = np.array([[[10.2, 30.4]]])
    target_x, target_y, _ = encode_simcc(keypoints, np.ones((1, 1)), INPUT, 2.0, mode="simdr")
    assert target_x.sum() == 1.0 and target_x[0, 0, 20] == 1.0
    assert target_y.sum() == 1.0 and target_y[0, 0, 61] == 1.0


def test_out_of_range_and_invisible_joints_get_zero_weight_and_empty_labels() -> None:
    """mmpose's SimCCLabel rule: a Gaussian label counts while mu ± 3 sigma overlaps [0, N - 1]."""
    keypoints = np.array([[[-9.0, 10], [-8.9, 10], [10, 264.4], [10, 264.6], [5, 5], [5, 5], [1, np.nan]]])
    visible = np.array([[1.0, 1.0, 1.0, 1.0, 0.0, 0.3, 1.0]])
    target_x, target_y, weights = encode_simcc(keypoints, visible, INPUT, 2.0, sigma=3.0, normalize=True)
    # k = 2, sigma 3 bins: reach 9 bins = 4.5 px. x = -9 px -> bin -18, window ends at -9 < 0: dropped;
    # -8.9 px -> -17.8 + 9 = -8.8 < 0: dropped too; y = 264.4 px -> bin 528.8 - 9 = 519.8 > 511: dropped.
    # Just inside the reach: -4.4 px -> bin -8.8, window reaches 0.2 >= 0: kept (below).
    np.testing.assert_allclose(weights, [[0.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0]])
    kept_x, _, kept = encode_simcc(np.array([[[-4.4, 10.0], [-4.6, 10.0]]]), np.ones((1, 2)), INPUT, 2.0, sigma=3.0)
    np.testing.assert_allclose(kept, [[1.0, 0.0]])
    assert kept_x[0, 0].argmax() == 0 and not kept_x[0, 1].any()
    assert weights.dtype == np.float32
    assert not target_x[0, 0].any() and not target_y[0, 4].any() and not target_y[0, 6].any()
    assert not np.isnan(target_x).any()
    assert target_x[0, 5].sum() == pytest.approx(1.0)
    # One-hot labels need their nearest bin: 191.7 px -> bin 383.4 -> 383 = Nx - 1 kept; 191.8 -> 384 dropped.
    _, _, one_hot = encode_simcc(np.array([[[191.7, 5.0], [191.8, 5.0]]]), np.ones((1, 2)), INPUT, 2.0, mode="simdr")
    np.testing.assert_allclose(one_hot, [[1.0, 0.0]])


def test_decode_score_is_min_of_axis_maxima() -> None:
    simcc_x = np.array([[[0.1, 0.7, 0.2, 0.0]]])
    simcc_y = np.array([[[0.0, 0.0, 0.4, 0.3, 0.3, 0.0]]])
    coords, scores = decode_simcc(simcc_x, simcc_y, 2.0)
    np.testing.assert_allclose(coords, [[[0.5, 1.0]]])
    np.testing.assert_allclose(scores, [[0.4]])


def test_bins_round_fractional_sizes() -> None:
    assert simcc_bins((192, 256), 2.5) == (480, 640)
    assert simcc_bins((7, 9), 1.5) == (10, 14)  # 10.5 -> 10 and 13.5 -> 14: round half to even


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="sa-simdr, simdr"):
        encode_simcc(np.zeros((1, 1, 2)), np.ones((1, 1)), INPUT, 2.0, mode="onehot")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split_ratio"):
        encode_simcc(np.zeros((1, 1, 2)), np.ones((1, 1)), INPUT, 0.5)
