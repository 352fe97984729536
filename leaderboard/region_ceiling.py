"""The ceiling of the temporal gain per region: last frame, sequence and oracle, trained in place.

``qpebench report ceiling RUNS…`` reads the records of several splits, each training, selecting
and testing in one region (``synthetic_<region>_id``, or the ID part of a larger split such as
``synthetic_europe_factors``), and writes one table per score (CSI@1, RMSE) with a row per
region, on that region's ID test set:

- the radar-vs-truth score of the set (``split.truth_ceiling``: a perfect retrieval scored
  against the radar);
- a row per configuration present in every split (same model, frames, step, bands and oracle
  fields; the window in minutes follows each region's frame interval and is shown beside it)
  with the mean ± std over seeds;
- each configuration against the reference (the last-frame model): the difference of the means,
  its seed × day interval, the Holm-adjusted p-value and the verdict, Holm's family being every
  one-sided test of the report (all regions, configurations, scores and both directions);
- per sequence configuration, the share of the oracle's gain it reaches, where the split has one
  oracle (the reference network also reading the generator's hidden life-stage and trend
  fields) and it is significantly better than the reference.

Every number is computed from the records read (:func:`region_ceiling_report`);
``docs/evaluation.md`` describes the method.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from qpebench.records import RecordError
from qpebench.states import record_settings

from .aggregate import ID_SET, MIN_SEEDS, RecordStates, group_records
from .comparisons import Comparison, compare_entries
from .formats import md_escape, md_table
from .input_config import (
    ALPHA,
    Configuration,
    TestKey,
    Verdicts,
    adjusted,
    compute_text,
    configuration,
    paired_tests,
    replicates_for,
)
from .page import CSS, html_table

#: Scores of the tables, when the records have them.
CEILING_METRICS = ("csi@1", "rmse")


@dataclass(frozen=True)
class Region:
    """One split's configurations, on its ID set."""

    split: str
    domain: str
    configs: list[Configuration]
    reference: Configuration


@dataclass(frozen=True)
class RegionCeilingReport:
    """The per-region tables, computed from the records (see the module docstring)."""

    design: list[str]
    tables: dict[str, pd.DataFrame]
    verdicts: Verdicts
    replicates: int
    notes: list[str]

    def markdown(self) -> str:
        """The report as Markdown."""
        lines = [f"# {TITLE}", "", NOTE, ""]
        lines += [f"- {md_escape(d)}" for d in self.design] + [""]
        for metric, table in self.tables.items():
            lines += [f"## {md_escape(metric.upper())} on each region's ID set", ""]
            lines += [md_table(table), ""]
        lines += [_claims_text(self), ""]
        if self.notes:
            lines += ["## Notes", ""] + [f"- {md_escape(n)}" for n in self.notes] + [""]
        return "\n".join(lines)

    def html(self) -> str:
        """The report as one self-contained HTML page."""
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en">',
            '<head><meta charset="utf-8">',
            f"<title>{html.escape(TITLE)}</title>",
            f"<style>{CSS}</style></head>",
            "<body>",
            f"<h1>{html.escape(TITLE)}</h1>",
            f"<p>{html.escape(NOTE)}</p>",
            "<ul>" + "".join(f"<li>{html.escape(d)}</li>" for d in self.design) + "</ul>",
        ]
        for metric, table in self.tables.items():
            heading = f"{metric.upper()} on each region's ID set"
            parts += [f"<h2>{html.escape(heading)}</h2>", html_table(table)]
        parts.append(f"<p>{html.escape(_claims_text(self))}</p>")
        if self.notes:
            items = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
            parts.append(f"<h2>Notes</h2><ul>{items}</ul>")
        parts += ["</body>", "</html>", ""]
        return "\n".join(parts)


TITLE = "Ceiling of the temporal gain per region"
NOTE = (
    "Each row is a region in which every configuration was trained, selected (id_val) and "
    "tested (id_test). 'radar vs truth' scores the generator's true rain against the radar (a "
    "reference point, not a bound). The oracle is the reference network also given hidden "
    "generator states (life stage and trend) as inputs: a reference point for what a sequence "
    "can add. 'share of the oracle gain' is (sequence − reference) / (oracle − reference) of "
    "the means, given only where the oracle is significantly better than the reference."
)


def _claims_text(report: RegionCeilingReport) -> str:
    return (
        f"Verdicts: the seed × day test of each configuration against the reference (both "
        f"directions), Holm-adjusted over the {report.verdicts.family} one-sided tests of this "
        f"report ({report.replicates} seed × day replicates each); a verdict needs an adjusted "
        f"p < {ALPHA:g} and an interval that excludes zero, with at least {MIN_SEEDS} shared "
        "seeds for a claim (leaderboard/RULES.md 12)."
    )


def _key(config: Configuration) -> tuple[Any, ...]:
    card = config.card
    return (card["name"], card["frames"], card.get("step", 1), tuple(card["bands"]), config.oracle)


def _regions(
    records: Sequence[dict[str, Any]], states: Sequence[RecordStates] | None, reference: str
) -> tuple[list[Region], list[str]]:
    """The records grouped by split, each split's configurations without the window label."""
    by_split: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_split.setdefault(str(r.get("split", {}).get("name")), []).append(i)
    regions: list[Region] = []
    notes: list[str] = []
    for split, rows in sorted(by_split.items()):
        board = group_records(
            [records[i] for i in rows],
            None if states is None else [states[i] for i in rows],
            compare=False,
            oracle=True,
        )
        notes += board.notes
        configs = [configuration(e, window=False) for e in board.entries]
        candidates = [c for c in configs if c.entry.model == reference and not c.oracle]
        if not candidates:
            names = sorted({c.entry.model for c in configs})
            raise RecordError(
                f"split {split}: no record of the reference model {reference!r}; the records "
                f"hold {names}"
            )
        ref = max(candidates, key=lambda c: (len(c.entry.seeds), c.label))
        domain = str(ref.entry.first["split"].get("train_domain") or split)
        regions.append(Region(split, domain, configs, ref))
    return regions, notes


