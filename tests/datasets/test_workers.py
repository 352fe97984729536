"""Worker processes die with their parent: a ``kill -9`` of a build leaves no orphan."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

SYNTHETIC = """
from qpebench.datasets.synthetic import build_synthetic_store
build_synthetic_store({root!r}, regions={{"europe": {{"n_samples": 4000, "years": [2021, 2024]}}}},
                      patch_size=64, shard_size=8, workers=2, progress=False)
"""

DASK = """
from distributed import LocalCluster
with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None):
    import time
    time.sleep(600)
"""


def _children_after_kill(script: str, n_children: int, timeout: float = 60.0) -> list[int]:
    """Start ``script``, wait for its workers, ``kill -9`` it; the pids still alive 10 s later."""
    proc = subprocess.Popen([sys.executable, "-P", "-c", textwrap.dedent(script)])
    children: list[psutil.Process] = []
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + timeout
        while len(children := parent.children(recursive=True)) < n_children:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the workers did not start (rc {proc.poll()})")
            time.sleep(0.1)
        time.sleep(0.5)  # let the pool initializers run
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _, alive = psutil.wait_procs(children, timeout=10)
        return [p.pid for p in alive]
    finally:
        proc.kill()
        for child in children:  # orphans, if the test failed
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def test_synthetic_renderers_die_with_the_build(tmp_path: Path) -> None:
    # a fork-server or resource-tracker helper may also appear; the two renderers must go
    alive = _children_after_kill(SYNTHETIC.format(root=str(tmp_path / "store")), 2)
    assert alive == [], f"renderer processes {alive} outlived their killed parent"


def test_dask_workers_die_with_the_cluster_owner() -> None:
    alive = _children_after_kill(DASK, 2)
    assert alive == [], f"Dask worker processes {alive} outlived their killed parent"
