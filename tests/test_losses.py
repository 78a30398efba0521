"""Pose losses and MI terms against the paper's formula, the released code's formula, and values by hand."""

import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from famipose.config import load_config
from famipose.losses import (
    MI_TERMS,
    PoseTargets,
    _official_kl,
    compute_loss,
    feature_divergence,
    gradient_ratio,
    heatmap_mse,
    mi_coefficients,
    mi_divergences_vsd,
    mi_objective,
    pose_loss,
    simcc_kl,
    stop_gradient_at,
)
from famipose.models.famipose import FamiPose
from famipose.models.heads import PoseLogits

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_heatmap_mse_by_hand():
    pred = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[[0.0, 0.0]], [[3.0, 3.0]]]])
    # joint 0: mean sq 0.5, weight 1; joint 1 weight 0 -> 0.5 * mean([0.5, 0]) = 0.125
    assert heatmap_mse(pred, target, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.125)
    with pytest.raises(ValueError, match="differ"):
        heatmap_mse(pred, target[..., :1], torch.ones(1, 2))


def test_simcc_kl_equals_mmpose_kldiscretloss_formula():
    """mmpose: per (sample, joint, axis) kl_div(log_softmax(beta * logits), label).mean(bins), times
    the joint weight; x + y; averaged here over samples and joints."""
    gen = torch.Generator().manual_seed(0)
    weights = torch.tensor([[1.0, 0.0, 0.5], [1.0, 1.0, 1.0]])  # (B=2, K=3)
    labels = [torch.rand(2, 3, n, generator=gen) for n in (7, 5)]
    logits = [torch.randn(2, 3, n, generator=gen) for n in (7, 5)]
    beta = 2.0
    expected = 0.0
    for b in range(2):
        for k in range(3):
            for label, logit in zip(labels, logits, strict=True):
                dist = label[b, k] / label[b, k].sum()
                kl = F.kl_div(F.log_softmax(beta * logit[b, k], -1), dist, reduction="none").mean()
                expected += float(weights[b, k] * kl)
    expected /= 2 * 3
    targets = PoseTargets(weights=weights, simcc_x=labels[0], simcc_y=labels[1])
    got = simcc_kl(PoseLogits(simcc_x=logits[0], simcc_y=logits[1]), targets, beta)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_mi_coefficients_are_the_expansion_of_the_papers_objective():
    """L_MI = -λ I(y;Z̃|Z) + I(y;Zs|Z̃) + I(y;Z|Z̃) with I(y;a|b) = I(y;a) - I(a;b) (the VSD drop)."""
    rng = random.Random(0)
    for lam in (0.1, 0.3):
        info = {name: rng.uniform(0, 5) for name in MI_TERMS}  # any values of the five quantities
        conditional_enhanced = info["task_enhanced"] - info["key_enhanced"]  # I(y; Z̃_t | Z_t)
        conditional_support = info["task_support"] - info["support_enhanced"]  # I(y; Z_{t+δ} | Z̃_t)
        conditional_key = info["task_key"] - info["key_enhanced"]  # I(y; Z_t | Z̃_t)
        paper = -lam * conditional_enhanced + conditional_support + conditional_key
        coefficients = mi_coefficients(lam)
        assert sum(coefficients[n] * info[n] for n in MI_TERMS) == pytest.approx(paper, rel=1e-12)
        assert coefficients["key_enhanced"] == pytest.approx(-(1 - lam))  # net "keep", α(1 - λ) with α


def test_official_objective_is_the_released_arithmetic():
    """Released trainer: α(-β·mi1 + β·mi2 + mi3 - mi4 + mi5 - mi6), mi6 == mi2, α = 0.5, β = 0.1."""
    cfg = load_config(CONFIGS / "famipose_official_tiny.yaml")
    mi1, mi2, mi3, mi4, mi5 = 1.0, 2.0, 3.0, 4.0, 5.0
    values = dict(zip(MI_TERMS, map(torch.tensor, (mi1, mi2, mi3, mi4, mi5)), strict=True))
    released = 0.5 * (-0.1 * mi1 + 0.1 * mi2 + mi3 - mi4 + mi5 - mi2)
    assert cfg.loss.mi_weight * mi_objective(values, cfg.loss).item() == pytest.approx(released)


