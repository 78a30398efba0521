"""The one device resolver of training and video inference."""

from __future__ import annotations

import pytest
import torch

from famipose.config import ConfigError
from famipose.device import resolve_device


def test_cpu_and_auto_resolve_without_a_gpu_request() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_an_unknown_device_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"--device='gpu': unknown device; valid: auto, cpu, cuda"):
        resolve_device("gpu", setting="--device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_names_the_setting_it_came_from() -> None:
    with pytest.raises(ConfigError, match=r"^--device=cuda but CUDA is not available; use --device=cpu or auto$"):
        resolve_device("cuda", setting="--device")
