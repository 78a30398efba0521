"""Person detectors from local weights: torchvision COCO detection models and YOLO-style ONNX models.

Nothing is downloaded. A torchvision model is built with ``weights=None`` and loaded from
``--detector-weights PATH`` or, without it, from the file torchvision itself would have cached in
the torch hub directory (``<torch hub dir>/checkpoints/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``,
...); an ONNX model is run with onnxruntime on the CPU.

Both keep the COCO person class only (torchvision label 1, YOLO class 0) and work on batches of
frames (:meth:`TorchvisionDetector.detect_batch`, :meth:`OnnxYoloDetector.detect_batch`).

YOLO outputs, per image, come in one of two layouts:

* ``(4 + C, A)`` (YOLOv8 / v11 exports, ``(1, 84, 8400)``): per anchor ``cx, cy, w, h`` in input
  pixels, then C class scores; the class is the best score's, then class-aware NMS;
* ``(A, 6)`` (end-to-end exports with NMS, ``(1, 300, 6)``): ``x1, y1, x2, y2, score, class``.

The input is letterboxed (:func:`letterbox`: resized into the network size keeping the aspect
ratio, centred on grey 114) and the boxes are mapped back by :func:`undo_letterbox`.

Shape symbols: B frames, N boxes, A candidate boxes of a YOLO output, C classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import cv2
import numpy as np
import torch
import torchvision
import torchvision.ops
from torch import nn

from famipose.geometry import xyxy_to_xywh
from famipose.inference.detector import TORCHVISION_DETECTORS, Detections
from famipose.inference.video_io import Frame
from famipose.models.checkpoint import CheckpointError, load_weights

TORCHVISION_PERSON_LABEL = 1  # COCO category id, torchvision's 91-way labels
YOLO_PERSON_CLASS = 0  # index among YOLO's 80 COCO classes
LETTERBOX_FILL = 114
END_TO_END_COLUMNS = 6  # x1, y1, x2, y2, score, class


# ---------------------------------------------------------------------------------------------
# torchvision
# ---------------------------------------------------------------------------------------------


def hub_checkpoint_dir() -> Path:
    """The folder torchvision caches downloaded weights in (``torch.hub.get_dir()/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hub_weight_names(name: str) -> list[str]:
    """File names of a torchvision detector's released weights, as torchvision caches them."""
    return [PurePosixPath(urlparse(weights.url).path).name for weights in torchvision.models.get_model_weights(name)]


def find_hub_weights(name: str) -> Path | None:
    """The cached weights file of a torchvision detector, or None when the hub cache has none."""
    folder = hub_checkpoint_dir()
    return next((folder / file for file in hub_weight_names(name) if (folder / file).is_file()), None)


def build_torchvision_detector(name: str, weights: str | Path | None = None) -> nn.Module:
    """A torchvision detection model with local weights, in eval mode on the CPU.

    Args:
        name: One of :data:`TORCHVISION_DETECTORS`.
        weights: The state-dict file; None looks in the torch hub cache (:func:`find_hub_weights`).

    Raises:
        ValueError: An unknown name (the message lists the valid ones).
        CheckpointError: No weights file, or one that is unreadable or does not fit the model; the
            message names the file.
    """
    if name not in TORCHVISION_DETECTORS:
        raise ValueError(f"unknown torchvision detector {name!r}; valid names: {', '.join(TORCHVISION_DETECTORS)}")
    path = Path(weights) if weights is not None else find_hub_weights(name)
    if path is None:
        raise CheckpointError(
            f"detector {name}: no weights; pass --detector-weights PATH or place "
            f"{' or '.join(hub_weight_names(name))} in {hub_checkpoint_dir()} (nothing is downloaded)"
        )
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    load_weights(model, path, strict=True, strip_prefixes=False)
    return model.eval()


class TorchvisionDetector:
    """Persons found by a torchvision COCO detector; frames go through the model ``batch_size`` at a time.

    Args:
        model: A torchvision detection model (:func:`build_torchvision_detector`).
        device: Where it runs.
        batch_size: Frames per model call.
    """

    def __init__(self, model: nn.Module, device: torch.device | str = "cpu", batch_size: int = 4) -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.batch_size = batch_size

    def __call__(self, frame: Frame) -> Detections:
        """Persons of one frame."""
        return self.detect_batch([frame])[0]

    @torch.inference_mode()
    def detect_batch(self, frames: Sequence[Frame]) -> list[Detections]:
        """Persons of several frames (any sizes), one :class:`Detections` per frame."""
        found = []
        for start in range(0, len(frames), self.batch_size):
            images = [
                torch.from_numpy(frame.image).to(self.device).permute(2, 0, 1).float().div(255)  # (3, H, W)
                for frame in frames[start : start + self.batch_size]
            ]
            for output in self.model(images):
                person = output["labels"] == TORCHVISION_PERSON_LABEL
                boxes = output["boxes"][person].cpu().numpy()  # (N, 4) x1, y1, x2, y2
                found.append(Detections(xyxy_to_xywh(boxes), output["scores"][person].cpu().numpy()))
        return found


# ---------------------------------------------------------------------------------------------
# YOLO-style ONNX
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letterbox:
    """How an image was placed into the network input: ``input = image * scale + (left, top)``.

    Attributes:
        scale: Resize factor.
        left: Columns of padding on the left.
        top: Rows of padding on top.
    """

    scale: float
    left: int
    top: int


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resize an image into ``size`` keeping its aspect ratio, centred on grey ``LETTERBOX_FILL``.

    Args:
        image: (H, W, 3) uint8.
        size: Network input ``(w, h)``.

    Returns:
        The (h, w, 3) input and the placement.
    """
    height, width = image.shape[:2]
    scale = min(size[0] / width, size[1] / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    left, top = (size[0] - new_w) // 2, (size[1] - new_h) // 2
    canvas = np.full((size[1], size[0], 3), LETTERBOX_FILL, np.uint8)
    canvas[top : top + new_h, left : left + new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas, Letterbox(scale, left, top)


def undo_letterbox(boxes: np.ndarray, placement: Letterbox) -> np.ndarray:
    """(N, 4) ``(x1, y1, x2, y2)`` in network-input pixels → the same in original-image pixels."""
    offset = np.array([placement.left, placement.top] * 2, np.float64)
    return (np.asarray(boxes, np.float64).reshape(-1, 4) - offset) / placement.scale


def yolo_layout(shape: Sequence[int | str | None]) -> str:
    """``"end_to_end"`` for (B, A, 6) outputs, ``"anchors_last"`` for (B, 4 + C, A).

    Raises:
        ValueError: A shape of neither layout.
    """
    if len(shape) == 3 and shape[2] == END_TO_END_COLUMNS:
        return "end_to_end"
    if len(shape) == 3 and isinstance(shape[1], int) and shape[1] > 4:
        return "anchors_last"
    raise ValueError(f"output shape {list(shape)} is neither (B, 4 + classes, A) nor (B, A, 6)")


def decode_yolo(output: np.ndarray, layout: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate boxes of one image's output.

    Args:
        output: (4 + C, A) or (A, 6), as :func:`yolo_layout` names it.
        layout: ``anchors_last`` or ``end_to_end``.

    Returns:
        boxes (A, 4) ``(x1, y1, x2, y2)`` in input pixels, scores (A,) and classes (A,) int64.
    """
    output = np.asarray(output, np.float64)
    if layout == "end_to_end":
        return output[:, :4], output[:, 4], output[:, 5].round().astype(np.int64)
    centre, size, class_scores = output[:2].T, output[2:4].T, output[4:]  # (A, 2), (A, 2), (C, A)
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    return boxes, class_scores.max(axis=0), class_scores.argmax(axis=0).astype(np.int64)


def yolo_persons(
    output: np.ndarray, layout: str, placement: Letterbox, score_threshold: float, nms_iou: float
) -> Detections:
    """Person boxes in original-image pixels from one image's YOLO output.

    Candidates below ``score_threshold`` are dropped, the rest go through class-aware NMS (a box
    suppresses only boxes of its own class), and the persons are kept.
    """
    boxes, scores, classes = decode_yolo(output, layout)
    keep = scores >= score_threshold
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    kept = torchvision.ops.batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), nms_iou
    ).numpy()
    kept = kept[classes[kept] == YOLO_PERSON_CLASS]
    return Detections(xyxy_to_xywh(undo_letterbox(boxes[kept], placement)), scores[kept].astype(np.float32))


