from __future__ import annotations

import bz2
import gzip
import tarfile
from pathlib import Path

import numpy as np
import pytest
from pyproj import CRS, Transformer

from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import (
    NO_DATA,
    NO_ECHO,
    detect_source,
    probe_file,
    read_native,
    read_radar,
)
from qpebench.datasets.radolan import _sniff, parse_header
from qpebench.errors import ConversionError, FileFormatError

STAMP = "10000-1408102050-dwd---bin.gz"
RV_ARCHIVE = "DE1200_RV2210180700.tar.bz2"
# DWD radar sites (lon, lat) of the RV header's MS list, as in wradlib.io.radolan.dwdlocs.
DWD_SITES = {
    "asb": (6.748317, 53.564129),
    "boo": (10.046899, 54.004381),
    "drs": (13.768639, 51.124639),
    "eis": (12.402788, 49.540667),
    "ess": (6.967111, 51.405649),
    "fbg": (8.003611, 47.873611),
    "fld": (8.801998, 51.311197),
    "hnr": (9.694533, 52.460083),
    "isn": (12.101779, 48.174705),
    "mem": (10.219222, 48.042145),
    "neu": (11.135034, 50.500114),
    "nhb": (6.548328, 50.109656),
    "oft": (8.712933, 49.984745),
    "pro": (13.858212, 52.648667),
    "ros": (12.058076, 54.17566),
    "tur": (9.782675, 48.585379),
    "umd": (11.176091, 52.160096),
}


def _composite(product: str, real_data: Path) -> Path:
    return real_data / "radolan" / f"raa01-{product}_{STAMP}"


@pytest.fixture(scope="module")
def rv_files(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    out = tmp_path_factory.mktemp("rv")
    found: dict[int, Path] = {}
    with tarfile.open(real_data / "radolan" / RV_ARCHIVE) as tar:
        for member in tar:
            lead = int(member.name.rsplit("_", 1)[1])
            if lead in (0, 60):
                fh = tar.extractfile(member)
                assert fh is not None
                found[lead] = out / member.name
                found[lead].write_bytes(fh.read())
            if len(found) == 2:
                break
    return found


def _path(name: str, real_data: Path, rv_files: dict[int, Path]) -> Path:
    return rv_files[int(name[3:])] if name.startswith("rv_") else _composite(name, real_data)


def _raw_words(path: Path) -> np.ndarray:
    data = path.read_bytes()
    data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return np.frombuffer(data[data.index(b"\x03") + 1 :], dtype="<u2")


# --- real files -----------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["ry", "rw", "rx", "rv_000", "rv_060"])
def test_detected_as_radolan(name: str, real_data: Path, rv_files: dict[int, Path]) -> None:
    assert detect_source(_path(name, real_data, rv_files)) == "radolan"


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["ry", "rw", "rv_000", "rv_060"])
def test_amounts_equal_wradlib(name: str, real_data: Path, rv_files: dict[int, Path]) -> None:
    wio = pytest.importorskip("wradlib.io")
    path = _path(name, real_data, rv_files)
    field = read_native(path)
    expected, attrs = wio.read_radolan_composite(str(path), missing=-9999)
    missing = expected == -9999
    status = field["status"].values
    np.testing.assert_array_equal(status == NO_DATA, missing)
    np.testing.assert_allclose(field.values[~missing], expected[~missing], rtol=1e-6, atol=0)
    assert field.attrs["radolan_precision"] == attrs["precision"]
    assert field.attrs["kind"] == "accumulation" and field.attrs["units"] == "mm"


@pytest.mark.realdata
def test_rx_equals_wradlib_rvp6(real_data: Path) -> None:
    wio = pytest.importorskip("wradlib.io")
    path = _composite("rx", real_data)
    field = read_native(path)
    rvp6, _ = wio.read_radolan_composite(str(path), missing=-9999)  # raw RVP6 units for RX
    status = field["status"].values
    np.testing.assert_array_equal(status == NO_DATA, rvp6 == -9999)
    np.testing.assert_array_equal(status == NO_ECHO, rvp6 == 0)
    echo = status == 0
    np.testing.assert_array_equal(field.values[echo], rvp6[echo] / 2 - 32.5)
    assert field.attrs["kind"] == "reflectivity" and float(np.nanmax(field.values)) == 56.5


