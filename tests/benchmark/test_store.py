from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from qpebench.errors import ConfigError, SampleValidationError, StoreError, UnknownNameError
from qpebench.locks import folder_lock
from qpebench.sample import validate_sample
from qpebench.store import (
    PROGRESS,
    SampleBatch,
    SampleStore,
    SampleStoreWriter,
    StoreSpec,
    pack_tb,
    remove_store,
    unpack_tb,
)
from qpebench.torchdata import StoreDataset

BANDS = ("IR10.8", "IR12.0")
GRID = {
    "g": {
        "crs": "+proj=laea +lat_0=50 +lon_0=10 +ellps=WGS84 +units=m",
        "cell_size_m": 4000.0,
        "x_min": -400000.0,
        "y_max": 400000.0,
        "shape": [200, 200],
    }
}


def make_batch(n: int, seed: int, t: int = 3, hw: int = 8) -> SampleBatch:
    rng = np.random.default_rng(seed)
    ir = rng.uniform(190, 310, (n, t, len(BANDS), hw, hw)).astype(np.float32)
    valid = rng.random((n, hw, hw)) > 0.1
    rain = np.where(valid, rng.gamma(0.5, 2.0, (n, hw, hw)), np.nan).astype(np.float32)
    start = 1_700_000_000 + seed * 10_000
    time = start + np.arange(n)[:, None] * 3600 + np.arange(t)[None, :] * 900
    meta = pd.DataFrame(
        {
            "region": "europe",
            "satellite": "Meteosat-11",
            "sensor": "SEVIRI",
            "radar_network": "OPERA",
            "grid": "g",
            "time": pd.to_datetime(time[:, -1], unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "patch_row": rng.integers(0, 100, n),
            "patch_col": rng.integers(0, 100, n),
            "frame_step_s": 900,
            "accumulation_s": 0,
            "rain_fraction": rng.random(n),
        }
    )
    return SampleBatch(ir=ir, rain=rain, valid=valid, time=time.astype(np.int64), metadata=meta)


def spec(**kw) -> StoreSpec:
    args = {
        "bands": BANDS,
        "frames": 3,
        "patch_shape": (8, 8),
        "adapter": "test",
        "adapter_config": {"k": 1},
        "grids": GRID,
    }
    args.update(kw)
    return StoreSpec(**args)


def write_store(root, batches, **kw) -> SampleStore:
    writer = SampleStoreWriter(root, spec(**kw))
    for i, b in enumerate(batches):
        writer.write_shard(i, b)
    return writer.finalize()


def test_round_trip_random_access(tmp_path):
    batches = [make_batch(5, 0), make_batch(4, 1)]
    store = write_store(tmp_path / "s", batches)
    assert len(store) == 9 and store.bands == BANDS and store.frames == 3
    ir = np.concatenate([b.ir for b in batches])
    rain = np.concatenate([b.rain for b in batches])
    order = [7, 0, 3, 3, 8, 5]
    out = store.read(order)
    np.testing.assert_allclose(out.ir, ir[order], atol=0.0051)  # 0.01 K packing
    np.testing.assert_array_equal(out.rain, rain[order])
    assert list(out.metadata["row"]) == [2, 0, 3, 3, 3, 0]
    last = store.read([1, 6], frames=1, bands=["IR12.0"])
    np.testing.assert_allclose(last.ir[:, 0, 0], ir[[1, 6], -1, 1], atol=0.0051)
    assert last.time.shape == (2, 1)
    # every second frame back from the target: frames 0 and 2 of 3
    stepped = store.read([1, 6], frames=2, step=2)
    np.testing.assert_allclose(stepped.ir, ir[[1, 6]][:, [0, 2]], atol=0.0051)
    full = store.read([1, 6])
    np.testing.assert_array_equal(stepped.time, full.time[:, [0, 2]])
    assert store.read([1], step=2).ir.shape[1] == 2


def test_a_reader_keeps_a_bounded_number_of_shards_open(tiny_store, monkeypatch):
    """Beyond MAX_OPEN_SHARDS the least recently used shard is closed, and reads stay exact."""
    import qpebench.store as store_module

    n_shards = len(tiny_store.manifest["shards"])
    assert n_shards > 4
    order = np.random.default_rng(0).permutation(len(tiny_store))
    whole = SampleStore(tiny_store.root).read(order)
    monkeypatch.setattr(store_module, "MAX_OPEN_SHARDS", 2)
    bounded = SampleStore(tiny_store.root)
    parts = [bounded.read(order[i : i + 5]) for i in range(0, order.size, 5)]
    assert len(bounded._files) == 2 and len(bounded._datasets) == 2
    np.testing.assert_array_equal(np.concatenate([p.ir for p in parts]), whole.ir)
    np.testing.assert_array_equal(np.concatenate([p.rain for p in parts]), whole.rain)
    np.testing.assert_array_equal(np.concatenate([p.valid for p in parts]), whole.valid)
    # the most recently used shard stays open; a closed one is reopened when needed
    last = int(bounded._shard_of[order[-1]])
    assert last in bounded._files and bool(bounded._files[last].id.valid)
    first = bounded.read(order[:1])
    np.testing.assert_array_equal(first.ir, whole.ir[:1])


def test_sample_follows_the_interface(tmp_path):
    store = write_store(tmp_path / "s", [make_batch(3, 0)])
    sample = validate_sample(store[2], name="s[2]")
    assert sample["meta"]["crs"].startswith("+proj=laea")
    assert sample["meta"]["dataset_version"] == store.dataset_version
    y, x = store.coords(2)
    r0, _ = sample["meta"]["patch_origin"]
    assert y[0] == pytest.approx(400000 - (r0 + 0.5) * 4000)  # cell centres, not corners
    assert x[1] - x[0] == 4000


def test_sample_as_cf_xarray(tmp_path):
    store = write_store(tmp_path / "s", [make_batch(3, 0)])
    ds = store.to_xarray(1)
    assert ds["ir"].dims == ("time", "band", "y", "x") and ds["ir"].attrs["units"] == "K"
    assert ds["rain"].attrs["units"] == "mm h-1" and ds["rain"].attrs["grid_mapping"] == "crs"
    assert ds["crs"].attrs["grid_mapping_name"] == "lambert_azimuthal_equal_area"
    assert list(ds["band"].values) == list(BANDS)
    y, x = store.coords(1)
    assert np.array_equal(ds["y"].values, y) and np.array_equal(ds["x"].values, x)
    assert ds.attrs["region"] == "europe" and ds.attrs["frame_step_s"] == 900
    assert ds.attrs["valid_time"] == store.metadata["time"][1]
    np.testing.assert_array_equal(ds["rain"].values, store[1]["rain"])


def test_pack_precision_and_range():
    tb = np.array([100.0, 200.004, 355.5], np.float32)
    assert np.abs(unpack_tb(pack_tb(tb)) - tb).max() <= 0.0051
    with pytest.raises(ValueError, match="cannot pack"):
        pack_tb(np.array([np.nan], np.float32))


def test_version_is_a_content_hash(tmp_path):
    a = write_store(tmp_path / "a", [make_batch(4, 0)])
    b = write_store(tmp_path / "b", [make_batch(4, 0)])
    c = write_store(tmp_path / "c", [make_batch(4, 1)])
    d = write_store(tmp_path / "d", [make_batch(4, 0)], adapter_config={"k": 2})
    assert a.dataset_version == b.dataset_version
    assert len({a.dataset_version, c.dataset_version, d.dataset_version}) == 3


def test_resume_keeps_finished_shards(tmp_path):
    root = tmp_path / "s"
    w = SampleStoreWriter(root, spec())
    w.write_shard(0, make_batch(3, 0))
    mtime = (root / "shard-00000.h5").stat().st_mtime_ns
    # a crash here: no manifest yet, the store cannot be opened
    with pytest.raises(StoreError, match="interrupted build"):
        SampleStore(root)
    w2 = SampleStoreWriter(root, spec())
    assert w2.has_shard(0) and not w2.has_shard(1)
    w2.write_shard(1, make_batch(3, 1))
    store = w2.finalize()
    assert (root / "shard-00000.h5").stat().st_mtime_ns == mtime
    assert not (root / PROGRESS).exists()
    full = write_store(tmp_path / "full", [make_batch(3, 0), make_batch(3, 1)])
    assert store.dataset_version == full.dataset_version


def test_resume_rewrites_a_damaged_shard_and_drops_temp_files_under_the_lock(tmp_path):
    root = tmp_path / "s"
    SampleStoreWriter(root, spec()).write_shard(0, make_batch(3, 0))
    shard = root / "shard-00000.h5"
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF
    shard.write_bytes(bytes(data))
    temp = root / ".shard-00001.h5.abc.tmp"
    temp.write_bytes(b"partial")
    w = SampleStoreWriter(root, spec())  # without the lock: maybe a live writer's temp file
    assert not w.has_shard(0)
    assert temp.exists()
    with folder_lock(root, tmp_path / "s.lock"):
        SampleStoreWriter(root, spec())
    assert not list(root.glob(".*.tmp"))


def test_a_reader_notices_that_its_store_was_rebuilt(tmp_path):
    root = tmp_path / "s"
    store = write_store(root, [make_batch(3, 0), make_batch(3, 1)])
    before = store.read([0]).ir
    remove_store(root)
    write_store(root, [make_batch(3, 5), make_batch(3, 6)])
    np.testing.assert_array_equal(store.read([0]).ir, before)  # its open shard: the old data
    with pytest.raises(StoreError, match="s: the store was rebuilt or removed while open"):
        store.read([3])  # a shard it had not opened: of the new store, refused
    remove_store(root)
    with pytest.raises(StoreError, match="shard-00000.h5: cannot read the shard"):
        store.verify()


def test_resume_with_another_spec_starts_over(tmp_path):
    root = tmp_path / "s"
    SampleStoreWriter(root, spec()).write_shard(0, make_batch(3, 0))
    w = SampleStoreWriter(root, spec(adapter_config={"k": 9}))
    assert not w.has_shard(0) and not (root / "shard-00000.h5").exists()


def test_truncated_shard_is_reported(tmp_path):
    store = write_store(tmp_path / "s", [make_batch(3, 0), make_batch(3, 1)])
    path = store.root / "shard-00001.h5"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match=r"shard-00001.h5: shard is truncated or altered"):
        SampleStore(store.root)


