"""Tests for famipose.models.dcn: pure-PyTorch DCNv2 against torchvision, dispatch, validation, ONNX."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import Tensor

from famipose.models.dcn import (
    IMPLS,
    ModulatedDeformConv2d,
    conv_output_size,
    deform_conv2d,
    modulated_deform_conv2d,
    resolve_impl,
)

Pair = tuple[int, int]


@dataclass(frozen=True)
class Case:
    """Geometry of one deformable convolution."""

    in_size: Pair = (7, 9)
    channels: int = 6
    out_channels: int = 4
    kernel: Pair = (3, 3)
    stride: Pair = (1, 1)
    padding: Pair = (1, 1)
    dilation: Pair = (1, 1)
    offset_groups: int = 1
    weight_groups: int = 1
    mask: bool = True
    bias: bool = True
    batch: int = 2


def make_operands(case: Case, dtype: torch.dtype = torch.float64, offset_scale: float = 3.0) -> dict:
    """Random operands; offsets of a few pixels cross pixel boundaries and leave the small image."""
    gen = torch.Generator().manual_seed(0)
    out_size = conv_output_size(case.in_size, case.kernel, case.stride, case.padding, case.dilation)
    taps = case.kernel[0] * case.kernel[1]
    shapes = {
        "x": (case.batch, case.channels, *case.in_size),
        "offset": (case.batch, 2 * case.offset_groups * taps, *out_size),
        "weight": (case.out_channels, case.channels // case.weight_groups, *case.kernel),
        "mask": (case.batch, case.offset_groups * taps, *out_size) if case.mask else None,
        "bias": (case.out_channels,) if case.bias else None,
    }
    operands = {
        name: None if shape is None else torch.randn(shape, generator=gen, dtype=dtype)
        for name, shape in shapes.items()
    }
    operands["offset"] = operands["offset"] * offset_scale
    if case.mask:
        operands["mask"] = operands["mask"].sigmoid()
    return {name: None if t is None else t.requires_grad_() for name, t in operands.items()}


def apply(fn, ops: dict, case: Case, **kwargs) -> Tensor:
    """Calls a deformable convolution function on the operands of ``case``."""
    return fn(
        ops["x"],
        ops["offset"],
        ops["weight"],
        ops["bias"],
        stride=case.stride,
        padding=case.padding,
        dilation=case.dilation,
        mask=ops["mask"],
        **kwargs,
    )


def output_and_grads(out: Tensor, ops: dict) -> list[Tensor]:
    """The output and the gradients of a fixed random projection of it w.r.t. every operand."""
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    leaves = [t for t in ops.values() if t is not None and t.requires_grad]
    return [out.detach(), *torch.autograd.grad(out, leaves, cotangent)]


def assert_matches_torchvision(case: Case, atol: float = 1e-5) -> None:
    """Output and all gradients of the pure path equal torchvision's on ``case`` (float64)."""
    ops = make_operands(case)
    expected = output_and_grads(apply(torchvision.ops.deform_conv2d, ops, case), ops)
    actual = output_and_grads(apply(modulated_deform_conv2d, ops, case), ops)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, atol=atol, rtol=0)