@pytest.mark.realdata
def test_flag_counts_and_maxima_from_raw_words(real_data: Path) -> None:
    rw, ry = _composite("rw", real_data), _composite("ry", real_data)
    for path, maximum, precision in ((rw, 38.6, 0.1), (ry, 10.79, 0.01)):
        words = _raw_words(path)
        field = read_native(path)
        status = field["status"].values
        assert np.count_nonzero(status == NO_DATA) == np.count_nonzero(words & 0x2000)
        assert set(np.unique(words[(words & 0x2000) != 0])) == {0x29C4}  # 2500 + no-data bit
        assert field.attrs["radolan_secondary_cells"] == np.count_nonzero(words & 0x1000)
        assert np.count_nonzero(status == NO_ECHO) == np.count_nonzero((words & 0xEFFF) == 0)
        assert float(np.nanmax(field.values)) == pytest.approx(maximum)
        assert np.nanmax(field.values) == pytest.approx((words[words < 0x1000]).max() * precision)
    assert read_native(rw).attrs["radolan_secondary_cells"] == 23032


@pytest.mark.realdata
def test_times_and_windows(real_data: Path, rv_files: dict[int, Path]) -> None:
    ry = read_native(_composite("ry", real_data))
    assert (ry.attrs["start_time"], ry.attrs["end_time"]) == (
        "2014-08-10T20:45:00Z",
        "2014-08-10T20:50:00Z",
    )
    assert ry.attrs["accumulation_minutes"] == 5
    assert str(ry["time"].values) == "2014-08-10T20:50:00.000000000"
    rw = read_native(_composite("rw", real_data))
    assert (
        rw.attrs["start_time"] == "2014-08-10T19:50:00Z" and rw.attrs["accumulation_minutes"] == 60
    )
    rx = read_native(_composite("rx", real_data))
    assert rx.attrs["start_time"] == rx.attrs["end_time"] == "2014-08-10T20:50:00Z"
    analysis, nowcast = read_native(rv_files[0]), read_native(rv_files[60])
    assert analysis.attrs["forecast_lead_minutes"] == 0
    assert analysis.attrs["end_time"] == "2022-10-18T07:00:00Z"
    assert nowcast.attrs["forecast_lead_minutes"] == 60
    assert nowcast.attrs["issue_time"].startswith("2022-10-18T07:00:00")
    assert (nowcast.attrs["start_time"], nowcast.attrs["end_time"]) == (
        "2022-10-18T07:55:00Z",
        "2022-10-18T08:00:00Z",
    )
    assert nowcast.attrs["radolan_radars"].split(",") == [f"de{s}" for s in sorted(DWD_SITES)]


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "shape"), [("ry", (900, 900)), ("rv_000", (1200, 1100))])
def test_cell_centres_equal_wradlib(
    name: str, shape: tuple[int, int], real_data: Path, rv_files: dict[int, Path]
) -> None:
    georef = pytest.importorskip("wradlib.georef")
    grid = Grid.of(read_native(_path(name, real_data, rv_files)))
    assert grid.shape == shape
    model = "dwd-radolan-wgs84" if name.startswith("rv") else "dwd-radolan-sphere"
    crs = georef.create_crs(model)
    x, y = georef.get_radolan_coordinates(*shape, crs=crs, mode="center")
    np.testing.assert_allclose(grid.x, x, rtol=0, atol=1e-3)
    np.testing.assert_allclose(grid.y, y, rtol=0, atol=1e-3)  # south → north, as in the file
    assert grid.crs.equals(crs)


@pytest.mark.realdata
def test_900_grid_corners_match_dwd_table(real_data: Path) -> None:
    # DWD format description 2.2.2, corner table of the 900 km x 900 km grid (outer corners).
    grid = Grid.of(read_native(_composite("ry", real_data)))
    xe, ye = grid.edges()
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    table = {
        (0, 0): (3.5889, 46.9526, -523.4622, -4658.645),
        (-1, 0): (14.6209, 47.0705, 376.5378, -4658.645),
        (-1, -1): (15.7208, 54.7405, 376.5378, -3758.645),
        (0, -1): (2.0715, 54.5877, -523.4622, -3758.645),
    }
    for (i, j), (lon, lat, x_km, y_km) in table.items():
        assert xe[i] / 1000 == pytest.approx(x_km, abs=1e-3)
        assert ye[j] / 1000 == pytest.approx(y_km, abs=1e-3)
        assert to_lonlat.transform(xe[i], ye[j]) == pytest.approx((lon, lat), abs=1e-4)


@pytest.mark.realdata
def test_de1200_grid_matches_dwd_proj_string_and_corners(rv_files: dict[int, Path]) -> None:
    grid = Grid.of(read_native(rv_files[0]))
    # DWD's proj string of DE1200 (WGS84) puts the centre of the north-west cell at (0, 0).
    dwd = CRS.from_proj4(
        "+proj=stere +lat_0=90 +lat_ts=60 +lon_0=10 +a=6378137 +b=6356752.3142451802 "
        "+x_0=543196.83521776402 +y_0=3622588.8619310018 +no_defs"
    )
    nw = Transformer.from_crs(grid.crs, dwd, always_xy=True).transform(grid.x[0], grid.y[-1])
    assert nw == pytest.approx((0.0, 0.0), abs=1e-3)
    # POLARA's projected_area of DE1200/DE4800 (outer corners, lon/lat).
    xe, ye = grid.edges()
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    corners = {
        (0, -1): (1.46330151, 55.86208711),
        (-1, -1): (18.73161645, 55.84543856),
        (-1, 0): (16.58086935, 45.68460578),
        (0, 0): (3.566994635, 45.69642538),
    }
    for (i, j), lonlat in corners.items():
        assert to_lonlat.transform(xe[i], ye[j]) == pytest.approx(lonlat, abs=1e-6)


