"""``qpebench report input-config``: every number recomputed from the records it read."""

from __future__ import annotations

import numpy as np
import pytest
from tests.benchmark.test_cli import tiny_overrides

from qpebench.cli import main
from qpebench.leaderboard.comparisons import Comparison
from qpebench.leaderboard.input_config import Verdicts, input_config_report
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
    sums = np.sum(parts, axis=0)
    for column, values in (
        ("full drop", full),
        ("radar", parts[2]),
        ("sum", sums),
        ("interaction", full - sums),
    ):
        cell = row[column]
        mean, rest = cell.split(" ± ")
        std, interval = rest.split(" [")
        assert float(mean) == pytest.approx(values.mean(), abs=5e-4), column
        assert float(std) == pytest.approx(values.std(ddof=1), abs=5e-4), column
        lo, hi = (float(x) for x in interval.rstrip("]").split(", "))
        assert lo <= hi, column


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
    label = next(c for c in table.columns if "+ oracle" in c)
    verdict = report.verdicts.verdict(label, "id_test", "csi@1", "static_cnn")
    want = (fused - ref) / (oracle - ref)
    assert row[share[0]] == (f"{want:.2f}" if verdict.startswith("better") else "–")
    assert len(table) == 4 + 12  # every test set, the factor sets too


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


def comparison(model, vs, metric, diff, ci, p, seeds=(0, 1, 2)):
    return Comparison("s", model, vs, "id_test", metric, seeds, diff, ci, p, 0.95)


@pytest.mark.parametrize(
    ("metric", "above", "below", "want"),
    [
        # CSI: higher is better; A − B > 0 with its interval above zero
        ("csi@1", (0.02, (0.01, 0.03), 0.001), (-0.02, (-0.03, -0.01), 0.999), "better"),
        ("csi@1", (-0.02, (-0.03, -0.01), 0.999), (0.02, (0.01, 0.03), 0.001), "worse"),
        ("csi@1", (0.02, (-0.01, 0.03), 0.001), (-0.02, (-0.03, 0.01), 0.999), "no significant"),
        # RMSE: lower is better; A − B < 0 with its interval below zero
        ("rmse", (-0.05, (-0.08, -0.02), 0.001), (0.05, (0.02, 0.08), 0.999), "better"),
        ("rmse", (0.05, (0.02, 0.08), 0.999), (-0.05, (-0.08, -0.02), 0.001), "worse"),
        ("bias", (0.05, (0.02, 0.08), 0.001), (-0.05, (-0.08, -0.02), 0.999), "no verdict"),
    ],
)
def test_a_verdict_needs_the_adjusted_p_and_the_interval_on_the_better_side(
    metric, above, below, want
):
    tests = {
        ("A", "id_test", metric, "above"): (comparison("A", "R", metric, *above), above[2]),
        ("A", "id_test", metric, "below"): (comparison("R", "A", metric, *below), below[2]),
    }
    assert Verdicts(tests).verdict("A", "id_test", metric, "ref").startswith(want)


def test_two_seeds_make_no_claim():
    tests = {
        ("A", "id_test", "csi@1", d): (
            comparison("A", "R", "csi@1", 0.02, (0.01, 0.03), 0.001, seeds=(0, 1)),
            0.001,
        )
        for d in ("above", "below")
    }
    assert Verdicts(tests).verdict("A", "id_test", "csi@1", "ref") == "2 seeds: no claim"


def test_twin_configurations_get_the_settings_that_tell_them_apart(study):
    _, records, states = study
    longer = [
        {
            **r,
            "model_config": {
                **r["model_config"],
                "train": {**r["model_config"]["train"], "epochs": 7},
            },
        }
        for r in records
        if r["model"]["name"] == "early_fusion"
    ]
    more = [s for r, s in zip(records, states, strict=True) if r["model"]["name"] == "early_fusion"]
    report = input_config_report([*records, *longer], [*states, *more])
    labels = report.skill["id_test"]["configuration"].tolist()
    assert len(labels) == len(set(labels)) == 4
    assert sum("train.epochs=7" in label for label in labels) == 1
    assert sum("train.epochs=1" in label for label in labels) == 1


def variant(records, states, **card):
    """Copies of the fused records with other model settings (a configuration of their own)."""
    out = [
        (
            {
                **r,
                "model": {**r["model"], **card},
                "model_config": {**r["model_config"], **card},
            },
            s,
        )
        for r, s in zip(records, states, strict=True)
        if r["model"]["name"] == "early_fusion"
    ]
    return [r for r, _ in out], [s for _, s in out]


def test_the_design_line_names_the_one_factor_variants(study):
    _, records, states = study
    frames, frame_states = variant(records, states, frames=3)
    step, step_states = variant(records, states, step=2)
    both, both_states = variant(records, states, frames=3, step=2)  # two factors at once
    report = input_config_report([*records, *frames, *step], [*states, *frame_states, *step_states])
    lines = [d for d in report.design if d.startswith("Design:")]
    assert lines == [
        "Design: one factor at a time from early_fusion (2 fr., 15 min, all 7) (frames: 3; step: 2)"
    ]
    # a configuration two factors away from the base: no one-factor design to state
    report = input_config_report([*records, *both], [*states, *both_states])
    assert not [d for d in report.design if d.startswith("Design:")]
