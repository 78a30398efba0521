"""Residual building blocks shared by HRNet and the FAMI-Pose alignment modules.

Attribute names follow the official HRNet code (Sun et al., CVPR 2019) so that its checkpoints
load unchanged: ``conv1``/``bn1``/``conv2``/``bn2`` (``conv3``/``bn3`` for the bottleneck) and
``downsample = nn.Sequential(conv 1x1, BN)``.

Shape symbols: B batch, C channels, H/W spatial size.
"""

from __future__ import annotations

from torch import Tensor, nn

BN_MOMENTUM = 0.1


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias.

    Args:
        in_planes: Input channels.
        out_planes: Output channels.
        stride: Spatial stride.

    Returns:
        The convolution layer.
    """
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, relu: bool = True
) -> nn.Sequential:
    """Bias-free convolution followed by BatchNorm and an optional ReLU.

    The children are indexed ``0`` (conv), ``1`` (BN) and ``2`` (ReLU), the layout the official
    HRNet checkpoints use for downsample, transition and fuse layers.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size (padding keeps the size at stride 1).
        stride: Spatial stride.
        relu: Append a ReLU.

    Returns:
        ``nn.Sequential(conv, bn[, relu])``.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or projected) shortcut; ``expansion = 1``.

    Args:
        inplanes: Input channels.
        planes: Output channels.
        stride: Stride of the first convolution.
        downsample: Shortcut projection, required when the shape changes.
    """

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, inplanes, H, W) to (B, planes, H/stride, W/stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand with a shortcut; ``expansion = 4``.

    Args:
        inplanes: Input channels.
        planes: Bottleneck width; the block outputs ``planes * 4`` channels.
        stride: Stride of the 3x3 convolution.
        downsample: Shortcut projection, required when the shape changes.
    """

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, inplanes, H, W) to (B, 4 * planes, H/stride, W/stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BlockType = type[BasicBlock] | type[Bottleneck]


def make_stage_blocks(
    block: BlockType, inplanes: int, planes: int, num_blocks: int, stride: int = 1
) -> nn.Sequential:
    """Stack ``num_blocks`` residual blocks (the official ``_make_layer``).

    The first block carries the stride and, when the shape changes, a 1x1 conv + BN shortcut.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        inplanes: Input channels.
        planes: Block width; the stack outputs ``planes * block.expansion`` channels.
        num_blocks: Number of blocks (at least 1).
        stride: Stride of the first block.

    Returns:
        ``nn.Sequential`` of the blocks, indexed from 0.

    Raises:
        ValueError: If ``num_blocks`` is not positive.
    """
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be positive, got {num_blocks}")
    out_planes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_planes:
        downsample = conv_bn(inplanes, out_planes, kernel_size=1, stride=stride, relu=False)
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(out_planes, planes) for _ in range(num_blocks - 1)]
    return nn.Sequential(*layers)


def basic_block_chain(in_channels: int, out_channels: int, num_blocks: int) -> nn.Sequential:
    """Stack of ``BasicBlock`` s mapping (B, in_channels, H, W) to (B, out_channels, H, W).

    Args:
        in_channels: Input channels.
        out_channels: Output channels; the first block projects its shortcut when they differ.
        num_blocks: Number of blocks (at least 1).

    Returns:
        ``nn.Sequential`` of the blocks.
    """
    return make_stage_blocks(BasicBlock, in_channels, out_channels, num_blocks)
