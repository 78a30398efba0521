"""PoseTrack multi-person pose tracking metrics (MOTA, MOTP, precision, recall) as poseval computes them.

poseval scores tracking per joint type. In every evaluated frame, the GT persons that have the joint are the
objects, the predicted persons that have it are the hypotheses, and an (object, hypothesis) pair may be
matched when the joint's head-normalised distance is within the PCKh threshold (the distance is the cost).
One ``motmetrics.MOTAccumulator`` per joint and video carries tracks forward and solves the rest by a
minimum-distance assignment, counting misses, false positives and identity switches. Counts are summed over
videos, then per joint::

    MOTA = 100 (1 - (misses + switches + false positives) / objects)
    MOTP = 100 (1 - sum of matched distances / detections)        (0 when nothing was detected)
    precision = 100 detections / (detections + false positives),  recall = 100 detections / objects

Two poseval behaviours are reproduced on purpose, because published PoseTrack MOTA numbers include them:

* the last evaluated frame of every video is not fed to the accumulators;
* a frame with GT persons but no prediction left (or no GT person left after ignore regions) enters every
  joint's accumulator as one placeholder object and one placeholder hypothesis that may not be paired, i.e.
  one miss and one false positive whatever the real number of persons.

Shape symbols: P predicted persons, G GT persons, K joints, J evaluated joints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from famipose.data.keypoints import NUM_JOINTS

_COUNT_NAMES = ("num_misses", "num_switches", "num_false_positives", "num_objects", "num_detections")


@dataclass(frozen=True, eq=False)
class JointObservations:
    """One joint type in one frame, as handed to a MOT accumulator.

    Attributes:
        gt_ids: (G',) track ids of the GT persons that have the joint.
        pred_ids: (P',) track ids of the predicted persons that have it.
        distances: (G', P') head-normalised distances; NaN where the pair may not be matched.
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    distances: np.ndarray


# The observations of one frame: one entry per evaluated joint.
FrameObservations = tuple[JointObservations, ...]


@dataclass(frozen=True, eq=False)
class TrackingResult:
    """Per-joint tracking metrics in percent, (K,) arrays with NaN for joints that are not evaluated.

    Attributes:
        mota: multiple object tracking accuracy.
        motp: multiple object tracking precision (100 minus the mean matched normalised distance).
        precision: matched detections over all detections.
        recall: matched detections over GT joints.
        switches: (K,) number of identity switches.
    """

    mota: np.ndarray
    motp: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    switches: np.ndarray


def frame_observations(
    distances: np.ndarray,
    gt_present: np.ndarray,
    pred_present: np.ndarray,
    gt_ids: np.ndarray,
    pred_ids: np.ndarray,
    joints: Sequence[int],
    threshold: float,
) -> FrameObservations:
    """Per-joint MOT observations of one frame.

    Args:
        distances: (P, G, K) head-normalised joint distances (inf where a joint is missing on either side).
        gt_present: (G, K) annotated GT joints.
        pred_present: (P, K) predicted joints.
        gt_ids: (G,) GT track ids.
        pred_ids: (P,) predicted track ids.
        joints: the evaluated joints, in output order.
        threshold: largest normalised distance at which a pair may be matched (inclusive).

    Returns:
        One :class:`JointObservations` per joint of ``joints`` (poseval's placeholder pair when the frame has
        no GT person or no prediction).
    """
    num_pred, num_gt = distances.shape[:2]
    if num_pred == 0 or num_gt == 0:
        placeholder = JointObservations(np.zeros(1, int), np.zeros(1, int), np.full((1, 1), np.nan))
        return tuple(placeholder for _ in joints)
    observations = []
    for joint in joints:
        gt_rows = np.flatnonzero(gt_present[:, joint])
        pred_rows = np.flatnonzero(pred_present[:, joint])
        pair = distances[pred_rows][:, gt_rows, joint].T  # (G', P')
        observations.append(
            JointObservations(gt_ids[gt_rows], pred_ids[pred_rows], np.where(pair <= threshold, pair, np.nan))
        )
    return tuple(observations)


def count_mot_events(videos: Sequence[Sequence[FrameObservations]], num_joints: int) -> dict[str, np.ndarray]:
    """Run one motmetrics accumulator per joint and video and sum the event counts over videos.

    Args:
        videos: per video, the observations of its evaluated frames in order.
        num_joints: J, the number of observations per frame.

    Returns:
        (J,) arrays keyed by the motmetrics count names (``num_misses``, ``num_switches``,
        ``num_false_positives``, ``num_objects``, ``num_detections``) and ``sum_distance`` (the matched and
        switched pairs' distances).
    """
    import motmetrics  # optional dependency, needed only for tracking

    metrics = motmetrics.metrics.create()
    totals = {name: np.zeros(num_joints) for name in (*_COUNT_NAMES, "sum_distance")}
    for frames in videos:
        scored = frames[:-1]  # poseval leaves out the last frame of each video
        if not scored:
            continue
        accumulators = [motmetrics.MOTAccumulator(auto_id=True) for _ in range(num_joints)]
        for frame in scored:
            for accumulator, observed in zip(accumulators, frame, strict=True):
                accumulator.update(observed.gt_ids, observed.pred_ids, observed.distances)
        for joint, accumulator in enumerate(accumulators):
            counts = metrics.compute(accumulator, metrics=list(_COUNT_NAMES), return_dataframe=False)
            for name in _COUNT_NAMES:
                totals[name][joint] += counts[name]
            events = accumulator.mot_events
            totals["sum_distance"][joint] += events.D[events.Type.isin(["MATCH", "SWITCH"])].sum()
    return totals


def evaluate_tracking(videos: Sequence[Sequence[FrameObservations]], joints: Sequence[int]) -> TrackingResult:
    """Tracking metrics per joint, from the observations of every video.

    Args:
        videos: per video, the observations of its evaluated frames in order (one entry per joint of
            ``joints`` in each frame).
        joints: the evaluated joints, as indices into the K joints.

    Returns:
        The metrics, scattered into (K,) arrays.
    """
    counts = count_mot_events(videos, len(joints))
    objects = np.where(counts["num_objects"] > 0, counts["num_objects"], np.nan)
    detections = counts["num_detections"]
    claimed = detections + counts["num_false_positives"]
    errors = counts["num_misses"] + counts["num_switches"] + counts["num_false_positives"]
    with np.errstate(divide="ignore", invalid="ignore"):
        per_joint = {
            "mota": 100.0 * (1.0 - errors / objects),
            "motp": np.where(detections > 0, 100.0 * (1.0 - counts["sum_distance"] / detections), 0.0),
            "precision": 100.0 * detections / np.where(claimed > 0, claimed, np.nan),
            "recall": 100.0 * detections / objects,
            "switches": counts["num_switches"],
        }
    scattered = {}
    for name, values in per_joint.items():
        full = np.full(NUM_JOINTS, np.nan)
        full[list(joints)] = values
        scattered[name] = full
    return TrackingResult(**scattered)
