"""Bounded decompression and declared-size checks (``qpebench.limits``)."""

from __future__ import annotations

import bz2
import gzip
import io
import zipfile
import zlib
from pathlib import Path

import pytest

from qpebench.errors import ConfigError, FileFormatError
from qpebench.limits import (
    DEFAULT_CAP_BYTES,
    check_declared,
    check_zip,
    decompress_bounded,
    max_decompressed_bytes,
    npy_header,
    parse_size,
    read_decompressed,
    read_zip_member,
)

ZEROS = bytes(1 << 20)


def test_npy_header_reads_the_header_alone_and_refuses_other_versions():
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 4), np.float32))
    stream = io.BytesIO(buffer.getvalue())
    assert npy_header(stream, "a.npy") == ((3, 4), False, np.dtype(np.float32))
    assert len(buffer.getvalue()) - stream.tell() == 3 * 4 * 4  # left at the first data byte
    other = bytearray(buffer.getvalue())
    other[6] = 3  # format version 3.0
    with pytest.raises(FileFormatError, match=r"a.npy: .npy format version \(3, 0\)"):
        npy_header(io.BytesIO(bytes(other)), "a.npy")
    with pytest.raises(FileFormatError, match="a.npy: not a .npy array"):
        npy_header(io.BytesIO(b"PK\x03\x04 not numpy"), "a.npy")


def bomb(codec: str, mib: int, head: bytes = b"") -> bytes:
    """``head`` and ``mib`` MiB of zeros, compressed by streaming (never held whole)."""
    engine = (
        bz2.BZ2Compressor(9)
        if codec == "bzip2"
        else zlib.compressobj(9, zlib.DEFLATED, 16 + 15 if codec == "gzip" else 15)
    )
    out = [engine.compress(head)]
    out += [engine.compress(ZEROS) for _ in range(mib)]
    return b"".join([*out, engine.flush()])


@pytest.mark.parametrize(
    ("text", "size"),
    [("1024", 1024), ("512M", 512 << 20), ("2G", 2 << 30), ("1.5k", 1536), ("3GiB", 3 << 30)],
)
def test_sizes_parse(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "-1", "0", "lots", "5X"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="QPEBENCH_MAX_DECOMPRESSED"):
        parse_size(text)


def test_the_global_cap_comes_from_memory_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("QPEBENCH_MAX_DECOMPRESSED", raising=False)
    default = max_decompressed_bytes()
    assert 0 < default <= DEFAULT_CAP_BYTES
    monkeypatch.setenv("QPEBENCH_MAX_DECOMPRESSED", "64M")
    assert max_decompressed_bytes() == 64 << 20


@pytest.mark.parametrize(
    ("codec", "pack"),
    [
        ("gzip", lambda d: gzip.compress(d) + gzip.compress(b"tail")),
        ("bzip2", lambda d: bz2.compress(d) + bz2.compress(b"tail")),
        ("zlib", lambda d: zlib.compress(d + b"tail")),
    ],
)
def test_round_trip_with_several_members(codec: str, pack) -> None:
    data = b"rain " * 100_000
    assert decompress_bounded(pack(data), codec, "f") == data + b"tail"  # type: ignore[arg-type]