def test_official_pose_loss_is_the_released_mse_without_the_half():
    cfg = load_config(CONFIGS / "famipose_official_tiny.yaml")
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 4, 5, generator=gen), torch.rand(2, 3, 4, 5, generator=gen)
    weights = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    released = ((pred - target) * weights[..., None, None]).pow(2).mean()  # JointMSELoss, no 0.5
    ours = cfg.loss.pose_weight * pose_loss(PoseLogits(heatmaps=pred), PoseTargets(weights, target), cfg.loss)
    assert ours.item() == pytest.approx(released.item(), rel=1e-6)


def test_official_kl_reproduces_released_arithmetic():
    # kl_div(input=probs_in, target=probs_t, 'mean') = mean(t * (log t - probs_in)), probabilities as input.
    inp, tgt = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, math.log(3) * 0.05]])
    pt = torch.tensor([0.25, 0.75])
    expected = float((pt * (pt.log() - torch.tensor([0.5, 0.5]))).mean())
    assert _official_kl(inp, tgt, 0.05).item() == pytest.approx(expected, rel=1e-5)
    # The input side is detached as released: no gradient reaches it.
    inp.requires_grad_(True)
    tgt.requires_grad_(True)
    _official_kl(inp, tgt, 0.05).backward()
    assert inp.grad is None and tgt.grad is not None


def test_official_kl_gradient_finite_when_probabilities_underflow():
    # At T = 0.05 a logit gap of 100 underflows softmax to exactly 0 in float32.
    target = torch.tensor([[0.0, 100.0, 5.0]], requires_grad=True)
    value = _official_kl(torch.zeros(1, 3), target, 0.05)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(target.grad).all()


def test_feature_divergence_by_hand_warp_invariant_and_teacher_detached():
    reference = torch.tensor([[[[0.0, 0.0]], [[1.0, 1.0]]]])  # pooled (0, 1)
    feature = torch.tensor([[[[2.0, 0.0]], [[0.0, 0.0]]]], requires_grad=True)  # pooled (1, 0)
    p = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    q = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    expected = float((p * (p / q).log()).sum()) / 2  # mean over the C = 2 channels
    teacher = reference.clone().requires_grad_(True)
    value = feature_divergence(teacher, feature, 1.0, "channel")
    assert value.item() == pytest.approx(expected, rel=1e-6)
    value.backward()
    assert teacher.grad is None and feature.grad is not None
    rolled = torch.roll(reference, 1, dims=3)
    assert feature_divergence(reference, rolled, 1.0, "channel").item() == pytest.approx(0, abs=1e-7)


