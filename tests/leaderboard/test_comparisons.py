"""Comparisons at render time from saved day states: the run's numbers, and tests over seeds."""

from __future__ import annotations

import json

import pytest
from tests.benchmark.jobs import SETTINGS, Scaled, evaluate, write_job

from qpebench.evaluation import DayStates, paired_tests
from qpebench.leaderboard.aggregate import group_records
from qpebench.leaderboard.comparisons import holm
from qpebench.leaderboard.formats import markdown
from qpebench.leaderboard.page import page
from qpebench.leaderboard.tables import paired_table, paired_vs_best
from qpebench.models import build_model
from qpebench.records import load_record
from qpebench.states import read_states

#: The Auto-Estimator scaled per seed: B's seeds are A's in another order (no difference between
#: A and B on average over seeds, a large one on each seed); C underestimates every rate.
FACTORS = {"A": (0.6, 1.0, 1.6), "B": (1.6, 0.6, 1.0), "C": (0.25, 0.3, 0.2)}


def loaded(paths):
    """Records and their day states, read back from the job folders."""
    records = [load_record(p) for p in paths]
    return records, [read_states(p, r) for p, r in zip(paths, records, strict=True)]


@pytest.fixture(scope="module")
def scaled_jobs(tiny_store, tmp_path_factory):
    """Job folders of A, B and C (three seeds each) and of D (factor 0.5, seed 0 only)."""
    run = tmp_path_factory.mktemp("runs") / "run-1"
    paths = {}
    for name, factors in FACTORS.items():
        for seed, factor in enumerate(factors):
            model = Scaled(name, factor)
            paths[name, seed] = write_job(run, model, evaluate(model, tiny_store, seed), seed)
    model = Scaled("D", 0.5)
    paths["D", 0] = write_job(run, model, evaluate(model, tiny_store, 0), 0)
    return paths


def by_key(comparisons):
    return {(c.model, c.vs, c.test_set, c.metric): c for c in comparisons}


def test_comparisons_from_saved_states_equal_the_runs_paired_tests(
    tmp_path, tiny_store, tiny_split
):
    bands = ["IR10.8"]
    models = {name: build_model(name, frames=1, bands=bands) for name in ("zero_rain", "gpi")}
    models["power_law"] = build_model("power_law", frames=1, bands=bands)
    models["power_law"].fit(tiny_split, seed=0, progress=False)
    evaluations = {name: evaluate(model, tiny_store, seed=0) for name, model in models.items()}
    want = {
        (a, test_set, b, metric): test
        for a, by_set in paired_tests(evaluations, SETTINGS).items()
        for test_set, others in by_set.items()
        for b, metrics in others.items()
        for metric, test in metrics.items()
    }
    assert len(want) == 3 * 2 * 2 * 2  # models × partners × test sets × paired metrics
    paths = [write_job(tmp_path, models[n], evaluations[n], seed=0) for n in models]
    board = group_records(*loaded(paths))
    got = {
        "|".join((c.model, c.test_set, c.vs, c.metric)): {
            "diff": c.diff,
            "ci": None if c.ci is None else list(c.ci),
            "p_value": c.p_value,
        }
        for c in board.comparisons
    }
    assert all(c.seeds == (0,) for c in board.comparisons)
    # identical numbers, to the last bit (JSON writes every float exactly, NaN as NaN)
    assert json.dumps(got, sort_keys=True) == json.dumps(
        {
            "|".join(k): {"diff": t["diff"], "ci": t["ci"], "p_value": t["p_value"]}
            for k, t in want.items()
        },
        sort_keys=True,
    )
    assert got["gpi|id_test|zero_rain|csi@1"]["p_value"] < 0.01


def test_the_seed_day_test_finds_a_real_difference_and_not_a_seed_artefact(scaled_jobs):
    paths = [p for (name, _), p in scaled_jobs.items() if name != "D"]
    board = group_records(*loaded(paths))
    found = by_key(board.comparisons)
    real = found["A", "C", "id_test", "csi@1"]
    assert real.seeds == (0, 1, 2) and real.over_seeds
    assert real.diff > 0.05 and real.p_value < 0.01 and real.ci[0] > 0
    # A and B hold the same three models, seeded differently: no difference on average ...
    null = found["A", "B", "id_test", "csi@1"]
    assert abs(null.diff) < 1e-12 and null.ci[0] < 0 < null.ci[1]
    assert null.p_value > 0.2 and found["B", "A", "id_test", "csi@1"].p_value > 0.2
    # ... although each seed alone differs clearly: the day test of one seed would claim
    one_seed = group_records(*loaded([scaled_jobs["A", 0], scaled_jobs["B", 0]])).comparisons
    day_tests = [c for c in one_seed if c.test_set == "id_test" and c.metric == "csi@1"]
    assert min(c.p_value for c in day_tests) < 0.01
    assert all(not c.over_seeds for c in day_tests)


