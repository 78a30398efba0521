"""Accuracy over seeds: group training runs by their config without the seed, and report mean ± std.

A run folder (what ``famipose train`` writes) holds ``config.yaml``, the fully expanded config,
and ``eval.json``, the last evaluation's AP per joint group. Runs whose configs are equal once
``train.seed`` is removed form one group; every other difference separates them. Each group gets
the mean, the sample standard deviation (n - 1; undefined for one run) and n per joint group, and
the MI/pose gradient ratio of its runs' last logged step when they train with MI.

A difference between a group and the baseline group counts only where it exceeds twice the larger
of their two standard deviations (and never when either has a single run): the project's rule for
accuracy claims.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from famipose.config import load_config
from famipose.engine.logging import read_metrics

COLUMNS: tuple[str, ...] = ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Total")
_SEED_SUFFIX = re.compile(r"(?:[_-]?seed[_-]?\d+)$")


@dataclass(frozen=True)
class RunScores:
    """One finished run.

    Attributes:
        path: The run folder.
        label: Its name without a seed suffix (``arm_seed2`` -> ``arm``; ``arm/seed_2`` -> ``arm``).
        config_key: The expanded config without ``train.seed``, as canonical JSON.
        seed: ``train.seed``.
        scores: AP per column of :data:`COLUMNS`.
        grad_ratio: ``mi/grad_ratio`` at the last logged training step, or ``None`` without MI.
    """

    path: Path
    label: str
    config_key: str
    seed: int
    scores: dict[str, float]
    grad_ratio: float | None


@dataclass(frozen=True)
class GroupSummary:
    """Runs that differ only in their seed.

    Attributes:
        label: The runs' common label (labels joined by `` / `` when they differ).
        runs: Their folders.
        seeds: Their seeds.
        mean: Mean AP per column.
        std: Sample standard deviation per column (NaN for a single run).
        grad_ratio: Mean of the runs' last logged MI/pose gradient ratio, or ``None``.
    """

    label: str
    runs: tuple[Path, ...]
    seeds: tuple[int, ...]
    mean: dict[str, float]
    std: dict[str, float]
    grad_ratio: float | None

    @property
    def n(self) -> int:
        """Number of runs."""
        return len(self.runs)


def run_label(run_dir: Path) -> str:
    """A run folder's name without its seed; a folder named only by its seed takes its parent's name."""
    stripped = _SEED_SUFFIX.sub("", run_dir.name)
    return stripped or run_dir.parent.name


def logged_grad_ratios(run_dir: Path) -> list[float]:
    """``mi/grad_ratio`` of every logged training step of a run, in order (empty without MI)."""
    return [
        float(record["parts"]["mi/grad_ratio"])
        for record in read_metrics(run_dir / "metrics.jsonl")
        if record.get("kind") == "train" and "mi/grad_ratio" in record.get("parts", {})
    ]


def read_run(run_dir: Path, ignore: Sequence[str] = ()) -> RunScores:
    """Read a run folder's ``config.yaml``, ``eval.json`` and (if any) ``metrics.jsonl``.

    Args:
        run_dir: The run folder.
        ignore: Dotted config keys left out of the grouping key besides ``train.seed`` (e.g.
            ``model.head.simcc_sigma`` for heatmap runs made before a SimCC default changed).

    Raises:
        ValueError: A file is missing, unreadable or lacks a column; the message names the file.
    """
    config_path, eval_path = run_dir / "config.yaml", run_dir / "eval.json"
    for path in (config_path, eval_path):
        if not path.is_file():
            raise ValueError(f"{path}: missing (is {run_dir} a finished `famipose train` run?)")
    config = load_config(config_path)
    try:
        evaluation = json.loads(eval_path.read_text())
        scores = {column: float(evaluation[column]) for column in COLUMNS}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{eval_path}: not an evaluation result ({type(error).__name__}: {error})") from error
    settings = asdict(config)
    seed = settings["train"].pop("seed")
    for key in ignore:
        *parents, leaf = key.split(".")
        section = settings
        for part in parents:
            section = section.get(part, {}) if isinstance(section, dict) else {}
        if not isinstance(section, dict) or leaf not in section:
            raise ValueError(f"--ignore {key}: no such config key")
        del section[leaf]
    ratios = logged_grad_ratios(run_dir)
    return RunScores(
        path=run_dir,
        label=run_label(run_dir),
        config_key=json.dumps(settings, sort_keys=True, default=str),
        seed=int(seed),
        scores=scores,
        grad_ratio=ratios[-1] if ratios else None,
    )


def group_runs(runs: Sequence[RunScores]) -> list[list[RunScores]]:
    """Runs grouped by config without the seed, groups in order of first appearance."""
    groups: dict[str, list[RunScores]] = {}
    for run in runs:
        groups.setdefault(run.config_key, []).append(run)
    return list(groups.values())


def summarise_group(runs: Sequence[RunScores]) -> GroupSummary:
    """Mean and sample standard deviation per column of one group."""
    labels = list(dict.fromkeys(run.label for run in runs))
    columns = {column: [run.scores[column] for run in runs] for column in COLUMNS}
    ratios = [run.grad_ratio for run in runs if run.grad_ratio is not None]
    return GroupSummary(
        label=" / ".join(labels),
        runs=tuple(run.path for run in runs),
        seeds=tuple(run.seed for run in runs),
        mean={column: statistics.fmean(values) for column, values in columns.items()},
        std={column: statistics.stdev(values) if len(values) > 1 else math.nan for column, values in columns.items()},
        grad_ratio=statistics.fmean(ratios) if ratios else None,
    )


def significant(group: GroupSummary, baseline: GroupSummary, column: str) -> bool:
    """Whether the two means differ by more than twice the larger standard deviation."""
    spread = max(group.std[column], baseline.std[column])
    return not math.isnan(spread) and abs(group.mean[column] - baseline.mean[column]) > 2 * spread


def _cell(group: GroupSummary, baseline: GroupSummary | None, column: str) -> str:
    text = f"{group.mean[column]:.1f}" if group.n == 1 else f"{group.mean[column]:.1f} ± {group.std[column]:.1f}"
    if baseline is not None and significant(group, baseline, column):
        text += " ↑" if group.mean[column] > baseline.mean[column] else " ↓"
    return text


def markdown_table(groups: Sequence[GroupSummary], baseline: GroupSummary) -> list[str]:
    """Markdown lines: one row per group, mean ± std per column, n, seeds and the gradient ratio."""
    lines = [
        "| group | n | seeds | " + " | ".join(COLUMNS) + " | ‖∇MI‖/‖∇pose‖ (last) |",
        "|---" * (len(COLUMNS) + 4) + "|",
    ]
    for group in groups:
        compared = None if group is baseline else baseline
        cells = " | ".join(_cell(group, compared, column) for column in COLUMNS)
        ratio = "—" if group.grad_ratio is None else f"{group.grad_ratio:.3g}"
        seeds = ", ".join(str(seed) for seed in group.seeds)
        lines.append(f"| {group.label} | {group.n} | {seeds} | {cells} | {ratio} |")
    return lines


def plot_groups(groups: Sequence[GroupSummary], path: Path) -> Path:
    """Grouped bar chart: mean AP per column and group, the sample std as error bars."""
    figure = Figure(figsize=(min(20.0, 6 + 0.15 * len(COLUMNS) * len(groups)), 4.5))
    axis = figure.subplots()
    width = 0.8 / max(1, len(groups))
    palette = matplotlib.colormaps["tab10" if len(groups) <= 10 else "tab20"]  # tab10 repeats past 10 groups
    for index, group in enumerate(groups):
        positions = [column + index * width for column in range(len(COLUMNS))]
        errors = [0.0 if math.isnan(group.std[c]) else group.std[c] for c in COLUMNS]
        means = [group.mean[c] for c in COLUMNS]
        axis.bar(positions, means, width, yerr=errors, capsize=2, label=group.label, color=palette(index % palette.N))
    axis.set_xticks([column + 0.4 - width / 2 for column in range(len(COLUMNS))], list(COLUMNS))
    axis.set(ylabel="AP (%)", title="mean ± std over seeds")
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, not on them
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def write_report(
    run_dirs: Sequence[Path], out: Path, baseline: str | None = None, ignore: Sequence[str] = ()
) -> list[GroupSummary]:
    """Group runs, and write ``out`` (Markdown), ``out`` with ``.json`` and ``.png`` beside it.

    Args:
        run_dirs: Run folders.
        out: The Markdown file to write.
        baseline: Label of the group the others are compared with (default: the first group).
        ignore: Dotted config keys that do not separate groups (:func:`read_run`).

    Returns:
        The group summaries, in order of first appearance.

    Raises:
        ValueError: No run was given, a run cannot be read, or no group has the baseline's label.
    """
    if not run_dirs:
        raise ValueError("no run folders given")
    groups = [summarise_group(runs) for runs in group_runs([read_run(Path(d), ignore) for d in run_dirs])]
    reference = groups[0] if baseline is None else next((g for g in groups if g.label == baseline), None)
    if reference is None:
        raise ValueError(f"no group is labelled {baseline!r}; groups: {', '.join(g.label for g in groups)}")
    lines = [
        "# Accuracy over seeds",
        "",
        f"AP (%) per joint group, mean ± sample std over n runs. Marked ↑/↓: differs from `{reference.label}` "
        "by more than twice the larger of the two standard deviations (never with a single run).",
        *([f"Config keys not separating groups besides `train.seed`: {', '.join(ignore)}."] if ignore else []),
        "",
        *markdown_table(groups, reference),
        "",
        f"![mean ± std]({out.with_suffix('.png').name})",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_groups(groups, out.with_suffix(".png"))
    record = {
        "baseline": reference.label,
        "groups": [
            {
                "label": g.label,
                "n": g.n,
                "seeds": list(g.seeds),
                "runs": [str(path) for path in g.runs],
                "mean": g.mean,
                "std": {c: None if math.isnan(v) else v for c, v in g.std.items()},
                "grad_ratio_last": g.grad_ratio,
                "differs_from_baseline": [c for c in COLUMNS if g is not reference and significant(g, reference, c)],
            }
            for g in groups
        ],
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    out.write_text("\n".join(lines))
    return groups
