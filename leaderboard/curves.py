"""Curves and example patches of result records (schema v2), checked and pooled over seeds.

``curves[test_set]["histogram"]`` holds rain-rate histogram counts of predictions and truth,
``curves[test_set]["reliability@<t>"]`` a reliability table; counts add up over seeds, so the
pooled reliability is the count-weighted mean of the seeds' (exact when the bins agree).
``examples[test_set]`` holds one small patch. Every function returns ``None`` when the record
lacks the key, and raises :class:`~qpebench.records.RecordError` when it is malformed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from qpebench.records import RecordError, decode_field

from .aggregate import Entry

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Histogram:
    """Rain-rate histogram: bin ``edges`` (mm/h, increasing) and counts of pred and truth.

    A record may give one count per edge, the last bin being open (``>= edges[-1]``); it is
    closed here one geometric step further so that it can be drawn.
    """

    edges: F64
    pred: F64
    obs: F64


@dataclass(frozen=True)
class Reliability:
    """Reliability table: probability ``bins`` (edges in [0, 1]) and per-bin statistics."""

    bins: F64
    forecast_mean: F64
    observed_frequency: F64
    count: F64


@dataclass(frozen=True)
class Example:
    """One patch: IR10.8 brightness temperature (K), truth and prediction (mm/h, NaN = none)."""

    time: str
    ir108: F64
    truth: F64
    pred: F64


def _where(record: dict[str, Any], *keys: str) -> str:
    return f"record {record.get('run_id')}/{record['model']['name']}: " + "/".join(keys)


def _array(record: dict[str, Any], value: Any, *keys: str, ndim: int) -> F64:
    try:
        arr = np.array(
            [[np.nan if x is None else x for x in row] for row in value]
            if ndim == 2
            else [np.nan if x is None else x for x in value],
            dtype=float,
        )
    except (TypeError, ValueError):
        raise RecordError(f"{_where(record, *keys)} is not a {ndim}-D array of numbers") from None
    if arr.ndim != ndim or arr.size == 0:
        raise RecordError(f"{_where(record, *keys)} must be a non-empty {ndim}-D array")
    return arr


def _curve(record: dict[str, Any], test_set: str, name: str) -> dict[str, Any] | None:
    curve = record.get("curves", {}).get(test_set, {}).get(name)
    if curve is None:
        return None
    if not isinstance(curve, dict):
        raise RecordError(f"{_where(record, 'curves', test_set, name)} must be an object")
    return curve


def histogram(record: dict[str, Any], test_set: str) -> Histogram | None:
    """The rain-rate histogram of ``record`` on ``test_set``."""
    curve = _curve(record, test_set, "histogram")
    if curve is None:
        return None
    keys = ("curves", test_set, "histogram")
    try:
        edges, pred, obs = (
            _array(record, curve[k], *keys, k, ndim=1) for k in ("edges", "pred", "obs")
        )
    except KeyError as exc:
        raise RecordError(f"{_where(record, *keys)} lacks {exc.args[0]!r}") from None
    if len(pred) != len(obs) or len(pred) not in (len(edges) - 1, len(edges)):
        raise RecordError(f"{_where(record, *keys)}: needs one pred and obs count per bin")
    if np.any(np.diff(edges) <= 0) or (len(pred) == len(edges) and edges[-1] <= 0):
        raise RecordError(f"{_where(record, *keys)}: edges must increase")
    if len(pred) == len(edges):  # the last bin is open (>= edges[-1]): close it one step on
        step = edges[-1] / edges[-2] if len(edges) > 1 and edges[-2] > 0 else 2.0
        edges = np.append(edges, edges[-1] * step)
    return Histogram(edges, pred, obs)


def reliability(record: dict[str, Any], test_set: str, name: str) -> Reliability | None:
    """The reliability table ``name`` (e.g. ``"reliability@1"``) of ``record`` on ``test_set``."""
    curve = _curve(record, test_set, name)
    if curve is None:
        return None
    keys = ("curves", test_set, name)
    fields = ("bins", "forecast_mean", "observed_frequency", "count")
    try:
        arrays = [_array(record, curve[k], *keys, k, ndim=1) for k in fields]
    except KeyError as exc:
        raise RecordError(f"{_where(record, *keys)} lacks {exc.args[0]!r}") from None
    bins = arrays[0]
    if any(len(a) != len(bins) - 1 for a in arrays[1:]) or np.any(np.diff(bins) <= 0):
        raise RecordError(f"{_where(record, *keys)}: needs increasing bins and one value per bin")
    return Reliability(*arrays)


def _field(record: dict[str, Any], value: Any, *keys: str) -> F64:
    if isinstance(value, dict):  # encoded (qpebench.records.encode_field)
        return decode_field(value, _where(record, *keys))
    return _array(record, value, *keys, ndim=2)


def example(record: dict[str, Any], test_set: str) -> Example | None:
    """The example patch of ``record`` on ``test_set`` (encoded fields or nested lists)."""
    found = record.get("examples", {}).get(test_set)
    if found is None:
        return None
    keys = ("examples", test_set)
    try:
        ir, truth, pred = (_field(record, found[k], *keys, k) for k in ("ir108", "truth", "pred"))
        time = str(found["time"])
    except (KeyError, TypeError) as exc:
        raise RecordError(f"{_where(record, *keys)} lacks {exc.args[0]!r}") from None
    if not (ir.ndim == 2 and ir.shape == truth.shape == pred.shape):
        raise RecordError(f"{_where(record, *keys)}: ir108, truth and pred differ in shape")
    return Example(time, ir, truth, pred)


def reliability_names(entries: list[Entry], test_set: str) -> list[str]:
    """The ``reliability@<t>`` curve names any record of ``entries`` has on ``test_set``."""
    names = {
        str(k)
        for e in entries
        for r in e.records
        for k in r.get("curves", {}).get(test_set, {})
        if str(k).startswith("reliability@")
    }
    return sorted(names, key=_threshold)


def _threshold(name: str) -> tuple[float, str]:
    try:
        return (float(name.split("@", 1)[1]), name)
    except ValueError:
        return (float("inf"), name)


def pooled_histogram(entry: Entry, test_set: str) -> Histogram | None:
    """Histogram counts summed over the seeds with the lowest seed's edges (others must match)."""
    found = [h for h in (histogram(r, test_set) for r in entry.records) if h is not None]
    if not found:
        return None
    same = [h for h in found if np.array_equal(h.edges, found[0].edges)]
    pred = np.sum([h.pred for h in same], axis=0)
    obs = np.sum([h.obs for h in same], axis=0)
    return Histogram(found[0].edges, pred, obs)


def pooled_reliability(entry: Entry, test_set: str, name: str) -> Reliability | None:
    """Reliability pooled over seeds with the lowest seed's bins (count-weighted means)."""
    found = [c for c in (reliability(r, test_set, name) for r in entry.records) if c is not None]
    if not found:
        return None
    same = [c for c in found if np.array_equal(c.bins, found[0].bins)]
    count = np.sum([c.count for c in same], axis=0)
    forecast = np.sum([np.nan_to_num(c.forecast_mean) * c.count for c in same], axis=0)
    observed = np.sum([np.nan_to_num(c.observed_frequency) * c.count for c in same], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return Reliability(found[0].bins, forecast / count, observed / count, count)
