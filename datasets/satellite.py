"""Geostationary IR imagery: one reader interface over SEVIRI, ABI and AHI products.

:func:`read_satellite` opens one scan (one file, or the files that together make a scan: HRIT
segments with prologue and epilogue, one ABI file per channel …) and returns brightness
temperature in K on the canonical band catalogue (:mod:`qpebench.bands`)::

    scan = read_satellite(hrit_files, bands=["IR10.8", "IR13.4"])

Conventions of every scan (an :class:`xarray.DataArray` named ``brightness_temperature``):

* dims ``("band", "y", "x")``, float32 K, NaN outside the Earth disk or where the file has no
  data; ``band`` holds canonical names, with the sensor's own ``channel`` name and centre
  ``wavelength_um`` as coordinates along it;
* 1-D **cell-centre** coordinates ``y``/``x`` in metres of the scan's geostationary projection
  (in the file's own order: SEVIRI's native images run south → north and east → west); a
  ``spatial_ref`` grid mapping as in :mod:`qpebench.datasets.radar`;
* scalar ``time`` = the nominal scan time (the repeat-cycle slot, e.g. 12:00 for the 12:00–12:15
  SEVIRI full disk); attributes ``start_time``/``end_time`` are the actual observation window
  (ISO 8601 UTC);
* ``vza`` (y, x): the viewing zenith angle in degrees, from the satellite's position and the
  WGS 84 ellipsoid normal (NaN off the disk);
* attributes ``source`` (the reader), ``sensor`` (``SEVIRI``/``ABI``/``AHI``), ``platform``,
  ``satellite_longitude``, ``satellite_height`` (m above the ellipsoid; the satellite's actual
  position where the file gives it, else the nominal one — the nominal longitude is always in
  the grid's CRS), ``files``.

Readers register a :class:`SatelliteReader` in :data:`qpebench.registry.SATELLITE_READERS`; the
source of a file is detected from its content as for radar files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import xarray as xr
from pyproj import CRS, Transformer

from qpebench.bands import CANONICAL_BANDS, DEFAULT_BANDS, sensor_channel, validate_bands
from qpebench.datasets.grid import GRID_MAPPING, Grid
from qpebench.datasets.radar import Probe, iso_time, np_time, probe_file, reader_errors
from qpebench.errors import FileFormatError
from qpebench.registry import SATELLITE_READERS

#: A reader's ``read``: the scan's files and the sensor channels wanted → a native scan
#: (dims ``channel, y, x``) made by :func:`make_scan`.
ReadScan = Callable[[Sequence[Path], Sequence[str]], xr.DataArray]


@dataclass(frozen=True)
class SatelliteReader:
    """A registered reader of one satellite product family.

    Attributes:
        name: Registry name, also the ``source`` attribute of its scans.
        sensor: ``SEVIRI``, ``ABI`` or ``AHI`` (the key of :data:`qpebench.bands.SENSOR_CHANNELS`).
        description: One line: the products it reads.
        sniff: Whether a probed file is this reader's.
        read: Reads the channels of one scan.
        companions: The files that make one scan with a given file (the HRIT segments, prologue
            and epilogue of the same slot …); ``None`` when a file is a whole scan.
    """

    name: str
    sensor: str
    description: str
    sniff: Callable[[Probe], bool]
    read: ReadScan
    companions: Callable[[Path], list[Path]] | None = None


def register_satellite_reader(reader: SatelliteReader) -> SatelliteReader:
    """Register ``reader`` in :data:`~qpebench.registry.SATELLITE_READERS` under its name."""
    return SATELLITE_READERS.register(reader.name, reader)  # type: ignore[no-any-return]


def viewing_zenith(
    grid: Grid, satellite_longitude: float, satellite_height: float, satellite_latitude: float = 0.0
) -> npt.NDArray[np.float32]:
    """Viewing zenith angle (degrees) of every cell of ``grid`` seen from a satellite.

    The angle between the local vertical (the WGS 84 ellipsoid normal at the cell centre) and the
    direction to the satellite; NaN where the cell is off the Earth or the satellite is below
    the horizon.

    Args:
        grid: Any grid (cell centres are transformed to latitude/longitude).
        satellite_longitude: Sub-satellite longitude (degrees east).
        satellite_height: Height above the ellipsoid (m).
        satellite_latitude: Sub-satellite latitude (degrees), 0 for a nominal geostationary orbit.
    """
    xx, yy = np.meshgrid(grid.x, grid.y)
    to_lonlat = Transformer.from_crs(grid.crs, CRS.from_epsg(4326), always_xy=True)
    lon, lat = to_lonlat.transform(xx, yy)
    lon = np.where(np.isfinite(lon) & (np.abs(lon) < 1e30), lon, np.nan)
    lat = np.where(np.isfinite(lat) & (np.abs(lat) < 1e30), lat, np.nan)
    to_ecef = Transformer.from_crs(CRS.from_epsg(4979), CRS.from_epsg(4978), always_xy=True)
    px, py, pz = to_ecef.transform(lon, lat, np.zeros_like(lon))
    sx, sy, sz = to_ecef.transform(satellite_longitude, satellite_latitude, satellite_height)
    lam, phi = np.deg2rad(lon), np.deg2rad(lat)
    normal = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])
    view = np.stack([sx - px, sy - py, sz - pz])
    cos_vza = (normal * view).sum(axis=0) / np.linalg.norm(view, axis=0)
    vza: npt.NDArray[np.float32] = np.degrees(np.arccos(np.clip(cos_vza, -1.0, 1.0))).astype(
        np.float32
    )
    vza[~(cos_vza > 0)] = np.nan
    return vza


def make_scan(
    channels: Mapping[str, npt.ArrayLike],
    *,
    grid: Grid,
    source: str,
    sensor: str,
    platform: str,
    nominal_time: datetime,
    start_time: datetime,
    end_time: datetime,
    satellite_longitude: float,
    satellite_height: float,
    files: Sequence[Path],
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Assemble a native scan (dims ``channel, y, x``) from per-channel arrays in K (for readers).

    Raises:
        FileFormatError: A channel's shape differs from the grid.
    """
    names = list(channels)
    stack = np.empty((len(names), *grid.shape), dtype=np.float32)
    for i, name in enumerate(names):
        values = np.asarray(channels[name], dtype=np.float32)
        if values.shape != grid.shape:
            raise FileFormatError(
                f"{files[0]}: channel {name} has shape {values.shape}, the grid {grid.shape}"
            )
        stack[i] = values
    coords: dict[str, Any] = dict(grid.coords())
    coords["channel"] = ("channel", names)
    coords["time"] = ((), np_time(nominal_time))
    meta: dict[str, Any] = {
        "long_name": "brightness temperature",
        "standard_name": "toa_brightness_temperature",
        "units": "K",
        "source": source,
        "sensor": sensor,
        "platform": platform,
        "nominal_time": iso_time(nominal_time),
        "start_time": iso_time(start_time),
        "end_time": iso_time(end_time),
        "satellite_longitude": float(satellite_longitude),
        "satellite_height": float(satellite_height),
        "files": " ".join(str(f) for f in files),
        "grid_mapping": GRID_MAPPING,
    }
    meta.update(attrs or {})
    return xr.DataArray(
        stack, dims=("channel", "y", "x"), coords=coords, attrs=meta, name="brightness_temperature"
    )


