"""Figures of a run: training curves and per-joint AP (PNG files).

Figures are drawn on ``matplotlib.figure.Figure`` objects (Agg canvas), never through pyplot, so
no global backend state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def plot_train_curves(records: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Training loss and learning rate per step, and validation Total AP per epoch.

    Args:
        records: Metrics records (see :mod:`famipose.engine.logging`).
        path: Output PNG.

    Returns:
        The written file.
    """
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval" and r.get("Total") is not None]
    figure = Figure(figsize=(15, 4))
    loss_axis, lr_axis, ap_axis = figure.subplots(1, 3)
    steps = [r["step"] for r in train]
    loss_axis.plot(steps, [r["loss"] for r in train])
    if train and min(r["loss"] for r in train) > 0:
        loss_axis.set_yscale("log")
    loss_axis.set(title="training loss", xlabel="step")
    lr_axis.plot(steps, [r["lr"] for r in train])
    lr_axis.set(title="learning rate", xlabel="step")
    ap_axis.plot([r["epoch"] for r in evals], [r["Total"] for r in evals], marker="o")
    ap_axis.set(title="validation AP (Total)", xlabel="epoch", ylabel="AP (%)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def plot_per_joint_ap(grouped: Mapping[str, float | None], path: Path, title: str = "PoseTrack AP") -> Path:
    """Bar chart of the AP per joint group and Total.

    Args:
        grouped: ``{"Head": ..., ..., "Ankle": ..., "Total": ...}`` in percent (``None``/NaN drawn as 0).
        path: Output PNG.
        title: Figure title.

    Returns:
        The written file.
    """
    names = list(grouped)
    values = [0.0 if v is None or math.isnan(v) else float(v) for v in grouped.values()]
    figure = Figure(figsize=(8, 4))
    axis = figure.subplots()
    bars = axis.bar(names, values, color=["tab:blue"] * (len(names) - 1) + ["tab:orange"])
    axis.bar_label(bars, fmt="%.1f")
    axis.set(title=title, ylabel="AP (%)", ylim=(0, 105))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
