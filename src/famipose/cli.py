"""famipose command line: thin wrappers around library functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="FAMI-Pose video pose estimation.")



@app.callback()
def main() -> None:
    """FAMI-Pose: temporal feature alignment and mutual information for video pose estimation."""


# -- commands are registered below, one thin function each --


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Data set root to write (PoseTrack18 layout).")],
    videos: Annotated[int, typer.Option(help="Number of videos.")] = 20,
    frames: Annotated[int, typer.Option(help="Frames per video.")] = 60,
    size: Annotated[str, typer.Option(help="Frame size WxH.")] = "384x288",
    seed: Annotated[int, typer.Option(help="Data set seed; the same seed gives identical files.")] = 0,
    difficulty: Annotated[Literal["easy", "hard"], typer.Option(help="Knob preset.")] = "easy",
    split: Annotated[Literal["train", "val", "test"], typer.Option(help="Split to write.")] = "train",
    labeled_every: Annotated[int, typer.Option("--labeled-every", help="Label every K-th frame.")] = 1,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: up to 2).")] = None,
) -> None:
    """Generate SynthTrack, the synthetic multi-person pose benchmark, and print its statistics."""
    from famipose.data.synthtrack import generate_synthtrack, parse_size

    try:
        stats = generate_synthtrack(
            out, videos=videos, frames=frames, size=parse_size(size), seed=seed, difficulty=difficulty, split=split,
            labeled_every=labeled_every, workers=workers,
        )  # fmt: skip
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(stats.summary())


@app.command()
def evaluate(
    gt: Annotated[Path, typer.Option("--gt", help="Folder of GT files, one per video (PoseTrack17/18).")],
    pred: Annotated[Path, typer.Option("--pred", help="Folder of prediction files named like the GT files.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results to this JSON file.")] = None,
    track: Annotated[bool, typer.Option("--track", help="Also compute MOTA/MOTP/precision/recall.")] = False,
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="Score GT videos without a prediction file as empty.")
    ] = False,
) -> None:
    """Score predictions with the official PoseTrack (poseval) AP, and MOT metrics with --track."""
    import json

    from rich.console import Console

    from famipose.data.errors import DataError
    from famipose.evaluation import evaluate_posetrack

    try:
        result = evaluate_posetrack(gt, pred, track=track, allow_missing=allow_missing)
    except (DataError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    Console().print(result.table())
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.to_json(), indent=2))


@app.command()
def summary(
    config: Annotated[list[Path], typer.Option("--config", "-c", help="Experiment YAML file(s).", exists=True)],
) -> None:
    """Print parameters, multiply-adds per key frame and tensor shapes of configured models."""
    from rich.console import Console
    from rich.table import Table

    from famipose.config import load_config
    from famipose.models.summary import summarize

    table = Table(title="famipose model summary")
    for column in ("config", "variant", "backbone", "input (w×h)", "frames", "params", "trainable",
                   "GMACs / key frame", "vs single frame", "Z_t (C,h,w)", "head output"):
        table.add_column(column, justify="right" if column in ("frames", "params", "trainable") else "left")
    for path in config:
        s = summarize(load_config(path).model)
        table.add_row(
            path.stem, s.variant, s.backbone, f"{s.input_size[0]}×{s.input_size[1]}", str(s.num_frames),
            f"{s.parameters / 1e6:.2f}M", f"{s.trainable_parameters / 1e6:.2f}M", f"{s.macs / 1e9:.2f}",
            f"{s.macs / s.backbone_macs:.2f}×", str(s.feature_shape),
            ", ".join(f"{k} {v}" for k, v in s.output_shapes.items()),
        )
    Console().print(table)


if __name__ == "__main__":
    app()
