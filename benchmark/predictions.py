"""Score external predictions (CF netCDF) against a truth file, with strict validation.

Both files hold a variable ``rain_rate`` in mm/h in one of two layouts (``docs/predictions.md``):

* grid: ``rain_rate(time, y, x)`` with 1-D coordinate variables ``time``, ``y``, ``x``;
* patch: ``rain_rate(sample, y, x)`` with ``time(sample)`` and 2-D ``y(sample, y)``,
  ``x(sample, x)`` (each sample its own patch; what :func:`export_truth` writes).

Both are read by one code path: a file is a list of records (times or samples), each with a valid
time and cell-centre coordinates (shared by every record in the grid layout). Records are matched
by valid time (and, for patches, by position), so their order may differ between the two files.

Every failure raises :class:`PredictionError` whose message starts with the file's path and says
what was found and what was expected. Nothing from a submitted file is executed or unpickled:
files are opened with xarray's ``h5netcdf`` engine with every CF decoding switched off except
that of the ``time`` variable (no masking or scaling, no coordinate decoding), and only the
attributes named in the documentation are read; anything else (``_target_`` included) is ignored.
Values are read lazily, a bounded number of pixels at a time, so memory does not grow with the
number of records. Before any variable is read, the sizes each file declares are checked: the
truth's against the limits (:data:`MAX_RECORDS` records, fields and coordinates within
:func:`qpebench.limits.max_elements`), the prediction's against the truth's, so a small file that
declares huge dimensions is refused at once.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5netcdf
import h5py
import numpy as np
import numpy.typing as npt
import xarray as xr
from pyproj import CRS
from pyproj.exceptions import CRSError

from qpebench import __version__, limits
from qpebench.atomic import write_with
from qpebench.errors import ConfigError, FileFormatError, describe
from qpebench.metrics import metric_set
from qpebench.store import SampleStore

RAIN_VARIABLE = "rain_rate"
#: The units written by :func:`export_truth` and the spellings accepted on input.
RAIN_UNITS = "mm h-1"
RAIN_UNIT_ALIASES: tuple[str, ...] = ("mm h-1", "mm/h", "mm hr-1", "mm/hr")
GRID_DIMS = ("time", "y", "x")
PATCH_DIMS = ("sample", "y", "x")
COORD_UNITS: tuple[str, ...] = ("m", "metre", "meter", "metres", "meters")
#: Largest accepted difference between prediction and truth cell centres, in cells.
COORD_TOLERANCE = 1e-3
#: Pixels read per file and batch (float32: 16 MiB).
BATCH_PIXELS = 1 << 22
#: How many missing, extra or duplicate records an error message lists.
MAX_LISTED = 5
#: Version of the metric definitions behind the scores (they change with the package version).
METRICS_VERSION = __version__
TIME_UNITS = "seconds since 1970-01-01 00:00:00"
#: Most records (times or samples) a file may declare.
MAX_RECORDS = 1_000_000
#: Accepted valid times: from the first up to (not including) the second.
TIME_RANGE = (np.datetime64("1900-01-01T00:00:00", "s"), np.datetime64("2200-01-01T00:00:00", "s"))
_STANDARD_CALENDARS = (None, "standard", "gregorian", "proleptic_gregorian")

# Hints for units that are a rain quantity but not a rate in mm/h (never converted silently).
_UNIT_HINTS = {
    "kg m-2 s-1": "a mass flux; 1 kg m-2 s-1 = 3600 mm/h",
    "m s-1": "a speed; 1 m s-1 = 3.6e6 mm/h",
    "mm": "an accumulation, not a rate",
    "m": "an accumulation, not a rate",
    "kg m-2": "an accumulation, not a rate",
}
_OPEN_OPTIONS: dict[str, Any] = {
    "engine": "h5netcdf",
    "decode_times": False,
    "decode_timedelta": False,
    "mask_and_scale": False,
    "decode_coords": False,
    "concat_characters": False,
    "cache": False,
    "create_default_indexes": False,  # an index would read a whole coordinate at open
}


class PredictionError(FileFormatError):
    """A prediction or truth file fails validation; the message starts with the file's path."""


