"""The device a network runs on: one resolver for ``train.device`` and ``famipose video --device``.

Training (:mod:`famipose.engine.distributed`) and video inference (:mod:`famipose.inference`) both
call :func:`resolve_device`, so the same request gives the same device and the same error.
"""

from __future__ import annotations

import torch

from famipose.config import ConfigError

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(preference: str, index: int = 0, setting: str = "train.device") -> torch.device:
    """The device for ``auto`` (CUDA when available, else the CPU), ``cpu`` or ``cuda``.

    Args:
        preference: one of :data:`DEVICE_CHOICES`.
        index: CUDA device index (the process's local rank under ``torchrun``).
        setting: the option the preference came from, named in the error message.

    Returns:
        The device.

    Raises:
        ConfigError: an unknown preference, or ``cuda`` without an available GPU.
    """
    if preference not in DEVICE_CHOICES:
        raise ConfigError(f"{setting}={preference!r}: unknown device; valid: {', '.join(DEVICE_CHOICES)}")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting}=cuda but CUDA is not available; use {setting}=cpu or auto")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", index)
