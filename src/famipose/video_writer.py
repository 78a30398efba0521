"""Video output: the one encoder of the project (SynthTrack's videos, overlays, test clips).

:class:`VideoWriter` streams (H, W, 3) uint8 frames into a video file with PyAV. It imports nothing
of famipose, so the data generator (:mod:`famipose.data.synthtrack`) and inference
(:mod:`famipose.inference`) both use it.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Literal

import av
import numpy as np

PREFERRED_CODECS: tuple[str, ...] = ("libx264", "mpeg4")


class VideoWriter:
    """Encode frames into a video file (H.264 ``veryfast`` when available, else MPEG-4 Part 2).

    The file is created by the first frame, whose size fixes the video's; odd sizes are padded by
    one black row/column unless ``pad_odd`` is False (H.264 with 4:2:0 chroma needs even sizes;
    MPEG-4 Part 2 encodes odd ones). Closing a writer that got no frame writes nothing.

    Args:
        path: output file; its container is chosen from the suffix (``.mp4``, ``.avi``, ...).
        fps: frame rate.
        codec: encoder name, or ``None`` for the first of ``PREFERRED_CODECS`` that is available.
        pixel_format: channel order of the frames: ``rgb24``, or ``bgr24`` for OpenCV images.
        bit_rate: target bits per second, or ``None`` for the encoder's default.
        threads: encoder threads, or ``None`` for FFmpeg's choice (one thread makes FFmpeg's own
            ``mpeg4`` encoder give the same bytes on every run).
        pad_odd: pad odd frame sizes to even ones.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        codec: str | None = None,
        *,
        pixel_format: Literal["rgb24", "bgr24"] = "rgb24",
        bit_rate: int | None = None,
        threads: int | None = None,
        pad_odd: bool = True,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.codec = codec or next(c for c in PREFERRED_CODECS if c in av.codecs_available)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.pixel_format = pixel_format
        self.bit_rate = bit_rate
        self.threads = threads
        self.pad_odd = pad_odd
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self.frames_written = 0

    def _open(self, width: int, height: int) -> av.VideoStream:
        """Create the file and its stream for frames of ``width`` x ``height``."""
        self._container = av.open(str(self.path), "w")
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if self.codec == "mjpeg" else "yuv420p"
        if self.codec == "libx264":
            stream.options = {"preset": "veryfast"}  # 2x faster than the default, less memory
        if self.bit_rate is not None:
            stream.bit_rate = self.bit_rate
        if self.threads is not None:
            stream.codec_context.thread_count = self.threads
        return stream

    def write(self, image: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 frame (channels in ``pixel_format`` order).

        Raises:
            ValueError: the frame's size differs from the first frame's.
        """
        height, width = image.shape[:2]
        if self.pad_odd:
            image = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)))
        if self._container is None or self._stream is None:
            self._stream = self._open(image.shape[1], image.shape[0])
        elif (image.shape[1], image.shape[0]) != (self._stream.width, self._stream.height):
            raise ValueError(
                f"frame size {width}x{height} differs from the first frame's "
                f"{self._stream.width}x{self._stream.height}"
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=self.pixel_format)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and close the file (idempotent)."""
        if self._container is None or self._stream is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = self._stream = None

    def __enter__(self) -> VideoWriter:
        """Use as a context manager."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Close the file."""
        self.close()
