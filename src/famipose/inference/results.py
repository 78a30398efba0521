"""What a video run returns: the tracked persons of every frame, stage timings and warnings.

The persons are :class:`~famipose.poses.PersonPose` values (the project's one person type);
:mod:`famipose.inference.writers` saves a :class:`VideoResult` as PoseTrack18 and COCO JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from famipose.poses import PersonPose


@dataclass(frozen=True, eq=False)
class FramePoses:
    """The persons of one frame.

    Attributes:
        index: 0-based frame index.
        name: frame file name (``%06d.jpg`` for videos).
        decoded: False for a frame that failed to decode (it has no persons).
        persons: the frame's tracked persons, best first.
    """

    index: int
    name: str
    decoded: bool
    persons: tuple[PersonPose, ...] = ()


@dataclass
class VideoResult:
    """Everything a run produced.

    Attributes:
        source: the input path.
        fps: frame rate of the input.
        frames: one entry per frame index 0..last, in order.
        image_prefix: folder written before frame names in output files (``images/<split>/<video>``).
        gt_images: GT ``images`` entries to copy into the PoseTrack output, or ``None``.
        timings: seconds spent per stage (see :data:`~famipose.inference.timing.STAGES`).
        wall_seconds: wall-clock duration of the run.
        messages: warnings about the input, in words.
    """

    source: str
    fps: float
    frames: list[FramePoses] = field(default_factory=list)
    image_prefix: str = ""
    gt_images: list[dict[str, Any]] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    messages: list[str] = field(default_factory=list)

    @property
    def num_decoded(self) -> int:
        """Frames that decoded."""
        return sum(frame.decoded for frame in self.frames)

    @property
    def throughput(self) -> float:
        """Decoded frames processed per wall-clock second."""
        return self.num_decoded / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def track_ids(self) -> set[int]:
        """Every track id in the result."""
        return {person.track_id for frame in self.frames for person in frame.persons if person.track_id is not None}
