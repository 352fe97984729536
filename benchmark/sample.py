"""The sample interface: one patch at one target time.

A sample is a dict with fixed keys (see :class:`Sample`): ``ir`` ``(T, C, H, W)`` brightness
temperature in K, oldest frame first and the target time last; ``rain`` ``(H, W)`` radar rain rate
in mm/h, NaN where there is no valid radar; ``valid`` ``(H, W)``; ``time`` ``(T,)`` UTC seconds
since the epoch; ``meta`` the metadata that travels with the data. A batch stacks samples on a
leading axis. :func:`validate_sample` checks all of it and names what is wrong.
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from qpebench.bands import validate_bands
from qpebench.errors import SampleValidationError

#: Units the interface fixes; adapters convert before building a sample.
IR_UNITS = "K"
RAIN_UNITS = "mm/h"
_RAIN_UNIT_ALIASES = {"mm/h", "mm h-1", "mm hr-1", "mm/hr"}

#: Plausible brightness temperatures; outside this range the values are not Kelvin.
TB_RANGE_K = (150.0, 350.0)

#: Keys every sample's ``meta`` carries.
REQUIRED_META: tuple[str, ...] = (
    "region",
    "satellite",
    "sensor",
    "radar_network",
    "bands",
    "ir_units",
    "rain_units",
    "crs",
    "cell_size_m",
    "patch_origin",
    "frame_step_s",
    "accumulation_s",
)


class Sample(TypedDict):
    """One sample of the benchmark (see the module docstring)."""

    ir: npt.NDArray[np.float32]
    rain: npt.NDArray[np.float32]
    valid: npt.NDArray[np.bool_]
    time: npt.NDArray[np.int64]
    meta: dict[str, Any]


def _fail(name: str, problem: str) -> SampleValidationError:
    return SampleValidationError(f"{name}: {problem}")


def validate_sample(sample: Sample, name: str = "sample") -> Sample:
    """Check a sample against the interface.

    Args:
        sample: The sample to check.
        name: How to name the sample in error messages (file and index, say).

    Returns:
        The sample, unchanged.

    Raises:
        SampleValidationError: The first problem found, naming the key and what is wrong.
    """
    for key in ("ir", "rain", "valid", "time", "meta"):
        if key not in sample:
            raise _fail(name, f"missing key {key!r}")
    ir, rain, valid, time, meta = (
        sample["ir"],
        sample["rain"],
        sample["valid"],
        sample["time"],
        sample["meta"],
    )
    if not isinstance(ir, np.ndarray) or ir.ndim != 4:
        shape = getattr(ir, "shape", type(ir).__name__)
        raise _fail(name, f"ir must be a (T, C, H, W) array, got shape {shape}")
    t, c, h, w = ir.shape
    if ir.dtype != np.float32:
        raise _fail(name, f"ir must be float32, got {ir.dtype}")
    if not isinstance(rain, np.ndarray) or rain.shape != (h, w):
        raise _fail(name, f"rain must have shape {(h, w)} to match ir, got {np.shape(rain)}")
    if rain.dtype != np.float32:
        raise _fail(name, f"rain must be float32, got {rain.dtype}")
    if not isinstance(valid, np.ndarray) or valid.shape != (h, w) or valid.dtype != np.bool_:
        raise _fail(name, f"valid must be a bool array of shape {(h, w)}")
    if not isinstance(time, np.ndarray) or time.shape != (t,) or time.dtype != np.int64:
        raise _fail(name, f"time must be an int64 array of shape ({t},) (one per frame)")

    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise _fail(name, f"meta lacks {missing}")
    if meta["ir_units"] != IR_UNITS:
        raise _fail(name, f"ir units must be {IR_UNITS!r}, got {meta['ir_units']!r}")
    if meta["rain_units"] not in _RAIN_UNIT_ALIASES:
        raise _fail(name, f"rain units must be {RAIN_UNITS!r}, got {meta['rain_units']!r}")
    bands = validate_bands(list(meta["bands"]))
    if len(bands) != c:
        raise _fail(name, f"meta names {len(bands)} bands {list(bands)} but ir has C={c}")

    if np.isnan(ir).any():
        bad = np.argwhere(np.isnan(ir))[0].tolist()
        raise _fail(name, f"ir contains NaN (first at frame, band, y, x = {bad})")
    lo, hi = float(ir.min()), float(ir.max())
    if lo < TB_RANGE_K[0] or hi > TB_RANGE_K[1]:
        raise _fail(
            name,
            f"ir values span [{lo:.1f}, {hi:.1f}], outside {TB_RANGE_K} K: "
            "not brightness temperature in Kelvin",
        )
    finite = np.isfinite(rain)
    if (valid & ~finite).any():
        raise _fail(name, "rain is NaN or infinite where valid is True")
    if (rain[finite] < 0).any():
        raise _fail(name, f"rain has negative values (min {float(rain[finite].min()):.3g} mm/h)")

    if t > 1:
        steps = np.diff(time)
        if (steps <= 0).any():
            raise _fail(name, f"frames are not in increasing time order: {time.tolist()}")
        if (steps != steps[0]).any():
            raise _fail(name, f"frames are not evenly spaced: steps of {steps.tolist()} s")
        if int(steps[0]) != int(meta["frame_step_s"]):
            raise _fail(
                name,
                f"frame step is {int(steps[0])} s but meta says {meta['frame_step_s']} s",
            )
    return sample


_SEASONS = ("DJF", "DJF", "MAM", "MAM", "MAM", "JJA", "JJA", "JJA", "SON", "SON", "SON", "DJF")


def season(month: int) -> str:
    """Meteorological season (``DJF``, ``MAM``, ``JJA``, ``SON``) of a month 1–12."""
    return _SEASONS[month - 1]


def cos_solar_zenith(
    lat: npt.ArrayLike, doy: npt.ArrayLike, local_hour: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Cosine of the solar zenith angle (> 0 by day) from latitude (°), day of year, local hour.

    The declination is the sine approximation ``23.44° · sin(2π (doy − 81) / 365.25)`` and the
    hour angle is 15° per hour from local solar noon (accurate to about a degree).
    """
    doy, local_hour = np.asarray(doy, np.float64), np.asarray(local_hour, np.float64)
    dec = np.deg2rad(23.44) * np.sin(2 * np.pi * (doy - 81) / 365.25)
    lat_r = np.deg2rad(np.asarray(lat, np.float64))
    hour_angle = np.deg2rad(15.0 * (local_hour - 12.0))
    out: npt.NDArray[np.float64] = np.sin(lat_r) * np.sin(dec) + np.cos(lat_r) * np.cos(
        dec
    ) * np.cos(hour_angle)
    return out
