"""FamiPose network contract on the tiny CPU configs."""

import copy
from pathlib import Path

import pytest
import torch

from famipose.config import load_config
from famipose.models.aligners import PaperAligner, ReleasedAligner, aligner_for
from famipose.models.famipose import FamiPose, FamiPoseOutput
from famipose.models.heads import SimCCHead

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = ["single_frame_tiny", "famipose_tiny", "famipose_official_tiny", "famipose_simcc_tiny"]


def _inputs(batch: int = 2, supports: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, 128, 96, generator=gen), torch.randn(batch, supports, 3, 128, 96, generator=gen)


@pytest.mark.parametrize("name", TINY)
def test_output_contract_same_in_train_and_eval(name):
    torch.manual_seed(0)
    cfg = load_config(CONFIGS / f"{name}.yaml").model
    model = FamiPose(cfg)
    key, supports = _inputs()
    outputs = []
    for train in (True, False):
        model.train(train)
        with torch.set_grad_enabled(train):
            outputs.append(model(key, supports))
    for out in outputs:
        assert isinstance(out, FamiPoseOutput)
        assert out.key_feature.shape == (2, 16, 32, 24)
        assert out.enhanced_feature.shape == (2, 16, 32, 24)
        if cfg.head.kind == "simcc":
            assert out.pose.simcc_x.shape == (2, 17, 192) and out.pose.simcc_y.shape == (2, 17, 256)
        else:
            assert out.pose.heatmaps.shape == (2, 17, 32, 24)
        if cfg.variant == "single_frame":
            assert out.support_features is None
        else:
            assert out.support_features.shape == (2, 4, 16, 32, 24)
            assert out.warps.shape == (2, 4, 2, 3)
    train_fields = {k for k, v in vars(outputs[0]).items() if v is not None}
    assert train_fields == {k for k, v in vars(outputs[1]).items() if v is not None}


def test_backbone_runs_once_over_key_and_supports():
    model = FamiPose(load_config(CONFIGS / "famipose_tiny.yaml").model)
    batches = []
    model.backbone.conv1.register_forward_hook(lambda _m, inp, _o: batches.append(inp[0].shape[0]))
    model(*_inputs())
    assert batches == [2 + 2 * 4]


def test_single_frame_equals_hrnet():
    model = FamiPose(load_config(CONFIGS / "single_frame_tiny.yaml").model).eval()
    key, _ = _inputs()
    torch.testing.assert_close(model(key).pose.heatmaps, model.backbone(key))


def test_famipose_starts_from_key_feature_path():
    """At initialisation the GTM and LCM are identities: Z̃_{t+δ} equals Z_{t+δ}."""
    model = FamiPose(load_config(CONFIGS / "famipose_tiny.yaml").model).eval()
    out = model(*_inputs())
    torch.testing.assert_close(out.aligned_supports, out.support_features, atol=1e-5, rtol=0)


def test_famipose_with_adopted_head_starts_as_the_single_frame_model():
    """Zero-initialised residual fusion + head copied from final_layer: stage 2 starts at stage 1."""
    torch.manual_seed(0)
    single = FamiPose(load_config(CONFIGS / "single_frame_tiny.yaml").model).eval()
    for p in single.parameters():  # a "trained" stage-1 model
        p.data.add_(0.05 * torch.randn_like(p))
    fami = FamiPose(load_config(CONFIGS / "famipose_tiny.yaml").model).eval()
    fami.backbone.load_state_dict(single.backbone.state_dict())
    key, supports = _inputs()
    assert not torch.allclose(fami(key, supports).pose.heatmaps, single(key).pose.heatmaps)
    assert fami.adopt_backbone_head()
    torch.testing.assert_close(fami(key, supports).pose.heatmaps, single(key).pose.heatmaps)
    official = FamiPose(load_config(CONFIGS / "famipose_official_tiny.yaml").model)
    assert not official.adopt_backbone_head()  # its 3x3 head has another shape


def test_frozen_backbone_gets_no_gradient_and_keeps_bn_stats():
    cfg = load_config(CONFIGS / "famipose_tiny.yaml", ["model.backbone.frozen=true"]).model
    model = FamiPose(cfg).train()
    assert not model.backbone.training
    stats = model.backbone.bn1.running_mean.clone()
    out = model(*_inputs())
    out.pose.heatmaps.sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.gtm.to_params.weight.grad is not None
    torch.testing.assert_close(model.backbone.bn1.running_mean, stats)


