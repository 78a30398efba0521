"""Output files that appear whole or not at all.

Every file famipose writes (checkpoints, prediction JSON, overlay videos) is written to a hidden
temporary file next to its destination, flushed, fsynced and renamed over the destination only
once complete: a killed or failed write leaves the previous file (or none) under the final name.
A temporary left by a killed process is named ``.<name>.<random>.tmp<suffix>`` and removed by
:func:`remove_stale_temporaries` on the next start.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_MARK = ".tmp"


def temporary_name(path: Path) -> Path:
    """A new, empty temporary file next to ``path`` that keeps its suffix (containers are chosen by it)."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{TEMP_MARK}{path.suffix}", dir=path.parent)
    os.close(handle)
    return Path(name)


def commit(temporary: Path, path: Path) -> None:
    """Make a complete temporary file durable and rename it over ``path``."""
    with temporary.open("rb+") as file:
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any error it is removed.

    Args:
        path: Destination; its folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    try:
        yield temporary
        commit(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries a killed write of ``path`` left behind; returns what was deleted."""
    path = Path(path)
    pattern = f".{path.name}.*{TEMP_MARK}*"  # also ``.last.pth.<random>.tmp``, as checkpoints were once named
    stale = sorted(path.parent.glob(pattern)) if path.parent.is_dir() else []
    for file in stale:
        file.unlink(missing_ok=True)
    return stale


def _fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
