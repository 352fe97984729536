"""Hostile radar files are refused fast, in little memory, with one line naming the file.

Every file is made here by a small generator. The compressed bombs hold a header and then 4 GiB of
zeros as concatenated gzip members or bzip2 streams of 64 MiB each (gzip, bzip2, Python and
qpebench read them as one stream), so a bomb costs a few 64 MiB compressions, not 4 GiB.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import eccodes
import h5py
import numpy as np
import pytest
import tifffile

from qpebench.datasets.radar import (
    MAX_RADAR_BYTES,
    MAX_RADAR_CELLS,
    detect_source,
    probe_file,
    read_native,
)
from qpebench.limits import ENV_MAX_DECOMPRESSED

GIB = 1024**3
PIECE = 64 * 1024**2
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
CODECS = ("gz", "bz2")


def _compress(codec: str, head: bytes, zeros: int) -> bytes:
    """One gzip member or bzip2 stream: ``head``, then ``zeros`` zero bytes, streamed."""
    engine = zlib.compressobj(9, zlib.DEFLATED, 31) if codec == "gz" else bz2.BZ2Compressor(9)
    block = bytes(1024**2)
    out = [engine.compress(head)]
    out += [engine.compress(block) for _ in range(zeros // len(block))]
    return b"".join(out) + engine.flush()


@functools.cache
def _zeros(codec: str) -> bytes:
    return _compress(codec, b"", PIECE)


def bomb(path: Path, head: bytes, codec: str, total: int = 4 * GIB) -> Path:
    """``head`` followed by ``total`` zero bytes, compressed with ``codec``."""
    path.write_bytes(_compress(codec, head, PIECE) + _zeros(codec) * (total // PIECE - 1))
    return path


def compressed(path: Path, data: bytes, codec: str) -> Path:
    path.write_bytes(_compress(codec, data, 0))
    return path


def small_hdf5(path: Path) -> bytes:
    with h5py.File(path, "w") as h5:
        h5["x"] = np.zeros(3)
    return path.read_bytes()


def with_eof(data: bytes, eof: int) -> bytes:
    """An HDF5 file (superblock version 0, 8-byte addresses) with another end-of-file address."""
    assert data[8] == 0 and data[13] == 8
    return data[:40] + eof.to_bytes(8, "little") + data[48:]


FMI_PGM_HEAD = b"P5\n# obstime 201609281600\n# projection stereographic\n760 1226\n255\n"


def radolan_head(by: int | None = None, gp: tuple[int, int] = (900, 900)) -> bytes:
    text = "RW021050100000814BY{by:7d}VS 3SW   2.13.1PR E-02INT  60GP{gp}MS 10<boo,ros>"
    grid = f"{gp[0]:4d}x{gp[1]:4d}"
    head = len(text.format(by=0, gp=grid)) + 1
    by = head + gp[0] * gp[1] * 2 if by is None else by
    return text.format(by=by, gp=grid).encode() + b"\x03"


def grib_head(total: int) -> bytes:
    """GRIB2 section 0 of an MRMS message (discipline 209) and the start of section 1 (NSSL)."""
    return b"GRIB\0\0" + bytes([209, 2]) + total.to_bytes(8, "big") + b"\0\0\0\x15\x01\0\xa1"


# --- compressed bombs: a header, then 4 GiB of zeros ----------------------------------------


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("fmi.pgm", FMI_PGM_HEAD),
        ("radolan-rw-bin", radolan_head()),
        ("mrms.grib2", grib_head(1024)),
    ],
    ids=["fmi_pgm", "radolan", "mrms"],
)
def test_header_then_4_gib_of_zeros(
    refused_cheaply: Callable[..., str], tmp_path: Path, name: str, head: bytes, codec: str
) -> None:
    path = bomb(tmp_path / f"{name}.{codec}", head, codec)
    message = refused_cheaply(lambda: read_native(path), "decompresses to more than")
    assert message.startswith(str(path))


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("call", [read_native, probe_file, detect_source])
def test_hdf5_signature_then_4_gib_of_zeros(
    refused_cheaply: Callable[..., str], tmp_path: Path, codec: str, call: Callable[[Path], object]
) -> None:
    path = bomb(tmp_path / f"x.h5.{codec}", HDF5_MAGIC, codec)
    assert path.stat().st_size < 5_000_000
    message = refused_cheaply(lambda: call(path), "superblock")
    assert message.startswith(str(path))


@pytest.mark.parametrize("codec", CODECS)
def test_hdf5_superblock_then_4_gib_of_zeros(
    refused_cheaply: Callable[..., str], tmp_path: Path, codec: str
) -> None:
    path = bomb(tmp_path / f"x.h5.{codec}", small_hdf5(tmp_path / "small.h5"), codec)
    message = refused_cheaply(lambda: read_native(path), "decompresses to more than")
    assert message.startswith(str(path))


# --- headers that declare an impossible size ------------------------------------------------


@pytest.mark.parametrize("codec", [*CODECS, "plain"])
@pytest.mark.parametrize(
    ("eof", "match"), [(2**60, "more than the"), (10, "inside the 96-byte superblock")]
)
def test_hdf5_superblock_declaring_an_impossible_size(
    refused_cheaply: Callable[..., str], tmp_path: Path, codec: str, eof: int, match: str
) -> None:
    data = with_eof(small_hdf5(tmp_path / "small.h5"), eof)
    path = tmp_path / f"x.h5.{codec}"
    if codec == "plain":
        path.write_bytes(data)
        if eof > len(data):  # a plain file is read lazily: too large a size is a truncation
            match = "truncated.*its superblock declares"
    else:
        compressed(path, data, codec)
    message = refused_cheaply(lambda: read_native(path), match)
    assert message.startswith(str(path))


def test_hdf5_file_shorter_than_its_superblock_declares(tmp_path: Path) -> None:
    data = small_hdf5(tmp_path / "small.h5")
    path = tmp_path / "cut.h5"
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(Exception, match=r"cut\.h5: HDF5 file cannot be opened \(truncated\)") as e:
        read_native(path)
    assert f"{len(data) - 100:,} bytes" in str(e.value)
    assert f"{len(data):,} bytes" in str(e.value)


@pytest.mark.parametrize("codec", [*CODECS, "plain"])
@pytest.mark.parametrize(
    ("name", "head", "match"),
    [
        ("fmi.pgm", FMI_PGM_HEAD.replace(b"760 1226", b"2000000 3000000"), "PGM size"),
        ("radolan-rw-bin", radolan_head(99_999_999_999), "RADOLAN header BY"),
        ("mrms.grib2", grib_head(2**62), "GRIB section 0 (message length)"),
    ],
    ids=["fmi_pgm", "radolan", "mrms"],
)
def test_header_declaring_an_impossible_size(
    refused_cheaply: Callable[..., str],
    tmp_path: Path,
    name: str,
    head: bytes,
    match: str,
    codec: str,
) -> None:
    data = head + bytes(4096)
    path = tmp_path / f"{name}.{codec}"
    if codec == "plain":
        path.write_bytes(data)
    else:
        compressed(path, data, codec)
    source = name.split(".")[0].split("-")[0].replace("fmi", "fmi_pgm")
    message = refused_cheaply(lambda: read_native(path, source=source))
    assert message.startswith(str(path))
    if codec != "plain":  # a plain file is refused too, as shorter than its header declares
        assert match in message


HUGE_PRODUCT = (20000, 20000)  # 4·10⁸ cells: more than any radar product, less than the global cap


@pytest.mark.parametrize(
    ("name", "source", "head", "match"),
    [
        (
            "fmi.pgm.gz",
            "fmi_pgm",
            FMI_PGM_HEAD.replace(b"760 1226", b"%d %d" % HUGE_PRODUCT),
            "PGM size 20000x20000 declares",
        ),
        (
            "radolan-rw-bin.gz",
            "radolan",
            radolan_head(gp=HUGE_PRODUCT),
            "RADOLAN header GP 20000x20000 declares",
        ),
        (
            "mrms.grib2.gz",
            "mrms",
            grib_head(HUGE_PRODUCT[0] * HUGE_PRODUCT[1] * 4 + 1024),
            r"GRIB section 0 \(message length\) declares",
        ),
    ],
    ids=["fmi_pgm", "radolan", "mrms"],
)
def test_header_declaring_more_than_any_radar_product_with_default_limits(
    refused_cheaply: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    source: str,
    head: bytes,
    match: str,
) -> None:
    """Refused by the radar product maximum, before decompressing, whatever the global cap."""
    monkeypatch.delenv(ENV_MAX_DECOMPRESSED, raising=False)
    assert MAX_RADAR_CELLS < HUGE_PRODUCT[0] * HUGE_PRODUCT[1]
    path = bomb(tmp_path / name, head, "gz", total=8 * PIECE)  # 512 MiB of zeros
    assert path.stat().st_size < 5_000_000
    for call in (lambda: read_native(path), lambda: read_native(path, source=source)):
        message = refused_cheaply(call, match)
        assert message.startswith(str(path))
        assert "refused before reading" in message


def test_grib_length_at_the_radar_maximum_bounds_the_decompression(
    refused_cheaply: Callable[..., str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A header declaring the most accepted still stops a longer stream at 2 × that + 1 MiB."""
    monkeypatch.delenv(ENV_MAX_DECOMPRESSED, raising=False)
    path = bomb(tmp_path / "mrms.grib2.gz", grib_head(MAX_RADAR_BYTES), "gz", total=8 * PIECE)
    message = refused_cheaply(lambda: read_native(path), "decompresses to more than")
    assert message.startswith(str(path))


