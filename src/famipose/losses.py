"""Pose losses and the FAMI-Pose mutual-information objective.

Pose losses: keypoint-weighted heatmap MSE (HRNet's ``JointsMSELoss``) and the SimCC KL divergence
(mmpose's ``KLDiscretLoss``).

Mutual information: the objective
---------------------------------
The paper trains ``L = L_pose + α·L_MI`` with

    L_MI = -λ·I(y; Z̃_t | Z_t) + mean_δ I(y; Z_{t+δ} | Z̃_t) + I(y; Z_t | Z̃_t)

(maximise what the enhanced feature adds to the key frame; minimise what the supports and the key
frame still know that the enhanced feature lacks). α = 0.5 and λ = 0.1 are the released trainer's
constants (``loss.mi_weight``, ``loss.mi_lambda``). For any a, b the chain rule of mutual
information gives I(y; a | b) = I(y; a) - I(a; b) + I(a; b | y); as in Variational Self-Distillation
(Tian et al., CVPR 2021) the last term, the information a and b share beyond the label, is dropped.
Then

    L_MI = -λ·I(y; Z̃_t) + λ·I(Z̃_t; Z_t)
           + mean_δ [I(y; Z_{t+δ}) - I(Z_{t+δ}; Z̃_t)]
           + I(y; Z_t) - I(Z_t; Z̃_t),

five quantities with these signed weights (:func:`mi_coefficients`; positive = minimised):

=================  ====================  ==========  =================================================
name               quantity              weight      ``vsd`` estimator D (Î = const - D)
=================  ====================  ==========  =================================================
task_enhanced      I(y; Z̃_t)             -λ          pose loss of the head on Z̃_t
key_enhanced       I(Z_t; Z̃_t)           -(1 - λ)    KL(sg c(Z_t) ‖ c(Z̃_t))
task_support       I(y; Z_{t+δ})         +1          pose loss of the head on Z_{t+δ} (reported)
support_enhanced   I(Z_{t+δ}; Z̃_t)       -1          mean_δ KL(sg c(Z_{t+δ}) ‖ c(Z̃_t))
task_key           I(y; Z_t)             +1          pose loss of the head on Z_t (reported)
=================  ====================  ==========  =================================================

I(Z_t; Z̃_t) enters twice, +λ and -1: net -(1 - λ), "keep". ``loss.mi_terms`` scales each weight
(0 removes a term: the paper's ablation). The paper sums over the supports; we average, so that the
weight does not grow with their number (the release merges them into one feature: weight 1).

Estimators (``mi_form: vsd``)
-----------------------------
Each term is a KL divergence between two distributions, the first one (the teacher) held constant
as VSD does; I(a; b) >= const - D is the variational bound.

* Task terms, I(y; Z): KL(p_y ‖ q(y | Z)) with q the head's own predictive distribution reading Z
  -- a softmax over bins per axis for SimCC, a unit Gaussian around the predicted heatmap for
  heatmaps (the likelihood whose negative log is the MSE: KL = ½‖y - h(Z)‖²). Either way the
  divergence *is* the pose loss of the head applied to Z, with the same reduction and scale, so the
  maximised task term reinforces the pose loss by λ·α and never competes with it.
* Feature terms, I(A; B): KL(sg c(A) ‖ c(B)) between channel distributions c(Z) = softmax over C,
  at temperature τ, of the spatially averaged feature less its mean over the batch (for the
  supports, identically distributed for every δ, the mean over all B·S of them). Mutual information
  is invariant under invertible maps, and so is c under two of them: the warp between a support and
  the key frame (pooling forgets positions; an estimator that compared positions would pull Z̃_t
  towards the unaligned supports) and an offset shared by all samples, x -> x + b (centring). The
  KL is the Barber–Agakov bound with the decoder "B's profile is A's"; without the centring, that
  decoder reads a constant per-channel shift of Z̃_t (a bias) as lost information, and the term
  then pins the fusion's biases instead of asking for the supports' information
  (docs/results.md, "The loss layer"). With one sample in the batch c is uniform and the terms
  vanish. ``loss.mi_feature_axis: channel`` is the uncentred form; ``spatial`` uses the release's
  distribution instead (per channel, a softmax over positions; blind to per-channel offsets) and
  reads each support after the GTM warp, where positions correspond.
* Every divergence is a *mean* over its support (pixels, bins or channels) and then over joints
  and samples, so its scale does not grow with h·w, the number of bins or the width C.

The minimised task terms read the backbone's raw features, through the head held constant, on
detached features: with the paper's frozen backbone nothing trainable could change them; through
a trainable backbone, minimising them would teach the backbone to hide the pose from its own
features. They are reported and carry no gradient.

``loss.mi_stop_at_backbone`` (default on) also keeps the maximised terms' gradients out of a
trainable backbone: :func:`stop_gradient_at` removes d(α·L_MI)/dZ at the backbone's outputs, so
the backbone learns from the pose loss alone, as in the paper's setting, while the alignment,
fusion and head learn from both.

The released code's arithmetic (``mi_form: official``)
------------------------------------------------------
Six ``kl_div`` values with probabilities passed as the input, the prediction detached, the model's
own final prediction as the label, temperature 0.05, and α(-β·mi1 + β·mi2 + mi3 - mi4 + mi5 - mi6)
with β = λ: the same signed weights as above, applied to the ``kl_div`` values themselves (the
release reads a divergence as an information). mi6 is the same number as mi2.

Shape symbols: B batch, S supports, K joints, C channels, h/w heatmap size, N bins of a
categorical axis (Wx, Ny or C).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from famipose.codecs.pose import PoseLogits
from famipose.config import LossConfig
from famipose.models.famipose import FamiPoseOutput

Probe = Callable[..., PoseLogits]
MI_TERMS: tuple[str, ...] = ("task_enhanced", "key_enhanced", "task_support", "support_enhanced", "task_key")


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

    def repeat_each(self, times: int) -> PoseTargets:
        """Each sample's targets ``times`` times in a row: (B*times, ...), as ``repeat_interleave``."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        return PoseTargets(**{k: None if v is None else v.repeat_interleave(times, 0) for k, v in values.items()})


