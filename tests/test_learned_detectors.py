"""Detectors from local weights: torchvision models (random weights in a temp file) and YOLO ONNX
models built in the test, decoded to known boxes; the torch hub cache; refusals in one line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision

from famipose.config import load_config
from famipose.inference import EstimatorOptions, Frame, TrackerConfig, VideoPoseEstimator, make_detector
from famipose.inference.detector import HOGPersonDetector, MotionPersonDetector, detect_frames, hog_available
from famipose.inference.learned_detectors import (
    LETTERBOX_FILL,
    OnnxYoloDetector,
    TorchvisionDetector,
    hub_weight_names,
    letterbox,
)
from famipose.models.checkpoint import CheckpointError
from famipose.models.famipose import FamiPose

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SSDLITE = "ssdlite320_mobilenet_v3_large"

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture
def hub_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty torch hub cache for the test; torch's own is restored afterwards."""
    saved = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(saved)


def _frames(count: int, size: tuple[int, int] = (200, 100)) -> list[Frame]:
    rng = np.random.default_rng(0)
    return [Frame(t, rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), f"{t:06d}.jpg") for t in range(count)]


# ---------------------------------------------------------------------------------------------
# torchvision
# ---------------------------------------------------------------------------------------------


def test_torchvision_detector_keeps_persons_as_xywh_in_batches(person_ssdlite_weights: Path) -> None:
    detector = make_detector(SSDLITE, weights=person_ssdlite_weights)
    assert isinstance(detector, TorchvisionDetector)
    detector.batch_size = 2
    frames = _frames(3)
    found = detect_frames(detector, frames)  # batches of 2 + 1
    reference = torchvision.models.get_model(SSDLITE, weights=None, weights_backbone=None)
    reference.load_state_dict(torch.load(person_ssdlite_weights, weights_only=True))
    with torch.no_grad():
        outputs = reference.eval()([torch.from_numpy(f.image).permute(2, 0, 1).float() / 255 for f in frames])
    for detections, output in zip(found, outputs, strict=True):
        person = output["labels"] == 1
        assert 0 < person.sum() < len(person)  # other classes exist and are dropped
        xyxy = output["boxes"][person].numpy()
        np.testing.assert_allclose(detections.boxes[:, :2], xyxy[:, :2], atol=1e-3)
        np.testing.assert_allclose(detections.boxes[:, 2:], xyxy[:, 2:] - xyxy[:, :2], atol=1e-3)
        np.testing.assert_allclose(detections.scores, output["scores"][person].numpy(), atol=1e-5)
        assert (detections.scores > 0.4).sum() >= 1 and np.all(np.diff(detections.scores) <= 0)
    single = detector(frames[2])
    np.testing.assert_allclose(single.boxes, found[2].boxes, atol=1e-3)


