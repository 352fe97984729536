from __future__ import annotations

import bz2
import importlib.util
import shutil
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import xarray as xr
from pyproj import CRS, Transformer

from qpebench.datasets import ahi
from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import probe_file
from qpebench.datasets.satellite import detect_satellite_source, read_satellite
from qpebench.errors import FileFormatError
from qpebench.registry import SATELLITE_READERS

GENERATOR = Path(__file__).resolve().parents[1] / "data" / "ahi" / "data.py"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ahi_hsd_generator", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return gen.write_scan(tmp_path_factory.mktemp("ahi") / "scan")


@pytest.fixture(scope="module")
def native(scan: Any) -> xr.DataArray:
    return ahi.read_hsd(scan.all_files, [])


def _geos_crs() -> CRS:
    """The HSD projection built from the header values the generator wrote (UG §3)."""
    h = (gen.DISTANCE_KM - gen.REQ_KM) * 1000
    return CRS.from_proj4(
        f"+proj=geos +lon_0={gen.SUB_LON} +h={h} +a={gen.REQ_KM * 1000} "
        f"+b={gen.RPOL_KM * 1000} +sweep=y +units=m"
    )


def _files(scan: Any, *bands: str) -> list[Path]:
    return [p for b in bands for p in scan.files[b]]


# --- the generator's layout -------------------------------------------------------------------


def test_generator_blocks_match_satpy_dtypes_field_for_field() -> None:
    from satpy.readers import ahi_hsd as sat

    pairs = [
        (gen.BASIC_INFO, sat._BASIC_INFO_TYPE),
        (gen.DATA_INFO, sat._DATA_INFO_TYPE),
        (gen.PROJ_INFO, sat._PROJ_INFO_TYPE),
        (gen.NAV_INFO, sat._NAV_INFO_TYPE),
        (gen.CAL_INFO, sat._CAL_INFO_TYPE),
        (gen.IRCAL_INFO, sat._IRCAL_INFO_TYPE),
        (gen.INTER_CALIBRATION_INFO, sat._INTER_CALIBRATION_INFO_TYPE),
        (gen.SEGMENT_INFO, sat._SEGMENT_INFO_TYPE),
        (gen.NAVIGATION_CORRECTION_INFO, sat._NAVIGATION_CORRECTION_INFO_TYPE),
        (gen.NAVIGATION_CORRECTION_SUBINFO, sat._NAVIGATION_CORRECTION_SUBINFO_TYPE),
        (gen.OBSERVATION_TIME_INFO, sat._OBSERVATION_TIME_INFO_TYPE),
        (gen.OBSERVATION_LINE_TIME_INFO, sat._OBSERVATION_LINE_TIME_INFO_TYPE),
        (gen.ERROR_INFO, sat._ERROR_INFO_TYPE),
        (gen.ERROR_LINE_INFO, sat._ERROR_LINE_INFO_TYPE),
        (gen.SPARE, sat._SPARE_TYPE),
    ]
    for ours, theirs in pairs:
        assert ours.itemsize == theirs.itemsize
        assert ours.names == theirs.names
        for name in ours.names:
            a, b = ours.fields[name][0], theirs.fields[name][0]
            assert ours.fields[name][1] == theirs.fields[name][1], name  # offset
            if name in ("resampling_types", "resampling_size"):
                # UG I2 and JMA's hisd.h "unsigned short"; satpy reads them signed ("<i2").
                assert (a.itemsize, b.kind) == (2, "i"), name
                continue
            assert (a.kind, a.itemsize, a.shape) == (b.kind, b.itemsize, b.shape), name
    # UG §5 Table 6 fixed block lengths.
    assert gen.BASIC_INFO.itemsize == 282
    assert gen.DATA_INFO.itemsize == 50
    assert gen.PROJ_INFO.itemsize == 127
    assert gen.NAV_INFO.itemsize == 139
    assert gen.CAL_INFO.itemsize + gen.IRCAL_INFO.itemsize == 147
    assert gen.INTER_CALIBRATION_INFO.itemsize == 259
    assert gen.SEGMENT_INFO.itemsize == 47
    assert gen.SPARE.itemsize == 259


