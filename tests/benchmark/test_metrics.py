from __future__ import annotations

import math

import numpy as np
import pytest

from qpebench.errors import ConfigError, SampleValidationError
from qpebench.metrics import (
    HISTOGRAM_EDGES,
    BrierAccumulator,
    ContingencyAccumulator,
    ContinuousAccumulator,
    CRPSAccumulator,
    FSSAccumulator,
    HistogramAccumulator,
    histogram_centres,
    metric_set,
)

LEVELS = (0.1, 0.5, 0.9)


def every_family():
    return metric_set(
        outputs=("rate", "probability", "quantiles"), rain_threshold=1.0, quantile_levels=LEVELS
    )


def outputs_of(pred):
    quantiles = pred[:, None] * np.array([0.5, 1.0, 2.0])[None, :, None, None]
    return {"rate": pred, "probability": 1.0 - np.exp(-pred), "quantiles": quantiles}


def batch(seed, shape=(6, 16, 16)):
    rng = np.random.default_rng(seed)
    obs = rng.gamma(0.3, 4.0, shape)
    obs[rng.random(shape) < 0.05] = np.nan
    pred = rng.gamma(0.3, 4.0, shape)
    return outputs_of(pred), obs, rng.random(shape) > 0.2


def test_contingency_scores_by_hand():
    obs = np.array([0.0, 1.0, 1.0, 5.0, 0.5, np.nan])
    pred = np.array([1.0, 1.0, 0.0, 2.0, 0.0, 9.0])
    valid = np.array([True, True, True, True, True, True])
    acc = ContingencyAccumulator(thresholds=[1.0])
    acc.update(pred, obs, valid)
    # events >= 1: obs [F,T,T,T,F], pred [T,T,F,T,F] -> hits 2, misses 1, false alarms 1, cn 1
    assert acc.counts.tolist() == [[2, 1, 1, 1]]
    r = acc.result()
    assert r["pod@1"] == pytest.approx(2 / 3)
    assert r["far@1"] == pytest.approx(1 / 3)
    assert r["csi@1"] == pytest.approx(2 / 4)
    assert r["fbias@1"] == pytest.approx(1.0)
    a_r = 3 * 3 / 5
    assert r["ets@1"] == pytest.approx((2 - a_r) / (4 - a_r))
    assert r["hss@1"] == pytest.approx(2 * (2 * 1 - 1 * 1) / (3 * 2 + 3 * 2))


def test_threshold_uses_greater_or_equal():
    acc = ContingencyAccumulator(thresholds=[1.0])
    acc.update(np.array([1.0]), np.array([1.0]), np.array([True]))
    assert acc.counts.tolist() == [[1, 0, 0, 0]]


def test_invalid_pixels_are_left_out_and_nan_predictions_refused():
    acc = ContinuousAccumulator()
    acc.update(np.array([1.0, 100.0]), np.array([2.0, 0.0]), np.array([True, False]))
    assert acc.result()["n_pixels"] == 1 and acc.result()["bias"] == -1.0
    with pytest.raises(ValueError, match="predictions contain NaN"):
        acc.update(np.array([np.nan]), np.array([1.0]), np.array([True]))


def test_continuous_against_numpy():
    rng = np.random.default_rng(0)
    obs = rng.gamma(0.4, 3.0, 5000)
    pred = obs * 0.8 + rng.normal(0, 0.5, obs.size).clip(0)
    acc = ContinuousAccumulator()
    acc.update(pred, obs, np.ones_like(obs, bool))
    r = acc.result()
    assert r["bias"] == pytest.approx(np.mean(pred - obs))
    assert r["rmse"] == pytest.approx(np.sqrt(np.mean((pred - obs) ** 2)))
    assert r["mae"] == pytest.approx(np.mean(np.abs(pred - obs)))
    assert r["relative_bias"] == pytest.approx(pred.sum() / obs.sum() - 1)
    assert r["pearson_r"] == pytest.approx(np.corrcoef(pred, obs)[0, 1])


def test_merge_of_shards_equals_one_pass():
    rng = np.random.default_rng(1)
    obs = rng.gamma(0.3, 4.0, (6, 16, 16))
    pred = rng.gamma(0.3, 4.0, (6, 16, 16))
    valid = rng.random((6, 16, 16)) > 0.2
    whole = metric_set()
    for a in whole:
        a.update(pred, obs, valid)
    parts = [metric_set(), metric_set()]
    for k, sl in enumerate((slice(0, 2), slice(2, 6))):
        for a in parts[k]:
            a.update(pred[sl], obs[sl], valid[sl])
    for a, b in zip(*parts, strict=True):
        a.merge(b)
    for a, w in zip(parts[0], whole, strict=True):
        ra, rw = a.result(), w.result()
        assert ra.keys() == rw.keys()
        for key in ra:
            assert ra[key] == pytest.approx(rw[key], rel=1e-12, nan_ok=True), key


