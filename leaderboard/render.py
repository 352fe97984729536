"""Render a leaderboard from result records into Markdown, CSV, LaTeX and HTML files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qpebench.atomic import write_bytes_atomic
from qpebench.errors import ConfigError, unknown_name_message
from qpebench.names import check_name, check_writable, confined
from qpebench.records import RecordError

from .aggregate import Board, RecordStates, group_records
from .formats import csv_text, latex, markdown
from .page import page

FORMATS: dict[str, tuple[str, Callable[[Board, str | None], str]]] = {
    "md": ("md", markdown),
    "csv": ("csv", lambda board, _title: csv_text(board)),
    "tex": ("tex", latex),
    "html": ("html", page),
}


def render(
    records: Sequence[dict[str, Any]],
    out_dir: Path,
    formats: Sequence[str] = ("md", "csv", "tex", "html"),
    title: str | None = None,
    states: Sequence[RecordStates] | None = None,
    name: str | None = None,
) -> dict[str, Path]:
    """Write the leaderboard of ``records`` in each of ``formats`` to ``out_dir``, atomically.

    The files are ``<stem>.<format>`` with ``name`` as stem, by default the split name
    (``leaderboard`` when the records cover several splits). The same records give the same
    bytes. Nothing is written outside ``out_dir``, whatever the records hold: the stem must be
    a safe name (:func:`qpebench.names.check_name`) and every path is built with
    :func:`qpebench.names.confined`.

    Args:
        records: Loaded result records (:func:`qpebench.records.load_record`).
        out_dir: Output folder (created if needed).
        formats: Any of ``md``, ``csv``, ``tex``, ``html``.
        title: Page title; the split name (or ``Leaderboard``) by default.
        states: Each record's day states (:func:`qpebench.states.read_states`; None for a
            record without), in the order of ``records``: the comparisons are computed from
            them (:func:`.aggregate.group_records`).
        name: The files' stem (a safe name), instead of the split name.

    Returns:
        The path written for each format.

    Raises:
        ConfigError: An unknown format, a ``name`` that is not a safe file name, or ``out_dir``
            is not a writable folder.
        RecordError: No record, a split name that is not safe as a file name, or a malformed
            curve or example.
    """
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(unknown_name_message("leaderboard format", fmt, FORMATS))
    if name is not None:
        check_name(name, "--name")
    board = group_records(records, states)
    stem = name or (board.splits[0] if len(board.splits) == 1 else "leaderboard")
    check_name(stem, "split name", error=RecordError)
    check_writable(out_dir, "leaderboard output folder")
    texts = {fmt: FORMATS[fmt][1](board, title) for fmt in dict.fromkeys(formats)}
    written = {}
    for fmt, text in texts.items():
        path = confined(out_dir, f"{stem}.{FORMATS[fmt][0]}")
        write_bytes_atomic(path, text.encode("utf-8"))
        written[fmt] = path
    return written
