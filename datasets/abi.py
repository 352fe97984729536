"""GOES-R ABI (GOES-16 … 19) brightness temperatures: L1b radiances and L2 CMIP, netCDF4.

Two readers, sensor ``ABI`` (channel names ``C07`` … ``C16``;
:data:`qpebench.bands.SENSOR_CHANNELS` maps them onto the canonical bands, with ``C14`` or,
``ir108="C13"``, ``C13`` for IR10.8):

``abi_l1b`` — ABI L1b Radiances (``OR_ABI-L1b-Rad{F,C,M1,M2}-M6C14_G16_s…_e…_c….nc``), described
    in the GOES-R Product Definition and Users' Guide (PUG) Volume 3: Level 1b Products
    (416-R-PUG-L1B-0347; §5.1 the Radiances product, §4.2.8 navigation, §5.0.2 unsigned
    integers). ``Rad(y, x)`` holds int16 counts to be read as unsigned (``_Unsigned = "true"``)
    with ``_FillValue`` 2^bits − 1 and ``valid_range`` 0 … 2^bits − 2 (``sensor_band_bit_depth``
    10–14), packed with ``scale_factor``/``add_offset`` into mW m⁻² sr⁻¹ (cm⁻¹)⁻¹ for emissive
    bands 7–16. The brightness temperature is the PUG's band-corrected inverse Planck function
    ``T = (fk2 / ln(fk1 / L + 1) − bc1) / bc2`` with the file's own ``planck_fk1``,
    ``planck_fk2``, ``planck_bc1`` and ``planck_bc2`` (they differ between platforms and can be
    revised; nothing is hard-coded). Radiances ≤ 0 (counts below the packing's zero; possible
    for cold scenes at 3.9 µm) have no brightness temperature: NaN.
``abi_l2_cmip`` — ABI L2 Cloud and Moisture Imagery (``OR_ABI-L2-CMIP{F,C,M1,M2}-M6C14_G16_…``),
    PUG Volume 5: Level 2+ Products (416-R-PUG-L2+-0349, §5.1): ``CMI(y, x)`` is already the
    brightness temperature in K for bands 7–16, int16 unsigned counts (``_FillValue`` −1, i.e.
    65535) with ``scale_factor``/``add_offset``. The multi-band ``MCMIP`` product is not read.

Common to both (one file per channel per scan):

* **Grid** (PUG §4.2.8): ``x``/``y`` are the fixed-grid scan angles of the pixel **centres** in
  radians, int16 with ``scale_factor``/``add_offset`` (x west → east, y north → south). The
  files store those two as float32 (``5.6e-05f``), whose last digits are noise: every ABI
  fixed-grid value is a whole number of microradians (pitch 14, 28 or 56 µrad, centres at odd
  multiples of half the pitch from the sub-satellite point), so a float32 within its own
  precision of a whole microradian is rounded to it (satpy rounds the same way; float32 as
  stored would put the 2-km full disk's edge 0.3 m off). Metres = angle ×
  ``perspective_point_height``, in ``+proj=geos +sweep=x +h=<pph> +lon_0=<lon> +a +b`` (from
  ``goes_imager_projection``; ``sweep_angle_axis`` is ``x`` for ABI, unlike SEVIRI's ``y``).
* **Satellite position**: ``nominal_satellite_subpoint_lon`` and ``nominal_satellite_height``,
  which is in **km** (its ``units``); converted to m. GOES-16 sits at −75.2° while its
  projection origin is −75.0°, so the two are kept apart: ``satellite_longitude`` (for the
  viewing angle) versus ``projection_longitude``. Without those variables (or with their −999
  fill) the projection's origin and height stand in.
* **Nominal time** = the start of the scan's repeat slot: ``time_coverage_start`` rounded
  *down* to the cadence of the scene in the timeline (``timeline_id`` "ABI Mode 6", the ``-M6``
  of the name): Mode 6 (since April 2019) full disk 10 min, CONUS/PACUS 5 min, mesoscale
  1 min; Mode 3 15/5/1 min; Mode 4 full disk 5 min. A Mode 6 full disk starting 12:00:20.5 is
  12:00; a CONUS scan starting 12:01:17 is 12:00 (its slot is 12:00–12:05). Unknown modes or
  scenes are refused rather than guessed. ``start_time``/``end_time`` are
  ``time_coverage_start``/``_end`` (else ``time_bounds``, seconds since 2000-01-01 12:00 UTC).
* **Multi-file scans**: the caller passes the files of one scan; each file's channel is its
  ``band_id``. Files must share platform, scene, timeline mode and nominal slot (start times
  within half the cadence); the channels read must share the grid; a channel named twice, a
  requested channel without a file, or a file of the other product level is an error. With no
  channel requested, every emissive band (7–16) among the files is read; reflective-band files
  (1–6, other resolutions) are then ignored.
* ``DQF`` is not applied (as in satpy): conditionally usable and out-of-range pixels keep
  their values; fill counts (off the Earth, no data) are NaN.

Detection (content only): the HDF5 root attribute ``platform_ID`` is G16–G19,
``instrument_type`` names the Advanced Baseline Imager, and ``title``/``dataset_name`` say
"ABI L1b Radiances"/``-L1b-Rad`` (with a ``Rad`` variable) or "ABI L2 Cloud and Moisture
Imagery"/``-L2-CMIP`` (with ``CMI``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import xarray as xr
from pyproj import CRS

from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import Probe, attr_text, dataset_values, decoded_attrs, open_hdf5
from qpebench.datasets.satellite import SatelliteReader, make_scan, register_satellite_reader
from qpebench.errors import FileFormatError, UnknownNameError, unknown_name_message

#: Emissive bands (brightness temperature): channel names ``C07`` … ``C16``.
IR_BANDS = tuple(range(7, 17))
IR_CHANNELS = tuple(f"C{b:02d}" for b in IR_BANDS)

#: Repeat cycle (minutes) per (timeline mode, scene), from the ABI scan modes (GOES-R Series
#: Data Book, ABI chapter): Mode 3 (15-min full disk, 5-min CONUS, 1-min mesoscale), Mode 4
#: (5-min full disk only) and Mode 6, the operational timeline since 2 April 2019 (10/5/1 min).
CADENCE_MINUTES: dict[tuple[int, str], int] = {
    (3, "F"): 15,
    (3, "C"): 5,
    (3, "M"): 1,
    (4, "F"): 5,
    (6, "F"): 10,
    (6, "C"): 5,
    (6, "M"): 1,
}

#: ``scene_id`` values (PUG) → scene letter of the product name.
_SCENES = {"full disk": "F", "conus": "C", "pacus": "C", "mesoscale": "M"}
#: J2000 epoch of ``t``/``time_bounds`` ("seconds since 2000-01-01 12:00:00").
_J2000 = datetime(2000, 1, 1, 12, tzinfo=UTC)
_PLATFORM = re.compile(r"G1[6-9]")
_PRODUCTS = {
    # product: (data variable, title prefix, dataset_name fragment)
    "L1b": ("Rad", "ABI L1b Radiances", "-L1b-Rad"),
    "CMIP": ("CMI", "ABI L2 Cloud and Moisture Imagery", "-L2-CMIP"),
}
#: Pixels along each side of the largest emissive-band image: the 2-km full disk.
_MAX_SIDE = 5424
#: Relative agreement within which a float32 scan-angle attribute is a whole microradian.
_FLOAT32_REL = 2.0**-23


def _product(probe: Probe) -> str | None:
    """``"L1b"``, ``"CMIP"`` or ``None`` for a probed file (never raises)."""
    attrs = probe.hdf5_attrs
    if not _PLATFORM.fullmatch(attr_text(attrs.get("platform_ID", ""))):
        return None
    instrument = attr_text(attrs.get("instrument_type", ""))
    if "Advanced Baseline Imager" not in instrument:
        return None
    title = attr_text(attrs.get("title", ""))
    name = attr_text(attrs.get("dataset_name", ""))
    for product, (variable, title_prefix, fragment) in _PRODUCTS.items():
        if variable in probe.hdf5_keys and (title.startswith(title_prefix) or fragment in name):
            return product
    return None


def _is_l1b(probe: Probe) -> bool:
    return _product(probe) == "L1b"


def _is_cmip(probe: Probe) -> bool:
    return _product(probe) == "CMIP"


@dataclass(frozen=True)
class _Header:
    """What one file says about its scan."""

    path: Path
    product: str
    band: int
    platform: str
    scene: str  # F, C or M
    scene_id: str
    mode: int
    start: datetime
    end: datetime
    nominal: datetime
    cadence: int
    attrs: dict[str, Any]

    @property
    def channel(self) -> str:
        return f"C{self.band:02d}"


def _scalar(h5: h5py.File, name: str, path: Path) -> float | None:
    """A scalar variable as float; ``None`` when absent or equal to its ``_FillValue``."""
    if name not in h5:
        return None
    var = h5[name]
    raw = dataset_values(h5, name, path, 1)
    try:
        value = raw.astype(np.float64).ravel()
    except (ValueError, TypeError) as exc:
        raise FileFormatError(f"{path}: variable {name!r} is not a number: {exc}") from None
    if value.size != 1 or not np.isfinite(value[0]):
        return None
    fill = var.attrs.get("_FillValue")
    if fill is not None and np.asarray(fill, np.float64).ravel()[0] == value[0]:
        return None
    if var.dtype == np.float32:
        # The decimal the producer wrote (-75.2, not -75.19999694824219).
        return float(np.format_float_positional(np.float32(value[0]), unique=True))
    return float(value[0])


def _time_attr(attrs: dict[str, Any], key: str) -> datetime | None:
    text = attr_text(attrs.get(key, ""))
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _times(h5: h5py.File, attrs: dict[str, Any], path: Path) -> tuple[datetime, datetime]:
    start = _time_attr(attrs, "time_coverage_start")
    end = _time_attr(attrs, "time_coverage_end")
    if (start is None or end is None) and "time_bounds" in h5:
        bounds = dataset_values(h5, "time_bounds", path, 2).astype(np.float64).ravel()
        if bounds.size == 2 and np.isfinite(bounds).all():
            start = start or _J2000 + timedelta(seconds=float(bounds[0]))
            end = end or _J2000 + timedelta(seconds=float(bounds[1]))
    if start is None or end is None:
        raise FileFormatError(
            f"{path}: no readable scan time (time_coverage_start/_end "
            f"{attrs.get('time_coverage_start')!r}/{attrs.get('time_coverage_end')!r}, "
            "no time_bounds)"
        )
    if end < start:
        raise FileFormatError(f"{path}: scan ends ({end}) before it starts ({start})")
    return start, end


def _scene_and_mode(attrs: dict[str, Any], path: Path) -> tuple[str, str, int]:
    scene_id = attr_text(attrs.get("scene_id", ""))
    name = attr_text(attrs.get("dataset_name", "")) or path.name
    scene = _SCENES.get(scene_id.lower())
    named = re.search(r"-(?:L1b-Rad|L2-CMIP)(F|C|M[12])-M(\d+)", name)
    if scene is None and named:
        scene = named.group(1)[0]
    match = re.search(r"Mode\s*(\d+)", attr_text(attrs.get("timeline_id", "")))
    mode = int(match.group(1)) if match else int(named.group(2)) if named else None
    if scene is None or mode is None:
        raise FileFormatError(
            f"{path}: cannot tell the scan's scene and timeline (scene_id {scene_id!r}, "
            f"timeline_id {attrs.get('timeline_id')!r}, dataset_name {name!r})"
        )
    return scene, scene_id or scene, mode


def _nominal(start: datetime, cadence: int) -> datetime:
    """``start`` rounded down to the repeat slot of ``cadence`` minutes (slots from 00:00)."""
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = (start - midnight) // timedelta(minutes=1)
    return midnight + timedelta(minutes=minutes - minutes % cadence)


def _header(path: Path, h5: h5py.File, product: str) -> _Header:
    attrs = decoded_attrs(h5)
    platform = attr_text(attrs.get("platform_ID", ""))
    variable = _PRODUCTS[product][0]
    probe = Probe(path, b"", "", frozenset(h5.keys()), attrs)
    found = _product(probe)
    if found != product:
        what = f"an ABI {found} file" if found else "not an ABI L1b/CMIP file"
        raise FileFormatError(
            f"{path}: {what} (platform_ID {platform!r}, title "
            f"{attr_text(attrs.get('title', ''))!r}); expected ABI {product} with {variable!r}"
        )
    band_id = _scalar(h5, "band_id", path)
    if band_id is None or band_id != int(band_id) or not 1 <= band_id <= 16:
        raise FileFormatError(f"{path}: missing or invalid band_id ({band_id})")
    scene, scene_id, mode = _scene_and_mode(attrs, path)
    cadence = CADENCE_MINUTES.get((mode, scene))
    if cadence is None:
        raise FileFormatError(
            f"{path}: no known repeat cycle for ABI Mode {mode} scene {scene_id!r}; "
            f"known: {sorted(CADENCE_MINUTES)}"
        )
    start, end = _times(h5, attrs, path)
    return _Header(
        path,
        product,
        int(band_id),
        platform,
        scene,
        scene_id,
        mode,
        start,
        end,
        _nominal(start, cadence),
        cadence,
        attrs,
    )


def _check_same_scan(headers: Sequence[_Header]) -> None:
    first = headers[0]
    for h in headers[1:]:
        for what, a, b in (
            ("platform", first.platform, h.platform),
            ("scene", first.scene_id, h.scene_id),
            ("timeline mode", first.mode, h.mode),
            ("nominal time", first.nominal, h.nominal),
        ):
            if a != b:
                raise FileFormatError(
                    f"{h.path}: not from the same scan as {first.path}: {what} {b} vs {a}"
                )
        if abs(h.start - first.start) > timedelta(minutes=first.cadence) / 2:
            raise FileFormatError(
                f"{h.path}: not from the same scan as {first.path}: starts {h.start} vs "
                f"{first.start}, more than half the {first.cadence}-min cycle apart"
            )


def _whole_microradian(value: float) -> float:
    """A float32-stored angle as the whole microradian it stands for, when it is one."""
    rounded = round(value, 6)
    return rounded if abs(rounded - value) <= 2 * _FLOAT32_REL * abs(value) else value


def _axis(h5: h5py.File, name: str, path: Path) -> npt.NDArray[np.float64]:
    var = h5.get(name)
    # netCDF-4 keeps a bare dimension as an empty HDF5 dataset that says so in its NAME.
    if var is None or attr_text(var.attrs.get("NAME", "")).startswith("This is a netCDF dim"):
        raise FileFormatError(f"{path}: no {name!r} coordinate variable")
    raw = dataset_values(h5, name, path, _MAX_SIDE).ravel()
    scale = var.attrs.get("scale_factor")
    offset = var.attrs.get("add_offset")
    if scale is None or offset is None or raw.dtype.kind not in "iu":
        raise FileFormatError(
            f"{path}: {name!r} is not packed int16 scan angles with scale_factor/add_offset"
        )
    units = attr_text(var.attrs.get("units", "rad"))
    if units != "rad":
        raise FileFormatError(f"{path}: {name!r} has units {units!r}, expected rad")
    s = _whole_microradian(float(np.asarray(scale).ravel()[0]))
    o = _whole_microradian(float(np.asarray(offset).ravel()[0]))
    values = raw.astype(np.float64) * s + o
    step = np.diff(values)
    if values.size < 2 or not (np.all(step > 0) or np.all(step < 0)):
        raise FileFormatError(f"{path}: {name!r} is not strictly monotonic")
    out: npt.NDArray[np.float64] = values
    return out


@lru_cache(maxsize=16)
def _geos_crs(h: float, lon_0: float, a: float, b: float, sweep: str) -> CRS:
    return CRS.from_proj4(
        f"+proj=geos +sweep={sweep} +h={h!r} +lon_0={lon_0!r} +a={a!r} +b={b!r} +units=m +no_defs"
    )


def _projection(h5: h5py.File, path: Path) -> dict[str, Any]:
    name = "goes_imager_projection"
    if name not in h5:
        raise FileFormatError(f"{path}: no {name!r} variable (ABI fixed-grid projection)")
    attrs = decoded_attrs(h5[name])
    if attr_text(attrs.get("grid_mapping_name", "")) != "geostationary":
        raise FileFormatError(
            f"{path}: {name} grid_mapping_name is {attrs.get('grid_mapping_name')!r}, "
            "expected 'geostationary'"
        )
    out: dict[str, Any] = {}
    for key in (
        "perspective_point_height",
        "semi_major_axis",
        "semi_minor_axis",
        "longitude_of_projection_origin",
    ):
        if key not in attrs:
            raise FileFormatError(f"{path}: {name} lacks {key!r}")
        out[key] = float(np.asarray(attrs[key], np.float64).ravel()[0])
    lat_0 = float(np.asarray(attrs.get("latitude_of_projection_origin", 0.0)).ravel()[0])
    if lat_0 != 0.0:
        raise FileFormatError(f"{path}: {name} latitude_of_projection_origin is {lat_0}, not 0")
    sweep = attr_text(attrs.get("sweep_angle_axis", ""))
    if sweep not in ("x", "y"):
        raise FileFormatError(f"{path}: {name} sweep_angle_axis is {sweep!r}, expected 'x'")
    out["sweep_angle_axis"] = sweep
    return out


def _grid(h5: h5py.File, path: Path) -> tuple[Grid, dict[str, Any], tuple[Any, ...]]:
    """The grid in metres, the projection, and a key that is equal for equal grids."""
    proj = _projection(h5, path)
    h = proj["perspective_point_height"]
    x = _axis(h5, "x", path)
    y = _axis(h5, "y", path)
    crs = _geos_crs(
        h,
        proj["longitude_of_projection_origin"],
        proj["semi_major_axis"],
        proj["semi_minor_axis"],
        proj["sweep_angle_axis"],
    )
    key = (tuple(sorted(proj.items())), x.tobytes(), y.tobytes())
    return Grid(crs, x * h, y * h), proj, key


def _unpack(h5: h5py.File, name: str, path: Path) -> tuple[npt.NDArray[np.float64], dict[str, Any]]:
    """A packed ``(y, x)`` variable as float64 with fill/out-of-range counts as NaN."""
    var = h5[name]
    attrs = decoded_attrs(var)
    if var.ndim != 2 or max(var.shape) > _MAX_SIDE:
        raise FileFormatError(
            f"{path}: {name!r} has shape {var.shape}, expected (y, x) of at most {_MAX_SIDE} "
            "(the 2-km full disk); refused before reading"
        )
    raw = dataset_values(h5, name, path, _MAX_SIDE**2)
    if raw.dtype.kind not in "iu":
        raise FileFormatError(f"{path}: {name!r} is {raw.dtype}, expected packed integers")
    unsigned = attr_text(attrs.get("_Unsigned", "false")).lower() == "true"
    utype = np.dtype(f"u{raw.dtype.itemsize}")
    counts = raw.view(utype) if unsigned and raw.dtype.kind == "i" else raw
    bad = np.zeros(counts.shape, bool)
    fill = attrs.get("_FillValue")
    if fill is not None:
        fill_value = np.asarray(fill).astype(raw.dtype).ravel()[:1]
        bad |= counts == (fill_value.view(utype) if unsigned else fill_value)[0]
    valid = attrs.get("valid_range")
    if valid is not None:
        lo, hi = np.asarray(valid).astype(raw.dtype).ravel()[:2]
        if unsigned:
            lo, hi = np.array([lo, hi], raw.dtype).view(utype)
        bad |= (counts < lo) | (counts > hi)
    scale = float(np.asarray(attrs.get("scale_factor", 1.0)).ravel()[0])
    offset = float(np.asarray(attrs.get("add_offset", 0.0)).ravel()[0])
    values = counts.astype(np.float64) * scale + offset
    values[bad] = np.nan
    return values, attrs


def _planck(h5: h5py.File, path: Path) -> tuple[float, float, float, float]:
    names = ("planck_fk1", "planck_fk2", "planck_bc1", "planck_bc2")
    values = [_scalar(h5, n, path) for n in names]
    missing = [n for n, v in zip(names, values, strict=True) if v is None]
    if missing:
        raise FileFormatError(f"{path}: Planck constant(s) {missing} missing or fill")
    fk1, fk2, bc1, bc2 = (float(v) for v in values if v is not None)
    if not (fk1 > 0 and fk2 > 0 and bc2 > 0):
        raise FileFormatError(
            f"{path}: implausible Planck constants fk1={fk1}, fk2={fk2}, bc2={bc2}"
        )
    return fk1, fk2, bc1, bc2


def brightness_temperature(
    radiance: npt.ArrayLike, fk1: float, fk2: float, bc1: float, bc2: float
) -> npt.NDArray[np.float64]:
    """ABI L1b radiance (mW m⁻² sr⁻¹ (cm⁻¹)⁻¹) → brightness temperature (K), PUG Vol. 3.

    ``T = (fk2 / ln(fk1 / L + 1) − bc1) / bc2``; NaN where ``L ≤ 0`` or not finite.
    """
    rad = np.asarray(radiance, np.float64)
    positive = np.isfinite(rad) & (rad > 0)
    safe = np.where(positive, rad, 1.0)
    tb = (fk2 / np.log1p(fk1 / safe) - bc1) / bc2
    out: npt.NDArray[np.float64] = np.where(positive, tb, np.nan)
    return out


def _read_channel(h5: h5py.File, header: _Header) -> tuple[npt.NDArray[np.float64], str]:
    """Brightness temperature of one file, and how it was obtained."""
    path = header.path
    variable = _PRODUCTS[header.product][0]
    values, attrs = _unpack(h5, variable, path)
    units = attr_text(attrs.get("units", ""))
    if header.product == "CMIP":
        if units != "K":
            raise FileFormatError(f"{path}: CMI has units {units!r}, expected K (bands 7–16)")
        return values, "CMI (K)"
    if "cm-1" not in units:
        raise FileFormatError(
            f"{path}: Rad has units {units!r}, expected mW m-2 sr-1 (cm-1)-1 (emissive band)"
        )
    fk1, fk2, bc1, bc2 = _planck(h5, path)
    tb = brightness_temperature(values, fk1, fk2, bc1, bc2)
    return tb, f"fk1={fk1:g} fk2={fk2:g} bc1={bc1:g} bc2={bc2:g}"


def _satellite(h5: h5py.File, proj: dict[str, Any], path: Path) -> tuple[float, float]:
    """Sub-satellite longitude (degrees) and height above the ellipsoid (m)."""
    lon = _scalar(h5, "nominal_satellite_subpoint_lon", path)
    height = _scalar(h5, "nominal_satellite_height", path)
    if height is not None:
        units = attr_text(h5["nominal_satellite_height"].attrs.get("units", "km")).lower()
        factor = {"km": 1000.0, "m": 1.0}.get(units)
        if factor is None:
            raise FileFormatError(
                f"{path}: nominal_satellite_height has units {units!r}, expected km"
            )
        height = round(height * factor, 3)
    if lon is None:
        lon = proj["longitude_of_projection_origin"]
    if height is None:
        height = proj["perspective_point_height"]
    if not 30e6 < height < 40e6:
        raise FileFormatError(f"{path}: implausible satellite height {height} m")
    return float(lon), float(height)


def _select(headers: Sequence[_Header], channels: Sequence[str]) -> list[_Header]:
    by_channel: dict[str, _Header] = {}
    for h in headers:
        if h.channel in by_channel:
            raise FileFormatError(
                f"{h.path}: channel {h.channel} given twice (also {by_channel[h.channel].path})"
            )
        by_channel[h.channel] = h
    present = sorted(c for c in by_channel if c in IR_CHANNELS)
    if not channels:
        if not present:
            raise FileFormatError(
                f"{headers[0].path}: no emissive-band (C07–C16) file among the "
                f"{len(headers)} given (channels {sorted(by_channel)})"
            )
        return [by_channel[c] for c in present]
    for name in channels:
        if name not in IR_CHANNELS:
            raise UnknownNameError(unknown_name_message("ABI emissive channel", name, IR_CHANNELS))
    if len(set(channels)) != len(channels):
        raise FileFormatError(f"{headers[0].path}: channels {list(channels)} repeat a name")
    missing = [c for c in channels if c not in by_channel]
    if missing:
        raise FileFormatError(
            f"{headers[0].path}: no file for channel(s) {missing} among the {len(headers)} "
            f"files of this scan (it has {sorted(by_channel)})"
        )
    return [by_channel[c] for c in channels]


def _read(files: Sequence[Path], channels: Sequence[str], product: str) -> xr.DataArray:
    paths = [Path(f) for f in files]
    if not paths:
        raise FileFormatError(f"abi_{product.lower()}: no files given")
    headers = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        with open_hdf5(path) as h5:
            headers.append(_header(path, h5, product))
    _check_same_scan(headers)
    chosen = _select(headers, channels)
    data: dict[str, npt.NDArray[np.float64]] = {}
    calibration: list[str] = []
    grid: Grid | None = None
    grid_key: tuple[Any, ...] | None = None
    satellite: tuple[float, float] = (math.nan, math.nan)
    proj: dict[str, Any] = {}
    for header in chosen:
        with open_hdf5(header.path) as h5:
            this_grid, this_proj, key = _grid(h5, header.path)
            if grid is None:
                grid, grid_key, proj = this_grid, key, this_proj
                satellite = _satellite(h5, proj, header.path)
            elif key != grid_key:
                raise FileFormatError(
                    f"{header.path}: grid differs from {chosen[0].path} "
                    f"({this_grid.shape} vs {grid.shape} pixels or other scan angles/projection)"
                )
            tb, how = _read_channel(h5, header)
            if tb.shape != grid.shape:
                raise FileFormatError(f"{header.path}: {tb.shape} pixels but x/y give {grid.shape}")
            data[header.channel] = tb
            calibration.append(f"{header.channel}: {how}")
    if grid is None:  # unreachable: _select returns at least one file
        raise FileFormatError(f"{paths[0]}: no channel to read")
    first = chosen[0]
    attrs = {
        "product": f"ABI-{'L1b-Rad' if product == 'L1b' else 'L2-CMIP'}{first.scene}",
        "scene": first.scene_id,
        "timeline_mode": first.mode,
        "cadence_minutes": first.cadence,
        "orbital_slot": attr_text(first.attrs.get("orbital_slot", "")),
        "instrument_id": attr_text(first.attrs.get("instrument_ID", "")),
        "projection_longitude": proj["longitude_of_projection_origin"],
        "calibration": "; ".join(calibration),
    }
    return make_scan(
        data,
        grid=grid,
        source="abi_l1b" if product == "L1b" else "abi_l2_cmip",
        sensor="ABI",
        platform=f"GOES-{first.platform[1:]}",
        nominal_time=first.nominal,
        start_time=min(h.start for h in chosen),
        end_time=max(h.end for h in chosen),
        satellite_longitude=satellite[0],
        satellite_height=satellite[1],
        files=[h.path for h in chosen],
        attrs=attrs,
    )


def read_abi_l1b(files: Sequence[Path], channels: Sequence[str]) -> xr.DataArray:
    """Read ABI L1b radiance files of one scan as brightness temperature (module docstring).

    Args:
        files: One file per channel, all of one scan.
        channels: ``C07`` … ``C16``; empty for every emissive channel among the files.

    Raises:
        FileFormatError: Unreadable or foreign files, files of different scans or grids, a
            requested channel without a file, missing Planck constants; names the file.
        UnknownNameError: A channel that is not an emissive ABI channel.
    """
    return _read(files, channels, "L1b")


def read_abi_cmip(files: Sequence[Path], channels: Sequence[str]) -> xr.DataArray:
    """Read ABI L2 CMIP files of one scan (brightness temperature as stored).

    Args:
        files: One file per channel, all of one scan.
        channels: ``C07`` … ``C16``; empty for every emissive channel among the files.

    Raises:
        FileFormatError: As :func:`read_abi_l1b`.
        UnknownNameError: As :func:`read_abi_l1b`.
    """
    return _read(files, channels, "CMIP")


register_satellite_reader(
    SatelliteReader(
        name="abi_l1b",
        sensor="ABI",
        description="GOES-16–19 ABI L1b radiances (OR_ABI-L1b-Rad*, netCDF4), one file per band",
        sniff=_is_l1b,
        read=read_abi_l1b,
    )
)
register_satellite_reader(
    SatelliteReader(
        name="abi_l2_cmip",
        sensor="ABI",
        description="GOES-16–19 ABI L2 Cloud and Moisture Imagery (OR_ABI-L2-CMIP*, netCDF4)",
        sniff=_is_cmip,
        read=read_abi_cmip,
    )
)