@pytest.mark.parametrize("codec", ["gzip", "bzip2", "zlib"])
def test_truncated_and_corrupt_streams_are_refused(codec: str) -> None:
    packed = bomb(codec, 1, head=bytes(range(256)) * 64)
    with pytest.raises(FileFormatError, match=f"^f: .*{codec}"):
        decompress_bounded(packed[: len(packed) // 2], codec, "f")  # type: ignore[arg-type]
    flipped = bytearray(packed)
    flipped[len(flipped) // 2] ^= 0xFF
    with pytest.raises(FileFormatError, match="^f: "):
        decompress_bounded(bytes(flipped), codec, "f")  # type: ignore[arg-type]


@pytest.mark.parametrize("codec", ["gzip", "bzip2", "zlib"])
def test_a_bomb_is_refused_at_the_global_cap(
    codec: str, monkeypatch: pytest.MonkeyPatch, refused_cheaply
) -> None:
    packed = bomb(codec, 256)  # 256 MiB of zeros, a few hundred kB (bzip2: a few hundred bytes)
    monkeypatch.setenv("QPEBENCH_MAX_DECOMPRESSED", "64M")
    message = refused_cheaply(
        lambda: decompress_bounded(packed, codec, "bomb.bin"),
        mib=200,  # type: ignore[arg-type]
    )
    assert message.startswith("bomb.bin: decompresses to more than the limit 67,108,864 bytes")


def test_a_stream_may_not_exceed_what_its_header_declares(refused_cheaply) -> None:
    packed = bomb("gzip", 64, head=b"P5 100 100 255\n")  # a 10 kB image, 64 MiB of data

    def declared(head: bytes) -> int:
        width, height = (int(v) for v in head.split()[1:3])
        return width * height

    message = refused_cheaply(
        lambda: decompress_bounded(packed, "gzip", "x.pgm.gz", head_limit=declared)
    )
    assert "allowed by the 10,000 bytes (9.8 KiB) its header declares" in message
    ok = gzip.compress(b"P5 100 100 255\n" + bytes(10_000))
    assert len(decompress_bounded(ok, "gzip", "x.pgm.gz", head_limit=declared)) == 10_015


def test_an_impossible_declared_size_is_refused_before_decompressing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QPEBENCH_MAX_DECOMPRESSED", "1M")
    with pytest.raises(FileFormatError, match="declares .* more than the limit .* before"):
        decompress_bounded(gzip.compress(b"x"), "gzip", "f", declared=1 << 30)


def test_plain_files_are_read_and_checked_against_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x" * 2048)
    assert read_decompressed(plain) == b"x" * 2048
    packed = tmp_path / "packed.gz"
    packed.write_bytes(gzip.compress(b"y" * 2048))
    assert read_decompressed(packed) == b"y" * 2048
    monkeypatch.setenv("QPEBENCH_MAX_DECOMPRESSED", "1K")
    with pytest.raises(FileFormatError, match=r"plain.bin: 2,048 bytes .* more than the limit"):
        read_decompressed(plain)


def test_zip_members_are_refused_on_their_declared_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused_cheaply
) -> None:
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("small.npy", b"ok")
        with zf.open("big.npy", "w", force_zip64=True) as fh:
            for _ in range(100):
                fh.write(ZEROS)
    monkeypatch.setenv("QPEBENCH_MAX_DECOMPRESSED", "64M")
    with zipfile.ZipFile(path) as zf:
        assert read_zip_member(zf, "small.npy", path) == b"ok"
        message = refused_cheaply(lambda: read_zip_member(zf, "big.npy", path))
        assert message.startswith(f"{path}:big.npy: header declares 104,857,600 bytes")
        with pytest.raises(FileFormatError, match="big.npy: header declares"):
            check_zip(zf, path)


def test_declared_counts_are_checked() -> None:
    assert check_declared("f.nc", "variable 'y'", 10, 10) == 10
    with pytest.raises(FileFormatError, match=r"^f.nc: variable 'y' declares 11 elements"):
        check_declared("f.nc", "variable 'y'", 11, 10)


def test_an_hdf5_chunk_bomb_is_refused_before_libhdf5_inflates_it(
    tmp_path: Path, refused_cheaply
) -> None:
    import h5py
    import numpy as np

    from qpebench.limits import check_hdf5_chunks

    path = tmp_path / "bomb.h5"
    expected = np.arange(10_000, dtype="f4").reshape(100, 100)
    with h5py.File(path, "w") as f:
        for name in ("honest", "bomb"):
            f.create_dataset(
                name, data=expected, chunks=(50, 100), compression="gzip", shuffle=True
            )
        # one stored chunk of the 20 kB chunks inflates to 256 MiB (libhdf5 would keep 20 kB)
        f["bomb"].id.write_direct_chunk((50, 0), zlib.compress(bytes(256 << 20), 9))

    def read(name: str) -> np.ndarray:
        with h5py.File(path) as f:
            check_hdf5_chunks(f[name], path)
            return f[name][()]

    np.testing.assert_array_equal(read("honest"), expected)
    message = refused_cheaply(lambda: read("bomb"))
    assert message.startswith(f"{path}:/bomb chunk (50, 0): decompresses to more than")


def test_hdf5_filters_that_hide_a_chunk_bomb_are_refused(tmp_path: Path) -> None:
    import h5py
    import numpy as np

    from qpebench.limits import check_hdf5_chunks

    path = tmp_path / "order.h5"
    with h5py.File(path, "w") as f:
        # deflate applied before shuffle: the stored bytes are not a deflate stream
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((64, 64))
        dcpl.set_deflate(9)
        dcpl.set_shuffle()
        space = h5py.h5s.create_simple((64, 64))
        h5py.h5d.create(f.id, b"late_shuffle", h5py.h5t.NATIVE_UINT8, space, dcpl=dcpl)
        f.create_dataset("lzf", data=np.zeros((64, 64), "u1"), chunks=(64, 64), compression="lzf")
    with h5py.File(path) as f:
        with pytest.raises(FileFormatError, match=r"late_shuffle applies a filter after deflate"):
            check_hdf5_chunks(f["late_shuffle"], path)
        with pytest.raises(FileFormatError, match=r"/lzf uses HDF5 filters \[32000\]"):
            check_hdf5_chunks(f["lzf"], path)


@pytest.mark.parametrize("codec", ["gzip", "bzip2", None])
def test_read_head_decompresses_only_the_start(tmp_path: Path, codec: str | None) -> None:
    from qpebench.limits import read_head

    data = bytes(range(256)) * 8 + bytes(2 << 20)  # the head, then 2 MiB
    packed = {"gzip": gzip.compress, "bzip2": bz2.compress, None: bytes}[codec](data)
    path = tmp_path / "file"
    path.write_bytes(packed)
    assert read_head(path) == (codec, data[:4096])
    assert read_head(path, 10) == (codec, data[:10])
    if codec is not None:
        path.write_bytes(packed[:3] + b"\xff" * 64)  # magic, then garbage
        with pytest.raises(FileFormatError, match=f"^{path}: corrupt {codec} stream"):
            read_head(path)
