"""Objects a run needs, each built from the sub-configs it reads: model, data, optimiser, schedule.

Data order. :class:`EpochSampler` draws the order of an epoch from ``(seed, epoch)`` alone, keeps
only whole global batches, and deals the order out to processes round robin, so the union of the
per-process batches of step ``i`` is the same global batch whatever the number of processes. A run
resumed in the middle of an epoch starts the sampler at the first batch not yet trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import MultiStepLR
from torch.utils.data import DataLoader, Sampler

from famipose.config import ConfigError, DataConfig, ModelConfig, TrainConfig
from famipose.data.dataset import PoseWindowDataset, WindowDatasetOptions, collate_windows
from famipose.data.keypoints import NUM_JOINTS
from famipose.data.posetrack import load_posetrack
from famipose.data.windows import GroundTruthBoxes, build_windows
from famipose.models.checkpoint import load_matching, load_weights
from famipose.models.famipose import FamiPose

logger = logging.getLogger(__name__)


def data_path(data: DataConfig, relative: str) -> Path:
    """A data-set path from the config, resolved against ``data.root`` unless absolute."""
    return Path(data.root) / relative


def window_deltas(model: ModelConfig) -> tuple[int, ...]:
    """Support offsets to crop: the model's deltas, or none (the key frame alone) for the single-frame model."""
    return model.deltas if model.num_supports else ()


def dataset_options(model: ModelConfig, data: DataConfig, augment: bool, seed: int) -> WindowDatasetOptions:
    """Crop and target settings for the configured model.

    Args:
        model: The network the crops and targets are for.
        data: Target width, box padding and augmentation.
        augment: Apply ``data.augment`` (training) or not (evaluation).
        seed: Seed of the augmentation draws (``train.seed``).

    Returns:
        The options; targets match the head kind.

    Raises:
        ConfigError: ``model.num_joints`` is not the data sets' 17 joints.
    """
    if model.num_joints != NUM_JOINTS:
        raise ConfigError(
            f"model.num_joints={model.num_joints}: the data sets and the evaluator have {NUM_JOINTS} joints"
        )
    return WindowDatasetOptions(
        input_size=model.input_size,
        heatmap_size=model.heatmap_size,
        sigma=data.sigma,
        target=model.head.kind,  # type: ignore[arg-type]
        simcc_split_ratio=model.head.simcc_split_ratio,
        simcc_sigma=model.head.simcc_sigma,
        simcc_mode=model.head.simcc_mode,  # type: ignore[arg-type]
        box_padding=data.box_padding,
        augment=data.augment if augment else None,
        seed=seed,
    )


def build_train_dataset(data: DataConfig, model: ModelConfig, seed: int) -> PoseWindowDataset:
    """Windows of every annotated person of the training split, with augmentation seeded by ``seed``."""
    split = load_posetrack(data_path(data, data.train_annotations), data.root)
    windows, stats = build_windows(split, window_deltas(model), GroundTruthBoxes())
    if not windows:
        raise ValueError(f"no training windows in {data_path(data, data.train_annotations)}")
    logger.info("training windows: %d (%d support slots padded)", stats.num_windows, stats.num_padded_slots)
    return PoseWindowDataset(windows, dataset_options(model, data, augment=True, seed=seed))


def steps_per_epoch(num_samples: int, train: TrainConfig) -> int:
    """Optimiser steps per epoch: whole global batches, capped by ``max_steps_per_epoch``.

    Raises:
        ValueError: The data set holds fewer samples than one batch.
    """
    steps = num_samples // train.batch_size
    if steps == 0:
        raise ValueError(f"{num_samples} training samples are fewer than one batch of {train.batch_size}")
    return steps if train.max_steps_per_epoch is None else min(steps, train.max_steps_per_epoch)


class EpochSampler(Sampler[int]):
    """This process's share of one epoch's shuffled order, from a given step on.

    The order is ``torch.randperm`` under a generator seeded with ``seed + epoch`` (the
    ``DistributedSampler`` convention); the first ``num_steps * global_batch`` positions are used,
    position ``p`` going to rank ``p % world_size``.

    Args:
        num_samples: Data-set size.
        seed: ``train.seed``.
        epoch: The epoch.
        num_steps: Steps in the epoch.
        global_batch: Samples per step over all processes.
        rank: This process.
        world_size: Number of processes.
        start_step: First step to yield (steps already trained are skipped).
    """

    def __init__(
        self,
        num_samples: int,
        seed: int,
        epoch: int,
        num_steps: int,
        global_batch: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(f"train.batch_size={global_batch} is not divisible by {world_size} processes")
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = epoch
        self.begin = start_step * global_batch
        self.end = num_steps * global_batch
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        """Dataset indices for this process, in order."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator)[self.begin : self.end]
        return iter(order[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        """Number of indices this process yields."""
        return max(self.end - self.begin, 0) // self.world_size


def build_train_loader(
    dataset: PoseWindowDataset,
    train: TrainConfig,
    num_workers: int,
    epoch: int,
    start_step: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Loader of one epoch (from ``start_step``) for this process.

    The dataset is switched to ``epoch`` (its augmentation draws depend on it); worker seeds come
    from a generator seeded with ``(seed, epoch)``; ``num_workers`` is ``data.num_workers``.
    """
    dataset.set_epoch(epoch)
    num_steps = steps_per_epoch(len(dataset), train)
    sampler = EpochSampler(len(dataset), train.seed, epoch, num_steps, train.batch_size, rank, world_size, start_step)
    return DataLoader(
        dataset,
        batch_size=train.batch_size // world_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_windows,
        generator=torch.Generator().manual_seed(train.seed + epoch),
        pin_memory=torch.cuda.is_available(),
    )


def build_model(config: ModelConfig, train: TrainConfig) -> FamiPose:
    """The network with its configured initial weights, on the CPU.

    Initialisation is seeded with ``train.seed``; ``model.backbone.pretrained`` is then loaded into
    the backbone (keys that fit), and ``train.init_from`` into the whole model (keys that exist, which
    must have the same shape, e.g. the ``backbone.*`` weights of a stage-1 single-frame checkpoint); a head
    the checkpoint does not provide then starts as the backbone's ``final_layer`` where it fits.

    Raises:
        CheckpointError: A weight file cannot be read, or ``init_from`` shares no key with the model.
    """
    torch.manual_seed(train.seed)
    model = FamiPose(config)
    if config.backbone.pretrained:
        report = load_weights(model.backbone, config.backbone.pretrained, strict=False)
        logger.info("backbone.pretrained %s: %s", config.backbone.pretrained, report.describe() or "exact fit")
    if train.init_from:
        loaded = load_matching(model, train.init_from)
        logger.info(
            "init_from %s: loaded %d of the model's %d tensors", train.init_from, len(loaded), len(model.state_dict())
        )
        if not any(key.startswith("head.") for key in loaded) and model.adopt_backbone_head():
            logger.info("init_from %s: head starts as the backbone's final_layer", train.init_from)
    return model


def build_optimizer(model: nn.Module, train: TrainConfig) -> Optimizer:
    """Adam or AdamW over the parameters that require gradients.

    Raises:
        ValueError: The model has no trainable parameter.
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("the model has no trainable parameter")
    optimizer_class = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(parameters, lr=train.lr, weight_decay=train.weight_decay)


def build_scheduler(optimizer: Optimizer, train: TrainConfig) -> MultiStepLR:
    """Step decay, stepped once per epoch: the learning rate is multiplied by ``gamma`` at each milestone."""
    return MultiStepLR(optimizer, milestones=list(train.milestones), gamma=train.gamma)
