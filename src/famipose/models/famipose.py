"""FAMI-Pose (Liu et al., CVPR 2022) and its single-frame baseline.

``FamiPose(config).forward(key (B, 3, H, W), supports (B, S, 3, H, W)) -> FamiPoseOutput``.
The key and support crops go through the HRNet backbone in one batched pass; the variant then
decides how supports are aligned and aggregated:

* ``single_frame``: HRNet alone (supports ignored); Z̃_t = Z_t.
* ``famipose`` (the paper): per support, GTM (affine, from [Z_t, Z_{t+δ}]) then LCM (DCNv2 with a
  sigmoid mask); the S aligned supports are merged and fused with Z_t as a zero-initialised
  residual, Z̃_t = Z_t + R([Z_t, merged]), read by a 1x1 heatmap head that can start as HRNet's
  ``final_layer``: loaded with stage-1 weights, the network starts as the single-frame model.
* ``famipose_official`` (the released Alignment_V15 code): per support, a translation-only GTM
  regressed in feature pixels from Z_{t+δ} - Z_t by three linear layers without activations;
  supports merged before four cascaded deformable convolutions with a raw mask; fused with Z_t;
  initialised as the release. With weights from :func:`famipose.models.checkpoint.convert_release`
  it computes the released model's heatmaps.

The output object is the same in training and evaluation and carries the intermediate features
the mutual-information loss needs, and HRNet's own key-frame heatmaps (the released model's
second output). Losses and decoding live outside the model.

Shape symbols: B batch, S supports, C backbone width, K joints, H/W input size, h/w = H/4, W/4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from famipose.codecs.pose import PoseLogits
from famipose.config import ModelConfig
from famipose.models.alignment import CascadedCalibration, GlobalTransformModule, LocalCalibrationModule
from famipose.models.blocks import basic_block_chain
from famipose.models.heads import HeatmapHead, SimCCHead
from famipose.models.hrnet import HRNet


@dataclass
class FamiPoseOutput:
    """Everything one forward pass produces.

    Attributes:
        pose: Head logits from the enhanced feature Z̃_t.
        key_feature: Z_t (B, C, h, w).
        enhanced_feature: Z̃_t (B, C, h, w) (= Z_t for the single-frame model).
        backbone_heatmaps: HRNet's ``final_layer`` on Z_t (B, K, h, w), in every variant and mode:
            the released model's ``kf_bb_hm`` (its MI term mi5 reads it, its trainer logs its
            accuracy). For the single-frame heatmap model it is ``pose.heatmaps``.
        support_features: Z_{t+δ} (B, S, C, h, w), or ``None`` without supports.
        coarse_supports: Z̄_{t+δ} after the GTM (B, S, C, h, w), or ``None``.
        aligned_supports: Z̃_{t+δ} (B, S, C, h, w) for the paper variant; (B, 1, C, h, w) for the
            official variant, which aligns the merged supports; ``None`` without supports.
        merged_supports: The merged support feature before local calibration (official
            variant, B, C, h, w) or after it (paper variant); ``None`` without supports.
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
    warps: Tensor | None = None


def _as_logits(out: Tensor | PoseLogits) -> PoseLogits:
    return out if isinstance(out, PoseLogits) else PoseLogits(heatmaps=out)


