"""CPU speed of `famipose video` on a real clip at the official HRNet crop sizes, and of two detectors.

Pose models (random weights: the cost does not depend on the weight values), each run through
``VideoPoseEstimator`` on a real PoseTrack18 frame with its ground-truth person boxes
(``--boxes`` and ``--gt-json`` = the video's annotation file, as `famipose video` reads them):

* single-frame HRNet-W32 256x192 and HRNet-W48 384x288, built by ``official_hrnet_model`` from a
  random state dict in the official layout (what ``--checkpoint pose_hrnet_w48_384x288.pth`` builds);
* FAMI-Pose W48 384x288 (``configs/famipose_w48_384x288.yaml``) in ``--mode fast`` and ``--mode exact``.

Reported: person-frames/s = person boxes processed / seconds of the pose stages (crop, backbone,
alignment, postprocess) from the estimator's stage timings; decoding, detection and tracking are
left out. The clip is a single frame, so every support frame of a window is the key frame: exact
mode still crops and runs the backbone 1 + S times per person, fast mode once (its steady-state
cost on a longer video, without the feature re-framing of moving boxes).

Detectors (torchvision, random weights saved to a temporary file and loaded with
``build_torchvision_detector``): frames/s of ``TorchvisionDetector.detect_batch`` on the frames of a
real 1280x720 clip (the first ``--detector-frames``: Faster R-CNN takes seconds a frame on a CPU;
the model resizes them internally as torchvision does).

Each measurement: one warm-up run, then the best of ``--repeats`` runs. About 90 seconds on the
project's 2 CPU cores. From the repository root:

    PYTHONPATH=src .venv/bin/python benchmarks/video_own_speed.py
    PYTHONPATH=src .venv/bin/python benchmarks/video_own_speed.py --models w32-single \
        --detectors ssdlite320_mobilenet_v3_large --repeats 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

from famipose.config import load_config
from famipose.inference import EstimatorOptions, Frame, TrackerConfig, VideoPoseEstimator, open_frames
from famipose.inference.learned_detectors import TorchvisionDetector, build_torchvision_detector
from famipose.models.checkpoint import official_hrnet_model
from famipose.models.famipose import FamiPose
from famipose.models.hrnet import HRNet

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / ".." / "shared" / "data" / "posetrack18_sample"
POSE_STAGES = ("crop", "backbone", "alignment", "postprocess")


@dataclass(frozen=True)
class PoseSetting:
    """One pose model to time: how to build it and the mode it runs in."""

    label: str
    build: Callable[[], FamiPose]
    mode: str


def official_single_frame(preset: str, file_name: str) -> FamiPose:
    """The single-frame model of an official HRNet checkpoint named ``file_name``, with random weights."""
    torch.manual_seed(0)
    model, _ = official_hrnet_model(HRNet.from_name(preset).state_dict(), Path(file_name))
    return model


def famipose_w48() -> FamiPose:
    """FAMI-Pose of ``configs/famipose_w48_384x288.yaml`` with random weights."""
    torch.manual_seed(0)
    return FamiPose(load_config(ROOT / "configs" / "famipose_w48_384x288.yaml").model)


SETTINGS = {
    "w32-single": PoseSetting(
        "single-frame HRNet-W32 256x192", lambda: official_single_frame("w32", "pose_hrnet_w32_256x192.pth"), "exact"
    ),
    "w48-single": PoseSetting(
        "single-frame HRNet-W48 384x288", lambda: official_single_frame("w48", "pose_hrnet_w48_384x288.pth"), "exact"
    ),
    "famipose-fast": PoseSetting("FAMI-Pose W48 384x288 --mode fast", famipose_w48, "fast"),
    "famipose-exact": PoseSetting("FAMI-Pose W48 384x288 --mode exact", famipose_w48, "exact"),
}
DETECTORS = ("ssdlite320_mobilenet_v3_large", "fasterrcnn_resnet50_fpn_v2")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--detectors", nargs="*", default=list(DETECTORS), help="torchvision detector names")
    parser.add_argument("--pose-video", default="009473_mpii_test",
                        help="val video of the sample: images/val/<it>/, annotations/val/<it>.json")  # fmt: skip
    parser.add_argument("--detector-video", type=Path,
                        default=SAMPLE / "videos" / "000001_mpiinew_test" / "000001_mpiinew_test.mp4")  # fmt: skip
    parser.add_argument("--sample", type=Path, default=SAMPLE, help="the PoseTrack18 sample folder")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (the best counts)")
    parser.add_argument("--batch", type=int, default=32, help="crops per backbone call")
    parser.add_argument("--detector-frames", type=int, default=2, help="frames of the clip each detector pass takes")
    parser.add_argument("--detect-batch", type=int, default=4, help="frames per detector call")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: PyTorch's default)")
    parser.add_argument("--device", default="cpu", help="where the networks run (cpu, cuda)")
    return parser.parse_args()


def pose_speed(
    setting: PoseSetting, frames: Path, boxes: Path, repeats: int, batch: int, device: str = "cpu"
) -> tuple[int, float]:
    """Persons processed per run and the best pose-stage seconds of ``repeats`` runs (after a warm-up).

    Args:
        setting: the model and mode.
        frames: the clip (video file or image folder).
        boxes: its PoseTrack18 annotation file (person boxes and frame names).
        repeats: timed runs.
        batch: crops per backbone call.
        device: where the network runs.
    """
    options = EstimatorOptions(mode=setting.mode, batch_size=batch, tracker=TrackerConfig(min_hits=1))
    estimator = VideoPoseEstimator(setting.build(), boxes=boxes, gt_json=boxes, options=options, device=device)
    estimator.run(frames)  # warm-up
    best, persons = float("inf"), 0
    for _ in range(repeats):
        result = estimator.run(frames)
        persons = sum(len(frame.persons) for frame in result.frames)
        best = min(best, sum(result.timings[stage] for stage in POSE_STAGES))
    return persons, best


def detector_speed(name: str, frames: list[Frame], repeats: int, batch: int, device: str = "cpu") -> float:
    """The best seconds of ``repeats`` passes of torchvision detector ``name`` (random weights, ``batch``
    frames per call) over ``frames``, after a warm-up on the first frame."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / f"{name}.pth"
        torch.save(torchvision.models.get_model(name, weights=None, weights_backbone=None).state_dict(), weights)
        detector = TorchvisionDetector(build_torchvision_detector(name, weights), device, batch)
    detector.detect_batch(frames[:1])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        detector.detect_batch(frames)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    """Time the chosen pose models and detectors; print one line each."""
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s) of {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, best of {args.repeats} runs after a warm-up")  # fmt: skip
    frames = args.sample / "images" / "val" / args.pose_video
    boxes = args.sample / "annotations" / "val" / f"{args.pose_video}.json"
    print(f"pose: {frames} (GT boxes of {boxes.name}), batch {args.batch}; pose stages {', '.join(POSE_STAGES)}")
    for key in args.models:
        setting = SETTINGS[key]
        persons, seconds = pose_speed(setting, frames, boxes, args.repeats, args.batch, args.device)
        print(f"  {setting.label:38s} {persons / seconds:7.2f} person-frames/s  ({persons} persons in {seconds:.2f}s)")
    if args.detectors:
        clip = list(open_frames(args.detector_video))[: args.detector_frames]
        height, width = clip[0].image.shape[:2]
        print(f"detectors: {args.detector_video}, {len(clip)} frames {width}x{height}, {args.detect_batch} per call")
    for name in args.detectors:
        seconds = detector_speed(name, clip, args.repeats, args.detect_batch, args.device)
        print(f"  {name:38s} {len(clip) / seconds:7.2f} frames/s  ({len(clip)} frames in {seconds:.2f}s)")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
          f"benchmark wall time {time.perf_counter() - start:.0f}s")  # fmt: skip


if __name__ == "__main__":
    main()
