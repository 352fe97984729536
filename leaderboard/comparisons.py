"""Model comparisons made at render time from the records' per-day metric states.

For two entries of one split (model configurations) and each test set and paired metric
(``evaluation.paired_metrics`` of the records' configuration):

- with **two or more shared seeds** whose records have day states: the seed × day test, a
  two-level bootstrap that draws the seeds with replacement and one set of days shared by every
  drawn seed, and compares the mean over the drawn seeds of each model's pooled score
  (:func:`qpebench.evaluation.seed_day_replicates`);
- with **one** shared seed: the paired day-block test of that seed, the very numbers a run's
  :func:`qpebench.evaluation.paired_tests` gives; it compares two trained models, not two
  architectures, and makes no claim (``leaderboard/RULES.md`` 12).

Records are paired only on the same split (name and definition), dataset version, seeds,
evaluation settings and identical day lists; anything else is left out with a note, never
paired. Every record's replicates are computed once per draw (a replicate costs one scoring of
its state), however many partners it has. ``docs/evaluation.md`` gives the method.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from qpebench.evaluation import (
    DayStates,
    EvalSettings,
    bootstrap_weights,
    paired_comparison,
    seed_day_replicates,
    seed_draws,
    shared_day_weights,
)
from qpebench.states import record_settings

if TYPE_CHECKING:
    from .aggregate import Entry


@dataclass(frozen=True)
class Comparison:
    """Entry ``model`` against entry ``vs`` on one test set and metric.

    Attributes:
        split: The split of both entries.
        model: Label of entry A.
        vs: Label of entry B.
        test_set: The test set.
        metric: The score compared.
        seeds: The shared seeds compared: two or more for the seed × day test, one for the
            day-block test of that seed.
        diff: A − B: the difference of the means over ``seeds`` of each model's pooled score.
        ci: The percentile interval of the replicate differences at ``level`` (None if no
            replicate has both scores).
        p_value: One-sided: the share of replicates in which A is not better than B.
        level: The interval's confidence level (``evaluation.ci_level``).
    """

    split: str
    model: str
    vs: str
    test_set: str
    metric: str
    seeds: tuple[int, ...]
    diff: float
    ci: tuple[float, float] | None
    p_value: float
    level: float

    @property
    def over_seeds(self) -> bool:
        """Whether this is the seed × day test (two or more seeds)."""
        return len(self.seeds) >= 2


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given.

    The ``i``-th smallest of ``m`` p-values becomes ``max over j <= i of min(1, (m − j + 1)
    p_(j))``: rejecting where the adjusted value is below α keeps the chance of any false claim
    among the ``m`` below α (Holm 1979).
    """
    m = len(p_values)
    out = [math.nan] * m
    running = 0.0
    for rank, i in enumerate(np.argsort(p_values, kind="stable")):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[int(i)] = running
    return out


@dataclass(frozen=True)
class _Side:
    """One record's states on one test set, with its settings and pooled scores."""

    seed: int
    table: DayStates
    settings: EvalSettings
    scores: dict[str, float]

    @property
    def metrics(self) -> list[str]:
        """The paired metrics this model has."""
        return [m for m in dict.fromkeys(self.settings.paired_metrics) if m in self.scores]


class _Replicates:
    """Each record's replicates, computed once per draw and test set."""

    def __init__(self) -> None:
        self._done: dict[tuple[int, str, int | None], dict[str, npt.NDArray[np.float64]]] = {}

    def get(
        self, side: _Side, test_set: str, seed: int | None
    ) -> dict[str, npt.NDArray[np.float64]]:
        """Replicates on the day draws of run seed ``seed``, or on the shared draws (None)."""
        key = (id(side.table), test_set, seed)
        if key not in self._done:
            n, b = len(side.table.days), side.settings.bootstrap
            weights = (
                shared_day_weights(n, b, test_set)
                if seed is None
                else bootstrap_weights(n, b, seed, test_set)
            )
            self._done[key] = side.table.replicates(weights, side.metrics)
        return self._done[key]


def _sides(entry: Entry, test_set: str, bootstrap: int | None) -> dict[int, _Side]:
    """Seed → the entry's record states on ``test_set`` (records without states left out)."""
    out = {}
    for record, states in zip(entry.records, entry.states, strict=True):
        if states is not None and test_set in states:
            table = states[test_set]
            settings = record_settings(record, f"{entry.label} seed {record['seed']}")
            if bootstrap is not None:
                settings = replace(settings, bootstrap=bootstrap)
            out[int(record["seed"])] = _Side(int(record["seed"]), table, settings, table.scores())
    return out