CASES = {
    "plain": Case(),
    "groups3-dil3-stride2": Case(in_size=(11, 8), offset_groups=3, dilation=(3, 3), padding=(3, 3), stride=(2, 2)),
    "rect-params-no-mask-no-bias": Case(
        in_size=(9, 6), offset_groups=3, dilation=(1, 3), padding=(0, 2), stride=(2, 1), mask=False, bias=False
    ),
    "weight-groups": Case(channels=6, out_channels=6, weight_groups=3, offset_groups=3, stride=(2, 2)),
    "rect-kernel": Case(in_size=(6, 10), kernel=(3, 2), dilation=(3, 1), padding=(2, 0), offset_groups=2),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_pure_path_matches_torchvision_outputs_and_gradients(case: Case) -> None:
    assert_matches_torchvision(case)


@pytest.mark.parametrize("case", [CASES["plain"], CASES["groups3-dil3-stride2"]], ids=["plain", "g3-dil3"])
@pytest.mark.parametrize("offsets", ["zero", "integer"])
def test_gradients_match_torchvision_at_integer_sampling_positions(case: Case, offsets: str) -> None:
    """Bilinear sampling has a kink at integer positions (the LCM starts at zero offsets there).

    torchvision picks the cell by floor, i.e. differentiates forwards; any round-off in the pure
    path's coordinates would flip some taps to a backward difference. Float64, exact integers,
    tolerance far below the size of such a flip (a difference of two input pixels).
    """
    ops = make_operands(case)
    with torch.no_grad():
        ops["offset"].copy_(0.0 if offsets == "zero" else ops["offset"].round().clamp(-3, 3))
    expected = output_and_grads(apply(torchvision.ops.deform_conv2d, ops, case), ops)
    actual = output_and_grads(apply(modulated_deform_conv2d, ops, case), ops)
    offset_grad_index = 2  # [output, d/dx, d/doffset, ...]
    assert expected[offset_grad_index].abs().max() > 0.1
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_offsets_in_tests_leave_the_image() -> None:
    """Guards the comparisons: a fair share of the samples falls outside the image, but not all."""
    case = CASES["groups3-dil3-stride2"]
    offset = make_operands(case)["offset"].detach()
    (kh, kw), (height, width) = case.kernel, case.in_size
    out_h, out_w = offset.shape[-2:]
    pairs = offset.view(case.batch, case.offset_groups, kh, kw, 2, out_h, out_w)
    rows = torch.arange(kh)[:, None, None, None] * case.dilation[0] + torch.arange(out_h)[:, None] * case.stride[0]
    cols = torch.arange(kw)[:, None, None] * case.dilation[1] + torch.arange(out_w) * case.stride[1]
    ys = pairs[..., 0, :, :] + rows - case.padding[0]  # (B, G, kh, kw, Ho, Wo)
    xs = pairs[..., 1, :, :] + cols - case.padding[1]
    outside = (ys <= -1) | (ys >= height) | (xs <= -1) | (xs >= width)
    assert 0.1 < outside.double().mean() < 0.9


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(1, 6),
    width=st.integers(1, 6),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    offset_groups=st.sampled_from([1, 2]),
    mask=st.booleans(),
)
def test_pure_path_matches_torchvision_on_random_geometry(
    height: int,
    width: int,
    kernel: Pair,
    stride: Pair,
    dilation: Pair,
    padding: Pair,
    offset_groups: int,
    mask: bool,
) -> None:
    assume(min(conv_output_size((height, width), kernel, stride, padding, dilation)) > 0)
    case = Case(
        in_size=(height, width),
        channels=2,
        out_channels=3,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        offset_groups=offset_groups,
        mask=mask,
        batch=1,
    )
    assert_matches_torchvision(case)


@pytest.mark.parametrize("case", [CASES["groups3-dil3-stride2"], CASES["weight-groups"]], ids=["g3", "wg3"])
def test_zero_offsets_and_unit_mask_equal_conv2d(case: Case) -> None:
    ops = make_operands(case)
    ops["offset"] = torch.zeros_like(ops["offset"])
    ops["mask"] = torch.ones_like(ops["mask"])
    want = F.conv2d(ops["x"], ops["weight"], ops["bias"], case.stride, case.padding, case.dilation, case.weight_groups)
    torch.testing.assert_close(apply(modulated_deform_conv2d, ops, case), want, atol=1e-10, rtol=0)


