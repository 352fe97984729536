"""DWD RADOLAN/RADVOR binary composites (RY, RW, RV, YW, SF … amounts; RX/EX/WX reflectivity).

Format, as described by DWD in "RADOLAN/RADVOR – Beschreibung des Kompositformats"
(https://www.dwd.de/DE/leistungen/radolan/radolan_info/radolan_radvor_op_komposit_format_pdf.pdf;
version 2.2.2 is the one wradlib cites, later versions add the DE1200/DE4800 grids). The format
is a header and one array, so it is parsed here rather than pulling in wradlib (with its
matplotlib, dask and xradar dependencies) at run time; wradlib is the test oracle instead:

* An ASCII header ending with ETX (``0x03``). It starts with fixed fields: the product code
  (2 characters, e.g. ``RW``), ``ddhhmm`` (UTC), the radar id (``10000`` for composites) and
  ``MMYY``; then keyed fields: ``BY`` total product length in bytes (header and ETX included),
  ``VS`` format version, ``SW`` software version, ``PR`` precision (``E-01`` = 0.1, ``E-02`` =
  0.01), ``INT`` interval in minutes, ``GP`` grid size ``rows x columns`` (``900x 900``,
  ``1100x 900``, ``1200x1100`` …), ``VV`` forecast lead in minutes (RADVOR), ``MF`` module flags
  and ``MS`` a 3-digit length followed by the text of the radar list. Keys are found by name,
  not by position (the fields have fixed widths but their set differs between products).
* The data: ``rows × columns`` cells, the **first row is the southernmost** (rows run
  south → north, columns west → east). Reflectivity products ``RX``, ``EX`` and ``WX`` use one
  byte per cell in RVP6 units: ``dBZ = value / 2 − 32.5``; ``250`` = no data, ``249`` = clutter.
  Every other product uses little-endian 16-bit words: bits 1–12 hold the value (× ``PR``),
  bit 13 (``0x1000``) flags secondary data (the value stays valid), bit 14 (``0x2000``) no data
  (DWD writes ``0x29C4`` = 2500 + flag), bit 15 (``0x4000``) a negative sign and bit 16
  (``0x8000``) clutter. The bit meanings were checked against wradlib 2.9
  (``wradlib.io.radolan``) and rdwd/dwdradar (bit 14 = NA, bit 16 = clutter).

Grid (the spec's polar stereographic projection, formulas (1)–(5) of its grid chapter): plane
through 60°N, aligned with the 10°E meridian, origin at the North Pole; the reference point
9°E 51°N projected, minus a per-grid offset, gives the grid's lower-left **outer** corner (the
spec's corner tables: 900×900 at −523.4622 km, −4658.645 km = 3.5889°E 46.9526°N). Format
versions below 5 use a sphere of radius 6370.04 km; version 5 and above (DE1200, DE4800 grids of
POLARA/RADVOR, e.g. RV) use the WGS84 ellipsoid, as wradlib's reader does. The CRS is written
without false easting/northing, so x/y equal wradlib's RADOLAN coordinates in metres.

Readings:

* Amounts (``RY`` 5 min, ``RW`` 1 h, ``RV`` 5 min, ``SF`` 24 h …) are ``accumulation`` fields in
  mm over ``INT`` minutes ending at the header time. For RADVOR nowcasts (``VV`` present) the
  header time is the issue time and the window ends at issue + ``VV`` minutes (lead 0 = the
  analysis); the lead is kept in ``forecast_lead_minutes``.
* ``RX``/``EX``/``WX`` are ``reflectivity`` in dBZ. The scale has no separate "undetect" code;
  the floor value 0 (−32.5 dBZ) is read as **no echo**, a judgement of this reader.
* Clutter cells (bit 16, or 249 for RX) become no data; secondary-data cells (bit 13) keep their
  value. Both counts are recorded (``radolan_clutter_cells``, ``radolan_secondary_cells``).
* gzip- (and bzip2-) compressed files are read; tar archives of RADVOR runs must be unpacked.
  Run-length encoded picture products (PG, PC) and the ASCII variant are not supported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
from pyproj import CRS, Transformer

from qpebench import limits
from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import (
    MAX_RADAR_CELLS,
    Probe,
    RadarReader,
    make_field,
    register_reader,
    utc,
)
from qpebench.errors import FileFormatError

#: One-byte reflectivity products (RVP6 units).
_REFLECTIVITY = frozenset({"RX", "EX", "WX"})
#: Two-byte precipitation amounts over ``INT`` minutes (wradlib's "RR"/"RA" groups, less the
#: products whose interval is not in minutes).
_AMOUNTS = frozenset(
    {"RW", "RY", "RZ", "RH", "RB", "RL", "RU", "RV", "RQ", "YW", "EW", "EY", "EZ", "EH", "EB"}
    | {"SF", "SQ", "SH"}
)
_ETX = 0x03
_MAX_HEADER = 2048
_SNIFF = re.compile(rb"^[A-Z%][A-Z0-9]\d{6}10000(?:0[1-9]|1[0-2])\d{2}BY\s*\d+")
_START = re.compile(r"^([A-Z%][A-Z0-9])(\d{6})(\d{5})(\d{4})")
_KEYS = ("BY", "VS", "SW", "PR", "INT", "GP", "VV", "MF", "QN", "VR", "MS")
_NEXT_KEY = "(?=" + "|".join(_KEYS) + "|$)"
_FIELDS: dict[str, re.Pattern[str]] = {
    "BY": re.compile(r"BY\s*(\d+)"),
    "VS": re.compile(r"VS\s*(\d+)"),
    "SW": re.compile(r"SW\s*(.*?)\s*" + _NEXT_KEY),
    "PR": re.compile(r"PR\s*E\s*([+-]?\d+)"),
    "INT": re.compile(r"INT\s*(\d+)"),
    "GP": re.compile(r"GP\s*(\d+)\s*x\s*(\d+)"),
    "VV": re.compile(r"VV\s*(\d+)"),
    "MF": re.compile(r"MF\s*(\d+)"),
}
_MS = re.compile(r"MS[ \d]{3}")

#: Grid size (rows, columns) → (x offset, y offset, cell size) in metres: the lower-left outer
#: corner lies at the projected reference point 9°E 51°N minus the offsets (DWD format
#: description, grid chapter; the same table as wradlib's ``get_radolan_coordinates``).
_GRIDS: dict[tuple[int, int], tuple[float, float, float]] = {
    (900, 900): (450e3, 450e3, 1000.0),  # national composite (RX, RW, RY, SF …)
    (1100, 900): (370e3, 550e3, 1000.0),  # extended national (RADKLIM YW, WX …)
    (1500, 1400): (600e3, 800e3, 1000.0),  # middle-European (EX …)
    (1200, 1100): (470e3, 600e3, 1000.0),  # DE1200 (RADVOR RV …)
    (4800, 4400): (470e3, 600e3, 250.0),  # DE4800
}
#: The largest file a known grid makes: two-byte cells and the longest header.
_MAX_BYTES = max(rows * cols for rows, cols in _GRIDS) * 2 + _MAX_HEADER
_REFERENCE = (9.0, 51.0)
_SPHERE = "+proj=stere +lat_0=90 +lat_ts=60 +lon_0=10 +R=6370040 +x_0=0 +y_0=0 +units=m +no_defs"
_WGS84 = "+proj=stere +lat_0=90 +lat_ts=60 +lon_0=10 +ellps=WGS84 +x_0=0 +y_0=0 +units=m +no_defs"


@dataclass(frozen=True)
class RadolanHeader:
    """The parsed ASCII header of a RADOLAN composite.

    Attributes:
        product: Product code (``RW``, ``RX`` …).
        time: Header time (UTC): end of the interval, or issue time for nowcasts.
        radar_id: ``10000`` for composites.
        total_bytes: ``BY``: header, ETX and data together.
        header_bytes: Length of the header including the ETX byte.
        format_version: ``VS`` (``None`` when absent).
        software: ``SW`` (empty when absent).
        precision: ``PR`` as a factor (``None`` when absent).
        interval_minutes: ``INT``.
        rows: ``GP`` rows.
        cols: ``GP`` columns.
        lead_minutes: ``VV`` forecast lead (``None`` when absent).
        module_flags: ``MF`` (``None`` when absent).
        radars: Radar list from ``MS`` (empty when absent).
        text: The header text.
    """

    product: str
    time: datetime
    radar_id: str
    total_bytes: int
    header_bytes: int
    format_version: int | None
    software: str
    precision: float | None
    interval_minutes: int
    rows: int
    cols: int
    lead_minutes: int | None
    module_flags: int | None
    radars: tuple[str, ...]
    text: str


def _sniff(probe: Probe) -> bool:
    return _SNIFF.match(probe.head) is not None


def _required(name: str, text: str, path: Path) -> re.Match[str]:
    match = _FIELDS[name].search(text)
    if match is None:
        raise FileFormatError(f"{path}: RADOLAN header lacks the {name} field: {text!r}")
    return match


def parse_header(raw: bytes, path: Path) -> RadolanHeader:
    """Parse the ASCII header at the start of ``raw`` (a whole, decompressed file).

    Raises:
        FileFormatError: No ETX within the first 2048 bytes, a malformed start, a missing
            ``BY``/``INT``/``GP`` field or a bad date.
    """
    end = raw.find(bytes([_ETX]), 0, _MAX_HEADER)
    if end < 0:
        raise FileFormatError(
            f"{path}: no end-of-header byte ETX (0x03) in the first {_MAX_HEADER} bytes; "
            "not a RADOLAN binary composite, or a damaged header"
        )
    try:
        text = raw[:end].decode("ascii")
    except UnicodeDecodeError:
        raise FileFormatError(f"{path}: RADOLAN header is not ASCII text") from None
    start = _START.match(text)
    if start is None:
        raise FileFormatError(
            f"{path}: RADOLAN header must start with product code, ddhhmm, radar id and MMYY, "
            f"got {text[:20]!r}"
        )
    product, ddhhmm, radar_id, mmyy = start.groups()
    try:
        time = utc(ddhhmm + mmyy, "%d%H%M%m%y")
    except ValueError:
        raise FileFormatError(f"{path}: bad RADOLAN date/time {ddhhmm}/{mmyy}") from None
    ms = _MS.search(text, start.end())
    keyed = text[start.end() : ms.start() if ms else len(text)]
    radars: tuple[str, ...] = ()
    if ms is not None:
        listing = re.match(r"\s*<([^>]*)>", text[ms.end() :])
        if listing is not None:
            radars = tuple(r.strip() for r in listing.group(1).split(",") if r.strip())
    by = _required("BY", keyed, path)
    interval = _required("INT", keyed, path)
    gp = _required("GP", keyed, path)
    vs, sw, pr, vv, mf = (_FIELDS[k].search(keyed) for k in ("VS", "SW", "PR", "VV", "MF"))
    return RadolanHeader(
        product=product,
        time=time,
        radar_id=radar_id,
        total_bytes=int(by.group(1)),
        header_bytes=end + 1,
        format_version=int(vs.group(1)) if vs else None,
        software=sw.group(1) if sw else "",
        precision=float(f"1E{pr.group(1)}") if pr else None,
        interval_minutes=int(interval.group(1)),
        rows=int(gp.group(1)),
        cols=int(gp.group(2)),
        lead_minutes=int(vv.group(1)) if vv else None,
        module_flags=int(mf.group(1)) if mf else None,
        radars=radars,
        text=text,
    )


def _declared_bytes(head: bytes, path: Path) -> int:
    """The total size (``BY``) the header at the start of ``head`` declares, if plausible.

    Raises:
        FileFormatError: A bad header, or ``BY`` above what the largest known grid needs.
    """
    header = parse_header(head, path)
    limits.check_declared(
        path,
        f"RADOLAN header GP {header.rows}x{header.cols}",
        header.rows * header.cols,
        MAX_RADAR_CELLS,
        unit="cells",
    )
    return limits.check_declared(
        path, "RADOLAN header BY (total size)", header.total_bytes, _MAX_BYTES, unit="bytes"
    )


def radolan_crs(format_version: int | None) -> CRS:
    """The RADOLAN polar stereographic CRS: sphere before format version 5, WGS84 from 5 on."""
    return CRS.from_proj4(_WGS84 if (format_version or 0) >= 5 else _SPHERE)


def radolan_grid(rows: int, cols: int, format_version: int | None, path: Path) -> Grid:
    """Cell centres of a RADOLAN grid, rows in file order (south → north).

    Raises:
        FileFormatError: A grid size this reader does not know.
    """
    if (rows, cols) not in _GRIDS:
        known = ", ".join(f"{r}x{c}" for r, c in _GRIDS)
        raise FileFormatError(f"{path}: unknown RADOLAN grid GP {rows}x{cols} (known: {known})")
    x_off, y_off, size = _GRIDS[(rows, cols)]
    crs = radolan_crs(format_version)
    to_xy = Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
    x_ref, y_ref = to_xy.transform(*_REFERENCE)
    return Grid.from_corner(
        crs,
        x_left=x_ref - x_off,
        y_top=y_ref - y_off,  # bottom edge of the first (southernmost) row
        dx=size,
        dy=size,
        nx=cols,
        ny=rows,
        north_up=False,
    )


def _data(raw: bytes, header: RadolanHeader, itemsize: int, path: Path) -> bytes:
    need = header.rows * header.cols * itemsize
    declared = header.total_bytes - header.header_bytes
    if declared != need:
        raise FileFormatError(
            f"{path}: header BY {header.total_bytes} declares {declared} data bytes, but GP "
            f"{header.rows}x{header.cols} of {itemsize}-byte cells needs {need}"
        )
    data = raw[header.header_bytes : header.header_bytes + need]
    if len(data) < need:
        raise FileFormatError(
            f"{path}: truncated RADOLAN file: {len(data)} data bytes after the header, "
            f"the header declares {need}"
        )
    return data


def _decode_words(
    data: bytes, header: RadolanHeader, path: Path
) -> tuple[npt.NDArray[np.float64], dict[str, int]]:
    if header.precision is None:
        raise FileFormatError(f"{path}: RADOLAN header lacks the PR field: {header.text!r}")
    raw = np.frombuffer(data, dtype="<u2").reshape(header.rows, header.cols)
    values = (raw & 0x0FFF).astype(np.float64) * header.precision
    negative = (raw & 0x4000) != 0
    values[negative] = -values[negative]
    nodata = (raw & 0x2000) != 0
    clutter = (raw & 0x8000) != 0
    values[nodata | clutter] = np.nan
    counts = {
        "radolan_secondary_cells": int(np.count_nonzero(raw & 0x1000)),
        "radolan_clutter_cells": int(np.count_nonzero(clutter & ~nodata)),
        "radolan_negative_cells": int(np.count_nonzero(negative)),
    }
    return values, counts


def _decode_bytes(
    data: bytes, header: RadolanHeader
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], dict[str, int]]:
    raw = np.frombuffer(data, dtype=np.uint8).reshape(header.rows, header.cols)
    values = raw.astype(np.float64) * 0.5 - 32.5
    clutter = raw == 249
    values[(raw == 250) | clutter] = np.nan
    no_echo = raw == 0
    return values, no_echo, {"radolan_clutter_cells": int(np.count_nonzero(clutter))}


def read_radolan(path: Path) -> xr.DataArray:
    """Read a RADOLAN binary composite (see the module docstring).

    Raises:
        FileFormatError: Header without ETX or required fields, an unsupported product or grid,
            or a data section shorter than the header declares.
    """
    raw = limits.read_decompressed(path, head_limit=lambda head: _declared_bytes(head, path))
    header = parse_header(raw, path)
    product = header.product
    if product not in _REFLECTIVITY and product not in _AMOUNTS:
        raise FileFormatError(
            f"{path}: RADOLAN product {product!r} is not supported (amounts: "
            f"{', '.join(sorted(_AMOUNTS))}; reflectivity: {', '.join(sorted(_REFLECTIVITY))})"
        )
    if header.interval_minutes <= 0:
        raise FileFormatError(f"{path}: RADOLAN INT must be > 0 minutes, got {header.text!r}")
    grid = radolan_grid(header.rows, header.cols, header.format_version, path)
    lead = header.lead_minutes or 0
    valid = header.time + timedelta(minutes=lead)
    attrs: dict[str, Any] = {
        "radolan_header": header.text,
        "radolan_format_version": -1 if header.format_version is None else header.format_version,
        "radolan_software": header.software,
        "radolan_radars": ",".join(header.radars),
        "radolan_interval_minutes": header.interval_minutes,
    }
    if header.lead_minutes is not None:
        attrs.update(forecast_lead_minutes=header.lead_minutes, issue_time=header.time.isoformat())
    if header.module_flags is not None:
        attrs["radolan_module_flags"] = header.module_flags
    if product in _REFLECTIVITY:
        data = _data(raw, header, 1, path)
        dbz, no_echo, counts = _decode_bytes(data, header)
        attrs.update(counts)
        return make_field(
            dbz,
            grid=grid,
            path=path,
            source="radolan",
            network="DWD",
            product=product,
            quantity="DBZH",
            units="dBZ",
            kind="reflectivity",
            valid_time=valid,
            no_echo=no_echo,
            attrs=attrs,
        )
    data = _data(raw, header, 2, path)
    amount, counts = _decode_words(data, header, path)
    attrs.update(counts)
    attrs["radolan_precision"] = header.precision
    return make_field(
        amount,
        grid=grid,
        path=path,
        source="radolan",
        network="DWD",
        product=product,
        quantity="ACRR",
        units="mm",
        kind="accumulation",
        valid_time=valid,
        start_time=valid - timedelta(minutes=header.interval_minutes),
        accumulation_minutes=float(header.interval_minutes),
        attrs=attrs,
    )


register_reader(
    RadarReader(
        name="radolan",
        network="DWD",
        description="DWD RADOLAN/RADVOR binary composites: RY, RW, RV, YW, SF … amounts; RX dBZ",
        sniff=_sniff,
        read=read_radolan,
    )
)
