"""The synthetic generator: determinism and the physical relations it is built on."""

from __future__ import annotations

import numpy as np
import pytest

from qpebench.bands import DEFAULT_BANDS
from qpebench.datasets.synthetic import (
    SyntheticConfig,
    build_synthetic_store,
    region_seed,
    render_chunk,
    target_times,
)
from qpebench.datasets.synthetic_regions import REGIONS, get_region
from qpebench.errors import ConfigError, UnknownNameError
from qpebench.sample import validate_sample

CFG = SyntheticConfig(patch_size=48, frames=4)
B = {b: i for i, b in enumerate(DEFAULT_BANDS)}


def render(region: str, n: int = 96, seed: int = 0, cfg: SyntheticConfig = CFG):
    preset = get_region(region)
    times = target_times(preset, n, (2022, 2022), seed)
    return render_chunk(preset, cfg, times, region_seed(seed, region, 0))


@pytest.fixture(scope="module")
def batches():
    return {name: render(name) for name in ("europe", "conus", "tropics", "india")}


def test_deterministic_from_the_seed():
    a, b, c = render("europe", 8), render("europe", 8), render("europe", 8, seed=1)
    np.testing.assert_array_equal(a.ir, b.ir)
    np.testing.assert_array_equal(a.rain, b.rain)
    assert a.metadata.equals(b.metadata)
    assert not np.array_equal(a.ir, c.ir)


def test_store_version_is_stable(tmp_path):
    regions = {"europe": {"n_samples": 10, "years": [2021, 2021]}}
    kw = {"regions": regions, "patch_size": 16, "shard_size": 4, "progress": False}
    a = build_synthetic_store(tmp_path / "a", **kw)
    b = build_synthetic_store(tmp_path / "b", **kw)
    c = build_synthetic_store(tmp_path / "c", seed=1, **kw)
    assert a.dataset_version == b.dataset_version != c.dataset_version
    assert len(a) == 10 and a.manifest["shards"][2]["n"] == 2


def test_samples_follow_the_interface(tiny_store):
    for i in (0, len(tiny_store) - 1):
        s = validate_sample(tiny_store[i], name=f"tiny[{i}]")
        assert s["meta"]["region"] in REGIONS


def test_frame_clock_per_sensor(batches):
    assert set(np.diff(batches["europe"].time, axis=1).ravel()) == {900}  # SEVIRI 15 min
    assert set(np.diff(batches["conus"].time, axis=1).ravel()) == {600}  # ABI 10 min
    times = batches["europe"].time[:, -1]
    assert len(np.unique(times)) == len(times)


def test_brightness_temperatures_are_physical(batches):
    for name, b in batches.items():
        assert b.ir.dtype == np.float32 and np.isfinite(b.ir).all()
        assert 170 < b.ir.min() and b.ir.max() < 330, name
        # the water-vapour bands are colder than the window in clear, moist air
        assert b.ir[:, :, B["WV6.2"]].mean() < b.ir[:, :, B["IR10.8"]].mean() - 10


def test_colder_tops_rain_more(batches):
    for name in ("europe", "conus"):
        b = batches[name]
        tb = b.ir[:, -1, B["IR10.8"]]
        rain = b.rain
        ok = b.valid
        heavy = tb[ok & (rain >= 5)].mean()
        dry = tb[ok & (rain < 0.1)].mean()
        assert heavy < dry - 20, (name, heavy, dry)


def test_cold_anvils_are_often_dry(batches):
    b = batches["tropics"]
    cold = (b.ir[:, -1, B["IR10.8"]] < 220) & b.valid
    dry_share = (b.rain[cold] < 0.1).mean()
    assert 0.2 < dry_share < 0.95  # the IR false alarm the benchmark must expose


def test_warm_rain_under_warm_tops(batches):
    """Shallow warm rain (missed by IR) is a visible share of the rain in the tropics and
    India, and next to none in Europe."""
    share = {}
    for name in ("india", "tropics", "europe"):
        b = batches[name]
        wet = b.valid & (b.rain >= 1)
        share[name] = (wet & (b.ir[:, -1, B["IR10.8"]] > 265)).sum() / wet.sum()
    assert share["india"] > 0.03 and share["tropics"] > 0.03, share
    assert share["europe"] < share["india"] / 3, share


def test_top_evolution_carries_information(batches):
    """At the same cold top temperature, warming tops (decaying anvils) rain much less than
    steady ones: what a single frame cannot tell, the sequence can."""
    for name, lo, hi in (("conus", 212, 225), ("tropics", 195, 212), ("europe", 225, 240)):
        b = batches[name]
        tb = b.ir[:, :, B["IR10.8"]]
        change = tb[:, -1] - tb[:, 0]
        cold = b.valid & (tb[:, -1] > lo) & (tb[:, -1] < hi)
        warming = b.rain[cold & (change > 2)].mean()
        steady = b.rain[cold & (np.abs(change) <= 2)].mean()
        assert warming < 0.75 * steady, (name, warming, steady)


