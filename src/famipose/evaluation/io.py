"""PoseTrack per-video annotation files for evaluation: reading (PoseTrack17 and PoseTrack18) and writing.

The evaluator reads both official layouts into the same records:

* PoseTrack18 (COCO-like): ``images`` (``file_name``, ``id``/``frame_id``, ``ignore_regions_x/y``) and
  ``annotations`` (``image_id``, ``track_id``, ``bbox_head`` as x, y, w, h, and ``keypoints``: K × (x, y, v)
  flattened, in the order of ``categories[0].keypoints``). For predictions the per-joint score is the
  ``scores`` list when it is non-empty (what poseval reads), otherwise the third keypoint value.
* PoseTrack17 (``annolist``): one entry per frame with ``image: [{name}]``, ``ignore_regions`` (``point``
  lists), and ``annorect`` persons with head box ``x1, y1, x2, y2``, ``track_id`` and
  ``annopoints: [{point: [{id, x, y, score}]}]`` where every value is a one-element list and ``id`` is the
  MPII-style joint id of :data:`POSETRACK17_JOINT_IDS`.

Following poseval's PoseTrack18 → PoseTrack17 conversion, a PoseTrack18 joint stored as (0, 0, 0) is absent,
the ears (not part of the 15 PoseTrack joints) are dropped, and a PoseTrack17 prediction joint without a
score gets :data:`MIN_SCORE`.

Shape symbols: N persons, K joints (17, ``POSETRACK_JOINTS`` order), V polygon vertices.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from famipose.data.errors import DataError
from famipose.data.keypoints import NUM_JOINTS, POSETRACK_JOINTS
from famipose.files import write_text_atomic

logger = logging.getLogger(__name__)

ORIGIN_NAME = "ORIGIN"  # in a prediction folder: which weights (epoch, checkpoint) wrote it

# Score poseval gives a predicted joint that carries none.
MIN_SCORE = -9999.0

# PoseTrack17 ``annolist`` joint ids (poseval's ``Joint`` class, MPII order without pelvis/thorax; id 12 is
# the head bottom, which poseval calls "neck") → joint name.
POSETRACK17_JOINT_IDS: dict[int, str] = {
    0: "right_ankle",
    1: "right_knee",
    2: "right_hip",
    3: "left_hip",
    4: "left_knee",
    5: "left_ankle",
    6: "right_wrist",
    7: "right_elbow",
    8: "right_shoulder",
    9: "left_shoulder",
    10: "left_elbow",
    11: "left_wrist",
    12: "head_bottom",
    13: "nose",
    14: "head_top",
}

# The 15 joints poseval evaluates, as indices into POSETRACK_JOINTS (everything but the ears).
EVALUATED_JOINTS: tuple[int, ...] = tuple(sorted(POSETRACK_JOINTS.index(n) for n in POSETRACK17_JOINT_IDS.values()))

_JOINT_INDEX_BY_ID: dict[int, int] = {i: POSETRACK_JOINTS.index(n) for i, n in POSETRACK17_JOINT_IDS.items()}
_EVALUATED_MASK = np.isin(np.arange(NUM_JOINTS), EVALUATED_JOINTS)
_MALFORMED = (AttributeError, IndexError, KeyError, TypeError, ValueError)


@dataclass(frozen=True, eq=False)
class EvalPerson:
    """One annotated or predicted person in one frame, as the evaluator scores it.

    Not :class:`famipose.data.posetrack.PersonRecord` (a training annotation: (x, y, visibility),
    person box, image id): the evaluator needs poseval's view of both files it pairs -- which joints
    are present, their scores, the head box that scales PCKh -- read from either PoseTrack layout.

    Attributes:
        keypoints: (K, 2) joint positions in image pixels (0 where absent).
        present: (K,) whether the joint is annotated (GT) or predicted.
        scores: (K,) per-joint confidence (meaningful for predictions only).
        track_id: track identity, ``None`` when the file has none.
        head_box: (4,) head box x1, y1, x2, y2 (GT), ``None`` when absent.
    """

    keypoints: np.ndarray
    present: np.ndarray
    scores: np.ndarray
    track_id: int | None
    head_box: np.ndarray | None


@dataclass(frozen=True, eq=False)
class EvalFrame:
    """One frame of a GT or prediction video file, as the evaluator pairs and scores it.

    Attributes:
        file_name: image path as stored in the file; GT and prediction frames are paired by it.
        ignore_regions: polygons, each (V, 2), inside which joints are not evaluated.
        persons: the persons of the frame, in file order.
        pointless_persons: PoseTrack17 persons listed without ``annopoints``; poseval counts them when it
            selects the GT frames to evaluate, then drops them.
    """

    file_name: str
    ignore_regions: tuple[np.ndarray, ...]
    persons: tuple[EvalPerson, ...]
    pointless_persons: int = 0


@dataclass(frozen=True, eq=False)
class VideoPair:
    """A GT video and the prediction frames paired with its frames.

    Attributes:
        name: file name of the GT video.
        gt: GT frames in file order.
        pred: prediction frame for each GT frame (a frame without persons where the prediction has none).
    """

    name: str
    gt: tuple[EvalFrame, ...]
    pred: tuple[EvalFrame, ...]


class PoseArrays(NamedTuple):
    """The persons of a frame stacked into arrays: keypoints (N, K, 2), present (N, K), scores (N, K)."""

    keypoints: np.ndarray
    present: np.ndarray
    scores: np.ndarray


class PosePrediction(NamedTuple):
    """One predicted person for :func:`write_predictions`.

    Attributes:
        keypoints: (K, 3) x, y in image pixels and the joint score; non-finite rows are written as absent.
        track_id: track identity of the person.
        box: optional person box x1, y1, x2, y2.
    """

    keypoints: np.ndarray
    track_id: int
    box: Sequence[float] | None = None


def stack_persons(persons: Sequence[EvalPerson]) -> PoseArrays:
    """Stack persons into arrays (zero-length first axis for an empty frame)."""
    if not persons:
        return PoseArrays(np.zeros((0, NUM_JOINTS, 2)), np.zeros((0, NUM_JOINTS), bool), np.zeros((0, NUM_JOINTS)))
    return PoseArrays(
        np.stack([p.keypoints for p in persons]),
        np.stack([p.present for p in persons]),
        np.stack([p.scores for p in persons]),
    )


def head_boxes(persons: Sequence[EvalPerson]) -> np.ndarray:
    """Head boxes (N, 4) x1, y1, x2, y2; NaN rows for persons without one."""
    boxes = [np.full(4, np.nan) if p.head_box is None else p.head_box for p in persons]
    return np.stack(boxes) if boxes else np.zeros((0, 4))


class _FieldError(Exception):
    """A malformed entry found while parsing; turned into a DataError naming the file by :func:`read_video`."""

    def __init__(self, entry: str, error: Exception) -> None:
        super().__init__(entry, error)
        self.entry = entry
        self.problem = f"{type(error).__name__}: {error}"


def _first(value: Any) -> Any:
    """PoseTrack17 stores scalars as one-element lists; unwrap them."""
    return value[0] if isinstance(value, list) else value


def _person(
    keypoints: np.ndarray, present: np.ndarray, scores: np.ndarray, track_id: Any, head_box: np.ndarray | None
) -> EvalPerson:
    present = present & _EVALUATED_MASK
    track = None if track_id is None else int(track_id)
    return EvalPerson(np.where(present[:, None], keypoints, 0.0), present, scores, track, head_box)


def _parse_posetrack17(data: Mapping[str, Any]) -> list[EvalFrame]:
    frames = []
    for index, entry in enumerate(data["annolist"]):
        where = f"annolist[{index}]"
        try:
            name = str(entry["image"][0]["name"])
            regions = tuple(
                np.array([[float(_first(p["x"])), float(_first(p["y"]))] for p in region["point"]]).reshape(-1, 2)
                for region in entry.get("ignore_regions", [])
            )
            rects = entry.get("annorect", [])
            posed = [rect for rect in rects if _has_points(rect)]
            persons = tuple(_parse_annorect(rect) for rect in posed)
        except _MALFORMED as error:
            raise _FieldError(where, error) from error
        frames.append(EvalFrame(name, regions, persons, len(rects) - len(posed)))
    return frames


def _has_points(rect: Mapping[str, Any]) -> bool:
    """poseval's test for a PoseTrack17 person: ``annopoints`` holds a first entry with a ``point`` list."""
    annopoints = rect.get("annopoints") or [{}]
    return "point" in annopoints[0]