def test_torchvision_weights_found_in_the_hub_cache_and_by_auto(
    person_ssdlite_weights: Path, hub_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (hub_dir / "checkpoints").mkdir(parents=True)
    (hub_dir / "checkpoints" / hub_weight_names(SSDLITE)[0]).symlink_to(person_ssdlite_weights)
    assert isinstance(make_detector(SSDLITE), TorchvisionDetector)
    with caplog.at_level(logging.INFO, logger="famipose"):
        assert isinstance(make_detector("auto"), TorchvisionDetector)
    assert f"detector auto: {SSDLITE}" in caplog.text


def test_auto_without_cached_weights_falls_back_to_opencv(hub_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="famipose"):
        detector = make_detector("auto")
    assert isinstance(detector, HOGPersonDetector if hog_available() else MotionPersonDetector)
    assert "no torchvision detection weights in" in caplog.text


def test_missing_and_mismatched_torchvision_weights_fail_in_one_line(
    person_ssdlite_weights: Path, hub_dir: Path, tmp_path: Path
) -> None:
    errors = []
    for name, weights in [
        (SSDLITE, None),
        (SSDLITE, tmp_path / "absent.pth"),
        ("fasterrcnn_mobilenet_v3_large_320_fpn", person_ssdlite_weights),
    ]:
        with pytest.raises(CheckpointError) as caught:
            make_detector(name, weights=weights)
        errors.append(str(caught.value))
    assert hub_weight_names(SSDLITE)[0] in errors[0] and "--detector-weights" in errors[0]
    assert "absent.pth" in errors[1]
    assert "ssdlite_person.pth" in errors[2] and "does not fit FasterRCNN" in errors[2]
    assert all("\n" not in error for error in errors)


@pytest.mark.parametrize(
    "name", ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn"]
)
def test_large_torchvision_detectors_load_their_own_layout(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}  # as released
    torch.save(state, tmp_path / "weights.pth")
    detector = make_detector(name, weights=tmp_path / "weights.pth")
    assert isinstance(detector, TorchvisionDetector)
    key = next(iter(state))
    assert torch.equal(detector.model.state_dict()[key], state[key])


def test_weights_for_a_detector_without_any_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--detector-weights needs --detector onnx or a torchvision detector"):
        make_detector("motion", weights=tmp_path / "x.pth")
    with pytest.raises(ValueError, match="'onnx' needs --detector-weights"):
        make_detector("onnx")


# ---------------------------------------------------------------------------------------------
# YOLO ONNX
# ---------------------------------------------------------------------------------------------

INPUT = 64  # network input 64x64; a 200x100 frame is scaled by 0.32 to 64x32 and padded 16 rows on top
FIXED = [1, 3, INPUT, INPUT]
ConstantOnnx = Callable[[Path, np.ndarray, list[int | str]], Path]
EXPECTED_BOXES = np.array([[50.0, 25, 100, 50], [37.5, 62.5, 25, 25]])  # x, y, w, h in the frame
EXPECTED_SCORES = np.array([0.9, 0.6])


def _anchors_last_output() -> np.ndarray:
    """(1, 4 + 3, 5): classes person, dog, cat; boxes cx, cy, w, h in input pixels."""
    anchors = [  # cx, cy, w, h, person, dog, cat
        [32, 32, 32, 16, 0.9, 0.0, 0.0],  # person -> (50, 25, 100, 50) in the frame
        [33, 32, 32, 16, 0.8, 0.0, 0.0],  # duplicate person: removed by NMS
        [32, 32, 32, 16, 0.0, 0.95, 0.0],  # a dog on the person: class-aware NMS keeps the person
        [48, 20, 10, 10, 0.1, 0.0, 0.0],  # below the score threshold
        [16, 40, 8, 8, 0.6, 0.0, 0.1],  # person -> (37.5, 62.5, 25, 25)
    ]
    return np.array(anchors, np.float32).T[None]


def _end_to_end_output() -> np.ndarray:
    """(1, 4, 6): x1, y1, x2, y2, score, class in input pixels, padded with an empty row."""
    rows = [[16, 24, 48, 40, 0.9, 0], [16, 24, 48, 40, 0.95, 1], [12, 36, 20, 44, 0.6, 0], [0, 0, 0, 0, 0, 0]]
    return np.array(rows, np.float32)[None]


@pytest.mark.parametrize("output", [_anchors_last_output(), _end_to_end_output()], ids=["4+classes", "end-to-end"])
def test_onnx_detector_decodes_known_boxes_into_frame_pixels(
    output: np.ndarray, tmp_path: Path, make_constant_onnx: ConstantOnnx
) -> None:
    detector = make_detector("onnx", weights=make_constant_onnx(tmp_path / "yolo.onnx", output, FIXED))
    assert isinstance(detector, OnnxYoloDetector) and detector.size == (INPUT, INPUT)
    found = detect_frames(detector, _frames(2))  # a fixed batch of 1: one call per frame
    for detections in found:
        np.testing.assert_allclose(detections.boxes, EXPECTED_BOXES, atol=1e-4)
        np.testing.assert_allclose(detections.scores, EXPECTED_SCORES, atol=1e-6)


def test_onnx_detector_with_a_dynamic_batch_runs_frames_together(
    tmp_path: Path, make_constant_onnx: ConstantOnnx
) -> None:
    path = make_constant_onnx(tmp_path / "yolo.onnx", _anchors_last_output(), ["batch", 3, INPUT, INPUT])
    detector = make_detector("onnx", weights=path)
    assert isinstance(detector, OnnxYoloDetector) and detector.batch_size == 4
    calls = []
    run = detector.session.run
    detector.session.run = lambda names, feed: calls.append(feed["images"].shape) or run(names, feed)  # type: ignore[method-assign]
    found = detector.detect_batch(_frames(3))
    assert calls == [(3, 3, INPUT, INPUT)] and len(found) == 3
    np.testing.assert_allclose(found[2].boxes, EXPECTED_BOXES, atol=1e-4)


def test_letterbox_centres_the_resized_image_on_grey() -> None:
    image = np.full((100, 200, 3), 7, np.uint8)
    placed, placement = letterbox(image, (INPUT, INPUT))
    assert placed.shape == (INPUT, INPUT, 3) and (placement.scale, placement.left, placement.top) == (0.32, 0, 16)
    assert np.all(placed[:16] == LETTERBOX_FILL) and np.all(placed[48:] == LETTERBOX_FILL)
    assert np.all(placed[16:48] == 7)


def test_onnx_files_that_cannot_serve_fail_in_one_line(tmp_path: Path, make_constant_onnx: ConstantOnnx) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    cases = [
        (tmp_path / "absent.onnx", "no such file"),
        (broken, "not a readable ONNX model"),
        (make_constant_onnx(tmp_path / "flat.onnx", np.zeros((1, 3), np.float32), FIXED), "neither (B, 4 + classes"),
        (make_constant_onnx(tmp_path / "batch2.onnx", _end_to_end_output(), [2, 3, INPUT, INPUT]), "fixed batch of 2"),
    ]
    for path, problem in cases:
        with pytest.raises(CheckpointError) as caught:
            make_detector("onnx", weights=path)
        assert path.name in str(caught.value) and problem in str(caught.value)
        assert "\n" not in str(caught.value).strip()


def test_the_pipeline_detects_in_batches_of_frames_and_times_it(
    tmp_path: Path, make_constant_onnx: ConstantOnnx
) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    for frame in _frames(5):
        cv2.imwrite(str(folder / frame.name), frame.image[:, :, ::-1])
    path = make_constant_onnx(tmp_path / "yolo.onnx", _anchors_last_output(), ["batch", 3, INPUT, INPUT])
    model = FamiPose(load_config(CONFIGS / "single_frame_tiny.yaml").model)
    options = EstimatorOptions(detect_batch=3, tracker=TrackerConfig(min_hits=1))
    estimator = VideoPoseEstimator(model, detector="onnx", detector_weights=path, options=options, device="cpu")
    session = estimator._unused_detector.session  # type: ignore[union-attr]
    calls = []
    run = session.run
    session.run = lambda names, feed: calls.append(len(feed["images"])) or run(names, feed)  # type: ignore[method-assign]
    result = estimator.run(folder)
    assert calls == [3, 2]  # frames 0-2, then 3-4
    assert result.timings["detect"] > 0
    boxes = sorted(tuple(np.round(p.box, 3)) for p in result.frames[2].persons)
    assert boxes == sorted(tuple(b) for b in EXPECTED_BOXES)


def test_onnx_without_onnxruntime_says_what_to_install(
    tmp_path: Path, make_constant_onnx: ConstantOnnx, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_constant_onnx(tmp_path / "yolo.onnx", _end_to_end_output(), FIXED)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(ValueError, match="needs the onnxruntime package"):
        make_detector("onnx", weights=path)
