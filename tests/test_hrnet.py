"""HRNet: official state-dict layout, parameter counts, forward contract."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from famipose.models.blocks import BasicBlock, Bottleneck, basic_block_chain, make_stage_blocks
from famipose.models.hrnet import (
    HRNET_SPECS,
    HighResolutionModule,
    HRNet,
    HRNetSpec,
    hrnet_tiny,
    hrnet_w32,
    hrnet_w48,
)

Shapes = dict[str, tuple[int, ...]]


def _conv(name: str, c_out: int, c_in: int, k: int) -> Shapes:
    return {f"{name}.weight": (c_out, c_in, k, k)}


def _bn(name: str, c: int) -> Shapes:
    keys = {f"{name}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")}
    return keys | {f"{name}.num_batches_tracked": ()}


def official_pose_hrnet_keys(w: int, num_joints: int = 17) -> Shapes:
    """Key -> shape of the official ``PoseHighResolutionNet``, written out from its description.

    Stem 3->64->64, layer1 = 4 Bottlenecks(64) with a 1x1 downsample on the first; stages 2/3/4
    have 1/4/3 modules with 2/3/4 branches of 4 BasicBlocks, channels w * 2**b; fuse layer
    (i, j) is a 1x1 conv+BN for j > i and a chain of i - j stride-2 3x3 conv+BN for j < i; the
    last stage-4 module fuses only into branch 0; new branches come from one stride-2 3x3 conv.
    """
    keys = _conv("conv1", 64, 3, 3) | _bn("bn1", 64) | _conv("conv2", 64, 64, 3) | _bn("bn2", 64)
    for b in range(4):
        p = f"layer1.{b}"
        keys |= _conv(f"{p}.conv1", 64, 64 if b == 0 else 256, 1) | _bn(f"{p}.bn1", 64)
        keys |= _conv(f"{p}.conv2", 64, 64, 3) | _bn(f"{p}.bn2", 64)
        keys |= _conv(f"{p}.conv3", 256, 64, 1) | _bn(f"{p}.bn3", 256)
    keys |= _conv("layer1.0.downsample.0", 256, 64, 1) | _bn("layer1.0.downsample.1", 256)
    keys |= _conv("transition1.0.0", w, 256, 3) | _bn("transition1.0.1", w)
    keys |= _conv("transition1.1.0.0", 2 * w, 256, 3) | _bn("transition1.1.0.1", 2 * w)
    keys |= _conv("transition2.2.0.0", 4 * w, 2 * w, 3) | _bn("transition2.2.0.1", 4 * w)
    keys |= _conv("transition3.3.0.0", 8 * w, 4 * w, 3) | _bn("transition3.3.0.1", 8 * w)
    for stage, num_modules in ((2, 1), (3, 4), (4, 3)):
        ch = [w * 2**b for b in range(stage)]
        for m in range(num_modules):
            p = f"stage{stage}.{m}"
            for b, c in enumerate(ch):
                for k in range(4):
                    q = f"{p}.branches.{b}.{k}"
                    keys |= _conv(f"{q}.conv1", c, c, 3) | _bn(f"{q}.bn1", c)
                    keys |= _conv(f"{q}.conv2", c, c, 3) | _bn(f"{q}.bn2", c)
            outputs = 1 if (stage == 4 and m == num_modules - 1) else stage
            for i in range(outputs):
                for j in range(stage):
                    q = f"{p}.fuse_layers.{i}.{j}"
                    if j > i:
                        keys |= _conv(f"{q}.0", ch[i], ch[j], 1) | _bn(f"{q}.1", ch[i])
                    for k in range(i - j):
                        c_out = ch[i] if k == i - j - 1 else ch[j]
                        keys |= _conv(f"{q}.{k}.0", c_out, ch[j], 3) | _bn(f"{q}.{k}.1", c_out)
    return keys | {"final_layer.weight": (num_joints, w, 1, 1), "final_layer.bias": (num_joints,)}


def _learnable_count(shapes: Shapes) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(s) for k, s in shapes.items() if not k.endswith(buffers))


def _on_meta(factory: Callable[[], HRNet]) -> HRNet:
    """Build a model without allocating or initialising its weights (layout checks only)."""
    with torch.device("meta"):
        return factory()


def _shapes(model: torch.nn.Module) -> Shapes:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def w48_shapes() -> Shapes:
    return _shapes(_on_meta(hrnet_w48))


@pytest.fixture(scope="module")
def tiny() -> HRNet:
    torch.manual_seed(0)
    return hrnet_tiny().eval()


def test_w48_state_dict_matches_official_layout(w48_shapes: Shapes) -> None:
    assert w48_shapes == official_pose_hrnet_keys(48)


def test_w32_state_dict_matches_official_layout() -> None:
    assert _shapes(_on_meta(hrnet_w32)) == official_pose_hrnet_keys(32)


def test_literal_official_keys(w48_shapes: Shapes) -> None:
    assert w48_shapes["final_layer.weight"] == (17, 48, 1, 1)
    assert w48_shapes["final_layer.bias"] == (17,)
    assert w48_shapes["transition1.0.0.weight"] == (48, 256, 3, 3)
    assert w48_shapes["transition3.3.0.0.weight"] == (384, 192, 3, 3)
    # Branch 0 -> branch 3 of a multi-scale module: three stride-2 convs, the last to 384 channels.
    assert w48_shapes["stage4.1.fuse_layers.3.0.0.0.weight"] == (48, 48, 3, 3)
    assert w48_shapes["stage4.1.fuse_layers.3.0.2.0.weight"] == (384, 48, 3, 3)
    assert w48_shapes["stage4.2.fuse_layers.0.3.0.weight"] == (48, 384, 1, 1)
    assert w48_shapes["stage3.3.branches.2.3.conv2.weight"] == (192, 192, 3, 3)
    # The last stage-4 module outputs branch 0 only.
    assert not any(k.startswith("stage4.2.fuse_layers.1.") for k in w48_shapes)
    assert "stage4.2.fuse_layers.3.0.0.0.weight" not in w48_shapes


def test_parameter_counts_match_paper() -> None:
    w48, w32 = official_pose_hrnet_keys(48), official_pose_hrnet_keys(32)
    assert _learnable_count(w48) == 63_595_745
    assert _learnable_count(w32) == 28_536_113
    assert sum(p.numel() for p in _on_meta(hrnet_w48).parameters()) == 63_595_745
    assert sum(p.numel() for p in _on_meta(hrnet_w32).parameters()) == 28_536_113
    assert round(63_595_745 / 1e6, 1) == 63.6
    assert round(28_536_113 / 1e6, 1) == 28.5


def test_forward_and_features_contract(tiny: HRNet) -> None:
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        z = tiny.features(x)
        heatmaps = tiny(x)
        assert z.shape == (2, tiny.out_channels, 32, 24)
        assert tiny.out_channels == 16
        assert heatmaps.shape == (2, 17, 32, 24)
        torch.testing.assert_close(heatmaps, tiny.head(z), rtol=0, atol=0)


def test_sizes_not_divisible_by_32(tiny: HRNet) -> None:
    with torch.no_grad():
        heatmaps = tiny(torch.randn(1, 3, 100, 76))
    assert heatmaps.shape == (1, 17, 25, 19)


def test_every_parameter_receives_gradient() -> None:
    torch.manual_seed(0)
    model = hrnet_tiny(num_joints=5).train()
    model(torch.randn(2, 3, 64, 64)).square().sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_official_initialisation() -> None:
    torch.manual_seed(0)
    model = HRNet.from_name("tiny", num_joints=3)
    assert abs(model.conv2.weight.std().item() - 0.001) < 1e-4
    assert torch.equal(model.final_layer.bias, torch.zeros(3))
    assert torch.equal(model.bn1.weight, torch.ones(32))
    assert torch.equal(model.layer1[0].bn3.bias, torch.zeros(128))


def test_from_name_presets_and_unknown_name() -> None:
    assert _on_meta(lambda: HRNet.from_name("w48")).spec == HRNET_SPECS["w48"] == HRNetSpec(width=48)
    tiny_spec = HRNET_SPECS["tiny"]
    assert tiny_spec.width <= 16 and tiny_spec.stage_modules == (1, 1, 1)
    assert HRNet.from_spec(tiny_spec, num_joints=4).final_layer.out_channels == 4
    with pytest.raises(ValueError, match=r"'tiny'.*'w32'.*'w48'"):
        HRNet.from_name("w64")
    with pytest.raises(ValueError, match="stage_modules"):
        HRNetSpec(width=8, stage_modules=(1, 1))  # type: ignore[arg-type]


def test_block_stacks() -> None:
    chain = basic_block_chain(8, 12, 3)
    assert len(chain) == 3 and isinstance(chain[0], BasicBlock)
    assert chain[0].downsample is not None and chain[1].downsample is None
    assert tuple(chain[0].downsample[0].weight.shape) == (12, 8, 1, 1)
    assert chain(torch.randn(1, 8, 5, 7)).shape == (1, 12, 5, 7)
    assert basic_block_chain(8, 8, 2)[0].downsample is None
    strided = make_stage_blocks(Bottleneck, 16, 4, 2, stride=2)
    assert strided(torch.randn(1, 16, 9, 9)).shape == (1, 16, 5, 5)
    assert strided[0].downsample is not None and strided[0].downsample[0].stride == (2, 2)
    with pytest.raises(ValueError):
        make_stage_blocks(BasicBlock, 4, 4, 0)


def test_fusion_wiring_of_a_two_branch_module() -> None:
    torch.manual_seed(0)
    module = HighResolutionModule([4, 8], num_blocks=1).eval()
    x0, x1 = torch.randn(2, 4, 8, 6), torch.randn(2, 8, 4, 3)
    with torch.no_grad():
        y0, y1 = module([x0, x1])
        b0, b1 = module.branches[0](x0), module.branches[1](x1)
        up = module.fuse_layers[0][1](b1).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        down = module.fuse_layers[1][0](b0)
    torch.testing.assert_close(y0, torch.relu(b0 + up))
    torch.testing.assert_close(y1, torch.relu(down + b1))
    assert len(HighResolutionModule([4, 8], 1, multi_scale_output=False)([x0, x1])) == 1