def test_integer_offset_shifts_the_sampled_image() -> None:
    """dy = 1, dx = -2 everywhere samples the input shifted up by 1 and right by 2, zero filled."""
    case = Case(in_size=(6, 8), mask=False, bias=False)
    ops = make_operands(case)
    offset = torch.zeros_like(ops["offset"]).view(case.batch, 9, 2, 6, 8)
    offset[:, :, 0], offset[:, :, 1] = 1.0, -2.0
    # Tap (i, j) of output (ho, wo) reads x[ho - 1 + i + 1, wo - 1 + j - 2], zero outside the image.
    padded = F.pad(ops["x"], (3, 0, 0, 2))  # padded[r, c] = x[r, c - 3]
    want = F.conv2d(padded, ops["weight"])[..., :8]
    got = modulated_deform_conv2d(ops["x"], offset.view_as(ops["offset"]), ops["weight"], padding=1)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_mask_without_grad_uses_in_place_path_with_same_results() -> None:
    case = CASES["groups3-dil3-stride2"]
    ops = make_operands(case)
    ops["mask"] = ops["mask"].detach()
    expected = output_and_grads(apply(torchvision.ops.deform_conv2d, ops, case), ops)
    actual = output_and_grads(apply(modulated_deform_conv2d, ops, case), ops)
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(apply(modulated_deform_conv2d, ops, case), expected[0], atol=1e-10, rtol=0)


def test_offset_and_mask_sliced_from_one_prediction() -> None:
    """Offsets and mask usually come as channel slices (non-contiguous) of one conv output."""
    case = CASES["groups3-dil3-stride2"]
    ops = make_operands(case)
    prediction = torch.cat((ops["offset"], ops["mask"]), dim=1).detach()  # (B, 3 * G * K, Ho, Wo)
    offset, mask = prediction.split([ops["offset"].shape[1], ops["mask"].shape[1]], dim=1)
    assert not offset.is_contiguous() and not mask.is_contiguous()
    sliced = apply(modulated_deform_conv2d, {**ops, "offset": offset, "mask": mask}, case)
    torch.testing.assert_close(sliced, apply(modulated_deform_conv2d, ops, case), atol=1e-12, rtol=0)


@pytest.mark.parametrize("impl", ["torch", "torchvision", "auto"])
def test_dispatch_runs_every_impl_float32(impl: str) -> None:
    case = CASES["groups3-dil3-stride2"]
    ops = make_operands(case, dtype=torch.float32)
    want = apply(torchvision.ops.deform_conv2d, ops, case)
    torch.testing.assert_close(apply(deform_conv2d, ops, case, impl=impl), want, atol=1e-4, rtol=1e-4)


def test_resolve_impl_picks_torch_on_cpu_and_torchvision_on_cuda() -> None:
    assert resolve_impl("auto", torch.device("cpu")) == "torch"
    assert resolve_impl("auto", torch.device("cuda")) == "torchvision"
    assert resolve_impl("torch", torch.device("cuda")) == "torch"
    assert resolve_impl("torchvision", torch.device("cpu")) == "torchvision"
    assert IMPLS == ("auto", "torchvision", "torch")


def test_unknown_impl_lists_valid_names() -> None:
    ops = make_operands(Case())
    with pytest.raises(ValueError, match=r"'cuda'.*auto, torchvision, torch"):
        apply(deform_conv2d, ops, Case(), impl="cuda")
    with pytest.raises(ValueError, match="valid names"):
        ModulatedDeformConv2d(4, 4, impl="fast")  # type: ignore[arg-type]


def _with(ops: dict, **replacements: Tensor | None) -> dict:
    return {**ops, **replacements}


