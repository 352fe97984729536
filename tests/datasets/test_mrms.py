from __future__ import annotations

import gzip
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import pytest

# isort: split
# eccodes only after pyproj: the other order aborts the interpreter at exit (see mrms.py).
import eccodes

from qpebench.datasets.grid import Grid
from qpebench.datasets.mrms import read_mrms
from qpebench.datasets.radar import NO_DATA, NO_ECHO, detect_source, read_native, read_radar
from qpebench.errors import FileFormatError

FIRST = "PrecipRate_00.00_20190610-000000.grib2"
NO_COVERAGE_FIRST = 8_769_493  # SOURCES.md: "about 8.77 M of 24.5 M cells"


@pytest.fixture(scope="module")
def mrms_dir(real_data: Path) -> Path:
    return real_data / "mrms"


@pytest.fixture(scope="module")
def field(mrms_dir: Path) -> Any:
    return read_native(mrms_dir / FIRST)


@pytest.fixture(scope="module")
def raw(mrms_dir: Path) -> np.ndarray:
    # An independent decode with cfgrib. Its message layer is used, not
    # xr.open_dataset(engine="cfgrib"): on this 3500×7000 grid the xarray engine spends ~10 s in
    # ecCodes computing distinctLatitudes/distinctLongitudes, far beyond a unit test's budget.
    messages = pytest.importorskip("cfgrib.messages")
    decoded = [
        (msg["Nj"], msg["Ni"], msg["values"])
        for _, msg in messages.FileStream(str(mrms_dir / FIRST)).items()
    ]
    assert len(decoded) == 1
    nj, ni, values = decoded[0]
    return np.asarray(values).reshape(nj, ni)


def tiny_grib(values: np.ndarray, **keys: Any) -> bytes:
    """A small MRMS-like GRIB2 message (simple packing) written with ecCodes' GRIB2 sample."""
    nj, ni = values.shape
    settings: dict[str, Any] = {
        "centre": 161,
        "discipline": 209,
        "parameterCategory": 6,
        "parameterNumber": 1,
        "Ni": ni,
        "Nj": nj,
        "latitudeOfFirstGridPointInDegrees": 40.005,
        "longitudeOfFirstGridPointInDegrees": 250.005,
        "latitudeOfLastGridPointInDegrees": 40.005 - 0.01 * (nj - 1),
        "longitudeOfLastGridPointInDegrees": 250.005 + 0.01 * (ni - 1),
        "iDirectionIncrementInDegrees": 0.01,
        "jDirectionIncrementInDegrees": 0.01,
        "dataDate": 20190610,
        "dataTime": 1234,
    }
    settings.update(keys)
    handle = eccodes.codes_grib_new_from_samples("GRIB2")
    try:
        for key, value in settings.items():
            eccodes.codes_set(handle, key, value)
        eccodes.codes_set_values(handle, values.ravel().astype(np.float64))
        return bytes(eccodes.codes_get_message(handle))
    finally:
        eccodes.codes_release(handle)


def write(tmp_path: Path, data: bytes, name: str = "x.grib2") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


TINY = np.array([[-3.0, -1.0, 0.0, 0.5], [1.5, 148.8, -3.0, 0.0], [2.0, 3.0, 4.0, 0.0]])


# --- real files -------------------------------------------------------------------------------


@pytest.mark.realdata
def test_all_real_files_are_detected_as_mrms(mrms_dir: Path) -> None:
    files = sorted(mrms_dir.glob("*.grib2"))
    assert len(files) == 11
    assert {detect_source(f) for f in files} == {"mrms"}


