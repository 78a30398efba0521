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
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("demo_out"),
    quick: Annotated[bool, typer.Option("--quick", help="A seconds-long smoke run instead of the real demo.")] = False,
) -> None:
    """The main job: SynthTrack, single-frame then FAMI-Pose training, evaluation, report and overlay video."""
    from famipose.demo import QUICK, DemoSettings, run_demo
    from famipose.engine.logging import setup_logging

    setup_logging()
    result = run_demo(out, QUICK if quick else DemoSettings())
    typer.echo(
        f"single-frame AP {result.single_frame.total:.1f}, FAMI-Pose AP {result.famipose.total:.1f}\n"
        f"report:  {result.report}\noverlay: {result.overlay}\nruns:    {out}/single_frame, {out}/famipose"
    )


@app.command()
def video(
    source: Annotated[Path, typer.Argument(help="Video file, image folder or glob pattern ('frames/*.jpg').")],
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Training checkpoint, .safetensors or state dict.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Experiment YAML (optional with a .pth).")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Config override key=value.")] = None,
    boxes: Annotated[
        Path | None, typer.Option("--boxes", help="Person boxes: COCO results or PoseTrack18 annotations.")
    ] = None,
    detector: Annotated[
        str, typer.Option(help="Without --boxes: auto|hog|motion|none|onnx or a torchvision detector name.")
    ] = "auto",
    detector_weights: Annotated[
        Path | None, typer.Option("--detector-weights", help="Weights of --detector onnx or a torchvision model.")
    ] = None,
    gt_json: Annotated[
        Path | None, typer.Option("--gt-json", help="PoseTrack18 GT of this video: image ids and file names.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Overlay mp4 to write.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="PoseTrack18 output (default: predictions/<video>.json).")
    ] = None,
    coco_out: Annotated[
        Path | None, typer.Option("--coco-json", help="COCO results output (default: <json stem>_coco.json).")
    ] = None,
    mode: Annotated[Literal["exact", "fast"], typer.Option(help="exact: 1+S crops per box; fast: cached.")] = "exact",
    device: Annotated[Literal["auto", "cpu", "cuda"], typer.Option(help="Where the network runs.")] = "auto",
    batch: Annotated[int, typer.Option(help="Crops per backbone call.")] = 32,
    chunk: Annotated[int, typer.Option(help="fast mode: key frames processed together (batching).")] = 16,
    score_threshold: Annotated[float, typer.Option(help="Drop person boxes below this score.")] = 0.4,
    min_hits: Annotated[int, typer.Option(help="Consecutive matches before a track is born.")] = 2,
    max_misses: Annotated[int, typer.Option(help="Missed frames after which a track ends.")] = 5,
    threads: Annotated[int, typer.Option(help="CPU threads for the network (0: PyTorch's default).")] = 0,
    input_size: Annotated[
        str | None, typer.Option("--input-size", help="Official HRNet file without size in its name: HxW (256x192).")
    ] = None,
) -> None:
    """Estimate and track poses in a video; write PoseTrack18 and COCO JSON and an overlay video."""
    import torch

    from famipose.config import ConfigError
    from famipose.data.errors import DataError
    from famipose.engine.logging import setup_logging
    from famipose.inference import EstimatorOptions, TrackerConfig, VideoPoseEstimator, process_video
    from famipose.inference.pipeline import default_image_prefix
    from famipose.inference.video_io import release_freed_frames_to_os
    from famipose.models.checkpoint import CheckpointError, parse_size

    setup_logging()
    release_freed_frames_to_os()
    if threads > 0:
        torch.set_num_threads(threads)
    json_out = json_out or Path("predictions") / f"{Path(default_image_prefix(source)).name}.json"
    coco_out = coco_out or json_out.with_name(f"{json_out.stem}_coco.json")
    try:
        options = EstimatorOptions(
            mode=mode, batch_size=batch, score_threshold=score_threshold, chunk_length=chunk,
            tracker=TrackerConfig(min_hits=min_hits, max_misses=max_misses),
        )  # fmt: skip
        estimator = VideoPoseEstimator.from_checkpoint(
            checkpoint, config, overrides or [], options, parse_size(input_size) if input_size else None,
            detector=detector, detector_weights=detector_weights, boxes=boxes, gt_json=gt_json, device=device,
        )  # fmt: skip
        result = process_video(estimator, source, json_out, coco_out, out, progress=True)
    except (ConfigError, CheckpointError, DataError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    stages = ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in result.timings.items())
    typer.echo(f"{result.num_decoded} frames, {len(result.track_ids)} tracks, {result.throughput:.1f} fps ({stages})")
    typer.echo(f"wrote {json_out}, {coco_out}" + (f", {out}" if out and result.num_decoded else ""))
    if not result.num_decoded:
        raise typer.Exit(1)


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="Output file (.onnx or .safetensors).")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Training checkpoint, .safetensors or state dict.")],
    config: Annotated[Path | None, typer.Option("--config", help="Experiment YAML (optional with a .pth).")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Config override key=value.")] = None,
    export_format: Annotated[Literal["onnx", "safetensors"], typer.Option("--format", help="Output format.")] = "onnx",
    batch: Annotated[int, typer.Option(help="ONNX: batch size of the exported graph.")] = 1,
) -> None:
    """Export the window model (key + supports → heatmaps or SimCC) to ONNX, or the weights to safetensors."""
    from famipose.config import ConfigError
    from famipose.engine.checkpointing import export_safetensors
    from famipose.inference.pipeline import load_model_and_config
    from famipose.models.checkpoint import CheckpointError

    try:
        if export_format == "safetensors":
            written = export_safetensors(checkpoint, out)
        else:
            from famipose.inference.export import export_onnx

            model, _ = load_model_and_config(checkpoint, config, overrides or [])
            written = export_onnx(model, out, batch_size=batch)
    except (ConfigError, CheckpointError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"wrote {written}")


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="Checkpoint to convert.")],
    out: Annotated[Path, typer.Argument(help="State dict to write (loads with --checkpoint).")],
    source_format: Annotated[
        Literal["fami-release"], typer.Option("--from", help="Layout of SOURCE: the released Alignment_V15.")
    ],
    config: Annotated[
        Path | None, typer.Option("--config", help="famipose_official YAML of the target (default: the release's).")
    ] = None,
) -> None:
    """Convert a released FAMI-Pose checkpoint into weights of the famipose_official variant."""
    from famipose.config import ConfigError, load_config
    from famipose.models.checkpoint import RELEASED_MODEL, CheckpointError, convert_release_file

    try:
        target = RELEASED_MODEL if config is None else load_config(config).model
        written = convert_release_file(source, out, target)
    except (ConfigError, CheckpointError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"wrote {written} ({source_format} -> {target.variant})")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.", exists=True, dir_okay=False)],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config value: section.key=value (repeatable).")
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="'auto' (the run folder's last.pth) or a checkpoint path.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Run folder.")] = Path("runs/train"),
    checkpoint_every: Annotated[
        int | None, typer.Option("--checkpoint-every", help="Also write last.pth every N steps inside an epoch.")
    ] = None,
    gt: Annotated[
        Path | None, typer.Option("--gt", help="Per-video GT folder for evaluation (default: data.val_gt).")
    ] = None,
) -> None:
    """Train a model (the same command runs under torchrun --nproc_per_node N for DDP)."""
    from famipose.config import ConfigError, load_config
    from famipose.engine.logging import setup_logging
    from famipose.engine.train import TrainingDivergedError
    from famipose.engine.train import train as run_training
    from famipose.models.checkpoint import CheckpointError

    setup_logging()
    try:
        result = run_training(load_config(config, overrides or []), out, resume, checkpoint_every, gt)
    except (ConfigError, CheckpointError, TrainingDivergedError, FileNotFoundError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    best = "n/a" if result.best_ap is None else f"{result.best_ap:.2f}"
    typer.echo(f"done: {result.progress.global_step} steps, best AP {best}, checkpoints in {result.out_dir}")


@app.command()
def test(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.", exists=True, dir_okay=False)],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint (.pth) or .safetensors weights.")],
    boxes: Annotated[
        str | None, typer.Option("--boxes", help="Detections JSON, or 'gt' (default: data.val_boxes).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/test"),
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config value: section.key=value (repeatable).")
    ] = None,
    gt: Annotated[
        Path | None, typer.Option("--gt", help="Per-video GT folder (default: data.val_annotations).")
    ] = None,
) -> None:
    """Predict the validation set, write PoseTrack18 files per video and print the AP table."""
    from rich.console import Console

    from famipose.config import ConfigError, load_config
    from famipose.engine.evaluate import evaluate_model
    from famipose.engine.logging import setup_logging
    from famipose.models.checkpoint import CheckpointError

    setup_logging()
    try:
        result = evaluate_model(load_config(config, overrides or []), checkpoint, boxes, out, gt)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    Console().print(result.table())
    typer.echo(f"predictions in {out / 'predictions'}, scores in {out / 'eval.json'}")


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
    workers: Annotated[int, typer.Option(help="Worker processes rendering videos in parallel.")] = 2,
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