def test_holm_adjusts_in_steps():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5] and holm([]) == []
    assert holm([0.4, 0.3]) == pytest.approx([0.6, 0.6])  # never above 1, never decreasing


def test_records_of_other_days_or_settings_are_never_paired(scaled_jobs):
    records, states = loaded([scaled_jobs["A", 0], scaled_jobs["D", 0]])
    table = states[1]["id_test"]
    states[1] = {**states[1], "id_test": DayStates(table.layout, table.days[1:], table.states[1:])}
    board = group_records(records, states)
    assert {c.test_set for c in board.comparisons} == {"ood_test/conus"}
    assert "A and D on id_test: not compared, their records do not cover the same days" in (
        board.notes
    )
    records, states = loaded([scaled_jobs["A", 0], scaled_jobs["D", 0]])
    records[1]["config"]["evaluation"]["strata"] = ["day"]  # does not change a test
    assert len(group_records(records, states).comparisons) == 2 * 2 * 2
    records[1]["config"]["evaluation"]["bootstrap"] = 100
    board = group_records(records, states)
    assert board.comparisons == ()
    assert any("evaluated with other bootstrap settings" in n for n in board.notes)


def test_too_few_days_give_no_comparison(scaled_jobs):
    records, states = loaded([scaled_jobs["A", 0], scaled_jobs["D", 0]])
    for record in records:
        record["config"]["evaluation"]["min_days"] = 13  # CONUS has 12 days, Europe 24
    board = group_records(records, states)
    assert {c.test_set for c in board.comparisons} == {"id_test"}


def test_the_board_shows_seeds_intervals_holm_and_the_number_of_comparisons(scaled_jobs):
    names = ("A", "C", "D")
    paths = [p for (name, _), p in scaled_jobs.items() if name in names]
    board = group_records(*loaded(paths))
    entries, comparisons = board.of_split("tiny"), board.comparisons_of("tiny")
    # every pair, both ways: A–C over three seeds, A–D and C–D on seed 0 only
    table = paired_table(entries, comparisons)
    assert len(table.frame) == 3 * 2 * 2 * 2 and table.tests == 2 * 2 * 2
    over = table.frame[table.frame["seeds"] == "3"]
    assert set(zip(over["model"], over["vs"], strict=True)) == {("A", "C"), ("C", "A")}
    assert (table.frame[table.frame["seeds"] == "1†"]["p (Holm)"] == "no claim").all()
    seed_day = [c for c in comparisons if c.over_seeds]
    adjusted = sorted(float(p) for p in over["p (Holm)"])
    assert adjusted == pytest.approx(sorted(holm([c.p_value for c in seed_day])), rel=1e-2)
    assert "24 comparisons in this table, 8 of them over seeds" in table.note
    assert "† one shared seed" in table.note and "no claim" in table.note
    best = paired_vs_best(entries, comparisons)
    cells = [c for c in best.frame.drop(columns="model").to_numpy().ravel() if "p " in c]
    assert best.tests == sum("Holm" in c for c in cells) >= 1
    assert any("(3 seeds)" in c for c in cells) and any("(1 seed†)" in c for c in cells)
    text = markdown(board)
    assert f"{len(cells)} comparisons in this table, {best.tests} of them over seeds" in text
    assert "Mean ± standard deviation over each model's seeds" in text
    html = page(board)
    assert "24 comparisons in this table, 8 of them over seeds" in html
    assert "seed × day bootstrap" in html and "<th>p (Holm)</th>" in html
    # one seed everywhere: the header says so, and nothing is claimed
    single = group_records(*loaded([scaled_jobs["A", 0], scaled_jobs["D", 0]]))
    text = markdown(single)
    assert "One seed per model: each score with its day-block bootstrap interval" in text
    assert "0 of them over seeds" in text and "Holm" not in text.split("Paired")[1]


def test_records_without_states_keep_their_stored_comparisons(scaled_jobs):
    records, states = loaded([scaled_jobs["A", 0], scaled_jobs["D", 0]])
    stored = {"diff": 0.25, "ci": [0.1, 0.4], "p_value": 0.004}
    for record, other in zip(records, ("D", "A"), strict=True):
        record["paired"] = {"id_test": {other: {"csi@1": stored}}}
    table = paired_table(group_records(records).entries).frame
    assert len(table) == 2 and (table["p"] == "0.004").all()
    assert table["diff"].iloc[0].mean == pytest.approx(0.25)
    # with states, the stored numbers give way to the recomputed ones
    board = group_records(records, states)
    table = paired_table(board.entries, board.comparisons)
    assert len(table.frame) == 2 * 2 * 2 and "0.004" not in set(table.frame["p"])


def test_states_must_be_one_per_record(scaled_jobs):
    records, states = loaded([scaled_jobs["A", 0]])
    with pytest.raises(ValueError, match="2 state tables for 1 records"):
        group_records(records, [*states, None])
