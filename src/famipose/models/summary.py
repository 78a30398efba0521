"""Size and compute summary of a configured model (``famipose summary``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from famipose.config import ModelConfig
from famipose.models.complexity import count_macs, count_parameters
from famipose.models.famipose import FamiPose


@dataclass(frozen=True)
class ModelSummary:
    """What ``famipose summary`` reports for one configuration.

    Attributes:
        variant: Model variant.
        backbone: HRNet preset.
        input_size: Crop size (w, h).
        num_frames: Frames through the backbone per key frame (1 + S).
        parameters: All parameters.
        backbone_parameters: Parameters of the HRNet backbone (incl. its final layer).
        trainable_parameters: Parameters trained with this config (frozen backbone excluded).
        macs: Multiply-adds of one forward pass for one key frame with its supports.
        backbone_macs: Multiply-adds of the single-frame HRNet on one crop.
        feature_shape: Z_t shape (C, h, w).
        output_shapes: Head output shapes without the batch axis.
    """

    variant: str
    backbone: str
    input_size: tuple[int, int]
    num_frames: int
    parameters: int
    backbone_parameters: int
    trainable_parameters: int
    macs: int
    backbone_macs: int
    feature_shape: tuple[int, ...]
    output_shapes: dict[str, tuple[int, ...]]


def summarize(config: ModelConfig) -> ModelSummary:
    """Build the model of ``config`` on the CPU and measure it with one dummy key frame."""
    model = FamiPose(config)
    width, height = config.input_size
    key = torch.zeros(1, 3, height, width)
    supports = torch.zeros(1, config.num_supports, 3, height, width) if config.num_supports else None
    with torch.no_grad():
        out = model.eval()(key, supports)
    shapes = {name: tuple(t.shape[1:]) for name, t in vars(out.pose).items() if t is not None}
    return ModelSummary(
        variant=config.variant,
        backbone=config.backbone.name,
        input_size=config.input_size,
        num_frames=1 + config.num_supports,
        parameters=count_parameters(model),
        backbone_parameters=count_parameters(model.backbone),
        trainable_parameters=count_parameters(model, trainable_only=True),
        macs=count_macs(model, key, supports),
        backbone_macs=count_macs(model.backbone, key),
        feature_shape=tuple(out.key_feature.shape[1:]),
        output_shapes=shapes,
    )
