from __future__ import annotations

import math

import pytest

from qpebench.leaderboard.aggregate import GAP_SET, Stat, group_records
from qpebench.leaderboard.formats import fmt_stat, leaderboard_markdown
from qpebench.leaderboard.tables import (
    detail_table,
    main_table,
    paired_table,
    strata_table,
    stratum_order,
    transfer_matrices,
)
from qpebench.records import RecordError


def record(name, id_csi, ood_csi, seed=0):
    metrics = {"id_test": {"csi@1": id_csi, "rmse": 1.0, "bias": 0.1}}
    for k, v in ood_csi.items():
        metrics[f"ood_test/{k}"] = {"csi@1": v, "rmse": 2.0, "bias": None}
    return {
        "run_id": f"r{seed}",
        "created": "2026-01-01T00:00:00Z",
        "model": {"name": name, "family": "cnn", "frames": 1, "parameters": 1234},
        "metrics": metrics,
        "n_samples": {k: 10 for k in metrics},
        "split": {"name": "s", "description": "d"},
        "dataset": {"adapter": "synthetic", "version": "abc"},
        "seed": seed,
    }


def test_main_table_gap_and_order():
    recs = [record("a", 0.5, {"x": 0.3, "y": 0.1}), record("b", 0.6, {"x": 0.6, "y": 0.6})]
    table = main_table(group_records(recs).entries)
    assert list(table["model"]) == ["b", "a"]  # sorted by ID CSI@1
    a = table.set_index("model").loc["a"]
    assert a["ΔCSI@1 OOD−ID"].mean == pytest.approx((0.3 + 0.1) / 2 - 0.5)
    assert a["params"] == "1,234" and a["seeds"] == "1†"
    md = leaderboard_markdown(recs)
    assert "| b | 1† | 1 | 1,234 | 0.600 | 0.600 | 0.600 | 0.000 |" in md
    assert "–" in md  # None renders as a dash
    assert "† fewer than 3 seeds" in md
    assert set(detail_table(group_records(recs).entries)["test_set"]) == {"ID", "x", "y"}


def test_seed_aggregation_by_hand():
    recs = [
        record("a", v, {"x": v - d}, seed=s)
        for s, (v, d) in enumerate([(0.5, 0.1), (0.6, 0.3), (0.7, 0.2)])
    ]
    board = group_records(recs)
    (entry,) = board.entries
    assert entry.seeds == (0, 1, 2) and not entry.marked
    stat = entry.stat("id_test", "csi@1")
    assert stat.mean == pytest.approx(0.6) and stat.n == 3
    # sample standard deviation: sqrt(((-0.1)^2 + 0 + 0.1^2) / 2) = 0.1
    assert stat.std == pytest.approx(0.1)
    assert math.isnan(stat.lo)  # several seeds: no CI, the spread is the std
    gap = entry.stat(GAP_SET, "csi@1")  # per seed: -0.1, -0.3, -0.2
    assert gap.mean == pytest.approx(-0.2) and gap.std == pytest.approx(0.1)
    assert fmt_stat(stat) == "0.600 ± 0.100 (n=3)"
    md = leaderboard_markdown(recs)
    assert "| a | 3 | 1 | 1,234 | 0.600 ± 0.100 (n=3) |" in md and "†" not in md
    assert "seeds 0, 1, 2" in md


def test_missing_values_count_only_seeds_with_a_value():
    stat = Stat.of([0.2, None, 0.4, math.nan])
    assert stat.n == 2 and stat.mean == pytest.approx(0.3)
    assert stat.std == pytest.approx(math.sqrt(0.02))
    assert Stat.of([None]).missing and fmt_stat(Stat.of([])) == "–"


def test_single_seed_shows_interval(make_record):
    rec = make_record("a", 0)
    lo, hi = rec["intervals"]["id_test"]["csi@1"]
    stat = group_records([rec]).entries[0].stat("id_test", "csi@1")
    assert (stat.lo, stat.hi) == (lo, hi)
    assert fmt_stat(stat) == f"{stat.mean:.3f} [{lo:.3f}, {hi:.3f}]"


def test_grouping_keys(make_record):
    recs = [make_record("m", s) for s in range(3)]
    other_config = make_record("m", 3, frames=2)
    other_data = make_record("m", 4)
    other_data["dataset"]["version"] = "zzz"
    board = group_records([*recs, other_config, other_data])
    assert sorted(len(e.records) for e in board.entries) == [1, 1, 3]
    labels = sorted(e.label for e in board.entries)
    assert labels[2] == "m (2 fr.)" and labels[0] != labels[1]
    assert all(label.startswith("m (1 fr., ") for label in labels[:2])


def test_same_seed_twice_keeps_the_newer_with_a_note(make_record):
    old, new = make_record("m", 0), make_record("m", 0)
    new["created"], new["run_id"] = "2027-01-01T00:00:00Z", "newer"
    new["metrics"]["id_test"]["csi@1"] = 0.9
    board = group_records([new, old])
    assert len(board.entries[0].records) == 1
    assert board.entries[0].stat("id_test", "csi@1").mean == 0.9
    assert "left out for the newer run newer" in board.notes[0]


