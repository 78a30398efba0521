"""‖∇(α·L_MI)‖ / ‖∇L_pose‖ at initialisation for every shipped config with an MI objective.

For each config under ``configs/`` whose ``loss.mi_form`` is not ``none``, the model is built as
training builds it (seeded; ``--init-heatmap`` / ``--init-simcc`` load stage-1 weights as
``train.init_from`` does), one training batch is read from real data with the config's own crops,
targets and augmentation (the tiny configs from a SynthTrack root, the W48 configs from a PoseTrack
root such as the shared PoseTrack18 sample), and the ratio of the two gradient norms over the
trainable parameters outside the backbone is printed: the number the trainer logs on every logged
step as ``mi/grad_ratio``. ``--per-tensor K`` also lists the K parameter tensors where the MI
gradient is largest next to the pose loss's (under Adam, which normalises each parameter on its
own, a term that dominates a tensor steers it whatever the global ratio); ``--set`` overrides
config keys (e.g. ``loss.mi_feature_axis=channel``), and ``--init-heatmap`` may be any checkpoint,
such as the end of a stage-2 run.

    .venv/bin/python benchmarks/mi_balance.py --synth-root runs/loss_layer/synthtrack \\
        --init-heatmap runs/loss_layer/stage1_heatmap/best.pth --init-simcc runs/loss_layer/stage1_simcc/best.pth \\
        --posetrack-root ../shared/data/posetrack18_sample
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from famipose.config import Config, load_config
from famipose.data.dataset import collate_windows
from famipose.engine.builders import build_model, build_train_dataset
from famipose.engine.train import batch_targets
from famipose.losses import compute_loss

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synth-root", type=Path, required=True, help="SynthTrack root with annotations/train")
    parser.add_argument("--posetrack-root", type=Path, help="PoseTrack root with annotations/val (W48 configs)")
    parser.add_argument("--init-heatmap", type=Path, help="stage-1 weights for the tiny heatmap configs")
    parser.add_argument("--init-simcc", type=Path, help="stage-1 weights for the tiny SimCC configs")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--configs", nargs="*", help="config names (default: every config with MI)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every config")
    parser.add_argument("--per-tensor", type=int, default=0, metavar="K", help="list the K most MI-dominated tensors")
    return parser.parse_args()


@dataclass
class Balance:
    """One config's gradient balance at its starting weights."""

    config: Config
    ratio: float  # ‖∇(α·L_MI)‖ / ‖∇L_pose‖ over the trainable parameters outside the backbone
    tensors: list[tuple[str, float, float]]  # (name, ‖∇pose‖, ‖∇MI‖), most MI-dominated first
    divergences: dict[str, float]  # each MI estimator's value on the batch (``mi/<term>``)


def measure(name: str, args: argparse.Namespace) -> Balance | None:
    """The balance of one config, or ``None`` when its data is not given."""
    config = load_config(CONFIGS / f"{name}.yaml")
    tiny = config.model.backbone.name == "tiny"
    root = args.synth_root if tiny else args.posetrack_root
    if root is None:
        return None
    init = (args.init_simcc if config.model.head.kind == "simcc" else args.init_heatmap) if tiny else None
    overrides = [
        f"data.root={root}", "data.train_annotations=annotations/" + ("train" if tiny else "val"),
        f"train.init_from={init or 'null'}", "train.device=cpu", *args.set,
    ]  # fmt: skip
    config = load_config(CONFIGS / f"{name}.yaml", overrides)
    model = build_model(config.model, config.train).train()
    dataset = build_train_dataset(config.data, config.model, config.train.seed)
    batch = collate_windows([dataset[i] for i in range(min(args.batch, len(dataset)))])
    output = model(batch.key, batch.supports)
    loss = compute_loss(output, batch_targets(batch), config.loss, model.probe)
    assert loss.mi is not None
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    parameters = [p for _, p in named]
    pose_norms, mi_norms = tensor_norms(loss.pose, parameters), tensor_norms(loss.mi, parameters)
    per_tensor = zip([n for n, _ in named], pose_norms, mi_norms, strict=True)
    tensors = sorted(per_tensor, key=lambda row: row[2] / max(row[1], 1e-30), reverse=True)
    divergences = {name[3:]: float(value) for name, value in loss.parts.items() if name.startswith("mi/")}
    return Balance(config, global_ratio(mi_norms, pose_norms), tensors, divergences)


def tensor_norms(objective: Tensor, parameters: list[Tensor]) -> list[float]:
    """‖d objective / d p‖ for each parameter tensor (0 where it does not reach)."""
    grads = torch.autograd.grad(objective, parameters, retain_graph=True, allow_unused=True)
    return [0.0 if g is None else float(g.norm()) for g in grads]


def global_ratio(numerator_norms: list[float], denominator_norms: list[float]) -> float:
    """‖∇ numerator‖ / ‖∇ denominator‖ over all tensors from their per-tensor norms: the value of
    :func:`famipose.losses.gradient_ratio`, without a second pair of backward passes."""
    return math.hypot(*numerator_norms) / math.hypot(*denominator_norms)


def main() -> None:
    """Print one row per config, then (``--per-tensor K``) each config's K most MI-dominated tensors."""
    args = parse_args()
    names = args.configs or sorted(
        path.stem
        for path in CONFIGS.glob("*.yaml")
        if load_config(path).loss.mi_form != "none" and load_config(path).model.variant != "single_frame"
    )
    print("| config | MI form | backbone | ‖∇MI‖/‖∇pose‖ at init |\n|---|---|---|---|")
    measured = {}
    for name in names:
        balance = measure(name, args)
        if balance is None:
            print(f"| {name} | {load_config(CONFIGS / f'{name}.yaml').loss.mi_form} | | no data given |", flush=True)
            continue
        measured[name] = balance
        model, loss = balance.config.model, balance.config.loss
        frozen = "frozen" if model.backbone.frozen else "trainable"
        print(f"| {name} | {loss.mi_form} | {model.backbone.name}, {frozen} | {balance.ratio:.4g} |", flush=True)
    if not args.per_tensor:
        return
    for name, balance in measured.items():
        values = ", ".join(f"{term} {value:.3g}" for term, value in balance.divergences.items())
        print(f"\n{name}: the {args.per_tensor} tensors where MI weighs most (estimator values: {values})\n")
        print("| tensor | ‖∇pose‖ | ‖∇MI‖ | ratio |\n|---|---|---|---|")
        for tensor, pose_norm, mi_norm in balance.tensors[: args.per_tensor]:
            print(f"| {tensor} | {pose_norm:.3g} | {mi_norm:.3g} | {mi_norm / max(pose_norm, 1e-30):.3g} |")


if __name__ == "__main__":
    main()
