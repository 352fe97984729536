"""The radar reader interface: detection, conversion, Z–R, bad input, archive scans, inspect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from qpebench.cli import main
from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import (
    ECHO,
    NO_DATA,
    NO_ECHO,
    ZR_RELATIONS,
    QualityControl,
    ZRRelation,
    detect_source,
    read_native,
    read_radar,
    scan_radar,
    summarize,
    to_rain_rate,
    zr_relation,
)
from qpebench.errors import (
    ConfigError,
    ConversionError,
    FileFormatError,
    UnknownNameError,
)
from qpebench.registry import RADAR_READERS, load_builtins

load_builtins()

SUMMARY_KEYS = {
    "file",
    "source",
    "network",
    "product",
    "quantity",
    "kind",
    "units",
    "shape",
    "crs",
    "cell_size",
    "cell_size_units",
    "valid_time",
    "start_time",
    "accumulation_minutes",
    "counts",
    "stats",
    "has_quality",
}


def dbz_raw() -> np.ndarray:
    # gain 0.5, offset −32: raw 110 → 23 dBZ; 0 = undetect; 255 = nodata.
    return np.array(
        [[110, 0, 255, 130, 90], [0, 0, 110, 255, 255], [150, 110, 0, 0, 0], [0, 0, 0, 0, 200]],
        dtype=np.uint8,
    )


def test_all_expected_readers_are_registered():
    expected = {
        "odim",
        "mrms",
        "radolan",
        "knmi",
        "fmi_pgm",
        "fmi_geotiff",
        "bom_rainfields",
        "meteoswiss_gif",
    }
    assert expected <= set(RADAR_READERS.names())


def test_reflectivity_needs_an_explicit_zr(tmp_path, write_odim):
    path = write_odim(tmp_path / "dbz.h5", dbz_raw(), quantity="DBZH")
    native = read_native(path)
    assert native.attrs["kind"] == "reflectivity" and native.attrs["units"] == "dBZ"
    assert native.values[0, 0] == pytest.approx(23.0)
    with pytest.raises(ConversionError, match=r"dbz\.h5: holds radar reflectivity.*zr="):
        read_radar(path)
    rate = read_radar(path, zr="marshall_palmer")
    expected = (10 ** (23.0 / 10) / 200.0) ** (1 / 1.6)  # Z = 200 R^1.6
    assert rate.values[0, 0] == pytest.approx(expected, rel=1e-6)
    assert rate.attrs["zr_a"] == 200.0 and rate.attrs["zr_b"] == 1.6
    status = rate.status.values
    raw = dbz_raw()
    assert np.array_equal(status == NO_ECHO, raw == 0)
    assert np.array_equal(status == NO_DATA, raw == 255)
    assert np.all(rate.values[raw == 0] == 0.0)  # no echo is 0 mm/h
    assert np.isnan(rate.values[raw == 255]).all()
    other = read_radar(path, zr=(300.0, 1.4))
    assert other.values[0, 0] == pytest.approx((10**2.3 / 300.0) ** (1 / 1.4), rel=1e-6)


def test_zr_relation_specs():
    assert zr_relation("marshall_palmer") is ZR_RELATIONS["marshall_palmer"]
    assert zr_relation((250, 1.2)) == ZRRelation(250.0, 1.2)
    with pytest.raises(ConfigError, match="unknown Z–R relation 'marshal'"):
        zr_relation("marshal")
    with pytest.raises(ConfigError, match="a > 0 and b > 0"):
        ZRRelation(-1.0, 1.6)


def test_quality_control_options_are_checked(tmp_path, write_odim):
    with pytest.raises(ConfigError, match="min_quality"):
        QualityControl(min_quality=2.0)
    with pytest.raises(ConfigError, match="spike_factor"):
        QualityControl(spike_rate=10.0, spike_factor=1.0)
    path = write_odim(tmp_path / "rate.h5", dbz_raw(), what={"gain": 0.1, "offset": 0.0})
    with pytest.raises(ConfigError, match="min_quality needs a quality field"):
        read_radar(path, qc=QualityControl(min_quality=0.5))


def test_small_odim_rate_grid_is_cell_centred(tmp_path, write_odim):
    path = write_odim(tmp_path / "rate.h5", dbz_raw(), what={"gain": 0.1, "offset": 0.0})
    field = read_radar(path)
    grid = Grid.of(field)
    assert np.allclose(grid.x, [500, 1500, 2500, 3500, 4500], atol=1e-3)
    assert np.allclose(grid.y, [-500, -1500, -2500, -3500], atol=1e-3)
    assert field.values[0, 0] == pytest.approx(11.0)
    assert field.status.values[0, 0] == ECHO
    assert summarize(field)["counts"] == {
        "cells": 20,
        "valid": 17,
        "echo": 7,
        "no_echo": 10,
        "no_data": 3,
        "rejected": 0,
    }


# --- bad input: each a clear error naming the file and the problem -------------------------


def test_empty_file(tmp_path):
    path = tmp_path / "empty.h5"
    path.touch()
    with pytest.raises(FileFormatError, match=r"empty\.h5: empty file \(0 bytes\)"):
        read_radar(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5: no such file"):
        read_radar(tmp_path / "nope.h5")
    with pytest.raises(FileFormatError, match="is a directory; use scan_radar"):
        read_radar(tmp_path)


def test_truncated_hdf5(tmp_path, write_odim):
    good = write_odim(tmp_path / "good.h5", dbz_raw())
    data = good.read_bytes()
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=r"truncated\.h5: HDF5 file cannot be opened"):
        read_radar(bad)


def test_hdf5_that_is_not_radar(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5["temperature"] = np.zeros(3)
    with pytest.raises(FileFormatError, match=r"other\.h5: not a known radar product.*temperature"):
        read_radar(path)


def test_missing_gain(tmp_path, write_odim):
    path = write_odim(tmp_path / "nogain.h5", dbz_raw(), drop=("gain",))
    with pytest.raises(FileFormatError, match=r"nogain\.h5: missing ODIM attribute 'gain'"):
        read_radar(path)


def test_polar_volume_is_refused(tmp_path, write_odim):
    path = write_odim(tmp_path / "pvol.h5", dbz_raw(), obj="PVOL")
    with pytest.raises(FileFormatError, match=r"pvol\.h5: ODIM object 'PVOL' is not a Cartesian"):
        read_radar(path)


def test_unknown_bytes_and_unknown_source(tmp_path, write_odim):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(FileFormatError, match=r"notes\.txt: not a known radar product"):
        detect_source(path)
    good = write_odim(tmp_path / "good.h5", dbz_raw())
    with pytest.raises(UnknownNameError, match="unknown radar reader 'odm'; did you mean 'odim'"):
        read_radar(good, source="odm")


def test_forced_wrong_source_names_file_and_reader(tmp_path, write_odim):
    good = write_odim(tmp_path / "good.h5", dbz_raw())
    with pytest.raises(FileFormatError, match=r"(?i)good\.h5: .*knmi"):
        read_native(good, source="knmi")


def make_mixed_archive(root, write_odim):
    root.mkdir()
    write_odim(root / "a.h5", dbz_raw(), what={"gain": 0.1, "offset": 0.0})
    (root / "sub").mkdir()
    write_odim(root / "sub" / "b.h5", dbz_raw(), what={"gain": 0.1, "offset": 0.0})
    (root / "empty.h5").touch()
    data = (root / "a.h5").read_bytes()
    (root / "cut.h5").write_bytes(data[:1000])
    write_odim(root / "nogain.h5", dbz_raw(), drop=("gain",))
    (root / "readme.txt").write_text("not radar")
    (root / ".hidden").write_text("ignored")


def test_scan_returns_good_files_and_reports_bad_ones(tmp_path, write_odim):
    root = tmp_path / "archive"
    make_mixed_archive(root, write_odim)
    scan = scan_radar(root)
    assert sorted(s["file"] for s in scan.good) == [str(root / "a.h5"), str(root / "sub" / "b.h5")]
    reasons = {b.path.name: b.error for b in scan.bad}
    assert set(reasons) == {"empty.h5", "cut.h5", "nogain.h5", "readme.txt"}
    assert "empty file" in reasons["empty.h5"]
    assert "cannot be opened" in reasons["cut.h5"]
    assert "missing ODIM attribute 'gain'" in reasons["nogain.h5"]
    assert "not a known radar product" in reasons["readme.txt"]
    assert all(str(root) in error for error in reasons.values())
    assert scan.report().startswith("2 radar files read, 4 bad")


def test_cli_inspect_json_keys_are_stable(tmp_path, write_odim, capsys):
    path = write_odim(tmp_path / "rate.h5", dbz_raw(), what={"gain": 0.1, "offset": 0.0})
    assert main(["inspect", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == SUMMARY_KEYS
    assert set(summary["counts"]) == {"cells", "valid", "echo", "no_echo", "no_data", "rejected"}
    assert set(summary["stats"]) == {"min", "mean", "max"}
    assert summary["source"] == "odim" and summary["shape"] == [4, 5]
    assert summary["crs"].startswith("+proj=laea +lat_0=55")
    assert summary["cell_size"] == [1000.0, 1000.0]
    assert summary["valid_time"] == "2024-01-01T12:00:00Z"
    assert summary["stats"]["max"] == pytest.approx(20.0)
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "odim (OPERA)" in text and "echo 7, no echo 10" in text


def test_cli_inspect_errors_and_directory(tmp_path, write_odim, capsys):
    bad = tmp_path / "empty.h5"
    bad.touch()
    assert main(["inspect", str(bad)]) == 2
    assert "empty.h5: empty file" in capsys.readouterr().err
    root = tmp_path / "archive"
    make_mixed_archive(root, write_odim)
    assert main(["inspect", str(root), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert len(out["good"]) == 2 and len(out["bad"]) == 4
    assert all(set(b) == {"file", "error"} for b in out["bad"])
    assert {Path(b["file"]).name for b in out["bad"]} == {
        "empty.h5",
        "cut.h5",
        "nogain.h5",
        "readme.txt",
    }


EXPECTED_READERS = {
    "opera": ("odim", 15),
    "mrms": ("mrms", 11),
    "knmi": ("knmi", 8),
    "bom": ("bom_rainfields", 6),
    "mch": ("meteoswiss_gif", 6),
    "radolan": ("radolan", 3),
}


@pytest.mark.realdata
def test_scan_of_the_whole_shared_archive_reads_every_radar_file(real_data, tmp_path):
    scan = scan_radar(real_data)
    by_folder: dict[str, list[dict]] = {}
    for summary in scan.good:
        folder = Path(summary["file"]).relative_to(real_data).parts[0]
        by_folder.setdefault(folder, []).append(summary)
    for folder, (source, n) in EXPECTED_READERS.items():
        found = by_folder.pop(folder)
        assert len(found) == n and {s["source"] for s in found} == {source}, folder
    fmi = by_folder.pop("fmi")
    assert sorted(s["source"] for s in fmi) == ["fmi_geotiff"] * 2 + ["fmi_pgm"] * 6
    assert not by_folder, f"unexpected radar reads: {sorted(by_folder)}"
    # Everything else (satellite files, NWC SAF, NEXRAD volumes, the RADVOR tar) is reported,
    # each with its path and reason, and did not stop the scan.
    radar_folders = {*EXPECTED_READERS, "fmi"}
    bad_radar = [b for b in scan.bad if b.path.relative_to(real_data).parts[0] in radar_folders]
    # The only radar-folder file refused is the tar archive of a RADVOR run (unpack it first).
    assert [b.path.name for b in bad_radar] == ["DE1200_RV2210180700.tar.bz2"]
    assert "not a known radar product" in bad_radar[0].error
    assert all(str(b.path) in b.error for b in scan.bad)
    times = [s["valid_time"] for s in scan.good]
    assert times == sorted(times)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for p in sorted((real_data / "opera" / "nimbus_20241126").glob("*.hdf"))[:2]:
        shutil.copy(p, mixed / p.name)
    (mixed / "cut.hdf").write_bytes((mixed / p.name).read_bytes()[:50_000])
    scan = scan_radar(mixed)
    assert len(scan.good) == 2 and [b.path.name for b in scan.bad] == ["cut.hdf"]


def test_accumulation_becomes_a_rate_over_its_own_period(tmp_path, write_odim):
    # write_odim's window is 11:55–12:00: 5 min, so mm per 5 min × 12 = mm/h.
    path = write_odim(
        tmp_path / "acrr.h5", dbz_raw(), quantity="ACRR", what={"gain": 0.01, "offset": 0.0}
    )
    native = read_native(path)
    assert native.attrs["accumulation_minutes"] == 5.0
    assert native.attrs["start_time"] == "2024-01-01T11:55:00Z"
    rate = read_radar(path)
    assert np.allclose(rate.values, native.values * 12.0, equal_nan=True)
    assert rate.attrs["kind"] == "rate" and rate.attrs["native_kind"] == "accumulation"


def test_converting_twice_changes_nothing(tmp_path, write_odim):
    acrr = write_odim(
        tmp_path / "acrr.h5", dbz_raw(), quantity="ACRR", what={"gain": 0.01, "offset": 0.0}
    )
    dbz = write_odim(tmp_path / "dbz.h5", dbz_raw(), quantity="DBZH")
    for once in (read_radar(acrr), read_radar(dbz, zr="marshall_palmer")):
        twice = to_rain_rate(once, zr="marshall_palmer")
        assert np.array_equal(twice.values, once.values, equal_nan=True)
        assert twice.attrs["kind"] == "rate" and twice.attrs["units"] == "mm/h"
        assert summarize(twice)["kind"] == "rate"


def test_zr_specs_of_the_wrong_type_are_config_errors():
    with pytest.raises(ConfigError, match="pair of numbers"):
        zr_relation(200)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pair of numbers"):
        zr_relation(("x", 1.6))  # type: ignore[arg-type]


def test_odim_without_object_and_with_two_rate_fields(tmp_path, write_odim):
    path = write_odim(tmp_path / "noobj.h5", dbz_raw())
    with h5py.File(path, "r+") as h5:
        del h5["what"].attrs["object"]
    with pytest.raises(FileFormatError, match=r"noobj\.h5: ODIM file without /what/object"):
        read_native(path)
    path = write_odim(tmp_path / "two.h5", dbz_raw(), what={"gain": 0.1, "offset": 0.0})
    with h5py.File(path, "r+") as h5:
        h5.copy("dataset1", "dataset10")
    with pytest.raises(FileFormatError, match="RATE appears in /dataset1/data1 and /dataset10"):
        read_native(path)


def test_a_faulty_plugin_sniff_does_not_stop_detection_or_scans(tmp_path, write_odim):
    from qpebench.datasets.radar import RadarReader, register_reader

    def broken_sniff(probe):
        raise RuntimeError("plugin bug")

    register_reader(RadarReader("broken", "test", "a plugin with a bug", broken_sniff, read_native))
    try:
        good = write_odim(tmp_path / "good.h5", dbz_raw(), what={"gain": 0.1, "offset": 0.0})
        assert detect_source(good) == "odim"
        text = tmp_path / "notes.txt"
        text.write_text("hello")
        with pytest.raises(FileFormatError, match="sniff errors: broken: RuntimeError: plugin bug"):
            detect_source(text)
        assert len(scan_radar(tmp_path).good) == 1
    finally:
        RADAR_READERS.unregister("broken")


def test_scan_with_an_unknown_source_fails_once(tmp_path, write_odim):
    write_odim(tmp_path / "a.h5", dbz_raw())
    with pytest.raises(UnknownNameError, match="unknown radar reader 'odm'"):
        scan_radar(tmp_path, source="odm")


def test_cli_lists_the_registered_readers(capsys):
    assert main(["inspect", "--readers", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == RADAR_READERS.names()
    assert {r["network"] for r in rows} >= {"MRMS (NOAA/NSSL)", "DWD", "KNMI", "FMI", "BoM"}
    assert main(["inspect"]) == 2
    assert "inspect needs a file or directory" in capsys.readouterr().err
