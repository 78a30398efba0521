"""Forward and forward+backward time of each model variant, as a ratio to the single-frame model.

All variants of one backbone width run interleaved in one process on the same inputs (after a
warm-up); the median of ``--repeats`` runs is reported, and each variant's time is divided by the
single-frame HRNet of the same width measured in the same run, so machine noise mostly cancels.

    .venv/bin/python benchmarks/model_speed.py --widths tiny w32 --size 192x256 --batch 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from famipose.config import load_config
from famipose.models.famipose import FamiPose

VARIANTS: dict[str, list[str]] = {
    "single_frame": ["model.variant=single_frame", "loss.mi_form=none"],
    "famipose": ["model.variant=famipose"],
    "famipose_official": [
        "model.variant=famipose_official",
        "model.gtm.mode=translation",
        "model.gtm.input=difference",
        "model.lcm.mask=raw",
    ],
    "famipose_simcc": ["model.variant=famipose", "model.head.kind=simcc"],
}
OFFSET_GROUPS = {"tiny": 4, "w32": 8, "w48": 12}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", nargs="+", default=["tiny", "w32"], choices=sorted(OFFSET_GROUPS))
    parser.add_argument("--size", default="192x256", help="input WxH")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args()


def build(width: str, variant: str, size: tuple[int, int], device: str) -> FamiPose:
    """Model of one variant and width with the backbone trainable (so backward covers it too)."""
    overrides = [
        f"model.backbone.name={width}",
        f"model.input_size=[{size[0]}, {size[1]}]",
        f"model.lcm.offset_groups={OFFSET_GROUPS[width]}",
        *VARIANTS[variant],
    ]
    return FamiPose(load_config(None, overrides).model).to(device)


def timed(fn: Callable[[], None], device: str) -> float:
    """Wall time of one call, synchronising CUDA around it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    """Run the benchmark and print one table per width."""
    args = parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    gen = torch.Generator().manual_seed(0)
    key = torch.randn(args.batch, 3, size[1], size[0], generator=gen).to(args.device)
    supports = torch.randn(args.batch, 4, 3, size[1], size[0], generator=gen).to(args.device)
    print(f"input {size[0]}x{size[1]}, batch {args.batch}, device {args.device}, threads {torch.get_num_threads()}")
    for width in args.widths:
        models = {name: build(width, name, size, args.device) for name in VARIANTS}

        def forward(model: FamiPose) -> None:
            with torch.no_grad():
                model.eval()(key, supports)

        def train_step(model: FamiPose) -> None:
            out = model.train()(key, supports)
            sum(d.float().mean() for d in out.pose.flat_distributions()).backward()
            model.zero_grad(set_to_none=True)

        times: dict[str, dict[str, list[float]]] = {n: {"fwd": [], "fwd+bwd": []} for n in models}
        for repeat in range(args.repeats + 1):  # the first round is a warm-up
            for name, model in models.items():
                fwd = timed(lambda m=model: forward(m), args.device)
                step = timed(lambda m=model: train_step(m), args.device)
                if repeat:
                    times[name]["fwd"].append(fwd)
                    times[name]["fwd+bwd"].append(step)
        base = {k: statistics.median(v) for k, v in times["single_frame"].items()}
        print(f"\n{width}: median of {args.repeats}")
        print(f"{'variant':<20}{'fwd s':>9}{'ratio':>8}{'fwd+bwd s':>12}{'ratio':>8}")
        for name, t in times.items():
            fwd, step = statistics.median(t["fwd"]), statistics.median(t["fwd+bwd"])
            print(f"{name:<20}{fwd:>9.3f}{fwd / base['fwd']:>8.2f}{step:>12.3f}{step / base['fwd+bwd']:>8.2f}")


if __name__ == "__main__":
    main()
