from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from pyproj import Proj, Transformer

from qpebench.datasets import bom, knmi
from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import (
    NO_DATA,
    NO_ECHO,
    detect_source,
    probe_file,
    read_native,
    read_radar,
)
from qpebench.errors import ConversionError, FileFormatError

FIRST = "knmi/RAD_NL25_RAP_5min_201008260000.h5"


def _copy(real_data: Path, tmp_path: Path, name: str = "copy.h5") -> Path:
    out = tmp_path / name
    shutil.copyfile(real_data / FIRST, out)
    out.chmod(0o644)
    return out


@pytest.mark.realdata
def test_every_sample_is_detected_as_knmi_and_only_knmi(real_data: Path) -> None:
    files = sorted((real_data / "knmi").glob("RAD_NL25_RAP_5min_*.h5"))
    assert len(files) == 8
    for path in files:
        assert detect_source(path) == "knmi"
        assert not bom._is_rainfields(probe_file(path))
    for path in sorted((real_data / "bom").glob("*.nc")):
        assert not knmi._is_knmi(probe_file(path))


@pytest.mark.realdata
def test_values_and_status_follow_the_raw_codes(real_data: Path) -> None:
    path = real_data / FIRST
    with h5py.File(path, "r") as h5:
        raw = h5["image1/image_data"][()]
    field = read_native(path)
    status = field.coords["status"].values
    missing = raw == 65535
    assert missing.sum() == 398271 and (~missing).sum() == 137229
    np.testing.assert_array_equal(status == NO_DATA, missing)
    np.testing.assert_array_equal(np.isnan(field.values), missing)
    np.testing.assert_array_equal(status == NO_ECHO, raw == 0)
    assert (raw == 0).sum() == 47311
    np.testing.assert_allclose(field.values[~missing], raw[~missing] * 0.01, rtol=1e-6)
    assert float(np.nanmax(field.values)) == pytest.approx(0.72, abs=1e-6)
    assert field.attrs["kind"] == "accumulation" and field.attrs["units"] == "mm"
    assert field.attrs["quantity"] == "ACCUMULATED_PRECIPITATION_[MM]"
    assert "quality" not in field.coords


@pytest.mark.realdata
def test_grid_is_metres_and_its_outer_corners_are_the_files_lonlat_corners(
    real_data: Path,
) -> None:
    path = real_data / FIRST
    with h5py.File(path, "r") as h5:
        corners = h5["geographic"].attrs["geo_product_corners"].astype(float).reshape(4, 2)
    field = read_native(path)
    grid = Grid.of(field)
    assert grid.shape == (765, 700)
    assert grid.units == "metre" and grid.dx == 1000.0 and grid.dy == 1000.0
    assert grid.crs.ellipsoid.semi_major_metre == pytest.approx(6378137.0)
    assert grid.crs.ellipsoid.semi_minor_metre == pytest.approx(6356752.0)
    xe, ye = grid.edges()
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    # File order: lower-left, upper-left, upper-right, lower-right.
    xs = [xe[0], xe[0], xe[-1], xe[-1]]
    ys = [ye[-1], ye[0], ye[0], ye[-1]]
    lon, lat = to_lonlat.transform(xs, ys)
    np.testing.assert_allclose(np.c_[lon, lat], corners, atol=1e-3)
    # Cell centres are half a cell inside the corners (not the corners themselves).
    assert field.x.values[0] == 500.0 and field.y.values[0] == -3650500.0


@pytest.mark.realdata
def test_time_window_and_accumulation_period(real_data: Path) -> None:
    field = read_native(real_data / FIRST)
    assert field.attrs["start_time"] == "2010-08-25T23:55:00Z"
    assert field.attrs["end_time"] == "2010-08-26T00:00:00Z"
    assert field.attrs["accumulation_minutes"] == 5.0
    assert field.coords["time"].values == np.datetime64("2010-08-26T00:00:00", "ns")
    last = read_native(real_data / "knmi/RAD_NL25_RAP_5min_201008260035.h5")
    assert last.attrs["end_time"] == "2010-08-26T00:35:00Z"


