from __future__ import annotations

import csv
import io
import math

import pytest

from qpebench.leaderboard.aggregate import SCORE_COLUMNS, group_records
from qpebench.leaderboard.formats import csv_text, latex, markdown, tex_escape


def test_csv_is_tidy(records_v2):
    board = group_records(records_v2)
    rows = list(csv.DictReader(io.StringIO(csv_text(board))))
    assert list(rows[0]) == list(SCORE_COLUMNS)
    key = {
        "split": "europe_to_all",
        "model": "static_cnn",
        "test_set": "id_test",
        "metric": "csi@1",
    }
    (row,) = [r for r in rows if all(r[k] == v for k, v in key.items()) and not r["stratum_column"]]
    values = [
        r["metrics"]["id_test"]["csi@1"]
        for r in records_v2
        if r["split"]["name"] == "europe_to_all" and r["model"]["name"] == "static_cnn"
    ]
    mean = sum(values) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    assert row["seeds"] == "3" and float(row["mean"]) == pytest.approx(mean)
    assert float(row["std"]) == pytest.approx(std) and row["ci_lo"] == row["ci_hi"] == ""
    single = [
        r
        for r in rows
        if r["model"] == "prob_cnn"
        and r["metric"] == "csi@1"
        and r["test_set"] == "id_test"
        and not r["stratum_column"]
    ]
    assert all(
        r["std"] == "" and float(r["ci_lo"]) < float(r["mean"]) < float(r["ci_hi"]) for r in single
    )
    strata = [r for r in rows if r["stratum_column"] == "season" and r["stratum_value"] == "DJF"]
    assert {r["metric"] for r in strata} == {"csi@1", "rmse", "bias", "n_samples"}
    assert any(r["test_set"] == "OOD−ID" for r in rows)


def test_latex_escapes_and_bolds(make_record):
    recs = [make_record("my_model&co", s) for s in range(3)] + [make_record("b#2", 0)]
    for r in recs[:3]:
        r["metrics"]["id_test"]["csi@1"] = 0.9  # clearly best ID CSI@1
    recs[3]["metrics"]["id_test"]["rmse"] = 0.01  # clearly best ID RMSE
    text = latex(group_records(recs), title="50% of $cost_x")
    assert r"my\_model\&co" in text and r"b\#2" in text and "my_model" not in text
    assert r"50\% of \$cost\_x" in text
    assert r"\begin{tabular}" in text and r"\toprule" in text and r"\bottomrule" in text
    row_a = next(line for line in text.splitlines() if line.startswith(r"my\_model"))
    row_b = next(line for line in text.splitlines() if line.startswith(r"b\#2"))
    assert row_a.split(" & ")[4] == r"$\mathbf{0.900 \pm 0.000}$"
    assert r"$\mathbf{0.010}$" in row_b.split(" & ")[8]
    assert r"\textsuperscript{\dag}" in row_b and r"$\Delta$CSI@1 OOD$-$ID" in text
    # every row of the main table has as many cells as the column spec; the transfer matrix
    # (train europe, three test domains) follows with four columns
    main, transfer = text.split("Transfer matrix of ", 1)
    assert all(line.count(" & ") == 11 for line in main.splitlines() if line.endswith(r"\\"))
    assert all(line.count(" & ") == 3 for line in transfer.splitlines() if line.endswith(r"\\"))
    assert r"{tabular}{llllrrrrrrrr}" in main and r"{tabular}{lrrr}" in transfer


def test_tex_escape_every_special():
    assert tex_escape(r"a_b&c%d$e#f{g}h~i^j\k") == (
        r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
    )


