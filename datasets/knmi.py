"""KNMI HDF5 radar composites of the Netherlands (``RAD_NL25_*``): 5-min accumulations, dBZ.

KNMI's own HDF5 layout (KNMI's "HDF5 data format" for radar and satellite images; the files read
here carry ``hdftag_version_number = 3.5`` in ``overview``) is not ODIM. The root holds the groups
``overview`` (product name and time window), ``geographic`` (grid) with
``geographic/map_projection`` (PROJ string), ``radarN`` (contributing radars) and ``imageN`` (one
quantity each):

* ``imageN/image_data``: the pixel values ``PV`` (uint16 for the precipitation products, uint8
  for reflectivity), rows north → south;
* ``imageN`` attribute ``image_geo_parameter`` names the quantity:
  ``ACCUMULATED_PRECIPITATION_[MM]`` (an amount in mm over the product window) or
  ``REFLECTIVITY_[DBZ]``; the first ``imageN`` with one of these is read;
* ``imageN/calibration``: ``calibration_formulas`` is a *text* formula such as
  ``GEO=0.01*PV+0.0`` (or ``GEO=0.5*PV+-32.0``); the gain and offset are parsed from it, and a
  formula that does not read ``GEO=<gain>*PV[+/-<offset>]`` is refused rather than guessed.
  ``calibration_missing_data`` and ``calibration_out_of_image`` are the pixel codes of "no data"
  (65535 in the precipitation files); both become NaN. The calibration group gives no "undetect"
  code: a zero amount is "no echo" (as :func:`~qpebench.datasets.radar.make_field` treats any
  zero amount);
* ``overview`` attributes ``product_datetime_start``/``product_datetime_end``
  (``26-AUG-2010;00:00:00.000``, UTC) bound the window; the end is the valid time.

Grid: ``projection_proj4_params`` gives the polar stereographic projection **with the Earth radii
in km** (``+a=6378.137 +b=6356.752``), matching ``geo_dim_pixel = "KM,KM"``: the product's native
map unit is the kilometre. qpebench works in metres, so the radii (and any false easting/northing)
are converted to metres when the radii are given in km, and the pixel sizes and offsets are scaled
by ``geo_dim_pixel``'s unit. (Left in km, the CRS cannot even be transformed to WGS 84: PROJ takes
an ellipsoid of radius 6378 m for another celestial body.) The upper-left outer corner of the
image is ``(geo_column_offset · geo_pixel_size_x, geo_row_offset · geo_pixel_size_y)`` in that
unit (``geo_pixel_def = "LU"``: positions refer to the left-upper corner of a pixel;
``geo_pixel_size_y`` is negative because rows run southward). For RAD_NL25 this is the 700 × 765
grid of 1 km cells from (0, −3650) km to (700, −4415) km, the extent pysteps'
``import_knmi_hdf5`` reports. The reader checks the grid against the file's own
``geo_product_corners`` (lon/lat of the outer corners, in the order lower-left, upper-left,
upper-right, lower-right) and refuses a file whose grid misses them by more than a quarter cell.

Quirks: ``product_group_name`` reads ``RAD_NL25_RAU_5mi`` although the file name says ``RAP``
(recorded as found, in ``product``). pysteps patches one known malformed PROJ string
(``... +x_0=0 y_0=0``, a ``+`` missing); tokens missing their ``+`` are accepted here too, and
the corner check guards the rest. There is no quality field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import xarray as xr
from pyproj import CRS, Transformer

from qpebench import limits
from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import (
    MAX_RADAR_CELLS,
    Kind,
    Probe,
    RadarReader,
    attr_text,
    dataset_values,
    make_field,
    open_hdf5,
    register_reader,
)
from qpebench.errors import FileFormatError

#: ``image_geo_parameter`` → (kind, units).
_QUANTITIES: dict[str, tuple[Kind, str]] = {
    "ACCUMULATED_PRECIPITATION_[MM]": ("accumulation", "mm"),
    "REFLECTIVITY_[DBZ]": ("reflectivity", "dBZ"),
}
_ROOT = frozenset({"overview", "geographic", "image1"})
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FORMULA = re.compile(
    rf"^\s*GEO\s*=\s*(?P<gain>{_NUMBER})\s*\*\s*PV\s*(?:(?P<sign>[-+])\s*(?P<offset>{_NUMBER}))?\s*$",
    re.IGNORECASE,
)
_DATETIME = re.compile(
    r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4});(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\s*$"
)
_MONTHS = {
    m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())
}
#: Metres per unit of ``geo_dim_pixel``.
_UNITS = {"KM": 1000.0, "M": 1.0}
#: PROJ parameters that are lengths (scaled with the radii).
_LENGTHS = ("a", "b", "R", "x_0", "y_0")


def _is_knmi(probe: Probe) -> bool:
    return _ROOT <= probe.hdf5_keys


def _number(value: Any) -> float:
    return float(np.asarray(value, dtype=np.float64).ravel()[0])


def _attr(group: h5py.Group, key: str, path: Path) -> Any:
    if key not in group.attrs:
        raise FileFormatError(f"{path}: missing KNMI attribute {key!r} in /{group.name.strip('/')}")
    return group.attrs[key]


def _group(h5: h5py.File, name: str, path: Path) -> h5py.Group:
    node = h5.get(name)
    if not isinstance(node, h5py.Group):
        raise FileFormatError(f"{path}: missing KNMI group /{name}")
    return node


def parse_calibration(formula: str, path: Path) -> tuple[float, float]:
    """Gain and offset of a KNMI ``calibration_formulas`` text (``GEO=0.01*PV+0.0``).

    Raises:
        FileFormatError: The formula is not of the form ``GEO=<gain>*PV[+/-<offset>]``.
    """
    match = _FORMULA.match(formula)
    if match is None:
        raise FileFormatError(
            f"{path}: cannot parse calibration formula {formula!r} "
            "(expected GEO=<gain>*PV+<offset>)"
        )
    gain = float(match["gain"])
    offset = float(match["offset"]) if match["offset"] is not None else 0.0
    if match["sign"] == "-":
        offset = -offset
    return gain, offset


def parse_datetime(text: str, path: Path, name: str) -> datetime:
    """A KNMI timestamp such as ``26-AUG-2010;00:00:00.000`` (UTC).

    Raises:
        FileFormatError: Malformed timestamp.
    """
    match = _DATETIME.match(text)
    month = _MONTHS.get(match[2].upper(), 0) if match else 0
    if match is None or month == 0:
        raise FileFormatError(f"{path}: malformed {name} {text!r} (expected DD-MON-YYYY;HH:MM:SS)")
    day, _, year, hour, minute, second, frac = match.groups()
    micro = int((frac or "0").ljust(6, "0"))
    try:
        return datetime(int(year), month, int(day), int(hour), int(minute), int(second), micro, UTC)
    except ValueError as exc:
        raise FileFormatError(f"{path}: invalid {name} {text!r}: {exc}") from None


def _crs(proj4: str, path: Path) -> CRS:
    """The PROJ string with its lengths converted to metres when the radii are in km."""
    params: dict[str, str] = {}
    flags: list[str] = []
    for token in proj4.split():
        token = token.lstrip("+")
        if not token:
            continue
        key, sep, value = token.partition("=")
        if sep:
            params[key] = value
        else:
            flags.append(key)
    if "proj" not in params:
        raise FileFormatError(f"{path}: projection_proj4_params {proj4!r} names no +proj")
    radius_key = next((k for k in ("a", "R") if k in params), None)
    scale = 1.0
    if radius_key is not None:
        try:
            radius = float(params[radius_key])
        except ValueError:
            raise FileFormatError(f"{path}: bad Earth radius in {proj4!r}") from None
        if 6.0e3 < radius < 7.0e3:
            scale = 1000.0  # radii in km, as KNMI writes them
        elif not 6.0e6 < radius < 7.0e6:
            raise FileFormatError(
                f"{path}: Earth radius {radius:g} in {proj4!r} is neither in km nor in m"
            )
    for key in _LENGTHS:
        if key in params:
            try:
                params[key] = repr(float(params[key]) * scale)
            except ValueError:
                raise FileFormatError(f"{path}: bad +{key} in {proj4!r}") from None
    params.pop("units", None)
    params.pop("to_meter", None)
    text = " ".join([f"+{k}={v}" for k, v in params.items()] + [f"+{f}" for f in flags])
    try:
        crs = CRS.from_proj4(f"{text} +units=m")
    except Exception as exc:  # pyproj.exceptions.CRSError and alike
        raise FileFormatError(f"{path}: unusable projection {proj4!r}: {exc}") from None
    return crs


def _grid(h5: h5py.File, path: Path) -> Grid:
    geo = _group(h5, "geographic", path)
    proj = _group(h5, "geographic/map_projection", path)
    crs = _crs(attr_text(_attr(proj, "projection_proj4_params", path)), path)
    nx = int(_number(_attr(geo, "geo_number_columns", path)))
    ny = int(_number(_attr(geo, "geo_number_rows", path)))
    limits.check_declared(path, "geographic grid", nx * ny, MAX_RADAR_CELLS, unit="cells")
    col_offset = _number(_attr(geo, "geo_column_offset", path))
    row_offset = _number(_attr(geo, "geo_row_offset", path))
    size_x = _number(_attr(geo, "geo_pixel_size_x", path))
    size_y = _number(_attr(geo, "geo_pixel_size_y", path))
    pixel_def = attr_text(geo.attrs.get("geo_pixel_def", "LU")).upper()
    if pixel_def != "LU":
        raise FileFormatError(
            f"{path}: geo_pixel_def {pixel_def!r} not supported (only 'LU', the left-upper corner)"
        )
    dim = attr_text(_attr(geo, "geo_dim_pixel", path)).upper().split(",")
    if len(dim) != 2 or dim[0] != dim[1] or dim[0] not in _UNITS:
        raise FileFormatError(
            f"{path}: geo_dim_pixel {','.join(dim)!r} not supported (expected 'KM,KM' or 'M,M')"
        )
    unit = _UNITS[dim[0]]
    if not (size_x > 0 and size_y < 0):
        raise FileFormatError(
            f"{path}: geo_pixel_size_x/y = {size_x:g}/{size_y:g}; expected x > 0 and y < 0 "
            "(rows north to south)"
        )
    dx, dy = size_x * unit, -size_y * unit
    x_left, y_top = col_offset * size_x * unit, row_offset * size_y * unit
    grid = Grid.from_corner(crs, x_left=x_left, y_top=y_top, dx=dx, dy=dy, nx=nx, ny=ny)
    if "geo_product_corners" in geo.attrs:
        _check_corners(crs, geo.attrs["geo_product_corners"], grid, path)
    return grid


def _check_corners(crs: CRS, corners: Any, grid: Grid, path: Path) -> None:
    lonlat = np.asarray(corners, dtype=np.float64).ravel()
    if lonlat.size != 8:
        raise FileFormatError(f"{path}: geo_product_corners has {lonlat.size} values, expected 8")
    to_xy = Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
    x, y = to_xy.transform(lonlat[0::2], lonlat[1::2])
    xe, ye = grid.edges()
    # lower-left, upper-left, upper-right, lower-right outer corners
    want_x = np.array([xe[0], xe[0], xe[-1], xe[-1]])
    want_y = np.array([ye[-1], ye[0], ye[0], ye[-1]])
    miss = np.maximum(
        np.abs(np.asarray(x) - want_x) / grid.dx, np.abs(np.asarray(y) - want_y) / grid.dy
    )
    if not np.all(miss <= 0.25):
        raise FileFormatError(
            f"{path}: geo_product_corners disagree with the grid by up to "
            f"{float(np.max(miss)):.2f} cells (projection, offsets or pixel sizes are inconsistent)"
        )


def _image(h5: h5py.File, path: Path) -> tuple[str, str]:
    """The first ``imageN`` group with a supported quantity: (group name, quantity)."""
    names = sorted(
        (k for k in h5 if re.fullmatch(r"image\d+", k)), key=lambda k: int(k.removeprefix("image"))
    )
    seen = []
    for name in names:
        quantity = attr_text(h5[name].attrs.get("image_geo_parameter", "")).upper()
        seen.append(quantity or "(none)")
        if quantity in _QUANTITIES:
            return name, quantity
    raise FileFormatError(
        f"{path}: no supported image_geo_parameter (found {seen or 'no image groups'}, "
        f"supported {list(_QUANTITIES)})"
    )


def _decode(
    h5: h5py.File, image: str, path: Path
) -> tuple[npt.NDArray[np.float64], dict[str, Any]]:
    if "image_data" not in h5[image]:
        raise FileFormatError(f"{path}: missing /{image}/image_data")
    calibration = _group(h5, f"{image}/calibration", path)
    formula = attr_text(_attr(calibration, "calibration_formulas", path))
    gain, offset = parse_calibration(formula, path)
    missing = int(_number(_attr(calibration, "calibration_missing_data", path)))
    codes = {missing}
    if "calibration_out_of_image" in calibration.attrs:
        codes.add(int(_number(calibration.attrs["calibration_out_of_image"])))
    raw = dataset_values(h5, f"{image}/image_data", path)
    if raw.ndim != 2:
        raise FileFormatError(f"{path}: /{image}/image_data has {raw.ndim} dimensions, expected 2")
    values = raw.astype(np.float64) * gain + offset
    values[np.isin(raw, list(codes))] = np.nan
    info = {"calibration_formula": formula, "knmi_nodata_codes": ",".join(map(str, sorted(codes)))}
    return values, info


def read_knmi(path: Path) -> xr.DataArray:
    """Read a KNMI HDF5 radar product (see the module docstring).

    Raises:
        FileFormatError: Not a readable HDF5 file, no supported quantity, an unparseable
            calibration formula or timestamp, missing attributes, or a grid that misses the
            file's own corner coordinates; the message names the file and the problem.
    """
    with open_hdf5(path) as h5:
        overview = _group(h5, "overview", path)
        image, quantity = _image(h5, path)
        values, info = _decode(h5, image, path)
        grid = _grid(h5, path)
        start = parse_datetime(
            attr_text(_attr(overview, "product_datetime_start", path)),
            path,
            "product_datetime_start",
        )
        end = parse_datetime(
            attr_text(_attr(overview, "product_datetime_end", path)), path, "product_datetime_end"
        )
        product = attr_text(overview.attrs.get("product_group_name", "")) or "KNMI radar product"
        attrs: dict[str, Any] = {
            **info,
            "knmi_image": f"/{image}",
            "knmi_image_product_name": attr_text(h5[image].attrs.get("image_product_name", "")),
            "knmi_hdf5_version": attr_text(overview.attrs.get("hdftag_version_number", "")),
        }
    kind, units = _QUANTITIES[quantity]
    minutes = 0.0
    if kind == "accumulation":
        if not end > start:
            raise FileFormatError(
                f"{path}: accumulation window is empty or reversed: {start} – {end}"
            )
        minutes = (end - start).total_seconds() / 60.0
    return make_field(
        values,
        grid=grid,
        path=path,
        source="knmi",
        network="KNMI",
        product=product,
        quantity=quantity,
        units=units,
        kind=kind,
        valid_time=end,
        start_time=start,
        accumulation_minutes=minutes,
        attrs=attrs,
    )


register_reader(
    RadarReader(
        name="knmi",
        network="KNMI",
        description="KNMI HDF5 Dutch radar composites (RAD_NL25): 5-min accumulations, dBZ",
        sniff=_is_knmi,
        read=read_knmi,
    )
)