def test_per_batch_average_differs_from_pooled():
    # The pitfall pooled counts avoid: batch-averaged CSI is not the set's CSI.
    obs = [np.array([1.0, 0.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0, 1.0])]
    pred = [np.array([1.0, 1.0, 1.0, 0.0]), np.array([1.0, 1.0, 1.0, 1.0])]
    pooled = ContingencyAccumulator([1.0])
    per_batch = []
    for p, o in zip(pred, obs, strict=True):
        pooled.update(p, o, np.ones(4, bool))
        single = ContingencyAccumulator([1.0])
        single.update(p, o, np.ones(4, bool))
        per_batch.append(single.result()["csi@1"])
    assert pooled.result()["csi@1"] == pytest.approx(5 / 7)
    assert np.mean(per_batch) == pytest.approx((1 / 3 + 1) / 2)


def test_undefined_scores_are_nan():
    acc = ContingencyAccumulator([1.0])
    acc.update(np.zeros(3), np.zeros(3), np.ones(3, bool))
    assert math.isnan(acc.result()["csi@1"]) and math.isnan(acc.result()["pod@1"])
    with pytest.raises(ValueError, match="same settings"):
        acc.merge(ContingencyAccumulator([5.0]))


def test_states_are_linear_for_every_family():
    outputs, obs, valid = batch(2)
    whole, first, second = every_family(), every_family(), every_family()
    assert [a.needs for a in whole] == ["rate"] * 4 + ["probability", "quantiles"]
    for accs, part in ((whole, slice(0, 6)), (first, slice(0, 2)), (second, slice(2, 6))):
        for acc in accs:
            acc.update(outputs[acc.needs][part], obs[part], valid[part])
    for w, a, b in zip(whole, first, second, strict=True):
        summed = a.state() + b.state()
        assert w.state() == pytest.approx(summed, rel=1e-12, abs=1e-9), type(w).__name__
        a.merge(b)
        assert np.array_equal(a.state(), summed)  # exactly the sum of the states
        assert a.result() == pytest.approx(w.result(), rel=1e-12, nan_ok=True)


def test_a_weighted_sum_of_states_is_a_resampled_state():
    outputs, obs, valid = batch(3)
    for acc in every_family():
        one, other = acc.fresh(), acc.fresh()
        one.update(outputs[acc.needs][:3], obs[:3], valid[:3])
        other.update(outputs[acc.needs][3:], obs[3:], valid[3:])
        twice = one.fresh()
        for _ in range(2):
            twice.update(outputs[acc.needs][:3], obs[:3], valid[:3])
        twice.merge(other)
        loaded = acc.fresh()
        loaded.load_state(2 * one.state() + other.state())
        assert loaded.result() == pytest.approx(twice.result(), rel=1e-12, nan_ok=True)


def test_fresh_is_empty_with_the_same_settings_and_load_state_checks_the_shape():
    outputs, obs, valid = batch(4)
    for acc in every_family():
        acc.update(outputs[acc.needs], obs, valid)
        empty = acc.fresh()
        assert type(empty) is type(acc) and empty.settings() == acc.settings()
        assert not empty.state().any() and acc.state().any()
        with pytest.raises(ConfigError, match="takes a state of shape"):
            empty.load_state(np.zeros(acc.state().size + 1))
        with pytest.raises(ValueError, match="NaN or infinity"):
            empty.load_state(np.full(acc.state().size, np.nan))
        state = acc.state()
        state[:] = 0  # a copy: the accumulator keeps its own
        assert acc.state().any()
    with pytest.raises(ConfigError, match="same settings"):
        BrierAccumulator(1.0).merge(BrierAccumulator(5.0))
    with pytest.raises(ConfigError, match="same settings"):
        ContinuousAccumulator().merge(HistogramAccumulator())


def test_metric_set_follows_the_model_outputs():
    names = [type(a).__name__ for a in metric_set()]
    assert names == [
        "ContingencyAccumulator",
        "ContinuousAccumulator",
        "FSSAccumulator",
        "HistogramAccumulator",
    ]
    probabilistic = metric_set(outputs=("rate", "probability"), rain_threshold=5.0)
    assert isinstance(probabilistic[-1], BrierAccumulator) and probabilistic[-1].threshold == 5.0
    quantile = metric_set(["continuous"], outputs=("rate", "quantiles"), quantile_levels=LEVELS)
    assert [a.needs for a in quantile] == ["rate", "quantiles"]
    assert quantile[-1].settings() == {"levels": LEVELS}
    with pytest.raises(ConfigError, match="rain_threshold"):
        metric_set(outputs=("rate", "probability"))
    with pytest.raises(ConfigError, match="quantile_levels"):
        metric_set(outputs=("rate", "quantiles"))
    with pytest.raises(ConfigError, match="unknown model outputs"):
        metric_set(outputs=("rate", "ensemble"))
    with pytest.raises(ConfigError, match="consumes 'probability'"):
        metric_set(["brier"])


