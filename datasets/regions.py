"""Regions of real-data co-location: satellite, radar network and the common equal-area grid.

Each region pairs a geostationary imager with a radar network and fixes the grid both are put
on: Lambert azimuthal equal-area around the region's centre, 4 km cells (about SEVIRI's and
ABI's/AHI's IR resolution at these latitudes, so the satellite is not upsampled), north-up.
``qpebench prepare data=<region>`` (the ``colocated`` adapter below) builds the region's sample
store from archive files given as glob patterns; the data cards are in ``docs/data/regions.md``.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qpebench.bands import DEFAULT_BANDS
from qpebench.datasets.colocate import ColocationConfig, build_colocated_store
from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import QualityControl
from qpebench.datasets.regrid import laea_grid
from qpebench.datasets.satellite import viewing_zenith
from qpebench.errors import ConfigError, UnknownNameError, unknown_name_message
from qpebench.registry import DATASETS
from qpebench.store import SampleStore

GEO_HEIGHT = 35786000.0  # nominal geostationary height above the equator (m)


@dataclass(frozen=True)
class Region:
    """A co-location region.

    Attributes:
        name: Region name (recorded in every sample).
        satellite: Platform(s) and service.
        sensor: ``SEVIRI``, ``ABI`` or ``AHI``.
        satellite_longitude: Nominal sub-satellite longitude (degrees east).
        radar_network: The truth's network.
        radar_readers: Registered radar readers expected for its files (``()``: none yet).
        centre: ``(lat, lon)`` of the grid centre.
        shape: Grid ``(rows, cols)`` of 4 km cells.
        step_minutes: The imager's repeat cycle for the region (frame step by default).
        offset_minutes: Radar time − nominal slot of the last frame, by default: the slot whose
            scan passes over the region closest before the radar time (SEVIRI scans the full
            disk south → north in about 12 min, so Europe is seen 9–12 min after the nominal
            time: offset 15; AHI reaches Australia 6–9 min into its 10-min scan: offset 10;
            ABI sees CONUS 2–5 min into the slot: offset 0).
    """

    name: str
    satellite: str
    sensor: str
    satellite_longitude: float
    radar_network: str
    radar_readers: tuple[str, ...]
    centre: tuple[float, float]
    shape: tuple[int, int]
    step_minutes: float
    offset_minutes: float

    def grid(self) -> Grid:
        """The region's 4 km LAEA grid."""
        return laea_grid(self.centre[0], self.centre[1], 4000.0, self.shape)

    def viewing_angles(self) -> tuple[float, float, float]:
        """Viewing zenith angle (degrees) at the grid centre, and its min and max over the grid."""
        grid = self.grid()
        coarse = Grid(grid.crs, grid.x[::10], grid.y[::10])
        vza = viewing_zenith(coarse, self.satellite_longitude, GEO_HEIGHT)
        centre = viewing_zenith(
            Grid(grid.crs, np.array([0.0, 1.0]), np.array([0.0, 1.0])),
            self.satellite_longitude,
            GEO_HEIGHT,
        )
        return float(centre[0, 0]), float(np.nanmin(vza)), float(np.nanmax(vza))


REGIONS: dict[str, Region] = {
    r.name: r
    for r in (
        Region(
            "europe",
            "Meteosat-11 (0°, full disk)",
            "SEVIRI",
            0.0,
            "OPERA",
            ("odim",),
            (52.5, 10.0),
            (1100, 950),
            15.0,
            15.0,
        ),
        Region(
            "conus",
            "GOES-East (GOES-16/19, 75.2° W)",
            "ABI",
            -75.2,
            "MRMS",
            ("mrms",),
            (38.5, -97.5),
            (700, 1200),
            10.0,
            0.0,
        ),
        Region(
            "germany",
            "Meteosat-11 (0°) or RSS (9.5° E)",
            "SEVIRI",
            0.0,
            "DWD RADOLAN",
            ("radolan",),
            (51.2, 10.4),
            (240, 220),
            15.0,
            15.0,
        ),
        Region(
            "netherlands",
            "Meteosat-11 (0°)",
            "SEVIRI",
            0.0,
            "KNMI",
            ("knmi",),
            (52.2, 5.3),
            (100, 90),
            15.0,
            15.0,
        ),
        Region(
            "finland",
            "Meteosat-11 (0°)",
            "SEVIRI",
            0.0,
            "FMI",
            ("fmi_pgm", "fmi_geotiff"),
            (64.5, 26.0),
            (300, 180),
            15.0,
            15.0,
        ),
        Region(
            "australia",
            "Himawari-9 (140.7° E)",
            "AHI",
            140.7,
            "BoM Rainfields",
            ("bom_rainfields",),
            (-27.0, 134.0),
            (900, 1000),
            10.0,
            10.0,
        ),
        Region(
            "india",
            "Meteosat-9 IODC (45.5° E)",
            "SEVIRI",
            45.5,
            "IMD radars",
            (),
            (22.0, 79.0),
            (700, 700),
            15.0,
            15.0,
        ),
    )
}


