"""Drawing primitives for SynthTrack: backgrounds, people, occluders, motion-blurred layers.

Everything here is a pure function of its arguments (random draws come from the ``rng`` passed in),
so a frame is reproduced exactly from the same inputs. Images are BGR ``uint8`` (OpenCV order)
except the float32 frame that layers are composited onto. Shapes are drawn with OpenCV at
quarter-pixel precision (``shift=2``) so slow motion stays smooth.

Shape symbols: H/W image height/width, R render points of a person (the K = 17 PoseTrack joints
followed by :data:`EXTRA_POINTS`), V polygon vertices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from famipose.data.keypoints import POSETRACK_JOINTS

Colour = tuple[int, int, int]

EXTRA_POINTS: tuple[str, ...] = ("left_eye", "right_eye", "left_toe", "right_toe")
"""Render-only points that follow the joints in a person's point array."""

_SHIFT = 2
_ONE = 1 << _SHIFT
_J = {name: i for i, name in enumerate(POSETRACK_JOINTS + EXTRA_POINTS)}

# Limb capsules: (joint a, joint b, width as a fraction of body height, style colour, side).
_LIMBS: tuple[tuple[int, int, float, str, int], ...] = (
    (_J["left_shoulder"], _J["left_elbow"], 0.060, "shirt", 0),
    (_J["right_shoulder"], _J["right_elbow"], 0.060, "shirt", 1),
    (_J["left_elbow"], _J["left_wrist"], 0.048, "skin", 0),
    (_J["right_elbow"], _J["right_wrist"], 0.048, "skin", 1),
    (_J["left_hip"], _J["left_knee"], 0.080, "pants", 0),
    (_J["right_hip"], _J["right_knee"], 0.080, "pants", 1),
    (_J["left_knee"], _J["left_ankle"], 0.064, "pants", 0),
    (_J["right_knee"], _J["right_ankle"], 0.064, "pants", 1),
    (_J["left_ankle"], _J["left_toe"], 0.040, "shoe", 0),
    (_J["right_ankle"], _J["right_toe"], 0.040, "shoe", 1),
)
# Left limbs are drawn lighter and right limbs darker so that left/right can be told apart.
_SIDE_SHADE = (1.2, 0.72)
_HEAD_AXES = (0.09, 0.095)  # head ellipse semi-axes (across, along the head axis), fraction of height


@dataclass(frozen=True)
class PersonStyle:
    """Colours of one synthetic person (BGR, every channel >= 8 so drawn pixels are never black).

    Attributes:
        skin: face, neck, forearms and hands.
        shirt: torso and upper arms.
        stripe: torso stripes.
        pants: thighs and shins.
        shoe: feet.
        hair: hair (covers the whole head seen from behind).
        stripes: number of stripes across the torso (0 = plain shirt).
    """

    skin: Colour
    shirt: Colour
    stripe: Colour
    pants: Colour
    shoe: Colour
    hair: Colour
    stripes: int


def _colour(rng: np.random.Generator, low: int = 8, high: int = 256) -> Colour:
    """A random BGR colour with channels in [low, high)."""
    b, g, r = rng.integers(low, high, size=3)
    return int(b), int(g), int(r)


@functools.lru_cache(maxsize=4096)
def _shade(colour: Colour, factor: float) -> Colour:
    """Colour scaled by ``factor``, kept within [8, 255]."""
    b, g, r = (max(8, min(255, round(c * factor))) for c in colour)
    return b, g, r


def random_style(rng: np.random.Generator) -> PersonStyle:
    """Draw a person's clothing, skin and hair colours.

    Args:
        rng: random stream of the person.

    Returns:
        The style.
    """
    tone = rng.uniform(0.35, 1.0)
    skin = _shade((150, 185, 235), tone)
    return PersonStyle(
        skin=skin,
        shirt=_colour(rng),
        stripe=_colour(rng),
        pants=_colour(rng, 8, 200),
        shoe=_colour(rng, 8, 90),
        hair=_colour(rng, 8, 110),
        stripes=int(rng.integers(0, 5)),
    )


Point = tuple[float, float]


def _pt(p: Point | np.ndarray) -> tuple[int, int]:
    """A point as OpenCV fixed-point integers (``shift=2``)."""
    return round(float(p[0]) * _ONE), round(float(p[1]) * _ONE)


def _lerp(a: Point, b: Point, t: float) -> Point:
    """The point ``a + t (b - a)``."""
    return a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])