class OnnxYoloDetector:
    """Persons found by a YOLO-style ONNX model run with onnxruntime (CPU).

    The network input size comes from the model's input shape (``(1, 3, 640, 640)`` for a usual
    export; ``default_size`` where it is symbolic); a model with a dynamic batch dimension gets
    ``batch_size`` frames per call, one with batch 1 a frame per call.

    Args:
        path: The ``.onnx`` file.
        score_threshold: Candidate boxes below this score are dropped before NMS.
        nms_iou: IoU of class-aware NMS.
        default_size: Input ``(w, h)`` when the model's spatial dimensions are symbolic.
        batch_size: Frames per call when the model's batch dimension is symbolic.

    Raises:
        ValueError: onnxruntime is not installed.
        CheckpointError: The file is missing, not an ONNX model, has a fixed batch other than 1,
            or its output has neither layout; the message names the file.
    """

    def __init__(
        self,
        path: str | Path,
        score_threshold: float = 0.25,
        nms_iou: float = 0.45,
        default_size: tuple[int, int] = (640, 640),
        batch_size: int = 4,
    ) -> None:
        try:
            import onnxruntime
        except ImportError as err:
            raise ValueError("detector 'onnx' needs the onnxruntime package (famipose's 'onnx' extra)") from err
        self.path = Path(path)
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        if not self.path.is_file():
            raise CheckpointError(f"detector weights {str(self.path)!r}: no such file")
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own error types for foreign or broken files
            raise CheckpointError(f"detector weights {str(self.path)!r}: not a readable ONNX model ({err})") from err
        model_input = self.session.get_inputs()[0]
        batch, _, height, width = model_input.shape
        self.input_name = model_input.name
        self.dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
        self.size = (width, height) if isinstance(width, int) and isinstance(height, int) else default_size
        if isinstance(batch, int) and batch != 1:
            raise CheckpointError(f"detector weights {str(self.path)!r}: a fixed batch of {batch}; "
                                  "export with batch 1 or a dynamic batch")
        self.batch_size = 1 if isinstance(batch, int) else batch_size
        blank = np.zeros((1, 3, self.size[1], self.size[0]), self.dtype)
        shape = self.session.run(None, {self.input_name: blank})[0].shape
        try:
            self.layout = yolo_layout(shape)
        except ValueError as err:
            raise CheckpointError(f"detector weights {str(self.path)!r}: {err}") from err

    def __call__(self, frame: Frame) -> Detections:
        """Persons of one frame."""
        return self.detect_batch([frame])[0]

    def detect_batch(self, frames: Sequence[Frame]) -> list[Detections]:
        """Persons of several frames (any sizes), one :class:`Detections` per frame."""
        found = []
        for start in range(0, len(frames), self.batch_size):
            placed = [letterbox(frame.image, self.size) for frame in frames[start : start + self.batch_size]]
            inputs = np.stack([image for image, _ in placed]).transpose(0, 3, 1, 2)  # (B, 3, h, w)
            outputs = self.session.run(None, {self.input_name: (inputs / 255.0).astype(self.dtype)})[0]
            found += [
                yolo_persons(output, self.layout, placement, self.score_threshold, self.nms_iou)
                for output, (_, placement) in zip(outputs, placed, strict=True)
            ]
        return found