def test_generated_header_fields(scan: Any) -> None:
    path = scan.files["B14"][1]
    raw = path.read_bytes()
    basic = np.frombuffer(raw, gen.BASIC_INFO, count=1)[0]
    assert basic["satellite"] == b"Himawari-9" and basic["observation_area"] == b"FLDK"
    assert basic["observation_timeline"] == 1200 and basic["byte_order"] == 0
    header, data = int(basic["total_header_length"]), int(basic["total_data_length"])
    assert len(raw) == header + data == header + 110 * 220 * 2
    assert basic["file_name"].decode() == path.name == "HS_H09_20231220_1200_B14_FLDK_R20_S0202.DAT"
    offset = 0
    for number in range(1, 12):  # walk the 11 blocks by their lengths
        assert raw[offset] == number
        size = 4 if number == 10 else 2
        offset += int.from_bytes(raw[offset + 1 : offset + 1 + size], "little")
    assert offset == header
    seg = np.frombuffer(
        raw, gen.SEGMENT_INFO, count=1, offset=sum(list(gen.FIXED_BLOCK_LENGTHS.values())[:6])
    )[0]
    assert (seg["total_number_of_segments"], seg["segment_sequence_number"]) == (2, 2)
    assert seg["first_line_number_of_image_segment"] == 111


# --- satpy, the independent decoder -----------------------------------------------------------


def test_satpy_reads_the_generated_files_cleanly(scan: Any) -> None:
    from satpy import Scene

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*header size does not match.*")
        scene = Scene(reader="ahi_hsd", filenames=[str(p) for p in _files(scan, "B08", "B14")])
        scene.load(["B08", "B14"], calibration="brightness_temperature")
        for band in ("B08", "B14"):
            values = scene[band].values
            both = np.isfinite(values) & np.isfinite(scan.expected[band])
            assert both.sum() > 30000
            np.testing.assert_allclose(values[both], scan.expected[band][both], atol=2e-3)
    area = scene["B14"].attrs["area"]
    edge = gen.NPIX / 2 * np.deg2rad(2.0**16 / gen.CFAC) * (gen.DISTANCE_KM - gen.REQ_KM) * 1000
    np.testing.assert_allclose(area.area_extent, (-edge, -edge, edge, edge), rtol=0, atol=1.0)


def test_tb_equals_the_encoded_field_within_half_a_count(scan: Any, native: xr.DataArray) -> None:
    assert native.attrs["source"] == "ahi_hsd" and native.attrs["sensor"] == "AHI"
    assert list(native["channel"].values) == list(gen.IR_BANDS)
    assert native.dtype == np.float32 and native.shape == (10, 220, 220)
    for band in gen.IR_BANDS:
        values = native.sel(channel=band).values.astype(np.float64)
        truth, quantum = scan.truth[band], scan.quantum[band]
        both = np.isfinite(values) & np.isfinite(truth)
        error = np.abs(values - truth)[both]
        assert np.all(error <= 0.5 * quantum[both] + 2e-3), band
        assert np.nanmin(values) == pytest.approx(gen.CLOUD_K[band], abs=0.5 * np.nanmax(quantum))
        # Off the Earth and at the error pixel: NaN.
        assert np.isnan(values[np.isnan(truth)]).all()
        line, column = gen.ERROR_PIXEL
        assert np.isfinite(truth[line - 1, column - 1]) and np.isnan(values[line - 1, column - 1])
        # satpy's elliptical space mask drops a few Earth pixels right at the limb, nothing else.
        dropped = np.isnan(values) & np.isfinite(truth)
        dropped[line - 1, column - 1] = False
        rows, cols = np.nonzero(dropped)
        limb = gen.limb_distance_pixels(cols + 1, rows + 1)
        assert dropped.sum() < 40 and np.all(limb > -1.0), band