def _capsule(buf: np.ndarray, a: Point, b: Point, width: float, colour: Colour) -> None:
    """Draw a shaded capsule (dark rim, body, highlight towards the upper left) from ``a`` to ``b``."""
    thick = max(1, round(width))
    pa, pb = _pt(a), _pt(b)
    cv2.line(buf, pa, pb, _shade(colour, 0.6), thick, cv2.LINE_8, _SHIFT)
    if thick >= 3:
        cv2.line(buf, pa, pb, colour, max(1, round(width * 0.65)), cv2.LINE_8, _SHIFT)
        off = round(-0.15 * width * _ONE)
        light = max(1, round(width * 0.22))
        cv2.line(buf, (pa[0] + off, pa[1] + off), (pb[0] + off, pb[1] + off), _shade(colour, 1.35), light,
                 cv2.LINE_8, _SHIFT)  # fmt: skip


def _torso(buf: np.ndarray, pts: list[Point], height: float, style: PersonStyle) -> None:
    """Draw the torso: a shaded quad between shoulders and hips, a spine capsule and stripes."""
    ls, rs, lh, rh = (pts[_J[n]] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
    neck, pelvis = _lerp(ls, rs, 0.5), _lerp(lh, rh, 0.5)
    _capsule(buf, neck, pelvis, 0.14 * height, style.shirt)
    quad = np.array([_pt(ls), _pt(rs), _pt(rh), _pt(lh)], np.int32)
    cv2.fillConvexPoly(buf, quad, style.shirt, cv2.LINE_8, _SHIFT)
    stripe = max(1, round(0.025 * height))
    for k in range(1, style.stripes + 1):
        a = k / (style.stripes + 1)
        cv2.line(buf, _pt(_lerp(ls, lh, a)), _pt(_lerp(rs, rh, a)), style.stripe, stripe, cv2.LINE_8, _SHIFT)
    _capsule(buf, pts[_J["head_bottom"]], neck, 0.05 * height, style.skin)


def _head(buf: np.ndarray, pts: np.ndarray, depth: list[float], height: float, style: PersonStyle) -> None:
    """Draw the head ellipse with hair and, on the side facing the camera, eyes and nose."""
    center, axes, angle = head_ellipse(pts, height)
    centre_fp, axes_fp = _pt(center), _pt(np.asarray(axes))
    if depth[_J["nose"]] - depth[_J["head_bottom"]] < -0.03:  # seen from behind: all hair
        cv2.ellipse(buf, centre_fp, axes_fp, angle, 0, 360, style.hair, -1, cv2.LINE_8, _SHIFT)
        return
    cv2.ellipse(buf, centre_fp, axes_fp, angle, 0, 360, style.skin, -1, cv2.LINE_8, _SHIFT)
    # Hair on the crown: the half of the ellipse towards head_top (ellipse-frame angles 180..360).
    cv2.ellipse(buf, centre_fp, axes_fp, angle, 180, 360, style.hair, -1, cv2.LINE_8, _SHIFT)
    eye_r = max(1, round(0.014 * height * _ONE))
    for eye in ("left_eye", "right_eye"):
        if depth[_J[eye]] - depth[_J["head_bottom"]] > 0.02:
            cv2.circle(buf, _pt(pts[_J[eye]]), eye_r, (20, 20, 20), -1, cv2.LINE_8, _SHIFT)
    cv2.circle(buf, _pt(pts[_J["nose"]]), eye_r, (40, 40, 170), -1, cv2.LINE_8, _SHIFT)


def head_ellipse(pts: np.ndarray, height: float) -> tuple[np.ndarray, tuple[float, float], float]:
    """The ellipse drawn as a person's head.

    Args:
        pts: (R, 2) render points in pixels.
        height: body height in pixels.

    Returns:
        Centre (2,), semi-axes (across, along) in pixels, and the rotation in degrees, such that the
        ellipse's first axis runs across the head and its second along head_bottom → head_top.
    """
    top, bottom = pts[_J["head_top"]], pts[_J["head_bottom"]]
    along = top - bottom
    angle = float(np.degrees(np.arctan2(along[1], along[0]))) + 90.0
    center = bottom + 0.5 * along
    return center, (_HEAD_AXES[0] * height, _HEAD_AXES[1] * height), angle


def head_box(pts: np.ndarray, height: float) -> tuple[float, float, float, float]:
    """Axis-aligned box ``(x, y, w, h)`` of the head ellipse (PoseTrack's ``bbox_head``).

    Args:
        pts: (R, 2) render points in pixels.
        height: body height in pixels.

    Returns:
        The head box in pixels.
    """
    center, (a, b), angle = head_ellipse(pts, height)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    half_w = float(np.hypot(a * c, b * s))
    half_h = float(np.hypot(a * s, b * c))
    return float(center[0]) - half_w, float(center[1]) - half_h, 2 * half_w, 2 * half_h


def draw_person(buf: np.ndarray, pts: np.ndarray, depth: np.ndarray, height: float, style: PersonStyle) -> None:
    """Draw one articulated person, back-to-front by part depth.

    Args:
        buf: (H, W, 3) uint8 image drawn into.
        pts: (R, 2) render points in the pixel frame of ``buf``.
        depth: (R,) depth of each point towards the camera (larger is nearer), body-height units.
        height: body height in pixels (sets limb widths).
        style: the person's colours.
    """
    points: list[Point] = [(x, y) for x, y in pts.tolist()]
    z: list[float] = depth.tolist()
    torso_depth = (z[_J["left_shoulder"]] + z[_J["right_shoulder"]]) / 2
    parts: list[tuple[float, int]] = [(torso_depth, -1), (torso_depth + 1e-3, -2)]
    parts += [((z[a] + z[b]) / 2, i) for i, (a, b, *_rest) in enumerate(_LIMBS)]
    for _, part in sorted(parts):
        if part == -1:
            _torso(buf, points, height, style)
        elif part == -2:
            _head(buf, pts, z, height, style)
        else:
            a, b, width, key, side = _LIMBS[part]
            colour = _shade(getattr(style, key), _SIDE_SHADE[side])
            _capsule(buf, points[a], points[b], width * height, colour)
            if key == "skin":  # hand
                radius = max(1, round(0.03 * height * _ONE))
                cv2.circle(buf, _pt(points[b]), radius, colour, -1, cv2.LINE_8, _SHIFT)


def draw_occluder(buf: np.ndarray, polygon: np.ndarray, colour: Colour, inner: Colour) -> None:
    """Draw a foreground occluder: a filled polygon with a rim and an inner panel.

    Args:
        buf: (H, W, 3) uint8 image drawn into.
        polygon: (V, 2) convex polygon in the pixel frame of ``buf``.
        colour: main colour.
        inner: colour of the inner panel (the polygon shrunk towards its centroid).
    """
    fixed = np.round(polygon * _ONE).astype(np.int32)
    cv2.fillConvexPoly(buf, fixed, colour, cv2.LINE_8, _SHIFT)
    cv2.polylines(buf, [fixed], True, _shade(colour, 0.5), 2, cv2.LINE_8, _SHIFT)
    centroid = polygon.mean(axis=0)
    panel = centroid + 0.55 * (polygon - centroid)
    cv2.fillConvexPoly(buf, np.round(panel * _ONE).astype(np.int32), inner, cv2.LINE_8, _SHIFT)


def composite_motion(
    frame: np.ndarray, box: tuple[int, int, int, int], samples: int, key: int, draw: Callable[[np.ndarray, int], None]
) -> np.ndarray:
    """Composite a moving layer onto ``frame`` with motion blur by averaging shutter sub-samples.

    Each sub-sample is drawn into an empty crop; coverage and colour are averaged over sub-samples,
    so fast parts smear in proportion to how far they travel while the shutter is open.

    Args:
        frame: (H, W, 3) float32 frame, modified in place.
        box: crop ``(x0, y0, x1, y1)`` in frame pixels (exclusive end) that holds every sub-sample.
        samples: number of sub-samples to draw.
        key: index of the sub-sample at the frame's own time.
        draw: ``draw(crop, k)`` draws sub-sample ``k`` into the (h, w, 3) uint8 crop, in crop
            pixels, using colours with every channel >= 8 (undrawn pixels stay 0).

    Returns:
        (h, w) bool mask of the key sub-sample in crop pixels.
    """
    x0, y0, x1, y1 = box
    buf = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    colour = np.zeros(buf.shape, np.float32)
    coverage = np.zeros(buf.shape[:2], np.float32)
    key_mask = coverage.astype(bool)
    for k in range(samples):
        buf.fill(0)
        draw(buf, k)
        mask = cv2.cvtColor(buf, cv2.COLOR_BGR2GRAY) > 0  # drawn channels are >= 8, so grey > 0
        cv2.accumulate(buf, colour)
        cv2.accumulate(mask.view(np.uint8), coverage)
        if k == key:
            key_mask = mask
    region = frame[y0:y1, x0:x1]
    region *= 1.0 - coverage[..., None] / samples
    region += colour / samples
    return key_mask


def background(rng: np.random.Generator, width: int, height: int, clutter: float) -> np.ndarray:
    """A cluttered, textured scene background.

    Args:
        rng: random stream of the video.
        width: canvas width in pixels.
        height: canvas height in pixels.
        clutter: density of background objects (0 = plain gradient with texture).

    Returns:
        (height, width, 3) uint8 BGR canvas.
    """
    horizon = rng.uniform(0.3, 0.6)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    sky, far, ground = (np.array(_colour(rng, 30, 230), np.float32) for _ in range(3))
    upper = sky + (far - sky) * np.clip(rows / horizon, 0, 1)
    gradient = np.where(rows < horizon, upper, far + (ground - far) * np.clip((rows - horizon) / (1 - horizon), 0, 1))
    blotch_shape = (max(2, height // 40), max(2, width // 40), 3)
    blotches = cv2.resize(rng.uniform(-40, 40, blotch_shape).astype(np.float32), (width, height))
    canvas = np.clip(gradient[:, None, :] + blotches, 0, 255).astype(np.uint8)
    scale = min(width, height)
    for _ in range(int(clutter * width * height / 2500)):
        colour = _colour(rng)
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(max(2, scale // 40), max(3, scale // 6)))
        kind = rng.integers(0, 4)
        if kind == 0:
            cv2.rectangle(canvas, (x, y), (x + size, y + int(size * rng.uniform(0.5, 3))), colour, -1)
        elif kind == 1:
            cv2.circle(canvas, (x, y), size // 2, colour, -1)
        elif kind == 2:
            end = (x + int(rng.integers(-size, size + 1)), y + int(rng.integers(-size, size + 1)))
            cv2.line(canvas, (x, y), end, colour, max(1, size // 8))
        else:
            for k in range(0, size, max(2, size // 6)):  # striped patch
                cv2.line(canvas, (x, y + k), (x + size, y + k), colour, max(1, size // 14))
    texture = rng.normal(0.0, 7.0, (height, width, 1)).astype(np.float32)
    return np.clip(canvas + texture, 0, 255).astype(np.uint8)


def draw_crowd(
    canvas: np.ndarray, rng: np.random.Generator, box: tuple[float, float, float, float], count: int
) -> None:
    """Draw a small crowd of tiny, unlabelled stick people filling ``box``.

    Args:
        canvas: (H, W, 3) uint8 background, modified in place.
        rng: random stream of the video.
        box: ``(x0, y0, x1, y1)`` region in canvas pixels; people stand on its bottom edge area.
        count: number of people.
    """
    x0, y0, x1, y1 = box
    for _ in range(count):
        tall = (y1 - y0) * rng.uniform(0.65, 1.0)
        x = rng.uniform(x0 + tall * 0.2, x1 - tall * 0.2)
        foot = rng.uniform(y0 + tall, y1)
        thick = max(1, round(tall / 10))
        body, legs = _colour(rng), _colour(rng, 8, 160)
        hip, neck = np.array((x, foot - 0.48 * tall)), np.array((x, foot - 0.82 * tall))
        spread = tall * rng.uniform(0.05, 0.18)
        for end in ((x - spread, foot), (x + spread, foot)):
            cv2.line(canvas, _pt(hip), _pt(np.array(end)), legs, thick, cv2.LINE_8, _SHIFT)
        cv2.line(canvas, _pt(hip), _pt(neck), body, thick + 1, cv2.LINE_8, _SHIFT)
        for side in (-1, 1):
            hand = neck + np.array((side * tall * rng.uniform(0.1, 0.25), tall * rng.uniform(-0.2, 0.3)))
            cv2.line(canvas, _pt(neck), _pt(hand), body, thick, cv2.LINE_8, _SHIFT)
        head = _pt(neck - np.array((0, 0.09 * tall)))
        cv2.circle(canvas, head, max(1, round(0.08 * tall * _ONE)), (90, 130, 190), -1, cv2.LINE_8, _SHIFT)


__all__ = [
    "EXTRA_POINTS",
    "PersonStyle",
    "background",
    "composite_motion",
    "draw_crowd",
    "draw_occluder",
    "draw_person",
    "head_box",
    "head_ellipse",
    "random_style",
]