@pytest.mark.realdata
def test_rv_data_lie_within_range_of_its_radars(rv_files: dict[int, Path]) -> None:
    # Orientation check: every cell with data is within 150 km (+ a cell) of a listed radar;
    # a grid flipped north-south or east-west puts data up to 250 km away.
    field = read_native(rv_files[0])
    grid = Grid.of(field)
    to_xy = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    sx, sy = to_xy.transform(*np.array(list(DWD_SITES.values())).T)
    has_data = field["status"].values[::4, ::4] != NO_DATA
    xx, yy = np.meshgrid(grid.x[::4], grid.y[::4])
    dist = np.min(np.hypot(xx[..., None] - sx, yy[..., None] - sy), axis=-1)
    assert dist[has_data].max() < 170e3
    assert has_data[dist < 140e3].mean() > 0.99


@pytest.mark.realdata
def test_accumulations_become_rates(real_data: Path) -> None:
    for product, hours in (("ry", 5 / 60), ("rw", 1.0)):
        path = _composite(product, real_data)
        native, rate = read_native(path), read_radar(path)
        np.testing.assert_allclose(rate.values, native.values / hours, rtol=1e-6, equal_nan=True)
        assert rate.attrs["units"] == "mm/h"


@pytest.mark.realdata
def test_rx_needs_a_zr_relation(real_data: Path) -> None:
    path = _composite("rx", real_data)
    with pytest.raises(ConversionError, match="Z–R"):
        read_radar(path)
    rate = read_radar(path, zr="marshall_palmer")
    native = read_native(path)
    peak = np.nanargmax(native.values)
    assert rate.values.flat[peak] == pytest.approx((10 ** (56.5 / 10) / 200) ** (1 / 1.6), rel=1e-5)
    assert np.all(rate.values[native["status"].values == NO_ECHO] == 0)


@pytest.mark.realdata
def test_sniffer_rejects_other_sources(real_data: Path) -> None:
    others = [
        *sorted((real_data / "fmi").glob("*"))[:3],
        *sorted((real_data / "opera").rglob("*.hdf"))[:1],
        *sorted((real_data / "knmi").glob("*"))[:1],
        *sorted((real_data / "mch").glob("*"))[:1],
        *sorted((real_data / "mrms").glob("*"))[:1],
        *sorted((real_data / "bom").rglob("*.nc"))[:1],
    ]
    assert len(others) >= 6
    for path in others:
        assert not _sniff(probe_file(path)), path


# --- synthetic files: decoding details and bad input ----------------------------------------


def _radolan(
    words: np.ndarray | None = None,
    *,
    product: str = "RY",
    fields: str = "VS 3SW   2.13.1PR E-02INT   5GP 900x 900",
    by_delta: int = 0,
) -> bytes:
    data = (np.zeros(900 * 900, "<u2") if words is None else words).tobytes()
    head = f"{product}102050100000814BY{{:7d}}{fields}MS 10<boo,ros>"
    total = len(head.format(0)) + 1 + len(data) + by_delta
    return head.format(total).encode() + b"\x03" + data


def test_synthetic_flags_decode_per_spec(tmp_path: Path) -> None:
    words = np.zeros(900 * 900, "<u2")
    words[0] = 123  # 1.23 mm
    words[1] = 0x1000 | 45  # secondary data: value kept
    words[2] = 0x29C4  # no data
    words[3] = 0x8000 | 2490  # clutter
    words[899 * 900] = 7  # first cell of the last (northernmost) row
    path = tmp_path / "ry"
    path.write_bytes(_radolan(words))
    field = read_native(path)
    assert field.values[0, 0] == pytest.approx(1.23)
    assert field.values[0, 1] == pytest.approx(0.45)
    assert field["status"].values[0, 2] == field["status"].values[0, 3] == NO_DATA
    assert field.values[-1, 0] == pytest.approx(0.07)
    assert field["y"].values[-1] > field["y"].values[0]  # rows run south → north
    assert field.attrs["radolan_secondary_cells"] == 1
    assert field.attrs["radolan_clutter_cells"] == 1
    assert field.attrs["radolan_radars"] == "boo,ros"