@dataclass(frozen=True)
class _Fields:
    """One validated file: lazy rain values and the key of each record.

    Attributes:
        path: The file.
        rain: ``rain_rate`` as a lazy ``(record, y, x)`` array.
        times: Valid time of each record, whole seconds since 1970 (rounded to the second).
        y: Cell-centre y of each record ``(n, H)``, or ``(1, H)`` shared by all (grid layout).
        x: Cell-centre x, likewise ``(n, W)`` or ``(1, W)``.
        crs: The grid mapping's CRS.
    """

    path: Path
    rain: xr.DataArray
    times: npt.NDArray[np.int64]
    y: npt.NDArray[np.float64]
    x: npt.NDArray[np.float64]
    crs: CRS

    @property
    def record_dim(self) -> str:
        """``"time"`` (grid layout) or ``"sample"`` (patch layout)."""
        return str(self.rain.dims[0])

    @property
    def layout(self) -> str:
        """``"grid"`` or ``"patch"``."""
        return "patch" if self.record_dim == "sample" else "grid"

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of each field."""
        return int(self.rain.shape[1]), int(self.rain.shape[2])

    def describe(self, index: int) -> str:
        """A record for messages: its time, and its first cell centre for patches."""
        text = _iso(int(self.times[index]))
        if self.layout == "patch":
            text += f" at y={self.y[index, 0]:.1f} m, x={self.x[index, 0]:.1f} m"
        return text

    def read(self, indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """The fields of records ``indices`` (any order, no repeats) as float64.

        Raises:
            PredictionError: The values cannot be read (a truncated or corrupt file).
        """
        order = np.argsort(indices, kind="stable")
        try:
            values = np.asarray(self.rain.isel({self.record_dim: indices[order]}).values)
        except (OSError, RuntimeError, ValueError, KeyError, MemoryError, OverflowError) as exc:
            raise PredictionError(
                f"{self.path}: cannot read {RAIN_VARIABLE} ({describe(exc)})"
            ) from None
        out = np.empty(values.shape, np.float64)
        out[order] = values
        return out


def _iso(seconds: int) -> str:
    return str(np.datetime64(seconds, "s")) + "Z"


def _listed(items: Sequence[str]) -> str:
    more = f" … ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def _open(path: Path, stack: ExitStack) -> xr.Dataset:
    """Open ``path`` with no decoding at all (xarray, h5netcdf engine)."""
    if not path.is_file():
        raise PredictionError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(limits.SUPERBLOCK_BYTES)
    try:
        if head.startswith(limits.HDF5_MAGIC):  # truncation and chunk bombs, before xarray
            limits.check_hdf5_length(path, path.stat().st_size, limits.hdf5_size(head, path))
            with h5py.File(path, "r") as h5:
                limits.check_hdf5_file(h5, path)
        ds = xr.open_dataset(path, **_OPEN_OPTIONS)
    except FileFormatError as exc:
        raise PredictionError(str(exc)) from None
    except Exception as exc:  # any failure of the HDF5 stack means: not a file we can read
        hint = " (a netCDF3 file: write netCDF4 instead)" if head.startswith(b"CDF") else ""
        raise PredictionError(
            f"{path}: not a readable netCDF4 file{hint} ({describe(exc)})"
        ) from None
    stack.callback(ds.close)
    return ds


def _string_attr(path: Path, var: xr.DataArray | xr.Variable, name: str, key: str) -> str | None:
    value = var.attrs.get(key)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise PredictionError(f"{path}: attribute {name}:{key} must be a string, got {value!r}")
    return value


def _check_rain(path: Path, ds: xr.Dataset) -> xr.DataArray:
    """The ``rain_rate`` variable after checking its dims, type, fill value and units."""
    if RAIN_VARIABLE not in ds.variables:
        found = ", ".join(sorted(str(v) for v in ds.variables)) or "none"
        raise PredictionError(f"{path}: no variable {RAIN_VARIABLE!r} (variables: {found})")
    rain = ds[RAIN_VARIABLE]
    if rain.dims not in (GRID_DIMS, PATCH_DIMS):
        raise PredictionError(
            f"{path}: {RAIN_VARIABLE} has dims {rain.dims}, expected {GRID_DIMS} "
            f"or, for patches, {PATCH_DIMS}"
        )
    if rain.dtype.kind != "f":
        raise PredictionError(
            f"{path}: {RAIN_VARIABLE} is {rain.dtype}, expected floating point (float32 or "
            "float64) mm/h with NaN for missing values"
        )
    for key in ("scale_factor", "add_offset"):
        if key in rain.attrs:
            raise PredictionError(
                f"{path}: {RAIN_VARIABLE} is packed ({key}); write unpacked float values in mm/h"
            )
    for key in ("_FillValue", "missing_value"):
        fill = np.asarray(rain.attrs.get(key, np.nan), dtype=np.float64)
        if not np.isnan(fill).all():
            raise PredictionError(
                f"{path}: {RAIN_VARIABLE}:{key} is {fill.tolist()}; no masking is applied, "
                "write NaN for missing values"
            )
    units = _string_attr(path, rain, RAIN_VARIABLE, "units")
    if units is None:
        raise PredictionError(f"{path}: {RAIN_VARIABLE} has no units attribute, expected 'mm h-1'")
    if " ".join(units.split()) not in RAIN_UNIT_ALIASES:
        hint = _UNIT_HINTS.get(" ".join(units.split()))
        accepted = ", ".join(repr(u) for u in RAIN_UNIT_ALIASES)
        raise PredictionError(
            f"{path}: {RAIN_VARIABLE} units {units!r}"
            + (f" ({hint})" if hint else "")
            + f", expected a rain rate in mm/h ({accepted}); convert before submitting"
        )
    return rain


def _coordinate(
    path: Path, ds: xr.Dataset, name: str, dims: tuple[str, ...]
) -> xr.DataArray | xr.Variable:
    if name not in ds.variables:
        raise PredictionError(f"{path}: no coordinate variable {name!r} {dims}")
    var = ds.variables[name]
    if var.dims != dims:
        raise PredictionError(f"{path}: {name} has dims {var.dims}, expected {dims}")
    return var


def _times(path: Path, ds: xr.Dataset, record_dim: str) -> npt.NDArray[np.int64]:
    """Decode the CF ``time`` variable to whole seconds since 1970 (the only decoding done).

    The units and calendar are decoded by xarray (its reference date and unit step); the values
    are then converted here, so a value outside :data:`TIME_RANGE` is refused by name.
    """
    var = _coordinate(path, ds, "time", (record_dim,))
    units = _string_attr(path, var, "time", "units")
    if units is None or " since " not in units:
        raise PredictionError(
            f"{path}: time units {units!r}, expected CF time units such as '{TIME_UNITS}'"
        )
    calendar = _string_attr(path, var, "time", "calendar")
    attrs = {"units": units} | ({} if calendar is None else {"calendar": calendar})
    try:
        with warnings.catch_warnings():  # xarray warns before falling back to cftime
            warnings.simplefilter("ignore")
            reference = xr.decode_cf(
                xr.Dataset({"time": xr.Variable(("time",), np.array([0, 1]), attrs)}),
                mask_and_scale=False,
                decode_timedelta=False,
                decode_coords=False,
                concat_characters=False,
            )["time"].values
    except (ValueError, TypeError, OverflowError) as exc:
        raise PredictionError(
            f"{path}: cannot decode time units {units!r} ({describe(exc)})"
        ) from None
    if reference.dtype.kind != "M":
        if calendar is None or calendar.lower() in _STANDARD_CALENDARS:
            raise PredictionError(
                f"{path}: time units {units!r} refer to a date that cannot be represented; use "
                f"a reference date between 1678 and 2262, such as '{TIME_UNITS}'"
            )
        raise PredictionError(
            f"{path}: time calendar {calendar!r} is not supported, use 'standard' (Gregorian)"
        )
    ns = reference.astype("datetime64[ns]").astype(np.int64)
    raw = np.asarray(var.values)
    if raw.dtype.kind not in "iuf":
        raise PredictionError(f"{path}: time is {raw.dtype}, expected numbers in {units!r}")
    seconds = ns[0] / 1e9 + raw.astype(np.float64) * ((ns[1] - ns[0]) / 1e9)
    if np.isnan(seconds).any():
        raise PredictionError(f"{path}: time has missing values")
    lo, hi = (int(t.astype(np.int64)) for t in TIME_RANGE)
    outside = ~((seconds >= lo) & (seconds < hi))
    if outside.any():
        i = int(np.argmax(outside))
        raise PredictionError(
            f"{path}: time[{i}] = {raw[i].item()!r} {units} is outside the accepted valid times "
            f"{TIME_RANGE[0]}Z to {TIME_RANGE[1]}Z"
        )
    whole: npt.NDArray[np.int64] = np.rint(seconds).astype(np.int64)
    return whole


def _projection_coordinate(
    path: Path, ds: xr.Dataset, name: str, dims: tuple[str, ...]
) -> npt.NDArray[np.float64]:
    var = _coordinate(path, ds, name, dims)
    standard = f"projection_{name}_coordinate"
    if _string_attr(path, var, name, "standard_name") != standard:
        raise PredictionError(
            f"{path}: {name}:standard_name is {var.attrs.get('standard_name')!r}, "
            f"expected {standard!r}"
        )
    units = _string_attr(path, var, name, "units")
    if units not in COORD_UNITS:
        raise PredictionError(f"{path}: {name} units {units!r}, expected 'm' (metres)")
    values = np.asarray(var.values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise PredictionError(f"{path}: {name} has missing or infinite values")
    return values.reshape(-1, values.shape[-1])


def _crs(path: Path, ds: xr.Dataset, rain: xr.DataArray) -> CRS:
    """The CRS of the grid-mapping variable named by ``rain_rate:grid_mapping``."""
    name = _string_attr(path, rain, RAIN_VARIABLE, "grid_mapping")
    if name is None:
        raise PredictionError(
            f"{path}: {RAIN_VARIABLE} has no grid_mapping attribute (the name of the CRS variable)"
        )
    if name not in ds.variables:
        raise PredictionError(f"{path}: grid-mapping variable {name!r} is missing")
    var = ds.variables[name]
    try:
        for key in ("crs_wkt", "spatial_ref"):
            wkt = _string_attr(path, var, name, key)
            if wkt is not None:
                return CRS.from_wkt(wkt)
        return CRS.from_cf({str(k): v for k, v in var.attrs.items()})
    except (CRSError, KeyError, TypeError, ValueError) as exc:
        raise PredictionError(
            f"{path}: grid mapping {name!r} is not a valid CRS ({describe(exc)})"
        ) from None


def _check_sizes(path: Path, rain: xr.DataArray, truth: _Fields | None) -> None:
    """Refuse declared dimensions beyond the limits, or (a prediction) unlike the truth's.

    Only the declared shape is looked at: nothing has been read yet. A prediction's layout and
    field shape must be the truth's; its record count may exceed the truth's by at most
    :data:`MAX_LISTED` (missing, extra and duplicate records are listed by :func:`_align`).
    """
    n, h, w = (int(size) for size in rain.shape)
    if truth is not None:
        layout = "patch" if rain.dims == PATCH_DIMS else "grid"
        if layout != truth.layout:
            raise PredictionError(
                f"{path}: {layout} layout {rain.dims}, the truth file {truth.path} uses the "
                f"{truth.layout} layout {truth.rain.dims}"
            )
        if (h, w) != truth.shape:
            raise PredictionError(
                f"{path}: grid shape (y, x) = {(h, w)} differs from the truth's {truth.shape}"
            )
        if n > truth.times.size + MAX_LISTED:  # a few extra records are listed by _align
            raise PredictionError(
                f"{path}: declares {n:,} records ({rain.dims[0]}), the truth file {truth.path} "
                f"has {truth.times.size:,}; refused before reading"
            )
    cells = limits.max_elements(8)
    limits.check_declared(path, f"{RAIN_VARIABLE} ({rain.dims[0]})", n, MAX_RECORDS, unit="records")
    limits.check_declared(path, f"{RAIN_VARIABLE} field (y × x)", h * w, cells, unit="cells")
    if rain.dims == PATCH_DIMS:
        limits.check_declared(path, "coordinates (sample × y or x)", n * max(h, w), cells)


def _load(path: Path, stack: ExitStack, truth: _Fields | None = None) -> _Fields:
    """Open ``path`` and check everything but the values.

    Args:
        path: The file.
        stack: Closes the file.
        truth: The truth, when ``path`` is the prediction: its declared dimensions must match.

    Raises:
        PredictionError: Naming ``path``; any failure to read it included.
    """
    try:
        ds = _open(path, stack)
        rain = _check_rain(path, ds)
        _check_sizes(path, rain, truth)
        record_dim = str(rain.dims[0])
        grid = record_dim == "time"
        y = _projection_coordinate(path, ds, "y", ("y",) if grid else (record_dim, "y"))
        x = _projection_coordinate(path, ds, "x", ("x",) if grid else (record_dim, "x"))
        return _Fields(path, rain, _times(path, ds, record_dim), y, x, _crs(path, ds, rain))
    except PredictionError:
        raise
    except FileFormatError as exc:  # a declared size beyond a limit (the message names path)
        raise PredictionError(str(exc)) from None
    except (
        OSError,
        RuntimeError,
        KeyError,
        ValueError,
        TypeError,
        MemoryError,
        OverflowError,
    ) as exc:
        raise PredictionError(f"{path}: cannot read ({describe(exc)})") from None


def _cell_size(truth: _Fields) -> float:
    steps = [np.abs(np.diff(c[0])) for c in (truth.y, truth.x) if c.shape[1] > 1]
    sizes = [float(np.median(s)) for s in steps if s.size]
    if not sizes or min(sizes) <= 0:
        raise PredictionError(f"{truth.path}: cannot tell the cell size from the coordinates")
    return min(sizes)


def _same_crs(a: CRS, b: CRS) -> bool:
    """Whether two CRSs are one: equal, or the same PROJ definition.

    A CRS read from CF grid-mapping attributes and the same CRS from WKT (or EPSG) compare
    unequal in pyproj (different names and identifiers) though they project identically.
    """
    if a == b:
        return True
    with warnings.catch_warnings():  # to_dict warns that a PROJ string drops information
        warnings.simplefilter("ignore", UserWarning)
        try:
            return bool(a.to_dict() == b.to_dict())
        except CRSError:  # no PROJ form (an engineering CRS, say): equality was the test
            return False


def _check_crs(pred: _Fields, truth: _Fields) -> None:
    """The CRS of the prediction against the truth's (layout and shape: :func:`_check_sizes`)."""
    if not _same_crs(pred.crs, truth.crs):
        raise PredictionError(
            f"{pred.path}: CRS differs from the truth's: prediction {pred.crs.name!r}, "
            f"truth {truth.crs.name!r}"
        )