def test_one_seed_strata_carry_their_intervals():
    rec = record("a", 0.5, {})
    rec["strata"] = {"id_test": {"season": {"DJF": {"csi@1": 0.4, "n_samples": 12}}}}
    rec["strata_intervals"] = {"id_test": {"season": {"DJF": {"csi@1": [0.3, 0.55]}}}}
    (row,) = strata_table(group_records([rec]).entries).itertuples(index=False)
    assert fmt_stat(row[5]) == "0.400 [0.300, 0.550]"  # the csi@1 column
    two = [rec, {**rec, "seed": 1, "run_id": "r1"}]
    (row,) = strata_table(group_records(two).entries).itertuples(index=False)
    assert fmt_stat(row[5]) == "0.400 ± 0.000 (n=2)"  # several seeds: their spread


def test_oracle_models_are_kept_off_the_boards():
    plain, oracle = record("a", 0.5, {}), record("b", 0.9, {})
    oracle["model"] = {**oracle["model"], "oracle_inputs": ["cell_stage"]}
    board = group_records([plain, oracle])
    assert [e.model for e in board.entries] == ["a"]
    assert "b on s, seed 0: run r0 kept off the board (its inputs include hidden" in board.notes[0]
    assert {e.model for e in group_records([plain, oracle], oracle=True).entries} == {"a", "b"}


def test_no_record():
    with pytest.raises(RecordError, match="no result record"):
        leaderboard_markdown([])


def test_strata_and_transfer(records_v2):
    board = group_records(records_v2)
    strata = strata_table(board.of_split("europe_to_all"))
    row = strata[(strata["model"] == "static_cnn") & (strata["value"] == "DJF")].iloc[0]
    values = [
        r["strata"]["id_test"]["season"]["DJF"]["csi@1"]
        for r in records_v2
        if r["model"]["name"] == "static_cnn" and r["split"]["train_domain"] == "europe"
    ]
    assert row["csi@1"].mean == pytest.approx(sum(values) / 3) and row["n_samples"] == "10"
    matrices, notes = transfer_matrices(board)
    assert set(matrices) == {
        "early_fusion (2 fr.)",
        "early_fusion (4 fr.)",
        "prob_cnn",
        "static_cnn",
    }
    m = matrices["static_cnn"]
    assert list(m.index) == ["conus", "europe"] and list(m.columns) == ["conus", "europe", "india"]
    cell = m.loc["europe", "india"]
    expected = [
        r["metrics"]["ood_test/india"]["csi@1"]
        for r in records_v2
        if r["model"]["name"] == "static_cnn" and r["split"]["train_domain"] == "europe"
    ]
    assert cell.n == 3 and cell.mean == pytest.approx(sum(expected) / 3)
    assert notes == []


def test_transfer_needs_two_domains_and_v2(records_v1, make_record):
    assert transfer_matrices(group_records(records_v1)) == ({}, [])
    one = make_record("m", 0)
    one["split"]["test_domains"] = {"id_test": "europe"}
    assert transfer_matrices(group_records([one]))[0] == {}


def test_paired_table_attributes_each_comparison_to_its_partner_row(make_record):
    a0, b1 = make_record("A", 0), make_record("B", 0, frames=1)
    a1, b4 = make_record("A", 1), make_record("B", 1, frames=4)
    a0["run_id"] = b1["run_id"] = "run-1"
    a1["run_id"] = b4["run_id"] = "run-2"
    a0["paired"] = {
        "id_test": {"B": {"csi@1": {"diff": 0.1, "ci": [0.05, 0.15], "p_value": 0.001}}}
    }
    a1["paired"] = {"id_test": {"B": {"csi@1": {"diff": -0.05, "ci": [-0.1, 0.0], "p_value": 0.9}}}}
    b1["paired"] = b4["paired"] = {}
    entries = group_records([a0, b1, a1, b4]).of_split("europe_to_all")
    table = paired_table(entries).frame.set_index("vs")
    assert sorted(table.index) == ["B (1 fr.)", "B (4 fr.)"]
    assert table.loc["B (1 fr.)", "diff"].mean == pytest.approx(0.1)
    assert table.loc["B (1 fr.)", "p"] == "0.001"
    assert table.loc["B (4 fr.)", "diff"].mean == pytest.approx(-0.05)
    assert table.loc["B (4 fr.)", "p"] == "0.9"
    # a partner that is not on the board is left out
    a0["paired"]["id_test"]["gone"] = a0["paired"]["id_test"]["B"]
    assert "gone" not in set(paired_table(group_records([a0, b1]).entries).frame["vs"])


def test_transfer_matrix_takes_the_newest_definition_of_a_split(make_record):
    old = make_record("static_cnn", 0)
    new = make_record("static_cnn", 1)
    new["created"] = "2026-02-01T00:00:00Z"
    new["split"]["sizes"] = {**new["split"]["sizes"], "id_test": 999}
    board = group_records([old, new])
    assert len(board.entries) == 2  # two board rows: the split was redefined
    matrices, notes = transfer_matrices(board)
    (matrix,) = matrices.values()
    cell = matrix.loc["europe", "europe"]
    assert cell.n == 1 and cell.mean == pytest.approx(new["metrics"]["id_test"]["csi@1"])
    assert any("older definition of the split" in n for n in notes)


def test_stratum_order_sorts_bins_by_lower_edge_and_text_last():
    values = ["true", ">=260 K", "  ", "200-210 K", "<200 K", "-0.08", "-5-0 h", "JJA", "DJF", ""]
    assert sorted(values, key=stratum_order) == [
        "DJF",
        "JJA",
        "-5-0 h",
        "-0.08",
        "<200 K",
        "200-210 K",
        ">=260 K",
        "",
        "  ",
        "true",
    ]
