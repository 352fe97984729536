from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from pyproj import CRS, Transformer

from qpebench.datasets import bom, knmi
from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import (
    ECHO,
    NO_DATA,
    NO_ECHO,
    detect_source,
    probe_file,
    read_native,
    read_radar,
)
from qpebench.errors import FileFormatError

FIRST = "bom/2_20180616_100000.prcp-cscn.nc"


def _copy(real_data: Path, tmp_path: Path, name: str = "copy.nc") -> Path:
    out = tmp_path / name
    shutil.copyfile(real_data / FIRST, out)
    out.chmod(0o644)
    return out


def _set(node: h5py.HLObject, key: str, value: str) -> None:
    node.attrs[key] = np.bytes_(value)


def _raw(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as h5:
        return h5["precipitation"][()]


@pytest.mark.realdata
def test_every_sample_is_detected_as_rainfields_and_only_that(real_data: Path) -> None:
    files = sorted((real_data / "bom").glob("2_*.prcp-cscn.nc"))
    assert len(files) == 6
    for path in files:
        assert detect_source(path) == "bom_rainfields"
        assert not knmi._is_knmi(probe_file(path))


@pytest.mark.realdata
def test_values_follow_the_packed_integers(real_data: Path) -> None:
    path = real_data / FIRST
    raw = _raw(path)
    assert raw.dtype == np.int16
    field = read_native(path)
    status = field.coords["status"].values
    # No fill values in the samples: every cell is a measurement; 0 is "no echo".
    assert (raw == -32768).sum() == 0 and not np.isnan(field.values).any()
    assert (status == NO_DATA).sum() == 0
    np.testing.assert_array_equal(status == NO_ECHO, raw == 0)
    np.testing.assert_array_equal(status == ECHO, raw > 0)
    assert (raw == 0).sum() == 234908 and (raw > 0).sum() == 27236
    np.testing.assert_allclose(field.values, raw * 0.05, rtol=1e-6)
    assert float(field.values.max()) == pytest.approx(3.2, abs=1e-6)
    assert field.attrs["units"] == "mm" and field.attrs["kind"] == "accumulation"
    assert "quality" not in field.coords


@pytest.mark.realdata
def test_cf_decoding_agrees_with_xarray_h5netcdf(real_data: Path) -> None:
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    path = real_data / FIRST
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        expected = ds["precipitation"].values
        valid = ds["valid_time"].values
        start = ds["start_time"].values
    field = read_native(path)
    np.testing.assert_allclose(field.values, expected, rtol=1e-6, equal_nan=True)
    assert field.coords["time"].values == valid
    assert np.datetime64(field.attrs["start_time"].rstrip("Z"), "ns") == start


@pytest.mark.realdata
def test_time_window_and_rate(real_data: Path) -> None:
    path = real_data / FIRST
    field = read_native(path)
    assert field.attrs["start_time"] == "2018-06-16T09:54:00Z"
    assert field.attrs["end_time"] == "2018-06-16T10:00:00Z"
    assert field.attrs["accumulation_minutes"] == 6.0
    rate = read_radar(path)
    assert rate.attrs["units"] == "mm/h"
    np.testing.assert_allclose(rate.values, field.values * 10.0, rtol=1e-6)
    assert float(rate.values.max()) == pytest.approx(32.0, rel=1e-6)


@pytest.mark.realdata
def test_coordinates_are_north_west_cell_corners(real_data: Path) -> None:
    """The consistency behind the corner reading, a judgement (see the bom module docstring)."""
    path = real_data / FIRST
    with h5py.File(path, "r") as h5:
        assert not any(k.endswith("bounds") for k in h5)
        assert "bounds" not in h5["x"].attrs and "bounds" not in h5["y"].attrs
        x_km, y_km = h5["x"][()].astype(float), h5["y"][()].astype(float)
        origin = (
            float(h5["proj"].attrs["longitude_of_central_meridian"][0]),
            float(h5["proj"].attrs["latitude_of_projection_origin"][0]),
        )
    # The file's values: x −128 … 127.5, y 128 … −127.5 km, 0.5 km apart.
    assert (x_km[0], x_km[-1], y_km[0], y_km[-1]) == (-128.0, 127.5, 128.0, -127.5)
    grid = Grid.of(read_native(path))
    xe, ye = grid.edges()
    # Read as corners, the cells cover exactly ±128 km around the projection origin (the radar),
    np.testing.assert_allclose([xe[0], xe[-1], ye[0], ye[-1]], [-128e3, 128e3, 128e3, -128e3])
    # and the origin is the common corner of the four central cells.
    x0, y0 = Transformer.from_crs(grid.crs.geodetic_crs, grid.crs, always_xy=True).transform(
        *origin
    )
    assert abs(x0) < 1e-6 and abs(y0) < 1e-6
    assert grid.x[255] == -250.0 and grid.x[256] == 250.0
    assert grid.y[255] == 250.0 and grid.y[256] == -250.0
    # Centres are the file's values shifted half a cell east and south.
    np.testing.assert_allclose(grid.x, x_km * 1000 + 250)
    np.testing.assert_allclose(grid.y, y_km * 1000 - 250)
    assert read_native(path).attrs["coordinate_convention"] == "x/y are north-west cell corners"


@pytest.mark.realdata
def test_crs_is_the_albers_grid_mapping(real_data: Path) -> None:
    grid = Grid.of(read_native(real_data / FIRST))
    assert grid.units == "metre" and (grid.dx, grid.dy) == (500.0, 500.0)
    assert grid.shape == (512, 512)
    reference = CRS.from_proj4(
        "+proj=aea +lat_0=-37.852 +lon_0=144.752 +lat_1=-18 +lat_2=-36 +ellps=GRS80 +units=m"
    )
    to_ref = Transformer.from_crs(grid.crs, reference, always_xy=True)
    xs, ys = to_ref.transform([-128e3, 0.0, 127750.0], [128e3, 0.0, -127750.0])
    np.testing.assert_allclose(xs, [-128e3, 0.0, 127750.0], atol=1e-3)
    np.testing.assert_allclose(ys, [128e3, 0.0, -127750.0], atol=1e-3)


@pytest.mark.realdata
def test_equivalent_to_pysteps_import_bom_rf3(real_data: Path) -> None:
    importers = pytest.importorskip("pysteps.io.importers")
    pytest.importorskip("netCDF4")
    path = real_data / FIRST
    precip, _, meta = importers.import_bom_rf3(str(path))
    precip = np.ma.filled(precip.astype(np.float64), np.nan)
    field = read_native(path)
    np.testing.assert_array_equal(np.isnan(precip), np.isnan(field.values))
    np.testing.assert_allclose(field.values, precip, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert meta["unit"] == "mm" and meta["accutime"] == field.attrs["accumulation_minutes"]
    grid = Grid.of(field)
    xe, ye = grid.edges()
    assert (meta["xpixelsize"], meta["ypixelsize"]) == (grid.dx, grid.dy)
    # pysteps' left and top edges are ours ...
    assert meta["x1"] == xe[0] and meta["y2"] == ye[0]
    # ... its right and bottom "edges" are min/max of the file's values: one cell short.
    assert meta["x2"] == xe[-1] - grid.dx and meta["y1"] == ye[-1] + grid.dy
    # Same projection as pysteps' PROJ string.
    to_theirs = Transformer.from_crs(grid.crs, CRS.from_proj4(meta["projection"]), always_xy=True)
    x, y = to_theirs.transform(grid.x[::100], grid.y[::100])
    np.testing.assert_allclose(x, grid.x[::100], atol=1e-3)
    np.testing.assert_allclose(y, grid.y[::100], atol=1e-3)


@pytest.mark.realdata
def test_fill_and_missing_values_become_no_data(real_data: Path, tmp_path: Path) -> None:
    path = _copy(real_data, tmp_path)
    with h5py.File(path, "r+") as h5:
        data = h5["precipitation"]
        block = data[0:4, 0:4]
        block[:2] = -32768
        block[2:] = -999
        data[0:4, 0:4] = block
        data.attrs["missing_value"] = np.array([-999], np.int16)
    field = read_native(path)
    assert np.isnan(field.values[:4, :4]).all()
    assert (field.coords["status"].values[:4, :4] == NO_DATA).all()
    assert np.isfinite(field.values[4:]).all()


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h5: _set(h5["precipitation"], "units", "mm h-1"), "expected kg m-2 or mm"),
        (
            lambda h5: _set(h5["valid_time"], "units", "seconds since launch"),
            "cannot decode 'valid_time' units",
        ),
        (lambda h5: h5["start_time"].attrs.__delitem__("units"), "'start_time' has no 'units'"),
        (lambda h5: _set(h5["precipitation"], "grid_mapping", "crs"), "'crs' is missing"),
        (lambda h5: _set(h5["x"], "units", "degrees"), "'x' has units 'degrees'"),
        (
            lambda h5: h5["start_time"].write_direct(np.array(1529143500, np.int64)),
            "window is empty or reversed",
        ),
    ],
)
def test_bad_metadata_is_refused(real_data: Path, tmp_path: Path, change, message: str) -> None:
    path = _copy(real_data, tmp_path)
    with h5py.File(path, "r+") as h5:
        change(h5)
    with pytest.raises(FileFormatError, match=message):
        read_native(path, source="bom_rainfields")