def test_water_vapour_minus_window_over_overshooting_tops(batches):
    b = batches["conus"]
    ir = b.ir[:, -1, B["IR10.8"]]
    wv = b.ir[:, -1, B["WV6.2"]]
    overshoot = ir < 203
    clear = ir > 280
    assert overshoot.sum() > 0
    assert np.median((wv - ir)[overshoot]) >= 0
    assert np.median((wv - ir)[clear]) < -20


def test_split_window_difference_flags_thin_cirrus(batches):
    b = batches["tropics"]
    swd = b.ir[:, -1, B["IR10.8"]] - b.ir[:, -1, B["IR12.0"]]
    tb = b.ir[:, -1, B["IR10.8"]]
    thick = tb < 215
    semi = (tb > 240) & (tb < 275)
    assert np.median(swd[semi]) > np.median(swd[thick]) + 0.5


def test_regions_differ(batches):
    eu, tr = batches["europe"], batches["tropics"]
    assert eu.ir[:, :, B["IR10.8"]].min() > tr.ir[:, :, B["IR10.8"]].min() + 10  # tropopause
    assert eu.metadata["vza"].mean() > tr.metadata["vza"].mean() + 10
    assert tr.valid.mean() < eu.valid.mean()  # sparser radar
    assert eu.metadata["convective_fraction"].mean() < tr.metadata["convective_fraction"].mean()


def test_bad_configuration_is_refused(tmp_path):
    with pytest.raises(UnknownNameError, match="did you mean 'europe'"):
        build_synthetic_store(tmp_path, regions={"europa": {"n_samples": 1, "years": [2021, 2021]}})
    with pytest.raises(ConfigError, match="data.regions.europe.n_samples must be positive"):
        build_synthetic_store(tmp_path, regions={"europe": {"n_samples": 0, "years": [2021, 2021]}})
    with pytest.raises(ConfigError, match="needs n_samples"):
        build_synthetic_store(tmp_path, regions={"europe": {"years": [2021, 2021]}})
    with pytest.raises(ConfigError, match="patch_size must be at least 8"):
        SyntheticConfig(patch_size=4)


def _lag_asymmetry(b, axis: int) -> float:
    """Overlap of cold cloud with rain moved 3 cells up minus 3 cells down (axis 1 = rows,
    north up), relative: positive when clouds are drawn north of (or left of) their rain."""
    cloud = (b.ir[:, -1, B["IR10.8"]] < 250).astype(float)
    rain = np.nan_to_num(b.rain)
    up, down = ((cloud * np.roll(rain, lag, axis=axis)).sum() for lag in (-3, 3))
    return float((up - down) / (up + down))


def test_parallax_displaces_clouds_away_from_the_sub_satellite_point(batches):
    # Satellite to the south (Europe, CONUS): tops appear north of their rain; satellite to
    # the north (tropics at 10-20°S under Himawari): south. No east-west displacement.
    assert _lag_asymmetry(batches["europe"], axis=1) > 0.01
    assert _lag_asymmetry(batches["conus"], axis=1) > 0.01
    assert _lag_asymmetry(batches["tropics"], axis=1) < -0.01
    assert abs(_lag_asymmetry(batches["europe"], axis=2)) < 0.01


def test_the_radar_sees_the_true_rain_through_its_network(batches):
    """No echo without true rain; the radar-to-truth ratio follows the network's bias and range."""
    ratio = {}
    for name in ("europe", "conus", "india"):
        b = batches[name]
        truth = b.aux["true_rain"]
        assert (truth >= 0).all()
        assert (b.rain[b.valid & (truth == 0)] == 0).all()
        wet = b.valid & (truth > 1)
        ratio[name] = float(b.rain[wet].sum() / truth[wet].sum())
    assert ratio["india"] < ratio["europe"] < ratio["conus"] < 1.05, ratio


def test_the_oracle_fields_hold_the_hidden_life_cycle(batches):
    """At the same cold tops, pixels of decaying cells (stage > 1) rain less than mature ones."""
    b = batches["conus"]
    stage, cover = b.aux["cell_stage"], b.aux["cell_cover"]
    assert (cover >= 0).all() and (cover <= 1).all()
    assert stage.min() >= -0.3 and stage.max() <= 1.9
    assert (np.abs(b.aux["shield_trend"]) <= 1).all()
    tb = b.ir[:, -1, B["IR10.8"]]
    cold = b.valid & (cover > 0.5) & (tb < 225)
    mature = b.aux["true_rain"][cold & (stage > 0.3) & (stage < 0.8)].mean()
    decaying = b.aux["true_rain"][cold & (stage > 1.1)].mean()
    assert decaying < 0.3 * mature, (decaying, mature)
