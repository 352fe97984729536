"""Declarative splits: train / id_val / id_test / ood_test as filters over sample metadata.

A split is a YAML file in ``qpebench/conf/split/`` (the Hydra ``split`` config group); each is
also registered in :data:`qpebench.registry.SPLITS` by name (``docs/splits.md``). A filter maps
metadata columns to a condition: a list of allowed values (``region: [europe]``), one value
(``day: true``), or a mapping with ``min`` (inclusive), ``max`` (exclusive) and ``not``
(``lat: {min: 50}``, ``month: {not: [6, 7, 8]}``). ``hour``, ``date`` and ``doy`` (UTC hour,
``YYYY-MM-DD`` date and day of year of ``time``) can be filtered on even if not stored.

Resolving a split on a store's metadata

1. selects each set by its filter, in the order train, id_val, id_test, ood_test/*;
2. drops from each set the samples closer than ``temporal_buffer_hours`` to a sample of an
   earlier set in the same region (the temporal buffer);
3. refuses a split whose sets share a sample, or (given the store's patch shape and frames) hold
   two samples on the same grid whose patches intersect and whose input windows overlap or touch
   (:class:`SplitLeakageError`); given the store's grids too, two samples on *different* grids
   (other region labels, other projections) whose patches' latitude/longitude footprints
   intersect at such times are refused as well, so one place and time cannot reach two sets
   under two names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

from qpebench.errors import SplitError
from qpebench.names import check_name
from qpebench.registry import SPLITS

I64 = npt.NDArray[np.int64]

#: Columns a filter may name without the metadata storing them, computed from ``time`` (UTC).
DERIVED_COLUMNS = ("hour", "date", "doy")
#: Filter columns whose condition makes up a set's domain label (:meth:`ResolvedSplit.domains`).
DOMAIN_COLUMNS = ("region", "satellite", "sensor", "radar_network", "season", "year", "day", "lat")
#: Columns the patch-overlap check reads.
PATCH_COLUMNS = ("grid", "patch_row", "patch_col", "frame_step_s")
_RANGE_KEYS = ("min", "max", "not")
#: The factors a factor-separated test set changes, one at a time (its domain is named
#: ``<train domain>_<donor>_<factor>``; ``datasets/synthetic_regions.py`` builds such presets).
SHIFT_FACTORS = ("climate", "sensor", "radar", "step")
#: Samples of earlier sets queried at once by the patch-overlap check (bounds its memory).
_QUERY_BLOCK = 1 << 16


class SplitLeakageError(SplitError):
    """Two sets of a split share a sample, or overlapping patches at adjacent times."""


def _plain(value: Any, where: str) -> Any:
    """A filter value as stored in metadata: dates become ISO strings; lists are refused."""
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return stamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if value is None or isinstance(value, dict | list | tuple):
        raise SplitError(f"{where}: expected a single value, got {value!r}")
    return value


def _values(value: Any, where: str) -> tuple[Any, ...]:
    items = list(value) if isinstance(value, list | tuple) else [value]
    if not items:
        raise SplitError(f"{where} allows no value")
    return tuple(_plain(v, where) for v in items)


@dataclass(frozen=True)
class Condition:
    """What one column of a filter allows.

    Attributes:
        values: Allowed values (``None``: any).
        minimum: Least value allowed (inclusive), or ``None``.
        maximum: Bound the values stay below (exclusive), or ``None``.
        excluded: Values refused.
    """

    values: tuple[Any, ...] | None = None
    minimum: Any = None
    maximum: Any = None
    excluded: tuple[Any, ...] = ()

    @classmethod
    def parse(cls, value: Any, where: str) -> Condition:
        """Read a condition from YAML: a list, a single value, or ``{min, max, not}``.

        Raises:
            SplitError: An empty list or mapping, an unknown mapping key, or a list where a
                single value belongs; the message names ``where``.
        """
        if not isinstance(value, dict):
            return cls(values=_values(value, where))
        unknown = sorted(set(map(str, value)) - set(_RANGE_KEYS))
        if unknown or not value:
            raise SplitError(
                f"{where}: a range takes the keys {list(_RANGE_KEYS)}, got {sorted(value) or '{}'}"
            )
        low, high = value.get("min"), value.get("max")
        if low is None and high is None and "not" not in value:
            raise SplitError(f"{where}: a range needs a min, a max or a not, got {value}")
        return cls(
            minimum=None if low is None else _plain(low, f"{where}.min"),
            maximum=None if high is None else _plain(high, f"{where}.max"),
            excluded=_values(value["not"], f"{where}.not") if "not" in value else (),
        )

    def mask(self, column: pd.Series) -> npt.NDArray[np.bool_]:
        """Which rows of ``column`` satisfy the condition.

        Raises:
            TypeError: A bound cannot be compared with the column's values.
        """
        out = np.ones(len(column), bool)
        if self.values is not None:
            out &= column.isin(_like(column, self.values)).to_numpy()
        if self.excluded:
            out &= ~column.isin(_like(column, self.excluded)).to_numpy()
        if self.minimum is not None:
            out &= (column >= self.minimum).to_numpy(bool)
        if self.maximum is not None:
            out &= (column < self.maximum).to_numpy(bool)
        return out

    def label(self, column: str) -> str:
        """A short text for domain labels: ``europe+conus``, ``lat>=50``, ``night``."""
        parts = []
        if self.values is not None:
            if column == "day":
                parts.append("+".join("day" if _truthy(v) else "night" for v in self.values))
            else:
                parts.append("+".join(map(str, self.values)))
        if self.minimum is not None and self.maximum is not None:
            parts.append(f"{self.minimum}<={column}<{self.maximum}")
        elif self.minimum is not None:
            parts.append(f"{column}>={self.minimum}")
        elif self.maximum is not None:
            parts.append(f"{column}<{self.maximum}")
        if self.excluded:
            parts.append(f"{column}!=" + "+".join(map(str, self.excluded)))
        return ",".join(parts)


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("true", "1")


def _like(column: pd.Series, values: tuple[Any, ...]) -> list[Any]:
    """Filter values as the column's type: ``true``/``"True"``/``1`` match a boolean column."""
    return [_truthy(v) for v in values] if column.dtype == bool else list(values)


