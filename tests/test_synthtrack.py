"""Tests of the SynthTrack generator: layout, schema, labels, determinism, statistics, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from famipose.cli import app
from famipose.data.keypoints import NUM_JOINTS, POSETRACK_JOINTS, SKELETON, UNANNOTATED_JOINTS
from famipose.data.synth_render import composite_motion
from famipose.data.synthtrack import (
    SUBSAMPLES,
    SynthConfig,
    SynthStats,
    VideoSpec,
    generate_synthtrack,
    parse_size,
    render_frame,
    sample_scene,
)

W, H = 96, 72
EASY = {"videos": 2, "frames": 8, "size": (W, H), "seed": 3}
HARD = {"videos": 3, "frames": 16, "size": (W, H), "seed": 1, "difficulty": "hard"}
KEY = SUBSAMPLES // 2


@pytest.fixture(scope="module")
def easy_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthStats]:
    root = tmp_path_factory.mktemp("easy")
    return root, generate_synthtrack(root, **EASY)


@pytest.fixture(scope="module")
def hard_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthStats]:
    root = tmp_path_factory.mktemp("hard")
    return root, generate_synthtrack(root, **HARD)


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def video_files(root: Path, split: str = "train") -> list[Path]:
    return sorted((root / "annotations" / split).glob("*.json"))


def keypoints(annotation: dict[str, Any]) -> np.ndarray:
    return np.array(annotation["keypoints"], float).reshape(NUM_JOINTS, 3)


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def test_layout_and_image_entries(easy_set: tuple[Path, SynthStats]) -> None:
    root, stats = easy_set
    files = video_files(root)
    assert len(files) == 2 and stats.videos == 2 and stats.frames == 16
    assert (root / "detections" / "train.json").is_file() and (root / "synthtrack_meta.json").is_file()
    keys = {"file_name", "id", "frame_id", "vid_id", "nframes", "is_labeled", "width", "height",
            "ignore_regions_x", "ignore_regions_y"}  # fmt: skip
    ids: list[int] = []
    for path in files:
        assert set(load(path)) == {"images", "annotations", "categories"}
        video = path.stem
        assert (root / "videos" / "train" / f"{video}.mp4").is_file()
        assert (root / "synthtrack_flags" / "train" / f"{video}.json").is_file()
        images = load(path)["images"]
        assert [im["file_name"] for im in images] == [f"images/train/{video}/{t:06d}.jpg" for t in range(8)]
        for im in images:
            assert set(im) == keys
            assert (root / im["file_name"]).is_file()
            assert type(im["id"]) is int and im["frame_id"] == im["id"]
            assert isinstance(im["vid_id"], str) and video.startswith(im["vid_id"])
            assert im["nframes"] == 8 and im["is_labeled"] is True
            assert (im["width"], im["height"]) == (W, H)
            assert len(im["ignore_regions_x"]) == len(im["ignore_regions_y"])
            for xs, ys in zip(im["ignore_regions_x"], im["ignore_regions_y"], strict=True):
                assert len(xs) == len(ys) >= 3 and all(isinstance(v, float) for v in xs + ys)
            ids.append(im["id"])
        assert cv2.imread(str(root / images[0]["file_name"])).shape == (H, W, 3)
    assert len(set(ids)) == len(ids)


def test_annotation_entries_and_categories(easy_set: tuple[Path, SynthStats]) -> None:
    root, stats = easy_set
    keys = {"keypoints", "bbox", "bbox_head", "track_id", "image_id", "id", "category_id", "iscrowd", "num_keypoints"}
    ann_ids: list[int] = []
    for path in video_files(root):
        data = load(path)
        assert data["categories"] == [{
            "supercategory": "person", "id": 1, "name": "person", "keypoints": list(POSETRACK_JOINTS),
            "skeleton": [[a + 1, b + 1] for a, b in SKELETON],
        }]  # fmt: skip
        image_ids = {im["id"] for im in data["images"]}
        for ann in data["annotations"]:
            assert set(ann) == keys
            assert len(ann["keypoints"]) == 3 * NUM_JOINTS and all(isinstance(v, float) for v in ann["keypoints"])
            kps = keypoints(ann)
            assert set(kps[:, 2]) <= {0.0, 1.0}
            assert np.all(kps[kps[:, 2] == 0] == 0), "unannotated joints must be (0, 0, 0)"
            assert np.all(kps[list(UNANNOTATED_JOINTS)] == 0), "ears are never annotated"
            assert ann["num_keypoints"] == int(kps[:, 2].sum()) > 0
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W and y + h <= H
            visible = kps[kps[:, 2] == 1, :2]
            assert np.all((visible >= [x - 1, y - 1]) & (visible <= [x + w + 1, y + h + 1])), "bbox holds the body"
            assert len(ann["bbox_head"]) == 4 and min(ann["bbox_head"][2:]) > 0
            assert type(ann["track_id"]) is int and ann["image_id"] in image_ids
            assert type(ann["id"]) is int and ann["category_id"] == 1 and ann["iscrowd"] is False
            ann_ids.append(ann["id"])
    assert len(set(ann_ids)) == len(ann_ids) == stats.annotations > 0


def test_head_box_matches_head_size(hard_set: tuple[Path, SynthStats]) -> None:
    root, _ = hard_set
    ratios = []
    for path in video_files(root):
        for ann in load(path)["annotations"]:
            kps = keypoints(ann)
            if kps[1, 2] and kps[2, 2]:  # head_bottom and head_top
                head_size = 0.6 * np.hypot(*ann["bbox_head"][2:])
                ratios.append(head_size / np.linalg.norm(kps[2, :2] - kps[1, :2]))
                x, y, w, h = ann["bbox_head"]
                assert x - 1 <= kps[2, 0] <= x + w + 1 and y - 1 <= kps[2, 1] <= y + h + 1
    assert len(ratios) > 20
    assert 0.8 < np.median(ratios) < 1.3 and min(ratios) > 0.6


def test_visible_joints_lie_on_drawn_people(easy_set: tuple[Path, SynthStats]) -> None:
    """The JPEG differs from the same frame rendered without people at labelled joints, not elsewhere."""
    root, _ = easy_set
    config = SynthConfig.preset("easy")
    at_joints, elsewhere = [], []
    rng = np.random.default_rng(0)
    for index, path in enumerate(video_files(root)):
        scene = sample_scene(VideoSpec("train", index, EASY["seed"], EASY["frames"], W, H), config)
        data = load(path)
        for t, entry in enumerate(data["images"]):
            image = cv2.imread(str(root / entry["file_name"])).astype(float)
            empty = render_frame(scene, t, people=False).image.astype(float)
            change = np.abs(image - empty).max(axis=2)
            for ann in data["annotations"]:
                if ann["image_id"] == entry["id"]:
                    kps = keypoints(ann)
                    xy = np.round(kps[kps[:, 2] == 1, :2]).astype(int)
                    assert np.all((xy >= 0) & (xy < [W, H])), "labelled joints lie inside the image"
                    at_joints += list(change[xy[:, 1], xy[:, 0]])
            far = cv2.erode((render_frame(scene, t).labels == 0).astype(np.uint8), np.ones((7, 7), np.uint8))
            rows, cols = np.nonzero(far)
            pick = rng.choice(len(rows), 30)
            elsewhere += list(change[rows[pick], cols[pick]])
    assert len(at_joints) > 100
    assert np.mean(np.array(at_joints) > 20) > 0.9
    assert np.median(elsewhere) < 10


def test_hidden_joints_are_unannotated(hard_set: tuple[Path, SynthStats]) -> None:
    """Joints inside an occluder's outline or outside the frame are (0, 0, 0); the others are labelled."""
    root, _ = hard_set
    config = SynthConfig.preset("hard")
    occluded = outside = labelled = 0
    for index, path in enumerate(video_files(root)):
        scene = sample_scene(VideoSpec("train", index, HARD["seed"], HARD["frames"], W, H), config)
        data = load(path)
        by_key = {(a["image_id"], a["track_id"]): keypoints(a) for a in data["annotations"]}
        for t, entry in enumerate(data["images"]):
            labels = render_frame(scene, t).labels
            for i, person in enumerate(scene.people):
                kps = by_key.get((entry["id"], person.track_id), np.zeros((NUM_JOINTS, 3)))
                truth = person.points[t, KEY, :NUM_JOINTS]
                for k, (x, y) in enumerate(truth):
                    inside = 0 <= x <= W - 1 and 0 <= y <= H - 1
                    under = any(cv2.pointPolygonTest(o.polygon[t, KEY].astype(np.float32), (x, y), False) > 0
                                for o in scene.occluders)  # fmt: skip
                    if not inside or under:
                        assert tuple(kps[k]) == (0, 0, 0)
                        outside += not inside
                        occluded += inside and under
                    elif k not in UNANNOTATED_JOINTS and labels[round(y), round(x)] == i + 1:
                        assert kps[k, 2] == 1 and np.allclose(kps[k, :2], (x, y), atol=0.01)
                        labelled += 1
    assert occluded > 5 and outside > 5 and labelled > 300


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    args = {**EASY, "videos": 2, "frames": 4}
    generate_synthtrack(tmp_path / "a", **args, workers=1)
    generate_synthtrack(tmp_path / "b", **args, workers=2)
    generate_synthtrack(tmp_path / "c", **{**args, "seed": args["seed"] + 1})
    a, b, c = (digests(tmp_path / name) for name in "abc")
    assert a == b and len(a) == 2 * 4 + 2 * 3 + 2
    differs = [name for name in a if a[name] != c.get(name)]
    assert any(name.endswith(".jpg") for name in differs) and any(name.startswith("annotations") for name in differs)


