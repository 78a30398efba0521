"""Training runs on a tiny SynthTrack set: learning, resume after a kill, divergence, run outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from typer.testing import CliRunner

from famipose.cli import app
from famipose.config import Config, load_config
from famipose.engine import train as train_module
from famipose.engine.builders import build_train_loader
from famipose.engine.checkpointing import load_checkpoint, progress_from_dict
from famipose.engine.distributed import init_distributed
from famipose.engine.logging import TrainProgress, read_metrics
from famipose.engine.train import Trainer, TrainingDivergedError, train, write_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
pytestmark = pytest.mark.usefixtures("torch_single_thread")


def synth_config(root: Path, *overrides: str) -> Config:
    """The SynthTrack single-frame config on the test set: CPU, batch 2, no workers."""
    base = [f"data.root={root}", "data.num_workers=0", "train.device=cpu", "train.batch_size=2", "train.log_every=1"]
    return load_config(CONFIGS / "synthtrack_single_frame_tiny.yaml", [*base, *overrides])


def model_state(path: Path) -> dict[str, torch.Tensor]:
    """Network weights of a checkpoint."""
    return load_checkpoint(path)["model"]


def test_short_run_reduces_the_training_loss(synthtrack_root: Path, tmp_path: Path) -> None:
    # The heatmap head: the SimCC head starts from mmpose's near-zero init, and 27 steps lower its
    # loss by only ~10 % (measured 0.90 at lr 0.003, 0.84 at 0.01), too close to noise for a test.
    config = synth_config(
        synthtrack_root, "train.batch_size=4", "train.lr=0.003", "train.epochs=3", "train.max_steps_per_epoch=9",
        "train.eval_every=0",
    )  # fmt: skip
    result = train(config, tmp_path)
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    assert len(losses) == 27
    assert sum(losses[-9:]) < 0.85 * sum(losses[:9])  # epoch means: single batches are too noisy
    assert result.progress.global_step == 27 and result.last_loss == losses[-1]


def wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll until ``path`` exists (fail if the process ends or time runs out first)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)


def test_killed_run_resumes_to_the_same_weights(synthtrack_root: Path, tmp_path: Path) -> None:
    config = synth_config(synthtrack_root, "train.epochs=2", "train.max_steps_per_epoch=4", "train.eval_every=0")
    config_file = tmp_path / "config.yaml"
    write_config(config, config_file)

    reference = train(config, tmp_path / "reference")

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "famipose.cli", "train", str(config_file), "--out", str(killed),
               "--checkpoint-every", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        wait_for(killed / "last.pth", process, timeout=120)
        process.send_signal(signal.SIGKILL)
    finally:
        process.communicate()
    interrupted = progress_from_dict(load_checkpoint(killed / "last.pth")["progress"])
    assert 0 < interrupted.global_step < 8 and interrupted.step_in_epoch > 0  # stopped inside an epoch

    resumed = CliRunner().invoke(
        app, ["train", str(config_file), "--out", str(killed), "--resume", "auto", "--checkpoint-every", "1"]
    )
    assert resumed.exit_code == 0, resumed.output
    steps = [r["step"] for r in read_metrics(killed / "metrics.jsonl") if r["kind"] == "train"]
    done = interrupted.global_step
    assert steps.count(1) == 1 and steps[-(8 - done) :] == list(range(done + 1, 9))  # continued, not restarted
    expected, actual = model_state(reference.last_checkpoint), model_state(killed / "last.pth")
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.allclose(expected[key].double(), actual[key].double(), rtol=0, atol=1e-6), key
    initial = train_module.build_model(config.model, config.train).state_dict()["backbone.final_layer.weight"]
    assert not torch.equal(expected["backbone.final_layer.weight"], initial)  # training did change the weights

    # The run folder holds everything a run writes.
    for name in ("config.yaml", "metrics.jsonl", "train_curves.png", "per_joint_map.png", "last.pth", "eval.json"):
        assert (reference.out_dir / name).is_file(), name
    assert sorted(p.name for p in (reference.out_dir / "predictions").iterdir()) == ["200000_synth_val.json", "ORIGIN"]
    origin = (reference.out_dir / "predictions" / "ORIGIN").read_text()
    assert origin.startswith("predictions of epoch 2 (global step 8)")
    assert load_config(reference.out_dir / "config.yaml") == config
    records = read_metrics(reference.out_dir / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 9))
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(evals) == 1 and evals[0]["epoch"] == 2
    assert set(evals[0]) >= {"Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Total"}
    if reference.best_ap is not None:
        assert reference.best_checkpoint == reference.out_dir / "best.pth"


def test_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(
    synthtrack_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_loss = train_module.compute_loss_unchecked

    def poisoned_loss(output, targets, config, probe):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            output.pose.heatmaps = output.pose.heatmaps * float("nan")
        return real_loss(output, targets, config, probe)

    monkeypatch.setattr(train_module, "compute_loss_unchecked", poisoned_loss)
    config = synth_config(synthtrack_root, "train.epochs=1", "train.max_steps_per_epoch=5")
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step 3/5 \(global step 3\).*non-finite.*pose") as error:
        train(config, tmp_path, checkpoint_every=1)
    assert "last.pth" in str(error.value)

    checkpoint = load_checkpoint(tmp_path / "last.pth")
    assert progress_from_dict(checkpoint["progress"]).global_step == 2
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())
    assert not (tmp_path / "best.pth").exists()
    assert len(calls) == 3  # nothing ran after the bad step


def test_cli_reports_a_corrupt_resume_checkpoint(synthtrack_root: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    write_config(synth_config(synthtrack_root), config_file)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pth").write_bytes(b"\x00" * 10)
    result = CliRunner().invoke(app, ["train", str(config_file), "--out", str(tmp_path / "run"), "--resume", "auto"])
    assert result.exit_code == 1
    assert "last.pth" in result.output and "cannot read checkpoint" in result.output



def test_logged_steps_carry_the_mi_gradient_balance_and_only_they_measure_it(
    synthtrack_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []
    real_ratio = train_module.gradient_ratio

    def counted_ratio(*args):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real_ratio(*args)

    monkeypatch.setattr(train_module, "gradient_ratio", counted_ratio)
    base = [f"data.root={synthtrack_root}", "data.num_workers=0", "train.device=cpu", "train.batch_size=2"]
    config = load_config(
        CONFIGS / "synthtrack_famipose_tiny.yaml",
        [*base, "train.init_from=null", "train.epochs=1", "train.max_steps_per_epoch=4", "train.log_every=2"],
    )
    with caplog.at_level("INFO", logger="famipose.train"):
        train(config, tmp_path)
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in records] == [2, 4] and len(calls) == 2  # measured on logged steps only
    ratios = [r["parts"]["mi/grad_ratio"] for r in records]
    assert all(0 < ratio < 10 for ratio in ratios)
    assert sum("|∇mi|/|∇pose|" in message for message in caplog.messages) == 2


def test_seed_sweep_runs_each_seed_once_and_continues_where_it_stopped(synthtrack_root: Path, tmp_path: Path) -> None:
    args = ["--set", f"data.root={synthtrack_root}", "--set", "data.num_workers=0", "--set", "train.device=cpu",
            "--set", "train.batch_size=2", "--set", "train.epochs=1", "--set", "train.max_steps_per_epoch=2",
            "--set", "train.eval_every=0", "--out", str(tmp_path / "sweep")]  # fmt: skip
    config = str(CONFIGS / "synthtrack_single_frame_tiny.yaml")
    first = CliRunner().invoke(app, ["train", config, *args, "--seeds", "0"])  # a sweep stopped after seed 0
    assert first.exit_code == 0, first.output
    seed0 = tmp_path / "sweep" / "seed_0"
    metrics0 = (seed0 / "metrics.jsonl").read_text()
    result = CliRunner().invoke(app, ["train", config, *args, "--seeds", "0,1,2"])
    assert result.exit_code == 0, result.output
    assert (seed0 / "metrics.jsonl").read_text() == metrics0  # the finished seed trained no step
    assert result.output.count("done: 2 steps") == 3
    seeds = [load_config(tmp_path / "sweep" / f"seed_{s}" / "config.yaml").train.seed for s in range(3)]
    assert seeds == [0, 1, 2]
    # Given the seed, a CPU run is deterministic: the same seed gives the same weights, another seed others.
    again = train(load_config(seed0 / "config.yaml"), tmp_path / "again")
    runs = (seed0 / "last.pth", again.last_checkpoint, tmp_path / "sweep" / "seed_1" / "last.pth")
    weights = [model_state(path) for path in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_seed_sweep_refuses_bad_seed_lists(tmp_path: Path) -> None:
    config = str(CONFIGS / "synthtrack_single_frame_tiny.yaml")
    for seeds, problem in (("0,x", "expected comma-separated integers"), ("1,1", "distinct seeds")):
        result = CliRunner().invoke(app, ["train", config, "--seeds", seeds, "--out", str(tmp_path / "s")])
        assert result.exit_code == 1 and problem in result.output, result.output
        assert not (tmp_path / "s").exists()


HOST_READS = (
    torch.Tensor.item, torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__,
    torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy,
)  # fmt: skip


class HostReads(TorchFunctionMode):
    """Records every read of a tensor's value on the host: a device sync where the tensor is on an
    accelerator. Counted on the CPU, where the same calls run.

    Args:
        exempt: Tensors that live on the host on every device (Adam's step counts), not counted.
    """

    def __init__(self, exempt: Sequence[torch.Tensor] = ()) -> None:
        super().__init__()
        self.exempt = {id(tensor) for tensor in exempt}
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in HOST_READS and id(args[0]) not in self.exempt:
            self.calls.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_host_read_counter_sees_every_kind_of_read() -> None:
    value, exempt = torch.ones(()), torch.ones(())
    with HostReads(exempt=[exempt]) as reads:
        value.item(), float(value), bool(value), int(value), value.tolist(), value.cpu(), value.numpy()
        exempt.item()
    assert reads.calls == ["item", "__float__", "__bool__", "__int__", "tolist", "cpu", "numpy"]


def synth_trainer(root: Path, out: Path, name: str, *overrides: str) -> tuple[Trainer, Any]:
    """A trainer on the test set (nothing logged for 100 steps) and its first epoch's batches."""
    base = [f"data.root={root}", "data.num_workers=0", "train.device=cpu", "train.batch_size=2"]
    config = load_config(CONFIGS / f"{name}.yaml", [*base, "train.init_from=null", "train.log_every=100", *overrides])
    trainer = Trainer(config, out, init_distributed("cpu"), None, None)
    trainer.model.train()
    return trainer, iter(build_train_loader(trainer.dataset, config.train, config.data.num_workers, 0, 0, 0, 1))


def next_step(trainer: Trainer) -> None:
    """Advance the trainer's counters by one step, as ``train_epoch`` does."""
    p = trainer.progress
    trainer.progress = replace(p, step_in_epoch=p.step_in_epoch + 1, global_step=p.global_step + 1)


@pytest.mark.parametrize(
    "name", ["synthtrack_single_frame_tiny", "synthtrack_famipose_tiny", "synthtrack_famipose_official_tiny"]
)
def test_a_step_that_logs_nothing_syncs_the_device_once(synthtrack_root: Path, tmp_path: Path, name: str) -> None:
    trainer, batches = synth_trainer(synthtrack_root, tmp_path, name)
    trainer.step(next(batches))  # creates the optimiser state
    next_step(trainer)
    steps = [state["step"] for state in trainer.optimizer.state.values()]  # host scalars, also on CUDA
    batch = next(batches)
    assert not trainer.is_log_step(trainer.progress.global_step + 1, trainer.progress.step_in_epoch + 1)
    with TrainProgress(trainer.steps_per_epoch, 1, enabled=False) as display, HostReads(exempt=steps) as reads:
        loss = trainer.step(batch)
        next_step(trainer)
        trainer.log_step(loss, display)
    assert reads.calls == ["__bool__"]  # the joint finiteness check of the loss and the gradient


def test_non_finite_gradient_of_a_finite_loss_stops_before_the_update(synthtrack_root: Path, tmp_path: Path) -> None:
    trainer, batches = synth_trainer(synthtrack_root, tmp_path, "synthtrack_single_frame_tiny", "train.amp=false")
    weight = trainer.network.backbone.final_layer.weight
    before = weight.detach().clone()
    weight.register_hook(lambda grad: grad * float("inf"))
    message = r"step 1/\d+ .*: non-finite gradient norm (inf|nan) \(loss parts: \{'pose'"
    with pytest.raises(TrainingDivergedError, match=message):
        trainer.step(next(batches))
    assert torch.equal(weight, before)
