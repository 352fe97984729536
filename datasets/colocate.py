"""Co-location: satellite scans + radar fields → samples on a common equal-area grid → a store.

For every radar valid time ``t`` the sample needs ``frames`` satellite scans whose nominal times
are ``t − offset − k · step`` (``k = frames − 1 … 0``), each found within ``tolerance``; a
missing or out-of-tolerance frame drops the sample and is counted under its reason — a gap is
never bridged. Both sources go onto the region's grid (an equal-area LAEA grid at about the
satellite's resolution):

* radar rain rate by area-weighted mean (:class:`~qpebench.datasets.regrid.Regridder`,
  ``area_mean``), so rain volume is conserved; cells with less than ``radar_min_coverage`` valid
  radar area are no data;
* brightness temperature by the same area-weighted mean (each satellite cell split into
  sub-cells weighted by true area; at 3–4 km close to a box average over the instrument's
  footprint); a target cell no satellite cell reaches is NaN.

Parallax (``parallax=True``, off by default): a cloud top at height ``h`` appears displaced away
from the sub-satellite point by about ``h · tan(vza)`` (20 km for a 12 km anvil at 60°). With the
option on, each satellite cell is moved back to the ground position under its cloud top with
satpy's ``get_parallax_corrected_lonlats``, using a cloud-top height estimated from the IR10.8
brightness temperature through the standard-atmosphere lapse rate,
``h = clip((288.15 K − Tb) / 6.5 K km⁻¹, 0, 16 km)`` (a crude estimate: no cloud-top-height
product is read; clear-sky cells get about 0), and the moved cells are averaged into the target
cells whose area they fall in; the gaps this opens behind tall clouds take the nearest filled
cell's value (up to 3 cells away). Without it the store records ``vza`` per sample so that users can
stratify by it.

The grid is then tiled into ``patch_size`` squares (stride ``stride``); a patch is kept when
every IR value is finite and within the sample interface's 150–350 K, its valid radar fraction is
at least ``min_valid_fraction`` and its rain fraction (≥ 0.1 mm/h) at least
``min_rain_fraction``. Drops are counted by reason in the :class:`ColocationReport`.

The work runs in two parallel phases, each task's result written atomically to
``<store>/.work/<hash of inputs, grid and settings>`` before the next phase: (1) one task per
satellite scan (read, regrid, viewing angles) → a frame file; (2) one task per chunk of
``radar_chunk`` consecutive radar files (read, regrid, match frames, tile, filter) → a chunk file.
Finished tasks are skipped when a build is resumed after an interruption; shards are then
written in chunk order, so the store does not depend on the number of workers. Tasks run
in-process (``workers=1``), on a Dask ``LocalCluster`` of ``workers`` processes, or on an
existing Dask scheduler (``scheduler="tcp://host:8786"``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pyproj import Transformer
from scipy import ndimage
from tqdm import tqdm

from qpebench import __version__
from qpebench.atomic import write_bytes_atomic
from qpebench.bands import DEFAULT_BANDS, validate_bands
from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import QualityControl, read_radar
from qpebench.datasets.regrid import Regridder, cell_index
from qpebench.datasets.satellite import read_satellite, scan_files, viewing_zenith
from qpebench.errors import ConfigError, QpebenchError
from qpebench.sample import cos_solar_zenith, season
from qpebench.store import SampleBatch, SampleStore, SampleStoreWriter, StoreSpec, sha256_file

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
        radar_chunk: Radar files per parallel task (one store shard each, if any sample).
        parallax: Correct the satellite's parallax (see the module docstring; needs IR10.8).
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
    radar_chunk: int = 4
    parallax: bool = False

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
            "radar_chunk": self.radar_chunk >= 1,
            "parallax": not self.parallax or "IR10.8" in self.bands,
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


def _seconds(value: Any) -> int:
    """A scalar datetime64 (any unit) as whole seconds since 1970 (UTC)."""
    return int(np.asarray(value).astype("datetime64[s]").astype(np.int64))


def _save(path: Path, arrays: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


_REGRIDDERS: dict[tuple[Any, ...], Regridder] = {}  # per process: weights are costly to build


def _regridder(source: Grid, target: Grid, min_coverage: float) -> Regridder:
    key = (
        source.crs.to_wkt(),
        source.x.tobytes(),
        source.y.tobytes(),
        target.crs.to_wkt(),
        target.x.tobytes(),
        target.y.tobytes(),
        min_coverage,
    )
    if key not in _REGRIDDERS:
        _REGRIDDERS[key] = Regridder(source, target, min_coverage=min_coverage)
    return _REGRIDDERS[key]


LAPSE_RATE = 6.5e-3  # K/m, standard atmosphere
SURFACE_TB = 288.15  # K
MAX_CLOUD_TOP = 16000.0  # m
PARALLAX_FILL = 3  # cells


def cloud_top_height(tb108: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """Cloud-top height (m) from IR10.8 brightness temperature via the standard lapse rate."""
    height: npt.NDArray[np.float64] = np.clip(
        (SURFACE_TB - np.asarray(tb108, np.float64)) / LAPSE_RATE, 0.0, MAX_CLOUD_TOP
    )
    return height


def _parallax_corrected(
    scan: Any, grid: Grid, covered: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float32]:
    """Tb ``(C, H, W)`` on ``grid`` with every satellite cell moved under its cloud top.

    Gaps are filled only inside ``covered`` (the cells the uncorrected scan reaches).
    """
    from satpy.modifiers.parallax import get_parallax_corrected_lonlats

    source = Grid.of(scan)
    xx, yy = np.meshgrid(source.x, source.y)
    lon, lat = Transformer.from_crs(source.crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    values = np.asarray(scan.values, np.float64)
    tb108 = values[list(scan["band"].values).index("IR10.8")]
    on_earth = np.isfinite(lon) & (np.abs(lon) < 1e30) & np.isfinite(tb108)
    new_lon, new_lat = get_parallax_corrected_lonlats(
        scan.attrs["satellite_longitude"],
        float(scan.attrs.get("satellite_latitude", 0.0)),
        scan.attrs["satellite_height"],
        lon[on_earth],
        lat[on_earth],
        cloud_top_height(tb108[on_earth]),
    )
    tx, ty = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(
        np.asarray(new_lon), np.asarray(new_lat)
    )
    flat = cell_index(grid, np.asarray(tx), np.asarray(ty))
    inside = flat >= 0
    target = flat[inside]
    n_cells = grid.x.size * grid.y.size
    out = np.full((values.shape[0], *grid.shape), np.nan, dtype=np.float32)
    for band in range(values.shape[0]):
        band_values = values[band][on_earth][inside]
        ok = np.isfinite(band_values)
        sums = np.bincount(target[ok], weights=band_values[ok], minlength=n_cells)
        n = np.bincount(target[ok], minlength=n_cells)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[band] = np.where(n > 0, sums / n, np.nan).reshape(grid.shape)
    # Moving cells opens gaps (and piles cells up) behind tall clouds: a gap takes the value of
    # the nearest cell that received one, up to PARALLAX_FILL cells away.
    empty = np.isnan(out).all(axis=0)
    if empty.any() and not empty.all():
        distance, (rows, cols) = ndimage.distance_transform_edt(empty, return_indices=True)
        fill = empty & covered & (distance <= PARALLAX_FILL)
        out[:, fill] = out[:, rows[fill], cols[fill]]
    return out


def _frame_task(files: list[Path], grid: Grid, config: ColocationConfig, out: Path) -> str:
    """Phase 1: one satellite scan onto the grid → ``out`` (skipped if done); an error text."""
    if out.exists():
        return ""
    try:
        scan = read_satellite(files, bands=config.bands, ir108=config.ir108, with_vza=False)
    except (QpebenchError, OSError) as exc:
        return str(exc)
    tb, _, _ = _regridder(Grid.of(scan), grid, 1e-6).apply(np.asarray(scan.values))
    if config.parallax:
        tb = _parallax_corrected(scan, grid, covered=np.asarray(np.isfinite(tb).any(axis=0)))
    vza = viewing_zenith(
        grid,
        scan.attrs["satellite_longitude"],
        scan.attrs["satellite_height"],
        float(scan.attrs.get("satellite_latitude", 0.0)),
    )
    _save(
        out,
        {
            "tb": tb,
            "vza": vza,
            "time": _seconds(scan["time"].values),
            "satellite": scan.attrs["platform"],
            "sensor": scan.attrs["sensor"],
        },
    )
    return ""


def _match(times: Sequence[int], wanted: int, tolerance: int) -> int | None:
    """The frame time nearest to ``wanted`` (s), if within ``tolerance`` (s)."""
    if not times:
        return None
    nearest = min(times, key=lambda t: abs(t - wanted))
    return nearest if abs(nearest - wanted) <= tolerance else None


def _chunk_task(
    radar: list[Path],
    frames: dict[int, Path],
    grid: Grid,
    config: ColocationConfig,
    qc: QualityControl | None,
    out: Path,
) -> None:
    """Phase 2: radar files → matched, tiled, filtered samples → ``out`` (skipped if done)."""
    if out.exists():
        return
    step = round(config.step_minutes * 60)
    tolerance = round(config.tolerance_minutes * 60)
    offset = round(config.offset_minutes * 60)
    p = config.patch_size
    stride = config.stride or p
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    dropped: Counter[str] = Counter()
    bad: list[str] = []
    radar_times = 0
    ir_list, rain_list, valid_list, time_list, rows = [], [], [], [], []
    loaded: dict[int, Any] = {}
    frame_times = sorted(frames)
    for path in radar:
        try:
            field_ = read_radar(path, zr=config.zr, qc=qc)
        except (QpebenchError, OSError) as exc:
            bad.append(str(exc))
            continue
        radar_times += 1
        radar_sha = sha256_file(path)
        rain, _, _ = _regridder(Grid.of(field_), grid, config.radar_min_coverage).apply(
            np.asarray(field_.values)
        )
        t = _seconds(field_["time"].values)
        wanted = [t - offset - k * step for k in range(config.frames - 1, -1, -1)]
        found = [_match(frame_times, w, tolerance) for w in wanted]
        times = [f for f in found if f is not None]
        if len(times) < len(wanted):
            dropped[f"no satellite frame within ±{config.tolerance_minutes:g} min"] += 1
            continue
        if any(b - a != step for a, b in itertools.pairwise(times)):
            dropped["satellite frames not exactly one step apart"] += 1
            continue
        for f in times:
            if f not in loaded:
                with np.load(frames[f]) as data:
                    loaded[f] = {k: data[k] for k in data.files}
        stack = np.stack([loaded[f]["tb"] for f in times])  # (T, C, H, W)
        last = loaded[times[-1]]
        ts = pd.Timestamp(t, unit="s", tz="UTC")
        for r0 in range(0, grid.shape[0] - p + 1, stride):
            for c0 in range(0, grid.shape[1] - p + 1, stride):
                ir = stack[:, :, r0 : r0 + p, c0 : c0 + p]
                if not np.isfinite(ir).all():
                    dropped["satellite does not cover the patch"] += 1
                    continue
                if ir.min() < TB_RANGE[0] or ir.max() > TB_RANGE[1]:
                    dropped["brightness temperature outside 150–350 K"] += 1
                    continue
                patch = rain[r0 : r0 + p, c0 : c0 + p]
                valid = np.isfinite(patch)
                valid_fraction = float(valid.mean())
                if valid_fraction < config.min_valid_fraction:
                    dropped["radar coverage below min_valid_fraction"] += 1
                    continue
                wet = float((np.nan_to_num(patch) >= 0.1).sum() / max(valid.sum(), 1))
                if wet < config.min_rain_fraction:
                    dropped["rain fraction below min_rain_fraction"] += 1
                    continue
                lon, lat = to_lonlat.transform(grid.x[c0 + p // 2], grid.y[r0 + p // 2])
                local_hour = (ts.hour + ts.minute / 60 + lon / 15) % 24
                ir_list.append(ir)
                rain_list.append(patch)
                valid_list.append(valid)
                time_list.append(times)
                rows.append(
                    {
                        "region": config.region,
                        "satellite": str(last["satellite"]),
                        "sensor": str(last["sensor"]),
                        "radar_network": str(field_.attrs.get("network", "")),
                        "grid": config.region,
                        "time": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "year": ts.year,
                        "month": ts.month,
                        "season": season(ts.month),
                        "local_hour": round(local_hour, 3),
                        "day": bool(cos_solar_zenith(lat, ts.day_of_year, local_hour) > 0),
                        "lat": round(float(lat), 4),
                        "lon": round(float(lon), 4),
                        "vza": round(float(last["vza"][r0 + p // 2, c0 + p // 2]), 3),
                        "patch_row": r0,
                        "patch_col": c0,
                        "frame_step_s": step,
                        "accumulation_s": round(60 * float(field_.attrs["accumulation_minutes"])),
                        "valid_fraction": round(valid_fraction, 5),
                        "rain_fraction": round(wet, 5),
                        "radar_file": path.name,
                        "radar_sha256": radar_sha,
                    }
                )
    shape = (0, config.frames, len(config.bands), p, p)
    _save(
        out,
        {
            "ir": np.stack(ir_list).astype(np.float32) if rows else np.zeros(shape, np.float32),
            "rain": np.stack(rain_list).astype(np.float32) if rows else np.zeros((0, p, p)),
            "valid": np.stack(valid_list) if rows else np.zeros((0, p, p), bool),
            "time": np.asarray(time_list, np.int64).reshape(-1, config.frames),
            "metadata": pd.DataFrame(rows).to_csv(index=False),
            "report": json.dumps({"radar_times": radar_times, "dropped": dropped, "bad": bad}),
        },
    )


def _run(
    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]],
    *,
    workers: int,
    scheduler: str | None,
    label: str,
    progress: bool,
) -> list[Any]:
    """Run ``(function, args)`` calls in-process, on a local Dask cluster or a scheduler."""
    if scheduler is None and workers <= 1:
        return [fn(*args) for fn, args in tqdm(calls, desc=label, disable=not progress)]
    from distributed import Client, LocalCluster, as_completed

    with contextlib.ExitStack() as stack:
        cluster = (
            None
            if scheduler
            else stack.enter_context(
                LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
                )
            )
        )
        client = stack.enter_context(Client(scheduler or cluster))
        futures = [client.submit(fn, *args, pure=False) for fn, args in calls]
        for _ in tqdm(as_completed(futures), total=len(futures), desc=label, disable=not progress):
            pass
        return list(client.gather(futures))


def build_colocated_store(
    root: str | os.PathLike[str],
    *,
    satellite: Sequence[str | os.PathLike[str]],
    radar: Sequence[str | os.PathLike[str]],
    grid: Grid,
    config: ColocationConfig,
    qc: QualityControl | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = False,
) -> tuple[SampleStore, ColocationReport]:
    """Co-locate satellite scans and radar fields on ``grid`` and write a sample store.

    Args:
        root: Store directory; an interrupted build with the same inputs resumes.
        satellite: Satellite files (any order; multi-file scans are grouped).
        radar: Radar files (one field each).
        grid: The common equal-area target grid (cell size in metres).
        config: Co-location settings.
        qc: Radar quality control.
        workers: Processes of a local Dask cluster (1: run in this process).
        scheduler: Address of an existing Dask scheduler (overrides ``workers``).
        progress: Show progress bars.

    Returns:
        The store and a report of kept and dropped samples.

    Raises:
        ConfigError: No sample survives (the report's reasons are in the message).
    """
    root = Path(root)
    satellite_files = sorted(str(Path(s).resolve()) for s in satellite)
    radar_files = sorted(Path(r).resolve() for r in radar)
    # Every input by name and content: in the manifest (provenance, and a store built from other
    # files is another store), and in the key of the task cache (never reused for other inputs).
    sources = [
        {"kind": kind, "file": Path(f).name, "sha256": sha256_file(Path(f))}
        for kind, files in (("satellite", satellite_files), ("radar", radar_files))
        for f in files
    ]
    inputs = json.dumps(
        {
            "code": __version__,
            "config": asdict(config),
            "qc": repr(qc),
            "grid": [grid.proj4, grid.x.tolist(), grid.y.tolist()],
            "sources": sources,
        },
        sort_keys=True,
    )
    work = root / ".work" / hashlib.sha256(inputs.encode()).hexdigest()[:16]
    (work / "frames").mkdir(parents=True, exist_ok=True)
    (work / "chunks").mkdir(parents=True, exist_ok=True)
    report = ColocationReport()
    scans = _group_scans(Path(s) for s in satellite_files)
    frame_files = [
        work / "frames" / (hashlib.sha1("|".join(map(str, f)).encode()).hexdigest() + ".npz")
        for f in scans
    ]
    errors = _run(
        [(_frame_task, (f, grid, config, out)) for f, out in zip(scans, frame_files, strict=True)],
        workers=workers,
        scheduler=scheduler,
        label="satellite scans",
        progress=progress,
    )
    report.bad_files += [e for e in errors if e]
    frames: dict[int, Path] = {}
    for files, out in zip(scans, frame_files, strict=True):
        if out.exists():
            with np.load(out) as data:
                time = int(data["time"])
            if time in frames:
                report.bad_files.append(
                    f"{files[0]}: a second scan for nominal time {np.datetime64(time, 's')} "
                    f"(first: {frames[time].name}); not used — give one platform and one product"
                )
                continue
            frames[time] = out
    report.satellite_scans = len(frames)
    chunks = [
        radar_files[i : i + config.radar_chunk]
        for i in range(0, len(radar_files), config.radar_chunk)
    ]
    chunk_files = [work / "chunks" / f"chunk-{i:05d}.npz" for i in range(len(chunks))]
    _run(
        [
            (_chunk_task, (c, frames, grid, config, qc, out))
            for c, out in zip(chunks, chunk_files, strict=True)
        ],
        workers=workers,
        scheduler=scheduler,
        label="radar chunks",
        progress=progress,
    )
    p = config.patch_size
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
        # File names and checksums (not absolute paths: moving an archive keeps the version).
        sources=sources,
    )
    writer: SampleStoreWriter | None = None
    shard = 0
    for out in chunk_files:
        with np.load(out) as data:
            part = json.loads(str(data["report"]))
            report.radar_times += part["radar_times"]
            report.dropped.update(part["dropped"])
            report.bad_files += part["bad"]
            if data["ir"].shape[0] == 0:
                continue
            writer = writer or SampleStoreWriter(root, spec)
            if not writer.has_shard(shard):
                writer.write_shard(
                    shard,
                    SampleBatch(
                        ir=data["ir"],
                        rain=data["rain"].astype(np.float32),
                        valid=data["valid"],
                        time=data["time"],
                        metadata=pd.read_csv(io.StringIO(str(data["metadata"]))),
                    ),
                )
            report.samples += int(data["ir"].shape[0])
            shard += 1
    if writer is None:
        raise ConfigError(f"co-location kept no sample:\n{report.summary()}")
    store = writer.finalize()
    shutil.rmtree(root / ".work")
    return store, report