def test_splits_never_share_videos(tmp_path: Path) -> None:
    args = {**EASY, "videos": 2, "frames": 3}
    train = generate_synthtrack(tmp_path, **args, split="train")
    val = generate_synthtrack(tmp_path, **args, split="val")
    names = {split: {p.stem for p in video_files(tmp_path, split)} for split in ("train", "val")}
    assert names["train"].isdisjoint(names["val"]) and len(names["val"]) == 2
    ids = {split: {im["id"] for p in video_files(tmp_path, split) for im in load(p)["images"]}
           for split in ("train", "val")}  # fmt: skip
    assert ids["train"].isdisjoint(ids["val"])
    first = {split: cv2.imread(str(next((tmp_path / "images" / split).glob("*/000000.jpg")))) for split in names}
    assert np.abs(first["train"].astype(int) - first["val"].astype(int)).mean() > 10
    meta = load(tmp_path / "synthtrack_meta.json")
    assert meta["splits"]["train"]["stats"] == train.to_dict() and meta["splits"]["val"]["stats"] == val.to_dict()


def recount(root: Path) -> tuple[int, int, int]:
    """Labelled, degraded and recoverable joints recounted from the written flags."""
    total = degraded_total = recoverable_total = 0
    for path in sorted((root / "synthtrack_flags" / "train").glob("*.json")):
        flags = load(path)
        visible = np.array(flags["visible"], bool)
        blurred = np.array(flags["blurred"], bool)
        excess = np.array(flags["motion_blur_px"]) - np.array(flags["blur_limit_px"])[..., None]
        assert np.array_equal(blurred, visible & blurred)
        assert np.all(excess[blurred] > -0.02) and np.all(excess[visible & ~blurred] < 0.02), "rounded px values"
        reasons = blurred | np.array(flags["near_occluder"], bool) | np.array(flags["burst"], bool)[:, None, None]
        degraded = np.array(flags["degraded"], bool)
        assert np.array_equal(degraded, visible & reasons)
        clean = visible & ~degraded
        labelled = visible & np.array(flags["is_labeled"], bool)[:, None, None]
        for t in range(len(visible)):
            for p, k in zip(*np.nonzero(labelled[t]), strict=True):
                total += 1
                if degraded[t, p, k]:
                    degraded_total += 1
                    near = [clean[s, p, k] for s in (t - 2, t - 1, t + 1, t + 2) if 0 <= s < len(visible)]
                    recoverable_total += any(near)
    return total, degraded_total, recoverable_total


