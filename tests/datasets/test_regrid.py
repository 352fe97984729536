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
    # source rain lands in it. Σ mean × valid area on the target equals the source total.
    src = laea_grid(52, 8, 2000.0, (100, 120))
    tgt = laea_grid(50, 10, 5000.0, (140, 140))
    values = rain(src.shape, seed=3)
    regridder = Regridder(src, tgt, min_coverage=1e-6, supersample=4)
    out = regridder(field_on(src, values))
    source_total = np.nansum(values) * 2000.0**2
    target_total = np.nansum(out.values.astype(np.float64) * out.valid_area.values)
    assert target_total == pytest.approx(source_total, rel=1e-6)
    # valid_fraction is capped at 1 per cell, so it only approximates the volume.
    capped = np.nansum(out.values.astype(np.float64) * out.valid_fraction.values) * 5000.0**2
    assert capped == pytest.approx(source_total, rel=1e-2)
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
    with pytest.raises(ConfigError, match="not on this regridder's source grid"):
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
    target_volume = np.nansum(de.values.astype(np.float64) * de.valid_area.values)
    assert target_volume == pytest.approx(source_volume, rel=2e-3)


def latlon_grid(lat_top: float, lon_left: float, step: float, shape: tuple[int, int]) -> Grid:
    return Grid.from_corner(
        CRS.from_epsg(4326),
        x_left=lon_left,
        y_top=lat_top,
        dx=step,
        dy=step,
        nx=shape[1],
        ny=shape[0],
    )


def geodesic_area(grid: Grid, row: int, col: int) -> float:
    """Area (m²) of one cell as the WGS 84 geodesic polygon of its densified outline."""
    xe, ye = grid.edges()
    t = np.linspace(0.0, 1.0, 20)
    xs = np.concatenate(
        [
            xe[col] + (xe[col + 1] - xe[col]) * t,
            np.full(20, xe[col + 1]),
            xe[col + 1] + (xe[col] - xe[col + 1]) * t,
            np.full(20, xe[col]),
        ]
    )
    ys = np.concatenate(
        [
            np.full(20, ye[row]),
            ye[row] + (ye[row + 1] - ye[row]) * t,
            np.full(20, ye[row + 1]),
            ye[row + 1] + (ye[row] - ye[row + 1]) * t,
        ]
    )
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    area, _ = Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)
    return abs(area)


def test_latlon_cell_areas_are_true_areas_in_square_metres():
    grid = latlon_grid(55.0, -130.0, 0.01, (3500, 10))
    rows = np.array([0, 1750, 3499])
    ours = _true_area(grid, rows, np.zeros(3, dtype=np.int64))
    for area, row in zip(ours, rows, strict=True):
        assert area == pytest.approx(geodesic_area(grid, int(row), 0), rel=1e-5)


def test_latlon_source_onto_projected_target_conserves_volume():
    # An MRMS-like 0.01° grid onto a 4 km LAEA grid inside it (and the reverse direction).
    src = latlon_grid(40.0, -100.0, 0.01, (300, 400))
    tgt = laea_grid(38.5, -98.0, 4000.0, (40, 40))
    values = rain(src.shape, seed=11, nan_fraction=0.0)
    out = Regridder(src, tgt, min_coverage=0.9, supersample=4)(field_on(src, values))
    assert np.isfinite(out.values).all()  # fully inside the source: every cell covered
    # Each 4 km cell receives its own area, to the sub-cell discretisation of its boundary.
    assert np.allclose(out.valid_fraction.values, 1.0, atol=0.08)
    constant = Regridder(src, tgt)(field_on(src, np.full(src.shape, 3.0)))
    assert np.allclose(constant.values, 3.0)
    # Volume: every source cell that lands in the target, by its true area.
    rr, cc = np.indices(src.shape)
    area = _true_area(src, rr.ravel(), cc.ravel()).reshape(src.shape)
    gx, gy = Transformer.from_crs(src.crs, tgt.crs, always_xy=True).transform(src.x[cc], src.y[rr])
    xe, ye = tgt.edges()
    inside = (gx > xe[0]) & (gx < xe[-1]) & (gy < ye[0]) & (gy > ye[-1])
    source_volume = float(np.sum(values * area * inside))
    target_volume = float(np.nansum(out.values.astype(np.float64) * out.valid_area.values))
    assert target_volume == pytest.approx(source_volume, rel=2e-3)
    back = Regridder(tgt, latlon_grid(38.3, -98.1, 0.1, (3, 3)), min_coverage=0.5)
    assert np.allclose(back(constant).values, 3.0)
    assert 0.0 < float(back(constant).valid_fraction.min()) <= 1.0


def test_offsets_below_a_hundredth_of_a_cell_are_the_same_grid():
    src = laea_grid(50, 10, 2000.0, (10, 10))
    shifted = Grid(src.crs, src.x + 2.5, src.y - 1.0)  # OPERA NIMBUS vs ODYSSEY: 2.5 m
    assert shifted.same_as(src)
    far = Grid(src.crs, src.x + 100.0, src.y)
    assert not far.same_as(src)
    with pytest.raises(ConfigError, match=r"offset by up to 0\.05 × 0 cells"):
        Regridder(src, laea_grid(50, 10, 4000.0, (5, 5)))(field_on(far, np.ones(far.shape)))


@pytest.mark.realdata
def test_a_regridder_on_the_odyssey_grid_takes_nimbus_fields(real_data):
    # The two generations describe the same grid with corners 2.5 m apart (0.1 % of a cell).
    legacy = read_radar(real_data / "opera/legacy_20180824/T_PAAH21_C_EUOC_20180824180000.hdf")
    nimbus = read_radar(real_data / "opera/nimbus_20241126/T_PAAH22_C_EUOC_20241126010000.hdf")
    offset = Grid.of(nimbus).offset_from(Grid.of(legacy))
    assert offset is not None and offset != "0 × 0 cells"
    regridder = Regridder(Grid.of(legacy), laea_grid(51.0, 10.0, 4000.0, (50, 50)))
    assert np.isfinite(regridder(nimbus).values).any()