def test_corrupt_shard_is_reported(tmp_path):
    store = write_store(tmp_path / "s", [make_batch(3, 0)])
    path = store.root / "shard-00000.h5"
    size = path.stat().st_size
    path.write_bytes(b"\0" * size)  # same size, garbage content
    reopened = SampleStore(store.root)
    with pytest.raises(StoreError, match=r"shard-00000.h5: shard is corrupt or not HDF5"):
        reopened.read([0])
    with pytest.raises(StoreError, match="checksum differs"):
        reopened.verify()


def test_corrupt_chunk_inside_a_shard_is_reported(tmp_path):
    import h5py

    store = write_store(tmp_path / "s", [make_batch(3, 0)])
    path = store.root / "shard-00000.h5"
    with h5py.File(path) as f:
        info = f["ir"].id.get_chunk_info(1)
    data = bytearray(path.read_bytes())
    for k in range(info.byte_offset + 10, info.byte_offset + 40):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))  # same size: only the checksums can tell
    reopened = SampleStore(store.root)
    reopened.read([0])  # other chunks still read
    with pytest.raises(StoreError, match=r"shard-00000.h5: cannot read shard data"):
        reopened.read([1])


def test_altered_metadata_is_reported(tmp_path):
    store = write_store(tmp_path / "s", [make_batch(3, 0)])
    path = store.root / "metadata.csv"
    path.write_text(path.read_text().replace("europe", "conus", 1))
    with pytest.raises(StoreError, match=r"metadata.csv: checksum differs from the manifest"):
        SampleStore(store.root)
    path.unlink()
    with pytest.raises(StoreError, match="cannot read the metadata table"):
        SampleStore(store.root)