@pytest.mark.realdata
def test_no_coverage_code_is_nan_and_counts_match_raw_decode(field: Any, raw: np.ndarray) -> None:
    values = field.values
    status = field.coords["status"].values
    assert raw.shape == values.shape == (3500, 7000)
    raw_codes = raw < 0
    assert np.count_nonzero(raw == -3.0) == np.count_nonzero(raw_codes) == NO_COVERAGE_FIRST
    assert np.count_nonzero(np.isnan(values)) == NO_COVERAGE_FIRST
    np.testing.assert_array_equal(np.isnan(values), raw == -3.0)
    assert np.count_nonzero(status == NO_DATA) == NO_COVERAGE_FIRST
    assert field.attrs["no_coverage_cells"] == NO_COVERAGE_FIRST
    assert field.attrs["missing_cells"] == 0
    # valid cells keep the decoded rate (float64 → float32); zero is "no echo"
    valid = ~raw_codes
    assert np.array_equal(values[valid], raw[valid].astype(np.float32))
    assert np.count_nonzero(status == NO_ECHO) == np.count_nonzero(raw == 0.0)
    assert float(np.nanmax(values)) == pytest.approx(148.8, abs=1e-4)
    assert float(np.nanmean(values)) == pytest.approx(0.1352, abs=1e-3)


@pytest.mark.realdata
def test_grid_cell_centres(field: Any, mrms_dir: Path) -> None:
    grid = Grid.of(field)
    assert grid.crs.equals(pyproj.CRS.from_epsg(4326))
    assert grid.shape == (3500, 7000)
    assert grid.dx == pytest.approx(0.01) and grid.dy == pytest.approx(0.01)
    # SOURCES.md: latitude 54.995 → 20.005 (north-up), longitude 230.005 → 299.995 °E
    assert grid.x[0] == pytest.approx(230.005 - 360, abs=1e-9)
    assert grid.x[-1] == pytest.approx(299.995 - 360, abs=1e-9)
    assert grid.y[0] == pytest.approx(54.995, abs=1e-9)
    assert grid.y[-1] == pytest.approx(20.005, abs=1e-9)
    # and the message's own first/last grid points (GRIB points are cell centres)
    handle = eccodes.codes_new_from_message((mrms_dir / FIRST).read_bytes())
    try:
        lat_first = eccodes.codes_get(handle, "latitudeOfFirstGridPointInDegrees")
        lon_last = eccodes.codes_get(handle, "longitudeOfLastGridPointInDegrees")
    finally:
        eccodes.codes_release(handle)
    assert grid.y[0] == pytest.approx(lat_first, abs=1e-9)
    assert grid.x[-1] == pytest.approx(lon_last - 360, abs=1e-5)
    x_edges, y_edges = grid.edges()
    assert (x_edges[0], x_edges[-1]) == pytest.approx((-130.0, -60.0), abs=1e-9)
    assert (y_edges[0], y_edges[-1]) == pytest.approx((55.0, 20.0), abs=1e-9)


@pytest.mark.realdata
def test_time_and_kind(field: Any, mrms_dir: Path) -> None:
    assert field.attrs["kind"] == "rate" and field.attrs["units"] == "mm/h"
    assert field.attrs["accumulation_minutes"] == 0.0
    assert field.attrs["end_time"] == field.attrs["start_time"] == "2019-06-10T00:00:00Z"
    assert field.coords["time"].values == np.datetime64("2019-06-10T00:00:00")
    last = read_native(mrms_dir / "PrecipRate_00.00_20190610-002000.grib2")
    assert last.attrs["end_time"] == "2019-06-10T00:20:00Z"


@pytest.fixture(scope="module")
def pysteps_mrms(mrms_dir: Path) -> tuple[np.ndarray, dict[str, Any]]:
    importers = pytest.importorskip("pysteps.io.importers")
    pytest.importorskip("pygrib")
    # pysteps' default downsamples by 4; window_size=1 keeps the native 0.01° grid.
    precip, _, meta = importers.import_mrms_grib(str(mrms_dir / FIRST), window_size=1)
    return precip, meta