def _check_coords(
    pred: _Fields, truth: _Fields, pidx: npt.NDArray[np.int64], tidx: npt.NDArray[np.int64]
) -> None:
    """Cell centres of the matched records agree within :data:`COORD_TOLERANCE` of a cell."""
    cell = _cell_size(truth)
    for name, p, t in (("y", pred.y, truth.y), ("x", pred.x, truth.x)):
        diff = np.abs(p[pidx] - t[tidx])
        worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
        if diff[worst] > COORD_TOLERANCE * cell:
            where = f" in {truth.describe(int(tidx[worst[0]]))}" if truth.layout == "patch" else ""
            raise PredictionError(
                f"{pred.path}: {name} coordinates differ from the truth's by up to "
                f"{diff[worst]:.6g} m ({diff[worst] / cell:.3g} cell){where}, index {worst[1]}: "
                f"prediction {p[pidx][worst]:.3f} m, truth {t[tidx][worst]:.3f} m "
                f"(tolerance {COORD_TOLERANCE:g} cell of {cell:g} m)"
            )


def _keys(fields: _Fields, ref: tuple[float, float], cell: float) -> list[tuple[int, int, int]]:
    """Record keys: valid time and first cell centre as whole cells from ``ref``."""
    iy = np.rint((fields.y[:, 0] - ref[0]) / cell).astype(np.int64)
    ix = np.rint((fields.x[:, 0] - ref[1]) / cell).astype(np.int64)
    n = fields.times.size
    return list(
        zip(
            fields.times.tolist(),
            np.broadcast_to(iy, (n,)).tolist(),
            np.broadcast_to(ix, (n,)).tolist(),
            strict=True,
        )
    )


