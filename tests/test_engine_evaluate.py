"""Testing a model: `famipose test` on the PoseTrack18 sample, OKS NMS, frame pairing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from famipose.cli import app
from famipose.config import load_config
from famipose.engine.evaluate import frame_key
from famipose.engine.train import write_config
from famipose.evaluation.posetrack_ap import JOINT_GROUPS
from famipose.geometry import oks_nms
from famipose.models.checkpoint import atomic_save
from famipose.models.famipose import FamiPose

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "posetrack18_sample"
pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="PoseTrack18 sample not available")
def test_famipose_test_runs_on_the_posetrack18_sample(tmp_path: Path) -> None:
    overrides = [f"data.root={SAMPLE}", "data.val_annotations=annotations/val", "data.num_workers=0",
                 "train.device=cpu", "train.batch_size=16", "train.init_from=null", "model.deltas=[-1, 1]",
                 "data.box_score_threshold=0.5"]  # fmt: skip
    config = load_config(REPO / "configs" / "synthtrack_famipose_tiny.yaml", overrides)
    config_file = tmp_path / "config.yaml"
    write_config(config, config_file)
    torch.manual_seed(0)
    atomic_save({"model": FamiPose(config.model).state_dict()}, tmp_path / "random.pth")

    out = tmp_path / "test"
    detections = SAMPLE / "annotations" / "test_posetrack18_human_detections.json"
    result = CliRunner().invoke(
        app, ["test", str(config_file), "--checkpoint", str(tmp_path / "random.pth"), "--boxes", str(detections),
              "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for _, short, _ in JOINT_GROUPS:
        assert short in result.output  # the printed table has every group column

    videos = sorted(p.name for p in (SAMPLE / "annotations" / "val").glob("*.json"))
    assert sorted(p.name for p in (out / "predictions").glob("*.json")) == videos
    origin = (out / "predictions" / "ORIGIN").read_text()
    assert origin.startswith(f"predictions of {tmp_path / 'random.pth'}: Total AP")
    for video in videos:
        written = json.loads((out / "predictions" / video).read_text())
        gt = json.loads((SAMPLE / "annotations" / "val" / video).read_text())
        assert [i["file_name"] for i in written["images"]] == [i["file_name"] for i in gt["images"]]
        assert written["annotations"], video  # every frame has detections above 0.5
        track_ids = [a["track_id"] for a in written["annotations"]]
        assert len(set(track_ids)) == len(track_ids)
    scores = json.loads((out / "eval.json").read_text())
    for name in [name for name, _, _ in JOINT_GROUPS] + ["Total"]:
        assert scores[name] is not None and math.isfinite(scores[name]) and 0 <= scores[name] <= 100, name
    assert (out / "per_joint_map.png").stat().st_size > 1000


def test_test_command_rejects_weights_of_another_model(tmp_path: Path) -> None:
    config = load_config(REPO / "configs" / "synthtrack_famipose_tiny.yaml", ["data.root=/nonexistent"])
    write_config(config, tmp_path / "config.yaml")
    atomic_save({"model": {"backbone.conv1.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    command = ["test", str(tmp_path / "config.yaml"), "--checkpoint", str(tmp_path / "other.pth")]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1
    assert "other.pth" in result.output and "does not fit" in result.output


def person(x: float, y: float) -> np.ndarray:
    """A (K, 3) pose: a vertical line of joints starting at (x, y)."""
    return np.stack([np.full(17, x), y + 10.0 * np.arange(17), np.ones(17)], axis=-1)


def test_oks_nms_removes_duplicates_and_keeps_distinct_people() -> None:
    keypoints = np.stack([person(100, 50), person(101, 50.5), person(400, 50), person(100.5, 49)])
    scores = np.array([0.5, 0.9, 0.7, 0.3])
    kept = oks_nms(keypoints, scores, np.full(4, 200.0 * 300.0), threshold=0.9)
    assert kept == [1, 2]  # the best of the three overlapping poses, and the distant person


def test_frames_pair_across_root_prefixes() -> None:
    assert frame_key("images/val/012834_mpii_test/000000.jpg") == "012834_mpii_test/000000.jpg"
    assert frame_key("/data/pt18/images/val/012834_mpii_test/000000.jpg") == "012834_mpii_test/000000.jpg"
