"""Detection heads: Gaussian heatmaps and SimCC coordinate classification.

Heads only compute logits (``forward``); losses live in :mod:`famipose.losses` and decoding in
:mod:`famipose.codecs`. Both heads return a :class:`~famipose.codecs.pose.PoseLogits` (defined
beside its decoder), so the rest of the code treats them alike.

Shape symbols: B batch, C feature channels, K joints, h/w feature (= heatmap) height/width,
Wx = round(W_in * k) and Ny = round(H_in * k) SimCC bins for input size (W_in, H_in) and split
ratio k.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from famipose.codecs.pose import PoseLogits


class HeatmapHead(nn.Module):
    """A convolution from features to K heatmaps.

    Args:
        in_channels: Feature channels C.
        num_joints: K.
        kernel_size: 1 (HRNet's ``final_layer``) or 3 (the released FAMI-Pose head).
    """

    def __init__(self, in_channels: int, num_joints: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_joints, kernel_size, padding=kernel_size // 2)
        nn.init.normal_(self.conv.weight, std=0.001)
        nn.init.zeros_(self.conv.bias)

    def forward(self, features: Tensor) -> PoseLogits:
        """Features (B, C, h, w) -> heatmaps (B, K, h, w)."""
        return PoseLogits(heatmaps=self.conv(features))


class SimCCHead(nn.Module):
    """SimCC head (Li et al., ECCV 2022): per-joint 1-D classification of x and y.

    A 1x1 convolution maps the features to K maps, each flattened to h*w values and classified
    into Wx horizontal and Ny vertical bins by two linear layers shared over joints. Initialised as
    mmpose's ``SimCCHead``: convolution N(0, 0.001), linear layers N(0, 0.01), biases 0.

    Args:
        in_channels: Feature channels C.
        num_joints: K.
        feature_size: Feature map size (w, h).
        input_size: Network input size (W_in, H_in) in pixels.
        split_ratio: Bins per input pixel k (>= 1).
    """

    def __init__(
        self,
        in_channels: int,
        num_joints: int,
        feature_size: tuple[int, int],
        input_size: tuple[int, int],
        split_ratio: float,
    ) -> None:
        super().__init__()
        if split_ratio < 1:
            raise ValueError(f"SimCC split ratio must be >= 1, got {split_ratio}")
        flat = feature_size[0] * feature_size[1]
        self.feature_size = feature_size
        self.joint_maps = nn.Conv2d(in_channels, num_joints, 1)
        self.to_x = nn.Linear(flat, round(input_size[0] * split_ratio))
        self.to_y = nn.Linear(flat, round(input_size[1] * split_ratio))
        for layer, std in ((self.joint_maps, 0.001), (self.to_x, 0.01), (self.to_y, 0.01)):
            nn.init.normal_(layer.weight, std=std)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> PoseLogits:
        """Features (B, C, h, w) -> simcc_x (B, K, Wx), simcc_y (B, K, Ny)."""
        if tuple(features.shape[-1:-3:-1]) != self.feature_size:
            raise ValueError(
                f"SimCC head built for feature size (w, h)={self.feature_size}, "
                f"got (w, h)={tuple(features.shape[-1:-3:-1])}"
            )
        maps = torch.flatten(self.joint_maps(features), 2)  # (B, K, h*w)
        return PoseLogits(simcc_x=self.to_x(maps), simcc_y=self.to_y(maps))