@pytest.mark.parametrize("impl", ["torch", "torchvision"])
def test_shape_errors_state_expected_and_received(impl: str) -> None:
    case = Case(offset_groups=2)  # x (2, 6, 7, 9), 3x3 kernel, padding 1 -> output 7x9
    ops = make_operands(case)
    bad = {
        "offset channels must be a positive multiple of 2\\*kh\\*kw=18, got 20": _with(
            ops, offset=torch.zeros(2, 20, 7, 9)
        ),
        "input channels 6 must be divisible by offset groups 4": _with(ops, offset=torch.zeros(2, 72, 7, 9), mask=None),
        r"offset shape expected \(2, 36, 7, 9\), got \(2, 36, 7, 8\)": _with(ops, offset=torch.zeros(2, 36, 7, 8)),
        r"mask shape expected \(2, 18, 7, 9\), got \(2, 9, 7, 9\)": _with(ops, mask=torch.zeros(2, 9, 7, 9)),
        r"bias shape expected \(4,\), got \(5,\)": _with(ops, bias=torch.zeros(5)),
        r"weight \(4, 4, 3, 3\) does not fit input channels 6": _with(ops, weight=torch.zeros(4, 4, 3, 3)),
        r"input must be 4-D, got shape \(6, 7, 9\)": _with(ops, x=torch.zeros(6, 7, 9)),
    }
    for message, operands in bad.items():
        with pytest.raises(ValueError, match=message):
            apply(deform_conv2d, operands, case, impl=impl)
    with pytest.raises(ValueError, match=r"output size would be \(-1, 1\)"):
        deform_conv2d(ops["x"], ops["offset"], torch.zeros(4, 6, 9, 9), impl=impl)


def test_module_loads_torchvision_state_dict_and_matches_it() -> None:
    torch.manual_seed(0)
    reference = torchvision.ops.DeformConv2d(6, 4, 3, stride=2, padding=3, dilation=3).double()
    module = ModulatedDeformConv2d(6, 4, 3, stride=2, padding=3, dilation=3, offset_groups=3).double()
    assert {k: v.shape for k, v in module.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    module.load_state_dict(reference.state_dict())
    ops = make_operands(CASES["groups3-dil3-stride2"])
    want = reference(ops["x"], ops["offset"], ops["mask"])
    torch.testing.assert_close(module(ops["x"], ops["offset"], ops["mask"]), want, atol=1e-10, rtol=0)


def test_module_init_bias_flag_repr_and_offset_check() -> None:
    torch.manual_seed(0)
    module = ModulatedDeformConv2d(8, 4, kernel_size=(3, 1), dilation=2, offset_groups=4, bias=False)
    assert module.bias is None
    assert module.weight.shape == (4, 8, 3, 1)
    bound = 1 / np.sqrt(8 * 3)  # kaiming_uniform(a=sqrt(5)) bound = 1 / sqrt(fan_in)
    assert 0.5 * bound < module.weight.abs().max().item() <= bound
    text = repr(module)
    assert "8, 4, kernel_size=(3, 1)" in text
    assert "dilation=(2, 2), offset_groups=4, bias=False, impl='auto'" in text
    with pytest.raises(ValueError, match=r"offset expected \(B, 24, Ho, Wo\), got \(1, 12, 4, 4\)"):
        module(torch.zeros(1, 8, 8, 4), torch.zeros(1, 12, 4, 4))
    with pytest.raises(ValueError, match="divisible by offset_groups"):
        ModulatedDeformConv2d(6, 4, offset_groups=4)


def test_onnx_export_of_pure_path_matches_pytorch() -> None:
    torch.manual_seed(0)
    module = ModulatedDeformConv2d(6, 4, 3, stride=(1, 2), padding=2, dilation=2, offset_groups=3, impl="torch")
    x = torch.randn(2, 6, 9, 11)
    offset = torch.randn(2, 54, 9, 6) * 2
    mask = torch.rand(2, 27, 9, 6)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and static-shape tracer warnings
        torch.onnx.export(
            module.eval(),
            (x, offset, mask),
            buffer,
            opset_version=17,
            dynamo=False,
            input_names=["x", "offset", "mask"],
        )
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy(), "offset": offset.numpy(), "mask": mask.numpy()})
    with torch.no_grad():
        want = module(x, offset, mask).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
