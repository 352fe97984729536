"""Leaderboard tables from grouped records: every format renders these same tables.

The main table shows, for each test set, the CSI at 1 mm/h and the RMSE, plus the
generalization gap (mean over the out-of-distribution sets minus in-distribution, computed per
seed). A detail table lists more scores per model and test set; the strata, paired-comparison and
transfer tables appear when the records carry what they need (schema v2). Cells are strings or
:class:`~qpebench.leaderboard.aggregate.Stat` values. The paired tables show the comparisons
computed from the records' day states (:mod:`.comparisons`: over seeds and days for two or more
shared seeds, Holm-adjusted) and, for older records, the comparisons stored in them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .aggregate import (
    GAP_SET,
    ID_SET,
    MIN_SEEDS,
    Board,
    Entry,
    Stat,
    ordered_sets,
    set_label,
    strata_stats,
    unique_labels,
)
from .comparisons import Comparison, holm

MAIN_METRICS = ("csi@1", "rmse")
DETAIL_METRICS = (
    *(f"{score}@{t}" for score in ("pod", "far", "csi") for t in ("0.1", "1", "5", "10")),
    "ets@1",
    "bias",
    "rmse",
    "pearson_r",
)
#: Detail columns shown only when some record has them (distribution and probabilistic scores).
OPTIONAL_METRICS = ("wasserstein", "ks", "crps", "brier@1")
#: Stratum columns; ``n_samples`` (mean over seeds) is shown as a plain number.
STRATUM_METRICS = ("n_samples", "csi@1", "rmse", "bias")
TRANSFER_METRIC = "csi@1"
DAGGER = "†"
SEED_NOTE = (
    f"{DAGGER} fewer than {MIN_SEEDS} seeds (leaderboard/RULES.md asks for at least "
    f"{MIN_SEEDS}); a single seed shows its 95 % block-bootstrap interval where the record has one."
)
_HIGHER = ("csi", "pod", "ets", "hss", "pearson_r", "fss")


def scores_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Long table of every raw score: model, family, frames, parameters, seed, test_set, metric."""
    rows = []
    for rec in records:
        card = rec["model"]
        for test_set, scores in rec["metrics"].items():
            for metric, value in scores.items():
                rows.append(
                    {
                        "model": card["name"],
                        "family": card.get("family", ""),
                        "frames": card["frames"],
                        "parameters": card["parameters"],
                        "seed": rec["seed"],
                        "test_set": test_set,
                        "metric": metric,
                        "value": math.nan if value is None else float(value),
                    }
                )
    return pd.DataFrame(rows)


def seeds_cell(entry: Entry) -> str:
    """The number of seeds, with :data:`DAGGER` below :data:`MIN_SEEDS`."""
    return f"{len(entry.records)}{DAGGER if entry.marked else ''}"


def column_metric(column: str) -> str:
    """``"CSI@1 ID"`` → ``"csi@1"``; ``"ΔRMSE OOD−ID"`` → ``"rmse"``."""
    return column.split(" ")[0].removeprefix("Δ").lower()


def goodness(metric: str, value: float, *, gap: bool = False) -> float:
    """A number that grows as ``value`` of ``metric`` gets better (for bolding the best)."""
    base = metric.split("@")[0]
    if base.startswith("fss") or base in _HIGHER:
        return value
    if base in ("bias", "relative_bias") or (gap and base == "fbias"):
        return -abs(value)
    if base == "fbias":
        return -abs(value - 1.0)
    return -value


def best_rows(table: pd.DataFrame, column: str, metric: str | None = None) -> set[int]:
    """Positions of the rows holding the best mean of a :class:`Stat` column (ties: all).

    Args:
        table: A table with :class:`Stat` cells.
        column: The column.
        metric: The score in the column; by default read from the column name
            (:func:`column_metric`).
    """
    metric = metric or column_metric(column)
    gap = column.startswith("Δ")
    scored = {
        i: goodness(metric, cell.mean, gap=gap)
        for i, cell in enumerate(table[column])
        if isinstance(cell, Stat) and not cell.missing
    }
    if len(scored) < 2:
        return set()
    top = max(scored.values())
    return {i for i, g in scored.items() if math.isclose(g, top, rel_tol=1e-12, abs_tol=1e-12)}