@pytest.mark.realdata
def test_read_radar_turns_the_5min_amount_into_mm_per_hour(real_data: Path) -> None:
    native = read_native(real_data / FIRST)
    rate = read_radar(real_data / FIRST)
    assert rate.attrs["units"] == "mm/h" and rate.attrs["native_kind"] == "accumulation"
    np.testing.assert_allclose(rate.values, native.values * 12.0, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(rate.coords["status"].values, native.coords["status"].values)


@pytest.mark.realdata
def test_equivalent_to_pysteps_import_knmi_hdf5(real_data: Path) -> None:
    importers = pytest.importorskip("pysteps.io.importers")
    path = real_data / FIRST
    precip, _, meta = importers.import_knmi_hdf5(str(path))
    field = read_native(path)
    np.testing.assert_array_equal(np.isnan(precip), np.isnan(field.values))
    np.testing.assert_allclose(field.values, precip, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert meta["cartesian_unit"] == "km" and meta["accutime"] == 5.0
    grid = Grid.of(field)
    xe, ye = grid.edges()
    assert (xe[0], xe[-1]) == (meta["x1"] * 1000, meta["x2"] * 1000)
    assert (ye[-1], ye[0]) == (meta["y1"] * 1000, meta["y2"] * 1000)
    # pysteps keeps KNMI's km projection: the same lon/lat must come out 1000 times smaller.
    # (PROJ will not transform between the two CRSs: it takes a 6378 "km" radius for another
    # celestial body; so project through lon/lat with the bare projection formulas.)
    xx, yy = np.meshgrid(field.x.values[::99], field.y.values[::99])
    lon, lat = Transformer.from_crs(grid.crs, grid.crs.geodetic_crs, always_xy=True).transform(
        xx, yy
    )
    xk, yk = Proj(meta["projection"])(lon, lat)
    np.testing.assert_allclose(xk, xx / 1000.0, atol=1e-6)
    np.testing.assert_allclose(yk, yy / 1000.0, atol=1e-6)


@pytest.mark.parametrize(
    ("formula", "gain", "offset"),
    [
        ("GEO=0.01*PV+0.0", 0.01, 0.0),
        ("GEO=0.500000*PV+-32.000000", 0.5, -32.0),
        ("GEO = 0.5 * PV - 31.5", 0.5, -31.5),
        ("GEO=1e-2*PV", 0.01, 0.0),
    ],
)
def test_calibration_formula_is_parsed(formula: str, gain: float, offset: float) -> None:
    assert knmi.parse_calibration(formula, Path("f.h5")) == (gain, offset)


@pytest.mark.parametrize("formula", ["", "GEO=log(PV)", "0.01*PV", "GEO=0.01*PV+", "GEO=PV*0.01"])
def test_unparseable_calibration_formula_is_refused(formula: str) -> None:
    with pytest.raises(FileFormatError, match="cannot parse calibration formula"):
        knmi.parse_calibration(formula, Path("f.h5"))


def test_knmi_timestamps() -> None:
    got = knmi.parse_datetime("26-AUG-2010;00:05:30.500", Path("f.h5"), "t")
    assert got == datetime(2010, 8, 26, 0, 5, 30, 500000, UTC)
    with pytest.raises(FileFormatError, match="malformed t '2010-08-26 00:05'"):
        knmi.parse_datetime("2010-08-26 00:05", Path("f.h5"), "t")
    with pytest.raises(FileFormatError, match="malformed t"):
        knmi.parse_datetime("26-XYZ-2010;00:05:00.000", Path("f.h5"), "t")


@pytest.mark.realdata
def test_formula_in_file_drives_the_calibration(real_data: Path, tmp_path: Path) -> None:
    path = _copy(real_data, tmp_path)
    with h5py.File(path, "r+") as h5:
        h5["image1/calibration"].attrs["calibration_formulas"] = np.bytes_("GEO=0.02*PV+1.0")
        raw = h5["image1/image_data"][()]
    field = read_native(path)
    ok = raw != 65535
    np.testing.assert_allclose(field.values[ok], raw[ok] * 0.02 + 1.0, rtol=1e-6)
    with h5py.File(path, "r+") as h5:
        h5["image1/calibration"].attrs["calibration_formulas"] = np.bytes_("GEO=sqrt(PV)")
    with pytest.raises(FileFormatError, match=r"copy\.h5: cannot parse calibration formula"):
        read_native(path)


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("group", "attr", "message"),
    [
        ("overview", "product_datetime_end", "missing KNMI attribute 'product_datetime_end'"),
        ("image1/calibration", "calibration_missing_data", "'calibration_missing_data'"),
        ("geographic", "geo_row_offset", "missing KNMI attribute 'geo_row_offset'"),
        ("geographic/map_projection", "projection_proj4_params", "'projection_proj4_params'"),
    ],
)
def test_missing_required_attribute_is_named(
    real_data: Path, tmp_path: Path, group: str, attr: str, message: str
) -> None:
    path = _copy(real_data, tmp_path)
    with h5py.File(path, "r+") as h5:
        del h5[group].attrs[attr]
    with pytest.raises(FileFormatError, match=message):
        read_native(path)


@pytest.mark.realdata
def test_unknown_quantity_and_inconsistent_grid_are_refused(
    real_data: Path, tmp_path: Path
) -> None:
    path = _copy(real_data, tmp_path)
    with h5py.File(path, "r+") as h5:
        h5["image1"].attrs["image_geo_parameter"] = np.bytes_("ECHO_TOPS_[KM]")
    with pytest.raises(FileFormatError, match=r"no supported image_geo_parameter.*ECHO_TOPS"):
        read_native(path)
    path = _copy(real_data, tmp_path, "shifted.h5")
    with h5py.File(path, "r+") as h5:
        h5["geographic"].attrs["geo_row_offset"] = np.array([3600.0], np.float32)
    with pytest.raises(FileFormatError, match="geo_product_corners disagree"):
        read_native(path)


@pytest.mark.realdata
def test_radii_given_in_metres_give_the_same_grid(real_data: Path, tmp_path: Path) -> None:
    path = _copy(real_data, tmp_path)
    with h5py.File(path, "r+") as h5:
        h5["geographic/map_projection"].attrs["projection_proj4_params"] = np.bytes_(
            "+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378137 +b=6356752 +x_0=0 y_0=0"
        )
    assert Grid.of(read_native(path)).same_as(Grid.of(read_native(real_data / FIRST)))


@pytest.mark.realdata
def test_reflectivity_product_stays_dbz(real_data: Path, tmp_path: Path) -> None:
    path = _copy(real_data, tmp_path)
    raw = np.zeros((765, 700), np.uint8)
    raw[:10] = 255
    raw[10:20] = 100  # 18 dBZ
    with h5py.File(path, "r+") as h5:
        del h5["image1/image_data"]
        h5["image1/image_data"] = raw
        h5["image1"].attrs["image_geo_parameter"] = np.bytes_("REFLECTIVITY_[DBZ]")
        cal = h5["image1/calibration"].attrs
        cal["calibration_formulas"] = np.bytes_("GEO=0.500000*PV+-32.000000")
        cal["calibration_missing_data"] = np.array([255], np.int32)
        cal["calibration_out_of_image"] = np.array([255], np.int32)
    field = read_native(path)
    assert field.attrs["kind"] == "reflectivity" and field.attrs["units"] == "dBZ"
    assert np.isnan(field.values[:10]).all()
    np.testing.assert_allclose(field.values[10:20], 18.0)
    np.testing.assert_allclose(field.values[20:], -32.0)
    assert (field.coords["status"].values[:10] == NO_DATA).all()
    with pytest.raises(ConversionError, match="explicit Z–R"):
        read_radar(path)
    rate = read_radar(path, zr="marshall_palmer")
    assert float(rate.values[15, 0]) == pytest.approx((10**1.8 / 200) ** (1 / 1.6), rel=1e-5)


@pytest.mark.realdata
def test_truncated_file_is_refused(real_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.h5"
    path.write_bytes((real_data / FIRST).read_bytes()[:20000])
    with pytest.raises(FileFormatError, match=r"truncated\.h5: HDF5 file cannot be opened"):
        read_native(path, source="knmi")


def test_wrong_magic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "RAD_NL25_RAP_5min_201008260000.h5"
    path.write_bytes(b"not an HDF5 file at all\n" * 10)
    with pytest.raises(FileFormatError, match="not a known radar product"):
        read_native(path)
    with pytest.raises(FileFormatError, match="not an HDF5 file"):
        read_native(path, source="knmi")


def test_foreign_hdf5_is_not_sniffed_and_missing_groups_are_named(tmp_path: Path) -> None:
    path = tmp_path / "odim_like.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("what")
        h5.create_group("where")
        h5.create_group("dataset1")
    assert not knmi._is_knmi(probe_file(path))
    path = tmp_path / "partial.h5"
    with h5py.File(path, "w") as h5:
        for name in ("overview", "geographic", "image1"):
            h5.create_group(name)
        h5["image1"].attrs["image_geo_parameter"] = np.bytes_("ACCUMULATED_PRECIPITATION_[MM]")
    assert knmi._is_knmi(probe_file(path))
    with pytest.raises(FileFormatError, match=r"missing /image1/image_data"):
        read_native(path)