def _index(fields: _Fields, keys: list[tuple[int, int, int]]) -> dict[tuple[int, int, int], int]:
    """Key → record; duplicates refused."""
    index: dict[tuple[int, int, int], int] = {}
    duplicates: list[str] = []
    for i, key in enumerate(keys):
        if key in index:
            duplicates.append(fields.describe(i))
        index.setdefault(key, i)
    if duplicates:
        what = "samples" if fields.layout == "patch" else "times"
        raise PredictionError(
            f"{fields.path}: {len(duplicates)} duplicate {what}: {_listed(duplicates)}"
        )
    return index


def _align(pred: _Fields, truth: _Fields) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Matched record indices ``(pred, truth)`` in truth order; every mismatch refused."""
    if truth.layout == "grid":  # one grid for all records: compare it before matching times
        _check_coords(pred, truth, np.zeros(1, np.int64), np.zeros(1, np.int64))
    cell = _cell_size(truth)
    ref = (float(truth.y[0, 0]), float(truth.x[0, 0]))
    truth_index = _index(truth, _keys(truth, ref, cell))
    pred_index = _index(pred, _keys(pred, ref, cell))
    what = "samples" if truth.layout == "patch" else "times"
    missing = [truth.describe(i) for k, i in truth_index.items() if k not in pred_index]
    if missing:
        raise PredictionError(
            f"{pred.path}: lacks {len(missing)} of the truth's {len(truth_index)} {what}: "
            f"{_listed(missing)}"
        )
    extra = [pred.describe(i) for k, i in pred_index.items() if k not in truth_index]
    if extra:
        raise PredictionError(
            f"{pred.path}: {len(extra)} {what} not in the truth file {truth.path}: {_listed(extra)}"
        )
    tidx = np.arange(len(truth_index), dtype=np.int64)
    pidx = np.array([pred_index[k] for k in truth_index], dtype=np.int64)
    if truth.layout == "patch":
        _check_coords(pred, truth, pidx, tidx)
    return pidx, tidx


@dataclass
class _Violations:
    """Counts and first positions of bad values, accumulated over batches.

    Attributes:
        nonfinite_what: How messages name the non-finite values counted.
    """

    nonfinite_what: str
    negative: int = 0
    minimum: float = math.inf
    first_negative: str = ""
    nonfinite: int = 0
    first_nonfinite: str = ""

    def update(
        self, fields: _Fields, records: npt.NDArray[np.int64], values: Any, valid: Any
    ) -> None:
        """Add one batch of a file's values (``valid``: where the truth has data)."""
        negative = values < 0
        if negative.any():
            self.negative += int(np.count_nonzero(negative))
            self.minimum = min(self.minimum, float(np.min(values[negative])))
            self.first_negative = self.first_negative or _position(fields, records, negative)
        bad = valid & ~np.isfinite(values)
        if bad.any():
            self.nonfinite += int(np.count_nonzero(bad))
            self.first_nonfinite = self.first_nonfinite or _position(fields, records, bad)

    def raise_if_any(self, path: Path, total: int) -> None:
        """Refuse the file if any value was bad."""
        problems = []
        if self.negative:
            problems.append(
                f"{self.negative} negative values of {total} (min {self.minimum:g} mm/h), "
                f"first at {self.first_negative}"
            )
        if self.nonfinite:
            problems.append(
                f"{self.nonfinite} {self.nonfinite_what}, first at {self.first_nonfinite}"
            )
        if problems:
            raise PredictionError(f"{path}: " + "; ".join(problems))


