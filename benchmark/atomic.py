"""Atomic file writes: write beside the target, flush to disk, then rename over it."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | os.PathLike[str], *, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` if the block succeeds.

    A reader never sees a half-written file, and a crash leaves the old file (or none) in place.
    The file gets the usual permissions (``0o666`` less the umask), and the directory entry is
    flushed too.

    Args:
        target: The final path.
        exclusive: Never replace an existing ``target`` (raise ``FileExistsError`` instead),
            even against a concurrent writer.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp_path, target)  # fails if target exists
        else:
            os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(
    target: str | os.PathLike[str], obj: Any, *, indent: int = 2, exclusive: bool = False
) -> None:
    """Write ``obj`` as JSON (keys sorted, UTF-8) to ``target`` atomically.

    Args:
        target: The final path.
        obj: JSON-serialisable object.
        indent: JSON indentation.
        exclusive: Refuse to replace an existing file (``FileExistsError``).
    """
    text = json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n"
    with atomic_path(target, exclusive=exclusive) as tmp:
        tmp.write_bytes(text.encode("utf-8"))


def write_with(target: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)
