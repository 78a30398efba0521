"""Streaming frame input (PyAV videos, image folders), bad input, and the mp4 writer."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from famipose.inference.video_io import VideoReadError, open_frames
from famipose.video_writer import VideoWriter

SIZE = (64, 48)  # w, h


def _image(index: int) -> np.ndarray:
    """A frame whose mean brightness encodes its index."""
    return np.full((SIZE[1], SIZE[0], 3), 10 + 20 * index, np.uint8)


def _write_video(path: Path, frames: int, codec: str | None = None) -> Path:
    with VideoWriter(path, fps=25, codec=codec) as writer:
        for i in range(frames):
            writer.write(_image(i))
    return path


def test_video_round_trip_keeps_order_indices_and_content(tmp_path: Path) -> None:
    path = _write_video(tmp_path / "clip.mp4", 8)
    source = open_frames(path)
    assert source.fps == pytest.approx(25.0)
    frames = list(source)
    assert [f.index for f in frames] == list(range(8))
    assert [f.name for f in frames][:2] == ["000000.jpg", "000001.jpg"]
    assert all(f.image.shape == (SIZE[1], SIZE[0], 3) and f.image.dtype == np.uint8 for f in frames)
    brightness = [f.image.mean() for f in frames]
    np.testing.assert_allclose(brightness, [10 + 20 * i for i in range(8)], atol=4)
    assert not source.skipped


def test_a_packet_that_fails_to_decode_is_skipped_with_indices_kept(tmp_path: Path) -> None:
    """Zero the second half of frame 5's JPEG packet in an MJPEG AVI: frame 5 is lost, 6.. keep their index."""
    path = _write_video(tmp_path / "clip.avi", 10, codec="mjpeg")
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(path.read_bytes())
    pos, size = packets[5]
    data[pos + size // 3 : pos + size] = bytes(size - size // 3)
    path.write_bytes(bytes(data))
    source = open_frames(path)
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert [(s.index, s.reason) for s in source.skipped] == [(5, "failed to decode")]
    np.testing.assert_allclose(frames[5].image.mean(), 10 + 20 * 6, atol=4)


def test_image_folder_is_sorted_and_skips_unreadable_files(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (2, 0, 1, 3):
        cv2.imwrite(str(folder / f"{i:04d}.png"), _image(i))
    (folder / "0002.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    source = open_frames(folder)
    frames = list(source)
    assert source.num_frames == 4
    assert [(f.index, f.name) for f in frames] == [(0, "0000.png"), (1, "0001.png"), (3, "0003.png")]
    assert [s.index for s in source.skipped] == [2]
    assert [f.index for f in open_frames(folder / "000[13].png")] == [0, 1]  # glob: its own sorted list


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.mp4", None, "no such file"),
        ("empty.mp4", b"", "cannot open as a video"),
        ("text.mp4", b"hello, not a video", "cannot open as a video"),
        ("folder", "dir", "no image files"),
    ],
)
def test_unreadable_inputs_raise_a_clear_error(
    tmp_path: Path, name: str, content: bytes | str | None, message: str
) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(VideoReadError, match=message):
        open_frames(path)


def test_writer_pads_odd_sizes_and_rejects_size_changes(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    writer = VideoWriter(path, fps=10)
    writer.write(np.zeros((21, 33, 3), np.uint8))
    with pytest.raises(ValueError, match="differs"):
        writer.write(np.zeros((20, 30, 3), np.uint8))
    writer.close()
    frames = list(open_frames(path))
    assert len(frames) == 1 and frames[0].image.shape == (22, 34, 3)
    VideoWriter(tmp_path / "nothing.mp4", fps=10).close()
    assert not (tmp_path / "nothing.mp4").exists()


def test_writer_keeps_odd_sizes_and_takes_bgr_frames_when_asked(tmp_path: Path) -> None:
    image = np.zeros((21, 33, 3), np.uint8)
    image[..., 2] = 200  # red, in OpenCV's BGR order
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, fps=10, codec="mpeg4", pixel_format="bgr24", threads=1, pad_odd=False) as writer:
        writer.write(image)
    (frame,) = list(open_frames(path))
    assert frame.image.shape == (21, 33, 3)  # as SynthTrack writes its frames: no padding
    red, green, blue = frame.image.reshape(-1, 3).mean(0)  # frames are read back as RGB
    assert red > 150 and max(green, blue) < 50
