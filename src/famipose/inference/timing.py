"""Per-stage wall-clock timing of a video run.

Every stage of :class:`~famipose.inference.pipeline.VideoPoseEstimator` is timed under one of
:data:`STAGES` by the :class:`StageTimer` the estimator creates for the run and hands to each
component that works for it.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator

import torch

# "alignment" covers everything after the backbone (GTM, LCM, fusion and the head, whose cost is negligible).
STAGES: tuple[str, ...] = ("decode", "detect", "track", "crop", "backbone", "alignment", "postprocess", "render")


class StageTimer:
    """Wall-clock seconds per pipeline stage (CUDA work is synchronised before reading the clock).

    Args:
        device: where the network runs.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time the body as ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[stage] += time.perf_counter() - start
