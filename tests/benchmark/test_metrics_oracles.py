"""The metric accumulators against pysteps.verification, the ``scores`` package and scipy.

Conventions compared like with like (``docs/metrics.md``):

- events: ours ``rate >= thr``. pysteps' categorical scores count ``rate > thr`` and ``scores``'
  FSS ``rate > thr``, so both get the largest float below our threshold; pysteps' FSS and
  reliability diagram count ``>=`` as ours do. ``scores``' contingency tables get our events.
- FSS window: ours and pysteps' are centred on each pixel with zeros outside the field.
  ``scores.spatial.fss_2d(zero_padding=True)`` sums the windows centred on one more row and one
  more column (just past the last ones), so it equals ours on the field with one row and one
  column of no-data appended at the end (and differs from ours on the field itself).
- invalid pixels: ``valid=False`` for us, left out of every score; pysteps and ``scores`` get
  only the valid pixels for pointwise scores (given NaN, pysteps' contingency table counts them as
  correct negatives) and NaN fields for FSS (no event, as ours).
- reliability bins: pysteps' edges are ``linspace(-1e-6, 1 + 1e-6, 11)`` closed on the right,
  ours ``linspace(0, 1, 11)`` closed on the left: the test probabilities keep 1e-5 away from any
  multiple of 0.1 other than 0 and 1, where the two would put a value in different bins.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from qpebench.datasets.radar import read_radar
from qpebench.metrics import (
    HISTOGRAM_EDGES,
    BrierAccumulator,
    ContingencyAccumulator,
    ContinuousAccumulator,
    CRPSAccumulator,
    FSSAccumulator,
    HistogramAccumulator,
    box_fraction,
    histogram_centres,
    metric_set,
)

THRESHOLDS = (0.1, 1.0, 5.0, 10.0, 15.0)
SCALES = (1, 3, 5, 9, 17, 33)
LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)
# pysteps name → ours (pysteps calls the equitable threat score GSS, Gilbert skill score)
PYSTEPS_CATEGORICAL = {
    "POD": "pod",
    "FAR": "far",
    "CSI": "csi",
    "GSS": "ets",
    "HSS": "hss",
    "BIAS": "fbias",
}
SCORES_CATEGORICAL = {
    "probability_of_detection": "pod",
    "false_alarm_ratio": "far",
    "threat_score": "csi",
    "equitable_threat_score": "ets",
    "heidke_skill_score": "hss",
    "frequency_bias": "fbias",
}


@pytest.fixture(scope="module")
def pysteps_verification():
    return pytest.importorskip("pysteps.verification")


@pytest.fixture(scope="module")
def scores_pkg():
    return pytest.importorskip("scores")


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


def probability_of(pred):
    """A probability of rain ≥ 1 mm/h from a rate, kept 1e-5 away from interior bin edges."""
    p = 1.0 - np.exp(-pred)
    edge = np.round(p * 10) / 10
    near = (np.abs(p - edge) < 1e-5) & (edge > 0) & (edge < 1)
    return np.where(near, edge + 2e-5, p)


def quantiles_of(pred):
    """Quantile fields ``(N, Q, H, W)`` at :data:`LEVELS` around a rate."""
    return pred[:, None] * np.array([0.3, 0.6, 1.0, 1.6, 2.5])[None, :, None, None]


def ours(pred, obs, valid):
    accs = (
        ContingencyAccumulator(THRESHOLDS),
        ContinuousAccumulator(),
        FSSAccumulator(THRESHOLDS[1:4], SCALES),
    )
    out: dict[str, float] = {}
    for acc in accs:
        acc.update(pred, obs, valid)
        out.update(acc.result())
    return out


def check_against_pysteps(pysteps_verification, pred, obs, valid):
    cat, cont = pysteps_verification.detcatscores, pysteps_verification.detcontscores
    spatial = pysteps_verification.spatialscores
    p_nan, o_nan = np.where(valid, pred, np.nan), np.where(valid, obs, np.nan)
    mine = ours(pred, obs, valid)
    p_valid, o_valid = pred[valid], obs[valid]
    for t in THRESHOLDS:
        ref = cat.det_cat_fct(p_valid, o_valid, np.nextafter(t, -np.inf))
        for theirs, name in PYSTEPS_CATEGORICAL.items():
            assert mine[f"{name}@{t:g}"] == pytest.approx(ref[theirs], abs=1e-6, nan_ok=True)
    ref = cont.det_cont_fct(p_valid, o_valid, scores=["ME", "MAE", "RMSE", "corr_p"])
    for theirs, name in {"ME": "bias", "MAE": "mae", "RMSE": "rmse", "corr_p": "pearson_r"}.items():
        assert mine[name] == pytest.approx(ref[theirs], abs=1e-6)
    for t in THRESHOLDS[1:4]:
        for n in SCALES:
            state = spatial.fss_init(t, n)
            for k in range(obs.shape[0]):
                spatial.fss_accum(state, p_nan[k], o_nan[k])
            assert mine[f"fss{n}@{t:g}"] == pytest.approx(
                spatial.fss_compute(state), abs=1e-6, nan_ok=True
            )


def check_against_scores(scores_pkg, pred, obs, valid, fss_scales=SCALES) -> bool:
    """Assert equality to ``scores``; whether ours on the unpadded fields differs from its FSS."""
    from scores.categorical import BinaryContingencyManager
    from scores.continuous import additive_bias, mae, mse, rmse
    from scores.continuous.correlation import pearsonr
    from scores.spatial import fss_2d

    mine = ours(pred, obs, valid)
    p_valid, o_valid = xr.DataArray(pred[valid]), xr.DataArray(obs[valid])
    for t in THRESHOLDS:
        table = BinaryContingencyManager((p_valid >= t).astype(float), (o_valid >= t).astype(float))
        for theirs, name in SCORES_CATEGORICAL.items():
            ref = float(getattr(table, theirs)())
            assert mine[f"{name}@{t:g}"] == pytest.approx(ref, abs=1e-6, nan_ok=True), name
    for ref, name in (
        (mse(p_valid, o_valid), None),
        (rmse(p_valid, o_valid), "rmse"),
        (mae(p_valid, o_valid), "mae"),
        (additive_bias(p_valid, o_valid), "bias"),
        (pearsonr(p_valid, o_valid), "pearson_r"),
    ):
        value = mine["rmse"] ** 2 if name is None else mine[name]
        assert value == pytest.approx(float(ref), abs=1e-6), name
    # scores' zero-padded windows: ours on the field with one more row and column of no data
    padding = ((0, 0), (0, 1), (0, 1))
    fss_padded = FSSAccumulator(THRESHOLDS[1:3], fss_scales)
    fss_padded.update(np.pad(pred, padding), np.pad(obs, padding), np.pad(valid, padding))
    padded = fss_padded.result()
    dims = ("field", "y", "x")
    p_nan = xr.DataArray(np.where(valid, pred, np.nan), dims=dims)
    o_nan = xr.DataArray(np.where(valid, obs, np.nan), dims=dims)
    differs = []
    for t in THRESHOLDS[1:3]:
        for n in fss_scales:
            ref = fss_2d(
                p_nan,
                o_nan,
                event_threshold=float(np.nextafter(t, -np.inf)),  # their event is ">"
                window_size=(n, n),
                spatial_dims=("y", "x"),
                zero_padding=True,
                reduce_dims=list(dims),
            )
            assert padded[f"fss{n}@{t:g}"] == pytest.approx(float(ref), abs=1e-6), (t, n)
            differs.append(abs(mine[f"fss{n}@{t:g}"] - float(ref)) > 1e-9)
    return any(differs)


def check_probabilistic(scores_pkg, pysteps_verification, pred, obs, valid):
    from scores.continuous import quantile_score
    from scores.probability import brier_score

    prob, quant = probability_of(pred), quantiles_of(pred)
    brier, crps = BrierAccumulator(1.0), CRPSAccumulator(LEVELS)
    brier.update(prob, obs, valid)
    crps.update(quant, obs, valid)
    p_valid, o_valid = prob[valid], obs[valid]
    event = (o_valid >= 1.0).astype(float)
    ref = brier_score(xr.DataArray(p_valid), xr.DataArray(event))
    assert brier.result()["brier@1"] == pytest.approx(float(ref), abs=1e-6)
    diagram = pysteps_verification.probscores.reldiag_init(1.0, n_bins=10, min_count=1)
    pysteps_verification.probscores.reldiag_accum(diagram, p_valid, o_valid)
    forecast_mean, observed = pysteps_verification.probscores.reldiag_compute(diagram)
    curve = brier.curves()["reliability@1"]
    assert curve["count"] == diagram["num_idx"].tolist()
    for theirs, mine in ((forecast_mean, "forecast_mean"), (observed, "observed_frequency")):
        assert np.array([np.nan if v is None else v for v in curve[mine]]) == pytest.approx(
            theirs, abs=1e-6, nan_ok=True
        )
    scores = crps.result()
    total = 0.0
    for j, tau in enumerate(LEVELS):
        q_valid = quant[:, j][valid]
        ref = float(quantile_score(xr.DataArray(q_valid), xr.DataArray(o_valid), tau))
        assert scores[f"pinball@{tau:g}"] == pytest.approx(ref, abs=1e-6)
        assert scores[f"coverage@{tau:g}"] == pytest.approx(np.mean(o_valid <= q_valid), abs=1e-12)
        total += ref
    assert scores["crps"] == pytest.approx(2 * total / len(LEVELS), abs=1e-6)


def check_histogram(pred, obs, valid):
    hist = HistogramAccumulator()
    hist.update(pred, obs, valid)
    bins = np.searchsorted(HISTOGRAM_EDGES[1:], [pred[valid], obs[valid]], side="right")
    centres = histogram_centres()
    p_rep, o_rep = centres[bins[0]], centres[bins[1]]
    scores = hist.result()
    assert scores["wasserstein"] == pytest.approx(
        stats.wasserstein_distance(p_rep, o_rep), rel=1e-9, abs=1e-12
    )
    assert scores["ks"] == pytest.approx(stats.ks_2samp(p_rep, o_rep).statistic, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_every_score_equals_pysteps_on_random_fields(pysteps_verification, seed):
    check_against_pysteps(pysteps_verification, *random_fields(seed))


@pytest.mark.parametrize("seed", [0, 1])
def test_every_score_equals_scores_on_random_fields(scores_pkg, seed):
    # the one-cell difference is real: where rain reaches the edges, ours on the field differs
    assert check_against_scores(scores_pkg, *random_fields(seed))


@pytest.mark.parametrize("seed", [0, 1])
def test_probabilistic_scores_equal_scores_and_pysteps(scores_pkg, pysteps_verification, seed):
    check_probabilistic(scores_pkg, pysteps_verification, *random_fields(seed))


@pytest.mark.parametrize("seed", [0, 1])
def test_histogram_distances_equal_scipy_on_binned_values(seed):
    check_histogram(*random_fields(seed))


@pytest.mark.realdata
def test_every_score_equals_the_oracles_on_real_opera_fields(
    real_data, pysteps_verification, scores_pkg
):
    pred, obs, valid = real_fields(real_data)
    assert (obs[valid] >= 1).sum() > 1000 and (~valid).sum() > 0  # rain and gaps to score
    check_against_pysteps(pysteps_verification, pred, obs, valid)
    check_against_scores(scores_pkg, pred, obs, valid, fss_scales=(1, 9, 33))
    check_probabilistic(scores_pkg, pysteps_verification, pred, obs, valid)
    check_histogram(pred, obs, valid)


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


def test_fss_equals_a_direct_sum_over_centred_windows():
    pred, obs, valid = random_fields(4, shape=(2, 23, 31))
    acc = FSSAccumulator([1.0], [1, 7, 33])  # 33 is wider than the fields
    acc.update(pred, obs, valid)
    for n in (1, 7, 33):
        fp = box_fraction(valid & (pred >= 1.0), n)
        fo = box_fraction(valid & (obs >= 1.0), n)
        direct = 1 - ((fp - fo) ** 2).sum() / ((fp**2).sum() + (fo**2).sum())
        assert acc.result()[f"fss{n}@1"] == pytest.approx(direct, abs=1e-12)


def test_box_fraction_is_a_zero_padded_centred_window():
    events = np.zeros((1, 7, 7), bool)
    events[0, 0, 0] = events[0, 3, 3] = True
    frac = box_fraction(events, 3)
    assert frac[0, 0, 0] == pytest.approx(1 / 9)  # the corner window holds one event
    assert frac[0, 1, 1] == pytest.approx(1 / 9) and frac[0, 2, 2] == pytest.approx(1 / 9)
    assert frac[0, 5, 5] == 0.0
    assert box_fraction(events, 1)[0].sum() == 2
    rect = np.zeros((1, 4, 6), bool)
    rect[0, 0, 5] = True
    assert box_fraction(rect, 3)[0, :2, 4:].tolist() == [[1 / 9, 1 / 9], [1 / 9, 1 / 9]]
    assert box_fraction(rect, 3)[0].sum() == pytest.approx(4 / 9)


def test_fss_refuses_even_windows_and_mismatched_merges():
    with pytest.raises(ValueError, match="odd and positive"):
        FSSAccumulator([1.0], [4])
    with pytest.raises(ValueError, match="same settings"):
        FSSAccumulator([1.0], [3]).merge(FSSAccumulator([1.0], [5]))
    with pytest.raises(ValueError, match="predictions contain NaN"):
        FSSAccumulator().update(np.full((2, 2), np.nan), np.zeros((2, 2)), np.ones((2, 2), bool))