def _parse_annorect(rect: Mapping[str, Any]) -> EvalPerson:
    keypoints = np.zeros((NUM_JOINTS, 2))
    present = np.zeros(NUM_JOINTS, bool)
    scores = np.full(NUM_JOINTS, MIN_SCORE)
    for point in rect["annopoints"][0]["point"]:
        joint = _JOINT_INDEX_BY_ID.get(int(_first(point["id"]))) if point.get("id") is not None else None
        if joint is None or present[joint]:  # like poseval, the first point listed with an id is used
            continue
        keypoints[joint] = float(_first(point["x"])), float(_first(point["y"]))
        present[joint] = True
        if "score" in point:
            scores[joint] = float(_first(point["score"]))
    head_box = None
    if all(key in rect for key in ("x1", "y1", "x2", "y2")):
        head_box = np.array([float(_first(rect[key])) for key in ("x1", "y1", "x2", "y2")])
    return _person(keypoints, present, scores, _first(rect.get("track_id")), head_box)


def _posetrack18_columns(data: Mapping[str, Any]) -> list[int | None]:
    """Joint index of each keypoint column, from ``categories[0].keypoints`` (POSETRACK_JOINTS when absent)."""
    categories = data.get("categories") or [{}]
    names = list(categories[0].get("keypoints", POSETRACK_JOINTS))
    missing = [POSETRACK_JOINTS[j] for j in EVALUATED_JOINTS if POSETRACK_JOINTS[j] not in names]
    if missing:
        raise _FieldError("categories[0]", ValueError(f"keypoint names lack {missing}"))
    return [POSETRACK_JOINTS.index(n) if n in POSETRACK_JOINTS else None for n in names]


