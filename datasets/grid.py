"""Regular grids in a projected or geographic CRS, described by their cell centres.

Every reader puts its field on a :class:`Grid`: a pyproj CRS and the 1-D cell-centre coordinates
``x`` (columns, west → east) and ``y`` (rows, in file order, usually north → south). Products
describe their grids by an outer corner and a cell size; :meth:`Grid.from_corner` turns that into
centres once, so the corner-vs-centre confusion (pysteps#127) is settled in one place.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
from pyproj import CRS

from qpebench.errors import FileFormatError

#: Name of the scalar coordinate that carries the CF grid mapping (the rioxarray convention).
GRID_MAPPING = "spatial_ref"


@dataclass(frozen=True, eq=False)
class Grid:
    """A regular grid: CRS and cell-centre coordinates.

    Attributes:
        crs: The grid's coordinate reference system.
        x: Cell-centre x (or longitude) of each column, strictly monotonic.
        y: Cell-centre y (or latitude) of each row, strictly monotonic.
    """

    crs: CRS
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]

    @classmethod
    def from_corner(
        cls,
        crs: CRS | str,
        *,
        x_left: float,
        y_top: float,
        dx: float,
        dy: float,
        nx: int,
        ny: int,
        north_up: bool = True,
    ) -> Grid:
        """Build a grid from its upper-left outer corner and cell size.

        Args:
            crs: CRS (or any string pyproj accepts).
            x_left: x of the left edge of the first column.
            y_top: y of the top edge of the first row when ``north_up``; of the bottom edge of the
                first row otherwise.
            dx: Cell width (positive).
            dy: Cell height (positive).
            nx: Number of columns.
            ny: Number of rows.
            north_up: Rows run north → south (``y`` decreasing), as in most image files.
        """
        x = x_left + (np.arange(nx) + 0.5) * dx
        steps = (np.arange(ny) + 0.5) * dy
        y = y_top - steps if north_up else y_top + steps
        return cls(CRS.from_user_input(crs), x.astype(np.float64), y.astype(np.float64))

    @classmethod
    def of(cls, field: xr.DataArray) -> Grid:
        """The grid of a field made by :func:`qpebench.datasets.radar.make_field` (or alike).

        Raises:
            FileFormatError: The field has no ``x``/``y`` coordinates or no grid mapping.
        """
        if "x" not in field.coords or "y" not in field.coords or GRID_MAPPING not in field.coords:
            raise FileFormatError(
                f"{field.attrs.get('file', field.name)}: field has no x/y coordinates or "
                f"'{GRID_MAPPING}' grid mapping; it was not made by a qpebench reader"
            )
        crs = CRS.from_wkt(field.coords[GRID_MAPPING].attrs["crs_wkt"])
        return cls(crs, np.asarray(field["x"].values, np.float64), np.asarray(field["y"].values))

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return (self.y.size, self.x.size)

    @property
    def dx(self) -> float:
        """Cell width (positive), in CRS units."""
        return abs(float(self.x[1] - self.x[0])) if self.x.size > 1 else float("nan")

    @property
    def dy(self) -> float:
        """Cell height (positive), in CRS units."""
        return abs(float(self.y[1] - self.y[0])) if self.y.size > 1 else float("nan")

    @property
    def proj4(self) -> str:
        """The CRS as a PROJ string (for display; the WKT in the grid mapping is authoritative)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "lose projection information"
            return str(self.crs.to_proj4())

    @property
    def projection(self) -> str:
        """The PROJ projection name (``laea``, ``stere``, ``longlat`` …)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return str(self.crs.to_dict().get("proj", ""))

    @property
    def units(self) -> str:
        """Unit of the coordinates: ``"degree"`` for a geographic CRS, else the axis unit."""
        return "degree" if self.crs.is_geographic else self.crs.axis_info[0].unit_name

    def edges(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Cell edges ``(x_edges, y_edges)``, each one longer than the centres, in file order."""
        return _edges(self.x), _edges(self.y)

    def coords(self) -> dict[str, Any]:
        """The xarray coordinates: ``y``, ``x`` with CF attributes and the grid-mapping scalar."""
        if self.crs.is_geographic:
            x_attrs = {"standard_name": "longitude", "units": "degrees_east"}
            y_attrs = {"standard_name": "latitude", "units": "degrees_north"}
        else:
            unit = "m" if self.units in ("metre", "meter") else self.units
            x_attrs = {"standard_name": "projection_x_coordinate", "units": unit}
            y_attrs = {"standard_name": "projection_y_coordinate", "units": unit}
        note = {"comment": "cell centre"}
        with warnings.catch_warnings():
            # CF has no slot for some parameters (e.g. the Swiss oblique Mercator's "angle from
            # rectified to skew grid"); crs_wkt below keeps the full definition.
            warnings.simplefilter("ignore", UserWarning)
            mapping = self.crs.to_cf()
        mapping["crs_wkt"] = self.crs.to_wkt()
        mapping["proj4"] = self.proj4
        return {
            "y": ("y", self.y, {**y_attrs, **note}),
            "x": ("x", self.x, {**x_attrs, **note}),
            GRID_MAPPING: ((), 0, mapping),
        }

    def offset_from(self, other: Grid) -> str | None:
        """How this grid differs from ``other``; ``None`` when shape and CRS are equal.

        Returns:
            ``None`` if the shapes or CRSs differ, else the largest centre offset as a fraction
            of a cell, e.g. ``"0.00127 × 0.00052 cells"``.
        """
        if self.shape != other.shape or not self.crs.equals(other.crs):
            return None
        off_x = float(np.max(np.abs(self.x - other.x))) / self.dx if self.x.size > 1 else 0.0
        off_y = float(np.max(np.abs(self.y - other.y))) / self.dy if self.y.size > 1 else 0.0
        return f"{off_x:.3g} × {off_y:.3g} cells"

    def same_as(self, other: Grid, tolerance: float = 0.01) -> bool:
        """Whether both grids have the same shape, CRS and cell centres (to a fraction of a cell).

        The default tolerance (1 % of a cell) absorbs the metre-level differences between
        products that describe the same grid with rounded corner coordinates (OPERA ODYSSEY and
        NIMBUS differ by 2.5 m on 2 km cells).
        """
        if self.shape != other.shape or not self.crs.equals(other.crs):
            return False
        tol_x = tolerance * self.dx if self.x.size > 1 else 0.0
        tol_y = tolerance * self.dy if self.y.size > 1 else 0.0
        return bool(
            np.allclose(self.x, other.x, rtol=0, atol=tol_x)
            and np.allclose(self.y, other.y, rtol=0, atol=tol_y)
        )


def _edges(centres: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    if centres.size == 1:
        raise ValueError("a grid axis with one cell has no defined cell size")
    step = centres[1] - centres[0]
    return np.concatenate([centres - step / 2, centres[-1:] + step / 2])
