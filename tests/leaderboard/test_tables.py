from __future__ import annotations

import pytest

from qpebench.leaderboard.tables import detail_table, leaderboard_markdown, main_table


def record(name, id_csi, ood_csi):
    metrics = {"id_test": {"csi@1": id_csi, "rmse": 1.0, "bias": 0.1}}
    for k, v in ood_csi.items():
        metrics[f"ood_test/{k}"] = {"csi@1": v, "rmse": 2.0, "bias": None}
    return {
        "model": {"name": name, "family": "cnn", "frames": 1, "parameters": 1234},
        "metrics": metrics,
        "n_samples": {k: 10 for k in metrics},
        "split": {"name": "s", "description": "d"},
        "dataset": {"adapter": "synthetic", "version": "abc"},
        "seed": 0,
    }


def test_main_table_gap_and_order():
    recs = [record("a", 0.5, {"x": 0.3, "y": 0.1}), record("b", 0.6, {"x": 0.6, "y": 0.6})]
    table = main_table(recs)
    assert list(table["model"]) == ["b", "a"]  # sorted by ID CSI@1
    a = table.set_index("model").loc["a"]
    assert a["ΔCSI@1 OOD−ID"] == pytest.approx((0.3 + 0.1) / 2 - 0.5)
    assert a["params"] == "1,234"
    md = leaderboard_markdown(recs)
    assert "| b | 1 | 1,234 | 0.600 | 0.600 | 0.600 | 0.000 |" in md
    assert "–" in md  # None renders as a dash
    assert set(detail_table(recs)["test_set"]) == {"ID", "x", "y"}


def test_no_record():
    with pytest.raises(ValueError, match="no result record"):
        leaderboard_markdown([])