def _shared(regions: list[Region]) -> tuple[list[Region], list[str]]:
    """Each region with only the configurations every region has, reference first."""
    keys = [{_key(c) for c in r.configs} for r in regions]
    common = set.intersection(*keys)
    left = sorted({c.label for r in regions for c in r.configs if _key(c) not in common})
    notes = [f"not in every region, left out: {', '.join(left)}"] if left else []
    out = []
    for r in regions:
        chosen: dict[tuple[Any, ...], Configuration] = {}
        for c in r.configs:  # one configuration per key: the one with the most seeds
            k = _key(c)
            if k in common and (k not in chosen or len(c.entry.seeds) > len(chosen[k].entry.seeds)):
                chosen[k] = c
        chosen[_key(r.reference)] = r.reference
        ordered = sorted(
            chosen.values(),
            key=lambda c: (c is not r.reference, c.oracle != (), c.card["name"], c.label),
        )
        out.append(replace(r, configs=ordered))
    return out, notes


def region_ceiling_report(
    records: Sequence[dict[str, Any]],
    states: Sequence[RecordStates] | None,
    reference: str = "static_cnn",
) -> RegionCeilingReport:
    """The per-region ceiling of the records of several splits (one region's ID set each).

    Args:
        records: Loaded records (:func:`qpebench.leaderboard.sources.load_records`).
        states: Their day states, in the same order.
        reference: The last-frame model's registry name; in each split its configuration
            without oracle inputs and with the most seeds is the reference.

    Raises:
        RecordError: No record, a split without the reference model, or two splits training in
            the same region.
    """
    if not records:
        raise RecordError("no result record to report")
    regions, notes = _regions(records, states, reference)
    domains = [r.domain for r in regions]
    if len(set(domains)) != len(domains):
        twice = sorted({d for d in domains if domains.count(d) > 1})
        raise RecordError(f"several splits train in {twice}: give one split per region")
    regions, left = _shared(regions)
    notes += left
    first = regions[0].reference.entry.first
    settings = record_settings(first, f"{regions[0].reference.label} seed {first['seed']}")
    metrics = [m for m in CEILING_METRICS if m in regions[0].reference.entry.metrics(ID_SET)]
    family = 2 * sum(len(r.configs) - 1 for r in regions) * len(metrics)
    replicates = replicates_for(family, settings.bootstrap)
    found: dict[TestKey, Comparison] = {}
    for r in regions:
        comparisons, why = compare_entries(
            [c.entry for c in r.configs],
            against=r.reference.entry.label,
            test_sets=[ID_SET],
            bootstrap=replicates,
        )
        notes += [f"{r.split}: {n}" for n in why]
        chosen = [c for c in comparisons if c.metric in metrics]
        found.update(paired_tests(r.configs, r.reference, chosen, [ID_SET], place=r.split))
    verdicts = adjusted(found)
    all_records = [rec for r in regions for c in r.configs for rec in c.entry.records]
    seeds = sorted({len(c.entry.seeds) for r in regions for c in r.configs})
    design = [
        "Regions (split, dataset version): "
        + "; ".join(
            f"{r.domain} ({r.split}, {r.reference.entry.first['dataset']['version']})"
            for r in regions
        ),
        "Configurations: " + "; ".join(c.label for c in regions[0].configs),
        f"{len(all_records)} records; seeds per configuration: "
        + (f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"),
        compute_text(all_records),
    ]
    tables = {m: _table(regions, m, verdicts) for m in metrics}
    return RegionCeilingReport(design, tables, verdicts, replicates, notes)


def _table(regions: Sequence[Region], metric: str, verdicts: Verdicts) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for r in regions:
        ref = r.reference
        base = ref.entry.stat(ID_SET, metric).mean
        truth = ref.entry.first["split"].get("truth_ceiling", {}).get(ID_SET, {}).get(metric)
        oracles = [c for c in r.configs if c.oracle]
        rows.append(
            {
                "region": r.domain,
                "configuration": "radar vs truth",
                "window (min)": "–",
                metric.upper(): "–" if truth is None else f"{truth:.3f}",
                "Δ vs reference": "–",
                "verdict": "–",
                "share of the oracle gain": "–",
            }
        )
        for c in r.configs:
            window = c.windows.get(ID_SET)
            share = "–"
            if c.card["frames"] > 1 and not c.oracle and len(oracles) == 1:
                oracle = oracles[0]
                better = verdicts.verdict(oracle.label, r.split, metric, ref.entry.model)
                if better.startswith("better"):
                    gain = oracle.entry.stat(ID_SET, metric).mean - base
                    share = f"{(c.entry.stat(ID_SET, metric).mean - base) / gain:.2f}"
            rows.append(
                {
                    "region": r.domain,
                    "configuration": c.label,
                    "window (min)": "–" if window is None else f"{window:g}",
                    metric.upper(): c.entry.stat(ID_SET, metric),
                    "Δ vs reference": "reference"
                    if c is ref
                    else verdicts.difference(c.label, r.split, metric),
                    "verdict": "–"
                    if c is ref
                    else verdicts.verdict(c.label, r.split, metric, ref.entry.model),
                    "share of the oracle gain": share,
                }
            )
    return pd.DataFrame(rows)
