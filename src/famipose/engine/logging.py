"""Run logging: metrics as JSON lines, a rich progress bar on a terminal, plain log lines otherwise.

Only rank 0 logs; other processes get disabled writers. Each metrics line is one JSON object with
a ``kind``: ``train`` (one per log step: epoch, step, loss and its parts, learning rate, speed) or
``eval`` (one per evaluation: epoch, step, grouped AP and Total). Epochs count from 1 on both (a
``train`` line's epoch is the one being trained, an ``eval`` line's the one just finished).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from famipose.files import write_text_atomic

logger = logging.getLogger("famipose.train")


def setup_logging(is_main: bool = True) -> None:
    """Send famipose log records to stderr (rich on a terminal); other ranks log warnings only."""
    handler: logging.Handler = RichHandler(show_path=False) if sys.stderr.isatty() else logging.StreamHandler()
    if not sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("famipose")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    root.propagate = False


class MetricsLog:
    """Append-only JSON-lines file (disabled when ``path`` is ``None``).

    Args:
        path: The ``metrics.jsonl`` file, appended to (a resumed run continues it).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def truncate(self, global_step: int) -> None:
        """Drop the records of steps after ``global_step`` (a resumed run logs them again)."""
        if self.path is None or not self.path.is_file():
            return
        kept = [record for record in read_metrics(self.path) if record.get("step", 0) <= global_step]
        write_text_atomic(self.path, "".join(json.dumps(record) + "\n" for record in kept))

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record as a line and flush it."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics file (an empty list when it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class TrainProgress:
    """Progress display over the optimiser steps of a run.

    On a terminal: a rich bar with loss, learning rate, it/s, the MI/pose gradient ratio and ETA.
    Otherwise: one log line per logged step (``log_every``) with the same numbers.

    Args:
        total_steps: Steps of the whole run.
        done_steps: Steps already done (resumed run).
        enabled: False on ranks other than 0.
    """

    def __init__(self, total_steps: int, done_steps: int, enabled: bool = True) -> None:
        self.total_steps = total_steps
        self.done_steps = done_steps
        self.enabled = enabled
        self.start_time = time.perf_counter()
        self.start_step = done_steps
        self.loss = float("nan")
        self.grad_ratio: float | None = None
        self.bar: Progress | None = None
        self.task = None
        if enabled and sys.stdout.isatty():
            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                console=Console(),
            )
            self.task = self.bar.add_task("train", total=total_steps, completed=done_steps, status="")

    def __enter__(self) -> TrainProgress:
        """Start the bar."""
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Stop the bar."""
        if self.bar is not None:
            self.bar.stop()

    @property
    def steps_per_second(self) -> float:
        """Speed since this display started."""
        elapsed = time.perf_counter() - self.start_time
        return (self.done_steps - self.start_step) / elapsed if elapsed > 0 else 0.0

    def update(
        self, global_step: int, epoch: int, loss: float | None, lr: float, grad_ratio: float | None = None
    ) -> None:
        """Record that ``global_step`` steps are done.

        Args:
            global_step: Steps done since the start of training.
            epoch: Current epoch, counted from 1.
            loss: Loss of the last step, or ``None`` on steps that are not logged (the display keeps
                the last logged value; reading the loss every step would force a device sync).
            lr: Current learning rate.
            grad_ratio: ‖∇(α·L_MI)‖ / ‖∇L_pose‖ of the last logged step, when measured.
        """
        self.done_steps = global_step
        if loss is not None:
            self.loss = loss
            self.grad_ratio = grad_ratio
        if not self.enabled:
            return
        speed = self.steps_per_second
        status = f"epoch {epoch} loss {self.loss:.6f} lr {lr:.2e} {speed:.2f} it/s"
        if self.grad_ratio is not None:
            status += f" |∇mi|/|∇pose| {self.grad_ratio:.3g}"
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=global_step, status=status)
        elif loss is not None:
            remaining = (self.total_steps - global_step) / speed if speed > 0 else float("nan")
            logger.info("step %d/%d %s eta %.0fs", global_step, self.total_steps, status, remaining)
