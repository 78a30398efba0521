"""HRNet single-frame pose network (the per-frame backbone of FAMI-Pose).

Sun, Xiao, Liu, Wang: "Deep High-Resolution Representation Learning for Human Pose Estimation",
CVPR 2019. This is the official ``PoseHighResolutionNet`` with the same module tree, so its
``state_dict`` keys and shapes equal the official ones and released checkpoints (e.g.
``pose_hrnet_w48_384x288.pth``) load with ``strict=True``.

Stage table (width w): stage2 has 2 branches (w, 2w), stage3 3 branches (w, 2w, 4w), stage4
4 branches (w, 2w, 4w, 8w); each branch is a chain of ``BasicBlock`` s and each
``HighResolutionModule`` fuses all branches. The last stage-4 module only produces branch 0,
the stride-4 map ``final_layer`` turns into heatmaps.

Shape symbols: B batch, K joints, C channels, H/W input size, h = H/4 and w = W/4 heatmap size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from famipose.models.blocks import BN_MOMENTUM, Bottleneck, basic_block_chain, conv_bn, make_stage_blocks

NUM_STAGES = 3  # stages 2, 3 and 4; stage s has s branches


@dataclass(frozen=True)
class HRNetSpec:
    """Architecture hyper-parameters of one HRNet variant.

    Attributes:
        width: Channels of the highest-resolution branch (w); branch b has ``w * 2**b``.
        stage_modules: ``HighResolutionModule`` s in stages 2, 3 and 4.
        blocks_per_branch: ``BasicBlock`` s in every branch of every module.
        layer1_blocks: ``Bottleneck`` s in layer1.
        stem_channels: Channels of the two stride-2 stem convolutions, also the layer1 bottleneck
            width (layer1 outputs ``4 * stem_channels``).
    """

    width: int
    stage_modules: tuple[int, int, int] = (1, 4, 3)
    blocks_per_branch: int = 4
    layer1_blocks: int = 4
    stem_channels: int = 64

    def __post_init__(self) -> None:
        if len(self.stage_modules) != NUM_STAGES:
            raise ValueError(f"stage_modules needs {NUM_STAGES} entries, got {self.stage_modules}")
        values = (self.width, *self.stage_modules, self.blocks_per_branch, self.layer1_blocks)
        if min((*values, self.stem_channels)) < 1:
            raise ValueError(f"all HRNetSpec sizes must be positive, got {self}")


HRNET_SPECS: dict[str, HRNetSpec] = {
    "w32": HRNetSpec(width=32),
    "w48": HRNetSpec(width=48),
    "tiny": HRNetSpec(
        width=16, stage_modules=(1, 1, 1), blocks_per_branch=1, layer1_blocks=1, stem_channels=32
    ),
}


def _downsample_chain(in_channels: int, out_channels: int, steps: int, final_relu: bool) -> nn.Sequential:
    """``steps`` stride-2 3x3 conv+BN units; only the last one changes the channel count.

    Args:
        in_channels: Input channels, kept by every unit but the last.
        out_channels: Output channels of the last unit.
        steps: Number of halvings.
        final_relu: Whether the last unit ends with a ReLU (the earlier ones always do).

    Returns:
        ``nn.Sequential`` of ``conv_bn`` units.
    """
    units = [conv_bn(in_channels, in_channels, stride=2) for _ in range(steps - 1)]
    units.append(conv_bn(in_channels, out_channels, stride=2, relu=final_relu))
    return nn.Sequential(*units)


def _fuse_path(channels: Sequence[int], source: int, target: int) -> nn.Module:
    """Layer bringing branch ``source`` to the channels (and, with upsampling, size) of ``target``.

    Lower-resolution sources get a 1x1 conv+BN (the caller upsamples); higher-resolution ones
    a chain of stride-2 convolutions; the branch itself passes through.
    """
    if source > target:
        return conv_bn(channels[source], channels[target], kernel_size=1, relu=False)
    if source < target:
        return _downsample_chain(channels[source], channels[target], target - source, final_relu=False)
    return nn.Identity()


def _resize_to(x: Tensor, reference: Tensor) -> Tensor:
    """Nearest-neighbour resize of ``x`` (B, C, h', w') to the spatial size of ``reference``."""
    if x.shape[-2:] == reference.shape[-2:]:
        return x
    return F.interpolate(x, size=reference.shape[-2:], mode="nearest")


class HighResolutionModule(nn.Module):
    """Parallel ``BasicBlock`` branches followed by all-to-all multi-resolution fusion.

    Args:
        channels: Channels of each branch, highest resolution first.
        num_blocks: ``BasicBlock`` s per branch.
        multi_scale_output: Output every branch; if False only branch 0 is fused and returned.
    """

    def __init__(self, channels: Sequence[int], num_blocks: int, multi_scale_output: bool = True) -> None:
        super().__init__()
        self.branches = nn.ModuleList(basic_block_chain(c, c, num_blocks) for c in channels)
        num_outputs = len(channels) if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(  # fuse_layers[i][j]: branch j -> output i
            nn.ModuleList(_fuse_path(channels, j, i) for j in range(len(channels)))
            for i in range(num_outputs)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        """Map branch inputs [(B, C_b, H_b, W_b)] to fused outputs of the same shapes."""
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        fused = []
        for target, paths in enumerate(self.fuse_layers):
            # Summed in branch order, as the official code does: (B, C_target, H_target, W_target)
            terms = [_resize_to(path(x), xs[target]) for path, x in zip(paths, xs, strict=True)]
            fused.append(self.relu(sum(terms[1:], terms[0])))
        return fused


def _transition(in_channels: Sequence[int], out_channels: Sequence[int]) -> nn.ModuleList:
    """Layers between stages: adapt existing branches and spawn new lower-resolution ones.

    A kept branch gets a 3x3 conv+BN+ReLU only when its channel count changes; a new branch is
    a stride-2 chain from the lowest-resolution input branch.
    """
    layers: list[nn.Module] = []
    for i, c_out in enumerate(out_channels):
        if i < len(in_channels):
            same = in_channels[i] == c_out
            layers.append(nn.Identity() if same else conv_bn(in_channels[i], c_out))
        else:
            layers.append(_downsample_chain(in_channels[-1], c_out, i + 1 - len(in_channels), True))
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """HRNet pose network: image (B, 3, H, W) to heatmaps (B, K, H/4, W/4).

    Args:
        width: Channels of the highest-resolution branch (32 for W32, 48 for W48).
        num_joints: Heatmap channels K.
        stage_modules: ``HighResolutionModule`` s in stages 2, 3 and 4.
        blocks_per_branch: ``BasicBlock`` s per branch.
        layer1_blocks: ``Bottleneck`` s in layer1.
        stem_channels: Stem width and layer1 bottleneck width.
    """

    def __init__(
        self,
        width: int = 48,
        num_joints: int = 17,
        *,
        stage_modules: tuple[int, int, int] = (1, 4, 3),
        blocks_per_branch: int = 4,
        layer1_blocks: int = 4,
        stem_channels: int = 64,
    ) -> None:
        super().__init__()
        self.spec = HRNetSpec(width, tuple(stage_modules), blocks_per_branch, layer1_blocks, stem_channels)
        self.num_joints = num_joints
        self.out_channels = width

        self.conv1 = nn.Conv2d(3, stem_channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(stem_channels, stem_channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem_channels, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_stage_blocks(Bottleneck, stem_channels, stem_channels, layer1_blocks)

        channels = [stem_channels * Bottleneck.expansion]
        for stage, num_modules in enumerate(stage_modules, start=2):
            new_channels = [width * 2**b for b in range(stage)]
            last_stage = stage == NUM_STAGES + 1  # its last module outputs branch 0 only
            modules = [
                HighResolutionModule(new_channels, blocks_per_branch, not last_stage or m < num_modules - 1)
                for m in range(num_modules)
            ]
            self.add_module(f"transition{stage - 1}", _transition(channels, new_channels))
            self.add_module(f"stage{stage}", nn.Sequential(*modules))
            channels = new_channels

        self.final_layer = nn.Conv2d(width, num_joints, kernel_size=1)
        self._init_weights()

    @classmethod
    def from_spec(cls, spec: HRNetSpec, num_joints: int = 17) -> HRNet:
        """Build the network described by ``spec`` with ``num_joints`` heatmaps."""
        return cls(num_joints=num_joints, **dataclasses.asdict(spec))

    @classmethod
    def from_name(cls, name: str, num_joints: int = 17) -> HRNet:
        """Build a preset: ``"w32"``, ``"w48"`` or ``"tiny"``.

        Raises:
            ValueError: For an unknown name; the message lists the valid names.
        """
        if name not in HRNET_SPECS:
            raise ValueError(f"unknown HRNet variant {name!r}; valid names: {sorted(HRNET_SPECS)}")
        return cls.from_spec(HRNET_SPECS[name], num_joints)

    def _init_weights(self) -> None:
        """Official initialisation: conv weights N(0, 0.001), conv biases 0, BN affine (1, 0)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor) -> Tensor:
        """Stride-4 feature map Z that ``final_layer`` consumes.

        Args:
            x: Images (B, 3, H, W).

        Returns:
            Z (B, width, H/4, W/4): branch 0 of the last stage-4 module.
        """
        x = self.relu(self.bn1(self.conv1(x)))  # (B, stem, H/2, W/2)
        x = self.relu(self.bn2(self.conv2(x)))  # (B, stem, H/4, W/4)
        xs = [self.layer1(x)]  # [(B, 4 * stem, H/4, W/4)]
        for stage in range(2, NUM_STAGES + 2):
            transition = self.get_submodule(f"transition{stage - 1}")
            xs = [layer(xs[min(i, len(xs) - 1)]) for i, layer in enumerate(transition)]
            xs = self.get_submodule(f"stage{stage}")(xs)  # [(B, w * 2**b, H/2**(b+2), W/2**(b+2))]
        return xs[0]  # (B, width, H/4, W/4)

    def head(self, z: Tensor) -> Tensor:
        """Heatmaps (B, K, h, w) from features Z (B, width, h, w)."""
        return self.final_layer(z)

    def forward(self, x: Tensor) -> Tensor:
        """Heatmaps (B, K, H/4, W/4) from images (B, 3, H, W)."""
        return self.head(self.features(x))


def hrnet_w32(num_joints: int = 17) -> HRNet:
    """HRNet-W32 (28.5M parameters at K=17)."""
    return HRNet.from_name("w32", num_joints)


def hrnet_w48(num_joints: int = 17) -> HRNet:
    """HRNet-W48 (63.6M parameters at K=17)."""
    return HRNet.from_name("w48", num_joints)


def hrnet_tiny(num_joints: int = 17) -> HRNet:
    """Small HRNet (width 16, one module per stage) for CPU tests and demos."""
    return HRNet.from_name("tiny", num_joints)
