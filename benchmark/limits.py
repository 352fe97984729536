"""What hostile or broken input may cost: bounded decompression and checked declared sizes.

Every reader and loader that decompresses data itself (gzip, bzip2, zlib streams, zip members)
goes through :func:`decompress_bounded` or :func:`read_zip_member`, and every size a file declares
(array shapes, element counts, parameter counts) is checked with :func:`check_declared` before
anything is allocated. Two caps apply to decompressed output:

- the size the file's own header declares, times :data:`DECLARED_FACTOR` plus
  :data:`DECLARED_SLACK` (a header may understate by a little: padding, trailing metadata);
- one global limit, :func:`max_decompressed_bytes`: the environment variable
  ``QPEBENCH_MAX_DECOMPRESSED`` (bytes, or with a suffix ``K``, ``M``, ``G``: ``512M``), else a
  quarter of the machine's memory, at most 4 GiB.

Passing either cap is a one-line :class:`~qpebench.errors.FileFormatError` naming the file and both
sizes; decompression stops there, so the memory used is bounded by the cap, not by the file.
``docs/security.md`` lists what qpebench trusts and every limit.
"""

from __future__ import annotations

import bz2
import math
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final, Literal

import h5py
import numpy as np

from qpebench.errors import ConfigError, FileFormatError

ENV_MAX_DECOMPRESSED: Final = "QPEBENCH_MAX_DECOMPRESSED"
"""Environment variable overriding the global cap on one file's decompressed size."""

DEFAULT_CAP_BYTES: Final = 4 * 1024**3
"""Upper end of the default global cap (the default is a quarter of memory, at most this)."""

DECLARED_FACTOR: Final = 2
"""A stream may decompress to at most this many times the size its header declares ..."""

DECLARED_SLACK: Final = 1024 * 1024
"""... plus this many bytes."""

HDF5_MAGIC: Final = b"\x89HDF\r\n\x1a\n"
"""The signature that starts an HDF5 (and netCDF4) file."""

SUPERBLOCK_BYTES: Final = 256
"""More than the fixed part of any HDF5 superblock version (0–3)."""

DEFLATE_MAX_RATIO: Final = 1032
"""The most a deflate stream can expand (258 bytes per 2 bits of a run of matches, RFC 1951)."""

HDF5_CHUNK_HARMLESS: Final = 64 * 1024**2
"""An HDF5 deflate chunk that can inflate to at most this many bytes is left to libhdf5."""

_CHUNK: Final = 1 << 20  # bytes of output of the first decompression step (then doubling)
_OFFSET_SIZES: Final = (2, 4, 8, 16, 32)
_H5Z_FILTER_DEFLATE: Final = 1
_H5Z_FILTER_SHUFFLE: Final = 2
_H5Z_FILTER_FLETCHER32: Final = 3
_H5Z_CHECKED: Final = frozenset({_H5Z_FILTER_DEFLATE, _H5Z_FILTER_SHUFFLE, _H5Z_FILTER_FLETCHER32})
_READ_STEP: Final = 1 << 16  # bytes of a compressed file read at a time for its head
_GZIP_MAGIC: Final = b"\x1f\x8b"
_BZIP2_MAGIC: Final = b"BZh"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_UNITS: Final = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}

Codec = Literal["gzip", "bzip2", "zlib"]
HeadLimit = Callable[[bytes], int | None]
"""Given the first decompressed bytes, the size the header declares (``None``: declares none)."""


def parse_size(text: str, what: str = ENV_MAX_DECOMPRESSED) -> int:
    """A byte count such as ``"1073741824"``, ``"512M"`` or ``"2GiB"``.

    Raises:
        ConfigError: Not a positive size.
    """
    match = _SIZE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"{what}={text!r} is not a positive size (bytes, or e.g. 512M, 2G)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 4 * DEFAULT_CAP_BYTES


