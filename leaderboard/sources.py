"""Where the records to render are: record files, job folders and run folders.

A run of ``qpebench run`` is a folder holding ``run.json`` (:data:`RUN_FILE`: ``{"jobs": [job
folder names planned], "complete": bool}``) and one folder per job (one model, seed and
configuration) with ``record.json`` and the day states it refers to (``states.npz``). A run is
**unfinished** while ``run.json`` says ``complete: false`` or a planned job has no record yet:
its finished jobs can be rendered, with a warning, and ``leaderboard validate`` fails on it.

Older runs hold ``records/*.json`` and no ``run.json``; a folder without ``run.json`` gives its
``records/*.json``, ``*/record.json``, its own ``record.json`` and the records of the run folders
inside it (so ``paths.runs`` renders every run).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qpebench.errors import ConfigError
from qpebench.evaluation import DayStates
from qpebench.names import check_name, confined
from qpebench.records import RecordError, load_record
from qpebench.states import read_states

RUN_FILE = "run.json"
RECORD_FILE = "record.json"
#: Largest ``run.json`` accepted (a list of job names), checked before parsing.
MAX_RUN_FILE_BYTES = 1024**2


@dataclass(frozen=True)
class RunProgress:
    """What a run folder's ``run.json`` plans, and which of its jobs have a record.

    Attributes:
        folder: The run folder.
        jobs: The job folder names planned.
        finished: Those with a ``record.json``.
        complete: ``run.json``'s ``complete`` flag.
    """

    folder: Path
    jobs: tuple[str, ...]
    finished: tuple[str, ...]
    complete: bool

    @property
    def unfinished(self) -> bool:
        """Whether the run is not complete or a planned job has no record."""
        return not self.complete or len(self.finished) < len(self.jobs)

    def describe(self) -> str:
        """One line: the run, and how many of its jobs are finished."""
        flag = "" if self.complete else f" ({RUN_FILE} says complete: false)"
        return (
            f"run {self.folder} is unfinished{flag}: {len(self.finished)} of {len(self.jobs)} "
            "jobs have a record"
        )


@dataclass(frozen=True)
class RecordSources:
    """The record files found, and the run folders they came from (with ``run.json``)."""

    files: tuple[Path, ...]
    runs: tuple[RunProgress, ...]

    @property
    def unfinished(self) -> list[RunProgress]:
        """The unfinished runs."""
        return [r for r in self.runs if r.unfinished]


def read_run(folder: Path) -> RunProgress:
    """The plan and progress of a run folder with ``run.json``.

    Raises:
        RecordError: ``run.json`` is too large, not JSON, or not ``{"jobs": [safe names],
            "complete": bool}``, naming the file.
    """
    path = folder / RUN_FILE
    try:
        if path.stat().st_size > MAX_RUN_FILE_BYTES:
            raise RecordError(f"{path}: more than {MAX_RUN_FILE_BYTES:,} bytes; refused")
        plan: Any = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: cannot read the run file ({exc})") from None
    ok = (
        isinstance(plan, dict)
        and isinstance(plan.get("jobs"), list)
        and isinstance(plan.get("complete"), bool)
    )
    if not ok:
        raise RecordError(f"{path}: a run file holds {{'jobs': [names], 'complete': true|false}}")
    jobs = tuple(check_name(j, f"{path}: job", error=RecordError) for j in plan["jobs"])
    finished = tuple(j for j in jobs if _job_record(folder, j).is_file())
    return RunProgress(folder, jobs, finished, plan["complete"])


def _job_record(folder: Path, job: str) -> Path:
    try:
        return confined(folder, job, RECORD_FILE)
    except ConfigError:
        raise RecordError(f"{folder / job}: leads outside the run folder {folder}") from None


def find_records(paths: Sequence[Path]) -> RecordSources:
    """The record files of ``paths``: record files, job folders, run folders (new or old).

    A folder with ``run.json`` gives the records of its finished jobs (:func:`read_run`); one
    without gives ``records/*.json`` (older runs), ``*/record.json`` (job folders), its own
    ``record.json`` and the records of the run folders inside it (``paths.runs``). A path that
    is not a folder is taken as a record file.

    Raises:
        RecordError: A malformed ``run.json``.
    """
    files: list[Path] = []
    runs = []
    for p in paths:
        if not p.is_dir():
            files.append(p)
        elif (p / RUN_FILE).is_file():
            run = read_run(p)
            runs.append(run)
            files += [_job_record(p, j) for j in run.finished]
        else:
            found = [p / RECORD_FILE] if (p / RECORD_FILE).is_file() else []
            found += sorted((p / "records").glob("*.json"))
            found += sorted(p.glob(f"*/{RECORD_FILE}"))
            files += found
            for sub in sorted(q for q in p.iterdir() if (q / RUN_FILE).is_file()):
                run = read_run(sub)  # a folder of run folders (paths.runs)
                runs.append(run)
                files += [_job_record(sub, j) for j in run.finished]
    return RecordSources(tuple(files), tuple(runs))


def load_records(
    files: Sequence[Path],
) -> tuple[list[dict[str, Any]], list[dict[str, DayStates] | None]]:
    """Load and validate the records ``files`` and the day states each refers to.

    Returns:
        The records, and for each its day states (``None`` for a record without states).

    Raises:
        RecordError: A bad record or state file, naming it.
    """
    records = [load_record(f) for f in files]
    states = [
        read_states(f, r) if "states" in r else None for f, r in zip(files, records, strict=True)
    ]
    return records, states
