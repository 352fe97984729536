"""Result records grouped over seeds: one :class:`Entry` per model configuration.

Records that differ only in their seed (same split name and definition — its filters, buffer and
set sizes, not its description —, model name, model configuration less any ``seed`` key, and
dataset version) form one entry; every score of an entry is a
:class:`Stat`: the mean over seeds, the sample standard deviation (``ddof=1``) and the number of
seeds with a value. With one seed the 95 % confidence interval of the record's ``intervals``
(schema v2) is kept instead. Scores come from the records; the model comparisons of records
with day states (schema v3) are computed from those states (:mod:`.comparisons`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from qpebench.evaluation import DayStates
from qpebench.records import RecordError

from .comparisons import Comparison, compare_entries

#: A record's day states by test set (:func:`qpebench.states.read_states`), or None without.
RecordStates = Mapping[str, DayStates] | None

#: Seeds a row needs to be reported without a mark (``leaderboard/RULES.md``).
MIN_SEEDS = 3
ID_SET = "id_test"
OOD_PREFIX = "ood_test/"
#: Pseudo test set of the generalization gap: mean over the OOD sets minus the ID set.
GAP_SET = "OOD−ID"
NAN = math.nan


def set_label(test_set: str) -> str:
    """``id_test`` → ``ID``; ``ood_test/conus`` → ``conus``."""
    return "ID" if test_set == ID_SET else test_set.removeprefix(OOD_PREFIX)


def ordered_sets(names: Iterable[str]) -> list[str]:
    """Test sets in display order: ``id_test`` first, the OOD sets alphabetically, the gap last."""
    unique = list(dict.fromkeys(names))
    rest = sorted(n for n in unique if n not in (ID_SET, GAP_SET))
    return [n for n in unique if n == ID_SET] + rest + [n for n in unique if n == GAP_SET]


@dataclass(frozen=True)
class Stat:
    """One score over seeds.

    Attributes:
        mean: Mean over the seeds with a value (NaN if none).
        std: Sample standard deviation (``ddof=1``) over those seeds; NaN with fewer than two.
        n: Number of seeds with a value.
        lo: Lower end of the 95 % confidence interval (single seed with ``intervals`` only).
        hi: Upper end of that interval.
    """

    mean: float
    std: float
    n: int
    lo: float = NAN
    hi: float = NAN

    @classmethod
    def of(cls, values: Iterable[float | None], interval: Sequence[float] | None = None) -> Stat:
        """Aggregate per-seed ``values`` (``None`` = no value); ``interval`` is kept for n = 1."""
        kept = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
        if kept.size == 0:
            return cls(NAN, NAN, 0)
        std = float(np.std(kept, ddof=1)) if kept.size >= 2 else NAN
        lo, hi = NAN, NAN
        if kept.size == 1 and interval is not None and len(interval) == 2:
            lo, hi = (NAN if x is None else float(x) for x in interval)
        return cls(float(np.mean(kept)), std, int(kept.size), lo, hi)

    @property
    def missing(self) -> bool:
        """Whether no seed has a value."""
        return self.n == 0


def _strip_seed(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_seed(v) for k, v in obj.items() if k != "seed"}
    if isinstance(obj, list):
        return [_strip_seed(v) for v in obj]
    return obj


def _value(record: dict[str, Any], test_set: str, metric: str) -> float | None:
    if test_set == GAP_SET:
        return _gap(record, metric)
    value = record["metrics"].get(test_set, {}).get(metric)
    return None if value is None else float(value)


def _gap(record: dict[str, Any], metric: str) -> float | None:
    metrics = record["metrics"]
    ood = [s for s in metrics if s.startswith(OOD_PREFIX)]
    if ID_SET not in metrics or not ood:
        return None
    values = [metrics[s].get(metric) for s in (*ood, ID_SET)]
    if any(v is None for v in values):
        return None
    return float(sum(values[:-1]) / len(ood) - values[-1])


@dataclass(frozen=True)
class Entry:
    """The records of one model configuration on one split, one per seed (sorted by seed).

    ``label`` is the display name (unique within the split), ``config`` the model
    configuration less seeds as canonical JSON, ``definition`` the split's definition as
    canonical JSON, and ``states`` each record's day states (None where it has none).
    """

    split: str
    label: str
    model: str
    config: str
    family: str
    frames: int
    parameters: int
    dataset: str
    definition: str
    records: tuple[dict[str, Any], ...]
    states: tuple[RecordStates, ...]

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds, increasing."""
        return tuple(int(r["seed"]) for r in self.records)

    @property
    def marked(self) -> bool:
        """Fewer seeds than :data:`MIN_SEEDS`."""
        return len(self.records) < MIN_SEEDS

    @property
    def first(self) -> dict[str, Any]:
        """The record of the lowest seed (curves and examples come from it)."""
        return self.records[0]

    @property
    def test_sets(self) -> list[str]:
        """Test sets any seed has metrics for, in display order."""
        return ordered_sets(s for r in self.records for s in r["metrics"])

    @property
    def train_domain(self) -> str | None:
        """``split.train_domain`` (schema v2), the same for every seed."""
        value = self.first["split"].get("train_domain")
        return None if value is None else str(value)

    @property
    def test_domains(self) -> dict[str, str]:
        """``split.test_domains``: test set → domain (empty for schema v1)."""
        return {str(k): str(v) for k, v in self.first["split"].get("test_domains", {}).items()}

    def stat(self, test_set: str, metric: str) -> Stat:
        """The score ``metric`` on ``test_set`` (or :data:`GAP_SET`) over the seeds."""
        interval = None
        if len(self.records) == 1:
            interval = self.first.get("intervals", {}).get(test_set, {}).get(metric)
        return Stat.of((_value(r, test_set, metric) for r in self.records), interval)

    def metrics(self, test_set: str) -> list[str]:
        """Metric names any seed has on ``test_set`` (the ID set's for the gap), sorted."""
        source = ID_SET if test_set == GAP_SET else test_set
        return sorted({m for r in self.records for m in r["metrics"].get(source, {})})


