"""``qpebench report ceiling``: every number recomputed from the records of the regions' splits."""

from __future__ import annotations

import numpy as np
import pytest
from tests.benchmark.test_cli import tiny_overrides

from qpebench.cli import main
from qpebench.leaderboard.aggregate import group_records
from qpebench.leaderboard.comparisons import holm
from qpebench.leaderboard.input_config import oracle_share
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
    # a fourth seed of Europe's reference: the tests pair the seeds both sides have
    more = ["models=[static_cnn]", "seeds=[3]"]
    assert main(["run", *region_overrides(tmp, "synthetic_europe_id", *more)]) == 0
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
                chosen = group(records, split, name, oracle)
                values = scores(chosen, metric)
                stat = row[metric.upper()]
                assert row["seeds"] == ", ".join(str(r["seed"]) for r in chosen)
                assert stat.n == len(chosen) and stat.mean == pytest.approx(
                    values.mean(), abs=1e-12
                )
                assert stat.std == pytest.approx(values.std(ddof=1), abs=1e-12)
            assert rows.iloc[1]["seeds"] == ("0, 1, 2, 3" if region == "europe" else "0, 1, 2")
            fused = group(records, split, "early_fusion", False)[0]["input_window_min"]
            assert rows.iloc[2]["window (min)"] == f"{fused['id_test']:g}"


def test_the_differences_verdicts_and_shares_follow_the_seed_level_tests(regions):
    _, records, states = regions
    report = region_ceiling_report(records, states)
    # both directions, two regions, two non-reference configurations, CSI@1 and RMSE
    assert report.verdicts.family == 2 * 2 * 2 * 2 and report.replicates == 1000
    tests = report.verdicts.tests
    keys = list(tests)
    want = holm([tests[k][0].p_value for k in keys])  # one family over the whole report
    assert [tests[k][1] for k in keys] == pytest.approx(want, abs=1e-12)
    for metric in ("csi@1", "rmse"):
        table = report.tables[metric]
        for region, split in SPLITS.items():
            rows = table[table["region"] == region]
            ref = {r["seed"]: r for r in group(records, split, "static_cnn", False)}
            fused = group(records, split, "early_fusion", False)
            oracle = group(records, split, "static_cnn", True)
            shared = [r["seed"] for r in fused]  # 0, 1, 2: Europe's seed 3 has no partner
            diff = np.mean(scores(fused, metric)) - np.mean(
                [ref[k]["metrics"]["id_test"][metric] for k in shared]
            )
            cell = rows.iloc[2]["Δ vs reference"]
            assert float(cell.split(" ")[0]) == pytest.approx(diff, abs=5e-4)  # 3 places
            for row, label in (
                (rows.iloc[2], rows.iloc[2]["configuration"]),
                (rows.iloc[3], rows.iloc[3]["configuration"]),
            ):
                above, below = (tests[label, split, metric, d] for d in ("above", "below"))
                sign = 1 if metric == "csi@1" else -1  # the better side of A − B
                lo, hi = above[0].ci
                if above[0].diff * sign > 0:
                    claim = above[1] < 0.05 and min(sign * lo, sign * hi) > 0
                    word = "better"
                else:
                    claim = below[1] < 0.05 and min(-sign * lo, -sign * hi) > 0
                    word = "worse"
                want_verdict = f"{word} than static_cnn" if claim else "no significant difference"
                assert row["verdict"] == want_verdict
            gain = np.mean(scores(oracle, metric)) - np.mean(
                [ref[k]["metrics"]["id_test"][metric] for k in shared]
            )
            share = f"{diff / gain:.2f}"
            oracle_better = rows.iloc[3]["verdict"].startswith("better")
            assert rows.iloc[2]["share of the oracle gain"] == (share if oracle_better else "–")
            board = group_records(
                [*group(records, split, "static_cnn", False), *fused, *oracle],
                compare=False,
                oracle=True,
            )
            entries = {(e.model, bool(e.first["model"]["oracle_inputs"])): e for e in board.entries}
            value = oracle_share(
                entries["static_cnn", False],
                entries["early_fusion", False],
                entries["static_cnn", True],
                "id_test",
                metric,
            )
            assert value == pytest.approx(diff / gain, rel=1e-9)


def test_configurations_not_in_every_region_are_left_out_with_a_note(regions, tmp_path):
    _, records, states = regions
    extra = ["models=[early_fusion]", "+model_params.early_fusion.frames=3", "seeds=[0]"]
    assert main(["run", *region_overrides(tmp_path, "synthetic_europe_id", *extra)]) == 0
    more, more_states = load_records(find_records([tmp_path / "runs"]).files)
    report = region_ceiling_report([*records, *more], [*states, *more_states])
    assert all(len(t) == 8 for t in report.tables.values())
    assert any("left out: early_fusion (3 fr., all 7)" in n for n in report.notes)


def test_the_reference_must_be_in_every_region(regions):
    _, records, states = regions
    kept = [
        (r, s)
        for r, s in zip(records, states, strict=True)
        if not (
            r["split"]["name"] == "synthetic_conus_id"
            and r["model"]["name"] == "static_cnn"
            and not r["model"]["oracle_inputs"]
        )
    ]
    with pytest.raises(RecordError, match="no configuration of the reference model 'static_cnn'"):
        region_ceiling_report([r for r, _ in kept], [s for _, s in kept])


def test_two_configurations_with_one_label_are_refused(regions):
    _, records, states = regions
    fewer = []
    for r, s in zip(records, states, strict=True):
        if r["model"]["oracle_inputs"]:
            fields = ["cell_cover"]
            fewer.append(
                (
                    {
                        **r,
                        "model": {**r["model"], "oracle_inputs": fields},
                        "model_config": {**r["model_config"], "oracle_inputs": fields},
                    },
                    s,
                )
            )
    with pytest.raises(RecordError, match=r"share the label\(s\) \['static_cnn \(1 fr"):
        region_ceiling_report([*records, *(r for r, _ in fewer)], [*states, *(s for _, s in fewer)])


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
    assert "no configuration of the reference model 'gpi'" in capsys.readouterr().err
