"""Overlay rendering: skeletons in per-track colours, joint scores as opacity, frame index.

Each limb and joint is alpha-blended into the frame over its own bounding rectangle only, with
opacity equal to the joint score (the smaller of the two for a limb) clipped to [0, 1]; joints
below ``min_score`` are not drawn. Images are (H, W, 3) uint8 RGB.

Shape symbols: K joints.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from famipose.data.keypoints import SKELETON
from famipose.poses import PersonPose

Colour = tuple[int, int, int]
_GOLDEN_RATIO = 0.618033988749895


DrawnPerson = PersonPose
"""What the overlay draws: the project's one person type (the name the drawing API has always used)."""


def track_colour(track_id: int) -> Colour:
    """A bright RGB colour per track id; consecutive ids get well-separated hues."""
    hue = (track_id * _GOLDEN_RATIO) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return round(255 * r), round(255 * g), round(255 * b)


Painter = Callable[[np.ndarray, np.ndarray], None]  # (roi, its top-left corner (2,) in the image) -> None


def _blend(image: np.ndarray, rect: tuple[int, ...], alpha: float, draw: Painter) -> None:
    """Draw into a copy of ``image[rect]`` with ``draw(roi, offset)`` and blend it back with ``alpha``."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = max(rect[0], 0), max(rect[1], 0), min(rect[2], width), min(rect[3], height)
    if x1 <= x0 or y1 <= y0 or alpha <= 0:
        return
    roi = image[y0:y1, x0:x1]
    layer = roi.copy()
    draw(layer, np.array([x0, y0]))
    cv2.addWeighted(layer, alpha, roi, 1.0 - alpha, 0.0, dst=roi)


def draw_person(
    image: np.ndarray,
    person: PersonPose,
    skeleton: Sequence[tuple[int, int]] = SKELETON,
    min_score: float = 0.05,
    thickness: int = 2,
) -> None:
    """Draw one person's box, id, limbs and joints in place.

    Args:
        image: (H, W, 3) uint8 RGB frame, modified in place.
        person: what to draw; an untracked person is drawn in the colour of id 0 without an id
            label, a person without a box without its box.
        skeleton: limbs as joint index pairs.
        min_score: joints below this score are hidden.
        thickness: line thickness in pixels (joint radius is ``thickness + 1``).
    """
    colour = track_colour(person.track_id or 0)
    points = np.round(person.keypoints).astype(int)  # (K, 2)
    alphas = np.clip(np.nan_to_num(person.scores), 0.0, 1.0)  # (K,)
    if person.box is not None:
        x, y, w, h = np.round(person.box).astype(int).tolist()
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, 1)
        if person.track_id is not None:
            cv2.putText(image, f"id {person.track_id}", (x, max(y - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
    pad = thickness + 2
    for a, b in skeleton:
        if min(person.scores[a], person.scores[b]) < min_score:
            continue
        lo, hi = np.minimum(points[a], points[b]) - pad, np.maximum(points[a], points[b]) + pad

        def limb(roi: np.ndarray, offset: np.ndarray, a: int = a, b: int = b) -> None:
            start, end = (points[a] - offset).tolist(), (points[b] - offset).tolist()
            cv2.line(roi, start, end, colour, thickness, cv2.LINE_AA)

        _blend(image, (*lo, *hi), float(min(alphas[a], alphas[b])), limb)
    for k in np.flatnonzero(person.scores >= min_score):

        def joint(roi: np.ndarray, offset: np.ndarray, k: int = k) -> None:
            cv2.circle(roi, (points[k] - offset).tolist(), thickness + 1, colour, -1, cv2.LINE_AA)

        _blend(image, (*(points[k] - pad), *(points[k] + pad)), float(alphas[k]), joint)


def draw_frame(image: np.ndarray, persons: Sequence[PersonPose], frame_index: int) -> np.ndarray:
    """A copy of the frame with every person and the frame index drawn on it.

    Args:
        image: (H, W, 3) uint8 RGB frame.
        persons: the frame's persons.
        frame_index: printed in the top-left corner.

    Returns:
        (H, W, 3) uint8 RGB overlay.
    """
    canvas = np.ascontiguousarray(image).copy()
    for person in persons:
        draw_person(canvas, person)
    label = f"frame {frame_index}"
    cv2.putText(canvas, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas
