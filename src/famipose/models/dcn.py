"""Modulated deformable convolution (DCNv2) with a torchvision and a pure-PyTorch path.

Deformable ConvNets v2 (Zhu et al., CVPR 2019, arXiv:1811.11168) samples every kernel tap at a
learned fractional offset from its regular grid position and scales the sample by a learned
modulation mask. FAMI-Pose uses it to align supporting-frame features to the key frame.

Two interchangeable implementations share one contract, identical to
``torchvision.ops.deform_conv2d``:

* ``"torchvision"``: the fused ``torchvision.ops.deform_conv2d`` kernel (fastest on CUDA).
* ``"torch"``: :func:`modulated_deform_conv2d`, pure PyTorch built on a single
  ``grid_sample`` call plus one batched matmul; ONNX-exportable (GridSample, opset >= 16) and
  faster than torchvision's CPU kernel (see ``benchmarks/dcn.py``).

Shape symbols: B batch, C input channels, O output channels, H/W input height/width,
Ho/Wo output height/width, L = Ho * Wo, kh/kw kernel height/width, K = kh * kw kernel taps,
G offset groups (each owns C / G consecutive input channels), Gw weight (convolution) groups.

Offset layout (as torchvision): ``offset[:, 2 * (g * K + k) + 0]`` is the row (dy) and
``offset[:, 2 * (g * K + k) + 1]`` the column (dx) displacement of tap ``k = i * kw + j`` for
offset group ``g``; ``mask[:, g * K + k]`` is its modulation. Samples outside the image read zero,
with bilinear weights to in-image neighbours kept, exactly as torchvision's bilinear interpolation.
At integer sampling positions (zero offsets included), where bilinear interpolation has a kink,
both paths differentiate the same way: the cell is chosen by ``floor``, so the offset gradient is
the forward difference (see :func:`_sampling_grid`).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
import torchvision.ops
from torch import Tensor, nn

Impl = Literal["auto", "torchvision", "torch"]
ResolvedImpl = Literal["torchvision", "torch"]
IntPair = int | tuple[int, int]

IMPLS: tuple[str, ...] = get_args(Impl)


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    """Expands an int or a pair of ints into ``(height, width)``, rejecting other lengths."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def conv_output_size(
    in_size: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> tuple[int, int]:
    """Spatial output size of a (deformable) convolution.

    Args:
        in_size: Input ``(H, W)``.
        kernel_size: ``(kh, kw)``.
        stride: Stride, int or ``(sh, sw)``.
        padding: Zero padding, int or ``(ph, pw)``.
        dilation: Dilation, int or ``(dh, dw)``.

    Returns:
        ``(Ho, Wo)``; may be non-positive when the kernel does not fit.
    """
    strides, pads, dils = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    return tuple(
        (size + 2 * pad - dil * (kernel - 1) - 1) // step + 1
        for size, kernel, step, pad, dil in zip(in_size, kernel_size, strides, pads, dils, strict=True)
    )  # type: ignore[return-value]


