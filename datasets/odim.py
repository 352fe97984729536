"""ODIM HDF5 Cartesian products: OPERA composites (legacy ODYSSEY and NIMBUS) and national ones.

The OPERA Data Information Model (EUMETNET OPERA, ODIM_H5 v2.0–2.4) stores each quantity in
``/datasetN/dataM/data`` with its ``gain``, ``offset``, ``nodata`` and ``undetect`` in a ``what``
group that may sit at the data level (NIMBUS, ODIM ≥ 2.1 habit) or at the dataset level (legacy
ODYSSEY); attributes of a lower level override those above, so the three levels are merged in that
order (pysteps#134/#439 broke on exactly this). The grid comes from ``/where``: ``projdef``,
``xsize``/``ysize``, ``xscale``/``yscale`` and the corner coordinates, where ``UL_lon``/``UL_lat``
is the outer corner of the upper-left pixel. The reader checks the lower-right corner too, so a
grid that does not match its own corner attributes is refused instead of silently misplaced.

Quantities read (first present wins): ``RATE`` (mm/h), ``ACRR`` (mm over
``startdate/starttime``–``enddate/endtime``), ``DBZH``/``TH`` (dBZ). A quality field is attached
when present: ``QIND`` as another dataset (legacy OPERA) or ``qualityN`` under the data group
(NIMBUS ``qi_total``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import xarray as xr
from pyproj import CRS, Transformer

from qpebench import limits
from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import (
    MAX_RADAR_CELLS,
    Kind,
    Probe,
    RadarReader,
    dataset_values,
    decoded_attrs,
    make_field,
    open_hdf5,
    register_reader,
    utc,
)
from qpebench.errors import FileFormatError

_QUANTITIES: dict[str, tuple[Kind, str]] = {
    "RATE": ("rate", "mm/h"),
    "ACRR": ("accumulation", "mm"),
    "DBZH": ("reflectivity", "dBZ"),
    "TH": ("reflectivity", "dBZ"),
}
_QUALITY = ("QIND",)
_CARTESIAN = ("COMP", "IMAGE", "CVOL")
_OPERA_SOURCE = "ORG:247"


def _is_odim(probe: Probe) -> bool:
    conventions = str(probe.hdf5_attrs.get("Conventions", ""))
    return conventions.startswith("ODIM_H5") or {"what", "where", "dataset1"} <= probe.hdf5_keys


def _merged_what(h5: h5py.File, dataset: str, data: str) -> dict[str, Any]:
    what: dict[str, Any] = {}
    for path in ("what", f"{dataset}/what", f"{dataset}/{data}/what"):
        what.update(decoded_attrs(h5.get(path)))
    return what


def _require(what: dict[str, Any], key: str, path: Path, where: str) -> Any:
    if key not in what:
        raise FileFormatError(
            f"{path}: missing ODIM attribute {key!r} (looked in {where}/what, its dataset's what "
            "and /what)"
        )
    return what[key]


def _decode(
    h5: h5py.File, node: str, what: dict[str, Any], path: Path
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    raw = dataset_values(h5, f"{node}/data", path)
    gain = float(_require(what, "gain", path, node))
    offset = float(_require(what, "offset", path, node))
    nodata = what.get("nodata")
    undetect = what.get("undetect")
    if gain == 1.0 and offset == 0.0:
        values = raw.astype(np.float32)
    else:
        values = (raw * gain + offset).astype(np.float32)
    no_echo = np.zeros(raw.shape, dtype=bool) if undetect is None else raw == undetect
    if nodata is not None:
        values[raw == nodata] = np.nan
    values[no_echo] = np.nan
    return values, no_echo


def _time(what: dict[str, Any], prefix: str, path: Path) -> datetime | None:
    date, time = what.get(f"{prefix}date"), what.get(f"{prefix}time")
    if date is None or time is None:
        return None
    try:
        return utc(f"{date}{time}", "%Y%m%d%H%M%S")
    except ValueError:
        raise FileFormatError(
            f"{path}: malformed ODIM {prefix}date/{prefix}time {date!r} {time!r}"
        ) from None


def _grid(h5: h5py.File, path: Path) -> Grid:
    where = decoded_attrs(h5.get("where"))
    missing = [
        k
        for k in ("projdef", "xsize", "ysize", "xscale", "yscale", "UL_lon", "UL_lat")
        if k not in where
    ]
    if missing:
        raise FileFormatError(f"{path}: /where lacks {missing} (not a Cartesian ODIM product?)")
    crs = CRS.from_proj4(str(where["projdef"]))
    nx, ny = int(where["xsize"]), int(where["ysize"])
    limits.check_declared(path, "/where xsize × ysize", nx * ny, MAX_RADAR_CELLS, unit="cells")
    dx, dy = float(where["xscale"]), float(where["yscale"])
    to_xy = Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
    x_ul, y_ul = to_xy.transform(float(where["UL_lon"]), float(where["UL_lat"]))
    if "LR_lon" in where and "LR_lat" in where:
        x_lr, y_lr = to_xy.transform(float(where["LR_lon"]), float(where["LR_lat"]))
        # ODIM corners are the outer corners of the corner pixels; allow a quarter cell.
        if abs(x_lr - (x_ul + nx * dx)) > dx / 4 or abs(y_lr - (y_ul - ny * dy)) > dy / 4:
            raise FileFormatError(
                f"{path}: /where corners disagree with projdef and scale: the lower-right corner "
                f"maps to ({x_lr:.0f}, {y_lr:.0f}) m, the grid ends at "
                f"({x_ul + nx * dx:.0f}, {y_ul - ny * dy:.0f}) m"
            )
    return Grid.from_corner(crs, x_left=x_ul, y_top=y_ul, dx=dx, dy=dy, nx=nx, ny=ny)


def _numbered(names: Iterable[str], prefix: str) -> list[str]:
    """``prefix1``, ``prefix2`` … ``prefix10`` in numeric order (other names skipped)."""
    return sorted(
        (n for n in names if n.startswith(prefix) and n[len(prefix) :].isdigit()),
        key=lambda n: int(n[len(prefix) :]),
    )


def _find(h5: h5py.File, path: Path) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Quantity → (dataset, data) for every data group; and every quantity seen.

    Raises:
        FileFormatError: A rain quantity appears in several data groups (several times or
            products in one file): which one is meant cannot be guessed.
    """
    found: dict[str, tuple[str, str]] = {}
    seen = []
    for dataset in _numbered(h5, "dataset"):
        for data in _numbered(h5[dataset], "data"):
            quantity = str(_merged_what(h5, dataset, data).get("quantity", "")).upper()
            seen.append(quantity)
            if quantity in _QUANTITIES and quantity in found:
                first = "/".join(found[quantity])
                raise FileFormatError(
                    f"{path}: quantity {quantity} appears in /{first} and /{dataset}/{data}; "
                    "files with several fields of one quantity are not supported"
                )
            found.setdefault(quantity, (dataset, data))
    return found, seen


