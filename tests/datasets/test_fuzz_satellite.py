"""Damaged satellite files: every reader either reads them or says why in one line.

For each satellite reader, one file of a scan (a real one where a sample exists, else one written
by the test-data generators) is cut short, has bytes flipped or has its body replaced by random
bytes (a fixed seed, so every run tries the same cases); the scan's other files stay intact. Each
damaged scan must either be read or be refused with a one-line
:class:`~qpebench.errors.FileFormatError` that names the file; any other exception is a bug.

A file cut short that still reads must give exactly the values of the intact scan (anything else
is silently wrong data). So must a file with flipped bytes whose format checksums its content:
a zip member carries a CRC (Satip), a bzip2 stream a CRC of its content (AHI ``.DAT.bz2``).
Formats without a checksum over their data — netCDF-3 (meteosatlib), HRIT segments, HSD,
netCDF-4/HDF5 without fletcher32 (ABI) — cannot notice a flipped data byte: a changed value is
unavoidable there, and only the kind of failure is checked.

``seviri_native`` has no case: no ``.nat`` sample is available and no generator writes one (its
header is checked against the file's size before satpy reads it; see ``datasets/seviri.py``).
"""

from __future__ import annotations

import bz2
import importlib
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import xarray as xr
from tests.datasets.damage import damaged_copies

from qpebench.datasets.satellite import read_satellite
from qpebench.errors import FileFormatError
from qpebench.registry import load_builtins

load_builtins()

CUTS = (0.1, 0.5, 0.9, 0.99)  # fractions of the size; also 0, 1 and 100 bytes
KEEP = (16, 512, 4096)  # first bytes kept before a random body

# A scan's files in a fresh folder, the one to damage first: (real-data dir, folder) → files.
Scan = Callable[[Path, Path], list[Path]]


def _generator(name: str) -> ModuleType:
    """The test-data generator ``tests/data/<name>/data.py``."""
    return importlib.import_module(f"tests.data.{name}.data")


def _copy(*relative: str) -> Scan:
    def scan(real: Path, into: Path) -> list[Path]:
        return [Path(shutil.copy(real / r, into / Path(r).name)) for r in relative]

    return scan


def _hrit(real: Path, into: Path) -> list[Path]:
    files = [Path(shutil.copy(f, into / f.name)) for f in sorted(real.glob("seviri_hrit/H-*"))]
    return sorted(files, key=lambda f: "IR_108" not in f.name)


def _abi(level: str) -> Scan:
    def scan(real: Path, into: Path) -> list[Path]:
        truth = _generator("abi").write_scan(into, level=level, bands=(14,), shape=(6, 8))
        return list(truth.files.values())

    return scan


def _ahi(compress: bool) -> Scan:
    def scan(real: Path, into: Path) -> list[Path]:
        files = _generator("ahi").write_scan(into, bands=("B14",)).files["B14"]
        if not compress:
            return files[::-1]
        packed = files[1].with_name(files[1].name + ".bz2")
        packed.write_bytes(bz2.compress(files[1].read_bytes()))
        files[1].unlink()
        return [packed, files[0]]

    return scan


@dataclass(frozen=True)
class Sample:
    """A scan to damage (its first file), and how many cases of each kind to try on it."""

    name: str
    scan: Scan
    bands: tuple[str, ...]
    flips: int
    bodies: int = 3
    checksummed: bool = False  # a CRC covers the content: a flipped byte never reads


SAMPLES = [
    pytest.param(
        Sample(
            "satip",
            _copy("seviri_rss_satip/202312201135.zarr.zip"),
            ("IR10.8", "WV6.2"),
            flips=60,
            checksummed=True,
        ),
        marks=pytest.mark.realdata,
        id="seviri_satip_zarr",
    ),
    pytest.param(
        Sample(
            "meteosatlib",
            _copy("seviri_meteosatlib/MSG_Seviri_1_5_Infrared_10_8_channel_20051219_1415.nc"),
            ("IR10.8",),
            flips=60,
        ),
        marks=pytest.mark.realdata,
        id="seviri_meteosatlib_nc",
    ),
    pytest.param(
        Sample("hrit", _hrit, ("IR10.8",), flips=25, bodies=2),
        marks=pytest.mark.realdata,
        id="seviri_hrit",
    ),
    pytest.param(Sample("abi", _abi("L1b"), ("IR10.8",), flips=80), id="abi_l1b"),
    pytest.param(Sample("abi_cmip", _abi("L2"), ("IR10.8",), flips=60), id="abi_l2_cmip"),
    pytest.param(Sample("ahi", _ahi(False), ("IR10.8",), flips=30, bodies=2), id="ahi_hsd"),
    pytest.param(
        Sample("ahi_bz2", _ahi(True), ("IR10.8",), flips=30, bodies=2, checksummed=True),
        id="ahi_hsd_bz2",
    ),
]


def _cases(data: bytes, sample: Sample, rng: random.Random) -> list[tuple[str, bytes, bool]]:
    """(label, damaged bytes, whether a successful read must equal the intact file)."""
    n = len(data)
    return damaged_copies(
        data,
        rng,
        cuts=(0, 1, 100, *(int(n * f) for f in CUTS)),
        flips=sample.flips,
        keeps=KEEP,
        bodies=sample.bodies,
        checksummed=sample.checksummed,
    )


def _same(a: xr.DataArray, b: xr.DataArray) -> bool:
    return (
        list(a["band"].values) == list(b["band"].values)
        and all(np.array_equal(a[k].values, b[k].values) for k in ("x", "y"))
        and bool(np.array_equal(a.values, b.values, equal_nan=True))
    )


def _try(files: list[Path], sample: Sample, source: str) -> tuple[xr.DataArray | None, str]:
    """The scan read (or ``None``) and the problem with how it failed (``""``: none)."""
    try:
        return read_satellite(files, bands=list(sample.bands), source=source, with_vza=False), ""
    except FileFormatError as exc:
        message = str(exc)
        if "\n" in message or not any(str(f) in message for f in files):
            return None, f"message is not one line naming the file: {message!r}"
        return None, ""
    except Exception as exc:  # any other exception is the bug reported
        return None, f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("sample", SAMPLES)
def test_damaged_satellite_files_read_or_fail_cleanly(
    sample: Sample, real_data: Path, tmp_path: Path
) -> None:
    files = sample.scan(real_data, tmp_path)
    source = str(read_satellite(files, bands=list(sample.bands), with_vza=False).attrs["source"])
    intact = read_satellite(files, bands=list(sample.bands), source=source, with_vza=False)
    data = files[0].read_bytes()
    rng = random.Random(f"{sample.name} 20261203")
    problems = []
    for label, damaged, must_match in _cases(data, sample, rng):
        files[0].write_bytes(damaged)
        scan, problem = _try(files, sample, source)
        if scan is not None and must_match and not _same(scan, intact):
            problem = "read without error, but the values differ from the intact scan"
        if problem:
            problems.append(f"{files[0].name}, {label}: {problem}")
    assert not problems, "\n".join(problems)
