"""The input-configuration study: skill as a function of frames, step, window, bands and network.

``qpebench report input-config RUNS…`` reads the records of one split (one record per model
configuration and seed, with day states) and writes, in Markdown and HTML:

- **the design**: the configurations, the levels each factor takes, the seeds per configuration,
  and the compute the records used (fit and evaluation time, machines);
- **skill per test domain** (the ID set and every full OOD set): per configuration its input
  (frames, step, window in minutes, bands, oracle fields), parameters and FLOPs, the mean ± std
  over seeds of CSI@1, CSI@5, RMSE and CRPS (where the model has quantiles), and the seed × day
  test against the reference configuration (:mod:`.comparisons`) with Holm's adjustment over
  every test of the report and a verdict: higher, lower or **no significant difference**;
- **the OOD decomposition**, where the split has factor-separated test sets (domains named
  ``<train domain>_<donor>_<factor>``, factor one of :data:`SHIFT_FACTORS`): per configuration and
  donor the drop from the ID set to the donor's full set and to each single-factor set, per seed,
  as mean ± std, with the sum of the single-factor drops beside the full drop (they need not add
  up: the factors interact);
- **the ceilings**, where records have them: the radar-vs-truth ceiling of each test set
  (``split.truth_ceiling``, a perfect retrieval scored against the radar) and, for
  configurations with oracle inputs (hidden generator states), the share of the oracle's gain
  over the reference that each sequence model reaches.

Every number is computed from the records read (:func:`input_config_report`); nothing is stored
elsewhere. ``docs/evaluation.md`` describes the method.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from qpebench.evaluation import (
    goodness,
    percentile_interval,
    seed_day_replicates,
    seed_draws,
    shared_day_weights,
)
from qpebench.records import RecordError
from qpebench.splits import SHIFT_FACTORS
from qpebench.states import record_settings

from .aggregate import ID_SET, MIN_SEEDS, OOD_PREFIX, Entry, RecordStates, group_records
from .comparisons import Comparison, compare_entries, holm
from .formats import md_escape, md_table
from .page import CSS, html_table

#: Scores of the skill tables, when the records have them.
SKILL_METRICS = ("csi@1", "csi@5", "rmse", "crps")
DECOMPOSITION_METRIC = "csi@1"
ALPHA = 0.05
_FACTOR_DOMAIN = re.compile(
    rf"^(?P<base>.+)_(?P<donor>[a-z0-9]+)_(?P<factor>{'|'.join(SHIFT_FACTORS)})$"
)
_BAND_SETS = {
    ("IR10.8",): "IR10.8",
    ("IR8.7", "IR10.8", "IR12.0"): "IR8.7, IR10.8, IR12.0",
}


@dataclass(frozen=True)
class Configuration:
    """One row of the study: an entry (a model configuration over seeds) and its input.

    Attributes:
        entry: The records of the configuration, one per seed.
        label: The display name: the model, then its input.
        windows: Minutes from the first to the last input frame, per set (``None`` where the
            record does not say).
    """

    entry: Entry
    label: str
    windows: dict[str, float | None]

    @property
    def card(self) -> dict[str, Any]:
        """The model card of the first seed's record."""
        card: dict[str, Any] = self.entry.first["model"]
        return card

    @property
    def oracle(self) -> tuple[str, ...]:
        """The oracle fields the model reads (empty for an IR-only model)."""
        return tuple(self.card.get("oracle_inputs") or ())


def _bands_text(bands: Sequence[str]) -> str:
    key = tuple(bands)
    if len(key) == 7:
        return "all 7"
    return _BAND_SETS.get(key, ", ".join(key))


def _window_text(minutes: float | None) -> str:
    return "–" if minutes is None else f"{minutes:g}"


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"a.b": value}``."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _distinct(configs: Sequence[Configuration]) -> list[Configuration]:
    """The configurations, each label made unique by the model settings that tell twins apart.

    Two entries with the same input (e.g. runs at other ``train.epochs`` or widths) get the
    settings in which their ``model_config`` differs, then the board's label if still equal.
    """
    out = list(configs)
    for label in {c.label for c in configs}:
        twins = [i for i, c in enumerate(configs) if c.label == label]
        if len(twins) < 2:
            continue
        flat = [_flat(configs[i].entry.first.get("model_config", {})) for i in twins]
        keys = sorted({k for f in flat for k in f if len({str(g.get(k)) for g in flat}) > 1})
        for i, f in zip(twins, flat, strict=True):
            extra = ", ".join(f"{k}={f.get(k)}" for k in keys) or configs[i].entry.label
            out[i] = replace(configs[i], label=f"{label[:-1]}, {extra})")
    return out


