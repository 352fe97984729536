"""``qpebench report input-config``: every number recomputed from the records it read."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.benchmark.test_cli import tiny_overrides

from qpebench.cli import main
from qpebench.leaderboard.aggregate import Stat
from qpebench.leaderboard.input_config import input_config_report
from qpebench.leaderboard.sources import find_records, load_records
from qpebench.records import RecordError

pytestmark = pytest.mark.slow

FACTOR_YEARS = {
    f"europe_{donor}_{factor}": 2025 + 4 * d + f
    for d, donor in enumerate(("conus", "tropics", "india"))
    for f, factor in enumerate(("climate", "sensor", "radar", "step"))
}
ORACLE = "[cell_cover,cell_stage,shield_trend]"


def study_overrides(tmp_path, *extra):
    regions = [
        f"+data.regions.{name}={{n_samples: 8, years: [{year}, {year}]}}"
        for name, year in FACTOR_YEARS.items()
    ]
    return tiny_overrides(
        tmp_path,
        *regions,
        "split=synthetic_europe_factors",
        "seeds=[0,1,2]",
        "evaluation.min_days=2",
        "evaluation.bootstrap=100",
        *extra,
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Three configurations over three seeds on the factor split: static, fused, static + oracle."""
    tmp = tmp_path_factory.mktemp("study")
    plain = ["models=[static_cnn,early_fusion]", "+model_params.early_fusion.frames=2"]
    assert main(["run", *study_overrides(tmp, *plain)]) == 0
    oracle = ["models=[static_cnn]", f"+model_params.static_cnn.oracle_inputs={ORACLE}"]
    assert main(["run", *study_overrides(tmp, *oracle)]) == 0
    records, states = load_records(find_records([tmp / "runs"]).files)
    return tmp, records, states


def by_config(records):
    out = {}
    for r in records:
        key = (r["model"]["name"], r["model"]["frames"], bool(r["model"]["oracle_inputs"]))
        out.setdefault(key, []).append(r)
    return out


def scores(records, test_set, metric):
    return [r["metrics"][test_set][metric] for r in sorted(records, key=lambda r: r["seed"])]


def test_skill_tables_are_the_records_means_and_spreads(study):
    _, records, states = study
    report = input_config_report(records, states)
    groups = by_config(records)
    assert set(report.skill) == {"id_test", "ood_test/conus", "ood_test/tropics", "ood_test/india"}
    for test_set, table in report.skill.items():
        assert len(table) == 3 and table["seeds"].tolist() == [3, 3, 3]
        assert table["configuration"].iloc[0].startswith("static_cnn (1 fr.")  # reference first
        for _, row in table.iterrows():
            name, frames = row["configuration"].split(" (")[0], int(row["frames"])
            oracle = "+ oracle" in row["configuration"]
            values = scores(groups[name, frames, oracle], test_set, "csi@1")
            stat = row["CSI@1"]
            assert stat.n == 3 and stat.mean == pytest.approx(np.mean(values), abs=1e-12)
            assert stat.std == pytest.approx(np.std(values, ddof=1), abs=1e-12)
            minutes = groups[name, frames, oracle][0]["input_window_min"][test_set]
            assert row["window (min)"] == f"{minutes:g}"


def test_the_differences_and_verdicts_follow_the_seed_level_tests(study):
    _, records, states = study
    report = input_config_report(records, states)
    groups = by_config(records)
    ref = scores(groups["static_cnn", 1, False], "id_test", "csi@1")
    fused = scores(groups["early_fusion", 2, False], "id_test", "csi@1")
    row = report.skill["id_test"].iloc[[1, 2]]
    fused_row = row[row["configuration"].str.startswith("early_fusion")].iloc[0]
    diff = float(fused_row["ΔCSI@1 vs reference"].split(" ")[0])
    assert diff == pytest.approx(np.mean(fused) - np.mean(ref), abs=5e-4)  # printed to 3 places
    # both directions of every non-reference configuration, 4 sets, CSI@1 and RMSE
    assert report.verdicts.family == 2 * 2 * 4 * 2
    for (label, test_set, metric, _), (test, adjusted) in report.verdicts.tests.items():
        assert adjusted >= test.p_value
        verdict = report.verdicts.verdict(label, test_set, metric, "static_cnn")
        if adjusted >= 0.05:
            other = "below" if _ == "above" else "above"
            if report.verdicts.tests[label, test_set, metric, other][1] >= 0.05:
                assert verdict == "no significant difference"


