"""The ODIM reader on the real OPERA composites (legacy ODYSSEY and NIMBUS) and pysteps."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from pyproj import Transformer

from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import (
    ECHO,
    NO_DATA,
    NO_ECHO,
    REJECTED,
    QualityControl,
    detect_source,
    read_native,
    read_radar,
)
from qpebench.registry import load_builtins

load_builtins()

LEGACY = "opera/legacy_20180824"
NIMBUS = "opera/nimbus_20241126"


def opera_files(root: Path) -> list[Path]:
    files = sorted((root / "opera").rglob("*.hdf"))
    assert len(files) == 15, files
    return files


@pytest.mark.realdata
def test_every_opera_file_reads_on_the_documented_grid(real_data):
    for path in opera_files(real_data):
        assert detect_source(path) == "odim"
        field = read_native(path)
        grid = Grid.of(field)
        assert grid.shape == (2200, 1900)
        xe, ye = grid.edges()
        # SOURCES.md: false easting/northing put the upper-left corner at (0, 0).
        assert xe[0] == pytest.approx(0.0, abs=5.0) and ye[0] == pytest.approx(0.0, abs=5.0)
        assert xe[-1] == pytest.approx(3_800_000, abs=5.0)
        assert ye[-1] == pytest.approx(-4_400_000, abs=5.0)
        # The four corner lat/lon of the file, transformed independently, are our outer edges.
        with h5py.File(path) as h5:
            where = dict(h5["where"].attrs)
        to_xy = Transformer.from_crs("EPSG:4326", where["projdef"].decode(), always_xy=True)
        for corner, (ex, ey) in {
            "UL": (xe[0], ye[0]),
            "UR": (xe[-1], ye[0]),
            "LL": (xe[0], ye[-1]),
            "LR": (xe[-1], ye[-1]),
        }.items():
            x, y = to_xy.transform(where[f"{corner}_lon"], where[f"{corner}_lat"])
            assert (x, y) == pytest.approx((ex, ey), abs=5.0), corner
        assert float(field.x[1] - field.x[0]) == 2000.0  # centres, 1 km inside the edge
        assert float(field.x[0]) == pytest.approx(1000.0, abs=5.0)


@pytest.mark.realdata
def test_status_counts_match_the_raw_codes(real_data):
    path = real_data / LEGACY / "T_PAAH21_C_EUOC_20180824180000.hdf"
    with h5py.File(path) as h5:
        raw = h5["dataset1/data1/data"][()]
    field = read_radar(path)
    status = field.status.values
    assert (status == NO_DATA).sum() == (raw == -9999000).sum()
    assert (status == NO_ECHO).sum() == ((raw == -8888000) | (raw == 0)).sum()
    assert np.array_equal(np.isnan(field.values), raw == -9999000)
    assert float(field.max()) == pytest.approx(1205.22, abs=0.01)  # the documented spike
    echo = status == ECHO
    assert np.allclose(field.values[echo], raw[echo], rtol=1e-6)
    assert field.attrs["product"] == "OPERA ODYSSEY composite"
    assert field.attrs["collection_start"].startswith("2018-08-24T17:50")
    assert str(field.time.values).startswith("2018-08-24T18:00")


@pytest.mark.realdata
def test_nimbus_attributes_at_data_level_and_quality(real_data):
    path = real_data / NIMBUS / "T_PAAH22_C_EUOC_20241126013000.hdf"
    field = read_radar(path)
    assert field.attrs["product"] == "OPERA NIMBUS instantaneous rain rate composite"
    assert field.attrs["odim_version"] == "H5rad 2.4"
    assert (field.attrs["producer_zr_a"], field.attrs["producer_zr_b"]) == (200.0, 1.6)
    q = field.quality.values
    assert np.nanmin(q) >= 0.0 and np.nanmax(q) <= 1.0
    assert float(field.max()) == pytest.approx(344.24, abs=0.01)


@pytest.mark.realdata
def test_nimbus_accumulation_becomes_a_rate_over_its_hour(real_data):
    path = real_data / NIMBUS / "T_PASH22_C_EUOC_20241126011500.hdf"
    native = read_native(path)
    assert native.attrs["kind"] == "accumulation" and native.attrs["units"] == "mm"
    assert native.attrs["accumulation_minutes"] == 60.0
    assert native.attrs["start_time"] == "2024-11-26T00:15:00Z"
    assert native.attrs["end_time"] == "2024-11-26T01:15:00Z"
    rate = read_radar(path)
    assert rate.attrs["units"] == "mm/h" and rate.attrs["kind"] == "rate"
    # 60 min read from the file's own window (pysteps assumes 15): mm per hour = mm/h.
    assert np.allclose(rate.values, native.values, equal_nan=True)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["T_PAAH21_C_EUOC_20180824184500.hdf", "nimbus"])
def test_equals_pysteps_importer(real_data, name):
    importers = pytest.importorskip("pysteps.io.importers")
    path = (
        real_data / NIMBUS / "T_PAAH22_C_EUOC_20241126014500.hdf"
        if name == "nimbus"
        else real_data / LEGACY / name
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        precip, quality, meta = importers.import_opera_hdf5(str(path))
    field = read_radar(path)
    # pysteps: NaN = nodata, 0 = undetect; same as ours.
    assert np.array_equal(np.isnan(precip), np.isnan(field.values))
    assert np.allclose(precip, field.values, rtol=1e-6, atol=1e-6, equal_nan=True)
    xe, ye = Grid.of(field).edges()
    assert (meta["x1"], meta["x2"]) == pytest.approx((xe[0], xe[-1]), abs=5.0)
    assert (meta["y1"], meta["y2"]) == pytest.approx((ye[-1], ye[0]), abs=5.0)
    assert meta["xpixelsize"] == Grid.of(field).dx
    # pysteps blanks quality 0 (and, for legacy files, the nodata code) to NaN; we keep 0.
    ours = field.quality.values
    known = np.isfinite(quality)
    assert np.allclose(quality[known], ours[known])
    assert np.all((ours[~known] == 0) | np.isnan(ours[~known]))


@pytest.mark.realdata
def test_spike_and_quality_options_on_legacy_opera(real_data):
    path = real_data / LEGACY / "T_PAAH21_C_EUOC_20180824180000.hdf"
    raw = read_radar(path)
    spikes = read_radar(path, qc=QualityControl(spike_rate=100.0, spike_factor=5.0))
    rejected = spikes.status.values == REJECTED
    assert 1 <= rejected.sum() <= 10  # a handful of single-pixel spikes, not rain areas
    assert raw.values[rejected].max() == pytest.approx(1205.22, abs=0.01)
    assert np.nanmax(spikes.values) < 400
    assert np.isnan(spikes.values[rejected]).all()
    strict = read_radar(path, qc=QualityControl(min_quality=0.5))
    # Cells below the threshold, and cells without a quality value, are rejected.
    low = np.isfinite(raw.values) & ~(raw.quality.values >= 0.5)
    assert 0 < low.sum() < np.isfinite(raw.values).sum()
    assert np.array_equal(strict.status.values == REJECTED, low)
    capped = read_radar(path, qc=QualityControl(max_rate=200.0))
    assert np.nanmax(capped.values) <= 200.0
