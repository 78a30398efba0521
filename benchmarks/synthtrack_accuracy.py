"""The accuracy protocol on SynthTrack ``hard``: stage 1 to a plateau, then every stage-2 arm over seeds.

It tests the paper's claims (temporal alignment and MI beat a single frame) and the SimCC report's
(SimCC is close to heatmaps) with the spread that makes a difference count (docs/results.md):

1. **Stage 1**, trained once and shared by every arm: the tiny single-frame HRNet with a heatmap
   head and with a SimCC head, at a constant learning rate, evaluated every ``--stage1-chunk``
   epochs until the validation AP plateaus (the best of the last two evaluations gains less than
   ``--min-gain`` AP over the one before them) or ``--stage1-cap`` epochs are reached. Each chunk
   resumes the run, so the curve is one run's (``stage1_plateau.png``).
2. **Stage 2**, ``--stage2-epochs`` each (equal steps; the learning rate drops for the last epoch),
   every arm once per seed of ``--seeds`` (``famipose train --seeds`` layout: ``<arm>/seed_<N>``),
   all from their head's stage 1 (see :data:`ARMS`).
3. **Report**: ``famipose report`` over every stage-2 run (``report.md``, ``.json``, ``.png``;
   baseline ``single_frame``), and ``targets.md`` marking the issue's targets met or missed.

Everything resumes: stage 1 continues from its last chunk, a finished stage-2 seed
(``protocol_done.json`` in its folder) is not retrained, an interrupted one continues from its
``last.pth``. Stage-2 runs are shared by ``--workers`` processes of one thread each (two threads
of one process are slower on 2 cores than two processes of one). The data are the demo's
(``famipose.demo.DemoSettings``: 16 training and 4 validation videos of 40 frames); at the defaults
the whole protocol takes about 85 minutes on 2 CPU cores.

    .venv/bin/python benchmarks/synthtrack_accuracy.py --out runs/protocol
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from famipose.demo import DemoSettings, generate_data, stage_config
from famipose.engine.logging import read_metrics, setup_logging
from famipose.engine.report import GroupSummary, write_report
from famipose.engine.train import train, train_seeds

SINGLE_FRAME = "synthtrack_single_frame_tiny"
FROZEN = "model.backbone.frozen=true"
HEADS: dict[str, list[str]] = {"heatmap": [], "simcc": ["model.head.kind=simcc"]}  # stage-1 head: overrides


@dataclass(frozen=True)
class Arm:
    """One stage-2 model: a shipped config, the stage-1 head it starts from, and overrides."""

    config: str
    head: str
    overrides: tuple[str, ...] = ()


ARMS: dict[str, Arm] = {
    # the baselines: single frame continued, same budget (a frozen single-frame model has nothing left to train)
    "single_frame": Arm(SINGLE_FRAME, "heatmap"),
    "simcc_single_frame": Arm(SINGLE_FRAME, "simcc", HEADS["simcc"]),
    # frozen backbone: the paper's setting
    "famipose_no_mi_frozen": Arm("synthtrack_famipose_nomi_tiny", "heatmap", (FROZEN,)),
    "famipose_mi_frozen": Arm("synthtrack_famipose_tiny", "heatmap", (FROZEN,)),
    **{  # the paper's ablation: one maximised term removed (the two minimised ones carry no gradient)
        f"famipose_mi_frozen_no_{term}": Arm("synthtrack_famipose_tiny", "heatmap", (FROZEN, f"loss.mi_terms.{term}=0"))
        for term in ("task_enhanced", "key_enhanced", "support_enhanced")
    },
    "official_mi_frozen": Arm("synthtrack_famipose_official_tiny", "heatmap", (FROZEN,)),
    "simcc_famipose_no_mi_frozen": Arm("synthtrack_famipose_simcc_tiny", "simcc", (FROZEN, "loss.mi_form=none")),
    "simcc_famipose_mi_frozen": Arm("synthtrack_famipose_simcc_tiny", "simcc", (FROZEN,)),
    # trainable backbone: the CPU recipe (MI stopped at the backbone)
    "famipose_no_mi": Arm("synthtrack_famipose_nomi_tiny", "heatmap"),
    "famipose_mi": Arm("synthtrack_famipose_tiny", "heatmap"),
}
BASELINE = "single_frame"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/protocol"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--stage1-chunk", type=int, default=4, help="epochs between stage-1 evaluations")
    parser.add_argument("--stage1-cap", type=int, default=32, help="most stage-1 epochs")
    parser.add_argument("--min-gain", type=float, default=0.5, help="AP gain below which stage 1 has plateaued")
    parser.add_argument("--stage2-epochs", type=int, default=3)
    parser.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap (a quick smoke run)")
    parser.add_argument("--workers", type=int, default=2, help="processes sharing the runs, one thread each")
    parser.add_argument("--worker", type=str, default=None, help=argparse.SUPPRESS)  # "stage1" / "stage2"
    return parser.parse_args()


def settings_of(args: argparse.Namespace) -> DemoSettings:
    """The demo's data and batch size; a step cap for smoke runs."""
    return DemoSettings(max_steps_per_epoch=args.max_steps_per_epoch)