@pytest.mark.realdata
def test_compressed_pgm_with_a_10_kb_comment_header_reads(real_data: Path, tmp_path: Path) -> None:
    original = real_data / "fmi/201609281600_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"
    raw = gzip.decompress(original.read_bytes())
    assert raw.startswith(b"P5\n")
    long = raw[:3] + b"# note " + b"x" * 10_000 + b"\n" + raw[3:]
    path = tmp_path / original.name
    path.write_bytes(gzip.compress(long))
    expected = read_native(original)
    field = read_native(path, source="fmi_pgm")
    np.testing.assert_array_equal(field.values, expected.values)
    np.testing.assert_array_equal(field["status"].values, expected["status"].values)
    assert field.attrs["end_time"] == expected.attrs["end_time"]


def test_grib_grid_declaring_too_many_cells(
    refused_cheaply: Callable[..., str], tmp_path: Path
) -> None:
    handle = eccodes.codes_grib_new_from_samples("GRIB2")
    try:
        keys = {"centre": 161, "discipline": 209, "parameterCategory": 6, "parameterNumber": 1}
        for key, value in {**keys, "Ni": 2, "Nj": 2}.items():
            eccodes.codes_set(handle, key, value)
        eccodes.codes_set_values(handle, np.zeros(4))
        message = bytearray(eccodes.codes_get_message(handle))
    finally:
        eccodes.codes_release(handle)
    at = 16
    while message[at + 4] != 3:  # find section 3 (grid definition)
        at += int.from_bytes(message[at : at + 4], "big")
    message[at + 30 : at + 38] = (200_000).to_bytes(4, "big") * 2  # Ni, Nj (template 3.0)
    path = tmp_path / "huge.grib2"
    path.write_bytes(bytes(message))
    msg = refused_cheaply(
        lambda: read_native(path, source="mrms"), r"GRIB grid \(Ni × Nj\) declares"
    )
    assert msg.startswith(str(path))