def main_table(entries: Sequence[Entry]) -> pd.DataFrame:
    """Rows = entries of one split; CSI@1 and RMSE per test set and their OOD−ID gap.

    Sorted by the ID CSI@1 mean (best first, missing last), then by model label.
    """
    test_sets = ordered_sets(s for e in entries for s in e.test_sets)
    has_gap = ID_SET in test_sets and len(test_sets) > 1
    rows = []
    for e in entries:
        row: dict[str, Any] = {
            "model": e.label,
            "seeds": seeds_cell(e),
            "frames": str(e.frames),
            "params": f"{e.parameters:,}",
        }
        for metric in MAIN_METRICS:
            for s in test_sets:
                row[f"{metric.upper()} {set_label(s)}"] = e.stat(s, metric)
            if has_gap:
                row[f"Δ{metric.upper()} OOD−ID"] = e.stat(GAP_SET, metric)
        rows.append(row)
    sort_col = f"CSI@1 {set_label(ID_SET)}"

    def order(row: dict[str, Any]) -> tuple[float, str]:
        stat = row.get(sort_col)
        mean = stat.mean if isinstance(stat, Stat) and not stat.missing else -math.inf
        return (-mean, str(row["model"]))

    rows.sort(key=order)
    return pd.DataFrame(rows)


def detail_table(entries: Sequence[Entry]) -> pd.DataFrame:
    """Rows = (entry, test set); columns = the present details.

    :data:`DETAIL_METRICS`, then the present :data:`OPTIONAL_METRICS`, then the present others a
    record's ``evaluation.ci_metrics`` names (a plugin's scores, ``fss17@1``, ``fbias@1``).
    """
    present = {m for e in entries for s in e.test_sets for m in e.metrics(s)}
    named = [m for e in entries for r in e.records for m in _ci_metrics(r)]
    wanted = dict.fromkeys((*DETAIL_METRICS, *OPTIONAL_METRICS, *named))
    metrics = [m for m in wanted if m in present]
    rows = []
    for e in sorted(entries, key=lambda x: x.label):
        for s in e.test_sets:
            rows.append(
                {"model": e.label, "test_set": set_label(s), **{m: e.stat(s, m) for m in metrics}}
            )
    return pd.DataFrame(rows, columns=["model", "test_set", *metrics])


def _ci_metrics(record: dict[str, Any]) -> list[str]:
    """The names in the record's ``config.evaluation.ci_metrics`` (none where it is malformed)."""
    config = record.get("config")
    block = config.get("evaluation") if isinstance(config, dict) else None
    names = block.get("ci_metrics") if isinstance(block, dict) else None
    return [m for m in names if isinstance(m, str)] if isinstance(names, list) else []


def strata_table(entries: Sequence[Entry]) -> pd.DataFrame:
    """Rows = (entry, test set, stratum column, value); columns = :data:`STRATUM_METRICS`.

    Empty (no rows) when no record has ``strata``.
    """
    rows = []
    for e in sorted(entries, key=lambda x: x.label):
        stats = strata_stats(e)
        cells = sorted(
            {k[:3] for k in stats},
            key=lambda k: (k[0] != ID_SET, k[0], k[1], stratum_order(k[2])),
        )
        for test_set, column, value in cells:
            row: dict[str, Any] = {
                "model": e.label,
                "test_set": set_label(test_set),
                "column": column,
                "value": value,
            }
            for metric in STRATUM_METRICS:
                row[metric] = stats.get((test_set, column, value, metric), Stat.of([]))
            count = row["n_samples"]
            row["n_samples"] = "–" if count.missing else f"{count.mean:g}"
            rows.append(row)
    return pd.DataFrame(rows, columns=["model", "test_set", "column", "value", *STRATUM_METRICS])


