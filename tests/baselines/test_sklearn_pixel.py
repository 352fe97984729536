"""Per-pixel features and the scikit-learn tree ensembles (fit, determinism, safe save/load)."""

from __future__ import annotations

import functools
import operator

import numpy as np
import pytest
import skops.io
import torch

from qpebench.bands import DEFAULT_BANDS
from qpebench.baselines.pixel_features import feature_names, pixel_features
from qpebench.baselines.sklearn_pixel import MAX_ESTIMATOR_BYTES
from qpebench.errors import ConfigError, NotFittedError, SampleValidationError
from qpebench.models import build_model, load_model

SMALL = {
    "gradient_boosting": {"max_iter": 30, "max_pixels": 15_000},
    "random_forest": {"n_estimators": 8, "max_pixels": 15_000},
}
ENSEMBLES = sorted(SMALL)


def id_test(store):
    md = store.metadata
    return np.flatnonzero((md["region"] == "europe") & (md["year"] == 2024))


def fitted(name, data, seed=0, **kw):
    model = build_model(name, frames=4, bands=DEFAULT_BANDS, **{**SMALL[name], **kw})
    log = model.fit(data, seed=seed, progress=False)
    return model, log


@pytest.fixture(scope="module")
def models(tiny_split):
    return {name: fitted(name, tiny_split) for name in ENSEMBLES}


# --- features -----------------------------------------------------------------------------


def test_features_match_a_direct_computation():
    rng = np.random.default_rng(0)
    ir = rng.uniform(200, 300, (2, 3, len(DEFAULT_BANDS), 9, 10)).astype(np.float32)
    names, x = pixel_features(ir, DEFAULT_BANDS, window=5)
    assert names == [f"Tb_{b}" for b in DEFAULT_BANDS] + [
        "IR10.8_min5",
        "IR10.8_mean5",
        "IR10.8_std5",
        "WV6.2-IR10.8",
        "WV6.2-WV7.3",
        "IR8.7-IR10.8",
        "IR10.8-IR12.0",
        "IR10.8_change",
    ]
    assert x.shape == (2 * 9 * 10, len(names)) and x.dtype == np.float32
    f = x.reshape(2, 9, 10, -1)
    col = {n: f[..., i] for i, n in enumerate(names)}
    band = {b: i for i, b in enumerate(DEFAULT_BANDS)}
    last = ir[:, -1]
    tb = last[:, band["IR10.8"]].astype(np.float64)
    np.testing.assert_array_equal(col["Tb_IR12.0"], last[:, band["IR12.0"]])
    # corner, edge and interior pixels: the statistics cover the window inside the patch
    for r, c in [(0, 0), (0, 5), (8, 9), (4, 4), (7, 1)]:
        win = tb[1, max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3]
        assert col["IR10.8_min5"][1, r, c] == np.float32(win.min())
        assert col["IR10.8_mean5"][1, r, c] == pytest.approx(win.mean(), abs=1e-4)
        assert col["IR10.8_std5"][1, r, c] == pytest.approx(win.std(), abs=1e-4)
    np.testing.assert_allclose(
        col["WV6.2-IR10.8"], last[:, band["WV6.2"]] - last[:, band["IR10.8"]], atol=1e-5
    )
    np.testing.assert_allclose(
        col["IR10.8-IR12.0"], last[:, band["IR10.8"]] - last[:, band["IR12.0"]], atol=1e-5
    )
    np.testing.assert_allclose(
        col["IR10.8_change"], ir[:, 2, band["IR10.8"]] - ir[:, 1, band["IR10.8"]], atol=1e-5
    )


def test_features_follow_the_bands_and_frames():
    ir = np.full((1, 1, 2, 4, 4), 250.0, np.float32)
    names, x = pixel_features(ir, ["IR12.0", "IR10.8"], window=3)
    assert names == ["Tb_IR12.0", "Tb_IR10.8", "IR10.8_min3", "IR10.8_mean3", "IR10.8_std3",
                     "IR10.8-IR12.0"]  # fmt: skip
    np.testing.assert_array_equal(x[:, -2:], 0)  # uniform field: no texture, no difference
    assert feature_names(["IR10.8"], 2, 3)[-1] == "IR10.8_change"


@pytest.mark.parametrize(
    ("bands", "window", "shape", "match"),
    [
        (["WV6.2"], 5, (1, 1, 1, 4, 4), r"need band IR10.8, the configuration has \['WV6.2'\]"),
        (["IR10.8"], 4, (1, 1, 1, 4, 4), "window must be an odd integer >= 3, got 4"),
        (["IR10.8", "IR12.0"], 3, (1, 1, 1, 4, 4), r"C=2, H, W\) for bands .* got shape"),
    ],
)
def test_feature_errors(bands, window, shape, match):
    with pytest.raises(ConfigError, match=match):
        pixel_features(np.zeros(shape, np.float32), bands, window=window)


# --- ensembles ----------------------------------------------------------------------------


def rmse(pred, batch):
    err = pred - np.nan_to_num(batch.rain)
    return float(np.sqrt((err**2)[batch.valid].mean()))


