"""PyTorch dataset of temporal windows: key crop, support crops and training targets.

Each item reads the window's frames (each distinct file once, nothing cached across items), crops
them all with the key box (enlarged ``box_padding`` times at the input aspect ratio) under one
shared augmentation draw, and encodes the key-frame keypoints as heatmap and/or SimCC targets.

Randomness: item ``i`` in epoch ``e`` draws from ``numpy.random.default_rng([seed, e, i])``, so an
item is the same whatever the number of DataLoader workers and whichever worker loads it. Call
:meth:`PoseWindowDataset.set_epoch` before each epoch; with ``persistent_workers=True`` workers keep
the epoch they were started with, so leave that option off (the default) when augmenting.

Shape symbols: B batch, S support frames, K joints, H/W input height/width, h/w heatmap
height/width, Nx/Ny SimCC bins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from famipose.codecs.heatmap import encode_heatmaps
from famipose.codecs.simcc import SimCCMode, encode_simcc
from famipose.codecs.transforms import box_to_center_scale, warp_affine
from famipose.config import AugmentConfig
from famipose.data.augment import (
    AugmentParams,
    apply_augmentation,
    sample_augmentation,
    transform_keypoints,
)
from famipose.data.errors import DataError, LoaderDataError
from famipose.data.posetrack import read_image
from famipose.data.windows import Window

TargetKind = Literal["heatmap", "simcc", "both"]
TARGET_KINDS: tuple[str, ...] = ("heatmap", "simcc", "both")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class WindowDatasetOptions:
    """How windows become network inputs and targets.

    Attributes:
        input_size: network input ``(w, h)``.
        heatmap_size: heatmap ``(w, h)``.
        sigma: heatmap Gaussian standard deviation in heatmap pixels.
        target: which targets to build: ``"heatmap"``, ``"simcc"`` or ``"both"``.
        simcc_split_ratio: SimCC bins per input pixel.
        simcc_sigma: SimCC label standard deviation in bins.
        simcc_mode: SimCC labels: ``"sa-simdr"`` (Gaussian) or ``"simdr"`` (one-hot).
        box_padding: enlargement of the key box (after fixing its aspect ratio).
        augment: training augmentation, or None for evaluation (plain crops).
        seed: base seed of the per-item generators.
    """

    input_size: tuple[int, int] = (288, 384)
    heatmap_size: tuple[int, int] = (72, 96)
    sigma: float = 3.0
    target: TargetKind = "heatmap"
    simcc_split_ratio: float = 2.0
    simcc_sigma: float = 6.0
    simcc_mode: SimCCMode = "sa-simdr"
    box_padding: float = 1.25
    augment: AugmentConfig | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: unknown target kind (the message lists the valid ones) or a size below 2.
        """
        if self.target not in TARGET_KINDS:
            raise ValueError(f"Unknown target {self.target!r}; valid targets: {', '.join(TARGET_KINDS)}")
        if min(*self.input_size, *self.heatmap_size) < 2:
            raise ValueError(f"sizes must be >= 2 pixels, got {self.input_size} and {self.heatmap_size}")


@dataclass(frozen=True)
class SampleMeta:
    """Where a sample came from and how it was cropped.

    Attributes:
        center: key crop centre in image pixels (after half-body).
        scale: key crop size ``(w, h)`` in image pixels (after scale augmentation).
        image_id: key frame image id.
        file_name: key frame ``file_name`` (relative to the dataset root).
        track_id: person track id (-1 for detections).
        box_score: box confidence (1 for ground truth).
        rotation_deg: rotation about the crop centre.
        flipped: whether crops were mirrored and joints swapped.
    """

    center: tuple[float, float]
    scale: tuple[float, float]
    image_id: int
    file_name: str
    track_id: int
    box_score: float
    rotation_deg: float
    flipped: bool


@dataclass(frozen=True, eq=False)
class WindowSample:
    """One window ready for the network.

    Attributes:
        key: (3, H, W) float32 key crop, ImageNet-normalised RGB.
        supports: (S, 3, H, W) float32 support crops, in δ order (S = 0 for the single-frame model).
        heatmaps: (K, h, w) float32 targets, or None when not requested.
        simcc_x: (K, Nx) float32 targets, or None when not requested.
        simcc_y: (K, Ny) float32 targets, or None when not requested.
        target_weights: (K,) float32 loss weights: 0 for unlabelled joints and for joints whose
            centre lies off the crop (see ``_encode_targets``).
        keypoints: (K, 3) float32 ``(x, y, visible)`` in input pixels.
        meta: provenance and crop.
    """

    key: torch.Tensor
    supports: torch.Tensor
    heatmaps: torch.Tensor | None
    simcc_x: torch.Tensor | None
    simcc_y: torch.Tensor | None
    target_weights: torch.Tensor
    keypoints: torch.Tensor
    meta: SampleMeta