def test_cloud_lands_on_the_pixel_of_its_lat_lon(native: xr.DataArray) -> None:
    grid = Grid.of(native)
    crs = _geos_crs()
    assert grid.crs.equals(crs)
    # Cell centres: the UG's scan angles (c − COFF)·2¹⁶/CFAC times the satellite height.
    h = (gen.DISTANCE_KM - gen.REQ_KM) * 1000
    angles = np.deg2rad((np.arange(1, gen.NPIX + 1) - gen.COFF) * 2.0**16 / gen.CFAC)
    np.testing.assert_allclose(grid.x, angles * h, rtol=0, atol=1e-3)
    np.testing.assert_allclose(grid.y, -angles * h, rtol=0, atol=1e-3)  # north → south
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(
        gen.CLOUD_LON, gen.CLOUD_LAT
    )
    column = int(np.argmin(np.abs(grid.x - x)))
    row = int(np.argmin(np.abs(grid.y - y)))
    assert abs(grid.x[column] - x) < 0.4 * grid.dx and abs(grid.y[row] - y) < 0.4 * grid.dy
    for band in ("B08", "B13", "B14", "B15"):
        tb = native.sel(channel=band).values
        assert np.unravel_index(np.nanargmin(tb), tb.shape) == (row, column), band


def test_grid_matches_satpy_area(scan: Any, native: xr.DataArray) -> None:
    from satpy import Scene

    scene = Scene(reader="ahi_hsd", filenames=[str(p) for p in scan.files["B14"]])
    scene.load(["B14"])
    x, y = scene["B14"].attrs["area"].get_proj_vectors()
    np.testing.assert_allclose(native["x"].values, x, rtol=0, atol=1e-3)
    np.testing.assert_allclose(native["y"].values, y, rtol=0, atol=1e-3)


def test_times_position_and_vza(scan: Any) -> None:
    field = read_satellite(scan.all_files, bands=["IR10.8", "WV6.2"])
    assert field.attrs["platform"] == "Himawari-9"
    assert field["time"].values == np.datetime64("2023-12-20T12:00:00")
    assert field.attrs["nominal_time"] == "2023-12-20T12:00:00Z"
    # The observation window of the bands read (B08, B14): the generator starts segment 1
    # 20 s into the slot, each band 0.5 s after the previous one, 280 s per segment.
    start, _ = gen._segment_window(scan.nominal_time, "B08", 1)
    _, end = gen._segment_window(scan.nominal_time, "B14", 2)
    assert field.attrs["start_time"] == start.isoformat().replace("+00:00", "Z")
    assert field.attrs["end_time"] == end.isoformat().replace("+00:00", "Z")
    assert field.attrs["start_time"] == "2023-12-20T12:00:20.500000Z"
    assert field.attrs["end_time"] == "2023-12-20T12:09:43.500000Z"
    assert field.attrs["satellite_longitude"] == pytest.approx(scan.ssp_lon, abs=1e-3)
    height = (scan.ssp_distance_km - gen.REQ_KM) * 1000  # block #4 distance − radius at the SSP
    assert field.attrs["satellite_height"] == pytest.approx(height, abs=150)
    assert field.attrs["projection_longitude"] == 140.7
    assert field.attrs["observation_area"] == "FLDK" and field.attrs["segments"] == 2
    vza = field["vza"].values
    finite = np.isfinite(field.values[0])
    assert np.isfinite(vza[finite]).all() and np.nanmax(vza) < 90
    assert np.nanmin(vza) < 1.0  # 50 km pixels next to the sub-satellite point
    row, column = np.unravel_index(np.nanargmin(field.values[0]), vza.shape)
    assert 25 < vza[row, column] < 35  # 24° N, 12° west of the sub-satellite point


