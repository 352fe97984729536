"""Co-location end to end: real Satip frames + ODIM radar files → a store whose patches line up."""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pyproj import CRS, Geod, Transformer

from qpebench.datasets.colocate import ColocationConfig, build_colocated_store
from qpebench.datasets.regrid import laea_grid
from qpebench.datasets.seviri import SATIP_RESCALING
from qpebench.errors import ConfigError
from qpebench.registry import load_builtins
from qpebench.store import SampleStore, SampleStoreWriter

load_builtins()

FEATURE = (-1.2, 53.2)  # lon, lat of the synthetic storm
OPERA = "+proj=laea +lat_0=55.0 +lon_0=10.0 +x_0=1950000.0 +y_0=-2100000.0 +units=m +ellps=WGS84"
SATIP_GEOS = "+proj=geos +lon_0=9.5 +h=35785831 +a=6378169 +rf=295.488065897014"
UK_GRID = laea_grid(53.0, -1.5, 4000.0, (64, 64))
UK_CONFIG = ColocationConfig(
    region="uk",
    frames=4,
    step_minutes=5.0,
    tolerance_minutes=1.0,
    patch_size=32,
    min_valid_fraction=0.5,
)
RADAR_TIMES = [
    "20231220114000",
    "20231220120000",
    "20231220121000",
    "20231220122000",
    "20231220130000",
]


def distance_km(lon, lat):
    geod = Geod(ellps="WGS84")
    _, _, d = geod.inv(np.full_like(lon, FEATURE[0]), np.full_like(lat, FEATURE[1]), lon, lat)
    return d / 1000.0


def satip_with_storm(src: Path, dst: Path) -> None:
    """A copy of a Satip file with a 210 K cloud top within 15 km of FEATURE."""
    import zarr

    store = zarr.storage.ZipStore(src, mode="r")
    ds = xr.open_zarr(store).load()
    store.close()
    xx, yy = np.meshgrid(ds["x_geostationary"].values, ds["y_geostationary"].values)
    lon, lat = Transformer.from_crs(CRS(SATIP_GEOS), "EPSG:4326", always_xy=True).transform(xx, yy)
    storm = distance_km(lon, lat) < 15.0
    assert storm.sum() >= 10
    data = ds["data"].values
    for i, name in enumerate(ds["variable"].values.tolist()):
        if name in SATIP_RESCALING and not name.startswith(("VIS", "IR_016")):
            lo, hi = SATIP_RESCALING[name]
            data[0, storm, i] = np.int16(round((210.0 - lo) / (hi - lo) * 1023))
    ds["data"].values = data
    for var in ds.variables.values():
        var.encoding = {}
    folder = dst.with_suffix(".dir")
    ds.to_zarr(folder, zarr_format=2, consolidated=True)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(folder).as_posix())
    shutil.rmtree(folder)


def radar_files(root: Path, write_odim) -> list[Path]:
    """ODIM RATE files on a 4 km OPERA-projection grid with a storm at FEATURE."""
    cell, ny, nx = 4000.0, 700, 450
    x = (np.arange(nx) + 0.5) * cell
    y = -(np.arange(ny) + 0.5) * cell
    xx, yy = np.meshgrid(x, y)
    lon, lat = Transformer.from_crs(CRS(OPERA), "EPSG:4326", always_xy=True).transform(xx, yy)
    rate = 20.0 * np.exp(-0.5 * (distance_km(lon, lat) / 8.0) ** 2)  # mm/h
    raw = np.round(rate / 0.01).astype(np.uint16)
    raw[:, :50] = 65535  # no coverage in the west
    files = []
    for stamp in RADAR_TIMES:
        path = write_odim(
            root / f"T_PAAH22_C_EUOC_{stamp}.hdf",
            raw,
            cell=cell,
            what={"gain": 0.01, "offset": 0.0, "nodata": 65535.0, "undetect": 0.0},
        )
        import h5py

        with h5py.File(path, "r+") as h5:
            h5["what"].attrs["date"] = np.bytes_(stamp[:8])
            h5["what"].attrs["time"] = np.bytes_(stamp[8:])
        files.append(path)
    return files


