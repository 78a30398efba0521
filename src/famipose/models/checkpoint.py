"""Model weights on disk: the one module that reads and writes them.

Training, testing, export and video inference all read and write weights through this module:

* **Files.** :func:`read_checkpoint_file` reads a ``.pth`` file (``torch.load(weights_only=True)``
  onto the CPU) or a ``.safetensors`` file; :func:`atomic_save` writes a ``.pth`` file atomically
  (training checkpoints, converted weights); :func:`export_safetensors` writes the network weights
  of a checkpoint as ``.safetensors``.
* **State dicts.** :func:`read_state_dict` / :func:`load_weights` load a (sub-)network, with
  wrapper prefixes stripped; :func:`read_model_state` reads the weights of a whole
  :class:`~famipose.models.famipose.FamiPose` from any supported file, its keys mapped by
  :func:`famipose_keys`; :func:`load_model` builds a network from a config and a file;
  :func:`load_matching` loads the tensors a checkpoint shares with a model (``train.init_from``).
* **Foreign layouts.** Official HRNet pose checkpoints (``pose_hrnet_w48_384x288.pth``) load by
  renaming alone: :func:`famipose_keys` puts their keys under ``backbone.``, and
  :func:`official_hrnet_model` builds the single-frame model such a file describes. Released
  FAMI-Pose weights (``Alignment_V15``) do not load as they are (their keys fit no variant):
  :func:`convert_release` (``famipose convert --from fami-release``) maps every released key onto
  the ``famipose_official`` variant and changes two tensors (below); the converted file then loads
  like any state dict.

Every failure (unreadable file, not a state dict, key or shape mismatch) raises ``CheckpointError``
with a message that names the file or the offending keys, never a raw torch error. What a training
checkpoint holds, and resuming from one, is :mod:`famipose.engine.checkpointing`'s.

:func:`convert_release` maps a state dict of the released FAMI-Pose model (``Alignment_V15`` in
Pose-Group/FAMI-Pose, ``posetimation/zoo/Alignment/Alignment_V15.py``) onto the
``famipose_official`` variant. Released module -> ours (n = ``gtm.num_downsamples``, 5 as
released; parameter and buffer names below each module are kept):

* ``hrnet`` (HRNetPlus, the official HRNet layout) -> ``backbone``
* ``feat_global_offset_layers.0.layers`` (residual block) -> ``gtm.encoder.0``
* ``feat_global_offset_layers.{i}.conv`` / ``.bn``, i = 1..n -> ``gtm.encoder.{i}.0`` / ``.1``
* ``feat_global_offset_layers.{n+2}``, ``{n+3}``, ``{n+4}`` (the three linear layers; n+1 is the
  Flatten) -> ``gtm.encoder.{n+3}``, ``gtm.encoder.{n+5}``, ``gtm.to_params``
* ``combined_feat_layers.layers`` -> ``calibration.combine``
* ``dcn_offset_{k}.conv``, ``dcn_mask_{k}.conv``, ``dcn_{k}`` (torchvision ``DeformConv2d``),
  k = 1..4 -> ``calibration.params.{k-1}.offset``, ``.mask``, ``calibration.deforms.{k-1}``
* ``sup_agg_block.layers`` -> ``merge_supports``; ``init_feature_agg_block.layers`` -> ``fuse``
* ``agg_final_layer`` -> ``head.conv``

Two tensors change on the way:

* **GTM conv biases.** Each released stride-2 convolution has a bias b and is followed by a
  BatchNorm; ours have none. BN(conv(x) + b) with running mean μ equals BN(conv(x)) with running
  mean μ - b exactly in eval mode; in train mode the batch mean absorbs b (same output, zero
  gradient for b) and the running-mean update keeps the relation μ' = μ - b. So b is no degree of
  freedom of the released model, and the converter folds it: ``running_mean - bias``.
* **Translation units.** The release regresses the GTM translation in feature pixels. A target
  with ``gtm.translation_units: pixels`` (the mirror) takes the last linear layer as it is; one
  with ``normalized`` gets its rows scaled by (-2/w, -2/h) (:func:`pixels_to_normalized`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from famipose.config import BackboneConfig, GTMConfig, LCMConfig, ModelConfig
from famipose.files import atomic_path
from famipose.models.alignment import pixels_to_normalized
from famipose.models.famipose import FamiPose
from famipose.models.hrnet import HRNET_SPECS

StateSource = str | os.PathLike[str] | Mapping[str, object]

WRAPPER_KEYS = ("state_dict", "model")  # containers used by training scripts around the weights
STRIPPED_PREFIXES = ("module.", "backbone.")  # DataParallel / mmpose-style wrappers
MAX_LISTED = 20  # keys shown per category in an error message


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the module it is loaded into."""


