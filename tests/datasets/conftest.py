"""Fixtures for the reader tests: a writer of small ODIM HDF5 files in the real layout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

# A 4 × 5 grid of 1 km cells in the OPERA projection, upper-left corner at (0, 0).
OPERA_PROJ = (
    "+proj=laea +lat_0=55.0 +lon_0=10.0 +x_0=1950000.0 +y_0=-2100000.0 +units=m +ellps=WGS84"
)


def _corners(nx: int, ny: int, cell: float) -> dict[str, float]:
    from pyproj import Transformer

    to_ll = Transformer.from_crs(OPERA_PROJ, "EPSG:4326", always_xy=True)
    out = {}
    for name, (x, y) in {
        "UL": (0.0, 0.0),
        "UR": (nx * cell, 0.0),
        "LL": (0.0, -ny * cell),
        "LR": (nx * cell, -ny * cell),
    }.items():
        lon, lat = to_ll.transform(x, y)
        out[f"{name}_lon"], out[f"{name}_lat"] = lon, lat
    return out


def write_odim_file(
    path: Path,
    raw: np.ndarray,
    *,
    quantity: str = "RATE",
    what: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    obj: str = "COMP",
    cell: float = 1000.0,
) -> Path:
    """Write an ODIM_H5 2.4 composite with ``raw`` (uint8/uint16) as ``/dataset1/data1/data``.

    ``what`` overrides the data-level ``what`` attributes; ``drop`` removes some of them.
    """
    ny, nx = raw.shape
    data_what = {
        "quantity": quantity,
        "gain": 0.5,
        "offset": -32.0,
        "nodata": 255.0,
        "undetect": 0.0,
    }
    data_what.update(what or {})
    for key in drop:
        data_what.pop(key)
    with h5py.File(path, "w") as h5:
        h5.attrs["Conventions"] = np.bytes_("ODIM_H5/V2_4")
        root_what = h5.create_group("what")
        for k, v in {
            "object": obj,
            "date": "20240101",
            "time": "120000",
            "version": "H5rad 2.4",
            "source": "ORG:247",
        }.items():
            root_what.attrs[k] = np.bytes_(v)
        where = h5.create_group("where")
        where.attrs["projdef"] = np.bytes_(OPERA_PROJ)
        for k, v in {"xsize": nx, "ysize": ny}.items():
            where.attrs[k] = np.int64(v)
        where.attrs["xscale"] = where.attrs["yscale"] = float(cell)
        for k, v in _corners(nx, ny, cell).items():
            where.attrs[k] = v
        ds_what = h5.create_group("dataset1/what")
        for k, v in {
            "startdate": "20240101",
            "starttime": "115500",
            "enddate": "20240101",
            "endtime": "120000",
            "product": "PPI",
        }.items():
            ds_what.attrs[k] = np.bytes_(v)
        dw = h5.create_group("dataset1/data1/what")
        for k, v in data_what.items():
            dw.attrs[k] = np.bytes_(v) if isinstance(v, str) else v
        h5["dataset1/data1/data"] = raw
    return path


@pytest.fixture
def write_odim() -> Callable[..., Path]:
    return write_odim_file
