"""Export: ONNX window model run by onnxruntime matches PyTorch; safetensors weights round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

from famipose.cli import app
from famipose.config import load_config
from famipose.inference.export import StaticAdaptiveAvgPool2d, example_inputs
from famipose.inference.pipeline import load_model_and_config
from famipose.models.famipose import FamiPose

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _checkpoint(config: Path, path: Path) -> FamiPose:
    """Save a randomly perturbed model's state dict (non-trivial outputs) and return the model."""
    torch.manual_seed(0)
    model = FamiPose(load_config(config).model).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    torch.save(model.state_dict(), path)
    return model


@pytest.mark.parametrize(("in_size", "out_size"), [((4, 3), (3, 3)), ((7, 5), (3, 2)), ((6, 6), (3, 3))])
def test_static_adaptive_pool_matches_pytorch(in_size: tuple[int, int], out_size: tuple[int, int]) -> None:
    x = torch.randn(2, 5, *in_size)
    expected = nn.AdaptiveAvgPool2d(out_size)(x)
    torch.testing.assert_close(StaticAdaptiveAvgPool2d(in_size, out_size)(x), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("config_name", ["famipose_tiny", "famipose_simcc_tiny"])
def test_onnx_window_model_matches_pytorch(config_name: str, tmp_path: Path) -> None:
    config = CONFIGS / f"{config_name}.yaml"
    model = _checkpoint(config, tmp_path / "weights.pth")
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(app, [
        "export", str(out), "--checkpoint", str(tmp_path / "weights.pth"), "--config", str(config), "--batch", "2",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    key, supports = (x * 1.5 for x in example_inputs(model, 2))  # other inputs than the tracing ones
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["key", "supports"]
    outputs = session.run(None, {"key": key.numpy(), "supports": supports.numpy()})
    with torch.no_grad():
        pose = model(key, supports).pose
    expected = [pose.heatmaps] if pose.heatmaps is not None else [pose.simcc_x, pose.simcc_y]
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected, strict=True):
        assert float(want.abs().max()) > 1e-2  # a real signal, not an all-zero output
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)
    assert model.lcm.deform.impl == "auto"  # the caller's model is untouched


def test_safetensors_export_round_trips_the_weights(tmp_path: Path) -> None:
    config = CONFIGS / "famipose_tiny.yaml"
    model = _checkpoint(config, tmp_path / "weights.pth")
    out = tmp_path / "weights.safetensors"
    result = CliRunner().invoke(app, ["export", str(out), "--checkpoint", str(tmp_path / "weights.pth"),
                                      "--format", "safetensors"])  # fmt: skip
    assert result.exit_code == 0, result.output
    tensors = load_file(str(out))
    assert set(tensors) == set(model.state_dict())
    loaded, _ = load_model_and_config(out, config)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_export_without_a_config_fails_clearly(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pth"
    _checkpoint(CONFIGS / "famipose_tiny.yaml", weights)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "m.onnx"), "--checkpoint", str(weights)])
    assert result.exit_code == 1
    assert "--config" in result.output