@pytest.mark.realdata
def test_matches_pysteps_import_mrms_grib(
    field: Any, pysteps_mrms: tuple[np.ndarray, dict[str, Any]]
) -> None:
    precip, meta = pysteps_mrms
    values = field.values
    assert precip.shape == values.shape and precip.dtype == values.dtype == np.float32
    nan = np.isnan(values)
    assert np.array_equal(np.isnan(precip), nan)
    assert np.array_equal(values[~nan], precip[~nan])  # same decode, same float32 cast
    # pysteps: row 0 north ("upper"), x1/x2/y1/y2 = outer edges in −180…180 (via pyproj
    # longlat), built from the first/last points with np.linspace rather than the increments, so
    # they differ from ours by the 1e-6° rounding of the message's last grid point.
    grid = Grid.of(field)
    x_edges, y_edges = grid.edges()
    assert meta["yorigin"] == "upper" and grid.y[0] > grid.y[-1]
    assert meta["xpixelsize"] == pytest.approx(grid.dx) and meta["ypixelsize"] == pytest.approx(
        grid.dy
    )
    assert meta["x1"] == pytest.approx(x_edges[0], abs=1e-5)
    assert meta["x2"] == pytest.approx(x_edges[-1], abs=1e-5)
    assert meta["y1"] == pytest.approx(y_edges[-1], abs=1e-5)
    assert meta["y2"] == pytest.approx(y_edges[0], abs=1e-5)
    assert meta["unit"] == field.attrs["units"]


@pytest.mark.realdata
def test_fresh_interpreter_exits_cleanly(mrms_dir: Path) -> None:
    # Importing eccodes before pyproj aborts Python at exit (exit code 134, "double free"); the
    # reader module imports pyproj first. Run it in a fresh interpreter, importing it first.
    code = (
        "import qpebench.datasets.mrms as m\n"
        "from pathlib import Path\n"
        f"f = m.read_mrms(Path({str(mrms_dir / FIRST)!r}))\n"
        "print(int(f.isnull().sum()))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(NO_COVERAGE_FIRST)]
    assert "double free" not in proc.stderr and "invalid pointer" not in proc.stderr


# --- synthetic messages: codes, orientation, time, gzip --------------------------------------


def test_tiny_message_codes_and_centres(tmp_path: Path) -> None:
    path = write(tmp_path, tiny_grib(TINY))
    assert detect_source(path) == "mrms"
    field = read_native(path)
    status = field.coords["status"].values
    assert np.isnan(field.values[0, 0]) and np.isnan(field.values[0, 1])
    assert status[0, 0] == status[0, 1] == status[1, 2] == NO_DATA
    assert field.attrs["no_coverage_cells"] == 2 and field.attrs["missing_cells"] == 1
    assert status[0, 2] == NO_ECHO and field.values[0, 2] == 0.0
    assert field.values[1, 1] == pytest.approx(148.8, abs=1e-3)
    np.testing.assert_allclose(field["x"].values, [-109.995, -109.985, -109.975, -109.965])
    np.testing.assert_allclose(field["y"].values, [40.005, 39.995, 39.985])
    assert field.attrs["end_time"] == "2019-06-10T12:34:00Z"


def test_south_up_scanning_keeps_file_order(tmp_path: Path) -> None:
    data = tiny_grib(
        TINY,
        scanningMode=64,
        latitudeOfFirstGridPointInDegrees=39.985,
        latitudeOfLastGridPointInDegrees=40.005,
    )
    field = read_native(write(tmp_path, data))
    np.testing.assert_allclose(field["y"].values, [39.985, 39.995, 40.005])
    assert field.values[1, 1] == pytest.approx(148.8, abs=1e-3)


def test_gzip_file_is_detected_and_read(tmp_path: Path) -> None:
    path = write(tmp_path, gzip.compress(tiny_grib(TINY)), "x.grib2.gz")
    assert detect_source(path) == "mrms"
    plain = read_mrms(write(tmp_path, tiny_grib(TINY)))
    np.testing.assert_array_equal(read_native(path).values, plain.values)
    rate = read_radar(path)  # a rate stays a rate
    np.testing.assert_array_equal(rate.values, plain.values)
    assert rate.attrs["units"] == "mm/h" and rate.attrs["native_kind"] == "rate"


# --- bad input ---------------------------------------------------------------------------------


def test_wrong_magic(tmp_path: Path) -> None:
    path = write(tmp_path, b"GRIP" + tiny_grib(TINY)[4:])
    with pytest.raises(FileFormatError, match="not a known radar product"):
        detect_source(path)
    with pytest.raises(FileFormatError, match="not a GRIB file"):
        read_native(path, source="mrms")


def test_other_discipline_is_not_mrms(tmp_path: Path) -> None:
    path = write(tmp_path, tiny_grib(TINY, discipline=0))
    with pytest.raises(FileFormatError, match="not a known radar product"):
        detect_source(path)
    with pytest.raises(FileFormatError, match="discipline 0 is not MRMS"):
        read_native(path, source="mrms")


def test_grib1_is_refused(tmp_path: Path) -> None:
    data = bytearray(tiny_grib(TINY))
    data[7] = 1
    with pytest.raises(FileFormatError, match="GRIB edition 1"):
        read_native(write(tmp_path, bytes(data)), source="mrms")


def test_truncated(tmp_path: Path) -> None:
    data = tiny_grib(TINY)
    with pytest.raises(FileFormatError, match="truncated"):
        read_native(write(tmp_path, data[:-20]))
    with pytest.raises(FileFormatError, match="truncated"):
        read_native(write(tmp_path, data[:10]), source="mrms")


def test_bad_end_marker_and_two_messages(tmp_path: Path) -> None:
    data = tiny_grib(TINY)
    with pytest.raises(FileFormatError, match="7777"):
        read_native(write(tmp_path, data[:-4] + b"7778"))
    with pytest.raises(FileFormatError, match="more than one GRIB message"):
        read_native(write(tmp_path, data + data))


def test_other_mrms_product_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, tiny_grib(TINY, parameterNumber=2))  # RadarOnly_QPE_01H
    with pytest.raises(FileFormatError, match="parameterCategory 6, parameterNumber 2"):
        read_native(path)


