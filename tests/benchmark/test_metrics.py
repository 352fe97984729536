from __future__ import annotations

import math

import numpy as np
import pytest

from qpebench.metrics import ContingencyAccumulator, ContinuousAccumulator, metric_set


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
    with pytest.raises(ValueError, match="same thresholds"):
        acc.merge(ContingencyAccumulator([5.0]))
