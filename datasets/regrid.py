"""Regridding of radar fields onto a target grid, with pyproj, precomputed once per grid pair.

Two methods:

``area_mean`` (default, for coarsening)
    Each source cell is split into ``k × k`` sub-cells; their centres are transformed to the
    target CRS and binned into target cells, each weighted by its true area in m² (exact for
    equal-area source projections; from pyproj's areal scale factor for conformal ones; exact on
    the authalic sphere for latitude/longitude grids). A target cell's value is the area-weighted
    mean of the valid source area it received, so ``Σ mean × valid area`` equals the source
    total: rain volume is conserved, to the sub-cell discretisation at cell boundaries, over the
    target cells that are kept. Cells where less than ``min_coverage`` of their area holds valid
    source data become no data (and their rain is dropped: use a small ``min_coverage`` where
    totals matter more than the reliability of edge cells).
``nearest`` (for refining or for categorical fields)
    Each target cell takes the source cell containing its centre.

The weights form a sparse matrix (target × source), so applying a :class:`Regridder` to another
time step of the same product is one sparse product. Only the source window that can reach the
target is transformed.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import xarray as xr
from pyproj import CRS, Proj, Transformer

from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import ECHO, NO_DATA, NO_ECHO
from qpebench.errors import ConfigError, ConversionError

Method = Literal["area_mean", "nearest"]
_EQUAL_AREA = {"laea", "aea", "cea", "moll", "eqearth", "sinu"}


def _true_area(
    grid: Grid, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """True area in m² of the cells at ``rows``/``cols``.

    Lat/lon cells: the exact area of the cell on the CRS's ellipsoid (the zone between two
    parallels, ``b² Δλ / 2 · [Q(φ)]``, ``Q(φ) = sin φ / (1 − e² sin² φ) + artanh(e sin φ) / e``).
    Projected cells: the map area in m², divided by pyproj's areal scale factor at the cell
    centre (1 for equal-area projections).
    """
    if grid.crs.is_geographic:
        half = np.deg2rad(grid.dy) / 2
        lat = np.deg2rad(grid.y[rows])
        zone = np.abs(_zone(grid.crs, lat + half) - _zone(grid.crs, lat - half))
        ellipsoid = grid.crs.ellipsoid
        b = float(ellipsoid.semi_minor_metre) if ellipsoid else 6356752.314245
        return zone * (b**2 * float(np.deg2rad(grid.dx)) / 2)
    metre = float(grid.crs.axis_info[0].unit_conversion_factor)
    nominal = grid.dx * grid.dy * metre**2
    if grid.projection in _EQUAL_AREA:
        return np.full(rows.shape, nominal)
    to_lonlat = Transformer.from_crs(grid.crs, grid.crs.geodetic_crs, always_xy=True)
    lon, lat = to_lonlat.transform(grid.x[cols], grid.y[rows])
    factors = Proj(grid.crs).get_factors(lon, lat)
    return nominal / np.asarray(factors.areal_scale, np.float64)


def _zone(crs: CRS, lat: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``Q(φ)`` of the ellipsoidal zone area (radians in; ``2 sin φ`` on a sphere)."""
    ellipsoid = crs.ellipsoid
    a = float(ellipsoid.semi_major_metre) if ellipsoid else 6378137.0
    b = float(ellipsoid.semi_minor_metre) if ellipsoid else 6356752.314245
    s = np.sin(lat)
    if a == b:
        return 2 * s
    e = np.sqrt(1 - (b / a) ** 2)
    return s / (1 - e**2 * s**2) + np.arctanh(e * s) / e  # type: ignore[no-any-return]