def configuration(entry: Entry, *, window: bool = True) -> Configuration:
    """The configuration of ``entry``, labelled by its model and input.

    ``window``: put the training set's window in minutes in the label (not where one label
    names a configuration over regions whose sensors have other frame intervals).
    """
    card = entry.first["model"]
    windows = dict(entry.first.get("input_window_min") or {})
    train = windows.get("train")
    parts = [f"{card['frames']} fr."]
    if card.get("step", 1) != 1:
        parts.append(f"step {card['step']}")
    if train is not None and window:
        parts.append(f"{train:g} min")
    parts.append(_bands_text(card["bands"]))
    if card.get("oracle_inputs"):
        parts.append("+ oracle")
    return Configuration(entry, f"{card['name']} ({', '.join(parts)})", windows)


@dataclass(frozen=True)
class Verdicts:
    """The seed × day tests of every configuration against the reference, Holm-adjusted.

    ``tests`` maps (configuration label, place, metric, direction) to the comparison and its
    adjusted p-value; the place is a test set (or, in :mod:`.region_ceiling`, the split whose
    ID set was tested); ``direction`` is ``"above"`` (the configuration better than the
    reference) or ``"below"``.
    """

    tests: dict[tuple[str, str, str, str], tuple[Comparison, float]]

    @property
    def family(self) -> int:
        """Holm's family: the number of one-sided tests adjusted together."""
        return len(self.tests)

    def verdict(self, label: str, test_set: str, metric: str, reference: str) -> str:
        """``better than REF``, ``worse than REF``, ``no significant difference`` or why none.

        A verdict needs a Holm-adjusted p below :data:`ALPHA` and an interval of the
        difference that excludes zero on the same side (``leaderboard/RULES.md`` 12).
        """
        above = self.tests.get((label, test_set, metric, "above"))
        below = self.tests.get((label, test_set, metric, "below"))
        if above is None or below is None:
            return "no seed × day test"
        if len(above[0].seeds) < MIN_SEEDS:
            return f"{len(above[0].seeds)} seeds: no claim"
        sign = _direction(metric)
        if sign == 0:
            return "no verdict (the ideal is not an extreme)"
        for (test, adjusted), word in ((above, "better"), (below, "worse")):
            lo, hi = test.ci if test.ci is not None else (math.nan, math.nan)
            clear = min(sign * lo, sign * hi) > 0  # the interval of A − B is on A's better side
            if adjusted < ALPHA and clear:
                return f"{word} than {reference}"
        return "no significant difference"

    def difference(self, label: str, place: str, metric: str) -> str:
        """The difference of the means, its interval, and the adjusted p of its side.

        As ``diff [lo, hi], p(Holm) p``; ``–`` where there is no test.
        """
        above = self.tests.get((label, place, metric, "above"))
        below = self.tests.get((label, place, metric, "below"))
        if above is None or below is None:
            return "–"
        comp = above[0]
        side = above if _direction(metric) * comp.diff >= 0 else below
        ci = "" if comp.ci is None else f" [{comp.ci[0]:+.3f}, {comp.ci[1]:+.3f}]"
        return f"{comp.diff:+.3f}{ci}, p(Holm) {side[1]:.3g}"


def _direction(metric: str) -> float:
    """+1 where a higher score is better (CSI), −1 where lower is (RMSE), else 0.

    0 for a score whose ideal is a value in between (bias, frequency bias, coverage): the raw
    difference then has no better side.
    """
    probe = goodness(metric, np.array([-2.0, -1.0, 1.0, 2.0]))
    steps = np.sign(np.diff(probe))
    return float(steps[0]) if (steps == steps[0]).all() else 0.0


TestKey = tuple[str, str, str, str]


