"""Tests for famipose.data.dataset."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from famipose.codecs.transforms import box_to_center_scale, get_affine_matrix, rescale_points, transform_points
from famipose.data.augment import AugmentConfig
from famipose.data.dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PoseWindowDataset,
    WindowBatch,
    WindowDatasetOptions,
    collate_windows,
)
from famipose.data.errors import DataError
from famipose.data.keypoints import flip_permutation
from famipose.data.posetrack import load_posetrack
from famipose.data.windows import Window, build_windows

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "posetrack18_sample"
needs_sample = pytest.mark.skipif(
    not SAMPLE.is_dir(), reason=f"PoseTrack18 sample not found at {SAMPLE} (shared data folder absent)"
)
IMAGE_SIZE = (240, 200)  # (w, h)
BOX = [80.0, 40.0, 80.0, 130.0]
INPUT_SIZE = (96, 128)
DELTAS = (-2, -1, 1, 2)
KEY_FRAME = 2
HIDDEN_JOINT = 4
# 17 saturated hues, 20° apart; frame f has the grey background GREYS[f].
COLOURS = cv2.cvtColor(
    np.stack([np.arange(17) * 10, np.full(17, 255), np.full(17, 255)], -1).astype(np.uint8)[None], cv2.COLOR_HSV2RGB
)[0].astype(int)
GREYS = (30, 70, 110, 150, 190)


def _joint_positions() -> np.ndarray:
    """(17, 2) joint positions on a 4 x 5 grid inside BOX, 20+ px apart."""
    cols, rows = np.meshgrid(np.arange(4), np.arange(5))
    grid = np.stack([BOX[0] + 10 + 20 * cols.ravel(), BOX[1] + 10 + 27 * rows.ravel()], -1)
    return grid[:17].astype(np.float64)


@pytest.fixture
def dotted_windows(tmp_path: Path) -> list[Window]:
    """A 5-frame video whose frames show a coloured dot at every joint on differently grey backgrounds."""
    folder = tmp_path / "images" / "vid"
    folder.mkdir(parents=True)
    positions = _joint_positions()
    for index, grey in enumerate(GREYS):
        frame = np.full((IMAGE_SIZE[1], IMAGE_SIZE[0], 3), grey, dtype=np.uint8)
        for joint, (x, y) in enumerate(positions):
            cv2.circle(frame, (round(x), round(y)), 5, tuple(int(c) for c in COLOURS[joint]), -1)
        cv2.imwrite(str(folder / f"{index:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    keypoints = np.concatenate([positions, np.ones((17, 1))], 1)
    keypoints[HIDDEN_JOINT, 2] = 0
    document = {
        "images": [{"file_name": f"images/vid/{KEY_FRAME:06d}.png", "id": 1, "nframes": len(GREYS)}],
        "annotations": [{"image_id": 1, "keypoints": keypoints.ravel().tolist(), "bbox": BOX, "track_id": 7}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(document))
    windows, stats = build_windows(load_posetrack(tmp_path / "gt.json", tmp_path), DELTAS)
    assert stats.num_padded_slots == 0
    return windows


def _to_rgb(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) normalised tensor → (H, W, 3) int RGB."""
    return np.rint((image.numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN) * 255).astype(int)


def _nearest_colour(pixel: np.ndarray) -> int:
    return int(np.abs(COLOURS - pixel).sum(1).argmin())


def _background(crop: np.ndarray) -> int:
    """Most common grey level (excluding the black outside the image)."""
    grey = (crop[..., 0] == crop[..., 1]) & (crop[..., 1] == crop[..., 2]) & (crop[..., 0] > 5)
    values, counts = np.unique(crop[..., 0][grey], return_counts=True)
    return int(values[counts.argmax()])


AUGMENTS = {
    "rotate-flip-scale": AugmentConfig(rotation_prob=1.0, half_body_prob=0.0),
    "half-body": AugmentConfig(rotation_prob=1.0, half_body_prob=1.0, half_body_min_joints=3),
}


