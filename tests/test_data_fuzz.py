"""Fuzzing of the PoseTrack, detection, prediction and box-file readers: a valid result or a DataError."""

from __future__ import annotations

import copy
import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from famipose.data.detections import parse_detections
from famipose.data.errors import DataError
from famipose.data.posetrack import PoseTrackSplit, load_posetrack
from famipose.evaluation import read_predictions
from famipose.inference.detector import load_box_file

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
good_numbers = st.integers(-5, 2000) | st.floats(-1e3, 1e4, allow_nan=False)
numbers = good_numbers | st.sampled_from([math.nan, math.inf, 1e39, True, "1"])
image_ids = st.integers(0, 5)


def _maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly (90 %) a valid value, sometimes any JSON value."""
    return st.integers(0, 9).flatmap(lambda roll: json_values if roll == 0 else valid)


def _numbers(length: int) -> st.SearchStrategy[Any]:
    """Mostly a list of ``length`` good numbers; else bad items, a wrong length or any JSON value."""
    good = st.lists(good_numbers, min_size=length, max_size=length)
    damaged = st.lists(numbers, min_size=length, max_size=length) | st.lists(numbers)
    return _maybe(st.integers(0, 9).flatmap(lambda roll: damaged if roll == 0 else good))


def _image_id_key(entry: Any) -> str:
    """Uniqueness key of a generated image entry (duplicate ids are tested elsewhere)."""
    return repr(entry.get("id") if isinstance(entry, dict) else entry)


frame_names = st.builds(
    lambda video, number, digits: f"images/val/{video}/{number:0{digits}d}.jpg",
    st.sampled_from(["a", "b"]),
    st.integers(0, 12),
    st.sampled_from([6, 8]),
)
image_entries = st.fixed_dictionaries(
    {"file_name": _maybe(frame_names), "id": _maybe(image_ids), "nframes": _maybe(st.integers(-1, 20))},
    optional={
        "vid_id": _maybe(st.sampled_from(["a", "b"])),
        "is_labeled": _maybe(st.booleans()),
        "width": _maybe(st.integers(1, 2000)),
        "ignore_regions_x": _maybe(st.just([[1, 2.5, 3]])),
        "ignore_regions_y": _maybe(st.just([[4, 5, 6.5]])),
    },
)
annotation_entries = st.fixed_dictionaries(
    {"image_id": _maybe(image_ids), "keypoints": _numbers(51), "bbox": _numbers(4)},
    optional={"track_id": _maybe(st.integers(-1, 5)), "bbox_head": _numbers(4), "id": json_values},
)
documents = st.fixed_dictionaries(
    {"images": _maybe(st.lists(_maybe(image_entries), max_size=4, unique_by=_image_id_key))},
    optional={"annotations": _maybe(st.lists(_maybe(annotation_entries), max_size=5)), "categories": json_values},
)


def _load(text: str | bytes, strict: bool) -> PoseTrackSplit | DataError:
    """Write the input to a file and read it; return the split or the DataError."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "video.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        try:
            return load_posetrack(path, folder, strict=strict)
        except DataError as error:
            assert "video.json" in str(error)
            return error


def _check_split(split: PoseTrackSplit, document: Any, strict: bool) -> None:
    """Invariants of every split the reader accepts."""
    for image_id, persons in split.persons_by_image.items():
        assert image_id in split.frames_by_id
        for person in persons:
            assert person.keypoints.shape == (17, 3) and np.isfinite(person.keypoints).all()
            assert person.bbox.shape == (4,) and person.bbox[2] > 0 and person.bbox[3] > 0
    for frame in split.frames:
        assert frame.frame_index >= 0 and frame.nframes >= 1
        assert split.frame_at(frame.video_id, frame.frame_index) is frame
    annotations = document.get("annotations", []) if isinstance(document, dict) else []
    assert split.num_persons + len(split.skipped) == len(annotations)
    assert not (strict and split.skipped)


