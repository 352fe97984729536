"""Co-location: satellite scans + radar fields → samples on a common equal-area grid → a store.

For every radar valid time ``t`` the sample needs ``frames`` satellite scans whose nominal times
are ``t − offset − k · step`` (``k = frames − 1 … 0``), each found within ``tolerance``; a
missing or out-of-tolerance frame drops the sample and is counted under its reason — a gap is
never bridged. Both sources go onto the region's grid (an equal-area LAEA grid at about the
satellite's resolution):

* radar rain rate by area-weighted mean (:class:`~qpebench.datasets.regrid.Regridder`,
  ``area_mean``), so rain volume is conserved; cells with less than ``radar_min_coverage`` valid
  radar area are no data;
* brightness temperature by the area-weighted mean of the satellite cells whose centres fall in
  each target cell (the same ``area_mean`` regridder, which at 3–4 km is close to a box average
  over the instrument's footprint); a target cell no satellite cell reaches is NaN.

No parallax correction is applied (cloud tops are displaced away from the sub-satellite point by
roughly ``h · tan(vza)``, several km for deep convection at 50° VZA): the store records ``vza``
per sample so that users can stratify by it.

The grid is then tiled into ``patch_size`` squares (stride ``stride``); a patch is kept when
every IR value is finite and within the sample interface's 150–350 K, its valid radar fraction is
at least ``min_valid_fraction`` and its rain fraction (≥ 0.1 mm/h) at least
``min_rain_fraction``. Drops are counted by reason in the :class:`ColocationReport`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pyproj import Transformer

from qpebench.bands import DEFAULT_BANDS, validate_bands
from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import QualityControl, read_radar
from qpebench.datasets.regrid import Regridder
from qpebench.datasets.satellite import read_satellite, scan_files, viewing_zenith
from qpebench.errors import ConfigError, QpebenchError
from qpebench.store import SampleBatch, SampleStore, SampleStoreWriter, StoreSpec

TB_RANGE = (150.0, 350.0)  # the sample interface's plausible brightness temperatures (K)


@dataclass(frozen=True)
class ColocationConfig:
    """How samples are assembled (all times in minutes).

    Attributes:
        region: Region name recorded with every sample.
        frames: Satellite frames per sample (T).
        step_minutes: Time between frames.
        tolerance_minutes: Largest allowed distance between a wanted and a found frame time.
        offset_minutes: Satellite nominal time of the last frame = radar time − offset.
        bands: Canonical bands.
        ir108: ABI/AHI channel for ``IR10.8`` instead of the default.
        patch_size: Patch side in target cells.
        stride: Distance between patch origins (``patch_size`` when ``None``).
        min_valid_fraction: Least share of valid radar cells in a patch.
        min_rain_fraction: Least share of cells with ≥ 0.1 mm/h in a patch.
        radar_min_coverage: Least valid radar area share of a target cell.
        zr: Z–R relation name for reflectivity products (``None``: refuse them).
        shard_size: Samples per store shard.
    """

    region: str
    frames: int = 4
    step_minutes: float = 15.0
    tolerance_minutes: float = 2.5
    offset_minutes: float = 0.0
    bands: tuple[str, ...] = DEFAULT_BANDS
    ir108: str | None = None
    patch_size: int = 64
    stride: int | None = None
    min_valid_fraction: float = 0.9
    min_rain_fraction: float = 0.0
    radar_min_coverage: float = 0.5
    zr: str | None = None
    shard_size: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", validate_bands(list(self.bands)))
        checks = {
            "frames": self.frames >= 1,
            "step_minutes": self.step_minutes > 0,
            "tolerance_minutes": 0 <= self.tolerance_minutes < self.step_minutes / 2,
            "patch_size": self.patch_size >= 4,
            "stride": self.stride is None or self.stride >= 1,
            "min_valid_fraction": 0 <= self.min_valid_fraction <= 1,
            "min_rain_fraction": 0 <= self.min_rain_fraction <= 1,
            "radar_min_coverage": 0 < self.radar_min_coverage <= 1,
            "shard_size": self.shard_size >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                f"colocation: invalid {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)} "
                "(tolerance must be below half the step)"
            )


@dataclass
class ColocationReport:
    """What co-location kept and dropped, and why."""

    samples: int = 0
    radar_times: int = 0
    satellite_scans: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    bad_files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line per count."""
        lines = [
            f"{self.samples} samples from {self.radar_times} radar times and "
            f"{self.satellite_scans} satellite scans"
        ]
        lines += [f"  dropped {n}: {reason}" for reason, n in sorted(self.dropped.items())]
        lines += [f"  bad file: {b}" for b in self.bad_files]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Frame:
    tb: npt.NDArray[np.float32]  # (C, H, W) on the target grid
    vza: npt.NDArray[np.float32]  # (H, W)
    satellite: str
    sensor: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _group_scans(paths: Iterable[Path]) -> list[list[Path]]:
    """Satellite files grouped into scans (HRIT segments with their prologue …), deduplicated."""
    seen: set[tuple[str, ...]] = set()
    groups = []
    for path in sorted(paths):
        files = scan_files(path)
        key = tuple(sorted(str(f) for f in files))
        if key not in seen:
            seen.add(key)
            groups.append(sorted(files))
    return groups