def test_hard_statistics_match_flags_and_reach_a_quarter(
    hard_set: tuple[Path, SynthStats], easy_set: tuple[Path, SynthStats]
) -> None:
    root, stats = hard_set
    assert recount(root) == (stats.labeled_joints, stats.degraded_joints, stats.recoverable_joints)
    assert load(root / "synthtrack_meta.json")["splits"]["train"]["stats"]["recoverable_fraction"] == round(
        stats.recoverable_fraction, 6
    )
    assert stats.recoverable_fraction >= 0.25
    assert min(stats.blurred_joints, stats.occluder_joints, stats.burst_joints) > 0
    assert easy_set[1].recoverable_fraction < stats.recoverable_fraction


def test_detections_are_noisy_and_scores_follow_box_quality(hard_set: tuple[Path, SynthStats]) -> None:
    root, stats = hard_set
    detections = load(root / "detections" / "train.json")
    assert len(detections) == stats.detections > 0
    truth: dict[int, list[list[float]]] = {}
    for path in video_files(root):
        for ann in load(path)["annotations"]:
            truth.setdefault(ann["image_id"], []).append(ann["bbox"])
    best = []
    for det in detections:
        assert set(det) == {"image_id", "bbox", "score", "category_id"} and det["category_id"] == 1
        assert 0 < det["score"] < 1 and det["bbox"][2] > 0 and det["bbox"][3] > 0
        best.append(max((iou(det["bbox"], box) for box in truth.get(det["image_id"], [])), default=0.0))
    best_iou, scores = np.array(best), np.array([d["score"] for d in detections])
    assert np.sum(best_iou < 0.1) > 0, "some false positives"
    assert np.sum(best_iou > 0.5) < sum(map(len, truth.values())), "some misses"
    assert np.corrcoef(best_iou, scores)[0, 1] > 0.5


def iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)


def test_mp4_decodes_to_all_frames(easy_set: tuple[Path, SynthStats]) -> None:
    root, _ = easy_set
    for path in sorted((root / "videos" / "train").glob("*.mp4")):
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
        assert len(frames) == EASY["frames"] and frames[0].shape == (H, W, 3)
        jpeg = cv2.imread(str(root / "images" / "train" / path.stem / "000003.jpg")).astype(float)
        assert np.abs(frames[3] - jpeg).mean() < 12, "video frames are the image frames"


def test_labeled_every_and_stale_videos_removed(tmp_path: Path) -> None:
    generate_synthtrack(tmp_path, videos=2, frames=7, size=(W, H), seed=0)
    stats = generate_synthtrack(tmp_path, videos=1, frames=7, size=(W, H), seed=0, labeled_every=3)
    [path] = video_files(tmp_path)
    assert len(list((tmp_path / "images" / "train").iterdir())) == 1
    assert len(list((tmp_path / "videos" / "train").iterdir())) == 1
    data = load(path)
    labelled = [im["is_labeled"] for im in data["images"]]
    assert labelled == [True, False, False, True, False, False, True] and stats.labeled_frames == 3
    labelled_ids = {im["id"] for im in data["images"] if im["is_labeled"]}
    assert {a["image_id"] for a in data["annotations"]} <= labelled_ids
    assert len(load(tmp_path / "detections" / "train.json")) >= 7 - 1


def test_motion_blur_spreads_over_the_exposure() -> None:
    """A 4 px block moving 2 px per sub-sample smears over 12 px: coverage 1/5 at the ends, 2/5 between."""
    frame = np.zeros((4, 20, 3), np.float32)

    def draw(buf: np.ndarray, k: int) -> None:
        buf[:, 2 * k : 2 * k + 4] = 200

    key_mask = composite_motion(frame, (0, 0, 20, 4), 5, 2, draw)
    row = frame[0, :, 0] / 200
    assert np.allclose(row[[0, 2, 4, 6, 8, 10, 12]], [0.2, 0.4, 0.4, 0.4, 0.4, 0.2, 0.0])
    assert key_mask[0].nonzero()[0].tolist() == [4, 5, 6, 7]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": (0, 72)}, "size"),
        ({"frames": 0}, "frames"),
        ({"videos": 0}, "videos"),
        ({"difficulty": "medium"}, "easy, hard"),
        ({"split": "dev"}, "train, val, test"),
        ({"labeled_every": 0}, "labeled_every"),
    ],
)
def test_bad_arguments_raise(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_synthtrack(tmp_path, **{**EASY, **change})


@pytest.mark.parametrize(
    ("knobs", "message"),
    [({"people": (3, 2)}, "people"), ({"shutter": 0.0}, "shutter"), ({"noise": -1.0}, "noise"), ({"fps": 0}, "fps")],
)
def test_bad_knobs_raise(knobs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SynthConfig(**knobs)


def test_parse_size() -> None:
    assert parse_size("384x288") == (384, 288)
    for text in ("384", "0x10", "ax3", "-4x4"):
        with pytest.raises(ValueError, match="WxH"):
            parse_size(text)


def test_cli_synth(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["synth", str(tmp_path), "--videos", "1", "--frames", "5", "--size", "64x48", "--seed", "2"]
    result = runner.invoke(app, [*args, "--difficulty", "hard", "--split", "val", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "recoverable" in result.output and "degraded" in result.output
    [path] = video_files(tmp_path, "val")
    assert len(load(path)["images"]) == 5
    assert load(tmp_path / "synthtrack_meta.json")["splits"]["val"]["params"]["config"]["name"] == "hard"
    assert runner.invoke(app, [*args, "--difficulty", "medium"]).exit_code != 0
    bad_size = runner.invoke(app, [*args[:-2], "--size", "64by48"])
    assert bad_size.exit_code == 2 and "WxH" in bad_size.output
