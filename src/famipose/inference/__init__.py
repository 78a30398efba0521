"""famipose.inference: pose estimation and tracking on whole videos, and model export.

``VideoPoseEstimator(model, ...).run(path) -> VideoResult`` (or ``VideoPoseEstimator.from_checkpoint``);
:func:`write_posetrack_json` / :func:`write_coco_results` save a result; :func:`process_video` does
both, all outputs or none (an unreadable input or a video without a person raises
``VideoReadError``). Export lives in :mod:`famipose.inference.export` (imported on use: it pulls in
the ONNX exporter). Nothing here imports :mod:`famipose.engine` (training and testing).

Modules: :mod:`~famipose.inference.pipeline` (the estimator and its options),
:mod:`~famipose.inference.windows` (the exact and fast window engines, each with its tracking),
:mod:`~famipose.inference.steps` (pure crop, re-framing and duplicate-removal steps),
:mod:`~famipose.inference.results` (what a run returns), :mod:`~famipose.inference.writers`
(PoseTrack18 / COCO files), :mod:`~famipose.inference.timing`, and the detector, tracker, drawing
and video-input modules.
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
from famipose.inference.pipeline import EstimatorOptions, VideoPoseEstimator, load_model_and_config
from famipose.inference.results import FramePoses, VideoResult
from famipose.inference.steps import crop_geometry, crop_windows
from famipose.inference.tracker import PoseTracker, TrackerConfig
from famipose.inference.video_io import Frame, FrameSource, VideoReadError, open_frames
from famipose.inference.windows import MODES
from famipose.inference.writers import process_video, write_coco_results, write_posetrack_json
from famipose.poses import PersonPose
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