def seeds_statement(entries: Sequence[Entry]) -> str:
    """What the score cells of ``entries`` hold: one seed with its interval, or mean ± std."""
    counts = sorted({len(e.records) for e in entries})
    if counts == [1]:
        return (
            "One seed per model: each score with its day-block bootstrap interval [lo, hi] "
            "where the record has one."
        )
    if len(counts) == 1:
        return f"Mean ± standard deviation over {counts[0]} seeds (n = seeds with a value)."
    return (
        "Mean ± standard deviation over each model's seeds (n = seeds with a value); a model "
        "with one seed shows its day-block bootstrap interval [lo, hi] instead."
    )


@dataclass(frozen=True)
class PairedTable:
    """A table of model comparisons, a sentence saying what it holds, and its test count.

    Attributes:
        frame: The table (empty when there is no comparison).
        note: What the cells hold and how many comparisons the table makes.
        tests: The seed × day tests in the table: the family of Holm's adjustment.
    """

    frame: pd.DataFrame
    note: str
    tests: int


def _percent(level: float) -> str:
    return f"{100 * level:g} %"


def _paired_note(kinds: set[str], shown: int, tests: int, levels: set[float], subject: str) -> str:
    level = " or ".join(_percent(v) for v in sorted(levels)) or _percent(0.95)
    parts = [f"{shown} comparisons in this table, {tests} of them over seeds."]
    if "seeds" in kinds:
        parts.append(
            f"Over seeds: {subject}, the difference of the means over the seeds both models "
            f"share, with the {level} interval of the seed × day bootstrap (seeds drawn with "
            "replacement, then the test days) and the one-sided p-value; p (Holm) is adjusted "
            f"over the {tests} seed × day tests of this table."
        )
    if "day" in kinds:
        parts.append(
            f"{DAGGER} one shared seed: the difference on that seed with its {level} day-block "
            "bootstrap interval; it compares two trained models, not two architectures, and "
            "makes no claim."
        )
    if "stored" in kinds:
        parts.append(
            "Records without day states: the comparisons stored in them (mean difference over "
            "the seeds, largest p-value)."
        )
    return " ".join([*parts, "See docs/evaluation.md and leaderboard/RULES.md 12."])


def _seeds_text(comparison: Comparison) -> str:
    n = len(comparison.seeds)
    return f"{n}{DAGGER if n < MIN_SEEDS else ''}"


def _interval_text(ci: tuple[float, float] | None) -> str:
    return "–" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _holm_of(comparisons: Sequence[Comparison]) -> dict[int, float]:
    """Position → Holm-adjusted p-value, over the seed × day tests among ``comparisons``."""
    family = [i for i, c in enumerate(comparisons) if c.over_seeds]
    adjusted = holm([comparisons[i].p_value for i in family])
    return dict(zip(family, adjusted, strict=True))


def _partners(entries: Sequence[Entry]) -> dict[tuple[str, int, str], str]:
    """(run id, seed, model name) → the label of the entry holding that record.

    A record's ``paired`` names the other models of its own run and seed; this maps such a name
    to the board row it belongs to.
    """
    return {
        (str(r["run_id"]), int(r["seed"]), e.model): e.label for e in entries for r in e.records
    }


PAIRED_COLUMNS = ["model", "vs", "test_set", "metric", "seeds", "diff", "interval", "p", "p (Holm)"]


