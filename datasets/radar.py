"""Radar truth: one reader interface over every supported radar product.

:func:`read_radar` opens any supported file and returns the surface rain rate in mm/h as an
:class:`xarray.DataArray` on the product's native grid::

    field = read_radar("T_PAAH22_C_EUOC_20241126010000.hdf")     # OPERA NIMBUS, detected
    field = read_radar("fmi.pgm.gz", zr="marshall_palmer")       # reflectivity needs a Z–R

Conventions of every field (native or rain rate):

* dims ``("y", "x")``; 1-D **cell-centre** coordinates ``y`` (rows in file order) and ``x``, in the
  CRS's unit (metres, or degrees for a lat/lon grid); a scalar ``spatial_ref`` coordinate carries
  the CF grid mapping (``crs_wkt``, ``proj4``) and ``attrs["grid_mapping"]`` names it;
* a scalar ``time`` coordinate: the valid time (UTC; the end of the window for accumulations);
* a ``status`` coordinate (uint8, CF flags): ``0`` echo, ``1`` no echo (the radar saw nothing:
  0 mm/h), ``2`` no data (outside coverage, missing, blocked), ``3`` rejected by a quality control
  option. Values are NaN exactly where status is 2 or 3 (and, for native reflectivity, also where
  status is 1: there is no dBZ for "no echo");
* ``quality`` (same shape, 0–1) where the product has a quality field;
* attributes ``source`` (the reader's registry name), ``network``, ``product``, ``quantity`` (the
  product's own name for it: ``RATE``, ``ACRR``, ``DBZH`` …), ``kind`` (``rate``,
  ``accumulation`` or ``reflectivity``), ``units``, ``accumulation_minutes`` (0 for instantaneous
  products), ``start_time``/``end_time`` (the product's window, ISO 8601), ``file``.

:func:`read_native` returns the file's own quantity (mm/h, mm or dBZ) with the same conventions;
:func:`to_rain_rate` converts: accumulations are divided by their period, reflectivity goes through
an explicit :class:`ZRRelation` and never silently. Readers register a :class:`RadarReader` in
:data:`qpebench.registry.RADAR_READERS`; the source of a file is detected from its content.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import numpy.typing as npt
import xarray as xr
from scipy import ndimage

from qpebench import limits
from qpebench.datasets.grid import GRID_MAPPING, Grid
from qpebench.errors import (
    ConfigError,
    ConversionError,
    FileFormatError,
    QpebenchError,
    describe,
)
from qpebench.registry import RADAR_READERS

Kind = Literal["rate", "accumulation", "reflectivity"]

ECHO, NO_ECHO, NO_DATA, REJECTED = 0, 1, 2, 3
STATUS_MEANINGS = "echo no_echo no_data rejected"

#: The most cells a radar grid (or one dataset of a radar file) may declare. The largest real
#: products are far below: MRMS CONUS 3500 × 7000 (24.5 M cells), OPERA 1 km 3800 × 4400
#: (16.7 M), RADOLAN DE4800 4800 × 4400 (21.1 M). Headers declaring more are refused before
#: anything is decompressed or read.
MAX_RADAR_CELLS = 8192 * 8192
#: The most bytes a decompressed radar file or GRIB message may declare: 16 bits for each of
#: :data:`MAX_RADAR_CELLS` (PGM and GIF store 8 bits a cell, RADOLAN 16, MRMS GRIB about 0.3
#: after PNG packing: 1 MB for 24.5 M cells). A stream longer than its header declares is
#: refused after at most twice this plus 1 MiB (:data:`qpebench.limits.DECLARED_FACTOR`).
MAX_RADAR_BYTES = 2 * MAX_RADAR_CELLS
_NAMES = {"rate": "rain_rate", "accumulation": "rain_amount", "reflectivity": "reflectivity"}


@dataclass(frozen=True)
class Probe:
    """What source detection sees of a file: its first bytes and, for HDF5, its top level.

    Attributes:
        path: The file.
        head: The first bytes (up to 4 KiB), decompressed when the file is gzip- or
            bzip2-compressed.
        compression: ``"gzip"``, ``"bzip2"`` or ``""`` (not compressed).
        hdf5_keys: Names at the HDF5 root (empty when the file is not HDF5).
        hdf5_attrs: Attributes of the HDF5 root (empty when the file is not HDF5).
    """

    path: Path
    head: bytes
    compression: str
    hdf5_keys: frozenset[str] = frozenset()
    hdf5_attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RadarReader:
    """A registered reader of one radar product family.

    Attributes:
        name: Registry name, also the ``source`` attribute of its fields.
        network: Radar network or provider (``"OPERA"``, ``"MRMS"``, ``"DWD"`` …).
        description: One line: the products it reads.
        sniff: Whether a probed file is this reader's (content, not file name alone).
        read: Reads the file into a native field (see the module docstring).
    """

    name: str
    network: str
    description: str
    sniff: Callable[[Probe], bool]
    read: Callable[[Path], xr.DataArray]


def register_reader(reader: RadarReader) -> RadarReader:
    """Register ``reader`` in :data:`~qpebench.registry.RADAR_READERS` under its name."""
    return RADAR_READERS.register(reader.name, reader)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ZRRelation:
    """A Z–R relation ``Z = a · R^b`` (Z in mm⁶ m⁻³, R in mm/h).

    Attributes:
        a: Multiplier.
        b: Exponent.
        name: Label recorded in the field's attributes.
    """

    a: float
    b: float
    name: str = "custom"

    def __post_init__(self) -> None:
        if not (self.a > 0 and self.b > 0):
            raise ConfigError(f"Z–R relation needs a > 0 and b > 0, got a={self.a}, b={self.b}")

    def rain_rate(self, dbz: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Rain rate in mm/h from reflectivity in dBZ (NaN stays NaN)."""
        z = np.power(10.0, np.asarray(dbz, dtype=np.float64) / 10.0)
        return np.power(z / self.a, 1.0 / self.b).astype(np.float32)


