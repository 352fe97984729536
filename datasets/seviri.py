"""Meteosat SEVIRI brightness temperatures: HRIT (through satpy), Satip's zarr, meteosatlib netCDF.

Four readers, sensor ``SEVIRI`` (channel names ``IR_039`` … ``IR_134``, ``WV_062``,
``WV_073``; :data:`qpebench.bands.SENSOR_CHANNELS` maps them onto the canonical bands):

``seviri_hrit`` — EUMETSAT Level 1.5 HRIT segments
    (EUM/MSG/ICD/105 "MSG Level 1.5 Image Data Format Description"; CGMS 03 "LRIT/HRIT Global
    Specification"). A scan is the set of segment files of its channels plus the prologue
    (``PRO``) and epilogue (``EPI``), which carry the calibration and navigation; wavelet-
    compressed segments (``C_``) need ``pyPublicDecompWT``. They are read by satpy's
    ``seviri_l1b_hrit`` reader, the field's reader of record (calibration to brightness
    temperature, navigation), not re-implemented here. The image is in SEVIRI's native
    orientation: rows south → north, columns east → west. Rows of segments that were not
    given are cropped away (the grid keeps exact full-disk coordinates). Cold pixels of
    ``IR_039`` can calibrate to negative "brightness temperatures"; they are kept as satpy
    gives them (the sample validator refuses them in a store). Data before the December 2017
    ground-segment change are half a pixel off; satpy reports this as
    ``georef_offset_corrected`` (recorded) and places the grid accordingly.
``seviri_native`` — EUMETSAT Level 1.5 native format (``.nat``; EUM/MSG/ICD/105), one file per
    scan, read by satpy's ``seviri_l1b_native`` reader. Detected by the ASCII archive header
    (``FormatName : NATIVE``) that archive and Data Store files carry. No native file is
    available here, so this path is tested only for detection and errors; it shares the satpy
    code path (calibration, navigation, cropping) with ``seviri_hrit``.
``seviri_satip_zarr`` — Open Climate Fix's Satip archive of the Rapid-Scan Service
    (``YYYYMMDDHHMM.zarr.zip``: ``data(time, y_geostationary, x_geostationary, variable)`` int16,
    11 channels, made by satpy's ``seviri_l1b_native`` reader). Values are rescaled to 0–1023;
    the physical value is ``min_c + v / 1023 · (max_c − min_c)`` with Satip's fixed per-channel
    constants (``satip.scale_to_zero_to_one``/``do_v15_rescaling``), which are **not** in the
    file and are reproduced in :data:`SATIP_RESCALING`. The coordinates are cell centres in
    metres of the RSS projection (``lon_0 = 9.5``); ``x`` decreases and ``y`` increases, i.e. the
    array is rotated 180° from north-up. The ``time`` coordinate is the *end* of the 5-min
    slot (the 11:35 file has ``start_time`` 11:30:08): the nominal time is the slot start.
``seviri_meteosatlib_nc`` — netCDF-3 windows written by ARPA-SIM's meteosatlib
    (``MSG_Seviri_1_5_<channel>_<YYYYMMDD>_<HHMM>.nc``): one variable per channel, float32
    already in K. Its ``add_offset = 1.0`` and ``scale_factor = 1.0`` are bogus (the values are
    already brightness temperatures; CF decoding would add 1 K) and are **not** applied; 0 is
    space. The window's place in the 3712 × 3712 SpaceView grid is ``AreaStartPix``/
    ``AreaStartLin`` with ``Column_Offset``/``Line_Offset`` = 1856 and ``Column_Scale_Factor`` =
    −13 642 337 (CGMS 03: ``angle = (n − OFF) · 2¹⁶ / FAC`` degrees); meteosatlib stores it
    north-up and west → east, so column ``AreaStartPix + j`` lies at ``x = (AreaStartPix + j −
    COFF) · Δ`` with ``Δ = 2¹⁶ / |CFAC|`` degrees of scan angle (3000.40 m at the sub-satellite
    point), and line ``AreaStartLin + i`` at ``y = −(AreaStartLin + i − LOFF) · Δ``; this places
    the window's Earth/space boundary on the geometric limb (tested).

All three: the geostationary projection of the file (``+proj=geos +h=35785831 +a=6378169
+rf=295.488065897014``), the platform's nominal longitude, and ``time`` = the nominal slot start.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
import yaml
from pyproj import CRS

from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import Probe
from qpebench.datasets.satellite import SatelliteReader, make_scan, register_satellite_reader
from qpebench.errors import FileFormatError

#: SEVIRI's infrared channels (the ones this package reads).
IR_CHANNELS = ("IR_039", "WV_062", "WV_073", "IR_087", "IR_097", "IR_108", "IR_120", "IR_134")
#: The MSG reference geostationary projection (CGMS 03; satpy's SEVIRI areas).
MSG_SATELLITE_HEIGHT = 35785831.0
_MSG_ELLIPSOID = "+a=6378169 +rf=295.488065897014"
#: Satip's rescaling constants ``(min_c, max_c)`` per channel (openclimatefix/Satip
#: ``satip/scale_to_zero_to_one.py``, commit 0f8d0e59, as recorded in ../shared/data/SOURCES.md).
SATIP_RESCALING: dict[str, tuple[float, float]] = {
    "IR_016": (-2.5118103, 69.60857),
    "IR_039": (-64.83977, 339.15588),
    "IR_087": (63.404694, 340.26526),
    "IR_097": (2.844452, 317.86752),
    "IR_108": (199.10002, 313.2767),
    "IR_120": (-17.254883, 315.99194),
    "IR_134": (-26.29155, 274.82297),
    "VIS006": (-1.1009827, 93.786545),
    "VIS008": (-2.4184198, 101.34922),
    "WV_062": (199.57048, 249.91806),
    "WV_073": (198.95093, 286.96323),
}
_SATIP_MAX = 1023.0
_METEOSATLIB_PREFIX = "MSG_Seviri_1_5_"
_METEOSATLIB_CHANNELS = {
    "Infrared_3_9": "IR_039",
    "WV_6_2": "WV_062",
    "WV_7_3": "WV_073",
    "Infrared_8_7": "IR_087",
    "Infrared_9_7": "IR_097",
    "Infrared_10_8": "IR_108",
    "Infrared_12_0": "IR_120",
    "Infrared_13_4": "IR_134",
}
_SEVIRI_COLUMNS = 3712


def _geos_crs(longitude: float) -> CRS:
    return CRS.from_proj4(
        f"+proj=geos +lon_0={longitude:g} +h={MSG_SATELLITE_HEIGHT:.0f} {_MSG_ELLIPSOID} +units=m"
    )


def _utc(t: Any) -> datetime:
    """A naive-UTC or aware datetime, numpy datetime64 or ISO string as an aware UTC datetime."""
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    elif isinstance(t, np.datetime64):
        t = datetime.fromisoformat(str(t.astype("datetime64[us]")))
    aware: datetime = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return aware


# --------------------------------------------------------------------------------------------
# HRIT (satpy)


def _is_hrit(probe: Probe) -> bool:
    # HRIT primary header: header type 0, record length 16, then the annotation record (type 4)
    # holds the file name "H-000-MSGn__-MSGn________-...".
    head = probe.head
    return not probe.compression and head[:3] == b"\x00\x00\x10" and b"H-000-MSG" in head[:512]


def hrit_companions(path: Path) -> list[Path]:
    """The HRIT files of the same platform and slot as ``path`` in its directory."""
    parts = path.name.split("-")
    if len(parts) < 7 or parts[0] != "H":
        raise FileFormatError(f"{path}: not an HRIT file name (H-000-MSGn__-...-YYYYMMDDhhmm-..)")
    platform, stamp = parts[2], parts[-2]
    return sorted(
        p
        for p in path.parent.glob("H-*")
        if p.name.split("-")[2:3] == [platform] and p.name.split("-")[-2:-1] == [stamp]
    )


def _check_hrit_size(path: Path) -> None:
    """The primary header's total header length + data field length (bits) is the file size."""
    with path.open("rb") as fh:
        primary = fh.read(16)
    if len(primary) < 16 or primary[:3] != b"\x00\x00\x10":
        raise FileFormatError(f"{path}: not an HRIT file (no primary header)")
    header = int.from_bytes(primary[4:8], "big")
    data_bits = int.from_bytes(primary[8:16], "big")
    expected, size = header + data_bits // 8, path.stat().st_size
    if size != expected:
        raise FileFormatError(
            f"{path}: HRIT file is {size} bytes, its primary header announces {expected} "
            "(truncated or corrupt segment)"
        )


