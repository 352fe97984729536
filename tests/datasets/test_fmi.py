from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr
from pyproj import CRS, Transformer

from qpebench.datasets.fmi import _sniff_geotiff, _sniff_pgm
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
from qpebench.errors import ConversionError, FileFormatError

PGM = "{}_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"
TIF = "{}_FINUTM.tif"
STAMPS = ("201609281600", "201609281605")


class _Fields(dict[str, xr.DataArray]):
    """Fields read on first use, keyed by time stamp."""

    def __init__(self, pattern: Path) -> None:
        super().__init__()
        self.pattern = pattern

    def __missing__(self, stamp: str) -> xr.DataArray:
        self[stamp] = read_native(str(self.pattern).format(stamp))
        return self[stamp]


@pytest.fixture(scope="module")
def pgm(real_data: Path) -> _Fields:
    return _Fields(real_data / "fmi" / PGM)


@pytest.fixture(scope="module")
def tif(real_data: Path) -> _Fields:
    return _Fields(real_data / "fmi" / TIF)


def _pgm_raw(path: Path) -> tuple[bytes, np.ndarray]:
    """Header text and image of a PGM, split at the line after the maxval line (FMI layout)."""
    data = gzip.decompress(path.read_bytes())
    end = data.index(b"\n255\n") + 5
    return data[:end], np.frombuffer(data[end:], np.uint8).reshape(1226, 760)


# --- PGM ------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_pgm_and_geotiff_are_detected(real_data: Path) -> None:
    for stamp in STAMPS:
        assert detect_source(real_data / "fmi" / PGM.format(stamp)) == "fmi_pgm"
        assert detect_source(real_data / "fmi" / TIF.format(stamp)) == "fmi_geotiff"


@pytest.mark.realdata
@pytest.mark.parametrize("stamp", STAMPS)
def test_pgm_equals_pysteps(stamp: str, real_data: Path, pgm: _Fields) -> None:
    importers = pytest.importorskip("pysteps.io.importers")
    path = real_data / "fmi" / PGM.format(stamp)
    expected, _, meta = importers.import_fmi_pgm(str(path), gzipped=True)
    field = pgm[stamp]
    status = field["status"].values
    np.testing.assert_array_equal(status == NO_DATA, np.isnan(expected))
    np.testing.assert_array_equal(status == NO_ECHO, expected == -32.0)  # pysteps keeps undetect
    np.testing.assert_array_equal(field.values[status == ECHO], expected[status == ECHO])
    # pysteps' x1/y1/x2/y2 are the outer corners: our cell edges, in pysteps' CRS.
    grid = Grid.of(field)
    xe, ye = grid.edges()
    to_pysteps = Transformer.from_crs(grid.crs, CRS.from_proj4(meta["projection"]), always_xy=True)
    x1, y1 = to_pysteps.transform(xe[0], ye[-1])
    x2, y2 = to_pysteps.transform(xe[-1], ye[0])
    assert (x1, y1, x2, y2) == pytest.approx(
        (meta["x1"], meta["y1"], meta["x2"], meta["y2"]), abs=1e-3
    )
    assert (grid.dx, grid.dy) == pytest.approx((meta["xpixelsize"], meta["ypixelsize"]), abs=1e-5)
    assert meta["yorigin"] == "upper" and grid.y[0] > grid.y[-1]


@pytest.mark.realdata
def test_pgm_codes_counted_from_raw_bytes(real_data: Path, pgm: _Fields) -> None:
    _, raw = _pgm_raw(real_data / "fmi" / PGM.format(STAMPS[0]))
    field = pgm[STAMPS[0]]
    status = field["status"].values
    assert np.count_nonzero(status == NO_DATA) == np.count_nonzero(raw == 255) == 226844
    assert np.count_nonzero(status == NO_ECHO) == np.count_nonzero(raw == 0) == 414426
    echo = status == ECHO
    np.testing.assert_array_equal(field.values[echo], raw[echo] * 0.5 - 32.0)
    assert (float(np.nanmin(field.values)), float(np.nanmax(field.values))) == (-31.5, 50.0)