HUGE = (200_000, 200_000)  # 4·10¹⁰ cells: kilobytes on disk (no chunk is written), 300 GB read


def huge_dataset(h5: h5py.File, name: str) -> None:
    if name in h5:
        del h5[name]
    h5.create_dataset(name, shape=HUGE, dtype="u1", chunks=(1000, 1000), compression="gzip")


@pytest.mark.parametrize("what", ["dataset", "where"])
def test_odim_declaring_too_many_cells(
    refused_cheaply: Callable[..., str],
    tmp_path: Path,
    write_odim: Callable[..., Path],
    what: str,
) -> None:
    path = write_odim(tmp_path / "huge.h5", np.zeros((4, 5), np.uint8))
    with h5py.File(path, "a") as h5:
        if what == "dataset":
            huge_dataset(h5, "dataset1/data1/data")
        else:
            h5["where"].attrs["xsize"] = h5["where"].attrs["ysize"] = np.int64(HUGE[0])
    match = "dataset /dataset1/data1/data" if what == "dataset" else "/where xsize × ysize declares"
    message = refused_cheaply(lambda: read_native(path), match)
    assert message.startswith(str(path))


def test_knmi_image_declaring_too_many_cells(
    refused_cheaply: Callable[..., str], tmp_path: Path
) -> None:
    path = tmp_path / "RAD_NL25_huge.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("overview")
        h5.create_group("geographic")
        h5.create_group("image1").attrs["image_geo_parameter"] = np.bytes_("REFLECTIVITY_[DBZ]")
        calibration = h5.create_group("image1/calibration")
        calibration.attrs["calibration_formulas"] = np.bytes_("GEO=0.5*PV-32")
        calibration.attrs["calibration_missing_data"] = np.int64(255)
        huge_dataset(h5, "image1/image_data")
    message = refused_cheaply(lambda: read_native(path), "dataset /image1/image_data")
    assert message.startswith(str(path))


