"""Video pipeline: stages, exact vs fast, SynthTrack end to end through the CLI, bad input, detectors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from famipose.cli import app
from famipose.config import load_config
from famipose.data.errors import DataError
from famipose.engine.evaluate import evaluate_model
from famipose.evaluation import evaluate_posetrack, read_predictions
from famipose.inference import (
    Detections,
    DrawnPerson,
    EstimatorOptions,
    Frame,
    FrameNames,
    MotionPersonDetector,
    TrackerConfig,
    VideoPoseEstimator,
    clean_detections,
    crop_geometry,
    load_box_file,
    make_detector,
    open_frames,
    write_posetrack_json,
)
from famipose.inference.detector import hog_available
from famipose.inference.draw import draw_person, track_colour
from famipose.inference.windows import WindowEngine
from famipose.models.famipose import FamiPose
from famipose.video_writer import VideoWriter

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "famipose_tiny.yaml"
SAMPLE_CLIP = ROOT / ".." / "shared" / "data" / "posetrack18_sample" / "videos" / "000001_mpiinew_test"
FRAME_SIZE = (160, 120)  # w, h
STATIC_BOXES = np.array([[20.0, 10, 40, 90], [95, 20, 45, 95]])


pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _perturbed(config_path: Path, seed: int = 0) -> FamiPose:
    """A model whose random weights give peaked, non-degenerate outputs (the default init is near zero)."""
    torch.manual_seed(seed)
    model = FamiPose(load_config(config_path).model).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def _textured_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    """Frames with noise and drifting blobs, so every frame's crops differ."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (FRAME_SIZE[1], FRAME_SIZE[0], 3), dtype=np.uint8)
    frames = []
    for t in range(count):
        image = base.copy()
        for k in range(3):
            cv2.circle(image, (30 + 40 * k + 2 * t, 40 + 3 * t), 12, (255, 40 * k, 255 - 40 * k), -1)
        frames.append(image)
    return frames


def _write_clip(path: Path, count: int) -> Path:
    with VideoWriter(path, fps=25) as writer:
        for image in _textured_frames(count):
            writer.write(image)
    return path


def _box_file(path: Path, frames: range, boxes: np.ndarray, extra: list[dict] | None = None) -> Path:
    entries = [
        {"frame_index": t, "bbox": [float(v) for v in box], "score": 0.9, "category_id": 1}
        for t in frames
        for box in boxes
    ]
    path.write_text(json.dumps(entries + (extra or [])))
    return path


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config_name", ["famipose_tiny", "famipose_official_tiny", "famipose_simcc_tiny", "single_frame_tiny"]
)
def test_forward_from_features_reproduces_forward_exactly(config_name: str) -> None:
    model = _perturbed(ROOT / "configs" / f"{config_name}.yaml")
    width, height = model.config.input_size
    key = torch.randn(2, 3, height, width)
    supports = torch.randn(2, len(model.config.deltas), 3, height, width)
    with torch.no_grad():
        expected = model(key, supports).pose
        features = model.backbone.features(torch.cat([key, supports.flatten(0, 1)]))  # as forward batches them
        z_sup = features[2:].unflatten(0, (2, len(model.config.deltas)))
        got = model.forward_from_features(features[:2], z_sup).pose
    for name in ("heatmaps", "simcc_x", "simcc_y"):
        if getattr(expected, name) is not None:
            assert torch.equal(getattr(got, name), getattr(expected, name)), name


def test_clean_detections_thresholds_and_suppresses_without_clipping() -> None:
    boxes = np.array([[10, 10, 50, 100], [12, 11, 50, 100], [500, 500, 40, 40], [-30, 20, 60, 80], [0, 0, 30, 30]])
    scores = np.array([0.9, 0.8, 0.95, 0.7, 0.1], np.float32)
    detections = Detections(boxes.astype(np.float32), scores)
    kept, outside = clean_detections(detections, (200, 150), 0.4, 0.5)
    assert outside == 1  # the box at (500, 500) lies outside the 200x150 image
    np.testing.assert_allclose(kept.scores, [0.9, 0.7])  # duplicate suppressed, weak box dropped
    np.testing.assert_allclose(kept.boxes, boxes[[0, 3]])  # the box past the left edge keeps its extent
    kept, _ = clean_detections(detections, (200, 150), 0.4, None)  # ground truth: crossing persons overlap
    np.testing.assert_allclose(kept.scores, [0.9, 0.8, 0.7])