@pytest.mark.realdata
def test_pgm_time_and_corners_from_header(real_data: Path, pgm: _Fields) -> None:
    header, _ = _pgm_raw(real_data / "fmi" / PGM.format(STAMPS[1]))
    assert b"# obstime 201609281605" in header
    field = pgm[STAMPS[1]]
    assert field.attrs["end_time"] == field.attrs["start_time"] == "2016-09-28T16:05:00Z"
    assert field.attrs["kind"] == "reflectivity" and field.attrs["units"] == "dBZ"
    # bottomleft / topright of the header are the outer corners of the grid.
    grid = Grid.of(field)
    xe, ye = grid.edges()
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    assert to_lonlat.transform(xe[0], ye[-1]) == pytest.approx((18.6, 57.93), abs=1e-9)
    assert to_lonlat.transform(xe[-1], ye[0]) == pytest.approx((34.903, 69.005), abs=1e-9)
    assert (grid.dx, grid.dy) == pytest.approx((999.674053, 999.62859), abs=1e-5)
    assert field.attrs["fmi_radars"].split(",")[:2] == ["KOR", "VAN"]


@pytest.mark.realdata
def test_pgm_needs_a_zr_relation(real_data: Path) -> None:
    path = real_data / "fmi" / PGM.format(STAMPS[0])
    with pytest.raises(ConversionError, match="Z–R"):
        read_radar(path)
    rate = read_radar(path, zr=(223.0, 1.53))
    native = read_native(path)
    peak = np.nanargmax(native.values)
    assert rate.values.flat[peak] == pytest.approx((10**5.0 / 223.0) ** (1 / 1.53), rel=1e-5)
    assert np.all(rate.values[native["status"].values == NO_ECHO] == 0)


# --- GeoTIFF --------------------------------------------------------------------------------


@pytest.mark.realdata
def test_geotiff_values_equal_raw_decoding(real_data: Path, tif: _Fields) -> None:
    raw = tifffile.imread(real_data / "fmi" / TIF.format(STAMPS[0]), key=0)
    field = tif[STAMPS[0]]
    assert field.shape == raw.shape == (7316, 4963)
    status = field["status"].values
    assert np.count_nonzero(status == NO_DATA) == np.count_nonzero(raw == 255) == 24670929
    assert np.count_nonzero(status == NO_ECHO) == np.count_nonzero(raw == 0) == 6829656
    echo = status == ECHO
    np.testing.assert_array_equal(field.values[echo], raw[echo] * 0.5 - 32.0)
    assert field.attrs["time_from"] == "GDAL_METADATA Observation time"
    assert field.attrs["end_time"] == "2016-09-28T16:00:00Z"
    assert (field.attrs["gain"], field.attrs["offset"]) == (0.5, -32.0)


@pytest.mark.realdata
def test_geotiff_grid_from_tiepoint_tags(real_data: Path, tif: _Fields) -> None:
    with tifffile.TiffFile(real_data / "fmi" / TIF.format(STAMPS[0])) as tf:
        tags = tf.pages.first.tags
        scale = tags["ModelPixelScaleTag"].value
        tie = tags["ModelTiepointTag"].value
        assert tf.geotiff_metadata["GTRasterTypeGeoKey"] == 1  # PixelIsArea: tiepoint = corner
    grid = Grid.of(tif[STAMPS[0]])
    xe, ye = grid.edges()
    assert grid.crs.to_epsg() == 3067
    assert (xe[0], ye[0]) == pytest.approx((tie[3], tie[4]), abs=1e-6)
    assert (xe[-1], ye[-1]) == pytest.approx(
        (tie[3] + 4963 * scale[0], tie[4] - 7316 * scale[1]), abs=1e-6
    )
    assert (grid.x[0], grid.y[0]) == pytest.approx((tie[3] + scale[0] / 2, tie[4] - scale[1] / 2))
    # The area covers the PGM's (lon 18.6–34.9, lat 57.93–69.005) in the west, north and south.
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    lon_ul, lat_ul = to_lonlat.transform(xe[0], ye[0])
    _, lat_lr = to_lonlat.transform(xe[-1], ye[-1])
    assert lon_ul < 18.6 and lat_ul > 69.005 and lat_lr < 57.93


