"""PoseTrack keypoint definitions, stored as data.

PoseTrack 2017/2018/2021 annotate 17 joints in this order (the ears exist in the schema but are
never annotated). Every module that needs joint names, left/right pairs or the skeleton imports
them from here.
"""

from __future__ import annotations

POSETRACK_JOINTS: tuple[str, ...] = (
    "nose",
    "head_bottom",
    "head_top",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_JOINTS = len(POSETRACK_JOINTS)

# Joints swapped by a horizontal flip.
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

# Joints that PoseTrack never labels; the evaluator ignores them.
UNANNOTATED_JOINTS: tuple[int, ...] = (3, 4)

# Limbs drawn by renderers: (joint a, joint b).
SKELETON: tuple[tuple[int, int], ...] = (
    (2, 1), (1, 0),
    (1, 5), (1, 6), (5, 7), (7, 9), (6, 8), (8, 10),
    (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16),
)  # fmt: skip

# COCO keypoint OKS sigmas in PoseTrack joint order; head_bottom and head_top take the eye values,
# as in the HRNet-family PoseTrack code. Used by OKS-NMS and the tracker.
OKS_SIGMAS: tuple[float, ...] = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087,
    0.089, 0.089,
)  # fmt: skip

# Joints of the upper body, used by half-body augmentation.
UPPER_BODY_JOINTS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)


def flip_permutation() -> list[int]:
    """Index permutation that maps joint order to its mirror image (K,)."""
    perm = list(range(NUM_JOINTS))
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm
