from __future__ import annotations

import numpy as np
import pytest

from qpebench.bands import DEFAULT_BANDS, sensor_channel, validate_bands
from qpebench.errors import ConfigError, SampleValidationError, UnknownNameError
from qpebench.sample import REQUIRED_META, Sample, validate_sample


def make_sample(t: int = 3, c: int = 2, h: int = 4, w: int = 5) -> Sample:
    meta = {k: None for k in REQUIRED_META}
    meta.update(
        bands=list(DEFAULT_BANDS[:c]),
        ir_units="K",
        rain_units="mm/h",
        frame_step_s=900,
        region="europe",
    )
    rain = np.zeros((h, w), np.float32)
    valid = np.ones((h, w), bool)
    rain[0, 0] = np.nan
    valid[0, 0] = False
    return Sample(
        ir=np.full((t, c, h, w), 250.0, np.float32),
        rain=rain,
        valid=valid,
        time=np.arange(t, dtype=np.int64) * 900 + 1_700_000_000,
        meta=meta,
    )


def test_valid_sample_passes():
    s = make_sample()
    assert validate_sample(s) is s


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(ir=s["ir"][0]), r"ir must be a \(T, C, H, W\) array"),
        (lambda s: s.update(ir=s["ir"].astype(np.float64)), "ir must be float32"),
        (lambda s: s.update(rain=np.zeros((4, 4), np.float32)), r"rain must have shape \(4, 5\)"),
        (lambda s: s["ir"].__setitem__((1, 0, 2, 3), np.nan), r"ir contains NaN .*\[1, 0, 2, 3\]"),
        (lambda s: s["ir"].__setitem__(Ellipsis, 20.0), "not brightness temperature in Kelvin"),
        (lambda s: s["meta"].update(ir_units="degC"), "ir units must be 'K'"),
        (lambda s: s["meta"].update(rain_units="mm"), "rain units must be 'mm/h'"),
        (lambda s: s["rain"].__setitem__((1, 1), -2.0), "rain has negative values"),
        (lambda s: s["valid"].__setitem__((0, 0), True), "rain is NaN or infinite where valid"),
        (lambda s: s.update(time=s["time"][::-1].copy()), "not in increasing time order"),
        (lambda s: s["time"].__setitem__(2, s["time"][2] + 60), "not evenly spaced"),
        (lambda s: s["meta"].update(frame_step_s=600), "frame step is 900 s but meta says 600"),
        (lambda s: s["meta"].pop("crs"), r"meta lacks \['crs'\]"),
        (lambda s: s["meta"].update(bands=["IR10.8"]), "meta names 1 bands"),
    ],
)
def test_invalid_samples_name_the_problem(change, message):
    s = make_sample()
    change(s)
    with pytest.raises(SampleValidationError, match=message):
        validate_sample(s, name="store/shard-00000.h5[3]")


def test_error_names_the_sample():
    s = make_sample()
    s["ir"] = s["ir"].astype(np.float64)
    with pytest.raises(ValueError, match=r"^store/shard-00000.h5\[3\]: "):
        validate_sample(s, name="store/shard-00000.h5[3]")


def test_band_catalogue():
    assert DEFAULT_BANDS == ("WV6.2", "WV7.3", "IR8.7", "IR9.7", "IR10.8", "IR12.0", "IR13.4")
    assert sensor_channel("ABI", "IR10.8").channel == "C14"
    assert sensor_channel("ABI", "IR10.8", ir108="C13").wavelength_um == pytest.approx(10.35)
    assert sensor_channel("AHI", "IR12.0").channel == "B15"
    assert sensor_channel("SEVIRI", "WV6.2").channel == "WV_062"
    with pytest.raises(ConfigError, match="SEVIRI has no channel 'C13'"):
        sensor_channel("SEVIRI", "IR10.8", ir108="C13")
    with pytest.raises(UnknownNameError, match="did you mean 'IR10.8'"):
        validate_bands(["IR10.9"])
    with pytest.raises(ConfigError, match="names a band twice"):
        validate_bands(["IR10.8", "IR10.8"])
