"""DDP: two gloo processes under torchrun train exactly like one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from famipose.config import load_config
from famipose.engine.checkpointing import load_checkpoint
from famipose.engine.distributed import GlobalBatchNorm2d, convert_batchnorm
from famipose.engine.logging import read_metrics
from famipose.engine.train import build_model, train, write_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_two_process_ddp_matches_one_process(synthtrack_root: Path, tmp_path: Path) -> None:
    # Frozen backbone; the FAMI modules' BatchNorm layers are synchronised over the processes; no MI
    # terms (they normalise by per-process joint counts); augmentation on. The loss is scaled by 1e-4:
    # BatchNorm makes some gradient directions exactly zero, and Adam would blow their float noise
    # (which differs even between 1- and 2-thread single-process runs) up to ±lr; at this scale those
    # updates stay far below the tolerance while real gradients still move weights by ~1e-3.
    overrides = [
        f"data.root={synthtrack_root}", "data.num_workers=0", "train.device=cpu", "train.init_from=null",
        "model.backbone.frozen=true",
        "model.deltas=[-1, 1]", "loss.mi_form=none", "loss.pose_weight=0.0001", "train.batch_size=4",
        "train.epochs=1", "train.max_steps_per_epoch=3", "train.log_every=1",
    ]  # fmt: skip
    config = load_config(CONFIGS / "synthtrack_famipose_tiny.yaml", overrides)
    config_file = tmp_path / "config.yaml"
    write_config(config, config_file)

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "famipose.cli", "train", str(config_file), "--out", str(tmp_path / "ddp")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, env=env, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr.decode()[-3000:]

    single = train(config, tmp_path / "single")

    ddp_state = load_checkpoint(tmp_path / "ddp" / "last.pth")["model"]
    single_state = load_checkpoint(single.last_checkpoint)["model"]
    initial = build_model(config.model, config.train).state_dict()
    moved = 0.0
    for key, value in single_state.items():
        if value.is_floating_point():
            assert torch.allclose(ddp_state[key], value, rtol=0, atol=1e-5), key
            moved = max(moved, (value - initial[key]).abs().max().item())
        else:
            assert torch.equal(ddp_state[key], value), key
    assert moved > 1e-3  # the three steps changed the weights far beyond the tolerance

    def losses(run: Path) -> list[float]:
        return [r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]

    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "single"), rel=1e-5, abs=1e-7)
    assert len(losses(tmp_path / "ddp")) == 3
    # Gathered evaluation: rank 0 wrote the persons of both processes, frame by frame.
    ddp_files = sorted((tmp_path / "ddp" / "predictions").glob("*.json"))
    assert [p.name for p in ddp_files] == [p.name for p in sorted((tmp_path / "single" / "predictions").glob("*.json"))]
    for ddp_file in ddp_files:
        ddp_pred = json.loads(ddp_file.read_text())
        single_pred = json.loads((tmp_path / "single" / "predictions" / ddp_file.name).read_text())
        assert [a["image_id"] for a in ddp_pred["annotations"]] == [a["image_id"] for a in single_pred["annotations"]]
        ddp_scores = torch.tensor([a["scores"] for a in ddp_pred["annotations"]])
        single_scores = torch.tensor([a["scores"] for a in single_pred["annotations"]])
        assert torch.allclose(ddp_scores, single_scores, rtol=0, atol=1e-5)
    assert json.loads((tmp_path / "ddp" / "eval.json").read_text())["Total"] is not None

def test_global_batchnorm_matches_batchnorm(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-0.5, 0.5)
    shared = torch.nn.BatchNorm2d(4)
    shared.load_state_dict(reference.state_dict())
    converted = convert_batchnorm(torch.nn.Sequential(shared))[0]
    assert isinstance(converted, GlobalBatchNorm2d) and converted.weight is shared.weight  # weights are shared

    x = torch.randn(3, 4, 5, 6) * 2 + 1
    x_ref, x_new = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn(3, 4, 5, 6)
    (reference(x_ref) * upstream).sum().backward()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        (converted(x_new) * upstream).sum().backward()  # the all-reduce path
    finally:
        dist.destroy_process_group()
    assert torch.allclose(x_new.grad, x_ref.grad, atol=1e-5)
    assert torch.allclose(converted.weight.grad, reference.weight.grad, atol=1e-4)
    assert torch.allclose(converted.bias.grad, reference.bias.grad, atol=1e-4)
    assert torch.allclose(converted.running_mean, reference.running_mean, atol=1e-6)
    assert torch.allclose(converted.running_var, reference.running_var, atol=1e-5)
    assert converted.num_batches_tracked.item() == 1
    converted.eval()
    reference.eval()
    assert torch.allclose(converted(x), reference(x), atol=1e-5)