@pytest.mark.realdata
def test_satip_frames_and_radar_make_aligned_samples(real_data, tmp_path, write_odim):
    satellite = tmp_path / "satip"
    satellite.mkdir()
    for src in sorted((real_data / "seviri_rss_satip").glob("*.zarr.zip")):
        satip_with_storm(src, satellite / src.name)
    (tmp_path / "radar").mkdir()
    radar = radar_files(tmp_path / "radar", write_odim)
    grid = UK_GRID
    config = UK_CONFIG
    store, report = build_colocated_store(
        tmp_path / "store",
        satellite=sorted(satellite.iterdir()),
        radar=radar,
        grid=grid,
        config=config,
    )
    assert report.satellite_scans == 12 and report.radar_times == 5
    # 11:40 needs 11:25 (before the first frame), 13:00 needs 12:45–13:00: both dropped, counted.
    assert report.dropped["no satellite frame within ±1 min"] == 2
    assert report.samples == len(store) == 3 * 4  # 3 radar times × 4 patches of the 64² grid
    assert store.frames == 4 and store.patch_shape == (32, 32)
    frame_times = store.read(np.arange(len(store))).time
    assert np.all(np.diff(frame_times, axis=1) == 300)
    # The storm is at the same pixel in IR (coldest, last frame) and rain (wettest).
    to_grid = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    fx, fy = to_grid.transform(*FEATURE)
    seen = 0
    for i in range(len(store)):
        sample = store[i]
        meta = sample["meta"]
        r0, c0 = meta["patch_origin"]
        xs, ys = grid.x[c0 : c0 + 32], grid.y[r0 : r0 + 32]
        if not (xs.min() <= fx <= xs.max() and ys.min() <= fy <= ys.max()):
            continue
        seen += 1
        ir108 = sample["ir"][-1, list(store.bands).index("IR10.8")]
        rows, cols = np.indices(ir108.shape)
        cold = ir108 < 240.0  # the injected 210 K cloud top (and its regridded edge)
        cold_centre = (rows[cold].mean(), cols[cold].mean())
        rain = np.nan_to_num(sample["rain"])
        wet_centre = ((rows * rain).sum() / rain.sum(), (cols * rain).sum() / rain.sum())
        expected = (float(np.argmin(np.abs(ys - fy))), float(np.argmin(np.abs(xs - fx))))
        for centre in (cold_centre, wet_centre):
            assert abs(centre[0] - expected[0]) <= 1.0 and abs(centre[1] - expected[1]) <= 1.0
        assert ir108.min() < 230 and np.nanmax(sample["rain"]) > 5
        assert meta["region"] == "uk" and meta["sensor"] == "SEVIRI"
        assert meta["radar_network"] == "OPERA" and 50 < meta["vza"] < 70
    assert seen == 3  # one patch holds the storm at each radar time
    # the day flag (sun above the horizon at the patch centre): these scans are around noon
    assert store.metadata["day"].dtype == bool and store.metadata["day"].all()
    # Provenance: every input radar file with its checksum in the manifest; each sample names
    # the file it came from.
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    sources = manifest["spec"]["sources"] if "spec" in manifest else manifest["sources"]
    radar_sources = [s for s in sources if s["kind"] == "radar"]
    assert sorted(s["file"] for s in radar_sources) == [
        f"T_PAAH22_C_EUOC_{t}.hdf" for t in RADAR_TIMES
    ]
    assert len([s for s in sources if s["kind"] == "satellite"]) == 12
    assert all(len(s["sha256"]) == 64 for s in sources)
    used = {store.sample_meta(i)["radar_file"] for i in range(len(store))}
    assert used == {f"T_PAAH22_C_EUOC_{t}.hdf" for t in RADAR_TIMES[1:4]}
    assert not (tmp_path / "store" / ".work").exists()
    # Two Dask workers give the same store (same dataset version) as one process.
    parallel, _ = build_colocated_store(
        tmp_path / "store2",
        satellite=sorted(satellite.iterdir()),
        radar=radar,
        grid=grid,
        config=config,
        workers=2,
    )
    assert parallel.dataset_version == store.dataset_version
    # ... and so does an existing Dask scheduler given by its address.
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        remote, _ = build_colocated_store(
            tmp_path / "store4",
            satellite=sorted(satellite.iterdir()),
            radar=radar,
            grid=grid,
            config=config,
            scheduler=cluster.scheduler_address,
        )
    assert remote.dataset_version == store.dataset_version
    # An interrupted build resumes from its finished scans and chunks.
    real_finalize = SampleStoreWriter.finalize

    def interrupted(self):
        raise KeyboardInterrupt

    SampleStoreWriter.finalize = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            build_colocated_store(
                tmp_path / "store3",
                satellite=sorted(satellite.iterdir()),
                radar=radar,
                grid=grid,
                config=config,
            )
    finally:
        SampleStoreWriter.finalize = real_finalize
    assert len(list((tmp_path / "store3" / ".work").glob("*/frames/*.npz"))) == 12
    import qpebench.datasets.colocate as colocate

    def no_reads(*args, **kwargs):
        raise AssertionError("a finished task ran again")

    original = colocate.read_satellite, colocate.read_radar
    colocate.read_satellite = colocate.read_radar = no_reads
    try:
        resumed, _ = build_colocated_store(
            tmp_path / "store3",
            satellite=sorted(satellite.iterdir()),
            radar=radar,
            grid=grid,
            config=config,
        )
    finally:
        colocate.read_satellite, colocate.read_radar = original
    assert resumed.dataset_version == store.dataset_version