def _position(fields: _Fields, records: npt.NDArray[np.int64], mask: Any) -> str:
    n, row, col = (int(v) for v in np.argwhere(mask)[0])
    return f"{fields.describe(int(records[n]))}, (y, x) index ({row}, {col})"


def _batches(n: int, shape: tuple[int, int]) -> Iterator[slice]:
    step = max(1, BATCH_PIXELS // (shape[0] * shape[1]))
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else float(value)


def evaluate_predictions(
    pred_path: str | os.PathLike[str],
    truth_path: str | os.PathLike[str],
    *,
    metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Validate a prediction file against a truth file, then score it.

    Args:
        pred_path: The predictions (CF netCDF4, ``rain_rate`` in mm/h).
        truth_path: The truth, same layout; NaN where there is no radar data.
        metrics: Metric families (names in :data:`qpebench.registry.METRICS`); the default set
            of :func:`qpebench.metrics.metric_set` if ``None``.

    Returns:
        ``{"pred", "truth", "layout", "n_times", "n_pixels", "metrics", "metrics_version"}``,
        JSON-safe (undefined scores are ``None``). ``n_times`` counts the scored records
        (times, or samples in the patch layout); ``n_pixels`` the truth cells with data.

    Raises:
        PredictionError: Either file fails validation (the message names the file and the
            problem); nothing is scored then.
    """
    accumulators = metric_set() if metrics is None else metric_set(metrics)
    with ExitStack() as stack:
        truth = _load(Path(truth_path), stack)
        if truth.times.size == 0:
            raise PredictionError(f"{truth.path}: no {truth.record_dim} to score (empty file)")
        pred = _load(Path(pred_path), stack, truth)
        _check_crs(pred, truth)
        pidx, tidx = _align(pred, truth)
        pred_bad = _Violations("NaN or infinite values where the truth has data")
        truth_bad = _Violations("infinite values (NaN is the only missing value)")
        n_pixels = 0
        for part in _batches(tidx.size, truth.shape):
            obs = truth.read(tidx[part])
            valid = np.isfinite(obs)
            truth_bad.update(truth, tidx[part], obs, np.isinf(obs))
            values = pred.read(pidx[part])
            pred_bad.update(pred, pidx[part], values, valid)
            n_pixels += int(np.count_nonzero(valid))
            if pred_bad.negative or pred_bad.nonfinite or truth_bad.negative:
                continue  # refused below; keep counting for the message
            for acc in accumulators:
                acc.update(values, obs, valid)
        total = tidx.size * truth.shape[0] * truth.shape[1]
        truth_bad.raise_if_any(truth.path, total)
        pred_bad.raise_if_any(pred.path, total)
        if n_pixels == 0:
            raise PredictionError(
                f"{truth.path}: no valid truth pixel ({RAIN_VARIABLE} is NaN in all {total} "
                "cells); nothing to score"
            )
    scores: dict[str, float] = {}
    for acc in accumulators:
        scores.update(acc.result())
    return {
        "pred": str(pred_path),
        "truth": str(truth_path),
        "layout": truth.layout,
        "n_times": int(tidx.size),
        "n_pixels": n_pixels,
        "metrics": {name: _json_number(value) for name, value in scores.items()},
        "metrics_version": METRICS_VERSION,
    }


def format_report(result: dict[str, Any]) -> str:
    """The text that ``qpebench evaluate-predictions`` prints for a result.

    Args:
        result: What :func:`evaluate_predictions` returned.

    Returns:
        A header (files, records, pixels, metrics version) and one line per metric, name padded
        to a column, value with 4 decimals (counts ``n_*`` as integers, ``n/a`` where
        undefined); no trailing newline.
    """
    records = "samples" if result["layout"] == "patch" else "times"
    lines = [
        f"prediction: {result['pred']}",
        f"truth:      {result['truth']}",
        f"scored:     {result['n_times']} {records}, {result['n_pixels']} pixels with truth "
        f"(metrics version {result['metrics_version']})",
    ]
    width = max((len(name) for name in result["metrics"]), default=0)
    for name, value in result["metrics"].items():
        if value is None:
            text = "n/a"
        else:
            text = f"{int(value)}" if name.startswith("n_") else f"{value:.4f}"
        lines.append(f"  {name:<{width}}  {text:>10}")
    return "\n".join(lines)


def export_truth(
    store: SampleStore,
    indices: Sequence[int] | npt.NDArray[np.integer[Any]],
    path: str | os.PathLike[str],
) -> None:
    """Write the rain of store samples as a truth file in the patch layout (atomically).

    ``rain_rate(sample, y, x)`` in mm/h is NaN wherever the store has no valid radar data; the
    valid time of each sample is its target (last) frame; ``y``/``x`` are each patch's cell
    centres; the grid mapping ``crs`` carries the store grid's WKT. Written with h5netcdf in
    blocks, so memory does not grow with the number of samples.

    Args:
        store: The sample store.
        indices: Sample indices (one grid: a truth file has one CRS).
        path: The netCDF4 file to write.

    Raises:
        ConfigError: No indices, or samples from several grids.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ConfigError(f"{path}: no samples to export")
    grids = sorted(set(store.metadata["grid"].iloc[idx].astype(str)))
    if len(grids) != 1:
        raise ConfigError(
            f"{path}: samples span the grids {grids}; a truth file holds one grid, export each "
            "grid separately"
        )
    crs = CRS.from_user_input(store.manifest["grids"][grids[0]]["crs"])
    h, w = store.patch_shape

    def write(tmp: Path) -> None:
        with h5netcdf.File(tmp, "w") as f:
            f.attrs.update(
                Conventions="CF-1.10",
                title="qpebench truth: radar rain rate of store samples",
                source=f"qpebench {__version__} export_truth",
                dataset_version=store.dataset_version,
            )
            f.dimensions.update(sample=idx.size, y=h, x=w)
            mapping = f.create_variable("crs", (), np.int32)
            mapping.attrs.update({**crs.to_cf(), "crs_wkt": crs.to_wkt()})
            time = f.create_variable("time", ("sample",), np.int64)
            time.attrs.update(standard_name="time", units=TIME_UNITS, calendar="standard")
            coords = {}
            for name in ("y", "x"):
                coords[name] = f.create_variable(name, ("sample", name), np.float64)
                coords[name].attrs.update(
                    standard_name=f"projection_{name}_coordinate", units="m", axis=name.upper()
                )
            index = f.create_variable("sample_index", ("sample",), np.int64)
            index.attrs["long_name"] = "sample index in the store"
            rain = f.create_variable(
                RAIN_VARIABLE,
                ("sample", "y", "x"),
                np.float32,
                chunks=(1, h, w),
                compression="gzip",
                compression_opts=1,
                shuffle=True,
                fillvalue=np.float32(np.nan),
            )
            rain.attrs.update(
                units=RAIN_UNITS,
                standard_name="rainfall_rate",
                long_name="radar rain rate (NaN: no valid radar data)",
                grid_mapping="crs",
                coordinates="time y x",
            )
            for part in _batches(idx.size, (h, w)):
                batch = store.read(idx[part], frames=1)
                rain[part] = np.where(batch.valid, batch.rain, np.float32(np.nan))
                time[part] = batch.time[:, -1]
                index[part] = idx[part]
                for i, sample in zip(range(part.start, part.stop), idx[part], strict=True):
                    coords["y"][i], coords["x"][i] = store.coords(int(sample))

    write_with(path, write)