class _Geometry(NamedTuple):
    """Validated hyper-parameters of one deformable convolution call."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    offset_groups: int


def _checked_geometry(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    mask: Tensor | None,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
) -> _Geometry:
    """Checks the operand shapes of a deformable convolution and normalises its hyper-parameters.

    Returns:
        Stride, padding and dilation as pairs, and the offset groups G inferred from the offset.

    Raises:
        ValueError: With the expected and the received shape when an operand does not fit.
    """
    geometry_pairs = (_pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation"))
    for name, tensor in (("input", x), ("offset", offset), ("weight", weight)):
        if tensor.dim() != 4:
            raise ValueError(f"{name} must be 4-D, got shape {tuple(tensor.shape)}")
    batch, channels, height, width = x.shape
    out_channels, group_channels, kh, kw = weight.shape
    taps = kh * kw
    if group_channels == 0 or channels % group_channels or out_channels % (channels // group_channels):
        raise ValueError(
            f"weight {tuple(weight.shape)} does not fit input channels {channels}: expected weight.shape[1] "
            "dividing the input channels into groups that also divide the output channels"
        )
    out_size = conv_output_size((height, width), (kh, kw), *geometry_pairs)
    if out_size[0] <= 0 or out_size[1] <= 0:
        raise ValueError(f"kernel does not fit input {(height, width)}: output size would be {out_size}")
    offset_channels = offset.shape[1]
    if offset_channels == 0 or offset_channels % (2 * taps):
        raise ValueError(f"offset channels must be a positive multiple of 2*kh*kw={2 * taps}, got {offset_channels}")
    groups = offset_channels // (2 * taps)
    if channels % groups:
        raise ValueError(f"input channels {channels} must be divisible by offset groups {groups}")
    expected_offset = (batch, offset_channels, *out_size)
    if tuple(offset.shape) != expected_offset:
        raise ValueError(f"offset shape expected {expected_offset}, got {tuple(offset.shape)}")
    expected_mask = (batch, groups * taps, *out_size)
    if mask is not None and tuple(mask.shape) != expected_mask:
        raise ValueError(f"mask shape expected {expected_mask}, got {tuple(mask.shape)}")
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"bias shape expected {(out_channels,)}, got {tuple(bias.shape)}")
    return _Geometry(*geometry_pairs, groups)


def _power_of_two_at_least(size: int) -> int:
    """The smallest power of two >= ``size`` (>= 1)."""
    return 1 << max(int(size) - 1, 0).bit_length()  # int(): shapes are tensors while tracing


def _sampling_grid(
    offset: Tensor,
    grid_size: tuple[int, int],
    kernel_size: tuple[int, int],
    geometry: _Geometry,
) -> Tensor:
    """Normalised ``grid_sample`` grid of every tap of every output location, in ``(y, x)`` order.

    The grid keeps the offsets' own ``(dy, dx)`` pair order, so it must sample the *transposed*
    image (W, H), where ``grid_sample``'s first coordinate runs along H; this avoids a reordering
    copy of the offsets. It is laid out planar, (B * G, K, 2, L) in memory, which ``grid_sample``
    reads as fast as an interleaved grid. Pixel coordinate ``p`` on an axis of length ``n`` maps
    to ``(2p + 1) / n - 1`` (``align_corners=False``). ``grid_size`` is the zero-padded image size,
    a power of two per axis: then every step of the mapping and of ``grid_sample``'s inverse is
    exact in binary floating point, so an integer sampling position stays an integer. Bilinear
    interpolation has a kink there, and its gradient depends on which cell ``floor`` picks; with an
    exact integer it picks the cell to the right, the forward difference torchvision uses.

    Returns:
        Grid (B * G, K, L, 2).
    """
    batch, _, out_h, out_w = offset.shape
    kh, kw = kernel_size
    height, width = grid_size
    stride, padding, dilation, groups = geometry
    factory = {"dtype": offset.dtype, "device": offset.device}
    # Regular-grid pixel row of tap row i at output row ho is ho*sh - ph + i*dh (columns alike).
    rows = torch.arange(out_h, **factory) * stride[0] - padding[0]  # (Ho,)
    cols = torch.arange(out_w, **factory) * stride[1] - padding[1]  # (Wo,)
    tap_rows = torch.arange(kh, **factory) * dilation[0]  # (kh,)
    tap_cols = torch.arange(kw, **factory) * dilation[1]  # (kw,)
    ys = (tap_rows[:, None, None, None] + rows[None, None, :, None]).expand(kh, kw, out_h, out_w)
    xs = (tap_cols[None, :, None, None] + cols[None, None, None, :]).expand(kh, kw, out_h, out_w)
    pixels = torch.stack((ys, xs), dim=2).reshape(kh * kw, 2, out_h * out_w)  # (K, 2, L)
    scale = torch.tensor([[2 / height], [2 / width]], **factory)  # (2, 1) pixels -> normalised
    base = torch.addcmul(scale / 2 - 1, pixels, scale)  # (K, 2, L)
    pairs = offset.reshape(batch * groups, kh * kw, 2, out_h * out_w)  # (B*G, K, 2, L)
    return torch.addcmul(base, pairs, scale).transpose(2, 3)  # (B*G, K, L, 2)


def _deform_conv2d_torch(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    mask: Tensor | None,
    geometry: _Geometry,
) -> Tensor:
    """Pure-PyTorch deformable convolution on validated operands (see :func:`modulated_deform_conv2d`)."""
    batch, channels, height, width = x.shape
    out_channels, group_channels, kh, kw = weight.shape
    _, _, out_h, out_w = offset.shape
    taps = kh * kw
    groups = geometry.offset_groups
    weight_groups = channels // group_channels
    grid_size = (_power_of_two_at_least(height), _power_of_two_at_least(width))
    grid = _sampling_grid(offset, grid_size, (kh, kw), geometry)
    images = x.reshape(batch * groups, channels // groups, height, width)  # (B*G, C/G, H, W)
    images = F.pad(images, (0, grid_size[1] - width, 0, grid_size[0] - height))  # zeros read as outside
    transposed = images.transpose(2, 3)  # (B*G, C/G, W', H')
    sampled = F.grid_sample(transposed, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # sampled: (B*G, C/G, K, L), channel-major then tap: the weight's (C, kh, kw) order.
    if mask is not None:
        gates = mask.reshape(batch * groups, 1, taps, out_h * out_w)  # (B*G, 1, K, L)
        # In place unless autograd needs the unmasked samples for the mask gradient.
        needs_samples = torch.is_grad_enabled() and mask.requires_grad
        sampled = sampled * gates if needs_samples else sampled.mul_(gates)
    columns = sampled.view(batch, weight_groups, group_channels * taps, out_h * out_w)  # (B, Gw, C/Gw*K, L)
    kernels = weight.reshape(weight_groups, out_channels // weight_groups, group_channels * taps)
    out = torch.matmul(kernels, columns)  # (B, Gw, O/Gw, L)
    out = out.view(batch, out_channels, out_h, out_w)  # (B, O, Ho, Wo)
    if bias is not None:
        out = out + bias.view(1, out_channels, 1, 1)
    return out


def modulated_deform_conv2d(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    mask: Tensor | None = None,
) -> Tensor:
    """Pure-PyTorch modulated deformable convolution, equal to ``torchvision.ops.deform_conv2d``.

    Samples all taps of all offset groups with one bilinear ``grid_sample`` over (B * G) images,
    scales them by the mask and contracts them with the weight in one batched matmul. Exportable
    to ONNX (opset >= 16).

    Args:
        x: Input (B, C, H, W).
        offset: Tap displacements (B, 2 * G * kh * kw, Ho, Wo), ``(dy, dx)`` per group and tap.
        weight: Kernel (O, C / Gw, kh, kw); Gw weight groups are inferred from ``weight.shape[1]``.
        bias: Optional (O,).
        stride: Int or ``(sh, sw)``.
        padding: Zero padding, int or ``(ph, pw)``.
        dilation: Int or ``(dh, dw)``.
        mask: Optional modulation (B, G * kh * kw, Ho, Wo); None gives DCNv1 (no modulation).

    Returns:
        Output (B, O, Ho, Wo).

    Raises:
        ValueError: If operand shapes are inconsistent (message gives expected and received shape).
    """
    geometry = _checked_geometry(x, offset, weight, bias, mask, stride, padding, dilation)
    return _deform_conv2d_torch(x, offset, weight, bias, mask, geometry)


def resolve_impl(impl: str, device: torch.device) -> ResolvedImpl:
    """Chooses the implementation that runs for ``impl`` on ``device``.

    ``"auto"`` picks torchvision's fused kernel on CUDA and the pure-PyTorch path elsewhere (faster
    on CPU per ``benchmarks/dcn.py``, and the only one with an ONNX export, so also while exporting).

    Args:
        impl: One of :data:`IMPLS`.
        device: Device of the input.

    Returns:
        ``"torchvision"`` or ``"torch"``.

    Raises:
        ValueError: If ``impl`` is not one of :data:`IMPLS`.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown deformable convolution impl {impl!r}; valid names: {', '.join(IMPLS)}")
    if impl != "auto":
        return impl  # type: ignore[return-value]
    if device.type == "cuda" and not torch.onnx.is_in_onnx_export():
        return "torchvision"
    return "torch"


def deform_conv2d(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    mask: Tensor | None = None,
    impl: Impl = "auto",
) -> Tensor:
    """Modulated deformable convolution, dispatched to the implementation chosen by ``impl``.

    Args:
        x: Input (B, C, H, W).
        offset: Tap displacements (B, 2 * G * kh * kw, Ho, Wo).
        weight: Kernel (O, C / Gw, kh, kw).
        bias: Optional (O,).
        stride: Int or ``(sh, sw)``.
        padding: Zero padding, int or ``(ph, pw)``.
        dilation: Int or ``(dh, dw)``.
        mask: Optional modulation (B, G * kh * kw, Ho, Wo).
        impl: ``"torchvision"``, ``"torch"`` or ``"auto"`` (see :func:`resolve_impl`).

    Returns:
        Output (B, O, Ho, Wo).

    Raises:
        ValueError: On an unknown ``impl`` or inconsistent operand shapes.
    """
    resolved = resolve_impl(impl, x.device)
    geometry = _checked_geometry(x, offset, weight, bias, mask, stride, padding, dilation)
    if resolved == "torch":
        return _deform_conv2d_torch(x, offset, weight, bias, mask, geometry)
    return torchvision.ops.deform_conv2d(
        x, offset, weight, bias, stride=geometry.stride, padding=geometry.padding, dilation=geometry.dilation, mask=mask
    )


