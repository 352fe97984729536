"""A plugin installed through entry points: its split is selectable and its metric is evaluated,
saved in the day states and rendered; without the plugin, its records are refused in one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qpebench.errors import ConfigError
from qpebench.evaluation import EvalSettings
from qpebench.records import RecordError, load_record
from qpebench.states import read_states

PLUGIN = '''
"""A third-party plugin: one metric family and one split."""
import numpy as np

from qpebench.metrics import Accumulator
from qpebench.splits import SplitSpec


class WetFraction(Accumulator):
    """Fraction of valid pixels at or above 1 mm/h, estimated and observed."""

    def __init__(self):
        self._state = np.zeros(3)

    def settings(self):
        return {}

    def update(self, pred, obs, valid):
        ok = valid & np.isfinite(obs)
        self._state += [ok.sum(), (pred[ok] >= 1).sum(), (obs[ok] >= 1).sum()]

    def result(self):
        n = self._state[0]
        if n == 0:
            return {"wet_est": float("nan"), "wet_obs": float("nan")}
        return {"wet_est": self._state[1] / n, "wet_obs": self._state[2] / n}


split = SplitSpec.from_mapping(
    {
        "name": "plugin_europe_to_india",
        "description": "A plugin's split: Europe to India.",
        "train": {"region": ["europe"], "year": [2021, 2022]},
        "id_val": {"region": ["europe"], "year": [2023]},
        "id_test": {"region": ["europe"], "year": [2024]},
        "ood_test": {"india": {"region": ["india"]}},
    }
)
'''

ENTRY_POINTS = """
[qpebench.metrics]
wet_fraction = qpebench_plugin_demo:WetFraction

[qpebench.splits]
plugin_europe_to_india = qpebench_plugin_demo:split
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A site folder holding an installed plugin distribution (module + dist-info)."""
    site = tmp_path_factory.mktemp("site")
    (site / "qpebench_plugin_demo.py").write_text(textwrap.dedent(PLUGIN))
    dist = site / "qpebench_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: qpebench-plugin-demo\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def with_plugin(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``qpebench ARGS`` in a fresh interpreter that has the plugin installed."""
    code = (
        "import site, sys; site.addsitedir(sys.argv[1]); from qpebench.cli import main; "
        "sys.exit(main(sys.argv[2:]))"
    )
    return subprocess.run(
        [sys.executable, "-P", "-c", code, str(site), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_plugin_split_and_metric_reach_the_run_states_and_board(site, tmp_path):
    metrics = "[categorical,continuous,fss,histogram,wet_fraction]"
    done = with_plugin(
        site,
        "run",
        "data=synthetic_tiny",
        "split=plugin_europe_to_india",
        "models=[gpi]",
        "progress=false",
        "evaluation.bootstrap=50",
        f"evaluation.metrics={metrics}",
        "evaluation.ci_metrics=[csi@1,wet_est]",
        f"paths.cache={tmp_path / 'cache'}",
        f"paths.runs={tmp_path / 'runs'}",
    )
    assert done.returncode == 0, done.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("plugin_europe_to_india-")
    path = run / "gpi.seed0" / "record.json"
    record = load_record(path)
    assert set(record["metrics"]) == {"id_test", "ood_test/india"}
    assert record["config"]["evaluation"]["metrics"] == metrics.strip("[]").split(",")
    for scores in record["metrics"].values():
        assert 0.0 <= scores["wet_est"] <= 1.0 and 0.0 < scores["wet_obs"] < 1.0
    assert record["intervals"]["id_test"]["wet_est"] is not None

    board = with_plugin(site, "leaderboard", "render", str(run), "--out", str(tmp_path / "b"))
    assert board.returncode == 0, board.stderr
    text = (tmp_path / "b" / "plugin_europe_to_india.md").read_text()
    assert "wet_est" in text

    # Without the plugin, the states cannot be laid out: one line naming the family.
    with pytest.raises(RecordError, match=r"gpi.seed0.*wet_fraction"):
        read_states(path, record)


def test_an_unknown_metric_family_is_refused_before_any_training():
    with pytest.raises(ConfigError, match="each family once"):
        EvalSettings(metrics=("categorical", "categorical"))
    with pytest.raises(KeyError, match="wet_fractoin"):
        EvalSettings.from_mapping({"metrics": ["categorical", "wet_fractoin"]})
    with pytest.raises(ConfigError, match="brier"):
        EvalSettings(metrics=("categorical", "brier"))