@pytest.mark.realdata
@pytest.mark.parametrize("stamp", STAMPS)
def test_geotiff_agrees_with_pgm_at_pgm_cell_centres(
    stamp: str, pgm: _Fields, tif: _Fields
) -> None:
    coarse, fine = pgm[stamp], tif[stamp]
    gp, gt = Grid.of(coarse), Grid.of(fine)
    xx, yy = np.meshgrid(gp.x, gp.y)
    tx, ty = Transformer.from_crs(gp.crs, gt.crs, always_xy=True).transform(xx, yy)

    def sample(shift_x: float, shift_y: float) -> tuple[np.ndarray, np.ndarray]:
        col = np.floor((tx + shift_x - (gt.x[0] - gt.dx / 2)) / gt.dx).astype(int)
        row = np.floor((gt.y[0] + gt.dy / 2 - (ty + shift_y)) / gt.dy).astype(int)
        assert col.min() >= 0 and row.min() >= 0  # the PGM area lies inside the GeoTIFF
        return fine.values[row, col], fine["status"].values[row, col]

    values, status = sample(0.0, 0.0)
    both = (coarse["status"].values == ECHO) & (status == ECHO)
    diff = np.abs(values[both] - coarse.values[both])
    assert both.sum() > 280_000
    assert np.mean(diff == 0) > 0.55 and np.mean(diff <= 3) > 0.9
    assert np.corrcoef(values[both], coarse.values[both])[0, 1] > 0.97
    assert np.mean((status == NO_DATA) == (coarse["status"].values == NO_DATA)) > 0.999
    # Georeferencing is right to within a PGM cell: a shift of 1 km agrees worse.
    for shift in ((1000.0, 0.0), (-1000.0, 0.0), (0.0, 1000.0), (0.0, -1000.0)):
        moved, _ = sample(*shift)
        ok = both & np.isfinite(moved)
        assert np.mean(np.abs(moved[ok] - coarse.values[ok])) > diff.mean()


# --- sniffers -------------------------------------------------------------------------------


@pytest.mark.realdata
def test_sniffers_reject_other_sources(real_data: Path) -> None:
    others = [
        *sorted((real_data / "radolan").glob("raa01-*"))[:2],
        *sorted((real_data / "opera").rglob("*.hdf"))[:1],
        *sorted((real_data / "knmi").glob("*"))[:1],
        *sorted((real_data / "mch").glob("*"))[:1],
        *sorted((real_data / "mrms").glob("*"))[:1],
        *sorted((real_data / "bom").rglob("*.nc"))[:1],
    ]
    assert len(others) >= 6
    for path in others:
        probe = probe_file(path)
        assert not _sniff_pgm(probe) and not _sniff_geotiff(probe), path
    pgm_probe = probe_file(real_data / "fmi" / PGM.format(STAMPS[0]))
    tif_probe = probe_file(real_data / "fmi" / TIF.format(STAMPS[0]))
    assert not _sniff_geotiff(pgm_probe) and not _sniff_pgm(tif_probe)


# --- synthetic files: conventions and bad input ---------------------------------------------

_HEADER = (
    "P5\n# obstime 201609281600\n# producttype CAPPI\n# productname LOWEST\n"
    "# metersperpixel_x 999.674053\n# metersperpixel_y 999.62859\n# projection radar {\n"
    "# type stereographic\n# centrallongitude 25\n# centrallatitude 90\n# truelatitude 60\n"
    "# bottomleft 18.600000 57.930000\n# topright 34.903000 69.005000\n# }\n760 1226\n255\n"
)


def _pgm_file(tmp_path: Path, header: str = _HEADER, cut: int = 0) -> Path:
    data = np.zeros((1226, 760), np.uint8)
    data[0, 0], data[0, 1], data[-1, -1] = 255, 100, 164
    raw = header.encode() + data.tobytes()
    path = tmp_path / "x.pgm.gz"
    path.write_bytes(gzip.compress(raw[: len(raw) - cut], 1))
    return path


def test_synthetic_pgm_reads(tmp_path: Path) -> None:
    field = read_native(_pgm_file(tmp_path))
    assert field.attrs["source"] == "fmi_pgm"
    assert np.isnan(field.values[0, 0]) and field["status"].values[0, 0] == NO_DATA
    assert field.values[0, 1] == 18.0 and field.values[-1, -1] == 50.0
    assert field["status"].values[0, 2] == NO_ECHO


def test_pgm_truncated(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="truncated PGM"):
        read_native(_pgm_file(tmp_path, cut=500))


def test_pgm_missing_obstime(tmp_path: Path) -> None:
    path = _pgm_file(tmp_path, header=_HEADER.replace("# obstime 201609281600\n", ""))
    assert not _sniff_pgm(probe_file(path))
    with pytest.raises(FileFormatError, match="lacks the comment fields \\['obstime'\\]"):
        read_native(path, source="fmi_pgm")


def test_pgm_wrong_magic(tmp_path: Path) -> None:
    path = _pgm_file(tmp_path, header=_HEADER.replace("P5", "P2", 1))
    assert not _sniff_pgm(probe_file(path))
    with pytest.raises(FileFormatError, match="not a binary PGM"):
        read_native(path, source="fmi_pgm")


def test_pgm_corners_disagree_with_pixel_size(tmp_path: Path) -> None:
    path = _pgm_file(tmp_path, header=_HEADER.replace("34.903000", "35.903000"))
    with pytest.raises(FileFormatError, match="metersperpixel_x"):
        read_native(path)


