"""The regridder: exact block means, conserved totals across projections, true cell areas."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pyproj import CRS, Geod, Transformer

from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import NO_DATA, NO_ECHO, make_field, read_radar
from qpebench.datasets.regrid import Regridder, _true_area, laea_grid, regrid
from qpebench.errors import ConfigError, ConversionError
from qpebench.registry import load_builtins

load_builtins()


def field_on(grid: Grid, values: np.ndarray, kind: str = "rate", units: str = "mm/h"):
    return make_field(
        values,
        grid=grid,
        source="test",
        network="test",
        product="test",
        quantity="RATE",
        units=units,
        kind=kind,
        valid_time=datetime(2024, 1, 1, tzinfo=UTC),
        path=Path("mem"),
    )


def rain(shape, seed=0, nan_fraction=0.1):
    rng = np.random.default_rng(seed)
    values = rng.gamma(0.5, 2.0, size=shape)
    values[rng.random(shape) < 0.3] = 0.0
    values[rng.random(shape) < nan_fraction] = np.nan
    return values


def test_same_crs_factor_two_is_the_block_mean():
    src = laea_grid(50, 10, 1000.0, (40, 60))
    tgt = laea_grid(50, 10, 2000.0, (20, 30))
    values = rain(src.shape)
    out = Regridder(src, tgt, min_coverage=0.25)(field_on(src, values))
    blocks = values.reshape(20, 2, 30, 2)
    n_valid = np.isfinite(blocks).sum(axis=(1, 3))
    with np.errstate(invalid="ignore"):
        expected = np.nansum(blocks, axis=(1, 3)) / n_valid
    expected[n_valid == 0] = np.nan
    assert np.allclose(out.values, expected, rtol=1e-6, equal_nan=True)
    assert np.allclose(out.valid_fraction.values, n_valid / 4)
    assert np.array_equal(out.status.values == NO_DATA, n_valid == 0)
    assert np.array_equal(out.status.values == NO_ECHO, expected == 0)


def test_min_coverage_blanks_sparse_cells():
    src = laea_grid(50, 10, 1000.0, (4, 4))
    tgt = laea_grid(50, 10, 2000.0, (2, 2))
    values = np.ones(src.shape)
    values[:2, :2] = [[np.nan, np.nan], [np.nan, 5.0]]  # one valid cell of four
    out = Regridder(src, tgt, min_coverage=0.5)(field_on(src, values))
    assert np.isnan(out.values[0, 0]) and out.status.values[0, 0] == NO_DATA
    assert out.valid_fraction.values[0, 0] == pytest.approx(0.25)
    assert np.allclose(out.values[0, 1:], 1.0) and np.allclose(out.values[1], 1.0)


def test_total_is_conserved_across_projections():
    # Source: 2 km LAEA around (52N, 8E); target: 5 km LAEA around (50N, 10E), larger, so all
    # source rain lands in it. Σ mean × valid area on the target equals the source total, to the
    # sub-cell discretisation of cell boundaries (valid_fraction is capped at 1 per cell).
    src = laea_grid(52, 8, 2000.0, (100, 120))
    tgt = laea_grid(50, 10, 5000.0, (140, 140))
    values = rain(src.shape, seed=3)
    regridder = Regridder(src, tgt, min_coverage=1e-6, supersample=4)
    out = regridder(field_on(src, values))
    source_total = np.nansum(values) * 2000.0**2
    valid_area = out.valid_fraction.values * 5000.0**2
    target_total = np.nansum(out.values.astype(np.float64) * valid_area)
    assert target_total == pytest.approx(source_total, rel=1e-3)
    weights = regridder._weights  # the exact statement: every source cell's area is assigned once
    assert np.allclose(np.asarray(weights.sum(axis=0)).ravel(), 2000.0**2)


def test_conformal_source_uses_true_cell_areas():
    crs = CRS.from_proj4("+proj=stere +lat_0=90 +lon_0=10 +lat_ts=60 +ellps=WGS84 +units=m")
    grid = Grid.from_corner(crs, x_left=-300e3, y_top=-3900e3, dx=1000.0, dy=1000.0, nx=800, ny=900)
    rows = np.array([0, 450, 899])
    cols = np.array([0, 400, 799])
    ours = _true_area(grid, rows, cols)
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    geod = Geod(ellps="WGS84")
    for area, r, c in zip(ours, rows, cols, strict=True):
        x0, y0 = grid.x[c] - 500, grid.y[r] + 500
        xs = [x0, x0 + 1000, x0 + 1000, x0]
        ys = [y0, y0, y0 - 1000, y0 - 1000]
        lon, lat = to_ll.transform(xs, ys)
        true, _ = geod.polygon_area_perimeter(lon, lat)
        assert area == pytest.approx(abs(true), rel=1e-4)
        assert area != pytest.approx(1e6, rel=1e-3)  # not the nominal map area at these latitudes


def test_constant_field_stays_constant_and_nearest_is_identity():
    src = laea_grid(45, -5, 3000.0, (30, 30))
    tgt = laea_grid(45.1, -4.9, 7000.0, (8, 8))
    out = regrid(field_on(src, np.full(src.shape, 2.5)), tgt)
    assert np.allclose(out.values, 2.5)
    values = rain(src.shape, seed=5)
    same = Regridder(src, src, method="nearest")(field_on(src, values))
    assert np.array_equal(np.isnan(same.values), np.isnan(values))
    assert np.allclose(same.values, values, equal_nan=True)


def test_refusals():
    src = laea_grid(50, 10, 1000.0, (4, 4))
    tgt = laea_grid(50, 10, 2000.0, (2, 2))
    dbz = field_on(src, np.full(src.shape, 20.0), kind="reflectivity", units="dBZ")
    with pytest.raises(ConversionError, match="area mean of dBZ"):
        Regridder(src, tgt)(dbz)
    with pytest.raises(ConfigError, match="not this regridder's source grid"):
        Regridder(tgt, src)(field_on(src, np.ones(src.shape)))
    with pytest.raises(ConfigError, match="unknown regridding method 'bilinear'"):
        Regridder(src, tgt, method="bilinear")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="min_coverage"):
        Regridder(src, tgt, min_coverage=0.0)


@pytest.mark.realdata
def test_opera_to_a_4km_german_grid_conserves_rain(real_data):
    field = read_radar(real_data / "opera/nimbus_20241126/T_PAAH22_C_EUOC_20241126013000.hdf")
    src = Grid.of(field)
    # Exact 2× coarsening in the OPERA grid itself = block means of the 2 km field.
    tgt = Grid.from_corner(src.crs, x_left=0, y_top=0, dx=4000, dy=4000, nx=950, ny=1100)
    out = Regridder(src, tgt, min_coverage=1.0)(field)
    blocks = field.values.astype(np.float64).reshape(1100, 2, 950, 2).mean(axis=(1, 3))
    assert np.allclose(out.values, blocks, rtol=1e-5, atol=1e-6, equal_nan=True)
    germany = laea_grid(51.0, 10.0, 4000.0, (220, 170))
    de = Regridder(src, germany, min_coverage=1e-6)(field)
    assert np.isfinite(de.values).mean() > 0.9
    # Rain volume on the German grid equals the source volume inside its footprint.
    xx, yy = np.meshgrid(src.x, src.y)
    gx, gy = Transformer.from_crs(src.crs, germany.crs, always_xy=True).transform(xx, yy)
    xe, ye = germany.edges()
    inside = (gx > xe[0]) & (gx < xe[-1]) & (gy < ye[0]) & (gy > ye[-1])
    source_volume = np.nansum(np.where(inside, field.values, 0.0)) * 2000.0**2
    target_volume = np.nansum(de.values.astype(np.float64) * de.valid_fraction.values) * 4000.0**2
    assert target_volume == pytest.approx(source_volume, rel=2e-3)
