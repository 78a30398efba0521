"""The person-pose result: one type for ``famipose test``, ``famipose video`` and the overlay.

:mod:`famipose.engine.evaluate` predicts untracked persons from the crops of its evaluation
windows, :mod:`famipose.inference` tracked persons in detection boxes, and
:mod:`famipose.inference.draw` draws either (or persons read back from a prediction file). The
module imports nothing of theirs, so each of them may use it.

Shape symbols: K joints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class PersonPose:
    """One person's pose in one frame.

    Attributes:
        track_id: public track id, or ``None`` for an untracked person.
        box: (4,) ``(x, y, w, h)`` person box in image pixels, or ``None`` where only the crop is
            known (``famipose test``).
        keypoints: (K, 2) joints in image pixels.
        scores: (K,) joint confidences.
        box_score: confidence of the person box (1 for ground-truth boxes).
        area: area of the crop the pose was estimated in, in square image pixels (the OKS scale of
            duplicate suppression), or ``None`` for a pose read from a file.
    """

    track_id: int | None
    box: np.ndarray | None
    keypoints: np.ndarray
    scores: np.ndarray
    box_score: float = 1.0
    area: float | None = None

    @property
    def score(self) -> float:
        """Person score: box score × mean joint score."""
        return float(self.box_score * self.scores.mean())

    @property
    def joints(self) -> np.ndarray:
        """(K, 3) ``(x, y, score)``, the layout of prediction files."""
        return np.concatenate([self.keypoints, self.scores[:, None]], 1)