@pytest.mark.parametrize("name", ENSEMBLES)
def test_ensembles_beat_zero_rain_on_id_pixels(tiny_store, models, name):
    model, log = models[name]
    batch = tiny_store.read(id_test(tiny_store), frames=2, bands=DEFAULT_BANDS)
    pred = model.predict(batch.ir)
    assert pred.shape == batch.rain.shape and pred.dtype == np.float32
    assert np.isfinite(pred).all() and (pred >= 0).all()
    zero = rmse(np.zeros_like(pred), batch)
    assert rmse(pred, batch) < 0.9 * zero
    assert log["n_fit_pixels"] == 15_000 < log["n_pixels"]
    card = model.card
    assert (card.family, card.frames, card.bands, card.trainable) == (
        "sklearn",
        2,
        tuple(DEFAULT_BANDS),
        True,
    )
    assert card.parameters == log["nodes"] > 100
    # features (~110 operations per pixel) plus at least one comparison per tree and pixel
    trees = SMALL[name].get("max_iter") or SMALL[name].get("n_estimators")
    assert card.flops_per_sample > (110 + 2 * trees) * 64 * 64


@pytest.mark.parametrize("name", ENSEMBLES)
def test_same_seed_same_predictions(tiny_store, tiny_split, models, name):
    batch = tiny_store.read(id_test(tiny_store)[:4], frames=2)
    again, _ = fitted(name, tiny_split, seed=0)
    other, _ = fitted(name, tiny_split, seed=1)
    reference = models[name][0].predict(batch.ir)
    np.testing.assert_array_equal(again.predict(batch.ir), reference)
    assert not np.array_equal(other.predict(batch.ir), reference)


@pytest.mark.parametrize("name", ENSEMBLES)
def test_save_load_round_trip(tiny_store, models, tmp_path, name):
    model, _ = models[name]
    model.save(tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    batch = tiny_store.read(id_test(tiny_store)[:4], frames=2)
    np.testing.assert_array_equal(loaded.predict(batch.ir), model.predict(batch.ir))
    assert loaded.card == model.card
    assert model.state()["estimator"].dtype == torch.uint8
    # far below the cap on a saved estimator (about 1 MB and 0.3 MB here)
    assert model.state()["estimator"].numel() < MAX_ESTIMATOR_BYTES / 100


def tensor(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(data, np.uint8).copy())


def test_untrusted_or_foreign_states_are_refused(models):
    gb = build_model("gradient_boosting", frames=4, bands=DEFAULT_BANDS)
    evil = tensor(skops.io.dumps(functools.partial(operator.add, 1)))
    with pytest.raises(ConfigError, match=r"untrusted types \['_operator.add', 'functools.par"):
        gb.load_state({"estimator": evil})
    with pytest.raises(ConfigError, match="state 'estimator' is not a skops file"):
        gb.load_state({"estimator": tensor(b"not a zip file")})
    with pytest.raises(ConfigError, match="is a RandomForestRegressor, expected HistGradient"):
        gb.load_state(models["random_forest"][0].state())
    one_frame = build_model("gradient_boosting", frames=1, bands=DEFAULT_BANDS)
    with pytest.raises(ConfigError, match="takes 15 features, this configuration gives 14"):
        one_frame.load_state(models["gradient_boosting"][0].state())
    with pytest.raises(ConfigError, match=r"state has \['weights'\], expected \['estimator'\]"):
        gb.load_state({"weights": torch.zeros(3)})
    with pytest.raises(ConfigError, match="'estimator' must be uint8 bytes, got torch.float32"):
        gb.load_state({"estimator": torch.zeros(3)})


def test_unfitted_and_bad_inputs():
    model = build_model("random_forest", frames=4, bands=DEFAULT_BANDS)
    ir = np.full((1, 2, len(DEFAULT_BANDS), 8, 8), 250.0, np.float32)
    with pytest.raises(NotFittedError, match="random_forest is not fitted: call fit"):
        model.predict(ir)
    assert model.state() == {}
    assert model.card.flops_per_sample > 0 and model.card.parameters == 0
    assert build_model("random_forest", frames=1, bands=DEFAULT_BANDS).card.frames == 1


def test_wrong_input_shape_is_refused(models):
    model, _ = models["gradient_boosting"]
    ir = np.full((1, 1, len(DEFAULT_BANDS), 8, 8), 250.0, np.float32)
    with pytest.raises(SampleValidationError, match=r"T=2, C=7, H, W\).*got shape \(1, 1, 7"):
        model.predict(ir)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("gradient_boosting", {"max_pixels": 0}, "max_pixels must be an integer >= 1, got 0"),
        ("gradient_boosting", {"learning_rate": 0}, "learning_rate must be a positive number"),
        ("gradient_boosting", {"window": 4}, "window must be an odd integer >= 3"),
        ("random_forest", {"max_features": 1.5}, r"max_features must be a number in \(0, 1.0\]"),
        ("random_forest", {"n_jobs": 0}, "n_jobs must be an integer >= 1"),
        ("random_forest", {"trees": 3}, r"\['trees'\] not accepted"),
    ],
)
def test_bad_parameters(name, params, match):
    with pytest.raises(ConfigError, match=match):
        build_model(name, frames=4, bands=DEFAULT_BANDS, **params)


@pytest.mark.parametrize("name", ENSEMBLES)
def test_ir108_is_required(name):
    with pytest.raises(ConfigError, match=rf"{name} needs band IR10.8"):
        build_model(name, frames=4, bands=["WV6.2", "IR12.0"])