@FUZZ
@given(document=documents, strict=st.booleans())
def test_structured_documents_give_a_split_or_a_data_error(document: dict[str, Any], strict: bool) -> None:
    result = _load(json.dumps(document), strict)
    if isinstance(result, PoseTrackSplit):
        _check_split(result, document, strict)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A small valid per-video document: 1-3 frames, 0-4 persons."""
    num_frames = draw(st.integers(1, 3))
    images = [
        {
            "file_name": f"images/val/a/{i:06d}.jpg",
            "id": 10 + i,
            "nframes": num_frames,
            "vid_id": "a",
            "is_labeled": True,
            "width": 64,
            "ignore_regions_x": [[1, 2, 3]],
            "ignore_regions_y": [[4, 5, 6]],
        }
        for i in range(num_frames)
    ]
    annotations = [
        {
            "id": k,
            "image_id": 10 + draw(st.integers(0, num_frames - 1)),
            "track_id": k,
            "keypoints": draw(st.lists(good_numbers, min_size=51, max_size=51)),
            "bbox": [1, 2, draw(st.integers(1, 50)), draw(st.integers(1, 50))],
            "bbox_head": [0, 0, 5, 5],
        }
        for k in range(draw(st.integers(0, 4)))
    ]
    return {"images": images, "annotations": annotations}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths (key / index sequences) to every value inside a JSON document."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


@FUZZ
@given(base=valid_documents(), data=st.data(), strict=st.booleans())
def test_mutated_valid_documents_give_a_split_or_a_data_error(
    base: dict[str, Any], data: st.DataObject, strict: bool
) -> None:
    loaded = _load(json.dumps(base), strict=True)
    assert isinstance(loaded, PoseTrackSplit) and loaded.num_persons == len(base["annotations"])
    document = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(document))
        if not paths:  # every key deleted: nothing left to mutate
            break
        path = data.draw(st.sampled_from(paths))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_values)
    result = _load(json.dumps(document), strict)
    if isinstance(result, PoseTrackSplit):
        _check_split(result, document, strict)


@FUZZ
@given(document=json_values)
def test_arbitrary_json_gives_a_split_or_a_data_error(document: Any) -> None:
    result = _load(json.dumps(document), strict=False)
    if isinstance(result, PoseTrackSplit):
        _check_split(result, document, strict=False)


@FUZZ
@given(data=st.binary(max_size=64) | st.text(max_size=40).map(str.encode))
def test_arbitrary_bytes_give_a_split_or_a_data_error(data: bytes) -> None:
    assert isinstance(_load(data, strict=False), (PoseTrackSplit, DataError))


detection_entries = st.fixed_dictionaries(
    {"bbox": _numbers(4), "score": _maybe(st.floats(0, 1))},
    optional={
        "image_id": _maybe(st.sampled_from([100, 101, 555])),
        "image_name": _maybe(st.sampled_from(["x/v/000000.jpg", "v/000001.jpg", "w/000000.jpg"])),
        "frame_id": _maybe(st.sampled_from([100, 7])),
        "category_id": _maybe(st.sampled_from([1, 2])),
    },
)


@FUZZ
@given(entries=_maybe(st.lists(_maybe(detection_entries), max_size=6)), strict=st.booleans())
def test_detection_results_give_boxes_or_a_data_error(entries: Any, strict: bool) -> None:
    document = {"images": [{"file_name": f"v/{i:06d}.jpg", "id": 100 + i, "nframes": 3} for i in range(2)]}
    split = _load(json.dumps(document), strict=True)
    assert isinstance(split, PoseTrackSplit)
    try:
        detections = parse_detections(entries, split, "dets.json", score_threshold=0.2, strict=strict)
    except DataError as error:
        assert str(error).startswith("dets.json")
        return
    assert detections.num_kept + len(detections.skipped) <= detections.num_entries == len(entries)
    for image_id, boxes in detections.per_image.items():
        assert image_id in split.frames_by_id
        assert boxes.boxes.shape == (len(boxes.scores), 4) and (boxes.boxes[:, 2:] > 0).all()
        assert (boxes.scores >= 0.2).all()


prediction_annotations = st.fixed_dictionaries(
    {"image_id": _maybe(image_ids), "keypoints": _numbers(51)},
    optional={"track_id": _maybe(st.integers(-1, 5)), "scores": _numbers(17), "bbox": _numbers(4)},
)
prediction_documents = st.fixed_dictionaries(
    {"images": _maybe(st.lists(_maybe(image_entries), max_size=4, unique_by=_image_id_key))},
    optional={"annotations": _maybe(st.lists(_maybe(prediction_annotations), max_size=5)), "annolist": json_values},
)


def _written(document: Any, folder: str) -> Path:
    """The document as a JSON file (NaN and infinity as JSON's usual extensions)."""
    path = Path(folder) / "pred.json"
    path.write_text(json.dumps(document))
    return path


@FUZZ
@given(document=prediction_documents | json_values)
def test_prediction_files_give_finite_frames_or_a_data_error(document: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _written(document, folder)
        try:
            frames = read_predictions(path)
        except DataError as error:
            assert str(error).startswith(str(path)) and "\n" not in str(error)
            return
    assert len({frame.file_name for frame in frames}) == len(frames)
    for frame in frames:
        for person in frame.persons:
            assert np.isfinite(person.keypoints).all() and np.isfinite(person.scores).all()


box_file_entries = st.fixed_dictionaries(
    {"bbox": _numbers(4), "score": _maybe(st.floats(0, 1)), "image_id": _maybe(st.sampled_from([0, 1, 100]))},
    optional={"category_id": _maybe(st.sampled_from([1, 2])), "keypoints": _numbers(51)},
)


@FUZZ
@given(document=_maybe(st.lists(_maybe(box_file_entries), max_size=6)) | documents)
def test_box_files_give_positive_boxes_or_a_data_error(document: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _written(document, folder)
        try:
            detector = load_box_file(path)
        except DataError as error:
            assert str(error).startswith(str(path)) and "\n" not in str(error)
            return
    assert sum(len(d.scores) for d in detector.per_frame.values()) + detector.num_skipped <= detector.num_entries
    for frame, detections in detector.per_frame.items():
        assert frame >= 0 and detections.boxes.shape == (len(detections.scores), 4)
        assert np.isfinite(detections.boxes).all() and (detections.boxes[:, 2:] > 0).all()
