"""Fixed IR formulas (GPI, Auto-Estimator) and the calibrated power law and probability matching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from qpebench.bands import DEFAULT_BANDS
from qpebench.errors import ConfigError, NotFittedError, SampleValidationError
from qpebench.models import TrainData, build_model, load_model
from qpebench.store import SampleBatch, SampleStoreWriter, StoreSpec, pack_tb, unpack_tb

GRID = {
    "g": {
        "crs": "+proj=laea +lat_0=50 +lon_0=10 +ellps=WGS84 +units=m",
        "cell_size_m": 4000.0,
        "x_min": -400000.0,
        "y_max": 400000.0,
        "shape": [200, 200],
    }
}
A_TRUE, B_TRUE = 3.0e10, 0.034


def tb_input(values, frames=1, bands=1):
    """IR (1, frames, bands, 1, len(values)) holding ``values`` in every frame and band."""
    row = np.asarray(values, np.float32)
    return np.broadcast_to(row, (1, frames, bands, 1, row.size)).copy()


def power_law_store(root, n=6, hw=8, a=A_TRUE, b=B_TRUE):
    """A store whose rain is exactly A·exp(−B·T^1.2) of its (packed) IR10.8, with a few invalid
    and dry pixels."""
    rng = np.random.default_rng(0)
    tb = unpack_tb(pack_tb(rng.uniform(200, 250, (n, 1, 1, hw, hw))))
    rain = a * np.exp(-b * tb[:, 0, 0].astype(np.float64) ** 1.2)
    assert rain.min() > 0.1  # every pixel counts as raining in the fit
    valid = rng.random((n, hw, hw)) > 0.1
    dry = rng.random((n, hw, hw)) < 0.2
    rain = np.where(dry, 0.0, rain)
    rain = np.where(valid, rain, np.nan).astype(np.float32)
    meta = pd.DataFrame(
        {
            "region": "europe",
            "satellite": "Meteosat-11",
            "sensor": "SEVIRI",
            "radar_network": "OPERA",
            "grid": "g",
            "time": pd.date_range("2021-06-01", periods=n, freq="h", tz="UTC").strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "patch_row": np.arange(n),
            "patch_col": np.arange(n),
            "frame_step_s": 900,
            "accumulation_s": 0,
            "rain_fraction": 0.5,
            "year": 2021,
        }
    )
    time = (1_622_505_600 + 3600 * np.arange(n))[:, None].astype(np.int64)
    spec = StoreSpec(
        bands=("IR10.8",),
        frames=1,
        patch_shape=(hw, hw),
        adapter="test",
        adapter_config={},
        grids=GRID,
    )
    writer = SampleStoreWriter(root, spec)
    writer.write_shard(0, SampleBatch(ir=tb, rain=rain, valid=valid, time=time, metadata=meta))
    return writer.finalize()


# --- fixed formulas -----------------------------------------------------------------------


def test_gpi_is_exact_at_the_threshold():
    model = build_model("gpi", frames=4, bands=DEFAULT_BANDS, step=2)
    out = model.predict(tb_input([234.9, 235.0, 235.1, 180.0, 300.0]))
    np.testing.assert_array_equal(out[0, 0], [3.0, 0.0, 0.0, 3.0, 0.0])
    assert out.dtype == np.float32
    card = model.card
    assert (card.family, card.frames, card.bands, card.step) == ("ir_formula", 1, ("IR10.8",), 2)
    assert card.flops_per_sample == 64 * 64 and not card.trainable


@pytest.mark.parametrize(
    "name", ["auto_estimator", "gpi", "power_law", "probability_matching", "zero_rain"]
)
def test_factories_take_step(name):
    assert build_model(name, frames=4, bands=DEFAULT_BANDS, step=3).card.step == 3
    assert build_model(name, frames=4, bands=DEFAULT_BANDS).card.step == 1


@pytest.mark.parametrize("name", ["auto_estimator", "gpi", "power_law", "probability_matching"])
def test_ir108_is_required(name):
    with pytest.raises(ConfigError, match=rf"{name} needs band IR10.8.*\['WV6.2'\]"):
        build_model(name, frames=1, bands=["WV6.2"])


@pytest.mark.parametrize("name", ["auto_estimator", "gpi"])
def test_formulas_check_the_input_shape(name):
    model = build_model(name, frames=1, bands=DEFAULT_BANDS)
    with pytest.raises(SampleValidationError, match=r"T=1, C=1.*got shape \(1, 2, 1, 1, 3\)"):
        model.predict(tb_input([200, 210, 220], frames=2))


# --- power law ----------------------------------------------------------------------------


def test_power_law_recovers_a_and_b(tmp_path):
    store = power_law_store(tmp_path / "s")
    model = build_model("power_law", frames=1, bands=["IR10.8"])
    log = model.fit(TrainData(store, np.arange(len(store)), np.arange(0)), seed=0, progress=False)
    assert log["A"] == pytest.approx(A_TRUE, rel=1e-4)
    assert log["B"] == pytest.approx(B_TRUE, rel=1e-6)
    batch = store.read(np.arange(len(store)))
    n_valid = int(batch.valid.sum())
    assert log["n_pixels"] == n_valid
    assert log["n_rain_pixels"] == int((batch.rain[batch.valid] > 0).sum()) < n_valid
    wet = batch.valid & (np.nan_to_num(batch.rain) > 0)
    np.testing.assert_allclose(model.predict(batch.ir)[wet], batch.rain[wet], rtol=1e-4)
    card = model.card
    assert (card.family, card.trainable, card.parameters) == ("calibrated", True, 2)


def test_power_law_refuses_unfittable_data(tmp_path):
    store = power_law_store(tmp_path / "s")
    data = TrainData(store, np.arange(len(store)), np.arange(0))
    model = build_model("power_law", frames=1, bands=["IR10.8"], min_rain=1e6)
    with pytest.raises(ConfigError, match="needs rainy pixels .* found 0"):
        model.fit(data, seed=0, progress=False)
    warm_rain = power_law_store(tmp_path / "w", a=1.0, b=-0.001)
    data = TrainData(warm_rain, np.arange(len(warm_rain)), np.arange(0))
    with pytest.raises(ConfigError, match=r"B = -0.001 <= 0 \(rain growing with temperature\)"):
        build_model("power_law", frames=1, bands=["IR10.8"]).fit(data, seed=0, progress=False)
    with pytest.raises(ConfigError, match="min_rain must be a positive number, got 0"):
        build_model("power_law", frames=1, bands=["IR10.8"], min_rain=0)


# --- probability matching -----------------------------------------------------------------


def test_probability_matching_reproduces_the_training_distribution(tiny_split, tiny_store):
    data = tiny_split
    model = build_model("probability_matching", frames=4, bands=DEFAULT_BANDS)
    log = model.fit(data, seed=0, progress=False)
    batch = tiny_store.read(data.train, frames=1, bands=["IR10.8"])
    rain = batch.rain[batch.valid]
    pred = model.predict(batch.ir)[batch.valid]
    assert log["n_pixels"] == rain.size
    wet = (rain >= 0.1).mean()
    assert log["wet_fraction"] == pytest.approx(wet)
    assert 0.05 < wet < 0.95
    assert (pred >= 0.1).mean() == pytest.approx(wet, abs=0.005)
    levels = np.linspace(0.70, 0.995, 30)
    np.testing.assert_allclose(
        np.quantile(pred, levels), np.quantile(rain, levels), rtol=0.03, atol=0.02
    )
    # monotone non-increasing in Tb, constant beyond the outermost pairs
    ramp = model.predict(tb_input(np.linspace(150, 350, 4001)))[0, 0]
    assert (np.diff(ramp) <= 0).all() and ramp[0] > 5 and ramp[-1] == 0
    card = model.card
    assert (card.family, card.trainable, card.parameters) == ("calibrated", True, 2000)


def test_probability_matching_state_round_trip_and_checks(tiny_split, tiny_store, tmp_path):
    model = build_model("probability_matching", frames=4, bands=DEFAULT_BANDS, quantiles=50)
    with pytest.raises(NotFittedError, match="probability_matching is not fitted"):
        model.predict(tb_input([200.0]))
    model.fit(tiny_split, seed=0, progress=False)
    model.save(tmp_path / "pm.pt")
    loaded = load_model(tmp_path / "pm.pt")
    x = tb_input(np.linspace(190, 300, 200))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    state = model.state()
    assert state["tb_quantiles"].shape == (50,)
    bad = {**state, "rain_quantiles": state["rain_quantiles"].flip(0)}
    with pytest.raises(ConfigError, match="rain_quantiles must be non-negative and not increase"):
        loaded.load_state(bad)
    with pytest.raises(ConfigError, match=r"state has \['tb_quantiles'\], expected"):
        loaded.load_state({"tb_quantiles": state["tb_quantiles"]})
    with pytest.raises(ConfigError, match=r"'tb_quantiles' has shape \(49,\), expected \(50,\)"):
        loaded.load_state({**state, "tb_quantiles": state["tb_quantiles"][1:]})
    with pytest.raises(ConfigError, match="quantiles must be an integer >= 2, got 1"):
        build_model("probability_matching", frames=1, bands=["IR10.8"], quantiles=1)


def test_power_law_state_round_trip(tmp_path):
    store = power_law_store(tmp_path / "s")
    model = build_model("power_law", frames=1, bands=["IR10.8"])
    with pytest.raises(NotFittedError, match="power_law is not fitted: call fit"):
        model.predict(tb_input([200.0]))
    assert model.state() == {}
    model.fit(TrainData(store, np.arange(len(store)), np.arange(0)), seed=0, progress=False)
    model.save(tmp_path / "pl.pt")
    loaded = load_model(tmp_path / "pl.pt")
    x = tb_input(np.linspace(190, 300, 50))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.state()["b"].dtype == torch.float64
    with pytest.raises(ConfigError, match=r"state 'b' has shape \(2,\), expected \(\)"):
        loaded.load_state({"log_a": torch.tensor(1.0), "b": torch.zeros(2)})


@pytest.mark.parametrize(
    "name", ["power_law", "probability_matching", "gradient_boosting", "random_forest"]
)
def test_fit_reads_only_training_samples_as_the_card_says(
    tiny_split, tiny_store, spy_store, monkeypatch, name
):
    import qpebench.baselines.pixel_features as pf

    monkeypatch.setattr(pf, "TRAIN_BLOCK", 7)
    data = tiny_split
    spy = spy_store
    params = {"max_iter": 5} if name == "gradient_boosting" else {}
    params |= {"n_estimators": 2} if name == "random_forest" else {}
    model = build_model(name, frames=4, bands=DEFAULT_BANDS, step=2, **params)
    model.fit(TrainData(spy, data.train, data.val), seed=0, progress=False)
    read = np.concatenate([idx for idx, _ in spy.reads])
    np.testing.assert_array_equal(np.sort(read), np.sort(data.train))
    card = model.card
    for idx, kw in spy.reads:
        assert idx.size <= 7
        assert kw == {"frames": card.frames, "step": 2, "bands": card.bands}
