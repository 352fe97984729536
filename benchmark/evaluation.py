"""Evaluate a model on a test set: pooled scores, strata, day-block bootstrap and paired tests.

Every sample's metric state (the linear sums and counts of each accumulator, see
:meth:`qpebench.metrics.Accumulator.state`) is added into the table of its local solar **day**
(:func:`sample_days`) and into
the table of its value in every sample-level **stratum** (season, day/night, local-hour bin,
viewing-angle bin, observed rain regime, or any categorical metadata column). Pooled scores are the
sum of the day tables; a stratum's scores are its table's. Memory grows with the number of days
and stratum values, never with the number of samples or pixels.

The ``tb`` stratum is per pixel: pointwise families (everything but FSS) are accumulated
separately for the valid pixels in each IR10.8 brightness-temperature bin of the target frame.

**Uncertainty.** Block bootstrap over whole days (neighbouring samples of one day share weather,
so days, not samples, are the independent units): each replicate draws the set's days with
replacement; its state is the count-weighted sum of the day tables, which is exact because states
are linear. The percentile interval of the replicates is the confidence interval (none for a
set of fewer than ``min_days`` days). Paired tests
draw the **same** days for both models (:func:`bootstrap_weights` is seeded by the run seed and
the test-set name) and report the share of replicates in which model A is not better than B.

**Over seeds.** The per-day states (:class:`DayStates`) are saved beside each record
(:mod:`qpebench.states`), so comparisons are recomputed at render time: for one shared seed the
paired test above, for several the seed × day bootstrap (:func:`seed_draws`,
:func:`shared_day_weights`, :func:`seed_day_replicates`): seeds drawn with replacement and one
day draw shared by every drawn seed, the score being the mean over the drawn seeds.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from qpebench.distributed import all_gather, current_world
from qpebench.errors import ConfigError
from qpebench.metrics import RATE_FAMILIES, Accumulator, FSSAccumulator, metric_set
from qpebench.models import RainModel, read_inputs
from qpebench.records import encode_field
from qpebench.sample import cos_solar_zenith
from qpebench.store import SampleStore

EVAL_BLOCK = 128
#: Bin edges (upper, exclusive) and labels of the binned stratifiers.
LOCAL_HOUR_BINS = (3, 6, 9, 12, 15, 18, 21, 24)
VZA_BINS_DEG = (20.0, 40.0, 60.0, 90.0)
TB_BINS_K = (210.0, 230.0, 250.0, 270.0, math.inf)
#: Observed rain regime of a sample: ``dry`` when under 1 % of its valid pixels reach 0.1 mm/h,
#: ``convective`` when at least 5 % of its wet pixels reach 10 mm/h, else ``stratiform``.
DRY_FRACTION, CONVECTIVE_RATE, CONVECTIVE_SHARE = 0.01, 10.0, 0.05
#: Scores whose day-block interval each stratum carries (the board's stratum columns).
STRATUM_INTERVAL_METRICS = ("csi@1", "csi@5", "rmse", "bias")
#: Largest number of distinct values of a plain metadata column used as a stratum.
MAX_STRATUM_VALUES = 50
BINNED_STRATA = ("local_hour", "vza", "regime", "tb")
DEFAULT_STRATA = ("season", "day", "local_hour", "vza", "regime", "tb")


def _bin_labels(edges: Sequence[float], unit: str) -> list[str]:
    lows = [0.0, *edges[:-1]]
    return [f"{lo:g}-{hi:g} {unit}" for lo, hi in zip(lows, edges, strict=True)]


def _tb_labels() -> list[str]:
    labels = [f"<{TB_BINS_K[0]:g} K"]
    labels += [f"{lo:g}-{hi:g} K" for lo, hi in itertools.pairwise(TB_BINS_K[:-1])]
    return [*labels, f">={TB_BINS_K[-2]:g} K"]


@dataclass(frozen=True)
class EvalSettings:
    """How test sets are evaluated (the ``evaluation`` block of the run configuration).

    Attributes:
        strata: Stratifiers: ``local_hour``, ``vza``, ``regime``, ``tb`` (binned, see the module
            constants), ``day`` (day/night, derived from the sun when the store lacks it), or any
            categorical metadata column (``season``, ``region``, ``sensor`` …).
        bootstrap: Bootstrap replicates (0: no intervals, no paired tests).
        ci_level: Confidence level of the intervals.
        ci_metrics: Metrics that get an interval (those a model does not produce are skipped).
        paired_metrics: Metrics of the paired model comparisons.
        min_days: Fewest bootstrap blocks (days) for intervals and paired tests; a test set
            with fewer gets none (a bootstrap over a handful of days says nothing).
        metrics: The rate metric families (names in :data:`qpebench.registry.METRICS`, a
            plugin's included), in state order; the model's outputs add ``brier`` and ``crps``.
    """

    strata: tuple[str, ...] = DEFAULT_STRATA
    bootstrap: int = 1000
    ci_level: float = 0.95
    ci_metrics: tuple[str, ...] = (
        "csi@1",
        "csi@5",
        "ets@1",
        "fbias@1",
        "rmse",
        "bias",
        "pearson_r",
        "fss17@1",
        "brier@1",
        "crps",
    )
    paired_metrics: tuple[str, ...] = ("csi@1", "rmse")
    min_days: int = 10
    metrics: tuple[str, ...] = RATE_FAMILIES

    def __post_init__(self) -> None:
        if not self.metrics or len(set(self.metrics)) != len(self.metrics):
            raise ConfigError(
                f"evaluation.metrics must name each family once, got {list(self.metrics)}"
            )
        metric_set(self.metrics)  # an unknown family, or one that does not consume rates
        if self.min_days < 2:
            raise ConfigError(f"evaluation.min_days must be >= 2, got {self.min_days}")
        if self.bootstrap < 0:
            raise ConfigError(f"evaluation.bootstrap must be >= 0, got {self.bootstrap}")
        if not 0 < self.ci_level < 1:
            raise ConfigError(f"evaluation.ci_level must be in (0, 1), got {self.ci_level}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EvalSettings:
        """Build from the configuration block, naming unknown keys.

        Raises:
            ConfigError: An unknown key or a value out of range.
        """
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                f"evaluation: unknown keys {unknown}; allowed: {sorted(cls.__dataclass_fields__)}"
            )
        values = dict(data)
        for key in ("strata", "ci_metrics", "paired_metrics", "metrics"):
            if key in values:
                values[key] = tuple(str(v) for v in values[key])
        for key in ("bootstrap", "min_days"):
            if key in values:
                values[key] = int(values[key])
        if "ci_level" in values:
            values["ci_level"] = float(values["ci_level"])
        return cls(**values)


def sample_days(metadata: pd.DataFrame) -> npt.NDArray[np.str_]:
    """The bootstrap block of each sample: the local solar date of its target time.

    Local solar time is UTC + longitude / 15 h at the patch centre, so a block runs from one
    local midnight to the next and an afternoon storm is not cut in two (over the Americas the
    UTC date changes during the afternoon). Without a ``lon`` column, the UTC date.
    """
    stamps = pd.to_datetime(metadata["time"], utc=True)
    if "lon" in metadata.columns:
        stamps = stamps + pd.to_timedelta(metadata["lon"].to_numpy(np.float64) / 15.0, unit="h")
    return stamps.dt.strftime("%Y-%m-%d").to_numpy().astype(str)


def _day_night(metadata: pd.DataFrame) -> npt.NDArray[np.str_]:
    if "day" in metadata.columns:
        is_day = metadata["day"].astype(bool).to_numpy()
    else:
        stamps = pd.to_datetime(metadata["time"], utc=True)
        doy = np.asarray(stamps.dt.day_of_year, np.float64)
        hours = (stamps.dt.hour + stamps.dt.minute / 60).to_numpy(np.float64)
        local = (hours + metadata["lon"].to_numpy(np.float64) / 15.0) % 24.0
        is_day = cos_solar_zenith(metadata["lat"].to_numpy(np.float64), doy, local) > 0
    return np.where(is_day, "day", "night")


def _binned(values: npt.NDArray[np.float64], edges: Sequence[float], unit: str) -> npt.NDArray[Any]:
    labels = np.array(_bin_labels(edges, unit), dtype=object)
    out = labels[np.clip(np.searchsorted(edges, values, side="right"), 0, len(edges) - 1)]
    out[~np.isfinite(values)] = "unknown"
    return out


def metadata_strata(metadata: pd.DataFrame, names: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
    """Per-sample stratum labels of the metadata-based stratifiers in ``names``.

    ``regime`` (needs the truth) and ``tb`` (per pixel) are left to :func:`evaluate_set`.

    Raises:
        ConfigError: An unknown stratifier, a float column, or one with too many values.
    """
    out: dict[str, npt.NDArray[Any]] = {}
    for name in names:
        if name in ("regime", "tb"):
            continue
        if name == "day":
            out[name] = _day_night(metadata)
        elif name == "local_hour":
            out[name] = _binned(metadata["local_hour"].to_numpy(np.float64), LOCAL_HOUR_BINS, "h")
        elif name == "vza":
            out[name] = _binned(metadata["vza"].to_numpy(np.float64), VZA_BINS_DEG, "deg")
        elif name not in metadata.columns:
            raise ConfigError(
                f"evaluation.strata: {name!r} is neither a stratifier {list(BINNED_STRATA)} nor a "
                f"metadata column ({', '.join(metadata.columns)})"
            )
        elif pd.api.types.is_float_dtype(metadata[name]):
            raise ConfigError(
                f"evaluation.strata: column {name!r} holds floats; use a binned stratifier "
                f"({', '.join(BINNED_STRATA)}) or a categorical column"
            )
        else:
            values = metadata[name].astype(str).to_numpy()
            if np.unique(values).size > MAX_STRATUM_VALUES:
                raise ConfigError(
                    f"evaluation.strata: column {name!r} has more than {MAX_STRATUM_VALUES} values"
                )
            out[name] = values
    return out


def rain_regime(
    rain: npt.NDArray[np.float32], valid: npt.NDArray[np.bool_]
) -> npt.NDArray[np.str_]:
    """Observed regime of each sample ``(N, H, W)``: ``dry``, ``stratiform`` or ``convective``."""
    use = valid & np.isfinite(rain)
    n_valid = use.sum(axis=(1, 2))
    wet = (use & (rain >= 0.1)).sum(axis=(1, 2))
    heavy = (use & (rain >= CONVECTIVE_RATE)).sum(axis=(1, 2))
    dry = wet < DRY_FRACTION * np.maximum(n_valid, 1)
    convective = heavy >= CONVECTIVE_SHARE * np.maximum(wet, 1)
    return np.where(dry, "dry", np.where(convective, "convective", "stratiform"))


class StateLayout:
    """The families of a model's metric set and where each one's state sits in one flat vector."""

    def __init__(self, families: Sequence[Accumulator]) -> None:
        self.families = [f.fresh() for f in families]
        sizes = [f.state().size for f in self.families]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self._names = [set(f.result()) for f in self.families]  # the scores each family gives

    @property
    def size(self) -> int:
        """Length of the flat state."""
        return int(self.offsets[-1])

    def state_of(self, families: Sequence[Accumulator]) -> npt.NDArray[np.float64]:
        """The flat state of accumulators laid out like this one."""
        return np.concatenate([f.state() for f in families])

    def loaded(self, state: npt.NDArray[np.float64]) -> list[Accumulator]:
        """Fresh accumulators holding ``state``."""
        out = []
        for i, fam in enumerate(self.families):
            acc = fam.fresh()
            acc.load_state(state[self.offsets[i] : self.offsets[i + 1]])
            out.append(acc)
        return out

    def scores(self, state: npt.NDArray[np.float64]) -> dict[str, float]:
        """Every score of the flat ``state``."""
        out: dict[str, float] = {}
        for acc in self.loaded(state):
            out.update(acc.result())
        return out

    def replicate_scores(
        self, states: npt.NDArray[np.float64], metrics: Sequence[str]
    ) -> dict[str, npt.NDArray[np.float64]]:
        """Each metric of each row of ``states`` ``(B, size)`` (NaN where no family gives it).

        Only the families that give one of ``metrics`` are scored.
        """
        out = {m: np.full(states.shape[0], math.nan) for m in metrics}
        needed = [i for i, names in enumerate(self._names) if names & set(metrics)]
        for b in range(states.shape[0]):
            for i in needed:
                acc = self.families[i].fresh()
                acc.load_state(states[b, self.offsets[i] : self.offsets[i + 1]])
                result = acc.result()
                for m in metrics:
                    if m in result:
                        out[m][b] = result[m]
        return out

    def curves(self, state: npt.NDArray[np.float64]) -> dict[str, Any]:
        """The curves (histograms, reliability) of the flat ``state``."""
        out: dict[str, Any] = {}
        for acc in self.loaded(state):
            out.update(acc.curves())
        return out


@dataclass(frozen=True, eq=False)
class DayStates:
    """One model's metric states on one test set, one row per bootstrap block (local solar day).

    These are the sufficient statistics of every score, interval and paired test of the set:
    the pooled state is the sum of the rows, a bootstrap replicate a count-weighted sum.

    Attributes:
        layout: Where each metric family's state sits in a row.
        days: The days (``YYYY-MM-DD``), increasing.
        states: ``(len(days), layout.size)``: row ``i`` is the sum of day ``i``'s sample states.
    """

    layout: StateLayout
    days: tuple[str, ...]
    states: npt.NDArray[np.float64]

    def state(self) -> npt.NDArray[np.float64]:
        """The pooled state (sum over days)."""
        pooled: npt.NDArray[np.float64] = self.states.sum(axis=0)
        return pooled

    def scores(self) -> dict[str, float]:
        """Pooled scores over the whole set."""
        return self.layout.scores(self.state())

    def replicates(
        self, weights: npt.NDArray[np.float64], metrics: Sequence[str]
    ) -> dict[str, npt.NDArray[np.float64]]:
        """Each metric on each bootstrap replicate (rows of ``weights``, one column per day)."""
        return self.layout.replicate_scores(weights @ self.states, metrics)


#: A stratum's states by day: stratifier → value → day → state.
StratumDays = dict[str, dict[str, dict[str, npt.NDArray[np.float64]]]]


@dataclass
class SetEvaluation:
    """The accumulated states of one model on one test set.

    ``strata`` holds each stratum's states per day, so a stratum gets the day-block intervals
    of the whole set (:meth:`stratum_intervals`).
    """

    layout: StateLayout
    days: dict[str, npt.NDArray[np.float64]]
    strata: StratumDays
    stratum_samples: dict[str, dict[str, int]]
    n_samples: int

    def day_states(self) -> DayStates:
        """The day tables in day order, as :class:`DayStates`."""
        names = sorted(self.days)
        return DayStates(self.layout, tuple(names), np.stack([self.days[d] for d in names]))

    def state(self) -> npt.NDArray[np.float64]:
        """The pooled state (sum over days)."""
        return self.day_states().state()

    def scores(self) -> dict[str, float]:
        """Pooled scores over the whole set."""
        return self.layout.scores(self.state())

    def curves(self) -> dict[str, Any]:
        """Pooled curves."""
        return self.layout.curves(self.state())

    def stratum_scores(self) -> dict[str, dict[str, dict[str, float]]]:
        """Scores per stratifier and value, with the sample count (``n_samples``)."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for name, tables in self.strata.items():
            out[name] = {}
            for value in sorted(tables):
                scores = self.layout.scores(np.sum(list(tables[value].values()), axis=0))
                if name == "tb":  # pixel strata: spatial scores do not apply
                    scores = {k: v for k, v in scores.items() if not k.startswith("fss")}
                count = self.stratum_samples.get(name, {}).get(value)
                out[name][value] = {**scores, **({"n_samples": count} if count else {})}
        return out

    def stratum_intervals(
        self, weights: npt.NDArray[np.float64], metrics: Sequence[str], level: float
    ) -> dict[str, dict[str, dict[str, list[float] | None]]]:
        """Each stratum's percentile intervals on the set's day-block draws ``weights``.

        Args:
            weights: ``(B, n_days)`` draws over the set's days in sorted order (the set's own
                draws, :func:`bootstrap_weights`): a day absent from a stratum adds nothing.
            metrics: Scores that get an interval (pixel strata, ``tb``, get no FSS).
            level: Confidence level.
        """
        names = sorted(self.days)
        zero = np.zeros(self.layout.size)
        out: dict[str, dict[str, dict[str, list[float] | None]]] = {}
        for name, tables in self.strata.items():
            wanted = [m for m in metrics if not (name == "tb" and m.startswith("fss"))]
            out[name] = {}
            for value, by_day in sorted(tables.items()):
                matrix = np.stack([by_day.get(d, zero) for d in names])
                reps = self.layout.replicate_scores(weights @ matrix, wanted)
                out[name][value] = {m: percentile_interval(reps[m], level) for m in wanted}
        return out


def bootstrap_weights(n_days: int, replicates: int, seed: int, test_set: str) -> npt.NDArray[Any]:
    """Day counts ``(replicates, n_days)`` of a day-block bootstrap, the same for every model."""
    rng = np.random.default_rng([seed, zlib.crc32(test_set.encode())])
    out: npt.NDArray[Any] = rng.multinomial(n_days, np.full(n_days, 1.0 / n_days), replicates)
    return out.astype(np.float64)


#: Entropy word of the seed × day bootstrap's draws (apart from every run seed's day draws).
SEED_DAY_STREAM = zlib.crc32(b"qpebench seed-day bootstrap")


def shared_day_weights(n_days: int, replicates: int, test_set: str) -> npt.NDArray[np.float64]:
    """Day counts ``(replicates, n_days)`` of the seed × day bootstrap.

    One day draw per replicate, used for every drawn seed of every model: all seeds are scored
    on the same test days, so a day that is hard for one seed is hard for the others, and the
    draw must keep that (docs/evaluation.md).
    """
    rng = np.random.default_rng([SEED_DAY_STREAM, zlib.crc32(test_set.encode())])
    out: npt.NDArray[Any] = rng.multinomial(n_days, np.full(n_days, 1.0 / n_days), replicates)
    return out.astype(np.float64)


def seed_draws(n_seeds: int, replicates: int, test_set: str) -> npt.NDArray[np.intp]:
    """Seed positions ``(replicates, n_seeds)`` drawn with replacement, the same for every pair."""
    rng = np.random.default_rng([SEED_DAY_STREAM, zlib.crc32(test_set.encode()), n_seeds])
    out: npt.NDArray[np.intp] = rng.integers(0, n_seeds, size=(replicates, n_seeds))
    return out


def seed_day_replicates(
    per_seed: Sequence[Mapping[str, npt.NDArray[np.float64]]], draws: npt.NDArray[np.intp]
) -> dict[str, npt.NDArray[np.float64]]:
    """Replicates of the mean over seeds: for each replicate, the mean over its drawn seeds.

    Args:
        per_seed: Each seed's replicates on :func:`shared_day_weights` (metric → ``(B,)``).
        draws: :func:`seed_draws` for ``len(per_seed)`` seeds and ``B`` replicates.

    Returns:
        Metric → ``(B,)``, for the metrics every seed has; NaN where a drawn seed's score is
        undefined on that replicate.
    """
    common = [m for m in per_seed[0] if all(m in reps for reps in per_seed)]
    out = {}
    for m in common:
        table = np.stack([reps[m] for reps in per_seed], axis=1)  # (B, n_seeds)
        out[m] = np.take_along_axis(table, draws, axis=1).mean(axis=1)
    return out


def percentile_interval(values: npt.NDArray[np.float64], level: float) -> list[float] | None:
    """The central ``level`` percentile interval of the finite ``values`` (None if none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return [float(lo), float(hi)]


def goodness(metric: str, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``values`` of ``metric`` oriented so that larger is better.

    Skill scores (CSI, POD, ETS, HSS, FSS, Pearson r, Brier resolution) as they are; errors (FAR,
    RMSE, MAE, Brier and its reliability term, CRPS, pinball, distances) negated; biases and
    quantile coverage as minus their distance to the ideal (0, 1 for the frequency bias, τ for
    the coverage of the τ quantile).
    """
    name, _, level = metric.partition("@")
    if name in ("bias", "relative_bias"):
        return -np.abs(values)
    if name == "fbias":
        return -np.abs(values - 1.0)
    if name == "coverage":  # share of observations below the τ quantile: ideal τ
        return -np.abs(values - float(level))
    if name.startswith(("csi", "pod", "ets", "hss", "fss", "pearson_r", "brier_resolution")):
        return values
    return -values


def paired_comparison(
    a: Mapping[str, npt.NDArray[np.float64]],
    b: Mapping[str, npt.NDArray[np.float64]],
    a_scores: Mapping[str, float],
    b_scores: Mapping[str, float],
    level: float,
) -> dict[str, dict[str, Any]]:
    """Model A against model B on the same bootstrap replicates, per metric.

    Returns:
        ``{metric: {"diff": A − B on the whole set, "ci": interval of the replicate
        differences, "p_value": share of replicates in which A is not better than B}}``
        (one-sided; a small value supports "A beats B").
    """
    out: dict[str, dict[str, Any]] = {}
    for metric in a:
        if metric not in b:
            continue
        diff = a[metric] - b[metric]
        better = goodness(metric, a[metric]) - goodness(metric, b[metric])
        ok = np.isfinite(better)
        if not ok.any():
            continue
        p_value = (1 + int((better[ok] <= 0).sum())) / (1 + int(ok.sum()))
        out[metric] = {
            "diff": a_scores.get(metric, math.nan) - b_scores.get(metric, math.nan),
            "ci": percentile_interval(diff, level),
            "p_value": p_value,
        }
    return out


def _example(model: RainModel, store: SampleStore, index: int, test_set: str) -> dict[str, Any]:
    """IR10.8 (K) at the target time, truth and prediction (mm/h) of one sample.

    Encoded with :func:`~qpebench.records.encode_field` to 0.01 K and 0.01 mm/h.
    """
    card = model.card
    batch = read_inputs(store, [index], card)
    pred = model.predict(batch.ir)[0]
    ir = store.read([index], frames=1, bands=["IR10.8"]).ir[0, -1, 0]
    truth = np.where(batch.valid[0], batch.rain[0], np.nan)
    return {
        "test_set": test_set,
        "index": int(index),
        "time": str(store.metadata["time"].iloc[index]),
        "ir108": encode_field(ir, scale=0.01, offset=100.0),
        "truth": encode_field(truth, scale=0.01),
        "pred": encode_field(pred, scale=0.01),
    }


def evaluate_set(
    model: RainModel,
    store: SampleStore,
    indices: npt.NDArray[np.int64],
    settings: EvalSettings,
) -> SetEvaluation:
    """Accumulate ``model``'s metric states over the samples ``indices`` (see the module doc)."""
    card = model.card
    layout = StateLayout(
        metric_set(
            settings.metrics,
            outputs=card.outputs,
            rain_threshold=card.rain_threshold,
            quantile_levels=card.quantile_levels,
        )
    )
    pointwise = [not isinstance(fam, FSSAccumulator) for fam in layout.families]
    metadata = store.metadata.iloc[indices].reset_index(drop=True)
    days = sample_days(metadata)
    labels = metadata_strata(metadata, settings.strata)
    want_regime, want_tb = "regime" in settings.strata, "tb" in settings.strata
    zero = np.zeros(layout.size)
    day_tables: dict[str, npt.NDArray[np.float64]] = {}
    strata: StratumDays = {}
    counts: dict[str, dict[str, int]] = {}

    def add(name: str, value: str, day: str, state: npt.NDArray[np.float64], samples: int) -> None:
        table = strata.setdefault(name, {}).setdefault(value, {})
        table[day] = table.get(day, zero) + state
        counts.setdefault(name, {})
        counts[name][value] = counts[name].get(value, 0) + samples

    tb_labels = _tb_labels()
    for start in range(0, indices.size, EVAL_BLOCK):
        block = indices[start : start + EVAL_BLOCK]
        batch = read_inputs(store, block, card)
        outputs = model.predict_outputs(batch.ir)
        regimes = rain_regime(batch.rain, batch.valid) if want_regime else None
        for i in range(block.size):
            fams = [f.fresh() for f in layout.families]
            for fam in fams:
                one = outputs[fam.needs][i : i + 1]
                fam.update(one, batch.rain[i : i + 1], batch.valid[i : i + 1])
            state = layout.state_of(fams)
            k = start + i
            day_tables[days[k]] = day_tables.get(days[k], zero) + state
            for name, values in labels.items():
                add(name, str(values[k]), days[k], state, 1)
            if regimes is not None:
                add("regime", str(regimes[i]), days[k], state, 1)
        if want_tb:
            if "IR10.8" in card.bands:  # the target frame is the input's last
                tb = batch.ir[:, -1, card.bands.index("IR10.8")]
            else:
                tb = store.read(block, frames=1, bands=["IR10.8"]).ir[:, -1, 0]
            bins = np.searchsorted(TB_BINS_K, tb, side="right")
            block_days = days[start : start + block.size]
            for day in np.unique(block_days):
                rows = block_days == day
                for j, label in enumerate(tb_labels):
                    in_bin = batch.valid[rows] & (bins[rows] == j)
                    if not in_bin.any():
                        continue
                    fams = [f.fresh() for f in layout.families]
                    for fam, point in zip(fams, pointwise, strict=True):
                        if point:
                            fam.update(outputs[fam.needs][rows], batch.rain[rows], in_bin)
                    add("tb", label, str(day), layout.state_of(fams), 0)
    return SetEvaluation(
        layout=layout,
        days=day_tables,
        strata=strata,
        stratum_samples={k: {v: n for v, n in t.items() if n} for k, t in counts.items()},
        n_samples=int(indices.size),
    )


def merge_evaluations(parts: Sequence[SetEvaluation]) -> SetEvaluation:
    """The evaluation of the union of disjoint sample sets: states are linear, so their sum.

    Equals one pass over all the samples (up to the order of float additions).
    """
    layout = parts[0].layout
    days: dict[str, npt.NDArray[np.float64]] = {}
    strata: StratumDays = {}
    counts: dict[str, dict[str, int]] = {}
    for part in parts:
        for day, state in part.days.items():
            days[day] = days[day] + state if day in days else state.copy()
        for name, tables in part.strata.items():
            for value, by_day in tables.items():
                into = strata.setdefault(name, {}).setdefault(value, {})
                for day, state in by_day.items():
                    into[day] = into[day] + state if day in into else state.copy()
        for name, table in part.stratum_samples.items():
            into_counts = counts.setdefault(name, {})
            for value, n in table.items():
                into_counts[value] = into_counts.get(value, 0) + n
    return SetEvaluation(
        layout=layout,
        days=days,
        strata=strata,
        stratum_samples=counts,
        n_samples=sum(p.n_samples for p in parts),
    )


def evaluate_sharded(
    model: RainModel,
    store: SampleStore,
    indices: npt.NDArray[np.int64],
    settings: EvalSettings,
) -> SetEvaluation:
    """:func:`evaluate_set`, each process of a distributed job taking every N-th sample.

    The processes' states are gathered and merged (:func:`merge_evaluations`), so every
    process holds the evaluation of the whole set; in one process, :func:`evaluate_set`.
    """
    world = current_world()
    if world.size == 1:
        return evaluate_set(model, store, indices, settings)
    part = evaluate_set(model, store, indices[world.rank :: world.size], settings)
    gathered = all_gather((part.days, part.strata, part.stratum_samples, part.n_samples))
    return merge_evaluations([SetEvaluation(part.layout, d, s, c, n) for d, s, c, n in gathered])


@dataclass
class ModelEvaluation:
    """What a model's record and state file need from its evaluation on every test set.

    ``replicates`` holds the bootstrap replicates of the interval and paired metrics (none for a
    set of fewer than ``min_days`` days); ``day_states`` the per-day states of every set, from
    which every comparison is recomputed at render time (:mod:`qpebench.states`).
    """

    metrics: dict[str, dict[str, float]]
    intervals: dict[str, dict[str, list[float] | None]]
    strata: dict[str, dict[str, dict[str, dict[str, float]]]]
    strata_intervals: dict[str, dict[str, dict[str, dict[str, list[float] | None]]]]
    curves: dict[str, dict[str, Any]]
    examples: dict[str, dict[str, Any]]
    replicates: dict[str, dict[str, npt.NDArray[np.float64]]]
    day_states: dict[str, DayStates]


def evaluate_model(
    model: RainModel,
    store: SampleStore,
    test_sets: Mapping[str, npt.NDArray[np.int64]],
    settings: EvalSettings,
    seed: int,
) -> ModelEvaluation:
    """Evaluate ``model`` on every test set: scores, intervals, strata, curves, one example."""
    result = ModelEvaluation({}, {}, {}, {}, {}, {}, {}, {})
    wanted = list(dict.fromkeys([*settings.ci_metrics, *settings.paired_metrics]))
    for name, idx in test_sets.items():
        ev = evaluate_sharded(model, store, idx, settings)
        table = ev.day_states()
        result.day_states[name] = table
        scores = table.scores()
        result.metrics[name] = scores
        result.strata[name] = ev.stratum_scores()
        result.curves[name] = ev.curves()
        metrics = [m for m in wanted if m in scores]
        if settings.bootstrap and len(ev.days) < settings.min_days:
            # too few days for a bootstrap: no interval, no paired test
            result.intervals[name] = dict.fromkeys(m for m in settings.ci_metrics if m in scores)
        elif settings.bootstrap:
            weights = bootstrap_weights(len(ev.days), settings.bootstrap, seed, name)
            reps = table.replicates(weights, metrics)
            result.replicates[name] = reps
            result.intervals[name] = {
                m: percentile_interval(reps[m], settings.ci_level)
                for m in settings.ci_metrics
                if m in reps
            }
            result.strata_intervals[name] = ev.stratum_intervals(
                weights, [m for m in STRATUM_INTERVAL_METRICS if m in scores], settings.ci_level
            )
        metadata = store.metadata.iloc[idx]
        if "rain_fraction" in metadata.columns:
            pick = int(idx[int(np.argmax(metadata["rain_fraction"].to_numpy()))])
        else:
            pick = int(idx[0])
        result.examples[name] = _example(model, store, pick, name)
    return result


def truth_ceiling(
    store: SampleStore, test_sets: Mapping[str, npt.NDArray[np.int64]], settings: EvalSettings
) -> dict[str, dict[str, float]]:
    """The scores of a perfect retrieval against the radar, per test set.

    The store's ``true_rain`` (the generator's surface rain before the radar sees it) is scored
    as a model's rate with the run's metric families: no retrieval scores better against this
    radar except by learning the radar's own errors. The scores are those of the interval and
    paired metrics (``ci_metrics``, ``paired_metrics``). Empty for a store without true rain
    (every real archive).
    """
    if "true_rain" not in store.aux:
        return {}
    layout = StateLayout(metric_set(settings.metrics))
    out = {}
    for name, idx in test_sets.items():
        families = [f.fresh() for f in layout.families]
        for start in range(0, idx.size, EVAL_BLOCK):
            block = idx[start : start + EVAL_BLOCK]
            batch = store.read(block, frames=1, bands=store.bands[:1], aux=["true_rain"])
            for fam in families:
                fam.update(batch.aux["true_rain"], batch.rain, batch.valid)
        scores = layout.scores(layout.state_of(families))
        wanted = (*settings.ci_metrics, *settings.paired_metrics)
        out[name] = {m: scores[m] for m in dict.fromkeys(wanted) if m in scores}
    return out


def paired_tests(
    evaluations: Mapping[str, ModelEvaluation], settings: EvalSettings
) -> dict[str, dict[str, dict[str, dict[str, dict[str, Any]]]]]:
    """Every model against every other on each test set: ``{model: {test_set: {other: …}}}``."""
    out: dict[str, dict[str, dict[str, dict[str, dict[str, Any]]]]] = {}
    for a, ev_a in evaluations.items():
        out[a] = {}
        for test_set, reps_a in ev_a.replicates.items():
            pairs: dict[str, dict[str, dict[str, Any]]] = {}
            for b, ev_b in evaluations.items():
                if b == a or test_set not in ev_b.replicates:
                    continue
                wanted = [m for m in settings.paired_metrics if m in reps_a]
                pairs[b] = paired_comparison(
                    {m: reps_a[m] for m in wanted},
                    ev_b.replicates[test_set],
                    ev_a.metrics[test_set],
                    ev_b.metrics[test_set],
                    settings.ci_level,
                )
            out[a][test_set] = pairs
    return out