def _stored_rows(
    entries: Sequence[Entry], covered: set[tuple[str, str, str, str]]
) -> list[dict[str, Any]]:
    """Rows of the comparisons stored in records (``paired``, schema v2) not in ``covered``.

    Each comparison is attributed to the board row of its partner (the record of the same run
    and seed); one whose partner is not on the board is left out. ``diff`` is a :class:`Stat`
    over seeds, ``interval`` the record's for one seed, ``p`` the largest p-value over the
    seeds.
    """
    partners = _partners(entries)
    rows = []
    for e in entries:
        found: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for r in e.records:
            for test_set, others in r.get("paired", {}).items():
                for other, metrics in others.items():
                    partner = partners.get((str(r["run_id"]), int(r["seed"]), str(other)))
                    for metric, test in metrics.items():
                        key = (str(test_set), str(partner), str(metric))
                        if partner is not None and (e.label, *key) not in covered:
                            found.setdefault(key, []).append(test)
        for (test_set, partner, metric), tests in found.items():
            ci = tests[0].get("ci") if len(tests) == 1 else None
            pvalues = [float(t["p_value"]) for t in tests if t.get("p_value") is not None]
            rows.append(
                {
                    "model": e.label,
                    "vs": partner,
                    "test_set": test_set,
                    "metric": metric,
                    "seeds": str(len(tests)),
                    "diff": Stat.of([t.get("diff") for t in tests]),
                    "interval": _interval_text(None if ci is None else (ci[0], ci[1])),
                    "p": f"{max(pvalues):.3g}" if pvalues else "–",
                    "p (Holm)": "–",
                }
            )
    return rows


def paired_table(entries: Sequence[Entry], comparisons: Sequence[Comparison] = ()) -> PairedTable:
    """Every pair of entries on every test set and paired metric (rows: A, B, test set, metric).

    Rows of ``comparisons`` (from day states, :func:`.comparisons.compare_entries`) give the
    shared seeds, the difference of the means over them, its interval, the one-sided p-value of
    "A beats B" and, for the seed × day tests, the Holm-adjusted p-value over every seed × day
    test of the table. Pairs without them show the comparisons stored in the records.
    """
    labels = {e.label for e in entries}
    mine = [c for c in comparisons if c.model in labels and c.vs in labels]
    adjusted = _holm_of(mine)
    rows: list[dict[str, Any]] = [
        {
            "model": c.model,
            "vs": c.vs,
            "test_set": c.test_set,
            "metric": c.metric,
            "seeds": _seeds_text(c),
            "diff": f"{c.diff:+.3f}",
            "interval": _interval_text(c.ci),
            "p": f"{c.p_value:.3g}",
            "p (Holm)": f"{adjusted[i]:.3g}" if i in adjusted else "no claim",
        }
        for i, c in enumerate(mine)
    ]
    covered = {(c.model, c.test_set, c.vs, c.metric) for c in mine}
    stored = _stored_rows(entries, covered)
    kinds = {"seeds" if c.over_seeds else "day" for c in mine} | ({"stored"} if stored else set())
    rows += stored
    order = {s: i for i, s in enumerate(ordered_sets(r["test_set"] for r in rows))}
    rows.sort(key=lambda r: (r["model"], order[r["test_set"]], r["vs"], r["metric"]))
    for row in rows:
        row["test_set"] = set_label(row["test_set"])
    note = _paired_note(kinds, len(rows), len(adjusted), {c.level for c in mine}, "A − B")
    return PairedTable(pd.DataFrame(rows, columns=PAIRED_COLUMNS), note, len(adjusted))


_SEASONS = ("DJF", "MAM", "JJA", "SON")
#: The lower edge of a bin label (``<200 K``, ``200-210 K``, ``>=260 K``, ``-5-0 h``).
_LOWER_EDGE = re.compile(r"[<>=]*\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)")


def stratum_order(value: str) -> tuple[int, float, str]:
    """Sort key of stratum values: seasons in calendar order, bins by their lower edge."""
    if value in _SEASONS:
        return (0, float(_SEASONS.index(value)), value)
    edge = _LOWER_EDGE.match(value)
    if edge is None:
        return (2, 0.0, value)
    return (1, float(edge.group(1)) - (0.5 if value.startswith("<") else 0.0), value)