def detect_satellite_source(path: str | os.PathLike[str]) -> str:
    """The name of the registered satellite reader that recognises the file's content.

    Raises:
        FileNotFoundError: No such file.
        FileFormatError: Empty, unreadable, or of no known satellite format.
    """
    probe = probe_file(Path(path))
    matches = []
    for name in SATELLITE_READERS.names():
        try:
            if SATELLITE_READERS.get(name).sniff(probe):
                matches.append(name)
        except Exception:  # a faulty (plugin) sniff must not stop detection
            continue
    if len(matches) != 1:
        what = "not a known satellite product" if not matches else f"ambiguous: {matches}"
        raise FileFormatError(f"{probe.path}: {what}")
    return matches[0]


def read_satellite(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    bands: Sequence[str] | Literal["all"] | None = None,
    ir108: str | None = None,
    source: str | None = None,
    with_vza: bool = True,
) -> xr.DataArray:
    """Read one scan as brightness temperature (K) on canonical bands.

    Args:
        paths: The scan's file, or all files of a multi-file scan.
        bands: Canonical bands (named bands the product lacks are an error); ``None``: those of
            :data:`qpebench.bands.DEFAULT_BANDS` the product holds; ``"all"``: every canonical
            band it holds (``IR3.9`` included).
        ir108: ABI/AHI channel for ``IR10.8`` instead of the default (``C13``/``B13``).
        source: A registered reader; detected from the first file when ``None``.
        with_vza: Attach the viewing zenith angle ``vza``.

    Raises:
        FileNotFoundError: A file does not exist.
        FileFormatError: Bad or incomplete files; a requested band missing from the product.
        UnknownNameError: Unknown band, sensor or reader.
    """
    files = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if not files:
        raise FileFormatError("read_satellite: no files given")
    name = detect_satellite_source(files[0]) if source is None else source
    reader: SatelliteReader = SATELLITE_READERS.get(name)
    explicit = bands is not None and bands != "all"
    if bands == "all":
        wanted: Sequence[str] = tuple(CANONICAL_BANDS)
    elif bands is None:
        wanted = DEFAULT_BANDS
    else:
        wanted = validate_bands(bands)
    mapping = {b: sensor_channel(reader.sensor, b, ir108).channel for b in wanted}
    with reader_errors(files[0], name):
        native = reader.read(files, list(mapping.values()) if explicit else [])
    available = set(native.coords["channel"].values.tolist())
    missing = [f"{b} ({c})" for b, c in mapping.items() if c not in available]
    if explicit and missing:
        raise FileFormatError(
            f"{files[0]}: {reader.sensor} scan lacks the channel(s) {missing}; "
            f"it holds {sorted(available)}"
        )
    chosen = {b: c for b, c in mapping.items() if c in available}
    if not chosen:
        raise FileFormatError(f"{files[0]}: no canonical band in the scan ({sorted(available)})")
    scan = native.sel(channel=list(chosen.values())).rename(channel="band")
    scan = scan.assign_coords(
        band=list(chosen),
        channel=("band", list(chosen.values())),
        wavelength_um=(
            "band",
            [sensor_channel(reader.sensor, b, ir108).wavelength_um for b in chosen],
        ),
        canonical_wavelength_um=("band", [CANONICAL_BANDS[b].wavelength_um for b in chosen]),
    )
    if with_vza:
        with reader_errors(files[0], name):  # the position and grid come from the file
            vza = viewing_zenith(
                Grid.of(scan),
                scan.attrs["satellite_longitude"],
                scan.attrs["satellite_height"],
                float(scan.attrs.get("satellite_latitude", 0.0)),
            )
        scan = scan.assign_coords(vza=(("y", "x"), vza, {"units": "degree"}))
    return scan