def read_hrit(files: Sequence[Path], channels: Sequence[str]) -> xr.DataArray:
    """Read the IR channels of one HRIT scan (segments + prologue + epilogue) with satpy.

    Raises:
        FileFormatError: A truncated file, no prologue/epilogue, no segment of a requested
            channel, or segments of several scans.
    """
    for path in files:
        _check_hrit_size(path)
    names = [f.name for f in files]
    for part in ("PRO", "EPI"):
        if not any(f"-{part}_" in n for n in names):
            raise FileFormatError(
                f"{files[0]}: HRIT scan without its {part}logue file ({part.lower()}logue "
                "holds calibration and navigation); pass every file of the scan"
            )
    stamps = {n.split("-")[-2] for n in names if n.startswith("H-000-")}
    if len(stamps) != 1:
        raise FileFormatError(f"{files[0]}: HRIT files of several scans given: {sorted(stamps)}")
    return _read_with_satpy(files, channels, "seviri_l1b_hrit", "seviri_hrit")


def _read_with_satpy(
    files: Sequence[Path], channels: Sequence[str], satpy_reader: str, source: str
) -> xr.DataArray:
    """Load IR channels with a satpy SEVIRI reader; rows without any valid pixel are cropped."""
    from satpy.scene import Scene  # heavy import, only when such files are read

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene = Scene(reader=satpy_reader, filenames=[str(f) for f in files])
        available = [c for c in IR_CHANNELS if c in scene.available_dataset_names()]
        wanted = list(channels) or available
        missing = [c for c in wanted if c not in available]
        if missing:
            raise FileFormatError(
                f"{files[0]}: scan has no data of {missing}; it holds {available}"
            )
        scene.load(wanted)
        arrays = {c: np.asarray(scene[c].values, dtype=np.float32) for c in wanted}
    first = scene[wanted[0]]
    area = first.attrs["area"]
    x, y = area.get_proj_vectors()
    rows = np.flatnonzero(np.any([np.isfinite(a).any(axis=1) for a in arrays.values()], axis=0))
    if rows.size == 0:
        raise FileFormatError(f"{files[0]}: the scan holds no valid pixel")
    keep = slice(int(rows[0]), int(rows[-1]) + 1)
    grid = Grid(CRS.from_user_input(area.crs), np.asarray(x, np.float64), np.asarray(y)[keep])
    times = first.attrs["time_parameters"]
    orbit = first.attrs["orbital_parameters"]
    return make_scan(
        {c: a[keep] for c, a in arrays.items()},
        grid=grid,
        source=source,
        sensor="SEVIRI",
        platform=str(first.attrs.get("platform_name", "")),
        nominal_time=_utc(times["nominal_start_time"]),
        start_time=_utc(times["observation_start_time"]),
        end_time=_utc(times["observation_end_time"]),
        satellite_longitude=float(orbit["satellite_actual_longitude"]),
        satellite_height=float(orbit["satellite_actual_altitude"]),
        files=files,
        attrs={
            "satellite_latitude": float(orbit["satellite_actual_latitude"]),
            "georef_offset_corrected": str(first.attrs.get("georef_offset_corrected", "")),
            "rows_kept": f"{keep.start}–{keep.stop - 1} of {area.shape[0]}",
        },
    )