def paired_tests(
    configs: Sequence[Configuration],
    reference: Configuration,
    comparisons: Sequence[Comparison],
    test_sets: Sequence[str],
    place: str | None = None,
) -> dict[TestKey, Comparison]:
    """The seed × day comparisons of each configuration with ``reference``, both directions.

    Keyed by (configuration label, place, metric, direction); the place is the test set, or
    ``place`` where given (one test set per split, named by its split).
    """
    found: dict[TestKey, Comparison] = {}
    labels = {c.entry.label: c.label for c in configs}
    ref = reference.entry.label
    for c in comparisons:
        if not c.over_seeds or c.test_set not in test_sets:
            continue
        where = place or c.test_set
        if c.vs == ref and c.model in labels and c.model != ref:
            found[labels[c.model], where, c.metric, "above"] = c
        elif c.model == ref and c.vs in labels and c.vs != ref:
            found[labels[c.vs], where, c.metric, "below"] = c
    return found


def adjusted(found: dict[TestKey, Comparison]) -> Verdicts:
    """``found`` with Holm-adjusted p-values: one family."""
    keys = list(found)
    values = holm([found[k].p_value for k in keys])
    return Verdicts({k: (found[k], p) for k, p in zip(keys, values, strict=True)})


_Cache = dict[tuple[int, str], "npt.NDArray[np.float64] | None"]


def _drop_replicates(
    entry: Entry, test_set: str, metric: str, draws: npt.NDArray[np.intp], cache: _Cache
) -> npt.NDArray[np.float64] | None:
    """Seed × day replicates of the mean over seeds of the drop from ID to ``test_set``.

    The seeds are drawn once (``draws``) for every set of the decomposition, and each set's days
    on its own (the sets hold different samples): a replicate is the mean over its drawn seeds
    of the ID score minus the set's score. ``None`` without day states for both sets. ``cache``
    keeps each (entry, set)'s replicates for the draws of that entry.
    """
    key = (id(entry), test_set)
    if key in cache:
        return cache[key]
    parts = []
    for name in (ID_SET, test_set):
        per_seed = []
        for states in entry.states:
            if states is None or name not in states:
                cache[key] = None
                return None
            table = states[name]
            weights = shared_day_weights(len(table.days), draws.shape[0], name)
            per_seed.append(table.replicates(weights, [metric]))
        parts.append(seed_day_replicates(per_seed, draws)[metric])
    drop: npt.NDArray[np.float64] = parts[0] - parts[1]
    cache[key] = drop
    return drop


def _drop_cell(
    entry: Entry,
    metric: str,
    sets: Sequence[str],
    draws: npt.NDArray[np.intp] | None,
    cache: _Cache,
    minus: Sequence[str] = (),
) -> str:
    """``mean ± std [lo, hi]`` of the drops to ``sets`` summed, less those to ``minus``.

    The mean and standard deviation are over the seeds; the interval is the seed × day one
    (:func:`_drop_replicates`), where every set has day states.
    """
    signed = [(name, 1.0) for name in sets] + [(name, -1.0) for name in minus]
    per_seed = np.zeros(len(entry.records))
    for name, sign in signed:
        per_seed += sign * np.asarray(_drops(entry, name, metric))
    if np.isnan(per_seed).any():
        return "–"
    text = f"{per_seed.mean():+.3f}"
    if per_seed.size > 1:
        text += f" ± {per_seed.std(ddof=1):.3f}"
    if draws is not None:
        total = np.zeros(draws.shape[0])
        for name, sign in signed:
            reps = _drop_replicates(entry, name, metric, draws, cache)
            if reps is None:
                return text
            total += sign * reps
        ci = percentile_interval(total, 0.95)
        if ci is not None:
            text += f" [{ci[0]:+.3f}, {ci[1]:+.3f}]"
    return text


def _drops(entry: Entry, test_set: str, metric: str) -> list[float]:
    """Per seed: the ID score minus the score on ``test_set`` (NaN where one is missing)."""
    out = []
    for record in entry.records:
        scores = record["metrics"]
        a = scores.get(ID_SET, {}).get(metric)
        b = scores.get(test_set, {}).get(metric)
        out.append(math.nan if a is None or b is None else float(a) - float(b))
    return out


