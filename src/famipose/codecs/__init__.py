"""famipose.codecs: pure encode/decode functions between images, keypoints and training targets."""

from famipose.codecs.heatmap import decode_heatmaps, decode_heatmaps_torch, encode_heatmaps
from famipose.codecs.simcc import SimCCMode, decode_simcc, encode_simcc, simcc_bins
from famipose.codecs.transforms import (
    box_to_center_scale,
    crop_to_image,
    flip_heatmaps_back,
    flip_keypoints,
    get_affine_matrix,
    heatmap_to_image,
    rescale_points,
    transform_points,
    warp_crop,
)

__all__ = [
    "SimCCMode",
    "box_to_center_scale",
    "crop_to_image",
    "decode_heatmaps",
    "decode_heatmaps_torch",
    "decode_simcc",
    "encode_heatmaps",
    "encode_simcc",
    "flip_heatmaps_back",
    "flip_keypoints",
    "get_affine_matrix",
    "heatmap_to_image",
    "rescale_points",
    "simcc_bins",
    "transform_points",
    "warp_crop",
]