def test_ir108_is_b14_by_default_and_b13_on_request(scan: Any) -> None:
    default = read_satellite(scan.all_files, bands=["IR10.8"])
    assert default["channel"].values.tolist() == ["B14"]
    assert default["wavelength_um"].values.tolist() == [11.2]
    alt = read_satellite(scan.all_files, bands=["IR10.8"], ir108="B13")
    assert alt["channel"].values.tolist() == ["B13"]
    assert alt["wavelength_um"].values.tolist() == [10.4]
    for field, band in ((default, "B14"), (alt, "B13")):
        both = np.isfinite(scan.expected[band])
        values = field.values[0]
        ok = both & np.isfinite(values)
        np.testing.assert_allclose(values[ok], scan.expected[band][ok], atol=2e-3)
    # Without bands: the default canonical bands the scan holds (IR3.9 is off by default).
    everything = read_satellite(scan.all_files)
    assert everything["channel"].values.tolist() == [
        "B08", "B10", "B11", "B12", "B14", "B15", "B16",
    ]  # fmt: skip


# --- detection ---------------------------------------------------------------------------------


def test_detected_from_content_also_compressed_and_renamed(scan: Any, tmp_path: Path) -> None:
    assert detect_satellite_source(scan.all_files[0]) == "ahi_hsd"
    assert SATELLITE_READERS.get("ahi_hsd").sensor == "AHI"
    renamed = []
    for i, path in enumerate(reversed(scan.files["B14"])):
        target = tmp_path / f"granule_{i}.bin.bz2"
        target.write_bytes(bz2.compress(path.read_bytes()))
        renamed.append(target)
    assert probe_file(renamed[0]).compression == "bzip2"
    assert detect_satellite_source(renamed[0]) == "ahi_hsd"
    field = read_satellite(renamed, bands=["IR10.8"])
    reference = read_satellite(scan.files["B14"], bands=["IR10.8"])
    np.testing.assert_array_equal(field.values, reference.values)


def test_sniff_refuses_near_misses(scan: Any, tmp_path: Path) -> None:
    raw = scan.files["B14"][0].read_bytes()
    assert ahi._is_hsd(probe_file(scan.files["B14"][0]))
    for offset, byte in ((0, 2), (1, 0x1B), (3, 12), (6, ord("M")), (38, ord("X")), (282, 3)):
        bad = bytearray(raw)
        bad[offset] = byte
        path = tmp_path / f"bad_{offset}.DAT"
        path.write_bytes(bytes(bad))
        assert not ahi._is_hsd(probe_file(path)), offset
    short = tmp_path / "short.DAT"
    short.write_bytes(raw[:200])
    assert not ahi._is_hsd(probe_file(short))


@pytest.mark.realdata
def test_sniff_matches_no_real_radar_or_satellite_file(real_data: Path) -> None:
    files = [p for p in sorted(real_data.rglob("*")) if p.is_file() and p.stat().st_size > 0]
    assert files
    for path in files:
        try:
            probe = probe_file(path)
        except FileFormatError:
            continue
        assert not ahi._is_hsd(probe), path


# --- bad input ---------------------------------------------------------------------------------


def test_missing_segment_is_reported_by_number(scan: Any) -> None:
    files = _files(scan, "B13") + scan.files["B14"][:1]
    with pytest.raises(FileFormatError, match=r"B14 lacks segment\(s\) \[2\] of 2"):
        read_satellite(files, bands=["IR10.8"])
    # B13 complete: the B14 segment is not needed when B13 stands in for IR10.8.
    assert read_satellite(files, bands=["IR10.8"], ir108="B13")["channel"].values == ["B13"]


def test_missing_band_is_an_error(scan: Any) -> None:
    files = _files(scan, "B13", "B14")
    with pytest.raises(FileFormatError, match=r"band\(s\) \['B15'\].*B13', 'B14'"):
        read_satellite(files, bands=["IR10.8", "IR12.0"])
    with pytest.raises(FileFormatError, match=r"B16"):
        ahi.read_hsd(files, ["B16"])


