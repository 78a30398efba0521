"""The end-to-end demo (``make demo``): SynthTrack → two-stage training → evaluation → report.

1. Generate a small ``hard`` SynthTrack train/val set (blur, occluders and noise bursts on the key
   frame that the neighbouring frames do not share).
2. Stage 1: train the tiny single-frame HRNet (the baseline).
3. Stage 2: load it into tiny FAMI-Pose and train it with the alignment, fusion and head.
4. Evaluate both on val with the built-in PoseTrack evaluator.
5. Write ``report.md`` with the per-joint table, the training curves, and an overlay video of a
   val clip with both models' skeletons side by side.

Everything runs on the CPU in a few minutes; the budget is set by :class:`DemoSettings`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from famipose.config import Config, load_config
from famipose.data.posetrack import read_image
from famipose.data.synthtrack import generate_synthtrack
from famipose.engine.report import logged_grad_ratios
from famipose.engine.train import train
from famipose.evaluation.io import EvalFrame, read_predictions
from famipose.evaluation.posetrack_ap import EvalResult
from famipose.inference.draw import draw_frame
from famipose.poses import PersonPose
from famipose.video_writer import VideoWriter

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data: the demo runs from a wheel too
GROUPS = ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Total")


@dataclass(frozen=True)
class DemoSettings:
    """Size of the demo run.

    Attributes:
        train_videos: SynthTrack training videos.
        val_videos: SynthTrack validation videos.
        frames: Frames per video.
        frame_size: Frame size (w, h).
        difficulty: SynthTrack preset.
        seed: Data and training seed.
        stage1_epochs: Epochs of the single-frame model.
        stage2_epochs: Epochs of FAMI-Pose.
        batch_size: Batch size of both stages.
        max_steps_per_epoch: Optional cap on steps per epoch.
        stage2_config: Shipped config of stage 2. The default trains FAMI-Pose with the paper's
            MI objective (``loss.mi_form: vsd``, stopped at the trainable backbone);
            ``synthtrack_famipose_nomi_tiny`` leaves it out (docs/results.md compares the two).
    """

    train_videos: int = 16
    val_videos: int = 4
    frames: int = 40
    frame_size: tuple[int, int] = (256, 192)
    difficulty: str = "hard"
    seed: int = 0
    stage1_epochs: int = 8
    stage2_epochs: int = 4
    batch_size: int = 16
    max_steps_per_epoch: int | None = None
    stage2_config: str = "synthtrack_famipose_tiny"


QUICK = DemoSettings(
    train_videos=2, val_videos=1, frames=8, frame_size=(128, 96), stage1_epochs=1, stage2_epochs=1, batch_size=4
)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put its outputs, and the two validation results."""

    report: Path
    overlay: Path
    single_frame: EvalResult
    famipose: EvalResult


def stage_config(name: str, data_root: Path, settings: DemoSettings, epochs: int, extra: list[str]) -> Config:
    """A shipped SynthTrack config (``configs/<name>.yaml``) pointed at the demo's data and budget."""
    overrides = [
        f"data.root={data_root}",
        f"train.epochs={epochs}",
        f"train.milestones=[{max(epochs - 1, 1)}]",
        f"train.batch_size={settings.batch_size}",
        f"train.seed={settings.seed}",
        f"train.eval_every={epochs}",  # one evaluation, at the end
        "data.val_boxes=gt",
        "train.device=cpu",
        *([f"train.max_steps_per_epoch={settings.max_steps_per_epoch}"] if settings.max_steps_per_epoch else []),
        *extra,
    ]
    return load_config(CONFIG_DIR / f"{name}.yaml", overrides)


def generate_data(root: Path, settings: DemoSettings) -> None:
    """Write the demo's SynthTrack train and val splits under ``root``."""
    for split, videos in (("train", settings.train_videos), ("val", settings.val_videos)):
        stats = generate_synthtrack(
            root,
            videos=videos,
            frames=settings.frames,
            size=settings.frame_size,
            seed=settings.seed,
            difficulty=settings.difficulty,  # type: ignore[arg-type]
            split=split,
        )
        print(stats.summary())


def _drawn(frame: EvalFrame) -> list[PersonPose]:
    """Predicted persons of one frame in the renderer's form (box around the predicted joints)."""
    persons = []
    for person in frame.persons:
        points = person.keypoints[person.present]
        if not len(points):
            continue
        low, high = points.min(0), points.max(0)
        box = np.array([*low, *(high - low)])
        scores = np.where(person.present, person.scores, 0.0)
        persons.append(PersonPose(person.track_id or 0, box, person.keypoints, scores))
    return persons