@dataclass(frozen=True)
class LoadReport:
    """Differences between a state dict and a module.

    Attributes:
        missing: Module keys absent from the state dict.
        unexpected: State-dict keys the module does not have.
        mismatched: ``(key, checkpoint shape, module shape)`` for keys whose shapes differ.
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the state dict fits the module exactly."""
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """Human-readable listing of every difference (at most ``MAX_LISTED`` per kind)."""
        mismatched = [f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in self.mismatched]
        parts = [
            _listing("missing keys", self.missing),
            _listing("unexpected keys", self.unexpected),
            _listing("shape mismatches", mismatched),
        ]
        return "; ".join(p for p in parts if p)


def _listing(title: str, items: list[str]) -> str:
    """``"title (n): a, b, ..."`` or ``""`` for an empty list."""
    if not items:
        return ""
    more = f", ... (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return f"{title} ({len(items)}): {', '.join(items[:MAX_LISTED])}{more}"


def _strip_prefixes(key: str) -> str:
    """Remove leading ``module.`` / ``backbone.`` wrappers from a parameter name."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in STRIPPED_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def _source_name(source: StateSource) -> str:
    """Name of a checkpoint source for error messages."""
    return "<mapping>" if isinstance(source, Mapping) else repr(str(source))


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def read_checkpoint_file(path: str | os.PathLike[str]) -> Any:
    """The content of a weights file, any failure a one-line :class:`CheckpointError`.

    A ``.safetensors`` file gives its tensors; any other file is read with
    ``torch.load(weights_only=True)`` onto the CPU.

    Raises:
        CheckpointError: The file is missing, empty, truncated or not a PyTorch (or safetensors)
            file; the message names the file and the reason.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: the file is empty (0 bytes)")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load and safetensors raise many types for missing, truncated or foreign files
        reason = " ".join(str(err).split()) or type(err).__name__
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {reason}") from err


