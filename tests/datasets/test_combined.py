from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import qpebench.splits  # noqa: F401  (registers the shipped splits)
from qpebench.datasets import combined
from qpebench.datasets.combined import build_combined_store, merged_spec
from qpebench.errors import ConfigError
from qpebench.registry import DATASETS, SPLITS
from qpebench.store import SampleStore, SampleStoreWriter


def part(region: str, n: int, *, frames: int = 2, years=(2024, 2024)) -> dict:
    """A small synthetic part (one region, one band, 8x8 patches, 4 samples per shard)."""
    return {
        "adapter": "synthetic",
        "regions": {region: {"n_samples": n, "years": list(years)}},
        "patch_size": 8,
        "frames": frames,
        "bands": ["IR10.8", "WV6.2"],
        "shard_size": 4,
        "workers": 1,
    }


PARTS = {"europe": part("europe", 10, years=(2021, 2022)), "conus": part("conus", 6)}


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    root = tmp_path_factory.mktemp("combined") / "store"
    return build_combined_store(
        root, parts=PARTS, frames=2, shard_size=3, keep_parts=True, progress=False
    )


def test_registered():
    assert DATASETS.get("combined") is build_combined_store


def test_samples_and_metadata_equal_the_parts(merged):
    parts = {name: SampleStore(merged.root / "parts" / name) for name in PARTS}
    assert len(merged) == sum(len(p) for p in parts.values()) == 16
    whole = merged.read(np.arange(len(merged)))
    start = 0
    for store in parts.values():
        own = store.read(np.arange(len(store)))
        sl = slice(start, start + len(store))
        np.testing.assert_array_equal(whole.ir[sl], own.ir)
        np.testing.assert_array_equal(whole.rain[sl], own.rain)
        np.testing.assert_array_equal(whole.valid[sl], own.valid)
        np.testing.assert_array_equal(whole.time[sl], own.time)
        start += len(store)
    rows = pd.concat([p.metadata for p in parts.values()], ignore_index=True)
    keep = [c for c in rows.columns if c not in ("shard", "row")]
    pd.testing.assert_frame_equal(merged.metadata[keep], rows[keep])
    assert merged.bands == ("IR10.8", "WV6.2") and merged.frames == 2
    assert merged.patch_shape == (8, 8)
    assert set(merged.manifest["grids"]) == {"europe", "conus"}
    recorded = merged.manifest["adapter_config"]["parts"]
    assert {k: v["dataset_version"] for k, v in recorded.items()} == {
        k: p.dataset_version for k, p in parts.items()
    }
    assert recorded["conus"]["config"]["regions"] == {"conus": PARTS["conus"]["regions"]["conus"]}
    # part shards of 4, 4, 2 and 4, 2 samples, cut to at most 3
    assert [s["n"] for s in merged.manifest["shards"]] == [3, 1, 3, 1, 2, 3, 1, 2]


def test_parts_removed_unless_kept(tmp_path):
    store = build_combined_store(tmp_path / "s", parts={"conus": part("conus", 3)}, progress=False)
    assert not (tmp_path / "s" / "parts").exists()
    assert len(SampleStore(store.root)) == 3


def test_mismatched_frames_refused(tmp_path):
    parts = {"europe": part("europe", 4, frames=2), "conus": part("conus", 4, frames=3)}
    with pytest.raises(ConfigError, match="frames differ: part 'europe' has 2, part 'conus' has 3"):
        build_combined_store(tmp_path / "s", parts=parts, progress=False)
    with pytest.raises(ConfigError, match="data.frames is 4 but the parts hold 2"):
        build_combined_store(tmp_path / "t", parts={"e": part("europe", 4)}, frames=4)


def test_bad_parts_refused(tmp_path):
    with pytest.raises(ConfigError, match="at least one part"):
        build_combined_store(tmp_path / "s", parts={})
    with pytest.raises(ConfigError, match="data.shard_size must be positive, got 0"):
        build_combined_store(tmp_path / "s", parts={"e": part("europe", 4)}, shard_size=0)
    with pytest.raises(ConfigError, match="data.parts.europe: needs a mapping with an adapter"):
        build_combined_store(tmp_path / "s", parts={"europe": {"region": "europe"}})


def test_same_grid_name_different_definition_refused(merged):
    other = dict(merged.manifest["grids"]["europe"], cell_size_m=2000.0)
    fake = SimpleNamespace(
        bands=merged.bands,
        frames=merged.frames,
        patch_shape=merged.patch_shape,
        manifest={"grids": {"europe": other}, "adapter": "x", "adapter_config": {}},
        dataset_version="v",
    )
    with pytest.raises(ConfigError, match="grid 'europe' of part 'b' differs .* part 'a'"):
        merged_spec({"a": merged, "b": fake}, None, 3)


def test_interrupted_merge_resumes(tmp_path, monkeypatch, merged):
    written: list[int] = []
    original = SampleStoreWriter.write_shard

    def failing(self, index, batch):
        if index == 5 and not written.count(-1):
            written.append(-1)
            raise KeyboardInterrupt
        written.append(index)
        original(self, index, batch)

    monkeypatch.setattr(combined.SampleStoreWriter, "write_shard", failing)
    root = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        build_combined_store(root, parts=PARTS, frames=2, shard_size=3, progress=False)
    assert not (root / "manifest.json").exists()
    first_run = [i for i in written if i >= 0]
    written.clear()
    written.append(-1)  # do not fail again
    store = build_combined_store(root, parts=PARTS, frames=2, shard_size=3, progress=False)
    assert [i for i in written if i >= 0] == [5, 6, 7]  # parts reused, merged shards 0-4 kept
    assert first_run[-5:] == [0, 1, 2, 3, 4]
    assert store.dataset_version == merged.dataset_version


@pytest.mark.parametrize("data", ["europe_conus", "europe_india", "europe_australia"])
def test_shipped_configs_check(data):
    from qpebench.config import compose_config, run_config

    cfg = run_config(compose_config([f"data={data}", "split=europe_to_conus"]))
    assert cfg.data["adapter"] == "combined"
    assert set(cfg.data["parts"]) == {"europe", data.split("_")[1]}
    assert all(p["adapter"] == "colocated" for p in cfg.data["parts"].values())


def test_cross_region_split_on_a_combined_store(tmp_path):
    parts = {
        "europe": part("europe", 48, frames=1, years=(2021, 2021)),
        "conus": part("conus", 4, frames=1),
    }
    store = build_combined_store(tmp_path / "s", parts=parts, progress=False)
    split = SPLITS.get("europe_to_conus").resolve(
        store.metadata, patch_shape=store.patch_shape, frames=store.frames
    )
    assert set(store.metadata.iloc[split.sets["ood_test/conus"]]["region"]) == {"conus"}
    assert split.domains()["ood_test/conus"] == "conus"
