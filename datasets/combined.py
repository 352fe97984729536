"""The ``combined`` dataset adapter: several stores (regions) merged into one.

Each real-data store holds one region (:mod:`qpebench.datasets.regions`), but a cross-region
split needs its train and test regions in one store. ``combined`` builds every part with its
own adapter under ``<root>/parts/<name>`` (or reuses a part already finished there), checks that
the parts agree on bands, frames and patch shape, and copies their samples, at most
``shard_size`` at a time, into one store whose metadata rows are the parts' rows in order.
The data config::

    adapter: combined
    frames: 4            # what every part must hold (the run configuration checks frames here)
    shard_size: 512      # most samples per merged shard
    parts:
      europe: {adapter: colocated, region: europe, satellite: [...], radar: [...]}
      conus: {adapter: colocated, region: conus, satellite: [...], radar: [...]}

An interrupted build resumes: finished parts are reused and copied shards kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from qpebench.errors import ConfigError
from qpebench.registry import DATASETS
from qpebench.store import SampleStore, SampleStoreWriter, StoreSpec

#: Columns the store adds to every metadata row (not copied: the new store writes its own).
_STORE_COLUMNS = ["shard", "row"]


def build_part(
    root: Path, name: str, config: dict[str, Any], *, progress: bool = True
) -> SampleStore:
    """Open the part ``name`` finished under ``root``, or build it with its own adapter.

    Raises:
        ConfigError: The part's config is not a mapping with an ``adapter``.
        UnknownNameError: Unknown adapter.
    """
    if not isinstance(config, dict) or "adapter" not in config:
        raise ConfigError(f"data.parts.{name}: needs a mapping with an adapter, got {config!r}")
    params = dict(config)
    build = DATASETS.get(str(params.pop("adapter")))
    if (root / "manifest.json").exists():
        return SampleStore(root)
    return SampleStore(build(root, progress=progress, **params).root)


def merged_spec(parts: dict[str, SampleStore], frames: int | None, shard_size: int) -> StoreSpec:
    """The spec of the merged store: the parts' common shape, their grids and sources.

    Raises:
        ConfigError: The parts differ in bands, frames or patch shape, disagree with
            ``frames``, or define one grid name differently (the message names the parts).
    """
    first_name, first = next(iter(parts.items()))
    for name, store in parts.items():
        for what, mine, theirs in (
            ("bands", store.bands, first.bands),
            ("frames", store.frames, first.frames),
            ("patch shape", store.patch_shape, first.patch_shape),
        ):
            if mine != theirs:
                raise ConfigError(
                    f"data.parts: {what} differ: part {first_name!r} has {theirs}, part "
                    f"{name!r} has {mine}; every part must hold the same"
                )
    if frames is not None and first.frames != frames:
        raise ConfigError(
            f"data.frames is {frames} but the parts hold {first.frames} frames per sample"
        )
    grids: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}
    for name, store in parts.items():
        for grid, definition in store.manifest["grids"].items():
            if grid in grids and grids[grid] != definition:
                raise ConfigError(
                    f"data.parts: grid {grid!r} of part {name!r} differs from the grid of the "
                    f"same name in part {owner[grid]!r}"
                )
            grids[grid], owner[grid] = definition, name
    return StoreSpec(
        bands=first.bands,
        frames=first.frames,
        patch_shape=first.patch_shape,
        adapter="combined",
        adapter_config={
            "parts": {
                name: {
                    "adapter": store.manifest["adapter"],
                    "config": store.manifest["adapter_config"],
                    "dataset_version": store.dataset_version,
                }
                for name, store in parts.items()
            },
            "shard_size": shard_size,
        },
        grids=grids,
        sources=[
            {**source, "part": name}
            for name, store in parts.items()
            for source in store.manifest.get("sources", [])
        ],
    )


@DATASETS.register("combined")
def build_combined_store(
    root: str | Path,
    *,
    parts: dict[str, dict[str, Any]],
    frames: int | None = None,
    shard_size: int = 512,
    keep_parts: bool = False,
    progress: bool = True,
) -> SampleStore:
    """Build the parts, then merge them into one store at ``root`` (resumable).

    Args:
        root: Store directory; the parts are built under ``root/parts/<name>``.
        parts: Part name → the part's data config (``adapter`` and its own keys).
        frames: Frames per sample every part must hold (checked; ``None``: any, as long as the
            parts agree).
        shard_size: Most samples per shard of the merged store (bounds the memory used: one
            shard is read and written at a time).
        keep_parts: Keep the part stores after the merge (default: delete them).
        progress: Show progress bars.

    Returns:
        The merged store: the parts' samples and metadata rows, in order.

    Raises:
        ConfigError: No part, a malformed part, ``shard_size`` below 1, or parts that
            disagree (see :func:`merged_spec`).
    """
    if not isinstance(parts, dict) or not parts:
        raise ConfigError("data.parts: give at least one part, name -> its data config")
    if shard_size < 1:
        raise ConfigError(f"data.shard_size must be positive, got {shard_size}")
    root = Path(root)
    stores = {
        str(name): build_part(root / "parts" / str(name), str(name), config, progress=progress)
        for name, config in parts.items()
    }
    writer = SampleStoreWriter(root, merged_spec(stores, frames, shard_size))
    jobs = [
        (store, rows[start : start + shard_size])
        for store in stores.values()
        for shard in store.manifest["shards"]
        for rows in [np.flatnonzero(store.metadata["shard"].to_numpy() == shard["file"])]
        for start in range(0, rows.size, shard_size)
    ]
    for index, (store, rows) in enumerate(
        tqdm(jobs, desc="merging shards", unit="shard", disable=not progress)
    ):
        if not writer.has_shard(index):
            batch = store.read(rows)
            batch.metadata = batch.metadata.drop(columns=_STORE_COLUMNS)
            writer.write_shard(index, batch)
    merged = writer.finalize()
    for store in stores.values():
        store.close()
    if not keep_parts:
        shutil.rmtree(root / "parts")
    return merged
