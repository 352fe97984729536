"""The application layer: prepare the store, train every model, evaluate, record, render.

``qpebench run`` calls :func:`run_benchmark`; ``qpebench prepare`` calls :func:`prepare_store`.
This is the one place that wires the core, the adapters, the models and the leaderboard.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qpebench import __version__
from qpebench.atomic import write_bytes_atomic
from qpebench.config import RunConfig
from qpebench.errors import ConfigError
from qpebench.evaluation import ModelEvaluation, evaluate_model, metadata_strata, paired_tests
from qpebench.leaderboard import leaderboard_markdown
from qpebench.models import RainModel, TrainData, build_model
from qpebench.names import check_writable, confined
from qpebench.records import (
    SCHEMA,
    SCHEMA_VERSION,
    load_record,
    now_utc,
    provenance,
    write_record,
)
from qpebench.registry import DATASETS, MODELS, load_builtins
from qpebench.splits import format_summary
from qpebench.store import SampleStore, remove_store
from qpebench.training import resolve_device


def store_path(cache_dir: Path, data: dict[str, Any]) -> Path:
    """Where the store of a data configuration lives.

    One directory per configuration and qpebench version: a cached store from another code
    version is not reused.

    Raises:
        ConfigError: ``data.adapter`` would put the store outside ``cache_dir``.
    """
    key = {"data": data, "qpebench": __version__}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return confined(cache_dir, "stores", f"{data['adapter']}-{digest}")


def prepare_store(data: dict[str, Any], cache_dir: Path, *, progress: bool = True) -> SampleStore:
    """Open the store of ``data`` from the cache, or build it (resuming a partial build).

    A cached store is verified against its manifest checksums first; one that fails (truncated,
    corrupt or altered shard or metadata) raises rather than being silently rebuilt, so a
    damaged archive is noticed (``qpebench prepare --rebuild`` rebuilds it). A store to build
    needs a writable ``cache_dir``, checked before anything is built; a cached one is only read.

    Raises:
        ConfigError: ``data.adapter`` is missing, or the store must be built and ``cache_dir``
            is not a writable folder.
        StoreError: The cached store is damaged.
    """
    load_builtins()
    params = dict(data)
    adapter = params.pop("adapter", None)
    if adapter is None:
        raise ConfigError("data.adapter is missing: which adapter builds the store?")
    build = DATASETS.get(adapter)
    root = store_path(cache_dir, data)
    if (root / "manifest.json").exists():
        store = SampleStore(root)
        store.verify()
        return store
    check_writable(cache_dir, "paths.cache")
    return SampleStore(build(root, progress=progress, **params).root)


def seed_everything(seed: int) -> None:
    """Seed torch and numpy's legacy global generator (model weights, data order)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may draw from it


def build_configured(name: str, cfg: RunConfig) -> RainModel:
    """Instantiate registry model ``name`` for the configured input and parameters.

    ``train`` and ``param_budget`` go to the models that take them; ``model_params.<name>``
    overrides them (``model_params.<name>.train`` setting by setting).

    Raises:
        ConfigError: ``model_params`` names an argument the model does not take.
    """
    accepted = inspect.signature(MODELS.get(name)).parameters
    params: dict[str, Any] = {}
    if "train" in accepted:
        params["train"] = cfg.train
    if "param_budget" in accepted and cfg.param_budget is not None:
        params["param_budget"] = cfg.param_budget
    own = dict(cfg.model_params.get(name, {}))
    if isinstance(own.get("train"), dict) and "train" in accepted:
        own["train"] = {**asdict(cfg.train), **own["train"]}  # override single settings
    params.update(own)
    return build_model(name, frames=cfg.frames, bands=cfg.bands, step=cfg.step, **params)


@dataclass
class RunResult:
    """What :func:`run_benchmark` produced."""

    run_dir: Path
    records: list[dict[str, Any]]
    leaderboard_path: Path
    markdown: str


def _new_run_dir(cfg: RunConfig) -> Path:
    run_id = f"{now_utc().replace(':', '').replace('-', '')}-{cfg.config_hash}"
    run_dir = confined(cfg.runs_dir, run_id)
    suffix = 1
    while run_dir.exists():
        run_dir = confined(cfg.runs_dir, f"{run_id}.{suffix}")
        suffix += 1
    confined(run_dir, "models").mkdir(parents=True)
    confined(run_dir, "records").mkdir()
    return run_dir