def test_undocumented_negative_code_is_refused(tmp_path: Path) -> None:
    values = TINY.copy()
    values[2, 3] = -2.0
    with pytest.raises(FileFormatError, match=r"1 cells hold undocumented negative codes.*-2\.0"):
        read_native(write(tmp_path, tiny_grib(values)))


def test_grid_contradicting_itself_is_refused(tmp_path: Path) -> None:
    data = tiny_grib(TINY, latitudeOfLastGridPointInDegrees=39.5)
    with pytest.raises(FileFormatError, match="grid contradicts itself"):
        read_native(write(tmp_path, data))


def test_unsupported_scanning_mode_is_refused(tmp_path: Path) -> None:
    data = tiny_grib(TINY, scanningMode=128)  # iScansNegatively
    with pytest.raises(FileFormatError, match="scanningMode 128"):
        read_native(write(tmp_path, data))


def test_forecast_validity_is_refused(tmp_path: Path) -> None:
    data = tiny_grib(TINY, forecastTime=30, indicatorOfUnitOfTimeRange=0)
    with pytest.raises(FileFormatError, match="validity time .* differs"):
        read_native(write(tmp_path, data))


def test_time_from_grib_keys(tmp_path: Path) -> None:
    field = read_native(write(tmp_path, tiny_grib(TINY, dataDate=20240229, dataTime=2358)))
    valid = datetime.fromisoformat(field.attrs["end_time"])
    assert valid == datetime(2024, 2, 29, 23, 58, tzinfo=UTC)


def test_discipline_209_from_another_centre_is_not_mrms(tmp_path: Path) -> None:
    path = write(tmp_path, tiny_grib(TINY, centre=98))
    with pytest.raises(FileFormatError, match="not a known radar product"):
        detect_source(path)
    with pytest.raises(FileFormatError, match="originating centre 98 is not NSSL"):
        read_native(path, source="mrms")
