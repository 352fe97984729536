"""FMI (Finnish Meteorological Institute) radar reflectivity composites: PGM and GeoTIFF.

Two registered readers, one per file format; both hold the lowest-CAPPI corrected reflectivity
of the Finnish radar network encoded as ``dBZ = 0.5 · PV − 32`` with ``255`` = no data and ``0`` =
undetect (no echo). FMI publishes no format document for either file; what follows was read
from the files themselves and checked against pysteps 1.21 (``pysteps.io.importers``).

``fmi_pgm`` — gzip-compressed binary PGM (Netpbm ``P5``) files such as
``201609281600_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz``:

* Netpbm header (http://netpbm.sourceforge.net/doc/pgm.html): magic ``P5``, then width, height
  and maxval separated by whitespace, with ``#`` comment lines allowed in between; one
  whitespace byte, then ``width × height`` bytes (maxval < 256), rows north → south.
* FMI writes its metadata as ``# key value …`` comments: ``obstime`` (``YYYYMMDDhhmm``, UTC),
  ``producttype``/``productname`` (``CAPPI``/``LOWEST``), ``param``, ``radar`` lines,
  ``metersperpixel_x``/``_y`` and a ``projection radar { … }`` block with ``type stereographic``,
  ``centrallongitude``, ``centrallatitude``, ``truelatitude``, ``bottomleft`` and ``topright``
  (lon lat). ``bottomleft``/``topright`` are the **outer** corners of the grid: projected on a
  sphere of radius 6 371 288 m they span exactly ``width × metersperpixel_x`` and
  ``height × metersperpixel_y`` (999.674053 m and 999.62859 m for the SUOMI1 area, to 1e-7).
  The file does not state the Earth model; the radius is pysteps' hard-coded value, which that
  identity confirms. The reader refuses corners that disagree with the pixel size by more than
  a quarter of a cell.
* The encoding (gain 0.5, offset −32, 255, 0) is not in the PGM; it is the one stated in the
  GeoTIFF's GDAL metadata and used by pysteps (``(PV − 64) / 2``).

``fmi_geotiff`` — GeoTIFF files such as ``201609281600_FINUTM.tif`` (EPSG:3067, 250 m,
deflate-compressed tiles, 5 reduced-resolution overviews):

* Only the first, full-resolution image is read (with tifffile). The grid comes from the GeoTIFF
  tags (GeoTIFF 1.0 spec, http://geotiff.maptools.org/spec/geotiff2.6.html): ``ModelPixelScale``
  and one ``ModelTiepoint``; ``GTRasterTypeGeoKey`` says whether a tiepoint refers to a pixel's
  upper-left corner (``PixelIsArea``, FMI's choice) or to its centre (``PixelIsPoint``, half a
  cell further in); the CRS is the EPSG code of ``ProjectedCSTypeGeoKey``. The keys are read
  with tifffile's ``geotiff_metadata``. Detection requires FMI's grid, EPSG:3067, besides dBZ
  GDAL metadata; other dBZ GeoTIFFs are read only when ``source="fmi_geotiff"`` is given.
* The ``GDAL_METADATA`` tag (XML) carries ``Observation time``, ``Quantity`` (unit ``dBZ``),
  ``Gain``, ``Offset``, ``Nodata`` and ``Undetect``. FMI's files nest a second, XML-escaped
  ``<GDALMetadata>`` document inside an item named ``GDAL_METADATA``; both levels are read.
  Without ``Observation time`` the time is taken from the first 12-digit ``YYYYMMDDhhmm`` in
  the file name.

Both readers return ``reflectivity`` fields in dBZ at the observation time (instantaneous:
``start_time`` = ``end_time``); rain rate needs an explicit Z–R relation (``read_radar(zr=…)``).
pysteps' PGM importer records ``zr_a = 223``, ``zr_b = 1.53`` (presumably FMI's operational
relation; not verified with FMI); the PGM reader keeps them as ``producer_zr_a``/``producer_zr_b``
and applies nothing.
"""

from __future__ import annotations

import html
import logging
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile
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