def test_centred_channel_divergence_by_hand_and_blind_to_a_shared_offset():
    # Two samples, C = 2, one position each: the pooled rows are the values themselves.
    teacher = torch.tensor([[1.0, 3.0], [2.0, 0.0]]).view(2, 2, 1, 1)
    student = torch.tensor([[0.0, 1.0], [4.0, 2.0]]).view(2, 2, 1, 1).requires_grad_(True)
    # Centred over the two samples: teacher rows (-0.5, 1.5), (0.5, -1.5); student (-2, -0.5), (2, 0.5).
    expected = 0.0
    for t_row, s_row in (((-0.5, 1.5), (-2.0, -0.5)), ((0.5, -1.5), (2.0, 0.5))):
        p = [math.exp(v) / sum(math.exp(u) for u in t_row) for v in t_row]
        q = [math.exp(v) / sum(math.exp(u) for u in s_row) for v in s_row]
        expected += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True)) / 2  # mean over C
    value = feature_divergence(teacher, student, 1.0)
    assert value.item() == pytest.approx(expected / 2, rel=1e-5)  # mean over the two samples (float32)
    # x -> x + b with b shared by all samples is invertible: neither side's offset changes the value,
    # and the student's gradient has no component along such an offset (zero sum over samples).
    offset = torch.tensor([5.0, -3.0]).view(1, 2, 1, 1)
    assert feature_divergence(teacher + offset, student.detach() - offset, 1.0).item() == pytest.approx(
        expected / 2, rel=1e-5
    )
    assert feature_divergence(teacher, student.detach() + offset, 1.0, "channel").item() != pytest.approx(
        feature_divergence(teacher, student.detach(), 1.0, "channel").item(), rel=1e-3
    )
    value.backward()
    torch.testing.assert_close(student.grad.sum(dim=(0, 2, 3)), torch.zeros(2), atol=1e-7, rtol=0)
    # A batch of one sample has nothing to compare against the shared mean: the term vanishes.
    assert feature_divergence(teacher[:1], student[:1], 1.0).item() == pytest.approx(0, abs=1e-7)


def test_spatial_feature_divergence_by_hand_and_blind_to_channel_offsets():
    teacher = torch.tensor([[[[0.0, 1.0]], [[2.0, 2.0]]]])  # (N=1, C=2, h=1, w=2)
    student = torch.tensor([[[[1.0, 0.0]], [[0.0, 3.0]]]], requires_grad=True)
    expected = 0.0
    for c in range(2):  # per channel, a distribution over the two positions; mean over positions
        p, q = torch.softmax(teacher[0, c, 0], 0), torch.softmax(student[0, c, 0].detach(), 0)
        expected += float((p * (p / q).log()).sum()) / 2
    value = feature_divergence(teacher, student, 1.0, "spatial")
    assert value.item() == pytest.approx(expected / 2, rel=1e-6)  # mean over the C = 2 channels
    # A per-channel offset (a bias, a BatchNorm shift) changes no spatial distribution, so it gets
    # neither a different value nor a gradient: the channel sum of the gradient is zero.
    shifted = student.detach() + torch.tensor([5.0, -3.0]).view(1, 2, 1, 1)
    assert feature_divergence(teacher, shifted, 1.0, "spatial").item() == pytest.approx(expected / 2, rel=1e-5)
    value.backward()
    torch.testing.assert_close(student.grad.sum(dim=(2, 3)), torch.zeros(1, 2), atol=1e-7, rtol=0)


def test_centred_channel_divergence_keeps_its_value_in_half_precision():
    # Under AMP the features arrive in float16; the centring subtracts means that agree to about
    # three digits, so it must not be computed in float16 (that was 37 % off here).
    gen = torch.Generator().manual_seed(0)
    teacher = torch.rand(8, 32, 24, 32, generator=gen) + 3
    student = teacher + 0.05 * torch.randn(8, 32, 24, 32, generator=gen)
    half = feature_divergence(teacher.half(), student.half(), 1.0)
    exact = feature_divergence(teacher.half().double(), student.half().double(), 1.0)
    assert half.item() == pytest.approx(exact.item(), rel=0.05)


@pytest.mark.parametrize("axis", ["channel_centred", "channel"])
def test_only_the_uncentred_feature_terms_act_on_the_fusion_bias(axis: str):
    # The fusion's last bias shifts Z̃_t by the same vector in every sample: an invertible map that
    # loses no information. The centred estimator gives it no gradient; the uncentred one does.
    cfg, model, out = _model_and_output("famipose_tiny", f"loss.mi_feature_axis={axis}", batch=3)
    terms = mi_divergences_vsd(out, _targets(3, cfg.model), model.probe, cfg.loss)
    feature_terms = terms["key_enhanced"] + terms["support_enhanced"]
    bias_grad, weight_grad = torch.autograd.grad(
        feature_terms, [model.fuse_residual.bias, model.fuse_residual.weight]
    )
    assert weight_grad.abs().max().item() > 1e-7  # the terms do reach the fusion
    if axis == "channel_centred":
        assert bias_grad.abs().max().item() < 1e-3 * weight_grad.abs().max().item()  # float32 round-off
    else:
        assert bias_grad.abs().max().item() > 0.1 * weight_grad.abs().max().item()


