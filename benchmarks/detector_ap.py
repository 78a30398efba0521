"""Person-box AP@0.5 of the built-in detectors on SynthTrack val (which one `--detector auto` should be).

Generates a SynthTrack val split, runs each weight-free detector (OpenCV's HOG people detector,
background-subtraction ``motion``) over every video frame by frame, cleans the boxes as the video
command does (score threshold 0, NMS) and scores them against the ground-truth person boxes with
VOC all-point AP at IoU 0.5 (greedy matching by descending score, per frame).

    .venv/bin/python benchmarks/detector_ap.py --videos 3 --frames 40 --size 640x480
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from famipose.data.posetrack import load_posetrack
from famipose.data.synthtrack import generate_synthtrack, parse_size
from famipose.evaluation.posetrack_ap import average_precision
from famipose.geometry import box_iou
from famipose.inference.detector import HOGPersonDetector, MotionPersonDetector, clean_detections
from famipose.inference.video_io import open_frames


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", default="640x480", help="frame size WxH")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def match_frame(boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """True-positive flags of one frame's detections, matched greedily by score to GT (boxes ``(x, y, w, h)``)."""
    order = np.argsort(-scores, kind="stable")
    iou = box_iou(boxes[order], gt) if len(gt) else np.zeros((len(order), 0))
    taken = np.zeros(len(gt), bool)
    is_tp = np.zeros(len(boxes), bool)
    for rank, det in enumerate(order):
        candidates = np.where(~taken & (iou[rank] >= threshold))[0]
        if len(candidates):
            taken[candidates[np.argmax(iou[rank, candidates])]] = True
            is_tp[det] = True
    return is_tp


def main() -> None:
    """Generate the data, run the detectors, print AP and speed."""
    args = parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_synthtrack(root, videos=args.videos, frames=args.frames, size=size, seed=args.seed, split="val")
        split = load_posetrack(root / "annotations" / "val", root)
        print(f"SynthTrack val: {args.videos} videos x {args.frames} frames at {size[0]}x{size[1]}")
        print(f"{'detector':<10}{'AP@0.5':>8}{'recall':>8}{'frames/s':>10}")
        for name, make in (("hog", HOGPersonDetector), ("motion", MotionPersonDetector)):
            scores, flags, num_gt, frames, seconds = [], [], 0, 0, 0.0
            for video in split.videos.values():
                detector = make()
                by_index = {frame.frame_index: frame for frame in video.frames}
                clip = root / "videos" / "val" / f"{video.frames[0].path.parent.name}.mp4"
                for frame in open_frames(clip):
                    start = time.perf_counter()
                    found, _ = clean_detections(detector(frame), size, score_threshold=0.0)
                    seconds += time.perf_counter() - start
                    frames += 1
                    record = by_index.get(frame.index)
                    if record is None:
                        continue
                    gt = np.array([p.bbox for p in split.persons(record.image_id)], np.float64).reshape(-1, 4)
                    num_gt += len(gt)
                    flags.append(match_frame(found.boxes, found.scores, gt))
                    scores.append(found.scores)
            all_scores, all_flags = np.concatenate(scores), np.concatenate(flags)
            ap = average_precision(all_scores, all_flags, num_gt)
            print(f"{name:<10}{100 * ap:>8.1f}{100 * all_flags.sum() / max(num_gt, 1):>8.1f}{frames / seconds:>10.1f}")


if __name__ == "__main__":
    main()