GAIN, OFFSET, NODATA, UNDETECT = 0.5, -32.0, 255, 0
#: Earth radius of FMI's stereographic PGM grids (pysteps' ``_import_fmi_pgm_geodata``).
FMI_PGM_RADIUS = 6371288.0
_PGM_REQUIRED = (
    "obstime",
    "type",
    "centrallongitude",
    "centrallatitude",
    "truelatitude",
    "bottomleft",
    "topright",
)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_GDAL_METADATA, _GDAL_NODATA = 42112, 42113
_PIXEL_IS_AREA, _PIXEL_IS_POINT = 1, 2
_FMI_EPSG = 3067  # ETRS89 / TM35FIN
_USER_DEFINED = 32767
#: Decompressed bytes the PGM header is parsed from before the rest is decompressed (real
#: headers are about 1 kB of comments; a longer header is accepted up to this).
_PGM_HEAD_BYTES = 64 * 1024
_NAME_TIME = re.compile(r"(?<!\d)(\d{12})(?!\d)")


# --------------------------------------------------------------------------------------------
# PGM


def _sniff_pgm(probe: Probe) -> bool:
    head = probe.head
    return head.startswith(b"P5") and b"# obstime" in head and b"# projection" in head


def _pgm_header(raw: bytes, path: Path) -> tuple[dict[str, list[str]], int, int, int]:
    """The ``# key value`` comments, width, height and data offset of a binary PGM's header.

    Raises:
        FileFormatError: Not ``P5``, a malformed or incomplete header, maxval above 255, or a
            size above :data:`~qpebench.datasets.radar.MAX_RADAR_CELLS` pixels.
    """
    if not raw.startswith(b"P5"):
        raise FileFormatError(f"{path}: not a binary PGM: magic {raw[:2]!r}, expected b'P5'")
    meta: dict[str, list[str]] = {}
    tokens: list[int] = []
    pos = 2
    while len(tokens) < 3:
        while pos < len(raw) and raw[pos : pos + 1].isspace():
            pos += 1
        if pos >= len(raw):
            raise FileFormatError(
                f"{path}: PGM header ends before width, height and maxval (in its first "
                f"{len(raw):,} bytes)"
            )
        if raw[pos : pos + 1] == b"#":
            end = raw.find(b"\n", pos)
            if end < 0:
                raise FileFormatError(f"{path}: PGM header ends inside a comment")
            words = raw[pos + 1 : end].decode("latin-1").split()
            if len(words) >= 2:
                meta.setdefault(words[0], words[1:])
                if words[0] == "radar" and words[1] != "{":
                    meta.setdefault("radars", []).append(words[1])
            pos = end + 1
            continue
        end = pos
        while end < len(raw) and raw[end : end + 1].isdigit():
            end += 1
        if end == pos:
            raise FileFormatError(
                f"{path}: malformed PGM header at byte {pos}: {raw[pos : pos + 16]!r}"
            )
        tokens.append(int(raw[pos:end]))
        pos = end
    width, height, maxval = tokens
    if not raw[pos : pos + 1].isspace():
        raise FileFormatError(f"{path}: PGM maxval is not followed by a whitespace byte")
    if not 0 < maxval < 256:
        raise FileFormatError(f"{path}: PGM maxval {maxval} is not supported (1-byte images only)")
    if width <= 0 or height <= 0:
        raise FileFormatError(f"{path}: PGM size {width}x{height} is empty")
    limits.check_declared(
        path, f"PGM size {width}x{height}", width * height, MAX_RADAR_CELLS, unit="pixels"
    )
    meta["maxval"] = [str(maxval)]
    return meta, width, height, pos + 1


def parse_pgm(raw: bytes, path: Path) -> tuple[dict[str, list[str]], npt.NDArray[np.uint8]]:
    """Split a binary PGM into its ``# key value`` comments and its ``(rows, cols)`` image.

    Raises:
        FileFormatError: A bad header (see :func:`_pgm_header`) or fewer data bytes than
            ``width × height``.
    """
    meta, width, height, pos = _pgm_header(raw, path)
    need = width * height
    if len(raw) - pos < need:
        raise FileFormatError(
            f"{path}: truncated PGM: {len(raw) - pos} data bytes, {width}x{height} needs {need}"
        )
    image = np.frombuffer(raw, dtype=np.uint8, count=need, offset=pos).reshape(height, width)
    return meta, image


def _pgm_size(head: bytes, path: Path) -> int:
    """The file size a PGM header at the start of ``head`` declares (header and image)."""
    _, width, height, pos = _pgm_header(head, path)
    return pos + width * height