class ModulatedDeformConv2d(nn.Module):
    """Modulated deformable convolution layer whose offsets and mask are given to ``forward``.

    Parameters ``weight`` (O, C, kh, kw) and ``bias`` (O,) are named and initialised as in
    ``torchvision.ops.DeformConv2d``, so its state dicts load 1:1.

    Args:
        in_channels: Input channels C.
        out_channels: Output channels O.
        kernel_size: Int or ``(kh, kw)``.
        stride: Int or ``(sh, sw)``.
        padding: Zero padding, int or ``(ph, pw)``.
        dilation: Int or ``(dh, dw)``.
        offset_groups: G; each group of C / G channels has its own offsets and mask.
        bias: Whether to learn an additive bias.
        impl: ``"auto"``, ``"torchvision"`` or ``"torch"`` (see :func:`resolve_impl`).

    Raises:
        ValueError: On an unknown ``impl`` or ``in_channels`` not divisible by ``offset_groups``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair = 3,
        stride: IntPair = 1,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        offset_groups: int = 1,
        bias: bool = True,
        impl: Impl = "auto",
    ) -> None:
        super().__init__()
        resolve_impl(impl, torch.device("cpu"))
        if offset_groups <= 0 or in_channels % offset_groups:
            raise ValueError(f"in_channels {in_channels} must be divisible by offset_groups {offset_groups}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.offset_groups = offset_groups
        self.impl: Impl = impl
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weight and fan-in uniform bias, as ``nn.Conv2d`` and torchvision."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor | None = None) -> Tensor:
        """Applies the layer.

        Args:
            x: Input (B, C, H, W).
            offset: (B, 2 * offset_groups * kh * kw, Ho, Wo).
            mask: Optional (B, offset_groups * kh * kw, Ho, Wo).

        Returns:
            Output (B, O, Ho, Wo).

        Raises:
            ValueError: If the offset does not have ``2 * offset_groups * kh * kw`` channels, or on
                other shape mismatches.
        """
        expected = 2 * self.offset_groups * self.kernel_size[0] * self.kernel_size[1]
        if offset.dim() != 4 or offset.shape[1] != expected:
            raise ValueError(f"offset expected (B, {expected}, Ho, Wo), got {tuple(offset.shape)}")
        return deform_conv2d(
            x,
            offset,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=mask,
            impl=self.impl,
        )

    def extra_repr(self) -> str:
        """Layer hyper-parameters for ``repr``."""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, offset_groups={self.offset_groups}, "
            f"bias={self.bias is not None}, impl={self.impl!r}"
        )
