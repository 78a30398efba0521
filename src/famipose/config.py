"""Typed experiment configuration: frozen dataclasses loaded from flat YAML files.

Every section is a frozen dataclass; a YAML file holds the whole experiment (no inheritance) and
may leave sections or fields out to take their defaults. Unknown keys and invalid choices raise
:class:`ConfigError` naming the key and the valid alternatives. Overrides use dotted keys
(``model.backbone.frozen=true``) with YAML-typed values and produce a new object.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneConfig:
    """HRNet backbone.

    Attributes:
        name: HRNet preset: ``w32``, ``w48`` or ``tiny``.
        frozen: Keep backbone weights fixed during training (no gradients).
        frozen_bn: BatchNorm of a frozen backbone in training: ``eval`` keeps its running
            statistics fixed and normalises with them; ``train`` normalises with batch statistics
            and updates the running ones, as the released code (whose freeze only turns gradients
            off before ``model.train()``). Read only when ``frozen``.
        pretrained: Optional path to single-frame weights (official HRNet or a famipose stage-1
            checkpoint) loaded into the backbone.
    """

    name: str = "w48"
    frozen: bool = False
    frozen_bn: str = "eval"
    pretrained: str | None = None


@dataclass(frozen=True)
class GTMConfig:
    """Global Transformation Module: coarse warp of each support feature.

    Attributes:
        mode: ``affine`` (6 parameters, the paper) or ``translation`` (2, the released code).
        input: What the regressor sees: ``concat`` [Z_t, Z_{t+δ}] (paper) or ``difference``
            Z_{t+δ} - Z_t (released code).
        hidden_channels: Channels of the regressor's convolutions.
        num_downsamples: Stride-2 convolutions before pooling to 3x3.
        hidden_features: Width of the regressor's fully connected layers.
        linear_activation: Between the three linear layers: ``relu`` (ours) or ``none`` (the
            released code, whose stack is then one affine map).
        translation_units: Unit of the regressed translation: ``normalized`` (grid_sample
            coordinates, one unit = half the feature width/height) or ``pixels`` (feature pixels,
            kornia ``warp_affine`` as the released code). ``pixels`` needs ``mode: translation``.
        init: ``identity`` (last layer zero: the warp starts as the identity) or ``release``
            (the released code: convolutions N(0, 0.001), all biases 0, linear weights PyTorch's
            default, so the initial warp is a small random one).
    """

    mode: str = "affine"
    input: str = "concat"
    hidden_channels: int = 16
    num_downsamples: int = 5
    hidden_features: int = 64
    linear_activation: str = "relu"
    translation_units: str = "normalized"
    init: str = "identity"

    def __post_init__(self) -> None:
        if self.translation_units == "pixels" and self.mode != "translation":
            raise ValueError(f"translation_units='pixels' needs mode='translation', got mode={self.mode!r}")


@dataclass(frozen=True)
class LCMConfig:
    """Local Calibration Module: modulated deformable convolution on the coarse alignment.

    Attributes:
        kernel_size: DCN kernel size.
        dilation: DCN dilation (padding keeps the feature size).
        offset_groups: Offset groups; must divide the backbone width.
        mask: ``sigmoid`` (DCNv2, the paper) or ``raw`` (unbounded, the released code).
        hidden_blocks: Residual blocks that turn [Z_t, Z̄_{t+δ}] into the parameter feature.
        dcn_impl: ``auto``, ``torch`` (pure PyTorch) or ``torchvision``.
    """

    kernel_size: int = 3
    dilation: int = 3
    offset_groups: int = 12
    mask: str = "sigmoid"
    hidden_blocks: int = 1
    dcn_impl: str = "auto"


@dataclass(frozen=True)
class HeadConfig:
    """Detection head.

    Attributes:
        kind: ``heatmap`` or ``simcc``.
        simcc_split_ratio: SimCC bins per input pixel (k >= 1).
        simcc_mode: ``sa-simdr`` (Gaussian-smoothed labels) or ``simdr`` (one-hot labels at the
            nearest bin; ``simcc_sigma`` unused), the two label kinds of the SimCC paper.
        simcc_sigma: Gaussian label standard deviation in *bins* (``sa-simdr``), as mmpose's
            ``SimCCLabel``: 6 bins at k = 2 is 3 input pixels (mmpose's SimCC-ResNet-50 256x192,
            the W48 configs); the tiny 96x128 configs scale it with the crop to 3 bins.
    """

    kind: str = "heatmap"
    simcc_split_ratio: float = 2.0
    simcc_mode: str = "sa-simdr"
    simcc_sigma: float = 6.0


@dataclass(frozen=True)
class ModelConfig:
    """The whole network.

    Attributes:
        variant: ``single_frame`` (HRNet baseline), ``famipose`` (the paper) or
            ``famipose_official`` (mirrors the released Alignment_V15 code).
        num_joints: Keypoints K.
        input_size: Crop size (w, h) in pixels.
        deltas: Temporal offsets of the support frames.
        support_blocks: Residual blocks merging the S aligned supports into one feature.
        fusion_blocks: Residual blocks fusing the merged supports with Z_t into Z̃_t.
    """

    variant: str = "famipose"
    num_joints: int = 17
    input_size: tuple[int, int] = (288, 384)
    deltas: tuple[int, ...] = (-2, -1, 1, 2)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    gtm: GTMConfig = field(default_factory=GTMConfig)
    lcm: LCMConfig = field(default_factory=LCMConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    support_blocks: int = 2
    fusion_blocks: int = 3

    def __post_init__(self) -> None:
        if any(side < 8 or side % 4 for side in self.input_size):
            raise ValueError(
                f"input_size={list(self.input_size)}: each side must be a multiple of 4 and at least 8 "
                "(the heatmap is a quarter of the input)"
            )
        if self.variant != "single_frame" and not self.deltas:
            raise ValueError(f"deltas=[]: the {self.variant} variant needs at least one support offset")

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """Heatmap / feature size (w, h): a quarter of the input."""
        return self.input_size[0] // 4, self.input_size[1] // 4

    @property
    def num_supports(self) -> int:
        """Number of support frames S."""
        return 0 if self.variant == "single_frame" else len(self.deltas)


@dataclass(frozen=True)
class MIWeights:
    """Switches of the five mutual-information terms: each scales the weight that the paper's
    objective gives its term (1 keeps it, 0 removes it: the paper's ablation).

    The signed weights themselves follow from the objective and ``loss.mi_lambda``; see
    :mod:`famipose.losses` and docs/faithfulness.md.
    """

    task_enhanced: float = 1.0  # I(y; Z̃_t): net weight -λ (maximised)
    key_enhanced: float = 1.0  # I(Z_t; Z̃_t): -(1 - λ) (maximised)
    task_support: float = 1.0  # I(y; Z_{t+δ}): +1 (minimised; reported, no gradient)
    support_enhanced: float = 1.0  # I(Z_{t+δ}; Z̃_t): -1 (maximised)
    task_key: float = 1.0  # I(y; Z_t): +1 (minimised; reported, no gradient)


@dataclass(frozen=True)
class LossConfig:
    """Pose and mutual-information losses: ``pose_weight * L_pose + mi_weight * L_MI``.

    Attributes:
        pose_weight: Weight of the pose loss (heatmap MSE or SimCC KL).
        simcc_beta: Logit scale of the SimCC KL loss (mmpose ``KLDiscretLoss``'s ``beta``).
        mi_form: ``vsd`` (the paper: variational self-distillation estimators), ``official`` (the
            released code's arithmetic) or ``none``.
        mi_weight: α, the overall weight of the MI objective (the released trainer's 0.5).
        mi_lambda: λ, the weight of the maximised term -λ·I(y; Z̃_t | Z_t) in the paper's objective
            (the released trainer's β = 0.1).
        mi_temperature: Softmax temperature of the feature distributions (``vsd``) or of every
            distribution (``official``; the release uses 0.05).
        mi_feature_axis: The axis the ``vsd`` feature distributions are taken over:
            ``channel_centred`` (softmax over C of the spatially averaged feature less its batch
            mean: blind to an offset shared by all samples), ``channel`` (the same, uncentred) or
            ``spatial`` (per channel, a softmax over the h·w positions; supports are compared after
            the GTM warp).
        mi_stop_at_backbone: MI gradients stop at the backbone's output, so a trainable backbone
            is trained by the pose loss alone (the paper trains MI with a frozen backbone).
        mi_terms: Per-term switches.
    """

    pose_weight: float = 1.0
    simcc_beta: float = 1.0
    mi_form: str = "vsd"
    mi_weight: float = 0.5
    mi_lambda: float = 0.1
    mi_temperature: float = 1.0
    mi_feature_axis: str = "channel_centred"
    mi_stop_at_backbone: bool = True
    mi_terms: MIWeights = field(default_factory=MIWeights)


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings (HRNet / DCPose defaults).

    Attributes:
        scale_factor: scale multiplier is ``clip(1 + scale_factor * N(0, 1), 1 ± scale_factor)``.
        rotation_factor: angle is ``clip(rotation_factor * N(0, 1), ±2 rotation_factor)`` degrees.
        rotation_prob: probability of rotating at all.
        flip_prob: probability of a horizontal flip (with left/right joint swap).
        half_body_prob: probability of cropping the upper or lower body only.
        half_body_min_joints: half-body needs more than this many visible joints.
        half_body_padding: enlargement of the half-body joints' box.
        support_shift: each support crop is shifted by ``U(-s, s)`` times the crop size per axis,
            independently per support (0 disables it); simulates misaligned boxes.
    """

    scale_factor: float = 0.35
    rotation_factor: float = 45.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8
    half_body_padding: float = 1.5
    support_shift: float = 0.0

    def __post_init__(self) -> None:
        """Validate ranges.

        Raises:
            ValueError: a probability outside [0, 1], a negative factor, or ``scale_factor >= 1``.
        """
        for name in ("rotation_prob", "flip_prob", "half_body_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.scale_factor < 1.0:
            raise ValueError(f"scale_factor must be in [0, 1), got {self.scale_factor}")
        for name in ("rotation_factor", "support_shift", "half_body_min_joints"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.half_body_padding <= 0:
            raise ValueError(f"half_body_padding must be > 0, got {self.half_body_padding}")


@dataclass(frozen=True)
class DataConfig:
    """Data set location and how windows become network inputs.

    Attributes:
        root: Data set root (holding ``images/`` and ``annotations/``); relative paths below are
            resolved against it.
        train_annotations: Training annotations: a per-video folder or a merged JSON file.
        val_annotations: Validation annotations (also the evaluator's ground truth).
        val_gt: Folder of per-video GT files for the evaluator, when ``val_annotations`` is not one
            (PoseTrack17's merged COCO-style file); ``None`` uses ``val_annotations``.
        val_boxes: ``gt`` for ground-truth boxes, or a detections JSON (COCO results).
        box_score_threshold: Detections below this score are dropped.
        sigma: Heatmap Gaussian sigma in heatmap pixels.
        box_padding: Enlargement of the key-frame box after fixing its aspect ratio.
        augment: Training augmentation (the same random draw for all frames of a window).
        num_workers: DataLoader worker processes.
    """

    root: str = "data/posetrack17"
    train_annotations: str = "annotations/train"
    val_annotations: str = "annotations/val"
    val_gt: str | None = None
    val_boxes: str = "gt"
    box_score_threshold: float = 0.2
    sigma: float = 3.0
    box_padding: float = 1.25
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    num_workers: int = 2


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule and run settings.

    Attributes:
        epochs: Training epochs.
        batch_size: Global batch size (split over processes under DDP).
        optimizer: ``adam`` or ``adamw``.
        lr: Base learning rate.
        weight_decay: Weight decay.
        milestones: Epochs at which the learning rate is multiplied by ``gamma``.
        gamma: Step decay factor.
        grad_clip: Max gradient norm, or ``None``.
        amp: Mixed precision where the device supports it (CUDA).
        seed: Seed of model initialisation, data order and augmentation.
        device: ``auto``, ``cpu`` or ``cuda``.
        checkpoint_every: Also write ``last.pth`` every this many steps inside an epoch (resume
            granularity); ``None`` writes at epoch ends only.
        init_from: Checkpoint whose weights initialise the model before training (stage 2 of the
            two-stage recipe loads the stage-1 single-frame model here; matching keys only).
        max_steps_per_epoch: Cap on optimiser steps per epoch (small runs), or ``None``.
        eval_every: Evaluate on the validation set every this many epochs (0: only at the end).
        log_every: Steps between log lines.
    """

    epochs: int = 21
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = (8, 12, 16)
    gamma: float = 0.1
    grad_clip: float | None = None
    amp: bool = True
    seed: int = 0
    device: str = "auto"
    init_from: str | None = None
    checkpoint_every: int | None = None
    max_steps_per_epoch: int | None = None
    eval_every: int = 1
    log_every: int = 20


@dataclass(frozen=True)
class PredictConfig:
    """How crops become keypoints at test time (evaluation, ``famipose evaluate`` and ``famipose video``).

    Attributes:
        flip: Flip test (HRNet's ``TEST.FLIP_TEST``, mmpose's ``flip_test``): the network also sees
            the horizontally mirrored key and support crops, and the un-mirrored output (joints
            swapped left/right) is averaged with the plain one. Twice the network cost.
        dark: DARK decoding (Zhang et al., CVPR 2020) of heatmaps: Gaussian smoothing with
            ``data.sigma`` and a second-order Taylor step around the argmax, instead of the
            quarter-pixel shift. Heatmap head only (SimCC has no such step).
    """

    flip: bool = False
    dark: bool = False


@dataclass(frozen=True)
class Config:
    """One experiment."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "model.variant": ("single_frame", "famipose", "famipose_official"),
    "model.backbone.name": ("w32", "w48", "tiny"),
    "model.backbone.frozen_bn": ("eval", "train"),
    "model.gtm.mode": ("affine", "translation"),
    "model.gtm.input": ("concat", "difference"),
    "model.gtm.linear_activation": ("relu", "none"),
    "model.gtm.translation_units": ("normalized", "pixels"),
    "model.gtm.init": ("identity", "release"),
    "model.lcm.mask": ("sigmoid", "raw"),
    "model.lcm.dcn_impl": ("auto", "torch", "torchvision"),
    "model.head.kind": ("heatmap", "simcc"),
    "model.head.simcc_mode": ("sa-simdr", "simdr"),
    "loss.mi_form": ("vsd", "official", "none"),
    "loss.mi_feature_axis": ("channel_centred", "channel", "spatial"),
    "train.optimizer": ("adam", "adamw"),
    "train.device": ("auto", "cpu", "cuda"),
}
AT_LEAST: dict[str, float] = {
    "model.support_blocks": 0,
    "model.fusion_blocks": 0,
    "model.head.simcc_split_ratio": 1,
    "data.num_workers": 0,
    "train.epochs": 1,
    "train.batch_size": 1,
    "train.weight_decay": 0,
    "train.checkpoint_every": 1,
    "train.max_steps_per_epoch": 1,
    "train.eval_every": 0,
    "train.log_every": 1,
}
ABOVE: dict[str, float] = {
    "model.head.simcc_sigma": 0,
    "data.sigma": 0,
    "data.box_padding": 0,
    "train.lr": 0,
    "train.gamma": 0,
    "train.grad_clip": 0,
}


# ---------------------------------------------------------------------------------------------
# Building dataclasses from plain data
# ---------------------------------------------------------------------------------------------

T = TypeVar("T")


def _convert(value: Any, annotation: Any, key: str) -> Any:
    """Convert a YAML value to ``annotation``; raise ConfigError naming ``key``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, key) for v, a in zip(value, args, strict=True))
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if annotation in (int, str, bool) and type(value) is annotation:
        return value
    raise ConfigError(f"{key}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and invalid choices.

    Args:
        cls: Dataclass type.
        data: Field values; missing fields take their defaults.
        prefix: Dotted path of ``cls`` inside the root config (for error messages).

    Returns:
        A new instance of ``cls``.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown key(s) {[prefix + k for k in unknown]}; valid keys: {names}")
    kwargs = {}
    for name, value in data.items():
        key = prefix + name
        kwargs[name] = _convert(value, hints[name], key)
        _check_value(key, kwargs[name])
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ConfigError(f"{prefix}{err}" if prefix else f"config: {err}") from None


def _check_value(key: str, value: Any) -> None:
    """Raise ConfigError when ``value`` is not a valid choice or lies out of range for ``key``."""
    valid = CHOICES.get(key)
    if valid is not None and value not in valid:
        raise ConfigError(f"{key}: {value!r} is not one of {list(valid)}")
    if value is None:
        return
    if key in AT_LEAST and value < AT_LEAST[key]:
        raise ConfigError(f"{key}: {value!r} must be >= {AT_LEAST[key]:g}")
    if key in ABOVE and not value > ABOVE[key]:
        raise ConfigError(f"{key}: {value!r} must be > {ABOVE[key]:g}")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) of a config, suitable for YAML."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: Iterable[str]) -> list[tuple[str, Any]]:
    """Parse ``key=value`` strings; values are read as YAML (``true``, ``[1, 2]``, ``0.1``)."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        parsed.append((key.strip(), yaml.safe_load(raw)))
    return parsed


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML experiment file and apply dotted overrides.

    Args:
        path: YAML file; ``None`` starts from the defaults.
        overrides: ``section.key=value`` strings applied in order.

    Returns:
        A new frozen :class:`Config`.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config ({err.strerror})") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML ({err})") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        data = loaded or {}
        _build(data, f"{path}: ")  # errors of the file itself name the file
    overrides = list(overrides)
    for key, value in parse_overrides(overrides):
        _set_dotted(data, key, value)
    return _build(data, "--set: " if overrides else "")


def _build(data: dict[str, Any], where: str) -> Config:
    """``from_dict(Config, data)`` with ``where`` (the file, or the overrides) before any error."""
    try:
        return from_dict(Config, data)
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from None