class FamiPose(nn.Module):
    """FAMI-Pose network (or its single-frame baseline), chosen by ``config.variant``.

    Args:
        config: Model configuration.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = HRNet.from_name(config.backbone.name, config.num_joints)
        channels = self.backbone.out_channels
        uses_lcm = config.variant != "single_frame"
        if uses_lcm and (config.lcm.offset_groups <= 0 or channels % config.lcm.offset_groups):
            raise ValueError(
                f"lcm.offset_groups={config.lcm.offset_groups} must divide the backbone width {channels}"
            )
        self.head: nn.Module | None = self._build_head(channels)
        num_supports = config.num_supports
        if config.variant != "single_frame":
            self.gtm = GlobalTransformModule(channels, config.gtm)
            self.merge_supports = basic_block_chain(num_supports * channels, channels, config.support_blocks)
            self.fuse = basic_block_chain(2 * channels, channels, config.fusion_blocks)
        if config.variant == "famipose":
            self.lcm = LocalCalibrationModule(channels, config.lcm)
            self.fuse_residual = nn.Conv2d(channels, channels, 1)
            nn.init.zeros_(self.fuse_residual.weight)
            nn.init.zeros_(self.fuse_residual.bias)
        elif config.variant == "famipose_official":
            self.calibration = CascadedCalibration(channels, config.lcm)
            self._init_like_release()
        self.backbone_frozen = config.backbone.frozen
        self.frozen_bn_eval = config.backbone.frozen_bn == "eval"
        if self.backbone_frozen:
            self.backbone.requires_grad_(False)

    def _build_head(self, channels: int) -> nn.Module | None:
        """The detection head; ``None`` means HRNet's own ``final_layer`` (single-frame heatmaps)."""
        cfg = self.config
        if cfg.head.kind == "simcc":
            return SimCCHead(channels, cfg.num_joints, cfg.heatmap_size, cfg.input_size, cfg.head.simcc_split_ratio)
        if cfg.variant == "single_frame":
            return None
        return HeatmapHead(channels, cfg.num_joints, kernel_size=1 if cfg.variant == "famipose" else 3)

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

    def _init_like_release(self) -> None:
        """The released ``init_weights`` on the calibration, merge and fusion layers.

        ``nn.Conv2d`` weights N(0, 0.001) and biases 0; the deformable convolutions are no
        ``nn.Conv2d``, so their weights keep torchvision's default (kaiming-uniform,
        :meth:`ModulatedDeformConv2d.reset_parameters`) while the release's catch-all branch zeroes
        their biases. The GTM (``gtm.init``) and the 3x3 head initialise themselves the same way.
        """
        for module in (self.calibration, self.merge_supports, self.fuse):
            for m in module.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, std=0.001)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        for deform in self.calibration.deforms:
            if deform.bias is not None:
                nn.init.zeros_(deform.bias)

    def train(self, mode: bool = True) -> FamiPose:
        """Set training mode; a frozen backbone's BatchNorm stays in eval mode unless
        ``backbone.frozen_bn`` is ``train`` (the released behaviour: batch statistics)."""
        super().train(mode)
        if self.backbone_frozen and self.frozen_bn_eval:
            self.backbone.eval()
        return self

    def _head_module(self, probe: bool) -> nn.Module:
        """The detection head, or for the released code's MI probe HRNet's ``final_layer``."""
        official_probe = probe and self.config.variant == "famipose_official" and self.config.head.kind == "heatmap"
        if self.head is None or official_probe:
            return self.backbone.final_layer
        return self.head

    def predict(self, features: Tensor) -> PoseLogits:
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
        if self.config.variant == "single_frame":
            return self.forward_features(self.backbone.features(key))  # Z_t (B, C, h, w)
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
        return self.forward_features(features[:batch], features[batch:].unflatten(0, (batch, num_supports)))

    def forward_features(self, z_key: Tensor, z_sup: Tensor | None = None) -> FamiPoseOutput:
        """Everything after the backbone, from precomputed features.

        Args:
            z_key: Z_t (B, C, h, w).
            z_sup: Z_{t+δ} (B, S, C, h, w) in ``config.deltas`` order (``None`` for the single-frame
                model).

        Returns:
            The same :class:`FamiPoseOutput` as :meth:`forward` on the crops these features came from.
        """
        if self.config.variant == "single_frame":
            own = self.backbone.head(z_key)  # (B, K, h, w)
            pose = _as_logits(own) if self.head is None else self.predict(z_key)
            return FamiPoseOutput(pose=pose, key_feature=z_key, enhanced_feature=z_key, backbone_heatmaps=own)
        if z_sup is None or z_sup.dim() != 5 or z_sup.shape[0] != z_key.shape[0]:
            raise ValueError(f"support features must be (B, S, C, h, w) with B={z_key.shape[0]}")
        batch, num_supports = z_sup.shape[:2]
        z_sup_flat = z_sup.flatten(0, 1)  # (B*S, C, h, w)
        z_key_rep = z_key.repeat_interleave(num_supports, 0)  # (B*S, C, h, w)
        coarse, theta = self.gtm(z_key_rep, z_sup_flat)  # (B*S, C, h, w), (B*S, 2, 3)

        def per_support(x: Tensor) -> Tensor:
            return x.unflatten(0, (batch, num_supports))  # (B, S, ...)

        if self.config.variant == "famipose":
            aligned = self.lcm(z_key_rep, coarse)  # (B*S, C, h, w)
            merged = self.merge_supports(per_support(aligned).flatten(1, 2))  # (B, C, h, w)
            aligned_out = per_support(aligned)
            residual = self.fuse_residual(self.fuse(torch.cat([z_key, merged], 1)))  # (B, C, h, w)
            enhanced = z_key + residual
        else:
            merged = self.merge_supports(per_support(coarse).flatten(1, 2))  # (B, C, h, w)
            calibrated = self.calibration(z_key, merged)  # (B, C, h, w)
            aligned_out = calibrated.unsqueeze(1)  # (B, 1, C, h, w)
            enhanced = self.fuse(torch.cat([z_key, calibrated], 1))  # (B, C, h, w)
        return FamiPoseOutput(
            pose=self.predict(enhanced),
            key_feature=z_key,
            enhanced_feature=enhanced,
            backbone_heatmaps=self.backbone.head(z_key),  # (B, K, h, w)
            support_features=z_sup,
            coarse_supports=per_support(coarse),
            aligned_supports=aligned_out,
            merged_supports=merged,
            warps=per_support(theta),
        )