def _parse_posetrack18(data: Mapping[str, Any]) -> list[EvalFrame]:
    columns = _posetrack18_columns(data)
    frames: list[EvalFrame] = []
    persons: dict[Any, list[EvalPerson]] = {}
    for index, image in enumerate(data["images"]):
        try:
            image_id = image["id"] if "id" in image else image["frame_id"]
            regions = tuple(
                np.stack([np.asarray(xs, float), np.asarray(ys, float)], axis=-1).reshape(-1, 2)
                for xs, ys in zip(image.get("ignore_regions_x", []), image.get("ignore_regions_y", []), strict=True)
            )
            frames.append(EvalFrame(str(image["file_name"]), regions, ()))
            if image_id in persons:
                raise ValueError(f"duplicate image id {image_id}")
        except _MALFORMED as error:
            raise _FieldError(f"images[{index}]", error) from error
        persons[image_id] = []
    for index, annotation in enumerate(data["annotations"]):
        try:
            image_id = annotation["image_id"]
            if image_id not in persons:
                raise ValueError(f"image_id {image_id!r} is not in images")
            persons[image_id].append(_parse_annotation(annotation, columns))
        except _MALFORMED as error:
            raise _FieldError(f"annotations[{index}]", error) from error
    return [
        EvalFrame(frame.file_name, frame.ignore_regions, tuple(group))
        for frame, group in zip(frames, persons.values(), strict=True)
    ]


def _parse_annotation(annotation: Mapping[str, Any], columns: Sequence[int | None]) -> EvalPerson:
    values = np.asarray(annotation.get("keypoints") or np.zeros(3 * len(columns)), float)
    if values.size != 3 * len(columns):
        raise ValueError(f"keypoints has {values.size} values, expected {3 * len(columns)}")
    values = values.reshape(len(columns), 3)
    listed_scores = annotation.get("scores") or []
    if listed_scores and len(listed_scores) != len(columns):
        raise ValueError(f"scores has {len(listed_scores)} values, expected {len(columns)}")
    third = np.asarray(listed_scores, float) if listed_scores else values[:, 2]
    if not (np.isfinite(values).all() and np.isfinite(third).all()):
        raise ValueError("keypoints or scores hold a non-finite number (NaN or infinity)")
    keypoints = np.zeros((NUM_JOINTS, 2))
    present = np.zeros(NUM_JOINTS, bool)
    scores = np.full(NUM_JOINTS, MIN_SCORE)
    for column, joint in enumerate(columns):
        if joint is not None:
            keypoints[joint] = values[column, :2]
            present[joint] = bool(np.any(values[column] != 0))
            scores[joint] = third[column]
    head_box = None
    if "bbox_head" in annotation:
        x, y, w, h = (float(v) for v in annotation["bbox_head"])
        head_box = np.array([x, y, x + w, y + h])
    return _person(keypoints, present, scores, annotation.get("track_id"), head_box)