def test_spatial_vsd_pairs_each_gtm_warped_support_with_the_enhanced_feature():
    cfg, model, _ = _model_and_output("famipose_tiny", "loss.mi_feature_axis=spatial")
    with torch.no_grad():  # leave the start, where Z̃_t = Z_t and the warp is the identity
        model.fuse_residual.weight.normal_(std=0.1)
        model.gtm.to_params.bias.add_(torch.tensor([0.1, 0.0, 0.3, 0.0, 0.1, -0.2]))
    gen = torch.Generator().manual_seed(0)
    out = model(torch.randn(2, 3, 128, 96, generator=gen), torch.randn(2, 4, 3, 128, 96, generator=gen))
    terms = mi_divergences_vsd(out, _targets(2, cfg.model), model.probe, cfg.loss)
    assert terms["key_enhanced"].item() > 1e-6
    assert not torch.allclose(out.coarse_supports, out.support_features, atol=1e-3)
    enhanced = out.enhanced_feature

    def spatial_kl(teacher, student):  # kl_div of per-channel softmaxes over positions, mean over all
        log_student = F.log_softmax(student.flatten(2), -1)
        return F.kl_div(log_student, F.softmax(teacher.flatten(2), -1), reduction="none").mean()

    assert terms["key_enhanced"].item() == pytest.approx(spatial_kl(out.key_feature, enhanced).item(), rel=1e-5)
    pairs = [spatial_kl(out.coarse_supports[:, s], enhanced) for s in range(cfg.model.num_supports)]
    assert terms["support_enhanced"].item() == pytest.approx(torch.stack(pairs).mean().item(), rel=1e-5)


def _targets(batch: int, cfg) -> PoseTargets:
    gen = torch.Generator().manual_seed(1)
    w, h = cfg.heatmap_size
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centres = torch.rand(batch, cfg.num_joints, 2, generator=gen) * torch.tensor([w - 1.0, h - 1.0])
    dist = (xs - centres[..., 0, None, None]) ** 2 + (ys - centres[..., 1, None, None]) ** 2
    return PoseTargets(weights=torch.ones(batch, cfg.num_joints), heatmaps=torch.exp(-dist / (2 * 2.0**2)))


def _model_and_output(name: str, *overrides: str, batch: int = 2):
    torch.manual_seed(0)
    cfg = load_config(CONFIGS / f"{name}.yaml", overrides)
    model = FamiPose(cfg.model).train()
    gen = torch.Generator().manual_seed(0)
    width, height = cfg.model.input_size
    key = torch.randn(batch, 3, height, width, generator=gen)
    supports = torch.randn(batch, cfg.model.num_supports, 3, height, width, generator=gen)
    return cfg, model, model(key, supports)