def stage1_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(epoch, validation AP) of every evaluation a stage-1 run has written."""
    path = run_dir / "metrics.jsonl"
    records = read_metrics(path) if path.is_file() else []
    return [(int(r["epoch"]), float(r["Total"])) for r in records if r.get("kind") == "eval"]


def plateaued(curve: list[tuple[int, float]], min_gain: float) -> bool:
    """The best of the last two evaluations gains less than ``min_gain`` AP over the one before."""
    if len(curve) < 3:
        return False
    return max(ap for _, ap in curve[-2:]) - curve[-3][1] < min_gain


def train_stage1(args: argparse.Namespace, head: str) -> None:
    """Train one stage-1 head chunk by chunk until it plateaus or reaches the cap."""
    out, settings = args.out.resolve(), settings_of(args)
    run_dir = out / f"stage1_{head}"
    constant_lr = f"train.milestones=[{args.stage1_cap + 1}]"  # no decay inside the cap
    while True:
        curve = stage1_curve(run_dir)
        epochs = curve[-1][0] if curve else 0
        if epochs >= args.stage1_cap or plateaued(curve, args.min_gain):
            break
        epochs += args.stage1_chunk
        extra = [*HEADS[head], constant_lr, f"train.eval_every={args.stage1_chunk}", "data.num_workers=1"]
        train(stage_config(SINGLE_FRAME, out / "synthtrack", settings, epochs, extra), run_dir, resume="auto")
    (run_dir / "plateau.json").write_text(json.dumps({"curve": curve, "plateaued": plateaued(curve, args.min_gain)}))


def stage2_jobs(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(arm, seed) in the order workers take them: trainable FAMI-Pose arms first, they are the longest."""
    ordered = sorted(args.arms, key=lambda name: FROZEN in ARMS[name].overrides or ARMS[name].config == SINGLE_FRAME)
    return [(arm, seed) for arm in ordered for seed in args.seeds]


def run_stage2_job(args: argparse.Namespace, arm_name: str, seed: int) -> None:
    """Train one arm for one seed (continuing it if interrupted) and mark it done."""
    out, settings, arm = args.out.resolve(), settings_of(args), ARMS[arm_name]
    init = f"train.init_from={out / f'stage1_{arm.head}' / 'last.pth'}"
    extra = [init, *arm.overrides, "data.num_workers=1"]
    config = stage_config(arm.config, out / "synthtrack", settings, args.stage2_epochs, extra)
    result = train_seeds(config, out / arm_name, [seed])[0]
    assert result.last_eval is not None, f"{arm_name} seed {seed} did not evaluate"
    (result.out_dir / "protocol_done.json").write_text(json.dumps({"Total": result.last_eval.total}))


def work(args: argparse.Namespace) -> None:
    """A worker: claim the next unclaimed job of its phase (an atomic mkdir) and run it, until none is left."""
    out = args.out.resolve()
    claims = out / "claims" / args.worker
    claims.mkdir(parents=True, exist_ok=True)
    stage1 = args.worker == "stage1"
    jobs: list[tuple[str, int]] = [(head, 0) for head in HEADS] if stage1 else stage2_jobs(args)
    for name, seed in jobs:
        run_dir = out / f"stage1_{name}" if stage1 else out / name / f"seed_{seed}"
        finished = run_dir / ("plateau.json" if stage1 else "protocol_done.json")
        if finished.is_file():
            continue
        try:
            (claims / f"{name}_seed{seed}").mkdir()
        except FileExistsError:
            continue  # another worker has it
        if stage1:
            train_stage1(args, name)
        else:
            run_stage2_job(args, name, seed)


