"""Output files of a video run: PoseTrack18 and COCO JSON, all outputs of a run or none.

:func:`write_posetrack_json` writes a prediction file that ``famipose evaluate`` scores,
:func:`write_coco_results` a COCO keypoint result list, and :func:`process_video` runs an
estimator and writes its outputs only once the run has succeeded.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

from famipose.evaluation.io import PosePrediction, write_predictions
from famipose.files import atomic_path, remove_stale_temporaries, write_text_atomic
from famipose.geometry import xywh_to_xyxy
from famipose.inference.pipeline import VideoPoseEstimator
from famipose.inference.results import VideoResult
from famipose.inference.video_io import VideoReadError


def _image_entries(result: VideoResult) -> list[dict[str, Any]]:
    """The PoseTrack ``images`` list: the GT's, or one entry per frame named ``<prefix>/<name>``."""
    if result.gt_images is not None:
        return result.gt_images
    return [
        {"file_name": f"{result.image_prefix}/{frame.name}", "id": frame.index, "frame_id": frame.index,
         "nframes": len(result.frames), "is_labeled": True}
        for frame in result.frames
    ]  # fmt: skip


def write_posetrack_json(result: VideoResult, path: str | Path) -> Path:
    """Write the result as a PoseTrack18 prediction file that ``famipose evaluate`` scores.

    Frame ``i`` goes to ``images[i]`` (the GT's images when the run had ``gt_json``); each person is
    written with its track id, joints as (x, y, score) and its box.

    Args:
        result: the run's result.
        path: output JSON file; name it like the GT file (``<video>.json``) for the evaluator.

    Returns:
        The written file.
    """
    images = _image_entries(result)
    by_index = {frame.index: frame for frame in result.frames}
    predictions = [
        [
            PosePrediction(p.joints, p.track_id, xywh_to_xyxy(p.box)[0])
            for p in (by_index[i].persons if i in by_index else ())
        ]
        for i in range(len(images))
    ]
    path = Path(path)
    return write_predictions(path.parent, path.name, images, predictions)


def write_coco_results(result: VideoResult, path: str | Path) -> Path:
    """Write the result as a COCO keypoint result list (one entry per person and frame).

    Each entry has ``image_id`` (the GT image id with ``gt_json``, else the frame index),
    ``image_name``, ``frame_index``, ``category_id`` 1, ``bbox`` (x, y, w, h), ``score`` (box score ×
    mean joint score), ``keypoints`` (K × (x, y, score)) and ``track_id``.

    Args:
        result: the run's result.
        path: output JSON file.

    Returns:
        The written file.
    """
    images = _image_entries(result)
    entries = []
    for frame in result.frames:
        image = images[frame.index] if frame.index < len(images) else {}
        for person in frame.persons:
            entries.append({
                "image_id": image.get("id", image.get("frame_id", frame.index)),
                "image_name": str(PurePosixPath(image.get("file_name", f"{result.image_prefix}/{frame.name}"))),
                "frame_index": frame.index,
                "category_id": 1,
                "bbox": [round(float(v), 2) for v in person.box],
                "score": round(person.score, 5),
                "keypoints": [round(float(v), 3) for v in person.joints.ravel()],
                "track_id": person.track_id,
            })  # fmt: skip
    return write_text_atomic(path, json.dumps(entries))


def process_video(
    estimator: VideoPoseEstimator,
    path: str | Path,
    json_path: str | Path,
    coco_path: str | Path | None = None,
    overlay: str | Path | None = None,
    progress: bool = False,
    allow_empty: bool = False,
) -> VideoResult:
    """Run the estimator and write its output files, all of them or none.

    The overlay is rendered into a temporary file and every output is renamed into place only once
    the run has succeeded, so a failed or killed run leaves no partial file under an output name
    (and the temporaries of a killed run are removed by the next one).

    Args:
        estimator: the configured estimator.
        path: video file, image folder or glob pattern.
        json_path: PoseTrack18 prediction file to write.
        coco_path: COCO result file to write, or None.
        overlay: mp4 overlay to render, or None.
        progress: show a progress bar.
        allow_empty: write the outputs even when no person was found in the whole video.

    Returns:
        The result (``messages`` holds the warnings about the input).

    Raises:
        VideoReadError: the input cannot be opened, no frame decodes, or (unless ``allow_empty``) no
            person was found; nothing is written.
    """
    outputs = [Path(p) for p in (json_path, coco_path, overlay) if p is not None]
    for output in outputs:
        remove_stale_temporaries(output)
    with contextlib.ExitStack() as stack:
        rendered = stack.enter_context(atomic_path(overlay)) if overlay is not None else None
        result = estimator.run(path, overlay=rendered, progress=progress)
        if not result.num_decoded:
            raise VideoReadError(f"{path}: no frame could be decoded")
        if not allow_empty and not result.track_ids:
            raise VideoReadError(
                f"{path}: no person found in {result.num_decoded} decoded frames; pass --boxes (SynthTrack writes "
                "detections/<split>.json) with --gt-json, another --detector, or --allow-empty"
            )
        write_posetrack_json(result, json_path)
        if coco_path is not None:
            write_coco_results(result, coco_path)
    return result