@dataclass(frozen=True)
class Board:
    """Every entry of a set of records, their comparisons from day states, and notes.

    ``notes`` say what was left out of the aggregation or of the comparisons.
    """

    entries: tuple[Entry, ...]
    notes: tuple[str, ...]
    comparisons: tuple[Comparison, ...] = ()

    @property
    def splits(self) -> list[str]:
        """Split names in order of first appearance."""
        return list(dict.fromkeys(e.split for e in self.entries))

    def of_split(self, split: str) -> list[Entry]:
        """The entries of ``split``."""
        return [e for e in self.entries if e.split == split]

    def comparisons_of(self, split: str) -> list[Comparison]:
        """The comparisons of ``split``'s entries."""
        return [c for c in self.comparisons if c.split == split]


def _key(record: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """(split, model, model configuration, dataset version, split definition): a board row.

    The model configuration is the model's, less its seed (the transfer matrix matches it
    across splits); the split definition (its configuration less the description, and the set
    sizes) keeps records of an edited split that kept its name from being averaged as seeds of
    one row.
    """
    config = json.dumps(_strip_seed(record.get("model_config", {})), sort_keys=True)
    split = {
        k: v for k, v in (record.get("config", {}).get("split") or {}).items() if k != "description"
    }
    definition = {"split": split, "sizes": record["split"].get("sizes")}
    return (
        str(record["split"]["name"]),
        str(record["model"]["name"]),
        config,
        str(record["dataset"]["version"]),
        json.dumps(definition, sort_keys=True),
    )


def unique_labels(items: Sequence[tuple[str, int, str]]) -> list[str]:
    """Display names for (model name, frames, identity) items that must be told apart.

    A repeated name gets its frame count, and a short hash of the identity where that is not
    enough: ``static_cnn``, ``early_fusion (4 fr.)``, ``early_fusion (4 fr., 1a2b3c)``.
    """
    labels = []
    for name, frames, identity in items:
        twins = [f for n, f, _ in items if n == name]
        if len(twins) == 1:
            labels.append(name)
        elif twins.count(frames) == 1:
            labels.append(f"{name} ({frames} fr.)")
        else:
            digest = hashlib.sha256(identity.encode()).hexdigest()[:6]
            labels.append(f"{name} ({frames} fr., {digest})")
    return labels


def group_records(
    records: Sequence[dict[str, Any]],
    states: Sequence[RecordStates] | None = None,
    *,
    compare: bool = True,
    oracle: bool = False,
) -> Board:
    """Group ``records`` over seeds, and compare the entries on their day states.

    Two records of one configuration with the same seed are one result run twice: the newer
    (``created``, then ``run_id``) is kept and a note names the one left out. A record whose
    model is not causal is kept off the board, so is one whose model reads hidden generator
    states (``oracle_inputs``: a ceiling, not a retrieval) unless ``oracle``, and one from a
    dirty tree is kept and named, each with a note (``leaderboard/RULES.md``).

    Args:
        records: Loaded records (:func:`qpebench.records.load_record`).
        states: Each record's day states (:func:`qpebench.states.read_states`; None for a
            record without), in the order of ``records``; None: no record has states, and
            only the comparisons stored in the records (``paired``) are shown.
        compare: Compare every pair of entries (``False``: the caller compares the pairs it
            needs with :func:`~.comparisons.compare_entries`).
        oracle: Keep the records of oracle models (the input-configuration report's ceilings).

    Raises:
        RecordError: No record.
        ValueError: ``states`` is not one entry per record.
    """
    if not records:
        raise RecordError("no result record to render")
    if states is None:
        states = [None] * len(records)
    if len(states) != len(records):
        raise ValueError(f"{len(states)} state tables for {len(records)} records")
    found = dict(zip(map(id, records), states, strict=True))  # a record object → its states
    groups: dict[tuple[str, str, str, str, str], list[dict[str, Any]]] = {}
    notes = []
    for record in records:
        where = f"{record['model']['name']} on {record['split']['name']}, seed {record['seed']}"
        if record["model"].get("causal", True) is False:
            notes.append(
                f"{where}: run {record['run_id']} kept off the board (its inputs include frames "
                "after the target time; leaderboard/RULES.md 10)"
            )
            continue
        if record["model"].get("oracle_inputs") and not oracle:
            notes.append(
                f"{where}: run {record['run_id']} kept off the board (its inputs include hidden "
                "generator states, an oracle for the ceiling of an input; leaderboard/RULES.md 10)"
            )
            continue
        prov = record.get("provenance", {})
        if prov.get("dirty"):
            notes.append(
                f"{where}: ran on commit {str(prov.get('commit'))[:12]} with uncommitted changes "
                "(leaderboard/RULES.md 14)"
            )
        groups.setdefault(_key(record), []).append(record)
    if not groups:
        raise RecordError("every record was kept off the board: " + "; ".join(notes))
    for key, members in groups.items():
        by_seed: dict[int, dict[str, Any]] = {}
        for rec in sorted(members, key=lambda r: (str(r["created"]), str(r["run_id"]))):
            seed = int(rec["seed"])
            if seed in by_seed:
                notes.append(
                    f"{key[1]} on {key[0]}, seed {seed}: run {by_seed[seed]['run_id']} left out "
                    f"for the newer run {rec['run_id']} (same configuration and seed)"
                )
            by_seed[seed] = rec
        groups[key] = [by_seed[s] for s in sorted(by_seed)]
    labels: dict[tuple[str, str, str, str, str], str] = {}
    for split in dict.fromkeys(k[0] for k in groups):
        keys = [k for k in groups if k[0] == split]
        items = [(k[1], int(groups[k][0]["model"]["frames"]), "\0".join(k)) for k in keys]
        labels.update(zip(keys, unique_labels(items), strict=True))
    entries = []
    for key, members in groups.items():
        card = members[0]["model"]
        entries.append(
            Entry(
                split=key[0],
                label=labels[key],
                model=key[1],
                config=key[2],
                family=str(card.get("family", "")),
                frames=int(card["frames"]),
                parameters=int(card["parameters"]),
                dataset=key[3],
                definition=key[4],
                records=tuple(members),
                states=tuple(found[id(r)] for r in members),
            )
        )
    entries.sort(key=lambda e: (e.split, e.label))
    comparisons, more = compare_entries(entries) if compare else ([], [])
    return Board(tuple(entries), tuple(sorted([*notes, *more])), tuple(comparisons))


SCORE_COLUMNS = (
    "split",
    "model",
    "seeds",
    "test_set",
    "stratum_column",
    "stratum_value",
    "metric",
    "mean",
    "std",
    "ci_lo",
    "ci_hi",
)


def _row(entry: Entry, where: tuple[str, str, str], metric: str, stat: Stat) -> dict[str, Any]:
    test_set, column, value = where
    return {
        "split": entry.split,
        "model": entry.label,
        "seeds": len(entry.records),
        "test_set": test_set,
        "stratum_column": column,
        "stratum_value": value,
        "metric": metric,
        "mean": stat.mean,
        "std": stat.std,
        "ci_lo": stat.lo,
        "ci_hi": stat.hi,
    }


def strata_stats(entry: Entry) -> dict[tuple[str, str, str, str], Stat]:
    """Scores per stratum over seeds: (test set, column, value, metric) → :class:`Stat`.

    ``n_samples`` of a stratum is one of the metrics. With one seed a score keeps the
    stratum's day-block interval where the record has one (``strata_intervals``); with several,
    mean ± std. Empty for records without ``strata``.
    """
    cells: dict[tuple[str, str, str, str], list[float | None]] = {}
    for rec in entry.records:
        for test_set, columns in rec.get("strata", {}).items():
            for column, values in columns.items():
                for value, scores in values.items():
                    for metric, x in scores.items():
                        key = (str(test_set), str(column), str(value), str(metric))
                        cells.setdefault(key, []).append(None if x is None else float(x))
    intervals: dict[tuple[str, str, str, str], Sequence[float] | None] = {}
    if len(entry.records) == 1:  # one seed: the stratum's own day-block interval
        for test_set, columns in entry.first.get("strata_intervals", {}).items():
            for column, values in columns.items():
                for value, by_metric in values.items():
                    for metric, ci in by_metric.items():
                        intervals[str(test_set), str(column), str(value), str(metric)] = ci
    return {key: Stat.of(xs, intervals.get(key)) for key, xs in sorted(cells.items())}


def scores_long(board: Board) -> pd.DataFrame:
    """Tidy table of every score: one row per entry, test set, stratum and metric.

    Columns are :data:`SCORE_COLUMNS`; the stratum columns are empty for whole test sets, and
    the test set :data:`GAP_SET` holds the generalization gap of every metric.
    """
    rows: list[dict[str, Any]] = []
    for entry in board.entries:
        for test_set in [*entry.test_sets, GAP_SET]:
            for metric in entry.metrics(test_set):
                stat = entry.stat(test_set, metric)
                if not (test_set == GAP_SET and stat.missing):
                    rows.append(_row(entry, (test_set, "", ""), metric, stat))
        for (test_set, column, value, metric), stat in strata_stats(entry).items():
            rows.append(_row(entry, (test_set, column, value), metric, stat))
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
