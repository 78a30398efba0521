"""What temporal context buys on SynthTrack ``hard``: per-joint AP of five models at one budget.

Every model gets the same number of optimiser steps after a shared stage 1:

1. stage 1: the tiny single-frame HRNet (heatmaps), and a SimCC single-frame HRNet for the SimCC row;
2. stage 2 (same epochs for each, all initialised from their stage 1):
   * single-frame HRNet, trained on (the fair baseline: same total steps as the FAMI models);
   * FAMI-Pose without the MI loss;
   * FAMI-Pose with the MI loss;
   * FAMI-Pose with the MI loss and a SimCC head (from the SimCC stage 1).

All are evaluated on the validation split with ground-truth boxes by the built-in evaluator, and one
table of per-joint AP is printed (also written as JSON). Takes about 40 minutes on 2 CPU cores at
the defaults.

    .venv/bin/python benchmarks/synthtrack_accuracy.py --out runs/synthtrack_accuracy
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from famipose.demo import GROUPS, DemoSettings, generate_data, stage_config
from famipose.engine.logging import setup_logging
from famipose.engine.train import train


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/synthtrack_accuracy"))
    parser.add_argument("--train-videos", type=int, default=24)
    parser.add_argument("--val-videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--stage1-epochs", type=int, default=8)
    parser.add_argument("--stage2-epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    """Train the five models and print the table."""
    args = parse_args()
    setup_logging()
    settings = DemoSettings(
        train_videos=args.train_videos,
        val_videos=args.val_videos,
        frames=args.frames,
        seed=args.seed,
        stage1_epochs=args.stage1_epochs,
        stage2_epochs=args.stage2_epochs,
    )
    out = args.out.resolve()
    data = out / "synthtrack"
    generate_data(data, settings)

    def run(name: str, config: str, epochs: int, extra: list[str]) -> Path:
        result = train(stage_config(config, data, settings, epochs, extra), out / name, overwrite=True)
        assert result.last_eval is not None
        results[name] = {**result.last_eval.grouped, "Total": result.last_eval.total}
        return result.best_checkpoint or result.last_checkpoint

    results: dict[str, dict[str, float]] = {}
    stage1 = run("stage1_single_frame", "synthtrack_single_frame_tiny", args.stage1_epochs, [])
    stage1_simcc = run(
        "stage1_single_frame_simcc", "synthtrack_single_frame_tiny", args.stage1_epochs, ["model.head.kind=simcc"]
    )
    epochs = args.stage2_epochs
    run("single_frame", "synthtrack_single_frame_tiny", epochs, [f"train.init_from={stage1}"])
    run("famipose_no_mi", "synthtrack_famipose_nomi_tiny", epochs, [f"train.init_from={stage1}"])
    run("famipose_mi", "synthtrack_famipose_tiny", epochs, [f"train.init_from={stage1}"])
    run("famipose_simcc_mi", "synthtrack_famipose_simcc_tiny", epochs, [f"train.init_from={stage1_simcc}"])

    (out / "accuracy.json").write_text(json.dumps(results, indent=2))
    print(f"\nSynthTrack hard val, GT boxes, AP (stage 1 {args.stage1_epochs} epochs + {epochs} epochs each)")
    print(f"{'model':<28}" + "".join(f"{g[:5]:>8}" for g in GROUPS))
    for name, grouped in results.items():
        cells = ("-" if math.isnan(grouped[g]) else f"{grouped[g]:.1f}" for g in GROUPS)
        print(f"{name:<28}" + "".join(f"{cell:>8}" for cell in cells))


if __name__ == "__main__":
    main()
