"""Export the window model (key + S support crops → head logits) to ONNX.

The exported graph is :class:`WindowModel` on a copy of the network in which

* every deformable convolution runs the pure-PyTorch path (``impl="torch"``: ``grid_sample`` and a
  matmul, which ONNX has), and
* every ``nn.AdaptiveAvgPool2d`` (the GTM's pooling to 3x3, whose input size need not be a
  multiple of 3, which the ONNX exporter rejects) is replaced by :class:`StaticAdaptiveAvgPool2d`,
  the same average written as two small matrix products for the input size seen at export time.

The GTM's ``affine_grid`` needs ONNX opset 20. The batch size is fixed at export time.
Outputs: ``heatmaps`` (B, K, h, w), or ``simcc_x`` (B, K, Nx) and ``simcc_y`` (B, K, Ny).

Shape symbols: B batch, S supports, K joints, H/W input size, h/w heatmap size.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from famipose.models.dcn import ModulatedDeformConv2d
from famipose.models.famipose import FamiPose

ONNX_OPSET = 20


def adaptive_pool_matrix(in_size: int, out_size: int) -> Tensor:
    """(out_size, in_size) matrix averaging the bins of ``nn.AdaptiveAvgPool`` along one axis.

    Bin ``i`` spans ``[floor(i * n / m), ceil((i + 1) * n / m))``, as in PyTorch.
    """
    matrix = torch.zeros(out_size, in_size)
    for i in range(out_size):
        start, stop = (i * in_size) // out_size, -((-(i + 1) * in_size) // out_size)
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix


class StaticAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` for one known input size, as ``P_h @ x @ P_w^T``.

    Args:
        in_size: input ``(h, w)``.
        out_size: output ``(h, w)``.
    """

    def __init__(self, in_size: tuple[int, int], out_size: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("rows", adaptive_pool_matrix(in_size[0], out_size[0]))  # (oh, h)
        self.register_buffer("cols", adaptive_pool_matrix(in_size[1], out_size[1]))  # (ow, w)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, h, w) → (N, C, oh, ow)."""
        return torch.einsum("ah,nchw,bw->ncab", self.rows, x, self.cols)


class WindowModel(nn.Module):
    """FAMI-Pose on one window: crops in, head logits out (no output dataclass, for export).

    Args:
        model: the network.
    """

    def __init__(self, model: FamiPose) -> None:
        super().__init__()
        self.model = model

    def forward(self, key: Tensor, supports: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Key crops (B, 3, H, W) and support crops (B, S, 3, H, W) → heatmaps or (simcc_x, simcc_y)."""
        logits = self.model(key, supports).pose
        if logits.is_simcc:
            return logits.simcc_x, logits.simcc_y  # type: ignore[return-value]
        return logits.heatmaps  # type: ignore[return-value]


def example_inputs(model: FamiPose, batch_size: int = 1) -> tuple[Tensor, ...]:
    """Random crops of the model's input size: ``(key,)`` or ``(key, supports)``."""
    width, height = model.config.input_size
    generator = torch.Generator().manual_seed(0)
    key = torch.randn(batch_size, 3, height, width, generator=generator)
    if not model.config.num_supports:
        return (key,)
    return key, torch.randn(batch_size, model.config.num_supports, 3, height, width, generator=generator)


def exportable_copy(model: FamiPose, inputs: tuple[Tensor, ...]) -> WindowModel:
    """A CPU copy of the network wrapped in :class:`WindowModel`, with ONNX-friendly layers.

    Args:
        model: the network (left untouched).
        inputs: example inputs; they fix the adaptive pools' input sizes.

    Returns:
        The wrapped copy, in eval mode.
    """
    window = WindowModel(copy.deepcopy(model).cpu()).eval()
    sizes: dict[str, tuple[int, int]] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
            sizes[name] = tuple(args[0].shape[-2:])

        return hook

    hooks = [
        module.register_forward_hook(record(name))
        for name, module in window.named_modules()
        if isinstance(module, nn.AdaptiveAvgPool2d)
    ]
    with torch.no_grad():
        window(*inputs)
    for hook in hooks:
        hook.remove()
    for name, in_size in sizes.items():
        parent_name, _, child = name.rpartition(".")
        pool = window.get_submodule(name)
        out_size = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size,) * 2
        window.get_submodule(parent_name).add_module(child, StaticAdaptiveAvgPool2d(in_size, out_size))
    for module in window.modules():
        if isinstance(module, ModulatedDeformConv2d):
            module.impl = "torch"
    return window


def export_onnx(model: FamiPose, path: str | Path, batch_size: int = 1) -> Path:
    """Write the window model as an ONNX file (opset :data:`ONNX_OPSET`, fixed batch size).

    Args:
        model: the network.
        path: output ``.onnx`` file.
        batch_size: batch size B of the exported graph.

    Returns:
        The written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_inputs(model, batch_size)
    window = exportable_copy(model, inputs)
    input_names = ["key", "supports"][: len(inputs)]
    output_names = ["simcc_x", "simcc_y"] if model.config.head.kind == "simcc" else ["heatmaps"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            window, inputs, str(path), dynamo=False, opset_version=ONNX_OPSET,
            input_names=input_names, output_names=output_names,
        )  # fmt: skip
    return path
