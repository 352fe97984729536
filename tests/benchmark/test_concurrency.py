"""Concurrent jobs: one store build under the store's lock, one run directory per run."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from filelock import FileLock
from tests.benchmark.test_cli import tiny_overrides

from qpebench import runner
from qpebench.cli import main
from qpebench.config import compose_config, run_config
from qpebench.errors import StoreError
from qpebench.locks import cache_lock_file, folder_lock, holds_lock
from qpebench.records import provenance
from qpebench.runner import prepare_store, rebuild_store, store_path
from qpebench.store import SampleStore

# A job in its own process: compose the configuration, count the adapter's builds, wait for the
# test's go (so both jobs reach prepare_store together), prepare the store, report.
JOB = """
import functools, os, sys, time
from pathlib import Path
from qpebench.config import compose_config, run_config
from qpebench.errors import StoreError
from qpebench.registry import DATASETS
from qpebench.runner import prepare_store

cfg = run_config(compose_config(sys.argv[2:]))
build, builds = DATASETS.get("synthetic"), []

@functools.wraps(build)
def counted(root, **kw):
    builds.append(root)
    return build(root, **kw)

DATASETS.unregister("synthetic")
DATASETS.register("synthetic", counted)
go = Path(sys.argv[1])
(go.parent / f"ready-{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.005)
store = prepare_store(cfg.data, cfg.cache_dir, progress=False)
print(f"builds={len(builds)} version={store.dataset_version}")
"""

# Holds a store's lock until its standard input closes.
HOLDER = """
import sys
from qpebench.locks import folder_lock

with folder_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()
"""


def _python(code: str, *args: str, **kw) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-P", "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _await(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_two_concurrent_prepares_build_the_store_once(tmp_path):
    # small shards: many temp files, so unlocked builds collide on them (and both build)
    overrides = tiny_overrides(tmp_path, "data.shard_size=8", "+data.workers=1")
    go = tmp_path / "go"
    jobs = [_python(JOB, str(go), *overrides) for _ in range(2)]
    _await(lambda: len(list(tmp_path.glob("ready-*"))) == 2, "both jobs to be ready")
    go.touch()
    results = [(job.wait(timeout=300), *job.communicate()) for job in jobs]
    for rc, _, err in results:
        assert rc == 0, err
    reports = sorted(out.strip().splitlines()[-1] for _, out, _ in results)
    store = SampleStore(next((tmp_path / "cache" / "stores").iterdir()))
    version = store.dataset_version
    assert reports == [f"builds=0 version={version}", f"builds=1 version={version}"]
    store.verify()
    assert not list(store.root.glob(".*"))  # no temp file, no progress file
    assert [p.name for p in (tmp_path / "cache" / "locks").iterdir()] == [f"{store.root.name}.lock"]


def test_prepare_waits_for_the_job_holding_the_lock(tmp_path):
    cfg = run_config(compose_config(tiny_overrides(tmp_path)))
    root = store_path(cfg.cache_dir, cfg.data)
    lock_file = cache_lock_file(cfg.cache_dir, root.name)
    holder = _python(HOLDER, str(root), str(lock_file), stdin=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline() == "held\n"
    lines: list[str] = []
    stores: list[SampleStore] = []
    job = threading.Thread(
        target=lambda: stores.append(
            prepare_store(cfg.data, cfg.cache_dir, progress=False, log=lines.append)
        )
    )
    job.start()
    _await(lambda: lines, "the waiting line")
    assert lines == [f"{root}: another job holds {lock_file}; waiting for it to finish"]
    time.sleep(0.5)
    assert job.is_alive() and not root.exists()  # nothing built while the other job holds it
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0
    job.join(timeout=120)
    assert stores and stores[0].root == root and len(stores[0]) > 0


def test_rebuild_holds_the_lock_and_a_reader_of_the_old_store_fails_loudly(tmp_path):
    cfg = run_config(compose_config(tiny_overrides(tmp_path)))
    old = prepare_store(cfg.data, cfg.cache_dir, progress=False)
    (old.root / "marker").touch()
    lock_file = cache_lock_file(cfg.cache_dir, old.root.name)
    with folder_lock(old.root, lock_file):  # the lock is reentrant in this thread
        new = rebuild_store(cfg.data, cfg.cache_dir, progress=False, log=pytest.fail)
        assert holds_lock(old.root / "shard-00000.h5")
    assert not holds_lock(old.root)
    assert new.root == old.root and new.dataset_version == old.dataset_version
    assert not (new.root / "marker").exists()  # rebuilt, not reused
    with pytest.raises(StoreError, match="rebuilt or removed while open"):
        old.read([0])


def test_a_job_another_process_is_running_is_skipped(tmp_path, capsys):
    """The job's lock is held elsewhere: this launch runs the other jobs and leaves it."""
    argv = ["run", *tiny_overrides(tmp_path, "models=[zero_rain,gpi]", "evaluation.bootstrap=0")]
    cfg = run_config(compose_config(argv[1:]))
    run = runner.run_folder(cfg, provenance("cpu")["commit"])
    job = run / "gpi.seed0"
    job.mkdir(parents=True)
    with FileLock(job / runner.JOB_LOCK):  # held by this process: another FileLock object waits
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "gpi.seed0: running in another process, skipped" in out
    assert (run / "zero_rain.seed0" / "record.json").is_file()
    assert not (job / "record.json").exists()
    assert json.loads((run / "run.json").read_text())["complete"] is False
    assert main(argv) == 0  # released: the relaunch runs it
    assert (job / "record.json").is_file()
