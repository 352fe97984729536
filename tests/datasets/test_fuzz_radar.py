"""Damaged copies of real radar files: every reader either reads them or says why in one line.

For each reader, one or two real files are cut short, have bytes flipped or have their body
replaced by random bytes (a fixed seed, so every run tries the same cases). Each damaged file
must either be read or be refused with a one-line :class:`~qpebench.errors.FileFormatError` that
names the file; any other exception is a bug.

A file cut short that still reads must give exactly the numbers of the intact file (anything else
is silently wrong data). So must a file with flipped bytes whose format checksums its content
(gzip and bzip2 carry a CRC of the decompressed data). Formats without a checksum over their data
(HDF5 without fletcher32, GRIB2, GIF, TIFF) cannot notice a flipped data byte: a changed value is
unavoidable there, and only the kind of failure is checked.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from tests.datasets.damage import damaged_copies

from qpebench.datasets.radar import detect_source, read_native
from qpebench.errors import FileFormatError


@dataclass(frozen=True)
class Sample:
    """A real file to damage, and how many cases of each kind to try on it."""

    reader: str
    path: str  # relative to the real-data directory
    flips: int = 40
    bodies: int = 3
    checksummed: bool = False  # gzip/bzip2: the decompressed content carries a CRC
    gzip_it: bool = False  # also fuzz a gzip-compressed copy (HDF5 read through memory)


SAMPLES = [
    Sample("odim", "opera/nimbus_20241126/T_PAAH22_C_EUOC_20241126010000.hdf", flips=10, bodies=2),
    Sample("mrms", "mrms/PrecipRate_00.00_20190610-000000.grib2", flips=3, bodies=1),
    Sample("radolan", "radolan/raa01-rw_10000-1408102050-dwd---bin.gz", checksummed=True),
    Sample("radolan", "radolan/raa01-rx_10000-1408102050-dwd---bin.gz", checksummed=True),
    Sample("knmi", "knmi/RAD_NL25_RAP_5min_201008260000.h5", flips=60, gzip_it=True),
    Sample(
        "fmi_pgm",
        "fmi/201609281600_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz",
        checksummed=True,
    ),
    Sample("fmi_geotiff", "fmi/201609281600_FINUTM.tif", flips=3, bodies=1),
    Sample("bom_rainfields", "bom/2_20180616_100000.prcp-cscn.nc", flips=80, gzip_it=True),
    Sample("meteoswiss_gif", "mch/AQC161932100V_00005.801.gif", flips=60),
]
CUTS = (0.1, 0.5, 0.9, 0.99)  # fractions of the size; also 0, 1, 10, 100 bytes and size − 1
KEEP = (16, 128, 1024)  # first bytes kept before a random body


def _cases(data: bytes, sample: Sample, rng: random.Random) -> list[tuple[str, bytes, bool]]:
    """(label, damaged bytes, whether a successful read must equal the intact file)."""
    n = len(data)
    return damaged_copies(
        data,
        rng,
        cuts=(0, 1, 10, 100, n - 1, *(int(n * f) for f in CUTS)),
        flips=sample.flips,
        keeps=KEEP,
        bodies=sample.bodies,
        checksummed=sample.checksummed,
    )


def _same(a: xr.DataArray, b: xr.DataArray) -> bool:
    return bool(
        np.array_equal(a.values, b.values, equal_nan=True)
        and np.array_equal(a.coords["status"].values, b.coords["status"].values)
    )


def _try(path: Path, reader: str) -> tuple[xr.DataArray | None, str]:
    """The field read (or ``None``) and the problem with how it failed (``""``: none)."""
    try:
        detect_source(path)
    except FileFormatError:
        pass  # damaged beyond recognition: the reader must still fail cleanly when forced
    except Exception as exc:  # any other exception is the bug reported
        return None, f"detect_source raised {type(exc).__name__}: {exc}"
    try:
        return read_native(path, source=reader), ""
    except FileFormatError as exc:
        message = str(exc)
        if "\n" in message or str(path) not in message:
            return None, f"message is not one line naming the file: {message!r}"
        return None, ""
    except Exception as exc:  # any other exception is the bug reported
        return None, f"{type(exc).__name__}: {exc}"


@pytest.mark.realdata
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: f"{s.reader}-{Path(s.path).name}")
def test_damaged_real_files_read_or_fail_cleanly(
    sample: Sample, real_data: Path, tmp_path: Path
) -> None:
    source = real_data / sample.path
    variants = [(source.name, source.read_bytes(), sample.checksummed)]
    if sample.gzip_it:
        variants.append((source.name + ".gz", gzip.compress(source.read_bytes(), mtime=0), True))
    rng = random.Random(f"{sample.path} 20261203")
    problems = []
    for name, data, checksummed in variants:
        intact = read_native(source, source=sample.reader)
        for label, damaged, must_match in _cases(data, sample, rng):
            path = tmp_path / name
            path.write_bytes(damaged)
            field, problem = _try(path, sample.reader)
            if field is not None and (must_match or checksummed) and not _same(field, intact):
                problem = "read without error, but the values differ from the intact file"
            if problem:
                problems.append(f"{name}, {label}: {problem}")
    assert not problems, "\n".join(problems)