def read_video(path: Path) -> list[EvalFrame]:
    """Read one PoseTrack17 or PoseTrack18 video file (the layout is detected from its keys).

    Args:
        path: the JSON file.

    Returns:
        The frames in file order.

    Raises:
        DataError: the file is unreadable, not JSON, of neither layout, or has a malformed entry.
    """
    try:
        data = json.loads(Path(path).read_text())
    except OSError as error:
        raise DataError(path, f"cannot be read ({error.strerror})") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(path, f"is not valid JSON ({error})") from error
    if not isinstance(data, dict) or not ({"annolist", "images"} & data.keys()):
        raise DataError(path, "has neither 'annolist' (PoseTrack17) nor 'images' (PoseTrack18)")
    if "images" in data and not isinstance(data.get("annotations"), list):
        raise DataError(path, "has 'images' but no 'annotations' list (PoseTrack18; [] for a video without persons)")
    try:
        return _parse_posetrack17(data) if "annolist" in data else _parse_posetrack18(data)
    except _FieldError as error:
        raise DataError(path, error.problem, entry=error.entry) from error
    except _MALFORMED as error:
        raise DataError(path, f"malformed layout ({type(error).__name__}: {error})") from error


def read_gt(path: Path) -> list[EvalFrame]:
    """Read a GT video file; every person with annotated joints must have a head box (it sets the PCKh scale).

    Args:
        path: the JSON file.

    Returns:
        The frames in file order.

    Raises:
        DataError: as :func:`read_video`, or a person with joints has no head box.
    """
    frames = read_video(path)
    for frame in frames:
        for index, person in enumerate(frame.persons):
            if person.head_box is None and person.present.any():
                raise DataError(path, "person with joints has no head box", entry=f"{frame.file_name} person {index}")
    return frames


def read_predictions(path: Path) -> list[EvalFrame]:
    """Read a prediction video file; track ids must be unique within a frame (poseval rejects duplicates).

    Args:
        path: the JSON file.

    Returns:
        The frames in file order.

    Raises:
        DataError: as :func:`read_video`, duplicate file names, or a track id repeated within a frame.
    """
    frames = read_video(path)
    names = [frame.file_name for frame in frames]
    if len(set(names)) != len(names):
        raise DataError(path, "lists an image file name more than once")
    for frame in frames:
        ids = [p.track_id for p in frame.persons if p.track_id is not None]
        if len(set(ids)) != len(ids):
            raise DataError(path, "track ids are not unique within the frame", entry=frame.file_name)
    return frames


def pair_frames(gt: Sequence[EvalFrame], pred: Sequence[EvalFrame], source: Path) -> tuple[EvalFrame, ...]:
    """Prediction frame for each GT frame, matched by image file name (an empty frame where none is given).

    Args:
        gt: GT frames.
        pred: prediction frames of the same video.
        source: the prediction file, for error messages.

    Returns:
        One prediction frame per GT frame.

    Raises:
        DataError: the prediction file has frames but shares no file name with the GT file.
    """
    by_name = {frame.file_name: frame for frame in pred}
    if pred and gt and not by_name.keys() & {frame.file_name for frame in gt}:
        raise DataError(
            source,
            f"no image file name in common with the GT (GT {gt[0].file_name!r}, prediction {pred[0].file_name!r})",
        )
    return tuple(by_name.get(frame.file_name, EvalFrame(frame.file_name, (), ())) for frame in gt)


