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
from dataclasses import dataclass
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
    oracle_share,
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


Key = tuple[Any, ...]


def _key(config: Configuration) -> Key:
    """What makes a configuration the same in every region: its network and input."""
    card = config.card
    return (
        card["name"],
        card["frames"],
        card.get("step", 1),
        tuple(card["bands"]),
        tuple(sorted(config.oracle)),
    )


def _splits(
    records: Sequence[dict[str, Any]], states: Sequence[RecordStates] | None
) -> tuple[dict[str, list[Configuration]], list[str]]:
    """Each split's configurations (labelled without the window), and the grouping's notes."""
    by_split: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_split.setdefault(str(r.get("split", {}).get("name")), []).append(i)
    out: dict[str, list[Configuration]] = {}
    notes: list[str] = []
    for split, rows in sorted(by_split.items()):
        board = group_records(
            [records[i] for i in rows],
            None if states is None else [states[i] for i in rows],
            compare=False,
            oracle=True,
        )
        notes += board.notes
        out[split] = [configuration(e, window=False) for e in board.entries]
    return out, notes


def _regions(
    splits: dict[str, list[Configuration]], reference: str
) -> tuple[list[Region], list[str]]:
    """Per split, one configuration per key every split has; the same reference in each.

    The reference is the ``reference`` model's configuration without oracle inputs that every
    split has (the one with the most seeds over the splits, if several). Where a split has
    several entries of one key (other epochs, widths, data), the one on the reference's dataset
    and split definition with the most seeds is kept and the others are named in a note.

    Raises:
        RecordError: No common configuration of the reference model; two kept configurations
            of a split share a label; two splits train in one region.
    """
    common = set.intersection(*({_key(c) for c in configs} for configs in splits.values()))
    refs = [k for k in common if k[0] == reference and not k[4]]
    if not refs:
        held = sorted({c.label for configs in splits.values() for c in configs})
        raise RecordError(
            f"no configuration of the reference model {reference!r} is in every split "
            f"({', '.join(splits)}); the records hold {held}"
        )

    def seeds_of(key: Key) -> int:
        return sum(len(c.entry.seeds) for cs in splits.values() for c in cs if _key(c) == key)

    ref_key = max(refs, key=lambda k: (seeds_of(k), str(k)))
    left = sorted({c.label for cs in splits.values() for c in cs if _key(c) not in common})
    notes = [f"not in every region, left out: {', '.join(left)}"] if left else []
    regions = []
    for split, configs in splits.items():
        ref = max(
            (c for c in configs if _key(c) == ref_key), key=lambda c: (len(c.entry.seeds), c.label)
        )
        home = (ref.entry.dataset, ref.entry.definition)

        def rank(c: Configuration, home: tuple[str, str] = home) -> tuple[bool, int, str]:
            return ((c.entry.dataset, c.entry.definition) == home, len(c.entry.seeds), c.label)

        chosen: dict[Key, Configuration] = {ref_key: ref}
        for c in sorted(configs, key=rank, reverse=True):
            if _key(c) in common and _key(c) not in chosen:
                chosen[_key(c)] = c
        dropped = [c for c in configs if _key(c) in common and chosen[_key(c)] is not c]
        notes += [
            f"{split}: {c.entry.label} left out, another entry has the same input "
            f"({chosen[_key(c)].entry.label} kept)"
            for c in dropped
        ]
        labels = [c.label for c in chosen.values()]
        if len(set(labels)) != len(labels):
            twice = sorted({x for x in labels if labels.count(x) > 1})
            raise RecordError(f"split {split}: configurations share the label(s) {twice}")
        ordered = sorted(
            chosen.values(),
            key=lambda c: (c is not ref, c.oracle != (), c.card["name"], c.label),
        )
        domain = str(ref.entry.first["split"].get("train_domain") or split)
        if ID_SET not in ref.entry.test_sets:
            notes.append(f"{split}: no {ID_SET} set, its rows are empty")
        regions.append(Region(split, domain, ordered, ref))
    domains = [r.domain for r in regions]
    if len(set(domains)) != len(domains):
        twice = sorted({d for d in domains if domains.count(d) > 1})
        raise RecordError(f"several splits train in {twice}: give one split per region")
    return regions, notes


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
        RecordError: No record, no configuration of the reference model in every split, two
            kept configurations of a split with one label, or two splits training in one
            region.
    """
    if not records:
        raise RecordError("no result record to report")
    splits, notes = _splits(records, states)
    regions, more = _regions(splits, reference)
    notes += more
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
        truth = ref.entry.first["split"].get("truth_ceiling", {}).get(ID_SET, {}).get(metric)
        oracles = [c for c in r.configs if c.oracle]
        rows.append(
            {
                "region": r.domain,
                "configuration": "radar vs truth",
                "window (min)": "–",
                "seeds": "–",
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
                value = oracle_share(ref.entry, c.entry, oracle.entry, ID_SET, metric)
                if better.startswith("better") and value is not None:
                    share = f"{value:.2f}"
            rows.append(
                {
                    "region": r.domain,
                    "configuration": c.label,
                    "window (min)": "–" if window is None else f"{window:g}",
                    "seeds": ", ".join(str(k) for k in c.entry.seeds),
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