def _window(source: Grid, target: Grid) -> tuple[slice, slice]:
    """Rows and columns of the source that can fall inside the target (with a margin)."""
    xe, ye = target.edges()
    ring_x = np.concatenate([xe, np.full(ye.size, xe[-1]), xe[::-1], np.full(ye.size, xe[0])])
    ring_y = np.concatenate([np.full(xe.size, ye[0]), ye, np.full(xe.size, ye[-1]), ye[::-1]])
    to_src = Transformer.from_crs(target.crs, source.crs, always_xy=True)
    sx, sy = to_src.transform(ring_x, ring_y)
    ok = np.isfinite(sx) & np.isfinite(sy)
    if not ok.any():
        return slice(0, 0), slice(0, 0)
    margin_x, margin_y = 2 * source.dx, 2 * source.dy

    def span(centres: npt.NDArray[np.float64], lo: float, hi: float) -> slice:
        idx = np.flatnonzero((centres >= lo) & (centres <= hi))
        return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, 0)

    cols = span(source.x, sx[ok].min() - margin_x, sx[ok].max() + margin_x)
    rows = span(source.y, sy[ok].min() - margin_y, sy[ok].max() + margin_y)
    return rows, cols


def cell_index(
    grid: Grid, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """Flat index (``row · columns + column``) of the cell of ``grid`` containing each point.

    Works for any axis direction; −1 for points outside the grid (or not finite).
    """
    col = np.floor((x - (grid.x[0] - (grid.x[1] - grid.x[0]) / 2)) / (grid.x[1] - grid.x[0]))
    row = np.floor((y - (grid.y[0] - (grid.y[1] - grid.y[0]) / 2)) / (grid.y[1] - grid.y[0]))
    ok = np.isfinite(col) & np.isfinite(row)
    ok &= (col >= 0) & (col < grid.x.size) & (row >= 0) & (row < grid.y.size)
    out = np.full(x.shape, -1, dtype=np.int64)
    out[ok] = row[ok].astype(np.int64) * grid.x.size + col[ok].astype(np.int64)
    return out


class Regridder:
    """Regrid fields from ``source`` to ``target`` (weights computed once).

    Args:
        source: Grid of the fields to regrid.
        target: Grid to regrid onto.
        method: ``area_mean`` or ``nearest`` (see the module docstring).
        supersample: Sub-cells per source cell side for ``area_mean``; by default enough for
            about three sub-cells per target cell side (1 when the source is ≥ 3× finer), at
            most 8.
        min_coverage: Fraction of a target cell's area that must hold valid source data.

    Raises:
        ConfigError: Unknown method, bad ``supersample`` or ``min_coverage``.
    """

    def __init__(
        self,
        source: Grid,
        target: Grid,
        *,
        method: Method = "area_mean",
        supersample: int | None = None,
        min_coverage: float = 0.5,
    ) -> None:
        if method not in ("area_mean", "nearest"):
            raise ConfigError(f"unknown regridding method {method!r}; choices: area_mean, nearest")
        if not 0.0 < min_coverage <= 1.0:
            raise ConfigError(f"min_coverage must be within (0, 1], got {min_coverage}")
        if supersample is not None and not 1 <= supersample <= 64:
            raise ConfigError(f"supersample must be within 1–64, got {supersample}")
        self.source, self.target = source, target
        self.method: Method = method
        self.min_coverage = min_coverage
        if method == "nearest":
            self._weights = self._nearest()
            self._target_area = np.asarray(self._weights.sum(axis=1)).ravel()
        else:
            self.supersample = supersample or self._auto_supersample()
            self._weights = self._area_weights(self.supersample)
            rows, cols = np.indices(target.shape).reshape(2, -1)
            self._target_area = _true_area(target, rows, cols)

    def _auto_supersample(self) -> int:
        """Sub-cells so that about three fall across a target cell."""
        r, c = self.source.shape[0] // 2, self.source.shape[1] // 2
        to_tgt = Transformer.from_crs(self.source.crs, self.target.crs, always_xy=True)
        xs = self.source.x[[c, min(c + 1, self.source.x.size - 1)]]
        ys = self.source.y[[r, r]]
        tx, ty = to_tgt.transform(xs, ys)
        src_size = float(np.hypot(tx[1] - tx[0], ty[1] - ty[0]))
        tgt_size = min(self.target.dx, self.target.dy)
        if not np.isfinite(src_size) or src_size == 0:
            return 2
        return int(np.clip(np.ceil(3 * src_size / tgt_size), 1, 8))

    def _area_weights(self, k: int) -> sp.csr_matrix:
        src, tgt = self.source, self.target
        rows_w, cols_w = _window(src, tgt)
        n_src = src.x.size * src.y.size
        n_tgt = tgt.x.size * tgt.y.size
        rows = np.arange(src.y.size)[rows_w]
        cols = np.arange(src.x.size)[cols_w]
        if rows.size == 0 or cols.size == 0:
            return sp.csr_matrix((n_tgt, n_src))
        sdx = src.x[1] - src.x[0]
        sdy = src.y[1] - src.y[0]
        offsets = (np.arange(k) + 0.5) / k - 0.5
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        area = _true_area(src, rr.ravel(), cc.ravel()).reshape(rr.shape) / (k * k)
        to_tgt = Transformer.from_crs(src.crs, tgt.crs, always_xy=True)
        flat_src = (rr * src.x.size + cc).ravel()
        t_idx, s_idx, w = [], [], []
        for oy in offsets:
            for ox in offsets:
                px = (src.x[cc] + ox * sdx).ravel()
                py = (src.y[rr] + oy * sdy).ravel()
                tx, ty = to_tgt.transform(px, py)
                t = cell_index(tgt, np.asarray(tx), np.asarray(ty))
                inside = t >= 0
                t_idx.append(t[inside])
                s_idx.append(flat_src[inside])
                w.append(area.ravel()[inside])
        matrix = sp.coo_matrix(
            (np.concatenate(w), (np.concatenate(t_idx), np.concatenate(s_idx))),
            shape=(n_tgt, n_src),
        )
        return matrix.tocsr()  # duplicate (target, source) pairs are summed

    def _nearest(self) -> sp.csr_matrix:
        src, tgt = self.source, self.target
        rows, cols = np.indices(tgt.shape).reshape(2, -1)
        to_src = Transformer.from_crs(tgt.crs, src.crs, always_xy=True)
        sx, sy = to_src.transform(tgt.x[cols], tgt.y[rows])
        s = cell_index(src, np.asarray(sx), np.asarray(sy))
        inside = s >= 0
        n_tgt, n_src = tgt.x.size * tgt.y.size, src.x.size * src.y.size
        t = np.arange(n_tgt)[inside]
        return sp.csr_matrix((np.ones(t.size), (t, s[inside])), shape=(n_tgt, n_src))

    def apply(
        self, values: npt.NDArray[np.floating[Any]]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float64]]:
        """Regrid plain arrays ``(..., rows, cols)`` on the source grid (NaN = no data).

        Returns:
            The regridded values ``(..., target rows, target cols)`` (NaN below
            ``min_coverage``), the valid fraction and the valid area (m²) of each target cell.

        Raises:
            ConfigError: The trailing shape is not the source grid's.
        """
        if values.shape[-2:] != self.source.shape:
            raise ConfigError(
                f"values of shape {values.shape} are not on the source grid {self.source.shape}"
            )
        lead = values.shape[:-2]
        flat = np.asarray(values, np.float64).reshape(-1, self.source.y.size * self.source.x.size).T
        valid = np.isfinite(flat)
        valid_area = np.asarray(self._weights @ valid.astype(np.float64))
        total = np.asarray(self._weights @ np.where(valid, flat, 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / valid_area
            fraction = np.where(
                self._target_area[:, None] > 0, valid_area / self._target_area[:, None], 0.0
            )
        fraction = np.clip(fraction, 0.0, 1.0)
        ok = (valid_area > 0) & (fraction >= self.min_coverage - 1e-9)
        shape = (*lead, *self.target.shape)
        out = np.where(ok, mean, np.nan).T.reshape(shape).astype(np.float32)
        return (
            out,
            fraction.T.reshape(shape).astype(np.float32),
            np.where(ok, valid_area, 0.0).T.reshape(shape),
        )

    def __call__(self, field: xr.DataArray) -> xr.DataArray:
        """Regrid one field (a rain rate or amount from a qpebench reader) onto the target grid.

        The result keeps the field's attributes (``regrid`` records the method), gets the
        coordinates ``valid_fraction`` (share of each target cell's area holding valid data, at
        most 1) and ``valid_area`` (m² of valid source data averaged into the cell, so that
        ``Σ value × valid_area`` is the rain volume kept), and a recomputed ``status`` (no data
        below ``min_coverage``; no echo where the mean is 0).

        Raises:
            ConversionError: ``area_mean`` of reflectivity (average rain rates, not dBZ).
            ConfigError: The field is not on the source grid.
        """
        if self.method == "area_mean" and field.attrs.get("kind") == "reflectivity":
            raise ConversionError(
                f"{field.attrs.get('file')}: an area mean of dBZ is not meaningful; convert to "
                "rain rate first (read_radar(..., zr=...))"
            )
        grid = Grid.of(field)
        if not grid.same_as(self.source):
            offset = grid.offset_from(self.source)
            how = (
                f"its cell centres are offset by up to {offset}"
                if offset
                else f"it has shape {grid.shape} and CRS {grid.proj4}"
            )
            raise ConfigError(
                f"{field.attrs.get('file')}: field is not on this regridder's source grid "
                f"{self.source.shape} ({self.source.proj4}): {how}"
            )
        out, fraction, valid_area = self.apply(np.asarray(field.values))
        ok = np.isfinite(out).ravel()
        fraction, valid_area = fraction.ravel(), valid_area.ravel()
        status = np.where(ok, ECHO, NO_DATA).astype(np.uint8).reshape(self.target.shape)
        status[ok.reshape(self.target.shape) & (out == 0)] = NO_ECHO
        coords = dict(self.target.coords())
        if "time" in field.coords:
            coords["time"] = field.coords["time"]
        coords["status"] = (("y", "x"), status, field.coords["status"].attrs)
        coords["valid_fraction"] = (
            ("y", "x"),
            fraction.reshape(self.target.shape).astype(np.float32),
            {"long_name": "fraction of the cell area with valid source data", "units": "1"},
        )
        coords["valid_area"] = (
            ("y", "x"),
            np.where(ok, valid_area, 0.0).reshape(self.target.shape),
            {
                "long_name": "true area of the valid source data averaged into the cell",
                "units": "m2",
                "comment": "sum(value * valid_area) over the grid is the source volume",
            },
        )
        attrs = dict(field.attrs)
        attrs["regrid"] = (
            f"{self.method} from {self.source.shape} cells of {self.source.dx:g}×"
            f"{self.source.dy:g} ({self.source.proj4}); min_coverage {self.min_coverage:g}"
        )
        return xr.DataArray(out, dims=("y", "x"), coords=coords, attrs=attrs, name=field.name)


def regrid(field: xr.DataArray, target: Grid, **options: object) -> xr.DataArray:
    """Regrid one field onto ``target`` (builds a :class:`Regridder`; reuse one for many fields).

    Args:
        field: A field from a qpebench reader.
        target: The target grid.
        **options: :class:`Regridder` options (``method``, ``supersample``, ``min_coverage``).
    """
    return Regridder(Grid.of(field), target, **options)(field)  # type: ignore[arg-type]


def laea_grid(lat0: float, lon0: float, cell_m: float, shape: tuple[int, int]) -> Grid:
    """A north-up Lambert azimuthal equal-area grid centred on ``(lat0, lon0)``.

    Args:
        lat0: Centre latitude (degrees).
        lon0: Centre longitude (degrees).
        cell_m: Cell size in metres.
        shape: ``(rows, cols)``.
    """
    crs = CRS.from_proj4(f"+proj=laea +lat_0={lat0:g} +lon_0={lon0:g} +ellps=WGS84 +units=m")
    rows, cols = shape
    return Grid.from_corner(
        crs,
        x_left=-cols * cell_m / 2,
        y_top=rows * cell_m / 2,
        dx=cell_m,
        dy=cell_m,
        nx=cols,
        ny=rows,
    )
