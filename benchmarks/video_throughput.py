"""Video pipeline throughput: exact vs fast vs the single-frame model, and a long 720p run.

Part 1 (one run, ratios): a SynthTrack clip with 3 people and its GT boxes goes through
``VideoPoseEstimator`` with FAMI-Pose in ``exact`` and ``fast`` mode and with the single-frame
model (same backbone, same boxes; in both modes, as fast mode's batching helps it too), for each
``--backbones`` preset at the tiny configs' 96x128 input. Reported: frames/s (decoded frames /
wall time, no overlay, after a warm-up run) and per-stage seconds; the ratios fast/exact and
(single-frame fps, its faster mode) / (fast fps), i.e. fast's cost relative to single-frame.

Part 2 (memory and stages): a long 1280x720 clip, a SynthTrack video played forward and backward
(continuous motion) to ``--long-seconds``, runs through ``fast`` mode with the overlay mp4 in a
child process per length; reported: per-stage seconds, frames/s and the child's peak RSS. Several
lengths show whether memory grows with the video; timings scale linearly, so a 5-minute figure
is extrapolated from them (said so in the output). The children call
``release_freed_frames_to_os()`` as ``famipose video`` does; ``--glibc-dynamic-threshold`` leaves
glibc's default, to show what allocator caching of freed frames adds.

    .venv/bin/python benchmarks/video_throughput.py
    .venv/bin/python benchmarks/video_throughput.py --frames 24 --backbones tiny --long-seconds 10 20
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from famipose.config import load_config
from famipose.data.synthtrack import generate_synthtrack
from famipose.inference import EstimatorOptions, TrackerConfig, VideoPoseEstimator, open_frames
from famipose.inference.video_io import release_freed_frames_to_os
from famipose.models.famipose import FamiPose
from famipose.video_writer import VideoWriter

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {variant: ROOT / "configs" / f"{variant}_tiny.yaml" for variant in ("famipose", "single_frame")}
LONG_SIZE = (1280, 720)
LONG_SOURCE_FRAMES = 60  # SynthTrack frames played back and forth to make the long clip


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64, help="frames of the 3-person SynthTrack clip")
    parser.add_argument("--size", type=int, nargs=2, default=(384, 288), help="clip size W H")
    parser.add_argument("--backbones", nargs="*", default=["tiny", "w32"], choices=["tiny", "w32", "w48"])
    parser.add_argument("--chunk", type=int, default=16, help="fast mode chunk length")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (the best counts)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on shared CPUs)")
    parser.add_argument("--long-seconds", type=float, nargs="*", default=[20.0, 60.0], help="long clip lengths")
    parser.add_argument("--long-fps", type=float, default=25.0)
    parser.add_argument("--work", type=Path, default=None, help="keep generated files here")
    parser.add_argument("--glibc-dynamic-threshold", action="store_true",
                        help="run long clips without release_freed_frames_to_os() (which `famipose video` "
                             "calls): glibc's dynamic mmap threshold keeps freed 720p frames in the heap")  # fmt: skip
    parser.add_argument("--child", nargs=3, metavar=("VIDEO", "BOXES", "OVERLAY"), help=argparse.SUPPRESS)
    return parser.parse_args()


def three_person_clip(work: Path, frames: int, size: tuple[int, int], split: str) -> tuple[Path, Path]:
    """The first SynthTrack seed whose video has exactly 3 people: (video, annotation file)."""
    for seed in range(50):
        generate_synthtrack(work, videos=1, frames=frames, size=size, seed=seed, split=split)
        annotation = next((work / "annotations" / split).glob("*.json"))
        tracks = {a["track_id"] for a in json.loads(annotation.read_text())["annotations"]}
        if len(tracks) == 3:
            return work / "videos" / split / f"{annotation.stem}.mp4", annotation
    raise RuntimeError("no SynthTrack seed below 50 gives 3 people")


def model_for(variant: str, backbone: str) -> FamiPose:
    """A randomly initialised network (speed does not depend on the weights)."""
    torch.manual_seed(0)
    return FamiPose(load_config(CONFIGS[variant], [f"model.backbone.name={backbone}"]).model).eval()


def throughput(args: argparse.Namespace, work: Path) -> None:
    """Part 1: exact vs fast vs single-frame on a 3-person clip; each configuration's fastest of
    ``--repeats`` interleaved runs (after one warm-up run each), so load bursts on a shared machine
    do not land on one configuration only."""
    video, boxes = three_person_clip(work / "clip", args.frames, tuple(args.size), "val")
    print(f"clip: {video.name}, {args.frames} frames {args.size[0]}x{args.size[1]}, 3 people, GT boxes; "
          f"input 96x128, chunk {args.chunk}, batch {args.batch}, {torch.get_num_threads()} thread(s), "
          f"best of {args.repeats} interleaved runs")  # fmt: skip
    configurations = {"exact": ("famipose", "exact"), "fast": ("famipose", "fast"),
                      "single exact": ("single_frame", "exact"), "single fast": ("single_frame", "fast")}  # fmt: skip
    for backbone in args.backbones:
        estimators = {}
        for name, (variant, mode) in configurations.items():
            options = EstimatorOptions(mode=mode, batch_size=args.batch, chunk_length=args.chunk,
                                       tracker=TrackerConfig(min_hits=1))  # fmt: skip
            estimators[name] = VideoPoseEstimator(
                model_for(variant, backbone), boxes=boxes, gt_json=boxes, options=options, device="cpu"
            )
            estimators[name].run(video)  # warm-up
        runs: dict[str, list] = {name: [] for name in configurations}
        for _ in range(args.repeats):
            for name, estimator in estimators.items():
                runs[name].append(estimator.run(video))
        best = {name: max(results, key=lambda r: r.throughput) for name, results in runs.items()}
        for name, result in best.items():
            detail = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items() if v >= 0.005)
            print(f"  {backbone:5s} {name:13s} {result.throughput:7.2f} frames/s   [{detail}]")
        fast, exact = best["fast"].throughput, best["exact"].throughput
        single = max(best["single exact"].throughput, best["single fast"].throughput)  # its faster mode
        print(f"  {backbone:5s} fast / exact = {fast / exact:.2f}x   "
              f"fast cost / single-frame (its faster mode) = {single / fast:.2f}x")


def long_clip(work: Path, seconds: float, fps: float) -> tuple[Path, Path]:
    """A 1280x720 mp4 of a SynthTrack video played back and forth, and its boxes per frame."""
    source_video, annotation = three_person_clip(work / "long_source", LONG_SOURCE_FRAMES, LONG_SIZE, "test")
    document = json.loads(annotation.read_text())
    position = {image["id"]: i for i, image in enumerate(document["images"])}
    per_frame: dict[int, list] = {}
    for entry in document["annotations"]:
        per_frame.setdefault(position[entry["image_id"]], []).append(entry["bbox"])
    images = [frame.image for frame in open_frames(source_video)]
    cycle = list(range(len(images))) + list(range(len(images) - 2, 0, -1))  # 0..n-1..1
    total = round(seconds * fps)
    video, boxes = work / f"long_{total}.mp4", work / f"long_{total}.json"
    entries = []
    with VideoWriter(video, fps) as writer:
        for t in range(total):
            source = cycle[t % len(cycle)]
            writer.write(images[source])
            entries += [{"frame_index": t, "bbox": box, "score": 1.0} for box in per_frame.get(source, [])]
    boxes.write_text(json.dumps(entries))
    return video, boxes


def child(video: Path, boxes: Path, overlay: Path, args: argparse.Namespace) -> None:
    """Part 2 worker: one fast-mode run with the overlay; prints JSON (stages, fps, peak RSS)."""
    if not args.glibc_dynamic_threshold:
        release_freed_frames_to_os()  # as `famipose video` does
    options = EstimatorOptions(mode="fast", batch_size=args.batch, chunk_length=args.chunk)
    estimator = VideoPoseEstimator(model_for("famipose", "tiny"), boxes=boxes, options=options, device="cpu")
    before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # imports and model
    result = estimator.run(video, overlay=overlay)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": result.num_decoded, "fps": result.throughput, "wall": result.wall_seconds,
                      "stages": result.timings, "peak_rss_mib": peak_mib, "before_rss_mib": before_mib}))  # fmt: skip


def long_runs(args: argparse.Namespace, work: Path) -> None:
    """Part 2: stages and peak RSS for long 720p clips, each in a fresh process."""
    print(f"long clips: {LONG_SIZE[0]}x{LONG_SIZE[1]} at {args.long_fps:g} fps, 3 people, tiny FAMI-Pose, fast mode, "
          "overlay mp4 written")  # fmt: skip
    reports = []
    for seconds in args.long_seconds:
        video, boxes = long_clip(work, seconds, args.long_fps)
        options = ["--threads", str(args.threads), "--chunk", str(args.chunk), "--batch", str(args.batch)]
        options += ["--glibc-dynamic-threshold"] if args.glibc_dynamic_threshold else []
        command = [sys.executable, __file__, *options, "--child", str(video), str(boxes), str(work / "overlay.mp4")]
        report = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        reports.append(report)
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in report["stages"].items())
        print(f"  {seconds:6.0f} s ({report['frames']} frames): {report['fps']:.1f} frames/s, "
              f"wall {report['wall']:.1f}s, peak RSS {report['peak_rss_mib']:.0f} MiB "
              f"({report['before_rss_mib']:.0f} MiB after imports and model load)   [{stages}]")  # fmt: skip
    if reports:
        five_minutes = 300 * args.long_fps
        per_frame = {k: v / reports[-1]["frames"] for k, v in reports[-1]["stages"].items()}
        extrapolated = ", ".join(f"{k} {v * five_minutes:.0f}s" for k, v in per_frame.items())
        wall = reports[-1]["wall"] / reports[-1]["frames"] * five_minutes
        print(f"  5 min extrapolated from the {args.long_seconds[-1]:g} s run ({five_minutes:.0f} frames; timings "
              f"scale linearly, memory is bounded by the chunk window: compare the peaks above): "
              f"wall {wall:.0f}s [{extrapolated}]")


def main() -> None:
    """Run both parts."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(*(Path(p) for p in args.child), args)
        return
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work or Path(temporary)
        throughput(args, work)
        long_runs(args, work)
    print(f"benchmark wall time {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
