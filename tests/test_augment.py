"""Tests for famipose.data.augment."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from famipose.codecs.transforms import get_affine_matrix, transform_points, warp_affine
from famipose.data.augment import (
    AugmentConfig,
    AugmentParams,
    Crop,
    apply_augmentation,
    half_body_crop,
    sample_augmentation,
    transform_keypoints,
)
from famipose.data.keypoints import UPPER_BODY_JOINTS, flip_permutation

SIZE = (48, 64)
CENTER = np.array([100.0, 80.0])
SCALE = np.array([60.0, 80.0])


def _keypoints(num_visible: int = 17) -> np.ndarray:
    rng = np.random.default_rng(3)
    keypoints = np.zeros((17, 3), dtype=np.float32)
    keypoints[:, :2] = rng.uniform(50, 150, size=(17, 2))
    keypoints[:num_visible, 2] = 1
    return keypoints


def test_defaults_are_hrnet_dcpose_values() -> None:
    config = AugmentConfig()
    assert (config.scale_factor, config.rotation_factor, config.rotation_prob) == (0.35, 45.0, 0.6)
    assert (config.flip_prob, config.half_body_prob, config.half_body_min_joints) == (0.5, 0.3, 8)
    assert (config.half_body_padding, config.support_shift) == (1.5, 0.0)


@pytest.mark.parametrize(
    "change", [{"flip_prob": 1.5}, {"rotation_prob": -0.1}, {"scale_factor": 1.0}, {"support_shift": -1}]
)
def test_config_validation(change: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(change))):
        AugmentConfig(**change)


def test_sampling_is_seeded_and_respects_ranges() -> None:
    config = AugmentConfig(support_shift=0.1)
    draw = lambda seed: sample_augmentation(np.random.default_rng(seed), config, _keypoints(), 4, 0.75)  # noqa: E731
    assert draw(7) == draw(7)
    draws = [draw(seed) for seed in range(3000)]
    scales = np.array([d.scale_multiplier for d in draws])
    rotations = np.array([d.rotation_deg for d in draws])
    shifts = np.array([d.support_shifts for d in draws])  # (N, S, 2)
    assert scales.min() >= 0.65 and scales.max() <= 1.35 and scales.std() > 0.2
    assert np.abs(rotations).max() <= 90.0 and np.abs(rotations).max() > 60.0
    assert np.mean(rotations != 0) == pytest.approx(0.6, abs=0.04)
    assert np.mean([d.flip for d in draws]) == pytest.approx(0.5, abs=0.04)
    assert np.mean([d.half_body is not None for d in draws]) == pytest.approx(0.3, abs=0.04)
    assert shifts.shape == (3000, 4, 2) and np.abs(shifts).max() <= 0.1 and np.abs(shifts).max() > 0.09
    assert len({draw(seed) for seed in range(20)}) == 20


def test_half_body_needs_more_than_min_joints() -> None:
    config = AugmentConfig(half_body_prob=1.0)
    rng = np.random.default_rng(0)
    assert all(sample_augmentation(rng, config, _keypoints(8), 2, 0.75).half_body is None for _ in range(50))
    assert sample_augmentation(rng, config, _keypoints(9), 2, 0.75).half_body is not None


def test_half_body_crop_covers_the_chosen_half() -> None:
    keypoints = _keypoints()
    upper = list(UPPER_BODY_JOINTS)
    lower = [j for j in range(17) if j not in UPPER_BODY_JOINTS]
    for prefer_upper, joints in ((True, upper), (False, lower)):
        crop = half_body_crop(keypoints, prefer_upper, aspect_ratio=0.75, padding=1.5)
        assert crop is not None
        low, high = keypoints[joints, :2].min(0), keypoints[joints, :2].max(0)
        np.testing.assert_allclose(crop.center, (low + high) / 2, rtol=1e-6)
        assert crop.scale[0] / crop.scale[1] == pytest.approx(0.75)
        assert np.all(np.array(crop.scale) >= 1.5 * (high - low) - 1e-4)
        assert np.isclose(crop.scale, 1.5 * (high - low)).any()  # tight on one side
    lower_only = keypoints.copy()
    lower_only[:, 2] = 0
    lower_only[[11, 12, 13], 2] = 1
    crop = half_body_crop(lower_only, True, 0.75, 1.5)  # upper has no joints: falls back to the lower half
    lower_y = keypoints[11:14, 1]
    assert crop is not None and crop.center[1] == pytest.approx((lower_y.min() + lower_y.max()) / 2)
    two_upper = keypoints.copy()
    two_upper[:, 2] = 0
    two_upper[[0, 5], 2] = 1
    assert half_body_crop(two_upper, True, 0.75, 1.5) is not None
    two_upper[5, 2] = 0
    assert half_body_crop(two_upper, True, 0.75, 1.5) is None


def test_identity_params_give_plain_crops_for_all_frames() -> None:
    transform = apply_augmentation(AugmentParams.identity(3), CENTER, SCALE, SIZE)
    expected = get_affine_matrix(CENTER, SCALE, SIZE)
    np.testing.assert_allclose(transform.key_matrix, expected, atol=1e-12)
    assert transform.support_matrices.shape == (3, 2, 3)
    for matrix in transform.support_matrices:
        np.testing.assert_allclose(matrix, expected, atol=1e-12)
    assert transform.crop == Crop((100.0, 80.0), (60.0, 80.0))


def test_scale_rotation_and_half_body_enter_the_matrix() -> None:
    half = Crop((90.0, 70.0), (30.0, 40.0))
    params = AugmentParams(((0.0, 0.0),), scale_multiplier=1.2, rotation_deg=30.0, half_body=half)
    transform = apply_augmentation(params, CENTER, SCALE, SIZE)
    expected = get_affine_matrix(np.array([90.0, 70.0]), np.array([36.0, 48.0]), SIZE, 30.0)
    np.testing.assert_allclose(transform.key_matrix, expected, atol=1e-12)
    np.testing.assert_allclose(transform.support_matrices[0], expected, atol=1e-12)
    assert transform.crop.scale == pytest.approx((36.0, 48.0))


def test_flip_mirrors_the_crop_and_swaps_joints() -> None:
    keypoints = _keypoints()
    plain = apply_augmentation(AugmentParams.identity(2), CENTER, SCALE, SIZE)
    flipped = apply_augmentation(dataclasses.replace(AugmentParams.identity(2), flip=True), CENTER, SCALE, SIZE)
    moved = transform_keypoints(plain, keypoints)
    mirrored = transform_keypoints(flipped, keypoints)
    perm = flip_permutation()
    np.testing.assert_allclose(mirrored[:, 0], SIZE[0] - 1 - moved[perm, 0], atol=1e-4)
    np.testing.assert_allclose(mirrored[:, 1:], moved[perm, 1:], atol=1e-4)
    assert mirrored.dtype == np.float32
    for matrix in flipped.support_matrices:
        np.testing.assert_allclose(matrix, flipped.key_matrix, atol=1e-12)
    image = np.random.default_rng(0).integers(0, 255, size=(160, 200, 3), dtype=np.uint8)
    mirrored_crop = warp_affine(image, flipped.key_matrix, SIZE).astype(int)
    np.testing.assert_allclose(mirrored_crop, warp_affine(image, plain.key_matrix, SIZE)[:, ::-1], atol=1)  # rounding


def test_support_shift_moves_only_support_crops() -> None:
    params = AugmentParams(((0.1, -0.2), (0.0, 0.0)), flip=True)
    transform = apply_augmentation(params, CENTER, SCALE, SIZE)
    shifted_center = CENTER + np.array([0.1, -0.2]) * SCALE
    middle = ((SIZE[0] - 1) / 2, (SIZE[1] - 1) / 2)
    np.testing.assert_allclose(transform_points(shifted_center, transform.support_matrices[0]), middle, atol=1e-9)
    np.testing.assert_allclose(transform_points(CENTER, transform.support_matrices[1]), middle, atol=1e-9)
    np.testing.assert_allclose(transform_points(CENTER, transform.key_matrix), middle, atol=1e-9)


def test_warp_affine_puts_image_points_at_transformed_keypoints() -> None:
    image = np.zeros((160, 200, 3), dtype=np.uint8)
    point = np.array([112.0, 93.0])
    image[93, 112] = 255
    params = AugmentParams((), scale_multiplier=0.5, rotation_deg=-35.0, flip=True)
    transform = apply_augmentation(params, CENTER, SCALE, SIZE)
    crop = warp_affine(image, transform.key_matrix, SIZE)
    row, col = np.unravel_index(crop[..., 0].argmax(), crop.shape[:2])
    x, y = transform_points(point, transform.key_matrix)
    assert abs(col - x) <= 0.5 and abs(row - y) <= 0.5