Filter = dict[str, Condition]


def _parse_filter(name: str, where: str, value: Any) -> Filter:
    if not isinstance(value, dict) or not value:
        raise SplitError(f"split {name!r}: {where} must be a non-empty mapping column -> condition")
    return {
        str(column): Condition.parse(cond, f"split {name!r}: {where}.{column}")
        for column, cond in value.items()
    }


def sample_times(metadata: pd.DataFrame) -> I64:
    """Target times of the metadata rows as UTC seconds since the epoch."""
    stamps = pd.to_datetime(metadata["time"], utc=True).dt.tz_localize(None)
    return stamps.to_numpy().astype("datetime64[s]").astype(np.int64)


class _Table:
    """A metadata table with the derived columns and times computed once, on demand."""

    def __init__(self, metadata: pd.DataFrame, split: str) -> None:
        self.metadata = metadata
        self.split = split
        self._stamps: pd.Series | None = None
        self._seconds: I64 | None = None

    def require(self, columns: tuple[str, ...], why: str) -> None:
        missing = [c for c in columns if c not in self.metadata.columns]
        if missing:
            raise SplitError(
                f"split {self.split!r}: {why} needs the metadata columns {missing}; columns: "
                f"{', '.join(map(str, self.metadata.columns))}"
            )

    def stamps(self) -> pd.Series:
        if self._stamps is None:
            self.require(("time",), "a time-derived filter")
            self._stamps = pd.to_datetime(self.metadata["time"], utc=True)
        return self._stamps

    def seconds(self) -> I64:
        if self._seconds is None:
            self.require(("time",), "the temporal buffer and patch check")
            self._seconds = sample_times(self.metadata)
        return self._seconds

    def column(self, name: str, where: str) -> pd.Series:
        if name in self.metadata.columns:
            return self.metadata[name]
        if name in DERIVED_COLUMNS and "time" in self.metadata.columns:
            stamps = self.stamps().dt
            derived: pd.Series = (
                stamps.hour
                if name == "hour"
                else stamps.strftime("%Y-%m-%d")
                if name == "date"
                else stamps.day_of_year
            )
            return derived
        raise SplitError(
            f"split {self.split!r}: {where} filters on {name!r}, which the metadata lacks; "
            f"columns: {', '.join(map(str, self.metadata.columns))} (derived from time: "
            f"{', '.join(DERIVED_COLUMNS)})"
        )


