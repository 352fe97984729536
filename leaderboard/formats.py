"""Markdown, CSV and LaTeX renderings of the leaderboard tables (the HTML page is in ``page``).

Every format shows the same tables (:mod:`qpebench.leaderboard.tables`). Text depends on the
records' contents only (no time stamp), so the same records render the same bytes.

Record text is not trusted: every Markdown text goes through :func:`md_escape` (no HTML tag, no
``|`` that splits a table cell, no line break), every CSV cell through :func:`csv_cell` (no
spreadsheet formula) and every LaTeX text through :func:`tex_escape`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from qpebench.names import printable

from .aggregate import (
    Board,
    Entry,
    RecordStates,
    Stat,
    group_records,
    ordered_sets,
    scores_long,
    set_label,
)
from .comparisons import Comparison
from .tables import (
    DAGGER,
    SEED_NOTE,
    TRANSFER_METRIC,
    best_rows,
    detail_table,
    main_table,
    paired_vs_best,
    seeds_statement,
    strata_pivot,
    stratifiers,
    transfer_matrices,
)

MEANS_NOTE = "Means over seeds; the CSV export has the standard deviations and intervals."


def md_escape(text: str) -> str:
    r"""``text`` safe as one Markdown table cell, heading or paragraph.

    Control characters and terminal escapes removed (:func:`qpebench.names.printable`), line
    breaks replaced by spaces, ``&`` and ``<`` written as entities (so no tag such as
    ``<script>`` or ``<img onerror=…>`` and no entity reaches a renderer; ``>`` alone opens
    nothing and stays readable, as in ``>=270 K``), ``\`` and ``|`` backslash-escaped (so a
    cell cannot split a table row), and ``](`` written ``]\(`` (so no link or image such as
    ``![x](https://…)`` is formed; an interval ``[0.5, 0.6]`` stays as it is).
    """
    one_line = " ".join(printable(text).splitlines())
    escaped = one_line.replace("&", "&amp;").replace("<", "&lt;")
    return escaped.replace("\\", "\\\\").replace("|", "\\|").replace("](", "]\\(")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` safe as a CSV cell: text a spreadsheet would run as a formula gets a ``'``.

    Text that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return and is not a
    number (the OWASP CSV-injection rule) is prefixed with an apostrophe; numbers, such as
    ``-0.08``, are left as they are.
    """
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def fmt_number(value: float) -> str:
    """Three decimals, or an en dash for a missing value."""
    return "–" if math.isnan(value) else f"{value:.3f}"


def fmt_stat(stat: Stat, *, spread: bool = True) -> str:
    """``0.553 ± 0.004 (n=3)``, ``0.553 [0.541, 0.566]`` (one seed with a CI), ``0.553`` or ``–``.

    Args:
        stat: The score.
        spread: Show the standard deviation or interval; ``False`` gives the mean only.
    """
    if stat.missing:
        return "–"
    text = fmt_number(stat.mean)
    if not spread:
        return text
    if stat.n >= 2:
        return f"{text} ± {stat.std:.3f} (n={stat.n})"
    if not (math.isnan(stat.lo) or math.isnan(stat.hi)):
        return f"{text} [{stat.lo:.3f}, {stat.hi:.3f}]"
    return text


def fmt_cell(cell: Any, *, spread: bool = True) -> str:
    """A table cell as plain text (:class:`Stat` through :func:`fmt_stat`)."""
    return fmt_stat(cell, spread=spread) if isinstance(cell, Stat) else str(cell)


def split_summary(entries: Sequence[Entry], escape: Callable[[str], str] = str) -> str:
    """One sentence: dataset, version(s), seeds, test-set sizes and the conventions.

    Args:
        entries: The entries of one split.
        escape: Applied to every text taken from the records (:func:`md_escape` for Markdown;
            the HTML page escapes the whole sentence).
    """
    first = entries[0].first
    adapters = ", ".join(
        f"`{escape(str(a))}`" for a in dict.fromkeys(e.first["dataset"]["adapter"] for e in entries)
    )
    versions = ", ".join(f"`{escape(str(v))}`" for v in dict.fromkeys(e.dataset for e in entries))
    seeds = sorted({s for e in entries for s in e.seeds})
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))
    sizes = first.get("n_samples", {})
    size_text = escape(", ".join(f"{set_label(k)} {sizes[k]}" for k in ordered_sets(sizes)))
    return (
        f"Dataset {adapters} version {versions}, {seed_text}. Test-set sizes: {size_text}. "
        "Rates in mm/h; CSI at 1 mm/h (`>=`); gaps are the mean over OOD sets minus ID."
    )


def md_table(frame: pd.DataFrame, *, spread: bool = True) -> str:
    """``frame`` as a Markdown table, every cell escaped (:func:`md_escape`)."""
    header = "| " + " | ".join(md_escape(str(c)) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(frame.columns))) + "|"
    body = [
        "| " + " | ".join(md_escape(fmt_cell(v, spread=spread)) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def _md_split(entries: Sequence[Entry], comparisons: Sequence[Comparison], level: int) -> list[str]:
    h = "#" * (level + 1)
    lines = [seeds_statement(entries), "", md_table(main_table(entries)), ""]
    if any(e.marked for e in entries):
        lines += [SEED_NOTE, ""]
    lines += [f"{h} Detail", ""]
    if any(len(e.records) > 1 for e in entries):
        lines += [MEANS_NOTE, ""]
    lines += [md_table(detail_table(entries), spread=False), ""]
    columns = stratifiers(entries)
    if columns:
        lines += [
            f"{h} Strata ({TRANSFER_METRIC.upper()}, ID test set)",
            "",
            "Every stratum, test set and metric is in the CSV and HTML renderings.",
            "",
        ]
        for column in columns:
            lines += [f"{h}# {md_escape(column)}", "", md_table(strata_pivot(entries, column)), ""]
    paired = paired_vs_best(entries, comparisons)
    if not paired.frame.empty:
        lines += [
            f"{h} Paired comparisons ({TRANSFER_METRIC.upper()})",
            "",
            f"The best model against each. {paired.note} Every pair and paired metric is in "
            "the HTML rendering.",
            "",
            md_table(paired.frame),
            "",
        ]
    return lines


def _matrix_frame(matrix: pd.DataFrame) -> pd.DataFrame:
    out = matrix.copy()
    out.insert(0, "train \\ test", list(matrix.index))
    return out.reset_index(drop=True)


def _stacked_matrices(matrices: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every model's transfer matrix in one table: rows (model, train domain)."""
    domains = sorted({c for m in matrices.values() for c in m.columns})
    rows = []
    for model, matrix in matrices.items():
        for train in matrix.index:
            row: dict[str, Any] = {"model": model, "train": train}
            for domain in domains:
                row[domain] = matrix.loc[train, domain] if domain in matrix.columns else "–"
            rows.append(row)
    return pd.DataFrame(rows)


def markdown(board: Board, title: str | None = None) -> str:
    """The Markdown leaderboard of ``board``.

    One split: a title (the split name by default), the description, the main, detail, strata
    and paired tables. Several splits: one section each. Then the transfer matrices and notes.
    """
    splits = board.splits
    single = len(splits) == 1
    lines = [f"# {md_escape(title or (splits[0] if single else 'Leaderboard'))}", ""]
    for split in splits:
        entries = board.of_split(split)
        if not single:
            lines += [f"## {md_escape(split)}", ""]
        description = entries[0].first["split"].get("description")
        if description:
            lines += [md_escape(str(description)), ""]
        lines += [split_summary(entries, md_escape), ""]
        lines += _md_split(entries, board.comparisons_of(split), level=1 if single else 2)
    matrices, transfer_notes = transfer_matrices(board)
    if matrices:
        lines += [
            f"## Transfer matrix ({TRANSFER_METRIC.upper()})",
            "",
            "Rows: model and training domain; columns: test domain (split.train_domain and "
            "split.test_domains of the records).",
            "",
            md_table(_stacked_matrices(matrices)),
            "",
        ]
    notes = [*board.notes, *transfer_notes]
    if notes:
        lines += ["## Notes", "", *(f"- {md_escape(n)}" for n in notes), ""]
    return "\n".join(lines)


def leaderboard_markdown(
    records: Sequence[dict[str, Any]],
    title: str | None = None,
    states: Sequence[RecordStates] | None = None,
) -> str:
    """Markdown leaderboard of ``records`` (grouped over seeds).

    The text depends on the records (and their day states) only (no time stamp), so the same
    seed and configuration render the same page.

    Args:
        records: Loaded records.
        title: Page title; the split name (or ``Leaderboard``) by default.
        states: Each record's day states (:func:`qpebench.states.read_states`; None for a
            record without), for the comparisons (:func:`.aggregate.group_records`).

    Raises:
        RecordError: No record.
    """
    return markdown(group_records(records, states), title)


def _csv_number(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def csv_text(board: Board) -> str:
    """Tidy CSV of every score (:data:`~qpebench.leaderboard.aggregate.SCORE_COLUMNS`).

    One row per split, model, test set (``OOD−ID`` = the gap), stratum and metric; ``mean`` and
    ``std`` over seeds, ``ci_lo``/``ci_hi`` for single seeds with an interval; empty = none.
    """
    frame = scores_long(board)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(frame.columns)
    numeric = {"mean", "std", "ci_lo", "ci_hi"}
    for row in frame.itertuples(index=False):
        writer.writerow(
            _csv_number(v) if c in numeric else csv_cell(v)
            for c, v in zip(frame.columns, row, strict=True)
        )
    return out.getvalue()


_TEX = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "<": r"\textless{}",
        ">": r"\textgreater{}",
        "Δ": r"$\Delta$",
        "−": r"$-$",
        "→": r"$\to$",
        "±": r"$\pm$",
        "–": "--",
        DAGGER: r"\textsuperscript{\dag}",
    }
)


def tex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped and the page's symbols in math mode."""
    return text.translate(_TEX)


def _tex_stat(stat: Stat, bold: bool) -> str:
    if stat.missing:
        return "--"
    body = f"{stat.mean:.3f}"
    if stat.n >= 2:
        body += rf" \pm {stat.std:.3f}"
    math_text = rf"$\mathbf{{{body}}}$" if bold else f"${body}$"
    if stat.n == 1 and not (math.isnan(stat.lo) or math.isnan(stat.hi)):
        math_text += rf" {{\scriptsize [{stat.lo:.3f}, {stat.hi:.3f}]}}"
    return math_text


def _tex_tabular(frame: pd.DataFrame, n_text: int, metric: str | None = None) -> list[str]:
    best = {c: best_rows(frame, c, metric) for c in frame.columns[n_text:]}
    spec = "l" * n_text + "r" * (len(frame.columns) - n_text)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines.append(" & ".join(tex_escape(str(c)) for c in frame.columns) + r" \\")
    lines.append(r"\midrule")
    for i, row in enumerate(frame.itertuples(index=False)):
        cells = [
            _tex_stat(v, i in best.get(c, set())) if isinstance(v, Stat) else tex_escape(str(v))
            for c, v in zip(frame.columns, row, strict=True)
        ]
        lines.append(" & ".join(cells) + r" \\")
    return [*lines, r"\bottomrule", r"\end{tabular}"]


def _tex_label(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text)


def latex(board: Board, title: str | None = None) -> str:
    r"""LaTeX tables (booktabs) of ``board``: the main table per split, the transfer matrices.

    The best mean per score column is bold; needs ``\usepackage{booktabs}``.
    """
    lines = [
        f"% {tex_escape(title or 'qpebench leaderboard')} -- generated by qpebench; "
        r"needs \usepackage{booktabs}",
    ]
    for split in board.splits:
        entries = board.of_split(split)
        lines += [
            "",
            r"\begin{table}[htbp]",
            r"\centering",
            rf"\caption{{{tex_escape(split)}: CSI at 1\,mm/h and RMSE (mm/h) per test set "
            rf"and the OOD$-$ID gap. {tex_escape(seeds_statement(entries))} Best in bold.}}",
            rf"\label{{tab:qpebench-{_tex_label(split)}}}",
            *_tex_tabular(main_table(entries), n_text=4),
        ]
        if any(e.marked for e in entries):
            lines.append(rf"\par\smallskip{{\footnotesize {tex_escape(SEED_NOTE)}}}")
        lines.append(r"\end{table}")
    matrices, _ = transfer_matrices(board)
    for model, matrix in matrices.items():
        lines += [
            "",
            r"\begin{table}[htbp]",
            r"\centering",
            rf"\caption{{Transfer matrix of {tex_escape(model)}: "
            rf"{tex_escape(TRANSFER_METRIC.upper())}, train domain (rows) $\times$ test domain.}}",
            rf"\label{{tab:qpebench-transfer-{_tex_label(model)}}}",
            *_tex_tabular(_matrix_frame(matrix), n_text=1, metric=TRANSFER_METRIC),
            r"\end{table}",
        ]
    return "\n".join(lines) + "\n"
