"""Video pose estimation: frames → person boxes → temporal windows → poses → tracks → outputs.

``VideoPoseEstimator(model, ...).run(path)`` streams a video (or an image folder) through the
network in bounded memory and returns a :class:`~famipose.inference.results.VideoResult`;
:func:`~famipose.inference.writers.write_posetrack_json` and
:func:`~famipose.inference.writers.write_coco_results` save it, and ``run(..., overlay=...)``
renders an mp4 on the way.

A run: frames are decoded ``detect_batch`` at a time and their boxes found and cleaned
(:mod:`famipose.inference.detector`); the window engine of ``EstimatorOptions.mode``
(:func:`famipose.inference.windows.make_engine`, which explains the two modes) estimates and
tracks the poses; a frame is output once its tracks' confirmation is settled
(:attr:`~famipose.inference.tracker.PoseTracker.confirmation_delay`), and drawn into the overlay.
The pure steps are in :mod:`famipose.inference.steps`, every stage is timed
(:mod:`famipose.inference.timing`).

Memory: what the engine buffers (:mod:`famipose.inference.windows`), plus the frames that wait
for the tracker's confirmation delay.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from famipose.config import Config, ConfigError, from_dict, load_config
from famipose.data.errors import DataError, get_field, load_json
from famipose.data.keypoints import flip_permutation
from famipose.device import resolve_device
from famipose.inference.detector import (
    BoxFileDetector,
    Detector,
    FrameNames,
    check_images,
    clean_detections,
    detect_frames,
    make_detector,
)
from famipose.inference.draw import draw_frame
from famipose.inference.results import FramePoses, VideoResult
from famipose.inference.timing import STAGES, StageTimer
from famipose.inference.tracker import PoseTracker, TrackerConfig
from famipose.inference.video_io import Frame, FrameSource, ImageFolderSource, open_frames
from famipose.inference.windows import DetectedFrame, EstimatedFrame, Network, check_mode, make_engine
from famipose.models.checkpoint import (
    is_official_hrnet,
    load_model,
    official_hrnet_model,
    read_checkpoint_file,
    read_state_dict,
)
from famipose.models.famipose import FamiPose
from famipose.poses import PersonPose
from famipose.video_writer import VideoWriter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EstimatorOptions:
    """How a video is processed.

    Attributes:
        mode: ``exact`` or ``fast`` (see :mod:`famipose.inference.windows`).
        batch_size: crops per backbone call; feature maps (windows × (1 + S)) per alignment call.
        score_threshold: person boxes below this score are dropped.
        nms_iou: IoU above which a lower-scored box is suppressed.
        box_padding: crop enlargement after aspect fixing (as in training).
        chunk_length: fast mode: key frames processed together (batching; latency in frames).
        detect_batch: frames decoded and given to the detector together (learned detectors run
            them as one batch).
        tracker: tracking settings.
        flip: flip test (``exact`` mode): the mirrored crops run too and the un-mirrored output is
            averaged in (:mod:`famipose.models.flip`); twice the network cost.
        dark: DARK decoding of heatmaps with ``dark_sigma``.
        dark_sigma: the target sigma in heatmap pixels (:meth:`VideoPoseEstimator.from_checkpoint`
            takes the run's ``data.sigma``; 2 is HRNet's).
    """

    mode: str = "exact"
    batch_size: int = 32
    score_threshold: float = 0.4
    nms_iou: float = 0.5
    box_padding: float = 1.25
    chunk_length: int = 16
    detect_batch: int = 4
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    flip: bool = False
    dark: bool = False
    dark_sigma: float = 2.0

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: unknown mode (the message lists the valid ones), a size below 1, or the
                flip test in fast mode (whose cached features are those of unmirrored crops).
        """
        check_mode(self.mode)
        if self.flip and self.mode != "exact":
            raise ValueError("the flip test runs in --mode exact only (fast mode re-frames cached unmirrored features)")
        if min(self.batch_size, self.chunk_length, self.detect_batch) < 1:
            raise ValueError(
                f"batch_size, chunk_length and detect_batch must be >= 1, got "
                f"{self.batch_size}, {self.chunk_length}, {self.detect_batch}"
            )


def read_gt_images(path: str | Path) -> list[dict[str, Any]]:
    """The ``images`` list of a PoseTrack18 annotation file.

    Raises:
        DataError: unreadable file or no ``images`` list.
    """
    document = load_json(Path(path))
    if not isinstance(document, dict):
        raise DataError(path, "top level must be an object with an 'images' list")
    return check_images(get_field(document, "images", list, path, "top level"), path)