def atomic_save(payload: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file next to ``path``, fsync it, then rename it over ``path``.

    An interrupted write leaves the previous file intact (:func:`famipose.files.atomic_path`).

    Args:
        payload: What to save (tensors and plain Python values, so that it loads with
            ``weights_only=True``).
        path: Destination; its folder is created if needed.

    Returns:
        The destination path.
    """
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        torch.save(payload, file)
    return Path(path)


# ---------------------------------------------------------------------------------------------
# State dicts of a network or a sub-network
# ---------------------------------------------------------------------------------------------


def _tensor_state(source: StateSource) -> Mapping[str, Tensor]:
    """The state dict a file or mapping holds: a raw one, or one wrapped under ``WRAPPER_KEYS``.

    Raises:
        CheckpointError: The file cannot be read or holds no tensor state dict.
    """
    name = _source_name(source)
    content = source if isinstance(source, Mapping) else read_checkpoint_file(source)
    for key in WRAPPER_KEYS:
        if isinstance(content, Mapping) and isinstance(content.get(key), Mapping):
            content = content[key]
            break
    if not isinstance(content, Mapping):
        raise CheckpointError(f"checkpoint {name} holds a {type(content).__name__}, not a state dict")
    non_tensors = [str(k) for k, v in content.items() if not isinstance(v, Tensor)]
    if non_tensors:
        raise CheckpointError(f"checkpoint {name} is not a state dict; non-tensor entries: {non_tensors[:5]}")
    return content


def read_state_dict(source: StateSource, strip_prefixes: bool = True) -> dict[str, Tensor]:
    """Read a state dict from a file or a mapping and normalise its keys.

    Accepts a raw state dict or a dict wrapping it under ``"state_dict"`` or ``"model"``;
    strips ``module.`` and ``backbone.`` prefixes.

    Args:
        source: Path of a checkpoint file, or an in-memory mapping.
        strip_prefixes: Strip the wrapper prefixes (False for models whose own keys start with
            ``backbone.``, such as torchvision's detectors).

    Returns:
        ``{parameter name: tensor}``.

    Raises:
        CheckpointError: If the file cannot be read or holds no tensor state dict.
    """
    content = _tensor_state(source)
    state = {(_strip_prefixes(str(k)) if strip_prefixes else str(k)): v for k, v in content.items()}
    if len(state) != len(content):
        raise CheckpointError(f"checkpoint {_source_name(source)} has keys that collide once prefixes are stripped")
    return state


def compare_state_dict(module: nn.Module, state: Mapping[str, Tensor]) -> LoadReport:
    """List missing, unexpected and wrong-shape keys of ``state`` with respect to ``module``.

    ``num_batches_tracked`` buffers are not reported missing: checkpoints written before they
    existed (PyTorch < 0.4.1) lack them and BatchNorm fills them in.

    Args:
        module: The target module.
        state: Candidate state dict.

    Returns:
        The differences.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        (k, tuple(v.shape), tuple(expected[k].shape))
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    return LoadReport(missing, unexpected, mismatched)


def load_weights(
    module: nn.Module, source: StateSource, strict: bool = True, prefix: str = "", strip_prefixes: bool = True
) -> LoadReport:
    """Load a checkpoint into ``module``.

    Args:
        module: Target module; its parameters and buffers are overwritten in place.
        source: Checkpoint path or mapping (see ``read_state_dict``).
        strict: Raise on any missing, unexpected or wrong-shape key (nothing is loaded then).
            When False, only keys that exist with the right shape are loaded.
        prefix: Use only the keys starting with this prefix, with the prefix removed, e.g.
            ``"backbone_net."`` to load a sub-network out of a larger checkpoint.
        strip_prefixes: See :func:`read_state_dict`.

    Returns:
        The differences that were tolerated (empty when ``strict``).

    Raises:
        CheckpointError: If the source cannot be read or, with ``strict``, does not fit.
    """
    state = read_state_dict(source, strip_prefixes)
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    report = compare_state_dict(module, state)
    if strict and not report.ok:
        raise CheckpointError(
            f"checkpoint {_source_name(source)} does not fit {type(module).__name__}: {report.describe()}"
        )
    bad = set(report.unexpected) | {k for k, _, _ in report.mismatched}
    module.load_state_dict({k: v for k, v in state.items() if k not in bad}, strict=False)
    return report


# ---------------------------------------------------------------------------------------------
# The released FAMI-Pose model (Alignment_V15)
# ---------------------------------------------------------------------------------------------

RELEASED_MODEL = ModelConfig(
    variant="famipose_official",
    num_joints=17,
    input_size=(288, 384),
    deltas=(-2, -1, 1, 2),  # the released data set's support order: t-2, t-1, t+1, t+2
    backbone=BackboneConfig(name="w48", frozen=True, frozen_bn="train"),
    gtm=GTMConfig(
        mode="translation",
        input="difference",
        hidden_channels=16,
        num_downsamples=5,
        hidden_features=64,
        linear_activation="none",
        translation_units="pixels",
        init="release",
    ),
    lcm=LCMConfig(kernel_size=3, dilation=3, offset_groups=12, mask="raw"),
    support_blocks=2,
    fusion_blocks=3,
)
"""The model of the released ``Alignment_V15`` code (PoseTrack17 config), as a famipose config."""

# Settings that change what the network computes without changing a weight shape.
_RELEASE_COMPUTATION = ("variant", "gtm.mode", "gtm.input", "gtm.linear_activation", "lcm.mask", "lcm.dilation")


def _setting(config: ModelConfig, dotted: str) -> object:
    """The value of a dotted field (``gtm.mode``) of a model config."""
    value: object = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _release_prefixes(num_downsamples: int) -> dict[str, str]:
    """Released module prefix -> ours; every parameter and buffer below keeps its own name."""
    n = num_downsamples
    prefixes = {
        "hrnet.": "backbone.",
        "feat_global_offset_layers.0.layers.": "gtm.encoder.0.",
        # Released: 1..n convs, n+1 Flatten, n+2..n+4 Linear. Ours: n+1 pool, n+2 Flatten,
        # n+3 Linear, n+4 activation, n+5 Linear, n+6 activation, then to_params.
        f"feat_global_offset_layers.{n + 2}.": f"gtm.encoder.{n + 3}.",
        f"feat_global_offset_layers.{n + 3}.": f"gtm.encoder.{n + 5}.",
        f"feat_global_offset_layers.{n + 4}.": "gtm.to_params.",
        "combined_feat_layers.layers.": "calibration.combine.",
        "sup_agg_block.layers.": "merge_supports.",
        "init_feature_agg_block.layers.": "fuse.",
        "agg_final_layer.": "head.conv.",
    }
    for i in range(1, n + 1):
        prefixes[f"feat_global_offset_layers.{i}.conv."] = f"gtm.encoder.{i}.0."
        prefixes[f"feat_global_offset_layers.{i}.bn."] = f"gtm.encoder.{i}.1."
    for k in range(4):
        prefixes[f"dcn_offset_{k + 1}.conv."] = f"calibration.params.{k}.offset."
        prefixes[f"dcn_mask_{k + 1}.conv."] = f"calibration.params.{k}.mask."
        prefixes[f"dcn_{k + 1}."] = f"calibration.deforms.{k}."
    return prefixes


def _rename(key: str, prefixes: Mapping[str, str]) -> str | None:
    """Our name of a released key, or ``None`` when no released module holds it."""
    for released, ours in prefixes.items():
        if key.startswith(released):
            return ours + key[len(released) :]
    return None


def convert_release(source: StateSource, config: ModelConfig = RELEASED_MODEL) -> dict[str, Tensor]:
    """Map a released ``Alignment_V15`` state dict onto a ``famipose_official`` model.

    Folds the GTM conv biases into the following BatchNorm's running mean and converts the GTM
    translation into the target's units (see the module docstring).

    Args:
        source: Released checkpoint file or state dict (``module.`` and ``state_dict`` wrappers
            are accepted).
        config: The target model; it must compute what the release computes (variant, GTM mode,
            input and linear activation, raw mask, dilation), sizes are checked by shape.

    Returns:
        A state dict that loads into ``FamiPose(config)`` with ``strict=True``.

    Raises:
        ValueError: If ``config`` does not describe the released computation.
        CheckpointError: If the source cannot be read, holds keys of no released module, or the
            result does not fit ``FamiPose(config)``; the message names the file and the keys.
    """
    differing = [
        f"{name}={_setting(config, name)!r} (release: {_setting(RELEASED_MODEL, name)!r})"
        for name in _RELEASE_COMPUTATION
        if _setting(config, name) != _setting(RELEASED_MODEL, name)
    ]
    if differing:
        raise ValueError(f"the released model cannot be converted into this config: {', '.join(differing)}")
    name = _source_name(source)
    released = read_state_dict(source)
    n = config.gtm.num_downsamples
    folded = {f"feat_global_offset_layers.{i}.conv.bias": f"gtm.encoder.{i}.1.running_mean" for i in range(1, n + 1)}
    prefixes = _release_prefixes(n)
    renamed = {key: _rename(key, prefixes) for key in released if key not in folded}
    unmapped = [key for key, ours in renamed.items() if ours is None]
    absent = [key for key in folded if key not in released]
    if unmapped or absent:
        listing = "; ".join(x for x in (_listing("unmapped keys", unmapped), _listing("missing keys", absent)) if x)
        raise CheckpointError(f"checkpoint {name} is not a released Alignment_V15 state dict: {listing}")
    state = {ours: released[key].detach().clone() for key, ours in renamed.items() if ours is not None}
    for bias, mean in folded.items():
        if mean in state:  # otherwise reported missing below
            state[mean] = state[mean] - released[bias]
    if config.gtm.translation_units == "normalized" and {"gtm.to_params.weight", "gtm.to_params.bias"} <= state.keys():
        weight = state["gtm.to_params.weight"]  # (2, F): rows t_x, t_y in pixels
        scale = pixels_to_normalized(weight.new_ones(1, 2), config.heatmap_size)[0]  # (2,)
        state["gtm.to_params.weight"] = weight * scale[:, None]
        state["gtm.to_params.bias"] = state["gtm.to_params.bias"] * scale
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        report = compare_state_dict(FamiPose(config), state)
    if not report.ok:
        raise CheckpointError(f"checkpoint {name} does not convert into {config.variant}: {report.describe()}")
    return state


def convert_release_file(
    source: str | os.PathLike[str], out: str | os.PathLike[str], config: ModelConfig = RELEASED_MODEL
) -> Path:
    """Convert a released checkpoint file (:func:`convert_release`) and save the state dict.

    The written file loads with ``famipose test/video/export --checkpoint`` and a
    ``famipose_official`` config.

    Returns:
        The written path.
    """
    return atomic_save(convert_release(source, config), out)


# ---------------------------------------------------------------------------------------------
# Official HRNet pose checkpoints (pose_hrnet_w32_256x192.pth, pose_hrnet_w48_384x288.pth, ...)
# ---------------------------------------------------------------------------------------------

OFFICIAL_NUM_JOINTS = 17  # the COCO keypoints of the official COCO checkpoints
_HEATMAP_LAYER = "final_layer.weight"  # (K, width, 1, 1): the official pose head
_SIZE_IN_NAME = re.compile(r"(\d+)x(\d+)")
_HRNET_MODULES = ("conv1.", "bn1.", "conv2.", "bn2.", "layer1.", "transition", "stage", "final_layer.")


def parse_size(text: str) -> tuple[int, int]:
    """An ``HEIGHTxWIDTH`` string, as in the official file names (``384x288``), as ``(w, h)``.

    Raises:
        ValueError: Not two positive multiples of 4 joined by ``x``.
    """
    match = _SIZE_IN_NAME.fullmatch(text.strip())
    height, width = (int(v) for v in match.groups()) if match else (0, 0)
    if min(height, width) <= 0 or height % 4 or width % 4:
        raise ValueError(f"input size {text!r} must be HEIGHTxWIDTH in pixels, multiples of 4 (e.g. 384x288)")
    return width, height


def size_from_file_name(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """The ``(w, h)`` an official file name states (``pose_hrnet_w48_384x288.pth`` → (288, 384)), or None."""
    matches = _SIZE_IN_NAME.findall(Path(path).stem)
    return parse_size("x".join(matches[-1])) if matches else None


def is_official_hrnet(state: Mapping[str, Tensor]) -> bool:
    """Whether a state dict has the official HRNet pose layout: ``conv1``, a (K, C, 1, 1)
    ``final_layer`` and no module HRNet does not have."""
    head = state.get(_HEATMAP_LAYER)
    return (
        "conv1.weight" in state
        and head is not None
        and head.dim() == 4
        and head.shape[2:] == (1, 1)
        and all(key.startswith(_HRNET_MODULES) for key in state)
    )


def _not_official_reason(state: Mapping[str, Tensor]) -> str:
    """Why a state dict is not an official HRNet pose state dict, in words."""
    classifier = [key for key in ("classifier.weight", "fc.weight", "head.fc.weight") if key in state]
    if classifier:
        return f"it looks like an image classifier (it has {classifier[0]!r}), not a pose model"
    foreign = [key for key in state if not key.startswith(_HRNET_MODULES)]
    if foreign:
        return f"{_listing('keys of no HRNet module', foreign)}"
    if _HEATMAP_LAYER in state:
        return f"{_HEATMAP_LAYER!r} is {list(state[_HEATMAP_LAYER].shape)}, not a (K, C, 1, 1) heatmap layer"
    return f"it has no {_HEATMAP_LAYER!r} heatmap layer" + ("" if "conv1.weight" in state else " and no 'conv1.weight'")


def _official_input_size(source: StateSource, input_size: tuple[int, int] | None) -> tuple[int, int]:
    """The crop size of an official checkpoint: the file name's, or ``input_size`` (they must agree)."""
    named = None if isinstance(source, Mapping) else size_from_file_name(source)
    if named is not None and input_size is not None and named != input_size:
        raise CheckpointError(
            f"checkpoint {_source_name(source)} is named for {named[1]}x{named[0]} (HxW) but the input size "
            f"{input_size[1]}x{input_size[0]} was asked for; drop the size flag or rename the file"
        )
    size = named or input_size
    if size is None:
        raise CheckpointError(
            f"checkpoint {_source_name(source)}: its name states no input size (like ..._256x192.pth); "
            "pass --input-size HEIGHTxWIDTH"
        )
    return size


def official_hrnet_config(
    state: Mapping[str, Tensor], source: StateSource, input_size: tuple[int, int] | None = None
) -> ModelConfig:
    """The single-frame model an official HRNet COCO state dict describes.

    The width (32, 48, or 16 for our ``tiny`` preset) comes from the ``final_layer`` shape
    (17, width, 1, 1), the input size from the file name (``pose_hrnet_w48_384x288.pth``: h 384,
    w 288) or ``input_size``.

    Args:
        state: The state dict (as :func:`read_state_dict` returns it).
        source: Where it came from: the file whose name may state the size, or a mapping.
        input_size: Crop size ``(w, h)`` when the file name has none; must agree with it otherwise.

    Returns:
        A ``single_frame`` config with 17 joints.

    Raises:
        CheckpointError: Not an official HRNet pose state dict (e.g. a classifier), a width
            without preset, not 17 joints, no size or disagreeing sizes; the message names the file.
    """
    name = _source_name(source)
    if not is_official_hrnet(state):
        reason = _not_official_reason(state)
        raise CheckpointError(f"checkpoint {name} is not an official HRNet pose state dict: {reason}")
    joints, width = state[_HEATMAP_LAYER].shape[:2]
    presets = {spec.width: preset for preset, spec in HRNET_SPECS.items()}
    if width not in presets:
        raise CheckpointError(f"checkpoint {name} is an HRNet of width {width}; known widths: {sorted(presets)}")
    if joints != OFFICIAL_NUM_JOINTS:
        raise CheckpointError(f"checkpoint {name} predicts {joints} joints; only the {OFFICIAL_NUM_JOINTS} COCO "
                              "joints are supported (MPII checkpoints are not)")
    return ModelConfig(
        variant="single_frame",
        num_joints=OFFICIAL_NUM_JOINTS,
        input_size=_official_input_size(source, input_size),
        backbone=BackboneConfig(name=presets[width]),
    )


def official_hrnet_model(
    state: Mapping[str, Tensor], source: StateSource, input_size: tuple[int, int] | None = None
) -> tuple[FamiPose, ModelConfig]:
    """The single-frame model of an official HRNet COCO checkpoint, with its weights.

    The config comes from :func:`official_hrnet_config`; every key must then match
    :class:`~famipose.models.hrnet.HRNet` exactly.

    Args:
        state: The bare state dict, as :func:`read_state_dict` returns it.
        source: Where it came from: the file whose name may state the size, or a mapping.
        input_size: Crop size ``(w, h)`` when the file name has none; must agree with it otherwise.

    Returns:
        The model in eval mode on the CPU, and its config.

    Raises:
        CheckpointError: :func:`official_hrnet_config` refuses the state dict, or a key does not
            fit; the message names the file.
    """
    config = official_hrnet_config(state, source, input_size)
    model = FamiPose(config)
    report = compare_state_dict(model.backbone, state)
    if not report.ok:
        raise CheckpointError(
            f"checkpoint {_source_name(source)} does not fit HRNet {config.backbone.name}: {report.describe()}"
        )
    model.backbone.load_state_dict(state, strict=False)
    return model.eval(), config


# ---------------------------------------------------------------------------------------------
# Weights of a whole FamiPose network
# ---------------------------------------------------------------------------------------------


def famipose_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A state dict with its keys mapped onto :class:`FamiPose`'s (a key filter for foreign layouts).

    ``module.`` (DataParallel / DDP) prefixes are dropped, and an official HRNet pose state dict
    gets its keys put under ``backbone.``; any other key is kept. Released FAMI-Pose weights need
    more than renaming: :func:`convert_release`.

    Args:
        state: ``{key: tensor}`` as stored.

    Returns:
        ``{FamiPose key: tensor}``.
    """
    state = {str(key).removeprefix("module."): value for key, value in state.items()}
    if is_official_hrnet(state):
        return {f"backbone.{key}": value for key, value in state.items()}
    return state


def read_model_state(source: StateSource) -> dict[str, Tensor]:
    """The network weights of a training checkpoint, a ``.safetensors`` export or a state dict.

    Unlike :func:`read_state_dict`, keys are kept as they are (``backbone.*`` included), so the
    result loads into a whole :class:`FamiPose`; foreign layouts are mapped by
    :func:`famipose_keys` (an official HRNet state dict ``pose_hrnet_w32_256x192.pth`` goes
    under ``backbone.``).

    Args:
        source: A path or an in-memory checkpoint.

    Returns:
        ``{parameter name: tensor}``.

    Raises:
        CheckpointError: The file cannot be read or holds no tensor state dict.
    """
    return famipose_keys(_tensor_state(source))


def load_model(config: ModelConfig, source: StateSource) -> FamiPose:
    """A network built from ``config`` with the weights of a checkpoint or ``.safetensors`` file.

    Raises:
        CheckpointError: The file cannot be read or does not fit the configured network.
    """
    model = FamiPose(config)
    state = read_model_state(source)
    report = compare_state_dict(model, state)
    if not report.ok:
        raise CheckpointError(
            f"checkpoint {_source_name(source)} does not fit the configured model: {report.describe()}"
        )
    model.load_state_dict(state, strict=False)
    return model


def load_matching(model: nn.Module, source: StateSource) -> list[str]:
    """Load the tensors of a checkpoint whose names exist in ``model`` (the shapes must agree).

    Args:
        model: Target network (modified in place).
        source: A training checkpoint, ``.safetensors`` export, state-dict file or official HRNet
            state dict (``pose_hrnet_w48_384x288.pth``, loaded into ``backbone``).

    Returns:
        The names loaded.

    Raises:
        CheckpointError: A tensor of the checkpoint has another shape than the model's tensor of
            the same name (a checkpoint of another backbone), or nothing matches.
    """
    expected = model.state_dict()
    offered = read_model_state(source)
    misfits = [key for key, value in offered.items() if key in expected and expected[key].shape != value.shape]
    if misfits:
        first = misfits[0]
        raise CheckpointError(
            f"checkpoint {_source_name(source)}: {len(misfits)} of its tensors have other shapes than the model's "
            f"({first}: {list(offered[first].shape)} vs {list(expected[first].shape)}); a checkpoint of another "
            "backbone or head?"
        )
    state = {key: value for key, value in offered.items() if key in expected}
    if not state:
        raise CheckpointError(
            f"checkpoint {_source_name(source)} shares no tensor name and shape with {type(model).__name__}"
        )
    model.load_state_dict(state, strict=False)
    return sorted(state)


def export_safetensors(checkpoint: StateSource, path: str | os.PathLike[str]) -> Path:
    """Write the network weights of a checkpoint as a ``.safetensors`` file.

    Args:
        checkpoint: A training checkpoint (path or dict) or a state dict.
        path: Output file.

    Returns:
        The output path.

    Raises:
        CheckpointError: The checkpoint cannot be read or holds no tensor state dict.
    """
    state = {key: value.detach().cpu().contiguous().clone() for key, value in read_model_state(checkpoint).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path
