"""Single-process and ``torchrun`` (DDP) execution: process group, device, collectives, BatchNorm.

``init_distributed`` reads the variables ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``); without them the run is a single process. Under DDP the backend is NCCL on CUDA
and gloo on the CPU, rank 0 alone logs and writes files, and evaluation predictions are gathered
to rank 0.

BatchNorm under DDP. Per-process batch statistics would make a run on N processes differ from one
process with the same global batch, so trainable BatchNorm layers are synchronised: with
``torch.nn.SyncBatchNorm`` on CUDA, and with :class:`GlobalBatchNorm2d` on the CPU, where PyTorch's
SyncBatchNorm refuses to run. Both normalise with the statistics of the global batch, so the
gradients equal those of a single process (up to floating-point summation order).

Shape symbols: B per-process batch, C channels, H/W spatial size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from famipose.device import resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process runs.

    Attributes:
        rank: Global rank (0 for a single process).
        world_size: Number of processes.
        local_rank: Rank on this machine (selects the CUDA device).
        device: The device this process computes on.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes files (rank 0)."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1


def init_distributed(device_preference: str) -> DistributedContext:
    """Join the ``torchrun`` process group when launched by it; otherwise run as one process.

    Args:
        device_preference: ``train.device``.

    Returns:
        The context of this process.

    Raises:
        ConfigError: ``train.device=cuda`` without an available GPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, device)


def shutdown_distributed(context: DistributedContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if context.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: Tensor, context: DistributedContext) -> Tensor:
    """Mean of a tensor over processes (the tensor itself for a single process)."""
    if not context.is_distributed:
        return value
    reduced = value.detach().clone()
    dist.all_reduce(reduced)
    return reduced / context.world_size


def any_process(flag: bool | Tensor, context: DistributedContext) -> bool:
    """Whether ``flag`` is true on at least one process.

    A tensor flag (0-d, on ``context.device``) is reduced where it lies and read on the host once:
    one device sync, with or without DDP.
    """
    if not context.is_distributed:
        return bool(flag)
    value = flag.reshape(1).float() if isinstance(flag, Tensor) else torch.tensor([float(flag)], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_to_main(items: list[T], context: DistributedContext) -> list[T]:
    """Concatenate per-process lists on rank 0 (other ranks get an empty list)."""
    if not context.is_distributed:
        return items
    gathered: list[list[T] | None] = [None] * context.world_size if context.is_main else []
    dist.gather_object(items, gathered if context.is_main else None, dst=0)
    return [item for part in gathered if part is not None for item in part]


def broadcast_from_main(value: Any, context: DistributedContext) -> Any:
    """Rank 0's ``value`` on every process."""
    if not context.is_distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose gradient is the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training, normalises with the statistics of the batch of all processes.

    A differentiable all-reduce of the per-channel sums makes the gradients those of one large
    batch. Works with any backend (gloo on the CPU); statistics are accumulated in float32.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Normalise (B, C, H, W) with global batch statistics in training, running ones otherwise."""
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        x32 = x.float()
        local = torch.cat([x32.sum((0, 2, 3)), x32.pow(2).sum((0, 2, 3)), x32.new_tensor([x[:, 0].numel()])])
        total = _AllReduceSum.apply(local)  # (2C + 1,)
        channels = self.num_features
        count = total[-1]
        mean = total[:channels] / count  # (C,)
        var = (total[channels : 2 * channels] / count - mean.pow(2)).clamp(min=0)  # (C,)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(unbiased, factor)
        scale = torch.rsqrt(var + self.eps)  # (C,)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        return (x32 * scale[:, None, None] + shift[:, None, None]).to(x.dtype)  # (B, C, H, W)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` of ``module`` with :class:`GlobalBatchNorm2d`, sharing weights.

    Parameters and buffers are reused (same names, same ``requires_grad``), so state dicts and
    optimisers are unaffected.

    Args:
        module: The network (modified in place).

    Returns:
        ``module`` itself, or the replacement when ``module`` is a BatchNorm2d.
    """
    if type(module) is nn.BatchNorm2d:
        replacement = GlobalBatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        for name, parameter in module.named_parameters(recurse=False):
            setattr(replacement, name, parameter)
        for name, buffer in module.named_buffers(recurse=False):
            setattr(replacement, name, buffer)
        replacement.train(module.training)
        return replacement
    for name, child in module.named_children():
        setattr(module, name, convert_batchnorm(child))
    return module


def wrap_model(model: nn.Module, context: DistributedContext) -> nn.Module:
    """Wrap a model on ``context.device`` in DDP with synchronised BatchNorm (itself for one process).

    Args:
        model: The network, already on ``context.device``.
        context: This process.

    Returns:
        The module whose forward training calls.
    """
    if not context.is_distributed:
        return model
    if context.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids: list[int] | None = [context.device.index or 0]
    else:
        model = convert_batchnorm(model)
        device_ids = None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