def test_rainfields_declaring_too_many_cells(
    refused_cheaply: Callable[..., str], tmp_path: Path
) -> None:
    path = tmp_path / "2_20180616_100000.prcp-cscn.nc"
    with h5py.File(path, "w") as h5:
        h5.attrs["source"] = np.bytes_("rainfields3")
        huge_dataset(h5, "precipitation")
        h5["valid_time"] = np.int64(0)
        h5["proj"] = np.int32(0)
    message = refused_cheaply(lambda: read_native(path), "its variables")
    assert message.startswith(str(path))


@pytest.mark.realdata
def test_rainfields_with_a_flipped_byte_is_a_file_format_error(
    refused_cheaply: Callable[..., str], real_data: Path, tmp_path: Path
) -> None:
    data = bytearray((real_data / "bom/2_20180616_100000.prcp-cscn.nc").read_bytes())
    data[69] ^= 0xFF  # h5py raised KeyError reading the root group (an uncaught crash before)
    path = tmp_path / "flipped.nc"
    path.write_bytes(bytes(data))
    for call in (read_native, detect_source):
        message = refused_cheaply(lambda call=call: call(path), "cannot read as HDF5: KeyError")
        assert message.startswith(str(path))
    message = refused_cheaply(lambda: read_native(path, source="bom_rainfields"))
    assert message.startswith(str(path))


def gif(screen: tuple[int, int], frame: tuple[int, int]) -> bytes:
    """A GIF with a 256-colour palette whose logical screen and first frame have these sizes."""
    palette = bytes(c for i in range(256) for c in (0, 255 - i, 0))
    le = [v.to_bytes(2, "little") for v in (*screen, *frame)]
    return (
        b"GIF89a" + le[0] + le[1] + b"\xf7\0\0" + palette
        + b"," + bytes(4) + le[2] + le[3] + b"\0"
        + b"\x08\x02\x4c\x01\0;"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("screen", "frame"),
    [((65535, 65535), (65535, 65535)), ((710, 640), (30000, 30000)), ((10000, 10000), (1, 1))],
)
def test_gif_declaring_a_huge_image(
    refused_cheaply: Callable[..., str],
    tmp_path: Path,
    screen: tuple[int, int],
    frame: tuple[int, int],
) -> None:
    path = tmp_path / "AQC161932100V_00005.801.gif"
    path.write_bytes(gif(screen, frame))
    message = refused_cheaply(lambda: read_native(path, source="meteoswiss_gif"))
    assert message.startswith(str(path))


def test_geotiff_declaring_a_huge_image(
    refused_cheaply: Callable[..., str], tmp_path: Path
) -> None:
    metadata = (
        '<GDALMetadata><Item name="Quantity" unit="dBZ">DBZH</Item><Item name="Gain">0.5</Item>'
        '<Item name="Offset">-32</Item><Item name="Observation time">201609281600</Item>'
        "</GDALMetadata>"
    )
    path = tmp_path / "201609281600_FINUTM.tif"
    image = np.zeros((16, 16), np.uint8)
    tifffile.imwrite(path, image, compression="zlib", extratags=[(42112, "s", 0, metadata, True)])
    data = bytearray(path.read_bytes())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, at)[0] in (256, 257):  # ImageWidth, ImageLength
            struct.pack_into("<HII", data, at + 2, 4, 1, 200_000)  # LONG, one value
    path.write_bytes(bytes(data))
    message = refused_cheaply(lambda: read_native(path, source="fmi_geotiff"), "TIFF image")
    assert message.startswith(str(path))
