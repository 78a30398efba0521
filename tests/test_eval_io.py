"""Tests for famipose.evaluation.io and the ``famipose evaluate`` command: both file layouts, errors, writing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from famipose.cli import app
from famipose.data.errors import DataError
from famipose.data.keypoints import NUM_JOINTS, POSETRACK_JOINTS
from famipose.evaluation import (
    EVALUATED_JOINTS,
    POSETRACK17_JOINT_IDS,
    PosePrediction,
    evaluate_posetrack,
    read_gt,
    read_predictions,
    write_predictions,
)
from famipose.evaluation.io import MIN_SCORE

SAMPLE_VAL = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "posetrack18_sample" / "annotations" / "val"
)

# PoseTrack17 annolist ids, written out by hand from poseval's Joint class.
MPII_ID = {
    "right_ankle": 0, "right_knee": 1, "right_hip": 2, "left_hip": 3, "left_knee": 4, "left_ankle": 5,
    "right_wrist": 6, "right_elbow": 7, "right_shoulder": 8, "left_shoulder": 9, "left_elbow": 10,
    "left_wrist": 11, "head_bottom": 12, "nose": 13, "head_top": 14,
}  # fmt: skip
HEAD_XYWH = (0.0, 0.0, 30.0, 40.0)  # head size 30 px: PCKh@0.5 accepts up to 15 px
LEFT_WRIST = POSETRACK_JOINTS.index("left_wrist")

# A scene: per frame, (image name, ignore polygons, persons as (keypoints (K, 2), score, track id)).
Person = tuple[np.ndarray, float, int]
Scene = list[tuple[str, list[np.ndarray], list[Person]]]


def pose(slot: int) -> np.ndarray:
    """(K, 2) joints of a person in slot ``slot`` (slots 1000 px apart)."""
    joints = np.arange(NUM_JOINTS, dtype=float)
    return np.stack([1000.0 * slot + 9.0 * joints, 40.0 + 13.0 * (joints % 6)], axis=-1)


def moved(keypoints: np.ndarray, joint: int, dx: float) -> np.ndarray:
    """Copy of ``keypoints`` with one joint shifted along x."""
    out = keypoints.copy()
    out[joint, 0] += dx
    return out


def scenes() -> tuple[Scene, Scene]:
    """A hand-built GT scene and predictions for it.

    Frame 0: GT in slots 0-2; predictions for them scored 0.9, 0.8, 0.7 (the last with its left wrist 20 px
    off) and a false positive in slot 5 scored 0.1. Frame 1: GT in slots 0 and 1, slot 1 inside an ignore
    region; predictions for both, scored 0.6 and 0.95. Every joint but the left wrist ranks
    TP TP TP TP FP (AP 100); the left wrist ranks TP TP FP TP FP with 4 positives: AP = 1/4 + 1/4 + 3/4 · 1/4.
    """
    region = np.array([[990.0, 0.0], [1200.0, 0.0], [1200.0, 200.0], [990.0, 200.0]])
    gt: Scene = [
        ("images/val/000001_mpii_test/000000.jpg", [], [(pose(s), 1.0, s) for s in range(3)]),
        ("images/val/000001_mpii_test/000004.jpg", [region], [(pose(0), 1.0, 0), (pose(1), 1.0, 1)]),
    ]
    pred: Scene = [
        (gt[0][0], [], [(pose(0), 0.9, 7), (pose(1), 0.8, 8), (moved(pose(2), LEFT_WRIST, 20.0), 0.7, 9)]),
        (gt[1][0], [], [(pose(0), 0.6, 7), (pose(1), 0.95, 8)]),
    ]
    pred[0][2].append((pose(5), 0.1, 10))
    return gt, pred


def to_posetrack18(scene: Scene, is_gt: bool) -> dict[str, Any]:
    """The scene as a PoseTrack18 file (GT: visibility flags and head boxes; predictions: scores)."""
    images, annotations = [], []
    for index, (name, regions, persons) in enumerate(scene):
        images.append({
            "file_name": name, "id": 100 + index, "frame_id": 100 + index, "is_labeled": True,
            "ignore_regions_x": [r[:, 0].tolist() for r in regions],
            "ignore_regions_y": [r[:, 1].tolist() for r in regions],
        })  # fmt: skip
        for keypoints, score, track_id in persons:
            third = np.where(np.isin(np.arange(NUM_JOINTS), EVALUATED_JOINTS), 1.0 if is_gt else score, 0.0)
            flat = np.concatenate([np.where(third[:, None] > 0, keypoints, 0.0), third[:, None]], axis=1)
            entry = {"image_id": 100 + index, "track_id": track_id, "keypoints": flat.ravel().tolist()}
            entry.update({"bbox_head": list(HEAD_XYWH), "scores": []} if is_gt else {"scores": third.tolist()})
            annotations.append(entry)
    categories = [{"id": 1, "name": "person", "keypoints": list(POSETRACK_JOINTS)}]
    return {"images": images, "annotations": annotations, "categories": categories}


def to_posetrack17(scene: Scene, is_gt: bool) -> dict[str, Any]:
    """The scene as a PoseTrack17 annolist file, with the joint ids of :data:`MPII_ID`."""
    annolist = []
    for name, regions, persons in scene:
        rects = []
        for keypoints, score, track_id in persons:
            points = [
                {"id": [i], "x": [float(keypoints[POSETRACK_JOINTS.index(n), 0])],
                 "y": [float(keypoints[POSETRACK_JOINTS.index(n), 1])], **({} if is_gt else {"score": [score]})}
                for n, i in MPII_ID.items()
            ]  # fmt: skip
            x, y, w, h = HEAD_XYWH
            head = {"x1": [x], "y1": [y], "x2": [x + w], "y2": [y + h]} if is_gt else {}
            rects.append({"track_id": [track_id], "annopoints": [{"point": points}], **head})
        ignore = [{"point": [{"x": [float(px)], "y": [float(py)]} for px, py in r]} for r in regions]
        annolist.append({"image": [{"name": name}], "annorect": rects, "ignore_regions": ignore, "is_labeled": [1]})
    return {"annolist": annolist}


def write_json(folder: Path, name: str, data: Any) -> Path:
    """Write ``data`` as ``folder/name``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def write_scene(tmp_path: Path, gt_format: str, pred_format: str) -> tuple[Path, Path]:
    """GT and prediction folders holding :func:`scenes` in the given layouts ("17" or "18")."""
    writers = {"17": to_posetrack17, "18": to_posetrack18}
    gt, pred = scenes()
    gt_dir, pred_dir = tmp_path / f"gt{gt_format}", tmp_path / f"pred{gt_format}{pred_format}"
    write_json(gt_dir, "000001_mpii_test.json", writers[gt_format](gt, is_gt=True))
    write_json(pred_dir, "000001_mpii_test.json", writers[pred_format](pred, is_gt=False))
    return gt_dir, pred_dir


