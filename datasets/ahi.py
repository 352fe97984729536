"""Himawari-8/9 AHI brightness temperatures from Himawari Standard Data (HSD), through satpy.

JMA's Himawari Standard Data are the AHI level-1b master data: one binary file per band,
observation and segment, e.g. ``HS_H09_20231220_1200_B14_FLDK_R20_S0110.DAT`` (often bzip2'd,
``.DAT.bz2``): platform ``H08``/``H09``, the observation timeline (the 10-minute slot),
band ``B01``–``B16``, observation area (``FLDK`` full disk, ``JP01``–``JP04`` Japan,
``R301``–``R304`` … target areas), resolution tag and segment ``SnnTT`` (segment nn of TT;
a full disk comes in 10 segments of 550 lines at 2 km). Reference: *Himawari-8/9 Himawari
Standard Data User's Guide*, version 1.3, JMA, 3 July 2017 ("UG"): §3 map projection, §4 file
naming, §5 Table 6 block structures.

A file is 11 header blocks and then the image as uint16 counts (UG §5):

* #1 basic information (282 bytes): block number 1, block length, total number of header
  blocks (11), byte order (0 little-endian), satellite name (``Himawari-8``/``Himawari-9``),
  processing centre, observation area, observation timeline (hhmm), observation start/end
  (MJD), total header and data lengths, file format version (``1.3``);
* #2 data information: columns, lines of this segment; #3 projection information: sub-satellite
  longitude, CFAC/LFAC/COFF/LOFF of the CGMS normalized geostationary projection (LOFF counts
  full-disk lines), satellite distance and Earth radii; #4 navigation (actual satellite
  position); #5 calibration: count → radiance gain and constant, central wavelength, the
  radiance → Tb correction c0/c1/c2 and the physical constants; #6 GSICS inter-calibration;
  #7 segment information (total segments, segment number, first line); #8 navigation
  correction; #9 line observation times; #10 error pixels; #11 spare.

**satpy's ``ahi_hsd`` reader does the decoding** (calibration to brightness temperature via the
inverse Planck function and the c0/c1/c2 correction; the geostationary area; the masking of
error, outside-scan and space pixels). This module is the wrapper around it:

* every file is checked from its own header (not its name): the block structure and lengths,
  little-endian byte order, a file size equal to header plus data length (so truncated files
  are refused before satpy memory-maps them), and the scan it belongs to — platform,
  observation area and slot must agree across all files given;
* every segment of each band read must be present (a missing segment is reported by number,
  instead of satpy's silent NaN padding), segments must tile the image, and no segment may be
  given twice;
* satpy takes the segment number, band and slot from the **file name**; the files are therefore
  handed to satpy under canonical names built from their headers (symbolic links, or the
  decompressed copy of a ``.bz2`` file, in a temporary directory), so renamed files are read
  correctly and a name can never contradict the header; a ``.bz2`` file is decompressed only
  up to the size its header declares (:mod:`qpebench.limits`), and no header may declare more
  than the largest HSD segment (22000 × 2200 pixels);
* the observation window (``start_time``/``end_time``) spans every segment and band read
  (satpy's ``time_parameters``: ``observation_start_time``/``observation_end_time``); the
  nominal time is satpy's ``nominal_start_time``, the observation timeline of block #1 (for
  ``FLDK``, the start of the 10-minute slot; the attributes ``start_time``/``end_time`` of a
  satpy dataset are the nominal ones);
* the grid is satpy's area: pyresample's ``area_extent`` gives the **outer edges**, the cell
  centres are half a pixel inside; rows run north → south, columns west → east;
* the satellite position is the actual one of block #4 as satpy reports it
  (``orbital_parameters``: ``satellite_actual_longitude``/``_altitude``, rounded by satpy to
  0.001° and 150 m); the projection's nominal position (140.7° E, 35 785 863 m) is kept as
  ``projection_longitude``/``projection_altitude``.

Quirks: satpy ignores the navigation corrections of block #8 (small line/column shifts and a
rotation, sub-pixel at 2 km), and its space mask is an ellipse of the limb scan angles, so a few
pixels right at the limb that see the Earth are NaN. Only the infrared bands (B07–B16) are read;
visible-band files in the same call are checked for the scan but otherwise ignored.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from pyproj import CRS

from qpebench import limits
from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import Probe, probe_file
from qpebench.datasets.satellite import SatelliteReader, make_scan, register_satellite_reader
from qpebench.errors import FileFormatError

NAME = "ahi_hsd"
#: The AHI infrared bands this reader reads (satpy's dataset names).
IR_CHANNELS = tuple(f"B{n:02d}" for n in range(7, 17))

# UG §5 Table 6, the fixed blocks (#1–#7) up to the segment information; all little-endian.
_BASIC = np.dtype(
    [
        ("hblock_number", "u1"),
        ("blocklength", "<u2"),
        ("total_number_of_hblocks", "<u2"),
        ("byte_order", "u1"),
        ("satellite", "S16"),
        ("proc_center_name", "S16"),
        ("observation_area", "S4"),
        ("other_observation_info", "S2"),
        ("observation_timeline", "<u2"),
        ("observation_start_time", "<f8"),
        ("observation_end_time", "<f8"),
        ("file_creation_time", "<f8"),
        ("total_header_length", "<u4"),
        ("total_data_length", "<u4"),
        ("quality_flags", "u1", (4,)),
        ("file_format_version", "S32"),
        ("file_name", "S128"),
        ("spare", "S40"),
    ]
)
_DATA = np.dtype(
    [
        ("hblock_number", "u1"),
        ("blocklength", "<u2"),
        ("number_of_bits_per_pixel", "<u2"),
        ("number_of_columns", "<u2"),
        ("number_of_lines", "<u2"),
        ("compression_flag_for_data", "u1"),
        ("spare", "S40"),
    ]
)
_PROJ = np.dtype(
    [
        ("hblock_number", "u1"),
        ("blocklength", "<u2"),
        ("sub_lon", "<f8"),
        ("CFAC", "<u4"),
        ("LFAC", "<u4"),
        ("COFF", "<f4"),
        ("LOFF", "<f4"),
    ]
)
_CAL = np.dtype([("hblock_number", "u1"), ("blocklength", "<u2"), ("band_number", "<u2")])
_SEGMENT = np.dtype(
    [
        ("hblock_number", "u1"),
        ("blocklength", "<u2"),
        ("total_number_of_segments", "u1"),
        ("segment_sequence_number", "u1"),
        ("first_line_number_of_image_segment", "<u2"),
    ]
)
#: UG block lengths of the fixed-size blocks (JMA's sample reader checks these too).
_FIXED_LENGTHS = {1: 282, 2: 50, 3: 127, 4: 139, 5: 147, 6: 259, 7: 47, 11: 259}
#: Shortest variable blocks (#8–#10): the fixed part and 40 spare bytes, no entries.
_MIN_LENGTHS = {8: 61, 9: 45, 10: 47}
_AREA = re.compile(r"^(FLDK|JP0[1-4]|R[1-5]0[1-9])$")
_MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)
#: The largest HSD image: a segment of the 0.5-km band B03 full disk (22000 columns × 2200).
_MAX_PIXELS = 22000 * 2200


@dataclass(frozen=True)
class _Segment:
    """What this module needs of one HSD file's header."""

    path: Path
    compression: str
    platform: str
    area: str
    timeline: int
    start: datetime
    end: datetime
    version: str
    header_length: int
    data_length: int
    columns: int
    lines: int
    band: int
    total: int
    segment: int
    first_line: int
    projection: tuple[float, int, int, float, float]

    @property
    def channel(self) -> str:
        return f"B{self.band:02d}"

    @property
    def slot(self) -> datetime:
        """The nominal slot: the timeline (hhmm) on the day nearest the observation start."""
        hh, mm = divmod(self.timeline, 100)
        if hh > 23 or mm > 59:  # fill value: fall back on the observation start (10 min)
            return self.start.replace(minute=self.start.minute // 10 * 10, second=0, microsecond=0)
        day = self.start.replace(hour=hh, minute=mm, second=0, microsecond=0)
        return min((day + timedelta(days=d) for d in (-1, 0, 1)), key=lambda t: abs(t - self.start))

    def describe(self) -> str:
        return f"{self.platform} {self.area} {self.slot:%Y-%m-%d %H:%M}"


def _text(value: Any) -> str:
    return bytes(value).split(b"\x00", 1)[0].decode("ascii", "replace").strip()


def _is_hsd(probe: Probe) -> bool:
    """UG block #1 and the start of #2: numbers, lengths, 11 blocks, a Himawari satellite."""
    head = probe.head
    if len(head) < _BASIC.itemsize + 3 or head[0] != 1 or head[5] not in (0, 1):
        return False
    order: Literal["little", "big"] = "little" if head[5] == 0 else "big"

    def u2(at: int) -> int:
        return int.from_bytes(head[at : at + 2], order)

    return (
        u2(1) == 282
        and u2(3) == 11
        and head[6:14] == b"Himawari"
        and bool(_AREA.match(head[38:42].decode("ascii", "replace")))
        and head[282] == 2
        and u2(283) == 50
    )


def _mjd(value: float) -> datetime:
    return _MJD_EPOCH + timedelta(days=float(value))


def _parse(path: Path) -> _Segment:
    """Read and check an HSD header (blocks #1–#11 as far as the probe's head reaches).

    Raises:
        FileFormatError: Not an HSD file, a big-endian one, a malformed header, or a file whose
            size differs from its header's total header + data length.
    """
    probe = probe_file(path)
    if not _is_hsd(probe):
        raise FileFormatError(
            f"{path}: not a Himawari Standard Data file (block #1 must be 282 bytes, 11 header "
            "blocks, satellite Himawari-8/9)"
        )
    head = probe.head
    basic = np.frombuffer(head, _BASIC, count=1)[0]
    if basic["byte_order"] != 0:
        raise FileFormatError(f"{path}: big-endian HSD file; satpy's ahi_hsd reads little-endian")
    offsets: dict[int, int] = {}
    offset = 0
    for number in range(1, 12):
        if offset + 7 > len(head):
            break  # the rest lies beyond the probe's head: checked by size below
        found = head[offset]
        if found != number:
            raise FileFormatError(
                f"{path}: HSD header block #{number} expected at byte {offset}, found #{found}"
            )
        length_bytes = head[offset + 1 : offset + (5 if number == 10 else 3)]
        length = int.from_bytes(length_bytes, "little")
        expected = _FIXED_LENGTHS.get(number)
        if length != expected if expected is not None else length < _MIN_LENGTHS[number]:
            what = expected if expected is not None else f"at least {_MIN_LENGTHS[number]}"
            raise FileFormatError(
                f"{path}: HSD header block #{number} is {length} bytes long, the UG says {what}"
            )
        offsets[number] = offset
        offset += length
    if 7 not in offsets or offsets[7] + _SEGMENT.itemsize > len(head):
        raise FileFormatError(f"{path}: truncated HSD header ({len(head)} bytes)")
    header_length = int(basic["total_header_length"])
    if 11 in offsets and offset != header_length:
        raise FileFormatError(
            f"{path}: HSD header blocks add up to {offset} bytes, block #1 says {header_length}"
        )
    data = np.frombuffer(head, _DATA, count=1, offset=offsets[2])[0]
    proj = np.frombuffer(head, _PROJ, count=1, offset=offsets[3])[0]
    cal = np.frombuffer(head, _CAL, count=1, offset=offsets[5])[0]
    seg = np.frombuffer(head, _SEGMENT, count=1, offset=offsets[7])[0]
    columns, lines = int(data["number_of_columns"]), int(data["number_of_lines"])
    limits.check_declared(
        path,
        f"HSD image ({lines} lines × {columns} columns)",
        columns * lines,
        _MAX_PIXELS,
        unit="pixels",
    )
    data_length = int(basic["total_data_length"])
    if int(data["number_of_bits_per_pixel"]) != 16 or data["compression_flag_for_data"] != 0:
        raise FileFormatError(
            f"{path}: HSD image of {int(data['number_of_bits_per_pixel'])} bits per pixel, "
            f"compression flag {int(data['compression_flag_for_data'])}; expected 16 and 0"
        )
    if data_length != columns * lines * 2:
        raise FileFormatError(
            f"{path}: HSD data length {data_length} bytes ≠ {lines} lines × {columns} columns × 2"
        )
    segment, total = int(seg["segment_sequence_number"]), int(seg["total_number_of_segments"])
    if not 1 <= segment <= total:
        raise FileFormatError(f"{path}: HSD segment number {segment} of {total}")
    if not probe.compression:
        size = path.stat().st_size
        if size != header_length + data_length:
            raise FileFormatError(
                f"{path}: {size} bytes, but the HSD header announces {header_length} + "
                f"{data_length} (truncated or padded file)"
            )
    return _Segment(
        path=path,
        compression=probe.compression,
        platform=_text(basic["satellite"]),
        area=_text(basic["observation_area"]),
        timeline=int(basic["observation_timeline"]),
        start=_mjd(basic["observation_start_time"]),
        end=_mjd(basic["observation_end_time"]),
        version=_text(basic["file_format_version"]),
        header_length=header_length,
        data_length=data_length,
        columns=columns,
        lines=lines,
        band=int(cal["band_number"]),
        total=total,
        segment=segment,
        first_line=int(seg["first_line_number_of_image_segment"]),
        projection=(
            float(proj["sub_lon"]),
            int(proj["CFAC"]),
            int(proj["LFAC"]),
            float(proj["COFF"]),
            float(proj["LOFF"]),
        ),
    )


def _check_scan(segments: Sequence[_Segment]) -> None:
    """All files of one platform, observation area and slot; no (band, segment) twice."""
    first = segments[0]
    seen: dict[tuple[int, int], _Segment] = {}
    for seg in segments:
        if seg.platform != first.platform:
            raise FileFormatError(
                f"{seg.path}: from {seg.platform}, but {first.path.name} is from "
                f"{first.platform}; files of different platforms cannot make one scan"
            )
        if (seg.area, seg.slot) != (first.area, first.slot):
            raise FileFormatError(
                f"{seg.path}: belongs to the {seg.describe()} scan, but {first.path.name} to the "
                f"{first.describe()} scan; pass the files of one scan"
            )
        key = (seg.band, seg.segment)
        if key in seen:
            raise FileFormatError(
                f"{seg.path}: segment {seg.segment} of {seg.channel} given twice (also "
                f"{seen[key].path.name})"
            )
        seen[key] = seg


def _check_band(channel: str, segments: list[_Segment]) -> None:
    """Every segment of the band present, consistent and tiling the image top to bottom."""
    segments.sort(key=lambda s: s.segment)
    first = segments[0]
    totals = {s.total for s in segments}
    if len(totals) != 1:
        raise FileFormatError(
            f"{first.path}: segments of {channel} disagree on the number of segments {totals}"
        )
    have = [s.segment for s in segments]
    missing = sorted(set(range(1, first.total + 1)) - set(have))
    if missing:
        raise FileFormatError(
            f"{first.path}: {channel} lacks segment(s) {missing} of {first.total} "
            f"(given: {have}); pass every segment of each band"
        )
    line = segments[0].first_line
    for seg in segments:
        if seg.first_line != line or seg.columns != first.columns:
            raise FileFormatError(
                f"{seg.path}: segment {seg.segment} of {channel} starts at line {seg.first_line} "
                f"with {seg.columns} columns; expected line {line} with {first.columns}"
            )
        if seg.projection != first.projection:
            raise FileFormatError(
                f"{seg.path}: projection parameters {seg.projection} differ from segment "
                f"{first.segment}'s {first.projection}"
            )
        line += seg.lines


def _stage(segments: Sequence[_Segment], into: Path) -> list[str]:
    """The files under satpy's names (from their headers): links, or decompressed copies."""
    names = []
    for seg in segments:
        code = f"H{seg.platform.rsplit('-', 1)[-1]:0>2}"
        name = (
            f"HS_{code}_{seg.slot:%Y%m%d_%H%M}_{seg.channel}_{seg.area}_R20_"
            f"S{seg.segment:02d}{seg.total:02d}.DAT"
        )
        target = into / name
        if seg.compression == "bzip2":
            # Decompression stops just past the size the header declares (qpebench.limits).
            declared = seg.header_length + seg.data_length
            data = limits.read_decompressed(seg.path, declared=declared)
            if len(data) != declared:
                raise FileFormatError(
                    f"{seg.path}: decompresses to {len(data)} bytes, but the HSD header announces "
                    f"{seg.header_length} + {seg.data_length} (truncated or padded file)"
                )
            target.write_bytes(data)
        elif seg.compression:
            raise FileFormatError(f"{seg.path}: {seg.compression}-compressed HSD is not supported")
        else:
            try:
                os.symlink(seg.path.resolve(), target)
            except OSError:
                shutil.copyfile(seg.path, target)
        names.append(str(target))
    return names


def _utc(t: Any) -> datetime:
    aware: datetime = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return aware


def read_hsd(files: Sequence[Path], channels: Sequence[str]) -> xr.DataArray:
    """Read the infrared bands of one AHI HSD scan (every segment of each band) with satpy.

    Args:
        files: The scan's segment files (``.DAT`` or ``.DAT.bz2``), any names, any order.
        channels: AHI bands (``B07`` … ``B16``); empty: every infrared band given.

    Raises:
        FileFormatError: A file that is not HSD, truncated or malformed; files of different
            platforms, observation areas or slots; a missing or duplicated segment; no file of a
            requested band.
    """
    if not files:
        raise FileFormatError("read_hsd: no files given")
    segments = [_parse(Path(f)) for f in files]
    _check_scan(segments)
    by_channel: dict[str, list[_Segment]] = {}
    for seg in segments:
        if seg.channel in IR_CHANNELS:
            by_channel.setdefault(seg.channel, []).append(seg)
    available = sorted(by_channel)
    wanted = list(dict.fromkeys(channels)) or available
    missing = [c for c in wanted if c not in by_channel]
    if missing or not wanted:
        raise FileFormatError(
            f"{files[0]}: no HSD file of infrared band(s) {missing or list(IR_CHANNELS)} among "
            f"the {len(files)} files given; they hold {available or 'no infrared band'}"
        )
    for channel in wanted:
        _check_band(channel, by_channel[channel])
    shapes = {(by_channel[c][0].columns, sum(s.lines for s in by_channel[c])) for c in wanted}
    projections = {by_channel[c][0].projection for c in wanted}
    if len(shapes) != 1 or len(projections) != 1:
        raise FileFormatError(
            f"{files[0]}: bands {wanted} are on different grids ({shapes}, {projections})"
        )
    chosen = [s for c in wanted for s in by_channel[c]]
    from satpy.scene import Scene  # heavy import, only when HSD files are read

    arrays: dict[str, np.ndarray] = {}
    attrs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="qpebench_ahi_") as tmp:
        staged = _stage(chosen, Path(tmp))
        with warnings.catch_warnings():
            # dask/pyproj chatter; the header problems satpy would warn about are checked above
            warnings.simplefilter("ignore")
            scene = Scene(reader="ahi_hsd", filenames=staged)
            scene.load(wanted, calibration="brightness_temperature")
            for channel in wanted:
                data = scene[channel]
                arrays[channel] = np.asarray(data.values, dtype=np.float32)
                attrs[channel] = dict(data.attrs)
        del scene
    first = attrs[wanted[0]]
    area = first["area"]
    for channel in wanted[1:]:
        if attrs[channel]["area"] != area:
            raise FileFormatError(
                f"{files[0]}: satpy gives {channel} another area than {wanted[0]}"
            )
    x_ll, y_ll, x_ur, y_ur = (float(v) for v in area.area_extent)  # outer edges
    ny, nx = area.shape
    grid = Grid.from_corner(
        CRS.from_user_input(area.crs),
        x_left=x_ll,
        y_top=y_ur,
        dx=(x_ur - x_ll) / nx,
        dy=(y_ur - y_ll) / ny,
        nx=nx,
        ny=ny,
    )
    times = [a["time_parameters"] for a in attrs.values()]
    nominal = {_utc(t["nominal_start_time"]) for t in times}
    if len(nominal) != 1:
        raise FileFormatError(f"{files[0]}: bands of different nominal times {sorted(nominal)}")
    orbit = first["orbital_parameters"]
    return make_scan(
        arrays,
        grid=grid,
        source=NAME,
        sensor="AHI",
        platform=str(first.get("platform_name", segments[0].platform)),
        nominal_time=nominal.pop(),
        start_time=min(_utc(t["observation_start_time"]) for t in times),
        end_time=max(_utc(t["observation_end_time"]) for t in times),
        satellite_longitude=float(orbit["satellite_actual_longitude"]),
        satellite_height=float(orbit["satellite_actual_altitude"]),
        files=[Path(f) for f in files],
        attrs={
            "observation_area": segments[0].area,
            "segments": by_channel[wanted[0]][0].total,
            "file_format_version": segments[0].version,
            "satellite_latitude": float(orbit["satellite_actual_latitude"]),
            "projection_longitude": float(orbit["projection_longitude"]),
            "projection_altitude": float(orbit["projection_altitude"]),
        },
    )


register_satellite_reader(
    SatelliteReader(
        name=NAME,
        sensor="AHI",
        description="Himawari-8/9 AHI Himawari Standard Data (HSD, .DAT/.DAT.bz2 segments) "
        "via satpy's ahi_hsd",
        sniff=_is_hsd,
        read=read_hsd,
    )
)
