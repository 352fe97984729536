"""The satellite reader interface: viewing geometry, band selection, inspect."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from pyproj import CRS

from qpebench.cli import main
from qpebench.datasets.grid import Grid
from qpebench.datasets.satellite import (
    SatelliteReader,
    read_satellite,
    summarize_scan,
    viewing_zenith,
)
from qpebench.errors import FileFormatError
from qpebench.registry import SATELLITE_READERS, load_builtins

load_builtins()

GEOS = CRS.from_proj4("+proj=geos +lon_0=0 +h=35785831 +a=6378169 +rf=295.488065897014")
SCAN_KEYS = {
    "files",
    "source",
    "kind",
    "sensor",
    "platform",
    "shape",
    "crs",
    "cell_size",
    "nominal_time",
    "start_time",
    "end_time",
    "satellite_longitude",
    "bands",
}


def spherical_vza(lat: float, lon: float, sat_lon: float, height: float) -> float:
    """Textbook viewing zenith angle on a sphere of radius 6371 km."""
    radius = 6371e3
    gamma = np.arccos(np.cos(np.deg2rad(lat)) * np.cos(np.deg2rad(lon - sat_lon)))
    orbit = radius + height
    return float(np.degrees(np.arctan2(orbit * np.sin(gamma), orbit * np.cos(gamma) - radius)))


def test_viewing_zenith_against_spherical_geometry():
    lats, lons = np.array([0.0, 30.0, 50.0, 65.0]), np.array([0.0, 10.0, -20.0, 40.0])
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", GEOS, always_xy=True).transform(lons, lats)
    for xi, yi, lat, lon in zip(x, y, lats, lons, strict=True):
        grid = Grid(GEOS, np.array([xi, xi + 1.0]), np.array([yi, yi + 1.0]))
        ours = viewing_zenith(grid, 0.0, 35785831.0)[0, 0]
        # The ellipsoid normal differs from the sphere's radius by up to 0.19° at 45°.
        assert ours == pytest.approx(spherical_vza(lat, lon, 0.0, 35785831.0), abs=0.25)
    assert viewing_zenith(Grid(GEOS, np.array([0.0, 1.0]), np.array([0.0, 1.0])), 0, 35785831)[
        0, 0
    ] == pytest.approx(0.0, abs=1e-3)
    off_disk = Grid(GEOS, np.array([6.0e6, 6.1e6]), np.array([0.0, 1.0]))
    assert np.isnan(viewing_zenith(off_disk, 0.0, 35785831.0)).all()


def test_every_sensor_has_readers():
    sensors = {SATELLITE_READERS.get(n).sensor for n in SATELLITE_READERS.names()}
    assert sensors >= {"SEVIRI"}


def test_unknown_or_empty_input(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(FileFormatError, match=r"notes\.txt: not a known satellite product"):
        read_satellite(path)
    with pytest.raises(FileFormatError, match="no files given"):
        read_satellite([])


@pytest.mark.parametrize(
    "exc",
    [
        zipfile.BadZipFile("Bad CRC-32\nfor file 'data/0.0.0.0'"),
        KeyError("missing"),
        IndexError("index 0 is out of bounds"),
        MemoryError(),
        OSError("Unable to read\ndataset"),
        RuntimeError("Caught an unknown exception!"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_any_failure_inside_a_reader_is_a_one_line_file_format_error(tmp_path, exc):
    def fail(files, channels):
        raise exc

    name = "failing_test_reader"
    SATELLITE_READERS.register(
        name, SatelliteReader(name, "SEVIRI", "fails", lambda probe: False, fail)
    )
    path = tmp_path / "scan.dat"
    path.write_bytes(b"x")
    try:
        with pytest.raises(FileFormatError) as info:
            read_satellite(path, source=name)
    finally:
        SATELLITE_READERS.unregister(name)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot read as {name}: {type(exc).__name__}")
    assert "\n" not in message


@pytest.mark.realdata
def test_all_bands_and_cli_inspect_of_a_satellite_file(real_data, capsys):
    hrit = sorted((real_data / "seviri_hrit").glob("H-*"))
    scan = read_satellite(hrit, bands="all", with_vza=False)
    assert list(scan.band.values) == ["IR10.8", "IR13.4", "IR3.9"]
    default = read_satellite(hrit, with_vza=False)
    assert list(default.band.values) == ["IR10.8", "IR13.4"]  # IR3.9 is off by default
    assert main(["inspect", str(hrit[-1]), "--json"]) == 0  # the prologue names the scan
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == SCAN_KEYS
    assert summary == json.loads(json.dumps(summarize_scan(scan)))
    assert len(summary["files"]) == 5 and summary["sensor"] == "SEVIRI"
    assert summary["crs"].startswith("+proj=geos +lon_0=0")
    assert {b["band"] for b in summary["bands"]} == {"IR10.8", "IR13.4", "IR3.9"}
    ir108 = next(b for b in summary["bands"] if b["band"] == "IR10.8")
    assert ir108["channel"] == "IR_108" and ir108["max"] == pytest.approx(285.3, abs=0.06)
