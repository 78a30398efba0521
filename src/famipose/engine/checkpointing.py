"""Training checkpoints: atomic writes, resumable state, safetensors export.

A checkpoint is a dict of tensors and plain Python values, so that it loads with
``torch.load(weights_only=True)``:

``model``        state dict of the (unwrapped) network
``optimizer``    optimiser state dict
``scheduler``    learning-rate scheduler state dict
``scaler``       ``GradScaler`` state dict (empty without mixed precision)
``rng``          random states: ``python`` (``random.getstate()``), ``numpy`` (the legacy MT19937
                 state with its key as an int64 tensor), ``torch`` (CPU byte tensor) and ``cuda``
                 (one byte tensor per device, empty without CUDA)
``progress``     :class:`Progress` as a dict (epoch, position inside it, global step, best AP)
``config``       the experiment config as a plain nested dict

Files are written to a temporary file in the same folder, fsynced, then renamed over the
destination (:func:`famipose.files.atomic_path`); an interrupted write leaves the previous file
intact, and the temporary a killed write leaves is removed when the next run starts.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from famipose.files import atomic_path
from famipose.models.checkpoint import CheckpointError, hrnet_as_famipose_state

LAST_NAME = "last.pth"
BEST_NAME = "best.pth"
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "scaler", "rng", "progress", "config")


@dataclass(frozen=True)
class Progress:
    """How far training has got.

    Attributes:
        epoch: The epoch being trained (equal to the number of finished epochs at an epoch end).
        step_in_epoch: Optimiser steps already taken in ``epoch`` (0 at an epoch start).
        global_step: Optimiser steps taken since the start of training.
        best_ap: Best validation Total AP so far, or ``None`` before the first evaluation.
    """

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_ap: float | None = None


def capture_rng_state() -> dict[str, Any]:
    """Random states of python, numpy, torch and CUDA as ``weights_only``-loadable values."""
    kind, key, position, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the random states saved by :func:`capture_rng_state`.

    CUDA states are restored only when the number of devices matches.
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["key"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda_states = list(state["cuda"])
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def progress_to_dict(progress: Progress) -> dict[str, Any]:
    """Plain dict of a :class:`Progress`."""
    return dataclasses.asdict(progress)


def progress_from_dict(data: Mapping[str, Any]) -> Progress:
    """Inverse of :func:`progress_to_dict`."""
    return Progress(**data)


def atomic_save(payload: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file next to ``path``, fsync it, then rename it over ``path``.

    Args:
        payload: What to save.
        path: Destination; its folder is created if needed.

    Returns:
        The destination path.
    """
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        torch.save(payload, file)
    return Path(path)


def read_checkpoint_file(path: str | os.PathLike[str]) -> Any:
    """``torch.load(weights_only=True)`` onto the CPU, any failure a one-line :class:`CheckpointError`.

    Raises:
        CheckpointError: The file is missing, empty, truncated or not a PyTorch file; the message
            names the file and the reason.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: the file is empty (0 bytes)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types for missing, truncated or foreign files
        reason = " ".join(str(err).split()) or type(err).__name__
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {reason}") from err


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint written by :func:`atomic_save` onto the CPU.

    Args:
        path: The ``.pth`` file.

    Returns:
        The checkpoint dict (see the module docstring).

    Raises:
        CheckpointError: The file is missing, truncated, not a checkpoint or lacks a section; the
            message names the file.
    """
    path = Path(path)
    content = read_checkpoint_file(path)
    if not isinstance(content, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {type(content).__name__}, not a training checkpoint")
    missing = [key for key in CHECKPOINT_KEYS if key not in content]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a training checkpoint; missing {missing}")
    return content


def read_model_state(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Tensor]:
    """The network weights of a training checkpoint, a ``.safetensors`` export or a raw state dict.

    Unlike :func:`famipose.models.checkpoint.read_state_dict`, keys are kept as they are
    (``backbone.*`` included), so the result loads into a whole :class:`FamiPose`; an official
    HRNet state dict (``pose_hrnet_w32_256x192.pth``) gets its keys put under ``backbone.``.

    Args:
        source: A path or an in-memory checkpoint.

    Returns:
        ``{parameter name: tensor}``.

    Raises:
        CheckpointError: The file cannot be read or holds no tensor state dict.
    """
    name = "<mapping>" if isinstance(source, Mapping) else repr(str(source))
    if isinstance(source, Mapping):
        content: Any = source
    elif Path(source).suffix == ".safetensors":
        try:
            content = load_file(str(source))
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read weights {name}: {err}") from err
    else:
        content = read_checkpoint_file(source)
    if isinstance(content, Mapping) and isinstance(content.get("model"), Mapping):
        content = content["model"]
    if not isinstance(content, Mapping) or not all(isinstance(v, Tensor) for v in content.values()):
        raise CheckpointError(f"checkpoint {name} holds no state dict of tensors")
    return hrnet_as_famipose_state({str(key).removeprefix("module."): value for key, value in content.items()})


def export_safetensors(checkpoint: str | os.PathLike[str] | Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the network weights of a checkpoint as a ``.safetensors`` file.

    Args:
        checkpoint: A training checkpoint (path or dict) or a state dict.
        path: Output file.

    Returns:
        The output path.
    """
    state = {key: value.detach().cpu().contiguous().clone() for key, value in read_model_state(checkpoint).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def find_resume_checkpoint(out_dir: str | os.PathLike[str]) -> Path:
    """The checkpoint ``--resume auto`` continues from: the run folder's ``last.pth``.

    Raises:
        FileNotFoundError: The folder holds no ``last.pth``.
    """
    path = Path(out_dir) / LAST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"--resume auto: no {LAST_NAME} in {out_dir}")
    return path