def test_markdown_v2_sections(records_v2):
    text = markdown(group_records(records_v2))
    for heading in (
        "# Leaderboard",
        "## europe_to_all",
        "### Strata (CSI@1, ID test set)",
        "#### season",
        "#### day",
        "## Transfer matrix (CSI@1)",
    ):
        assert f"\n{heading}\n" in f"\n{text}"
    assert "| static_cnn | 3 | 1 | 1,234 |" in text and "| prob_cnn | 1† |" in text
    assert "| model | DJF | JJA |" in text  # one column per stratum value, calendar order
    # the transfer matrix: one row per model and training domain, one column per test domain
    transfer = text[text.index("## Transfer matrix") :]
    assert "| model | train | conus | europe | india |" in transfer
    assert transfer.count("| static_cnn | europe |") == 1 and "| static_cnn | conus |" in transfer
    # the fabricated comparisons name a model that is not on the board: no paired section
    assert "Paired comparisons" not in text


def test_markdown_paired_comparisons_against_the_best(make_record):
    good = make_record("good", 0)
    weak = make_record("weak", 0)
    good["run_id"] = weak["run_id"] = "run-1"  # compared within one run
    good["metrics"]["id_test"]["csi@1"], weak["metrics"]["id_test"]["csi@1"] = 0.6, 0.4
    good["paired"] = {
        "id_test": {"weak": {"csi@1": {"diff": 0.2, "ci": [0.1, 0.3], "p_value": 0.004}}}
    }
    weak["paired"] = {
        "id_test": {"good": {"csi@1": {"diff": -0.2, "ci": [-0.3, -0.1], "p_value": 1.0}}}
    }
    text = markdown(group_records([good, weak]))
    section = text[text.index("## Paired comparisons (CSI@1)") :]
    assert "| model | ID (best: good) |" in section
    assert "| good | best |" in section and "| weak | +0.200 (p 0.004) |" in section
    # the same model in another configuration and run: the comparison is not its own
    other = make_record("weak", 0, frames=4)
    other["metrics"]["id_test"]["csi@1"] = 0.3
    text = markdown(group_records([good, weak, other]))
    section = text[text.index("## Paired comparisons (CSI@1)") :]
    assert "| weak (1 fr.) | +0.200 (p 0.004) |" in section and "| weak (4 fr.) | – |" in section


def test_markdown_v1_keeps_the_old_layout(records_v1):
    text = markdown(group_records(records_v1))
    assert text.startswith("# europe_to_all\n\nTrain on europe")
    assert "## Detail" in text and "Strata" not in text and "Transfer" not in text


def test_dirty_and_non_causal_records_are_named(make_record):
    clean = make_record("clean", 0)
    dirty = make_record("dirty", 0)
    dirty["provenance"] = {"commit": "0123456789abcdef", "dirty": True}
    peeking = make_record("peeking", 0)
    peeking["model"]["causal"] = False
    board = group_records([clean, dirty, peeking])
    assert [e.model for e in board.entries] == ["clean", "dirty"]
    text = markdown(board)
    assert "dirty on europe_to_all, seed 0" in text and "0123456789ab with uncommitted" in text
    assert "peeking on europe_to_all, seed 0" in text and "kept off the board" in text
    assert "| peeking |" not in text


def test_records_of_an_edited_split_are_not_pooled_as_seeds(make_record):
    first = make_record("static_cnn", 0)
    edited = make_record("static_cnn", 1)
    edited["split"]["sizes"] = {**edited["split"]["sizes"], "id_test": 999}
    board = group_records([first, edited])
    assert len(board.entries) == 2 and all(len(e.records) == 1 for e in board.entries)
    assert len({e.label for e in board.entries}) == 2
    assert len(group_records([first, make_record("static_cnn", 1)]).entries) == 1


def test_a_description_edit_keeps_the_records_in_one_row(make_record):
    first = make_record("static_cnn", 0)
    second = make_record("static_cnn", 1)
    first["config"]["split"] = {"name": "s", "train": {"region": ["europe"]}, "description": "a"}
    second["config"]["split"] = {"name": "s", "train": {"region": ["europe"]}, "description": "b"}
    assert len(group_records([first, second]).entries) == 1
    second["config"]["split"]["train"] = {"region": ["conus"]}
    assert len(group_records([first, second]).entries) == 2
