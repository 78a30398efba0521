"""Pose losses and the FAMI-Pose mutual-information objective.

Pose losses: keypoint-weighted heatmap MSE (HRNet's JointMSELoss) and SimCC KL divergence.

Mutual information. The paper maximises I(y; Z̃_t | Z_t) and minimises I(y; Z_{t+δ} | Z̃_t) +
I(y; Z_t | Z̃_t). The chain rule I(a; b | c) = I(a; b) - I(b; c) + I(b; c | a), with the last
terms dropped, leaves five quantities, each weighted separately (:class:`MIWeights`):

=================  ====================  ==========  ======================================
name               quantity              direction   estimator (``kl`` form)
=================  ====================  ==========  ======================================
task_enhanced      I(y; Z̃_t)             maximise    KL(p_y || q(Z̃_t))
key_enhanced       I(Z_t; Z̃_t)           maximise*   KL(sg c(Z_t) || c(Z̃_t))
task_support       I(y; Z_{t+δ})         minimise    -KL(p_y || q(Z_{t+δ})), head as constant
support_aligned    I(Z_{t+δ}; Z̃_{t+δ})   maximise    KL(sg c(Z_{t+δ}) || c(Z̃_{t+δ}))
task_key           I(y; Z_t)             minimise    -KL(p_y || q(Z_t)), head as constant
=================  ====================  ==========  ======================================

q(Z) is the head's predictive distribution (the normalised heatmap, see :func:`log_predictive`,
or a softmax over x and y bins at temperature τ for SimCC), p_y the normalised ground-truth target, c(Z) the channel
distribution of the spatially pooled feature (invariant to the warp the alignment applies), and
sg a stop-gradient. Each estimator is a KL divergence D with Î = -D + const, a variational bound:
I(y; Z) >= H(y) - CE(p_y, q(Z)). (*) I(Z_t; Z̃_t) enters the paper's objective twice with
opposite signs; the released code keeps a net "maximise", and so do we.

The minimised task terms read the backbone's raw features through the head with its weights held
constant and the features detached: they can train neither the head nor the backbone to be wrong.
In the paper's setting (frozen backbone) that is all they could act on, so they are reported and
carry no gradient; a trainable backbone (our SynthTrack recipe) keeps exactly that objective
instead of learning to hide the pose from its own features, which fights the pose loss.

The ``official`` form reproduces the released code's arithmetic instead: probabilities passed as
``kl_div`` input, the prediction detached, the key-frame's own final heatmap as the label,
temperature 0.05, and loss = α(-β·mi1 + β·mi2 + mi3 - mi4 + mi5 - mi6) with α = 0.5, β = 0.1.

Shape symbols: B batch, S supports, K joints, C channels, h/w heatmap size, N bins of a
categorical axis (h*w, Wx or Ny).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from famipose.config import LossConfig
from famipose.models.famipose import FamiPoseOutput
from famipose.models.heads import PoseLogits

# The released code's constants.
OFFICIAL_TEMPERATURE = 0.05
OFFICIAL_BETA = 0.1

Probe = Callable[..., PoseLogits]


@dataclass
class PoseTargets:
    """Training targets of one batch.

    Attributes:
        weights: (B, K) keypoint weights (0 for unlabelled joints).
        heatmaps: (B, K, h, w) Gaussian heatmaps, for the heatmap head.
        simcc_x: (B, K, Wx) horizontal labels, for the SimCC head.
        simcc_y: (B, K, Ny) vertical labels, for the SimCC head.
    """

    weights: Tensor
    heatmaps: Tensor | None = None
    simcc_x: Tensor | None = None
    simcc_y: Tensor | None = None

    def as_logits(self) -> PoseLogits:
        """The targets in the layout of the matching head output."""
        return PoseLogits(heatmaps=self.heatmaps, simcc_x=self.simcc_x, simcc_y=self.simcc_y)


@dataclass
class LossBreakdown:
    """Total loss plus detached scalar parts for logging."""

    total: Tensor
    parts: dict[str, float]


def _weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Mean of per-joint values (B, K) over joints with positive weight (0 when there are none)."""
    mask = (weights > 0).to(values.dtype)
    return (values * weights).sum() / mask.sum().clamp(min=1)


