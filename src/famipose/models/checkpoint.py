"""Reading and loading model weights, including the official HRNet / FAMI-Pose checkpoints.

Checkpoints are read with ``torch.load(..., weights_only=True)`` onto the CPU. Every failure
(unreadable file, not a state dict, key or shape mismatch) raises ``CheckpointError`` with a
message that names the file or the offending keys, never a raw torch error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

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


def _load_file(path: Path) -> object:
    """``torch.load`` a file onto the CPU, turning every failure into ``CheckpointError``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types for missing, truncated or foreign files
        raise CheckpointError(f"cannot read checkpoint {_source_name(path)}: {err}") from err


def read_state_dict(source: StateSource) -> dict[str, Tensor]:
    """Read a state dict from a file or a mapping and normalise its keys.

    Accepts a raw state dict or a dict wrapping it under ``"state_dict"`` or ``"model"``;
    strips ``module.`` and ``backbone.`` prefixes.

    Args:
        source: Path of a checkpoint file, or an in-memory mapping.

    Returns:
        ``{parameter name: tensor}``.

    Raises:
        CheckpointError: If the file cannot be read or holds no tensor state dict.
    """
    name = _source_name(source)
    content = source if isinstance(source, Mapping) else _load_file(Path(source))
    for key in WRAPPER_KEYS:
        if isinstance(content, Mapping) and isinstance(content.get(key), Mapping):
            content = content[key]
            break
    if not isinstance(content, Mapping):
        raise CheckpointError(f"checkpoint {name} holds a {type(content).__name__}, not a state dict")
    non_tensors = [str(k) for k, v in content.items() if not isinstance(v, Tensor)]
    if non_tensors:
        raise CheckpointError(f"checkpoint {name} is not a state dict; non-tensor entries: {non_tensors[:5]}")
    state = {_strip_prefixes(str(k)): v for k, v in content.items()}
    if len(state) != len(content):
        raise CheckpointError(f"checkpoint {name} has keys that collide once prefixes are stripped")
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


def load_weights(module: nn.Module, source: StateSource, strict: bool = True, prefix: str = "") -> LoadReport:
    """Load a checkpoint into ``module``.

    Args:
        module: Target module; its parameters and buffers are overwritten in place.
        source: Checkpoint path or mapping (see ``read_state_dict``).
        strict: Raise on any missing, unexpected or wrong-shape key (nothing is loaded then).
            When False, only keys that exist with the right shape are loaded.
        prefix: Use only the keys starting with this prefix, with the prefix removed, e.g.
            ``"backbone_net."`` to load a sub-network out of a larger checkpoint.

    Returns:
        The differences that were tolerated (empty when ``strict``).

    Raises:
        CheckpointError: If the source cannot be read or, with ``strict``, does not fit.
    """
    state = read_state_dict(source)
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
