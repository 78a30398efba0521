"""Streaming frame input: video files (decoded with PyAV) and image folders.

Frames are decoded one at a time and handed out as :class:`Frame` objects; nothing here holds more
than the frame being decoded, so a caller that keeps a bounded window of frames runs in bounded
memory whatever the video length.

Frame indices are the frame's position in the stream, counted from 0: for videos they come from
the presentation time stamp (``round(seconds * fps)``), for folders from the sorted file list. A
frame that fails to decode is skipped with a warning and recorded in ``FrameSource.skipped``; the
indices of the frames after it are unaffected.

Images are (H, W, 3) uint8 RGB throughout.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_FPS = 25.0  # image folders carry no frame rate


GLIBC_MMAP_THRESHOLD = 128 * 1024  # glibc's initial M_MMAP_THRESHOLD, in bytes
_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h


def release_freed_frames_to_os() -> bool:
    """Keep glibc from hoarding freed frame buffers (call once per process, before a long video).

    Every decoded, cropped and rendered frame is a multi-megabyte array allocated and freed again.
    glibc serves such blocks with ``mmap`` and unmaps them when freed, but its *dynamic* threshold
    rises to the size of each freed block, after which later frames come from the heap, where freed
    space stays in the process: peak RSS on a 720p video then plateaus about 1 GB higher (measured
    in ``benchmarks/video_throughput.py``). Fixing the threshold at its initial value turns that off.
    This changes a process-wide allocator setting, so the command-line tool calls it and the library
    never does on its own.

    Returns:
        True when the setting was applied (glibc found), False elsewhere (no effect, no error).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


class VideoReadError(RuntimeError):
    """The input cannot be opened, or holds no video stream or no images."""


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame.

    Attributes:
        index: 0-based position of the frame in the stream.
        image: (H, W, 3) uint8 RGB pixels.
        name: the image file name for folders, ``"%06d.jpg" % index`` for videos.
    """

    index: int
    image: np.ndarray
    name: str


@dataclass(frozen=True)
class SkippedFrame:
    """A frame that could not be decoded.

    Attributes:
        index: 0-based frame index.
        reason: what went wrong, in words.
    """

    index: int
    reason: str


@dataclass
class FrameSource(ABC):
    """An iterable of frames with the stream's metadata.

    Attributes:
        path: the input (video file, folder or glob pattern).
        fps: frames per second (``DEFAULT_FPS`` for image folders).
        num_frames: frame count announced by the container or the folder listing; ``None`` when
            the container does not say.
        skipped: frames that failed to decode, filled in while iterating.
    """

    path: str
    fps: float
    num_frames: int | None
    skipped: list[SkippedFrame] = field(default_factory=list)

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]:
        """Decode the frames in order."""

    def _skip(self, index: int, reason: str) -> None:
        logger.warning("%s: frame %d skipped: %s", self.path, index, reason)
        self.skipped.append(SkippedFrame(index, reason))


@dataclass
class ImageFolderSource(FrameSource):
    """Frames from image files, in sorted file-name order.

    Attributes:
        files: the image files, sorted.
    """

    files: tuple[Path, ...] = ()

    def __iter__(self) -> Iterator[Frame]:
        """Read each image; unreadable files are skipped with a warning."""
        for index, file in enumerate(self.files):
            data = np.fromfile(file, dtype=np.uint8) if file.is_file() else np.zeros(0, np.uint8)
            image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
            if image is None:
                self._skip(index, f"cannot decode image {file}")
                continue
            yield Frame(index, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), file.name)


@dataclass
class VideoFileSource(FrameSource):
    """Frames of the first video stream of a container, decoded with PyAV."""

    def __iter__(self) -> Iterator[Frame]:
        """Decode packet by packet; a packet that fails to decode is skipped with a warning."""
        with av.open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else None
            next_index = 0
            failed_packets = 0
            for decoded in self._decoded_packets(container, stream):
                if decoded is None:
                    failed_packets += 1
                    continue
                for video_frame in decoded:
                    if start is None:
                        start = video_frame.time or 0.0
                    index = self._index(video_frame, start, next_index)
                    for missing in range(next_index, index):
                        self._skip(missing, "failed to decode")
                    next_index = index + 1
                    yield Frame(index, video_frame.to_ndarray(format="rgb24"), f"{index:06d}.jpg")
            if self.num_frames is not None and next_index < self.num_frames:
                reason = "failed to decode (end of the stream)" if failed_packets else "missing (truncated file?)"
                for missing in range(next_index, self.num_frames):
                    self._skip(missing, reason)

    def _decoded_packets(
        self, container: av.container.InputContainer, stream: av.VideoStream
    ) -> Iterator[list[av.VideoFrame] | None]:
        """The frames of each packet, ``None`` for a packet that fails to decode; a container that
        cannot be read further (e.g. a truncated file) ends the stream with a warning."""
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as err:
                logger.warning("%s: reading stopped early (%s)", self.path, err)
                return
            try:
                yield packet.decode()
            except av.error.FFmpegError as err:
                logger.warning("%s: a packet failed to decode (%s); its frame is skipped", self.path, err)
                yield None

    def _index(self, video_frame: av.VideoFrame, start: float, next_index: int) -> int:
        """Stream position of a frame from its time stamp; never behind the next expected index."""
        if video_frame.time is None:
            return next_index
        return max(next_index, round((video_frame.time - start) * self.fps))


def _image_files(path: Path) -> tuple[Path, ...]:
    pattern = str(path)
    if glob.has_magic(pattern):
        return tuple(sorted(Path(p) for p in glob.glob(pattern)))
    return tuple(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))


def open_frames(path: str | Path, folder_fps: float = DEFAULT_FPS) -> FrameSource:
    """Open a video file, an image folder or a glob pattern (``frames/*.jpg``).

    Args:
        path: the input.
        folder_fps: frame rate reported for image folders.

    Returns:
        A frame source; iterate it to decode.

    Raises:
        VideoReadError: the path does not exist, is not a readable video, has no video stream, or
            lists no image.
    """
    path = Path(path)
    if path.is_dir() or glob.has_magic(str(path)):
        files = _image_files(path)
        if not files:
            raise VideoReadError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        return ImageFolderSource(str(path), folder_fps, len(files), files=files)
    if not path.is_file():
        raise VideoReadError(f"{path}: no such file or folder")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(DEFAULT_FPS)
            return VideoFileSource(str(path), float(rate), stream.frames or None)
    except av.error.FFmpegError as err:
        raise VideoReadError(f"{path}: cannot open as a video ({err})") from err