def run_phase(args: argparse.Namespace, phase: str) -> None:
    """Run ``--workers`` worker processes of one phase to the end; fail if one fails."""
    claims = args.out.resolve() / "claims" / phase
    if claims.is_dir():  # claims of an interrupted invocation: their jobs resume
        for claim in claims.iterdir():
            claim.rmdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, __file__, *sys.argv[1:], "--worker", phase]
    count = args.workers if phase == "stage2" else min(args.workers, len(HEADS))  # stage 1 has one job per head
    workers = [subprocess.Popen(command, env=env) for _ in range(count)]
    codes = [worker.wait() for worker in workers]
    if any(codes):
        raise SystemExit(f"{phase}: a worker failed (exit codes {codes}); rerun the same command to continue")


def plot_stage1(out: Path) -> Path:
    """Validation AP over stage-1 epochs, one line per head."""
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    for head in HEADS:
        curve = stage1_curve(out / f"stage1_{head}")
        axis.plot([e for e, _ in curve], [ap for _, ap in curve], marker="o", label=f"single-frame {head}")
    axis.set(xlabel="epoch", ylabel="val AP (%)", title="stage 1 to its plateau (constant lr)")
    axis.legend()
    figure.tight_layout()
    path = out / "stage1_plateau.png"
    figure.savefig(path, dpi=100)
    return path


def target_lines(groups: dict[str, GroupSummary]) -> list[str]:
    """The issue's targets (frozen backbone, means over seeds), each marked met or missed."""

    def gap(a: str, b: str) -> tuple[float, float]:
        first, second = groups[a], groups[b]
        return first.mean["Total"] - second.mean["Total"], 2 * max(first.std["Total"], second.std["Total"])

    rows = [
        ("FAMI-Pose + MI ≥ same-budget single frame + 5 AP", "famipose_mi_frozen", "single_frame", 5.0),
        ("MI adds ≥ 1 AP over FAMI-Pose without MI", "famipose_mi_frozen", "famipose_no_mi_frozen", 1.0),
        ("SimCC ≥ heatmaps − 1 AP (FAMI-Pose + MI)", "simcc_famipose_mi_frozen", "famipose_mi_frozen", -1.0),
        ("SimCC ≥ heatmaps − 1 AP (single frame)", "simcc_single_frame", "single_frame", -1.0),
    ]
    lines = ["| target | difference (AP) | 2 × larger std | met |", "|---|---|---|---|"]
    for text, a, b, bar in rows:
        if a in groups and b in groups:
            difference, noise = gap(a, b)
            verdict = "met" if difference >= bar else "missed"
            lines.append(f"| {text} | {difference:+.2f} (`{a}` − `{b}`) | {noise:.2f} | {verdict} |")
    return lines


def report(args: argparse.Namespace) -> None:
    """``famipose report`` over every stage-2 run, the stage-1 curve, and the targets."""
    out = args.out.resolve()
    runs = [out / arm / f"seed_{seed}" for arm in args.arms for seed in args.seeds]
    baseline = BASELINE if BASELINE in args.arms else None
    groups = {group.label: group for group in write_report(runs, out / "report.md", baseline)}
    plot_stage1(out)
    curves = {head: json.loads((out / f"stage1_{head}" / "plateau.json").read_text()) for head in HEADS}
    lines = ["# Targets (frozen backbone, mean over seeds)", "", *target_lines(groups), "", "## Stage 1", ""]
    for head, record in curves.items():
        points = ", ".join(f"{epoch}: {ap:.1f}" for epoch, ap in record["curve"])
        lines.append(f"- {head}: {points} ({'plateaued' if record['plateaued'] else 'stopped at the cap'})")
    (out / "targets.md").write_text("\n".join(lines) + "\n")
    print((out / "report.md").read_text())
    print("\n".join(lines))


def main() -> None:
    """Data, stage 1, stage 2 and the report (or, with ``--worker``, one worker of a phase)."""
    args = parse_args()
    setup_logging()
    if args.worker is not None:
        work(args)
        return
    out = args.out.resolve()
    if not (out / "synthtrack" / "annotations" / "val").is_dir():
        generate_data(out / "synthtrack", settings_of(args))
    run_phase(args, "stage1")
    run_phase(args, "stage2")
    report(args)


if __name__ == "__main__":
    main()
