"""``famipose_official`` as an exact mirror of the released ``Alignment_V15`` model.

The reference below is written from the released architecture (Pose-Group/FAMI-Pose,
``posetimation/zoo/Alignment/Alignment_V15.py``) with the released module names, so that a state
dict of the released layout loads into it as it is: the GTM's five conv-BN-ReLU layers carry conv
biases and end in three ``nn.Linear`` without activations, the translation is applied in feature
pixels as kornia's ``warp_affine`` (dst(x) = src(x - t), bilinear, zeros outside; implemented here
by explicit bilinear sampling, not with our ``warp_features``), supports are stacked on the
channel axis and chunked, and the four DCNs are torchvision's ``deform_conv2d`` called in the
released order. Only the HRNet backbone and the residual blocks are taken from famipose: their
layouts are the official HRNet ones and the release uses them unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from torch import Tensor, nn
from typer.testing import CliRunner

from famipose.cli import app
from famipose.config import BackboneConfig, Config, GTMConfig, LCMConfig, ModelConfig, load_config, to_dict
from famipose.models.alignment import affine_from_params, pixels_to_normalized, warp_features
from famipose.models.blocks import BasicBlock, conv_bn
from famipose.models.checkpoint import RELEASED_MODEL, CheckpointError, convert_release
from famipose.models.famipose import FamiPose
from famipose.models.hrnet import HRNet

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = dataclasses.replace(
    RELEASED_MODEL,
    input_size=(72, 96),  # features 18 x 24: three stride-2 convs reach 3 x 3, as 5 do from 72 x 96
    backbone=BackboneConfig(name="tiny", frozen=True, frozen_bn="train"),
    gtm=dataclasses.replace(RELEASED_MODEL.gtm, hidden_channels=8, num_downsamples=3, hidden_features=32),
    lcm=LCMConfig(kernel_size=3, dilation=3, offset_groups=4, mask="raw"),
)


# ---------------------------------------------------------------------------------------------
# Reference: the released computation
# ---------------------------------------------------------------------------------------------


def pixel_translate(features: Tensor, translation: Tensor) -> Tensor:
    """kornia ``warp_affine(features, [I | t])``: dst(x, y) = src(x - t_x, y - t_y), pixel units.

    Bilinear interpolation between the four pixel centres around each sampling position; taps
    outside the map read zero.

    Args:
        features: (N, C, h, w).
        translation: (N, 2) as (t_x, t_y) in pixels.
    """
    n, _, h, w = features.shape
    xs = torch.arange(w, dtype=features.dtype) - translation[:, :1]  # (N, w) source columns
    ys = torch.arange(h, dtype=features.dtype) - translation[:, 1:]  # (N, h) source rows
    x0, y0 = xs.floor(), ys.floor()
    batch = torch.arange(n)[:, None, None]  # (N, 1, 1)
    out = torch.zeros_like(features)
    for dy in (0, 1):
        for dx in (0, 1):
            row, col = (y0 + dy).long(), (x0 + dx).long()  # (N, h), (N, w)
            wy = 1 - (ys - row).abs()  # (N, h): 1 - fy for the upper tap, fy for the lower
            wx = 1 - (xs - col).abs()
            wy, wx = wy * ((row >= 0) & (row < h)), wx * ((col >= 0) & (col < w))
            taps = features[batch, :, row.clamp(0, h - 1)[:, :, None], col.clamp(0, w - 1)[:, None, :]]
            out += (wy[:, :, None] * wx[:, None, :])[:, None] * taps.permute(0, 3, 1, 2)  # (N, C, h, w)
    return out


class BiasedConvStage(nn.Module):
    """The released ``conv_bn_relu``: ``conv`` (with bias), optional ``bn`` and ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, padding: int, dilation: int, norm_act: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, padding, dilation, bias=True)
        self.bn = nn.BatchNorm2d(cout) if norm_act else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return x if self.bn is None else torch.relu(self.bn(x))