def test_missing_shard_and_bad_manifest(tmp_path):
    store = write_store(tmp_path / "s", [make_batch(3, 0)])
    shutil.copytree(store.root, tmp_path / "t")
    (tmp_path / "t" / "shard-00000.h5").unlink()
    with pytest.raises(StoreError, match="shard listed in the manifest is missing"):
        SampleStore(tmp_path / "t")
    manifest = json.loads((store.root / "manifest.json").read_text())
    manifest["format_version"] = 99
    (store.root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="format version 99"):
        SampleStore(store.root)
    manifest["format_version"] = 1
    del manifest["shards"]
    (store.root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=r"manifest lacks \['shards'\]"):
        SampleStore(store.root)


def test_writer_refuses_finished_store_and_bad_batch(tmp_path):
    store = write_store(tmp_path / "s", [make_batch(3, 0)])
    with pytest.raises(StoreError, match="already there"):
        SampleStoreWriter(store.root, spec())
    w = SampleStoreWriter(tmp_path / "u", spec(frames=2))
    with pytest.raises(ValueError, match="does not match the store spec"):
        w.write_shard(0, make_batch(3, 0))


def test_writer_validates_every_sample(tmp_path):
    w = SampleStoreWriter(tmp_path / "s", spec())
    bad = make_batch(3, 0)
    bad.ir[2, 1, 0, 4, 4] = np.nan
    with pytest.raises(SampleValidationError, match=r"shard-00000.h5 sample 2: ir contains NaN"):
        w.write_shard(0, bad)
    bad = make_batch(3, 0)
    bad.time[1, 2] += 60
    with pytest.raises(SampleValidationError, match="sample 1: frames are not evenly spaced"):
        w.write_shard(0, bad)
    assert not (tmp_path / "s" / "shard-00000.h5").exists()