def max_decompressed_bytes() -> int:
    """The global cap on what one file (or zip member, or stream) may decompress to.

    ``QPEBENCH_MAX_DECOMPRESSED`` when set, else a quarter of the physical memory, at most
    :data:`DEFAULT_CAP_BYTES`.

    Raises:
        ConfigError: The environment variable is not a size.
    """
    text = os.environ.get(ENV_MAX_DECOMPRESSED)
    if text:
        return parse_size(text)
    return min(_physical_memory() // 4, DEFAULT_CAP_BYTES)


def human(n: int) -> str:
    """A byte count for a message: ``1,048,576 bytes (1.0 MiB)``."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n:,} bytes ({n / size:.1f} {unit})"
    return f"{n:,} bytes"


def _limit_for(name: str | os.PathLike[str], declared: int | None) -> tuple[int, str]:
    """The effective cap and a phrase saying where it comes from."""
    cap = max_decompressed_bytes()
    if declared is None:
        return cap, f"the limit {human(cap)} ({ENV_MAX_DECOMPRESSED})"
    if declared < 0 or declared > cap:
        raise FileFormatError(
            f"{name}: header declares {human(max(declared, 0))} of data, more than the limit "
            f"{human(cap)} ({ENV_MAX_DECOMPRESSED}); refused before decompressing"
        )
    allowed = min(cap, declared * DECLARED_FACTOR + DECLARED_SLACK)
    return allowed, f"{human(allowed)} allowed by the {human(declared)} its header declares"


def detect_codec(data: bytes) -> Codec | None:
    """``"gzip"`` or ``"bzip2"`` from the magic bytes, else ``None`` (plain data)."""
    if data.startswith(_GZIP_MAGIC):
        return "gzip"
    if data.startswith(_BZIP2_MAGIC):
        return "bzip2"
    return None


def _decompressor(codec: Codec) -> zlib._Decompress | bz2.BZ2Decompressor:
    if codec == "bzip2":
        return bz2.BZ2Decompressor()
    return zlib.decompressobj(16 + zlib.MAX_WBITS if codec == "gzip" else zlib.MAX_WBITS)


def decompress_bounded(
    data: bytes,
    codec: Codec,
    name: str | os.PathLike[str],
    *,
    declared: int | None = None,
    head_limit: HeadLimit | None = None,
    head_bytes: int = 4096,
) -> bytes:
    """Decompress ``data`` without ever holding more output than the caps allow.

    Concatenated gzip members and bzip2 streams are read as one (as ``gzip``/``bz2`` do).

    Args:
        data: The compressed bytes.
        codec: ``"gzip"``, ``"bzip2"`` or ``"zlib"`` (a raw zlib stream, as in HDF5/zarr chunks
            and record fields).
        name: The file (or ``file:key``) for messages.
        declared: The decompressed size the container declares, if known before decompressing.
        head_limit: Called once with the first ``head_bytes`` of output (or all of it, if
            shorter); returns the size the header there declares (``None`` for none). Used
            for formats whose header is itself compressed (an HDF5 superblock, a PGM header).
        head_bytes: How much output ``head_limit`` needs.

    Returns:
        The decompressed bytes.

    Raises:
        FileFormatError: A corrupt or truncated stream, or output beyond a cap (the message
            names the file, the cap and where it comes from).
    """
    limit, why = _limit_for(name, declared)
    pieces: list[bytes] = []
    size = 0
    pending = data
    head_checked = head_limit is None
    while True:
        engine = _decompressor(codec)
        try:
            while not engine.eof:
                # steps grow with the output (bz2 is slow in small steps), never past the cap
                step = min(max(_CHUNK, size), limit + 1 - size)
                if isinstance(engine, bz2.BZ2Decompressor):
                    piece = engine.decompress(pending, step)
                    pending = b""
                    stalled = engine.needs_input and not piece
                else:
                    piece = engine.decompress(pending, step)
                    pending = engine.unconsumed_tail
                    stalled = not pending and not piece
                pieces.append(piece)
                size += len(piece)
                if size > limit:
                    raise FileFormatError(
                        f"{name}: decompresses to more than {why}; refused "
                        f"({human(len(data))} compressed)"
                    )
                if not head_checked and (size >= head_bytes or engine.eof or stalled):
                    head_checked = True
                    head = b"".join(pieces)[:head_bytes]
                    declared_here = head_limit(head) if head_limit else None
                    if declared_here is not None:
                        limit, why = _limit_for(name, declared_here)
                if stalled:
                    raise FileFormatError(f"{name}: truncated {codec} stream (ends early)")
        except FileFormatError:
            raise
        except (zlib.error, OSError, EOFError, ValueError) as exc:
            raise FileFormatError(f"{name}: corrupt {codec} stream ({exc})") from None
        rest = engine.unused_data
        if codec == "zlib" or not rest or detect_codec(rest) != codec:
            break  # trailing garbage after the last member is ignored, as gzip/bz2 do
        pending = rest
    return b"".join(pieces)


def read_head(path: Path, n: int = 4096) -> tuple[Codec | None, bytes]:
    """A file's codec and first ``n`` bytes, decompressed when gzip or bzip2 magic starts it.

    Only as much of the file is read as ``n`` bytes of output need (bzip2 yields output block by
    block, after up to 900 kB of input); what detection looks at, never more.

    Raises:
        FileFormatError: A corrupt compressed stream.
        FileNotFoundError: No such file.
    """
    with path.open("rb") as fh:
        raw = fh.read(n)
        codec = detect_codec(raw)
        if codec is None:
            return None, raw
        engine = _decompressor(codec)
        pieces: list[bytes] = []
        size, pending = 0, raw
        try:
            while size < n and not engine.eof and pending:
                piece = engine.decompress(pending, n - size)
                pieces.append(piece)
                size += len(piece)
                if isinstance(engine, bz2.BZ2Decompressor):
                    pending = fh.read(_READ_STEP) if engine.needs_input else b""
                else:  # input left over means the output is full
                    pending = engine.unconsumed_tail or fh.read(_READ_STEP)
        except (zlib.error, OSError, EOFError, ValueError) as exc:
            raise FileFormatError(f"{path}: corrupt {codec} stream ({exc})") from None
    return codec, b"".join(pieces)


def read_decompressed(
    path: Path,
    *,
    declared: int | None = None,
    head_limit: HeadLimit | None = None,
    head_bytes: int = 4096,
) -> bytes:
    """A file's bytes, decompressed (bounded) when gzip or bzip2 magic starts it.

    A plain file is returned as read, after checking its size against the global cap.
    ``declared``, ``head_limit`` and ``head_bytes`` are as for :func:`decompress_bounded`.

    Raises:
        FileFormatError: Corrupt, truncated or beyond a cap (see :func:`decompress_bounded`).
        FileNotFoundError: No such file.
    """
    size = path.stat().st_size
    cap = max_decompressed_bytes()
    if size > cap:
        raise FileFormatError(
            f"{path}: {human(size)}, more than the limit {human(cap)} ({ENV_MAX_DECOMPRESSED})"
        )
    data = path.read_bytes()
    codec = detect_codec(data)
    if codec is None:
        return data
    return decompress_bounded(
        data, codec, path, declared=declared, head_limit=head_limit, head_bytes=head_bytes
    )


def read_zip_member(
    archive: zipfile.ZipFile, member: str | zipfile.ZipInfo, name: str | os.PathLike[str]
) -> bytes:
    """One member of a zip archive, refused before reading if it declares more than the cap.

    ``zipfile`` never returns more than the member's declared ``file_size`` (and checks its
    CRC), so checking the declared size bounds the output.

    Raises:
        FileFormatError: The member declares too much, or is corrupt.
    """
    info = member if isinstance(member, zipfile.ZipInfo) else archive.getinfo(member)
    _limit_for(f"{name}:{info.filename}", info.file_size)
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        raise FileFormatError(f"{name}:{info.filename}: corrupt zip member ({exc})") from None


def check_zip(archive: zipfile.ZipFile, name: str | os.PathLike[str]) -> int:
    """Check every member's declared size, alone and together, against the global cap.

    Returns:
        The total declared (decompressed) size.

    Raises:
        FileFormatError: A member, or all of them together, declares more than the cap.
    """
    total = 0
    for info in archive.infolist():
        _limit_for(f"{name}:{info.filename}", info.file_size)
        total += info.file_size
    _limit_for(f"{name} (all members)", total)
    return total


def npy_header(fh: IO[bytes], name: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Shape, Fortran order and dtype of a ``.npy`` stream, from its header alone.

    Reads only the magic and the header (the stream is left at the first data byte), so a caller
    can compare what the header declares with what the member holds before reading the array.

    Raises:
        FileFormatError: Not a ``.npy`` header, or a format version other than 1.0 and 2.0.
    """
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(fh)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(fh)
    except (ValueError, SyntaxError, TypeError, EOFError) as exc:
        raise FileFormatError(f"{name}: not a .npy array ({exc})") from None
    raise FileFormatError(f"{name}: .npy format version {version} is not accepted")


