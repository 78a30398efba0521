"""famipose command line: thin wrappers around library functions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False, help="FAMI-Pose video pose estimation.")


def _user_error_types() -> tuple[type[Exception], ...]:
    """What bad input, bad files or a failed run raise (imported only when an error occurs)."""
    from famipose.engine.train import TrainingDivergedError
    from famipose.inference.video_io import VideoReadError
    from famipose.models.checkpoint import CheckpointError

    return ValueError, OSError, CheckpointError, TrainingDivergedError, VideoReadError


def describe_error(error: Exception) -> str:
    """One line naming the file and the problem."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn a bad-input error into ``error: <one line>`` on stderr and exit code 1 (no traceback)."""
    try:
        yield
    except Exception as error:
        if not isinstance(error, _user_error_types()):
            raise
        typer.echo(f"error: {describe_error(error)}", err=True)
        raise typer.Exit(1) from error


def ensure_writable(*paths: Path | None) -> None:
    """Fail before any work when an output file cannot be created (its folder is created here).

    Raises:
        OSError: A folder cannot be created, or a path is a folder.
    """
    for path in paths:
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            problem = f"cannot create the folder {path.parent} ({error.strerror})"
            raise OSError(error.errno, problem, str(path)) from error
        if path.is_dir():
            raise IsADirectoryError(21, "is a folder, not a file", str(path))


def print_table(table: Table) -> None:
    """Print a rich table; piped output gets the width the table needs, so no cell is cut."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(10_000)).maximum
        console = Console(width=max(console.width, needed))
    console.print(table)


def plural(count: int, noun: str) -> str:
    """``"1 track"``, ``"2 tracks"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


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
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Write the outputs even when no person is found.")
    ] = False,
    input_size: Annotated[
        str | None, typer.Option("--input-size", help="Official HRNet file without size in its name: HxW (256x192).")
    ] = None,
    flip: Annotated[bool, typer.Option("--flip", help="Flip test (--mode exact): mirrored crops, averaged.")] = False,
    dark: Annotated[bool, typer.Option("--dark", help="DARK heatmap decoding (sigma: data.sigma).")] = False,
) -> None:
    """Estimate and track poses in a video; write PoseTrack18 and COCO JSON and an overlay video.

    Nothing is written when the input cannot be read or (without --allow-empty) no person is found.
    """
    import torch

    from famipose.engine.logging import setup_logging
    from famipose.inference import EstimatorOptions, TrackerConfig, VideoPoseEstimator, process_video
    from famipose.inference.pipeline import default_image_prefix
    from famipose.inference.video_io import release_freed_frames_to_os
    from famipose.models.checkpoint import parse_size

    setup_logging()
    release_freed_frames_to_os()
    if threads > 0:
        torch.set_num_threads(threads)
    json_out = json_out or Path("predictions") / f"{Path(default_image_prefix(source)).name}.json"
    coco_out = coco_out or json_out.with_name(f"{json_out.stem}_coco.json")
    with reported_errors():
        ensure_writable(json_out, coco_out, out)
        options = EstimatorOptions(
            mode=mode, batch_size=batch, score_threshold=score_threshold, chunk_length=chunk,
            tracker=TrackerConfig(min_hits=min_hits, max_misses=max_misses), flip=flip, dark=dark,
        )  # fmt: skip
        estimator = VideoPoseEstimator.from_checkpoint(
            checkpoint, config, overrides or [], options, parse_size(input_size) if input_size else None,
            detector=detector, detector_weights=detector_weights, boxes=boxes, gt_json=gt_json, device=device,
        )  # fmt: skip
        result = process_video(estimator, source, json_out, coco_out, out, progress=True, allow_empty=allow_empty)
    stages = ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in result.timings.items())
    typer.echo(
        f"{plural(result.num_decoded, 'frame')}, {plural(len(result.track_ids), 'track')}, "
        f"{result.throughput:.1f} fps ({stages})"
    )
    typer.echo(f"wrote {json_out}, {coco_out}" + (f", {out}" if out else ""))


EXPORT_FORMATS = {".onnx": "onnx", ".safetensors": "safetensors"}