def _satellite_frames(
    paths: Iterable[Path], grid: Grid, config: ColocationConfig, report: ColocationReport
) -> dict[int, _Frame]:
    frames: dict[int, _Frame] = {}
    regridders: dict[tuple[Any, ...], Regridder] = {}
    for files in _group_scans(paths):
        try:
            scan = read_satellite(files, bands=config.bands, ir108=config.ir108, with_vza=False)
        except (QpebenchError, OSError) as exc:
            report.bad_files.append(str(exc))
            continue
        source = Grid.of(scan)
        key = (source.crs.to_wkt(), source.x.tobytes(), source.y.tobytes())
        if key not in regridders:
            regridders[key] = Regridder(source, grid, min_coverage=1e-6)
        tb, _, _ = regridders[key].apply(np.asarray(scan.values))
        vza = viewing_zenith(
            grid, scan.attrs["satellite_longitude"], scan.attrs["satellite_height"]
        )
        frames[_seconds(scan["time"].values)] = _Frame(
            tb, vza, scan.attrs["platform"], scan.attrs["sensor"]
        )
        report.satellite_scans += 1
    return frames


def _seconds(value: Any) -> int:
    """A scalar datetime64 (any unit) as whole seconds since 1970 (UTC)."""
    return int(np.asarray(value).astype("datetime64[s]").astype(np.int64))


def _match(frames: dict[int, _Frame], wanted: int, tolerance: int) -> int | None:
    """The frame time nearest to ``wanted`` (s), if within ``tolerance`` (s)."""
    if not frames:
        return None
    nearest = min(frames, key=lambda t: abs(t - wanted))
    return nearest if abs(nearest - wanted) <= tolerance else None