def _floats(meta: dict[str, list[str]], key: str, n: int, path: Path) -> list[float]:
    try:
        values = [float(v) for v in meta[key][:n]]
    except ValueError:
        raise FileFormatError(
            f"{path}: FMI PGM field {key!r} is not numeric: {meta[key]}"
        ) from None
    if len(values) != n:
        raise FileFormatError(f"{path}: FMI PGM field {key!r} needs {n} numbers: {meta[key]}")
    return values


def pgm_grid(meta: dict[str, list[str]], width: int, height: int, path: Path) -> Grid:
    """The stereographic grid of an FMI PGM from its comment metadata (see module docstring).

    Raises:
        FileFormatError: Not stereographic, or corners that disagree with the pixel size.
    """
    if meta["type"][0] != "stereographic":
        raise FileFormatError(
            f"{path}: FMI PGM projection type {meta['type'][0]!r} is not supported "
            "(only 'stereographic')"
        )
    (lon_0,) = _floats(meta, "centrallongitude", 1, path)
    (lat_0,) = _floats(meta, "centrallatitude", 1, path)
    (lat_ts,) = _floats(meta, "truelatitude", 1, path)
    crs = CRS.from_proj4(
        f"+proj=stere +lat_0={lat_0:g} +lon_0={lon_0:g} +lat_ts={lat_ts:g} "
        f"+R={FMI_PGM_RADIUS:.0f} +x_0=0 +y_0=0 +units=m +no_defs"
    )
    to_xy = Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
    lon1, lat1 = _floats(meta, "bottomleft", 2, path)
    lon2, lat2 = _floats(meta, "topright", 2, path)
    x1, y1 = to_xy.transform(lon1, lat1)
    x2, y2 = to_xy.transform(lon2, lat2)
    dx, dy = (x2 - x1) / width, (y2 - y1) / height
    if not (dx > 0 and dy > 0):
        raise FileFormatError(f"{path}: FMI PGM corners do not span a grid: {x1, y1, x2, y2}")
    for key, size, n in (("metersperpixel_x", dx, width), ("metersperpixel_y", dy, height)):
        if key in meta:
            (stated,) = _floats(meta, key, 1, path)
            if abs(stated - size) * n > size / 4:
                raise FileFormatError(
                    f"{path}: FMI PGM corners span {size * n:.0f} m = {n} × {size:.3f} m, but "
                    f"{key} is {stated} m"
                )
    return Grid.from_corner(crs, x_left=x1, y_top=y2, dx=dx, dy=dy, nx=width, ny=height)


