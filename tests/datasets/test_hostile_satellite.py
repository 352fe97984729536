"""Hostile satellite files: declared sizes are checked before anything is allocated or read.

Each hostile file is made in the test from a real or generated one (a few MB at most; a
decompression bomb is built by streaming compression, never materialised). ``refused_cheaply``
runs the read in a forked child and checks a one-line qpebench error within 5 s and 500 MiB.
"""

from __future__ import annotations

import bz2
import importlib
import json
import shutil
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import numcodecs
import numpy as np
import pytest

from qpebench.datasets import ahi, seviri
from qpebench.datasets.satellite import read_satellite
from qpebench.errors import FileFormatError
from qpebench.registry import load_builtins

load_builtins()

SATIP = "seviri_rss_satip/202312201135.zarr.zip"
METEOSATLIB = "seviri_meteosatlib/MSG_Seviri_1_5_Infrared_10_8_channel_20051219_1415.nc"


def _generator(name: str) -> ModuleType:
    """The test-data generator ``tests/data/<name>/data.py``."""
    return importlib.import_module(f"tests.data.{name}.data")


def _rewrite_zip(source: Path, target: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy a zip, each member's bytes passed through ``change`` (``None``: dropped)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            data = change(info.filename, src.read(info))
            if data is not None:
                dst.writestr(info.filename, data)
    return target


def _json_edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def apply(data: bytes) -> bytes:
        value = json.loads(data)
        edit(value)
        return json.dumps(value).encode()

    return apply


def _zlib_bomb(mib: int, level: int) -> bytes:
    """A zlib stream of ``mib`` MiB of zeros, compressed 1 MiB at a time (never materialised).

    Level 9 packs about 1000:1; level 1 (4.5 MB per GiB) is fast enough for a GiB.
    """
    engine = zlib.compressobj(level)
    block = bytes(1 << 20)
    return b"".join(engine.compress(block) for _ in range(mib)) + engine.flush()


# --- Satip zarr --------------------------------------------------------------------------------


def _satip_shape(shape: list[int]) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        meta["shape"] = shape

    return edit


def _satip_area(meta: dict[str, Any]) -> None:
    meta["area"] = (
        meta["area"].replace("height: 229", "height: 40000").replace("width: 574", "width: 40000")
    )


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("edits", "match"),
    [
        ({"data/.zarray": _satip_shape([1, 40000, 40000, 11])}, r"declares shape \(1, 40000"),
        (
            {".zattrs": _satip_area, "data/.zarray": _satip_shape([1, 40000, 40000, 11])},
            r"'area' declares 40000 × 40000 cells, more than SEVIRI's 3712 × 3712",
        ),
        ({"variable/.zarray": _satip_shape([100000])}, r"declares 100,000 channels"),
    ],
    ids=["data-shape", "area-shape", "channels"],
)
def test_satip_declaring_a_huge_shape_is_refused_before_reading(
    real_data: Path, tmp_path: Path, refused_cheaply: Callable[..., str], edits: Any, match: str
) -> None:
    def change(name: str, data: bytes) -> bytes | None:
        if name == ".zmetadata":
            return None  # stale copy: the reader uses the .zarray/.zattrs members
        return _json_edit(edits[name])(data) if name in edits else data

    path = _rewrite_zip(real_data / SATIP, tmp_path / "202312201135.zarr.zip", change)
    message = refused_cheaply(lambda: read_satellite(path, with_vza=False), match)
    assert message.startswith(str(path))


def _zlib_chunks(bomb: bytes, bombed: str = "data/0.") -> Callable[[str, bytes], bytes | None]:
    """Re-encode the ``data`` chunks with zlib; those named ``bombed…`` become ``bomb``."""
    blosc = numcodecs.Blosc()

    def change(name: str, data: bytes) -> bytes | None:
        if name == ".zmetadata":
            return None
        if name == "data/.zarray":
            meta = json.loads(data)
            meta["compressor"] = {"id": "zlib", "level": 9}
            return json.dumps(meta).encode()
        if name.startswith(bombed):
            return bomb
        if name.startswith("data/0."):
            return zlib.compress(bytes(blosc.decode(data)), 9)
        return data

    return change