def run_benchmark(cfg: RunConfig, log: Callable[[str], None] = print) -> RunResult:
    """Run the whole benchmark: store, split, then per seed train and evaluate every model.

    Records are written once every model of a seed is evaluated, because each carries its
    paired comparisons with the others (same test samples, same bootstrap days). The output
    folders are checked first, so a bad ``paths.*`` fails before the store is built; every file
    is written under its configured folder (:func:`qpebench.names.confined`).

    Args:
        cfg: The checked configuration.
        log: Where progress lines go.

    Returns:
        The run directory, the records and the rendered leaderboard.

    Raises:
        ConfigError: ``paths.runs``, ``paths.leaderboard`` or (for a store to build)
            ``paths.cache`` is not a writable folder.
    """
    load_builtins()
    started = time.perf_counter()
    check_writable(cfg.runs_dir, "paths.runs")
    check_writable(cfg.leaderboard_dir, "paths.leaderboard")
    store = prepare_store(cfg.data, cfg.cache_dir, progress=cfg.progress)
    log(f"store {store.root} ({len(store)} samples, dataset version {store.dataset_version})")
    split = cfg.split.resolve(store.metadata, patch_shape=store.patch_shape, frames=store.frames)
    log(f"split {cfg.split.name}:\n{format_summary(split.summary(store.metadata))}")
    metadata_strata(store.metadata, cfg.evaluation.strata)  # a bad stratifier fails before training
    run_dir = _new_run_dir(cfg)
    device = str(resolve_device(cfg.train.device))
    prov = provenance(device)
    data = TrainData(store=store, train=split.sets["train"], val=split.sets["id_val"])
    domains = split.domains()
    split_info = {
        "name": cfg.split.name,
        "description": cfg.split.description,
        "sizes": {k: int(v.size) for k, v in split.sets.items()},
        "dropped_by_buffer": split.dropped_by_buffer,
        "train_domain": domains["train"],
        "test_domains": {k: domains[k] for k in split.test_sets},
    }
    records = []
    for seed in cfg.seeds:
        evaluations: dict[str, ModelEvaluation] = {}
        pending: dict[str, dict[str, Any]] = {}
        for name in cfg.models:
            seed_everything(seed)
            model = build_configured(name, cfg)
            t0 = time.perf_counter()
            training = model.fit(data, seed=seed, progress=cfg.progress)
            fit_s = time.perf_counter() - t0
            if model.card.trainable:
                model.save(confined(run_dir, "models", f"{name}.seed{seed}.pt"))
            t0 = time.perf_counter()
            ev = evaluate_model(model, store, split.test_sets, cfg.evaluation, seed)
            eval_s = time.perf_counter() - t0
            evaluations[name] = ev
            pending[name] = {
                "schema": SCHEMA,
                "schema_version": SCHEMA_VERSION,
                "run_id": run_dir.name,
                "created": now_utc(),
                "split": split_info,
                "model": model.card.to_json(),
                "model_config": model.config,
                "metrics": ev.metrics,
                "intervals": ev.intervals,
                "strata": ev.strata,
                "curves": ev.curves,
                "examples": ev.examples,
                "n_samples": {k: int(v.size) for k, v in split.test_sets.items()},
                "config": cfg.resolved,
                "dataset": {
                    "adapter": store.manifest["adapter"],
                    "version": store.dataset_version,
                    "store": str(store.root),
                },
                "seed": seed,
                "training": training,
                "provenance": prov,
                "runtime_s": {"fit": fit_s, "evaluate": eval_s},
            }
            id_scores = ev.metrics.get("id_test", {})
            log(
                f"{name} (seed {seed}): CSI@1 ID {id_scores.get('csi@1', float('nan')):.3f}, "
                f"RMSE ID {id_scores.get('rmse', float('nan')):.3f} mm/h "
                f"(fit {fit_s:.0f} s, evaluate {eval_s:.0f} s)"
            )
        paired = paired_tests(evaluations, cfg.evaluation)
        for name, record in pending.items():
            record["paired"] = paired[name]
            path = write_record(confined(run_dir, "records", f"{name}.seed{seed}.json"), record)
            records.append(load_record(path))  # render what the files hold, nothing else
    markdown = leaderboard_markdown(records)
    out = confined(cfg.leaderboard_dir, f"{cfg.split.name}.md")
    write_bytes_atomic(out, markdown.encode("utf-8"))
    write_bytes_atomic(confined(run_dir, "leaderboard.md"), markdown.encode("utf-8"))
    log(f"run {run_dir} finished in {time.perf_counter() - started:.0f} s")
    return RunResult(run_dir=run_dir, records=records, leaderboard_path=out, markdown=markdown)


def rebuild_store(data: dict[str, Any], cache_dir: Path, *, progress: bool = True) -> SampleStore:
    """Delete the cached store of ``data`` and build it again."""
    remove_store(store_path(cache_dir, data))
    return prepare_store(data, cache_dir, progress=progress)
