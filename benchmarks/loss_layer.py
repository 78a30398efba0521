"""The loss layer on the demo's data: what the MI objective costs or adds, and SimCC against heatmaps.

On the demo's SynthTrack set (``famipose.demo.DemoSettings``), from the demo's stage-1 checkpoint,
every stage-2 arm trains the demo's stage-2 budget (same epochs, same steps):

* ``famipose_no_mi`` and ``famipose_no_mi_frozen``: FAMI-Pose without MI, trainable / frozen backbone;
* ``famipose_vsd_frozen``: FAMI-Pose + the paper's MI (``vsd``), frozen backbone (the paper's setting);
* ``famipose_vsd``: the same with a trainable backbone, MI stopped at the backbone;
* ``famipose_vsd_frozen_uncentred`` and ``famipose_vsd_frozen_spatial``: the same with the
  uncentred channel distributions and with the release's spatial feature distributions;
* ``famipose_vsd_frozen_no_<term>``: the paper's ablation, one maximised term removed (frozen);
* ``official`` and ``official_no_mi``: the released-code variant with and without the released MI
  arithmetic (trainable backbone);
* ``famipose_simcc_vsd``: FAMI-Pose with a SimCC head + ``vsd`` MI, from the SimCC stage 1.

and the two stage-1 heads train the same epochs from scratch: ``stage1_heatmap`` (the demo's stage
1, which every stage-2 arm of every seed starts from) and ``stage1_simcc``; under ``--seed N`` they
train with seed N (``stage1_<head>_seedN``), so the heads compare over seeds. Prints the
per-joint AP table and, for every arm with MI, ‖∇(α·L_MI)‖ / ‖∇L_pose‖ at its first and last
logged step (writes both as JSON).
An interrupted run continues: finished arms (``result.json`` in their folder) are not retrained.

    .venv/bin/python benchmarks/loss_layer.py --out runs/loss_layer [--seed N] [--arms ...] [--stage1-epochs N]
    .venv/bin/famipose report $(dirname runs/loss_layer/*/eval.json) --out runs/loss_layer/report.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from famipose.demo import DemoSettings, ap_table, generate_data, stage_config
from famipose.engine.logging import setup_logging
from famipose.engine.report import logged_grad_ratios
from famipose.engine.train import train

STAGE1_CONFIG = "synthtrack_single_frame_tiny"
STAGE1_ARMS: dict[str, list[str]] = {"stage1_heatmap": [], "stage1_simcc": ["model.head.kind=simcc"]}  # name: overrides
STAGE2_ARMS: dict[str, tuple[str, str, list[str]]] = {  # name: (config, stage-1 arm it starts from, overrides)
    "famipose_no_mi": ("synthtrack_famipose_nomi_tiny", "stage1_heatmap", []),
    "famipose_no_mi_frozen": ("synthtrack_famipose_nomi_tiny", "stage1_heatmap", ["model.backbone.frozen=true"]),
    "famipose_vsd_frozen": ("synthtrack_famipose_tiny", "stage1_heatmap", ["model.backbone.frozen=true"]),
    "famipose_vsd": ("synthtrack_famipose_tiny", "stage1_heatmap", []),
    "famipose_vsd_frozen_uncentred": (
        "synthtrack_famipose_tiny", "stage1_heatmap", ["model.backbone.frozen=true", "loss.mi_feature_axis=channel"]
    ),
    "famipose_vsd_frozen_spatial": (
        "synthtrack_famipose_tiny", "stage1_heatmap", ["model.backbone.frozen=true", "loss.mi_feature_axis=spatial"]
    ),
    **{  # the paper's ablation, frozen backbone: one maximised term removed (the minimised ones carry no gradient)
        f"famipose_vsd_frozen_no_{term}": (
            "synthtrack_famipose_tiny", "stage1_heatmap", ["model.backbone.frozen=true", f"loss.mi_terms.{term}=0"]
        )
        for term in ("task_enhanced", "key_enhanced", "support_enhanced")
    },
    "official": ("synthtrack_famipose_official_tiny", "stage1_heatmap", []),
    "official_no_mi": ("synthtrack_famipose_official_tiny", "stage1_heatmap", ["loss.mi_form=none"]),
    "famipose_simcc_vsd": ("synthtrack_famipose_simcc_tiny", "stage1_simcc", []),
}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/loss_layer"))
    arms = [*STAGE1_ARMS, *STAGE2_ARMS]
    parser.add_argument("--arms", nargs="*", default=arms, choices=arms)
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the arms (data keeps the demo's; stage 2 starts from the demo's seed-0 stage 1, "
        "trained first if missing); runs go to <arm>_seed<N>",
    )
    parser.add_argument(
        "--stage1-epochs",
        type=int,
        default=None,
        help="epochs of the stage-1 arms (default: the demo's); runs go to <arm>_e<N>[_seed<M>]; stage 2 "
        "always starts from the demo's own stage 1",
    )
    return parser.parse_args()


def run_arm(out: Path, name: str, config: str, epochs: int, extra: list[str], settings: DemoSettings) -> dict:
    """Train one arm (unless its result is on disk) and return its AP per group and gradient ratios."""
    run_dir = out / name
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    result = train(stage_config(config, out / "synthtrack", settings, epochs, extra), run_dir, overwrite=True)
    assert result.last_eval is not None, f"{name} did not evaluate"
    ratios = logged_grad_ratios(run_dir)  # MI/pose gradient ratio per logged step, first and last kept
    record = {
        "ap": {**result.last_eval.grouped, "Total": result.last_eval.total},
        "grad_ratio": (ratios[0], ratios[-1]) if ratios else None,
        "best_checkpoint": str(result.best_checkpoint or result.last_checkpoint),
    }
    result_path.write_text(json.dumps(record, indent=2))
    return record


def main() -> None:
    """Train the stage-1 heads and the stage-2 arms, then print the table."""
    args = parse_args()
    out = args.out.resolve()
    setup_logging()
    settings = DemoSettings()
    if not (out / "synthtrack" / "annotations" / "val").is_dir():
        generate_data(out / "synthtrack", settings)
    seeded = DemoSettings(seed=args.seed)
    suffix = "" if args.seed == 0 else f"_seed{args.seed}"
    results: dict[str, dict] = {}

    def stage1(name: str, run_settings: DemoSettings, run_suffix: str, epochs: int = settings.stage1_epochs) -> dict:
        run_name = name + ("" if epochs == settings.stage1_epochs else f"_e{epochs}") + run_suffix
        if run_name not in results:
            extra = STAGE1_ARMS[name]
            results[run_name] = run_arm(out, run_name, STAGE1_CONFIG, epochs, extra, run_settings)
        return results[run_name]

    for name in args.arms:
        if name in STAGE1_ARMS:
            stage1(name, seeded, suffix, args.stage1_epochs or settings.stage1_epochs)
            continue
        config, start, extra = STAGE2_ARMS[name]
        init = f"train.init_from={stage1(start, settings, '')['best_checkpoint']}"  # the demo's stage 1
        results[name + suffix] = run_arm(out, name + suffix, config, settings.stage2_epochs, [init, *extra], seeded)

    (out / f"loss_layer_seed{args.seed}.json").write_text(json.dumps(results, indent=2))
    print("\n".join(ap_table("arm", {name: record["ap"] for name, record in results.items()})))
    print("\n| arm | ‖∇MI‖/‖∇pose‖ first logged step | last logged step |\n|---|---|---|")
    for name, record in results.items():
        if record["grad_ratio"] is not None:
            first, last = record["grad_ratio"]
            print(f"| {name} | {first:.3g} | {last:.3g} |")


if __name__ == "__main__":
    main()
