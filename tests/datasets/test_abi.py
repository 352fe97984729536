from __future__ import annotations

import importlib.util
import shutil
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import pytest
from pyproj import CRS, Transformer

from qpebench.datasets import abi
from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import detect_source, probe_file
from qpebench.datasets.satellite import detect_satellite_source, read_satellite
from qpebench.errors import FileFormatError, UnknownNameError
from qpebench.registry import SATELLITE_READERS, load_builtins

load_builtins()

GENERATOR = Path(__file__).resolve().parents[1] / "data" / "abi" / "data.py"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("abi_test_data", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
H = 35786023.0
SMALL = {"shape": (4, 5)}


@pytest.fixture(scope="module")
def l1b(tmp_path_factory):
    return gen.write_scan(tmp_path_factory.mktemp("l1b"))


@pytest.fixture(scope="module")
def cmip(tmp_path_factory):
    return gen.write_scan(tmp_path_factory.mktemp("cmip"), level="L2", bands=(13, 14))


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    return gen.write_scan(
        tmp_path_factory.mktemp("disk"),
        bands=(13, 14),
        kind="disk",
        scene="F",
        shape=(64, 64),
        step=0.00476,
        start=datetime(2019, 6, 10, 12, 0, 20, 500000, tzinfo=UTC),
        cloud=(10.0, -60.0),
        sigma_km=400.0,
    )


def _native(truth, channels=(), source="abi_l1b"):
    return SATELLITE_READERS.get(source).read(list(truth.files.values()), list(channels))


def _files(truth, *channels):
    return [truth.files[c] for c in channels] if channels else list(truth.files.values())


# --- layout and detection ---------------------------------------------------------------------


def test_generated_l1b_has_the_real_layout(l1b):
    with h5py.File(l1b.files["C13"]) as h5:
        rad = h5["Rad"]
        assert rad.dtype == np.int16 and rad.shape == (60, 80)
        a = rad.attrs
        assert a["_Unsigned"] == b"true" or a["_Unsigned"] == "true"
        assert int(a["_FillValue"][0]) == 4095 and list(a["valid_range"]) == [0, 4094]
        assert a["scale_factor"].dtype == np.float32
        assert float(a["scale_factor"][0]) == pytest.approx(0.04572892, rel=1e-7)
        assert float(a["add_offset"][0]) == pytest.approx(-1.6443, rel=1e-7)
        assert h5["x"].dtype == np.int16 and h5["x"].attrs["scale_factor"][0] == np.float32(56e-6)
        assert h5["y"].attrs["scale_factor"][0] == np.float32(-56e-6)
        proj = h5["goes_imager_projection"].attrs
        assert float(proj["perspective_point_height"][0]) == H
        root = dict(h5.attrs)
    assert root["platform_ID"] == b"G16" or root["platform_ID"] == "G16"
    name = l1b.files["C13"].name
    assert name.startswith("OR_ABI-L1b-RadC-M6C13_G16_s20191611201171_e")


def test_content_detection_and_no_radar_reader_claims_the_files(l1b, cmip, tmp_path):
    plain = tmp_path / "renamed.bin"
    shutil.copyfile(l1b.files["C14"], plain)
    assert detect_satellite_source(plain) == "abi_l1b"
    assert detect_satellite_source(cmip.files["C13"]) == "abi_l2_cmip"
    with pytest.raises(FileFormatError, match="not a known radar product"):
        detect_source(plain)


def _with_attrs(src: Path, dst: Path, **attrs: str | None) -> Path:
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as h5:
        for key, value in attrs.items():
            if value is None:
                del h5.attrs[key]
            else:
                h5.attrs[key] = np.bytes_(value)
    return dst


@pytest.mark.parametrize(
    "attrs",
    [
        {"platform_ID": "H08"},
        {"platform_ID": "G15"},
        {"instrument_type": "GOES R Series Geostationary Lightning Mapper"},
        {"title": "ABI L2 Cloud Top Height", "dataset_name": "OR_ABI-L2-ACHAC-M6_G16_x.nc"},
        {"platform_ID": None},
    ],
)
def test_sniffers_reject_foreign_hdf5(l1b, tmp_path, attrs):
    path = _with_attrs(l1b.files["C13"], tmp_path / "x.nc", **attrs)
    probe = probe_file(path)
    assert not abi._is_l1b(probe) and not abi._is_cmip(probe)


def test_sniffer_skips_the_multiband_mcmip_layout(cmip, tmp_path):
    path = tmp_path / "mcmip.nc"
    shutil.copyfile(cmip.files["C13"], path)
    with h5py.File(path, "a") as h5:
        h5.move("CMI", "CMI_C13")
        h5.attrs["dataset_name"] = np.bytes_("OR_ABI-L2-MCMIPC-M6_G16_s2019161120117.nc")
    assert not abi._is_cmip(probe_file(path))


@pytest.mark.realdata
def test_no_real_sample_file_is_taken_for_abi(real_data):
    seen = 0
    for path in sorted(p for p in real_data.rglob("*") if p.is_file()):
        try:
            probe = probe_file(path)
        except (FileFormatError, OSError):
            continue
        seen += 1
        assert not abi._is_l1b(probe) and not abi._is_cmip(probe), path
    assert seen > 50


# --- values -------------------------------------------------------------------------------------


def _file_planck(path: Path):
    with h5py.File(path) as h5:
        return [float(h5[n][()]) for n in ("planck_fk1", "planck_fk2", "planck_bc1", "planck_bc2")]


def _pug_tb(rad, fk1, fk2, bc1, bc2):
    with np.errstate(divide="ignore", invalid="ignore"):
        return (fk2 / np.log(fk1 / rad + 1) - bc1) / bc2


def _packing_bounds(truth_tb, path):
    """Brightness temperatures half a packing step either side of the encoded radiance."""
    fk1, fk2, bc1, bc2 = _file_planck(path)
    with h5py.File(path) as h5:
        scale = float(h5["Rad"].attrs["scale_factor"][0])
    rad = fk1 / np.expm1(fk2 / (bc1 + bc2 * truth_tb))
    lo = _pug_tb(np.maximum(rad - scale / 2, 1e-12), fk1, fk2, bc1, bc2)
    hi = _pug_tb(rad + scale / 2, fk1, fk2, bc1, bc2)
    return lo, hi


def test_l1b_brightness_temperature_is_the_truth_within_one_packing_step(l1b):
    scan = _native(l1b)
    assert list(scan.channel.values) == [f"C{b:02d}" for b in range(7, 17)]
    assert scan.dtype == np.float32 and scan.dims == ("channel", "y", "x")
    for channel, truth in l1b.tb.items():
        got = scan.sel(channel=channel).values.astype(np.float64)
        lo, hi = _packing_bounds(truth, l1b.files[channel])
        assert np.isfinite(got).all()
        assert (got >= lo - 2e-4).all() and (got <= hi + 2e-4).all(), channel
        # 3.9 µm radiance at 210 K is a few counts: a step there is over a kelvin.
        # Cold radiances are few counts: a step at 210 K is >1 K at 3.9 µm (14 bits), 0.17 K at
        # 6.9 µm (11 bits), 0.04 K at 10.3 µm (12 bits).
        assert np.abs(got - truth).max() < (1.5 if channel == "C07" else 0.2), channel
    # The cold top is ~75 K below the background in the window channel.
    assert float(scan.sel(channel="C13").min()) < 212.0


def test_cmip_brightness_temperature_is_the_truth_within_one_packing_step(cmip):
    scan = _native(cmip, source="abi_l2_cmip")
    for channel in ("C13", "C14"):
        got = scan.sel(channel=channel).values
        assert np.abs(got - cmip.tb[channel]).max() <= 0.06145332 / 2 + 1e-4
    assert scan.attrs["source"] == "abi_l2_cmip" and scan.attrs["product"] == "ABI-L2-CMIPC"


def test_planck_constants_are_the_files_own(tmp_path):
    goes18_c13 = (10818.40, 1393.39, 0.07725, 0.99974)  # CMI ATBD, a GOES-18 file
    truth = gen.write_scan(tmp_path, bands=(13,), planck={13: goes18_c13})
    got = _native(truth).sel(channel="C13").values.astype(np.float64)
    lo, hi = _packing_bounds(truth.tb["C13"], truth.files["C13"])
    assert (got >= lo - 2e-4).all() and (got <= hi + 2e-4).all()
    # Decoding the same counts with GOES-16's constants would be off by more than a step.
    with h5py.File(truth.files["C13"]) as h5:
        a = h5["Rad"].attrs
        rad = h5["Rad"][()].view(np.uint16) * float(a["scale_factor"][0]) + float(
            a["add_offset"][0]
        )
    wrong = _pug_tb(rad, *gen.PLANCK[13])
    assert not ((wrong >= lo - 2e-4) & (wrong <= hi + 2e-4)).all()


def test_brightness_temperature_of_non_positive_radiance_is_nan():
    tb = abi.brightness_temperature(np.array([-0.1, 0.0, np.nan, 1.0]), *gen.PLANCK[7])
    assert np.isnan(tb[:3]).all() and tb[3] == pytest.approx(
        _pug_tb(1.0, *gen.PLANCK[7]), rel=1e-12
    )


# --- satpy as the independent oracle ------------------------------------------------------------


def _satpy_scene(reader, files):
    satpy = pytest.importorskip("satpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return satpy.Scene(reader=reader, filenames=[str(f) for f in files])


def _load(scene, names):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene.load(list(names))
        return {n: scene[n].compute() for n in names}


def _extent(grid: Grid):
    xe, ye = grid.edges()
    return (xe[0], ye[-1], xe[-1], ye[0])


def test_l1b_matches_satpy_values_area_times_and_orbit(l1b):
    channels = ["C07", "C08", "C13", "C14", "C16"]
    loaded = _load(_satpy_scene("abi_l1b", _files(l1b, *channels)), channels)
    scan = _native(l1b, channels)
    for name, ref in loaded.items():
        ours = scan.sel(channel=name).values
        np.testing.assert_allclose(ours, ref.values, rtol=0, atol=2e-3, err_msg=name)
    ref = loaded["C13"]
    area = ref.attrs["area"]
    np.testing.assert_allclose(_extent(Grid.of(scan)), area.area_extent, rtol=0, atol=1e-3)
    # The same projection: satpy's and ours put scan-edge points at the same lat/lon.
    ours_ll = Transformer.from_crs(Grid.of(scan).crs, "EPSG:4326", always_xy=True)
    theirs_ll = Transformer.from_crs(CRS(area.crs), "EPSG:4326", always_xy=True)
    pts = (np.array([-0.1, 0.0, 0.12]) * H, np.array([0.1, -0.05, 0.0]) * H)
    np.testing.assert_allclose(ours_ll.transform(*pts), theirs_ll.transform(*pts), atol=1e-9)
    assert scan.attrs["start_time"] == ref.attrs["start_time"].isoformat() + "Z"
    assert scan.attrs["end_time"] == ref.attrs["end_time"].isoformat() + "Z"
    assert scan.attrs["start_time"] == "2019-06-10T12:01:17.100000Z"
    orbit = ref.attrs["orbital_parameters"]
    assert scan.attrs["satellite_longitude"] == pytest.approx(
        orbit["satellite_nominal_longitude"], abs=1e-5
    )
    assert scan.attrs["satellite_height"] == pytest.approx(
        orbit["satellite_nominal_altitude"], abs=1.0
    )
    assert scan.attrs["projection_longitude"] == orbit["projection_longitude"] == -75.0


def test_cmip_matches_satpy_abi_l2_nc(cmip):
    loaded = _load(_satpy_scene("abi_l2_nc", _files(cmip)), ["C13", "C14"])
    scan = _native(cmip, source="abi_l2_cmip")
    for name, ref in loaded.items():
        np.testing.assert_allclose(scan.sel(channel=name).values, ref.values, atol=1e-4)
    area = loaded["C13"].attrs["area"]
    np.testing.assert_allclose(_extent(Grid.of(scan)), area.area_extent, rtol=0, atol=1e-3)


def test_full_disk_matches_satpy_including_off_disk_fill(disk):
    loaded = _load(_satpy_scene("abi_l1b", _files(disk, "C13")), ["C13"])
    scan = _native(disk, ["C13"])
    ref = loaded["C13"].values
    np.testing.assert_array_equal(np.isnan(scan.values[0]), np.isnan(ref))
    np.testing.assert_allclose(scan.values[0], ref, atol=2e-3)
    area = loaded["C13"].attrs["area"]
    np.testing.assert_allclose(_extent(Grid.of(scan)), area.area_extent, rtol=0, atol=1e-3)
    # 64 × 4.76 mrad: the disk's edge is ± 32 × 4.76 mrad × h.
    assert _extent(Grid.of(scan))[2] == pytest.approx(32 * 0.00476 * H, abs=1e-3)


# --- geolocation --------------------------------------------------------------------------------

# PUG Vol. 5 §4.2.8 Table 4.2.8 (GRS80) and §4.2.8.2 (latitude/longitude → scan angles).
REQ, RPOL = 6378137.0, 6356752.31414
BIG_H = H + REQ


def _pug_scan_angles(lat_deg, lon_deg, lon0_deg):
    e2 = (REQ**2 - RPOL**2) / REQ**2
    phi, lam = np.radians(lat_deg), np.radians(lon_deg - lon0_deg)
    phic = np.arctan(RPOL**2 / REQ**2 * np.tan(phi))
    rc = RPOL / np.sqrt(1 - e2 * np.cos(phic) ** 2)
    sx = BIG_H - rc * np.cos(phic) * np.cos(lam)
    sy = -rc * np.cos(phic) * np.sin(lam)
    sz = rc * np.sin(phic)
    return np.arcsin(-sy / np.sqrt(sx**2 + sy**2 + sz**2)), np.arctan(sz / sx)


def test_crs_reproduces_the_pug_worked_example(l1b):
    # PUG §4.2.8.1: GOES-East, x = −0.024052, y = 0.095340 rad → 33.846162° N, 84.690932° W.
    crs = Grid.of(_native(l1b, ["C13"])).crs
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(
        -0.024052 * H, 0.095340 * H
    )
    assert lat == pytest.approx(33.846162, abs=2e-6) and lon == pytest.approx(-84.690932, abs=2e-6)
    x, y = _pug_scan_angles(33.846162, -84.690932, -75.0)
    assert x == pytest.approx(-0.024052, abs=1e-6) and y == pytest.approx(0.095340, abs=1e-6)


def test_cold_cloud_lands_on_the_pixel_the_pug_navigation_predicts(l1b):
    scan = _native(l1b, ["C14"])
    with h5py.File(l1b.files["C14"]) as h5:
        xs = h5["x"][()] * np.float64(56e-6) + float(h5["x"].attrs["add_offset"][0])
        ys = h5["y"][()] * np.float64(-56e-6) + float(h5["y"].attrs["add_offset"][0])
    x, y = _pug_scan_angles(l1b.cloud_lat, l1b.cloud_lon, -75.0)
    col, row = int(np.abs(xs - x).argmin()), int(np.abs(ys - y).argmin())
    assert 0 < col < 79 and 0 < row < 59
    values = scan.values[0]
    assert np.unravel_index(np.nanargmin(values), values.shape) == (row, col)
    # And the centre of that pixel, in our metres, is the cloud's pyproj position ± half a pixel.
    to_xy = Transformer.from_crs("EPSG:4326", Grid.of(scan).crs, always_xy=True)
    cx, cy = to_xy.transform(l1b.cloud_lon, l1b.cloud_lat)
    assert abs(scan.x.values[col] - cx) <= 28e-6 * H + 1e-3
    assert abs(scan.y.values[row] - cy) <= 28e-6 * H + 1e-3
    # Rows run north → south, columns west → east, 56 µrad apart.
    assert np.allclose(np.diff(scan.x.values), 56e-6 * H) and np.allclose(
        np.diff(scan.y.values), -56e-6 * H
    )


def test_full_disk_vza_off_disk_and_satellite_position(disk):
    scan = read_satellite(_files(disk), bands=["IR10.8"], ir108="C13")
    vza = scan.vza.values
    off = ~np.isfinite(disk.tb["C13"])
    assert off.sum() > 500 and np.isnan(scan.values[0][off]).all()
    assert np.isfinite(scan.values[0][~off]).all()
    assert np.isnan(vza[off]).all()
    assert np.nanmax(vza) < 90.0
    # The pixel nearest the nominal sub-satellite point (0°, −75.2°) looks straight down.
    near = np.unravel_index(np.nanargmin((disk.lat) ** 2 + (disk.lon + 75.2) ** 2), disk.lat.shape)
    assert vza[near] < 2.0
    assert scan.attrs["satellite_longitude"] == -75.2
    assert scan.attrs["satellite_height"] == 35786023.0
    assert scan.attrs["projection_longitude"] == -75.0
    assert scan.attrs["nominal_time"] == "2019-06-10T12:00:00Z"
    assert scan.attrs["cadence_minutes"] == 10
    cloud = np.unravel_index(np.nanargmin(scan.values[0]), vza.shape)
    assert disk.lat[cloud] == pytest.approx(10.0, abs=2.0)
    assert disk.lon[cloud] == pytest.approx(-60.0, abs=2.0)


def test_conus_vza_is_plausible(l1b):
    scan = read_satellite(_files(l1b), bands=["IR10.8"])
    # Oklahoma from 75.2° W: about 47–49°.
    assert 45.0 < float(scan.vza.min()) < float(scan.vza.max()) < 51.0


# --- channels and canonical bands ---------------------------------------------------------------


def test_ir108_is_c14_by_default_and_c13_when_asked(l1b):
    native = _native(l1b)
    default = read_satellite(_files(l1b), bands=["IR10.8", "WV6.2"])
    assert list(default.channel.values) == ["C14", "C08"]
    np.testing.assert_array_equal(default.sel(band="IR10.8").values, native.sel(channel="C14"))
    alt = read_satellite(_files(l1b), bands=["IR10.8"], ir108="C13")
    assert list(alt.channel.values) == ["C13"]
    assert float(alt.wavelength_um[0]) == 10.35
    np.testing.assert_array_equal(alt.sel(band="IR10.8").values, native.sel(channel="C13"))
    assert not np.array_equal(alt.values, default.sel(band=["IR10.8"]).values)


def test_default_bands_and_scan_attributes(l1b):
    scan = read_satellite(_files(l1b))
    assert list(scan.band.values) == [
        "WV6.2",
        "WV7.3",
        "IR8.7",
        "IR9.7",
        "IR10.8",
        "IR12.0",
        "IR13.4",
    ]
    assert scan.attrs["sensor"] == "ABI" and scan.attrs["platform"] == "GOES-16"
    assert scan.attrs["source"] == "abi_l1b" and scan.attrs["product"] == "ABI-L1b-RadC"
    assert str(scan.time.values) == "2019-06-10T12:00:00.000000000"
    assert scan.attrs["end_time"] == "2019-06-10T12:03:59.400000Z"


def test_only_the_requested_files_are_needed(l1b):
    scan = _native(l1b, ["C13"])
    assert list(scan.channel.values) == ["C13"]
    alone = SATELLITE_READERS.get("abi_l1b").read([l1b.files["C13"]], [])
    np.testing.assert_array_equal(alone.values, scan.values)
    assert alone.attrs["files"] == str(l1b.files["C13"])


def test_reflective_band_files_are_skipped_when_reading_everything(tmp_path):
    ir = gen.write_scan(tmp_path / "ir", bands=(13,), **SMALL)
    vis = gen.write_scan(tmp_path / "vis", bands=(14,), attrs={14: {"var:band_id": 2}}, **SMALL)
    read = SATELLITE_READERS.get("abi_l1b").read
    scan = read([ir.files["C13"], vis.files["C14"]], [])
    assert list(scan.channel.values) == ["C13"]
    with pytest.raises(UnknownNameError, match="C02"):
        read([ir.files["C13"], vis.files["C14"]], ["C02"])


@pytest.mark.parametrize(
    ("scene", "mode", "start", "nominal", "cadence"),
    [
        ("F", 6, datetime(2019, 6, 10, 12, 0, 20, 500000), "2019-06-10T12:00:00Z", 10),
        ("F", 6, datetime(2019, 6, 10, 12, 50, 21), "2019-06-10T12:50:00Z", 10),
        ("C", 6, datetime(2019, 6, 10, 12, 6, 17, 100000), "2019-06-10T12:05:00Z", 5),
        ("M1", 6, datetime(2019, 6, 10, 23, 59, 24), "2019-06-10T23:59:00Z", 1),
        ("F", 3, datetime(2017, 2, 28, 3, 15, 38, 400000), "2017-02-28T03:15:00Z", 15),
        ("C", 3, datetime(2017, 2, 28, 3, 37, 50, 500000), "2017-02-28T03:35:00Z", 5),
        ("F", 4, datetime(2017, 2, 28, 3, 5, 33), "2017-02-28T03:05:00Z", 5),
    ],
)
def test_nominal_time_is_the_start_of_the_repeat_slot(
    tmp_path, scene, mode, start, nominal, cadence
):
    truth = gen.write_scan(
        tmp_path, bands=(13,), scene=scene, mode=mode, start=start.replace(tzinfo=UTC), **SMALL
    )
    scan = _native(truth)
    assert scan.attrs["nominal_time"] == nominal and scan.attrs["cadence_minutes"] == cadence
    assert scan.attrs["start_time"].startswith(start.isoformat()[:19])
    with h5py.File(truth.files["C13"]) as h5:
        bounds = h5["time_bounds"][()]
    j2000 = datetime(2000, 1, 1, 12, tzinfo=UTC)
    assert (j2000 - start.replace(tzinfo=UTC)).total_seconds() == pytest.approx(-bounds[0])


def test_times_fall_back_to_time_bounds(tmp_path):
    truth = gen.write_scan(
        tmp_path, bands=(13,), drop={13: ["time_coverage_start", "time_coverage_end"]}, **SMALL
    )
    scan = _native(truth)
    assert scan.attrs["start_time"] == "2019-06-10T12:01:17.100000Z"
    assert scan.attrs["nominal_time"] == "2019-06-10T12:00:00Z"


def test_satellite_position_falls_back_to_the_projection(tmp_path):
    truth = gen.write_scan(
        tmp_path,
        bands=(13,),
        drop={13: ["nominal_satellite_subpoint_lon", "nominal_satellite_height"]},
        **SMALL,
    )
    scan = _native(truth)
    assert scan.attrs["satellite_longitude"] == -75.0
    assert scan.attrs["satellite_height"] == H


def test_goes_west_platform(tmp_path):
    truth = gen.write_scan(
        tmp_path,
        bands=(14,),
        platform="G18",
        centre=(37.0, -122.0),
        cloud=(37.0, -122.0),
        **SMALL,
    )
    scan = read_satellite(_files(truth), bands=["IR10.8"])
    assert scan.attrs["platform"] == "GOES-18" and scan.attrs["satellite_longitude"] == -137.0
    assert "+lon_0=-137" in Grid.of(scan).proj4
    assert 30.0 < float(scan.vza.mean()) < 50.0


# --- bad input ----------------------------------------------------------------------------------


def test_missing_channel_is_refused_naming_it(l1b):
    files = _files(l1b, "C13", "C14")
    with pytest.raises(FileFormatError, match=r"no file for channel\(s\) \['C16'\]") as err:
        SATELLITE_READERS.get("abi_l1b").read(files, ["C13", "C16"])
    assert str(files[0]) in str(err.value)
    with pytest.raises(FileFormatError, match=r"no file for channel\(s\) \['C16'\]"):
        read_satellite(files, bands=["IR10.8", "IR13.4"])


def test_unknown_channel_name(l1b):
    with pytest.raises(UnknownNameError, match="B14"):
        _native(l1b, ["B14"])


def test_truncated_file_is_refused(l1b, tmp_path):
    cut = tmp_path / l1b.files["C13"].name
    data = l1b.files["C13"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=str(cut)):
        read_satellite([cut], bands=["IR10.8"], ir108="C13")
    with pytest.raises(FileFormatError, match=str(cut)):
        SATELLITE_READERS.get("abi_l1b").read([cut], ["C13"])


def test_not_hdf5_and_missing_files(tmp_path):
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"CDF\x01" + bytes(100))
    with pytest.raises(FileFormatError, match="junk.nc"):
        SATELLITE_READERS.get("abi_l1b").read([junk], [])
    with pytest.raises(FileNotFoundError):
        SATELLITE_READERS.get("abi_l1b").read([tmp_path / "nope.nc"], [])
    with pytest.raises(FileFormatError, match="no files"):
        SATELLITE_READERS.get("abi_l1b").read([], [])


def test_files_of_different_scans_are_refused(tmp_path):
    a = gen.write_scan(tmp_path / "a", bands=(13,), **SMALL)
    b = gen.write_scan(
        tmp_path / "b", bands=(14,), start=datetime(2019, 6, 10, 12, 6, 17, tzinfo=UTC), **SMALL
    )
    with pytest.raises(FileFormatError, match="not from the same scan.*nominal time") as err:
        SATELLITE_READERS.get("abi_l1b").read([a.files["C13"], b.files["C14"]], [])
    assert str(b.files["C14"]) in str(err.value) and str(a.files["C13"]) in str(err.value)


@pytest.mark.parametrize(
    ("other", "match"),
    [
        ({"platform": "G17"}, "platform"),
        ({"scene": "F", "start": datetime(2019, 6, 10, 12, 0, 20, tzinfo=UTC)}, "scene"),
        ({"mode": 3}, "timeline mode"),
    ],
)
def test_files_of_other_platforms_scenes_or_timelines_are_refused(tmp_path, other, match):
    a = gen.write_scan(tmp_path / "a", bands=(13,), **SMALL)
    b = gen.write_scan(tmp_path / "b", bands=(14,), **SMALL, **other)
    with pytest.raises(FileFormatError, match=f"not from the same scan.*{match}"):
        SATELLITE_READERS.get("abi_l1b").read([a.files["C13"], b.files["C14"]], [])


def test_files_on_different_grids_are_refused(tmp_path):
    a = gen.write_scan(tmp_path / "a", bands=(13,), **SMALL)
    b = gen.write_scan(tmp_path / "b", bands=(14,), centre=(36.0, -97.5), **SMALL)
    with pytest.raises(FileFormatError, match="grid differs") as err:
        SATELLITE_READERS.get("abi_l1b").read([a.files["C13"], b.files["C14"]], [])
    assert str(b.files["C14"]) in str(err.value)


def test_the_same_channel_twice_is_refused(tmp_path):
    a = gen.write_scan(tmp_path / "a", bands=(13,), **SMALL)
    b = gen.write_scan(tmp_path / "b", bands=(13,), centre=(36.0, -97.5), **SMALL)
    with pytest.raises(FileFormatError, match="channel C13 given twice"):
        SATELLITE_READERS.get("abi_l1b").read([a.files["C13"], b.files["C13"]], [])


def test_l1b_and_cmip_cannot_be_mixed(l1b, cmip):
    with pytest.raises(FileFormatError, match="an ABI CMIP file.*expected ABI L1b"):
        read_satellite([l1b.files["C13"], cmip.files["C14"]], bands=["IR10.8"])
    with pytest.raises(FileFormatError, match="an ABI L1b file.*expected ABI CMIP"):
        read_satellite([cmip.files["C14"], l1b.files["C13"]], bands=["IR10.8"])


@pytest.mark.parametrize(
    ("drop", "match"),
    [
        (["planck_fk1"], r"Planck constant\(s\) \['planck_fk1'\] missing"),
        (["goes_imager_projection"], "no 'goes_imager_projection'"),
        (["x"], "no 'x' coordinate"),
    ],
)
def test_incomplete_files_are_refused(tmp_path, drop, match):
    truth = gen.write_scan(tmp_path, bands=(13,), drop={13: drop}, **SMALL)
    with pytest.raises(FileFormatError, match=match) as err:
        _native(truth)
    assert str(truth.files["C13"]) in str(err.value)


def test_scene_and_mode_come_from_the_name_when_the_attributes_are_missing(tmp_path):
    truth = gen.write_scan(tmp_path, bands=(13,), drop={13: ["timeline_id", "scene_id"]}, **SMALL)
    assert _native(truth).attrs["cadence_minutes"] == 5  # from dataset_name "-RadC-M6"
    bare = gen.write_scan(
        tmp_path / "bare", bands=(13,), drop={13: ["timeline_id", "dataset_name"]}, **SMALL
    )
    neutral = bare.files["C13"].rename(tmp_path / "bare" / "scan.nc")
    with pytest.raises(FileFormatError, match="cannot tell the scan's scene and timeline"):
        SATELLITE_READERS.get("abi_l1b").read([neutral], [])


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ({"timeline_id": "ABI Mode 5", "dataset_name": "x"}, "no known repeat cycle"),
        ({"proj:sweep_angle_axis": "z"}, "sweep_angle_axis"),
        ({"proj:grid_mapping_name": "latitude_longitude"}, "expected 'geostationary'"),
        ({"time_coverage_start": "2019-06-10T12:05:00.0Z"}, "ends .* before it starts"),
    ],
)
def test_inconsistent_metadata_is_refused(tmp_path, attrs, match):
    truth = gen.write_scan(tmp_path, bands=(13,), attrs={13: attrs}, **SMALL)
    with pytest.raises(FileFormatError, match=match):
        _native(truth)


def test_fill_counts_become_nan(tmp_path):
    truth = gen.write_scan(tmp_path, bands=(13,), **SMALL)
    with h5py.File(truth.files["C13"], "a") as h5:
        rad = h5["Rad"][()]
        rad[0, 0] = 4095  # _FillValue
        rad[1, 1] = 4095 + 1  # beyond valid_range (written as a 12-bit overflow)
        h5["Rad"][...] = rad
    values = _native(truth).values[0]
    assert np.isnan(values[0, 0]) and np.isnan(values[1, 1])
    assert np.isfinite(values).sum() == values.size - 2


def test_generator_prints_reproducible_checksums(tmp_path, capsys):
    assert gen.main([str(tmp_path / "one")]) == 0
    first = capsys.readouterr().out
    assert gen.main([str(tmp_path / "two")]) == 0
    assert capsys.readouterr().out == first
    assert len(first.splitlines()) == 14
    for band, constants in gen.PLANCK.items():
        nu = gen.check_planck(band, constants)
        assert 700 < nu < 2700