def _pairable(
    a: Mapping[int, _Side], b: Mapping[int, _Side]
) -> tuple[list[tuple[_Side, _Side]], str | None]:
    """The seed pairs that may be compared, or none and the reason."""
    pairs = [(a[s], b[s]) for s in sorted(set(a) & set(b))]
    if not pairs:
        return [], None
    days, settings = pairs[0][0].table.days, _test_settings(pairs[0][0].settings)
    for x, y in pairs:
        if x.table.days != days or y.table.days != days:
            return [], "their records do not cover the same days"
        if settings != _test_settings(x.settings) or settings != _test_settings(y.settings):
            return [], "their records were evaluated with other bootstrap settings"
    return pairs, None


def _test_settings(settings: EvalSettings) -> tuple[Any, ...]:
    """The settings a paired test depends on (strata and interval metrics do not matter)."""
    return (settings.bootstrap, settings.ci_level, settings.paired_metrics, settings.min_days)


def _mean_scores(sides: Sequence[_Side]) -> dict[str, float]:
    return {m: float(np.mean([s.scores.get(m, math.nan) for s in sides])) for m in sides[0].scores}


def compare_entries(
    entries: Sequence[Entry],
    *,
    against: str | None = None,
    test_sets: Collection[str] | None = None,
    bootstrap: int | None = None,
) -> tuple[list[Comparison], list[str]]:
    """Every ordered pair of ``entries`` compared on their records' day states.

    Args:
        entries: Entries of one board (any splits; only entries of the same split, dataset
            version and split definition are paired).
        against: Only the pairs of which one entry has this label (both orders).
        test_sets: Only these test sets.
        bootstrap: Replicates to draw instead of the records' ``evaluation.bootstrap`` (the
            states allow any number: a large family needs more, see ``docs/evaluation.md``).

    Returns:
        The comparisons (entries by label, then test set, then metric) and notes on pairs
        left out because their records do not match.
    """
    ordered = sorted(entries, key=lambda e: (e.split, e.label))
    sides = {
        (e.label, e.split, s): _sides(e, s, bootstrap)
        for e in ordered
        for s in e.test_sets
        if test_sets is None or s in test_sets
    }
    replicates = _Replicates()
    out: list[Comparison] = []
    notes: set[str] = set()
    for a in ordered:
        for b in ordered:
            same = (a.split, a.dataset, a.definition) == (b.split, b.dataset, b.definition)
            if a is b or not same or (against is not None and against not in (a.label, b.label)):
                continue
            chosen = (s for s in a.test_sets if s in b.test_sets)
            for test_set in (s for s in chosen if test_sets is None or s in test_sets):
                pairs, reason = _pairable(
                    sides[a.label, a.split, test_set], sides[b.label, b.split, test_set]
                )
                if reason is not None:
                    first, second = sorted((a.label, b.label))
                    notes.add(f"{first} and {second} on {test_set}: not compared, {reason}")
                if pairs:
                    out += _compare(a, b, test_set, pairs, replicates)
    return out, sorted(notes)


def _compare(
    a: Entry,
    b: Entry,
    test_set: str,
    pairs: Sequence[tuple[_Side, _Side]],
    replicates: _Replicates,
) -> list[Comparison]:
    settings = pairs[0][0].settings
    if settings.bootstrap == 0 or len(pairs[0][0].table.days) < settings.min_days:
        return []  # as in a run: no bootstrap over a handful of days
    sides_a, sides_b = [x for x, _ in pairs], [y for _, y in pairs]
    if len(pairs) == 1:
        seed = sides_a[0].seed
        reps_a = replicates.get(sides_a[0], test_set, seed)
        reps_b = replicates.get(sides_b[0], test_set, seed)
    else:
        draws = seed_draws(len(pairs), settings.bootstrap, test_set)
        reps_a = seed_day_replicates([replicates.get(s, test_set, None) for s in sides_a], draws)
        reps_b = seed_day_replicates([replicates.get(s, test_set, None) for s in sides_b], draws)
    tests = paired_comparison(
        reps_a, reps_b, _mean_scores(sides_a), _mean_scores(sides_b), settings.ci_level
    )
    return [
        Comparison(
            split=a.split,
            model=a.label,
            vs=b.label,
            test_set=test_set,
            metric=metric,
            seeds=tuple(s.seed for s in sides_a),
            diff=float(test["diff"]),
            ci=None if test["ci"] is None else (test["ci"][0], test["ci"][1]),
            p_value=float(test["p_value"]),
            level=settings.ci_level,
        )
        for metric, test in tests.items()
    ]
