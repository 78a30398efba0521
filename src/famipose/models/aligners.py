"""The temporal part of FAMI-Pose: align the support features to the key frame and fuse them into Z̃_t.

:class:`~famipose.models.famipose.FamiPose` holds one aligner, picked from ``ModelConfig.variant``
by :func:`aligner_for` (the single-frame model has none). Both aligners share one contract,
``forward(z_key (B, C, h, w), z_sup (B, S, C, h, w)) -> SupportAlignment``, whose fields have one
meaning and one shape in every variant:

* :class:`PaperAligner` (``famipose``, the paper): per support, GTM (affine, from
  [Z_t, Z_{t+δ}]) then LCM (DCNv2 with a sigmoid mask); the S aligned supports are merged and
  fused with Z_t as a zero-initialised residual, Z̃_t = Z_t + R([Z_t, merged]). Its heatmap head
  is 1x1, the shape of HRNet's ``final_layer``, so that it can start as the single-frame model.
* :class:`ReleasedAligner` (``famipose_official``, the released Alignment_V15 code): per support a
  translation GTM; the S coarse supports are merged *before* the cascaded deformable
  convolutions (:class:`~famipose.models.alignment.CascadedCalibration`) and fused with Z_t;
  initialised as the release, with a 3x3 head; the MI loss reads features through HRNet's
  ``final_layer``.

Both build their layers in the order gtm, merge_supports, fuse, then their own ones: the
attribute names are the state-dict keys (below ``FamiPose``) of checkpoints and of the release
converter, and the order is that in which the layers draw their random initial weights.

Shape symbols: B batch, S supports, C channels, h/w feature height/width.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from famipose.config import ModelConfig
from famipose.models.alignment import CascadedCalibration, GlobalTransformModule, LocalCalibrationModule
from famipose.models.blocks import basic_block_chain


@dataclass
class SupportAlignment:
    """What an aligner computes; the fields of the same names in
    :class:`~famipose.models.famipose.FamiPoseOutput` document them.

    Attributes:
        enhanced_feature: Z̃_t (B, C, h, w).
        coarse_supports: Z̄_{t+δ} (B, S, C, h, w).
        warps: (B, S, 2, 3).
        merged_supports: (B, C, h, w).
        support_aggregate: (B, C, h, w).
        aligned_supports: Z̃_{t+δ} (B, S, C, h, w), or ``None``.
    """

    enhanced_feature: Tensor
    coarse_supports: Tensor
    warps: Tensor
    merged_supports: Tensor
    support_aggregate: Tensor
    aligned_supports: Tensor | None = None


class SupportAligner(nn.Module, ABC):
    """The layers both aligners share: the GTM, the S·C -> C support merge and the 2C -> C fusion.

    Args:
        channels: Backbone width C.
        config: Model configuration (GTM, LCM, supports, block counts).

    Attributes:
        head_kernel_size: Kernel of the heatmap head reading Z̃_t.
        probe_with_backbone_head: Whether the MI loss reads features through HRNet's
            ``final_layer`` rather than the detection head (heatmap heads only).
    """

    head_kernel_size: int
    probe_with_backbone_head: bool

    def __init__(self, channels: int, config: ModelConfig) -> None:
        super().__init__()
        groups = config.lcm.offset_groups
        if groups <= 0 or channels % groups:
            raise ValueError(f"lcm.offset_groups={groups} must divide the backbone width {channels}")
        self.gtm = GlobalTransformModule(channels, config.gtm)
        self.merge_supports = basic_block_chain(config.num_supports * channels, channels, config.support_blocks)
        self.fuse = basic_block_chain(2 * channels, channels, config.fusion_blocks)

    def warp_supports(self, z_key: Tensor, z_sup: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The GTM on every (Z_t, Z_{t+δ}) pair.

        Args:
            z_key: Z_t (B, C, h, w).
            z_sup: Z_{t+δ} (B, S, C, h, w).

        Returns:
            Z_t repeated per support (B*S, C, h, w), Z̄_{t+δ} (B*S, C, h, w) and theta (B*S, 2, 3).
        """
        z_sup_flat = z_sup.flatten(0, 1)  # (B*S, C, h, w)
        z_key_rep = z_key.repeat_interleave(z_sup.shape[1], 0)  # (B*S, C, h, w)
        coarse, theta = self.gtm(z_key_rep, z_sup_flat)  # (B*S, C, h, w), (B*S, 2, 3)
        return z_key_rep, coarse, theta

    @abstractmethod
    def forward(self, z_key: Tensor, z_sup: Tensor) -> SupportAlignment:
        """Align Z_{t+δ} (B, S, C, h, w) to Z_t (B, C, h, w) and fuse them into Z̃_t."""