def export_format_of(out: Path, requested: str | None) -> str:
    """The export format: ``--format``, or the one the extension of ``out`` names; they must agree.

    Raises:
        ValueError: ``--format`` contradicts the extension, or neither gives a format.
    """
    implied = EXPORT_FORMATS.get(out.suffix.lower())
    if requested is not None and implied is not None and requested != implied:
        raise ValueError(f"{out}: --format {requested} contradicts the extension {out.suffix} ({implied})")
    chosen = requested or implied
    if chosen is None:
        raise ValueError(f"{out}: cannot tell the format from the extension; use .onnx or .safetensors, or --format")
    return chosen


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="Output file (.onnx or .safetensors).")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Training checkpoint, .safetensors or state dict.")],
    config: Annotated[Path | None, typer.Option("--config", help="Experiment YAML (optional with a .pth).")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Config override key=value.")] = None,
    export_format: Annotated[
        Literal["onnx", "safetensors"] | None,
        typer.Option("--format", help="Output format (default: from the extension of OUT)."),
    ] = None,
    batch: Annotated[int, typer.Option(help="ONNX: batch size of the exported graph (fixed).")] = 1,
) -> None:
    """Export the window model (key + supports → heatmaps or SimCC) to ONNX, or the weights to safetensors.

    The ONNX graph takes ``key`` (B, 3, H, W) and, for temporal variants, ``supports`` (B, S, 3, H, W)
    with the batch B fixed at export (``--batch``).
    """
    from famipose.files import atomic_path
    from famipose.inference.pipeline import load_model_and_config
    from famipose.models.checkpoint import export_safetensors

    with reported_errors():
        chosen = export_format_of(out, export_format)
        ensure_writable(out)
        if chosen == "safetensors":
            with atomic_path(out) as temporary:
                export_safetensors(checkpoint, temporary)
        else:
            from famipose.inference.export import export_onnx

            model, _ = load_model_and_config(checkpoint, config, overrides or [])
            with atomic_path(out) as temporary:
                export_onnx(model, temporary, batch_size=batch)
    typer.echo(f"wrote {out} ({chosen})")


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
    from famipose.config import load_config
    from famipose.models.checkpoint import RELEASED_MODEL, convert_release_file

    with reported_errors():
        target = RELEASED_MODEL if config is None else load_config(config).model
        written = convert_release_file(source, out, target)
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
    out: Annotated[Path | None, typer.Option("--out", help="Run folder (default: runs/<config name>).")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Delete the run already in --out and start afresh.")
    ] = False,
    checkpoint_every: Annotated[
        int | None, typer.Option("--checkpoint-every", help="Also write last.pth every N steps inside an epoch.")
    ] = None,
    gt: Annotated[
        Path | None, typer.Option("--gt", help="Per-video GT folder for evaluation (default: data.val_gt).")
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", help="Comma-separated seeds, e.g. 0,1,2: one run each under --out/seed_N."),
    ] = None,
) -> None:
    """Train a model (the same command runs under torchrun --nproc_per_node N for DDP).

    A run folder that holds a run already is refused unless --resume or --overwrite is given. With
    --seeds, each seed's run continues where it stopped (finished seeds train no step).
    """
    from famipose.config import load_config
    from famipose.engine.logging import setup_logging
    from famipose.engine.train import train as run_training
    from famipose.engine.train import train_seeds

    setup_logging()
    out = out or Path("runs") / config.stem
    with reported_errors():
        loaded = load_config(config, overrides or [])
        if seeds is None:
            results = [run_training(loaded, out, resume, checkpoint_every, gt, overwrite)]
        else:
            if resume is not None:
                raise ValueError("--seeds resumes every seed by itself; leave out --resume")
            results = train_seeds(loaded, out, parse_seeds(seeds), checkpoint_every, gt, overwrite)
    for result in results:
        best = "n/a" if result.best_ap is None else f"{result.best_ap:.2f}"
        typer.echo(f"done: {result.progress.global_step} steps, best AP {best}, checkpoints in {result.out_dir}")


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``.

    Raises:
        ValueError: An entry is not an integer.
    """
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise ValueError(f"--seeds {text!r}: expected comma-separated integers such as 0,1,2") from error


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
    from famipose.config import load_config
    from famipose.engine.evaluate import evaluate_model
    from famipose.engine.logging import setup_logging

    setup_logging()
    with reported_errors():
        result = evaluate_model(load_config(config, overrides or []), checkpoint, boxes, out, gt)
    print_table(result.table())
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

    from famipose.engine.logging import setup_logging
    from famipose.evaluation import evaluate_posetrack, read_origin
    from famipose.files import write_text_atomic

    setup_logging()
    with reported_errors():
        ensure_writable(json_out)
        result = evaluate_posetrack(gt, pred, track=track, allow_missing=allow_missing)
        if json_out is not None:
            write_text_atomic(json_out, json.dumps(result.to_json(), indent=2))
    origin = read_origin(pred)
    if origin:
        typer.echo(f"{pred}: {origin}")
    print_table(result.table())


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run folders of `famipose train` (config.yaml + eval.json).")],
    out: Annotated[Path, typer.Option("--out", help="Markdown report; .json and .png are written beside it.")] = Path(
        "report.md"
    ),
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Group label the others are compared with (default: the first).")
    ] = None,
    ignore: Annotated[
        list[str] | None, typer.Option("--ignore", help="Dotted config key that does not separate groups (repeatable).")
    ] = None,
) -> None:
    """Mean ± std over seeds: runs whose configs differ only in train.seed form one group."""
    from famipose.engine.report import write_report

    with reported_errors():
        groups = write_report(runs, out, baseline, ignore or [])
    written = ", ".join(str(path) for path in (out, out.with_suffix(".json"), out.with_suffix(".png")))
    typer.echo(f"{len(groups)} group(s) from {len(runs)} run(s): {written}")


@app.command()
def summary(
    config: Annotated[list[Path], typer.Option("--config", "-c", help="Experiment YAML file(s).", exists=True)],
) -> None:
    """Print parameters, multiply-adds per key frame and tensor shapes of configured models."""
    from rich.table import Table

    from famipose.config import load_config
    from famipose.models.summary import summarize

    table = Table(title="famipose model summary")
    for column in ("config", "variant", "backbone", "input (w×h)", "frames", "params", "trainable",
                   "GMACs / key frame", "vs single frame", "Z_t (C,h,w)", "head output"):
        table.add_column(column, justify="right" if column in ("frames", "params", "trainable") else "left")
    for path in config:
        with reported_errors():
            s = summarize(load_config(path).model)
        table.add_row(
            path.stem, s.variant, s.backbone, f"{s.input_size[0]}×{s.input_size[1]}", str(s.num_frames),
            f"{s.parameters / 1e6:.2f}M", f"{s.trainable_parameters / 1e6:.2f}M", f"{s.macs / 1e9:.2f}",
            f"{s.macs / s.backbone_macs:.2f}×", str(s.feature_shape),
            ", ".join(f"{k} {v}" for k, v in s.output_shapes.items()),
        )
    print_table(table)


if __name__ == "__main__":
    app()