def check_declared(
    name: str | os.PathLike[str], what: str, count: int, maximum: int, *, unit: str = "elements"
) -> int:
    """Refuse a size a file declares (elements, cells, parameters) above ``maximum``.

    Args:
        name: The file (or ``file:key``) for the message.
        what: What is counted, e.g. ``"variable 'rain_rate' (sample × y × x)"``.
        count: The declared count.
        maximum: The largest count accepted.
        unit: The unit for the message.

    Returns:
        ``count``, for chaining.

    Raises:
        FileFormatError: ``count`` is negative or above ``maximum``.
    """
    if count < 0 or count > maximum:
        raise FileFormatError(
            f"{name}: {what} declares {count:,} {unit}, more than the {maximum:,} accepted; "
            "refused before reading"
        )
    return count


def max_elements(itemsize: int = 4) -> int:
    """How many array elements of ``itemsize`` bytes fit in the global cap."""
    return max_decompressed_bytes() // itemsize


def check_hdf5_chunks(node: h5py.Dataset, name: str | os.PathLike[str]) -> None:
    """Refuse an HDF5 dataset with a deflate chunk that inflates to more than the chunk holds.

    libhdf5's deflate filter inflates a stored chunk whole, however large it grows, then keeps
    what fits the chunk: a small file can make it allocate gigabytes and still return data. Each
    chunk that could expand (stored size × :data:`DEFLATE_MAX_RATIO`) beyond both the cap for
    its declared size and :data:`HDF5_CHUNK_HARMLESS` is inflated here first, bounded by its
    declared size. Smaller chunks are left to libhdf5: one costs at most that much memory, freed
    before the next, and real products (OPERA, KNMI, ABI) are then inflated twice only in their
    few largest chunks.

    Args:
        node: An opened dataset (not yet read).
        name: The file, for messages.

    Raises:
        FileFormatError: A filter other than shuffle, deflate and fletcher32, a filter applied
            after deflate, or a chunk that inflates to more than its declared size allows or
            is corrupt.
    """
    if node.chunks is None:
        return
    plist = node.id.get_create_plist()
    pipeline = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    unknown = sorted(set(pipeline) - _H5Z_CHECKED)
    if unknown:
        raise FileFormatError(
            f"{name}:{node.name} uses HDF5 filters {unknown}; an untrusted file may use only "
            "shuffle, deflate and fletcher32 (their output size can be checked)"
        )
    if _H5Z_FILTER_DEFLATE not in pipeline:
        return
    position = pipeline.index(_H5Z_FILTER_DEFLATE)
    if any(f != _H5Z_FILTER_FLETCHER32 for f in pipeline[position + 1 :]):
        raise FileFormatError(
            f"{name}:{node.name} applies a filter after deflate (pipeline {pipeline}): its "
            "chunks cannot be checked before libhdf5 inflates them; refused"
        )
    declared = math.prod(node.chunks) * node.dtype.itemsize
    harmless = max(declared * DECLARED_FACTOR + DECLARED_SLACK, HDF5_CHUNK_HARMLESS)
    where = f"{name}:{node.name}"

    def check(info: Any) -> None:
        if info.size * DEFLATE_MAX_RATIO <= harmless or info.filter_mask & (1 << position):
            return
        _, stored = node.id.read_direct_chunk(info.chunk_offset)
        decompress_bounded(stored, "zlib", f"{where} chunk {info.chunk_offset}", declared=declared)

    node.id.chunk_iter(check)