def strata_pivot(
    entries: Sequence[Entry], column: str, metric: str = TRANSFER_METRIC, test_set: str = ID_SET
) -> pd.DataFrame:
    """Rows = entries; one column per value of stratifier ``column``: ``metric`` on ``test_set``.

    The compact view of the strata for the Markdown page (the CSV and HTML have every stratum,
    test set and metric). Empty when no record has the stratifier on that test set.
    """
    stats = {e.label: strata_stats(e) for e in entries}
    values = sorted(
        {k[2] for by_key in stats.values() for k in by_key if k[:2] == (test_set, column)},
        key=stratum_order,
    )
    if not values:
        return pd.DataFrame()
    rows = []
    for e in sorted(entries, key=lambda x: x.label):
        row: dict[str, Any] = {"model": e.label}
        for value in values:
            row[value] = stats[e.label].get((test_set, column, value, metric), Stat.of([]))
        rows.append(row)
    return pd.DataFrame(rows)


def stratifiers(entries: Sequence[Entry], test_set: str = ID_SET) -> list[str]:
    """The stratifier columns the entries' records have on ``test_set``, sorted.

    Sorted, not in record order: a record read from its file has sorted keys, one still in
    memory does not, and both must render the same page.
    """
    return sorted(
        {c for e in entries for r in e.records for c in r.get("strata", {}).get(test_set, {})}
    )


def _best_cell(comparison: Comparison, adjusted: float | None) -> str:
    cell = f"{comparison.diff:+.3f} {_interval_text(comparison.ci)}, p {comparison.p_value:.2g}"
    n = len(comparison.seeds)
    if adjusted is None:
        return f"{cell} ({n} seed{DAGGER})"
    return f"{cell}, Holm {adjusted:.2g} ({n} seeds{DAGGER if n < MIN_SEEDS else ''})"


def _stored_best_cell(best: Entry, entry: Entry, test_set: str, metric: str) -> str | None:
    """``best − entry`` from the comparisons stored in the records (schema v2), if any.

    A comparison names its partner within its run: it is used only where this entry's record
    of the same seed comes from that run (not another configuration's).
    """
    partners = {(r["run_id"], r["seed"]) for r in entry.records}
    tests = [
        r.get("paired", {}).get(test_set, {}).get(entry.model, {}).get(metric)
        for r in best.records
        if (r["run_id"], r["seed"]) in partners
    ]
    tests = [t for t in tests if isinstance(t, dict) and t.get("p_value") is not None]
    if not tests:
        return None
    diffs = [float(t["diff"]) for t in tests if t.get("diff") is not None]
    p_value = max(float(t["p_value"]) for t in tests)
    margin = f"{float(np.mean(diffs)):+.3f}" if diffs else "–"
    return f"{margin} (p {p_value:.2g})"


def paired_vs_best(
    entries: Sequence[Entry],
    comparisons: Sequence[Comparison] = (),
    metric: str = TRANSFER_METRIC,
) -> PairedTable:
    """Rows = entries; per test set: the best entry's margin over each, with its test.

    The best entry of a test set has the highest mean ``metric``; a cell holds ``best − this``
    from ``comparisons`` (day states: the interval, p-value and, over seeds, the Holm-adjusted
    p-value over the seed × day tests of this table, and the number of seeds), else from the
    comparisons stored in the best entry's records (margin and largest p-value over seeds).
    The frame is empty when no cell has a comparison.
    """
    test_sets = ordered_sets(s for e in entries for s in e.test_sets)
    found = {(c.model, c.vs, c.test_set): c for c in comparisons if c.metric == metric}
    cells: dict[tuple[str, str], Comparison | str] = {}  # (entry label, header) → cell
    headers = []
    for test_set in test_sets:
        ranked = [e for e in entries if not e.stat(test_set, metric).missing]
        if not ranked:
            continue
        best = max(ranked, key=lambda e: (e.stat(test_set, metric).mean, e.label))
        header = f"{set_label(test_set)} (best: {best.label})"
        headers.append(header)
        for e in entries:
            if e is best:
                cells[e.label, header] = "best"
            elif (best.label, e.label, test_set) in found:
                cells[e.label, header] = found[best.label, e.label, test_set]
            else:
                cells[e.label, header] = _stored_best_cell(best, e, test_set, metric) or "–"
    shown = [(k, c) for k, c in cells.items() if isinstance(c, Comparison)]
    n_stored = sum(isinstance(c, str) and c not in ("best", "–") for c in cells.values())
    if not shown and not n_stored:
        return PairedTable(pd.DataFrame(), "", 0)
    adjusted = _holm_of([c for _, c in shown])
    kinds = {"seeds" if c.over_seeds else "day" for _, c in shown}
    kinds |= {"stored"} if n_stored else set()
    for i, (key, c) in enumerate(shown):
        cells[key] = _best_cell(c, adjusted.get(i))
    rows = [
        {"model": e.label, **{h: cells[e.label, h] for h in headers}}
        for e in sorted(entries, key=lambda x: x.label)
    ]
    levels = {c.level for _, c in shown}
    note = _paired_note(kinds, len(shown) + n_stored, len(adjusted), levels, "best − this")
    return PairedTable(pd.DataFrame(rows), note, len(adjusted))