def test_histogram_by_hand():
    acc = HistogramAccumulator()
    pred = np.array([0.0, 0.05, -1.0, 0.1, 500.0, 7.0])
    obs = np.array([0.0, 0.0, 0.11, 0.1, 300.0, np.nan])
    acc.update(pred, obs, np.array([True, True, True, True, True, False]))
    counts = acc.curves()["histogram"]
    assert counts["edges"] == list(HISTOGRAM_EDGES)
    assert len(counts["pred"]) == len(HISTOGRAM_EDGES)  # the last bin: ≥ 300 mm/h
    pred_counts, obs_counts = np.array(counts["pred"]), np.array(counts["obs"])
    assert pred_counts[0] == 3 and pred_counts[1] == 1 and pred_counts[-1] == 1  # 7 is invalid
    assert obs_counts[0] == 2 and obs_counts[1] == 2 and obs_counts[-1] == 1
    assert pred_counts.sum() == obs_counts.sum() == 5
    # CDFs after bin 0: pred 3/5, obs 2/5; after bin 1 both 4/5, then equal to the end
    centres = histogram_centres()
    assert centres[0] == 0 and centres[-1] == 300
    assert centres[1] == pytest.approx(np.sqrt(0.1 * HISTOGRAM_EDGES[2]))
    r = acc.result()
    assert r["ks"] == pytest.approx(1 / 5)
    assert r["wasserstein"] == pytest.approx(1 / 5 * centres[1])
    assert math.isnan(HistogramAccumulator().result()["wasserstein"])


def test_brier_decomposition_is_exact_for_forecasts_constant_in_bins():
    prob = np.array([0.05, 0.05, 0.05, 0.05, 0.75, 0.75, 0.75, 1.0])
    obs = np.array([0.0, 0.0, 0.0, 2.0, 1.0, 3.0, 0.5, 1.0])
    acc = BrierAccumulator(1.0)
    acc.update(prob, obs, np.ones(8, bool))
    event = (obs >= 1.0).astype(float)
    r = acc.result()
    assert r["brier@1"] == pytest.approx(np.mean((prob - event) ** 2))
    rel, res, unc = r["brier_reliability@1"], r["brier_resolution@1"], r["brier_uncertainty@1"]
    assert rel == pytest.approx((4 * (0.05 - 0.25) ** 2 + 3 * (0.75 - 2 / 3) ** 2) / 8)
    assert unc == pytest.approx(0.5 * 0.5)
    assert rel - res + unc == pytest.approx(r["brier@1"])
    curve = acc.curves()["reliability@1"]
    assert curve["bins"] == pytest.approx(np.linspace(0, 1, 11).tolist())
    assert curve["count"] == [4, 0, 0, 0, 0, 0, 0, 3, 0, 1]  # 1.0 is in the last bin
    assert curve["forecast_mean"][1] is None and curve["observed_frequency"][9] == 1.0


def test_probabilities_outside_the_unit_interval_are_refused():
    acc = BrierAccumulator(1.0)
    valid = np.array([True, True, False])
    acc.update(np.array([0.0, 1.0, 7.0]), np.zeros(3), valid)  # the invalid pixel is ignored
    for bad in (1.2, -0.1, np.nan):
        with pytest.raises(SampleValidationError, match=r"probabilities must be in \[0, 1\]"):
            acc.update(np.array([0.5, bad, 0.0]), np.zeros(3), valid)


def test_quantile_shapes_are_checked():
    acc = CRPSAccumulator(LEVELS)
    obs = np.zeros((2, 4, 4))
    with pytest.raises(SampleValidationError, match=r"must have shape \(2, 3, 4, 4\)"):
        acc.update(np.zeros((2, 2, 4, 4)), obs, np.ones_like(obs, bool))
    with pytest.raises(SampleValidationError, match="must have shape"):
        acc.update(np.zeros((2, 4, 4)), obs, np.ones_like(obs, bool))
    with pytest.raises(SampleValidationError, match="quantiles contain NaN"):
        acc.update(np.full((2, 3, 4, 4), np.nan), obs, np.ones_like(obs, bool))
    with pytest.raises(ConfigError, match="increase within"):
        CRPSAccumulator((0.5, 0.1))


def test_crps_approaches_the_closed_form_of_a_gaussian():
    # CRPS(N(mu, s), y) = s (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)), z = (y - mu) / s
    from scipy import stats

    levels = tuple((np.arange(199) + 0.5) / 199)
    mu, sigma = 2.0, 1.5
    y = np.random.default_rng(5).normal(1.0, 2.0, 400)
    quantiles = np.broadcast_to(stats.norm.ppf(levels, mu, sigma)[None], (400, len(levels)))
    acc = CRPSAccumulator(levels)
    acc.update(quantiles, y, np.ones(400, bool))
    z = (y - mu) / sigma
    exact = sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))
    assert acc.result()["crps"] == pytest.approx(exact.mean(), rel=2e-3)
    assert acc.result()["coverage@0.5"] == pytest.approx(np.mean(y <= mu))


def test_fss_counts_invalid_pixels_as_no_event():
    pred = np.ones((1, 5, 5)) * 2.0
    obs = pred.copy()
    valid = np.ones((1, 5, 5), bool)
    valid[0, 2, 2] = False
    pred[0, 2, 2] = np.nan  # a prediction at an invalid pixel is never looked at
    acc = FSSAccumulator([1.0], [1, 3])
    acc.update(pred, obs, valid)
    assert acc.result() == {"fss1@1": 1.0, "fss3@1": 1.0}
