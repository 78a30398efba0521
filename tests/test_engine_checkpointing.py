"""Checkpoint files: atomic writes, corrupt files, RNG states, safetensors export."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from famipose.engine import checkpointing
from famipose.engine.checkpointing import (
    Progress,
    capture_rng_state,
    find_resume_checkpoint,
    load_checkpoint,
    progress_from_dict,
    progress_to_dict,
    restore_rng_state,
)
from famipose.models.checkpoint import CheckpointError, atomic_save, export_safetensors, read_model_state


def make_checkpoint(value: float) -> dict[str, Any]:
    """A small checkpoint dict with every section."""
    return {
        "model": {"weight": torch.full((3, 2), value)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        "scheduler": {"last_epoch": 1},
        "scaler": {},
        "rng": capture_rng_state(),
        "progress": progress_to_dict(Progress(epoch=1, step_in_epoch=3, global_step=7, best_ap=12.5)),
        "config": {"train": {"lr": 0.001, "milestones": [8, 12]}},
    }


def test_interrupted_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pth"
    atomic_save(make_checkpoint(1.0), path)
    real_save = torch.save

    def crash_midway(payload: Any, file: Any) -> None:
        real_save(payload, file)
        file.truncate(file.tell() // 2)  # half the bytes are on disk when the "crash" happens
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpointing.torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        atomic_save(make_checkpoint(2.0), path)
    monkeypatch.undo()

    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["weight"], torch.full((3, 2), 1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # the temporary file is gone


def test_checkpoint_round_trip_with_weights_only(tmp_path: Path) -> None:
    atomic_save(make_checkpoint(3.0), tmp_path / "c.pth")
    loaded = load_checkpoint(tmp_path / "c.pth")
    assert progress_from_dict(loaded["progress"]) == Progress(1, 3, 7, 12.5)
    assert loaded["config"]["train"]["milestones"] == [8, 12]


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_corrupt_checkpoint_names_the_file(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "broken.pth"
    if content is None:  # a valid file cut in half
        atomic_save(make_checkpoint(1.0), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"broken\.pth"):
        load_checkpoint(path)


def test_checkpoint_without_sections_is_rejected(tmp_path: Path) -> None:
    torch.save({"model": {}}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"partial\.pth.*missing"):
        load_checkpoint(tmp_path / "partial.pth")


def test_rng_states_survive_a_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in the legacy state
    atomic_save({"rng": capture_rng_state()}, tmp_path / "rng.pth")
    expected = (random.random(), np.random.normal(), np.random.rand(3), torch.rand(3))

    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_state(torch.load(tmp_path / "rng.pth", weights_only=True)["rng"])
    again = (random.random(), np.random.normal(), np.random.rand(3), torch.rand(3))
    assert again[0] == expected[0] and again[1] == expected[1]
    np.testing.assert_array_equal(again[2], expected[2])
    assert torch.equal(again[3], expected[3])


def test_export_safetensors_keeps_the_weights(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    checkpoint = make_checkpoint(0.0) | {"model": {f"module.{k}": v for k, v in model.state_dict().items()}}
    atomic_save(checkpoint, tmp_path / "best.pth")
    exported = export_safetensors(tmp_path / "best.pth", tmp_path / "best.safetensors")
    state = read_model_state(exported)
    assert state.keys() == model.state_dict().keys()  # DataParallel prefixes are dropped
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value)


def test_resume_auto_needs_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"last\.pth"):
        find_resume_checkpoint(tmp_path)
    atomic_save(make_checkpoint(1.0), tmp_path / "last.pth")
    assert find_resume_checkpoint(tmp_path) == tmp_path / "last.pth"
