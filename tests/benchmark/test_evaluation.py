"""Evaluation: pooled = one pass, strata = their subsets, day-block bootstrap, paired tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qpebench.errors import ConfigError
from qpebench.evaluation import (
    EvalSettings,
    bootstrap_weights,
    evaluate_model,
    evaluate_set,
    goodness,
    metadata_strata,
    paired_comparison,
    paired_tests,
    percentile_interval,
    rain_regime,
    sample_days,
    seed_day_replicates,
    seed_draws,
    shared_day_weights,
)
from qpebench.metrics import metric_set
from qpebench.models import ModelCard, RainModel, build_model
from qpebench.records import decode_field


class TbProbability(RainModel):
    """A fixed model with a probability output: for the probabilistic families."""

    def __init__(self) -> None:
        self.card = ModelCard(
            name="tb_probability",
            family="test",
            description="rate and probability from IR10.8",
            frames=1,
            bands=("IR10.8",),
            outputs=("rate", "probability"),
            rain_threshold=1.0,
        )
        self.config = {}

    def predict_outputs(self, ir):
        tb = ir[:, -1, 0]
        prob = np.clip((250.0 - tb) / 50.0, 0.0, 1.0).astype(np.float32)
        return {"rate": (4.0 * prob).astype(np.float32), "probability": prob}

    def predict(self, ir):
        return self.predict_outputs(ir)["rate"]


@pytest.fixture(scope="module")
def gpi():
    return build_model("gpi", frames=1, bands=["IR10.8"])


@pytest.fixture(scope="module")
def europe(tiny_store):
    return np.flatnonzero(tiny_store.metadata["region"].to_numpy() == "europe").astype(np.int64)


def one_pass(model, store, idx, valid_mask=None):
    """Scores of ``idx`` fed to a fresh metric set in a single update."""
    card = model.card
    batch = store.read(idx, frames=card.frames, step=card.step, bands=card.bands)
    outputs = model.predict_outputs(batch.ir)
    valid = batch.valid if valid_mask is None else batch.valid & valid_mask
    out = {}
    families = metric_set(
        outputs=card.outputs, rain_threshold=card.rain_threshold, quantile_levels=()
    )
    for fam in families:
        fam.update(outputs[fam.needs], batch.rain, valid)
        out.update(fam.result())
    return out


def assert_scores_equal(got, want, skip=()):
    for key, value in want.items():
        if key.startswith(skip):
            continue
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize("model_name", ["gpi", "tb_probability"])
def test_pooled_day_tables_equal_one_pass(tiny_store, europe, gpi, model_name):
    model = gpi if model_name == "gpi" else TbProbability()
    ev = evaluate_set(model, tiny_store, europe, EvalSettings(strata=()))
    want = one_pass(model, tiny_store, europe)
    assert_scores_equal(ev.scores(), want)
    assert len(ev.days) == np.unique(sample_days(tiny_store.metadata.iloc[europe])).size
    if model_name == "tb_probability":
        assert "brier@1" in want and "reliability@1" in ev.curves()


def test_strata_equal_their_subsets(tiny_store, europe, gpi):
    settings = EvalSettings(strata=("season", "day", "regime", "tb"))
    ev = evaluate_set(gpi, tiny_store, europe, settings)
    strata = ev.stratum_scores()
    md = tiny_store.metadata.iloc[europe]
    for season in md["season"].unique():
        subset = europe[md["season"].to_numpy() == season]
        got = strata["season"][season]
        assert got["n_samples"] == subset.size
        assert_scores_equal(got, one_pass(gpi, tiny_store, subset))
    batch = tiny_store.read(europe, frames=1, bands=["IR10.8"])
    regimes = rain_regime(batch.rain, batch.valid)
    for regime in np.unique(regimes):
        assert_scores_equal(
            strata["regime"][regime], one_pass(gpi, tiny_store, europe[regimes == regime])
        )
    tb = batch.ir[:, -1, 0]
    cold = strata["tb"]["<210 K"] if "<210 K" in strata["tb"] else None
    warm = strata["tb"][">=270 K"]
    assert_scores_equal(warm, one_pass(gpi, tiny_store, europe, tb >= 270.0), skip=("fss",))
    assert not any(k.startswith("fss") for k in warm)
    if cold is not None:
        assert_scores_equal(cold, one_pass(gpi, tiny_store, europe, tb < 210.0), skip=("fss",))
    # each stratifier partitions the samples
    for name in ("season", "day", "regime"):
        assert sum(v["n_samples"] for v in strata[name].values()) == europe.size


def test_derived_day_night_matches_the_stored_flag(tiny_store):
    md = tiny_store.metadata
    stored = metadata_strata(md, ["day"])["day"]
    derived = metadata_strata(md.drop(columns="day"), ["day"])["day"]
    assert (stored == derived).mean() == 1.0


def test_binned_and_refused_stratifiers(tiny_store):
    md = tiny_store.metadata
    labels = metadata_strata(md, ["local_hour", "vza", "region"])
    assert set(labels["region"]) == set(md["region"])
    hours = md["local_hour"].to_numpy()
    assert all(
        float(lab.split("-")[0]) <= h < float(lab.split("-")[1].split()[0])
        for lab, h in zip(labels["local_hour"], hours, strict=True)
    )
    with pytest.raises(ConfigError, match="'lat' holds floats"):
        metadata_strata(md, ["lat"])
    with pytest.raises(ConfigError, match="'moon' is neither a stratifier"):
        metadata_strata(md, ["moon"])
    with pytest.raises(ConfigError, match="unknown keys"):
        EvalSettings.from_mapping({"bootstraps": 10})
    with pytest.raises(ConfigError, match="ci_level"):
        EvalSettings(ci_level=1.5)


def test_rain_regime_on_made_fields():
    rain = np.zeros((3, 10, 10), np.float32)
    valid = np.ones_like(rain, bool)
    rain[1, :5] = 2.0  # 50 wet pixels, none heavy
    rain[2, :5] = 2.0
    rain[2, 0, :3] = 20.0  # 3 of 50 wet pixels heavy: 6 % >= 5 %
    assert rain_regime(rain, valid).tolist() == ["dry", "stratiform", "convective"]


def test_bootstrap_weights_and_replicates(tiny_store, europe, gpi):
    ev = evaluate_set(gpi, tiny_store, europe, EvalSettings(strata=())).day_states()
    days = ev.days
    w = bootstrap_weights(len(days), 200, seed=0, test_set="id_test")
    assert w.shape == (200, len(days)) and (w.sum(axis=1) == len(days)).all()
    assert np.array_equal(w, bootstrap_weights(len(days), 200, seed=0, test_set="id_test"))
    assert not np.array_equal(w, bootstrap_weights(len(days), 200, seed=0, test_set="other"))
    # all-ones weights give the pooled scores; a one-hot row gives that day's scores × D
    ones = np.ones((1, len(days)))
    assert ev.replicates(ones, ["csi@1"])["csi@1"][0] == pytest.approx(ev.scores()["csi@1"])
    first = np.zeros((1, len(days)))
    first[0, 0] = len(days)
    day0 = np.flatnonzero(sample_days(tiny_store.metadata.iloc[europe]) == days[0])
    want = one_pass(gpi, tiny_store, europe[day0])["rmse"]
    assert ev.replicates(first, ["rmse"])["rmse"][0] == pytest.approx(want)


def test_seed_day_draws_are_shared_and_average_the_drawn_seeds():
    days = shared_day_weights(24, 300, "id_test")
    assert days.shape == (300, 24) and (days.sum(axis=1) == 24).all()
    assert np.array_equal(days, shared_day_weights(24, 300, "id_test"))  # every pair, same draw
    assert not np.array_equal(days, bootstrap_weights(24, 300, seed=0, test_set="id_test"))
    draws = seed_draws(3, 300, "id_test")
    assert draws.shape == (300, 3) and set(np.unique(draws)) == {0, 1, 2}
    assert np.array_equal(draws, seed_draws(3, 300, "id_test"))
    # seed k scores k on every replicate (NaN for the metric seed 2 cannot score)
    per_seed = [{"csi@1": np.full(300, float(k)), "rmse": np.full(300, 1.0)} for k in range(3)]
    per_seed[2]["rmse"][:] = np.nan
    reps = seed_day_replicates(per_seed, draws)
    assert reps["csi@1"] == pytest.approx(draws.mean(axis=1))
    assert np.array_equal(np.isnan(reps["rmse"]), (draws == 2).any(axis=1))
    assert 0.9 < reps["csi@1"].mean() < 1.1 and reps["csi@1"].std() > 0.3  # the seeds vary


def test_evaluate_model_intervals_examples_and_paired(tiny_store, europe, gpi):
    settings = EvalSettings(strata=("season",), bootstrap=300)
    zero = build_model("zero_rain", frames=1, bands=["IR10.8"])
    sets = {"id_test": europe}
    evs = {
        "gpi": evaluate_model(gpi, tiny_store, sets, settings, seed=0),
        "zero_rain": evaluate_model(zero, tiny_store, sets, settings, seed=0),
    }
    ev = evs["gpi"]
    lo, hi = ev.intervals["id_test"]["csi@1"]
    assert lo <= ev.metrics["id_test"]["csi@1"] <= hi and lo < hi
    example = ev.examples["id_test"]
    h, w = tiny_store.patch_shape
    ir, truth, pred = (decode_field(example[k]) for k in ("ir108", "truth", "pred"))
    assert ir.shape == truth.shape == pred.shape == (h, w)
    batch = tiny_store.read([example["index"]], frames=1, bands=["IR10.8"])
    assert np.allclose(ir, batch.ir[0, -1, 0], atol=0.005)
    assert np.array_equal(np.isnan(truth), ~batch.valid[0])
    assert np.allclose(truth[batch.valid[0]], batch.rain[0][batch.valid[0]], atol=0.005)
    assert np.allclose(pred, gpi.predict(batch.ir)[0], atol=0.005)
    md = tiny_store.metadata
    assert example["index"] == int(europe[np.argmax(md["rain_fraction"].to_numpy()[europe])])
    paired = paired_tests(evs, settings)
    gpi_vs_zero = paired["gpi"]["id_test"]["zero_rain"]["csi@1"]
    assert gpi_vs_zero["p_value"] < 0.01  # zero rain has no hit: CSI 0 on every replicate
    assert gpi_vs_zero["diff"] == pytest.approx(ev.metrics["id_test"]["csi@1"])
    assert paired["zero_rain"]["id_test"]["gpi"]["csi@1"]["p_value"] == 1.0
    # same model on the same replicates: never better, difference zero
    reps = ev.replicates["id_test"]
    same = paired_comparison(reps, reps, ev.metrics["id_test"], ev.metrics["id_test"], 0.95)
    assert same["csi@1"]["p_value"] == 1.0 and same["csi@1"]["ci"] == [0.0, 0.0]


def test_a_stratum_gets_the_interval_of_its_days(tiny_store, europe, gpi):
    """A stratum holding the whole set has the set's interval; a smaller one, its own days'."""
    settings = EvalSettings(strata=("region", "season", "tb"), bootstrap=300)
    ev = evaluate_model(gpi, tiny_store, {"id_test": europe}, settings, seed=0)
    whole = ev.strata_intervals["id_test"]["region"]["europe"]
    assert whole["csi@1"] == ev.intervals["id_test"]["csi@1"]
    assert whole["rmse"] == ev.intervals["id_test"]["rmse"]
    # a season's interval: the set's day draws applied to that season's days alone
    one = evaluate_set(gpi, tiny_store, europe, settings)
    weights = bootstrap_weights(len(one.days), 300, 0, "id_test")
    names = sorted(one.days)
    md = tiny_store.metadata.iloc[europe]
    season = md["season"].iloc[0]
    idx = europe[md["season"].to_numpy() == season]
    part = evaluate_set(gpi, tiny_store, idx, EvalSettings(strata=())).day_states()
    rows = {d: part.states[i] for i, d in enumerate(part.days)}
    matrix = np.stack([rows.get(d, np.zeros(part.states.shape[1])) for d in names])
    reps = part.layout.replicate_scores(weights @ matrix, ["csi@1"])
    want = percentile_interval(reps["csi@1"], 0.95)
    assert ev.strata_intervals["id_test"]["season"][season]["csi@1"] == pytest.approx(want)
    assert "fss17@1" not in ev.strata_intervals["id_test"]["tb"][">=270 K"]


def test_replicate_scores_equal_scoring_each_row(tiny_store, europe, gpi):
    table = evaluate_set(gpi, tiny_store, europe, EvalSettings(strata=())).day_states()
    weights = bootstrap_weights(len(table.days), 20, 3, "id_test")
    reps = table.replicates(weights, ["csi@1", "rmse", "fss17@1", "no_such_score"])
    for b, row in enumerate(weights @ table.states):
        scores = table.layout.scores(row)
        for m in ("csi@1", "rmse", "fss17@1"):
            assert reps[m][b] == scores[m]
    assert np.isnan(reps["no_such_score"]).all()


def test_goodness_orientation():
    v = np.array([0.5, 1.5])
    assert goodness("csi@1", v).tolist() == [0.5, 1.5]
    assert goodness("rmse", v).tolist() == [-0.5, -1.5]
    assert goodness("fbias@1", v).tolist() == [-0.5, -0.5]
    assert goodness("bias", np.array([-0.2, 0.1])).tolist() == [-0.2, -0.1]
    assert goodness("coverage@0.9", np.array([0.8, 0.9])).tolist() == pytest.approx([-0.1, 0.0])
    assert goodness("brier_resolution@1", v).tolist() == [0.5, 1.5]
    assert goodness("crps", v).tolist() == [-0.5, -1.5]


def test_missing_viewing_angle_is_its_own_stratum(tiny_store):
    md = tiny_store.metadata.head(3).copy()
    md.loc[md.index[0], "vza"] = float("nan")
    labels = metadata_strata(md, ["vza"])["vza"]
    assert labels[0] == "unknown" and "deg" in labels[1]


def test_bootstrap_blocks_are_local_solar_days():
    import pandas as pd

    md = pd.DataFrame(
        {
            "time": ["2024-06-01T22:00:00Z", "2024-06-02T01:00:00Z", "2024-06-02T03:00:00Z"],
            "lon": [-100.0, -100.0, 15.0],
        }
    )
    # 22:00 and 01:00 UTC are 15:20 and 18:20 local solar time at 100° W: one afternoon
    assert sample_days(md).tolist() == ["2024-06-01", "2024-06-01", "2024-06-02"]
    assert sample_days(md.drop(columns="lon")).tolist() == [
        "2024-06-01",
        "2024-06-02",
        "2024-06-02",
    ]


def test_too_few_days_give_no_interval_and_no_paired_test(tiny_store, gpi):
    idx = np.flatnonzero(tiny_store.metadata["region"].to_numpy() == "india").astype(np.int64)
    n_days = np.unique(sample_days(tiny_store.metadata.iloc[idx])).size
    zero = build_model("zero_rain", frames=1, bands=["IR10.8"])
    settings = EvalSettings(strata=(), bootstrap=100, min_days=n_days + 1)
    evs = {
        m.card.name: evaluate_model(m, tiny_store, {"ood_test/india": idx}, settings, seed=0)
        for m in (gpi, zero)
    }
    assert evs["gpi"].intervals["ood_test/india"]["csi@1"] is None
    assert paired_tests(evs, settings)["gpi"] == {}
    assert set(evs["gpi"].day_states) == {"ood_test/india"}  # the states are kept regardless
    enough = EvalSettings(strata=(), bootstrap=100, min_days=n_days)
    ev = evaluate_model(gpi, tiny_store, {"ood_test/india": idx}, enough, seed=0)
    assert ev.intervals["ood_test/india"]["csi@1"] is not None
    with pytest.raises(ConfigError, match="min_days"):
        EvalSettings(min_days=1)
