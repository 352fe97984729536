"""Render a leaderboard from result records into Markdown, CSV, LaTeX and HTML files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qpebench.atomic import write_bytes_atomic
from qpebench.errors import ConfigError, unknown_name_message

from .aggregate import Board, group_records
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
) -> dict[str, Path]:
    """Write the leaderboard of ``records`` in each of ``formats`` to ``out_dir``, atomically.

    The files are ``<stem>.<format>`` with the split name as stem (``leaderboard`` when the
    records cover several splits). The same records give the same bytes.

    Args:
        records: Loaded result records (:func:`qpebench.records.load_record`).
        out_dir: Output folder (created if needed).
        formats: Any of ``md``, ``csv``, ``tex``, ``html``.
        title: Page title; the split name (or ``Leaderboard``) by default.

    Returns:
        The path written for each format.

    Raises:
        ConfigError: An unknown format.
        RecordError: No record, or a malformed curve or example.
    """
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(unknown_name_message("leaderboard format", fmt, FORMATS))
    board = group_records(records)
    stem = board.splits[0] if len(board.splits) == 1 else "leaderboard"
    written = {}
    for fmt in dict.fromkeys(formats):
        suffix, build = FORMATS[fmt]
        path = Path(out_dir) / f"{stem}.{suffix}"
        write_bytes_atomic(path, build(board, title).encode("utf-8"))
        written[fmt] = path
    return written