def test_mixed_scans_and_platforms_are_refused(scan: Any, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    later = gen.write_scan(
        tmp_path / "later", bands=("B14",), nominal_time=datetime(2023, 12, 20, 12, 10, tzinfo=UTC)
    )
    with pytest.raises(FileFormatError, match=r"2023-12-20 12:10 scan.*12:00 scan"):
        read_satellite([scan.files["B14"][0], later.files["B14"][1]], bands=["IR10.8"])
    h8 = gen.write_scan(tmp_path / "h8", bands=("B14",), platform="Himawari-8")
    with pytest.raises(FileFormatError, match=r"Himawari-8.*different platforms"):
        read_satellite([scan.files["B14"][0], h8.files["B14"][1]], bands=["IR10.8"])


def test_duplicate_segment_and_foreign_file(scan: Any, tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match=r"segment 1 of B14 given twice"):
        ahi.read_hsd(scan.files["B14"] + scan.files["B14"][:1], ["B14"])
    other = tmp_path / "notes.txt"
    other.write_text("not a satellite file\n" * 30)
    with pytest.raises(FileFormatError, match=r"not a Himawari Standard Data file"):
        ahi.read_hsd([*scan.files["B14"], other], ["B14"])


def test_truncated_files_are_refused(scan: Any, tmp_path: Path) -> None:
    first, second = scan.files["B14"]
    cut = tmp_path / second.name
    cut.write_bytes(second.read_bytes()[:-1000])
    with pytest.raises(FileFormatError, match=rf"{cut.name}: \d+ bytes, but the HSD header"):
        read_satellite([first, cut], bands=["IR10.8"])
    header_only = tmp_path / "header_only.DAT"
    header_only.write_bytes(second.read_bytes()[:700])
    with pytest.raises(FileFormatError, match=r"header_only.DAT: truncated HSD header"):
        ahi.read_hsd([first, header_only], ["B14"])
    packed = tmp_path / (second.name + ".bz2")
    packed.write_bytes(bz2.compress(second.read_bytes()[:-1000]))
    with pytest.raises(FileFormatError, match=r"decompresses to \d+ bytes"):
        ahi.read_hsd([first, packed], ["B14"])
    # Two bzip2 streams, the second cut short: the head decompresses, the rest does not.
    raw = second.read_bytes()
    broken = tmp_path / "broken.DAT.bz2"
    broken.write_bytes(bz2.compress(raw[:20000]) + bz2.compress(raw[20000:])[:-500])
    with pytest.raises(FileFormatError, match=r"broken.DAT.bz2: truncated bzip2 stream"):
        ahi.read_hsd([first, broken], ["B14"])


def test_inconsistent_header_block_is_refused(scan: Any, tmp_path: Path) -> None:
    raw = bytearray(scan.files["B14"][1].read_bytes())
    raw[282 + 50 + 1] = 128  # block #3 length 127 → 128
    path = tmp_path / "bad_block3.DAT"
    path.write_bytes(bytes(raw))
    with pytest.raises(FileFormatError, match=r"block #3 is 128 bytes long, the UG says 127"):
        ahi.read_hsd([scan.files["B14"][0], path], ["B14"])


def test_generator_script_writes_and_prints_checksums(tmp_path: Path) -> None:
    import contextlib
    import io

    outputs = []
    for run in ("a", "b"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert gen.main(["data.py", str(tmp_path / run)]) == 0
        outputs.append(out.getvalue())
        shutil.rmtree(tmp_path / run)
    lines = outputs[0].splitlines()
    assert len(lines) == 20 and all(len(line.split()[0]) == 64 for line in lines)
    assert outputs[0] == outputs[1]  # deterministic: the checksums identify the layout