def default_image_prefix(path: str | Path) -> str:
    """PoseTrack-style folder of a video's frames: ``images/<split>/<video>``.

    ``<video>`` is the video file's stem or the image folder's name, ``<split>`` the name of the
    folder holding it: ``videos/val/v.mp4``, ``images/val/v/`` and ``images/val/v/*.jpg`` all give
    ``images/val/v``, the names SynthTrack and PoseTrack GT files use.
    """
    path = Path(path)
    if glob.has_magic(str(path)):
        path = path.parent
    video = path.name if path.is_dir() else path.stem
    return "/".join(part for part in ("images", path.parent.name, video) if part)


def load_model_and_config(
    checkpoint: str | Path | None,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    input_size: tuple[int, int] | None = None,
) -> tuple[FamiPose, Config]:
    """Build the network from a config file (or a training checkpoint's embedded config) and weights.

    Without a config, an official HRNet COCO state dict (``pose_hrnet_w48_384x288.pth``) gives
    the single-frame model it describes (:func:`~famipose.models.checkpoint.official_hrnet_model`).

    Args:
        checkpoint: training checkpoint, ``.safetensors`` export, state-dict file or official HRNet
            state dict; ``None`` keeps the random initialisation (with a warning).
        config: experiment YAML; required unless ``checkpoint`` is a training checkpoint or an
            official HRNet state dict.
        overrides: ``section.key=value`` overrides.
        input_size: crop size ``(w, h)`` of an official HRNet state dict whose file name has none.

    Returns:
        The network in eval mode on the CPU, and its config.

    Raises:
        ConfigError: no config can be found, it is invalid, overrides come without ``config``, or
            ``input_size`` comes with anything but an official HRNet state dict.
        CheckpointError: the weights cannot be read or do not fit.
    """
    if config is not None:
        cfg = load_config(config, overrides)
    elif overrides:
        raise ConfigError("overrides need --config (a checkpoint's embedded config is used as it is)")
    elif checkpoint is not None and Path(checkpoint).suffix != ".safetensors":
        content = read_checkpoint_file(checkpoint)  # an unreadable file is a CheckpointError, not a config problem
        if isinstance(content, dict) and isinstance(content.get("config"), dict):
            cfg = from_dict(Config, content["config"])
        else:
            state = read_state_dict(content) if isinstance(content, dict) else {}
            if not is_official_hrnet(state):
                raise ConfigError(
                    f"{checkpoint}: holds weights without a config, and not an official HRNet pose state dict; "
                    "pass --config (the experiment YAML)"
                )
            model, model_config = official_hrnet_model(state, checkpoint, input_size)
            return model, Config(model=model_config)
    else:
        raise ConfigError(f"{checkpoint}: the weights file carries no configuration; pass --config")
    if input_size is not None:
        raise ConfigError("--input-size applies to an official HRNet state dict alone; a config sets model.input_size")
    if checkpoint is None:
        logger.warning("no checkpoint given: the network keeps its random initialisation")
        model = FamiPose(cfg.model)
    else:
        model = load_model(cfg.model, checkpoint)
    return model.eval(), cfg


