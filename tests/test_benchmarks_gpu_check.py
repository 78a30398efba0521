"""benchmarks/gpu_check.py in its tiny setting on the CPU: the training-step timing runs the real loss."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_training_steps_are_timed_for_both_models_and_amp_needs_cuda(load_benchmark) -> None:
    bench = load_benchmark("gpu_check")
    single, fami = bench.step_settings(tiny=True)
    assert "model.backbone.frozen=true" in fami.overrides and "model.backbone.frozen=true" not in single.overrides
    cpu = torch.device("cpu")
    for setting in (single, fami):
        assert bench.train_steps_per_second(setting, cpu, amp=False, batch=2, steps=1) > 0
    with pytest.raises(ValueError, match="AMP needs CUDA"):
        bench.train_steps_per_second(single, cpu, amp=True, batch=2, steps=1)


def test_the_tiny_run_prints_all_its_parts_on_the_cpu() -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--device", "cpu",
               "--batch", "1", "--steps", "1"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("AMP off:") == 2 and result.stdout.count("n/a (CUDA only)") == 2
    assert "forward+backward: torchvision=" in result.stdout
