"""Tests for famipose.data.posetrack, famipose.data.detections and famipose.data.errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from famipose.data.detections import boxes_from_persons, load_detections, parse_detections
from famipose.data.errors import DataError, SkippableDataError
from famipose.data.posetrack import FrameRecord, PoseTrackSplit, load_posetrack, read_image

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "posetrack18_sample"
needs_sample = pytest.mark.skipif(
    not SAMPLE.is_dir(), reason=f"PoseTrack18 sample not found at {SAMPLE} (shared data folder absent)"
)
VIDEOS = ("003418_mpii_test", "009473_mpii_test", "012834_mpii_test")


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _image(file_name: str, image_id: int, nframes: int = 10, **extra: Any) -> dict[str, Any]:
    return {"file_name": file_name, "id": image_id, "nframes": nframes, **extra}


def _person(image_id: int, **extra: Any) -> dict[str, Any]:
    keypoints = [float(v) for j in range(17) for v in (10 + j, 20 + 2 * j, 1)]
    return {"image_id": image_id, "keypoints": keypoints, "bbox": [5, 6, 30, 40], "track_id": 3, **extra}


def _write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def _valid_document() -> dict[str, Any]:
    return {
        "images": [_image("images/val/v1/000000.jpg", 100, vid_id="v1"), _image("images/val/v1/000001.jpg", 101)],
        "annotations": [_person(100), _person(100, track_id=4), _person(101)],
    }


# ---------------------------------------------------------------- real PoseTrack18 sample


@needs_sample
@pytest.mark.parametrize("layout", ["per-video", "merged"])
def test_real_sample_matches_json(layout: str) -> None:
    path = SAMPLE / "annotations" / ("val" if layout == "per-video" else "test_posetrack18_val.json")
    split = load_posetrack(path, SAMPLE)
    assert split.skipped == ()
    assert len(split.frames_by_id) == 3
    assert split.num_persons == 14
    for video in VIDEOS:
        raw = _json(SAMPLE / "annotations" / "val" / f"{video}.json")
        raw_image = raw["images"][0]
        frame = split.frames_by_id[raw_image["id"]]
        assert frame.video_id == raw_image["vid_id"]
        assert frame.frame_index == 0
        assert frame.nframes == raw_image["nframes"]
        assert (frame.width, frame.height) == (1920, 1080)
        assert frame.is_labeled is True
        assert frame.path == SAMPLE / raw_image["file_name"]
        assert frame.path.is_file()
        assert split.frame_at(raw_image["vid_id"], 0) is frame
        assert len(frame.ignore_regions) == len(raw_image["ignore_regions_x"])
        np.testing.assert_array_equal(frame.ignore_regions[0][:, 0], raw_image["ignore_regions_x"][0])
        np.testing.assert_array_equal(frame.ignore_regions[0][:, 1], raw_image["ignore_regions_y"][0])
        persons = split.persons(frame.image_id)
        assert len(persons) == len(raw["annotations"])
        for person, annotation in zip(persons, raw["annotations"], strict=True):
            assert person.track_id == annotation["track_id"]
            assert person.keypoints.shape == (17, 3)
            assert person.keypoints.dtype == np.float32
            np.testing.assert_allclose(person.keypoints.ravel(), annotation["keypoints"], rtol=1e-6)
            np.testing.assert_allclose(person.bbox, annotation["bbox"], rtol=1e-6)
            np.testing.assert_allclose(person.head_bbox, annotation["bbox_head"], rtol=1e-6)
    assert [len(split.persons(f.image_id)) for f in split.frames] == [1, 2, 11]


@needs_sample
def test_real_frame_lookups_and_sibling_paths() -> None:
    split = load_posetrack(SAMPLE / "annotations" / "val" / "009473_mpii_test.json", SAMPLE)
    assert list(split.videos) == ["009473"]
    frame = split.frames_by_id[10094730000]
    assert split.frame_at("009473", 1) is None
    assert split.frame_at("nope", 0) is None
    assert split.persons(123) == ()
    assert frame.frame_path(12) == SAMPLE / "images/val/009473_mpii_test/000012.jpg"
    with pytest.raises(ValueError, match="read-only"):
        split.persons(frame.image_id)[0].keypoints[0, 0] = 1.0


@needs_sample
def test_read_image_is_rgb() -> None:
    path = SAMPLE / "images" / "val" / VIDEOS[0] / "000000.jpg"
    image = read_image(path)
    assert image.shape == (1080, 1920, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, cv2.imread(str(path))[:, :, ::-1])


@needs_sample
def test_real_detections_match_json() -> None:
    split = load_posetrack(SAMPLE / "annotations" / "test_posetrack18_val.json", SAMPLE)
    path = SAMPLE / "annotations" / "test_posetrack18_human_detections.json"
    raw = _json(path)
    assert len(raw) == 278
    for threshold in (0.0, 0.2, 0.9):
        detections = load_detections(path, split, score_threshold=threshold)
        expected = [d for d in raw if d["score"] >= threshold]
        assert detections.num_entries == 278
        assert detections.num_kept == len(expected)
        for image_id, boxes in detections.per_image.items():
            mine = [d for d in expected if d["image_id"] == image_id]
            np.testing.assert_allclose(boxes.boxes, [d["bbox"] for d in mine], rtol=1e-6)
            np.testing.assert_allclose(boxes.scores, [d["score"] for d in mine], rtol=1e-6)
    assert load_detections(path, split).num_kept == 186  # default threshold 0.2


# ---------------------------------------------------------------- synthetic layouts


def test_posetrack17_eight_digit_names_are_one_based(tmp_path: Path) -> None:
    document = {
        "images": [_image("images/bonn/000342_mpii/00000001.jpg", 7, nframes=41)],
        "annotations": [_person(7)],
    }
    split = load_posetrack(_write(tmp_path / "pt17.json", document), tmp_path)
    frame = split.frames_by_id[7]
    assert frame.frame_index == 0
    assert frame.video_id == "000342_mpii"  # no vid_id: the directory name
    assert frame.frame_path(2).name == "00000003.jpg"
    assert split.persons(7)[0].head_bbox is None


def test_optional_fields_and_defaults(tmp_path: Path) -> None:
    document = {"images": [_image("v/000004.jpg", 1, is_labeled=0)]}
    split = load_posetrack(_write(tmp_path / "a.json", document), tmp_path)
    frame = split.frames_by_id[1]
    assert (frame.frame_index, frame.is_labeled, frame.width, frame.ignore_regions) == (4, False, None, ())
    assert split.num_persons == 0
    person_without_track = {k: v for k, v in _person(1).items() if k != "track_id"}
    document = {"images": [_image("v/000004.jpg", 1)], "annotations": [person_without_track]}
    assert load_posetrack(_write(tmp_path / "a.json", document), tmp_path).persons(1)[0].track_id == -1


def test_directory_of_files_merges_videos(tmp_path: Path) -> None:
    _write(tmp_path / "a.json", {"images": [_image("v1/000000.jpg", 1)], "annotations": [_person(1)]})
    _write(tmp_path / "b.json", {"images": [_image("v2/000003.jpg", 2)], "annotations": []})
    split = load_posetrack(tmp_path, "/data")
    assert sorted(split.videos) == ["v1", "v2"]
    assert split.frame_at("v2", 3).path == Path("/data/v2/000003.jpg")


def test_frame_record_equality_ignores_nothing_but_polygons() -> None:
    a = FrameRecord(1, "v", 0, "v/000000.jpg", Path("v/000000.jpg"), 3, ignore_regions=(np.zeros((3, 2)),))
    b = FrameRecord(1, "v", 0, "v/000000.jpg", Path("v/000000.jpg"), 3)
    assert a == b and hash(a) == hash(b)
    assert a != FrameRecord(1, "v", 1, "v/000001.jpg", Path("v/000001.jpg"), 3)


def test_from_records_rejects_duplicates() -> None:
    frame = FrameRecord(1, "v", 0, "v/000000.jpg", Path("v/000000.jpg"), 3)
    with pytest.raises(ValueError, match="duplicate image id"):
        PoseTrackSplit.from_records([frame, frame], [])


# ---------------------------------------------------------------- bad input


def _mutated(mutate: Any) -> dict[str, Any]:
    document = _valid_document()
    mutate(document)
    return document


BAD_DOCUMENTS = {
    "top level not an object": ([1, 2], "", "top level must be an object"),
    "missing images": ({"annotations": []}, "top level", "missing field 'images'"),
    "image not an object": ({"images": [3]}, "images[0]", "must be an object"),
    "missing file_name": (
        _mutated(lambda d: d["images"][1].pop("file_name")), "images[1] (id 101)", "missing field 'file_name'"
    ),
    "missing nframes": (
        _mutated(lambda d: d["images"][0].pop("nframes")), "images[0] (id 100)", "missing field 'nframes'"
    ),
    "zero nframes": (
        _mutated(lambda d: d["images"][0].update(nframes=0)), "images[0] (id 100)", "nframes must be >= 1"
    ),
    "name without frame number": (
        _mutated(lambda d: d["images"][0].update(file_name="v1/frame.jpg")), "images[0] (id 100)", "frame number"
    ),
    "string id": (_mutated(lambda d: d["images"][0].update(id="x")), "images[0]", "'id' must be an integer"),
    "polygon mismatch": (
        _mutated(lambda d: d["images"][0].update(ignore_regions_x=[[1, 2]], ignore_regions_y=[[1]])),
        "images[0] (id 100)",
        "ignore region 0 has 2 x and 1 y",
    ),
    "duplicate image id": (
        _mutated(lambda d: d["images"][1].update(id=100)), "images[1] (id 100)", "duplicate image id"
    ),
    "keypoints wrong length": (
        _mutated(lambda d: d["annotations"][2].update(keypoints=[1.0] * 50, id=77)),
        "annotations[2] (id 77)",
        "keypoints must have 51 numbers, got 50",
    ),
    "keypoint not a number": (
        _mutated(lambda d: d["annotations"][0]["keypoints"].__setitem__(4, "a")),
        "annotations[0]",
        "keypoints must hold finite float32 numbers, found 'a'",
    ),
    "missing keypoints": (
        _mutated(lambda d: d["annotations"][1].pop("keypoints")), "annotations[1]", "missing field 'keypoints'"
    ),
    "missing image_id": (
        _mutated(lambda d: d["annotations"][1].pop("image_id")), "annotations[1]", "missing field 'image_id'"
    ),
    "bbox wrong length": (
        _mutated(lambda d: d["annotations"][0].update(bbox=[1, 2, 3])), "annotations[0]", "bbox must have 4"
    ),
}


@pytest.mark.parametrize("case", list(BAD_DOCUMENTS))
def test_bad_documents_raise_data_error_naming_file_entry_problem(tmp_path: Path, case: str) -> None:
    document, entry, problem = BAD_DOCUMENTS[case]
    path = _write(tmp_path / "broken_video.json", document)
    with pytest.raises(DataError) as info:
        load_posetrack(path, tmp_path)
    message = str(info.value)
    assert str(path) in message and entry in message and problem in message
    assert info.value.entry == entry and problem in info.value.problem


@pytest.mark.parametrize(
    ("text", "problem"),
    [("{\"images\": [", "invalid JSON at line 1"), ("", "invalid JSON"), ("\udcff", "cannot read file")],
)
def test_malformed_json_raises_data_error(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(DataError, match=problem) as info:
        load_posetrack(path, tmp_path)
    assert info.value.source == str(path)


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_posetrack(tmp_path / "nope.json", tmp_path)
    with pytest.raises(DataError, match=r"no \.json annotation files"):
        load_posetrack(tmp_path, tmp_path)


def test_same_frame_in_two_files_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "a.json", {"images": [_image("v1/000000.jpg", 1)]})
    _write(tmp_path / "b.json", {"images": [_image("v1/000000.jpg", 2)]})
    expected = r"b\.json: images\[0\] \(id 2\): duplicate frame 0 of video 'v1' \(first in .*a\.json images\[0\]\)"
    with pytest.raises(DataError, match=expected):
        load_posetrack(tmp_path, tmp_path)


SKIPPABLE = {
    "non-positive bbox": (lambda d: d["annotations"][1].update(bbox=[1, 2, 0, 5]), "bbox has non-positive size"),
    "missing bbox": (lambda d: d["annotations"][1].pop("bbox"), "missing field 'bbox'"),
    "unknown image_id": (lambda d: d["annotations"][1].update(image_id=5), "image_id 5 is not an image"),
}


@pytest.mark.parametrize("kind", list(SKIPPABLE))
def test_single_bad_annotation_is_skipped_with_reason_or_raised_when_strict(tmp_path: Path, kind: str) -> None:
    mutate, problem = SKIPPABLE[kind]
    path = _write(tmp_path / "video.json", _mutated(mutate))
    split = load_posetrack(path, tmp_path)
    assert split.num_persons == 2
    assert split.skip_counts() == {kind: 1}
    (skipped,) = split.skipped
    assert skipped.entry == "annotations[1]" and str(path) in skipped.message and problem in skipped.message
    with pytest.raises(SkippableDataError, match=problem) as info:
        load_posetrack(path, tmp_path, strict=True)
    assert isinstance(info.value, DataError) and "annotations[1]" in str(info.value)


def test_read_image_rejects_corrupt_and_missing_files(tmp_path: Path) -> None:
    corrupt = tmp_path / "000000.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(DataError, match="cannot decode image") as info:
        read_image(corrupt)
    assert info.value.source == str(corrupt)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.jpg: cannot decode"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(DataError, match=r"missing\.jpg: cannot read image file"):
        read_image(tmp_path / "missing.jpg")


def test_data_error_survives_pickling() -> None:
    error = SkippableDataError("f.json", "bad box", "annotations[2]", kind="non-positive bbox")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is SkippableDataError
    assert (str(copy), copy.entry, copy.kind) == ("f.json: annotations[2]: bad box", "annotations[2]", error.kind)


# ---------------------------------------------------------------- detections


def _split(tmp_path: Path) -> PoseTrackSplit:
    return load_posetrack(_write(tmp_path / "gt.json", _valid_document()), tmp_path)


def test_detections_match_by_id_name_and_frame_id(tmp_path: Path) -> None:
    split = _split(tmp_path)
    entries = [
        {"image_id": 100, "bbox": [0, 0, 10, 20], "score": 0.9, "category_id": 1},
        {"image_name": "/root/elsewhere/v1/000001.jpg", "bbox": [1, 1, 5, 5], "score": 0.5},
        {"frame_id": 101, "bbox": [2, 2, 5, 5], "score": 0.3},
        {"image_id": 100, "bbox": [0, 0, 10, 20], "score": 0.1},  # below threshold
        {"image_id": 100, "bbox": [0, 0, 10, 20], "score": 0.9, "category_id": 2},  # not a person
    ]
    detections = parse_detections(entries, split, "dets.json")
    assert detections.num_entries == 5 and detections.num_kept == 3 and detections.skipped == ()
    np.testing.assert_array_equal(detections.per_image[100].boxes, [[0, 0, 10, 20]])
    np.testing.assert_allclose(detections.per_image[101].scores, [0.5, 0.3])
    assert detections.per_image[101].boxes.shape == (2, 4)


def test_detections_skip_unknown_images_and_degenerate_boxes(tmp_path: Path) -> None:
    split = _split(tmp_path)
    entries = [
        {"image_id": 999, "bbox": [0, 0, 10, 20], "score": 0.9},
        {"image_name": "v9/000000.jpg", "bbox": [0, 0, 10, 20], "score": 0.9},
        {"image_id": 100, "bbox": [0, 0, -1, 20], "score": 0.9},
    ]
    detections = parse_detections(entries, split, "dets.json")
    assert detections.num_kept == 0
    assert [s.kind for s in detections.skipped] == ["unknown image", "unknown image", "non-positive bbox"]
    assert detections.skipped[2].message.startswith("dets.json: [2]: bbox has non-positive size")
    with pytest.raises(DataError, match=r"dets\.json: \[0\]: the image is not in the split"):
        parse_detections(entries, split, "dets.json", strict=True)


@pytest.mark.parametrize(
    ("entries", "entry", "problem"),
    [
        ({"a": 1}, "", "top level must be a list"),
        ([5], "[0]", "must be an object"),
        ([{"image_id": 100, "score": 0.5}], "[0]", "missing field 'bbox'"),
        ([{"image_id": 100, "bbox": [1, 2, 3, 4]}], "[0]", "missing field 'score'"),
        ([{"image_id": 100, "bbox": [1, 2, 3, 4], "score": "high"}], "[0]", "score must hold finite"),
        ([{"bbox": [1, 2, 3, 4], "score": 0.5}], "[0]", "missing field 'image_id'"),
        ([{"image_id": 100, "bbox": [1, 2, 3], "score": 0.5}], "[0]", "bbox must have 4 numbers"),
    ],
)
def test_bad_detections_raise_data_error(tmp_path: Path, entries: Any, entry: str, problem: str) -> None:
    path = _write(tmp_path / "dets.json", entries)
    with pytest.raises(DataError) as info:
        load_detections(path, _split(tmp_path))
    assert str(path) in str(info.value) and info.value.entry == entry and problem in str(info.value)


def test_boxes_from_persons_keeps_visible_persons(tmp_path: Path) -> None:
    document = _valid_document()
    document["annotations"][2]["keypoints"] = [0.0] * 51
    split = load_posetrack(_write(tmp_path / "gt.json", document), tmp_path)
    boxes = boxes_from_persons(split)
    assert boxes.num_entries == 3 and boxes.num_kept == 2 and 101 not in boxes.per_image
    np.testing.assert_array_equal(boxes.per_image[100].boxes, [[5, 6, 30, 40]] * 2)
    np.testing.assert_array_equal(boxes.per_image[100].scores, [1.0, 1.0])
    assert boxes_from_persons(split, min_visible_joints=0).num_kept == 3