def _label(image: np.ndarray, text: str) -> np.ndarray:
    import cv2

    canvas = image.copy()
    y = canvas.shape[0] - 10
    cv2.putText(canvas, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def render_comparison(
    data_root: Path, left: Path, right: Path, labels: tuple[str, str], out_path: Path, fps: float = 10.0
) -> Path:
    """Overlay two models' predictions for one video side by side.

    Args:
        data_root: Data set root the frames' ``file_name`` are relative to.
        left: Prediction JSON (PoseTrack18) of the left model.
        right: Prediction JSON of the right model, for the same video.
        labels: Captions of the two halves.
        out_path: Output video.
        fps: Frame rate.

    Returns:
        ``out_path``.
    """
    writer = VideoWriter(out_path, fps)
    try:
        for index, (a, b) in enumerate(zip(read_predictions(left), read_predictions(right), strict=True)):
            image = read_image(data_root / a.file_name)
            halves = [
                _label(draw_frame(image, _drawn(frame), index), label)
                for frame, label in zip((a, b), labels, strict=True)
            ]
            writer.write(np.concatenate(halves, axis=1))
    finally:
        writer.close()
    return out_path


def _fmt(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}"


def ap_table(label: str, rows: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Markdown table lines: one row per entry of ``rows`` (name -> AP per group of :data:`GROUPS`)."""
    lines = [f"| {label} | " + " | ".join(GROUPS) + " |", "|---" * (len(GROUPS) + 1) + "|"]
    return lines + [f"| {name} | " + " | ".join(_fmt(aps[g]) for g in GROUPS) + " |" for name, aps in rows.items()]


def mi_summary(stage2: Config, run_dir: Path) -> str:
    """One sentence: stage 2's MI form and its gradient ratio at the first and last logged steps."""
    loss = stage2.loss
    if loss.mi_form == "none":
        return "Stage 2 trains without the MI objective (`loss.mi_form: none`)."
    ratios = logged_grad_ratios(run_dir)
    measured = f"{ratios[0]:.3g} at the first logged step, {ratios[-1]:.3g} at the last" if ratios else "not logged"
    return (
        f"Stage 2 trains with the MI objective `loss.mi_form: {loss.mi_form}` (weight α = {loss.mi_weight:g}, "
        f"λ = {loss.mi_lambda:g}); its gradient against the pose loss's, ‖∇(α·L_MI)‖ / ‖∇L_pose‖ over the "
        f"trainable parameters outside the backbone: {measured}."
    )


def write_report(
    out_dir: Path, settings: DemoSettings, stage2: Config, results: dict[str, EvalResult], overlay: Path
) -> Path:
    """Markdown report: per-joint AP of both models, the MI objective, plots and the overlay video."""
    rows = ap_table("model", {name: {**result.grouped, "Total": result.total} for name, result in results.items()})
    single, fami = (results[k].total for k in ("single-frame HRNet", "FAMI-Pose"))
    backbone = "frozen" if stage2.model.backbone.frozen else "trainable"
    lines = [
        "# famipose demo report",
        "",
        f"SynthTrack ({settings.difficulty}): {settings.train_videos} training and {settings.val_videos} validation "
        f"videos of {settings.frames} frames at {settings.frame_size[0]}x{settings.frame_size[1]}; tiny HRNet, "
        f"input 96x128. Stage 1 trains the single-frame model for {settings.stage1_epochs} epochs; stage 2 loads it "
        f"into FAMI-Pose (`{settings.stage2_config}`: {backbone} backbone, 4 supports at δ = -2, -1, +1, +2) for "
        f"{settings.stage2_epochs} epochs.",
        "",
        "PoseTrack AP (PCKh@0.5, built-in poseval-equivalent evaluator) on the validation split, ground-truth boxes:",
        "",
        *rows,
        "",
        f"FAMI-Pose − single-frame: {fami - single:+.1f} AP (Total).",
        "",
        mi_summary(stage2, out_dir / "famipose"),
        "",
        "## Training curves",
        "",
        "![single-frame](single_frame/train_curves.png)",
        "![FAMI-Pose](famipose/train_curves.png)",
        "",
        "## Per-joint AP",
        "",
        "![single-frame](single_frame/per_joint_map.png)",
        "![FAMI-Pose](famipose/per_joint_map.png)",
        "",
        "## Overlay",
        "",
        f"[{overlay.name}]({overlay.name}): left single-frame HRNet, right FAMI-Pose, on validation video "
        "`val/" + overlay.stem.removeprefix("overlay_") + "`; joint opacity is the joint score.",
        "",
        "Settings: `" + json.dumps(dataclasses.asdict(settings)) + "`",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def run_demo(out_dir: Path, settings: DemoSettings = DemoSettings()) -> DemoResult:
    """Run the whole demo into ``out_dir`` and return what it produced."""
    out_dir = Path(out_dir).resolve()
    data_root = out_dir / "synthtrack"
    generate_data(data_root, settings)

    stage1 = stage_config("synthtrack_single_frame_tiny", data_root, settings, settings.stage1_epochs, [])
    single_run = train(stage1, out_dir / "single_frame", overwrite=True)  # a demo rerun replaces its runs
    stage1_weights = single_run.best_checkpoint or single_run.last_checkpoint
    stage2 = stage_config(
        settings.stage2_config, data_root, settings, settings.stage2_epochs, [f"train.init_from={stage1_weights}"]
    )
    fami_run = train(stage2, out_dir / "famipose", overwrite=True)

    if single_run.last_eval is None or fami_run.last_eval is None:
        raise RuntimeError("the demo's training runs did not evaluate; check train.eval_every")
    results = {"single-frame HRNet": single_run.last_eval, "FAMI-Pose": fami_run.last_eval}
    video = sorted((fami_run.out_dir / "predictions").glob("*.json"))[0]
    overlay = render_comparison(
        data_root,
        single_run.out_dir / "predictions" / video.name,
        video,
        ("single-frame HRNet", "FAMI-Pose"),
        out_dir / f"overlay_{video.stem}.mp4",
    )
    report = write_report(out_dir, settings, stage2, results, overlay)
    return DemoResult(report, overlay, results["single-frame HRNet"], results["FAMI-Pose"])