def test_box_files_map_entries_to_frames(tmp_path: Path) -> None:
    images = [{"file_name": f"images/val/v/{i:06d}.jpg", "id": 1000 + i} for i in range(3)]
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps([
        {"image_id": 1002, "bbox": [0, 0, 10, 20], "score": 0.5},
        {"image_name": "other/root/v/000001.jpg", "bbox": [1, 1, 10, 20], "score": 0.6},
        {"frame_index": 0, "bbox": [2, 2, 10, 20], "score": 0.7, "category_id": 2},  # not a person
        {"image_id": 5, "bbox": [3, 3, 0, 20], "score": 0.7},  # empty box
    ]))  # fmt: skip
    detector = load_box_file(coco, FrameNames.from_gt_images(images))
    assert sorted(detector.per_frame) == [1, 2] and detector.num_skipped == 2
    gt = tmp_path / "gt.json"
    unseen = {"image_id": 1002, "bbox": [5, 5, 10, 10], "keypoints": [7, 7, 0] * 17}  # no visible joint
    seen = {"image_id": 1001, "bbox": [5, 5, 10, 10], "keypoints": [7, 7, 0] * 16 + [7, 7, 1]}
    box_only = {"image_id": 1000, "bbox": [1, 1, 5, 5]}
    gt.write_text(json.dumps({"images": images, "annotations": [seen, unseen, box_only]}))
    assert sorted(load_box_file(gt).per_frame) == [0, 1]  # as `famipose test --boxes gt`: no window without joints
    (tmp_path / "bad.json").write_text(json.dumps([{"bbox": [0, 0, 1, 1], "score": 1}]))
    with pytest.raises(DataError, match="frame_index"):
        load_box_file(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="needs a box file"):
        make_detector("none")
    with pytest.raises(ValueError, match="valid names"):
        make_detector("yolo")


def test_motion_detector_finds_a_moving_upright_figure() -> None:
    rng = np.random.default_rng(0)
    background = rng.integers(90, 110, (240, 320, 3), dtype=np.uint8)
    detector = MotionPersonDetector(working_height=240)
    for t in range(8):
        image = background.copy()
        cv2.rectangle(image, (40 + 15 * t, 60), (80 + 15 * t, 180), (20, 200, 30), -1)  # 40x120 "person"
        found = detector(Frame(t, image, f"{t:06d}.jpg"))
    assert len(found) == 1
    x, y, w, h = found.boxes[0]
    assert abs(x - (40 + 15 * 7)) < 12 and abs(y - 60) < 12 and h > 100 and w < h
    assert 0 < found.scores[0] <= 1


def test_overlay_uses_joint_scores_as_opacity() -> None:
    image = np.zeros((60, 60, 3), np.uint8)
    keypoints = np.full((17, 2), 30.0)
    keypoints[0], keypoints[1] = (10, 10), (50, 50)
    scores = np.zeros(17)
    scores[0], scores[1] = 1.0, 0.5
    draw_person(image, DrawnPerson(3, np.array([0, 0, 59, 59]), keypoints, scores), skeleton=())
    colour = np.array(track_colour(3))
    np.testing.assert_allclose(image[10, 10], colour, atol=1)
    np.testing.assert_allclose(image[50, 50], colour * 0.5, atol=2)
    assert image[30, 30].sum() == 0  # joints with score 0 are hidden


# ---------------------------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------------------------