def scan_files(path: str | os.PathLike[str], *, source: str | None = None) -> list[Path]:
    """All files of the scan that ``path`` belongs to (itself alone for one-file products).

    Raises:
        FileNotFoundError: No such file.
        FileFormatError: Not a known satellite product.
    """
    path = Path(path)
    reader: SatelliteReader = SATELLITE_READERS.get(source or detect_satellite_source(path))
    return reader.companions(path) if reader.companions else [path]


def summarize_scan(scan: xr.DataArray) -> dict[str, Any]:
    """What a scan holds, as ``qpebench inspect --json`` prints it for satellite files.

    Keys: ``files``, ``source``, ``kind`` (``"satellite"``), ``sensor``, ``platform``,
    ``shape`` ``[rows, cols]``, ``crs`` (PROJ string), ``cell_size`` ``[dx, dy]`` (m at the
    sub-satellite point), ``nominal_time``, ``start_time``, ``end_time``,
    ``satellite_longitude``, and ``bands``: one entry per band with ``band``, ``channel``,
    ``wavelength_um``, ``valid`` (cells with a value), ``min``, ``mean``, ``max`` (K).
    """
    grid = Grid.of(scan)
    bands = []
    for i, band in enumerate(scan["band"].values.tolist()):
        values = np.asarray(scan.values[i], np.float64)
        finite = values[np.isfinite(values)]
        stats = (
            {"min": float(finite.min()), "mean": float(finite.mean()), "max": float(finite.max())}
            if finite.size
            else {"min": None, "mean": None, "max": None}
        )
        bands.append(
            {
                "band": band,
                "channel": str(scan["channel"].values[i]),
                "wavelength_um": float(scan["wavelength_um"].values[i]),
                "valid": int(finite.size),
                **stats,
            }
        )
    return {
        "files": scan.attrs["files"].split(" "),
        "source": scan.attrs["source"],
        "kind": "satellite",
        "sensor": scan.attrs["sensor"],
        "platform": scan.attrs["platform"],
        "shape": list(grid.shape),
        "crs": grid.proj4,
        "cell_size": [grid.dx, grid.dy],
        "nominal_time": scan.attrs["nominal_time"],
        "start_time": scan.attrs["start_time"],
        "end_time": scan.attrs["end_time"],
        "satellite_longitude": scan.attrs["satellite_longitude"],
        "bands": bands,
    }
