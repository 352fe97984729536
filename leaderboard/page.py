"""The static HTML leaderboard page: tables and inline PNG plots, one self-contained file.

No script, no style sheet or font from elsewhere, no external image: figures are ``data:`` URIs.
A plot whose inputs no record has (e.g. reliability curves of schema v1 records) is replaced by
a note saying what is missing.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import curves, plots
from .aggregate import GAP_SET, ID_SET, MIN_SEEDS, OOD_PREFIX, Board, Entry, set_label
from .comparisons import Comparison
from .formats import MEANS_NOTE, fmt_cell, split_summary
from .tables import (
    SEED_NOTE,
    TRANSFER_METRIC,
    best_rows,
    detail_table,
    main_table,
    paired_table,
    seeds_statement,
    strata_table,
    transfer_matrices,
)

CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #444; }
.note { color: #8a5a00; font-size: 13px; }
figure { margin: 8px 16px 20px 0; }
.figures { display: flex; flex-wrap: wrap; align-items: flex-start; }
.wide { overflow-x: auto; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #555; }
section { margin-bottom: 32px; }
"""


def _text(value: str) -> str:
    """Escape ``value`` and turn Markdown `code` spans into ``<code>``."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(value))


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def html_table(frame: pd.DataFrame, *, spread: bool = True, bold: bool = False) -> str:
    """``frame`` as an HTML table; ``bold`` marks the best mean of each score column."""
    best = {c: best_rows(frame, c) for c in frame.columns} if bold else {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            text = html.escape(fmt_cell(value, spread=spread))
            cells.append(
                f"<td><strong>{text}</strong></td>"
                if i in best.get(column, ())
                else f"<td>{text}</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return f'<div class="wide">{table}</div>'


def figure_html(fig: Figure, caption: str) -> str:
    """A ``<figure>`` with the plot as an inline PNG and a caption."""
    data = base64.b64encode(plots.png_bytes(fig)).decode("ascii")
    alt = html.escape(caption)
    return (
        f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
        f"<figcaption>{alt}</figcaption></figure>"
    )


def _test_sets(entries: Sequence[Entry]) -> list[str]:
    return [s for s in dict.fromkeys(s for e in entries for s in e.test_sets) if s != GAP_SET]


def _performance(entries: Sequence[Entry]) -> list[str]:
    out = []
    for test_set in _test_sets(entries):
        points: dict[str, dict[str, tuple[float, float]]] = {}
        for e in entries:
            found = {}
            for t in plots.THRESHOLD_MARKERS:
                pod, far = e.stat(test_set, f"pod@{t}"), e.stat(test_set, f"far@{t}")
                if not (pod.missing or far.missing):
                    found[t] = (1 - far.mean, pod.mean)
            if found:
                points[e.label] = found
        if points:
            title = f"{set_label(test_set)}: performance diagram"
            fig = plots.performance_diagram(points, title)
            out.append(figure_html(fig, f"{title} (means over seeds; CSI contours, bias lines)"))
    return out or [_note("No performance diagram: no record has pod@t and far@t.")]


def _ood_mean(e: Entry, metric: str) -> float:
    values = [e.stat(s, metric).mean for s in e.test_sets if s.startswith(OOD_PREFIX)]
    return float(np.mean(values)) if values else math.nan


def _frames(entries: Sequence[Entry]) -> list[str]:
    families: dict[str, set[int]] = {}
    for e in entries:
        families.setdefault(e.family, set()).add(e.frames)
    chosen = sorted(f for f, frames in families.items() if len(frames) >= 2)
    if not chosen:
        return [_note("No skill-vs-frames plot: no model family was run with two frame counts.")]
    series: dict[str, list[tuple[int, float, float]]] = {}
    for e in entries:
        if e.family in chosen:
            point = (e.frames, e.stat(ID_SET, "csi@1").mean, _ood_mean(e, "csi@1"))
            series.setdefault(f"{e.model} ({e.family})", []).append(point)
    fig = plots.skill_vs_frames(series, "CSI@1")
    caption = f"CSI@1 against input frames for the families {', '.join(chosen)}: ID and OOD mean"
    return [figure_html(fig, caption)]


def _reliability(entries: Sequence[Entry]) -> list[str]:
    out = []
    for test_set in _test_sets(entries):
        for name in curves.reliability_names(list(entries), test_set):
            found = {e.label: curves.pooled_reliability(e, test_set, name) for e in entries}
            shown = {k: v for k, v in found.items() if v is not None}
            title = f"{set_label(test_set)}: {name}"
            fig = plots.reliability_diagram(shown, title)
            out.append(figure_html(fig, f"{title} (pooled over seeds; counts below)"))
    return out or [
        _note(
            "No reliability diagram: no record has curves[test set]['reliability@t'] "
            "(models with a probability output, record schema 2)."
        )
    ]


def _histograms(entries: Sequence[Entry]) -> list[str]:
    out = []
    for test_set in _test_sets(entries):
        found = {e.label: curves.pooled_histogram(e, test_set) for e in entries}
        shown = {k: v for k, v in found.items() if v is not None}
        if shown:
            title = f"{set_label(test_set)}: rain-rate histogram"
            fig = plots.rain_histogram(next(iter(shown.values())), shown, title)
            out.append(figure_html(fig, f"{title}, prediction and truth (summed over seeds)"))
    return out or [
        _note("No rain-rate histogram: no record has curves[test set]['histogram'] (schema 2).")
    ]


def _examples(entries: Sequence[Entry]) -> tuple[list[str], list[str]]:
    out, notes = [], []
    for test_set in _test_sets(entries):
        found = {e.label: curves.example(e.first, test_set) for e in entries}
        shown = {k: v for k, v in found.items() if v is not None}
        if not shown:
            continue
        ref = next(iter(shown.values()))
        preds = {}
        for label, ex in shown.items():
            if ex.time == ref.time and ex.pred.shape == ref.pred.shape:
                preds[label] = ex.pred
            else:
                notes.append(f"example map of {label} on {test_set} is another patch; left out")
        title = f"{set_label(test_set)} at {ref.time}"
        fig = plots.example_maps(ref.ir108, ref.truth, preds, title)
        out.append(figure_html(fig, f"{title}: IR10.8, truth and predictions (lowest seed)"))
    if not out:
        out = [_note("No example maps: no record has examples (record schema 2).")]
    return out, notes


def _split_section(
    entries: Sequence[Entry], comparisons: Sequence[Comparison]
) -> tuple[list[str], list[str]]:
    split = entries[0].split
    parts = [f"<section><h2>{html.escape(split)}</h2>"]
    description = entries[0].first["split"].get("description")
    if description:
        parts.append(f"<p>{_text(str(description))}</p>")
    parts += [f"<p>{_text(split_summary(entries))}</p>", "<h3>Main table</h3>"]
    parts.append(f"<p>{html.escape(seeds_statement(entries))}</p>")
    parts.append(html_table(main_table(entries), bold=True))
    if any(e.marked for e in entries):
        parts.append(_note(SEED_NOTE))
    parts.append("<h3>Detail</h3>")
    if any(len(e.records) > 1 for e in entries):
        parts.append(_note(MEANS_NOTE))
    parts.append(html_table(detail_table(entries), spread=False))
    examples, notes = _examples(entries)
    for heading, figures in (
        ("Performance diagram", _performance(entries)),
        ("Skill against input frames", _frames(entries)),
        ("Reliability", _reliability(entries)),
        ("Rain-rate histogram", _histograms(entries)),
        ("Example maps", examples),
    ):
        parts += [f"<h3>{heading}</h3>", '<div class="figures">', *figures, "</div>"]
    strata, paired = strata_table(entries), paired_table(entries, comparisons)
    parts.append("<h3>Paired comparisons</h3>")
    if paired.frame.empty:
        parts.append(_note("No paired comparisons in the records."))
    else:
        parts += [f"<p>{html.escape(paired.note)}</p>", html_table(paired.frame)]
    parts.append("<h3>Strata</h3>")
    if len(strata):
        summary = f"{len(strata)} rows: model, test set, stratum column and value"
        parts.append(f"<details><summary>{summary}</summary>{html_table(strata)}</details>")
    else:
        parts.append(_note("No strata in the records."))
    return [*parts, "</section>"], notes


def _transfer(board: Board) -> tuple[list[str], list[str]]:
    parts = [f"<section><h2>Transfer matrix ({TRANSFER_METRIC.upper()})</h2>"]
    matrices, notes = transfer_matrices(board)
    if not matrices:
        if any(e.train_domain is not None for e in board.entries):
            why = "every model has one train domain and one test domain"
        else:
            why = "the records lack split.train_domain and split.test_domains (record schema 2)"
        return [*parts, _note(f"No transfer matrix: {why}."), "</section>"], notes
    means = {m: frame.map(lambda s: s.mean) for m, frame in matrices.items()}
    fig = plots.transfer_heatmaps(means, TRANSFER_METRIC.upper())
    parts.append(figure_html(fig, "Train domain (rows) × test domain: mean over seeds"))
    for model, frame in matrices.items():
        table = frame.copy()
        table.insert(0, "train \\ test", list(frame.index))
        parts += [f"<h3>{html.escape(model)}</h3>", html_table(table.reset_index(drop=True))]
    return [*parts, "</section>"], notes


def page(board: Board, title: str | None = None) -> str:
    """The whole HTML page of ``board``."""
    splits = board.splits
    heading = title or (splits[0] if len(splits) == 1 else "Leaderboard")
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{html.escape(heading)}</title>",
        f"<style>{CSS}</style></head>",
        "<body>",
        f"<h1>{html.escape(heading)}</h1>",
        f"<p>Rates in mm/h. A listed result needs at least {MIN_SEEDS} seeds "
        "(leaderboard/RULES.md); each table says what its cells hold.</p>",
    ]
    notes = list(board.notes)
    for split in splits:
        section, more = _split_section(board.of_split(split), board.comparisons_of(split))
        parts += section
        notes += more
    section, more = _transfer(board)
    parts += section
    notes += more
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        parts.append(f"<section><h2>Notes</h2><ul>{items}</ul></section>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
