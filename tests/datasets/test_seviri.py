"""SEVIRI readers on the real files: HRIT (satpy), Satip RSS zarr, meteosatlib netCDF."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pyproj import Transformer

from qpebench.datasets.grid import Grid
from qpebench.datasets.satellite import detect_satellite_source, read_satellite
from qpebench.datasets.seviri import SATIP_RESCALING
from qpebench.errors import FileFormatError
from qpebench.registry import load_builtins

load_builtins()

METEOSATLIB = "seviri_meteosatlib/MSG_Seviri_1_5_Infrared_10_8_channel_20051219_1415.nc"
SATIP = "seviri_rss_satip"


def hrit_files(root: Path) -> list[Path]:
    files = sorted((root / "seviri_hrit").glob("H-*"))
    assert len(files) == 5
    return files


def east_limb_gap(scan: xr.DataArray, y_band: tuple[float, float]) -> list[float]:
    """Per row in ``y_band``: pixels between the last valid east pixel and the ellipsoid limb."""
    grid = Grid.of(scan)
    values = scan.values[0]
    xx, yy = np.meshgrid(grid.x, grid.y)
    lon, _ = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    on_disk = np.isfinite(lon) & (np.abs(lon) < 1e30)
    east = grid.x > 0
    gaps = []
    for r in np.flatnonzero((grid.y > y_band[0]) & (grid.y < y_band[1])):
        geometric, data = grid.x[on_disk[r] & east], grid.x[np.isfinite(values[r]) & east]
        if geometric.size and data.size and data.max() < grid.x[east].max():
            gaps.append(float(geometric.max() - data.max()) / grid.dx)
    return gaps


@pytest.mark.realdata
def test_hrit_segment_8_brightness_temperatures(real_data):
    files = hrit_files(real_data)
    assert {detect_satellite_source(f) for f in files} == {"seviri_hrit"}
    scan = read_satellite(files, bands=["IR10.8", "IR13.4", "IR3.9"])
    assert list(scan.channel.values) == ["IR_108", "IR_134", "IR_039"]
    assert scan.attrs["units"] == "K" and scan.attrs["platform"] == "Meteosat-9"
    # SOURCES.md (satpy reading of the same files): ranges per channel.
    ranges = {"IR10.8": (203.8, 285.3), "IR13.4": (200.7, 260.9), "IR3.9": (-3.45, 294.8)}
    for band, (lo, hi) in ranges.items():
        values = scan.sel(band=band).values
        assert np.nanmin(values) == pytest.approx(lo, abs=0.06)
        assert np.nanmax(values) == pytest.approx(hi, abs=0.06)
    # Segment 8 of 8 is the northern end of the disk: y > 0 and rows south → north.
    grid = Grid.of(scan)
    assert grid.y.min() > 0 and np.all(np.diff(grid.y) > 0) and np.all(np.diff(grid.x) < 0)
    assert str(scan.time.values).startswith("2010-01-19T12:00")
    assert scan.attrs["start_time"].startswith("2010-01-19T12:00:11")
    assert scan.attrs["end_time"].startswith("2010-01-19T12:12:42")
    assert 0 < np.nanmin(scan.vza.values) and np.nanmax(scan.vza.values) <= 90
    with pytest.raises(FileFormatError, match="without its PROlogue"):
        read_satellite([f for f in files if "PRO" not in f.name], bands=["IR10.8"])
    with pytest.raises(FileFormatError, match=r"no data of \['IR_087'\]"):
        read_satellite(files, bands=["IR8.7"])


@pytest.mark.realdata
def test_satip_frames_orientation_times_and_rescaling(real_data):
    files = sorted((real_data / SATIP).glob("*.zarr.zip"))
    assert len(files) == 12
    scans = [read_satellite(f, with_vza=False) for f in files]
    assert {s.attrs["source"] for s in scans} == {"seviri_satip_zarr"}
    # Nominal times: the 5-min slot starts, 11:30 … 12:25 (the files are labelled by slot end).
    times = [str(s.time.values)[:16] for s in scans]
    assert times[0] == "2023-12-20T11:30" and times[-1] == "2023-12-20T12:25"
    steps = np.diff([np.datetime64(t) for t in times]).astype("timedelta64[m]").astype(int)
    assert set(steps.tolist()) == {5}
    first = scans[0]
    assert first.attrs["start_time"].startswith("2023-12-20T11:30:08")
    # Orientation: x decreases (east → west), y increases (south → north): rotated 180°.
    grid = Grid.of(first)
    assert np.all(np.diff(grid.x) < 0) and np.all(np.diff(grid.y) > 0)
    # The grid's centre row/column lies over the UK and NW Europe (RSS area, SOURCES.md).
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(
        grid.x[grid.x.size // 2], grid.y[grid.y.size // 2]
    )
    assert -15 < lon < 10 and 48 < lat < 60
    # Rescaling: raw counts 58–754 → 205.6–283.3 K in IR_108 (SOURCES.md), from the raw zarr.
    ir108 = first.sel(band="IR10.8").values
    assert np.nanmin(ir108) == pytest.approx(205.6, abs=0.1)
    assert np.nanmax(ir108) == pytest.approx(283.3, abs=0.1)
    lo, hi = SATIP_RESCALING["IR_108"]
    assert np.nanmin(ir108) == pytest.approx(lo + 58 / 1023 * (hi - lo), abs=1e-3)
    for band in first.band.values:
        values = first.sel(band=band).values
        assert 150 < np.nanmin(values) and np.nanmax(values) < 330, band


@pytest.mark.realdata
def test_meteosatlib_window_without_the_bogus_offset(real_data):
    path = real_data / METEOSATLIB
    assert detect_satellite_source(path) == "seviri_meteosatlib_nc"
    scan = read_satellite(path, bands=["IR10.8"])
    values = scan.values[0]
    raw = xr.open_dataset(path, mask_and_scale=False)[
        "MSG_Seviri_1_5_Infrared_10_8_channel"
    ].values[0]
    assert np.array_equal(np.isnan(values), raw == 0)  # 0 = space
    assert np.isnan(values).sum() == 12971
    assert np.nanmax(values) == pytest.approx(302.2, abs=0.01)  # not 303.2: no +1 K
    assert np.allclose(values[raw > 0], raw[raw > 0])
    assert str(scan.time.values).startswith("2005-12-19T14:15")
    with pytest.raises(FileFormatError, match=r"no meteosatlib file for \['IR_134'\]"):
        read_satellite(path, bands=["IR13.4"])


@pytest.mark.realdata
def test_meteosatlib_navigation_matches_satpy_navigated_hrit_at_the_limb(real_data):
    # SEVIRI scans each line only between planned west/east edges a little inside the limb, so
    # the last valid pixel sits a few pixels short of the ellipsoid limb. In the same latitude
    # band, the meteosatlib window (navigated here from its CGMS attributes) and the HRIT scan
    # (navigated by satpy) must show the same gap; a half-disk or mirror error would not.
    band = (4.4e6, 5.0e6)
    ours = east_limb_gap(read_satellite(real_data / METEOSATLIB, with_vza=False), band)
    satpy = east_limb_gap(read_satellite(hrit_files(real_data), bands=["IR10.8"]), band)
    assert len(ours) > 50 and len(satpy) > 50
    assert abs(np.median(ours) - np.median(satpy)) <= 1.0
    assert max(ours) <= 12 and np.percentile(ours, 10) >= 5


@pytest.mark.realdata
def test_bad_satellite_input(real_data, tmp_path):
    truncated = tmp_path / "202312201135.zarr.zip"
    data = (real_data / SATIP / "202312201135.zarr.zip").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError):
        read_satellite(truncated, source="seviri_satip_zarr")
    other = tmp_path / "other.zarr.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("foo/.zarray", "{}")
    with pytest.raises(FileFormatError, match="not a known satellite product"):
        read_satellite(other)
    copy = tmp_path / "copy.nc"
    shutil.copy(real_data / METEOSATLIB, copy)
    with pytest.raises(FileFormatError, match=r"copy\.nc: no meteosatlib file for \['IR_134'\]"):
        read_satellite([copy], bands=["IR10.8", "IR13.4"])


@pytest.mark.realdata
def test_a_truncated_hrit_segment_is_named(real_data, tmp_path):
    for src in hrit_files(real_data):
        shutil.copy(src, tmp_path / src.name)
    segment = tmp_path / "H-000-MSG2__-MSG2________-IR_108___-000008___-201001191200-C_"
    segment.write_bytes(segment.read_bytes()[:100_000])
    with pytest.raises(
        FileFormatError, match=r"IR_108.*-C_: HRIT file is 100000 bytes, its primary"
    ):
        read_satellite(sorted(tmp_path.glob("H-*")), bands=["IR10.8"])


def test_native_files_are_detected_by_their_ascii_header(tmp_path):
    path = tmp_path / "MSG4-SEVI-MSG15-0100-NA-20231220120000.nat"
    path.write_bytes(b"FormatName                  : NATIVE\n" + b"\x00" * 2000)
    assert detect_satellite_source(path) == "seviri_native"
    with pytest.raises(FileFormatError, match=r"\.nat: cannot read as seviri_native"):
        read_satellite(path, bands=["IR10.8"])
    other = tmp_path / "other.nat"
    other.write_bytes(b"\x00" * 2000)  # no ASCII header: not detected, name alone is not enough
    with pytest.raises(FileFormatError, match="not a known satellite product"):
        read_satellite(other)