#: Named Z–R relations: Marshall & Palmer (1948), the WSR-88D convective default
#: (Fulton et al. 1998) and Rosenfeld et al. (1993) tropical.
ZR_RELATIONS: dict[str, ZRRelation] = {
    "marshall_palmer": ZRRelation(200.0, 1.6, "marshall_palmer"),
    "wsr88d_convective": ZRRelation(300.0, 1.4, "wsr88d_convective"),
    "rosenfeld_tropical": ZRRelation(250.0, 1.2, "rosenfeld_tropical"),
}


def zr_relation(spec: ZRRelation | str | tuple[float, float]) -> ZRRelation:
    """A :class:`ZRRelation` from itself, a name in :data:`ZR_RELATIONS` or ``(a, b)``.

    Raises:
        ConfigError: Unknown name or malformed tuple.
    """
    if isinstance(spec, ZRRelation):
        return spec
    if isinstance(spec, str):
        if spec not in ZR_RELATIONS:
            raise ConfigError(
                f"unknown Z–R relation {spec!r}; choices: {', '.join(sorted(ZR_RELATIONS))} "
                "or a tuple (a, b)"
            )
        return ZR_RELATIONS[spec]
    try:
        a, b = spec
        return ZRRelation(float(a), float(b))
    except (TypeError, ValueError):
        raise ConfigError(
            f"a Z–R relation is a name ({', '.join(sorted(ZR_RELATIONS))}), a ZRRelation or a "
            f"pair of numbers (a, b); got {spec!r}"
        ) from None


