"""Training checkpoints: what they hold, resumable state, the checkpoint ``--resume auto`` continues.

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

The files themselves are written and read by :mod:`famipose.models.checkpoint`, the module that
owns weights on disk: :func:`~famipose.models.checkpoint.atomic_save` writes to a temporary file
in the same folder, fsyncs it and renames it over the destination, so an interrupted write leaves
the previous file intact (the temporary a killed write leaves is removed when the next run
starts), and :func:`~famipose.models.checkpoint.read_checkpoint_file` turns every read failure
into a one-line ``CheckpointError``.
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

from famipose.models.checkpoint import CheckpointError, read_checkpoint_file

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


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint written by :func:`~famipose.models.checkpoint.atomic_save` onto the CPU.

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


def find_resume_checkpoint(out_dir: str | os.PathLike[str]) -> Path:
    """The checkpoint ``--resume auto`` continues from: the run folder's ``last.pth``.

    Raises:
        FileNotFoundError: The folder holds no ``last.pth``.
    """
    path = Path(out_dir) / LAST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"--resume auto: no {LAST_NAME} in {out_dir}")
    return path