def _decode(
    raw: npt.NDArray[np.integer[Any]], gain: float, offset: float, nodata: int, undetect: int | None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    values = raw.astype(np.float32) * np.float32(gain) + np.float32(offset)
    values[raw == nodata] = np.nan
    no_echo = raw == undetect if undetect is not None else np.zeros(raw.shape, dtype=bool)
    return values, no_echo


def read_fmi_pgm(path: Path) -> xr.DataArray:
    """Read an FMI PGM reflectivity composite (gzip-compressed or not).

    Raises:
        FileFormatError: Bad PGM header, missing FMI metadata, truncated data.
    """
    raw = limits.read_decompressed(
        path, head_limit=lambda head: _pgm_size(head, path), head_bytes=_PGM_HEAD_BYTES
    )
    meta, image = parse_pgm(raw, path)
    missing = [k for k in _PGM_REQUIRED if k not in meta]
    if missing:
        raise FileFormatError(f"{path}: FMI PGM header lacks the comment fields {missing}")
    try:
        valid = utc(meta["obstime"][0], "%Y%m%d%H%M")
    except ValueError:
        raise FileFormatError(f"{path}: bad FMI PGM obstime {meta['obstime'][0]!r}") from None
    grid = pgm_grid(meta, image.shape[1], image.shape[0], path)
    dbz, no_echo = _decode(image, GAIN, OFFSET, NODATA, UNDETECT)
    product = " ".join(meta.get("producttype", []) + meta.get("productname", [])) or "PGM"
    return make_field(
        dbz,
        grid=grid,
        path=path,
        source="fmi_pgm",
        network="FMI",
        product=f"FMI {product}",
        quantity="DBZH",
        units="dBZ",
        kind="reflectivity",
        valid_time=valid,
        no_echo=no_echo,
        attrs={
            "fmi_param": " ".join(meta.get("param", [])),
            "fmi_composite_area": " ".join(meta.get("composite_area", [])),
            "fmi_projection_name": " ".join(meta.get("projection_name", [])),
            "fmi_radars": ",".join(meta.get("radars", [])),
            "producer_zr_a": 223.0,
            "producer_zr_b": 1.53,
        },
    )


# --------------------------------------------------------------------------------------------
# GeoTIFF


def _gdal_items(text: str, path: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """Items of a GDAL_METADATA document, nested (escaped) documents included."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise FileFormatError(f"{path}: GDAL_METADATA is not valid XML ({exc})") from None
    items: dict[str, tuple[str, dict[str, str]]] = {}
    for item in root.iter("Item"):
        name, value = item.get("name", ""), (item.text or "").strip()
        if "<GDALMetadata" in value or "&lt;GDALMetadata" in value:
            items.update(_gdal_items(html.unescape(value) if "&lt;" in value else value, path))
        else:
            items[name] = (value, dict(item.attrib))
    return items


def _is_fmi_geotiff(tif: tifffile.TiffFile) -> bool:
    """FMI's national grid (EPSG:3067, ETRS89 / TM35FIN) and GDAL metadata in dBZ with a gain."""
    tags = tif.pages.first.tags
    if _GDAL_METADATA not in tags or not tif.is_geotiff:
        return False
    text = str(tags[_GDAL_METADATA].value)
    meta = tif.geotiff_metadata or {}
    return "dBZ" in text and "Gain" in text and meta.get("ProjectedCSTypeGeoKey") == _FMI_EPSG


def _sniff_geotiff(probe: Probe) -> bool:
    if probe.compression or probe.head[:4] not in _TIFF_MAGIC:
        return False
    tiff_log = logging.getLogger("tifffile")
    level = tiff_log.level
    tiff_log.setLevel(logging.CRITICAL)  # a broken file is reported by the reader, not here
    try:
        with tifffile.TiffFile(probe.path) as tif:
            return _is_fmi_geotiff(tif)
    except Exception:  # a broken TIFF is simply not ours; read_native reports the details
        return False
    finally:
        tiff_log.setLevel(level)


def geotiff_grid(meta: dict[str, Any] | None, width: int, height: int, path: Path) -> Grid:
    """The grid of a north-up GeoTIFF from tifffile's ``geotiff_metadata``.

    Raises:
        FileFormatError: Missing georeferencing, a rotated/affine transformation, several
            tiepoints, or a CRS that is not an EPSG code.
    """
    if not meta:
        raise FileFormatError(f"{path}: TIFF without GeoTIFF keys (no GeoKeyDirectory)")
    if "ModelTransformation" in meta:
        raise FileFormatError(f"{path}: GeoTIFF ModelTransformation is not supported")
    for name in ("ModelPixelScale", "ModelTiepoint"):
        if name not in meta:
            raise FileFormatError(f"{path}: GeoTIFF lacks the {name} tag")
    tie = [float(v) for v in np.ravel(meta["ModelTiepoint"])]
    if len(tie) != 6:
        raise FileFormatError(f"{path}: GeoTIFF has {len(tie) // 6} tiepoints; one is supported")
    sx, sy = (float(v) for v in meta["ModelPixelScale"][:2])
    if not (sx > 0 and sy > 0):
        raise FileFormatError(f"{path}: GeoTIFF ModelPixelScale {sx, sy} is not positive")
    projected = int(meta.get("GTModelTypeGeoKey", 1)) == 1
    key = "ProjectedCSTypeGeoKey" if projected else "GeographicTypeGeoKey"
    epsg = meta.get(key)
    if not isinstance(epsg, int) or epsg == _USER_DEFINED:
        raise FileFormatError(
            f"{path}: GeoTIFF CRS is not an EPSG code ({key} {epsg}); user-defined projections "
            "are not supported"
        )
    raster_type = int(meta.get("GTRasterTypeGeoKey", _PIXEL_IS_AREA))
    if raster_type not in (_PIXEL_IS_AREA, _PIXEL_IS_POINT):
        raise FileFormatError(f"{path}: unknown GTRasterTypeGeoKey {raster_type}")
    i, j, _, x, y, _ = tie
    shift = 0.5 if raster_type == _PIXEL_IS_POINT else 0.0  # tiepoint at a pixel's centre
    return Grid.from_corner(
        CRS.from_epsg(epsg),
        x_left=x - (i + shift) * sx,
        y_top=y + (j + shift) * sy,
        dx=sx,
        dy=sy,
        nx=width,
        ny=height,
    )


def _number(items: dict[str, tuple[str, dict[str, str]]], name: str, path: Path) -> float:
    if name not in items:
        raise FileFormatError(f"{path}: GDAL_METADATA lacks the {name!r} item")
    try:
        return float(items[name][0])
    except ValueError:
        raise FileFormatError(f"{path}: GDAL_METADATA {name!r} is not a number") from None


def _geotiff_time(items: dict[str, tuple[str, dict[str, str]]], path: Path) -> tuple[datetime, str]:
    if "Observation time" in items:
        text = items["Observation time"][0]
        try:
            return utc(text, "%Y%m%d%H%M"), "GDAL_METADATA Observation time"
        except ValueError:
            raise FileFormatError(f"{path}: bad Observation time {text!r}") from None
    match = _NAME_TIME.search(path.name)
    if match is None:
        raise FileFormatError(
            f"{path}: no 'Observation time' in GDAL_METADATA and no YYYYMMDDhhmm in the file name"
        )
    try:
        return utc(match.group(1), "%Y%m%d%H%M"), "file name"
    except ValueError:
        raise FileFormatError(f"{path}: bad time {match.group(1)!r} in the file name") from None


def read_fmi_geotiff(path: Path) -> xr.DataArray:
    """Read an FMI GeoTIFF reflectivity composite (first, full-resolution image).

    Raises:
        FileFormatError: Not a TIFF, missing GeoTIFF tags or GDAL metadata, not dBZ, unreadable
            (truncated) image data.
    """
    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise FileFormatError(f"{path}: not a readable TIFF file ({exc})") from None
    with tif:
        page = tif.pages.first
        tags = page.tags
        if _GDAL_METADATA not in tags:
            raise FileFormatError(f"{path}: GeoTIFF lacks the GDAL_METADATA tag (gain, offset)")
        items = _gdal_items(str(tags[_GDAL_METADATA].value), path)
        quantity, qattrs = items.get("Quantity", ("", {}))
        if qattrs.get("unit") != "dBZ":
            raise FileFormatError(
                f"{path}: GDAL_METADATA Quantity {quantity!r} has unit {qattrs.get('unit')!r}, "
                "expected 'dBZ'"
            )
        gain, offset = _number(items, "Gain", path), _number(items, "Offset", path)
        nodata = int(_number(items, "Nodata", path)) if "Nodata" in items else None
        if nodata is None and _GDAL_NODATA in tags:
            nodata = int(float(str(tags[_GDAL_NODATA].value).strip("\x00 ")))
        undetect = int(_number(items, "Undetect", path)) if "Undetect" in items else None
        valid, time_from = _geotiff_time(items, path)
        if page.samplesperpixel != 1 or page.dtype != np.uint8 or len(page.shape) != 2:
            raise FileFormatError(
                f"{path}: expected one 8-bit band, got {page.shape} {page.dtype} "
                f"with {page.samplesperpixel} samples per pixel"
            )
        size = page.imagewidth * page.imagelength
        limits.check_declared(path, "TIFF image", size, MAX_RADAR_CELLS, unit="pixels")
        grid = geotiff_grid(tif.geotiff_metadata, page.imagewidth, page.imagelength, path)
        try:
            image = page.asarray()
        except Exception as exc:  # tifffile/imagecodecs raise various errors on broken tiles
            raise FileFormatError(
                f"{path}: cannot decode the GeoTIFF image (truncated or corrupt?): {exc}"
            ) from None
    dbz, no_echo = _decode(image, gain, offset, -1 if nodata is None else nodata, undetect)
    return make_field(
        dbz,
        grid=grid,
        path=path,
        source="fmi_geotiff",
        network="FMI",
        product="FMI GeoTIFF composite",
        quantity="DBZH",
        units="dBZ",
        kind="reflectivity",
        valid_time=valid,
        no_echo=no_echo,
        attrs={
            "fmi_quantity": quantity,
            "gain": gain,
            "offset": offset,
            "time_from": time_from,
        },
    )


register_reader(
    RadarReader(
        name="fmi_pgm",
        network="FMI",
        description="FMI lowest-CAPPI reflectivity composite, gzip PGM (P5) with FMI comments",
        sniff=_sniff_pgm,
        read=read_fmi_pgm,
    )
)
register_reader(
    RadarReader(
        name="fmi_geotiff",
        network="FMI",
        description="FMI reflectivity composite, GeoTIFF with GDAL metadata (EPSG:3067, 250 m)",
        sniff=_sniff_geotiff,
        read=read_fmi_geotiff,
    )
)
