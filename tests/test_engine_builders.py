"""Builders: data order, optimiser, schedule, stage-1 → stage-2 initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from famipose.config import Config, load_config
from famipose.engine.builders import (
    EpochSampler,
    build_model,
    build_optimizer,
    build_scheduler,
    load_matching,
    steps_per_epoch,
)
from famipose.models.checkpoint import CheckpointError, atomic_save

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def global_batches(world_size: int, start_step: int = 0, epoch: int = 3) -> list[set[int]]:
    """The sample sets of each step, united over the processes."""
    per_rank = [
        list(EpochSampler(23, seed=5, epoch=epoch, num_steps=5, global_batch=4, rank=r, world_size=world_size,
                          start_step=start_step))
        for r in range(world_size)
    ]  # fmt: skip
    local = 4 // world_size
    steps = len(per_rank[0]) // local
    return [{i for indices in per_rank for i in indices[s * local : (s + 1) * local]} for s in range(steps)]


def test_global_batches_do_not_depend_on_the_number_of_processes() -> None:
    single = global_batches(1)
    assert len(single) == 5 and all(len(batch) == 4 for batch in single)
    assert len(set().union(*single)) == 20  # 20 distinct samples of 23: whole batches only
    assert global_batches(2) == single
    assert global_batches(4) == single


def test_resumed_sampler_skips_exactly_the_trained_steps() -> None:
    assert global_batches(2, start_step=3) == global_batches(1)[3:]
    assert len(EpochSampler(23, 5, 3, 5, 4, rank=1, world_size=2, start_step=3)) == 4


def test_order_changes_with_epoch_and_seed() -> None:
    assert global_batches(1, epoch=3) != global_batches(1, epoch=4)
    assert list(EpochSampler(23, 5, 0, 5, 4)) != list(EpochSampler(23, 6, 0, 5, 4))


def test_batch_must_split_over_processes() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        EpochSampler(23, 0, 0, 5, 4, rank=0, world_size=3)


def test_steps_per_epoch_uses_whole_batches_and_the_cap() -> None:
    config = load_config(None, ["train.batch_size=4"])
    assert steps_per_epoch(23, config.train) == 5
    assert steps_per_epoch(23, load_config(None, ["train.batch_size=4", "train.max_steps_per_epoch=2"]).train) == 2
    with pytest.raises(ValueError, match="fewer than one batch"):
        steps_per_epoch(3, config.train)


def test_optimizer_gets_only_trainable_parameters() -> None:
    config = load_config(CONFIGS / "famipose_tiny.yaml", ["model.backbone.frozen=true", "train.optimizer=adamw"])
    model = build_model(config.model, config.train)
    optimizer = build_optimizer(model, config.train)
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert isinstance(optimizer, torch.optim.AdamW)
    assert in_optimizer == trainable
    assert not in_optimizer & {id(p) for p in model.backbone.parameters()}


def test_schedule_decays_at_the_milestones() -> None:
    config = load_config(None, ["train.lr=0.001", "train.milestones=[2, 4]", "train.gamma=0.1"])
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=config.train.lr)
    scheduler = build_scheduler(optimizer, config.train)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])


def _built(config: Config) -> torch.nn.Module:
    return build_model(config.model, config.train)


def test_stage_two_starts_from_the_stage_one_backbone(tmp_path: Path) -> None:
    stage1 = _built(load_config(CONFIGS / "single_frame_tiny.yaml", ["train.seed=1"]))
    atomic_save({"model": stage1.state_dict()}, tmp_path / "best.pth")
    overrides = [f"train.init_from={tmp_path / 'best.pth'}", "train.seed=2", "model.backbone.frozen=true"]
    stage2 = _built(load_config(CONFIGS / "famipose_tiny.yaml", overrides))
    fresh = _built(load_config(CONFIGS / "famipose_tiny.yaml", overrides[1:]))
    for key, value in stage1.backbone.state_dict().items():
        assert torch.equal(stage2.backbone.state_dict()[key], value), key
    for key, value in fresh.state_dict().items():
        if not key.startswith(("backbone.", "head.")):
            assert torch.equal(stage2.state_dict()[key], value), key  # alignment modules keep their init
    # The head the stage-1 checkpoint lacks starts as its final layer.
    assert torch.equal(stage2.head.conv.weight, stage1.backbone.final_layer.weight)
    assert not any(p.requires_grad for p in stage2.backbone.parameters())


def test_init_from_without_a_common_key_fails(tmp_path: Path) -> None:
    torch.save({"model": {"unrelated.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    model = torch.nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match=r"other\.pth"):
        load_matching(model, tmp_path / "other.pth")


@pytest.mark.parametrize(("mode", "sigma"), [("sa-simdr", 3.0), ("sa-simdr", 5.0), ("simdr", 3.0)])
def test_simcc_labels_take_sigma_in_bins_and_the_configured_mode(
    synthtrack_root: Path, mode: str, sigma: float
) -> None:
    """``model.head.simcc_sigma`` is the label's standard deviation in bins; ``simdr`` is one-hot."""
    import numpy as np

    from famipose.engine.builders import build_train_dataset

    config = load_config(
        CONFIGS / "synthtrack_single_frame_tiny.yaml",
        [f"data.root={synthtrack_root}", "model.head.kind=simcc", f"model.head.simcc_mode={mode}",
         f"model.head.simcc_sigma={sigma}"],
    )  # fmt: skip
    sample = build_train_dataset(config.data, config.model, config.train.seed)[0]
    bins = np.arange(sample.simcc_x.shape[-1])
    for joint in np.flatnonzero(sample.target_weights.numpy() > 0):
        label = sample.simcc_x[joint].numpy().astype(np.float64)
        centre = 2.0 * float(sample.keypoints[joint, 0])  # k = 2 bins per input pixel
        if mode == "simdr":
            assert label.sum() == 1.0 and label.argmax() == round(centre)
        elif 3 * sigma < centre < len(bins) - 1 - 3 * sigma:  # the whole Gaussian fits in the bins
            p = label / label.sum()
            std = np.sqrt((p * (bins - (p * bins).sum()) ** 2).sum())
            assert std == pytest.approx(sigma, rel=0.02)