def test_configuration_is_checked():
    with pytest.raises(ConfigError, match="tolerance_minutes"):
        ColocationConfig(region="x", step_minutes=5.0, tolerance_minutes=3.0)
    with pytest.raises(ConfigError, match="patch_size"):
        ColocationConfig(region="x", patch_size=2)


def test_nothing_kept_is_an_error_with_the_reasons(tmp_path, write_odim):
    (tmp_path / "radar").mkdir()
    radar = radar_files(tmp_path / "radar", write_odim)[:1]
    with pytest.raises(ConfigError, match="(?s)kept no sample.*no satellite frame"):
        build_colocated_store(
            tmp_path / "store",
            satellite=[],
            radar=radar,
            grid=laea_grid(53.0, -1.5, 4000.0, (64, 64)),
            config=ColocationConfig(region="uk", step_minutes=5.0, tolerance_minutes=1.0),
        )
    assert not (tmp_path / "store" / "manifest.json").exists()
    shutil.rmtree(tmp_path / "radar")


@pytest.mark.realdata
def test_cli_prepare_builds_a_region_store_from_archive_globs(real_data, tmp_path, write_odim):
    from qpebench.cli import main

    (tmp_path / "radar").mkdir()
    radar_files(tmp_path / "radar", write_odim)
    satip = real_data / "seviri_rss_satip"
    args = [
        "prepare",
        "data=netherlands",
        f"paths.cache={tmp_path / 'cache'}",
        "progress=false",
        f"data.satellite=['{satip}/*.zarr.zip']",
        f"data.radar=['{tmp_path}/radar/*.hdf']",
        "data.step_minutes=5.0",
        "data.tolerance_minutes=1.0",
        "data.patch_size=32",
        "data.min_valid_fraction=0.5",
    ]
    assert main(args) == 0
    stores = list((tmp_path / "cache" / "stores").glob("colocated-*"))
    assert len(stores) == 1
    store = SampleStore(stores[0])
    assert len(store) == 3 * 6  # 3 radar times × (100 // 32) × (90 // 32) patches
    assert {store.sample_meta(i)["region"] for i in range(len(store))} == {"netherlands"}
    assert main([*args[:4], "data.satellite=[]", f"data.radar=['{tmp_path}/radar/*.hdf']"]) == 2


def test_every_region_has_a_plausible_viewing_geometry():
    from qpebench.datasets.regions import REGIONS, get_region

    expected = {  # centre VZA (degrees), from the satellite longitude and the grid centre
        "europe": (55, 65),
        "conus": (45, 55),
        "germany": (55, 65),
        "netherlands": (55, 65),
        "finland": (70, 80),
        "australia": (25, 40),
        "india": (40, 50),
    }
    assert set(REGIONS) == set(expected)
    for name, (lo, hi) in expected.items():
        centre, low, high = get_region(name).viewing_angles()
        assert lo < centre < hi and low <= centre <= high, name
    with pytest.raises(ConfigError, match="no reader for IMD radars"):
        from qpebench.datasets.regions import build_region_store

        build_region_store("/tmp/x", region="india", satellite=["*"], radar=["*"])