def load_video_pairs(gt_dir: Path, pred_dir: Path, allow_missing: bool = False) -> list[VideoPair]:
    """Read every GT video of a folder with the prediction file of the same name.

    Args:
        gt_dir: folder of GT ``*.json`` files, one per video.
        pred_dir: folder of prediction files with the GT file names.
        allow_missing: score a GT video without a prediction file as having no predictions instead of failing.

    Returns:
        One pair per GT file, sorted by file name.

    Raises:
        FileNotFoundError: a folder is missing, the GT folder has no JSON file, or a prediction file is
            missing (unless ``allow_missing``).
        DataError: a file is malformed.
    """
    for folder in (gt_dir, pred_dir):
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"not a folder: {folder}")
    gt_files = sorted(Path(gt_dir).glob("*.json"))
    if not gt_files:
        raise FileNotFoundError(f"no GT *.json file in {gt_dir}")
    extra = sorted({p.name for p in Path(pred_dir).glob("*.json")} - {p.name for p in gt_files})
    if extra:
        logger.warning(
            "%s: %d prediction file(s) without a GT video of the same name are not scored: %s",
            pred_dir, len(extra), ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else ""),
        )  # fmt: skip
    pairs = []
    for gt_file in gt_files:
        gt = read_gt(gt_file)
        pred_file = Path(pred_dir) / gt_file.name
        if pred_file.is_file():
            pred = pair_frames(gt, read_predictions(pred_file), pred_file)
        elif allow_missing:
            pred = pair_frames(gt, [], pred_file)
        else:
            raise FileNotFoundError(f"no prediction file for GT video {gt_file.name}: {pred_file} does not exist")
        pairs.append(VideoPair(gt_file.name, tuple(gt), pred))
    return pairs


def _image_entry(image: Mapping[str, Any] | EvalFrame, index: int) -> dict[str, Any]:
    if isinstance(image, EvalFrame):
        return {"file_name": image.file_name, "id": index}
    entry = dict(image)
    entry.setdefault("id", entry.get("frame_id", index))
    return entry


def _annotation_entry(person: PosePrediction, image_id: Any, annotation_id: int) -> dict[str, Any]:
    keypoints = np.asarray(person.keypoints, float)
    if keypoints.shape != (NUM_JOINTS, 3):
        raise ValueError(f"prediction keypoints must be ({NUM_JOINTS}, 3), got {keypoints.shape}")
    keypoints = np.where(np.isfinite(keypoints).all(axis=1, keepdims=True), keypoints, 0.0)
    entry: dict[str, Any] = {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": 1,
        "track_id": int(person.track_id),
        "keypoints": [float(v) for v in keypoints.ravel()],
        "scores": [float(v) for v in keypoints[:, 2]],
    }
    if person.box is not None:
        x1, y1, x2, y2 = (float(v) for v in person.box)
        entry["bbox"] = [x1, y1, x2 - x1, y2 - y1]
    return entry


def write_predictions(
    out_dir: Path,
    video_name: str,
    gt_images: Sequence[Mapping[str, Any] | EvalFrame],
    predictions: Sequence[Sequence[PosePrediction]],
) -> Path:
    """Write one video's predictions as a PoseTrack18 file that :func:`read_predictions` reads back.

    The ``images`` list is copied from the GT so that the file names match; each person is written with its
    joints as (x, y, score) triples and the scores repeated in ``scores`` (the field poseval reads).

    Args:
        out_dir: output folder (created if needed).
        video_name: name of the GT video file (``.json`` is appended when missing).
        gt_images: the GT ``images`` entries (PoseTrack18 dicts) or frames, in order.
        predictions: for each image, its predicted persons.

    Returns:
        The written file.

    Raises:
        ValueError: the number of prediction lists differs from the number of images, or keypoints are not
            (K, 3).
    """
    if len(gt_images) != len(predictions):
        raise ValueError(f"{len(predictions)} prediction lists for {len(gt_images)} images")
    images = [_image_entry(image, index) for index, image in enumerate(gt_images)]
    people = [(image["id"], person) for image, persons in zip(images, predictions, strict=True) for person in persons]
    annotations = [_annotation_entry(person, image_id, index) for index, (image_id, person) in enumerate(people)]
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(POSETRACK_JOINTS)}]
    name = video_name if video_name.endswith(".json") else f"{video_name}.json"
    return write_text_atomic(
        Path(out_dir) / name, json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )


def read_origin(pred_dir: Path) -> str | None:
    """What a prediction folder holds, as its ``ORIGIN`` file says (``None`` without one)."""
    path = Path(pred_dir) / ORIGIN_NAME
    return path.read_text().strip() if path.is_file() else None
