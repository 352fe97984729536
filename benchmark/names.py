"""Names that become file names, and output paths confined under their configured root.

Every name that ends up in a path — a split, a model, a run, a test set — is checked where it
enters (a configuration, a split file, a record) with :func:`check_name`; every output path is
built with :func:`confined`, which resolves it and refuses anything outside its root, and every
output folder is checked with :func:`check_writable` before any work is done.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Final

from qpebench.errors import ConfigError, QpebenchError

MAX_NAME_LENGTH: Final = 100
"""Longest accepted name (well below the 255 bytes of a file name, leaving room for suffixes)."""

_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# an ANSI CSI sequence first (whole), then any other control character but tab and newline
_CONTROL: Final = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def check_name(value: object, what: str, *, error: type[QpebenchError] = ConfigError) -> str:
    """Refuse a name that is not safe as a file name.

    Safe: ``[A-Za-z0-9_.-]``, not starting with a dot (so never ``.``, ``..`` or hidden), at
    most :data:`MAX_NAME_LENGTH` characters.

    Args:
        value: The name.
        what: What it names, for the message (e.g. ``"split name"``).
        error: The error class to raise (e.g. ``RecordError`` when read from a record).

    Returns:
        The name.

    Raises:
        QpebenchError: ``error``, with one line naming the value and the rule.
    """
    if not isinstance(value, str) or not value:
        raise error(f"{what} must be a non-empty string, not {printable(repr(value))}")
    if len(value) > MAX_NAME_LENGTH:
        raise error(
            f"{what} {printable(value[:40])!r}… is {len(value)} characters long; "
            f"at most {MAX_NAME_LENGTH} are allowed"
        )
    if _NAME.fullmatch(value) is None:
        raise error(
            f"{what} {printable(value)!r} is not safe as a file name: use letters, digits, "
            "'_', '.' and '-', not starting with '.'"
        )
    return value


def confined(root: str | os.PathLike[str], *parts: str) -> Path:
    """``root / parts...``, resolved, and refused unless it stays under the resolved ``root``.

    Raises:
        ConfigError: The path leaves ``root`` (``..``, an absolute part, a symbolic link).
    """
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise ConfigError(f"output path {path} is outside its folder {base}; refused")
    return path


def check_writable(folder: str | os.PathLike[str], what: str) -> Path:
    """Create ``folder`` if needed and prove a file can be written there.

    Called before any training, so a bad output folder fails in a second, not after hours.

    Raises:
        ConfigError: The folder cannot be created or written, with the reason.
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{what} {path} is not a writable folder ({reason})") from None
    return path


def printable(text: str) -> str:
    """``text`` without control characters and ANSI escape sequences (for a terminal)."""
    return _CONTROL.sub("", text)
