"""PoseTrack multi-person pose estimation AP, as the official poseval tool defines it (pure numpy).

Per GT video and frame with at least one GT person:

1. Ignore regions: every GT and predicted joint strictly inside one of the frame's ignore polygons is
   removed; in a frame that has ignore regions, persons left without joints are removed.
2. Distances: a predicted joint's distance to the same GT joint is divided by the GT head size,
   0.6 × the diagonal of the GT head box; the joint matches when this is ≤ 0.5 (PCKh@0.5, inclusive).
3. Person assignment (poseval's greedy rule, not an optimal assignment): with
   ``pck[p, g] = matched joints / joints annotated on g``, each prediction keeps only its best GT (first on
   ties); each GT then takes, among the predictions that kept it, the one with the highest ``pck`` (first
   on ties), if that is above 0. Prediction scores play no part.
4. Detections: each predicted joint is a detection scored by its own score; it is a true positive when
   its person is assigned and the joint matches the assigned GT's joint, a false positive otherwise.

Per joint, detections of all frames of all videos are ranked by score and AP is the VOC all-point area
under the precision envelope, with every annotated GT joint as a positive. Results are percent. Head is
the mean of head_top, head_bottom and nose; Shoulder ... Ankle the mean of the left and right joint;
Total the mean over the 15 evaluated joints (ears excluded), ignoring NaN.

Shape symbols: P predicted persons, G GT persons, K joints, V polygon vertices, D detections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from famipose.data.errors import DataError
from famipose.data.keypoints import NUM_JOINTS, POSETRACK_JOINTS
from famipose.evaluation.io import (
    EVALUATED_JOINTS,
    EvalPerson,
    VideoPair,
    head_boxes,
    load_video_pairs,
    stack_persons,
)
from famipose.evaluation.tracking import FrameObservations, TrackingResult, evaluate_tracking, frame_observations

PCKH_THRESHOLD = 0.5
HEAD_SIZE_FACTOR = 0.6

# Reported joint groups: column title, short title, joint names.
JOINT_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Head", "Head", ("head_top", "head_bottom", "nose")),
    ("Shoulder", "Shou", ("left_shoulder", "right_shoulder")),
    ("Elbow", "Elb", ("left_elbow", "right_elbow")),
    ("Wrist", "Wri", ("left_wrist", "right_wrist")),
    ("Hip", "Hip", ("left_hip", "right_hip")),
    ("Knee", "Knee", ("left_knee", "right_knee")),
    ("Ankle", "Ankl", ("left_ankle", "right_ankle")),
)


@dataclass(frozen=True, eq=False)
class FrameMatch:
    """Result of matching one frame's predicted persons to its GT persons.

    Attributes:
        distances: (P, G, K) head-normalised joint distances, inf where a joint is missing on either side.
        pred_to_gt: (P,) assigned GT person of each prediction, -1 when unassigned.
        is_tp: (P, K) whether each predicted joint is a true positive.
    """

    distances: np.ndarray
    pred_to_gt: np.ndarray
    is_tp: np.ndarray


@dataclass(frozen=True, eq=False)
class EvalResult:
    """PoseTrack evaluation result, in percent.

    Attributes:
        ap: (K,) per-joint AP with NaN for the joints poseval does not evaluate (the ears).
        num_frames: number of evaluated frames (GT frames with at least one person).
        tracking: tracking metrics when requested.
    """

    ap: np.ndarray
    num_frames: int
    tracking: TrackingResult | None = None

    @property
    def grouped(self) -> dict[str, float]:
        """AP per joint group (Head, Shoulder, ..., Ankle)."""
        return {name: value for name, value in summarize_joints(self.ap).items() if name != "Total"}

    @property
    def total(self) -> float:
        """Mean AP over the evaluated joints."""
        return summarize_joints(self.ap)["Total"]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary: grouped AP and Total at the top level, per-joint AP, tracking (NaN → null).

        MOTA is poseval's and left unclipped: it is negative for a joint whose misses, false
        positives and identity switches outnumber its GT occurrences.
        """
        result: dict[str, Any] = {**_nan_to_none(summarize_joints(self.ap)), "per_joint_ap": _per_joint(self.ap)}
        result["num_frames"] = self.num_frames
        if self.tracking is not None:
            metrics = _tracking_rows(self.tracking)
            result["tracking"] = {name: _nan_to_none(summarize_joints(values)) for name, values in metrics.items()}
            result["tracking"]["per_joint"] = {
                POSETRACK_JOINTS[j]: {name: _finite_or_none(values[j]) for name, values in metrics.items()}
                for j in EVALUATED_JOINTS
            }
        return result

    def table(self) -> Table:
        """A rich table with one row per metric and the columns Head Shou Elb Wri Hip Knee Ankl Total."""
        table = Table(title=f"PoseTrack evaluation ({self.num_frames} frames)")
        table.add_column("Metric")
        for _, short, _ in JOINT_GROUPS:
            table.add_column(short, justify="right")
        table.add_column("Total", justify="right")
        rows = {"AP": self.ap, **(_tracking_rows(self.tracking) if self.tracking is not None else {})}
        for name, values in rows.items():
            table.add_row(name, *(f"{v:.1f}" for v in summarize_joints(values).values()))
        return table


