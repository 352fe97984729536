"""NOAA/NSSL MRMS ``PrecipRate`` (surface precipitation rate) in GRIB2.

The Multi-Radar/Multi-Sensor system (MRMS, NOAA National Severe Storms Laboratory, operational at
NCEP) publishes its CONUS mosaic products as one GRIB2 message per file, usually gzip-compressed
(``MRMS_PrecipRate_00.00_YYYYMMDD-HHMMSS.grib2.gz``). MRMS parameters live in a *local* GRIB2
discipline, **209**, described only by the MRMS GRIB2 table
(https://www.nssl.noaa.gov/projects/mrms/operational/tables.php, ``UserTable_MRMS_v12.x.csv``;
the same table is compiled into Unidata netCDF-Java as ``MrmsLocalTables``). ecCodes does not know
that table, so it names the variable ``unknown`` with units ``unknown``; this reader therefore
identifies the product by its numbers: discipline 209, parameterCategory 6, parameterNumber 1 is
``PrecipRate`` ("Radar Precipitation Rate", mm/h). Any other MRMS parameter is refused with its
three numbers in the message rather than read under a wrong unit.

Codes (MRMS table, columns "No Coverage" and "Missing" of PrecipRate): **−3** no radar coverage,
**−1** missing; both become NaN (status "no data"). Values ≥ 0 are rates in mm/h, 0 being "no
echo". Any other negative value is undocumented and refused. A GRIB bitmap, if ever present, also
marks no data.

Grid: GRIB2 template 3.0 (``regular_ll``). GRIB grid points are the cell centres, so the first
point (``latitudeOfFirstGridPointInDegrees``, ``longitudeOfFirstGridPointInDegrees``) is the
centre of the first cell and the outer corner lies half an increment
(``iDirectionIncrementInDegrees``, ``jDirectionIncrementInDegrees``) beyond it. MRMS writes
longitudes in 0–360 °E (230.005 … 299.995); they are converted to −180…180. Rows follow the file
(scanning mode 0: west → east, north → south; mode 64, ``jScansPositively``, is south → north);
other scanning modes are refused. The last grid point is checked against first point, increments
and counts, so a grid that contradicts its own description is refused. MRMS declares
``shapeOfTheEarth`` 2 (the IAU 1965 ellipsoid, flattening 1/298.25); the coordinates are taken
as WGS 84 latitude/longitude (EPSG:4326), which moves no point by more than about a metre, and
the declared shape is kept in the attribute ``grib_shape_of_earth``.

Time: ``dataDate``/``dataTime`` (+ ``second``) is the observation time (significance of reference
time 3); it must agree with ``validityDate``/``validityTime``, since PrecipRate is an analysis.

The message is decoded from memory (``codes_new_from_message``): no index file is written, gzip is
handled, and truncation is caught from section 0's ``totalLength`` and the ``7777`` end marker
before ecCodes sees the bytes.

**Import order:** with the PyPI wheels ``eccodes``/``eccodeslib`` 2.50 and ``pyproj`` 3.7.2,
importing ecCodes *before* pyproj makes the interpreter abort at exit ("double free or
corruption", exit code 134) although every result is correct. This module imports pyproj first;
keep it that way (``tests/datasets/test_mrms.py`` checks a fresh interpreter exits cleanly).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# pyproj before eccodes — see "Import order" above. ``isort: split`` keeps the sorter from
# putting eccodes first.
import pyproj
import xarray as xr

# isort: split
import eccodes

from qpebench import limits
from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import (
    MAX_RADAR_BYTES,
    MAX_RADAR_CELLS,
    Probe,
    RadarReader,
    make_field,
    register_reader,
    utc,
)
from qpebench.errors import FileFormatError

MRMS_DISCIPLINE = 209
NSSL_CENTRE = 161  # WMO common code table C-11: US NOAA Office of Oceanic and Atmospheric Research
PRECIP_RATE = (6, 1)  # parameterCategory, parameterNumber of PrecipRate (mm/h)
NO_COVERAGE = -3.0
MISSING = -1.0
_GRIB = b"GRIB"
_END = b"7777"
_SCAN_NORTH_DOWN, _SCAN_NORTH_UP = 0, 64


def _centre(data: bytes) -> int | None:
    """Originating centre from section 1 (octets 6–7), which follows the 16-octet section 0."""
    if len(data) < 23 or data[20] != 1:
        return None
    return int.from_bytes(data[21:23], "big")


def _is_mrms(probe: Probe) -> bool:
    # Section 0: octets 1–4 "GRIB", octet 7 discipline, octet 8 edition; discipline 209 is a
    # local number, so the originating centre (NSSL) is checked too.
    head = probe.head
    return (
        len(head) >= 16
        and head[:4] == _GRIB
        and head[7] == 2
        and head[6] == MRMS_DISCIPLINE
        and _centre(head) == NSSL_CENTRE
    )


def _section0(data: bytes, path: Path) -> int:
    """Check section 0 (and the centre in section 1); the message length section 0 declares.

    Raises:
        FileFormatError: Not an MRMS GRIB2 message, or a length above
            :data:`~qpebench.datasets.radar.MAX_RADAR_BYTES`.
    """
    if len(data) < 16 or data[:4] != _GRIB:
        raise FileFormatError(f"{path}: not a GRIB file (starts with {data[:8]!r})")
    if data[7] != 2:
        raise FileFormatError(f"{path}: GRIB edition {data[7]}; MRMS products are GRIB2")
    if data[6] != MRMS_DISCIPLINE:
        raise FileFormatError(
            f"{path}: GRIB2 discipline {data[6]} is not MRMS's local discipline {MRMS_DISCIPLINE}"
        )
    if _centre(data) != NSSL_CENTRE:
        raise FileFormatError(
            f"{path}: originating centre {_centre(data)} is not NSSL ({NSSL_CENTRE}); discipline "
            f"{MRMS_DISCIPLINE} is a local table, meaningful only for MRMS products"
        )
    total = int.from_bytes(data[8:16], "big")
    return limits.check_declared(
        path, "GRIB section 0 (message length)", total, MAX_RADAR_BYTES, unit="bytes"
    )


def _check_message(data: bytes, path: Path) -> None:
    total = _section0(data, path)
    if len(data) < total:
        raise FileFormatError(
            f"{path}: truncated: section 0 gives a {total}-byte GRIB message, the file holds "
            f"{len(data)} bytes"
        )
    if data[total - 4 : total] != _END:
        raise FileFormatError(f"{path}: GRIB message does not end with '7777' (corrupt)")
    if _GRIB in data[total:]:
        raise FileFormatError(
            f"{path}: holds more than one GRIB message; an MRMS product file holds exactly one"
        )


def _get(handle: Any, key: str, ktype: type, path: Path) -> Any:
    try:
        return eccodes.codes_get(handle, key, ktype)
    except eccodes.KeyValueNotFoundError:
        raise FileFormatError(f"{path}: GRIB message lacks the key {key!r}") from None


def _grid(handle: Any, path: Path) -> Grid:
    grid_type = str(_get(handle, "gridType", str, path))
    if grid_type != "regular_ll":
        raise FileFormatError(
            f"{path}: gridType {grid_type!r}; MRMS products are on a regular_ll grid"
        )
    ni, nj = int(_get(handle, "Ni", int, path)), int(_get(handle, "Nj", int, path))
    di = float(_get(handle, "iDirectionIncrementInDegrees", float, path))
    dj = float(_get(handle, "jDirectionIncrementInDegrees", float, path))
    lat0 = float(_get(handle, "latitudeOfFirstGridPointInDegrees", float, path))
    lon0 = float(_get(handle, "longitudeOfFirstGridPointInDegrees", float, path))
    lat1 = float(_get(handle, "latitudeOfLastGridPointInDegrees", float, path))
    lon1 = float(_get(handle, "longitudeOfLastGridPointInDegrees", float, path))
    mode = int(_get(handle, "scanningMode", int, path))
    if mode not in (_SCAN_NORTH_DOWN, _SCAN_NORTH_UP):
        raise FileFormatError(
            f"{path}: GRIB scanningMode {mode} is not supported (0: rows north → south, "
            "64: south → north; both west → east)"
        )
    if ni < 2 or nj < 2 or not (di > 0 and dj > 0):
        raise FileFormatError(f"{path}: degenerate grid Ni={ni}, Nj={nj}, increments {di}, {dj}")
    limits.check_declared(path, "GRIB grid (Ni × Nj)", ni * nj, MAX_RADAR_CELLS, unit="cells")
    north_up = mode == _SCAN_NORTH_DOWN
    lat_last = lat0 - (nj - 1) * dj if north_up else lat0 + (nj - 1) * dj
    lon_gap = (lon1 - (lon0 + (ni - 1) * di) + 180.0) % 360.0 - 180.0
    if abs(lat_last - lat1) > dj / 100 or abs(lon_gap) > di / 100:
        raise FileFormatError(
            f"{path}: GRIB grid contradicts itself: first point ({lat0}, {lon0}), increments "
            f"({dj}, {di}) and Nj={nj}, Ni={ni} end at ({lat_last:.6f}, "
            f"{lon0 + (ni - 1) * di:.6f}), the message's last point is ({lat1}, {lon1})"
        )
    lon0 = (lon0 + 180.0) % 360.0 - 180.0
    return Grid.from_corner(
        pyproj.CRS.from_epsg(4326),
        x_left=lon0 - di / 2,
        y_top=lat0 + dj / 2 if north_up else lat0 - dj / 2,
        dx=di,
        dy=dj,
        nx=ni,
        ny=nj,
        north_up=north_up,
    )


def _time(handle: Any, path: Path) -> datetime:
    date, hhmm = int(_get(handle, "dataDate", int, path)), int(_get(handle, "dataTime", int, path))
    vdate = int(_get(handle, "validityDate", int, path))
    vhhmm = int(_get(handle, "validityTime", int, path))
    second = int(_get(handle, "second", int, path))
    try:
        reference = utc(f"{date:08d}{hhmm:04d}", "%Y%m%d%H%M")
        validity = utc(f"{vdate:08d}{vhhmm:04d}", "%Y%m%d%H%M")
    except ValueError:
        raise FileFormatError(
            f"{path}: malformed GRIB date/time: dataDate {date}, dataTime {hhmm}, validityDate "
            f"{vdate}, validityTime {vhhmm}"
        ) from None
    if validity != reference:
        raise FileFormatError(
            f"{path}: validity time {validity:%Y-%m-%d %H:%M} differs from the reference time "
            f"{reference:%Y-%m-%d %H:%M}; PrecipRate is an analysis, not a forecast"
        )
    return reference + timedelta(seconds=second)


def _decode(handle: Any, grid: Grid, path: Path) -> tuple[npt.NDArray[np.float32], dict[str, int]]:
    raw = np.asarray(eccodes.codes_get_values(handle), dtype=np.float64)
    if raw.size != grid.shape[0] * grid.shape[1]:
        raise FileFormatError(
            f"{path}: {raw.size} values for a {grid.shape[0]}×{grid.shape[1]} grid"
        )
    bitmap = int(_get(handle, "bitmapPresent", int, path))
    missing_value = float(_get(handle, "missingValue", float, path)) if bitmap else None
    # Codes are compared in float32: values are packed to 0.1 mm/h, so the rounding to float32
    # absorbs the last-bit error of the unpacking (R + X·2^E)·10^-D, and each test is one cheap
    # pass over 24.5 M cells (this reader is benchmarked).
    rate = raw.reshape(grid.shape).astype(np.float32)
    nodata = rate < 0
    counts = {
        "no_coverage_cells": int(np.count_nonzero(rate == np.float32(NO_COVERAGE))),
        "missing_cells": int(np.count_nonzero(rate == np.float32(MISSING))),
    }
    undocumented = int(np.count_nonzero(nodata)) - sum(counts.values())
    if undocumented:
        negative = rate[nodata]
        other = negative[(negative != np.float32(NO_COVERAGE)) & (negative != np.float32(MISSING))]
        codes = sorted({round(float(v), 3) for v in other[:1000]})[:5]
        raise FileFormatError(
            f"{path}: {undocumented} cells hold undocumented negative codes (e.g. {codes}); MRMS "
            "PrecipRate defines only −3 (no coverage) and −1 (missing)"
        )
    if missing_value is not None:
        nodata |= raw.reshape(grid.shape) == missing_value
    rate[nodata] = np.nan
    return rate, counts


def read_mrms(path: Path) -> xr.DataArray:
    """Read an MRMS ``PrecipRate`` GRIB2 file (plain or gzip) as rain rate in mm/h.

    Raises:
        FileFormatError: Not GRIB2 of discipline 209, truncated, more than one message, another
            MRMS product, a grid that is not regular lat/lon or contradicts itself, undocumented
            negative codes, or missing GRIB keys; the message names the file and the problem.
    """
    data = limits.read_decompressed(path, head_limit=lambda head: _section0(head, path))
    _check_message(data, path)
    try:
        handle = eccodes.codes_new_from_message(data)
    except eccodes.CodesInternalError as exc:
        raise FileFormatError(f"{path}: ecCodes cannot parse the GRIB2 message: {exc}") from None
    try:
        category = int(_get(handle, "parameterCategory", int, path))
        number = int(_get(handle, "parameterNumber", int, path))
        if (category, number) != PRECIP_RATE:
            raise FileFormatError(
                f"{path}: MRMS product discipline {MRMS_DISCIPLINE}, parameterCategory {category},"
                f" parameterNumber {number} is not supported; this reader reads PrecipRate "
                f"({MRMS_DISCIPLINE}/{PRECIP_RATE[0]}/{PRECIP_RATE[1]}, mm/h) only"
            )
        grid = _grid(handle, path)
        valid = _time(handle, path)
        try:
            rate, counts = _decode(handle, grid, path)
        except eccodes.CodesInternalError as exc:
            raise FileFormatError(f"{path}: ecCodes cannot decode the values: {exc}") from None
        attrs: dict[str, Any] = {
            "grib_centre": int(_get(handle, "centre", int, path)),
            "grib_discipline": MRMS_DISCIPLINE,
            "grib_parameter_category": category,
            "grib_parameter_number": number,
            "grib_shape_of_earth": int(_get(handle, "shapeOfTheEarth", int, path)),
            "grib_packing": str(_get(handle, "packingType", str, path)),
            **counts,
        }
    finally:
        eccodes.codes_release(handle)
    return make_field(
        rate,
        grid=grid,
        path=path,
        source="mrms",
        network="MRMS (NOAA/NSSL)",
        product="PrecipRate",
        quantity="PrecipRate",
        units="mm/h",
        kind="rate",
        valid_time=valid,
        attrs=attrs,
    )


register_reader(
    RadarReader(
        name="mrms",
        network="MRMS (NOAA/NSSL)",
        description="MRMS PrecipRate (surface precipitation rate, mm/h) GRIB2, plain or gzip",
        sniff=_is_mrms,
        read=read_mrms,
    )
)
