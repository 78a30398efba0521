"""Pose losses and MI terms against values computed by hand."""

import math
from pathlib import Path

import pytest
import torch

from famipose.config import load_config
from famipose.losses import (
    MI_DIRECTIONS,
    PoseTargets,
    _official_kl,
    compute_loss,
    feature_divergence,
    heatmap_mse,
    official_mi_objective,
    simcc_kl,
    task_divergence,
)
from famipose.models.famipose import FamiPose
from famipose.models.heads import PoseLogits

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_heatmap_mse_by_hand():
    pred = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[[0.0, 0.0]], [[3.0, 3.0]]]])
    # joint 0: mean sq 0.5, weight 1; joint 1 weight 0 -> 0.5 * mean([0.5, 0]) = 0.125
    assert heatmap_mse(pred, target, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.125)
    with pytest.raises(ValueError, match="differ"):
        heatmap_mse(pred, target[..., :1], torch.ones(1, 2))


def test_task_divergence_by_hand():
    targets = PoseTargets(weights=torch.tensor([[1.0, 0.0]]), heatmaps=torch.tensor([[[[1.0, 3.0]], [[1.0, 0.0]]]]))
    # q = normalised heatmap (2, 2) -> (0.5, 0.5); p = (0.25, 0.75)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    flat = PoseLogits(heatmaps=torch.full((1, 2, 1, 2), 2.0))
    assert task_divergence(flat, targets, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # A heatmap proportional to the target (what MSE drives it to) gives q = p: zero divergence,
    # whatever the temperature (it only applies to SimCC).
    exact = PoseLogits(heatmaps=torch.tensor([[[[0.5, 1.5]], [[5.0, -5.0]]]]))
    assert task_divergence(exact, targets, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    # Negative values are floored at 1e-4 before normalising.
    floored = PoseLogits(heatmaps=torch.tensor([[[[-1.0, 1.0]], [[1.0, 1.0]]]]))
    q0 = 1e-4 / (1 + 1e-4)
    expected_floor = 0.25 * math.log(0.25 / q0) + 0.75 * math.log(0.75 / (1 - q0))
    assert task_divergence(floored, targets, 1.0).item() == pytest.approx(expected_floor, rel=1e-5)


def test_simcc_kl_by_hand():
    targets = PoseTargets(
        weights=torch.ones(1, 1),
        simcc_x=torch.tensor([[[0.0, 2.0]]]),  # normalised to (0, 1)
        simcc_y=torch.tensor([[[1.0, 1.0]]]),  # (0.5, 0.5)
    )
    pred = PoseLogits(simcc_x=torch.zeros(1, 1, 2), simcc_y=torch.zeros(1, 1, 2))
    # x: KL((0,1) || (.5,.5)) = ln 2; y: 0 -> mean ln2 / 2
    assert simcc_kl(pred, targets).item() == pytest.approx(math.log(2) / 2, rel=1e-6)
    assert task_divergence(pred, targets, 1.0).item() == pytest.approx(math.log(2) / 2, rel=1e-6)


def test_feature_divergence_by_hand_and_warp_invariant():
    reference = torch.tensor([[[[0.0, 0.0]], [[1.0, 1.0]]]])  # pooled (0, 1)
    feature = torch.tensor([[[[2.0, 0.0]], [[0.0, 0.0]]]])  # pooled (1, 0)
    p = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    q = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    expected = float((p * (p / q).log()).sum())
    assert feature_divergence(reference, feature, 1.0).item() == pytest.approx(expected, rel=1e-6)
    shifted = torch.roll(reference, 1, dims=3)
    assert feature_divergence(reference, shifted, 1.0).item() == pytest.approx(0.0, abs=1e-7)


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


def test_official_objective_signs():
    terms = {name: torch.tensor(float(v)) for v, name in enumerate(MI_DIRECTIONS, start=1)}
    weights = dict.fromkeys(MI_DIRECTIONS, 1.0)
    # -0.1*1 + 0.1*2 + 3 - 4 + 5 - 2  (mi6 == mi2)
    assert official_mi_objective(terms, weights).item() == pytest.approx(2.1)


def _targets(batch: int, cfg) -> PoseTargets:
    gen = torch.Generator().manual_seed(1)
    w, h = cfg.heatmap_size
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centres = torch.rand(batch, cfg.num_joints, 2, generator=gen) * torch.tensor([w - 1.0, h - 1.0])
    dist = (xs - centres[..., 0, None, None]) ** 2 + (ys - centres[..., 1, None, None]) ** 2
    return PoseTargets(weights=torch.ones(batch, cfg.num_joints), heatmaps=torch.exp(-dist / (2 * 2.0**2)))


@pytest.mark.parametrize("name", ["famipose_tiny", "famipose_official_tiny"])
def test_compute_loss_combines_terms(name):
    torch.manual_seed(0)
    cfg = load_config(CONFIGS / f"{name}.yaml")
    model = FamiPose(cfg.model)
    gen = torch.Generator().manual_seed(0)
    out = model(torch.randn(2, 3, 128, 96, generator=gen), torch.randn(2, 4, 3, 128, 96, generator=gen))
    result = compute_loss(out, _targets(2, cfg.model), cfg.loss, model.probe)
    parts = result.parts
    assert set(parts) == {"pose", "mi"} | {f"mi/{n}" for n in MI_DIRECTIONS}
    if cfg.loss.mi_form == "kl":
        expected_mi = sum(getattr(cfg.loss.mi_terms, n) * MI_DIRECTIONS[n] * parts[f"mi/{n}"] for n in MI_DIRECTIONS)
        assert parts["mi"] == pytest.approx(expected_mi, rel=1e-5)
    assert result.total.item() == pytest.approx(parts["pose"] + cfg.loss.mi_weight * parts["mi"], rel=1e-5)


@pytest.mark.parametrize("frozen", [True, False])
def test_minimised_task_terms_train_neither_head_nor_backbone(frozen: bool):
    cfg = load_config(CONFIGS / "famipose_tiny.yaml", [f"model.backbone.frozen={str(frozen).lower()}"])
    model = FamiPose(cfg.model)
    out = model(torch.randn(1, 3, 128, 96), torch.randn(1, 4, 3, 128, 96))
    from famipose.losses import mi_terms_kl

    assert out.key_feature.requires_grad != frozen  # a trainable backbone's features do carry gradient
    terms = mi_terms_kl(out, _targets(1, cfg.model), model.probe, 1.0)
    # Head held constant and raw features detached: these terms carry no gradient at all ...
    assert not terms["task_key"].requires_grad and not terms["task_support"].requires_grad
    assert terms["task_key"].item() > 0
    # ... while the maximised task term trains the head.
    assert terms["task_enhanced"].requires_grad


def test_training_step_reduces_loss_on_fixed_batch():
    torch.manual_seed(0)
    cfg = load_config(CONFIGS / "famipose_tiny.yaml")
    model = FamiPose(cfg.model).train()
    gen = torch.Generator().manual_seed(0)
    key, supports = torch.randn(2, 3, 128, 96, generator=gen), torch.randn(2, 4, 3, 128, 96, generator=gen)
    targets = _targets(2, cfg.model)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        result = compute_loss(model(key, supports), targets, cfg.loss, model.probe)
        optimiser.zero_grad()
        result.total.backward()
        optimiser.step()
        reported_only = sum(  # the gradient-free minimised task terms are part of the total, not optimised
            getattr(cfg.loss.mi_terms, name) * MI_DIRECTIONS[name] * result.parts[f"mi/{name}"]
            for name in ("task_support", "task_key")
        )
        losses.append(result.total.item() - cfg.loss.mi_weight * reported_only)
    assert losses[-1] < losses[0]


def test_non_finite_loss_raises():
    cfg = load_config(CONFIGS / "single_frame_tiny.yaml")
    model = FamiPose(cfg.model)
    out = model(torch.full((1, 3, 128, 96), float("nan")))
    with pytest.raises(FloatingPointError, match="non-finite"):
        compute_loss(out, _targets(1, cfg.model), cfg.loss, model.probe)
