"""Shared fixtures: the real-data location, a tiny synthetic store, isolated output paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


@pytest.fixture
def spy_store(tiny_store):
    """The tiny store behind a :class:`SpyStore` (what a model's ``fit`` reads)."""
    return SpyStore(tiny_store)