@contextlib.contextmanager
def _progress_bar(enabled: bool, title: str, total: int | None) -> Iterator[Callable[[], None]]:
    """A rich progress bar with the running frame rate; yields ``advance()``."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[fps]:.1f} fps"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns) as bar:
        task = bar.add_task(title, total=total, fps=0.0)
        start, count = time.perf_counter(), 0

        def advance() -> None:
            nonlocal count
            count += 1
            bar.update(task, advance=1, fps=count / max(time.perf_counter() - start, 1e-9))

        yield advance


class VideoPoseEstimator:
    """Pose estimation and tracking over a whole video, in bounded memory.

    Args:
        model: the network (any variant and head).
        detector: detector name (:data:`~famipose.inference.detector.DETECTORS`) used when
            ``boxes`` is None.
        detector_weights: weights of an ``onnx`` or torchvision detector.
        boxes: a box file (COCO results or PoseTrack18 annotations, see
            :func:`famipose.inference.detector.load_box_file`).
        gt_json: a PoseTrack18 annotation file of the same video: its ``images`` list maps box-file
            image ids to frames and is copied into the PoseTrack output (so the evaluator pairs
            frames by the GT file names).
        options: processing options.
        device: ``auto``, ``cpu`` or ``cuda``.

    Raises:
        ValueError: an unknown detector or device, or ``none`` without boxes.
        DataError: ``gt_json`` is unreadable.
        CheckpointError: detector weights are missing or do not fit.
    """

    def __init__(
        self,
        model: FamiPose,
        *,
        detector: str = "auto",
        detector_weights: str | Path | None = None,
        boxes: str | Path | None = None,
        gt_json: str | Path | None = None,
        options: EstimatorOptions | None = None,
        device: str = "auto",
    ) -> None:
        self.device = resolve_device(device, setting="--device")
        self.model = model.eval().to(self.device)
        self.options = options or EstimatorOptions()
        self.gt_images = read_gt_images(gt_json) if gt_json is not None else None
        self.boxes = boxes
        self.detector_name = detector
        self.detector_weights = detector_weights
        self._names = FrameNames.from_gt_images(self.gt_images) if self.gt_images else FrameNames()
        # Built now to fail early on bad arguments or files; the first run uses it.
        self._unused_detector: Detector | None = self._make_detector(self._names)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path | None,
        config: str | Path | None = None,
        overrides: Sequence[str] = (),
        options: EstimatorOptions | None = None,
        input_size: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> VideoPoseEstimator:
        """Build the network with :func:`load_model_and_config` (crop padding from ``data.box_padding``).

        Args:
            checkpoint: weights file, or None for random weights.
            config: experiment YAML (optional for training checkpoints and official HRNet files).
            overrides: config overrides.
            options: processing options; by default :class:`EstimatorOptions` with the config's padding.
            input_size: crop size ``(w, h)`` of an official HRNet file whose name states none.
            **kwargs: the remaining constructor arguments.
        """
        model, cfg = load_model_and_config(checkpoint, config, overrides, input_size)
        options = options or EstimatorOptions(box_padding=cfg.data.box_padding)
        return cls(model, options=replace(options, dark_sigma=cfg.data.sigma), **kwargs)

    def _make_detector(self, names: FrameNames) -> Detector:
        return make_detector(self.detector_name, self.boxes, names, self.detector_weights, self.device)

    def _detector(self, source: FrameSource) -> Detector:
        """The detector of one run: the constructor's for the first run, a new one for later runs
        (the motion detector and box files keep per-run state) and for a box file read with an
        image folder's file names."""
        if self.boxes is not None and isinstance(source, ImageFolderSource):
            self._unused_detector = None
            names = self._names.merged(FrameNames(by_name={file.name: i for i, file in enumerate(source.files)}))
            return self._make_detector(names)
        detector, self._unused_detector = self._unused_detector or self._make_detector(self._names), None
        return detector

    def run(self, path: str | Path, overlay: str | Path | None = None, progress: bool = False) -> VideoResult:
        """Estimate and track the poses of every person in a video.

        Args:
            path: video file, image folder or glob pattern.
            overlay: mp4 to render the poses into (written while the video is processed).
            progress: show a progress bar with the frame rate.

        Returns:
            The per-frame poses, stage timings and warnings.

        Raises:
            VideoReadError: the input cannot be opened.
        """
        start = time.perf_counter()
        source = open_frames(path)
        detector = self._detector(source)
        timer = StageTimer(self.device)
        network = Network(
            self.model, self.device, self.options.batch_size, self.options.box_padding, timer,
            flip_perm=flip_permutation() if self.options.flip else None,
            dark_sigma=self.options.dark_sigma if self.options.dark else None,
        )  # fmt: skip
        tracker = PoseTracker(self.options.tracker)
        engine = make_engine(self.options.mode, network, tracker, timer, self.options.chunk_length)
        result = VideoResult(str(path), source.fps, image_prefix=default_image_prefix(path), gt_images=self.gt_images)
        pending: deque[EstimatedFrame] = deque()
        counts = {"outside": 0, "empty": 0}
        writer = VideoWriter(overlay, source.fps) if overlay is not None else None
        frames = iter(source)
        with (
            torch.inference_mode(),
            _progress_bar(progress, Path(path).name, source.num_frames) as advance,
            writer or contextlib.nullcontext(),
        ):
            while True:
                with timer("decode"):
                    batch = list(itertools.islice(frames, self.options.detect_batch))
                if not batch:
                    break
                for detected in self._detect(batch, detector, timer, counts):
                    pending.extend(engine.push(detected))
                    self._emit(pending, tracker, result, writer, timer, advance, finished=False)
            pending.extend(engine.flush())
            self._emit(pending, tracker, result, writer, timer, advance, finished=True)
        if writer is not None and not writer.frames_written:
            result.messages.append(f"{overlay}: not written, no frame was decoded")
        self._finish(result, source, detector, counts)
        result.timings = {stage: timer.seconds.get(stage, 0.0) for stage in STAGES}
        result.wall_seconds = time.perf_counter() - start
        return result

    def _detect(
        self, frames: list[Frame], detector: Detector, timer: StageTimer, counts: dict[str, int]
    ) -> list[DetectedFrame]:
        """Cleaned person boxes of a batch of frames (one detector call where it batches)."""
        exact_boxes = isinstance(detector, BoxFileDetector) and detector.ground_truth
        items = []
        with timer("detect"):
            for frame, raw in zip(frames, detect_frames(detector, frames), strict=True):
                height, width = frame.image.shape[:2]
                kept, outside = clean_detections(
                    raw, (width, height), self.options.score_threshold, None if exact_boxes else self.options.nms_iou
                )
                counts["outside"] += outside
                counts["empty"] += not len(kept)
                items.append(DetectedFrame(frame, kept.boxes, kept.scores))
        return items

    @staticmethod
    def _emit(
        pending: deque[EstimatedFrame],
        tracker: PoseTracker,
        result: VideoResult,
        writer: VideoWriter | None,
        timer: StageTimer,
        advance: Callable[[], None],
        finished: bool,
    ) -> None:
        """Output the frames whose tracks' confirmation is settled (all of them at the end)."""
        while pending and (finished or tracker.num_updates >= pending[0].tracker_step + tracker.confirmation_delay):
            item = pending.popleft()
            persons = tuple(
                PersonPose(track_id, box, pose[:, :2], pose[:, 2], float(score), float(area))
                for key, box, score, pose, area in zip(
                    item.keys, item.boxes, item.box_scores, item.poses, item.areas, strict=True
                )
                if (track_id := tracker.track_id(int(key))) is not None
            )
            result.frames.append(FramePoses(item.frame.index, item.frame.name, True, persons))
            if writer is not None:
                with timer("render"):
                    writer.write(draw_frame(item.frame.image, persons, item.frame.index))
            advance()

    def _finish(self, result: VideoResult, source: FrameSource, detector: Detector, counts: dict[str, int]) -> None:
        """Add the undecoded frames and the warnings about the input."""
        names = [file.name for file in source.files] if isinstance(source, ImageFolderSource) else []
        for skipped in source.skipped:
            name = names[skipped.index] if skipped.index < len(names) else f"{skipped.index:06d}.jpg"
            result.frames.append(FramePoses(skipped.index, name, decoded=False))
        result.frames.sort(key=lambda frame: frame.index)
        messages = result.messages
        if source.skipped:
            indices = ", ".join(str(s.index) for s in source.skipped[:10])
            messages.append(f"{len(source.skipped)} frame(s) failed to decode and were skipped (indices {indices})")
        if not result.num_decoded:
            messages.append(f"{source.path}: no frame could be decoded")
        if counts["outside"]:
            messages.append(f"{counts['outside']} box(es) lay outside the image and were dropped")
        if counts["empty"]:
            messages.append(f"{counts['empty']} of {result.num_decoded} decoded frame(s) had no person box")
        if isinstance(detector, BoxFileDetector):
            undecoded = {skipped.index for skipped in source.skipped}
            unused = [index for index in detector.unused_frames() if index not in undecoded]
            if unused and len(unused) == len(detector.per_frame):
                messages.append(f"{detector.source}: no box refers to a frame of the input (box frames "
                                f"{unused[0]}..{unused[-1]}); check --gt-json or the file's frame keys")
            elif unused:
                messages.append(f"{detector.source}: boxes for {len(unused)} frame(s) not in the input were "
                                f"ignored ({unused[0]}..{unused[-1]})")
        if self.gt_images is not None and len(result.frames) > len(self.gt_images):
            messages.append(f"the input has {len(result.frames)} frames but the GT lists {len(self.gt_images)}; "
                            "frames past the GT are left out of the PoseTrack output")
        for message in messages:
            logger.warning(message)