def test_posetrack17_ids_follow_poseval() -> None:
    assert POSETRACK17_JOINT_IDS[13] == "nose"
    assert POSETRACK17_JOINT_IDS[12] == "head_bottom"
    assert POSETRACK17_JOINT_IDS[14] == "head_top"
    assert POSETRACK17_JOINT_IDS[0] == "right_ankle"
    assert POSETRACK17_JOINT_IDS[11] == "left_wrist"
    assert sorted(POSETRACK17_JOINT_IDS) == list(range(15))
    assert [POSETRACK_JOINTS[j] for j in range(NUM_JOINTS) if j not in EVALUATED_JOINTS] == ["left_ear", "right_ear"]


@pytest.mark.parametrize(("gt_format", "pred_format"), [("18", "18"), ("17", "17"), ("18", "17"), ("17", "18")])
def test_both_layouts_give_the_hand_computed_result(tmp_path: Path, gt_format: str, pred_format: str) -> None:
    result = evaluate_posetrack(*write_scene(tmp_path, gt_format, pred_format))
    assert result.num_frames == 2
    assert result.ap[LEFT_WRIST] == pytest.approx(100.0 * (0.25 + 0.25 + 0.75 * 0.25))
    others = [j for j in EVALUATED_JOINTS if j != LEFT_WRIST]
    np.testing.assert_allclose(result.ap[others], 100.0)


def test_read_posetrack18_gt_fields(tmp_path: Path) -> None:
    keypoints = np.zeros((NUM_JOINTS, 3))
    keypoints[0] = 5, 6, 1  # nose
    keypoints[2] = 7, 0, 0  # head top: flag 0 but a position, so annotated (poseval drops only (0, 0, 0))
    keypoints[3] = 1, 1, 1  # left ear: never evaluated
    image = {"file_name": "a/000000.jpg", "id": 3, "ignore_regions_x": [[0, 4, 4]], "ignore_regions_y": [[0, 0, 4]]}
    person = {"image_id": 3, "track_id": 2, "bbox_head": [10, 20, 30, 40], "keypoints": keypoints.ravel().tolist()}
    data = {"images": [image], "annotations": [person]}
    (frame,) = read_gt(write_json(tmp_path, "v.json", data))
    assert frame.file_name == "a/000000.jpg"
    np.testing.assert_array_equal(frame.ignore_regions[0], [[0, 0], [4, 0], [4, 4]])
    (person,) = frame.persons
    assert person.track_id == 2
    np.testing.assert_array_equal(person.head_box, [10, 20, 40, 60])
    np.testing.assert_array_equal(np.flatnonzero(person.present), [0, 2])
    np.testing.assert_array_equal(person.keypoints[[0, 2]], [[5, 6], [7, 0]])


