"""The bad-input battery: every bad input, fault or misuse a newcomer meets (issue 11, items 1-20).

Each case of ``test_bad_input_is_one_line_error_and_writes_nothing`` drives the CLI with one bad
input and checks the exit code, that exactly one ``error:`` line names the file (or config key) and
the problem, that no traceback is printed and that nothing in the watched output folder was
created or changed. The tests after it pin the behaviours that are not errors: warnings instead of
silence, atomic outputs, refusal to mix runs, inferred formats and readable tables.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner, Result

from famipose.cli import app
from famipose.config import load_config
from famipose.engine import train as train_module
from famipose.engine.checkpointing import load_checkpoint
from famipose.engine.logging import read_metrics
from famipose.engine.train import train
from famipose.inference import pipeline as pipeline_module
from famipose.models.checkpoint import atomic_save

ROOT = Path(__file__).resolve().parents[1]
SINGLE = ROOT / "configs" / "synthtrack_single_frame_tiny.yaml"
FAMI = ROOT / "configs" / "synthtrack_famipose_tiny.yaml"
TINY = ROOT / "configs" / "famipose_tiny.yaml"
VAL_VIDEO = "200000_synth_val"
pytestmark = pytest.mark.usefixtures("torch_single_thread")
runner = CliRunner()


def quick(root: Path, *overrides: str) -> list[str]:
    """Overrides of a seconds-long CPU run on the test set."""
    return [
        f"data.root={root}", "data.num_workers=0", "train.device=cpu", "train.batch_size=2", "train.epochs=1",
        "train.max_steps_per_epoch=2", "train.log_every=1", "train.init_from=null", *overrides,
    ]  # fmt: skip


def sets(root: Path, *overrides: str) -> list[str]:
    """``quick`` as ``--set`` options."""
    return [arg for item in quick(root, *overrides) for arg in ("--set", item)]


def invoke(*args: object) -> Result:
    """Run the CLI in-process."""
    return runner.invoke(app, [str(arg) for arg in args])


def error_line(result: Result) -> str:
    """The single ``error:`` line of a failed command (no traceback)."""
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.exception
    return lines[0]


def snapshot(folder: Path, ignore: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, except those named in ``ignore``."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in ignore)
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


def write_video(path: Path, frames: int, faststart: bool = False, blank: bool = False) -> Path:
    """A small mp4 of noise (or black) frames; ``faststart`` puts the index first, so a cut file still opens."""
    rng = np.random.default_rng(0)
    container = av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {})
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
    for _ in range(frames):
        image = np.zeros((96, 128, 3), np.uint8) if blank else rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="module")
def trained_run(synthtrack_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished single-frame run folder (last.pth, best.pth, metrics.jsonl, predictions/)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    train(load_config(SINGLE, quick(synthtrack_root)), out)
    return out


@dataclass
class Env:
    """What a case builds its bad input from.

    Attributes:
        tmp: The case's own folder.
        data: The shared SynthTrack test set (read only).
        run: The finished run (read only; copy it to change it).
        monkeypatch: For faults injected in-process.
    """

    tmp: Path
    data: Path
    run: Path
    monkeypatch: pytest.MonkeyPatch

    def copy_data(self) -> Path:
        """A copy of the data set that the case may damage."""
        return Path(shutil.copytree(self.data, self.tmp / "data"))

    def copy_run(self) -> Path:
        """A copy of the finished run that the case may damage."""
        return Path(shutil.copytree(self.run, self.tmp / "run"))

    def video_args(self, *extra: object, model: tuple[object, ...] = ("--config", TINY)) -> list[object]:
        """``famipose video`` on the SynthTrack val video with its boxes, outputs under ``out/``."""
        return [
            "video", self.data / "videos" / "val" / f"{VAL_VIDEO}.mp4", *model,
            "--boxes", self.data / "detections" / "val.json",
            "--gt-json", self.data / "annotations" / "val" / f"{VAL_VIDEO}.json",
            "--json", self.tmp / "out" / "pred.json", "--out", self.tmp / "out" / "overlay.mp4", *extra,
        ]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One bad input: ``prepare`` builds it and returns the command line and the folder to watch.

    ``ignore`` names files a run that fails while training legitimately leaves (its config and the
    metrics of the steps it did); checkpoints and predictions are always watched.
    """

    name: str
    prepare: Callable[[Env], tuple[list[object], Path]]
    pattern: str
    exit_code: int = 1
    ignore: tuple[str, ...] = ()


