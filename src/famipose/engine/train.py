"""Training loop: one process or ``torchrun`` DDP, resumable at any checkpointed step.

``train(config, out_dir)`` builds everything from the config, trains ``train.epochs`` epochs,
evaluates every ``train.eval_every`` epochs (and after the last one), and writes under ``out_dir``:

``config.yaml``          the fully expanded config of the run
``metrics.jsonl``        one line per log step and per evaluation
``last.pth``             latest checkpoint (every ``checkpoint_every`` steps and every epoch end)
``best.pth``             checkpoint with the best validation Total AP
``predictions/``         the latest evaluation's PoseTrack18 files (``ORIGIN`` names its epoch, which
                         need not be best.pth's); ``eval.json`` its scores
``train_curves.png``     loss, learning rate and validation AP; ``per_joint_map.png`` the AP per joint

Determinism. The model is initialised from ``train.seed``; the data order of an epoch depends on
``(seed, epoch)`` and each sample's augmentation on ``(seed, epoch, index)``; a checkpoint holds the
position inside the epoch, so a resumed run skips exactly the batches already trained on and ends
with the weights of an uninterrupted run (bit-exact on the CPU; CUDA kernels such as deformable
convolution backward may add non-determinism). Random states of python/numpy/torch/CUDA are saved
and restored (rank 0's under DDP). Bit-exact means the same thread count too: another one changes
the order of floating-point reductions (docs/reproduce.md, "Seeds"). :func:`train_seeds` runs one
seed after another (``famipose train --seeds``).

Failure. A non-finite loss (or, without mixed precision, a non-finite gradient) raises
:class:`TrainingDivergedError` before the optimiser step, naming the epoch, step and loss parts; no
checkpoint is written after a bad step, so ``last.pth`` holds the last good state. The loss and the
gradient norm are checked together after the backward pass, the one device sync of a step that
logs nothing (a logged step also reads the logged values).

Mixed precision (``train.amp``) uses ``torch.autocast`` with float16 and a ``GradScaler`` on CUDA
and is off on the CPU.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from famipose.config import Config, to_dict
from famipose.data.dataset import WindowBatch
from famipose.engine.builders import (
    build_model,
    build_optimizer,
    build_scheduler,
    build_train_dataset,
    build_train_loader,
    steps_per_epoch,
)
from famipose.engine.checkpointing import (
    BEST_NAME,
    LAST_NAME,
    Progress,
    capture_rng_state,
    find_resume_checkpoint,
    load_checkpoint,
    progress_from_dict,
    progress_to_dict,
    restore_rng_state,
)
from famipose.engine.distributed import (
    DistributedContext,
    all_reduce_mean,
    any_process,
    init_distributed,
    shutdown_distributed,
    wrap_model,
)
from famipose.engine.evaluate import EvalData, build_eval_data, run_evaluation
from famipose.engine.logging import MetricsLog, TrainProgress, read_metrics
from famipose.engine.plots import plot_train_curves
from famipose.evaluation import EvalResult
from famipose.files import remove_stale_temporaries
from famipose.losses import (
    LossBreakdown,
    PoseTargets,
    compute_loss_unchecked,
    gradient_ratio,
    non_finite_loss_message,
    stop_gradient_at,
)
from famipose.models.checkpoint import CheckpointError, atomic_save
from famipose.models.famipose import FamiPoseOutput

logger = logging.getLogger("famipose.train")

METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.yaml"
CURVES_NAME = "train_curves.png"


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or gradient and was stopped."""


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        out_dir: The run folder.
        last_checkpoint: ``last.pth``.
        best_checkpoint: ``best.pth``, or ``None`` when no evaluation gave an AP.
        best_ap: Best validation Total AP, or ``None``.
        progress: Epochs and steps done.
        last_loss: Loss of the last step trained in this call, or ``None`` when none was.
        last_eval: The last evaluation of this call, or ``None``.
    """

    out_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_ap: float | None
    progress: Progress
    last_loss: float | None
    last_eval: EvalResult | None


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_targets(batch: WindowBatch) -> PoseTargets:
    """The loss targets carried by a batch."""
    return PoseTargets(
        weights=batch.target_weights, heatmaps=batch.heatmaps, simcc_x=batch.simcc_x, simcc_y=batch.simcc_y
    )


class Trainer:
    """State and steps of one training run (see :func:`train`).

    Args:
        config: The experiment.
        out_dir: The run folder.
        context: This process.
        checkpoint_every: Steps between mid-epoch checkpoints, or ``None`` for epoch ends only.
        gt_dir: GT folder for evaluation (see :func:`famipose.engine.evaluate.resolve_gt_dir`).
    """

    def __init__(
        self,
        config: Config,
        out_dir: Path,
        context: DistributedContext,
        checkpoint_every: int | None,
        gt_dir: str | Path | None,
    ) -> None:
        self.config = config
        self.out_dir = out_dir
        self.context = context
        self.checkpoint_every = checkpoint_every
        seed_everything(config.train.seed)
        self.network = build_model(config.model, config.train).to(context.device)
        self.model = wrap_model(self.network, context)
        self.parameters = [p for p in self.network.parameters() if p.requires_grad]
        self.head_parameters = [  # what the MI/pose gradient balance is measured over
            p for name, p in self.network.named_parameters() if p.requires_grad and not name.startswith("backbone.")
        ]
        self.optimizer = build_optimizer(self.network, config.train)
        self.scheduler = build_scheduler(self.optimizer, config.train)
        self.amp = config.train.amp and context.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(context.device.type, enabled=self.amp)
        self.dataset = build_train_dataset(config.data, config.model, config.train.seed)
        self.steps_per_epoch = steps_per_epoch(len(self.dataset), config.train)
        cap = config.train.max_steps_per_epoch
        if cap is not None and self.steps_per_epoch < cap:
            logger.warning(
                "train.max_steps_per_epoch=%d, but %d training windows make only %d batches of %d: %d steps per epoch",
                cap, len(self.dataset), self.steps_per_epoch, config.train.batch_size, self.steps_per_epoch,
            )  # fmt: skip
        self.eval_data: EvalData = build_eval_data(config.data, config.model, gt_dir=gt_dir)
        self.progress = Progress()
        self.metrics = MetricsLog(out_dir / METRICS_NAME if context.is_main else None)
        self.last_loss: float | None = None
        self.last_eval: EvalResult | None = None

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue from the current step."""
        return {
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "progress": progress_to_dict(self.progress),
            "config": to_dict(self.config),
        }

    def save(self, best: bool = False) -> None:
        """Write ``last.pth`` (and ``best.pth``) on rank 0."""
        if not self.context.is_main:
            return
        payload = self.checkpoint()
        atomic_save(payload, self.out_dir / LAST_NAME)
        if best:
            atomic_save(payload, self.out_dir / BEST_NAME)

    def restore(self, path: Path) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        state = load_checkpoint(path)
        if state["config"] != to_dict(self.config):
            logger.warning("resuming from %s, whose config differs from this run's", path)
        try:
            self.network.load_state_dict(state["model"])
        except RuntimeError as error:
            theirs = state["config"].get("model", {}) if isinstance(state["config"], dict) else {}
            raise CheckpointError(
                f"cannot resume from {str(path)!r}: its weights do not fit this run's model (checkpoint: variant "
                f"{theirs.get('variant')!r}, backbone {theirs.get('backbone', {}).get('name')!r}; this run: "
                f"{self.config.model.variant!r}, {self.config.model.backbone.name!r})"
            ) from error
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.progress = progress_from_dict(state["progress"])
        if self.context.is_main:
            self.metrics.truncate(self.progress.global_step)
        logger.info("resumed from %s at epoch %d step %d", path, self.progress.epoch, self.progress.step_in_epoch)

    # -- steps ---------------------------------------------------------------------------------

    def forward_loss(self, batch: WindowBatch) -> tuple[FamiPoseOutput, LossBreakdown]:
        """Output and loss of one batch; :meth:`step` checks that the loss is finite."""
        supports = batch.supports if self.config.model.num_supports else None
        with torch.autocast(self.context.device.type, enabled=self.amp):
            output = self.model(batch.key, supports)
            return output, compute_loss_unchecked(output, batch_targets(batch), self.config.loss, self.network.probe)

    def diverged(self, reason: str) -> TrainingDivergedError:
        """The error that stops training at the current step."""
        p = self.progress
        last = self.out_dir / LAST_NAME
        kept = f"{last} keeps the last good state" if last.is_file() else "no checkpoint was written yet"
        return TrainingDivergedError(
            f"training stopped at epoch {p.epoch + 1}, step {p.step_in_epoch + 1}/{self.steps_per_epoch} "
            f"(global step {p.global_step + 1}): {reason}; {kept}"
        )

    def is_log_step(self, global_step: int, step_in_epoch: int) -> bool:
        """Whether the step that brings the counters to these values is logged."""
        return global_step % max(self.config.train.log_every, 1) == 0 or step_in_epoch == self.steps_per_epoch

    def step(self, batch: WindowBatch, measure_balance: bool = False) -> LossBreakdown:
        """One optimiser step.

        Args:
            batch: The batch.
            measure_balance: Also measure ‖∇(α·L_MI)‖ / ‖∇L_pose‖ over the trainable parameters
                outside the backbone (two extra partial backward passes), stored in the returned
                parts as ``mi/grad_ratio``.

        Raises:
            TrainingDivergedError: The loss or (without mixed precision, where the ``GradScaler``
                skips such steps) the gradient is not finite, on any process.
        """
        output, loss = self.forward_loss(batch.to(self.context.device))
        self.optimizer.zero_grad(set_to_none=True)
        grad_ratio = None
        if loss.mi is not None:
            scaled_mi, scaled_pose = self.scaler.scale(loss.mi), self.scaler.scale(loss.pose)
            if measure_balance:
                grad_ratio = gradient_ratio(scaled_mi, scaled_pose, self.head_parameters).detach()
            if self.config.loss.mi_stop_at_backbone:
                stop_gradient_at(scaled_mi, [output.key_feature, output.support_features])
        self.scaler.scale(loss.total).backward()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.config.train.grad_clip or math.inf)
        # The step's one device sync: loss and gradient are checked together, after the backward
        # pass (a wasted one on a bad step) and before the optimiser step, so a non-finite update
        # never reaches the weights, nor therefore a checkpoint.
        finite = torch.isfinite(loss.total) if self.amp else torch.isfinite(loss.total) & torch.isfinite(norm)
        if any_process(~finite, self.context):
            raise self.diverged(self.divergence(loss, norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if grad_ratio is not None:
            loss.parts["mi/grad_ratio"] = grad_ratio
        return loss

    def divergence(self, loss: LossBreakdown, norm: torch.Tensor) -> str:
        """What is not finite, once :meth:`step` found something that is not (these reads sync)."""
        if not torch.isfinite(loss.total):
            return non_finite_loss_message(loss)
        if not self.amp and not torch.isfinite(norm):
            parts = {name: round(float(value), 6) for name, value in loss.parts.items()}
            return f"non-finite gradient norm {norm.item()} (loss parts: {parts})"
        return "non-finite loss or gradient on another process"

    def log_step(self, loss: LossBreakdown, display: TrainProgress) -> None:
        """Metrics line (loss and parts averaged over processes) every ``log_every`` steps."""
        p = self.progress
        lr = self.optimizer.param_groups[0]["lr"]
        if not self.is_log_step(p.global_step, p.step_in_epoch):
            display.update(p.global_step, p.epoch + 1, None, lr)
            return
        names = list(loss.parts)
        values = torch.stack([loss.total.detach(), *loss.parts.values()]).to(torch.float64)
        values = all_reduce_mean(values, self.context).cpu().tolist()
        self.last_loss = values[0]
        parts = dict(zip(names, values[1:], strict=True))
        display.update(p.global_step, p.epoch + 1, values[0], lr, parts.get("mi/grad_ratio"))
        self.metrics.write(
            {
                "kind": "train", "epoch": p.epoch + 1, "step": p.global_step, "loss": values[0],
                "parts": parts, "lr": lr, "it_per_s": display.steps_per_second,
            }
        )  # fmt: skip

    # -- epochs --------------------------------------------------------------------------------

    def train_epoch(self, display: TrainProgress) -> None:
        """Train the rest of the current epoch, checkpointing every ``checkpoint_every`` steps."""
        epoch, start = self.progress.epoch, self.progress.step_in_epoch
        loader = build_train_loader(
            self.dataset, self.config.train, self.config.data.num_workers, epoch, start,
            self.context.rank, self.context.world_size,
        )  # fmt: skip
        self.model.train()
        for batch in loader:
            p = self.progress
            loss = self.step(batch, measure_balance=self.is_log_step(p.global_step + 1, p.step_in_epoch + 1))
            self.progress = replace(p, step_in_epoch=p.step_in_epoch + 1, global_step=p.global_step + 1)
            self.log_step(loss, display)
            every = self.checkpoint_every
            if every and self.progress.global_step % every == 0 and self.progress.step_in_epoch < self.steps_per_epoch:
                self.save()

    def finish_epoch(self) -> None:
        """Advance the schedule, evaluate when due, and write the epoch-end checkpoints."""
        self.scheduler.step()
        epoch = self.progress.epoch + 1
        self.progress = replace(self.progress, epoch=epoch, step_in_epoch=0)
        every = self.config.train.eval_every
        improved = False
        if (every > 0 and epoch % every == 0) or epoch == self.config.train.epochs:
            origin = f"epoch {epoch} (global step {self.progress.global_step}) of {self.out_dir}"
            train, data = self.config.train, self.config.data
            result = run_evaluation(
                self.model, self.eval_data, self.out_dir, self.context, origin,
                batch_size=train.batch_size, num_workers=data.num_workers, amp=train.amp, predict=self.config.predict,
            )  # fmt: skip
            self.last_eval = result
            if result is not None and math.isfinite(result.total):
                self.metrics.write(
                    {"kind": "eval", "epoch": epoch, "step": self.progress.global_step, **result.grouped,
                     "Total": result.total}
                )  # fmt: skip
                logger.info("epoch %d validation AP %.2f", epoch, result.total)
                best = self.progress.best_ap
                improved = best is None or result.total > best
                if improved:
                    self.progress = replace(self.progress, best_ap=result.total)
        self.save(best=improved)
        if self.context.is_main:
            plot_train_curves(read_metrics(self.out_dir / METRICS_NAME), self.out_dir / CURVES_NAME)

    def run(self) -> TrainResult:
        """Train the remaining epochs."""
        total = self.config.train.epochs * self.steps_per_epoch
        done = self.progress.epoch * self.steps_per_epoch + self.progress.step_in_epoch
        with TrainProgress(total, done, self.context.is_main) as display:
            while self.progress.epoch < self.config.train.epochs:
                self.train_epoch(display)
                self.finish_epoch()
        best = self.out_dir / BEST_NAME
        return TrainResult(
            out_dir=self.out_dir,
            last_checkpoint=self.out_dir / LAST_NAME,
            best_checkpoint=best if best.is_file() else None,
            best_ap=self.progress.best_ap,
            progress=self.progress,
            last_loss=self.last_loss,
            last_eval=self.last_eval,
        )


def train_seeds(
    config: Config,
    out_dir: str | Path,
    seeds: Sequence[int],
    checkpoint_every: int | None = None,
    gt_dir: str | Path | None = None,
    overwrite: bool = False,
) -> list[TrainResult]:
    """One run per seed under ``out_dir/seed_<N>/``, one after the other (``famipose train --seeds``).

    Each run is ``train.seed = N`` of ``config`` and resumes as ``--resume auto`` does, so an
    interrupted sweep continues where it stopped: a finished seed restores its last checkpoint and
    trains no step, an interrupted one continues from its ``last.pth``, a missing one starts.
    ``famipose report out_dir/seed_*`` then gives the mean ± std over the seeds.

    Args:
        config: The experiment (its own ``train.seed`` is replaced).
        out_dir: The sweep folder.
        seeds: Seeds, in the order they train; each at most once.
        checkpoint_every: As :func:`train`.
        gt_dir: As :func:`train`.
        overwrite: Restart every seed afresh instead of continuing it.

    Raises:
        ValueError: ``seeds`` is empty or repeats a seed.
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds needs distinct seeds, got {list(seeds)}")
    results = []
    for seed in seeds:
        run_dir = Path(out_dir) / f"seed_{seed}"
        logger.info("seed %d of %s: %s", seed, list(seeds), run_dir)
        seeded = replace(config, train=replace(config.train, seed=seed))
        resume = None if overwrite else "auto"
        results.append(train(seeded, run_dir, resume, checkpoint_every, gt_dir, overwrite))
    return results


def write_config(config: Config, path: Path) -> None:
    """Save the fully expanded config of a run as YAML."""
    header = "# Config of this run, fully expanded (famipose train).\n"
    path.write_text(header + yaml.safe_dump(to_dict(config), sort_keys=False))


RUN_FILES = (METRICS_NAME, LAST_NAME, BEST_NAME)  # a folder with one of these holds a run that trained
RUN_OUTPUTS = (*RUN_FILES, CONFIG_NAME, CURVES_NAME, "per_joint_map.png", "eval.json", "predictions")


class RunExistsError(FileExistsError):
    """The run folder already holds a run, and neither resuming nor overwriting it was asked for."""


def claim_run_folder(out_dir: Path, resume: str | Path | None, overwrite: bool) -> None:
    """Make ``out_dir`` ready for this run: refuse to mix two runs, clear it on ``overwrite``.

    Temporaries of a killed checkpoint write are removed in every case.

    Raises:
        RunExistsError: ``out_dir`` holds a run's files, with neither ``resume`` nor ``overwrite``.
    """
    found = [name for name in RUN_FILES if (out_dir / name).exists()]
    if found and resume is None and not overwrite:
        raise RunExistsError(
            f"{out_dir} already holds a run ({', '.join(found)}): continue it with --resume auto, "
            "or pass a new --out (or --overwrite to replace it)"
        )
    if overwrite and resume is None:
        for name in RUN_OUTPUTS:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            target.unlink(missing_ok=True)
    for name in (LAST_NAME, BEST_NAME):
        for stale in remove_stale_temporaries(out_dir / name):
            logger.info("removed %s, left by an interrupted checkpoint write", stale)


def resume_checkpoint(out_dir: Path, resume: str | Path) -> Path:
    """The checkpoint ``--resume`` names: ``auto`` is the run folder's ``last.pth``."""
    return find_resume_checkpoint(out_dir) if str(resume) == "auto" else Path(resume)


def other_checkpoints_hint(out_dir: Path, failed: Path) -> str:
    """``"; best.pth is still there: ..."`` when the run folder holds other checkpoints than ``failed``."""
    others = sorted(p for p in out_dir.glob("*.pth") if p.resolve() != failed.resolve())
    if not others:
        return ""
    names = ", ".join(p.name for p in others)
    return f"; {names} {'is' if len(others) == 1 else 'are'} still there: resume with --resume {others[0]}"


def train(
    config: Config,
    out_dir: str | Path,
    resume: str | Path | None = None,
    checkpoint_every: int | None = None,
    gt_dir: str | Path | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train a model as configured (see the module docstring for what is written).

    Args:
        config: The experiment.
        out_dir: Run folder (created). One that holds a run already is refused unless ``resume`` or
            ``overwrite`` is given.
        resume: ``"auto"`` (the run folder's ``last.pth``; a folder without a run starts one), a
            checkpoint path, or ``None``.
        checkpoint_every: Also write ``last.pth`` every this many steps inside an epoch (default:
            ``train.checkpoint_every``).
        gt_dir: GT folder for evaluation (default: ``data.val_gt``, else ``data.val_annotations``).
        overwrite: Delete the outputs of a previous run in ``out_dir`` and start afresh.

    Returns:
        Where the checkpoints are and how far training got.

    Raises:
        TrainingDivergedError: A non-finite loss or gradient.
        CheckpointError: The resume checkpoint is unreadable or does not fit (the message names the
            file, and the run folder's other checkpoints).
        FileNotFoundError: ``resume="auto"`` and the run folder holds a run but no ``last.pth``.
        RunExistsError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite`` is given.
    """
    out_dir = Path(out_dir)
    if str(resume) == "auto" and not any((out_dir / name).exists() for name in RUN_FILES):
        logger.info("--resume auto: %s holds no run yet, starting one", out_dir)
        resume = None
    context = init_distributed(config.train.device)
    try:
        if context.is_main:
            claim_run_folder(out_dir, resume, overwrite)
        every = checkpoint_every if checkpoint_every is not None else config.train.checkpoint_every
        trainer = Trainer(config, out_dir, context, every, gt_dir)  # bad data or config fail here, before any file
        if resume is not None:
            path = resume_checkpoint(out_dir, resume)
            try:
                trainer.restore(path)
            except CheckpointError as error:
                raise CheckpointError(f"{error}{other_checkpoints_hint(out_dir, path)}") from error
        if context.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_config(config, out_dir / CONFIG_NAME)
        return trainer.run()
    finally:
        shutdown_distributed(context)