def test_prediction_scores_come_from_scores_list_else_third_value(tmp_path: Path) -> None:
    keypoints = np.tile([50.0, 60.0, 0.3], (NUM_JOINTS, 1)).ravel().tolist()
    listed = {"image_id": 0, "track_id": 0, "keypoints": keypoints, "scores": [0.7] * NUM_JOINTS}
    unlisted = {"image_id": 0, "track_id": 1, "keypoints": keypoints, "scores": []}
    data = {"images": [{"file_name": "x.jpg", "id": 0}], "annotations": [listed, unlisted]}
    (frame,) = read_predictions(write_json(tmp_path, "v.json", data))
    np.testing.assert_allclose(frame.persons[0].scores[list(EVALUATED_JOINTS)], 0.7)
    np.testing.assert_allclose(frame.persons[1].scores[list(EVALUATED_JOINTS)], 0.3)


def test_read_posetrack17_points(tmp_path: Path) -> None:
    points = [
        {"id": [13], "x": [5.0], "y": [6.0], "score": [0.4]},
        {"id": [13], "x": [99.0], "y": [99.0], "score": [0.9]},  # repeated id: the first one counts
        {"id": [11], "x": [1.0], "y": [2.0]},  # no score: poseval's minimum score
    ]
    data = {
        "annolist": [{"image": [{"name": "y.jpg"}], "annorect": [{"track_id": [4], "annopoints": [{"point": points}]}]}]
    }
    (frame,) = read_predictions(write_json(tmp_path, "v.json", data))
    (person,) = frame.persons
    nose = POSETRACK_JOINTS.index("nose")
    np.testing.assert_array_equal(np.flatnonzero(person.present), sorted([nose, LEFT_WRIST]))
    np.testing.assert_array_equal(person.keypoints[nose], [5.0, 6.0])
    assert person.scores[nose] == 0.4 and person.scores[LEFT_WRIST] == MIN_SCORE
    assert person.track_id == 4 and person.head_box is None


@pytest.mark.parametrize(
    ("annorect", "expected"), [([{"track_id": [3], "x1": [0], "y1": [0], "x2": [9], "y2": [9]}], 50.0), ([], 100.0)]
)
def test_posetrack17_frame_with_only_pointless_persons_is_evaluated(
    tmp_path: Path, annorect: list[dict[str, Any]], expected: float
) -> None:
    # A GT frame listing a person without annopoints is evaluated (with no GT person left), so the prediction
    # in it, ranked first, is a false positive: AP 1/2. A GT frame listing nobody is skipped.
    names = ["images/val/000002_mpii_test/000000.jpg", "images/val/000002_mpii_test/000001.jpg"]
    gt = to_posetrack17([(names[0], [], [(pose(0), 1.0, 0)]), (names[1], [], [])], is_gt=True)
    gt["annolist"][1]["annorect"] = annorect
    pred = to_posetrack17([(names[0], [], [(pose(0), 0.5, 0)]), (names[1], [], [(pose(1), 0.9, 1)])], is_gt=False)
    write_json(tmp_path / "gt", "v.json", gt)
    write_json(tmp_path / "pred", "v.json", pred)
    result = evaluate_posetrack(tmp_path / "gt", tmp_path / "pred")
    np.testing.assert_allclose(result.ap[list(EVALUATED_JOINTS)], expected)


def test_missing_prediction_file_is_named(tmp_path: Path) -> None:
    gt_dir, _ = write_scene(tmp_path, "18", "18")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"000001_mpii_test\.json"):
        evaluate_posetrack(gt_dir, tmp_path / "empty")
    result = evaluate_posetrack(gt_dir, tmp_path / "empty", allow_missing=True)
    np.testing.assert_array_equal(result.ap[list(EVALUATED_JOINTS)], 0.0)  # no detection: AP 0, as poseval