@dataclass(frozen=True)
class InputConfigReport:
    """The study's tables, computed from the records (see the module docstring)."""

    split: str
    reference: str
    design: list[str]
    skill: dict[str, pd.DataFrame]
    verdicts: Verdicts
    replicates: int
    decomposition: pd.DataFrame | None
    ceilings: pd.DataFrame | None
    notes: list[str]

    def markdown(self) -> str:
        """The report as Markdown."""
        lines = [f"# Input configuration: {md_escape(self.split)}", ""]
        lines += [f"- {md_escape(d)}" for d in self.design] + [""]
        for test_set, table in self.skill.items():
            lines += [f"## Skill on {md_escape(_set_name(test_set))}", "", md_table(table), ""]
        lines += [_claims_text(self), ""]
        if self.decomposition is not None:
            lines += ["## OOD decomposition", "", DECOMPOSITION_NOTE, ""]
            lines += [md_table(self.decomposition), ""]
        if self.ceilings is not None:
            lines += ["## Ceilings", "", CEILING_NOTE, "", md_table(self.ceilings), ""]
        if self.notes:
            lines += ["## Notes", ""] + [f"- {md_escape(n)}" for n in self.notes] + [""]
        return "\n".join(lines)

    def html(self) -> str:
        """The report as one self-contained HTML page."""
        title = f"Input configuration: {self.split}"
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en">',
            '<head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{CSS}</style></head>",
            "<body>",
            f"<h1>{html.escape(title)}</h1>",
            "<ul>" + "".join(f"<li>{html.escape(d)}</li>" for d in self.design) + "</ul>",
        ]
        for test_set, table in self.skill.items():
            parts += [f"<h2>Skill on {html.escape(_set_name(test_set))}</h2>", html_table(table)]
        parts.append(f"<p>{html.escape(_claims_text(self))}</p>")
        if self.decomposition is not None:
            parts += [
                "<h2>OOD decomposition</h2>",
                f"<p>{html.escape(DECOMPOSITION_NOTE)}</p>",
                html_table(self.decomposition),
            ]
        if self.ceilings is not None:
            parts += [
                "<h2>Ceilings</h2>",
                f"<p>{html.escape(CEILING_NOTE)}</p>",
                html_table(self.ceilings),
            ]
        if self.notes:
            items = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
            parts.append(f"<h2>Notes</h2><ul>{items}</ul>")
        parts += ["</body>", "</html>", ""]
        return "\n".join(parts)


DECOMPOSITION_NOTE = (
    f"Drop of {DECOMPOSITION_METRIC.upper()} from the ID set to each set (positive: lower out of "
    "distribution): mean ± std over the seeds, then the 95 % seed × day interval (seeds drawn "
    "once for all sets, each set's days on their own). Each factor column is a test set that is "
    "the training region with ONE factor of the donor region; 'sum' adds the four, "
    "'interaction' is the full drop minus that sum. Where a factor does not change anything "
    "(India's SEVIRI has Europe's 15-min step), its drop shows the sampling noise of a test set."
)
CEILING_NOTE = (
    "CSI@1, mean ± std over seeds, on every test set. 'radar vs truth' scores the generator's "
    "true rain against the radar: how far the radar itself is from the truth (a reference "
    "point, not a bound: a hedged estimate can score higher against a noisy radar). An oracle "
    "configuration also reads hidden generator states (life stage and trend) as inputs, a "
    "reference point for what a sequence can add; 'share of the oracle gain' is "
    "(sequence − reference) / (oracle − reference) of the means over the seeds all three share "
    "(at least 3), given only where there is one oracle and it is significantly better than the "
    "reference (its verdict above)."
)


def _set_name(test_set: str) -> str:
    return "ID (id_test)" if test_set == ID_SET else test_set.removeprefix(OOD_PREFIX)


def _claims_text(report: InputConfigReport) -> str:
    return (
        f"Verdicts: the seed × day test of each configuration against {report.reference} "
        f"(both directions), Holm-adjusted over the {report.verdicts.family} one-sided tests of "
        f"this report ({report.replicates} seed × day replicates each); a verdict needs an "
        f"adjusted p < {ALPHA:g} and an interval that excludes "
        f"zero, with at least {MIN_SEEDS} shared seeds for a claim (leaderboard/RULES.md 12)."
    )