def _composite(group: I64, times: I64, gap: int) -> I64:
    """One sortable key per (group, time): times of different groups lie more than ``gap`` apart."""
    if times.size == 0:
        return times
    stride = int(times.max() - times.min()) + 2 * gap + 1
    out: I64 = group * stride + (times - times.min())
    return out


def _far_from(keys: I64, reference: I64, limit: float) -> npt.NDArray[np.bool_]:
    """Whether each key lies at least ``limit`` from every reference key (``reference`` sorted)."""
    if reference.size == 0:
        return np.ones(keys.size, bool)
    pos = np.searchsorted(reference, keys)
    before = np.abs(keys - reference[np.clip(pos - 1, 0, reference.size - 1)])
    after = np.abs(reference[np.clip(pos, 0, reference.size - 1)] - keys)
    out: npt.NDArray[np.bool_] = np.minimum(before, after) >= limit
    return out


@dataclass(frozen=True)
class _Members:
    """The samples of every set, in set order, with what the patch check compares."""

    index: I64
    set_no: I64
    grid: npt.NDArray[np.object_]
    key: I64  # grid and patch bucket (see _bucket_keys)
    row: I64
    col: I64
    time: I64
    reach: I64  # frames × frame step: closer times mean overlapping or adjacent input windows
    stride: int  # key difference between vertically neighbouring buckets


def _bucket_keys(grid: I64, row: I64, col: I64, shape: tuple[int, int]) -> tuple[I64, int]:
    """Keys of the (grid, patch-size bucket) cells; intersecting patches sit in neighbours.

    Buckets are padded by one on each side, so ``key ± stride ± 1`` stays in the same grid.
    """
    br = row // shape[0]
    bc = col // shape[1]
    br = br - br.min() + 1
    bc = bc - bc.min() + 1
    rows, stride = int(br.max()) + 2, int(bc.max()) + 2
    key: I64 = (grid * rows + br) * stride + bc
    return key, stride


#: Candidate pairs the footprint check expands at once (bounds its memory).
_PAIR_BLOCK = 1 << 22
#: Points sampled along each edge of a patch outline for its footprint.
_EDGE_POINTS = 8


def patch_footprints(
    metadata: pd.DataFrame,
    shape: tuple[int, int],
    grids: Mapping[str, Mapping[str, Any]],
    split: str = "",
) -> npt.NDArray[np.float64]:
    """Longitude/latitude box ``(lon_min, lon_max, lat_min, lat_max)`` of each sample's patch.

    The outline of the patch (cells ``[row, row + H) × [col, col + W)`` of its grid) is sampled
    along its edges and projected from the grid's CRS to WGS 84 longitude/latitude. A box wider
    than 180° of longitude (a patch across the antimeridian) becomes every longitude.

    Raises:
        SplitError: A sample's grid is not in ``grids``, or a grid lacks its definition keys.
    """
    from pyproj import CRS, Transformer
    from pyproj.exceptions import ProjError

    h, w = shape
    u = np.linspace(0.0, 1.0, _EDGE_POINTS)
    one, zero = np.ones_like(u), np.zeros_like(u)
    # (row, col) fractions of the outline: top, bottom, left, right edges
    fr = np.concatenate([zero, one, u, u]) * h
    fc = np.concatenate([u, u, zero, one]) * w
    out = np.empty((len(metadata), 4))
    grid_names = metadata["grid"].astype(str).to_numpy(object)
    rows = metadata["patch_row"].to_numpy(np.float64)
    cols = metadata["patch_col"].to_numpy(np.float64)
    for name in dict.fromkeys(grid_names.tolist()):
        spec = grids.get(name)
        try:
            if spec is None:
                raise KeyError(name)
            cell = float(spec["cell_size_m"])
            x_min, y_max = float(spec["x_min"]), float(spec["y_max"])
            to_lonlat = Transformer.from_crs(
                CRS.from_user_input(spec["crs"]), CRS.from_epsg(4326), always_xy=True
            )
        except (KeyError, TypeError, ValueError, ProjError) as exc:
            raise SplitError(
                f"split {split!r}: grid {name!r} of the store has no usable definition for the "
                f"footprint check ({type(exc).__name__}: {exc})"
            ) from None
        sel = np.flatnonzero(grid_names == name)
        x = x_min + (cols[sel, None] + fc[None, :]) * cell
        y = y_max - (rows[sel, None] + fr[None, :]) * cell
        lon, lat = to_lonlat.transform(x, y)
        lon, lat = np.asarray(lon), np.asarray(lat)
        box = np.stack([lon.min(1), lon.max(1), lat.min(1), lat.max(1)], axis=1)
        wide = box[:, 1] - box[:, 0] > 180.0
        box[wide, 0], box[wide, 1] = -180.0, 180.0
        out[sel] = box
    return out


