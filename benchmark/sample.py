"""The sample interface: one patch at one target time.

A sample is a dict with fixed keys (see :class:`Sample`): ``ir`` ``(T, C, H, W)`` brightness
temperature in K, oldest frame first and the target time last; ``rain`` ``(H, W)`` radar rain rate
in mm/h, NaN where there is no valid radar; ``valid`` ``(H, W)``; ``time`` ``(T,)`` UTC seconds
since the epoch; ``meta`` the metadata that travels with the data. A batch stacks samples on a
leading axis. :func:`validate_sample` checks all of it and names what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import numpy as np
import numpy.typing as npt

from qpebench.bands import validate_bands
from qpebench.errors import (
    ConfigError,
    SampleValidationError,
    UnknownNameError,
    unknown_name_message,
)
from qpebench.names import printable

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


@dataclass(frozen=True)
class AuxField:
    """A field a store may hold beside the radar rain: ``(H, W)`` float32 at the target time.

    Only a generator knows these (a real archive has no true rain), so a store holds them or not.

    Attributes:
        name: Array name in the store (``aux/<name>`` in each shard).
        units: Units of the values.
        role: ``"truth"``: what the radar should have seen; never a model input, used to score
            the radar itself. ``"oracle"``: a hidden state of the generator a model may read as
            extra input channels only when its card names it (``oracle_inputs``), to measure
            what an input could add at most.
        description: One line.
    """

    name: str
    units: str
    role: Literal["truth", "oracle"]
    description: str


#: Every auxiliary field, by name (``docs/synthetic.md`` says how the generator makes each).
AUX_FIELDS: dict[str, AuxField] = {
    f.name: f
    for f in (
        AuxField(
            "true_rain",
            RAIN_UNITS,
            "truth",
            "surface rain rate before the radar (no bias, range loss, noise or threshold)",
        ),
        AuxField(
            "cell_cover",
            "1",
            "oracle",
            "cover of the convective clouds where the imager sees them (parallax, blur), 0-1",
        ),
        AuxField(
            "cell_stage",
            "1",
            "oracle",
            "cover-weighted life stage of the convective cells at the target time (from -0.15 "
            "as the tower rises, 0 first rain, 0.5 peak, 1 rain ends); 0 where there is no cell "
            "(cell_cover tells the two apart)",
        ),
        AuxField(
            "shield_trend",
            "1",
            "oracle",
            "life-cycle trend of the stratiform shield (+1 developing, -1 dissipating) where "
            "its cloud is seen; 0 elsewhere",
        ),
    )
}


def check_oracle_inputs(names: Sequence[str], who: str) -> tuple[str, ...]:
    """Check that ``names`` are oracle fields a model may read as input.

    Args:
        names: Field names a model asks for.
        who: The model (or caller) asking, for the message.

    Returns:
        The names as a tuple.

    Raises:
        ConfigError: A truth field (never a model input) or a repeated name.
        UnknownNameError: Not an auxiliary field.
    """
    out = tuple(str(n) for n in names)
    for name in out:
        if name not in AUX_FIELDS:
            raise UnknownNameError(unknown_name_message("auxiliary field", name, AUX_FIELDS))
        if AUX_FIELDS[name].role != "oracle":
            raise ConfigError(
                f"{who}: {name!r} is the generator's truth ({AUX_FIELDS[name].description}), "
                "never a model input; oracle inputs are "
                f"{[k for k, v in AUX_FIELDS.items() if v.role == 'oracle']}"
            )
    if len(set(out)) != len(out):
        raise ConfigError(f"{who}: oracle inputs {list(out)} repeat a name")
    return out


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


def check_window_min(value: Any, key: str = "window_min") -> float:
    """``key``: an input window in minutes, a number >= 0.

    Raises:
        ConfigError: Not a number, or negative; the message names ``key``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{key} must be a number of minutes >= 0, got {printable(repr(value))}")
    return float(value)


def frames_for_window(window_min: float, frame_step_s: int, step: int = 1) -> int:
    """Frames that cover an input window of ``window_min`` minutes (first to last frame).

    The window is the same time span on every sensor; the frame count is what the sensor's
    interval makes of it: 45 min is 4 SEVIRI frames (15 min apart) and 60 min 7 ABI frames
    (10 min apart).

    Args:
        window_min: Minutes from the first to the last (target) frame; 0 is the target alone.
        frame_step_s: The stored frames' interval in seconds (``meta['frame_step_s']``).
        step: Every ``step``-th stored frame is used.

    Raises:
        ConfigError: A negative window, or one that is not a whole number of intervals.
    """
    interval = int(frame_step_s) * int(step)
    check_window_min(window_min)
    if interval <= 0:
        raise ConfigError(f"frame interval must be positive, got {frame_step_s} s x step {step}")
    seconds = round(float(window_min) * 60)
    if abs(float(window_min) * 60 - seconds) > 1e-6 or seconds % interval:
        raise ConfigError(
            f"window_min={window_min:g} is not a whole number of frame intervals of "
            f"{interval / 60:g} min ({frame_step_s} s x step {step}); windows that fit: "
            f"{', '.join(f'{k * interval / 60:g}' for k in range(1, 5))} … min"
        )
    return seconds // interval + 1


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
