"""benchmarks/video_own_speed.py at a tiny size: its pose and detector timings run on the real sample."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from famipose.inference import open_frames

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "video_own_speed.py"
SAMPLE = ROOT / ".." / "shared" / "data" / "posetrack18_sample"
VIDEO = "009473_mpii_test"  # 1 frame, 2 GT persons
CLIP = SAMPLE / "videos" / "000001_mpiinew_test" / "000001_mpiinew_test.mp4"

pytestmark = [
    pytest.mark.usefixtures("torch_single_thread"),
    pytest.mark.skipif(not CLIP.is_file(), reason=f"shared sample absent: {SAMPLE}"),
]


def _benchmark(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script as a module (registered first: its dataclass resolves annotations through ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location("video_own_speed", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_pose_and_detector_timings_on_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _benchmark(monkeypatch)
    tiny = bench.PoseSetting("tiny", lambda: bench.official_single_frame("tiny", "pose_hrnet_tiny_64x48.pth"), "fast")
    persons, seconds = bench.pose_speed(
        tiny, SAMPLE / "images" / "val" / VIDEO, SAMPLE / "annotations" / "val" / f"{VIDEO}.json", repeats=1, batch=4
    )
    assert persons == 2 and seconds > 0
    frames = list(open_frames(CLIP))[:1]
    assert bench.detector_speed("ssdlite320_mobilenet_v3_large", frames, repeats=1, batch=1) > 0
