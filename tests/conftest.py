"""Shared test fixtures."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from famipose.data.synthtrack import generate_synthtrack


@pytest.fixture(scope="session")
def synthtrack_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SynthTrack set: train 2 videos x 6 frames, val 1 video x 4 frames, 128x96 frames."""
    root = tmp_path_factory.mktemp("synthtrack")
    generate_synthtrack(root, videos=2, frames=6, size=(128, 96), seed=0, split="train", workers=1)
    generate_synthtrack(root, videos=1, frames=4, size=(128, 96), seed=0, split="val", workers=1)
    return root


@pytest.fixture
def torch_single_thread() -> Iterator[None]:
    """Run torch on one thread: on a loaded machine, spinning OpenMP threads cost more than they give."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def famipose_logging_reset() -> Iterator[None]:
    """Drop the log handler a CLI command installed: it writes to the runner's stream, closed after the test."""
    yield
    logger = logging.getLogger("famipose")
    logger.handlers.clear()
    logger.propagate = True