@pytest.mark.realdata
def test_satip_with_honest_zlib_chunks_reads_as_the_original(
    real_data: Path, tmp_path: Path
) -> None:
    source = real_data / SATIP
    path = _rewrite_zip(source, tmp_path / "zlib.zarr.zip", _zlib_chunks(b"", bombed="none"))
    expected = read_satellite(source, with_vza=False)
    assert np.array_equal(read_satellite(path, with_vza=False).values, expected.values)


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("mib", "level", "bombed", "match"),
    [
        # 33 chunks of 112 MiB each (3.7 GiB), each stored in a plausible 110 kB.
        (
            112,
            9,
            "data/0.",
            r"data/0\.0\.0\.0: decompresses to more than .* allowed by the 117,248",
        ),
        # 1 GiB in one chunk stored in 4.7 MB: more than any codec makes of 117,248 bytes.
        (
            1024,
            1,
            "data/0.0.0.0",
            r"chunk 'data/0\.0\.0\.0' declares 4,\d{3},\d{3} bytes, more than the 120,104",
        ),
    ],
    ids=["decompressed", "stored"],
)
def test_satip_zlib_chunk_bomb_is_refused(
    real_data: Path,
    tmp_path: Path,
    refused_cheaply: Callable[..., str],
    mib: int,
    level: int,
    bombed: str,
    match: str,
) -> None:
    bomb = _zlib_bomb(mib, level)
    path = _rewrite_zip(real_data / SATIP, tmp_path / "bomb.zarr.zip", _zlib_chunks(bomb, bombed))
    assert path.stat().st_size < 8e6
    message = refused_cheaply(lambda: read_satellite(path, with_vza=False), match)
    assert message.startswith(str(path))


@pytest.mark.realdata
def test_satip_blosc_header_declaring_more_than_the_chunk_is_refused(
    real_data: Path, tmp_path: Path, refused_cheaply: Callable[..., str]
) -> None:
    def change(name: str, data: bytes) -> bytes | None:
        if name == "data/0.0.0.0":  # nbytes (bytes 4–8 of the blosc header) → 2 GB
            return data[:4] + (2_000_000_000).to_bytes(4, "little") + data[8:]
        return data

    path = _rewrite_zip(real_data / SATIP, tmp_path / "blosc.zarr.zip", change)
    refused_cheaply(
        lambda: read_satellite(path, with_vza=False),
        r"data/0\.0\.0\.0: chunk decodes to 2,000,000,000 bytes, its array declares 117,248",
    )


@pytest.mark.realdata
def test_satip_unknown_codec_is_refused(real_data: Path, tmp_path: Path) -> None:
    def codec(meta: dict[str, Any]) -> None:
        meta["compressor"] = {"id": "lzma"}

    path = _rewrite_zip(
        real_data / SATIP,
        tmp_path / "lzma.zarr.zip",
        lambda n, d: _json_edit(codec)(d) if n == "data/.zarray" else d,
    )
    with pytest.raises(FileFormatError, match=r"compressor 'lzma'"):
        read_satellite(path, with_vza=False)