def damage_train_images(kind: str) -> Callable[[Env], tuple[list[object], Path]]:
    """Item 1: every training image missing, empty, not an image or cut short; two loader workers."""

    def prepare(env: Env) -> tuple[list[object], Path]:
        data = env.copy_data()
        for image in (data / "images" / "train").rglob("*.jpg"):
            content = image.read_bytes()
            if kind == "missing":
                image.unlink()
            else:
                image.write_bytes({"zero-byte": b"", "not-an-image": b"hello", "truncated": content[:200]}[kind])
        return ["train", SINGLE, "--out", env.tmp / "run", *sets(data, "data.num_workers=2")], env.tmp

    return prepare


def config_override(config: Path, *overrides: str) -> Callable[[Env], tuple[list[object], Path]]:
    """A training run with one bad config value."""

    def prepare(env: Env) -> tuple[list[object], Path]:
        return ["train", config, "--out", env.tmp / "run", *sets(env.data, *overrides)], env.tmp

    return prepare


def resume_other_variant(env: Env) -> tuple[list[object], Path]:
    """Item 3: a FAMI-Pose run resumed from a single-frame checkpoint."""
    return ["train", FAMI, "--out", env.tmp / "run", "--resume", env.run / "last.pth", *sets(env.data)], env.tmp


def blocked(path: str) -> Callable[[Env], Path]:
    """Item 4: an output path under a regular file (its folder cannot be created)."""

    def target(env: Env) -> Path:
        (env.tmp / "file").write_text("a file, not a folder")
        return env.tmp / "file" / path

    return target


def unwritable_evaluate(env: Env) -> tuple[list[object], Path]:
    gt = env.data / "annotations" / "val"
    return ["evaluate", "--gt", gt, "--pred", gt, "--json", blocked("ap.json")(env)], env.tmp


def unwritable_video(env: Env) -> tuple[list[object], Path]:
    args = env.video_args()
    args[args.index("--out") + 1] = blocked("overlay.mp4")(env)
    return args, env.tmp


def unwritable_export(env: Env) -> tuple[list[object], Path]:
    return ["export", blocked("model.onnx")(env), "--checkpoint", env.run / "best.pth"], env.tmp


def gt_and_pred(env: Env, change: Callable[[dict], None], side: str) -> tuple[list[object], Path]:
    """Items 6-7: the val GT scored against itself, with one side's file changed."""
    folders = {name: env.tmp / name for name in ("gt", "pred")}
    for folder in folders.values():
        shutil.copytree(env.data / "annotations" / "val", folder)
    file = folders[side] / f"{VAL_VIDEO}.json"
    document = json.loads(file.read_text())
    change(document)
    file.write_text(json.dumps(document))
    out = env.tmp / "out"
    return ["evaluate", "--gt", folders["gt"], "--pred", folders["pred"], "--json", out / "ap.json"], out


def without_annotations(side: str) -> Callable[[Env], tuple[list[object], Path]]:
    return lambda env: gt_and_pred(env, lambda document: document.pop("annotations"), side)


def nan_keypoints(env: Env) -> tuple[list[object], Path]:
    def poison(document: dict) -> None:
        document["annotations"][0]["keypoints"][0] = float("nan")

    return gt_and_pred(env, poison, "pred")


def init_from_other_backbone(env: Env) -> tuple[list[object], Path]:
    """Item 9: init_from a checkpoint whose backbone tensors have other shapes."""
    state = load_checkpoint(env.run / "last.pth")["model"]
    stem = state["backbone.conv1.weight"]
    state["backbone.conv1.weight"] = torch.zeros(2 * stem.shape[0], *stem.shape[1:])  # a wider stem, as W32's
    atomic_save({"model": state}, env.tmp / "w32.pth")
    return config_override(FAMI, f"train.init_from={env.tmp / 'w32.pth'}")(env)