@pytest.mark.parametrize("name", list(AUGMENTS))
def test_same_augmentation_lands_every_dot_on_its_keypoint_in_key_and_supports(
    dotted_windows: list[Window], name: str
) -> None:
    options = WindowDatasetOptions(input_size=INPUT_SIZE, heatmap_size=(24, 32), augment=AUGMENTS[name], seed=5)
    dataset = PoseWindowDataset(dotted_windows * 8, options)
    perm = flip_permutation()
    flips = set()
    for index in range(len(dataset)):
        sample = dataset[index]
        flips.add(sample.meta.flipped)
        box_center = (BOX[0] + BOX[2] / 2, BOX[1] + BOX[3] / 2)
        assert (sample.meta.center != pytest.approx(box_center)) == (name == "half-body")
        keypoints = sample.keypoints.numpy()
        assert keypoints[perm[HIDDEN_JOINT] if sample.meta.flipped else HIDDEN_JOINT, 2] == 0
        on_crop = np.all((keypoints[:, :2] >= 0) & (keypoints[:, :2] <= np.array(INPUT_SIZE) - 1), axis=1)
        visible = np.flatnonzero((keypoints[:, 2] > 0) & on_crop)
        assert len(visible) >= 3
        np.testing.assert_array_equal(sample.target_weights.numpy() > 0, (keypoints[:, 2] > 0) & on_crop)
        frames = [sample.key, *sample.supports]
        greys = [GREYS[KEY_FRAME], *(GREYS[KEY_FRAME + d] for d in DELTAS)]
        for image, grey in zip(frames, greys, strict=True):
            crop = _to_rgb(image)
            assert _background(crop) == pytest.approx(grey, abs=1)  # each slot shows its own frame
            for joint in visible:
                x, y = np.rint(keypoints[joint, :2]).astype(int)
                source_joint = perm[joint] if sample.meta.flipped else joint
                assert _nearest_colour(crop[y, x]) == source_joint, (index, joint)
    assert flips == {True, False}


def test_eval_crops_are_plain_and_match_the_box(dotted_windows: list[Window]) -> None:
    options = WindowDatasetOptions(input_size=INPUT_SIZE, heatmap_size=(24, 32), sigma=2.0, target="both")
    sample = PoseWindowDataset(dotted_windows, options)[0]
    center, scale = box_to_center_scale(np.array(BOX), INPUT_SIZE[0] / INPUT_SIZE[1], 1.25)
    assert sample.meta.center == pytest.approx(tuple(center)) and sample.meta.scale == pytest.approx(tuple(scale))
    assert (sample.meta.rotation_deg, sample.meta.flipped, sample.meta.track_id) == (0.0, False, 7)
    assert (sample.meta.image_id, sample.meta.file_name, sample.meta.box_score) == (1, "images/vid/000002.png", 1.0)
    expected = transform_points(_joint_positions(), get_affine_matrix(center, scale, INPUT_SIZE))
    np.testing.assert_allclose(sample.keypoints[:, :2].numpy(), expected, atol=1e-3)
    assert sample.key.shape == (3, 128, 96) and sample.key.dtype == torch.float32
    assert sample.supports.shape == (4, 3, 128, 96)
    assert sample.heatmaps.shape == (17, 32, 24)
    assert sample.simcc_x.shape == (17, 192) and sample.simcc_y.shape == (17, 256)
    peaks = np.stack(np.unravel_index(sample.heatmaps.flatten(1).argmax(1).numpy(), (32, 24))[::-1], -1)
    on_map = rescale_points(expected, INPUT_SIZE, (24, 32))
    visible = sample.target_weights.numpy() > 0
    assert visible.sum() == 16 and not visible[HIDDEN_JOINT]
    np.testing.assert_allclose(peaks[visible], on_map[visible], atol=0.5)
    np.testing.assert_allclose(sample.simcc_x.argmax(1).numpy()[visible] / 2, expected[visible, 0], atol=0.5)


@pytest.mark.parametrize("target", ["heatmap", "simcc"])
def test_joints_off_the_crop_get_no_target(dotted_windows: list[Window], target: str) -> None:
    """Off the crop means no target for either head, even where the label window would reach in."""
    window = dotted_windows[0]
    keypoints = window.keypoints.copy()
    keypoints[0, :2] = (5.0, 5.0)  # far outside the enlarged box: about (-43, -15) input pixels
    keypoints[1, :2] = (55.0, 105.0)  # just left of it: about x = -3 input pixels, within 3 sigma
    person = dataclasses.replace(window.person, keypoints=keypoints)
    options = WindowDatasetOptions(input_size=INPUT_SIZE, heatmap_size=(24, 32), sigma=2.0, target=target)
    sample = PoseWindowDataset([dataclasses.replace(window, person=person)], options)[0]
    assert sample.keypoints[0, 2] == 1 and sample.keypoints[1, 2] == 1  # the flags are the annotation's
    assert -5 < float(sample.keypoints[1, 0]) < 0
    np.testing.assert_array_equal(sample.target_weights[:3].numpy(), [0.0, 0.0, 1.0])
    labels = sample.heatmaps if target == "heatmap" else sample.simcc_x
    assert float(labels[:2].abs().sum()) == 0.0 and float(labels[2].abs().sum()) > 0