def _tracking_rows(tracking: TrackingResult) -> dict[str, np.ndarray]:
    return {"MOTA": tracking.mota, "MOTP": tracking.motp, "Precision": tracking.precision, "Recall": tracking.recall}


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _nan_to_none(values: Mapping[str, float]) -> dict[str, float | None]:
    return {name: _finite_or_none(value) for name, value in values.items()}


def _per_joint(values: np.ndarray) -> dict[str, float | None]:
    return {POSETRACK_JOINTS[j]: _finite_or_none(values[j]) for j in EVALUATED_JOINTS}


def summarize_joints(values: np.ndarray) -> dict[str, float]:
    """Group means and Total of a per-joint metric, as poseval reports them.

    Args:
        values: (K,) per-joint values.

    Returns:
        Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle (plain means, NaN if a member is NaN) and Total
        (mean over the evaluated joints that are not NaN; NaN if all are).
    """
    summary = {
        name: float(np.mean([values[POSETRACK_JOINTS.index(j)] for j in joints])) for name, _, joints in JOINT_GROUPS
    }
    evaluated = values[list(EVALUATED_JOINTS)]
    finite = evaluated[~np.isnan(evaluated)]
    summary["Total"] = float(finite.mean()) if finite.size else float("nan")
    return summary


def head_size_from_boxes(boxes: np.ndarray) -> np.ndarray:
    """PCKh reference length: 0.6 × head box diagonal.

    Args:
        boxes: (G, 4) head boxes x1, y1, x2, y2.

    Returns:
        (G,) head sizes.
    """
    delta = boxes[:, 2:] - boxes[:, :2]
    return HEAD_SIZE_FACTOR * np.sqrt(np.sum(delta * delta, axis=1))


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which points lie strictly inside a polygon (points on its boundary do not, as shapely's ``contains``).

    Args:
        points: (N, 2) x, y.
        polygon: (V, 2) vertices in order (closing vertex optional). With fewer than three vertices the
            polygon has no interior.

    Returns:
        (N,) bool.
    """
    if len(polygon) < 3:
        return np.zeros(len(points), bool)
    px, py = points[:, None, 0], points[:, None, 1]  # (N, 1)
    ax, ay = polygon[:, 0], polygon[:, 1]  # (V,)
    bx, by = np.roll(ax, -1), np.roll(ay, -1)
    cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)  # (N, V)
    within_x = (np.minimum(ax, bx) <= px) & (px <= np.maximum(ax, bx))
    within_y = (np.minimum(ay, by) <= py) & (py <= np.maximum(ay, by))
    on_boundary = np.any((cross == 0) & within_x & within_y, axis=1)
    straddles = (ay > py) != (by > py)  # edge crosses the horizontal line through the point
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = ax + (py - ay) * (bx - ax) / (by - ay)
    crossings = np.sum(straddles & (px < x_at), axis=1)
    return (crossings % 2 == 1) & ~on_boundary


def remove_ignored(persons: Sequence[EvalPerson], regions: Sequence[np.ndarray]) -> tuple[EvalPerson, ...]:
    """Drop the joints inside ignore regions; with regions present, drop persons left without joints.

    Args:
        persons: GT or predicted persons of a frame.
        regions: the GT frame's ignore polygons, each (V, 2).

    Returns:
        The remaining persons, in order (unchanged when there is no region).
    """
    if not regions:
        return tuple(persons)
    kept = []
    for person in persons:
        inside = np.zeros(NUM_JOINTS, bool)
        for polygon in regions:
            inside |= points_in_polygon(person.keypoints, polygon)
        present = person.present & ~inside
        if present.any():
            keypoints = np.where(present[:, None], person.keypoints, 0.0)
            kept.append(EvalPerson(keypoints, present, person.scores, person.track_id, person.head_box))
    return tuple(kept)


def match_frame(
    gt_kpts: np.ndarray,
    gt_vis: np.ndarray,
    head_sizes: np.ndarray,
    pred_kpts: np.ndarray,
    pred_vis: np.ndarray,
    threshold: float = PCKH_THRESHOLD,
) -> FrameMatch:
    """Assign predicted persons to GT persons in one frame and label predicted joints (poseval's rule).

    Args:
        gt_kpts: (G, K, 2) GT joint positions.
        gt_vis: (G, K) annotated GT joints.
        head_sizes: (G,) PCKh reference length of each GT person.
        pred_kpts: (P, K, 2) predicted joint positions.
        pred_vis: (P, K) predicted joints.
        threshold: largest matching distance in head sizes (inclusive).

    Returns:
        Distances, the person assignment and the true-positive labels.
    """
    num_pred, num_gt, num_joints = len(pred_kpts), len(gt_kpts), gt_kpts.shape[1]
    delta = pred_kpts[:, None] - gt_kpts[None]  # (P, G, K, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.sqrt(np.sum(delta * delta, axis=-1)) / head_sizes[None, :, None]  # (P, G, K)
    distances = np.where(pred_vis[:, None] & gt_vis[None], scaled, np.inf)
    matches = distances <= threshold  # (P, G, K)
    pred_to_gt = np.full(num_pred, -1)
    if num_pred and num_gt:
        annotated = gt_vis.sum(axis=1)  # (G,)
        pck = matches.sum(axis=2) / np.where(annotated > 0, annotated, 1)  # (P, G)
        keep = np.zeros_like(pck)
        rows = np.arange(num_pred)
        best_gt = pck.argmax(axis=1)
        keep[rows, best_gt] = pck[rows, best_gt]
        best_pred = keep.argmax(axis=0)  # (G,)
        for gt, pred in enumerate(best_pred):
            if keep[pred, gt] > 0:
                pred_to_gt[pred] = gt
    assigned = pred_to_gt >= 0
    is_tp = np.zeros((num_pred, num_joints), bool)
    is_tp[assigned] = matches[np.flatnonzero(assigned), pred_to_gt[assigned]]
    return FrameMatch(distances, pred_to_gt, is_tp)


def average_precision(scores: np.ndarray, is_tp: np.ndarray, num_gt: int) -> float:
    """VOC all-point average precision of ranked detections, as a fraction.

    Detections are ranked by descending score; the precision envelope (running maximum from the right) is
    summed over the recall steps.

    Args:
        scores: (D,) detection scores.
        is_tp: (D,) whether each detection is a true positive.
        num_gt: number of positives.

    Returns:
        AP in [0, 1]; 0 when there is no detection and NaN when there are detections but no positive
        (poseval's values for these cases).
    """
    if len(scores) == 0:
        return 0.0
    if num_gt == 0:
        return float("nan")
    order = np.argsort(scores)[::-1]  # the ranking poseval uses, ties included
    true_positives = np.cumsum(np.asarray(is_tp, bool)[order])
    recall = np.concatenate([[0.0], true_positives / num_gt, [1.0]])
    precision = np.concatenate([[0.0], true_positives / np.arange(1, len(order) + 1), [0.0]])
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * envelope[steps]))


def _track_ids(persons: Sequence[EvalPerson], video: str, frame: str) -> np.ndarray:
    if any(p.track_id is None for p in persons):
        raise DataError(video, "tracking needs a track_id on every person", entry=frame)
    return np.array([p.track_id for p in persons], int)


def evaluate_videos(videos: Sequence[VideoPair], track: bool = False) -> EvalResult:
    """Evaluate paired GT and prediction videos.

    Args:
        videos: the videos, each with one prediction frame per GT frame.
        track: also compute the tracking metrics (needs track ids and the ``motmetrics`` package).

    Returns:
        Per-joint AP (and tracking metrics) over all frames of all videos.
    """
    scores: list[list[np.ndarray]] = [[np.zeros(0)] for _ in range(NUM_JOINTS)]
    labels: list[list[np.ndarray]] = [[np.zeros(0, bool)] for _ in range(NUM_JOINTS)]
    num_gt = np.zeros(NUM_JOINTS, int)
    observations: list[list[FrameObservations]] = []
    num_frames = 0
    for video in videos:
        observations.append([])
        for gt_frame, pred_frame in zip(video.gt, video.pred, strict=True):
            if not (gt_frame.persons or gt_frame.pointless_persons):
                continue
            num_frames += 1
            gt_persons = remove_ignored(gt_frame.persons, gt_frame.ignore_regions)
            pred_persons = remove_ignored(pred_frame.persons, gt_frame.ignore_regions)
            gt, pred = stack_persons(gt_persons), stack_persons(pred_persons)
            match = match_frame(
                gt.keypoints, gt.present, head_size_from_boxes(head_boxes(gt_persons)), pred.keypoints, pred.present
            )
            for joint in EVALUATED_JOINTS:
                detected = pred.present[:, joint]
                scores[joint].append(pred.scores[detected, joint])
                labels[joint].append(match.is_tp[detected, joint])
            num_gt += gt.present.sum(axis=0)
            if track:
                gt_ids = _track_ids(gt_persons, video.name, gt_frame.file_name)
                pred_ids = _track_ids(pred_persons, video.name, gt_frame.file_name)
                observations[-1].append(
                    frame_observations(
                        match.distances, gt.present, pred.present, gt_ids, pred_ids, EVALUATED_JOINTS, PCKH_THRESHOLD
                    )
                )
    ap = np.full(NUM_JOINTS, np.nan)
    for joint in EVALUATED_JOINTS:
        ap[joint] = 100.0 * average_precision(
            np.concatenate(scores[joint]), np.concatenate(labels[joint]), int(num_gt[joint])
        )
    tracking = evaluate_tracking(observations, EVALUATED_JOINTS) if track else None
    return EvalResult(ap, num_frames, tracking)


def evaluate_posetrack(gt_dir: Path, pred_dir: Path, track: bool = False, allow_missing: bool = False) -> EvalResult:
    """Evaluate a folder of per-video prediction files against a folder of GT files (poseval's protocol).

    Args:
        gt_dir: GT files, one per video (PoseTrack17 or PoseTrack18 layout).
        pred_dir: prediction files named like the GT files (either layout).
        track: also compute the tracking metrics (MOTA, MOTP, precision, recall).
        allow_missing: score a GT video without a prediction file as having no predictions.

    Returns:
        The evaluation result, in percent.

    Raises:
        FileNotFoundError: a folder or a prediction file is missing.
        DataError: a file is malformed, or ``track`` is set and a person has no track id.
    """
    return evaluate_videos(load_video_pairs(gt_dir, pred_dir, allow_missing), track)