class PaperAligner(SupportAligner):
    """The paper's alignment: GTM then LCM per support, merge, zero-initialised residual fusion.

    Args:
        channels: Backbone width C.
        config: Model configuration.
    """

    head_kernel_size = 1
    probe_with_backbone_head = False

    def __init__(self, channels: int, config: ModelConfig) -> None:
        super().__init__(channels, config)
        self.lcm = LocalCalibrationModule(channels, config.lcm)
        # Zero residual: Z̃_t = Z_t at initialisation, so the model starts as the single-frame one.
        self.fuse_residual = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.fuse_residual.weight)
        nn.init.zeros_(self.fuse_residual.bias)

    def forward(self, z_key: Tensor, z_sup: Tensor) -> SupportAlignment:
        """Align Z_{t+δ} (B, S, C, h, w) to Z_t (B, C, h, w) and fuse them into Z̃_t."""
        z_key_rep, coarse, theta = self.warp_supports(z_key, z_sup)
        aligned = self.lcm(z_key_rep, coarse).unflatten(0, z_sup.shape[:2])  # (B, S, C, h, w)
        merged = self.merge_supports(aligned.flatten(1, 2))  # (B, C, h, w)
        residual = self.fuse_residual(self.fuse(torch.cat([z_key, merged], 1)))  # (B, C, h, w)
        return SupportAlignment(
            enhanced_feature=z_key + residual,
            coarse_supports=coarse.unflatten(0, z_sup.shape[:2]),
            warps=theta.unflatten(0, z_sup.shape[:2]),
            merged_supports=merged,
            support_aggregate=merged,
            aligned_supports=aligned,
        )


class ReleasedAligner(SupportAligner):
    """The released Alignment_V15 alignment: GTM per support, merge, cascaded calibration, fusion.

    Args:
        channels: Backbone width C.
        config: Model configuration (the released code: translation GTM, raw mask).
    """

    head_kernel_size = 3
    probe_with_backbone_head = True

    def __init__(self, channels: int, config: ModelConfig) -> None:
        super().__init__(channels, config)
        self.calibration = CascadedCalibration(channels, config.lcm)
        self._init_like_release()

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

    def forward(self, z_key: Tensor, z_sup: Tensor) -> SupportAlignment:
        """Align Z_{t+δ} (B, S, C, h, w) to Z_t (B, C, h, w) and fuse them into Z̃_t."""
        _, coarse, theta = self.warp_supports(z_key, z_sup)
        coarse = coarse.unflatten(0, z_sup.shape[:2])  # (B, S, C, h, w)
        merged = self.merge_supports(coarse.flatten(1, 2))  # (B, C, h, w)
        calibrated = self.calibration(z_key, merged)  # (B, C, h, w)
        return SupportAlignment(
            enhanced_feature=self.fuse(torch.cat([z_key, calibrated], 1)),  # (B, C, h, w)
            coarse_supports=coarse,
            warps=theta.unflatten(0, z_sup.shape[:2]),
            merged_supports=merged,
            support_aggregate=calibrated,
        )


def aligner_for(variant: str) -> type[SupportAligner] | None:
    """The aligner class of a model variant (``None``: the single-frame model has none).

    Args:
        variant: ``ModelConfig.variant``.

    Raises:
        ValueError: An unknown variant.
    """
    if variant == "single_frame":
        return None
    if variant == "famipose":
        return PaperAligner
    if variant == "famipose_official":
        return ReleasedAligner
    raise ValueError(f"unknown model variant {variant!r}; valid: ['single_frame', 'famipose', 'famipose_official']")
