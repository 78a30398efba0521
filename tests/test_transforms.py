"""Tests for famipose.codecs.transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from famipose.codecs.transforms import (
    box_to_center_scale,
    crop_to_image,
    flip_heatmaps_back,
    flip_keypoints,
    get_affine_matrix,
    heatmap_to_image,
    reframe_theta,
    rescale_points,
    transform_points,
    warp_crop,
)
from famipose.data.keypoints import FLIP_PAIRS, flip_permutation

finite = {"allow_nan": False, "allow_infinity": False}


def test_box_to_center_scale_widens_tall_box() -> None:
    center, scale = box_to_center_scale(np.array([10.0, 20.0, 30.0, 80.0]), aspect_ratio=0.75, padding=1.25)
    np.testing.assert_allclose(center, [25.0, 60.0])
    np.testing.assert_allclose(scale, [60.0 * 1.25, 80.0 * 1.25])


def test_box_to_center_scale_heightens_wide_box() -> None:
    _, scale = box_to_center_scale(np.array([0.0, 0.0, 90.0, 40.0]), aspect_ratio=0.75, padding=1.0)
    np.testing.assert_allclose(scale, [90.0, 120.0])


def test_affine_maps_center_and_box_edges_udp() -> None:
    center, scale = np.array([100.0, 60.0]), np.array([48.0, 64.0])
    matrix = get_affine_matrix(center, scale, (49, 65))
    corners = np.array([[76.0, 28.0], [100.0, 60.0], [124.0, 92.0]])
    np.testing.assert_allclose(transform_points(corners, matrix), [[0, 0], [24, 32], [48, 64]], atol=1e-12)


def test_rotation_by_90_degrees_by_hand() -> None:
    # Unit scale: crop centre is (20, 20); a point 10 px right of the box centre goes 10 px up.
    matrix = get_affine_matrix(np.array([100.0, 50.0]), np.array([40.0, 40.0]), (41, 41), rotation_deg=90)
    points = np.array([[110.0, 50.0], [100.0, 40.0]])
    np.testing.assert_allclose(transform_points(points, matrix), [[20.0, 10.0], [10.0, 20.0]], atol=1e-12)


def test_shift_moves_box_centre_by_fraction_of_scale() -> None:
    matrix = get_affine_matrix(np.array([50.0, 50.0]), np.array([20.0, 40.0]), (21, 41), shift=(0.5, -0.25))
    np.testing.assert_allclose(transform_points(np.array([60.0, 40.0]), matrix), [10.0, 20.0], atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    center=st.tuples(st.floats(-500, 500, **finite), st.floats(-500, 500, **finite)),
    scale=st.tuples(st.floats(5, 800, **finite), st.floats(5, 800, **finite)),
    rotation=st.floats(-180, 180, **finite),
    shift=st.tuples(st.floats(-0.3, 0.3, **finite), st.floats(-0.3, 0.3, **finite)),
)
def test_image_crop_image_round_trip(
    center: tuple[float, float], scale: tuple[float, float], rotation: float, shift: tuple[float, float]
) -> None:
    points = np.random.default_rng(0).uniform(-300, 300, size=(3, 5, 2))
    args = (np.array(center), np.array(scale), (192, 256), rotation, shift)
    to_crop = get_affine_matrix(*args)
    to_image = get_affine_matrix(*args, inverse=True)
    round_trip = transform_points(transform_points(points, to_crop), to_image)
    np.testing.assert_allclose(round_trip, points, atol=1e-9)


def test_crop_to_image_inverts_per_instance_matrices() -> None:
    rng = np.random.default_rng(1)
    centers, scales = rng.uniform(0, 400, (4, 2)), rng.uniform(20, 300, (4, 2))
    image_points = rng.uniform(0, 400, (4, 17, 2))
    matrices = np.stack([get_affine_matrix(c, s, (192, 256)) for c, s in zip(centers, scales, strict=True)])
    crop_points = transform_points(image_points, matrices[:, None])
    restored = crop_to_image(crop_points, centers, scales, (192, 256))
    np.testing.assert_allclose(restored, image_points, atol=1e-9)


def test_heatmap_to_image_corner_pixels() -> None:
    # Heatmap corners are the crop corners, which are the box edges under the UDP mapping.
    coords = np.array([[[0.0, 0.0], [47.0, 63.0]]])
    centers, scales = np.array([[100.0, 100.0]]), np.array([[96.0, 128.0]])
    result = heatmap_to_image(coords, centers, scales, (48, 64), (192, 256))
    np.testing.assert_allclose(result, [[[52.0, 36.0], [148.0, 164.0]]], atol=1e-12)


def test_rescale_points_round_trip_and_corners() -> None:
    points = np.array([[0.0, 0.0], [191.0, 255.0], [37.3, 101.9]])
    heat = rescale_points(points, (192, 256), (48, 64))
    np.testing.assert_allclose(heat[:2], [[0.0, 0.0], [47.0, 63.0]])
    np.testing.assert_allclose(rescale_points(heat, (48, 64), (192, 256)), points, atol=1e-12)


def test_warp_crop_moves_pixel_where_transform_points_says() -> None:
    image = np.zeros((120, 160, 3), np.uint8)
    image[70, 90] = (255, 128, 7)
    center, scale = np.array([80.0, 60.0]), np.array([60.0, 80.0])
    crop = warp_crop(image, center, scale, (61, 81), rotation_deg=90)
    x, y = transform_points(np.array([90.0, 70.0]), get_affine_matrix(center, scale, (61, 81), 90))
    assert crop.shape == (81, 61, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop[round(y), round(x)], [255, 128, 7])
    assert crop.sum() == 255 + 128 + 7


def test_warp_crop_fills_outside_with_zero() -> None:
    image = np.full((10, 10, 3), 200, np.uint8)
    crop = warp_crop(image, np.array([0.0, 0.0]), np.array([10.0, 10.0]), (11, 11))
    assert crop[0, 0].sum() == 0 and crop[10, 10].sum() > 0


@settings(max_examples=30, deadline=None)
@given(width=st.floats(2, 1000, **finite), seed=st.integers(0, 2**16))
def test_flip_keypoints_twice_is_identity(width: float, seed: int) -> None:
    keypoints = np.random.default_rng(seed).uniform(0, 500, size=(2, 17, 3))
    perm = flip_permutation()
    np.testing.assert_allclose(flip_keypoints(flip_keypoints(keypoints, width, perm), width, perm), keypoints)


def test_flip_keypoints_swaps_pairs_and_mirrors_x() -> None:
    keypoints = np.zeros((1, 17, 3))
    keypoints[0, :, 0] = np.arange(17)
    keypoints[0, :, 2] = np.arange(17) % 2
    flipped = flip_keypoints(keypoints, 100.0, flip_permutation())
    for left, right in FLIP_PAIRS:
        assert flipped[0, left, 0] == 99 - right and flipped[0, right, 0] == 99 - left
        assert flipped[0, left, 2] == right % 2
    assert flipped[0, 0, 0] == 99.0


def test_flip_heatmaps_back_restores_order_and_orientation() -> None:
    heatmaps = torch.rand(2, 17, 8, 6)
    perm = flip_permutation()
    flipped_input_output = heatmaps.flip(-1)[:, perm]
    torch.testing.assert_close(flip_heatmaps_back(flipped_input_output, perm), heatmaps)


def test_flip_heatmaps_back_shift_moves_one_pixel_right() -> None:
    heatmaps = torch.arange(12.0).reshape(1, 1, 2, 6)
    shifted = flip_heatmaps_back(heatmaps, [0], shift=True)
    unshifted = flip_heatmaps_back(heatmaps, [0])
    torch.testing.assert_close(shifted[..., 1:], unshifted[..., :-1])
    torch.testing.assert_close(shifted[..., 0], unshifted[..., 0])


@pytest.mark.parametrize("rotation", [0.0, 30.0])
def test_flip_commutes_with_crop_under_udp(rotation: float) -> None:
    # Cropping a mirrored image at the mirrored centre equals mirroring the crop (rotation negated).
    image = np.random.default_rng(2).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    center, scale = np.array([30.0, 20.0]), np.array([24.0, 32.0])
    mirrored_center = np.array([70 - 1 - center[0], center[1]])
    crop = warp_crop(image, center, scale, (25, 33), rotation)
    crop_of_mirror = warp_crop(image[:, ::-1].copy(), mirrored_center, scale, (25, 33), -rotation)
    diff = np.abs(crop[:, ::-1].astype(int) - crop_of_mirror.astype(int))
    assert diff.max() <= 1


def test_reframe_theta_by_hand() -> None:
    # src crop centre (10, 20) size (40, 80); dst centre (20, 20) size (20, 40): half the size and shifted
    # right by a quarter of the src width, so x_src = 0.5 * x_dst + 0.5 and y_src = 0.5 * y_dst.
    src_c, src_s, dst_c, dst_s = np.array([[[10.0, 20]], [[40, 80]], [[20, 20]], [[20, 40]]])
    theta = reframe_theta(src_c, src_s, dst_c, dst_s)
    np.testing.assert_allclose(theta[0], [[0.5, 0, 0.5], [0, 0.5, 0]])
    same = reframe_theta(np.array([[3.0, 4]]), np.array([[5.0, 6]]), np.array([[3.0, 4]]), np.array([[5.0, 6]]))
    assert np.array_equal(same[0], np.eye(2, 3))


def test_reframe_theta_resamples_a_crop_into_the_crop_of_another_box() -> None:
    # On a smooth image, crop box B and re-frame it into box A with grid_sample: it must equal crop A
    # directly wherever A's pixels lie inside B (two bilinear interpolations of a smooth field).
    ys, xs = np.mgrid[0:160, 0:200].astype(np.float32)
    image = np.stack([np.sin(xs / 17) + np.cos(ys / 23), xs / 200, ys / 160], axis=-1).astype(np.float32)
    size = (48, 64)
    center_a, scale_a = np.array([80.0, 70.0]), np.array([60.0, 80.0])
    center_b, scale_b = np.array([86.5, 66.0]), np.array([69.0, 92.0])
    crop_a = warp_crop(image, center_a, scale_a, size)  # (64, 48, 3)
    crop_b = torch.from_numpy(warp_crop(image, center_b, scale_b, size)).permute(2, 0, 1)[None]  # (1, 3, 64, 48)
    theta = torch.from_numpy(reframe_theta(center_b[None], scale_b[None], center_a[None], scale_a[None])).float()
    grid = F.affine_grid(theta, [1, 3, size[1], size[0]], align_corners=True)
    reframed = F.grid_sample(crop_b, grid, mode="bilinear", align_corners=True)[0].permute(1, 2, 0).numpy()
    # A's crop spans x in [50, 110], y in [30, 110]; B's [52, 121] x [20, 112]: compare A's columns from x = 53.
    inside = slice(None), slice(3, None)
    np.testing.assert_allclose(reframed[inside], crop_a[inside], atol=5e-3)
    assert np.abs(reframed[:, 0] - crop_a[:, 0]).max() > 0.1  # outside B: zeros, so the check can fail
