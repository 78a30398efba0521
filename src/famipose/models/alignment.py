"""Feature alignment: Global Transformation Module (GTM) and Local Calibration Module (LCM).

FAMI-Pose aligns each support feature Z_{t+δ} to the key feature Z_t coarse-to-fine:

* GTM regresses a global warp from (Z_t, Z_{t+δ}) and resamples Z_{t+δ} -> Z̄_{t+δ}. The warp is
  applied with ``affine_grid``/``grid_sample`` (align_corners=False) in normalised coordinates; a
  translation regressed in feature pixels (the released code's kornia ``warp_affine``) is turned
  into them by :func:`pixels_to_normalized`.
* LCM predicts kernel offsets O and modulation M from (Z_t, Z̄_{t+δ}) and applies a modulated
  deformable convolution to Z̄_{t+δ} -> Z̃_{t+δ}. Z_t only drives O and M: its content never
  reaches Z̃_{t+δ} directly.

:class:`CascadedCalibration` mirrors the released code instead (supports merged first, four
chained deformable convolutions); docs/faithfulness.md lists every difference. The two aligners of
:mod:`famipose.models.aligners` compose these modules into the paper's and the released model.

Shape symbols: N = B * S feature pairs, C channels, h/w feature height/width, G offset groups,
T = G * kernel_size**2 kernel taps, P warp parameters (6 affine, 2 translation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from famipose.config import GTMConfig, LCMConfig
from famipose.models.blocks import basic_block_chain, conv_bn
from famipose.models.dcn import ModulatedDeformConv2d


def affine_from_params(params: Tensor, mode: str) -> Tensor:
    """Turn regressed parameters into affine matrices that are the identity at zero.

    Args:
        params: (N, 6) for ``affine`` (row-major deviation from the identity) or (N, 2) for
            ``translation`` (tx, ty in normalised [-1, 1] coordinates).
        mode: ``affine`` or ``translation``.

    Returns:
        theta (N, 2, 3) for ``F.affine_grid`` (output -> input sampling positions).
    """
    identity = torch.eye(2, 3, dtype=params.dtype, device=params.device).expand(len(params), 2, 3)
    if mode == "affine":
        return identity + params.view(-1, 2, 3)
    if mode == "translation":
        return identity + F.pad(params.view(-1, 2, 1), (2, 0))  # deviation only in column 2
    raise ValueError(f"unknown GTM mode {mode!r}; valid: ['affine', 'translation']")


def pixels_to_normalized(translation: Tensor, size: tuple[int, int]) -> Tensor:
    """Turn translations in feature pixels (kornia's ``warp_affine``) into normalised units.

    kornia's ``warp_affine(src, [I | t], align_corners=True)`` (the released GTM) computes
    dst(x) = src(x - t) in pixel coordinates: the content moves by +t pixels. :func:`warp_features`
    samples at align_corners=False, where pixel x has the normalised coordinate u = (2x + 1) / w - 1,
    so theta = [I | τ] reads u + τ, i.e. pixel x + τ·w/2. The two agree when τ_x = -2·t_x / w and
    τ_y = -2·t_y / h (t_px = -τ·w/2); bilinear weights and zero padding then coincide as well.

    Args:
        translation: (N, 2) as (t_x, t_y) in feature pixels.
        size: Feature size (w, h).

    Returns:
        (N, 2) translations for ``affine_from_params(..., "translation")``.
    """
    width, height = size
    return translation * translation.new_tensor([-2.0 / width, -2.0 / height])


def warp_features(features: Tensor, theta: Tensor, align_corners: bool = False) -> Tensor:
    """Resample features (N, C, h, w) with affine matrices theta (N, 2, 3); zeros outside.

    ``align_corners`` is ``grid_sample``'s: False for the GTM's learned warps, True where theta maps
    first and last pixel centres onto each other (the UDP crop re-framing of video inference).
    """
    grid = F.affine_grid(theta, list(features.shape), align_corners=align_corners)  # (N, h, w, 2)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)


def _activation(name: str) -> nn.Module:
    """The module between the GTM's linear layers: ``relu`` or ``none`` (identity)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown GTM linear activation {name!r}; valid: ['relu', 'none']")


class GlobalTransformModule(nn.Module):
    """GTM: regress a global warp of the support feature and apply it.

    The regressor is a residual block, ``num_downsamples`` stride-2 conv-BN-ReLU layers, adaptive
    pooling to 3x3 and three linear layers (the last one is ``to_params``). The module indices
    do not depend on ``linear_activation`` (``none`` is an ``nn.Identity``), so state dicts of both
    settings share one key layout.

    Args:
        channels: Feature channels C.
        config: Warp mode, regressor input, sizes, activation, translation units and init.
    """

    def __init__(self, channels: int, config: GTMConfig) -> None:
        super().__init__()
        self.mode = config.mode
        self.input = config.input
        in_channels = 2 * channels if config.input == "concat" else channels
        hidden, features = config.hidden_channels, config.hidden_features
        num_params = 6 if config.mode == "affine" else 2
        self.encoder = nn.Sequential(
            basic_block_chain(in_channels, hidden, 1),
            *[conv_bn(hidden, hidden, 3, stride=2) for _ in range(config.num_downsamples)],
            nn.AdaptiveAvgPool2d(3),  # any feature size -> (N, hidden, 3, 3)
            nn.Flatten(),
            nn.Linear(hidden * 9, features),
            _activation(config.linear_activation),
            nn.Linear(features, features),
            _activation(config.linear_activation),
        )
        self.to_params = nn.Linear(features, num_params)
        self.pixel_units = config.translation_units == "pixels"
        if config.init == "identity":
            # Zero deviation: the module starts as the identity warp.
            nn.init.zeros_(self.to_params.weight)
            nn.init.zeros_(self.to_params.bias)
        elif config.init == "release":
            self._init_like_release()
        else:
            raise ValueError(f"unknown GTM init {config.init!r}; valid: ['identity', 'release']")

    def _init_like_release(self) -> None:
        """The released ``init_weights``: convolutions N(0, 0.001), BN (1, 0), every bias 0.

        Linear weights keep PyTorch's default: the release's catch-all branch looks for a
        parameter named ``weights``, which ``nn.Linear`` does not have.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
            bias = getattr(m, "bias", None)
            if isinstance(bias, nn.Parameter):
                nn.init.zeros_(bias)

    def forward(self, key: Tensor, support: Tensor) -> tuple[Tensor, Tensor]:
        """Warp ``support`` towards ``key``.

        Args:
            key: Z_t (N, C, h, w).
            support: Z_{t+δ} (N, C, h, w).

        Returns:
            Z̄_{t+δ} (N, C, h, w) and theta (N, 2, 3).
        """
        pair = torch.cat([key, support], 1) if self.input == "concat" else support - key
        params = self.to_params(self.encoder(pair))  # (N, P)
        if self.pixel_units:
            params = pixels_to_normalized(params, (support.shape[-1], support.shape[-2]))  # (N, 2)
        theta = affine_from_params(params, self.mode)  # (N, 2, 3)
        return warp_features(support, theta), theta


def _param_conv(channels: int, out_channels: int, config: LCMConfig) -> nn.Conv2d:
    """Dilated convolution that predicts offsets or masks at the DCN's sampling footprint."""
    pad = config.dilation * (config.kernel_size - 1) // 2
    return nn.Conv2d(channels, out_channels, config.kernel_size, padding=pad, dilation=config.dilation)


def _deform_conv(channels: int, config: LCMConfig) -> ModulatedDeformConv2d:
    pad = config.dilation * (config.kernel_size - 1) // 2
    return ModulatedDeformConv2d(
        channels,
        channels,
        config.kernel_size,
        padding=pad,
        dilation=config.dilation,
        offset_groups=config.offset_groups,
        impl=config.dcn_impl,  # type: ignore[arg-type]
    )


class DeformParams(nn.Module):
    """Offsets O and modulation M of one deformable convolution, predicted from a feature.

    Args:
        channels: Input channels C.
        config: Kernel, dilation, offset groups and mask activation.
    """

    def __init__(self, channels: int, config: LCMConfig) -> None:
        super().__init__()
        taps = config.offset_groups * config.kernel_size**2
        self.offset = _param_conv(channels, 2 * taps, config)
        self.mask = _param_conv(channels, taps, config)
        self.sigmoid_mask = config.mask == "sigmoid"

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Features (N, C, h, w) -> offsets (N, 2T, h, w), mask (N, T, h, w)."""
        mask = self.mask(features)
        return self.offset(features), torch.sigmoid(mask) if self.sigmoid_mask else mask


class LocalCalibrationModule(nn.Module):
    """LCM (the paper): DCNv2 on Z̄_{t+δ}, its offsets and masks predicted from (Z_t, Z̄_{t+δ}).

    At initialisation the offsets are zero and the convolution copies its input, so the whole
    alignment path starts as the identity.

    Args:
        channels: Feature channels C.
        config: DCN settings.
    """

    def __init__(self, channels: int, config: LCMConfig) -> None:
        super().__init__()
        self.param_features = basic_block_chain(2 * channels, channels, config.hidden_blocks)
        self.params = DeformParams(channels, config)
        self.deform = _deform_conv(channels, config)
        self._init_identity(config)

    def _init_identity(self, config: LCMConfig) -> None:
        for conv in (self.params.offset, self.params.mask):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        # Centre tap copies each channel; x2 undoes the initial sigmoid mask of 0.5.
        centre = config.kernel_size // 2
        gain = 2.0 if config.mask == "sigmoid" else 1.0
        with torch.no_grad():
            self.deform.weight.zero_()
            self.deform.weight[:, :, centre, centre] = gain * torch.eye(self.deform.out_channels)
            if self.deform.bias is not None:
                self.deform.bias.zero_()
        if config.mask == "raw":
            nn.init.constant_(self.params.mask.bias, 1.0)

    def predict_params(self, key: Tensor, coarse: Tensor) -> tuple[Tensor, Tensor]:
        """Offsets (N, 2T, h, w) and mask (N, T, h, w) from Z_t and Z̄_{t+δ} (N, C, h, w)."""
        return self.params(self.param_features(torch.cat([key, coarse], 1)))

    def calibrate(self, coarse: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        """Apply the deformable convolution to Z̄_{t+δ} alone -> Z̃_{t+δ} (N, C, h, w)."""
        return self.deform(coarse, offset, mask)

    def forward(self, key: Tensor, coarse: Tensor) -> Tensor:
        """Z_t, Z̄_{t+δ} (N, C, h, w) -> Z̃_{t+δ} (N, C, h, w)."""
        return self.calibrate(coarse, *self.predict_params(key, coarse))


class CascadedCalibration(nn.Module):
    """Local calibration as in the released Alignment_V15 code.

    The S globally aligned supports are merged first (S*C -> C); [merged, Z_t] go through a
    residual block and two deformable convolutions whose output only predicts the offsets of a
    third one applied to the merged supports; a fourth refines that result with offsets from
    itself. The mask is used raw (no sigmoid).

    Args:
        channels: Feature channels C.
        config: DCN settings (the released code: kernel 3, dilation 3, 12 offset groups).
    """

    def __init__(self, channels: int, config: LCMConfig) -> None:
        super().__init__()
        self.combine = basic_block_chain(2 * channels, channels, 1)
        self.params = nn.ModuleList(DeformParams(channels, config) for _ in range(4))
        self.deforms = nn.ModuleList(_deform_conv(channels, config) for _ in range(4))

    def forward(self, key: Tensor, merged: Tensor) -> Tensor:
        """Z_t and the merged supports (B, C, h, w) -> aligned support feature (B, C, h, w)."""
        guide = self.combine(torch.cat([merged, key], 1))
        for params, deform in zip(self.params[:2], self.deforms[:2], strict=True):
            guide = deform(guide, *params(guide))
        aligned = self.deforms[2](merged, *self.params[2](guide))
        return self.deforms[3](aligned, *self.params[3](aligned))