def test_vsd_terms_against_independent_formulas():
    torch.manual_seed(3)
    cfg = load_config(CONFIGS / "famipose_tiny.yaml")
    model = FamiPose(cfg.model).double()  # float64: the centred feature divergences are small differences
    with torch.no_grad():  # leave the zero-initialised start, where Z̃_t = Z_t
        model.fuse_residual.weight.normal_(std=0.1)
    gen = torch.Generator().manual_seed(0)
    key = torch.randn(2, 3, 128, 96, generator=gen, dtype=torch.float64)
    supports = torch.randn(2, 4, 3, 128, 96, generator=gen, dtype=torch.float64)
    out = model(key, supports)
    targets = _targets(2, cfg.model)
    targets = PoseTargets(weights=targets.weights.double(), heatmaps=targets.heatmaps.double())
    terms = mi_divergences_vsd(out, targets, model.probe, cfg.loss)
    # The head's Gaussian predictive distribution: the task divergence of Z̃_t is the pose loss itself.
    assert terms["task_enhanced"].item() == pytest.approx(pose_loss(out.pose, targets, cfg.loss).item(), rel=1e-6)

    def channel_kl(teacher, student, teacher_mean):  # kl_div of centred pooled channel softmaxes, mean over all
        pooled = student.mean(dim=(2, 3))
        log_student = F.log_softmax(pooled - pooled.mean(0), -1)
        target = F.softmax(teacher.mean(dim=(2, 3)) - teacher_mean, -1)
        return F.kl_div(log_student, target, reduction="none").mean()

    enhanced = out.enhanced_feature
    key_mean = out.key_feature.mean(dim=(2, 3)).mean(0)
    assert terms["key_enhanced"].item() > 1e-6
    expected_key = channel_kl(out.key_feature, enhanced, key_mean)
    assert terms["key_enhanced"].item() == pytest.approx(expected_key.item(), rel=1e-5)
    # Pairing: each raw support Z_{t+δ} against the enhanced key feature Z̃_t, averaged over δ; the
    # supports (identically distributed for every δ) share one mean over all B·S of them.
    support_mean = out.support_features.mean(dim=(3, 4)).mean(dim=(0, 1))
    pairs = [channel_kl(out.support_features[:, s], enhanced, support_mean) for s in range(cfg.model.num_supports)]
    assert terms["support_enhanced"].item() == pytest.approx(torch.stack(pairs).mean().item(), rel=1e-5)
    heads = [model.probe(out.support_features[:, s]) for s in range(cfg.model.num_supports)]
    support_task = torch.stack([pose_loss(h, targets, cfg.loss) for h in heads]).mean()
    assert terms["task_support"].item() == pytest.approx(support_task.item(), rel=1e-5)
    key_task = pose_loss(model.probe(out.key_feature), targets, cfg.loss)
    assert terms["task_key"].item() == pytest.approx(key_task.item(), rel=1e-6)


@pytest.mark.parametrize("name", ["famipose_tiny", "famipose_official_tiny", "famipose_simcc_tiny"])
def test_compute_loss_combines_terms(name):
    cfg, model, out = _model_and_output(name)
    if cfg.model.head.kind == "simcc":
        targets = PoseTargets(torch.ones(2, 17), simcc_x=torch.rand(2, 17, 192), simcc_y=torch.rand(2, 17, 256))
    else:
        targets = _targets(2, cfg.model)
    result = compute_loss(out, targets, cfg.loss, model.probe)
    parts = {name: float(value) for name, value in result.parts.items()}
    assert set(parts) == {"pose", "mi"} | {f"mi/{n}" for n in MI_TERMS}
    coefficients = mi_coefficients(cfg.loss.mi_lambda)
    sign = -1.0 if cfg.loss.mi_form == "vsd" else 1.0  # vsd logs divergences D, Î = const - D
    expected_mi = cfg.loss.mi_weight * sum(sign * coefficients[n] * parts[f"mi/{n}"] for n in MI_TERMS)
    assert parts["mi"] == pytest.approx(expected_mi, rel=1e-5)
    assert result.total.item() == pytest.approx(parts["pose"] + parts["mi"], rel=1e-5)


@pytest.mark.parametrize("frozen", [True, False])
def test_minimised_task_terms_train_neither_head_nor_backbone(frozen: bool):
    cfg, model, out = _model_and_output("famipose_tiny", f"model.backbone.frozen={str(frozen).lower()}", batch=1)
    assert out.key_feature.requires_grad != frozen  # a trainable backbone's features do carry gradient
    terms = mi_divergences_vsd(out, _targets(1, cfg.model), model.probe, cfg.loss)
    assert not terms["task_key"].requires_grad and not terms["task_support"].requires_grad
    assert terms["task_key"].item() > 0
    assert terms["task_enhanced"].requires_grad  # the maximised task term trains the head