class ResidualStack(nn.Module):
    """The released chain: ``layers`` of basic blocks, the first always with a 1x1 conv-BN shortcut."""

    def __init__(self, cin: int, cout: int, num_blocks: int) -> None:
        super().__init__()
        blocks = [BasicBlock(cin, cout, 1, conv_bn(cin, cout, kernel_size=1, relu=False))]
        self.layers = nn.Sequential(*blocks, *[BasicBlock(cout, cout) for _ in range(num_blocks - 1)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ReleasedAlignmentV15(nn.Module):
    """The released model's computation and state-dict layout (eval-mode forward)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.hrnet = HRNet.from_name(config.backbone.name, config.num_joints)
        c, gtm = self.hrnet.out_channels, config.gtm
        self.feat_global_offset_layers = nn.Sequential(
            ResidualStack(c, gtm.hidden_channels, 1),
            *[
                BiasedConvStage(gtm.hidden_channels, gtm.hidden_channels, 2, 1, 1, True)
                for _ in range(gtm.num_downsamples)
            ],
            nn.Flatten(),
            nn.Linear(gtm.hidden_channels * 9, gtm.hidden_features),
            nn.Linear(gtm.hidden_features, gtm.hidden_features),
            nn.Linear(gtm.hidden_features, 2),
        )
        taps = 9 * config.lcm.offset_groups
        self.combined_feat_layers = ResidualStack(2 * c, c, 1)
        for k in range(1, 5):
            self.add_module(f"dcn_offset_{k}", BiasedConvStage(c, 2 * taps, 1, 3, 3, False))
            self.add_module(f"dcn_mask_{k}", BiasedConvStage(c, taps, 1, 3, 3, False))
            self.add_module(f"dcn_{k}", torchvision.ops.DeformConv2d(c, c, 3, padding=3, dilation=3))
        self.sup_agg_block = ResidualStack(c * config.num_supports, c, 2)
        self.init_feature_agg_block = ResidualStack(2 * c, c, 3)
        self.agg_final_layer = nn.Conv2d(c, config.num_joints, 3, 1, 1)

    def _deform(self, k: int, features: Tensor, driver: Tensor) -> Tensor:
        """Deformable convolution ``k`` of ``features``, its offsets and masks read from ``driver``."""
        offsets = self.get_submodule(f"dcn_offset_{k}")(driver)
        masks = self.get_submodule(f"dcn_mask_{k}")(driver)
        return self.get_submodule(f"dcn_{k}")(features, offsets, masks)

    def forward(self, key: Tensor, supports: Tensor) -> dict[str, Tensor]:
        """Key crops (B, 3, H, W), supports stacked on channels (B, 3S, H, W) -> intermediates."""
        return self.after_backbone(self.hrnet.features(self.stack_frames(key, supports)), supports.shape[1] // 3)

    @staticmethod
    def stack_frames(key: Tensor, supports: Tensor) -> Tensor:
        """[key; support 1; ...; support S] ((1 + S) B, 3, H, W): the release's one backbone batch."""
        per_support = torch.chunk(supports, supports.shape[1] // 3, dim=1)  # S x (B, 3, H, W)
        return torch.cat([key, *per_support], dim=0)

    def after_backbone(self, stacked: Tensor, num_supports: int) -> dict[str, Tensor]:
        """Backbone features of [key; support 1; ...; support S] ((1 + S) B, C, h, w) -> intermediates."""
        key, *supports = torch.chunk(stacked, num_supports + 1, dim=0)  # (B, C, h, w) each
        shifts = [self.feat_global_offset_layers(support - key) for support in supports]  # S x (B, 2)
        warped = [pixel_translate(support, shift) for support, shift in zip(supports, shifts, strict=True)]
        merged = self.sup_agg_block(torch.cat(warped, dim=1))  # (B, C, h, w)
        # DCNs 1-2 deform the parameter source (merged supports beside the key) by itself; 3-4 move the supports
        driver = self.combined_feat_layers(torch.cat([merged, key], dim=1))
        for k in (1, 2):
            driver = self._deform(k, driver, driver)
        calibrated = self._deform(3, merged, driver)
        calibrated = self._deform(4, calibrated, calibrated)
        fused = self.init_feature_agg_block(torch.cat([key, calibrated], dim=1))
        return {
            "heatmaps": self.agg_final_layer(fused),
            "key_heatmaps": self.hrnet.final_layer(key),  # the backbone's own head on the key frame
            "shifts": torch.stack(shifts, 1),  # (B, S, 2) in feature pixels
            "warped": torch.stack(warped, 1),  # (B, S, C, h, w)
        }


def _randomise(module: nn.Module, seed: int) -> None:
    """Distinctive weights of a realistic scale, BN statistics, non-zero biases and a GTM
    translation of a few (fractional) pixels, so that every tensor matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if tensor.dim() >= 2:  # conv / linear / deformable weights
                new = torch.randn(tensor.shape, generator=gen) / math.sqrt(tensor[0].numel())
            elif name.endswith("running_var"):
                new = 0.5 + 1.5 * torch.rand(tensor.shape, generator=gen)
            elif name.endswith("weight"):  # BN scale
                new = 0.5 + torch.rand(tensor.shape, generator=gen)
            else:  # biases, running means
                new = 0.1 * torch.randn(tensor.shape, generator=gen)
            tensor.copy_(new)
        last = module.feat_global_offset_layers[-1]
        last.bias.copy_(torch.tensor([1.3, -2.6]))


def _released(config: ModelConfig, seed: int = 0) -> ReleasedAlignmentV15:
    """A reference with random tensors; its backbone BatchNorm statistics are those of one batch of
    small random crops (momentum 1), so that backbone features keep a unit scale in eval mode."""
    torch.manual_seed(seed)
    reference = ReleasedAlignmentV15(config)
    _randomise(reference, seed)
    frames = torch.randn(1 + config.num_supports, 3, 64, 48, generator=torch.Generator().manual_seed(seed))
    _calibrated([reference.hrnet], lambda: reference.hrnet.features(frames))
    return reference.double().eval()


def _calibrated(modules: list[nn.Module], run: Callable[[], object]) -> None:
    """Set the running statistics of every BatchNorm in ``modules`` to those of one ``run``."""
    norms = [m for module in modules for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = 1.0
        norm.train()
    with torch.no_grad():
        run()
    for norm in norms:
        norm.momentum = 0.1
        norm.eval()


def _inputs(config: ModelConfig, batch: int, seed: int = 1) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    width, height = config.input_size
    key = torch.randn(batch, 3, height, width, generator=gen, dtype=torch.float64)
    return key, torch.randn(batch, config.num_supports, 3, height, width, generator=gen, dtype=torch.float64)


def _released_run(config: ModelConfig, batch: int) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor, Tensor]:
    """The released eval-mode computation on random crops.

    The layers after the backbone get the BatchNorm statistics of these very features first (no
    activation then grows through the DCN cascade), so an absolute tolerance means what it says.

    Returns:
        The reference's state dict, its outputs, the key crops (B, 3, H, W) and supports (B, S, 3, H, W).
    """
    reference = _released(config)
    key, supports = _inputs(config, batch)
    with torch.no_grad():
        features = reference.hrnet.features(reference.stack_frames(key, supports.flatten(1, 2)))
        after = [child for name, child in reference.named_children() if name != "hrnet"]
        _calibrated(after, lambda: reference.after_backbone(features, config.num_supports))
        outputs = reference.after_backbone(features, config.num_supports)
    return reference.state_dict(), outputs, key, supports


def _mirror(config: ModelConfig, released: dict[str, Tensor]) -> FamiPose:
    model = FamiPose(config).double()  # float64 before loading: no rounding through float32
    model.load_state_dict(convert_release(released, config))
    return model.eval()


def _compare(config: ModelConfig, batch: int) -> dict[str, float]:
    """Max abs differences between the mirror (converted weights) and the released computation."""
    released, ref, key, supports = _released_run(config, batch)
    with torch.no_grad():
        out = _mirror(config, released)(key, supports)
    assert 0.1 < ref["heatmaps"].abs().max() < 100  # unit-scale heatmaps: neither vanishing nor exploding
    assert ref["shifts"].abs().max() > 0.5  # the warp moves by pixels: its units and sign matter
    expected_theta = pixels_to_normalized(ref["shifts"].flatten(0, 1), config.heatmap_size)
    return {
        "heatmaps": (out.pose.heatmaps - ref["heatmaps"]).abs().max().item(),
        "backbone_heatmaps": (out.backbone_heatmaps - ref["key_heatmaps"]).abs().max().item(),
        "coarse_supports": (out.coarse_supports - ref["warped"]).abs().max().item(),
        "theta": (out.warps.flatten(0, 1)[:, :, 2] - expected_theta).abs().max().item(),
    }


# ---------------------------------------------------------------------------------------------
# Units and the warp
# ---------------------------------------------------------------------------------------------


def test_reference_warp_moves_content_by_the_translation_in_pixels():
    features = torch.arange(2 * 3 * 5 * 6, dtype=torch.float64).view(2, 3, 5, 6)
    out = pixel_translate(features, torch.tensor([[2.0, 1.0], [-1.0, 0.0]], dtype=torch.float64))
    assert torch.equal(out[0, :, 1:, 2:], features[0, :, :-1, :-2])  # content moved right 2, down 1
    assert out[0, :, 0].abs().max() == 0 and out[0, :, :, :2].abs().max() == 0  # zeros shifted in
    assert torch.equal(out[1, :, :, :-1], features[1, :, :, 1:])
    half = pixel_translate(features, torch.tensor([[0.5, 0.0], [0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(half[0, :, :, 1:], (features[0, :, :, 1:] + features[0, :, :, :-1]) / 2)


def test_pixel_translation_through_our_warp_equals_the_released_warp():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(6, 4, 24, 18, generator=gen, dtype=torch.float64)
    t_px = 6 * torch.rand(6, 2, generator=gen, dtype=torch.float64) - 3  # fractional, both signs
    t_px[0] = torch.tensor([2.0, 1.0])
    theta = affine_from_params(pixels_to_normalized(t_px, (18, 24)), "translation")
    ours = warp_features(features, theta)
    # The relation itself: theta's translation is -2 t / w, -2 t / h (t_px = -t_norm * w / 2).
    torch.testing.assert_close(theta[:, 0, 2], -2 * t_px[:, 0] / 18, rtol=0, atol=1e-15)
    torch.testing.assert_close(theta[:, 1, 2], -2 * t_px[:, 1] / 24, rtol=0, atol=1e-15)
    torch.testing.assert_close(ours[0, :, 1:, 2:], features[0, :, :-1, :-2], rtol=0, atol=1e-12)
    assert (ours - pixel_translate(features, t_px)).abs().max() < 1e-12
    # The sign the issue corrects: the opposite relation misplaces the warp.
    flipped = warp_features(features, affine_from_params(-pixels_to_normalized(t_px, (18, 24)), "translation"))
    assert (flipped - pixel_translate(features, t_px)).abs().max() > 0.5


def test_folded_conv_bias_is_exact_in_train_and_eval_mode():
    """BN(conv(x) + b) with running mean μ equals BN(conv(x)) with running mean μ - b."""
    torch.manual_seed(0)
    biased = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1, bias=True), nn.BatchNorm2d(5)).double()
    folded = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1, bias=False), nn.BatchNorm2d(5)).double()
    with torch.no_grad():
        biased[1].running_mean.normal_()
        biased[1].running_var.uniform_(0.5, 2)
        biased[0].bias.normal_()
    folded[0].weight.data.copy_(biased[0].weight)
    folded[1].load_state_dict(biased[1].state_dict())
    folded[1].running_mean.sub_(biased[0].bias.detach())
    x = torch.randn(3, 4, 7, 6, dtype=torch.float64)
    for net in (biased, folded):
        net.eval()
    torch.testing.assert_close(folded(x), biased(x), rtol=0, atol=1e-12)
    for net in (biased, folded):
        net.train()
    out_biased, out_folded = biased(x), folded(x)  # batch statistics; running means updated
    torch.testing.assert_close(out_folded, out_biased, rtol=0, atol=1e-12)
    torch.testing.assert_close(folded[1].running_mean, biased[1].running_mean - biased[0].bias, rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(out_biased.square().sum(), biased[0].bias)
    assert grad.abs().max() < 1e-9  # the bias is no degree of freedom in training either


# ---------------------------------------------------------------------------------------------
# The whole model
# ---------------------------------------------------------------------------------------------


def test_tiny_mirror_equals_released_computation(torch_single_thread):
    diffs = _compare(TINY, batch=2)
    assert diffs["theta"] < 1e-12, diffs
    assert diffs["coarse_supports"] < 1e-10, diffs
    assert diffs["backbone_heatmaps"] < 1e-10, diffs
    assert diffs["heatmaps"] < 1e-6, diffs


def test_mirror_with_normalized_units_equals_released_computation_after_conversion(torch_single_thread):
    diffs = _compare(dataclasses.replace(TINY, gtm=dataclasses.replace(TINY.gtm, translation_units="normalized")), 2)
    assert diffs["coarse_supports"] < 1e-10 and diffs["heatmaps"] < 1e-6, diffs


def test_relus_between_the_linear_layers_change_the_released_output(torch_single_thread):
    """The paper variant's ReLUs are no detail: with released weights the warp moves."""
    released, ref, key, supports = _released_run(TINY, batch=2)
    relu = dataclasses.replace(TINY, gtm=dataclasses.replace(TINY.gtm, linear_activation="relu"))
    with pytest.raises(ValueError, match="linear_activation='relu'"):
        convert_release(released, relu)
    with_relu = FamiPose(relu).double()
    with_relu.load_state_dict(_mirror(TINY, released).state_dict())
    with torch.no_grad():
        assert (with_relu.eval()(key, supports).coarse_supports - ref["warped"]).abs().max() > 1e-3


@pytest.mark.slow
def test_w48_mirror_equals_released_computation_at_384x288():
    """Issue 14's acceptance: W48, 384x288, 4 supports, float64, eval mode, converted weights."""
    diffs = _compare(RELEASED_MODEL, batch=1)
    assert diffs["theta"] < 1e-12, diffs
    assert diffs["heatmaps"] < 1e-6, diffs
    assert diffs["backbone_heatmaps"] < 1e-10, diffs


@pytest.mark.parametrize(
    ("name", "overrides"),
    [("famipose_official_tiny", []), ("single_frame_tiny", []), ("single_frame_tiny", ["model.head.kind=simcc"])],
)
def test_backbone_heatmaps_are_hrnets_own_in_train_and_eval(name, overrides):
    """The three code paths: after alignment, single-frame without and with a head of its own."""
    model = FamiPose(load_config(CONFIGS / f"{name}.yaml", overrides).model)
    key, supports = torch.randn(1, 3, 128, 96), torch.randn(1, 4, 3, 128, 96)
    for train in (True, False):
        out = model.train(train)(key, supports)
        layer = model.backbone.final_layer
        expected = nn.functional.conv2d(out.key_feature, layer.weight, layer.bias)  # (B, K, h, w)
        torch.testing.assert_close(out.backbone_heatmaps, expected)


# ---------------------------------------------------------------------------------------------
# Converter
# ---------------------------------------------------------------------------------------------


def test_converter_maps_every_key_and_folds_the_conv_biases():
    released = _released(TINY).state_dict()
    state = convert_release(released, TINY)
    n = TINY.gtm.num_downsamples
    biases = {f"feat_global_offset_layers.{i}.conv.bias" for i in range(1, n + 1)}
    assert biases <= released.keys()
    assert len(state) == len(released) - len(biases)
    assert state.keys() == FamiPose(TINY).state_dict().keys()
    renamed = {
        "hrnet.final_layer.weight": "backbone.final_layer.weight",
        "feat_global_offset_layers.0.layers.0.downsample.1.running_var": "gtm.encoder.0.0.downsample.1.running_var",
        f"feat_global_offset_layers.{n}.conv.weight": f"gtm.encoder.{n}.0.weight",
        f"feat_global_offset_layers.{n + 2}.weight": f"gtm.encoder.{n + 3}.weight",
        f"feat_global_offset_layers.{n + 3}.bias": f"gtm.encoder.{n + 5}.bias",
        f"feat_global_offset_layers.{n + 4}.weight": "gtm.to_params.weight",
        "combined_feat_layers.layers.0.conv2.weight": "calibration.combine.0.conv2.weight",
        "dcn_offset_3.conv.bias": "calibration.params.2.offset.bias",
        "dcn_mask_1.conv.weight": "calibration.params.0.mask.weight",
        "dcn_4.weight": "calibration.deforms.3.weight",
        "sup_agg_block.layers.1.bn2.running_mean": "merge_supports.1.bn2.running_mean",
        "init_feature_agg_block.layers.2.conv1.weight": "fuse.2.conv1.weight",
        "agg_final_layer.bias": "head.conv.bias",
    }
    for source, target in renamed.items():
        assert torch.equal(state[target], released[source]), source
    unchanged = {k: v for k, v in released.items() if k not in biases}
    assert sorted(v.shape for v in unchanged.values()) == sorted(v.shape for v in state.values())
    for i in range(1, n + 1):
        mean = released[f"feat_global_offset_layers.{i}.bn.running_mean"]
        bias = released[f"feat_global_offset_layers.{i}.conv.bias"]
        assert torch.equal(state[f"gtm.encoder.{i}.1.running_mean"], mean - bias)
        assert not torch.equal(mean - bias, mean)


def test_converter_scales_the_translation_into_normalized_units():
    released = _released(TINY).state_dict()
    normalized = dataclasses.replace(TINY, gtm=dataclasses.replace(TINY.gtm, translation_units="normalized"))
    state = convert_release(released, normalized)
    last = f"feat_global_offset_layers.{TINY.gtm.num_downsamples + 4}"
    w, h = TINY.heatmap_size
    scale = torch.tensor([-2 / w, -2 / h], dtype=torch.float64)
    torch.testing.assert_close(state["gtm.to_params.bias"], released[f"{last}.bias"] * scale, rtol=0, atol=0)
    torch.testing.assert_close(state["gtm.to_params.weight"], released[f"{last}.weight"] * scale[:, None])


def test_converter_refuses_foreign_and_incomplete_state_dicts(tmp_path):
    released = dict(_released(TINY).state_dict())
    path = tmp_path / "foreign.pth"
    torch.save({"state_dict": {**released, "rough_pose_net.weight": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointError, match=r"foreign\.pth.*unmapped keys \(1\): rough_pose_net\.weight"):
        convert_release(path, TINY)
    no_bias = {k: v for k, v in released.items() if k != "feat_global_offset_layers.2.conv.bias"}
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): feat_global_offset_layers\.2\.conv\.bias"):
        convert_release(no_bias, TINY)
    del released["dcn_2.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): calibration\.deforms\.1\.weight"):
        convert_release(released, TINY)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        convert_release(_released(TINY).state_dict(), dataclasses.replace(TINY, num_joints=15))


def test_cli_convert_writes_loadable_weights_and_names_bad_keys(tmp_path):
    released = _released(TINY).state_dict()
    source, out, config = tmp_path / "Alignment_V15.pth", tmp_path / "official.pth", tmp_path / "tiny.yaml"
    # The released trainer's save_checkpoint layout (DataParallel prefixes as the module kept them).
    state_dict = {"module." + k: v for k, v in released.items()}
    torch.save({"begin_epoch": 20, "state_dict": state_dict, "optimizer": [{"state": {}, "param_groups": []}]}, source)
    config.write_text(yaml.safe_dump(to_dict(Config(model=TINY))))
    runner = CliRunner()
    result = runner.invoke(app, ["convert", "--from", "fami-release", str(source), str(out), "--config", str(config)])
    assert result.exit_code == 0, result.output
    written = torch.load(out, weights_only=True)
    FamiPose(TINY).load_state_dict(written)  # strict
    expected = convert_release(released, TINY)
    assert all(torch.equal(written[k], v) for k, v in expected.items())
    torch.save({**released, "extra.weight": torch.zeros(1)}, source)
    result = runner.invoke(app, ["convert", "--from", "fami-release", str(source), str(out), "--config", str(config)])
    assert result.exit_code == 1 and "extra.weight" in result.output and "Alignment_V15.pth" in result.output


# ---------------------------------------------------------------------------------------------
# Configuration, initialisation, frozen backbone
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "famipose_official_w48_384x288",
        "posetrack17_famipose_official_w48",
        "posetrack18_famipose_official_w48",
        "posetrack21_famipose_official_w48",
    ],
)
def test_official_w48_configs_are_the_released_model(name):
    assert load_config(CONFIGS / f"{name}.yaml").model == RELEASED_MODEL


def test_pixel_units_need_a_translation_gtm():
    with pytest.raises(ValueError, match="translation_units='pixels' needs mode='translation'"):
        GTMConfig(mode="affine", translation_units="pixels")


def test_official_init_is_the_released_init():
    torch.manual_seed(0)
    model = FamiPose(load_config(CONFIGS / "famipose_official_w48_384x288.yaml").model)
    # DCN: torchvision's default weight init (kaiming-uniform, a = sqrt(5): U(±1/sqrt(fan_in))), bias 0.
    bound = 1 / math.sqrt(48 * 9)
    reference = torchvision.ops.DeformConv2d(48, 48, 3, padding=3, dilation=3).weight
    for deform in model.calibration.deforms:
        assert deform.weight.abs().max() <= bound
        assert 0.95 < deform.weight.std().item() / (bound / math.sqrt(3)) < 1.05  # ≈ 0.028, not 0.001
        assert 0.9 < deform.weight.std().item() / reference.std().item() < 1.1
        assert torch.all(deform.bias == 0)
    convs = [m for m in model.gtm.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 + 5  # residual block (2 + shortcut) and the five stride-2 convs
    for conv in convs:
        assert 0.9 < conv.weight.std().item() / 0.001 < 1.1
    for norm in (m for m in model.gtm.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    linears = [m for m in model.gtm.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    for linear in linears:  # PyTorch's default weights, zero biases
        fan_bound = 1 / math.sqrt(linear.in_features)
        assert linear.weight.abs().max() <= fan_bound
        assert linear.weight.std().item() > 0.8 * fan_bound / math.sqrt(3)
        assert torch.all(linear.bias == 0)
    assert [type(m) for m in model.gtm.encoder[-4:]] == [nn.Linear, nn.Identity, nn.Linear, nn.Identity]


def test_frozen_backbone_with_train_bn_follows_batch_statistics_without_gradients():
    cfg = load_config(CONFIGS / "famipose_official_tiny.yaml", ["model.backbone.frozen=true"]).model
    assert cfg.backbone.frozen_bn == "train"
    torch.manual_seed(0)
    model = FamiPose(cfg).train()
    assert model.backbone.training and model.backbone.bn1.training
    before = {k: v.clone() for k, v in model.backbone.state_dict().items() if "running" in k}
    out = model(torch.randn(1, 3, 128, 96), torch.randn(1, 4, 3, 128, 96))
    out.pose.heatmaps.square().sum().backward()
    after = model.backbone.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(after[k], v)]
    assert len(changed) == len(before)  # every BN's running statistics drift, as in the release
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.gtm.parameters())
    eval_cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, frozen_bn="eval"))
    assert not FamiPose(eval_cfg).train().backbone.training