def failed_video(kind: str) -> Callable[[Env], tuple[list[object], Path]]:
    """Item 11: inputs that give no frame."""

    def prepare(env: Env) -> tuple[list[object], Path]:
        source = env.tmp / "input.mp4"
        if kind == "random-bytes":
            source.write_bytes(np.random.default_rng(0).integers(0, 255, 4096, dtype=np.uint8).tobytes())
        elif kind == "zero-byte":
            source.write_bytes(b"")
        elif kind == "truncated":
            source.write_bytes((env.data / "videos" / "val" / f"{VAL_VIDEO}.mp4").read_bytes()[:300])
        elif kind == "empty-folder":
            source = env.tmp / "frames"
            source.mkdir()
        else:
            source = env.tmp / "missing.mp4"
        args = env.video_args()
        args[1] = source
        return args, env.tmp / "out"

    return prepare


def diverges_at_step_2(env: Env) -> tuple[list[object], Path]:
    """Item 13: a NaN loss at step 2, before any checkpoint."""
    real_loss = train_module.compute_loss_unchecked
    calls: list[int] = []

    def poisoned(output, targets, config, probe):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            output.pose.heatmaps = output.pose.heatmaps * float("nan")
        return real_loss(output, targets, config, probe)

    env.monkeypatch.setattr(train_module, "compute_loss_unchecked", poisoned)
    return config_override(SINGLE)(env)


def truncated_last(env: Env) -> tuple[list[object], Path]:
    """Item 14: --resume auto on a cut last.pth next to a good best.pth."""
    run = env.copy_run()
    last = run / "last.pth"
    last.write_bytes(last.read_bytes()[:1000])
    return ["train", SINGLE, "--out", run, "--resume", "auto", *sets(env.data, "train.epochs=2")], run


def empty_checkpoint(env: Env) -> tuple[list[object], Path]:
    (env.tmp / "best.pth").write_bytes(b"")
    out = env.tmp / "test"
    return ["test", SINGLE, "--checkpoint", env.tmp / "best.pth", "--out", out, *sets(env.data)], env.tmp


def missing_checkpoint(command: str) -> Callable[[Env], tuple[list[object], Path]]:
    def prepare(env: Env) -> tuple[list[object], Path]:
        missing = env.tmp / "missing.pth"
        if command == "video":
            return env.video_args(model=("--checkpoint", missing)), env.tmp
        return ["export", env.tmp / "model.onnx", "--checkpoint", missing], env.tmp

    return prepare


def bad_set_key(env: Env) -> tuple[list[object], Path]:
    return ["train", SINGLE, "--out", env.tmp / "run", *sets(env.data, "train.lrr=0.1")], env.tmp


def existing_run(env: Env) -> tuple[list[object], Path]:
    """Item 15: training again into a finished run's folder."""
    run = env.copy_run()
    return ["train", SINGLE, "--out", run, *sets(env.data)], run


def no_person(env: Env) -> tuple[list[object], Path]:
    """Item 16: a whole video without a person (black frames, the built-in detector)."""
    args = env.video_args()
    source = write_video(env.tmp / "black.mp4", 6, blank=True)
    index = args.index("--boxes")
    del args[index : index + 4]  # no --boxes, no --gt-json
    args[1] = source
    return args, env.tmp / "out"


def export_format(name: str, *extra: str) -> Callable[[Env], tuple[list[object], Path]]:
    """Item 17: an export whose format and extension disagree, or give none."""
    return lambda env: (["export", env.tmp / name, "--checkpoint", env.run / "best.pth", *extra], env.tmp)


