"""The checks to run when a CUDA machine is lent: training steps/s, the two DCN paths, video modes.

1. Training steps/s of the real loss (pose loss + the config's MI, Adam step included) on random
   batches: the single-frame W48 model (``configs/single_frame_w48_384x288.yaml``, backbone
   trained) against FAMI-Pose W48 stage 2 with its frozen backbone
   (``configs/famipose_w48_384x288.yaml``), each with AMP off and on (AMP is CUDA-only: "n/a" on a
   CPU). The ratio to the single-frame step is the cost of the temporal model per step.
2. ``benchmarks/dcn.py --device DEVICE``: torchvision's and the pure-PyTorch deformable convolution,
   forward and forward + backward.
3. ``benchmarks/video_own_speed.py --device DEVICE``: person-frames/s of ``famipose video`` in
   ``--mode fast`` and ``exact`` (and single-frame W32/W48) on the PoseTrack18 sample.

On CUDA (one run, about 10 minutes on one GPU):

    .venv/bin/python benchmarks/gpu_check.py --device cuda

``--tiny`` runs part 1 with the tiny backbone at 96x128 and part 2 at a small size, on any device
(how the test covers it on a CPU); part 3 needs the shared sample and is skipped with ``--tiny``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from famipose.config import Config, load_config
from famipose.losses import PoseTargets, compute_loss
from famipose.models.famipose import FamiPose

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@dataclass(frozen=True)
class StepSetting:
    """One model to time: its shipped config and the overrides that size it."""

    label: str
    config: str
    overrides: tuple[str, ...] = ()


def step_settings(tiny: bool) -> list[StepSetting]:
    """The single-frame model and FAMI-Pose stage 2 (frozen backbone), W48 or tiny."""
    size = ("model.backbone.name=tiny", "model.input_size=[96, 128]", "model.lcm.offset_groups=4") if tiny else ()
    frozen = (*size, "model.backbone.frozen=true")
    return [
        StepSetting("single-frame (backbone trained)", "single_frame_w48_384x288", size),
        StepSetting("FAMI-Pose stage 2 (backbone frozen)", "famipose_w48_384x288", frozen),
    ]


def random_batch(config: Config, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, PoseTargets]:
    """Key crops (B, 3, H, W), support crops (B, S, 3, H, W) and heatmap targets (B, K, h, w)."""
    gen = torch.Generator().manual_seed(0)
    width, height = config.model.input_size
    map_w, map_h = config.model.heatmap_size
    supports = max(1, len(config.model.deltas))
    key = torch.randn(batch, 3, height, width, generator=gen)
    support = torch.randn(batch, supports, 3, height, width, generator=gen)
    heatmaps = torch.rand(batch, config.model.num_joints, map_h, map_w, generator=gen)
    weights = torch.ones(batch, config.model.num_joints, device=device)
    targets = PoseTargets(weights=weights, heatmaps=heatmaps.to(device))
    return key.to(device), support.to(device), targets


def train_steps_per_second(setting: StepSetting, device: torch.device, amp: bool, batch: int, steps: int) -> float:
    """Optimiser steps per second of ``setting`` (after two warm-up steps).

    Raises:
        ValueError: ``amp`` on a device other than CUDA.
    """
    if amp and device.type != "cuda":
        raise ValueError("AMP needs CUDA")
    config = load_config(ROOT / "configs" / f"{setting.config}.yaml", list(setting.overrides))
    torch.manual_seed(0)
    model = FamiPose(config.model).to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(trainable, lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    key, supports, targets = random_batch(config, batch, device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = compute_loss(model(key, supports), targets, config.loss, model.probe).total
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps / (time.perf_counter() - start)


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8, help="training batch (the released recipe uses 48 on one GPU)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per setting")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, parts 1-2 only (any device)")
    return parser.parse_args()


def main() -> None:
    """Print the three parts; parts 2 and 3 are the other benchmarks' own output."""
    args = parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}, batch {args.batch}, {args.steps} steps")
    print("1. training steps/s (pose loss + MI as configured, Adam step)")
    baseline = None
    for setting in step_settings(args.tiny):
        for amp in (False, True):
            if amp and device.type != "cuda":
                print(f"  {setting.label:38s} AMP on : n/a (CUDA only)")
                continue
            rate = train_steps_per_second(setting, device, amp, args.batch, args.steps)
            baseline = baseline or rate
            print(f"  {setting.label:38s} AMP {'on ' if amp else 'off'}: {rate:7.2f} steps/s  ({rate / baseline:.2f}x)")
    small = ["--batch", "1", "--height", "24", "--width", "18", "--repeats", "2"] if args.tiny else []
    dcn = ["--device", args.device, *small]
    print("2. deformable convolution", flush=True)
    subprocess.run([sys.executable, str(BENCHMARKS / "dcn.py"), *dcn], check=True)
    if not args.tiny:
        print("3. famipose video, fast vs exact", flush=True)
        subprocess.run([sys.executable, str(BENCHMARKS / "video_own_speed.py"), "--device", args.device], check=True)


if __name__ == "__main__":
    main()