@dataclass(frozen=True)
class QualityControl:
    """Optional rejection of doubtful cells, applied to the rain rate by :func:`read_radar`.

    Rejected cells become NaN with status ``rejected`` (3), so they are kept apart from both "no
    echo" and "no data". Which options suit which product is documented in its data card.

    Attributes:
        min_quality: Reject cells whose ``quality`` is below this or missing (needs a product
            with a quality field, e.g. OPERA's ``QIND``/``qi_total``).
        max_rate: Reject rates above this many mm/h (physically implausible at the surface).
        spike_rate: Reject isolated spikes: cells at or above this many mm/h ...
        spike_factor: ... that exceed every one of their 8 neighbours by at least this factor.
    """

    min_quality: float | None = None
    max_rate: float | None = None
    spike_rate: float | None = None
    spike_factor: float = 5.0

    def __post_init__(self) -> None:
        if self.min_quality is not None and not 0.0 <= self.min_quality <= 1.0:
            raise ConfigError(f"min_quality must be within 0–1, got {self.min_quality}")
        for name in ("max_rate", "spike_rate"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0 mm/h, got {value}")
        if not self.spike_factor > 1:
            raise ConfigError(f"spike_factor must be > 1, got {self.spike_factor}")

    def rejected(self, field: xr.DataArray) -> npt.NDArray[np.bool_]:
        """The cells of a rain-rate field these options reject (NaN cells are never flagged).

        Raises:
            ConfigError: ``min_quality`` is set but the product has no quality field.
        """
        rate = np.asarray(field.values)
        finite = np.isfinite(rate)
        out = np.zeros(rate.shape, dtype=bool)
        if self.min_quality is not None:
            if "quality" not in field.coords:
                raise ConfigError(
                    f"{field.attrs.get('file')}: min_quality needs a quality field, and "
                    f"{field.attrs.get('source')} product {field.attrs.get('product')!r} has none"
                )
            quality = np.asarray(field.coords["quality"].values)
            out |= finite & ~(quality >= self.min_quality)
        if self.max_rate is not None:
            out |= finite & (rate > self.max_rate)
        if self.spike_rate is not None:
            filled = np.where(finite, rate, 0.0)
            footprint = np.ones((3, 3), dtype=bool)
            footprint[1, 1] = False
            neighbours = ndimage.maximum_filter(filled, footprint=footprint, mode="constant")
            out |= finite & (rate >= self.spike_rate) & (rate >= self.spike_factor * neighbours)
        return out


def make_field(
    values: npt.ArrayLike,
    *,
    grid: Grid,
    source: str,
    network: str,
    product: str,
    quantity: str,
    units: str,
    kind: Kind,
    valid_time: datetime,
    path: Path,
    start_time: datetime | None = None,
    accumulation_minutes: float = 0.0,
    no_echo: npt.ArrayLike | None = None,
    quality: npt.ArrayLike | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Assemble a native field with the conventions of this module (for readers).

    Args:
        values: ``(rows, cols)`` values in ``units``; NaN where there is no data. A float32
            array is used (and modified) in place.
        grid: The product's grid (cell centres).
        source: The reader's registry name.
        network: Radar network or provider.
        product: Product name (as the provider calls it).
        quantity: The provider's name for the quantity (``RATE``, ``ACRR``, ``DBZH`` …).
        units: Units of ``values`` (``mm/h``, ``mm`` or ``dBZ``).
        kind: ``rate``, ``accumulation`` or ``reflectivity``.
        valid_time: Valid time (UTC); the end of the window for accumulations.
        path: The file read.
        start_time: Start of the product's window (defaults to ``valid_time``).
        accumulation_minutes: Accumulation period; required (> 0) for accumulations.
        no_echo: Cells the radar saw and found no echo in ("undetect"). Zero rates and amounts
            count as no echo without it.
        quality: Quality field (0–1), when the product has one.
        attrs: Further product attributes (strings or numbers).

    Raises:
        FileFormatError: Inconsistent shapes, or an accumulation without a period.
    """
    data = np.asarray(values, dtype=np.float32)
    if data.shape != grid.shape:
        raise FileFormatError(f"{path}: data shape {data.shape} differs from grid {grid.shape}")
    if kind == "accumulation" and not accumulation_minutes > 0:
        raise FileFormatError(f"{path}: accumulation product without an accumulation period")
    status = np.where(np.isnan(data), np.uint8(NO_DATA), np.uint8(ECHO))
    quiet = np.zeros(data.shape, dtype=bool) if no_echo is None else np.asarray(no_echo, bool)
    if kind != "reflectivity":
        quiet |= data == 0
        data[quiet] = 0.0
    else:
        data[quiet] = np.nan
    status[quiet] = NO_ECHO
    coords: dict[str, Any] = dict(grid.coords())
    coords["time"] = ((), np_time(valid_time))
    coords["status"] = (
        ("y", "x"),
        status,
        {
            "flag_values": np.array([ECHO, NO_ECHO, NO_DATA, REJECTED], np.uint8),
            "flag_meanings": STATUS_MEANINGS,
        },
    )
    if quality is not None:
        q = np.asarray(quality, dtype=np.float32)
        if q.shape != grid.shape:
            raise FileFormatError(f"{path}: quality shape {q.shape} differs from grid {grid.shape}")
        coords["quality"] = (("y", "x"), q, {"long_name": "quality index", "units": "1"})
    meta: dict[str, Any] = {
        "long_name": f"{product} {quantity}",
        "units": units,
        "source": source,
        "network": network,
        "product": product,
        "quantity": quantity,
        "kind": kind,
        "accumulation_minutes": float(accumulation_minutes),
        "start_time": iso_time(start_time or valid_time),
        "end_time": iso_time(valid_time),
        "file": str(path),
        "grid_mapping": GRID_MAPPING,
    }
    if kind == "rate":
        meta["standard_name"] = "rainfall_rate"
    meta.update(attrs or {})
    return xr.DataArray(data, dims=("y", "x"), coords=coords, attrs=meta, name=_NAMES[kind])


def to_rain_rate(
    field: xr.DataArray, zr: ZRRelation | str | tuple[float, float] | None = None
) -> xr.DataArray:
    """Convert a native field to rain rate in mm/h.

    Accumulations are divided by their period (recorded in ``accumulation_minutes``);
    reflectivity needs ``zr`` and converts through ``Z = a R^b`` (no-echo cells become 0 mm/h).
    The result's ``kind`` is ``rate`` (the original in ``native_kind``), so converting twice
    changes nothing.

    Args:
        field: A field from :func:`read_native`.
        zr: Z–R relation for reflectivity products (ignored for the others).

    Raises:
        ConversionError: Reflectivity without ``zr``.
    """
    kind = field.attrs["kind"]
    attrs = dict(field.attrs)
    if kind == "rate":  # already mm/h: a native rate, or a field converted before
        if "native_kind" in attrs:
            return field
        out = field.copy(deep=False)
        out.attrs = {**attrs, "native_kind": "rate", "native_units": attrs["units"]}
        return out
    if kind == "accumulation":
        hours = float(attrs["accumulation_minutes"]) / 60.0
        rate = (np.asarray(field.values, np.float64) / hours).astype(np.float32)
        attrs["comment"] = f"mean rate over the {attrs['accumulation_minutes']:g}-min accumulation"
    else:
        if zr is None:
            raise ConversionError(
                f"{attrs.get('file')}: holds radar reflectivity ({attrs.get('quantity')}, dBZ); "
                "rain rate needs an explicit Z–R relation: pass zr='marshall_palmer' "
                f"(Z = 200 R^1.6), another of {sorted(ZR_RELATIONS)} or zr=(a, b)"
            )
        relation = zr_relation(zr)
        rate = relation.rain_rate(field.values)
        rate[np.asarray(field.coords["status"].values) == NO_ECHO] = 0.0
        attrs.update(zr_name=relation.name, zr_a=relation.a, zr_b=relation.b)
        attrs["comment"] = f"rain rate from reflectivity via Z = {relation.a:g} R^{relation.b:g}"
    attrs.update(
        units="mm/h",
        long_name="surface rain rate",
        standard_name="rainfall_rate",
        kind="rate",
        native_kind=kind,
    )
    attrs["native_units"] = field.attrs["units"]
    out = field.copy(deep=False, data=rate)
    out.attrs = attrs
    out.name = "rain_rate"
    return out


def detect_source(path: str | os.PathLike[str]) -> str:
    """The name of the registered reader that recognises the file's content.

    Raises:
        FileNotFoundError: No such file.
        FileFormatError: Empty, a directory, unreadable, or of no known radar format.
    """
    probe = probe_file(Path(path))
    matches, broken = [], []
    for name in RADAR_READERS.names():
        try:
            if RADAR_READERS.get(name).sniff(probe):
                matches.append(name)
        except Exception as exc:  # a faulty (plugin) sniff must not stop detection
            broken.append(f"{name}: {type(exc).__name__}: {exc}")
    if not matches:
        failed = f"; sniff errors: {'; '.join(broken)}" if broken else ""
        raise FileFormatError(
            f"{probe.path}: not a known radar product ({_describe(probe)}){failed}"
        )
    if len(matches) > 1:
        raise FileFormatError(
            f"{probe.path}: ambiguous content, matches readers {matches}; pass source="
        )
    return matches[0]


def probe_file(path: Path) -> Probe:
    """Read what detection needs: the first bytes (decompressed if gzip) and the HDF5 root.

    Raises:
        FileNotFoundError: No such file.
        FileFormatError: Empty, a directory, a broken gzip or bzip2 stream or an unopenable HDF5
            file.
    """
    if path.is_dir():
        raise FileFormatError(f"{path}: is a directory; use scan_radar() for a whole archive")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    codec, head = limits.read_head(path)
    compression = codec or ""
    if not head and not compression:
        raise FileFormatError(f"{path}: empty file (0 bytes)")
    if not head:
        raise FileFormatError(f"{path}: empty after {compression} decompression")
    if not head.startswith(limits.HDF5_MAGIC):
        return Probe(path, head, compression)
    with open_hdf5(path) as h5, reader_errors(path, "HDF5"):
        keys = frozenset(h5.keys())
        root = decoded_attrs(h5)
    return Probe(path, head, compression, keys, root)


def hdf5_source(path: Path) -> Path | io.BytesIO:
    """What h5py should open: the file itself, or its bytes when it is gzip- or bzip2-compressed.

    A plain file must be as long as its superblock declares; a compressed one is decompressed
    only up to that size (see :mod:`qpebench.limits`) and must reach it.

    Raises:
        FileFormatError: Not HDF5, a bad superblock, shorter than the superblock declares, beyond
            a cap, or a corrupt compressed stream.
    """
    with path.open("rb") as fh:
        head = fh.read(limits.SUPERBLOCK_BYTES)
    if limits.detect_codec(head) is None:
        limits.check_hdf5_length(path, path.stat().st_size, limits.hdf5_size(head, path))
        return path
    data = limits.read_decompressed(path, head_limit=lambda head: limits.hdf5_size(head, path))
    limits.check_hdf5_length(
        path, len(data), limits.hdf5_size(data[: limits.SUPERBLOCK_BYTES], path)
    )
    return io.BytesIO(data)


def open_hdf5(path: Path, source: Path | io.BytesIO | None = None) -> h5py.File:
    """Open an HDF5 (or netCDF4) file for reading; a gzip or bzip2 one is decompressed in memory.

    Args:
        path: The file.
        source: What :func:`hdf5_source` returned for it, when the caller needs it again
            (default: computed here).

    Raises:
        FileFormatError: The file (or its decompressed content) is not HDF5, is shorter than its
            superblock declares, or cannot be opened.
    """
    try:
        return h5py.File(hdf5_source(path) if source is None else source, "r")
    except (OSError, EOFError) as exc:
        raise FileFormatError(
            f"{path}: HDF5 file cannot be opened (truncated or corrupt): {exc}"
        ) from None


def dataset_values(
    h5: h5py.File, name: str, path: Path, maximum: int | None = None
) -> npt.NDArray[Any]:
    """An HDF5 dataset's values, refused before reading when its shape declares too many.

    Its deflate chunks are checked first (:func:`qpebench.limits.check_hdf5_chunks`), so a chunk
    bomb is refused instead of inflated by libhdf5.

    Args:
        h5: The open file.
        name: The dataset's path in the file.
        path: The file, for messages.
        maximum: The most elements accepted (default: :data:`MAX_RADAR_CELLS`).

    Raises:
        FileFormatError: ``name`` is not a dataset, holds more than ``maximum`` elements, has a
            chunk that inflates beyond its size, or cannot be read (truncated, corrupt chunks).
    """
    node = h5.get(name)
    if not isinstance(node, h5py.Dataset):
        raise FileFormatError(f"{path}: /{name} is not an HDF5 dataset")
    most = MAX_RADAR_CELLS if maximum is None else maximum
    limits.check_declared(path, f"dataset /{name} {node.shape}", node.size, most)
    limits.check_hdf5_chunks(node, path)
    try:
        return np.asarray(node[()])
    except (OSError, ValueError, TypeError) as exc:
        raise FileFormatError(f"{path}: cannot read /{name} (truncated?): {exc}") from None


def read_native(path: str | os.PathLike[str], *, source: str | None = None) -> xr.DataArray:
    """Read a radar file in its own quantity and units (mm/h, mm or dBZ).

    Args:
        path: The file.
        source: A registered reader's name; detected from the content when ``None``.

    Raises:
        FileNotFoundError: No such file.
        FileFormatError: The file is empty, truncated, of an unknown format, lacks required
            attributes, or declares or decompresses to more than :mod:`qpebench.limits` allows
            (checked before reading); any other failure inside a reader becomes one too. The
            message is one line naming the file and the problem.
        UnknownNameError: ``source`` is not a registered reader.
    """
    path = Path(path)
    name = detect_source(path) if source is None else source
    reader: RadarReader = RADAR_READERS.get(name)
    if source is not None:
        probe_file(path)  # empty, missing or unopenable files get the same messages
    with reader_errors(path, name):
        field = reader.read(path)
    return field


@contextmanager
def reader_errors(path: Path, reader: str) -> Iterator[None]:
    """Turn any failure inside a reader into a :class:`FileFormatError` naming file and reader.

    qpebench's own errors and ``FileNotFoundError`` pass through unchanged.
    """
    try:
        yield
    except (QpebenchError, FileNotFoundError):
        raise
    except Exception as exc:  # any failure inside a reader is a problem of this file
        raise FileFormatError(f"{path}: cannot read as {reader}: {describe(exc)}") from exc


def read_radar(
    path: str | os.PathLike[str],
    *,
    source: str | None = None,
    zr: ZRRelation | str | tuple[float, float] | None = None,
    qc: QualityControl | None = None,
) -> xr.DataArray:
    """Read a radar file as surface rain rate in mm/h on its native grid.

    Args:
        path: The file.
        source: A registered reader's name; detected from the content when ``None``.
        zr: Z–R relation for reflectivity products (required for them, ignored otherwise).
        qc: Quality-control options (none applied by default).

    Returns:
        The rain-rate field (conventions in the module docstring).

    Raises:
        FileNotFoundError: No such file.
        FileFormatError: Bad file (see :func:`read_native`).
        ConversionError: A reflectivity product and no ``zr``.
        ConfigError: A ``qc`` option the product cannot support.
    """
    rate = to_rain_rate(read_native(path, source=source), zr=zr)
    if qc is None:
        return rate
    reject = qc.rejected(rate)
    status = np.asarray(rate.coords["status"].values).copy()
    status[reject] = REJECTED
    values = np.asarray(rate.values).copy()
    values[reject] = np.nan
    out = rate.copy(deep=False, data=values)
    out.coords["status"] = (("y", "x"), status, rate.coords["status"].attrs)
    out.attrs["quality_control"] = repr(qc)
    return out


def summarize(field: xr.DataArray) -> dict[str, Any]:
    """What a field holds, as the stable dictionary ``qpebench inspect --json`` prints.

    Keys (documented in ``docs/data/README.md``): ``file``, ``source``, ``network``, ``product``,
    ``quantity``, ``kind``, ``units``, ``shape`` ``[rows, cols]``, ``crs`` (PROJ string),
    ``cell_size`` ``[dx, dy]``, ``cell_size_units``, ``valid_time``, ``start_time``,
    ``accumulation_minutes``, ``counts`` (``cells``, ``valid`` = echo + no echo, ``echo``,
    ``no_echo``, ``no_data``, ``rejected``), ``stats`` (``min``, ``mean``, ``max`` of the valid
    values in ``units``, no-echo cells counted as 0 for rates and amounts; ``null`` when none)
    and ``has_quality``.
    """
    grid = Grid.of(field)
    status = np.asarray(field.coords["status"].values)
    counts = {
        "cells": int(status.size),
        "valid": int(np.count_nonzero(status <= NO_ECHO)),
        "echo": int(np.count_nonzero(status == ECHO)),
        "no_echo": int(np.count_nonzero(status == NO_ECHO)),
        "no_data": int(np.count_nonzero(status == NO_DATA)),
        "rejected": int(np.count_nonzero(status == REJECTED)),
    }
    values = np.asarray(field.values, np.float64)
    finite = values[np.isfinite(values)]
    stats = (
        {"min": float(finite.min()), "mean": float(finite.mean()), "max": float(finite.max())}
        if finite.size
        else {"min": None, "mean": None, "max": None}
    )
    return {
        "file": field.attrs["file"],
        "source": field.attrs["source"],
        "network": field.attrs["network"],
        "product": field.attrs["product"],
        "quantity": field.attrs["quantity"],
        "kind": field.attrs["kind"],
        "units": field.attrs["units"],
        "shape": list(grid.shape),
        "crs": grid.proj4,
        "cell_size": [grid.dx, grid.dy],
        "cell_size_units": grid.units,
        "valid_time": field.attrs["end_time"],
        "start_time": field.attrs["start_time"],
        "accumulation_minutes": field.attrs["accumulation_minutes"],
        "counts": counts,
        "stats": stats,
        "has_quality": "quality" in field.coords,
    }


@dataclass(frozen=True)
class BadFile:
    """A file a scan could not read, and why."""

    path: Path
    error: str


@dataclass(frozen=True)
class RadarScan:
    """Result of :func:`scan_radar`: a summary per good file and the bad files with reasons."""

    good: list[dict[str, Any]]
    bad: list[BadFile]

    def report(self) -> str:
        """A short text report: counts, then one line per bad file."""
        lines = [f"{len(self.good)} radar files read, {len(self.bad)} bad"]
        lines += [f"  {bad.error}" for bad in self.bad]
        return "\n".join(lines)


def scan_radar(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    pattern: str = "*",
    source: str | None = None,
) -> RadarScan:
    """Read every file of a directory (or a list of files); skip and report the bad ones.

    Each file is read completely (so a truncated file is caught here, not during training) and
    only its :func:`summarize` dictionary is kept. Hidden files are ignored.

    Args:
        paths: A directory (searched recursively with ``pattern``) or an iterable of files.
        pattern: Shell pattern of file names within a directory.
        source: Force one reader instead of detecting each file's source.

    Returns:
        The summaries of the good files, sorted by valid time then path, and the bad files.

    Raises:
        FileNotFoundError: ``paths`` names a directory that does not exist.
        UnknownNameError: ``source`` is not a registered reader.
    """
    if source is not None:
        RADAR_READERS.get(source)  # an unknown name fails once, not once per file
    if isinstance(paths, str | os.PathLike):
        root = Path(paths)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such directory")
        files: Sequence[Path] = sorted(
            p for p in root.rglob(pattern) if p.is_file() and not p.name.startswith(".")
        )
    else:
        files = [Path(p) for p in paths]
    good, bad = [], []
    for file in files:
        try:
            good.append(summarize(read_native(file, source=source)))
        except (QpebenchError, OSError) as exc:
            bad.append(BadFile(file, str(exc)))
    good.sort(key=lambda s: (s["valid_time"], s["file"]))
    return RadarScan(good, bad)


def utc(text: str, fmt: str) -> datetime:
    """Parse a UTC timestamp with ``fmt`` (e.g. ``"%Y%m%d%H%M%S"``)."""
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def attr_text(value: Any) -> str:
    """An HDF5 string attribute (bytes, numpy bytes or an array of them) as str."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return " ".join(attr_text(v) for v in value.ravel())
        value = value.ravel()[0]
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", "replace").strip("\x00").strip()
    return str(value).strip()


def decoded_attrs(node: h5py.Group | h5py.Dataset | None) -> dict[str, Any]:
    """An HDF5 node's attributes with byte strings decoded (numbers and arrays as stored)."""
    if node is None:
        return {}
    return {
        key: attr_text(value)
        if isinstance(value, bytes | np.bytes_)
        or (isinstance(value, np.ndarray) and value.dtype.kind == "S")
        else value
        for key, value in node.attrs.items()
    }


def np_time(t: datetime) -> np.datetime64:
    """A datetime (aware or naive UTC) as ``datetime64[ns]`` UTC."""
    naive = t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t
    return np.datetime64(naive, "ns")


def iso_time(t: datetime) -> str:
    """A datetime (aware or naive UTC) as ISO 8601 UTC with a ``Z``."""
    aware = t if t.tzinfo else t.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _describe(probe: Probe) -> str:
    if probe.hdf5_keys:
        keys = ", ".join(sorted(probe.hdf5_keys)[:8])
        return f"HDF5 with top-level {keys}; no reader recognises it"
    kind = f"{probe.compression} data starting with" if probe.compression else "starts with"
    readers = ", ".join(RADAR_READERS.names())
    return f"{kind} {probe.head[:16]!r}; known readers: {readers}"
