"""Shared test fixtures."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from famipose.data.synthtrack import generate_synthtrack


@pytest.fixture(scope="session")
def synthtrack_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SynthTrack set: train 2 videos x 6 frames, val 1 video x 4 frames, 128x96 frames."""
    root = tmp_path_factory.mktemp("synthtrack")
    generate_synthtrack(root, videos=2, frames=6, size=(128, 96), seed=0, split="train", workers=1)
    generate_synthtrack(root, videos=1, frames=4, size=(128, 96), seed=0, split="val", workers=1)
    return root


@pytest.fixture
def torch_single_thread() -> Iterator[None]:
    """Run torch on one thread: on a loaded machine, spinning OpenMP threads cost more than they give."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def famipose_logging_reset() -> Iterator[None]:
    """Drop the log handler a CLI command installed: it writes to the runner's stream, closed after the test."""
    yield
    logger = logging.getLogger("famipose")
    logger.handlers.clear()
    logger.propagate = True


@pytest.fixture(scope="session")
def person_ssdlite_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random SSDlite320 weights (torchvision layout) whose coarsest level sees a person everywhere.

    The person logit of the 1x1 level's classification layer is raised by 8 (the other weights
    keep torchvision's random initialisation), so each image gets a few confident person boxes
    (up to 6 anchors, before NMS) and nothing else above 0.4: a real code path at a tiny cost.
    """
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model("ssdlite320_mobilenet_v3_large", weights=None, weights_backbone=None)
    last = model.head.classification_head.module_list[-1][1]  # Conv2d(128, anchors * 91, 1)
    with torch.no_grad():
        last.bias.view(-1, 91)[:, 1] += 8.0  # column = anchor * classes + class; COCO person = 1
    path = tmp_path_factory.mktemp("detector") / "ssdlite_person.pth"
    torch.save(model.state_dict(), path)
    return path


def _constant_onnx(path: Path, output: np.ndarray, input_shape: list[int | str]) -> Path:
    """Write an ONNX model returning ``output`` (1, D1, D2) for each image of its ``input_shape``
    (B, 3, h, w; B may be symbolic) input, whatever the image holds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),  # (B,)
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Unsqueeze", ["nothing", "axes"], ["per_image"]),  # (B, 1, 1)
        helper.make_node("Add", ["constant", "per_image"], ["output0"]),  # (B, D1, D2)
    ]
    graph = helper.make_graph(
        nodes,
        "constant_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)],
        initializer=[
            numpy_helper.from_array(output, "constant"),
            numpy_helper.from_array(np.float32(0), "zero"),
            numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def make_constant_onnx() -> Callable[[Path, np.ndarray, list[int | str]], Path]:
    """The writer of constant ONNX detectors (:func:`_constant_onnx`)."""
    return _constant_onnx


@pytest.fixture
def load_benchmark(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """``load_benchmark("dcn")`` imports ``benchmarks/dcn.py`` as a module (registered in ``sys.modules``
    first: dataclasses resolve their annotations through it)."""

    def load(name: str) -> ModuleType:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    return load