CASES = [
    *(Case(f"01-{kind}-image-in-a-worker", damage_train_images(kind), r"error: \S+\.jpg: cannot (read|decode) image",
           ignore=("config.yaml",)) for kind in ("missing", "zero-byte", "not-an-image", "truncated")),
    Case("02-batch-size-0", config_override(SINGLE, "train.batch_size=0"), r"--set: train\.batch_size: 0 must be >= 1"),
    Case("03-resume-another-variant", resume_other_variant,
         r"cannot resume from '\S+last\.pth': its weights do not fit this run's model \(checkpoint: variant "
         r"'single_frame'.*this run: 'famipose'"),
    *(Case(f"04-{command}-output-unwritable", prepare, rf"error: \S+/file/{name}: cannot create the folder \S+/file \(")
      for command, prepare, name in (("evaluate", unwritable_evaluate, r"ap\.json"),
                                     ("video", unwritable_video, r"overlay\.mp4"),
                                     ("export", unwritable_export, r"model\.onnx"))),
    Case("05-input-size", config_override(SINGLE, "model.input_size=[97,130]"),
         r"--set: model\.input_size=\[97, 130\]: each side must be a multiple of 4"),
    Case("05-num-joints", config_override(SINGLE, "model.num_joints=15"),
         r"model\.num_joints=15: the data sets and the evaluator have 17 joints"),
    Case("05-no-deltas", config_override(FAMI, "model.deltas=[]"),
         r"--set: model\.deltas=\[\]: the famipose variant needs at least one support offset"),
    Case("06-gt-without-annotations", without_annotations("gt"),
         rf"error: \S+/gt/{VAL_VIDEO}\.json: has 'images' but no 'annotations' list"),
    Case("07-pred-without-annotations", without_annotations("pred"),
         rf"error: \S+/pred/{VAL_VIDEO}\.json: has 'images' but no 'annotations' list"),
    Case("07-nan-keypoints", nan_keypoints,
         rf"error: \S+/pred/{VAL_VIDEO}\.json: annotations\[0\]: .*non-finite number"),
    Case("08-epochs-negative", config_override(SINGLE, "train.epochs=-1"), r"--set: train\.epochs: -1 must be >= 1"),
    Case("08-sigma-zero", config_override(SINGLE, "data.sigma=0"), r"--set: data\.sigma: 0\.0 must be > 0"),
    Case("09-init-from-another-backbone", init_from_other_backbone,
         r"checkpoint '\S+w32\.pth': 1 of its tensors have other shapes than the model's "
         r"\(backbone\.conv1\.weight: \[\d+, 3, 3, 3\] vs \[\d+, 3, 3, 3\]\)"),
    *(Case(f"11-video-{kind}", failed_video(kind), r"error: \S+(input\.mp4|frames|missing\.mp4): ")
      for kind in ("random-bytes", "zero-byte", "truncated", "empty-folder", "missing")),
    Case("13-nan-before-any-checkpoint", diverges_at_step_2,
         r"training stopped at epoch 1, step 2/2 \(global step 2\): .*; no checkpoint was written yet",
         ignore=("config.yaml", "metrics.jsonl")),
    Case("14-truncated-last-with-best", truncated_last,
         r"cannot read checkpoint '\S+last\.pth': .*; best\.pth is still there: resume with --resume \S+best\.pth"),
    Case("14-zero-byte-checkpoint", empty_checkpoint,
         r"cannot read checkpoint '\S+best\.pth': the file is empty \(0 bytes\)"),
    *(Case(f"14-{command}-missing-checkpoint", missing_checkpoint(command),
           r"cannot read checkpoint '\S+missing\.pth': \[Errno 2\] No such file or directory")
      for command in ("video", "export")),
    Case("14-bad-set-key", bad_set_key, r"error: --set: unknown key\(s\) \['train\.lrr'\]; valid keys"),
    Case("15-train-into-a-finished-run", existing_run,
         r"error: \S+run already holds a run \(metrics\.jsonl, last\.pth, best\.pth\): continue it with "
         r"--resume auto, or pass a new --out \(or --overwrite"),
    Case("16-video-without-a-person", no_person, r"error: \S+black\.mp4: no person found in 6 decoded frames"),
    Case("17-onnx-into-safetensors", export_format("model.safetensors", "--format", "onnx"),
         r"error: \S+model\.safetensors: --format onnx contradicts the extension \.safetensors"),
    Case("17-safetensors-into-onnx", export_format("model.onnx", "--format", "safetensors"),
         r"error: \S+model\.onnx: --format safetensors contradicts the extension \.onnx"),
    Case("17-unknown-extension", export_format("model.bin"), r"error: \S+model\.bin: cannot tell the format"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bad_input_is_one_line_error_and_writes_nothing(
    case: Case, synthtrack_root: Path, trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, watched = case.prepare(Env(tmp_path, synthtrack_root, trained_run, monkeypatch))
    before = snapshot(watched, case.ignore)
    result = invoke(*args)
    assert result.exit_code == case.exit_code, result.output
    assert re.search(case.pattern, error_line(result)), result.output
    assert "wrote" not in result.output
    assert snapshot(watched, case.ignore) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_02_cuda_without_a_gpu_is_a_config_error(synthtrack_root: Path, tmp_path: Path) -> None:
    result = invoke("train", SINGLE, "--out", tmp_path / "run", *sets(synthtrack_root, "train.device=cuda"))
    assert result.exit_code == 1
    assert "error: train.device=cuda but CUDA is not available" in error_line(result)
    assert not (tmp_path / "run").exists()


def test_07_extra_prediction_files_are_named_in_a_warning(synthtrack_root: Path, tmp_path: Path) -> None:
    pred = Path(shutil.copytree(synthtrack_root / "annotations" / "val", tmp_path / "pred"))
    shutil.copy(pred / f"{VAL_VIDEO}.json", pred / "999999_other.json")
    result = invoke("evaluate", "--gt", synthtrack_root / "annotations" / "val", "--pred", pred)
    assert result.exit_code == 0, result.output
    warning = r"WARNING \S+pred: 1 prediction file\(s\) without a GT video .*: 999999_other\.json"
    assert re.search(warning, result.output)


def test_10_truncated_video_warns_which_frames_are_missing(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", 12, faststart=True)
    video.write_bytes(video.read_bytes()[: video.stat().st_size * 55 // 100])
    result = invoke("video", video, "--config", TINY, "--json", tmp_path / "out" / "clip.json", "--allow-empty")
    assert result.exit_code == 0, result.output
    assert re.search(r"WARNING [48] frame\(s\) failed to decode and were skipped \(indices 4, 5", result.output)
    assert "frame 11 skipped: missing (truncated file?)" in result.output


def test_12_failed_render_leaves_no_overlay_and_stale_temporaries_are_removed(
    synthtrack_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Env(tmp_path, synthtrack_root, tmp_path, monkeypatch)
    out = tmp_path / "out"

    def crash(*args: object) -> None:
        raise RuntimeError("the renderer died")  # the process fails while the overlay is half written

    with monkeypatch.context() as patch:
        patch.setattr(pipeline_module, "draw_frame", crash)
        result = invoke(*env.video_args())
    assert isinstance(result.exception, RuntimeError) and "wrote" not in result.output
    assert list(out.iterdir()) == []  # no overlay, no JSON, no temporary

    stale = [out / ".overlay.mp4.x1.tmp.mp4", out / ".pred.json.x2.tmp.json"]  # what kill -9 leaves
    for file in stale:
        file.write_bytes(b"left by kill -9")
    result = invoke(*env.video_args("--mode", "fast"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["overlay.mp4", "pred.json", "pred_coco.json"]


def test_12_stale_checkpoint_temporaries_are_removed_on_the_next_start(synthtrack_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    stale = [run / ".last.pth.abc123.tmp", run / ".best.pth.def456.tmp.pth"]  # the old and the new naming
    for file in stale:
        file.write_bytes(b"\x00" * 100)
    result = invoke("train", SINGLE, "--out", run, *sets(synthtrack_root))
    assert result.exit_code == 0, result.output
    assert not any(file.exists() for file in stale)


def test_15_resume_does_not_log_steps_twice_and_overwrite_starts_afresh(
    synthtrack_root: Path, trained_run: Path, tmp_path: Path
) -> None:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    metrics = run / "metrics.jsonl"
    with metrics.open("a") as file:  # steps a killed run logged after its last checkpoint (step 2)
        for step in (3, 4):
            file.write(json.dumps({"kind": "train", "epoch": 2, "step": step, "loss": 999.0}) + "\n")
    result = invoke("train", SINGLE, "--out", run, "--resume", "auto", *sets(synthtrack_root, "train.epochs=2"))
    assert result.exit_code == 0, result.output
    records = read_metrics(metrics)
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    assert all(r.get("loss") != 999.0 for r in records)

    result = invoke("train", SINGLE, "--out", run, "--overwrite", *sets(synthtrack_root))
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_metrics(metrics) if r["kind"] == "train"] == [1, 2]


def test_15_default_run_folder_is_named_after_the_config(
    synthtrack_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("train", SINGLE, *sets(synthtrack_root))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / SINGLE.stem / "last.pth").is_file()


def test_17_export_infers_the_format_from_the_extension(trained_run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    result = invoke("export", tmp_path / "model.safetensors", "--checkpoint", trained_run / "best.pth")
    assert result.exit_code == 0, result.output
    assert "(safetensors)" in result.output
    exported = load_file(str(tmp_path / "model.safetensors"))
    assert exported.keys() == load_checkpoint(trained_run / "best.pth")["model"].keys()
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temporary left


@pytest.mark.parametrize("text", ["lr: 1e-4", "lr: 1E-4", "lr: 1_000.5", "lr: .5", "lr: 1e6"])
def test_18_every_python_float_spelling_is_a_float(text: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"train:\n  {text}\n")
    assert load_config(path).train.lr == float(text.split(": ")[1])
    assert load_config(None, [f"train.{text.replace(': ', '=')}"]).train.lr == float(text.split(": ")[1])
    with pytest.raises(ValueError, match=r"train\.lr: expected float, got 'fast'"):
        load_config(None, ["train.lr=fast"])


def test_19_piped_tables_are_not_cut(synthtrack_root: Path) -> None:
    configs = [ROOT / "configs" / f"{name}_tiny.yaml" for name in ("famipose", "single_frame")]
    result = invoke("summary", "-c", configs[0], "-c", configs[1])
    assert result.exit_code == 0 and "…" not in result.output
    assert "famipose_tiny" in result.output and "GMACs / key frame" in result.output
    gt = synthtrack_root / "annotations" / "val"
    result = invoke("evaluate", "--gt", gt, "--pred", gt, "--track")
    assert result.exit_code == 0 and "…" not in result.output
    (mota,) = (line for line in result.output.splitlines() if "MOTA" in line)
    assert mota.split("│")[-2].strip() == "100.0"  # the Total column, whole


def test_20_epochs_count_from_1_caps_are_noted_and_predictions_say_their_epoch(
    synthtrack_root: Path, trained_run: Path, tmp_path: Path
) -> None:
    result = invoke(
        "train", SINGLE, "--out", tmp_path / "run",
        *sets(synthtrack_root, "train.max_steps_per_epoch=500", "train.batch_size=8"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    note = r"train\.max_steps_per_epoch=500, but \d+ training windows make only \d+ batches of 8"
    assert re.search(note, result.output)
    assert re.search(r"step 1/\d+ epoch 1 loss", result.output)
    assert "epoch 1 validation AP" in result.output
    assert {r["epoch"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")} == {1}

    gt = synthtrack_root / "annotations" / "val"
    result = invoke("evaluate", "--gt", gt, "--pred", trained_run / "predictions")
    assert result.exit_code == 0, result.output
    assert f"predictions of epoch 1 (global step 2) of {trained_run}: Total AP" in result.output


def test_20_video_counts_read_as_words(synthtrack_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(*Env(tmp_path, synthtrack_root, tmp_path, monkeypatch).video_args())
    assert result.exit_code == 0, result.output
    (line,) = (line for line in result.output.splitlines() if " fps (" in line)
    assert re.match(r"4 frames, (1 track|\d+ tracks), ", line) and "1 tracks" not in line