def heatmap_mse(pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """Keypoint-weighted heatmap MSE: 0.5 * mean over B, K, h, w of (w_k (pred - target))^2.

    Args:
        pred: (B, K, h, w) predicted heatmaps.
        target: (B, K, h, w) target heatmaps.
        weights: (B, K) keypoint weights.
    """
    if pred.shape != target.shape:
        raise ValueError(f"heatmap prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    squared = (pred - target).pow(2).mean(dim=(2, 3))  # (B, K)
    return 0.5 * (squared * weights.pow(2)).mean()


def _normalise(dist: Tensor) -> Tensor:
    """Scale non-negative values (..., N) to sum to 1 along the last axis (zero rows stay zero)."""
    return dist / dist.sum(-1, keepdim=True).clamp(min=1e-12)


def categorical_kl(target: Tensor, log_pred: Tensor) -> Tensor:
    """KL(target || pred) along the last axis, with 0 * log 0 = 0.

    Args:
        target: (..., N) probabilities.
        log_pred: (..., N) log-probabilities.

    Returns:
        (...) divergences.
    """
    return (torch.special.xlogy(target, target) - target * log_pred).sum(-1)


def simcc_kl(pred: PoseLogits, targets: PoseTargets, beta: float = 1.0) -> Tensor:
    """SimCC loss: keypoint-weighted KL(label || softmax(beta * logits)), averaged over x and y.

    Labels are normalised to distributions first, so peak-1 Gaussian labels work too.
    """
    per_axis = [
        categorical_kl(_normalise(label), F.log_softmax(beta * logits, -1))  # (B, K)
        for label, logits in zip(targets.as_logits().flat_distributions(), pred.flat_distributions(), strict=True)
    ]
    return _weighted_mean(torch.stack(per_axis).mean(0), targets.weights)


def pose_loss(pred: PoseLogits, targets: PoseTargets, config: LossConfig) -> Tensor:
    """The pose loss matching the head: heatmap MSE or SimCC KL."""
    if pred.is_simcc:
        return simcc_kl(pred, targets, config.simcc_beta)
    return heatmap_mse(pred.heatmaps, targets.heatmaps, targets.weights)  # type: ignore[arg-type]


# -- mutual information: our variational (kl) form --------------------------------------------


HEATMAP_FLOOR = 1e-4  # heatmap values are clamped to this before normalising them into q


def log_predictive(logits: PoseLogits, temperature: float) -> list[Tensor]:
    """log q(y | Z): the head output as categorical distributions, one per axis.

    A heatmap is normalised, q = max(h, ε) / Σ max(h, ε): the heatmap MSE loss is minimal at
    h = the Gaussian target, and this q then equals the normalised target, so the two losses pull
    the same way (a softmax of heatmap values would instead demand ever larger peaks). SimCC bins,
    trained as logits, use softmax(x / τ).

    Returns:
        ``[(B, K, h*w)]`` or ``[(B, K, Wx), (B, K, Ny)]`` log-probabilities.
    """
    if logits.is_simcc:
        return [F.log_softmax(x / temperature, -1) for x in logits.flat_distributions()]
    positive = logits.flat_distributions()[0].clamp(min=HEATMAP_FLOOR)  # (B, K, h*w)
    return [positive.log() - positive.sum(-1, keepdim=True).log()]


def task_divergence(logits: PoseLogits, targets: PoseTargets, temperature: float) -> Tensor:
    """KL(p_y || q(Z)) per labelled joint, averaged: estimates -I(y; Z) up to a constant.

    Args:
        logits: Head output for feature Z.
        targets: Ground truth (heatmaps or SimCC labels, with weights).
        temperature: Softmax temperature τ of SimCC distributions.
    """
    per_axis = [
        categorical_kl(_normalise(label), log_q)  # (B, K)
        for label, log_q in zip(
            targets.as_logits().flat_distributions(), log_predictive(logits, temperature), strict=True
        )
    ]
    return _weighted_mean(torch.stack(per_axis).mean(0), targets.weights)


def feature_divergence(reference: Tensor, feature: Tensor, temperature: float) -> Tensor:
    """KL(sg c(reference) || c(feature)), averaged over the batch: estimates -I(reference; feature).

    c(Z) is the softmax over channels of the spatially averaged feature, so a spatial warp of the
    same content leaves it unchanged.

    Args:
        reference: (N, C, h, w); treated as a constant.
        feature: (N, C, h, w); gradients flow here.
        temperature: Softmax temperature.
    """
    ref = F.softmax(reference.detach().mean(dim=(2, 3)) / temperature, -1)  # (N, C)
    log_feat = F.log_softmax(feature.mean(dim=(2, 3)) / temperature, -1)  # (N, C)
    return categorical_kl(ref, log_feat).mean()


def _support_pairs(output: FamiPoseOutput) -> tuple[Tensor, Tensor]:
    """(raw, aligned) support features as (N, C, h, w) pairs.

    The paper variant aligns each support (S pairs); the released variant aligns the merged
    supports (one pair: merged before, after calibration).
    """
    aligned = output.aligned_supports
    raw = output.support_features
    assert aligned is not None and raw is not None
    if aligned.shape[1] == raw.shape[1]:
        return raw.flatten(0, 1), aligned.flatten(0, 1)
    assert output.merged_supports is not None
    return output.merged_supports, aligned[:, 0]


def mi_terms_kl(output: FamiPoseOutput, targets: PoseTargets, probe: Probe, temperature: float) -> dict[str, Tensor]:
    """The five divergences D of the ``kl`` form (each >= 0; Î = -D + const).

    Args:
        output: Model output with support features.
        targets: Ground-truth targets.
        probe: ``probe(features, detach_head=False) -> PoseLogits`` reading a feature map.
        temperature: Softmax temperature τ.
    """
    raw_supports, aligned_supports = _support_pairs(output)
    assert output.support_features is not None
    num_supports = output.support_features.shape[1]
    support_targets = PoseTargets(  # each key-frame target once per support: (B*S, ...)
        **{
            name: None if value is None else value.repeat_interleave(num_supports, 0)
            for name, value in vars(targets).items()
        }
    )
    return {
        "task_enhanced": task_divergence(probe(output.enhanced_feature), targets, temperature),
        "key_enhanced": feature_divergence(output.key_feature, output.enhanced_feature, temperature),
        "task_support": task_divergence(
            probe(output.support_features.flatten(0, 1).detach(), detach_head=True), support_targets, temperature
        ),
        "support_aligned": feature_divergence(raw_supports, aligned_supports, temperature),
        "task_key": task_divergence(probe(output.key_feature.detach(), detach_head=True), targets, temperature),
    }


# Direction of each term: +1 maximises the information (minimises its divergence).
MI_DIRECTIONS = {
    "task_enhanced": 1.0,
    "key_enhanced": 1.0,
    "task_support": -1.0,
    "support_aligned": 1.0,
    "task_key": -1.0,
}


# -- mutual information: the released code's form --------------------------------------------


def _official_kl(input_logits: Tensor, target_logits: Tensor, temperature: float) -> Tensor:
    """``kl_div(softmax(input.detach()/T), softmax(target/T), reduction='mean')`` over (R, N) rows.

    As released: probabilities (not log-probabilities) as ``input``, the input detached, so the
    gradient reaches only the target side. The target enters in log space (same value): at
    T = 0.05 its probabilities underflow to 0, where p·log p has an infinite derivative and the
    released formula turns gradients into NaN.
    """
    probs_in = F.softmax(input_logits.detach() / temperature, -1)
    log_target = F.log_softmax(target_logits / temperature, -1)
    return F.kl_div(probs_in, log_target, reduction="none", log_target=True).mean()  # released: 'mean'


def _official_label_term(feature: Tensor, final: PoseLogits, probe: Probe) -> Tensor:
    """The released ``feat_label_mi_estimation``: head(feature) vs the final prediction."""
    pairs = zip(probe(feature).flat_distributions(), final.flat_distributions(), strict=True)
    return torch.stack([_official_kl(p.flatten(0, 1), y.flatten(0, 1), OFFICIAL_TEMPERATURE) for p, y in pairs]).mean()


def _official_feature_term(first: Tensor, second: Tensor) -> Tensor:
    """The released ``feat_feat_mi_estimation``: spatial softmax of each channel."""
    return _official_kl(first.flatten(2).flatten(0, 1), second.flatten(2).flatten(0, 1), OFFICIAL_TEMPERATURE)


def mi_terms_official(output: FamiPoseOutput, probe: Probe) -> dict[str, Tensor]:
    """The six released terms mi1..mi6, under the names of the quantities they stand for."""
    merged = output.merged_supports
    assert merged is not None
    key_enhanced = _official_feature_term(output.key_feature, output.enhanced_feature)
    return {
        "task_enhanced": _official_label_term(output.enhanced_feature, output.pose, probe),  # mi1
        "key_enhanced": key_enhanced,  # mi2 (mi6 is the same value)
        "task_support": _official_label_term(merged, output.pose, probe),  # mi3
        "support_aligned": _official_feature_term(merged, output.enhanced_feature),  # mi4
        "task_key": _official_label_term(output.key_feature, output.pose, probe),  # mi5
    }


def official_mi_objective(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """-β·mi1 + β·mi2 + mi3 - mi4 + mi5 - mi6, each term also scaled by its configured weight."""
    return (
        -OFFICIAL_BETA * weights["task_enhanced"] * terms["task_enhanced"]
        + (OFFICIAL_BETA - 1.0) * weights["key_enhanced"] * terms["key_enhanced"]  # +β·mi2 - mi6
        + weights["task_support"] * terms["task_support"]
        - weights["support_aligned"] * terms["support_aligned"]
        + weights["task_key"] * terms["task_key"]
    )


def compute_loss(output: FamiPoseOutput, targets: PoseTargets, config: LossConfig, probe: Probe) -> LossBreakdown:
    """Pose loss plus (for models with supports) the weighted MI objective.

    Args:
        output: Model output.
        targets: Ground-truth targets.
        config: Loss weights and MI form.
        probe: The model's ``probe`` method.

    Returns:
        The total (differentiable) and its parts as floats.
    """
    pose = pose_loss(output.pose, targets, config)
    total = config.pose_weight * pose
    parts = {"pose": pose.item()}
    if config.mi_form != "none" and output.support_features is not None:
        weights = {name: getattr(config.mi_terms, name) for name in MI_DIRECTIONS}
        if config.mi_form == "kl":
            terms = mi_terms_kl(output, targets, probe, config.mi_temperature)
            objective = sum(weights[n] * MI_DIRECTIONS[n] * terms[n] for n in terms)
        else:
            terms = mi_terms_official(output, probe)
            objective = official_mi_objective(terms, weights)
        total = total + config.mi_weight * objective
        parts["mi"] = float(objective.detach())
        parts.update({f"mi/{name}": value.item() for name, value in terms.items()})
    if not torch.isfinite(total):
        raise FloatingPointError(f"non-finite loss {total.item()} (parts: {parts})")
    return LossBreakdown(total=total, parts=parts)