@pytest.mark.realdata
def test_parallax_correction_moves_the_cloud_top_towards_the_satellite(
    real_data, tmp_path, write_odim
):
    from qpebench.datasets.colocate import cloud_top_height
    from qpebench.datasets.satellite import read_satellite

    satellite = tmp_path / "satip"
    satellite.mkdir()
    for src in sorted((real_data / "seviri_rss_satip").glob("*.zarr.zip"))[:4]:
        satip_with_storm(src, satellite / src.name)
    (tmp_path / "radar").mkdir()
    path = radar_files(tmp_path / "radar", write_odim)[1]  # 12:00 needs frames 11:45 … 12:00
    grid = UK_GRID
    files = sorted(satellite.iterdir())
    satip_last = sorted((real_data / "seviri_rss_satip").glob("*.zarr.zip"))
    store_plain, _ = build_colocated_store(
        tmp_path / "plain",
        satellite=files + satip_last[4:],
        radar=[path],
        grid=grid,
        config=replace(UK_CONFIG, patch_size=64),
    )
    store_moved, _ = build_colocated_store(
        tmp_path / "moved",
        satellite=files + satip_last[4:],
        radar=[path],
        grid=grid,
        config=replace(UK_CONFIG, patch_size=64, parallax=True),
    )

    def cold_centre(store):
        sample = store[0]
        ir = sample["ir"][0, list(store.bands).index("IR10.8")]  # 11:45, a frame with the storm
        rows, cols = np.indices(ir.shape)
        cold = ir < 240.0
        return np.array([rows[cold].mean(), cols[cold].mean()])

    plain, moved = cold_centre(store_plain), cold_centre(store_moved)
    # Independent expectation: shift by h·tan(vza) along the azimuth to the sub-satellite point.
    scan = read_satellite(files[0], with_vza=False)
    geod = Geod(ellps="WGS84")
    sat_lon, sat_lat = scan.attrs["satellite_longitude"], scan.attrs["satellite_latitude"]
    azimuth, _, _ = geod.inv(FEATURE[0], FEATURE[1], sat_lon, sat_lat)
    from qpebench.datasets.grid import Grid
    from qpebench.datasets.satellite import viewing_zenith

    fx, fy = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(*FEATURE)
    vza = viewing_zenith(
        Grid(grid.crs, np.array([fx, fx + 1]), np.array([fy, fy + 1])),
        sat_lon,
        scan.attrs["satellite_height"],
    )[0, 0]
    shift = float(cloud_top_height(np.array(210.0))) * np.tan(np.deg2rad(vza))
    lon2, lat2 = geod.fwd(FEATURE[0], FEATURE[1], azimuth, shift)[:2]
    x2, y2 = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(lon2, lat2)
    expected_move = np.array([(fy - y2) / 4000.0, (x2 - fx) / 4000.0])  # rows down, cols right
    assert 15e3 < shift < 25e3  # a 12 km cloud top seen at about 59°
    assert np.allclose(moved - plain, expected_move, atol=1.5)


@pytest.mark.realdata
def test_a_second_scan_for_the_same_slot_is_reported_not_mixed(real_data, tmp_path, write_odim):
    satip = sorted((real_data / "seviri_rss_satip").glob("*.zarr.zip"))
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(satip[5], twin / satip[5].name)  # the same slot again, from another folder
    (tmp_path / "radar").mkdir()
    radar = radar_files(tmp_path / "radar", write_odim)
    _, report = build_colocated_store(
        tmp_path / "store",
        satellite=[*satip, twin / satip[5].name],
        radar=radar,
        grid=UK_GRID,
        config=UK_CONFIG,
    )
    assert report.satellite_scans == 12
    assert len(report.bad_files) == 1 and "a second scan for nominal time" in report.bad_files[0]