@pytest.mark.realdata
def test_missing_variable_is_named(real_data: Path, tmp_path: Path) -> None:
    path = _copy(real_data, tmp_path)
    with h5py.File(path, "r+") as h5:
        del h5["start_time"]
    with pytest.raises(FileFormatError, match=r"copy\.nc: .*lacks variable\(s\) \['start_time'\]"):
        read_native(path)


@pytest.mark.realdata
def test_truncated_file_is_refused(real_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.nc"
    path.write_bytes((real_data / FIRST).read_bytes()[:8000])
    with pytest.raises(FileFormatError, match=r"truncated\.nc: HDF5 file cannot be opened"):
        read_native(path, source="bom_rainfields")


def test_wrong_magic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "2_20180616_100000.prcp-cscn.nc"
    path.write_bytes(b"CDF\x01" + b"\x00" * 60)  # netCDF-3 classic, not netCDF4/HDF5
    with pytest.raises(FileFormatError, match="not a known radar product"):
        read_native(path)
    with pytest.raises(FileFormatError, match="not an HDF5 file"):
        read_native(path, source="bom_rainfields")


def _synthetic(path: Path, *, bounds: bool, south_up: bool = False) -> None:
    """A small Rainfields-like file (3 × 4 cells of 2 km), with or without cell bounds."""
    x = np.array([-3.0, -1.0, 1.0, 3.0])
    y = np.array([2.0, 0.0, -2.0])[:: -1 if south_up else 1]
    with h5py.File(path, "w") as h5:
        h5.attrs["source"] = np.bytes_("rainfields 3.x")
        h5["x"] = x
        h5["x"].attrs["units"] = np.bytes_("km")
        h5["y"] = y
        h5["y"].attrs["units"] = np.bytes_("km")
        if bounds:
            h5["x"].attrs["bounds"] = np.bytes_("x_bounds")
            h5["y"].attrs["bounds"] = np.bytes_("y_bounds")
            h5["x_bounds"] = np.c_[x - 1, x + 1]
            h5["y_bounds"] = np.c_[y + 1, y - 1]
        h5["precipitation"] = np.arange(12, dtype=np.float32).reshape(3, 4)
        h5["precipitation"].attrs["units"] = np.bytes_("mm")
        h5["precipitation"].attrs["grid_mapping"] = np.bytes_("proj")
        h5["proj"] = np.int8(0)
        h5["proj"].attrs["grid_mapping_name"] = np.bytes_("albers_conical_equal_area")
        h5["proj"].attrs["standard_parallel"] = np.array([-18.0, -36.0])
        h5["proj"].attrs["longitude_of_central_meridian"] = np.array([132.0])
        h5["proj"].attrs["latitude_of_projection_origin"] = np.array([0.0])
        for name, value in (("start_time", 1_600_000_000 - 600), ("valid_time", 1_600_000_000)):
            h5[name] = np.int64(value)
            h5[name].attrs["units"] = np.bytes_("seconds since 1970-01-01 00:00:00 UTC")


def test_bounds_when_present_give_the_centres(tmp_path: Path) -> None:
    path = tmp_path / "with_bounds.nc"
    _synthetic(path, bounds=True)
    assert detect_source(path) == "bom_rainfields"
    field = read_native(path)
    np.testing.assert_allclose(field.x.values, [-3000.0, -1000.0, 1000.0, 3000.0])
    np.testing.assert_allclose(field.y.values, [2000.0, 0.0, -2000.0])
    assert field.attrs["coordinate_convention"] == "bounds"
    assert field.attrs["accumulation_minutes"] == 10.0
    assert field.attrs["end_time"] == "2020-09-13T12:26:40Z"
    path = tmp_path / "without_bounds.nc"
    _synthetic(path, bounds=False)
    field = read_native(path)
    np.testing.assert_allclose(field.x.values, [-2000.0, 0.0, 2000.0, 4000.0])
    np.testing.assert_allclose(field.y.values, [1000.0, -1000.0, -3000.0])
    path = tmp_path / "south_up.nc"
    _synthetic(path, bounds=False, south_up=True)
    np.testing.assert_allclose(read_native(path).y.values, [-3000.0, -1000.0, 1000.0])


def test_foreign_hdf5_is_not_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "other.nc"
    with h5py.File(path, "w") as h5:
        h5["precipitation"] = np.zeros((2, 2))
        h5["time"] = np.int64(0)
    assert not bom._is_rainfields(probe_file(path))