def _skill_table(
    configs: Sequence[Configuration],
    test_set: str,
    verdicts: Verdicts,
    reference: Configuration,
    paired: Sequence[str],
) -> pd.DataFrame:
    metrics = [m for m in SKILL_METRICS if any(m in c.entry.metrics(test_set) for c in configs)]
    rows = []
    for c in configs:
        card = c.card
        row: dict[str, Any] = {
            "configuration": c.label,
            "frames": card["frames"],
            "step": card.get("step", 1),
            "window (min)": _window_text(c.windows.get(test_set)),
            "bands": _bands_text(card["bands"]),
            "parameters": f"{int(card['parameters']):,}",
            "MFLOPs": f"{int(card.get('flops_per_sample', 0)) / 1e6:.0f}",
            "seeds": len(c.entry.seeds),
        }
        for m in metrics:
            row[m.upper()] = c.entry.stat(test_set, m)
        for m in paired:
            if c is reference:
                row[f"Δ{m.upper()} vs reference"] = "reference"
                row[f"{m.upper()} verdict"] = "–"
                continue
            row[f"Δ{m.upper()} vs reference"] = verdicts.difference(c.label, test_set, m)
            row[f"{m.upper()} verdict"] = verdicts.verdict(
                c.label, test_set, m, reference.entry.model
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _decomposition(
    configs: Sequence[Configuration],
    train_domain: str,
    domains: dict[str, str],
    replicates: int,
) -> pd.DataFrame | None:
    by_domain = {d: s for s, d in domains.items()}
    donors: dict[str, dict[str, str]] = {}
    for test_set, domain in domains.items():
        found = _FACTOR_DOMAIN.match(domain)
        if found and found["base"] == train_domain and found["donor"] in by_domain:
            donors.setdefault(found["donor"], {})[found["factor"]] = test_set
    if not donors:
        return None
    rows = []
    metric = DECOMPOSITION_METRIC
    cache: _Cache = {}
    for c in configs:
        n = len(c.entry.records)
        draws = seed_draws(n, replicates, "decomposition") if n > 1 else None
        for donor in sorted(donors):
            factors = donors[donor]
            row: dict[str, Any] = {"configuration": c.label, "donor": donor}
            row["full drop"] = _drop_cell(c.entry, metric, [by_domain[donor]], draws, cache)
            for factor in SHIFT_FACTORS:
                sets = [factors[factor]] if factor in factors else []
                row[factor] = _drop_cell(c.entry, metric, sets, draws, cache) if sets else "–"
            if len(factors) == len(SHIFT_FACTORS):
                parts = [factors[f] for f in SHIFT_FACTORS]
                row["sum"] = _drop_cell(c.entry, metric, parts, draws, cache)
                full = [by_domain[donor]]
                row["interaction"] = _drop_cell(c.entry, metric, full, draws, cache, minus=parts)
            else:
                row["sum"] = row["interaction"] = "–"
            rows.append(row)
    return pd.DataFrame(rows)


def _ceilings(
    configs: Sequence[Configuration],
    reference: Configuration,
    test_sets: Sequence[str],
    verdicts: Verdicts,
) -> pd.DataFrame | None:
    truth = reference.entry.first["split"].get("truth_ceiling") or {}
    oracles = [c for c in configs if c.oracle]
    sequences = [c for c in configs if not c.oracle and c.card["frames"] > 1]
    if not truth and not oracles:
        return None
    rows = []
    for test_set in test_sets:
        row: dict[str, Any] = {"test set": _set_name(test_set)}
        value = truth.get(test_set, {}).get("csi@1")
        row["radar vs truth"] = "–" if value is None else f"{value:.3f}"
        row[f"reference: {reference.label}"] = reference.entry.stat(test_set, "csi@1")
        for o in oracles:
            row[o.label] = o.entry.stat(test_set, "csi@1")
        if len(oracles) == 1:
            o = oracles[0]
            better = verdicts.verdict(o.label, test_set, "csi@1", reference.entry.model)
            for s in sequences:
                share = oracle_share(reference.entry, s.entry, o.entry, test_set, "csi@1")
                row[f"share of the oracle gain: {s.label}"] = (
                    f"{share:.2f}" if better.startswith("better") and share is not None else "–"
                )
        rows.append(row)
    return pd.DataFrame(rows)


def oracle_share(
    reference: Entry, sequence: Entry, oracle: Entry, test_set: str, metric: str
) -> float | None:
    """The share of the oracle's gain over the reference that ``sequence`` reaches.

    ``(sequence − reference) / (oracle − reference)`` of the means of ``metric`` over the seeds
    all three entries have (the same seeds on both sides of the ratio); ``None`` with fewer
    than :data:`MIN_SEEDS` such seeds or no gain. Shown only where the oracle is significantly
    better than the reference (the caller checks its verdict).
    """
    scores = []
    for entry in (reference, sequence, oracle):
        by_seed = {}
        for r in entry.records:
            value = r["metrics"].get(test_set, {}).get(metric)
            if value is not None and not math.isnan(float(value)):
                by_seed[int(r["seed"])] = float(value)
        scores.append(by_seed)
    seeds = sorted(set(scores[0]) & set(scores[1]) & set(scores[2]))
    if len(seeds) < MIN_SEEDS:
        return None
    ref, seq, orc = (float(np.mean([s[k] for k in seeds])) for s in scores)
    return None if orc == ref else (seq - ref) / (orc - ref)


def _design(configs: Sequence[Configuration], reference: Configuration) -> list[str]:
    records = [r for c in configs for r in c.entry.records]
    seeds = sorted({len(c.entry.seeds) for c in configs})
    levels = {
        "architecture": sorted({c.card["name"] for c in configs}),
        "frames": sorted({int(c.card["frames"]) for c in configs}),
        "step": sorted({int(c.card.get("step", 1)) for c in configs}),
        "window (min, training set)": sorted(
            {w for c in configs if (w := c.windows.get("train")) is not None}
        ),
        "bands": sorted({_bands_text(c.card["bands"]) for c in configs}),
        "oracle inputs": sorted({", ".join(c.oracle) or "none" for c in configs}),
    }
    first = reference.entry.first
    return [
        f"Split {first['split']['name']}, dataset version {first['dataset']['version']}; "
        f"{len(configs)} configurations, {len(records)} records; seeds per configuration: "
        + (f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"),
        "Levels: "
        + "; ".join(
            f"{k}: {' / '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in vals)}"
            for k, vals in levels.items()
        ),
        f"Reference: {reference.label}",
        *_one_factor(configs, reference),
        compute_text(records),
    ]


def _factors(config: Configuration) -> dict[str, str]:
    card = config.card
    return {
        "architecture": str(card["name"]),
        "frames": str(card["frames"]),
        "step": str(card.get("step", 1)),
        "bands": _bands_text(card["bands"]),
        "oracle inputs": ", ".join(config.oracle) or "none",
    }


def _one_factor(configs: Sequence[Configuration], reference: Configuration) -> list[str]:
    """The design line where the configurations vary one factor at a time around a base.

    The base is the sequence configuration from which the most others differ in exactly one
    factor (architecture, frames, step, bands, oracle inputs); the line is given when every
    configuration but the reference and its oracle variants is the base or one such variant.
    """
    others = [c for c in configs if c is not reference and not c.oracle]
    if len(others) < 2:
        return []

    def changed(a: Configuration, b: Configuration) -> list[str]:
        fa, fb = _factors(a), _factors(b)
        return [k for k in fa if fa[k] != fb[k]]

    base = max(others, key=lambda b: (sum(len(changed(b, c)) == 1 for c in others), b.label))
    varied: dict[str, list[str]] = {}
    for c in others:
        if c is base:
            continue
        diff = changed(base, c)
        if len(diff) != 1:
            return []
        varied.setdefault(diff[0], []).append(_factors(c)[diff[0]])
    order = list(_factors(base))
    parts = "; ".join(f"{k}: {' / '.join(varied[k])}" for k in sorted(varied, key=order.index))
    return [f"Design: one factor at a time from {base.label} ({parts})"]


def compute_text(records: Sequence[dict[str, Any]]) -> str:
    """The fitting and evaluation time of ``records`` and the machines they ran on."""
    fit = sum(float(r["runtime_s"].get("fit", 0)) for r in records)
    evaluate = sum(float(r["runtime_s"].get("evaluate", 0)) for r in records)
    machines = sorted(
        {
            f"{h.get('cpu_model') or h.get('machine', '?')} ({h.get('cpu_count', '?')} cores, "
            f"{h.get('torch_threads', '?')} torch threads, {h.get('device', '?')}"
            f"{', ' + str(h['gpu']) if h.get('gpu') else ''}, "
            f"{r['provenance'].get('precision', 'fp32')})"
            for r in records
            if (h := r.get("provenance", {}).get("hardware", {}))
        }
    )
    return (
        f"Compute: {fit / 3600:.2f} h of fitting and {evaluate / 3600:.2f} h of evaluation on "
        + "; ".join(machines)
    )


def replicates_for(family: int, recorded: int) -> int:
    """Bootstrap replicates for a Holm family of ``family`` tests: at least ``20 × family``.

    A p-value is at least ``1 / (B + 1)``, so an adjusted p-value below 0.05 needs
    ``B ≥ 20 m``; rounded up to thousands, and never fewer than the records' own ``recorded``.
    """
    return max(recorded, math.ceil(20 * family / 1000) * 1000)


def input_config_report(
    records: Sequence[dict[str, Any]],
    states: Sequence[RecordStates] | None,
    reference: str = "static_cnn",
) -> InputConfigReport:
    """The input-configuration study of ``records`` (one split) against ``reference``.

    Each configuration is compared with the reference on the ID set and every full OOD set, on
    the records' paired metrics, in both directions; the seed × day bootstrap draws
    :func:`replicates_for` that family's size (from the saved day states, so any number).

    Args:
        records: Loaded records (:func:`qpebench.leaderboard.sources.load_records`).
        states: Their day states, in the same order.
        reference: The reference model's registry name; its configuration without oracle
            inputs and with the most seeds is the reference row.

    Raises:
        RecordError: No record, records of several splits, or no record of ``reference``.
    """
    board = group_records(records, states, compare=False, oracle=True)
    if len(board.splits) != 1:
        raise RecordError(
            f"an input-configuration report covers one split; the records hold {board.splits}"
        )
    configs = _distinct([configuration(e) for e in board.entries])
    candidates = [c for c in configs if c.entry.model == reference and not c.oracle]
    if not candidates:
        names = sorted({c.entry.model for c in configs})
        raise RecordError(
            f"no record of the reference model {reference!r}; the records hold {names}"
        )
    ref = max(candidates, key=lambda c: (len(c.entry.seeds), c.label))
    configs.sort(key=lambda c: (c is not ref, c.card["name"], c.label))
    first = ref.entry.first
    domains = {str(k): str(v) for k, v in first["split"].get("test_domains", {}).items()}
    train_domain = str(first["split"].get("train_domain", ""))
    factor_sets = {
        s
        for s, d in domains.items()
        if (m := _FACTOR_DOMAIN.match(d)) and m["base"] == train_domain
    }
    shown = [s for s in ref.entry.test_sets if s not in factor_sets]
    settings = record_settings(first, f"{ref.label} seed {first['seed']}")
    paired = [m for m in settings.paired_metrics if m in ref.entry.metrics(ID_SET)]
    family = 2 * (len(configs) - 1) * len(shown) * len(paired)
    comparisons, notes = compare_entries(
        board.entries,
        against=ref.entry.label,
        test_sets=shown,
        bootstrap=replicates_for(family, settings.bootstrap),
    )
    tests = paired_tests(configs, ref, [c for c in comparisons if c.metric in paired], shown)
    verdicts = adjusted(tests)
    return InputConfigReport(
        split=board.splits[0],
        reference=ref.entry.model,
        design=_design(configs, ref),
        skill={s: _skill_table(configs, s, verdicts, ref, paired) for s in shown},
        verdicts=verdicts,
        replicates=replicates_for(family, settings.bootstrap),
        decomposition=_decomposition(configs, train_domain, domains, max(settings.bootstrap, 1000)),
        ceilings=_ceilings(configs, ref, ref.entry.test_sets, verdicts),
        notes=[*board.notes, *notes],
    )
