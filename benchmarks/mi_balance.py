"""‖∇(α·L_MI)‖ / ‖∇L_pose‖ at initialisation for every shipped config with an MI objective.

For each config under ``configs/`` whose ``loss.mi_form`` is not ``none``, the model is built as
training builds it (seeded; ``--init-heatmap`` / ``--init-simcc`` load stage-1 weights as
``train.init_from`` does), one training batch is read from real data with the config's own crops,
targets and augmentation (the tiny configs from a SynthTrack root, the W48 configs from a PoseTrack
root such as the shared PoseTrack18 sample), and the ratio of the two gradient norms over the
trainable parameters outside the backbone is printed: the number the trainer logs on every logged
step as ``mi/grad_ratio``.

    .venv/bin/python benchmarks/mi_balance.py --synth-root runs/loss_layer/synthtrack \\
        --init-heatmap runs/loss_layer/stage1_heatmap/best.pth --init-simcc runs/loss_layer/stage1_simcc/best.pth \\
        --posetrack-root ../shared/data/posetrack18_sample
"""

from __future__ import annotations

import argparse
from pathlib import Path

from famipose.config import load_config
from famipose.data.dataset import collate_windows
from famipose.engine.builders import build_model, build_train_dataset
from famipose.engine.train import batch_targets
from famipose.losses import compute_loss, gradient_ratio

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
    return parser.parse_args()


def measure(name: str, args: argparse.Namespace) -> float | None:
    """The ratio at initialisation for one config, or ``None`` when its data is not given."""
    config = load_config(CONFIGS / f"{name}.yaml")
    tiny = config.model.backbone.name == "tiny"
    root = args.synth_root if tiny else args.posetrack_root
    if root is None:
        return None
    init = (args.init_simcc if config.model.head.kind == "simcc" else args.init_heatmap) if tiny else None
    overrides = [
        f"data.root={root}", "data.train_annotations=annotations/" + ("train" if tiny else "val"),
        f"train.init_from={init or 'null'}", "train.device=cpu",
    ]  # fmt: skip
    config = load_config(CONFIGS / f"{name}.yaml", overrides)
    model = build_model(config.model, config.train).train()
    dataset = build_train_dataset(config.data, config.model, config.train.seed)
    batch = collate_windows([dataset[i] for i in range(min(args.batch, len(dataset)))])
    output = model(batch.key, batch.supports)
    loss = compute_loss(output, batch_targets(batch), config.loss, model.probe)
    assert loss.mi is not None
    head = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    return float(gradient_ratio(loss.mi, loss.pose, head))


def main() -> None:
    """Print one row per config."""
    args = parse_args()
    names = args.configs or sorted(
        path.stem
        for path in CONFIGS.glob("*.yaml")
        if load_config(path).loss.mi_form != "none" and load_config(path).model.variant != "single_frame"
    )
    print("| config | MI form | backbone | ‖∇MI‖/‖∇pose‖ at init |\n|---|---|---|---|")
    for name in names:
        config = load_config(CONFIGS / f"{name}.yaml")
        ratio = measure(name, args)
        cell = "no data given" if ratio is None else f"{ratio:.4g}"
        frozen = "frozen" if config.model.backbone.frozen else "trainable"
        print(f"| {name} | {config.loss.mi_form} | {config.model.backbone.name}, {frozen} | {cell} |", flush=True)


if __name__ == "__main__":
    main()
