"""Exceptions raised on bad user input.

Every class subclasses the built-in exception a caller would expect (``ValueError``,
``KeyError``, ``OSError``) and :class:`QpebenchError`, so the command line can print any of them as
one clear line while library users can keep catching the built-in type.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class QpebenchError(Exception):
    """Base class of every error qpebench raises on bad input."""


class SampleValidationError(QpebenchError, ValueError):
    """A sample does not follow the sample interface (shape, dtype, units, time axis)."""


class ConfigError(QpebenchError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class UnknownNameError(QpebenchError, KeyError):
    """A name is not in a registry or catalogue; the message lists the choices."""

    def __str__(self) -> str:
        # KeyError.__str__ would print the repr (quoted) of the message.
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(QpebenchError, ValueError):
    """A name is registered twice."""


class StoreError(QpebenchError, OSError):
    """A sample store is missing, incomplete, corrupt or inconsistent with its manifest."""


class SplitError(QpebenchError, ValueError):
    """A split definition is invalid or would leak samples between its sets."""


class FileFormatError(QpebenchError, ValueError):
    """A data file is empty, truncated, of an unknown format or lacks what its format requires.

    The message starts with the file's path and names the problem.
    """


class ConversionError(QpebenchError, ValueError):
    """A quantity cannot become the one asked for without a choice the caller must make.

    Example: radar reflectivity becomes rain rate only through an explicit Z–R relation.
    """


class NotFittedError(QpebenchError, RuntimeError):
    """A model that learns from data was asked to predict before ``fit`` or loading."""


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
    """Build the message for an unknown name, with the choices and a close-match suggestion.

    Args:
        kind: What the name refers to, e.g. ``"model"``.
        name: The name that was asked for.
        choices: The names that exist.

    Returns:
        One line such as ``unknown model 'static_cn'; did you mean 'static_cnn'? Choices: ...``.
    """
    ordered = sorted(choices)
    close = difflib.get_close_matches(name, ordered, n=1, cutoff=0.5)
    hint = f" did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(ordered) if ordered else "(none registered)"
    return f"unknown {kind} {name!r};{hint} choices: {listing}"


def one_line(text: str) -> str:
    """``text`` on one line: every run of whitespace, line breaks included, becomes one space."""
    return " ".join(text.split())


def describe(exc: BaseException) -> str:
    """An exception from a library as one line for a message: ``Type: text``.

    Libraries (h5py, satpy, zarr, torch) often write several lines; a qpebench message is one.
    """
    return one_line(f"{type(exc).__name__}: {exc}")
