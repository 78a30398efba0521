"""famipose.evaluation: the official PoseTrack metrics (poseval's AP and MOT protocol) in numpy."""

from famipose.evaluation.io import (
    EVALUATED_JOINTS,
    ORIGIN_NAME,
    POSETRACK17_JOINT_IDS,
    EvalFrame,
    EvalPerson,
    PosePrediction,
    VideoPair,
    load_video_pairs,
    read_gt,
    read_origin,
    read_predictions,
    write_predictions,
)
from famipose.evaluation.posetrack_ap import (
    JOINT_GROUPS,
    PCKH_THRESHOLD,
    EvalResult,
    FrameMatch,
    average_precision,
    evaluate_posetrack,
    evaluate_videos,
    match_frame,
    summarize_joints,
)
from famipose.evaluation.tracking import TrackingResult, evaluate_tracking

__all__ = [
    "EVALUATED_JOINTS",
    "JOINT_GROUPS",
    "ORIGIN_NAME",
    "PCKH_THRESHOLD",
    "POSETRACK17_JOINT_IDS",
    "EvalFrame",
    "EvalPerson",
    "EvalResult",
    "FrameMatch",
    "PosePrediction",
    "TrackingResult",
    "VideoPair",
    "average_precision",
    "evaluate_posetrack",
    "evaluate_tracking",
    "evaluate_videos",
    "load_video_pairs",
    "match_frame",
    "read_gt",
    "read_origin",
    "read_predictions",
    "summarize_joints",
    "write_predictions",
]