# --------------------------------------------------------------------------------------------
# Native (.nat, satpy)

NATIVE_ASCII_HEADER = b"FormatName                  : NATIVE"


def _is_native(probe: Probe) -> bool:
    # EUMETSAT Data Store / archive .nat files open with an ASCII archive header (satpy checks
    # the same 36 bytes); native files without it are read only with source="seviri_native".
    return not probe.compression and probe.head.startswith(NATIVE_ASCII_HEADER)


def read_native(files: Sequence[Path], channels: Sequence[str]) -> xr.DataArray:
    """Read the IR channels of one SEVIRI Level 1.5 native (``.nat``) file with satpy.

    Raises:
        FileFormatError: Several files, a requested channel missing, or a file satpy cannot read.
    """
    if len(files) != 1:
        raise FileFormatError(f"{files[0]}: a native scan is one .nat file; got {len(files)}")
    return _read_with_satpy(files, channels, "seviri_l1b_native", "seviri_native")


# --------------------------------------------------------------------------------------------
# Satip zarr


def _is_satip(probe: Probe) -> bool:
    if probe.compression or not probe.head.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(probe.path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    has_data = "data/.zarray" in names or "data/zarr.json" in names
    return has_data and any(n.startswith("x_geostationary/") for n in names)


def read_satip(files: Sequence[Path], channels: Sequence[str]) -> xr.DataArray:
    """Read one Satip RSS zarr file (one 5-min scan).

    Raises:
        FileFormatError: Several files, a layout other than Satip's, an unknown channel, or a
            requested channel the file lacks.
    """
    import zarr  # only when Satip files are read

    if len(files) != 1:
        raise FileFormatError(f"{files[0]}: a Satip scan is one file; got {len(files)}")
    path = files[0]
    store = zarr.storage.ZipStore(path, mode="r")
    try:
        ds = xr.open_zarr(store, consolidated=None)
        for name in ("data", "x_geostationary", "y_geostationary", "variable", "time"):
            if name not in ds.variables:
                raise FileFormatError(f"{path}: Satip zarr lacks {name!r}")
        if ds.sizes["time"] != 1:
            raise FileFormatError(f"{path}: Satip zarr holds {ds.sizes['time']} times, not 1")
        variables = [str(v) for v in ds["variable"].values]
        available = [c for c in IR_CHANNELS if c in variables]
        wanted = list(channels) or available
        missing = [c for c in wanted if c not in available]
        if missing:
            raise FileFormatError(f"{path}: Satip scan lacks {missing}; it holds {available}")
        raw = ds["data"].isel(time=0).transpose("variable", "y_geostationary", "x_geostationary")
        arrays = {}
        for c in wanted:
            lo, hi = SATIP_RESCALING[c]
            counts = np.asarray(raw.sel(variable=c).values, dtype=np.float32)
            arrays[c] = lo + counts / _SATIP_MAX * (hi - lo)
        area = yaml.safe_load(str(ds.attrs.get("area", "")))
        proj = next(iter(area.values()))["projection"] if isinstance(area, dict) else None
        if not proj or proj.get("proj") != "geos":
            raise FileFormatError(f"{path}: Satip zarr without a geos 'area' attribute")
        longitude = float(proj["lon_0"])
        orbit = yaml.safe_load(str(ds.attrs.get("orbital_parameters", ""))) or {}
        grid = Grid(
            _geos_crs(longitude),
            np.asarray(ds["x_geostationary"].values, np.float64),
            np.asarray(ds["y_geostationary"].values, np.float64),
        )
        end = _utc(ds["time"].values[0])
        start = _utc(str(ds.attrs["start_time"]))
        # The RSS slot starts on a 5-min boundary; Satip labels the file by the slot's end.
        nominal = start.replace(minute=start.minute - start.minute % 5, second=0, microsecond=0)
        if end - nominal != timedelta(minutes=5):
            raise FileFormatError(
                f"{path}: scan started {start:%H:%M:%S} (slot {nominal:%H:%M}) but the file is "
                f"labelled {end:%H:%M}, not the slot's end"
            )
        platform = str(ds.attrs.get("platform_name", ""))
    finally:
        store.close()
    return make_scan(
        arrays,
        grid=grid,
        source="seviri_satip_zarr",
        sensor="SEVIRI",
        platform=platform,
        nominal_time=nominal,
        start_time=start,
        end_time=end,
        satellite_longitude=float(orbit.get("satellite_actual_longitude", longitude)),
        satellite_height=float(orbit.get("satellite_actual_altitude", proj["h"])),
        files=files,
        attrs={
            "satellite_latitude": float(orbit.get("satellite_actual_latitude", 0.0)),
            "service": "RSS (5-min rapid scan)",
            "satip_rescaling": "min_c + v/1023 (max_c − min_c)",
        },
    )


# --------------------------------------------------------------------------------------------
# meteosatlib netCDF


def _is_meteosatlib(probe: Probe) -> bool:
    head = probe.head
    return head[:3] == b"CDF" and _METEOSATLIB_PREFIX.encode() in head and b"SpaceView" in head


def _scan_angle_step(cfac: int) -> float:
    """Scan-angle step of one column in radians (CGMS 03: 2¹⁶ / CFAC degrees)."""
    return float(np.deg2rad(2.0**16 / abs(cfac)))


def read_meteosatlib(files: Sequence[Path], channels: Sequence[str]) -> xr.DataArray:
    """Read meteosatlib netCDF windows (one file per channel) of one scan.

    Raises:
        FileFormatError: Missing SpaceView attributes, files of different times or windows, or a
            requested channel without a file.
    """
    arrays: dict[str, npt.NDArray[np.float32]] = {}
    layout: tuple[Any, ...] | None = None
    platform = ""
    for path in files:
        with xr.open_dataset(path, mask_and_scale=False, decode_times=True) as ds:
            names = [v for v in ds.data_vars if str(v).startswith(_METEOSATLIB_PREFIX)]
            if len(names) != 1:
                raise FileFormatError(
                    f"{path}: expected one {_METEOSATLIB_PREFIX}* variable, got {names}"
                )
            label = str(names[0]).removeprefix(_METEOSATLIB_PREFIX).removesuffix("_channel")
            channel = _METEOSATLIB_CHANNELS.get(label)
            if channel is None:
                raise FileFormatError(f"{path}: not an IR channel: {names[0]}")
            keys = (
                "AreaStartPix",
                "AreaStartLin",
                "Column_Scale_Factor",
                "Line_Scale_Factor",
                "Column_Offset",
                "Line_Offset",
                "Longitude",
                "Time",
            )
            missing = [k for k in keys if k not in ds.attrs]
            if missing:
                raise FileFormatError(f"{path}: meteosatlib attributes missing: {missing}")
            var = ds[names[0]]
            if str(var.attrs.get("units", "")) != "K":
                raise FileFormatError(
                    f"{path}: {names[0]} has units {var.attrs.get('units')!r}, not K"
                )
            values = np.asarray(var.values[0], dtype=np.float32)  # raw: already K, no +1 K offset
            values[values <= 0] = np.nan  # 0 = space
            this = (tuple(ds.attrs[k] for k in keys), values.shape)
            if layout is not None and this != layout:
                raise FileFormatError(f"{path}: window or time differs from {files[0]}")
            layout = this
            arrays[channel] = values
            platform = str(ds.attrs.get("Satellite", ""))
    if layout is None:
        raise FileFormatError("read_meteosatlib: no files given")
    (pix, lin, cfac, lfac, coff, loff, lon, stamp), (ny, nx) = layout
    wanted = list(channels) or [c for c in IR_CHANNELS if c in arrays]
    missing = [c for c in wanted if c not in arrays]
    if missing:
        raise FileFormatError(
            f"{files[0]}: no meteosatlib file for {missing}; given {sorted(arrays)}"
        )
    step_x = _scan_angle_step(int(cfac)) * MSG_SATELLITE_HEIGHT
    step_y = _scan_angle_step(int(lfac)) * MSG_SATELLITE_HEIGHT
    x = (int(pix) + np.arange(nx) - int(coff)) * step_x
    y = -(int(lin) + np.arange(ny) - int(loff)) * step_y
    nominal = _utc(datetime.strptime(str(stamp), "%Y-%m-%d %H:%M:%S UTC"))
    return make_scan(
        {c: arrays[c] for c in wanted},
        grid=Grid(_geos_crs(float(lon)), x, y),
        source="seviri_meteosatlib_nc",
        sensor="SEVIRI",
        platform=platform,
        nominal_time=nominal,
        start_time=nominal,
        end_time=nominal,
        satellite_longitude=float(lon),
        satellite_height=MSG_SATELLITE_HEIGHT,
        files=files,
        attrs={
            "note": "add_offset=1 of the file not applied (values are already K); the file "
            "gives the nominal time only, not the observation window",
        },
    )


register_satellite_reader(
    SatelliteReader(
        name="seviri_hrit",
        sensor="SEVIRI",
        description="MSG SEVIRI Level 1.5 HRIT segments + prologue/epilogue (satpy)",
        sniff=_is_hrit,
        read=read_hrit,
        companions=hrit_companions,
    )
)
register_satellite_reader(
    SatelliteReader(
        name="seviri_native",
        sensor="SEVIRI",
        description="MSG SEVIRI Level 1.5 native .nat files with the ASCII archive header (satpy)",
        sniff=_is_native,
        read=read_native,
    )
)
register_satellite_reader(
    SatelliteReader(
        name="seviri_satip_zarr",
        sensor="SEVIRI",
        description="Open Climate Fix Satip RSS zarr (zip), 11 channels rescaled to 0–1023",
        sniff=_is_satip,
        read=read_satip,
    )
)
register_satellite_reader(
    SatelliteReader(
        name="seviri_meteosatlib_nc",
        sensor="SEVIRI",
        description="ARPA-SIM meteosatlib netCDF-3 SpaceView windows, one channel per file",
        sniff=_is_meteosatlib,
        read=read_meteosatlib,
    )
)