def build_colocated_store(
    root: str | os.PathLike[str],
    *,
    satellite: Sequence[str | os.PathLike[str]],
    radar: Sequence[str | os.PathLike[str]],
    grid: Grid,
    config: ColocationConfig,
    qc: QualityControl | None = None,
) -> tuple[SampleStore, ColocationReport]:
    """Co-locate satellite scans and radar fields on ``grid`` and write a sample store.

    Args:
        root: Store directory (resumed if an interrupted build with the same spec is there).
        satellite: Satellite files (any order; multi-file scans are grouped).
        radar: Radar files (one field each).
        grid: The common equal-area target grid (cell size in metres).
        config: Co-location settings.
        qc: Radar quality control.

    Returns:
        The store and a report of kept and dropped samples.

    Raises:
        ConfigError: No sample survives (the report's reasons are in the message).
    """
    report = ColocationReport()
    frames = _satellite_frames([Path(p) for p in satellite], grid, config, report)
    step = round(config.step_minutes * 60)
    tolerance = round(config.tolerance_minutes * 60)
    offset = round(config.offset_minutes * 60)
    p = config.patch_size
    stride = config.stride or p
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    radar_regridders: dict[tuple[Any, ...], Regridder] = {}
    ir_list, rain_list, valid_list, time_list, rows = [], [], [], [], []
    sources: dict[str, str] = {}
    for path in sorted(Path(r) for r in radar):
        try:
            field_ = read_radar(path, zr=config.zr, qc=qc)
        except (QpebenchError, OSError) as exc:
            report.bad_files.append(str(exc))
            continue
        report.radar_times += 1
        source = Grid.of(field_)
        key = (source.crs.to_wkt(), source.x.tobytes(), source.y.tobytes())
        if key not in radar_regridders:
            radar_regridders[key] = Regridder(source, grid, min_coverage=config.radar_min_coverage)
        rain, _, _ = radar_regridders[key].apply(np.asarray(field_.values))
        t = _seconds(field_["time"].values)
        wanted = [t - offset - k * step for k in range(config.frames - 1, -1, -1)]
        found = [_match(frames, w, tolerance) for w in wanted]
        if any(f is None for f in found):
            report.dropped[f"no satellite frame within ±{config.tolerance_minutes:g} min"] += 1
            continue
        times = [f for f in found if f is not None]
        if any(b - a != step for a, b in itertools.pairwise(times)):
            report.dropped["satellite frames not exactly one step apart"] += 1
            continue
        stack = np.stack([frames[f].tb for f in times])  # (T, C, H, W)
        last = frames[times[-1]]
        sources[str(path)] = _sha256(path)
        for r0 in range(0, grid.shape[0] - p + 1, stride):
            for c0 in range(0, grid.shape[1] - p + 1, stride):
                ir = stack[:, :, r0 : r0 + p, c0 : c0 + p]
                if not np.isfinite(ir).all():
                    report.dropped["satellite does not cover the patch"] += 1
                    continue
                if ir.min() < TB_RANGE[0] or ir.max() > TB_RANGE[1]:
                    report.dropped["brightness temperature outside 150–350 K"] += 1
                    continue
                patch = rain[r0 : r0 + p, c0 : c0 + p]
                valid = np.isfinite(patch)
                valid_fraction = float(valid.mean())
                if valid_fraction < config.min_valid_fraction:
                    report.dropped["radar coverage below min_valid_fraction"] += 1
                    continue
                wet = float((np.nan_to_num(patch) >= 0.1).sum() / max(valid.sum(), 1))
                if wet < config.min_rain_fraction:
                    report.dropped["rain fraction below min_rain_fraction"] += 1
                    continue
                cy, cx = grid.y[r0 + p // 2], grid.x[c0 + p // 2]
                lon, lat = to_lonlat.transform(cx, cy)
                ts = pd.Timestamp(t, unit="s", tz="UTC")
                ir_list.append(ir)
                rain_list.append(patch)
                valid_list.append(valid)
                time_list.append(times)
                rows.append(
                    {
                        "region": config.region,
                        "satellite": last.satellite,
                        "sensor": last.sensor,
                        "radar_network": str(field_.attrs.get("network", "")),
                        "grid": config.region,
                        "time": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "year": ts.year,
                        "month": ts.month,
                        "season": ("DJF", "MAM", "JJA", "SON")[(ts.month % 12) // 3],
                        "local_hour": round((ts.hour + ts.minute / 60 + lon / 15) % 24, 3),
                        "lat": round(float(lat), 4),
                        "lon": round(float(lon), 4),
                        "vza": round(float(last.vza[r0 + p // 2, c0 + p // 2]), 3),
                        "patch_row": r0,
                        "patch_col": c0,
                        "frame_step_s": int(config.step_minutes * 60),
                        "accumulation_s": int(
                            60 * float(field_.attrs.get("accumulation_minutes", 0))
                        ),
                        "valid_fraction": round(valid_fraction, 5),
                        "rain_fraction": round(wet, 5),
                        "radar_file": path.name,
                    }
                )
    if not rows:
        raise ConfigError(f"co-location kept no sample:\n{report.summary()}")
    spec = StoreSpec(
        bands=config.bands,
        frames=config.frames,
        patch_shape=(p, p),
        adapter="colocated",
        adapter_config={**asdict(config), "bands": list(config.bands), "qc": repr(qc)},
        grids={
            config.region: {
                "crs": grid.proj4,
                "cell_size_m": grid.dx,
                "x_min": float(grid.edges()[0][0]),
                "y_max": float(grid.edges()[1][0]),
                "shape": list(grid.shape),
            }
        },
        sources=[{"file": f, "sha256": h} for f, h in sorted(sources.items())],
    )
    writer = SampleStoreWriter(root, spec)
    metadata = pd.DataFrame(rows)
    n = len(rows)
    for shard, start in enumerate(range(0, n, config.shard_size)):
        stop = min(start + config.shard_size, n)
        if writer.has_shard(shard):
            continue
        writer.write_shard(
            shard,
            SampleBatch(
                ir=np.stack(ir_list[start:stop]).astype(np.float32),
                rain=np.stack(rain_list[start:stop]).astype(np.float32),
                valid=np.stack(valid_list[start:stop]),
                time=np.asarray(time_list[start:stop], dtype=np.int64),
                metadata=metadata.iloc[start:stop].reset_index(drop=True),
            ),
        )
    report.samples = n
    return writer.finalize(), report