def hdf5_size(head: bytes, path: str | os.PathLike[str]) -> int:
    """The file size an HDF5 superblock at the start of ``head`` declares (its end-of-file address).

    Superblock versions 0 and 1 give the base and end-of-file addresses after 24 (version 1: 28)
    bytes of versions, sizes and tree parameters; versions 2 and 3 after 12 (HDF5 file format
    specification, "Superblock"). Both are ``size of offsets`` bytes, little-endian.

    Raises:
        FileFormatError: No HDF5 signature, an unknown superblock version or size of offsets, a
            superblock cut short, or an end-of-file address inside the superblock.
    """
    if not head.startswith(HDF5_MAGIC):
        raise FileFormatError(f"{path}: not an HDF5 file (no HDF5 signature)")
    if len(head) < 16:
        raise FileFormatError(
            f"{path}: HDF5 file cannot be opened (truncated): {len(head)} bytes, inside its "
            "superblock"
        )
    version = head[8]
    if version not in (0, 1, 2, 3):
        raise FileFormatError(f"{path}: HDF5 superblock version {version} is unknown (corrupt?)")
    width = head[13] if version < 2 else head[9]
    if width not in _OFFSET_SIZES:
        raise FileFormatError(f"{path}: HDF5 superblock gives {width}-byte addresses (corrupt)")
    start = (24, 28, 12, 12)[version]
    base_at, eof_at = start, start + 2 * width
    # Versions 0/1: then the driver block address and the root symbol-table entry (2 offsets
    # and 24 bytes); versions 2/3: the root object header address and a 4-byte checksum.
    end = eof_at + width + (3 * width + 24 if version < 2 else width + 4)
    if len(head) < end:
        raise FileFormatError(
            f"{path}: HDF5 file cannot be opened (truncated): {len(head)} bytes, less than its "
            f"{end}-byte superblock"
        )
    base = int.from_bytes(head[base_at : base_at + width], "little")
    eof = int.from_bytes(head[eof_at : eof_at + width], "little")
    if eof < end:
        raise FileFormatError(
            f"{path}: HDF5 superblock declares an end-of-file address of {eof:,} bytes, inside "
            f"the {end}-byte superblock (corrupt)"
        )
    return base + eof


def check_hdf5_length(path: str | os.PathLike[str], length: int, declared: int) -> None:
    """Refuse an HDF5 file (or decompressed content) shorter than its superblock declares.

    Raises:
        FileFormatError: ``length`` is less than ``declared``, naming both sizes.
    """
    if length < declared:
        raise FileFormatError(
            f"{path}: HDF5 file cannot be opened (truncated): it holds {human(length)}, "
            f"its superblock declares {human(declared)}"
        )


def check_hdf5_file(h5: h5py.File, path: str | os.PathLike[str]) -> None:
    """Check the deflate chunks of every dataset of an open HDF5 file (:func:`check_hdf5_chunks`).

    For files read whole (prediction files, BoM Rainfields); readers that read a few datasets
    check those alone.

    Raises:
        FileFormatError: A chunk inflates beyond its size, or is corrupt.
    """

    def visit(_: str, node: Any) -> None:
        if isinstance(node, h5py.Dataset):
            check_hdf5_chunks(node, path)

    h5.visititems(visit)