@pytest.mark.realdata
def test_satip_zip_member_declaring_more_than_the_cap_is_refused(
    real_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QPEBENCH_MAX_DECOMPRESSED", "1M")
    path = shutil.copy(real_data / SATIP, tmp_path / "capped.zarr.zip")
    with pytest.raises(FileFormatError, match=r"all members\): header declares"):
        read_satellite(path, with_vza=False)


# --- meteosatlib netCDF-3 -----------------------------------------------------------------------


@pytest.mark.realdata
def test_truncated_meteosatlib_file_is_refused_naming_both_sizes(
    real_data: Path, tmp_path: Path
) -> None:
    data = (real_data / METEOSATLIB).read_bytes()
    path = tmp_path / Path(METEOSATLIB).name
    path.write_bytes(data[: len(data) // 10])
    with pytest.raises(FileFormatError) as info:
        read_satellite(path, with_vza=False)
    message = str(info.value)
    assert message.startswith(f"{path}: netCDF-3 file of {len(data) // 10:,} bytes")
    assert f"header declares {len(data):,}" in message and "\n" not in message


def test_netcdf3_declared_size_of_every_format(tmp_path: Path) -> None:
    import netCDF4

    for fmt in ("NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA"):
        path = tmp_path / f"{fmt}.nc"
        with netCDF4.Dataset(path, "w", format=fmt) as ds:
            ds.createDimension("t", None)
            ds.createDimension("y", 3)
            ds.createDimension("x", 5)
            ds.setncattr("title", "records and fixed variables")
            ds.createVariable("v", "f4", ("t", "y", "x"))[:2] = 1.0
            ds.createVariable("w", "f8", ("t",))[:2] = 2.0
            ds.createVariable("z", "i2", ("y", "x"))[:] = 3
        assert seviri._netcdf3_size(path) == path.stat().st_size, fmt
        path.write_bytes(path.read_bytes()[:-4])
        with pytest.raises(FileFormatError, match="header declares"):
            seviri._check_netcdf3_size(path)


# --- HRIT ---------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_hrit_segment_declaring_a_huge_image_is_refused_before_satpy(
    real_data: Path, tmp_path: Path, refused_cheaply: Callable[..., str]
) -> None:
    for f in (real_data / "seviri_hrit").glob("H-*"):
        shutil.copy(f, tmp_path / f.name)
    files = sorted(tmp_path.glob("H-*"))
    segment = next(f for f in files if "IR_108" in f.name)
    raw = bytearray(segment.read_bytes())
    assert raw[16] == 1 and raw[17:19] == b"\x00\x09"  # the image structure record
    raw[20:24] = (65535).to_bytes(2, "big") * 2  # NC, NL
    segment.write_bytes(bytes(raw))
    refused_cheaply(
        lambda: read_satellite(files, bands=["IR10.8"], with_vza=False),
        r"IR_108.*: HRIT image structure declares 65535 lines × 65535 columns",
    )


# --- ABI ----------------------------------------------------------------------------------------


def test_abi_variable_declaring_a_huge_shape_is_refused_before_reading(
    tmp_path: Path, refused_cheaply: Callable[..., str]
) -> None:
    truth = _generator("abi").write_scan(tmp_path, bands=(14,), shape=(4, 5))
    path = truth.files["C14"]
    with h5py.File(path, "r+") as h5:
        attrs = dict(h5["Rad"].attrs)
        del h5["Rad"]
        rad = h5.create_dataset(
            "Rad", shape=(40000, 40000), dtype="i2", chunks=(1000, 1000), compression="gzip"
        )
        for key, value in attrs.items():
            if key not in ("DIMENSION_LIST", "_Netcdf4Dimid"):
                rad.attrs[key] = value
    assert path.stat().st_size < 1e6
    refused_cheaply(
        lambda: read_satellite(path, with_vza=False),
        r"'Rad' has shape \(40000, 40000\), expected \(y, x\) of at most 5424",
    )


# --- AHI ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ahi_scan(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _generator("ahi").write_scan(tmp_path_factory.mktemp("ahi"), bands=("B14",))


def test_ahi_bzip2_bomb_is_refused_at_the_declared_size(
    ahi_scan: Any, tmp_path: Path, refused_cheaply: Callable[..., str]
) -> None:
    first, second = ahi_scan.files["B14"]
    zeros = bz2.compress(bytes(8 << 20))  # concatenated streams: 1 GiB from a few kB
    path = tmp_path / (second.name + ".bz2")
    path.write_bytes(bz2.compress(second.read_bytes()) + zeros * 128)
    assert path.stat().st_size < 1e6
    message = refused_cheaply(
        lambda: ahi.read_hsd([first, path], ["B14"]), r"decompresses to more than"
    )
    assert message.startswith(str(path))


def test_ahi_header_declaring_a_huge_image_is_refused(
    ahi_scan: Any, tmp_path: Path, refused_cheaply: Callable[..., str]
) -> None:
    first, second = ahi_scan.files["B14"]
    raw = bytearray(second.read_bytes())
    raw[282 + 5 : 282 + 9] = (40000).to_bytes(2, "little") * 2  # block #2 columns, lines
    raw[74:78] = (40000 * 40000 * 2).to_bytes(4, "little")  # block #1 total data length
    path = tmp_path / (second.name + ".bz2")
    path.write_bytes(bz2.compress(bytes(raw)))
    refused_cheaply(
        lambda: ahi.read_hsd([first, path], ["B14"]),
        r"HSD image \(40000 lines × 40000 columns\) declares 1,600,000,000 pixels",
    )


def _native_header(tmp_path: Path, **values: str) -> Path:
    """A SEVIRI native header in satpy's layout (EUM/MSG/ICD/105), ASCII archive header first."""
    from satpy.readers.seviri_l1b_native_hdr import get_native_header

    from qpebench.datasets.seviri import NATIVE_ASCII_HEADER

    header = np.zeros(1, dtype=get_native_header(True))
    second = header[0]["15_SECONDARY_PRODUCT_HEADER"]
    fields = {
        "SelectedBandIDs": "XXXXXXXXXXXX",
        "NumberLinesVISIR": "3712",
        "EastColumnSelectedRectangle": "1",
        "WestColumnSelectedRectangle": "3712",
        "NumberColumnsHRV": "11136",
        **values,
    }
    for key, value in fields.items():
        second[key]["Value"] = value.encode()
    raw = bytearray(header.tobytes())
    raw[: len(NATIVE_ASCII_HEADER)] = NATIVE_ASCII_HEADER
    path = tmp_path / "MSG4-SEVI-MSG15-0100-NA-20231220120000.nat"
    path.write_bytes(bytes(raw))
    return path


def test_native_file_shorter_than_its_header_declares_is_refused(tmp_path: Path) -> None:
    path = _native_header(tmp_path)  # a full disk declared, no data after the header
    declared = r"bytes, its header declares 271,175,\d+ .*truncated"
    with pytest.raises(FileFormatError, match=declared):
        read_satellite(path, bands=["IR10.8"], with_vza=False)


def test_native_header_declaring_more_than_a_full_disk_is_refused(
    tmp_path: Path, refused_cheaply
) -> None:
    path = _native_header(tmp_path, NumberLinesVISIR="40000")
    message = refused_cheaply(
        lambda: read_satellite(path, bands=["IR10.8"], with_vza=False), "40,000 VIS/IR lines"
    )
    assert message.startswith(f"{path}: ")
