"""``qpebench leaderboard validate/render`` on job and run folders: states, unfinished runs."""

from __future__ import annotations

import json

import pytest
from tests.benchmark.jobs import Scaled, evaluate, write_job
from tests.benchmark.test_records import v2_record

from qpebench.cli import main
from qpebench.records import write_record
from qpebench.states import STATES_FILE


@pytest.fixture
def run(tmp_path, tiny_store):
    """A run folder with two finished jobs, ``A.seed0`` and ``D.seed0``, and no ``run.json``."""
    folder = tmp_path / "run-1"
    for name, factor in (("A", 1.0), ("D", 0.5)):
        model = Scaled(name, factor)
        write_job(folder, model, evaluate(model, tiny_store, seed=0), seed=0)
    return folder


def plan(folder, jobs, complete):
    (folder / "run.json").write_text(json.dumps({"jobs": jobs, "complete": complete}))


def test_unfinished_runs_fail_validation_and_render_with_a_warning(run, capsys):
    plan(run, ["A.seed0", "D.seed0", "E.seed0"], complete=False)
    assert main(["leaderboard", "validate", str(run)]) == 1
    out = capsys.readouterr().out
    assert "2 of 2 records valid" in out
    assert (
        f"unfinished: run {run} is unfinished (run.json says complete: false): 2 of 3 jobs have "
        "a record"
    ) in out
    assert main(["leaderboard", "render", str(run)]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"qpebench: warning: run {run} is unfinished (run.json says complete: false): 2 of 3 "
        "jobs have a record; rendering those"
    ]
    assert "| A | 1† |" in captured.out and "| D | 1† |" in captured.out
    assert "## Paired comparisons (CSI@1)" in captured.out  # from the day states
    plan(run, ["A.seed0", "D.seed0", "E.seed0"], complete=True)  # a planned job has no record
    assert main(["leaderboard", "validate", str(run)]) == 1
    assert "unfinished: run" in capsys.readouterr().out
    plan(run, ["A.seed0", "D.seed0"], complete=True)
    assert main(["leaderboard", "validate", str(run)]) == 0
    assert "unfinished" not in capsys.readouterr().out
    assert main(["leaderboard", "render", str(run)]) == 0
    assert capsys.readouterr().err == ""


def test_job_folders_record_files_and_old_run_folders_are_accepted(run, tmp_path, capsys):
    argv = ["leaderboard", "validate", str(run), str(run / "A.seed0")]
    assert main([*argv, str(run / "D.seed0" / "record.json")]) == 0
    assert "4 of 4 records valid" in capsys.readouterr().out  # a folder without run.json
    old = tmp_path / "old-run"
    write_record(old / "records" / "m.seed0.json", v2_record())
    assert main(["leaderboard", "validate", str(old)]) == 0
    assert "1 of 1 records valid" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda path: path.unlink(), "state file missing"),
        (lambda path: path.write_bytes(path.read_bytes()[:-1]), "truncated"),
        (lambda path: path.write_bytes(path.read_bytes()[::-1]), "altered"),
    ],
)
def test_a_bad_state_file_is_one_line_naming_it(run, capsys, damage, message):
    states = run / "D.seed0" / STATES_FILE
    damage(states)
    assert main(["leaderboard", "validate", str(run)]) == 1
    out = capsys.readouterr().out
    assert f"invalid: {states}: " in out and message in out and "1 of 2 records valid" in out
    assert main(["leaderboard", "render", str(run)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"qpebench: error: {states}: ")
    assert message in err


def test_a_malformed_run_file_is_one_line(run, capsys):
    (run / "run.json").write_text(json.dumps({"jobs": ["../elsewhere"], "complete": True}))
    assert main(["leaderboard", "validate", str(run)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "run.json: job '../elsewhere' is not safe" in err
    (run / "run.json").write_text("[1, 2]")
    assert main(["leaderboard", "render", str(run)]) == 2
    assert "run.json: a run file holds" in capsys.readouterr().err
