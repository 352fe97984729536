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
    ``georef_offset_corrected`` (recorded) and places the grid accordingly. Before satpy
    reads them, every file's size must match its primary header and a segment's image
    structure may declare at most one HRV segment (11136 × 464 pixels of ≤ 16 bits).
``seviri_native`` — EUMETSAT Level 1.5 native format (``.nat``; EUM/MSG/ICD/105), one file per
    scan, read by satpy's ``seviri_l1b_native`` reader. Detected by the ASCII archive header
    (``FormatName : NATIVE``) that archive and Data Store files carry. No native file is
    available here, so this path is tested only for detection and errors; it shares the satpy
    code path (calibration, navigation, cropping) with ``seviri_hrit``. Before satpy reads it,
    the lines and columns its header declares must fit a full disk and the file must hold the
    header, those lines of the selected channels and the trailer (EUM/MSG/ICD/105).
``seviri_satip_zarr`` — Open Climate Fix's Satip archive of the Rapid-Scan Service
    (``YYYYMMDDHHMM.zarr.zip``: ``data(time, y_geostationary, x_geostationary, variable)`` int16,
    11 channels, made by satpy's ``seviri_l1b_native`` reader). Values are rescaled to 0–1023;
    the physical value is ``min_c + v / 1023 · (max_c − min_c)`` with Satip's fixed per-channel
    constants (``satip.scale_to_zero_to_one``/``do_v15_rescaling``), which are **not** in the
    file and are reproduced in :data:`SATIP_RESCALING`. The coordinates are cell centres in
    metres of the RSS projection (``lon_0 = 9.5``); ``x`` decreases and ``y`` increases, i.e. the
    array is rotated 180° from north-up. The ``time`` coordinate is the *end* of the 5-min
    slot (the 11:35 file has ``start_time`` 11:30:08): the nominal time is the slot start.
    Before zarr reads anything, every declared size is checked against the ``area`` grid (at
    most SEVIRI's 3712 × 3712 disk) and every chunk against its array's chunk size: zarr's
    own codecs decompress a chunk without bound (a zlib chunk of 112 MiB is only refused after
    it has been decompressed, at the reshape).
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
    the window's Earth/space boundary on the geometric limb (tested). A file shorter than its
    netCDF-3 header declares is refused (the netCDF library would pad it with fill values).

All three: the geostationary projection of the file (``+proj=geos +h=35785831 +a=6378169
+rf=295.488065897014``), the platform's nominal longitude, and ``time`` = the nominal slot start.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
import warnings
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import xarray as xr
import yaml
from pyproj import CRS

from qpebench import limits
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
_HRIT_MAX_PIXELS = 11136 * 464  # one HRV segment: the largest HRIT image
_HRIT_MAX_HEADER = 1024**2  # bytes (real headers: a few kB)
_SEVIRI_HRV_COLUMNS = 11136  # HRV columns of a full disk
_NATIVE_LINE_HEADER = 38 + 27  # bytes before a native line's pixels (packet + line header)
_NATIVE_SIZE_KEYS = (
    "NumberLinesVISIR",
    "EastColumnSelectedRectangle",
    "WestColumnSelectedRectangle",
    "NumberColumnsHRV",
)
#: zarr compressor ids decompressed here with a bound (blosc is checked from its header).
_ZARR_CODECS: dict[str, limits.Codec] = {"zlib": "zlib", "gzip": "gzip"}
_MAX_METADATA = 16 * 1024**2  # bytes of one zarr metadata (JSON) member
_MAX_CELLS = _SEVIRI_COLUMNS**2 * 12  # elements of one Satip array: full disk × 12 channels
_MAX_CHUNK_BYTES = 256 * 1024**2  # bytes of one decoded chunk
_MAX_CHUNKS = 100_000  # chunks of one array
# netCDF-3 header tags and external type sizes (netCDF "File Format Specification").
_NC_DIMENSION, _NC_VARIABLE, _NC_ATTRIBUTE = 0x0A, 0x0B, 0x0C
_NC_MAX_VAR_DIMS = 1024  # netCDF's NC_MAX_VAR_DIMS
_NC_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}


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


def _check_hrit_header(path: Path) -> None:
    """Check an HRIT file's headers against its size and sane image dimensions.

    The primary header's total header length + data field length (bits) must be the file
    size; the header records must tile the header; an image file (file type 0) must carry an
    image structure record (CGMS 03 §4.3.1.2: NB bits, NC columns, NL lines) of at most 16
    bits and one HRV segment's pixels, and an uncompressed one exactly NB × NC × NL data bits.

    Raises:
        FileFormatError: Any of the above fails.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        primary = fh.read(16)
        if len(primary) < 16 or primary[:3] != b"\x00\x00\x10":
            raise FileFormatError(f"{path}: not an HRIT file (no primary header)")
        header = int.from_bytes(primary[4:8], "big")
        data_bits = int.from_bytes(primary[8:16], "big")
        expected = header + data_bits // 8
        if size != expected or header < 16:
            raise FileFormatError(
                f"{path}: HRIT file is {size} bytes, its primary header announces {expected} "
                "(truncated or corrupt segment)"
            )
        limits.check_declared(path, "HRIT header", header, _HRIT_MAX_HEADER, unit="bytes")
        records = primary + fh.read(header - 16)
    image: tuple[int, int, int, int] | None = None
    at = 16
    while at < header:
        kind, length = records[at], int.from_bytes(records[at + 1 : at + 3], "big")
        if length < 3 or at + length > header:
            raise FileFormatError(
                f"{path}: HRIT header record {kind} at byte {at} has length {length}, "
                f"beyond the {header}-byte header (corrupt)"
            )
        if kind == 1 and length == 9:
            nb, nc, nl = records[at + 3], *struct.unpack_from(">2H", records, at + 4)
            image = (nb, nc, nl, records[at + 8])
        at += length
    if primary[3] != 0:
        return  # prologue, epilogue …: no image
    if image is None:
        raise FileFormatError(f"{path}: HRIT image file without an image structure record")
    nb, nc, nl, compression = image
    if not 0 < nb <= 16 or nc * nl > _HRIT_MAX_PIXELS:
        raise FileFormatError(
            f"{path}: HRIT image structure declares {nl} lines × {nc} columns of {nb} bits, "
            f"more than one HRV segment ({_HRIT_MAX_PIXELS:,} pixels of ≤ 16 bits); refused "
            "before reading"
        )
    if compression == 0 and data_bits != nb * nc * nl:
        raise FileFormatError(
            f"{path}: uncompressed HRIT image of {nl} × {nc} × {nb} bits, but {data_bits} data bits"
        )


def read_hrit(files: Sequence[Path], channels: Sequence[str]) -> xr.DataArray:
    """Read the IR channels of one HRIT scan (segments + prologue + epilogue) with satpy.

    Raises:
        FileFormatError: A truncated file, no prologue/epilogue, no segment of a requested
            channel, or segments of several scans.
    """
    for path in files:
        _check_hrit_header(path)
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


def _check_native_size(path: Path) -> None:
    """Refuse a native file that declares more than a full disk or is shorter than it declares.

    EUM/MSG/ICD/105 (Native format): the header (with the 15_SECONDARY_PRODUCT_HEADER, which
    gives the lines, columns and channels, only when the ASCII archive header starts the file;
    without it a full disk of all channels), then for each VIS/IR line one record per selected
    channel and three HRV records when HRV is selected (each: 38-byte packet header, 27-byte line
    header, 10-bit packed pixels), then the trailer. The sizes are computed as satpy's
    ``seviri_l1b_native`` reader does, which reads the data and trailer at those offsets.

    Raises:
        FileFormatError: Unreadable numbers, more lines or columns than a full disk, or a file
            shorter than header + data + trailer.
    """
    from satpy.readers.seviri_l1b_native_hdr import get_native_header, native_trailer

    size = path.stat().st_size
    with path.open("rb") as fh:
        archive = fh.read(len(NATIVE_ASCII_HEADER)) == NATIVE_ASCII_HEADER
    header = get_native_header(archive)
    where = f"{path}: cannot read as seviri_native"
    if size < header.itemsize:
        raise FileFormatError(
            f"{where}: {size:,} bytes, shorter than the {header.itemsize:,}-byte native header "
            "(truncated?)"
        )
    lines, columns, hrv_columns = _SEVIRI_COLUMNS, _SEVIRI_COLUMNS, _SEVIRI_HRV_COLUMNS // 2
    visir, hrv = 11, True
    if archive:
        second = np.fromfile(path, dtype=header, count=1)[0]["15_SECONDARY_PRODUCT_HEADER"]
        try:
            value = {k: int(second[k]["Value"]) for k in _NATIVE_SIZE_KEYS}
            bands = second["SelectedBandIDs"]["Value"].decode("latin-1")[:12]
        except (ValueError, UnicodeDecodeError) as exc:
            raise FileFormatError(f"{where}: malformed secondary product header ({exc})") from None
        lines = value["NumberLinesVISIR"]
        east, west = value["EastColumnSelectedRectangle"], value["WestColumnSelectedRectangle"]
        columns = west - east + 1
        hrv_columns = value["NumberColumnsHRV"]
        for what, n, most in (
            ("VIS/IR lines", lines, _SEVIRI_COLUMNS),
            ("VIS/IR columns", columns, _SEVIRI_COLUMNS),
            ("HRV columns", hrv_columns, _SEVIRI_HRV_COLUMNS),
        ):
            if not 0 < n <= most:
                raise FileFormatError(
                    f"{where}: header declares {n:,} {what}, outside 1–{most:,} (a full disk); "
                    "refused before reading"
                )
        if columns >= _SEVIRI_COLUMNS:
            hrv_columns //= 2
        columns += -columns % 4  # padded to a multiple of 4 columns (as satpy reads it)
        visir, hrv = bands[:11].count("X"), bands[11:12] == "X"
    line = visir * (_NATIVE_LINE_HEADER + int(columns * 1.25))
    line += 3 * (_NATIVE_LINE_HEADER + int(hrv_columns * 1.25)) if hrv else 0
    need = header.itemsize + lines * line + native_trailer.itemsize
    if size < need:
        raise FileFormatError(
            f"{where}: {size:,} bytes, its header declares {need:,} ({lines} lines of {visir} "
            f"VIS/IR channels{' and HRV' if hrv else ''}, and the trailer); truncated"
        )


def read_native(files: Sequence[Path], channels: Sequence[str]) -> xr.DataArray:
    """Read the IR channels of one SEVIRI Level 1.5 native (``.nat``) file with satpy.

    Raises:
        FileFormatError: Several files, a requested channel missing, or a file satpy cannot read.
    """
    if len(files) != 1:
        raise FileFormatError(f"{files[0]}: a native scan is one .nat file; got {len(files)}")
    _check_native_size(files[0])
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


def _zip_json(zf: zipfile.ZipFile, member: str, path: Path) -> dict[str, Any]:
    """A zarr metadata member (``.zarray``/``.zattrs``) as a JSON object."""
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise FileFormatError(f"{path}: Satip zarr lacks {member!r}") from None
    limits.check_declared(path, f"metadata {member!r}", info.file_size, _MAX_METADATA, unit="bytes")
    text = limits.read_zip_member(zf, info, path)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FileFormatError(f"{path}: Satip zarr {member!r} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise FileFormatError(f"{path}: Satip zarr {member!r} is not a JSON object")
    return value


def _satip_area_shape(attrs: dict[str, Any], path: Path) -> tuple[int, int]:
    """(height, width) of the grid in the root ``area`` attribute, at most SEVIRI's full disk."""
    try:
        area = yaml.safe_load(str(attrs.get("area", "")))
        shape = next(iter(area.values()))["shape"]
        height, width = int(shape["height"]), int(shape["width"])
    except (
        yaml.YAMLError,
        AttributeError,
        KeyError,
        StopIteration,
        TypeError,
        ValueError,
        RecursionError,
    ):
        raise FileFormatError(f"{path}: Satip zarr without a readable 'area' shape") from None
    if not (0 < height <= _SEVIRI_COLUMNS and 0 < width <= _SEVIRI_COLUMNS):
        raise FileFormatError(
            f"{path}: Satip 'area' declares {height} × {width} cells, more than SEVIRI's "
            f"{_SEVIRI_COLUMNS} × {_SEVIRI_COLUMNS} full disk (or none); refused before reading"
        )
    return height, width


def _check_satip_chunk(raw: bytes, compressor: str | None, nbytes: int, name: str) -> None:
    """A chunk must decode to exactly ``nbytes`` (checked before zarr decodes it)."""
    if compressor is None:
        size = len(raw)
    elif compressor == "blosc":
        # Blosc 1 header: version, versionlz, flags, typesize, then nbytes, blocksize, cbytes.
        if len(raw) < 16:
            raise FileFormatError(f"{name}: blosc chunk of {len(raw)} bytes, no header")
        size, _, cbytes = struct.unpack_from("<3I", raw, 4)
        if cbytes != len(raw):
            raise FileFormatError(f"{name}: blosc header says {cbytes} bytes, chunk has {len(raw)}")
    else:
        size = len(limits.decompress_bounded(raw, _ZARR_CODECS[compressor], name, declared=nbytes))
    if size != nbytes:
        raise FileFormatError(
            f"{name}: chunk decodes to {size:,} bytes, its array declares {nbytes:,}"
        )


def _check_satip_array(
    zf: zipfile.ZipFile, path: Path, array: str, expected: tuple[int, ...] | None
) -> None:
    """Check an array's declared shape, chunks and every stored chunk before zarr reads it.

    Args:
        zf: The open archive.
        path: The file, for messages.
        array: The array's name.
        expected: The shape the grid implies; ``None`` for arrays this reader does not read
            (their shape is only bounded). A missing chunk is not an error: zarr leaves out
            chunks that hold only the fill value.
    """
    meta = _zip_json(zf, f"{array}/.zarray", path)
    try:
        shape = tuple(int(n) for n in meta["shape"])
        chunks = tuple(int(n) for n in meta["chunks"])
        dtype = np.dtype(meta["dtype"])
        codec = meta.get("compressor")
        compressor = None if codec is None else str(codec["id"])
        separator = str(meta.get("dimension_separator", "."))
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{path}: Satip zarr {array}/.zarray is malformed ({exc})") from None
    where = f"{path}: Satip array {array!r}"
    if expected is not None and shape != expected:
        raise FileFormatError(
            f"{where} declares shape {shape}, the 'area' grid implies {expected}; "
            "refused before reading"
        )
    limits.check_declared(path, f"Satip array {array!r} {shape}", math.prod(shape), _MAX_CELLS)
    bad_chunks = len(chunks) != len(shape) or min((*chunks, 1)) < 1
    if bad_chunks or min((*shape, 0)) < 0 or dtype.hasobject:
        raise FileFormatError(f"{where} has chunks {chunks} for shape {shape}, dtype {dtype}")
    if meta.get("filters") or compressor not in (None, "blosc", *_ZARR_CODECS):
        raise FileFormatError(
            f"{where} uses filters {meta.get('filters')} / compressor {compressor!r}; "
            f"supported: no filters, compressor blosc, {', '.join(_ZARR_CODECS)} or none"
        )
    nbytes = math.prod(chunks) * dtype.itemsize
    limits.check_declared(path, f"Satip array {array!r} chunk {chunks}", nbytes, _MAX_CHUNK_BYTES)
    grid = [range(-(-n // c)) for n, c in zip(shape, chunks, strict=True)]
    count = math.prod(len(r) for r in grid)
    limits.check_declared(path, f"Satip array {array!r}", count, _MAX_CHUNKS, unit="chunks")
    for index in itertools.product(*grid):
        member = f"{array}/{separator.join(map(str, index)) or '0'}"
        try:
            info = zf.getinfo(member)
        except KeyError:  # zarr leaves out a chunk of fill values (0 without a fill value)
            continue
        # No codec makes a chunk much larger than its data (blosc adds 16 bytes, zlib 0.03 %).
        limits.check_declared(
            path, f"chunk {member!r}", info.file_size, nbytes + nbytes // 64 + 1024, unit="bytes"
        )
        raw = limits.read_zip_member(zf, info, path)
        _check_satip_chunk(raw, compressor, nbytes, f"{path}:{member}")


def _check_satip(path: Path) -> None:
    """Refuse a Satip zip whose declared sizes do not fit its grid, before zarr reads it.

    Every member's declared size (:func:`qpebench.limits.check_zip`), the grid of the ``area``
    attribute (at most SEVIRI's full disk), the shapes of the arrays read against that grid,
    and every chunk of every array: its stored size and the size it decodes to (exactly the
    chunk's bytes, so no chunk can decompress to more; blosc from its header, zlib/gzip by
    bounded decompression).

    Raises:
        FileFormatError: Not a zip, or any of the above fails.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            limits.check_zip(zf, path)
            height, width = _satip_area_shape(_zip_json(zf, ".zattrs", path), path)
            variables = _zip_json(zf, "variable/.zarray", path).get("shape")
            if not (isinstance(variables, list) and [type(v) for v in variables] == [int]):
                raise FileFormatError(f"{path}: Satip 'variable' is not one-dimensional")
            n = limits.check_declared(
                path, "Satip 'variable'", variables[0], len(SATIP_RESCALING), unit="channels"
            )
            expected = {
                "data": (1, height, width, n),
                "x_geostationary": (width,),
                "y_geostationary": (height,),
                "time": (1,),
                "variable": (n,),
            }
            arrays = {m.rsplit("/", 1)[0] for m in zf.namelist() if m.endswith("/.zarray")}
            for array in sorted(arrays | set(expected)):
                _check_satip_array(zf, path, array, expected.get(array))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise FileFormatError(f"{path}: not a readable zip archive ({exc})") from None


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
    _check_satip(path)
    store = zarr.storage.ZipStore(path, mode="r")
    try:
        # Not the consolidated .zmetadata: the .zarray files checked above are what zarr reads.
        ds = xr.open_zarr(store, consolidated=False)
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


class _Cursor:
    """Sequential reads of a file's header that never run past the end of the file."""

    def __init__(self, fh: BinaryIO, size: int, path: Path, version: int) -> None:
        self.fh, self.size, self.path = fh, size, path
        self.wide = version == 5  # CDF-5: 8-byte counts
        self.offset = 4 if version == 1 else 8  # CDF-2 and CDF-5: 8-byte offsets

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes; refused if they run past the end of the file."""
        at = self.fh.tell()
        if n > self.size - at:
            raise FileFormatError(
                f"{self.path}: netCDF-3 header runs past the end of the file ({self.size:,} "
                f"bytes, truncated?)"
            )
        return self.fh.read(n)

    def number(self, width: int = 4) -> int:
        """The next big-endian unsigned integer of ``width`` bytes."""
        return int.from_bytes(self.take(width), "big")

    def count(self) -> int:
        """A NON_NEG count (8 bytes in CDF-5)."""
        return self.number(8 if self.wide else 4)

    def skip_name(self) -> None:
        """Skip a name: its length, then its bytes padded to 4."""
        self.take(-(-self.count() // 4) * 4)


def _netcdf3_size(path: Path) -> int:
    """The size a netCDF-3 file's header declares: the end of its last variable's data.

    Parses the classic header (netCDF "File Format Specification": magic, ``numrecs``, the
    dimension, attribute and variable lists, each variable's shape, type and ``begin`` offset);
    record variables end ``numrecs − 1`` records of ``recsize`` after their first record.

    Raises:
        FileFormatError: Not netCDF-3, or a header cut short or malformed.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        magic = fh.read(4)
        if magic[:3] != b"CDF" or magic[3:] not in (b"\x01", b"\x02", b"\x05"):
            raise FileFormatError(f"{path}: not a netCDF-3 file (magic {magic!r})")
        cur = _Cursor(fh, size, path, magic[3])
        numrecs = cur.count()
        if numrecs == (1 << (64 if cur.wide else 32)) - 1:
            numrecs = 0  # streaming: the library counts the records that are complete
        dims: list[int] = []
        for tag in (_NC_DIMENSION, _NC_ATTRIBUTE, _NC_VARIABLE):
            found, n = cur.number(), cur.count()
            if found not in (tag, 0) or (found == 0 and n != 0):
                raise FileFormatError(f"{path}: malformed netCDF-3 header (list tag {found})")
            if tag == _NC_DIMENSION:
                for _ in range(n):
                    cur.skip_name()
                    dims.append(cur.count())
            elif tag == _NC_ATTRIBUTE:
                _skip_attributes(cur, n)
            else:
                return _variables_end(cur, n, dims, numrecs)
    raise AssertionError("unreachable")  # pragma: no cover


def _skip_attributes(cur: _Cursor, n: int) -> None:
    """Skip ``n`` attributes (name, type, count, values padded to 4 bytes)."""
    for _ in range(n):
        cur.skip_name()
        nc_type, count = cur.number(), cur.count()
        cur.take(-(-count * _NC_TYPE_SIZES.get(nc_type, 1) // 4) * 4)


def _variables_end(cur: _Cursor, n: int, dims: list[int], numrecs: int) -> int:
    """Where the data of ``n`` variables ends: fixed ones at begin + size, records after the last.

    Args:
        cur: At the first variable of the header's variable list.
        n: The number of variables.
        dims: The dimension lengths (0 for the record dimension).
        numrecs: The number of records.
    """
    end, records = 0, []
    for _ in range(n):
        cur.skip_name()
        ndims = cur.count()
        if ndims > _NC_MAX_VAR_DIMS:
            raise FileFormatError(f"{cur.path}: netCDF-3 variable of {ndims:,} dimensions")
        ids = [cur.count() for _ in range(ndims)]
        found, count = cur.number(), cur.count()
        if found not in (_NC_ATTRIBUTE, 0):
            raise FileFormatError(f"{cur.path}: malformed netCDF-3 variable attributes")
        _skip_attributes(cur, count)
        nc_type = cur.number()
        cur.count()  # vsize: recomputed from the shape (it saturates above 4 GiB)
        begin = cur.number(cur.offset)
        if nc_type not in _NC_TYPE_SIZES or any(i >= len(dims) for i in ids):
            raise FileFormatError(f"{cur.path}: malformed netCDF-3 variable (type {nc_type})")
        shape = [dims[i] for i in ids]
        record = bool(shape) and shape[0] == 0
        nbytes = math.prod(shape[1:] if record else shape) * _NC_TYPE_SIZES[nc_type]
        if record:
            records.append((begin, nbytes))
        else:
            end = max(end, begin + nbytes)
    if records and numrecs:
        recsize = sum(-(-b // 4) * 4 for _, b in records) if len(records) > 1 else records[0][1]
        end = max(end, *(begin + (numrecs - 1) * recsize + b for begin, b in records))
    return end


def _check_netcdf3_size(path: Path) -> None:
    """Refuse a netCDF-3 file shorter than its header declares (the library pads it silently)."""
    declared, size = _netcdf3_size(path), path.stat().st_size
    if size < declared:
        raise FileFormatError(
            f"{path}: netCDF-3 file of {size:,} bytes, its header declares {declared:,} (truncated)"
        )


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
        _check_netcdf3_size(path)
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
