"""Auxiliary store fields: the generator's true rain (never an input) and oracle inputs."""

from __future__ import annotations

import numpy as np
import pytest
from tests.benchmark.test_store import make_batch, write_store

from qpebench.errors import ConfigError, SampleValidationError, UnknownNameError
from qpebench.evaluation import EvalSettings, truth_ceiling
from qpebench.models import ModelCard, TrainData, build_model, read_inputs
from qpebench.sample import AUX_FIELDS, frames_for_window
from qpebench.store import stack_oracle
from qpebench.torchdata import StoreDataset

ORACLE = ("cell_cover", "cell_stage", "shield_trend")
SMOKE = {"epochs": 1, "batch_size": 8, "device": "cpu", "preload": True}


def with_aux(batch, seed, names=("true_rain", "cell_stage")):
    rng = np.random.default_rng(seed)
    n, _, _, h, w = batch.ir.shape
    batch.aux.update({k: rng.gamma(0.5, 2.0, (n, h, w)).astype(np.float32) for k in names})
    return batch


def test_aux_fields_round_trip_and_travel_with_their_units(tmp_path):
    batches = [with_aux(make_batch(5, 0), 0), with_aux(make_batch(4, 1), 1)]
    store = write_store(tmp_path / "s", batches, aux=("true_rain", "cell_stage"))
    assert store.aux == ("true_rain", "cell_stage")
    order = [7, 0, 3, 3, 8]
    out = store.read(order, aux=["cell_stage", "true_rain"])
    for key in ("true_rain", "cell_stage"):
        want = np.concatenate([b.aux[key] for b in batches])[order]
        np.testing.assert_array_equal(out.aux[key], want)
    assert store.read(order).aux == {}  # read only when asked for
    ds = store.to_xarray(2)
    assert ds["true_rain"].attrs["units"] == "mm/h" and ds["true_rain"].attrs["role"] == "truth"
    assert ds["cell_stage"].attrs["role"] == "oracle"
    np.testing.assert_array_equal(ds["true_rain"].values, batches[0].aux["true_rain"][2])


def test_aux_fields_are_checked_when_written_and_read(tmp_path):
    with pytest.raises(SampleValidationError, match="aux fields \\['true_rain'\\], the store spec"):
        write_store(tmp_path / "a", [with_aux(make_batch(3, 0), 0, ["true_rain"])], aux=ORACLE)
    bad = with_aux(make_batch(3, 0), 0, ["true_rain"])
    bad.aux["true_rain"][0, 0, 0] = -1.0
    with pytest.raises(SampleValidationError, match="shard-00000.h5: aux 'true_rain' has negative"):
        write_store(tmp_path / "b", [bad], aux=("true_rain",))
    with pytest.raises(UnknownNameError, match="unknown auxiliary field 'rain_truth'"):
        write_store(tmp_path / "c", [make_batch(3, 0)], aux=("rain_truth",))
    plain = write_store(tmp_path / "d", [make_batch(3, 0)])
    with pytest.raises(UnknownNameError, match="auxiliary field in .*'true_rain'"):
        plain.read([0], aux=["true_rain"])


@pytest.mark.parametrize("where", ["card", "factory", "stack", "dataset"])
def test_the_true_rain_is_never_a_model_input(tiny_store, where):
    message = "'true_rain' is the generator's truth .* never a model input"
    with pytest.raises(ConfigError, match=message):
        if where == "card":
            ModelCard("m", "cnn", "", 1, ("IR10.8",), oracle_inputs=("true_rain",))
        elif where == "factory":
            build_model("static_cnn", frames=1, bands=["IR10.8"], oracle_inputs=["true_rain"])
        elif where == "stack":
            stack_oracle(tiny_store.read([0], aux=["true_rain"]), ["true_rain"])
        else:
            StoreDataset(tiny_store, [0, 1], bands=["IR10.8"], oracle=["true_rain"])


def test_every_auxiliary_field_but_the_truth_is_an_oracle():
    assert {k for k, v in AUX_FIELDS.items() if v.role == "truth"} == {"true_rain"}
    assert {k for k, v in AUX_FIELDS.items() if v.role == "oracle"} == set(ORACLE)


def test_an_oracle_model_reads_its_fields_as_channels_of_every_frame(tiny_store, tiny_split):
    model = build_model(
        "early_fusion", frames=2, bands=["IR10.8"], oracle_inputs=ORACLE, width=4, train=SMOKE
    )
    assert model.card.oracle_inputs == ORACLE and model.card.channels == 4
    idx = np.array([3, 1, 2])
    batch = read_inputs(tiny_store, idx, model.card)
    assert batch.ir.shape == (3, 2, 4, 32, 32)
    fields = tiny_store.read(idx, aux=ORACLE).aux
    for t in range(2):
        for c, name in enumerate(ORACLE, start=1):
            np.testing.assert_array_equal(batch.ir[:, t, c], fields[name])
    plain = tiny_store.read(idx, frames=2, bands=["IR10.8"]).ir
    np.testing.assert_array_equal(batch.ir[:, :, :1], plain)
    model.fit(TrainData(tiny_store, tiny_split.train[:16], tiny_split.val[:8]), seed=0)
    assert model.predict(batch.ir).shape == (3, 32, 32)
    with pytest.raises(SampleValidationError, match="then oracle fields"):
        model.predict(plain)  # the IR alone is not what the card takes


@pytest.mark.parametrize(
    ("window", "step_s", "step", "frames"),
    [(45, 900, 1, 4), (0, 900, 1, 1), (60, 600, 1, 7), (30, 600, 1, 4), (60, 900, 2, 3)],
)
def test_a_window_in_minutes_is_the_frames_each_sensor_needs(window, step_s, step, frames):
    assert frames_for_window(window, step_s, step) == frames


def test_a_window_that_is_no_whole_number_of_intervals_is_refused():
    with pytest.raises(ConfigError, match="window_min=45 is not a whole number of frame intervals"):
        frames_for_window(45, 600)  # ABI: 10-min frames
    with pytest.raises(ConfigError, match="window_min must be a number of minutes >= 0"):
        frames_for_window(-15, 900)


def test_the_truth_ceiling_scores_the_true_rain_against_the_radar(tiny_store):
    md = tiny_store.metadata
    sets = {r: np.flatnonzero(md["region"] == r) for r in ("europe", "conus")}
    settings = EvalSettings(ci_metrics=("csi@1", "rmse"), paired_metrics=("csi@1",))
    ceiling = truth_ceiling(tiny_store, sets, settings)
    assert set(ceiling) == {"europe", "conus"} and set(ceiling["europe"]) == {"csi@1", "rmse"}
    for name, idx in sets.items():
        batch = tiny_store.read(idx, frames=1, aux=["true_rain"])
        truth, radar = batch.aux["true_rain"][batch.valid], batch.rain[batch.valid]
        hits = np.sum((truth >= 1) & (radar >= 1))
        union = np.sum((truth >= 1) | (radar >= 1))
        assert ceiling[name]["csi@1"] == pytest.approx(hits / union, rel=1e-12)
        rmse = np.sqrt(np.mean((truth.astype(np.float64) - radar) ** 2))
        assert ceiling[name]["rmse"] == pytest.approx(rmse, rel=1e-6)
    assert 0.3 < ceiling["europe"]["csi@1"] < 1.0  # the radar misses, not a copy of the truth


def test_a_store_without_true_rain_has_no_ceiling(tmp_path):
    store = write_store(tmp_path / "s", [make_batch(3, 0)])
    assert truth_ceiling(store, {"all": np.arange(3)}, EvalSettings()) == {}
