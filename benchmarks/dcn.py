"""Times torchvision's and the pure-PyTorch modulated deformable convolution in one run.

Both implementations run interleaved on the same float32 operands (after a warm-up) and the
median of ``--repeats`` timings is reported for the forward pass (inference mode) and for
forward + backward (gradients w.r.t. input, offset, mask, weight and bias, as in training).

    .venv/bin/python benchmarks/dcn.py --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from famipose.models.dcn import IMPLS, conv_output_size, deform_conv2d

IMPLEMENTATIONS: tuple[str, ...] = tuple(name for name in IMPLS if name != "auto")
KERNEL_SIZE = 3


def parse_args() -> argparse.Namespace:
    """Command-line options; defaults: a FAMI-Pose-sized DCN on 96x72 features of a 384x288 input."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=48, help="input and output channels")
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=72)
    parser.add_argument("--groups", type=int, default=12, help="offset groups")
    parser.add_argument("--dilation", type=int, default=3, help="dilation (and padding, keeping H x W)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    return parser.parse_args()


def make_operands(args: argparse.Namespace) -> dict[str, Tensor]:
    """Random float32 operands with offsets of a few pixels and a sigmoid mask."""
    gen = torch.Generator().manual_seed(0)
    taps = KERNEL_SIZE * KERNEL_SIZE
    out_h, out_w = conv_output_size(
        (args.height, args.width), (KERNEL_SIZE, KERNEL_SIZE), 1, args.dilation, args.dilation
    )
    shapes = {
        "x": (args.batch, args.channels, args.height, args.width),
        "offset": (args.batch, 2 * args.groups * taps, out_h, out_w),
        "mask": (args.batch, args.groups * taps, out_h, out_w),
        "weight": (args.channels, args.channels, KERNEL_SIZE, KERNEL_SIZE),
        "bias": (args.channels,),
    }
    operands = {name: torch.randn(shape, generator=gen) for name, shape in shapes.items()}
    operands["offset"] = operands["offset"] * 2
    operands["mask"] = operands["mask"].sigmoid()
    operands["weight"] = operands["weight"] * 0.05
    return {name: tensor.to(args.device).requires_grad_() for name, tensor in operands.items()}


def run(operands: dict[str, Tensor], impl: str, dilation: int) -> Tensor:
    """One deformable convolution with padding = dilation (output size = input size)."""
    return deform_conv2d(
        operands["x"],
        operands["offset"],
        operands["weight"],
        operands["bias"],
        padding=dilation,
        dilation=dilation,
        mask=operands["mask"],
        impl=impl,  # type: ignore[arg-type]
    )


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of one call, synchronising CUDA around it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def forward_fn(operands: dict[str, Tensor], impl: str, dilation: int) -> Callable[[], object]:
    """Forward pass in inference mode."""

    def call() -> object:
        with torch.inference_mode():
            return run(operands, impl, dilation)

    return call


def forward_backward_fn(operands: dict[str, Tensor], impl: str, dilation: int) -> Callable[[], object]:
    """Forward plus backward of the summed output w.r.t. every operand."""
    inputs = tuple(operands.values())

    def call() -> object:
        return torch.autograd.grad(run(operands, impl, dilation).sum(), inputs)

    return call


def main() -> None:
    """Checks both paths agree, then prints median times and torchvision / pure-torch ratios."""
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    operands = make_operands(args)
    with torch.no_grad():
        outputs = [run(operands, impl, args.dilation) for impl in IMPLEMENTATIONS]
    print(
        f"B={args.batch} C={args.channels} H={args.height} W={args.width} groups={args.groups} "
        f"dilation={args.dilation} device={device} threads={torch.get_num_threads()} "
        f"max|diff|={(outputs[0] - outputs[1]).abs().max().item():.2e}"
    )
    for label, factory in (("forward", forward_fn), ("forward+backward", forward_backward_fn)):
        fns = {impl: factory(operands, impl, args.dilation) for impl in IMPLEMENTATIONS}
        times: dict[str, list[float]] = {impl: [] for impl in IMPLEMENTATIONS}
        for step in range(args.warmup + args.repeats):
            order = IMPLEMENTATIONS if step % 2 == 0 else IMPLEMENTATIONS[::-1]
            for impl in order:
                seconds = timed(fns[impl], device)
                if step >= args.warmup:
                    times[impl].append(seconds)
        medians = {impl: statistics.median(values) for impl, values in times.items()}
        summary = "  ".join(f"{impl}={medians[impl] * 1e3:8.1f} ms" for impl in IMPLEMENTATIONS)
        print(f"{label:>17}: {summary}  torchvision/torch={medians['torchvision'] / medians['torch']:.2f}x")


if __name__ == "__main__":
    main()
