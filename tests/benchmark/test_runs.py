"""Jobs, run folders and sweeps: resume, unfinished runs, DDP runs, Hydra multirun launchers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qpebench.cli import main
from qpebench.config import compose_config, run_config
from qpebench.errors import ConfigError, UnknownNameError
from qpebench.evaluation import (
    EvalSettings,
    bootstrap_weights,
    evaluate_set,
    merge_evaluations,
)
from qpebench.models import build_model
from qpebench.records import load_record
from qpebench.registry import MODELS
from qpebench.runner import job_name

REPO = Path(__file__).resolve().parents[2]
QPEBENCH = Path(sys.executable).with_name("qpebench")


def overrides(tmp: Path, *extra: str) -> list[str]:
    return [
        "data=synthetic_tiny",
        "train=smoke",
        "progress=false",
        "evaluation.bootstrap=50",
        f"paths.cache={tmp / 'cache'}",
        f"paths.runs={tmp / 'runs'}",
        *extra,
    ]


def run_folders(runs: Path) -> list[Path]:
    return sorted(p for p in runs.iterdir() if (p / "run.json").is_file())


def git_status() -> str:
    done = subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True
    )
    return done.stdout


def test_a_run_writes_only_its_run_folder(tmp_path, capsys):
    before = git_status()
    assert main(["run", *overrides(tmp_path, "models=[zero_rain,gpi]")]) == 0
    assert git_status() == before  # no tracked file changes (no board is published)
    (run,) = run_folders(tmp_path / "runs")
    assert json.loads((run / "run.json").read_text()) == {
        "jobs": ["zero_rain.seed0", "gpi.seed0"],
        "complete": True,
    }
    assert (run / "leaderboard.md").read_text().count("| gpi |") >= 1


def test_the_summary_has_one_line_per_model_and_test_set_over_the_runs_seeds(tmp_path, capsys):
    assert main(["run", *overrides(tmp_path, "models=[gpi]", "seeds=[1]")]) == 0
    capsys.readouterr()
    assert main(["run", *overrides(tmp_path, "models=[gpi,power_law]", "seeds=[0,1]")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.startswith("  ") and "CSI@1" in line]
    (run,) = run_folders(tmp_path / "runs")
    record = load_record(run / "power_law.seed1" / "record.json")
    sets = list(record["metrics"])
    assert [r[:4] for r in rows] == [
        [model, "seeds", "0,", "1"] for model in ("gpi", "power_law") for _ in sets
    ]
    # seed 1 of gpi came from the first launch: the summary covers the run folder
    assert [r[4] for r in rows] == sets * 2
    csi = float(rows[-1][rows[-1].index("CSI@1") + 1])
    assert csi == pytest.approx(record["metrics"][sets[-1]]["csi@1"], abs=5e-4)
    assert "±" in rows[-1]


def test_jobs_with_other_model_params_get_their_own_folders(tmp_path):
    assert main(["run", *overrides(tmp_path, "models=[power_law]")]) == 0
    params = "+model_params.power_law.min_rain=0.5"
    assert main(["run", *overrides(tmp_path, "models=[power_law]", params)]) == 0
    (run,) = run_folders(tmp_path / "runs")
    jobs = json.loads((run / "run.json").read_text())["jobs"]
    assert jobs == ["power_law.seed0", job_name("power_law", 0, {"min_rain": 0.5})]
    assert jobs[0] != jobs[1]


def test_sharded_evaluation_merges_to_the_one_pass_evaluation(tiny_store, tiny_split):
    model = build_model("gpi", frames=1, bands=["IR10.8"])
    idx = np.arange(len(tiny_store))
    settings = EvalSettings(bootstrap=0)
    whole = evaluate_set(model, tiny_store, idx, settings)
    merged = merge_evaluations(
        [evaluate_set(model, tiny_store, idx[r::3], settings) for r in range(3)]
    )
    assert merged.n_samples == whole.n_samples and merged.days.keys() == whole.days.keys()
    np.testing.assert_allclose(merged.day_states().states, whole.day_states().states, rtol=1e-12)
    merged_strata, whole_strata = merged.stratum_scores(), whole.stratum_scores()
    assert merged_strata.keys() == whole_strata.keys()
    for name, values in whole_strata.items():
        assert merged_strata[name].keys() == values.keys()
        for value, scores in values.items():
            assert merged_strata[name][value] == pytest.approx(scores, rel=1e-9, nan_ok=True)
    assert merged.stratum_samples == whole.stratum_samples
    for name, tables in whole.strata.items():  # the per-day stratum tables, and so the intervals
        for value, by_day in tables.items():
            assert merged.strata[name][value].keys() == by_day.keys()
            for day, state in by_day.items():
                np.testing.assert_allclose(merged.strata[name][value][day], state, rtol=1e-12)
    weights = bootstrap_weights(len(whole.days), 50, 0, "all")
    got = merged.stratum_intervals(weights, ["csi@1"], 0.9)
    for name, values in whole.stratum_intervals(weights, ["csi@1"], 0.9).items():
        for value, by_metric in values.items():
            want = by_metric["csi@1"]
            assert (got[name][value]["csi@1"] is None) == (want is None)
            if want is not None:
                assert got[name][value]["csi@1"] == pytest.approx(want, rel=1e-9)


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(QPEBENCH), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_a_killed_run_is_unfinished_then_resumes(tmp_path, capsys):
    args = overrides(tmp_path, "models=[gpi,static_cnn]", "train.epochs=40")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(QPEBENCH), "run", *args], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    ckpt = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((tmp_path / "runs").glob("*/static_cnn.seed0/checkpoint/checkpoint.pt"))
        if found:
            ckpt = found[0]
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt is not None, "the run never reached static_cnn's first checkpoint"
    (run,) = run_folders(tmp_path / "runs")
    assert (run / "gpi.seed0" / "record.json").is_file()
    assert not (run / "static_cnn.seed0" / "record.json").exists()
    capsys.readouterr()
    assert main(["leaderboard", "validate", str(run)]) == 1
    assert "unfinished: run" in capsys.readouterr().out
    assert main(["leaderboard", "render", str(run)]) == 0
    captured = capsys.readouterr()
    assert "1 of 2 jobs have a record" in captured.err and "| gpi |" in captured.out
    done = cli("run", *args)  # the same command: gpi is kept, static_cnn resumes its fit
    assert done.returncode == 0, done.stderr[-2000:]
    assert "gpi.seed0: finished before, not run again" in done.stdout
    record = load_record(run / "static_cnn.seed0" / "record.json")
    assert record["training"]["resumed_from"] is not None
    assert record["training"]["epochs_run"] == 40
    assert main(["leaderboard", "validate", str(run)]) == 0


def test_torchrun_runs_each_job_once_with_sharded_evaluation(tmp_path):
    single = cli("run", *overrides(tmp_path / "one", "models=[gpi]"))
    assert single.returncode == 0, single.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    args = overrides(tmp_path / "two", "models=[gpi]", "train.device=cpu")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*torchrun, "--nproc_per_node=2", str(QPEBENCH), "run", *args],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (one,) = run_folders(tmp_path / "one" / "runs")
    (two,) = run_folders(tmp_path / "two" / "runs")
    a = load_record(one / "gpi.seed0" / "record.json")
    b = load_record(two / "gpi.seed0" / "record.json")
    assert b["n_samples"] == a["n_samples"]

    def numbers(scores):
        return {k: float("nan") if v is None else v for k, v in scores.items()}

    for test_set, scores in a["metrics"].items():
        assert numbers(b["metrics"][test_set]) == pytest.approx(
            numbers(scores), rel=1e-9, nan_ok=True
        )
    assert done.stdout.count("gpi.seed0: CSI@1") == 1  # only rank 0 speaks


def sweep_records(runs: Path) -> list[Path]:
    return sorted(runs.glob("*/*/record.json"))


def test_a_2x2_multirun_gives_4_records_and_one_board_and_a_relaunch_skips(tmp_path):
    argv = ["run", "--multirun", *overrides(tmp_path, "model=zero_rain,gpi", "seed=0,1")]
    assert main(argv) == 0
    records = sweep_records(tmp_path / "runs")
    assert [p.parent.name for p in records] == [
        "gpi.seed0", "gpi.seed1", "zero_rain.seed0", "zero_rain.seed1"
    ]  # fmt: skip
    (sweep,) = (tmp_path / "runs" / "sweeps").iterdir()
    board = (sweep / "leaderboard.md").read_text()
    assert "| gpi | 2" in board and "| zero_rain | 2" in board
    assert len([p for p in sweep.iterdir() if p.is_dir()]) == 4  # Hydra's job folders
    stamps = [p.stat().st_mtime_ns for p in records]
    assert main(argv) == 0  # relaunched: the same sweep folder, no job runs again
    assert [p.stat().st_mtime_ns for p in sweep_records(tmp_path / "runs")] == stamps
    assert len(list((tmp_path / "runs" / "sweeps").iterdir())) == 1


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_sweeps_run_on_hydra_launchers(tmp_path, launcher):
    args = overrides(tmp_path, "model=gpi,static_cnn", "seed=0", f"hydra/launcher={launcher}")
    done = cli("run", "--multirun", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.parent.name for p in sweep_records(tmp_path / "runs")] == [
        "gpi.seed0", "static_cnn.seed0"
    ]  # fmt: skip
    assert "board of 2 records" in done.stdout


def test_every_sweep_job_is_checked_before_any_runs(tmp_path, capsys):
    argv = ["run", "--multirun", *overrides(tmp_path, "model=gpi", "frames=1,9")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "sweep job" in err and "frames=9" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_model_and_seed_fold_into_one_job():
    cfg = run_config(
        compose_config(["model=early_fusion", "seed=4", "+model_params.static_cnn.width=8"])
    )
    assert cfg.models == ("early_fusion",) and cfg.seeds == (4,) and cfg.model_params == {}
    with pytest.raises(ConfigError, match="seed must be at least 0"):
        run_config(compose_config(["seed=-1"]))


def test_model_is_a_config_group_of_every_registered_model():
    """``model=NAME`` is an option of the ``model`` group, one per registry entry (a model
    registered in code too); a misspelt one fails with the closest name."""
    factory = MODELS.get("zero_rain")
    MODELS.register("my_plugin_model", factory)
    try:
        cfg = compose_config(["model=my_plugin_model"])
        assert cfg.model == {"name": "my_plugin_model"}
        assert run_config(cfg).models == ("my_plugin_model",)
    finally:
        MODELS.unregister("my_plugin_model")
    assert compose_config([]).get("model") is None
    with pytest.raises(UnknownNameError, match="did you mean 'static_cnn'"):
        compose_config(["model=static_cn"])