def test_exact_and_fast_agree_when_boxes_do_not_move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    num_frames, chunk = 11, 4
    clip = _write_clip(tmp_path / "clip.mp4", num_frames)
    boxes = _box_file(tmp_path / "boxes.json", range(num_frames), STATIC_BOXES)
    model = _perturbed(TINY)
    crops: list[int] = []
    buffered: list[int] = []
    features = model.backbone.features
    monkeypatch.setattr(model.backbone, "features", lambda x: crops.append(len(x)) or features(x))
    add = WindowEngine.add
    monkeypatch.setattr(
        WindowEngine, "add", lambda self, item: add(self, item) or buffered.append(len(self.buffer))
    )
    results = {}
    for mode in ("exact", "fast"):
        crops.clear()
        buffered.clear()
        options = EstimatorOptions(mode=mode, batch_size=8, chunk_length=chunk)
        results[mode] = VideoPoseEstimator(model, boxes=boxes, options=options, device="cpu").run(clip)
        results[f"{mode} crops"], results[f"{mode} buffer"] = sum(crops), max(buffered)
    assert results["exact crops"] == num_frames * len(STATIC_BOXES) * 5  # 1 + S crops per box
    assert results["fast crops"] == num_frames * len(STATIC_BOXES)  # each (track, frame) once
    assert results["exact buffer"] <= 5 and results["fast buffer"] <= chunk + 4  # bounded by the window
    exact, fast = results["exact"], results["fast"]
    assert [len(f.persons) for f in exact.frames] == [2] * num_frames == [len(f.persons) for f in fast.frames]
    same_track: set[tuple[int, int]] = set()  # (exact id, fast id): ids are numbered in different orders
    for frame_exact, frame_fast in zip(exact.frames, fast.frames, strict=True):
        for a, b in zip(frame_exact.persons, frame_fast.persons, strict=True):  # both best first
            same_track.add((a.track_id, b.track_id))
            np.testing.assert_allclose(a.box, b.box)
            np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-5)
    assert exact.track_ids == {0, 1} == fast.track_ids and len(same_track) == 2  # one id per person throughout
    assert exact.frames[0].persons[0].scores.max() > 0.1  # the poses are not degenerate


def test_fast_mode_crops_each_frame_once_with_its_own_box_and_reframes_supports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    num_frames, step = 8, 6.0
    clip = _write_clip(tmp_path / "clip.mp4", num_frames)
    entries = [{"frame_index": t, "bbox": [10.0 + step * t, 15, 40, 90], "score": 0.9} for t in range(num_frames)]
    (tmp_path / "moving.json").write_text(json.dumps(entries))
    model = _perturbed(TINY)
    crops: list[int] = []
    windows: list[tuple[torch.Tensor, torch.Tensor]] = []
    features, forward_from_features = model.backbone.features, model.forward_from_features
    monkeypatch.setattr(model.backbone, "features", lambda x: crops.append(len(x)) or features(x))
    monkeypatch.setattr(
        model, "forward_from_features", lambda key, sup: windows.append((key, sup)) or forward_from_features(key, sup)
    )
    options = EstimatorOptions(mode="fast", chunk_length=4, tracker=TrackerConfig(min_hits=1))
    result = VideoPoseEstimator(model, boxes=tmp_path / "moving.json", options=options, device="cpu").run(clip)
    assert result.track_ids == {0} and all(len(f.persons) == 1 for f in result.frames)
    np.testing.assert_allclose(result.frames[-1].persons[0].box[0] - result.frames[0].persons[0].box[0], step * 7)
    assert sum(crops) == num_frames  # every frame cropped once, with the track's box in that frame
    # Key frame 3's support t+1 (frame 4) was cut with frame 4's box and re-framed into frame 3's crop:
    # the box moved +6 px, i.e. 6 / (crop width) of the crop, which is (w - 1) * 6 / crop_w feature pixels.
    key_features = torch.cat([key for key, _ in windows])  # (8, C, h, w), frame order
    support_t1 = torch.cat([sup for _, sup in windows])[3, 2]  # frame 3's δ = +1 support (deltas -2, -1, 1, 2)
    _, scale = crop_geometry(np.array([entries[3]["bbox"]]), (96, 128), options.box_padding)
    width = key_features.shape[-1]
    shift = (width - 1) * step / scale[0, 0]  # feature pixels the frame-4 features move left in frame 3's crop
    lo, hi = int(np.ceil(shift)) + 1, width - 2
    columns = torch.arange(lo, hi, dtype=torch.float64) - shift  # where frame 3's columns lie in frame 4's map
    left = columns.floor().long()
    fraction = (columns - left).float()
    expected = key_features[4][..., left] * (1 - fraction) + key_features[4][..., left + 1] * fraction
    torch.testing.assert_close(support_t1[..., lo:hi], expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# End to end, bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("flip", "dark"), [(False, False), (True, False), (True, True)])
def test_exact_mode_on_frames_and_gt_boxes_reproduces_famipose_test(
    synthtrack_root: Path, tmp_path: Path, flip: bool, dark: bool
) -> None:
    # Same frames (the JPEG folder), same GT boxes, same test-time options (flip test, DARK): the video
    # pipeline and the test engine must write the same persons, poses and per-frame order (duplicates
    # removed by OKS NMS, best first).
    overrides = [f"data.root={synthtrack_root}", "train.batch_size=4", "train.device=cpu"]
    config = load_config(TINY, [*overrides, f"predict.flip={flip}", f"predict.dark={dark}"])
    model = _perturbed(TINY)
    evaluate_model(config, model, boxes="gt", out_dir=tmp_path / "engine")
    if flip:  # the option changes the answer: not the plain predictions under another name
        evaluate_model(load_config(TINY, overrides), model, boxes="gt", out_dir=tmp_path / "plain")
        name = next((synthtrack_root / "annotations" / "val").glob("*.json")).name
        plain, flipped = (read_predictions(tmp_path / run / "predictions" / name) for run in ("plain", "engine"))
        moved = [np.abs(a.keypoints - b.keypoints).max() for f, g in zip(plain, flipped, strict=True)
                 for a, b in zip(f.persons, g.persons, strict=True)]  # fmt: skip
        assert max(moved) > 0.5
    for annotation in sorted((synthtrack_root / "annotations" / "val").glob("*.json")):
        options = EstimatorOptions(
            mode="exact", tracker=TrackerConfig(min_hits=1), flip=flip, dark=dark, dark_sigma=config.data.sigma
        )
        estimator = VideoPoseEstimator(model, boxes=annotation, gt_json=annotation, options=options, device="cpu")
        result = estimator.run(synthtrack_root / "images" / "val" / annotation.stem)
        write_posetrack_json(result, tmp_path / "video" / annotation.name)
        engine = read_predictions(tmp_path / "engine" / "predictions" / annotation.name)
        video = read_predictions(tmp_path / "video" / annotation.name)
        assert len(engine) == len(video) > 0
        for engine_frame, video_frame in zip(engine, video, strict=True):
            assert len(engine_frame.persons) == len(video_frame.persons)
            for a, b in zip(engine_frame.persons, video_frame.persons, strict=True):
                np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)


