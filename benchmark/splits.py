"""Declarative splits: train / id_val / id_test / ood_test as filters over sample metadata.

A split is a YAML file in ``qpebench/conf/split/`` (the Hydra ``split`` config group); each is
also registered in :data:`qpebench.registry.SPLITS` by name. A filter maps metadata columns to
the values allowed (``{region: [europe], year: [2021, 2022]}``). Resolving a split on a store's
metadata applies a temporal buffer (held-out samples closer than ``temporal_buffer_hours`` to a
training sample of the same region are dropped) and refuses a split whose sets share a sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

from qpebench.errors import SplitError
from qpebench.registry import SPLITS

Filter = dict[str, list[Any]]


def _check_filter(name: str, where: str, value: Any) -> Filter:
    if not isinstance(value, dict) or not value:
        raise SplitError(f"split {name!r}: {where} must be a non-empty mapping column -> values")
    out: Filter = {}
    for column, allowed in value.items():
        items = list(allowed) if isinstance(allowed, list | tuple) else [allowed]
        if not items:
            raise SplitError(f"split {name!r}: {where}.{column} allows no value")
        out[str(column)] = items
    return out


def sample_times(metadata: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Target times of the metadata rows as UTC seconds since the epoch."""
    stamps = pd.to_datetime(metadata["time"], utc=True).dt.tz_localize(None)
    return stamps.to_numpy().astype("datetime64[s]").astype(np.int64)


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

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> SplitSpec:
        """Build and check a spec from a parsed YAML mapping.

        Raises:
            SplitError: A missing key or a malformed filter, naming the split and the key.
        """
        name = str(data.get("name", "<unnamed>"))
        missing = [k for k in ("train", "id_val", "id_test") if k not in data]
        if missing:
            raise SplitError(f"split {name!r}: missing {missing}")
        ood = data.get("ood_test") or {}
        if not isinstance(ood, dict):
            raise SplitError(f"split {name!r}: ood_test must map test-set names to filters")
        buffer = float(data.get("temporal_buffer_hours", 24.0))
        if buffer < 0:
            raise SplitError(f"split {name!r}: temporal_buffer_hours must be >= 0, got {buffer}")
        return cls(
            name=name,
            description=str(data.get("description", "")),
            train=_check_filter(name, "train", data["train"]),
            id_val=_check_filter(name, "id_val", data["id_val"]),
            id_test=_check_filter(name, "id_test", data["id_test"]),
            ood_test={str(k): _check_filter(name, f"ood_test.{k}", v) for k, v in ood.items()},
            temporal_buffer_hours=buffer,
        )

    def resolve(self, metadata: pd.DataFrame) -> ResolvedSplit:
        """Apply the split to a store's metadata table.

        Raises:
            SplitError: A filter names a column the metadata lacks, a set is empty, or two sets
                share a sample.
        """
        sets: dict[str, npt.NDArray[np.int64]] = {
            "train": self._select(metadata, "train", self.train),
            "id_val": self._select(metadata, "id_val", self.id_val),
            "id_test": self._select(metadata, "id_test", self.id_test),
        }
        for key, flt in self.ood_test.items():
            sets[f"ood_test/{key}"] = self._select(metadata, f"ood_test.{key}", flt)
        dropped: dict[str, int] = {}
        if self.temporal_buffer_hours > 0:
            for key in list(sets):
                if key != "train":
                    sets[key], dropped[key] = self._buffer(metadata, sets["train"], sets[key])
        names = list(sets)
        for i, a in enumerate(names):
            if sets[a].size == 0:
                raise SplitError(f"split {self.name!r}: set {a!r} selects no sample")
            for b in names[i + 1 :]:
                shared = np.intersect1d(sets[a], sets[b])
                if shared.size:
                    raise SplitError(
                        f"split {self.name!r}: sets {a!r} and {b!r} share {shared.size} samples "
                        f"(first: index {int(shared[0])})"
                    )
        return ResolvedSplit(spec=self, sets=sets, dropped_by_buffer=dropped)

    def _select(self, metadata: pd.DataFrame, where: str, flt: Filter) -> npt.NDArray[np.int64]:
        mask = np.ones(len(metadata), bool)
        for column, allowed in flt.items():
            if column not in metadata.columns:
                raise SplitError(
                    f"split {self.name!r}: {where} filters on {column!r}, which the metadata "
                    f"lacks; columns: {', '.join(metadata.columns)}"
                )
            col = metadata[column]
            if col.dtype == bool:
                allowed = [str(a).lower() in ("true", "1") for a in allowed]
            mask &= col.isin(allowed).to_numpy()
        return np.flatnonzero(mask).astype(np.int64)

    def _buffer(
        self, metadata: pd.DataFrame, train: npt.NDArray[np.int64], held: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], int]:
        times = sample_times(metadata)
        regions = metadata["region"].to_numpy()
        keep = np.ones(held.size, bool)
        limit = self.temporal_buffer_hours * 3600
        for region in np.unique(regions[held]):
            t_train = np.sort(times[train][regions[train] == region])
            if t_train.size == 0:
                continue
            sel = np.flatnonzero(regions[held] == region)
            t = times[held[sel]]
            pos = np.searchsorted(t_train, t)
            before = np.abs(t - t_train[np.clip(pos - 1, 0, t_train.size - 1)])
            after = np.abs(t_train[np.clip(pos, 0, t_train.size - 1)] - t)
            keep[sel] = np.minimum(before, after) >= limit
        return held[keep], int((~keep).sum())


@dataclass
class ResolvedSplit:
    """Sample indices of each set, after the temporal buffer."""

    spec: SplitSpec
    sets: dict[str, npt.NDArray[np.int64]]
    dropped_by_buffer: dict[str, int] = field(default_factory=dict)

    @property
    def test_sets(self) -> dict[str, npt.NDArray[np.int64]]:
        """``id_test`` and every ``ood_test/<name>`` set."""
        return {k: v for k, v in self.sets.items() if k == "id_test" or k.startswith("ood_test/")}

    def summary(self, metadata: pd.DataFrame) -> pd.DataFrame:
        """Counts, regions, time range and mean rain fraction of each set."""
        rows = []
        for key, idx in self.sets.items():
            part = metadata.iloc[idx]
            rows.append(
                {
                    "set": key,
                    "samples": int(idx.size),
                    "regions": ",".join(sorted(part["region"].unique())),
                    "first": str(part["time"].min()),
                    "last": str(part["time"].max()),
                    "rain_fraction": round(float(part["rain_fraction"].mean()), 4),
                    "dropped_by_buffer": self.dropped_by_buffer.get(key, 0),
                }
            )
        return pd.DataFrame(rows)


def _register_packaged_splits() -> None:
    for path in sorted(files("qpebench.conf").joinpath("split").iterdir(), key=str):
        if path.name.endswith(".yaml"):
            spec = SplitSpec.from_mapping(yaml.safe_load(path.read_text()))
            SPLITS.register(spec.name, spec)


_register_packaged_splits()