_GDAL = (
    '<GDALMetadata>\n<Item name="Quantity" unit="dBZ">Corrected reflectivity</Item>\n'
    '<Item name="Gain">0.5</Item>\n<Item name="Offset">-32</Item>\n'
    '<Item name="Nodata">255</Item>\n<Item name="Undetect">0</Item>\n</GDALMetadata>'
)


def _tif_file(path: Path, raster_type: int, gdal: str | None = _GDAL, epsg: int = 3067) -> Path:
    keys = (1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, raster_type, 3072, 0, 1, epsg, 3076, 0, 1, 9001)
    tags = [
        (33550, 12, 3, (250.0, 500.0, 0.0), True),
        (33922, 12, 6, (0.0, 0.0, 0.0, 1000.0, 7000000.0, 0.0), True),
        (34735, 3, len(keys), keys, True),
    ]
    if gdal is not None:
        tags.append((42112, 2, None, gdal, True))
    data = np.array([[0, 1, 255], [100, 64, 2]], np.uint8)
    tifffile.imwrite(path, data, extratags=tags)
    return path


@pytest.mark.parametrize(("raster_type", "x0", "y0"), [(1, 1125.0, 6999750.0), (2, 1000.0, 7e6)])
def test_geotiff_pixel_is_area_or_point(
    raster_type: int, x0: float, y0: float, tmp_path: Path
) -> None:
    path = _tif_file(tmp_path / "radar_201609281605.tif", raster_type)
    assert detect_source(path) == "fmi_geotiff"
    field = read_native(path)
    assert (field["x"].values[0], field["y"].values[0]) == (x0, y0)
    assert field.attrs["time_from"] == "file name"
    assert field.attrs["end_time"] == "2016-09-28T16:05:00Z"
    assert field["status"].values.tolist() == [[1, 0, 2], [0, 0, 0]]
    assert field.values[1, 0] == 18.0


def test_geotiff_nested_gdal_metadata(tmp_path: Path) -> None:
    inner = _GDAL.replace(
        "<GDALMetadata>\n",
        '<GDALMetadata>\n<Item name="Observation time" format="YYYYMMDDhhmm">201609281600</Item>\n',
    )
    escaped = inner.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    nested = f'<GDALMetadata>\n  <Item name="GDAL_METADATA">{escaped}</Item>\n</GDALMetadata>'
    field = read_native(_tif_file(tmp_path / "x.tif", 1, gdal=nested))
    assert field.attrs["time_from"] == "GDAL_METADATA Observation time"
    assert field.attrs["end_time"] == "2016-09-28T16:00:00Z"


def test_geotiff_without_gdal_metadata(tmp_path: Path) -> None:
    path = _tif_file(tmp_path / "x_201609281600.tif", 1, gdal=None)
    assert not _sniff_geotiff(probe_file(path))
    with pytest.raises(FileFormatError, match="lacks the GDAL_METADATA tag"):
        read_native(path, source="fmi_geotiff")


def test_geotiff_not_dbz(tmp_path: Path) -> None:
    path = _tif_file(tmp_path / "x_201609281600.tif", 1, gdal=_GDAL.replace("dBZ", "mm/h"))
    with pytest.raises(FileFormatError, match="expected 'dBZ'"):
        read_native(path, source="fmi_geotiff")


@pytest.mark.realdata
def test_geotiff_truncated(real_data: Path, tmp_path: Path) -> None:
    path = tmp_path / TIF.format(STAMPS[0])
    path.write_bytes((real_data / "fmi" / path.name).read_bytes()[:200_000])
    with pytest.raises(FileFormatError, match="truncated or corrupt"):
        read_native(path, source="fmi_geotiff")


def test_geotiff_wrong_magic(tmp_path: Path) -> None:
    path = _tif_file(tmp_path / "x_201609281600.tif", 1)
    path.write_bytes(b"XX" + path.read_bytes()[2:])
    assert not _sniff_geotiff(probe_file(path))
    with pytest.raises(FileFormatError, match="not a readable TIFF"):
        read_native(path, source="fmi_geotiff")


def test_a_geotiff_outside_fmi_grid_is_not_taken_for_fmi(tmp_path: Path) -> None:
    # Same dBZ GDAL metadata, but UTM 33N instead of FMI's TM35FIN: not detected as FMI ...
    path = _tif_file(tmp_path / "radar_201609281605.tif", 1, epsg=32633)
    with pytest.raises(FileFormatError, match="not a known radar product"):
        detect_source(path)
    # ... though the reader still reads it when the caller says so, on its own grid.
    field = read_native(path, source="fmi_geotiff")
    assert Grid.of(field).crs.to_epsg() == 32633