@dataclass(frozen=True, eq=False)
class WindowBatch:
    """A collated batch of samples.

    Attributes:
        key: (B, 3, H, W) key crops.
        supports: (B, S, 3, H, W) support crops (S = 0 for the single-frame model).
        heatmaps: (B, K, h, w) or None.
        simcc_x: (B, K, Nx) or None.
        simcc_y: (B, K, Ny) or None.
        target_weights: (B, K).
        keypoints: (B, K, 3) in input pixels.
        centers: (B, 2) float64 crop centres in image pixels.
        scales: (B, 2) float64 crop sizes in image pixels.
        image_ids: (B,) int64.
        track_ids: (B,) int64.
        box_scores: (B,) float32.
        rotations: (B,) float32 degrees.
        flipped: (B,) bool.
        file_names: B key-frame file names.
    """

    key: torch.Tensor
    supports: torch.Tensor
    heatmaps: torch.Tensor | None
    simcc_x: torch.Tensor | None
    simcc_y: torch.Tensor | None
    target_weights: torch.Tensor
    keypoints: torch.Tensor
    centers: torch.Tensor
    scales: torch.Tensor
    image_ids: torch.Tensor
    track_ids: torch.Tensor
    box_scores: torch.Tensor
    rotations: torch.Tensor
    flipped: torch.Tensor
    file_names: tuple[str, ...]

    def to(self, device: torch.device | str) -> WindowBatch:
        """Copy of the batch with every tensor on ``device``."""
        moved = {
            item.name: value.to(device)
            for item in dataclasses.fields(self)
            if isinstance(value := getattr(self, item.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)


class PoseWindowDataset(Dataset[WindowSample]):
    """Windows → :class:`WindowSample` (crops of key and support frames, targets, meta).

    Args:
        windows: windows from ``famipose.data.windows.build_windows``, all with the same number
            of support frames.
        options: sizes, targets, augmentation and seed.
    """

    def __init__(self, windows: Sequence[Window], options: WindowDatasetOptions) -> None:
        self.windows = list(windows)
        self.options = options
        self.epoch = 0

    def __len__(self) -> int:
        """Number of windows."""
        return len(self.windows)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of an epoch."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> WindowSample:
        """Read, crop, augment and encode window ``index``.

        Raises:
            LoaderDataError: a frame of the window is missing or does not decode (a
                :class:`DataError` that DataLoader workers pass on with its one-line message).
        """
        try:
            return self._sample(index)
        except DataError as error:
            raise LoaderDataError(str(error)) from None

    def _sample(self, index: int) -> WindowSample:
        """The sample of window ``index`` (see :meth:`__getitem__`)."""
        options = self.options
        window = self.windows[index]
        width, height = options.input_size
        aspect_ratio = width / height
        num_supports = len(window.support_paths)
        if options.augment is None:
            params = AugmentParams.identity(num_supports)
        else:
            rng = np.random.default_rng([options.seed, self.epoch, index])
            params = sample_augmentation(rng, options.augment, window.keypoints, num_supports, aspect_ratio)
        center, scale = box_to_center_scale(window.box, aspect_ratio, options.box_padding)
        transform = apply_augmentation(params, center, scale, options.input_size)

        images = {path: read_image(path) for path in {window.key_frame.path, *window.support_paths}}
        key = warp_affine(images[window.key_frame.path], transform.key_matrix, options.input_size)  # (H, W, 3)
        supports = np.zeros((num_supports, height, width, 3), np.uint8)  # (S, H, W, 3); S = 0: key alone
        for slot, (path, matrix) in enumerate(zip(window.support_paths, transform.support_matrices, strict=True)):
            supports[slot] = warp_affine(images[path], matrix, options.input_size)  # (H, W, 3)

        keypoints = transform_keypoints(transform, window.keypoints)  # (K, 3)
        keypoints[:, 2] = keypoints[:, 2] > 0  # joints off the crop keep their flag: the targets decide
        targets = _encode_targets(keypoints, options)
        return WindowSample(
            key=normalize_crops(key),
            supports=normalize_crops(supports),  # (S, 3, H, W)
            heatmaps=targets.heatmaps,
            simcc_x=targets.simcc_x,
            simcc_y=targets.simcc_y,
            target_weights=targets.weights,
            keypoints=torch.from_numpy(keypoints),
            meta=SampleMeta(
                center=transform.crop.center,
                scale=transform.crop.scale,
                image_id=window.key_frame.image_id,
                file_name=window.key_frame.file_name,
                track_id=window.track_id,
                box_score=window.score,
                rotation_deg=transform.rotation_deg,
                flipped=transform.flip,
            ),
        )


def collate_windows(samples: Sequence[WindowSample]) -> WindowBatch:
    """Stack samples into a batch (use as the DataLoader's ``collate_fn``).

    Args:
        samples: B >= 1 samples with the same sizes and the same target kinds.

    Returns:
        The batch.

    Raises:
        ValueError: no samples, or samples that disagree on which targets they carry.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    metas = [sample.meta for sample in samples]
    return WindowBatch(
        key=torch.stack([sample.key for sample in samples]),  # (B, 3, H, W)
        supports=torch.stack([sample.supports for sample in samples]),  # (B, S, 3, H, W)
        heatmaps=_stack_optional([sample.heatmaps for sample in samples], "heatmaps"),  # (B, K, h, w)
        simcc_x=_stack_optional([sample.simcc_x for sample in samples], "simcc_x"),  # (B, K, Nx)
        simcc_y=_stack_optional([sample.simcc_y for sample in samples], "simcc_y"),  # (B, K, Ny)
        target_weights=torch.stack([sample.target_weights for sample in samples]),  # (B, K)
        keypoints=torch.stack([sample.keypoints for sample in samples]),  # (B, K, 3)
        centers=torch.tensor([meta.center for meta in metas], dtype=torch.float64),  # (B, 2)
        scales=torch.tensor([meta.scale for meta in metas], dtype=torch.float64),  # (B, 2)
        image_ids=torch.tensor([meta.image_id for meta in metas], dtype=torch.int64),
        track_ids=torch.tensor([meta.track_id for meta in metas], dtype=torch.int64),
        box_scores=torch.tensor([meta.box_score for meta in metas], dtype=torch.float32),
        rotations=torch.tensor([meta.rotation_deg for meta in metas], dtype=torch.float32),
        flipped=torch.tensor([meta.flipped for meta in metas], dtype=torch.bool),
        file_names=tuple(meta.file_name for meta in metas),
    )


@dataclass(frozen=True, eq=False)
class _Targets:
    """Encoded targets of one sample (None where not requested)."""

    heatmaps: torch.Tensor | None
    simcc_x: torch.Tensor | None
    simcc_y: torch.Tensor | None
    weights: torch.Tensor


def _encode_targets(keypoints: np.ndarray, options: WindowDatasetOptions) -> _Targets:
    """Heatmap and/or SimCC targets of (K, 3) input-pixel keypoints; weights are their product.

    Only joints whose centre lies on the crop get a target, for both heads. HRNet's and mmpose's
    codecs also label a joint off the crop while its Gaussian's 3-sigma window reaches the map or
    the bins (our codecs implement that rule too); on SynthTrack that cost the tiny stage 1 3.2 AP
    with heatmaps (46.2 against 49.4) and with SimCC (30.8 against 34.0), docs/results.md.
    """
    points, visible = keypoints[None, :, :2], keypoints[None, :, 2]  # (1, K, 2), (1, K)
    width, height = options.input_size
    on_crop = np.all((points >= 0) & (points <= (width - 1, height - 1)), axis=-1)  # (1, K)
    visible = visible * on_crop
    weights = visible[0].astype(np.float32)  # (K,)
    heatmaps = simcc_x = simcc_y = None
    if options.target in ("heatmap", "both"):
        maps, map_weights = encode_heatmaps(
            points, visible, options.input_size, options.heatmap_size, options.sigma
        )
        heatmaps = torch.from_numpy(maps[0])  # (K, h, w)
        weights = weights * map_weights[0]
    if options.target in ("simcc", "both"):
        labels_x, labels_y, label_weights = encode_simcc(
            points, visible, options.input_size, options.simcc_split_ratio, options.simcc_sigma,
            mode=options.simcc_mode,
        )
        simcc_x, simcc_y = torch.from_numpy(labels_x[0]), torch.from_numpy(labels_y[0])  # (K, Nx), (K, Ny)
        weights = weights * label_weights[0]
    return _Targets(heatmaps, simcc_x, simcc_y, torch.from_numpy(weights))


def normalize_crops(crops: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 RGB crops → (..., 3, H, W) float32 ImageNet-normalised tensor."""
    scaled = (crops.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD  # (..., H, W, 3)
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(scaled, -1, -3)))  # (..., 3, H, W)


def _stack_optional(items: list[torch.Tensor | None], name: str) -> torch.Tensor | None:
    """Stack tensors that are either all present or all None."""
    present = [item for item in items if item is not None]
    if not present:
        return None
    if len(present) != len(items):
        raise ValueError(f"some samples carry {name} and some do not")
    return torch.stack(present)

