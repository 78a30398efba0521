"""Validation and testing: predict every person box, write PoseTrack18 files per GT video, score them.

Pipeline (the HRNet / DCPose top-down protocol):

1. Boxes: ground truth (``data.val_boxes: gt``) or a detections JSON (kept at
   ``score >= data.box_score_threshold``), on the labelled frames of the validation split.
2. One window per box; the network sees the key crop and its support crops; heatmaps are decoded
   by argmax with the quarter-pixel shift, SimCC vectors by argmax of their softmax; coordinates
   are mapped back to the image.
3. Each person is scored ``box score × mean joint score``, and per frame duplicates are removed by
   OKS non-maximum suppression (threshold 0.9, COCO keypoint sigmas in PoseTrack order).
4. One prediction file per GT video (``predictions/<video>.json``, PoseTrack18 layout) and
   :func:`famipose.evaluation.evaluate_posetrack`; under DDP each process predicts a share of the
   boxes and rank 0 gathers, writes and scores.

Shape symbols: B batch, N persons, K joints.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from famipose.codecs.pose import PoseLogits, decode_pose_logits
from famipose.config import Config, DataConfig, ModelConfig, PredictConfig
from famipose.data.dataset import PoseWindowDataset, collate_windows
from famipose.data.detections import load_detections
from famipose.data.keypoints import flip_permutation
from famipose.data.posetrack import load_posetrack
from famipose.data.windows import BoxSource, GroundTruthBoxes, build_windows
from famipose.engine.builders import data_path, dataset_options, window_deltas
from famipose.engine.distributed import (
    DistributedContext,
    broadcast_from_main,
    gather_to_main,
    init_distributed,
    shutdown_distributed,
    unwrap_model,
)
from famipose.engine.plots import plot_per_joint_ap
from famipose.evaluation import ORIGIN_NAME, EvalResult, PosePrediction, evaluate_posetrack, write_predictions
from famipose.evaluation.io import read_video
from famipose.files import write_text_atomic
from famipose.geometry import oks_nms
from famipose.models.checkpoint import load_model
from famipose.models.famipose import FamiPose
from famipose.models.flip import flip_test
from famipose.poses import PersonPose

logger = logging.getLogger(__name__)

@dataclass(frozen=True, eq=False)
class EvalData:
    """What evaluation needs, built once per run.

    Attributes:
        dataset: Windows of the validation boxes, without augmentation.
        gt_dir: Folder of GT files, one per video, for the evaluator.
    """

    dataset: PoseWindowDataset
    gt_dir: Path


def frame_key(file_name: str) -> str:
    """``<video>/<frame>`` of an image path, to pair frames named with different root prefixes."""
    return "/".join(PurePosixPath(file_name.replace("\\", "/")).parts[-2:])


def resolve_gt_dir(data: DataConfig, gt_dir: str | Path | None) -> Path:
    """The evaluator's GT folder: ``gt_dir``, else ``data.val_gt``, else ``data.val_annotations``.

    Raises:
        ValueError: The chosen path is not a folder (a merged annotation file needs a GT folder).
    """
    if gt_dir is None:
        gt_dir = data_path(data, data.val_gt or data.val_annotations)
    folder = Path(gt_dir)
    if not folder.is_dir():
        raise ValueError(
            f"evaluation needs a folder of per-video GT files; {folder} is not one (pass gt_dir / --gt)"
        )
    return folder


def build_eval_data(
    data: DataConfig, model: ModelConfig, boxes: str | Path | None = None, gt_dir: str | Path | None = None
) -> EvalData:
    """Windows of the validation boxes on labelled frames, and the GT folder.

    Args:
        data: The validation split, its boxes and GT.
        model: The network the crops are for.
        boxes: ``"gt"`` or a detections JSON; ``None`` uses ``data.val_boxes`` (a relative
            detections path there is resolved against ``data.root``).
        gt_dir: GT folder for the evaluator (see :func:`resolve_gt_dir`).

    Returns:
        The evaluation data.
    """
    split = load_posetrack(data_path(data, data.val_annotations), data.root)
    if boxes is None:
        boxes = data.val_boxes if data.val_boxes == "gt" else data_path(data, data.val_boxes)
    source: BoxSource = (
        GroundTruthBoxes() if str(boxes) == "gt" else load_detections(boxes, split, data.box_score_threshold)
    )
    windows, _ = build_windows(split, window_deltas(model), source)
    labelled = [window for window in windows if window.key_frame.is_labeled]
    logger.info("evaluation boxes: %d on labelled frames (%d in all)", len(labelled), len(windows))
    options = dataset_options(model, data, augment=False, seed=0)  # no augmentation: the seed is not read
    return EvalData(PoseWindowDataset(labelled, options), resolve_gt_dir(data, gt_dir))


@torch.no_grad()
def predict_persons(
    model: FamiPose,
    loader: DataLoader,
    device: torch.device,
    amp: bool = False,
    flip: bool = False,
    dark_sigma: float | None = None,
) -> list[tuple[str, PersonPose]]:
    """Run the network over a loader of evaluation windows.

    Args:
        model: The network (put in eval mode here).
        loader: Batches of :class:`WindowBatch`.
        device: Where to compute.
        amp: Use CUDA autocast.
        flip: Flip test (:func:`famipose.models.flip.flip_test`; ``predict.flip``).
        dark_sigma: DARK decoding with this target sigma (``predict.dark``), or ``None``.

    Returns:
        One ``(key-frame file name, untracked person)`` per window, in loader order; each person
        has its crop area (the OKS scale) and no box.
    """
    model.eval()
    split_ratio = model.config.head.simcc_split_ratio

    def head_output(key: torch.Tensor, supports: torch.Tensor | None) -> PoseLogits:
        return model(key, supports).pose

    persons = []
    for batch in loader:
        key, supports = batch.key.to(device), batch.supports.to(device)  # (B, 3, H, W), (B, S, 3, H, W)
        with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            if flip:
                logits = flip_test(head_output, key, supports, flip_permutation(), split_ratio)
            else:
                logits = head_output(key, supports)
        centers, scales = batch.centers.numpy(), batch.scales.numpy()  # (B, 2), (B, 2)
        keypoints = decode_pose_logits(  # (B, K, 3)
            logits, centers, scales, model.config.input_size, split_ratio, dark_sigma
        )
        box_scores = batch.box_scores.numpy()  # (B,)
        areas = (batch.scales[:, 0] * batch.scales[:, 1]).numpy()  # (B,)
        for index, name in enumerate(batch.file_names):
            joints = keypoints[index]  # (K, 3)
            person = PersonPose(None, None, joints[:, :2], joints[:, 2], float(box_scores[index]), float(areas[index]))
            persons.append((name, person))
    return persons


def group_by_frame(persons: Sequence[tuple[str, PersonPose]]) -> dict[str, list[PersonPose]]:
    """Persons per frame key, duplicates removed by OKS NMS, best first.

    Args:
        persons: ``(key-frame file name, person)`` pairs, as :func:`predict_persons` gives them.
    """
    frames: dict[str, list[PersonPose]] = {}
    for file_name, person in persons:
        frames.setdefault(frame_key(file_name), []).append(person)
    kept = {}
    for key, group in frames.items():
        keep = oks_nms(
            np.stack([p.keypoints for p in group]),
            np.array([p.score for p in group]),
            np.array([p.area for p in group]),
        )
        kept[key] = [group[i] for i in keep]
    return kept


def write_video_predictions(persons: Sequence[tuple[str, PersonPose]], gt_dir: Path, pred_dir: Path) -> list[Path]:
    """One PoseTrack18 prediction file per GT video, frames copied from the GT file.

    Args:
        persons: All predictions, as ``(key-frame file name, person)`` pairs.
        gt_dir: Folder of GT ``*.json`` files.
        pred_dir: Output folder.

    Returns:
        The written files.
    """
    by_frame = group_by_frame(persons)
    written = []
    for gt_file in sorted(gt_dir.glob("*.json")):
        frames = read_video(gt_file)
        per_frame = [by_frame.get(frame_key(frame.file_name), []) for frame in frames]
        predictions = [[PosePrediction(p.joints, track) for track, p in enumerate(group)] for group in per_frame]
        written.append(write_predictions(pred_dir, gt_file.name, frames, predictions))
    return written


def run_evaluation(
    model: nn.Module,
    data: EvalData,
    out_dir: Path,
    context: DistributedContext,
    origin: str,
    *,
    batch_size: int,
    num_workers: int,
    amp: bool,
    predict: PredictConfig,
) -> EvalResult | None:
    """Predict (sharded over processes), write prediction files and score them on rank 0.

    Args:
        model: The network (possibly DDP-wrapped).
        data: Evaluation windows and GT folder.
        out_dir: Receives ``predictions/``, ``eval.json`` and ``per_joint_map.png``.
        context: This process.
        origin: Which weights predicted (``"epoch 3 (global step 120)"``, a checkpoint path), written
            with the AP to ``predictions/ORIGIN`` so that the folder says what it holds.
        batch_size: Global batch size (``train.batch_size``), shared out over the processes.
        num_workers: Loader workers per process (``data.num_workers``).
        amp: Predict under CUDA autocast (``train.amp``; ignored on the CPU).
        predict: Flip test and DARK decoding (DARK with the targets' ``data.sigma``).

    Returns:
        The result on every process (``None`` when there is no box to evaluate).
    """
    network = unwrap_model(model)
    shard = Subset(data.dataset, range(context.rank, len(data.dataset), context.world_size))
    loader = DataLoader(
        shard,
        batch_size=max(batch_size // context.world_size, 1),
        num_workers=num_workers,
        collate_fn=collate_windows,
    )
    dark_sigma = data.dataset.options.sigma if predict.dark else None
    predicted = predict_persons(network, loader, context.device, amp, predict.flip, dark_sigma)  # type: ignore[arg-type]
    gathered = gather_to_main(list(zip(shard.indices, predicted, strict=True)), context)
    persons = [person for _, person in sorted(gathered, key=lambda item: item[0])]  # data-set order
    result = None
    if context.is_main and persons:
        pred_dir = out_dir / "predictions"
        write_video_predictions(persons, data.gt_dir, pred_dir)
        result = evaluate_posetrack(data.gt_dir, pred_dir)
        write_text_atomic(pred_dir / ORIGIN_NAME, f"predictions of {origin}: Total AP {result.total:.2f}\n")
        write_text_atomic(out_dir / "eval.json", json.dumps(result.to_json(), indent=2))
        plot_per_joint_ap({**result.grouped, "Total": result.total}, out_dir / "per_joint_map.png")
    return broadcast_from_main(result, context)


def evaluate_model(
    config: Config,
    checkpoint_or_model: str | Path | nn.Module,
    boxes: str | Path | None = None,
    out_dir: str | Path | None = None,
    gt_dir: str | Path | None = None,
) -> EvalResult:
    """Test a model on the validation split.

    Args:
        config: The experiment (data, model, batch size, device).
        checkpoint_or_model: A training checkpoint / ``.safetensors`` file, or a network.
        boxes: ``"gt"`` or a detections JSON; ``None`` uses ``data.val_boxes``.
        out_dir: Receives ``predictions/<video>.json``, ``eval.json`` and ``per_joint_map.png``
            (a temporary folder when ``None``).
        gt_dir: GT folder for the evaluator (default: ``data.val_annotations`` when a folder).

    Returns:
        The PoseTrack AP.

    Raises:
        CheckpointError: The checkpoint does not fit the configured model.
        ValueError: No box to evaluate, or no GT folder.
    """
    owns_group = not torch.distributed.is_initialized()
    context = init_distributed(config.train.device)
    try:
        if isinstance(checkpoint_or_model, nn.Module):
            model = unwrap_model(checkpoint_or_model)
        else:
            model = load_model(config.model, checkpoint_or_model)
        data = build_eval_data(config.data, config.model, boxes, gt_dir)
        if len(data.dataset) == 0:
            raise ValueError("no box to evaluate on the labelled validation frames")
        with tempfile.TemporaryDirectory() as temporary:
            folder = Path(out_dir) if out_dir is not None else Path(temporary)
            origin = "the given network" if isinstance(checkpoint_or_model, nn.Module) else str(checkpoint_or_model)
            result = run_evaluation(
                model.to(context.device), data, folder, context, origin,
                batch_size=config.train.batch_size, num_workers=config.data.num_workers, amp=config.train.amp,
                predict=config.predict,
            )  # fmt: skip
    finally:
        if owns_group:
            shutdown_distributed(context)
    if result is None:
        raise ValueError("the network produced no prediction")
    return result
