"""Errors raised on bad dataset input, entries skipped instead of raising, and JSON field checks.

Every reader in ``famipose.data`` reports bad input as a :class:`DataError` whose message names the
file, the entry (index or id) and the problem, e.g.::

    annotations/val/003418_mpii_test.json: annotations[3] (id 1003418000003): bbox has non-positive
    size (w=0.0, h=12.0)

Problems that concern a single annotation and are known to occur in real data (a degenerate box,
a reference to an image that is not in the file) are raised as :class:`SkippableDataError`; readers
catch those in their default, lenient mode, log them and record them as :class:`SkippedEntry`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MISSING: Any = object()


class DataError(ValueError):
    """Bad dataset input: a malformed file, a missing or invalid field, an undecodable image.

    Attributes:
        source: the file the problem was found in.
        entry: which entry of the file ("" when the whole file is at fault).
        problem: what is wrong, in words.
    """

    def __init__(self, source: str | Path, problem: str, entry: str = "") -> None:
        self.source = str(source)
        self.entry = entry
        self.problem = problem
        location = f"{self.source}: {entry}" if entry else self.source
        super().__init__(f"{location}: {problem}")

    def __reduce__(self) -> tuple[type[DataError], tuple[str, str, str]]:
        """Pickle with the constructor's arguments (DataLoader workers pickle exceptions)."""
        return type(self), (self.source, self.problem, self.entry)


class LoaderDataError(DataError):
    """A :class:`DataError` that survives a DataLoader worker.

    torch re-raises a worker's exception in the main process as ``type(text)``, ``text`` being the
    worker's whole traceback; an exception that cannot be built from one string becomes a bare
    ``RuntimeError``. This type is built from that one string and keeps its last line, the original
    message, so the error stays a one-line :class:`DataError`.

    Args:
        text: The message, or a worker traceback ending with ``<module>.LoaderDataError: <message>``.
    """

    def __init__(self, text: str) -> None:
        last_line = text.rstrip().splitlines()[-1] if text.strip() else text
        prefix = f"{type(self).__module__}.{type(self).__qualname__}: "
        message = last_line.removeprefix(prefix)
        ValueError.__init__(self, message)
        self.source, self.entry, self.problem = "", "", message

    def __reduce__(self) -> tuple[type[LoaderDataError], tuple[str]]:
        """Pickle with the message."""
        return type(self), (str(self),)


class SkippableDataError(DataError):
    """A problem confined to one entry that lenient readers skip (with a record) instead of raising."""

    def __init__(self, source: str | Path, problem: str, entry: str = "", kind: str = "") -> None:
        super().__init__(source, problem, entry)
        self.kind = kind or problem

    def __reduce__(self) -> tuple[type[SkippableDataError], tuple[str, str, str, str]]:
        """Pickle with the constructor's arguments."""
        return type(self), (self.source, self.problem, self.entry, self.kind)

    def to_skipped(self) -> SkippedEntry:
        """The record a lenient reader keeps for this entry."""
        return SkippedEntry(source=self.source, entry=self.entry, kind=self.kind, message=str(self))


@dataclass(frozen=True)
class SkippedEntry:
    """One input entry that a reader skipped.

    Attributes:
        source: file the entry came from.
        entry: the entry, e.g. ``"annotations[3] (id 17)"``.
        kind: short reason used for counting, e.g. ``"non-positive bbox"``.
        message: the full message (file, entry and problem).
    """

    source: str
    entry: str
    kind: str
    message: str


def count_skipped(skipped: tuple[SkippedEntry, ...]) -> dict[str, int]:
    """Number of skipped entries per reason ``kind``.

    Args:
        skipped: skipped entries, in any order.

    Returns:
        Mapping kind → count, in order of first occurrence.
    """
    counts: dict[str, int] = {}
    for item in skipped:
        counts[item.kind] = counts.get(item.kind, 0) + 1
    return counts


def load_json(path: Path) -> Any:
    """Decode a JSON file.

    Args:
        path: the file.

    Returns:
        The decoded document.

    Raises:
        DataError: the file cannot be read or is not valid JSON.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read file ({err})") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from err
    except (ValueError, RecursionError) as err:  # e.g. an integer literal with too many digits
        raise DataError(path, f"invalid JSON: {err}") from err


def get_field(
    raw: dict[str, Any], key: str, kind: type, source: str | Path, entry: str, default: Any = _MISSING
) -> Any:
    """A field of a JSON object, checked to be of one type.

    Args:
        raw: the object.
        key: field name.
        kind: expected Python type (``bool`` is not accepted as ``int``).
        source: file, for messages.
        entry: entry, for messages.
        default: value when the field is absent; without it the field is required.

    Returns:
        The value, or ``default``.

    Raises:
        DataError: the field is required and absent, or has another type.
    """
    if key not in raw:
        if default is _MISSING:
            raise DataError(source, f"missing field '{key}'", entry)
        return default
    value = raw[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise DataError(source, f"field '{key}' must be {kind.__name__}, got {json_type_name(value)}", entry)
    return value


def get_int(raw: dict[str, Any], key: str, source: str | Path, entry: str, optional: bool = False) -> Any:
    """An integer field of a JSON object (integral floats accepted).

    Args:
        raw: the object.
        key: field name.
        source: file, for messages.
        entry: entry, for messages.
        optional: return None when the field is absent or null instead of raising.

    Returns:
        The integer, or None.

    Raises:
        DataError: the field is required and absent, or is not an integer.
    """
    value = raw.get(key)
    if value is None:
        if optional:
            return None
        raise DataError(source, f"missing field '{key}'", entry)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DataError(source, f"field '{key}' must be an integer, got {json_type_name(value)}", entry)
    return value


def get_number(raw: dict[str, Any], key: str, source: str | Path, entry: str) -> float:
    """A required finite number field of a JSON object.

    Args:
        raw: the object.
        key: field name.
        source: file, for messages.
        entry: entry, for messages.

    Returns:
        The number.

    Raises:
        DataError: the field is absent or not a finite float32 number.
    """
    return float(get_numbers([get_field(raw, key, object, source, entry)], 1, source, entry, key)[0])


def get_numbers(value: Any, length: int | None, source: str | Path, entry: str, name: str) -> np.ndarray:
    """A JSON list of finite numbers as a float32 array.

    Args:
        value: the list.
        length: required length, or None for any.
        source: file, for messages.
        entry: entry, for messages.
        name: what the list is, for messages (e.g. ``"keypoints"``).

    Returns:
        (length,) float32 array.

    Raises:
        DataError: not a list, wrong length, or an item that is not a finite float32 number.
    """
    if not isinstance(value, list):
        raise DataError(source, f"{name} must be a list of numbers, got {json_type_name(value)}", entry)
    if length is not None and len(value) != length:
        raise DataError(source, f"{name} must have {length} numbers, got {len(value)}", entry)
    for item in value:
        # Chained comparisons are False for NaN and work for integers of any size.
        is_number = isinstance(item, (int, float)) and not isinstance(item, bool)
        if not is_number or not -_FLOAT32_MAX <= item <= _FLOAT32_MAX:
            raise DataError(source, f"{name} must hold finite float32 numbers, found {item!r}", entry)
    return np.asarray(value, dtype=np.float32)


def json_type_name(value: Any) -> str:
    """JSON name of a decoded value's type, for messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", float: "number", int: "integer"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