def test_stop_gradient_at_backbone_leaves_the_backbone_to_the_pose_loss():
    torch.manual_seed(0)
    cfg = load_config(CONFIGS / "famipose_tiny.yaml")
    model = FamiPose(cfg.model).double().train()
    gen = torch.Generator().manual_seed(0)
    shapes = [(2, 3, 128, 96), (2, 4, 3, 128, 96)]
    out = model(*(torch.randn(shape, generator=gen, dtype=torch.float64) for shape in shapes))
    targets = _targets(2, cfg.model)
    loss = compute_loss(out, PoseTargets(targets.weights.double(), targets.heatmaps.double()), cfg.loss, model.probe)
    named = dict(model.named_parameters())
    backbone = [p for n, p in named.items() if n.startswith("backbone.") and p.requires_grad]
    rest = [p for n, p in named.items() if not n.startswith("backbone.")]
    pose_only = torch.autograd.grad(loss.pose, backbone, retain_graph=True, allow_unused=True)
    total_rest = torch.autograd.grad(loss.total, rest, retain_graph=True, allow_unused=True)
    mi_backbone = torch.autograd.grad(loss.mi, backbone, retain_graph=True, allow_unused=True)
    assert max(float(g.abs().max()) for g in mi_backbone if g is not None) > 1e-6  # there is something to stop

    stop_gradient_at(loss.mi, [out.key_feature, out.support_features])
    loss.total.backward()
    for param, want in [*zip(backbone, pose_only, strict=True), *zip(rest, total_rest, strict=True)]:
        assert (param.grad is None) == (want is None)
        if want is not None:
            torch.testing.assert_close(param.grad, want, atol=1e-15, rtol=1e-9)


def test_gradient_ratio_of_the_tiny_paper_config_at_init_lies_in_the_balanced_range():
    cfg, model, out = _model_and_output("famipose_tiny", batch=4)
    loss = compute_loss(out, _targets(4, cfg.model), cfg.loss, model.probe)
    head = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    ratio = gradient_ratio(loss.mi, loss.pose, head).item()
    assert 0.05 <= ratio <= 1.0
    # The ratio is a ratio of gradient norms: doubling the MI weight doubles it.
    doubled = load_config(CONFIGS / "famipose_tiny.yaml", ["loss.mi_weight=1.0"]).loss
    loss2 = compute_loss(out, _targets(4, cfg.model), doubled, model.probe)
    assert gradient_ratio(loss2.mi, loss2.pose, head).item() == pytest.approx(2 * ratio, rel=1e-4)


def test_training_with_mi_reduces_the_pose_loss_on_a_fixed_batch():
    cfg, model, _ = _model_and_output("famipose_tiny")
    gen = torch.Generator().manual_seed(0)
    key, supports = torch.randn(2, 3, 128, 96, generator=gen), torch.randn(2, 4, 3, 128, 96, generator=gen)
    targets = _targets(2, cfg.model)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    pose = []
    for _ in range(12):
        result = compute_loss(model(key, supports), targets, cfg.loss, model.probe)
        optimiser.zero_grad()
        result.total.backward()
        optimiser.step()
        pose.append(float(result.pose.detach()))
    assert pose[-1] < 0.95 * pose[0]


def test_non_finite_loss_raises():
    cfg = load_config(CONFIGS / "single_frame_tiny.yaml")
    model = FamiPose(cfg.model)
    out = model(torch.full((1, 3, 128, 96), float("nan")))
    with pytest.raises(FloatingPointError, match="non-finite"):
        compute_loss(out, _targets(1, cfg.model), cfg.loss, model.probe)