def _expanded_pairs(query: I64, lo: I64, hi: I64, target: I64) -> Iterator[tuple[I64, I64]]:
    """Every pair (query[k], target[lo[k]:hi[k]]), in blocks of at most :data:`_PAIR_BLOCK`."""
    counts = hi - lo
    start = 0
    while start < query.size:
        total = np.cumsum(counts[start:])
        stop = start + max(1, int(np.searchsorted(total, _PAIR_BLOCK, "right")))
        c = counts[start:stop]
        n = int(c.sum())
        if n:
            q = np.repeat(query[start:stop], c)
            offset = np.arange(n) - np.repeat(np.cumsum(c) - c, c)
            yield q, target[np.repeat(lo[start:stop], c) + offset]
        start = stop


def _near_pairs(m: _Members, query: I64, target: I64, shape: tuple[int, int]) -> tuple[I64, I64]:
    """Positions (in ``m``) of the pairs query × target whose patches and input windows meet."""
    ukeys, bucket = np.unique(m.key[target], return_inverse=True)
    t0 = int(m.time.min())
    span = int(m.time.max()) - t0 + 1
    comp = bucket.astype(np.int64) * span + (m.time[target] - t0)
    order = np.argsort(comp, kind="stable")
    comp, target = comp[order], target[order]
    reach_max = int(m.reach[target].max())
    query = query[np.lexsort((m.time[query], m.key[query]))]  # sorted needles search faster
    found_q: list[I64] = []
    found_t: list[I64] = []
    for start in range(0, query.size, _QUERY_BLOCK):
        block = query[start : start + _QUERY_BLOCK]
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                want = m.key[block] + dr * m.stride + dc
                pos = np.clip(np.searchsorted(ukeys, want), 0, ukeys.size - 1)
                present = ukeys[pos] == want
                q, b = block[present], pos[present]
                window = np.maximum(m.reach[q], reach_max)
                lo_t = np.maximum(m.time[q] - window - t0, 0)
                hi_t = np.minimum(m.time[q] + window - t0, span - 1)
                lo = np.searchsorted(comp, b * span + lo_t, "left")
                hi = np.searchsorted(comp, b * span + hi_t, "right")
                for qi, ti in _expanded_pairs(q, lo, hi, target):
                    hit = (
                        (np.abs(m.row[qi] - m.row[ti]) < shape[0])
                        & (np.abs(m.col[qi] - m.col[ti]) < shape[1])
                        & (np.abs(m.time[qi] - m.time[ti]) <= np.maximum(m.reach[qi], m.reach[ti]))
                    )
                    found_q.append(qi[hit])
                    found_t.append(ti[hit])
    if not found_q:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(found_q), np.concatenate(found_t)


