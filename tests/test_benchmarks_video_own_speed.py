"""benchmarks/video_own_speed.py at a tiny size: its pose and detector timings run on the real sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from famipose.inference import open_frames

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / ".." / "shared" / "data" / "posetrack18_sample"
VIDEO = "009473_mpii_test"  # 1 frame, 2 GT persons
CLIP = SAMPLE / "videos" / "000001_mpiinew_test" / "000001_mpiinew_test.mp4"

pytestmark = [
    pytest.mark.usefixtures("torch_single_thread"),
    pytest.mark.skipif(not CLIP.is_file(), reason=f"shared sample absent: {SAMPLE}"),
]


def test_pose_and_detector_timings_on_the_sample(load_benchmark) -> None:
    bench = load_benchmark("video_own_speed")
    tiny = bench.PoseSetting("tiny", lambda: bench.official_single_frame("tiny", "pose_hrnet_tiny_64x48.pth"), "fast")
    persons, seconds = bench.pose_speed(
        tiny, SAMPLE / "images" / "val" / VIDEO, SAMPLE / "annotations" / "val" / f"{VIDEO}.json", repeats=1, batch=4
    )
    assert persons == 2 and seconds > 0
    frames = list(open_frames(CLIP))[:1]
    assert bench.detector_speed("ssdlite320_mobilenet_v3_large", frames, repeats=1, batch=1) > 0
