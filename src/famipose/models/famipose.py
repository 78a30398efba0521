"""FAMI-Pose (Liu et al., CVPR 2022) and its single-frame baseline.

``FamiPose(config).forward(key (B, 3, H, W), supports (B, S, 3, H, W)) -> FamiPoseOutput``, in
timm's stages:

* :meth:`FamiPose.forward_features`: the key and support crops through the HRNet backbone in one
  batched pass -> Z_t (B, C, h, w) and Z_{t+δ} (B, S, C, h, w);
* :meth:`FamiPose.forward_from_features`: the temporal part on those features (also on cached
  ones, as video inference does) -> :class:`FamiPoseOutput`;
* :meth:`FamiPose.forward_head`: the detection head on any feature map -> ``PoseLogits``.

The temporal part is an injected aligner (:mod:`famipose.models.aligners`), picked from
``config.variant`` by :func:`~famipose.models.aligners.aligner_for`:

* ``single_frame``: no aligner, HRNet alone (supports ignored); Z̃_t = Z_t.
* ``famipose`` (the paper): :class:`~famipose.models.aligners.PaperAligner`, read by a 1x1
  heatmap head that can start as HRNet's ``final_layer``: loaded with stage-1 weights, the network
  starts as the single-frame model.
* ``famipose_official`` (the released Alignment_V15 code):
  :class:`~famipose.models.aligners.ReleasedAligner` and a 3x3 head. With weights from
  :func:`famipose.models.checkpoint.convert_release` it computes the released model's heatmaps.

The output object is the same in training and evaluation, has the same fields with the same
shapes in every variant, and carries the intermediate features the mutual-information loss needs,
and HRNet's own key-frame heatmaps (the released model's second output). Losses and decoding live
outside the model.

Shape symbols: B batch, S supports, C backbone width, K joints, H/W input size, h/w = H/4, W/4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from famipose.codecs.pose import PoseLogits
from famipose.config import ModelConfig
from famipose.models.aligners import SupportAligner, SupportAlignment, aligner_for
from famipose.models.heads import HeatmapHead, SimCCHead
from famipose.models.hrnet import HRNet


@dataclass
class FamiPoseOutput:
    """Everything one forward pass produces: one meaning and one shape per field in every variant.

    The support fields are ``None`` for the single-frame model, which has no supports.

    Attributes:
        pose: Head logits from the enhanced feature Z̃_t.
        key_feature: Z_t (B, C, h, w).
        enhanced_feature: Z̃_t (B, C, h, w) (= Z_t for the single-frame model).
        backbone_heatmaps: HRNet's ``final_layer`` on Z_t (B, K, h, w), in every variant and mode:
            the released model's ``kf_bb_hm`` (its MI term mi5 reads it, its trainer logs its
            accuracy). For the single-frame heatmap model it is ``pose.heatmaps``.
        support_features: Z_{t+δ} (B, S, C, h, w), or ``None``.
        coarse_supports: Z̄_{t+δ}, each support after the GTM (B, S, C, h, w), or ``None``.
        aligned_supports: Z̃_{t+δ}, each support after its local calibration (B, S, C, h, w);
            ``None`` also for the released variant, which calibrates the merged supports instead.
        merged_supports: The S supports merged into one feature (B, C, h, w) by ``merge_supports``:
            the calibrated supports (paper) or the coarse ones (released); or ``None``.
        support_aggregate: The support feature the fusion combines with Z_t (B, C, h, w): the merged
            calibrated supports (paper: ``merged_supports`` itself) or the calibrated merged
            supports (released); or ``None``.
        warps: GTM affine matrices (B, S, 2, 3), or ``None``.
    """

    pose: PoseLogits
    key_feature: Tensor
    enhanced_feature: Tensor
    backbone_heatmaps: Tensor
    support_features: Tensor | None = None
    coarse_supports: Tensor | None = None
    aligned_supports: Tensor | None = None
    merged_supports: Tensor | None = None
    support_aggregate: Tensor | None = None
    warps: Tensor | None = None


def _as_logits(out: Tensor | PoseLogits) -> PoseLogits:
    return out if isinstance(out, PoseLogits) else PoseLogits(heatmaps=out)


class FamiPose(nn.Module):
    """FAMI-Pose network (or its single-frame baseline), chosen by ``config.variant``.

    Args:
        config: Model configuration.

    Attributes:
        aligner: The temporal part (``None`` for the single-frame model). Its layers (``gtm``,
            ``merge_supports``, ``fuse``, ...) are registered on the network itself, not below an
            ``aligner.`` prefix, so state-dict keys stay those of existing checkpoints and of the
            release converter; code that swaps one of them must do so inside them, as
            ``convert_batchnorm`` and the ONNX export do.
    """

    aligner: SupportAligner | None

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = HRNet.from_name(config.backbone.name, config.num_joints)
        channels = self.backbone.out_channels
        aligner_type = aligner_for(config.variant)
        # Built in this order (backbone, head, aligner): the order the layers draw their initial weights.
        self.head: nn.Module | None = self._build_head(channels, aligner_type)
        aligner = None if aligner_type is None else aligner_type(channels, config)
        object.__setattr__(self, "aligner", aligner)  # not a sub-tree: see the class docstring
        for name, layer in () if aligner is None else aligner.named_children():
            self.add_module(name, layer)
        self.backbone_frozen = config.backbone.frozen
        self.frozen_bn_eval = config.backbone.frozen_bn == "eval"
        if self.backbone_frozen:
            self.backbone.requires_grad_(False)

    def _build_head(self, channels: int, aligner_type: type[SupportAligner] | None) -> nn.Module | None:
        """The detection head; ``None`` means HRNet's own ``final_layer`` (single-frame heatmaps)."""
        cfg = self.config
        if cfg.head.kind == "simcc":
            return SimCCHead(channels, cfg.num_joints, cfg.heatmap_size, cfg.input_size, cfg.head.simcc_split_ratio)
        if aligner_type is None:
            return None
        return HeatmapHead(channels, cfg.num_joints, kernel_size=aligner_type.head_kernel_size)

    def adopt_backbone_head(self) -> bool:
        """Copy HRNet's ``final_layer`` into a heatmap head of the same shape.

        Called after loading single-frame (stage-1) weights, so that FAMI-Pose starts from the
        single-frame predictions instead of a random head.

        Returns:
            Whether the head was copied.
        """
        head = getattr(self.head, "conv", None)
        source = self.backbone.final_layer
        if not isinstance(head, nn.Conv2d) or head.weight.shape != source.weight.shape:
            return False
        with torch.no_grad():
            head.weight.copy_(source.weight)
            head.bias.copy_(source.bias)
        return True

    def train(self, mode: bool = True) -> FamiPose:
        """Set training mode; a frozen backbone's BatchNorm stays in eval mode unless
        ``backbone.frozen_bn`` is ``train`` (the released behaviour: batch statistics)."""
        super().train(mode)
        if self.aligner is not None:
            self.aligner.train(mode)  # its layers are already set; this sets its own flag
        if self.backbone_frozen and self.frozen_bn_eval:
            self.backbone.eval()
        return self

    def _head_module(self, probe: bool) -> nn.Module:
        """The detection head, or for the released code's MI probe HRNet's ``final_layer``."""
        released = self.aligner is not None and self.aligner.probe_with_backbone_head
        if self.head is None or (probe and released and self.config.head.kind == "heatmap"):
            return self.backbone.final_layer
        return self.head

    def forward_head(self, features: Tensor) -> PoseLogits:
        """Apply the detection head to any feature map (B, C, h, w)."""
        return _as_logits(self._head_module(probe=False)(features))

    def probe(self, features: Tensor) -> PoseLogits:
        """Read a feature map (B, C, h, w) through the head the MI loss uses.

        The paper variant shares its detection head; the released code reads every feature through
        HRNet's ``final_layer``.
        """
        return _as_logits(self._head_module(probe=True)(features))

    def forward(self, key: Tensor, supports: Tensor | None = None) -> FamiPoseOutput:
        """Estimate the key frame's pose.

        Args:
            key: Key-frame crops (B, 3, H, W).
            supports: Support crops (B, S, 3, H, W) in ``config.deltas`` order; ignored (and
                optional) for the single-frame variant.

        Returns:
            A :class:`FamiPoseOutput`.
        """
        return self.forward_from_features(*self.forward_features(key, supports))

    def forward_features(self, key: Tensor, supports: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The backbone features of the key and support crops, from one batched backbone pass.

        Args:
            key: Key-frame crops (B, 3, H, W).
            supports: Support crops (B, S, 3, H, W) in ``config.deltas`` order; ignored (and
                optional) for the single-frame variant.

        Returns:
            Z_t (B, C, h, w) and Z_{t+δ} (B, S, C, h, w), or ``None`` for the single-frame model.
        """
        if self.aligner is None:
            return self.backbone.features(key), None  # (B, C, h, w)
        num_supports = self.config.num_supports
        if supports is None or supports.dim() != 5 or supports.shape[1] != num_supports:
            got = None if supports is None else tuple(supports.shape)
            raise ValueError(
                f"supports must be (B, {num_supports}, 3, H, W) for deltas {self.config.deltas}, got {got}"
            )
        if supports.shape[0] != key.shape[0] or supports.shape[2:] != key.shape[1:]:
            raise ValueError(f"key {tuple(key.shape)} and supports {tuple(supports.shape)} disagree")
        batch = key.shape[0]
        frames = torch.cat([key, supports.flatten(0, 1)])  # (B + B*S, 3, H, W)
        features = self.backbone.features(frames)  # (B + B*S, C, h, w)
        return features[:batch], features[batch:].unflatten(0, (batch, num_supports))

    def forward_from_features(self, z_key: Tensor, z_sup: Tensor | None = None) -> FamiPoseOutput:
        """Everything after the backbone, from precomputed features.

        Args:
            z_key: Z_t (B, C, h, w).
            z_sup: Z_{t+δ} (B, S, C, h, w) in ``config.deltas`` order (``None`` for the single-frame
                model).

        Returns:
            The same :class:`FamiPoseOutput` as :meth:`forward` on the crops these features came from.
        """
        if self.aligner is None:
            own = self.backbone.head(z_key)  # (B, K, h, w)
            pose = _as_logits(own) if self.head is None else self.forward_head(z_key)
            return FamiPoseOutput(pose=pose, key_feature=z_key, enhanced_feature=z_key, backbone_heatmaps=own)
        if z_sup is None or z_sup.dim() != 5 or z_sup.shape[0] != z_key.shape[0]:
            raise ValueError(f"support features must be (B, S, C, h, w) with B={z_key.shape[0]}")
        aligned: SupportAlignment = self.aligner(z_key, z_sup)
        return FamiPoseOutput(
            pose=self.forward_head(aligned.enhanced_feature),
            key_feature=z_key,
            enhanced_feature=aligned.enhanced_feature,
            backbone_heatmaps=self.backbone.head(z_key),  # (B, K, h, w)
            support_features=z_sup,
            coarse_supports=aligned.coarse_supports,
            aligned_supports=aligned.aligned_supports,
            merged_supports=aligned.merged_supports,
            support_aggregate=aligned.support_aggregate,
            warps=aligned.warps,
        )