def get_region(name: str) -> Region:
    """The region called ``name``.

    Raises:
        UnknownNameError: No such region (the message lists them).
    """
    if name not in REGIONS:
        raise UnknownNameError(unknown_name_message("region", name, REGIONS))
    return REGIONS[name]


def _expand(patterns: list[str], what: str) -> list[Path]:
    matches = {Path(f) for p in patterns for f in glob.glob(p, recursive=True)}
    files = sorted(f for f in matches if f.is_file())
    if not files:
        raise ConfigError(
            f"data.{what}: no file matches {patterns or '(nothing given)'}; give the archive's "
            f"files as glob patterns, e.g. data.{what}=['/archive/{what}/**/*']"
        )
    return files


@DATASETS.register("colocated")
def build_region_store(
    root: str | Path,
    *,
    region: str,
    satellite: list[str],
    radar: list[str],
    frames: int = 4,
    step_minutes: float | None = None,
    tolerance_minutes: float = 2.5,
    offset_minutes: float | None = None,
    bands: list[str] | None = None,
    ir108: str | None = None,
    patch_size: int = 64,
    stride: int | None = None,
    min_valid_fraction: float = 0.9,
    min_rain_fraction: float = 0.0,
    radar_min_coverage: float = 0.5,
    zr: str | None = None,
    spike_rate: float | None = None,
    max_rate: float | None = None,
    min_quality: float | None = None,
    radar_chunk: int = 16,
    parallax: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = True,
) -> SampleStore:
    """Build a region's store from archive files (the ``colocated`` dataset adapter).

    Args:
        root: Store directory (an interrupted build resumes).
        region: A name in :data:`REGIONS` (sets the grid and default frame step).
        satellite: Glob patterns of the satellite files.
        radar: Glob patterns of the radar files.
        frames: Frames per sample.
        step_minutes: Frame step (default: the region imager's repeat cycle).
        tolerance_minutes: Frame-time tolerance.
        offset_minutes: Radar time − nominal time of the last frame (default: the region's).
        bands: Canonical bands (default: the default bands).
        ir108: ABI/AHI channel for IR10.8 (``C13``/``B13``) instead of the default.
        patch_size: Patch side (cells).
        stride: Patch stride (default: ``patch_size``).
        min_valid_fraction: Least valid radar share per patch.
        min_rain_fraction: Least rainy share per patch.
        radar_min_coverage: Least valid radar area per target cell.
        zr: Z–R relation for reflectivity products.
        spike_rate: Radar quality control: isolated spikes at or above this rate (mm/h).
        max_rate: Radar quality control: rates above this are rejected (mm/h).
        min_quality: Radar quality control: least quality index.
        radar_chunk: Radar files per parallel task.
        parallax: Correct the satellite's parallax (see :mod:`qpebench.datasets.colocate`).
        workers: Local Dask workers (1: in-process).
        scheduler: Address of an existing Dask scheduler.
        progress: Show progress bars.

    Raises:
        ConfigError: No files match, the region has no radar reader yet, or no sample survives.
        UnknownNameError: Unknown region.
    """
    spec = get_region(region)
    if not spec.radar_readers:
        raise ConfigError(
            f"region {region!r}: no reader for {spec.radar_network} files yet; its store cannot "
            "be built from an archive (see docs/data/regions.md)"
        )
    config = ColocationConfig(
        region=region,
        frames=frames,
        step_minutes=step_minutes or spec.step_minutes,
        tolerance_minutes=tolerance_minutes,
        offset_minutes=spec.offset_minutes if offset_minutes is None else offset_minutes,
        bands=tuple(bands) if bands else DEFAULT_BANDS,
        ir108=ir108,
        patch_size=patch_size,
        stride=stride,
        min_valid_fraction=min_valid_fraction,
        min_rain_fraction=min_rain_fraction,
        radar_min_coverage=radar_min_coverage,
        zr=zr,
        radar_chunk=radar_chunk,
        parallax=parallax,
    )
    qc_options: dict[str, Any] = {
        "spike_rate": spike_rate,
        "max_rate": max_rate,
        "min_quality": min_quality,
    }
    qc = QualityControl(**qc_options) if any(v is not None for v in qc_options.values()) else None
    store, report = build_colocated_store(
        root,
        satellite=_expand(list(satellite), "satellite"),
        radar=_expand(list(radar), "radar"),
        grid=spec.grid(),
        config=config,
        qc=qc,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
    )
    if progress:
        print(report.summary())
    return store