@dataclass(frozen=True)
class SplitSpec:
    """A split definition (see the module docstring)."""

    name: str
    description: str
    train: Filter
    id_val: Filter
    id_test: Filter
    ood_test: dict[str, Filter]
    temporal_buffer_hours: float = 24.0
    domains: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> SplitSpec:
        """Build and check a spec from a parsed YAML mapping.

        The split's name and its ``ood_test`` set names become file names (the leaderboard's
        ``<split>.md``) and keys of every record, so they must be safe names
        (:func:`qpebench.names.check_name`).

        Raises:
            SplitError: A missing key, an unsafe split or set name, or a malformed filter,
                naming the split and the key.
        """
        name = check_name(data.get("name"), "split name", error=SplitError)
        missing = [k for k in ("train", "id_val", "id_test") if k not in data]
        if missing:
            raise SplitError(f"split {name!r}: missing {missing}")
        ood = data.get("ood_test") or {}
        if not isinstance(ood, dict):
            raise SplitError(f"split {name!r}: ood_test must map test-set names to filters")
        for key in ood:
            check_name(key, f"split {name!r}: ood_test set name", error=SplitError)
        try:
            buffer = float(data.get("temporal_buffer_hours", 24.0))
        except (TypeError, ValueError):
            buffer = -1.0
        if not buffer >= 0:
            raise SplitError(
                f"split {name!r}: temporal_buffer_hours must be a number >= 0, got "
                f"{data.get('temporal_buffer_hours')!r}"
            )
        domains = data.get("domains") or {}
        sets = ["train", "id_val", "id_test", *(f"ood_test/{k}" for k in ood)]
        if not isinstance(domains, dict) or set(domains) - set(sets):
            raise SplitError(
                f"split {name!r}: domains must map set names ({', '.join(sets)}) to labels, got "
                f"{domains!r}"
            )
        return cls(
            name=name,
            description=str(data.get("description", "")),
            domains={str(k): str(v) for k, v in domains.items()},
            train=_parse_filter(name, "train", data["train"]),
            id_val=_parse_filter(name, "id_val", data["id_val"]),
            id_test=_parse_filter(name, "id_test", data["id_test"]),
            ood_test={str(k): _parse_filter(name, f"ood_test.{k}", v) for k, v in ood.items()},
            temporal_buffer_hours=buffer,
        )

    def filters(self) -> dict[str, Filter]:
        """Each set's filter in set order: train, id_val, id_test, ood_test/<name>."""
        out = {"train": self.train, "id_val": self.id_val, "id_test": self.id_test}
        out.update({f"ood_test/{k}": v for k, v in self.ood_test.items()})
        return out

    def resolve(
        self,
        metadata: pd.DataFrame,
        *,
        patch_shape: tuple[int, int] | None = None,
        frames: int | None = None,
        grids: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> ResolvedSplit:
        """Apply the split to a store's metadata table.

        Args:
            metadata: One row per sample (the store's ``metadata``).
            patch_shape: The store's (H, W); given, intersecting patches of different sets at
                adjacent times are refused (needs the columns in :data:`PATCH_COLUMNS`).
            frames: Frames per sample in the store (default 1): sets the input window.
            grids: The store's grid definitions (``manifest["grids"]``: ``crs``,
                ``cell_size_m``, ``x_min``, ``y_max``); given with ``patch_shape``, patches on
                different grids are compared by their latitude/longitude footprints.

        Raises:
            SplitError: A filter names a column the metadata lacks or compares a bound with
                values of another type, or a set is empty after the buffer.
            SplitLeakageError: Two sets share a sample, or hold intersecting patches at times
                closer than the input windows allow.
        """
        table = _Table(metadata, self.name)
        sets = {key: self._select(table, key, flt) for key, flt in self.filters().items()}
        self._check_shared(sets)  # before the buffer, which would hide overlapping filters
        dropped = self._buffer(table, sets) if self.temporal_buffer_hours > 0 else {}
        for key, idx in sets.items():
            if idx.size == 0:
                lost = dropped.get(key, 0)
                why = f" ({lost} dropped by the temporal buffer)" if lost else ""
                raise SplitError(f"split {self.name!r}: set {key!r} selects no sample{why}")
        n_frames = 1 if frames is None else int(frames)
        if n_frames < 1:
            raise SplitError(f"split {self.name!r}: frames must be positive, got {frames}")
        if patch_shape is not None:
            h, w = (int(s) for s in patch_shape)
            if h < 1 or w < 1:
                raise SplitError(f"split {self.name!r}: patch_shape {patch_shape} must be positive")
            self._check_patches(table, sets, (h, w), n_frames)
            if grids is not None:
                self._check_footprints(table, sets, (h, w), n_frames, grids)
        if "frame_step_s" in metadata.columns or self.temporal_buffer_hours == 0:
            self._check_adjacent_times(table, sets, n_frames)
        return ResolvedSplit(spec=self, sets=sets, dropped_by_buffer=dropped)

    def _check_adjacent_times(self, table: _Table, sets: dict[str, I64], frames: int) -> None:
        """Refuse samples of two sets in one region whose input windows touch in time.

        Anywhere in the region, not only on overlapping patches: successive images of one
        weather system are not independent. With a temporal buffer longer than the input
        window nothing is left to refuse; with ``temporal_buffer_hours: 0`` this is the guard,
        and it then needs the ``frame_step_s`` column.
        """
        table.require(("region", "frame_step_s"), "the adjacent-times check")
        md = table.metadata
        reach = int(frames * md["frame_step_s"].to_numpy(np.int64).max())
        region = pd.factorize(md["region"])[0].astype(np.int64)
        keys = _composite(region, table.seconds(), reach)
        names = list(sets)
        for k in range(1, len(names)):
            earlier = np.concatenate([sets[n] for n in names[:k]])
            order = np.argsort(keys[earlier], kind="stable")
            reference = keys[earlier][order]
            later = sets[names[k]]
            near = ~_far_from(keys[later], reference, reach + 1)
            if not near.any():
                continue
            j = int(later[np.flatnonzero(near)[0]])
            pos = np.searchsorted(reference, keys[j])
            cands = [p for p in (pos - 1, pos) if 0 <= p < reference.size]
            best = min(cands, key=lambda p: abs(int(reference[p]) - int(keys[j])))
            i = int(earlier[order[best]])
            owner = next(n for n in names[:k] if i in set(sets[n].tolist()))
            stamps = pd.to_datetime(table.seconds()[[i, j]], unit="s", utc=True)
            gap_min = abs(int(keys[i]) - int(keys[j])) / 60
            raise SplitLeakageError(
                f"split {self.name!r}: sets {owner!r} and {names[k]!r} hold adjacent times in "
                f"region {md['region'].iloc[i]!r}: sample {i} "
                f"({stamps[0].strftime('%Y-%m-%dT%H:%M:%SZ')}) and sample {j} "
                f"({stamps[1].strftime('%Y-%m-%dT%H:%M:%SZ')}), {gap_min:g} min apart, within "
                f"the input window of {reach / 60:g} min; {int(near.sum())} samples of "
                f"{names[k]!r} are that close to an earlier set. Set temporal_buffer_hours "
                "(longer than the input window) to separate the sets."
            )

    def _select(self, table: _Table, where: str, flt: Filter) -> I64:
        mask = np.ones(len(table.metadata), bool)
        for column, cond in flt.items():
            values = table.column(column, where)
            try:
                mask &= cond.mask(values)
            except TypeError as exc:
                raise SplitError(
                    f"split {self.name!r}: {where}.{column}: cannot compare the bounds "
                    f"{cond.minimum!r}/{cond.maximum!r} with the column's values ({exc})"
                ) from None
        return np.flatnonzero(mask).astype(np.int64)

    def _buffer(self, table: _Table, sets: dict[str, I64]) -> dict[str, int]:
        """Drop, set by set, the samples near a sample of an earlier set (same region)."""
        table.require(("region",), "the temporal buffer")
        limit = self.temporal_buffer_hours * 3600.0
        region = pd.factorize(table.metadata["region"])[0].astype(np.int64)
        keys = _composite(region, table.seconds(), int(np.ceil(limit)))
        reference = np.sort(keys[sets["train"]])
        dropped = {}
        for key in list(sets)[1:]:
            idx = sets[key]
            keep = _far_from(keys[idx], reference, limit)
            sets[key] = idx[keep]
            dropped[key] = int((~keep).sum())
            reference = np.sort(np.concatenate([reference, keys[sets[key]]]))
        return dropped

    def _check_shared(self, sets: dict[str, I64]) -> None:
        names = list(sets)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                shared = np.intersect1d(sets[a], sets[b])
                if shared.size:
                    raise SplitLeakageError(
                        f"split {self.name!r}: sets {a!r} and {b!r} share {shared.size} samples "
                        f"(first: index {int(shared[0])})"
                    )

    def _check_patches(
        self, table: _Table, sets: dict[str, I64], shape: tuple[int, int], frames: int
    ) -> None:
        """Refuse intersecting patches of two sets on one grid at adjacent times."""
        table.require(PATCH_COLUMNS, "the patch-overlap check")
        md = table.metadata
        names = list(sets)
        index = np.concatenate(list(sets.values()))
        set_no = np.repeat(np.arange(len(names)), [s.size for s in sets.values()])
        grid = md["grid"].astype(str).to_numpy(object)[index]
        row = md["patch_row"].to_numpy(np.int64)[index]
        col = md["patch_col"].to_numpy(np.int64)[index]
        key, stride = _bucket_keys(pd.factorize(grid)[0].astype(np.int64), row, col, shape)
        m = _Members(
            index=index,
            set_no=set_no,
            grid=grid,
            key=key,
            row=row,
            col=col,
            time=table.seconds()[index],
            reach=frames * md["frame_step_s"].to_numpy(np.int64)[index],
            stride=stride,
        )
        pairs = [
            _near_pairs(m, np.flatnonzero(set_no < k), np.flatnonzero(set_no == k), shape)
            for k in range(1, len(names))
        ]
        first = np.concatenate([p[0] for p in pairs])
        second = np.concatenate([p[1] for p in pairs])
        if first.size:
            raise SplitLeakageError(self._leak_message(m, names, first, second))

    def _check_footprints(
        self,
        table: _Table,
        sets: dict[str, I64],
        shape: tuple[int, int],
        frames: int,
        grids: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Refuse patches of two sets on different grids whose footprints meet at adjacent times.

        A footprint is the latitude/longitude box of the patch's outline (its edges sampled and
        projected with pyproj), so the test errs on the side of refusing.
        """
        table.require(PATCH_COLUMNS, "the footprint check")
        md = table.metadata
        grid = md["grid"].astype(str).to_numpy(object)
        if len(set(grid.tolist())) < 2:
            return  # one grid: the exact patch check above covers it
        names = list(sets)
        index = np.concatenate(list(sets.values()))
        set_no = np.repeat(np.arange(len(names)), [s.size for s in sets.values()])
        box = patch_footprints(md.iloc[index], shape, grids, self.name)
        grid_no = pd.factorize(grid[index])[0]
        time = table.seconds()[index]
        reach = frames * md["frame_step_s"].to_numpy(np.int64)[index]
        window = int(reach.max())
        for k in range(1, len(names)):
            earlier = np.flatnonzero(set_no < k)
            earlier = earlier[np.argsort(time[earlier], kind="stable")]
            later = np.flatnonzero(set_no == k)
            lo = np.searchsorted(time[earlier], time[later] - window, "left")
            hi = np.searchsorted(time[earlier], time[later] + window, "right")
            for q, t in _expanded_pairs(later, lo, hi, earlier):
                hit = (
                    (grid_no[q] != grid_no[t])
                    & (np.abs(time[q] - time[t]) <= np.maximum(reach[q], reach[t]))
                    & (box[q, 0] <= box[t, 1])
                    & (box[t, 0] <= box[q, 1])
                    & (box[q, 2] <= box[t, 3])
                    & (box[t, 2] <= box[q, 3])
                )
                if hit.any():
                    i, j = int(t[hit][0]), int(q[hit][0])
                    raise SplitLeakageError(
                        self._footprint_message(md, names, index, set_no, box, (i, j), hit.sum())
                    )

    def _footprint_message(
        self,
        md: pd.DataFrame,
        names: list[str],
        index: I64,
        set_no: I64,
        box: npt.NDArray[np.float64],
        pair: tuple[int, int],
        count: int,
    ) -> str:
        i, j = pair
        stamps = pd.to_datetime(md["time"].iloc[index[[i, j]]], utc=True)

        def where(p: int) -> str:
            row = md.iloc[int(index[p])]
            lon0, lon1, lat0, lat1 = box[p]
            return (
                f"sample {int(index[p])} ({stamps.iloc[0 if p == i else 1]:%Y-%m-%dT%H:%M:%SZ}, "
                f"region {str(row.get('region', '?'))!r}, grid {str(row['grid'])!r}, "
                f"lon {lon0:.2f}..{lon1:.2f}, lat {lat0:.2f}..{lat1:.2f})"
            )

        return (
            f"split {self.name!r}: sets {names[set_no[i]]!r} and {names[set_no[j]]!r} hold "
            f"patches on different grids that cover the same place at adjacent times: {where(i)} "
            f"and {where(j)}; {count} such pairs in this block. Separate the sets in time "
            "(temporal_buffer_hours) or in space."
        )

    def _leak_message(self, m: _Members, names: list[str], first: I64, second: I64) -> str:
        order = np.lexsort((m.time[first], m.set_no[second], m.set_no[first]))
        i, j = int(first[order[0]]), int(second[order[0]])
        stamps = pd.to_datetime(m.time[[i, j]], unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ")
        pair_sets = zip(m.set_no[first], m.set_no[second], strict=True)
        labels = pd.Series([f"{names[a]}/{names[b]}" for a, b in pair_sets])
        counts = ", ".join(f"{k}: {v}" for k, v in labels.value_counts(sort=False).items())
        gap_min = abs(int(m.time[i]) - int(m.time[j])) / 60
        reach_min = max(int(m.reach[i]), int(m.reach[j])) / 60
        return (
            f"split {self.name!r}: sets {names[m.set_no[i]]!r} and {names[m.set_no[j]]!r} hold "
            f"overlapping patches at adjacent times: sample {int(m.index[i])} ({stamps[0]}, "
            f"patch origin ({int(m.row[i])}, {int(m.col[i])})) and sample {int(m.index[j])} "
            f"({stamps[1]}, patch origin ({int(m.row[j])}, {int(m.col[j])})) on grid "
            f"{m.grid[i]!r}, {gap_min:g} min apart, input windows reach {reach_min:g} min; "
            f"{first.size} such pairs ({counts}). Separate the sets in time "
            "(temporal_buffer_hours) or in space."
        )


@dataclass
class ResolvedSplit:
    """Sample indices of each set, after the temporal buffer."""

    spec: SplitSpec
    sets: dict[str, I64]
    dropped_by_buffer: dict[str, int] = field(default_factory=dict)

    @property
    def test_sets(self) -> dict[str, I64]:
        """``id_test`` and every ``ood_test/<name>`` set."""
        return {k: v for k, v in self.sets.items() if k == "id_test" or k.startswith("ood_test/")}

    def domains(self) -> dict[str, str]:
        """A short domain label per set, for transfer matrices (``europe``, ``europe/DJF``).

        The split's ``domains`` mapping names a set's label (so that splits of one transfer
        study share labels: ``europe`` as train domain of one split and test domain of another);
        otherwise the label joins, with ``/``, the conditions of the set's filter on the columns
        of :data:`DOMAIN_COLUMNS`, in that order; a filter on none of them gives ``all``.
        """
        out = {}
        for key, flt in self.spec.filters().items():
            parts = [flt[c].label(c) for c in DOMAIN_COLUMNS if c in flt]
            out[key] = self.spec.domains.get(key) or "/".join(parts) or "all"
        return out

    def summary(self, metadata: pd.DataFrame) -> pd.DataFrame:
        """One row per set: size, regions, sensors, time range, distinct days, rain, daylight.

        Columns: ``set, samples, regions, sensors, first, last, days`` (distinct UTC dates),
        ``rain_fraction`` (mean), ``day_fraction`` (share of daytime samples; NaN without a
        ``day`` column) and ``dropped_by_buffer``.
        """
        stamps = pd.to_datetime(metadata["time"], utc=True)
        rows = []
        for key, idx in self.sets.items():
            part = metadata.iloc[idx]
            when = stamps.iloc[idx]
            rows.append(
                {
                    "set": key,
                    "samples": int(idx.size),
                    "regions": _joined(part, "region"),
                    "sensors": _joined(part, "sensor"),
                    "first": when.min().strftime("%Y-%m-%d %H:%M"),
                    "last": when.max().strftime("%Y-%m-%d %H:%M"),
                    "days": int(when.dt.strftime("%Y-%m-%d").nunique()),
                    "rain_fraction": _mean(part, "rain_fraction"),
                    "day_fraction": _mean(part, "day"),
                    "dropped_by_buffer": self.dropped_by_buffer.get(key, 0),
                }
            )
        return pd.DataFrame(rows)


def format_summary(summary: pd.DataFrame) -> str:
    """A :meth:`ResolvedSplit.summary` table as aligned text (4 decimals, ``-`` for missing)."""
    text: str = summary.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-")
    return text


def _joined(part: pd.DataFrame, column: str) -> str:
    if column not in part.columns:
        return "-"
    return ",".join(sorted(map(str, part[column].dropna().unique())))


def _mean(part: pd.DataFrame, column: str) -> float:
    if column not in part.columns:
        return float("nan")
    return round(float(part[column].astype(float).mean()), 4)


def _register_packaged_splits() -> None:
    for path in sorted(files("qpebench.conf").joinpath("split").iterdir(), key=str):
        if path.name.endswith(".yaml"):
            spec = SplitSpec.from_mapping(yaml.safe_load(path.read_text()))
            SPLITS.register(spec.name, spec)


_register_packaged_splits()