def test_bad_supports_and_groups_rejected():
    cfg = load_config(CONFIGS / "famipose_tiny.yaml").model
    model = FamiPose(cfg)
    key, supports = _inputs()
    with pytest.raises(ValueError, match=r"\(B, 4, 3, H, W\)"):
        model(key, supports[:, :3])
    with pytest.raises(ValueError, match="supports"):
        model(key)
    bad = load_config(CONFIGS / "famipose_tiny.yaml", ["model.lcm.offset_groups=3"]).model
    with pytest.raises(ValueError, match="offset_groups"):
        FamiPose(bad)


def test_simcc_head_starts_with_mmposes_init():
    torch.manual_seed(0)
    head = SimCCHead(in_channels=48, num_joints=17, feature_size=(48, 64), input_size=(192, 256), split_ratio=2.0)
    for layer, std in ((head.joint_maps, 0.001), (head.to_x, 0.01), (head.to_y, 0.01)):
        assert layer.weight.std().item() == pytest.approx(std, rel=0.03)  # PyTorch's default: U(±1/√fan_in)
        assert torch.count_nonzero(layer.bias) == 0


@pytest.mark.parametrize("name", TINY)
def test_every_output_field_has_one_shape_in_every_variant(name):
    cfg = load_config(CONFIGS / f"{name}.yaml").model
    out = FamiPose(cfg).eval()(*_inputs())
    b, s, c, h, w = 2, 4, 16, 32, 24
    shapes = {
        "key_feature": (b, c, h, w),
        "enhanced_feature": (b, c, h, w),
        "backbone_heatmaps": (b, 17, h, w),
        "support_features": (b, s, c, h, w),
        "coarse_supports": (b, s, c, h, w),
        "aligned_supports": (b, s, c, h, w),
        "merged_supports": (b, c, h, w),
        "support_aggregate": (b, c, h, w),
        "warps": (b, s, 2, 3),
    }
    absent = {
        "single_frame": set(shapes) - {"key_feature", "enhanced_feature", "backbone_heatmaps"},
        "famipose": set(),
        "famipose_official": {"aligned_supports"},  # it calibrates the merged supports, not each one
    }[cfg.variant]
    assert {f: getattr(out, f) is None for f in shapes} == {f: f in absent for f in shapes}
    assert {f: tuple(getattr(out, f).shape) for f in shapes if f not in absent} == {
        f: shape for f, shape in shapes.items() if f not in absent
    }
    if cfg.variant == "famipose":
        assert out.support_aggregate is out.merged_supports


@pytest.mark.parametrize("name", TINY)
def test_forward_is_features_then_alignment_then_head(name):
    model = FamiPose(load_config(CONFIGS / f"{name}.yaml").model).eval()
    key, supports = _inputs()
    with torch.no_grad():
        z_key, z_sup = model.forward_features(key, supports)
        assert z_key.shape == (2, 16, 32, 24)
        assert z_sup is None if model.aligner is None else z_sup.shape == (2, 4, 16, 32, 24)
        staged = model.forward_from_features(z_key, z_sup)
        direct = model(key, supports)
        head = model.forward_head(staged.enhanced_feature)
    expected = direct.pose.flat_distributions()
    for logits in (staged.pose, head):
        assert all(torch.equal(a, b) for a, b in zip(logits.flat_distributions(), expected, strict=True))


@pytest.mark.parametrize(
    ("name", "children"),
    [
        ("single_frame_tiny", ["backbone"]),
        ("famipose_tiny", ["backbone", "head", "gtm", "merge_supports", "fuse", "lcm", "fuse_residual"]),
        ("famipose_official_tiny", ["backbone", "head", "gtm", "merge_supports", "fuse", "calibration"]),
    ],
)
def test_aligner_layers_keep_the_checkpoint_key_layout(name, children):
    """The aligner's layers sit at the top of the state dict (checkpoints, the release converter)."""
    model = FamiPose(load_config(CONFIGS / f"{name}.yaml").model)
    assert list(dict.fromkeys(key.split(".")[0] for key in model.state_dict())) == children
    for network in (model, copy.deepcopy(model)):  # the ONNX export works on a deep copy
        if network.aligner is not None:
            assert all(getattr(network, n) is getattr(network.aligner, n) for n in children[2:])
            assert not any(key.startswith("aligner.") for key, _ in network.named_modules())
    expected = {"single_frame": type(None), "famipose": PaperAligner, "famipose_official": ReleasedAligner}
    assert isinstance(model.aligner, expected[model.config.variant])


def test_aligner_for_names_the_valid_variants():
    assert aligner_for("single_frame") is None
    with pytest.raises(ValueError, match="famipose_official"):
        aligner_for("famipose_v2")
