"""The metric accumulators against pysteps.verification on random and on real rain fields.

Conventions compared like with like: pysteps' categorical scores count ``rate > thr``, ours
``rate >= thr``, so pysteps gets the largest float below our threshold; pysteps' FSS counts
``>=`` with a zero-padded ``uniform_filter`` window, as ours does (odd windows). Invalid pixels
are ``valid=False`` for us and left out of every score; pysteps gets only the valid pixels for the
categorical and continuous scores (given NaN, its contingency table counts them as correct
negatives, which inflates ETS and HSS) and NaN fields for FSS (no event, as ours).
"""

from __future__ import annotations

import numpy as np
import pytest

from qpebench.datasets.radar import read_radar
from qpebench.metrics import (
    ContingencyAccumulator,
    ContinuousAccumulator,
    FSSAccumulator,
    box_fraction,
    metric_set,
)

pysteps_cat = pytest.importorskip("pysteps.verification.detcatscores")
pysteps_cont = pytest.importorskip("pysteps.verification.detcontscores")
pysteps_fss = pytest.importorskip("pysteps.verification.spatialscores")

THRESHOLDS = (0.1, 1.0, 5.0, 10.0, 15.0)
SCALES = (1, 3, 5, 9, 17, 33)
# pysteps name → ours (pysteps calls the equitable threat score GSS, Gilbert skill score)
CATEGORICAL = {
    "POD": "pod",
    "FAR": "far",
    "CSI": "csi",
    "GSS": "ets",
    "HSS": "hss",
    "BIAS": "fbias",
}


def random_fields(seed: int, shape=(4, 96, 80)):
    rng = np.random.default_rng(seed)
    obs = rng.gamma(0.35, 4.0, shape) * (rng.random(shape) > 0.5)
    pred = np.clip(obs * rng.lognormal(0.0, 0.6, shape) + rng.normal(0, 0.3, shape), 0, None)
    valid = rng.random(shape) > 0.1
    return pred, obs, valid


def real_fields(root):
    files = sorted((root / "opera" / "nimbus_20241126").glob("T_PAAH22_C_EUOC_*.hdf"))[:2]
    obs, pred = (read_radar(f).values.astype(np.float64) for f in files)  # 2200 × 1900
    valid = np.isfinite(obs) & np.isfinite(pred)
    return np.nan_to_num(pred)[None], np.nan_to_num(obs)[None], valid[None]


def check_against_pysteps(pred, obs, valid):
    p_nan, o_nan = np.where(valid, pred, np.nan), np.where(valid, obs, np.nan)
    cat = ContingencyAccumulator(THRESHOLDS)
    cont = ContinuousAccumulator()
    fss = FSSAccumulator(THRESHOLDS[1:4], SCALES)
    for acc in (cat, cont, fss):
        acc.update(pred, obs, valid)
    ours = {**cat.result(), **cont.result(), **fss.result()}
    p_valid, o_valid = pred[valid], obs[valid]
    for t in THRESHOLDS:
        ref = pysteps_cat.det_cat_fct(p_valid, o_valid, np.nextafter(t, -np.inf))
        for theirs, name in CATEGORICAL.items():
            assert ours[f"{name}@{t:g}"] == pytest.approx(ref[theirs], abs=1e-6, nan_ok=True)
    ref = pysteps_cont.det_cont_fct(p_valid, o_valid, scores=["ME", "MAE", "RMSE", "corr_p"])
    for theirs, name in {"ME": "bias", "MAE": "mae", "RMSE": "rmse", "corr_p": "pearson_r"}.items():
        assert ours[name] == pytest.approx(ref[theirs], abs=1e-6)
    for t in THRESHOLDS[1:4]:
        for n in SCALES:
            state = pysteps_fss.fss_init(t, n)
            for k in range(obs.shape[0]):
                pysteps_fss.fss_accum(state, p_nan[k], o_nan[k])
            assert ours[f"fss{n}@{t:g}"] == pytest.approx(
                pysteps_fss.fss_compute(state), abs=1e-6, nan_ok=True
            )


@pytest.mark.parametrize("seed", [0, 1])
def test_every_score_equals_pysteps_on_random_fields(seed):
    check_against_pysteps(*random_fields(seed))


@pytest.mark.realdata
def test_every_score_equals_pysteps_on_real_opera_fields(real_data):
    pred, obs, valid = real_fields(real_data)
    assert (obs[valid] >= 1).sum() > 1000 and (~valid).sum() > 0  # rain and gaps to score
    check_against_pysteps(pred, obs, valid)


def test_sharded_fss_equals_one_pass_and_is_not_the_mean_of_fields():
    pred, obs, valid = random_fields(3, shape=(6, 40, 40))
    whole = metric_set()
    for acc in whole:
        acc.update(pred, obs, valid)
    shards = [metric_set() for _ in range(3)]
    for k, acc_set in enumerate(shards):
        for acc in acc_set:
            acc.update(pred[2 * k : 2 * k + 2], obs[2 * k : 2 * k + 2], valid[2 * k : 2 * k + 2])
    merged = shards[0]
    for other in shards[1:]:
        for a, b in zip(merged, other, strict=True):
            a.merge(b)
    for a, w in zip(merged, whole, strict=True):
        for key, value in w.result().items():
            assert a.result()[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
    per_field = []
    for k in range(6):
        single = FSSAccumulator([1.0], [9])
        single.update(pred[k], obs[k], valid[k])
        per_field.append(single.result()["fss9@1"])
    pooled = FSSAccumulator([1.0], [9])
    pooled.update(pred, obs, valid)
    assert abs(np.mean(per_field) - pooled.result()["fss9@1"]) > 1e-4


def test_box_fraction_is_a_zero_padded_centred_window():
    events = np.zeros((1, 7, 7), bool)
    events[0, 0, 0] = events[0, 3, 3] = True
    frac = box_fraction(events, 3)
    assert frac[0, 0, 0] == pytest.approx(1 / 9)  # the corner window holds one event
    assert frac[0, 1, 1] == pytest.approx(1 / 9) and frac[0, 2, 2] == pytest.approx(1 / 9)
    assert frac[0, 5, 5] == 0.0
    assert box_fraction(events, 1)[0].sum() == 2


def test_fss_refuses_even_windows_and_mismatched_merges():
    with pytest.raises(ValueError, match="odd and positive"):
        FSSAccumulator([1.0], [4])
    with pytest.raises(ValueError, match="same thresholds and scales"):
        FSSAccumulator([1.0], [3]).merge(FSSAccumulator([1.0], [5]))
    with pytest.raises(ValueError, match="predictions contain NaN"):
        FSSAccumulator().update(np.full((2, 2), np.nan), np.zeros((2, 2)), np.ones((2, 2), bool))
