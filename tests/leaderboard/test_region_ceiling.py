"""``qpebench report ceiling``: every number recomputed from the records of the regions' splits."""

from __future__ import annotations

import numpy as np
import pytest
from tests.benchmark.test_cli import tiny_overrides

from qpebench.cli import main
from qpebench.leaderboard.region_ceiling import region_ceiling_report
from qpebench.leaderboard.sources import find_records, load_records
from qpebench.records import RecordError

pytestmark = pytest.mark.slow

ORACLE = "[cell_cover,cell_stage,shield_trend]"


def region_overrides(tmp_path, split, *extra):
    return tiny_overrides(
        tmp_path,
        "data.regions.conus.n_samples=64",
        "data.regions.conus.years=[2021,2024]",
        f"split={split}",
        "seeds=[0,1,2]",
        "evaluation.min_days=2",
        "evaluation.bootstrap=100",
        *extra,
    )


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    """Static, fused (2 frames) and static + oracle, 3 seeds, trained in Europe and in CONUS."""
    tmp = tmp_path_factory.mktemp("ceiling")
    for split in ("synthetic_europe_id", "synthetic_conus_id"):
        plain = ["models=[static_cnn,early_fusion]", "+model_params.early_fusion.frames=2"]
        assert main(["run", *region_overrides(tmp, split, *plain)]) == 0
        oracle = ["models=[static_cnn]", f"+model_params.static_cnn.oracle_inputs={ORACLE}"]
        assert main(["run", *region_overrides(tmp, split, *oracle)]) == 0
    records, states = load_records(find_records([tmp / "runs"]).files)
    return tmp, records, states


def group(records, split, name, oracle):
    return sorted(
        (
            r
            for r in records
            if r["split"]["name"] == split
            and r["model"]["name"] == name
            and bool(r["model"]["oracle_inputs"]) == oracle
        ),
        key=lambda r: r["seed"],
    )


def scores(records, metric):
    return np.array([r["metrics"]["id_test"][metric] for r in records])


SPLITS = {"europe": "synthetic_europe_id", "conus": "synthetic_conus_id"}


def test_each_row_is_the_regions_records(regions):
    _, records, states = regions
    report = region_ceiling_report(records, states)
    assert set(report.tables) == {"csi@1", "rmse"}
    for metric, table in report.tables.items():
        assert table["region"].tolist() == ["conus"] * 4 + ["europe"] * 4  # splits by name
        for region, split in SPLITS.items():
            rows = table[table["region"] == region]
            truth = group(records, split, "static_cnn", False)[0]["split"]["truth_ceiling"]
            assert rows.iloc[0]["configuration"] == "radar vs truth"
            assert rows.iloc[0][metric.upper()] == f"{truth['id_test'][metric]:.3f}"
            names = [c.split(" (")[0] for c in rows["configuration"].iloc[1:]]
            assert names == ["static_cnn", "early_fusion", "static_cnn"]  # reference first
            assert "+ oracle" in rows["configuration"].iloc[3]
            for (_, row), (name, oracle) in zip(
                rows.iloc[1:].iterrows(),
                (("static_cnn", False), ("early_fusion", False), ("static_cnn", True)),
                strict=True,
            ):
                values = scores(group(records, split, name, oracle), metric)
                stat = row[metric.upper()]
                assert stat.n == 3 and stat.mean == pytest.approx(values.mean(), abs=1e-12)
                assert stat.std == pytest.approx(values.std(ddof=1), abs=1e-12)
            fused = group(records, split, "early_fusion", False)[0]["input_window_min"]
            assert rows.iloc[2]["window (min)"] == f"{fused['id_test']:g}"


def test_the_differences_verdicts_and_shares_follow_the_seed_level_tests(regions):
    _, records, states = regions
    report = region_ceiling_report(records, states)
    # both directions, two regions, two non-reference configurations, CSI@1 and RMSE
    assert report.verdicts.family == 2 * 2 * 2 * 2
    for region, split in SPLITS.items():
        table = report.tables["csi@1"]
        rows = table[table["region"] == region]
        ref = scores(group(records, split, "static_cnn", False), "csi@1").mean()
        fused = scores(group(records, split, "early_fusion", False), "csi@1").mean()
        oracle = scores(group(records, split, "static_cnn", True), "csi@1").mean()
        diff = float(rows.iloc[2]["Δ vs reference"].split(" ")[0])
        assert diff == pytest.approx(fused - ref, abs=5e-4)  # printed to 3 places
        label = rows.iloc[3]["configuration"]
        verdict = report.verdicts.verdict(label, split, "csi@1", "static_cnn")
        assert rows.iloc[3]["verdict"] == verdict
        want = f"{(fused - ref) / (oracle - ref):.2f}" if verdict.startswith("better") else "–"
        assert rows.iloc[2]["share of the oracle gain"] == want
    for (_, _, _, _), (test, adjusted) in report.verdicts.tests.items():
        assert adjusted >= test.p_value


def test_configurations_not_in_every_region_are_left_out_with_a_note(regions, tmp_path):
    _, records, states = regions
    extra = ["models=[early_fusion]", "+model_params.early_fusion.frames=3", "seeds=[0]"]
    assert main(["run", *region_overrides(tmp_path, "synthetic_europe_id", *extra)]) == 0
    more, more_states = load_records(find_records([tmp_path / "runs"]).files)
    report = region_ceiling_report([*records, *more], [*states, *more_states])
    assert all(len(t) == 8 for t in report.tables.values())
    assert any("left out: early_fusion (3 fr., all 7)" in n for n in report.notes)


def test_one_split_per_region(regions):
    _, records, states = regions
    twin = [{**r, "split": {**r["split"], "name": "another"}} for r in records]
    twin = [r for r in twin if r["split"]["train_domain"] == "europe"]
    twin_states = [
        s for r, s in zip(records, states, strict=True) if r["split"]["train_domain"] == "europe"
    ]
    with pytest.raises(RecordError, match=r"several splits train in \['europe'\]"):
        region_ceiling_report([*records, *twin], [*states, *twin_states])


def test_the_command_writes_markdown_and_html(regions, capsys):
    tmp, _, _ = regions
    out = tmp / "report"
    assert main(["report", "ceiling", str(tmp / "runs"), "--out", str(out)]) == 0
    md = (out / "temporal_ceiling.md").read_text()
    assert md.startswith("# Ceiling of the temporal gain per region")
    assert "## CSI@1 on each region's ID set" in md and "Holm-adjusted over the 16" in md
    page = (out / "temporal_ceiling.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<h2>RMSE on each region" in page
    capsys.readouterr()
    assert main(["report", "ceiling", str(tmp / "runs"), "--reference", "gpi"]) == 2
    assert "no record of the reference model 'gpi'" in capsys.readouterr().err
