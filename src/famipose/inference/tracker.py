"""Online multi-person tracking: Hungarian matching on box IoU and pose OKS, with hysteresis.

Each frame's persons are matched to the live tracks by ``scipy.optimize.linear_sum_assignment`` on
the cost ``1 - similarity``, where the similarity averages (with weights) the IoU of the person's
box with the track's predicted box and the OKS of its pose with the track's predicted pose (IoU
alone when either side has no confident joint or no pose was given). Predictions move a track's
last box and pose by its constant-velocity estimate, which keeps identities apart when people
cross. Pairs less similar than ``min_similarity`` are never matched.

Hysteresis: a new track is *tentative* until it has been matched in ``min_hits`` consecutive
frames, when it is *confirmed* and receives its public id (0, 1, 2, ... in confirmation order); a
tentative track that misses a frame is dropped, a confirmed one ends after ``max_misses``
consecutive misses. :meth:`PoseTracker.update` returns internal track keys; whether a key's track
was confirmed is final ``min_hits - 1`` updates later (:attr:`PoseTracker.confirmation_delay`).

Shape symbols: N persons of the frame, T live tracks, K joints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from famipose.data.keypoints import OKS_SIGMAS
from famipose.geometry import box_iou, pose_oks

_FORBIDDEN = 1e6  # cost of a pair below the similarity gate


@dataclass(frozen=True)
class TrackerConfig:
    """Matching and hysteresis settings.

    Attributes:
        min_hits: consecutive matched frames before a track is confirmed (N).
        max_misses: consecutive unmatched frames after which a confirmed track ends (M).
        iou_weight: weight of box IoU in the similarity.
        oks_weight: weight of pose OKS in the similarity.
        min_similarity: pairs below this similarity are never matched.
        min_joint_score: joints below this score are left out of the OKS.
        velocity_momentum: weight of the previous velocity in its running average.
    """

    min_hits: int = 2
    max_misses: int = 5
    iou_weight: float = 0.5
    oks_weight: float = 0.5
    min_similarity: float = 0.1
    min_joint_score: float = 0.2
    velocity_momentum: float = 0.5

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: ``min_hits < 1``, ``max_misses < 0`` or non-positive total weight.
        """
        if self.min_hits < 1 or self.max_misses < 0:
            raise ValueError(f"min_hits must be >= 1 and max_misses >= 0, got {self.min_hits}, {self.max_misses}")
        if self.iou_weight < 0 or self.oks_weight < 0 or self.iou_weight + self.oks_weight <= 0:
            raise ValueError("iou_weight and oks_weight must be >= 0 with a positive sum")


@dataclass
class _Track:
    key: int
    box: np.ndarray  # (4,) x, y, w, h at the last match
    pose: np.ndarray | None  # (K, 3) at the last match
    velocity: np.ndarray  # (2,) box displacement per frame
    hits: int = 1
    misses: int = 0
    public_id: int | None = None

    def shift(self) -> np.ndarray:
        """Displacement (2,) predicted since the last match."""
        return self.velocity * (self.misses + 1)


class PoseTracker:
    """Links persons across frames into tracks.

    Args:
        config: matching and hysteresis settings.
        sigmas: (K,) per-joint OKS falloff (default: the evaluator's PoseTrack values).
    """

    def __init__(self, config: TrackerConfig | None = None, sigmas: Sequence[float] = OKS_SIGMAS) -> None:
        self.config = config or TrackerConfig()
        self.sigmas = np.asarray(sigmas, np.float64)
        self.tracks: list[_Track] = []
        self.num_updates = 0
        self._public: dict[int, int] = {}
        self._next_key = 0

    @property
    def confirmation_delay(self) -> int:
        """Updates after which a key's confirmation status no longer changes."""
        return self.config.min_hits - 1

    def track_id(self, key: int) -> int | None:
        """Public id of a track key, or None while (or because) it was never confirmed."""
        return self._public.get(key)

    def similarity(self, boxes: np.ndarray, poses: np.ndarray | None) -> np.ndarray:
        """Similarity (T, N) of every live track to every person, before gating."""
        cfg = self.config
        predicted = np.array([np.r_[t.box[:2] + t.shift(), t.box[2:]] for t in self.tracks]).reshape(-1, 4)
        iou = box_iou(predicted, boxes)  # (T, N)
        if poses is None or not self.tracks:
            return iou
        oks = np.full_like(iou, np.nan)
        for row, track in enumerate(self.tracks):
            if track.pose is not None:
                moved = track.pose.copy()
                moved[:, :2] += track.shift()
                oks[row] = pose_oks(moved[None], poses, boxes[:, 2] * boxes[:, 3], cfg.min_joint_score, self.sigmas)
        total = cfg.iou_weight + cfg.oks_weight
        mixed = (cfg.iou_weight * iou + cfg.oks_weight * np.nan_to_num(oks)) / total
        return np.where(np.isnan(oks), iou, mixed)

    def update(self, boxes: np.ndarray, poses: np.ndarray | None = None) -> np.ndarray:
        """Match one frame's persons to the tracks and update them.

        Args:
            boxes: (N, 4) ``(x, y, w, h)``.
            poses: optional (N, K, 3) ``(x, y, score)`` in image pixels.

        Returns:
            (N,) int64 track keys; map them with :meth:`track_id`.
        """
        cfg = self.config
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        similarity = self.similarity(boxes, poses)  # (T, N)
        cost = np.where(similarity >= cfg.min_similarity, 1.0 - similarity, _FORBIDDEN)
        rows, cols = linear_sum_assignment(cost)
        by_row = {int(r): int(c) for r, c in zip(rows, cols, strict=True) if cost[r, c] < _FORBIDDEN}
        keys = np.empty(len(boxes), np.int64)
        alive = []
        for row, track in enumerate(self.tracks):
            col = by_row.get(row)
            if col is None:
                track.misses += 1
                if track.public_id is not None and track.misses <= cfg.max_misses:
                    alive.append(track)
                continue
            step = (boxes[col, :2] - track.box[:2]) / (track.misses + 1)
            track.velocity = cfg.velocity_momentum * track.velocity + (1 - cfg.velocity_momentum) * step
            track.box, track.misses, track.hits = boxes[col], 0, track.hits + 1
            track.pose = None if poses is None else np.asarray(poses[col], np.float64)
            keys[col] = track.key
            alive.append(track)
        for col in sorted(set(range(len(boxes))) - set(by_row.values())):
            pose = None if poses is None else np.asarray(poses[col], np.float64)
            track = _Track(self._next_key, boxes[col], pose, np.zeros(2))
            self._next_key += 1
            keys[col] = track.key
            alive.append(track)
        for track in alive:
            if track.public_id is None and track.hits >= cfg.min_hits:
                track.public_id = self._public[track.key] = len(self._public)
        self.tracks = alive
        self.num_updates += 1
        return keys