def _newest_per_split(entries: Sequence[Entry]) -> dict[tuple[str, str, str, str], Entry]:
    """(model, config, dataset, split) → the entry with the newest records.

    Entries of one configuration on one split name differ only when the split was redefined
    (other filters or sizes): their test sets differ, so a matrix cell takes the newest only.
    """
    out: dict[tuple[str, str, str, str], Entry] = {}
    for e in sorted(entries, key=lambda x: max(str(r["created"]) for r in x.records)):
        out[e.model, e.config, e.dataset, e.split] = e
    return out


def transfer_matrices(
    board: Board, metric: str = TRANSFER_METRIC
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Train domain × test domain matrices of ``metric``, one per model configuration.

    Rows are ``split.train_domain``, columns the domains of ``split.test_domains`` (schema v2);
    a cell is the mean over the seeds of the configuration's entries covering it (one per
    split). A configuration gets a matrix when it has at least two train or two test domains.

    Returns:
        The matrices (cells are :class:`Stat`, missing cells ``Stat`` with ``n = 0``) by model
        label, and notes on cells pooled from several splits.
    """
    cells: dict[tuple[str, str, str], dict[tuple[str, str], list[tuple[Entry, str]]]] = {}
    frames: dict[tuple[str, str, str], int] = {}
    notes = []
    newest = _newest_per_split(board.entries)
    for e in board.entries:
        train = e.train_domain
        if train is None:
            continue
        key = (e.model, e.config, e.dataset)
        if newest[(*key, e.split)] is not e:
            notes.append(
                f"transfer {e.label} on {e.split}: an older definition of the split (other test "
                "sets) left out of the matrix"
            )
            continue
        frames[key] = e.frames
        for test_set, domain in e.test_domains.items():
            by_cell = cells.setdefault(key, {})
            by_cell.setdefault((train, domain), []).append((e, test_set))
    keys = sorted(cells)
    labels = unique_labels([(m, frames[m, c, d], c + d) for m, c, d in keys])
    matrices: dict[str, pd.DataFrame] = {}
    for key, label in zip(keys, labels, strict=True):
        by_cell = cells[key]
        rows = sorted({k[0] for k in by_cell})
        cols = sorted({k[1] for k in by_cell})
        if len(rows) < 2 and len(cols) < 2:
            continue
        grid = {(r, c): Stat.of([]) for r in rows for c in cols}
        for (train, test), sources in sorted(by_cell.items()):
            values = [r["metrics"].get(s, {}).get(metric) for e, s in sources for r in e.records]
            grid[train, test] = Stat.of(values)
            if len(sources) > 1:
                splits = ", ".join(e.split for e, _ in sources)
                notes.append(f"transfer {label} {train} → {test} pools the splits {splits}")
        matrices[label] = pd.DataFrame(
            [[grid[r, c] for c in cols] for r in rows], index=rows, columns=cols, dtype=object
        )
    return matrices, notes