def _quality(
    h5: h5py.File, dataset: str, data: str, found: dict[str, tuple[str, str]], path: Path
) -> npt.NDArray[np.float32] | None:
    node = f"{dataset}/{data}/quality1"
    if node in h5 and "data" in h5[node]:
        what = decoded_attrs(h5.get(f"{node}/what"))
        what.setdefault("gain", 1.0)
        what.setdefault("offset", 0.0)
        values, _ = _decode(h5, node, what, path)
        return values
    for quantity in _QUALITY:
        if quantity in found:
            qd, qa = found[quantity]
            values, _ = _decode(h5, f"{qd}/{qa}", _merged_what(h5, qd, qa), path)
            return values
    return None


def read_odim(path: Path) -> xr.DataArray:
    """Read the main quantity of an ODIM HDF5 Cartesian product (see the module docstring).

    Raises:
        FileFormatError: Not a Cartesian product, no supported quantity, or required attributes
            missing; the message names the file and what is missing.
    """
    with open_hdf5(path) as h5:
        root_what = decoded_attrs(h5.get("what"))
        obj = str(root_what.get("object", ""))
        if not obj:
            raise FileFormatError(f"{path}: ODIM file without /what/object (product type)")
        if obj not in _CARTESIAN:
            raise FileFormatError(
                f"{path}: ODIM object {obj!r} is not a Cartesian product "
                f"(expected one of {list(_CARTESIAN)}); polar data are not rain-rate truth"
            )
        found, seen = _find(h5, path)
        quantity = next((q for q in _QUANTITIES if q in found), None)
        if quantity is None:
            raise FileFormatError(
                f"{path}: no supported ODIM quantity (found {seen or 'none'}, supported "
                f"{list(_QUANTITIES)})"
            )
        dataset, data = found[quantity]
        what = _merged_what(h5, dataset, data)
        values, no_echo = _decode(h5, f"{dataset}/{data}", what, path)
        quality = _quality(h5, dataset, data, found, path)
        grid = _grid(h5, path)
        kind, units = _QUANTITIES[quantity]
        start, end = _time(what, "start", path), _time(what, "end", path)
        nominal = _time(root_what, "", path)
        if nominal is None:
            raise FileFormatError(f"{path}: /what lacks the nominal date/time")
        minutes = 0.0
        if kind == "accumulation":
            if start is None or end is None or not end > start:
                raise FileFormatError(
                    f"{path}: ACRR needs startdate/starttime before enddate/endtime, got "
                    f"{start} – {end}"
                )
            minutes = (end - start).total_seconds() / 60.0
        how = decoded_attrs(h5.get(f"{dataset}/{data}/how"))
        source = str(root_what.get("source", ""))
        product = str(what.get("prodname", "")) or (
            "OPERA ODYSSEY composite" if _OPERA_SOURCE in source else f"ODIM {obj}"
        )
        attrs: dict[str, Any] = {
            "odim_version": str(root_what.get("version", "")),
            "odim_source": source,
            "odim_path": f"/{dataset}/{data}",
        }
        if start is not None and end is not None and kind != "accumulation":
            attrs.update(collection_start=start.isoformat(), collection_end=end.isoformat())
        if "zr_a" in how and "zr_b" in how:
            attrs.update(producer_zr_a=float(how["zr_a"]), producer_zr_b=float(how["zr_b"]))
    return make_field(
        values,
        grid=grid,
        path=path,
        source="odim",
        network="OPERA" if _OPERA_SOURCE in source else source,
        product=product,
        quantity=quantity,
        units=units,
        kind=kind,
        valid_time=end if kind == "accumulation" and end is not None else nominal,
        start_time=start if kind == "accumulation" else nominal,
        accumulation_minutes=minutes,
        no_echo=no_echo,
        quality=quality,
        attrs=attrs,
    )


register_reader(
    RadarReader(
        name="odim",
        network="OPERA (and any ODIM_H5 producer)",
        description="ODIM HDF5 Cartesian composites: RATE, ACRR, DBZH/TH; legacy ODYSSEY, NIMBUS",
        sniff=_is_odim,
        read=read_odim,
    )
)