def test_items_are_reproducible_per_epoch_and_across_worker_counts(dotted_windows: list[Window]) -> None:
    options = WindowDatasetOptions(input_size=(32, 40), heatmap_size=(8, 10), augment=AugmentConfig(), seed=3)
    dataset = PoseWindowDataset(dotted_windows * 6, options)
    first = dataset[4]
    assert torch.equal(first.key, dataset[4].key) and first.meta == dataset[4].meta
    dataset.set_epoch(1)
    assert dataset[4].meta != first.meta
    batches = [
        list(DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=collate_windows))
        for workers in (0, 2)
    ]
    for serial, parallel in zip(*batches, strict=True):
        for field in dataclasses.fields(WindowBatch):
            a, b = getattr(serial, field.name), getattr(parallel, field.name)
            assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, field.name


def test_collate_stacks_samples(dotted_windows: list[Window]) -> None:
    options = WindowDatasetOptions(input_size=(32, 40), heatmap_size=(8, 10), augment=AugmentConfig())
    dataset = PoseWindowDataset(dotted_windows * 3, options)
    batch = collate_windows([dataset[i] for i in range(3)])
    assert batch.key.shape == (3, 3, 40, 32) and batch.supports.shape == (3, 4, 3, 40, 32)
    assert batch.heatmaps.shape == (3, 17, 10, 8) and batch.simcc_x is None
    assert batch.target_weights.shape == (3, 17) and batch.keypoints.shape == (3, 17, 3)
    assert batch.centers.shape == (3, 2) and batch.image_ids.tolist() == [1, 1, 1]
    assert batch.track_ids.tolist() == [7, 7, 7] and batch.file_names == ("images/vid/000002.png",) * 3
    assert batch.rotations.tolist() == pytest.approx([dataset[i].meta.rotation_deg for i in range(3)])
    moved = batch.to("cpu")
    assert torch.equal(moved.supports, batch.supports) and moved.file_names == batch.file_names
    simcc_sample = PoseWindowDataset(dotted_windows, dataclasses.replace(options, target="simcc"))[0]
    with pytest.raises(ValueError, match="some samples carry heatmaps"):
        collate_windows([dataset[0], simcc_sample])
    with pytest.raises(ValueError, match="empty"):
        collate_windows([])


def test_key_only_windows_crop_the_key_frame_once(dotted_windows: list[Window], monkeypatch) -> None:
    """A window without supports: one crop per sample, supports (0, 3, H, W), the same key crop."""
    from famipose.data import dataset as dataset_module

    options = WindowDatasetOptions(input_size=INPUT_SIZE, heatmap_size=(24, 32), sigma=2.0)
    with_supports = PoseWindowDataset(dotted_windows, options)[0]
    key_only_windows = [dataclasses.replace(w, deltas=(), support_offsets=(), support_paths=()) for w in dotted_windows]
    crops = []
    real_warp = dataset_module.warp_affine
    monkeypatch.setattr(dataset_module, "warp_affine", lambda *args: crops.append(1) or real_warp(*args))
    sample = PoseWindowDataset(key_only_windows, options)[0]
    assert len(crops) == 1
    assert sample.supports.shape == (0, 3, 128, 96)
    assert torch.equal(sample.key, with_supports.key) and torch.equal(sample.heatmaps, with_supports.heatmaps)
    assert collate_windows([sample, sample]).supports.shape == (2, 0, 3, 128, 96)


def test_options_validation() -> None:
    with pytest.raises(ValueError, match="valid targets: heatmap, simcc, both"):
        WindowDatasetOptions(target="heatmaps")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sizes"):
        WindowDatasetOptions(heatmap_size=(1, 10))


def test_corrupt_support_frame_raises_data_error_naming_it(dotted_windows: list[Window]) -> None:
    broken = dotted_windows[0].support_paths[3]
    broken.write_bytes(b"not a png")
    dataset = PoseWindowDataset(dotted_windows, WindowDatasetOptions(input_size=(32, 40), heatmap_size=(8, 10)))
    with pytest.raises(DataError, match=r"000004\.png: cannot decode image"):
        dataset[0]


@needs_sample
def test_real_sample_eval_dataset() -> None:
    split = load_posetrack(SAMPLE / "annotations" / "test_posetrack18_val.json", SAMPLE)
    windows, _ = build_windows(split)
    dataset = PoseWindowDataset(windows, WindowDatasetOptions(input_size=(48, 64), heatmap_size=(12, 16)))
    assert len(dataset) == 14
    sample = dataset[0]
    for support in sample.supports:  # only frame 000000 exists: every support is the key frame
        assert torch.equal(support, sample.key)
    expected_visible = windows[0].person.keypoints[:, 2] > 0
    assert sample.target_weights.numpy().sum() <= expected_visible.sum()
    assert sample.meta.image_id == 10034180000 and float(sample.key.std()) > 0.1
