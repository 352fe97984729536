"""Shared fixtures: the real-data location, a tiny synthetic store, isolated output paths."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from qpebench.errors import QpebenchError as QpebenchErrorBase

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Where the real sample files are: $QPEBENCH_DATA, else ../shared/data beside the repo."""
    return Path(os.environ.get("QPEBENCH_DATA", REPO.parent / "shared" / "data"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip ``realdata`` tests without the data, or fail them when CI requires the data."""
    if item.get_closest_marker("realdata") is None or shared_data_dir().is_dir():
        return
    reason = f"real sample data not found at {shared_data_dir()} (set QPEBENCH_DATA)"
    if os.environ.get("QPEBENCH_REQUIRE_REALDATA") == "1":
        pytest.fail(f"QPEBENCH_REQUIRE_REALDATA=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real sample-data directory (tests using it carry the ``realdata`` marker)."""
    return shared_data_dir()


TINY_REGIONS = {
    "europe": {"n_samples": 48, "years": [2021, 2024]},
    "conus": {"n_samples": 12, "years": [2024, 2024]},
    "india": {"n_samples": 12, "years": [2024, 2024]},
}


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic store (32×32 patches, 4 frames, all default bands), built once."""
    from qpebench.datasets.synthetic import build_synthetic_store

    root = tmp_path_factory.mktemp("store") / "tiny"
    return build_synthetic_store(
        root, regions=TINY_REGIONS, patch_size=32, shard_size=16, progress=False
    )


@pytest.fixture(scope="session")
def tiny_split(tiny_store):
    """The tiny store's training data: Europe 2021–2022 to train, 2023 to select on."""
    import numpy as np

    from qpebench.models import TrainData

    md = tiny_store.metadata
    eu = md["region"] == "europe"
    return TrainData(
        tiny_store,
        np.flatnonzero(eu & (md["year"] <= 2022)),
        np.flatnonzero(eu & (md["year"] == 2023)),
    )


class SpyStore:
    """Forwards reads to a store and records what was asked: ``(indices, keywords)``."""

    def __init__(self, store):
        self.store = store
        self.reads = []

    def read(self, indices, **kw):
        import numpy as np

        self.reads.append((np.asarray(indices), kw))
        return self.store.read(indices, **kw)

    def __getattr__(self, name):
        return getattr(self.store, name)


@pytest.fixture
def spy_store(tiny_store):
    """The tiny store behind a :class:`SpyStore` (what a model's ``fit`` reads)."""
    return SpyStore(tiny_store)


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)  # pragma: no cover - Linux always has VmRSS/VmHWM


@dataclass(frozen=True)
class Refusal:
    """What a hostile input cost before it was refused (measured in a forked child)."""

    error: str  # exception class name
    message: str
    seconds: float
    peak_mib: float  # peak resident memory above the child's resident memory at the start


def _measure(fn, conn) -> None:  # runs in the forked child
    import time

    base = _status_kib("VmRSS")
    start = time.perf_counter()
    try:
        fn()
    except BaseException as exc:  # reported to the parent, whatever it is
        error, message = type(exc).__name__, str(exc)
        if not isinstance(exc, QpebenchErrorBase):
            import traceback

            message += "\n" + traceback.format_exc()
    else:
        error, message = "", ""
    seconds = time.perf_counter() - start
    conn.send(Refusal(error, message, seconds, (_status_kib("VmHWM") - base) / 1024))
    conn.close()


def measure_refusal(fn, *, timeout: float = 60.0) -> Refusal:
    """Run ``fn()`` in a forked child; its exception, time and peak memory above the start.

    A fork gives the child a fresh peak-memory counter (VmHWM starts at the current RSS), so the
    peak is what ``fn`` itself cost, whatever the test process did before.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_measure, args=(fn, child))
    proc.start()
    child.close()
    if not parent.poll(timeout):
        proc.kill()
        proc.join()
        pytest.fail(f"no result within {timeout} s")
    result = parent.recv()
    proc.join()
    return result


@pytest.fixture
def refused_cheaply():
    """Check that ``fn()`` is refused with a one-line qpebench error, fast and in little memory.

    Usage: ``message = refused_cheaply(lambda: read(path), "decompresses to more than")``.
    The limits are the hostile-input issue's: under 5 s and under 500 MiB above the baseline.
    """

    def check(fn, match: str | None = None, *, seconds: float = 5.0, mib: float = 500.0) -> str:
        import re

        r = measure_refusal(fn)
        assert r.error, "the hostile input was accepted"
        assert "\n" not in r.message, f"not one line ({r.error}): {r.message}"
        assert r.seconds < seconds, f"refused after {r.seconds:.1f} s: {r.message}"
        assert r.peak_mib < mib, f"refusal cost {r.peak_mib:.0f} MiB: {r.message}"
        if match is not None:
            assert re.search(match, r.message), f"{match!r} not in {r.message!r}"
        return r.message

    return check
