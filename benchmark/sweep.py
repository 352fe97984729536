"""``qpebench run --multirun``: sweeps on Hydra's own machinery (sweeper, launchers, logs).

``qpebench run --multirun model=early_fusion,conv4d_factorized frames=1,2,4 seed=0,1,2`` is
handed to ``hydra.main`` (:data:`hydra_entry`), so every Hydra launcher works: the basic one
(sequential), ``hydra/launcher=joblib`` (parallel local processes) and
``hydra/launcher=submitit_local`` / ``submitit_slurm`` (SLURM, ``docs/sweeps.md``). Each job is
:func:`task`: one configuration run by :func:`qpebench.runner.run_benchmark`, so its records land
in the run folder of its configuration and a relaunched sweep skips the jobs that finished.

Before anything starts, every job of the sweep is composed and checked here (:func:`preflight`),
so a bad value fails in one line before a job trains. Hydra's sweep folder (``paths.runs/sweeps/
<name>``, one sub-folder per job with Hydra's logs and configuration) is stable for the same set
of jobs (:func:`sweep_name`), and ends with one board of every job's record
(``leaderboard.md``), also when some jobs failed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from qpebench.atomic import write_bytes_atomic, write_json_atomic
from qpebench.config import compose_config, register_group_options, run_config
from qpebench.errors import ConfigError
from qpebench.leaderboard import leaderboard_markdown
from qpebench.leaderboard.sources import load_records
from qpebench.names import confined
from qpebench.registry import load_builtins
from qpebench.runner import RECORD_FILE, run_benchmark

#: What a job leaves in its Hydra folder: where its records are.
JOB_POINTER = "qpebench-job.json"
#: Overrides that say how a sweep runs, not what it computes (left out of its name).
HOW = ("hydra/", "hydra.", "progress", "paths.", "train.workers", "train.device")


def task(cfg: DictConfig) -> str:
    """One sweep job: run its configuration; leave a pointer to its records in its folder.

    A module-level function, so joblib and submitit pickle it by reference.

    Returns:
        The run folder of the job's records.
    """
    load_builtins()
    register_group_options()
    if multiprocessing.get_start_method(allow_none=True) == "loky":
        # data-loader workers cannot start from a joblib (loky) worker with its start method
        multiprocessing.set_start_method("fork", force=True)
    result = run_benchmark(run_config(cfg))
    for line in result.summary:
        print(line)
    pointer = {
        "run": str(result.run_dir.resolve()),
        "jobs": result.jobs,
    }
    out = Path(HydraConfig.get().runtime.output_dir)
    write_json_atomic(out / JOB_POINTER, pointer)
    return str(result.run_dir)


hydra_entry: Callable[[], Any] = hydra.main(
    config_path="pkg://qpebench.conf", config_name="config", version_base=None
)(task)


def sweep_jobs(overrides: Sequence[str]) -> list[list[str]]:
    """The jobs of a command-line sweep, as the basic sweeper launches them.

    Raises:
        ConfigError: An override that does not parse.
    """
    what = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    try:
        parsed = OverridesParser.create().parse_overrides(what)
    except Exception as exc:  # hydra's OverrideParseException and friends
        raise ConfigError(f"bad override in {list(overrides)}: {exc}") from None
    axes = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [o.input_line]
        for o in parsed
    ]
    return [[str(o) for o in job] for job in itertools.product(*axes)]


def sweep_name(overrides: Sequence[str]) -> str:
    """A stable name for a sweep: a hash of its set of jobs (order of keys and values ignored).

    Overrides that only say how it runs (launcher, workers, paths) are left out, so the same
    sweep relaunched on another launcher finds its folder.
    """
    jobs = sweep_jobs([o for o in overrides if not o.lstrip("+~").startswith(HOW)])
    key = sorted(sorted(job) for job in jobs)
    return "sweep-" + hashlib.sha256(json.dumps(key).encode()).hexdigest()[:10]


def preflight(overrides: Sequence[str]) -> tuple[int, Path]:
    """Compose and check every job of the sweep before any starts.

    Returns:
        The number of jobs and ``paths.runs``.

    Raises:
        ConfigError: The first bad job, named by its overrides.
    """
    jobs = sweep_jobs(overrides)
    runs = Path("runs")
    for job in jobs:
        try:
            cfg = run_config(compose_config(job))
        except ConfigError as exc:
            raise type(exc)(f"sweep job {' '.join(job)}: {exc}") from None
        runs = cfg.runs_dir
    return len(jobs), runs


def render_sweep(sweep_dir: Path) -> tuple[Path, int]:
    """Render one board from the records of every job of a sweep folder.

    Returns:
        The board and the number of records on it.
    """
    files = []
    for pointer in sorted(sweep_dir.glob(f"*/{JOB_POINTER}")):
        info = json.loads(pointer.read_text())
        run = Path(info["run"])
        files += [confined(run, job, RECORD_FILE) for job in info["jobs"]]
    files = [f for f in dict.fromkeys(files) if f.is_file()]
    records, states = load_records(files)
    board = confined(sweep_dir, "leaderboard.md")
    if records:
        write_bytes_atomic(board, leaderboard_markdown(records, None, states).encode("utf-8"))
    return board, len(records)


def run_sweep(overrides: Sequence[str], name: str | None = None) -> list[str]:
    """Run a sweep through ``hydra.main`` (see the module docstring).

    Hydra's exceptions propagate (``HYDRA_FULL_ERROR=1`` during the call), so the caller prints
    its one line; a failed job's exception is raised once its batch of jobs has run, after the
    board of the jobs that finished is rendered.

    Args:
        overrides: The command line's overrides, with sweeps (``a=1,2``) and Hydra options.
        name: The sweep folder's name (default: :func:`sweep_name`).

    Returns:
        Summary lines: the sweep folder, the board, how many records.
    """
    n_jobs, runs = preflight(overrides)
    given = [o.partition("=")[2] for o in overrides if o.startswith("hydra.sweep.dir=")]
    sweep_dir = (
        Path(given[-1]) if given else confined(runs, "sweeps", name or sweep_name(overrides))
    )
    argv = [sys.argv[0] or "qpebench", "--multirun", *overrides]
    if not given:
        argv.append(f"hydra.sweep.dir={sweep_dir}")
    print(f"{n_jobs} sweep jobs checked; sweep folder {sweep_dir}")
    saved_argv, saved_full = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv, os.environ["HYDRA_FULL_ERROR"] = argv, "1"  # raise, do not print and exit
    rendered = None
    try:
        hydra_entry()
    finally:
        sys.argv = saved_argv
        if saved_full is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full
        if sweep_dir.is_dir():  # also after a failed job: the board of those that finished
            rendered = render_sweep(sweep_dir)
    lines = [f"sweep folder: {sweep_dir}"]
    if rendered is not None:
        lines.append(f"board of {rendered[1]} records: {rendered[0]}")
    return lines
