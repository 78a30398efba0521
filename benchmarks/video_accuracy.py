"""Accuracy of the video pipeline's modes: ``exact`` vs ``fast`` on SynthTrack val, same checkpoint.

Every val video of a SynthTrack root goes through :class:`VideoPoseEstimator` once per mode (and
per ``--chunks`` value for fast mode) with its GT boxes as detections; the PoseTrack outputs are
scored by the built-in evaluator. One table of grouped AP is printed (speed is measured by
``benchmarks/video_throughput.py``).

    .venv/bin/python benchmarks/video_accuracy.py --checkpoint demo_out/runs/famipose/best.pth \\
        --data demo_out/data
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from famipose.demo import ap_table
from famipose.evaluation.posetrack_ap import evaluate_posetrack
from famipose.inference import (
    EstimatorOptions,
    TrackerConfig,
    VideoPoseEstimator,
    load_model_and_config,
    write_posetrack_json,
)
from famipose.models.famipose import FamiPose


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="training checkpoint (embeds its config)")
    parser.add_argument("--data", type=Path, required=True, help="SynthTrack root (videos/val, annotations/val)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[16], help="fast mode chunk lengths to score")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    return parser.parse_args()


def score_mode(
    model: FamiPose, options: EstimatorOptions, data: Path, out: Path
) -> dict[str, float]:
    """Run every val video with its GT boxes and evaluate: grouped AP over all videos."""
    for annotation in sorted((data / "annotations" / "val").glob("*.json")):
        estimator = VideoPoseEstimator(
            model, detector="none", boxes=annotation, gt_json=annotation, options=options, device="cpu"
        )
        result = estimator.run(data / "videos" / "val" / f"{annotation.stem}.mp4")
        write_posetrack_json(result, out / annotation.name)
    evaluation = evaluate_posetrack(data / "annotations" / "val", out)
    return {**evaluation.grouped, "Total": evaluation.total}


def main() -> None:
    """Score each mode and print the table."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    modes = [("exact", 1)] + [("fast", chunk) for chunk in args.chunks]
    model, config = load_model_and_config(args.checkpoint)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        for mode, chunk in modes:
            options = EstimatorOptions(mode=mode, chunk_length=chunk, box_padding=config.data.box_padding,
                                       tracker=TrackerConfig(min_hits=1))  # fmt: skip
            grouped = score_mode(model, options, args.data, Path(temporary) / f"{mode}_{chunk}")
            rows[mode if mode == "exact" else f"fast, chunk {chunk}"] = grouped
    print("\n".join(ap_table("mode", rows)))


if __name__ == "__main__":
    main()