def test_the_flip_test_is_refused_in_fast_mode() -> None:
    with pytest.raises(ValueError, match="flip test runs in --mode exact only"):
        EstimatorOptions(mode="fast", flip=True)


def test_cli_on_a_synthtrack_clip_writes_json_the_evaluator_scores(synthtrack_root: Path, tmp_path: Path) -> None:
    annotation = next((synthtrack_root / "annotations" / "val").glob("*.json"))
    video = synthtrack_root / "videos" / "val" / f"{annotation.stem}.mp4"
    checkpoint = tmp_path / "weights.pth"
    torch.save(_perturbed(TINY).state_dict(), checkpoint)
    runner = CliRunner()
    common = ["--config", str(TINY), "--checkpoint", str(checkpoint), "--boxes", str(annotation), "--min-hits", "1"]
    result = runner.invoke(app, [
        "video", str(video), *common, "--gt-json", str(annotation), "--mode", "fast",
        "--json", str(tmp_path / "pred" / annotation.name), "--out", str(tmp_path / "overlay.mp4"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    scores = evaluate_posetrack(annotation.parent, tmp_path / "pred", track=True)
    assert np.isfinite(scores.total) and scores.num_frames > 0 and scores.tracking is not None
    gt_names = [image["file_name"] for image in json.loads(annotation.read_text())["images"]]
    assert [frame.file_name for frame in read_predictions(tmp_path / "pred" / annotation.name)] == gt_names
    coco = json.loads((tmp_path / "pred" / f"{annotation.stem}_coco.json").read_text())
    assert coco and {"image_id", "bbox", "keypoints", "score", "track_id"} <= set(coco[0])
    assert len(coco[0]["keypoints"]) == 17 * 3
    assert len(list(open_frames(tmp_path / "overlay.mp4"))) == len(gt_names)
    # An image folder without --gt-json names its frames like the GT (images/<split>/<video>/...).
    folder = synthtrack_root / "images" / "val" / annotation.stem
    result = runner.invoke(app, ["video", str(folder), *common, "--json", str(tmp_path / "pred2" / annotation.name)])
    assert result.exit_code == 0, result.output
    evaluate_posetrack(annotation.parent, tmp_path / "pred2")  # raises if no frame name matches


def test_bad_input_still_gives_valid_outputs(tmp_path: Path) -> None:
    folder = tmp_path / "images" / "val" / "clip"
    folder.mkdir(parents=True)
    for t, image in enumerate(_textured_frames(8)):
        cv2.imwrite(str(folder / f"{t:06d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (folder / "000003.jpg").write_bytes(b"\xff\xd8 truncated")
    extra = [
        {"frame_index": 2, "bbox": [400.0, 300, 30, 60], "score": 0.9},  # outside the 160x120 image
        *({"frame_index": t, "bbox": [10.0, 10, 40, 80], "score": 0.9} for t in (50, 51)),  # other frames
    ]
    boxes = _box_file(tmp_path / "boxes.json", [t for t in range(8) if t != 5], STATIC_BOXES[:1], extra)
    options = EstimatorOptions(tracker=TrackerConfig(min_hits=1))
    estimator = VideoPoseEstimator(_perturbed(TINY), boxes=boxes, options=options, device="cpu")
    result = estimator.run(folder, overlay=tmp_path / "overlay.mp4")
    assert [f.index for f in result.frames] == list(range(8))
    assert [f.decoded for f in result.frames] == [t != 3 for t in range(8)]
    assert [len(f.persons) for f in result.frames] == [0 if t in (3, 5) else 1 for t in range(8)]
    text = " | ".join(result.messages)
    for expected in ("failed to decode", "outside the image", "1 of 7 decoded frame(s) had no person box",
                     "2 frame(s) not in the input"):  # fmt: skip
        assert expected in text
    written = write_posetrack_json(result, tmp_path / "pred" / "clip.json")
    frames = read_predictions(written)
    assert [f.file_name for f in frames][:2] == ["images/val/clip/000000.jpg", "images/val/clip/000001.jpg"]
    assert len(list(open_frames(tmp_path / "overlay.mp4"))) == 7


def test_a_folder_of_undecodable_images_gives_empty_outputs(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(3):
        (folder / f"{t:06d}.jpg").write_bytes(b"broken")
    estimator = VideoPoseEstimator(_perturbed(TINY), detector="motion", device="cpu")
    result = estimator.run(folder, overlay=tmp_path / "overlay.mp4")
    assert [(f.index, f.decoded) for f in result.frames] == [(0, False), (1, False), (2, False)]
    assert any("no frame could be decoded" in m for m in result.messages)
    assert not (tmp_path / "overlay.mp4").exists()
    assert [f.persons for f in read_predictions(write_posetrack_json(result, tmp_path / "frames.json"))] == [()] * 3


def test_cli_reports_an_unreadable_video_and_writes_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    out = tmp_path / "pred" / "broken.json"
    result = CliRunner().invoke(app, ["video", str(broken), "--config", str(TINY), "--json", str(out)])
    assert result.exit_code == 1
    assert "broken.mp4: cannot open as a video" in result.output and "wrote" not in result.output
    assert list((tmp_path / "pred").iterdir()) == []


@pytest.mark.parametrize("detector", ["auto", "hog"])
def test_real_posetrack_clip_runs_with_the_builtin_detector(detector: str, tmp_path: Path) -> None:
    clip = SAMPLE_CLIP / "000001_mpiinew_test.mp4"
    if not clip.is_file():
        pytest.skip(f"shared sample clip absent: {clip}")
    if detector == "hog" and not hog_available():
        pytest.skip("this OpenCV (5.x) has no cv2.HOGDescriptor; 'auto' uses the motion detector instead")
    estimator = VideoPoseEstimator.from_checkpoint(None, TINY, detector=detector, device="cpu")
    result = estimator.run(clip, overlay=tmp_path / "overlay.mp4")
    assert result.num_decoded == 5 and len(result.frames) == 5
    assert sum(len(frame.persons) for frame in result.frames) >= 2  # someone is detected and tracked
    person = next(p for frame in result.frames for p in frame.persons)
    assert 0 <= person.box[0] < 1280 and person.keypoints.shape == (17, 2)
    frames = read_predictions(write_posetrack_json(result, tmp_path / "000001_mpiinew_test.json"))
    assert len(frames) == 5 and frames[0].file_name.endswith("000001_mpiinew_test/000000.jpg")
    assert len(list(open_frames(tmp_path / "overlay.mp4"))) == 5