def test_bzip2_file_reads_like_the_plain_one(tmp_path: Path) -> None:
    words = np.arange(900 * 900, dtype="<u2") % 4000
    raw = _radolan(words)
    (tmp_path / "ry").write_bytes(raw)
    (tmp_path / "ry.bz2").write_bytes(bz2.compress(raw, 1))
    plain = read_native(tmp_path / "ry")
    packed = read_native(tmp_path / "ry.bz2", source="radolan")
    np.testing.assert_array_equal(plain.values, packed.values)


def test_truncated_data_section(tmp_path: Path) -> None:
    path = tmp_path / "ry"
    path.write_bytes(_radolan()[:-1000])
    assert detect_source(path) == "radolan"
    with pytest.raises(FileFormatError, match="truncated RADOLAN file"):
        read_native(path)


def test_header_without_etx(tmp_path: Path) -> None:
    path = tmp_path / "ry"
    path.write_bytes(_radolan().replace(b"\x03", b" ", 1)[:3000])
    with pytest.raises(FileFormatError, match="ETX"):
        read_native(path, source="radolan")


def test_header_missing_grid_size(tmp_path: Path) -> None:
    path = tmp_path / "ry"
    path.write_bytes(_radolan(fields="VS 3SW   2.13.1PR E-02INT   5"))
    with pytest.raises(FileFormatError, match="lacks the GP field"):
        read_native(path)


def test_byte_count_disagrees_with_grid(tmp_path: Path) -> None:
    path = tmp_path / "ry"
    path.write_bytes(_radolan(by_delta=-2))
    with pytest.raises(FileFormatError, match="declares .* data bytes"):
        read_native(path)


def test_unknown_grid_and_product(tmp_path: Path) -> None:
    path = tmp_path / "ry"
    path.write_bytes(_radolan(fields="VS 3SW   2.13.1PR E-02INT   5GP 901x 899"))
    with pytest.raises(FileFormatError, match="unknown RADOLAN grid"):
        read_native(path)
    path.write_bytes(_radolan(product="RE"))
    with pytest.raises(FileFormatError, match="'RE' is not supported"):
        read_native(path)


def test_wrong_magic_is_not_radolan(tmp_path: Path) -> None:
    path = tmp_path / "ry"
    path.write_bytes(b"12" + _radolan()[2:])
    assert not _sniff(probe_file(path))
    with pytest.raises(FileFormatError, match="not a known radar product"):
        detect_source(path)
    with pytest.raises(FileFormatError, match="must start with product code"):
        read_native(path, source="radolan")


def test_header_parser_reads_keyed_fields() -> None:
    text = (
        "RV180700100001022BY   2640195VS 5SW P300001HPR E-02INT   5GP1200x1100VV 060"
        "MF 00000008MS 11<deasb,deboo>"
    )
    header = parse_header(text.encode() + b"\x03", Path("rv"))
    assert (header.product, header.rows, header.cols) == ("RV", 1200, 1100)
    assert (header.software, header.precision, header.interval_minutes) == ("P300001H", 0.01, 5)
    assert (header.lead_minutes, header.module_flags, header.format_version) == (60, 8, 5)
    assert header.radars == ("deasb", "deboo")
    assert header.time.isoformat() == "2022-10-18T07:00:00+00:00"


@pytest.mark.realdata
@pytest.mark.parametrize(("product", "step"), [("ry", 0.01), ("rw", 0.1)])
def test_pysteps_importer_differs_only_by_its_known_errors(real_data, tmp_path, product, step):
    importers = pytest.importorskip("pysteps.io.importers")
    src = real_data / "radolan" / f"raa01-{product}_10000-1408102050-dwd---bin.gz"
    data = gzip.decompress(src.read_bytes())
    plain = tmp_path / f"{product}.bin"
    plain.write_bytes(data)
    theirs, _, _ = importers.import_dwd_radolan(str(plain), product.upper())
    ours = read_native(src).values.astype(np.float64)
    assert np.array_equal(np.isnan(theirs), np.isnan(ours))
    # The raw 16-bit words, decoded here independently: bit 13 (0x1000) = secondary data.
    words = np.frombuffer(data[data.index(b"\x03") + 1 :], "<u2").reshape(ours.shape)
    secondary = (words & 0x1000) != 0
    finite = np.isfinite(ours)
    diff = theirs - ours
    # pysteps 1.21 subtracts 0.01 mm from every value, whatever the precision (0 mm becomes
    # −0.01) ...
    assert np.allclose(diff[finite & ~secondary], -0.01, atol=1e-4)  # ours are float32
    # ... and reads the secondary-data flag of most flagged cells as part of the value (+4096
    # steps); only RW has such cells here.
    flagged = diff[finite & secondary]
    bumped = np.isclose(flagged, 4096 * step - 0.01, atol=1e-4)
    assert np.all(bumped | np.isclose(flagged, -0.01, atol=1e-4))
    assert bumped.any() == (product == "rw")
