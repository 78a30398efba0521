"""famipose.inference: pose estimation and tracking on whole videos, and model export.

``VideoPoseEstimator(model, ...).run(path) -> VideoResult`` (or ``VideoPoseEstimator.from_checkpoint``);
:func:`write_posetrack_json` / :func:`write_coco_results` save a result; :func:`process_video` does
both, all outputs or none (an unreadable input or a video without a person raises
``VideoReadError``). Export lives in :mod:`famipose.inference.export` (imported on use: it pulls in
the ONNX exporter).
"""

from famipose.geometry import box_iou, pose_oks
from famipose.inference.detector import (
    DETECTORS,
    TORCHVISION_DETECTORS,
    Detections,
    FrameNames,
    HOGPersonDetector,
    MotionPersonDetector,
    clean_detections,
    load_box_file,
    make_detector,
)
from famipose.inference.draw import DrawnPerson, draw_frame, track_colour
from famipose.inference.pipeline import (
    MODES,
    EstimatorOptions,
    FramePoses,
    PersonPose,
    VideoPoseEstimator,
    VideoResult,
    crop_geometry,
    crop_windows,
    load_model_and_config,
    process_video,
    write_coco_results,
    write_posetrack_json,
)
from famipose.inference.tracker import PoseTracker, TrackerConfig
from famipose.inference.video_io import Frame, FrameSource, VideoReadError, open_frames
from famipose.video_writer import VideoWriter

__all__ = [
    "DETECTORS",
    "MODES",
    "TORCHVISION_DETECTORS",
    "Detections",
    "DrawnPerson",
    "EstimatorOptions",
    "Frame",
    "FrameNames",
    "FramePoses",
    "FrameSource",
    "HOGPersonDetector",
    "MotionPersonDetector",
    "PersonPose",
    "PoseTracker",
    "TrackerConfig",
    "VideoPoseEstimator",
    "VideoReadError",
    "VideoResult",
    "VideoWriter",
    "box_iou",
    "clean_detections",
    "crop_geometry",
    "crop_windows",
    "draw_frame",
    "load_box_file",
    "load_model_and_config",
    "make_detector",
    "open_frames",
    "pose_oks",
    "process_video",
    "track_colour",
    "write_coco_results",
    "write_posetrack_json",
]