def test_corrupt_prediction_json_is_named(tmp_path: Path) -> None:
    gt_dir, pred_dir = write_scene(tmp_path, "18", "18")
    (pred_dir / "000001_mpii_test.json").write_text('{"images": [')
    with pytest.raises(DataError, match=r"000001_mpii_test\.json: is not valid JSON"):
        evaluate_posetrack(gt_dir, pred_dir)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"frames": []}, "neither 'annolist'"),
        (
            {"images": [{"file_name": "x.jpg", "id": 0}], "annotations": [{"image_id": 5}]},
            r"annotations\[0\].*image_id 5",
        ),
        ({"images": [{"file_name": "x.jpg", "id": 0}], "annotations": [{"image_id": 0, "keypoints": [1, 2]}]}, "51"),
        ({"annolist": [{"annorect": []}]}, r"annolist\[0\]"),
        (
            {"images": [{"file_name": "x.jpg", "id": 0}], "annotations": [{"image_id": 0, "track_id": 1}] * 2},
            "track ids are not unique",
        ),
    ],
)
def test_malformed_prediction_files_are_rejected(tmp_path: Path, data: dict[str, Any], problem: str) -> None:
    with pytest.raises(DataError, match=problem):
        read_predictions(write_json(tmp_path, "bad.json", data))


def test_frames_are_paired_by_file_name(tmp_path: Path) -> None:
    gt_dir, pred_dir = write_scene(tmp_path, "18", "18")
    pred_file = pred_dir / "000001_mpii_test.json"
    data = json.loads(pred_file.read_text())
    data["images"].reverse()
    pred_file.write_text(json.dumps(data))
    assert evaluate_posetrack(gt_dir, pred_dir).ap[0] == 100.0
    for image in data["images"]:
        image["file_name"] = "elsewhere/" + image["file_name"]
    pred_file.write_text(json.dumps(data))
    with pytest.raises(DataError, match="no image file name in common"):
        evaluate_posetrack(gt_dir, pred_dir)


def test_write_predictions_validates_its_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="prediction lists"):
        write_predictions(tmp_path, "v", [{"file_name": "a.jpg", "id": 0}], [])
    with pytest.raises(ValueError, match=r"\(17, 3\)"):
        write_predictions(tmp_path, "v", [{"file_name": "a.jpg", "id": 0}], [[PosePrediction(np.zeros((15, 3)), 0)]])


def as_prediction(keypoints: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(K, 3) prediction scored 0.8 from GT joints, NaN where the GT has none."""
    return np.where(present[:, None], np.c_[keypoints, np.full(NUM_JOINTS, 0.8)], np.nan)


@pytest.mark.skipif(
    not SAMPLE_VAL.is_dir(), reason="PoseTrack18 sample not present (../shared/data/posetrack18_sample)"
)
def test_written_predictions_of_the_sample_gt_score_100(tmp_path: Path) -> None:
    for gt_file in sorted(SAMPLE_VAL.glob("*.json")):
        images = json.loads(gt_file.read_text())["images"]
        predictions = [
            [
                PosePrediction(as_prediction(p.keypoints, p.present), i, (0, 0, 9, 9))
                for i, p in enumerate(frame.persons)
            ]
            for frame in read_gt(gt_file)
        ]
        path = write_predictions(tmp_path, gt_file.stem, images, predictions)
        assert path.name == gt_file.name
        written = json.loads(path.read_text())
        assert [i["file_name"] for i in written["images"]] == [i["file_name"] for i in images]
        assert written["annotations"][0]["bbox"] == [0.0, 0.0, 9.0, 9.0]
    result = evaluate_posetrack(SAMPLE_VAL, tmp_path)
    assert result.total == 100.0 and result.num_frames == 3


def test_cli_evaluate_writes_json(tmp_path: Path) -> None:
    gt_dir, pred_dir = write_scene(tmp_path, "18", "17")
    out = tmp_path / "out" / "metrics.json"
    args = ["evaluate", "--gt", str(gt_dir), "--pred", str(pred_dir), "--json", str(out), "--track"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Wri" in result.output and "MOTA" in result.output
    metrics = json.loads(out.read_text())
    assert list(metrics)[:8] == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Total"]
    assert metrics["Wrist"] == pytest.approx((100.0 + 68.75) / 2)
    assert metrics["per_joint_ap"]["left_wrist"] == pytest.approx(68.75)
    assert set(metrics["tracking"]) == {"MOTA", "MOTP", "Precision", "Recall", "per_joint"}


def test_cli_evaluate_reports_missing_predictions(tmp_path: Path) -> None:
    gt_dir, _ = write_scene(tmp_path, "18", "18")
    (tmp_path / "none").mkdir()
    result = CliRunner().invoke(app, ["evaluate", "--gt", str(gt_dir), "--pred", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "000001_mpii_test.json" in result.output
