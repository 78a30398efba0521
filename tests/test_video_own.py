"""Run on your own video: the acceptance run on the real PoseTrack18 sample clip, and every command
of docs/video.md's "Run on your own video", each with random-weight stand-ins of the same layouts.

These prove the code path (an official-layout HRNet checkpoint, a torchvision or ONNX detector from
a local file, JSON and overlay written), not the quality: every weight is random.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from famipose.cli import app
from famipose.config import load_config, to_dict
from famipose.evaluation import read_predictions
from famipose.inference import TORCHVISION_DETECTORS, open_frames
from famipose.inference.learned_detectors import hub_weight_names
from famipose.models.famipose import FamiPose
from famipose.models.hrnet import HRNet

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CLIP = ROOT / ".." / "shared" / "data" / "posetrack18_sample" / "videos" / "000001_mpiinew_test"
CLIP = SAMPLE_CLIP / "000001_mpiinew_test.mp4"
DOC = ROOT / "docs" / "video.md"
SSDLITE = "ssdlite320_mobilenet_v3_large"
# One person box per anchor of the (1, 4 + 3, 2) YOLO output: cx, cy, w, h in 64x64 input pixels, 3 class scores.
YOLO_OUTPUT = np.array([[[20, 44], [32, 30], [12, 12], [20, 16], [0.9, 0.8], [0, 0], [0, 0]]], np.float32)

pytestmark = [
    pytest.mark.usefixtures("torch_single_thread"),
    pytest.mark.skipif(not CLIP.is_file(), reason=f"shared sample clip absent: {CLIP}"),
]


def _official_file(path: Path, preset: str) -> Path:
    """A random HRNet state dict in the official layout (our HRNet keys are the official ones)."""
    torch.manual_seed(0)
    model = HRNet.from_name(preset)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    torch.save(model.state_dict(), path)
    return path


def _check_outputs(json_path: Path, overlay: Path | None) -> None:
    """Five frames in the PoseTrack and COCO outputs, someone with 17 joints, the overlay's frames."""
    frames = read_predictions(json_path)
    assert len(frames) == 5
    persons = [person for frame in frames for person in frame.persons]
    assert persons and all(person.keypoints.shape == (17, 2) and person.track_id is not None for person in persons)
    coco = json.loads(json_path.with_name(f"{json_path.stem}_coco.json").read_text())
    assert len(coco) == len(persons) and {entry["frame_index"] for entry in coco} <= set(range(5))
    if overlay is not None:
        assert len(list(open_frames(overlay))) == 5


def test_acceptance_official_w32_and_torchvision_detector_on_the_real_clip(
    tmp_path: Path, person_ssdlite_weights: Path
) -> None:
    """The issue's acceptance run: an official-layout HRNet-W32 (random, at a small 128x96 crop to
    keep CPU time low) and a random-weight SSDlite from a file, on the real 5-frame clip."""
    checkpoint = _official_file(tmp_path / "pose_hrnet_w32_128x96.pth", "w32")
    out, json_path = tmp_path / "overlay.mp4", tmp_path / "pred" / "000001_mpiinew_test.json"
    result = CliRunner().invoke(app, [
        "video", str(CLIP), "--checkpoint", str(checkpoint), "--detector", SSDLITE,
        "--detector-weights", str(person_ssdlite_weights), "--out", str(out), "--json", str(json_path),
        "--device", "cpu", "--threads", "1",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(r"5 frames, \d+ tracks, .*detect \d+\.\d+s", result.output)
    _check_outputs(json_path, out)


def _training_checkpoint(path: Path) -> Path:
    """A training checkpoint of the tiny FAMI-Pose (random weights), as ``famipose train`` writes it."""
    config = load_config(ROOT / "configs" / "famipose_tiny.yaml")
    model = FamiPose(config.model)
    sections = {"optimizer": {}, "scheduler": {}, "scaler": {}, "rng": {}, "progress": {}}
    path.parent.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "config": to_dict(config), **sections}, path)
    return path


def _doc_commands() -> list[str]:
    """The ``famipose`` lines of the code blocks in docs/video.md's "Run on your own video"."""
    section = DOC.read_text().split("## Run on your own video", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.startswith("famipose ")]


def test_the_doc_names_the_files_torchvision_caches() -> None:
    text = DOC.read_text()
    for name in TORCHVISION_DETECTORS:
        assert f"| `{name}` | `{hub_weight_names(name)[0]}` |" in text, name


def test_every_command_of_the_guide_runs(
    tmp_path: Path,
    person_ssdlite_weights: Path,
    make_constant_onnx: Callable[[Path, np.ndarray, list[int | str]], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Files named as in the guide: tiny-preset official-layout HRNet stand-ins (the crop size
    comes from each name), the random SSDlite, a constant YOLO ONNX model, a tiny FAMI-Pose
    training checkpoint; the clip is the real sample, copied as ``my_video.mp4``; ``auto`` finds
    the SSDlite in a temporary torch hub cache."""
    monkeypatch.chdir(tmp_path)
    Path("my_video.mp4").write_bytes(CLIP.read_bytes())
    for name in ("pose_hrnet_w32_256x192.pth", "pose_hrnet_w48_384x288.pth", "my_hrnet.pth"):
        _official_file(Path(name), "tiny")
    Path(f"{SSDLITE}_coco-a79551df.pth").symlink_to(person_ssdlite_weights)
    make_constant_onnx(Path("yolov8n.onnx"), YOLO_OUTPUT, [1, 3, 64, 64])
    _training_checkpoint(Path("runs/posetrack18_famipose_w48/best.pth"))
    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / hub_weight_names(SSDLITE)[0]).symlink_to(person_ssdlite_weights)
    saved_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    commands = _doc_commands()
    assert len(commands) == 5
    try:
        for command in commands:
            args = [*shlex.split(command)[1:], "--device", "cpu", "--threads", "1"]
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, f"{command}\n{result.output}"
            if "--detector" not in args:
                assert f"detector auto: {SSDLITE}" in result.output
            json_path = Path(args[args.index("--json") + 1]) if "--json" in args else Path("predictions/my_video.json")
            overlay = Path(args[args.index("--out") + 1]) if "--out" in args else None
            _check_outputs(json_path, overlay)
            for produced in (json_path, json_path.with_name(f"{json_path.stem}_coco.json"), overlay):
                if produced is not None:
                    produced.unlink()
    finally:
        torch.hub.set_dir(saved_hub)
