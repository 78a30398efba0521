"""Measures SynthTrack generation speed (frames per second, everything written: JPEGs, mp4, JSON).

Generates the requested split into a temporary folder (or ``--out``) once per difficulty and
reports wall time, frames/s and the degradation statistics of each run. ``--figures DIR`` also
draws the documentation figures (docs/img/synthtrack_*.png) from the generated data.

    .venv/bin/python benchmarks/synth.py --videos 20 --frames 60 --size 384x288
    .venv/bin/python benchmarks/synth.py --videos 2 --figures docs/img
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from famipose.data.keypoints import NUM_JOINTS, SKELETON
from famipose.data.synthtrack import generate_synthtrack, parse_size

_LEFT, _RIGHT, _CENTRE = (255, 160, 0), (0, 140, 255), (255, 255, 255)  # BGR joint colours


def parse_args() -> argparse.Namespace:
    """Command-line options; defaults: the 20 × 60-frame 384x288 set that must take ≤ 60 s."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", default="384x288", help="WxH")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", nargs="+", default=["easy", "hard"], choices=["easy", "hard"])
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--out", type=Path, default=None, help="keep the output here instead of a temp dir")
    parser.add_argument("--figures", type=Path, default=None, help="write the documentation figures here")
    return parser.parse_args()


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _save_png(path: Path, image: np.ndarray) -> None:
    """Write a small PNG: 5 bits per channel (sensor noise otherwise dominates the file size)."""
    cv2.imwrite(str(path), image & 0xF8, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def _strip(frames: list[np.ndarray], scale: float, key: int | None = None) -> np.ndarray:
    """Frames side by side, scaled, with a 2 px gap; frame ``key`` outlined in red."""
    tiles = []
    for i, frame in enumerate(frames):
        tile = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if i == key:
            cv2.rectangle(tile, (0, 0), (tile.shape[1] - 1, tile.shape[0] - 1), (0, 0, 255), 2)
        tiles += [tile, np.full((tile.shape[0], 2, 3), 255, np.uint8)]
    return np.hstack(tiles[:-1])


def _overlay(image: np.ndarray, entry: dict[str, Any], annotations: list[dict[str, Any]],
             detections: list[dict[str, Any]]) -> np.ndarray:  # fmt: skip
    """Draw ignore regions, detections, boxes, head boxes and skeletons of one frame."""
    out = image.copy()
    for xs, ys in zip(entry["ignore_regions_x"], entry["ignore_regions_y"], strict=True):
        cv2.polylines(out, [np.round(np.stack([xs, ys], 1)).astype(np.int32)], True, (255, 255, 255), 1)
    for det in detections:
        x, y, w, h = np.round(det["bbox"]).astype(int)
        cv2.rectangle(out, (x, y), (x + w, y + h), (255, 0, 255), 1)
        cv2.putText(out, f"{det['score']:.2f}", (x, y + h - 2), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 0, 255), 1)
    for ann in annotations:
        kps = np.array(ann["keypoints"]).reshape(NUM_JOINTS, 3)
        for key, colour in (("bbox", (0, 255, 0)), ("bbox_head", (0, 255, 255))):
            x, y, w, h = np.round(ann[key]).astype(int)
            cv2.rectangle(out, (x, y), (x + w, y + h), colour, 1)
        for a, b in SKELETON:
            if kps[a, 2] and kps[b, 2]:
                cv2.line(out, tuple(np.round(kps[a, :2]).astype(int)), tuple(np.round(kps[b, :2]).astype(int)),
                         (0, 0, 255), 1, cv2.LINE_AA)  # fmt: skip
        for k, (x, y, v) in enumerate(kps):
            if v:
                colour = _CENTRE if k < 5 else _LEFT if k % 2 else _RIGHT
                cv2.circle(out, (round(x), round(y)), 2, colour, -1, cv2.LINE_AA)
    return out


def write_figures(root: Path, out: Path) -> None:
    """Draw the documentation figures from ``root/easy`` and ``root/hard`` (split ``train``).

    ``synthtrack_easy.png``: three frames of an easy video. ``synthtrack_hard.png``: t-2 .. t+2 of
    the hard frame with the most recoverable joints (t outlined). ``synthtrack_labels.png``: the
    clearest of those five frames with its labels (skeletons, boxes, head boxes, ignore regions,
    detections).
    """
    out.mkdir(parents=True, exist_ok=True)
    easy = sorted((root / "easy" / "annotations" / "train").glob("*.json"))[0]
    images = _load(easy)["images"]
    picks = [images[i] for i in np.linspace(0, len(images) - 1, 3).astype(int)]
    frames = [cv2.imread(str(root / "easy" / im["file_name"])) for im in picks]
    _save_png(out / "synthtrack_easy.png", _strip(frames, 0.5))
    hard = root / "hard"
    best = (-1, Path(), 0)
    for path in sorted((hard / "synthtrack_flags" / "train").glob("*.json")):
        flags = _load(path)
        visible, degraded = np.array(flags["visible"], bool), np.array(flags["degraded"], bool)
        clean = visible & ~degraded
        for t in range(2, len(visible) - 2):
            score = int((degraded[t] & (clean[t - 2 : t].any(0) | clean[t + 1 : t + 3].any(0))).sum())
            best = max(best, (score, path, t), key=lambda item: item[0])
    _, path, t = best
    data = _load(hard / "annotations" / "train" / path.name)
    window = data["images"][t - 2 : t + 3]
    frames = [cv2.imread(str(hard / im["file_name"])) for im in window]
    _save_png(out / "synthtrack_hard.png", _strip(frames, 0.5, key=2))
    flags = _load(hard / "synthtrack_flags" / "train" / path.name)
    clean = np.array(flags["visible"], bool) & ~np.array(flags["degraded"], bool)
    shown = t - 2 + int(np.argmax(clean[t - 2 : t + 3].sum(axis=(1, 2))))
    entry = data["images"][shown]
    annotations = [a for a in data["annotations"] if a["image_id"] == entry["id"]]
    detections = [d for d in _load(hard / "detections" / "train.json") if d["image_id"] == entry["id"]]
    _save_png(out / "synthtrack_labels.png", _overlay(frames[shown - t + 2], entry, annotations, detections))


def main() -> None:
    """Run the generator per difficulty and print one line of timing and statistics each."""
    args = parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        for difficulty in args.difficulty:
            start = time.perf_counter()
            stats = generate_synthtrack(
                root / difficulty, videos=args.videos, frames=args.frames, size=size, seed=args.seed,
                difficulty=difficulty, workers=args.workers,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            print(
                f"{difficulty}: {stats.frames} frames {size[0]}x{size[1]} in {seconds:.1f} s = "
                f"{stats.frames / seconds:.1f} frames/s | degraded {stats.degraded_fraction:.1%}, "
                f"recoverable {stats.recoverable_fraction:.1%} of {stats.labeled_joints} labelled joints"
            )
        if args.figures is not None:
            write_figures(root, args.figures)


if __name__ == "__main__":
    main()