@dataclass
class LossBreakdown:
    """The loss of one batch.

    Attributes:
        total: The differentiable total ``pose + mi``.
        pose: The weighted pose loss ``pose_weight * L_pose`` (differentiable).
        mi: The weighted MI objective ``mi_weight * L_MI`` (differentiable), or ``None``.
        parts: Detached scalars for logging: ``pose``, ``mi`` and each MI estimator's value.
    """

    total: Tensor
    pose: Tensor
    mi: Tensor | None
    parts: dict[str, Tensor]


def heatmap_mse(pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """Keypoint-weighted heatmap MSE: 0.5 * mean over B, K, h, w of (w_k (pred - target))^2.

    This is HRNet's ``JointsMSELoss``; it is also KL(N(target, I) ‖ N(pred, I)) averaged over pixels.

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


def mean_kl(target: Tensor, log_pred: Tensor) -> Tensor:
    """KL(target ‖ pred) averaged over the last axis (``kl_div(..., reduction='none').mean(-1)``).

    Args:
        target: (..., N) probabilities (0 * log 0 = 0).
        log_pred: (..., N) log-probabilities.

    Returns:
        (...) divergences divided by N.
    """
    return (torch.special.xlogy(target, target) - target * log_pred).mean(-1)


def simcc_kl(pred: PoseLogits, targets: PoseTargets, beta: float = 1.0) -> Tensor:
    """SimCC loss as mmpose's ``KLDiscretLoss`` (``label_softmax=False``).

    Per joint and axis, KL(label ‖ softmax(beta * logits)) averaged over the bins; the x and y
    values are added, weighted by the keypoint weight and averaged over B and K (mmpose divides the
    batch sum by K; the mean over B as well keeps the scale independent of the batch size). Labels
    are normalised to distributions first, so peak-1 Gaussian and one-hot labels work alike.
    """
    per_axis = [
        mean_kl(_normalise(label), F.log_softmax(beta * logits, -1))  # (B, K)
        for label, logits in zip(targets.as_logits().flat_distributions(), pred.flat_distributions(), strict=True)
    ]
    return (sum(per_axis) * targets.weights).mean()


def pose_loss(pred: PoseLogits, targets: PoseTargets, config: LossConfig) -> Tensor:
    """The pose loss matching the head: heatmap MSE or SimCC KL (unweighted)."""
    if pred.is_simcc:
        return simcc_kl(pred, targets, config.simcc_beta)
    return heatmap_mse(pred.heatmaps, targets.heatmaps, targets.weights)  # type: ignore[arg-type]


# -- mutual information ----------------------------------------------------------------------


def mi_coefficients(lam: float) -> dict[str, float]:
    """Signed weight of each MI quantity in L_MI (positive: minimised), from the paper's objective."""
    return {
        "task_enhanced": -lam,
        "key_enhanced": -(1.0 - lam),
        "task_support": 1.0,
        "support_enhanced": -1.0,
        "task_key": 1.0,
    }


def feature_log_distribution(feature: Tensor, temperature: float, axis: str) -> Tensor:
    """log c(Z) of a feature (N, C, h, w).

    ``channel_centred``: log-softmax over C of the spatially averaged feature less its mean over
    the N rows (the batch on this process, as BatchNorm's), (N, C); N = 1 gives the uniform
    distribution. ``channel``: the same without the centring. ``spatial``: for each channel,
    log-softmax over the h·w positions, (N, C, h·w).
    """
    if axis == "spatial":
        return F.log_softmax(feature.flatten(2) / temperature, -1)
    # (N, C), at least float32: under AMP the centring subtracts nearly equal half-precision means
    pooled = feature.mean(dim=(2, 3), dtype=torch.promote_types(feature.dtype, torch.float32))
    if axis == "channel_centred":
        pooled = pooled - pooled.mean(0)  # an offset shared by every sample carries no information
    return F.log_softmax(pooled / temperature, -1)


def feature_divergence(teacher: Tensor, student: Tensor, temperature: float, axis: str = "channel_centred") -> Tensor:
    """KL(sg c(teacher) ‖ c(student)), a mean over the distribution's support and rows.

    Estimates -I(teacher; student) up to a constant.

    Args:
        teacher: (N, C, h, w); treated as a constant.
        student: (N, C, h, w); gradients flow here.
        temperature: Softmax temperature τ.
        axis: ``channel_centred``, ``channel`` or ``spatial`` (:func:`feature_log_distribution`).
    """
    reference = feature_log_distribution(teacher.detach(), temperature, axis).exp()
    return mean_kl(reference, feature_log_distribution(student, temperature, axis)).mean()


def _coarse_supports(output: FamiPoseOutput) -> Tensor:
    coarse = output.coarse_supports
    if coarse is None:
        raise ValueError("loss.mi_feature_axis=spatial needs the GTM-warped supports (a FAMI-Pose variant with a GTM)")
    return coarse  # (B, S, C, h, w)


def mi_divergences_vsd(
    output: FamiPoseOutput, targets: PoseTargets, probe: Probe, config: LossConfig
) -> dict[str, Tensor]:
    """The five divergences D of the ``vsd`` form (each >= 0; Î = const - D).

    Args:
        output: Model output with support features.
        targets: Ground-truth targets.
        probe: ``probe(features) -> PoseLogits``, the head the MI terms read a feature map with.
        config: Pose-loss settings and the feature temperature.
    """
    supports = output.support_features
    assert supports is not None
    num_supports = supports.shape[1]
    raw_supports = supports.flatten(0, 1)  # (B*S, C, h, w)
    enhanced = output.enhanced_feature  # (B, C, h, w)
    axis = config.mi_feature_axis
    # I(Z_{t+δ}; Z̃_t) = I(warp(Z_{t+δ}); Z̃_t) for an invertible warp: a spatial distribution reads
    # the support after the GTM, so positions are compared where they correspond.
    support_teacher = _coarse_supports(output).flatten(0, 1) if axis == "spatial" else raw_supports
    with torch.no_grad():  # the minimised task terms: reported, no gradient (module docstring)
        task_support = pose_loss(probe(raw_supports), targets.repeat_each(num_supports), config)
        task_key = pose_loss(probe(output.key_feature), targets, config)
    return {
        "task_enhanced": pose_loss(probe(enhanced), targets, config),
        "key_enhanced": feature_divergence(output.key_feature, enhanced, config.mi_temperature, axis),
        "task_support": task_support,
        "support_enhanced": feature_divergence(
            support_teacher, enhanced.repeat_interleave(num_supports, 0), config.mi_temperature, axis
        ),
        "task_key": task_key,
    }


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


def _official_label_term(feature: Tensor, final: PoseLogits, probe: Probe, temperature: float) -> Tensor:
    """The released ``feat_label_mi_estimation``: head(feature) vs the final prediction."""
    pairs = zip(probe(feature).flat_distributions(), final.flat_distributions(), strict=True)
    return torch.stack([_official_kl(p.flatten(0, 1), y.flatten(0, 1), temperature) for p, y in pairs]).mean()


def _official_feature_term(first: Tensor, second: Tensor, temperature: float) -> Tensor:
    """The released ``feat_feat_mi_estimation``: spatial softmax of each channel."""
    return _official_kl(first.flatten(2).flatten(0, 1), second.flatten(2).flatten(0, 1), temperature)


def mi_values_official(output: FamiPoseOutput, probe: Probe, temperature: float) -> dict[str, Tensor]:
    """The released terms mi1..mi5 (mi6 = mi2), under the names of the quantities they stand for."""
    merged = output.merged_supports
    assert merged is not None
    return {
        "task_enhanced": _official_label_term(output.enhanced_feature, output.pose, probe, temperature),  # mi1
        "key_enhanced": _official_feature_term(output.key_feature, output.enhanced_feature, temperature),  # mi2
        "task_support": _official_label_term(merged, output.pose, probe, temperature),  # mi3
        "support_enhanced": _official_feature_term(merged, output.enhanced_feature, temperature),  # mi4
        "task_key": _official_label_term(output.key_feature, output.pose, probe, temperature),  # mi5
    }


def mi_objective(estimates: dict[str, Tensor], config: LossConfig) -> Tensor:
    """L_MI = Σ switch_n · coefficient_n · Î_n over the five quantities (module docstring)."""
    coefficients = mi_coefficients(config.mi_lambda)
    return sum(getattr(config.mi_terms, n) * coefficients[n] * estimates[n] for n in MI_TERMS)  # type: ignore[return-value]


def compute_loss(output: FamiPoseOutput, targets: PoseTargets, config: LossConfig, probe: Probe) -> LossBreakdown:
    """Pose loss plus (for models with supports) the weighted MI objective, checked to be finite.

    The check reads the total on the host: one device sync. The training step calls
    :func:`compute_loss_unchecked` instead and checks the loss together with the gradient.

    Args:
        output: Model output.
        targets: Ground-truth targets.
        config: Loss weights and MI form.
        probe: The model's ``probe`` method.

    Returns:
        The total, its two weighted parts and detached scalars for logging (``mi/<name>`` holds
        each estimator's value: the divergence D for ``vsd``, the released ``kl_div`` value for
        ``official``).

    Raises:
        FloatingPointError: The total is not finite.
    """
    loss = compute_loss_unchecked(output, targets, config, probe)
    if not torch.isfinite(loss.total):
        raise FloatingPointError(non_finite_loss_message(loss))
    return loss


def compute_loss_unchecked(
    output: FamiPoseOutput, targets: PoseTargets, config: LossConfig, probe: Probe
) -> LossBreakdown:
    """:func:`compute_loss` without the finiteness check: no device sync; the caller checks ``total``."""
    pose = config.pose_weight * pose_loss(output.pose, targets, config)
    parts = {"pose": pose.detach()}
    mi = None
    if config.mi_form != "none" and output.support_features is not None:
        if config.mi_form == "vsd":
            values = mi_divergences_vsd(output, targets, probe, config)
            estimates = {name: -value for name, value in values.items()}  # Î = const - D
        else:
            values = mi_values_official(output, probe, config.mi_temperature)
            estimates = values  # the release reads its kl_div values as informations
        mi = config.mi_weight * mi_objective(estimates, config)
        parts["mi"] = mi.detach()
        parts.update({f"mi/{name}": value.detach() for name, value in values.items()})
    total = pose if mi is None else pose + mi
    return LossBreakdown(total=total, pose=pose, mi=mi, parts=parts)


def non_finite_loss_message(loss: LossBreakdown) -> str:
    """``non-finite loss nan (parts: {...})``: the total and its parts, read on the host."""
    described = {name: round(float(value), 6) for name, value in loss.parts.items()}
    return f"non-finite loss {loss.total.item()} (parts: {described})"


# -- gradient routing and balance ------------------------------------------------------------


def stop_gradient_at(objective: Tensor, features: Sequence[Tensor]) -> list[RemovableHandle]:
    """Remove ``objective``'s gradient from ``features`` in the next backward pass through them.

    Computes d objective / d feature with one backward pass through the graph above the features
    (not below), and registers hooks that subtract it from the gradient arriving at each feature,
    so whatever produced the features (the backbone) receives the gradient of the rest of the loss
    only. Call it before ``(... + objective).backward()``, with ``objective`` scaled as that loss is
    (e.g. by the same ``GradScaler``). Features that do not require gradients are skipped.

    Returns:
        The hook handles (they are spent after one backward pass; remove them if none follows).
    """
    tracked = [feature for feature in features if feature.requires_grad]
    if not tracked or not objective.requires_grad:
        return []
    grads = torch.autograd.grad(objective, tracked, retain_graph=True, allow_unused=True)
    return [
        feature.register_hook(lambda incoming, own=grad: incoming - own)
        for feature, grad in zip(tracked, grads, strict=True)
        if grad is not None
    ]


def gradient_norm(objective: Tensor, parameters: Sequence[Tensor]) -> Tensor:
    """‖d objective / d parameters‖₂ over all of them (0 for parameters it does not reach)."""
    grads = torch.autograd.grad(objective, parameters, retain_graph=True, allow_unused=True)
    squares = [g.pow(2).sum() for g in grads if g is not None]
    return torch.stack(squares).sum().sqrt() if squares else objective.new_zeros(())


def gradient_ratio(numerator: Tensor, denominator: Tensor, parameters: Sequence[Tensor]) -> Tensor:
    """‖∇ numerator‖ / ‖∇ denominator‖ over ``parameters`` (a 0-d tensor; no device sync)."""
    return gradient_norm(numerator, parameters) / gradient_norm(denominator, parameters)