def test_read_arguments_are_checked(tmp_path):
    store = write_store(tmp_path / "s", [make_batch(3, 0)])
    with pytest.raises(
        ConfigError, match="frames=4, step=1 span 4 stored frames: the store holds 3"
    ):
        store.read([0], frames=4)
    with pytest.raises(ConfigError, match="frames=2, step=3 span 4 stored frames"):
        store.read([0], frames=2, step=3)
    with pytest.raises(ConfigError, match="step must be a positive integer, got 0"):
        store.read([0], step=0)
    with pytest.raises(UnknownNameError, match="unknown band in this store 'WV6.2'"):
        store.read([0], bands=["WV6.2"])
    with pytest.raises(IndexError):
        store.read([3])


def test_torch_dataset_streams_and_preloads(tmp_path):
    store = write_store(tmp_path / "s", [make_batch(4, 0), make_batch(4, 1)])
    idx = np.array([6, 1, 3])
    lazy = StoreDataset(store, idx, frames=2, bands=["IR12.0"])
    eager = StoreDataset(store, idx, frames=2, bands=["IR12.0"], preload=True)
    for i in range(3):
        a, b = lazy[i], eager[i]
        assert a["ir"].shape == (2, 1, 8, 8) and a["index"] == b["index"] == idx[i]
        assert torch.equal(a["ir"], b["ir"]) and torch.equal(a["valid"], b["valid"])
        assert not torch.isnan(a["rain"]).any()
        assert (a["rain"][~a["valid"]] == 0).all()
    loader = torch.utils.data.DataLoader(lazy, batch_size=2, num_workers=2)
    assert sum(len(b["index"]) for b in loader) == 3