def test_the_decomposition_is_the_per_seed_drops(study):
    _, records, states = study
    table = input_config_report(records, states).decomposition
    assert table is not None and len(table) == 3 * 3  # configurations × donors
    assert list(table.columns[2:]) == [
        "full drop",
        "climate",
        "sensor",
        "radar",
        "step",
        "sum",
        "interaction",
    ]
    group = by_config(records)["early_fusion", 2, False]
    row = table[table["configuration"].str.startswith("early_fusion") & (table["donor"] == "conus")]
    row = row.iloc[0]
    ids = np.array(scores(group, "id_test", "csi@1"))
    full = ids - scores(group, "ood_test/conus", "csi@1")
    parts = [ids - scores(group, f"ood_test/europe_conus_{f}", "csi@1") for f in FACTOR_NAMES]
    assert row["full drop"] == Stat.of(full.tolist())
    assert row["radar"] == Stat.of(parts[2].tolist())
    assert row["sum"].mean == pytest.approx(np.sum(parts, axis=0).mean(), abs=1e-12)
    assert row["interaction"].mean == pytest.approx(
        (full - np.sum(parts, axis=0)).mean(), abs=1e-12
    )


FACTOR_NAMES = ("climate", "sensor", "radar", "step")


def test_the_ceilings_come_from_the_records(study):
    _, records, states = study
    report = input_config_report(records, states)
    table = report.ceilings
    assert table is not None
    groups = by_config(records)
    truth = groups["static_cnn", 1, False][0]["split"]["truth_ceiling"]
    row = table[table["test set"] == "ID (id_test)"].iloc[0]
    assert row["radar vs truth"] == f"{truth['id_test']['csi@1']:.3f}"
    ref = np.mean(scores(groups["static_cnn", 1, False], "id_test", "csi@1"))
    oracle = np.mean(scores(groups["static_cnn", 1, True], "id_test", "csi@1"))
    fused = np.mean(scores(groups["early_fusion", 2, False], "id_test", "csi@1"))
    share = [c for c in table.columns if c.startswith("share of the oracle gain")]
    assert len(share) == 1
    want = (fused - ref) / (oracle - ref) if oracle > ref else math.nan
    assert row[share[0]] == ("–" if math.isnan(want) else f"{want:.2f}")


def test_the_command_writes_markdown_and_html(study, capsys):
    tmp, _, _ = study
    out = tmp / "report"
    assert main(["report", "input-config", str(tmp / "runs"), "--out", str(out)]) == 0
    md = (out / "input_configuration.md").read_text()
    for heading in ("# Input configuration: synthetic_europe_to_all", "## OOD decomposition"):
        assert heading.replace("synthetic_europe_to_all", "synthetic_europe_factors") in md
    assert "## Skill on ID (id_test)" in md and "## Ceilings" in md
    page = (out / "input_configuration.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<h2>OOD decomposition</h2>" in page
    capsys.readouterr()
    assert main(["report", "input-config", str(tmp / "runs"), "--reference", "gpi"]) == 2
    assert "no record of the reference model 'gpi'" in capsys.readouterr().err


def test_one_split_per_report(study):
    _, records, states = study
    other = [{**r, "split": {**r["split"], "name": "another"}} for r in records[:1]]
    with pytest.raises(RecordError, match="covers one split"):
        input_config_report([*records, *other], [*states, *states[:1]])
