"""The application layer: prepare the store, then run jobs (fit, evaluate, record), render.

``qpebench run`` calls :func:`run_benchmark`; ``qpebench prepare`` calls :func:`prepare_store`.
A job is one (model, seed, configuration) and writes only into its own folder of the run folder
(see :func:`run_benchmark`). This is the one place that wires the core, the adapters, the
models and the leaderboard.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout

from qpebench import __version__
from qpebench.atomic import write_bytes_atomic, write_json_atomic
from qpebench.config import RunConfig
from qpebench.distributed import World, barrier, init_distributed
from qpebench.errors import ConfigError
from qpebench.evaluation import EvalSettings, evaluate_model, metadata_strata, truth_ceiling
from qpebench.leaderboard import leaderboard_markdown
from qpebench.leaderboard.aggregate import group_records
from qpebench.leaderboard.sources import find_records, load_records
from qpebench.locks import cache_lock_file, folder_lock
from qpebench.models import ModelCard, RainModel, TrainData, build_model
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
from qpebench.sample import frames_for_window
from qpebench.splits import format_summary
from qpebench.states import STATES_FILE, read_states, write_states
from qpebench.store import MANIFEST, SampleStore, remove_store
from qpebench.trainer import resolve_device, resolve_precision


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


def prepare_store(
    data: dict[str, Any],
    cache_dir: Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> SampleStore:
    """Open the store of ``data`` from the cache, or build it (resuming a partial build).

    A cached store is verified against its manifest checksums first; one that fails (truncated,
    corrupt or altered shard or metadata) raises rather than being silently rebuilt, so a
    damaged archive is noticed (``qpebench prepare --rebuild`` rebuilds it). A store to build
    needs a writable ``cache_dir``, checked before anything is built; a cached one is only read,
    without a lock (a read-only cache works).

    The build holds the store's lock (``<cache>/locks/<store>.lock``, :mod:`qpebench.locks`):
    a second job preparing the same store waits for the first, then verifies and reuses the
    store it built.

    Args:
        data: The ``data`` configuration (``adapter`` and its arguments).
        cache_dir: The cache folder (``paths.cache``).
        progress: Show the adapter's progress bars.
        log: Where the lines about waiting for another job and reusing its store go.

    Raises:
        ConfigError: ``data.adapter`` is missing, or the store must be built and ``cache_dir``
            is not a writable folder.
        StoreError: The cached store is damaged, or its lock file cannot be created.
    """
    load_builtins()
    params = dict(data)
    adapter = params.pop("adapter", None)
    if adapter is None:
        raise ConfigError("data.adapter is missing: which adapter builds the store?")
    build = DATASETS.get(adapter)
    root = store_path(cache_dir, data)
    if (root / MANIFEST).exists():
        store = SampleStore(root)
        store.verify()
        return store
    check_writable(cache_dir, "paths.cache")
    with folder_lock(root, cache_lock_file(cache_dir, root.name), on_wait=log):
        if (root / MANIFEST).exists():  # another job built it while this one waited
            log(f"{root}: built by another job; verifying and reusing it")
            store = SampleStore(root)
            store.verify()
            return store
        return SampleStore(build(root, progress=progress, **params).root)


def seed_everything(seed: int) -> None:
    """Seed torch and numpy's legacy global generator (model weights, data order)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may draw from it


def build_configured(name: str, cfg: RunConfig, frame_step_s: int | None = None) -> RainModel:
    """Instantiate registry model ``name`` for the configured input and parameters.

    ``train`` and ``param_budget`` go to the models that take them; ``model_params.<name>``
    overrides them (``model_params.<name>.train`` setting by setting) and the input
    (``frames``, ``step``, ``bands``, ``window_min``, checked by
    :func:`qpebench.config.run_config`). The most specific input setting wins: the model's
    ``frames`` or ``window_min``, then the global ``window_min``, then the global ``frames``.

    Args:
        name: Registry name.
        cfg: The run configuration.
        frame_step_s: The training set's one frame interval (``None`` if unknown or mixed),
            which turns a ``window_min`` into frames (:func:`qpebench.sample.frames_for_window`).

    Raises:
        ConfigError: ``model_params`` names an argument the model does not take, or a
            ``window_min`` without ``frame_step_s``, not a whole number of intervals, or
            reaching further back than the stored frames.
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
    window = params.pop("window_min", None if "frames" in params else cfg.window_min)
    frames = params.pop("frames", cfg.frames)
    step = params.pop("step", cfg.step)
    bands = params.pop("bands", cfg.bands)
    if window is not None:
        if frame_step_s is None:
            raise ConfigError(
                f"{name}: window_min={window:g} needs the one frame interval of the training "
                "set (qpebench run reads it from the store; a training set that mixes intervals "
                "has none): give frames instead"
            )
        frames = frames_for_window(window, frame_step_s, step)
        stored = int(cfg.data.get("frames", frames))
        if step * (frames - 1) + 1 > stored:
            raise ConfigError(
                f"{name}: window_min={window:g} is {frames} frames of {frame_step_s} s at step "
                f"{step}, spanning {step * (frames - 1) + 1} stored frames; the data holds {stored}"
            )
    return build_model(name, frames=frames, step=step, bands=bands, **params)


#: A run folder's index of its jobs (``leaderboard/sources.py`` reads it).
RUN_INDEX = "run.json"
#: A job's files, in ``<run>/<model>.seed<seed>/``; the record is written last.
RECORD_FILE = "record.json"
MODEL_FILE = "model.pt"
CHECKPOINT_DIR = "checkpoint"
#: The lock a process holds while it runs a job (another process skips the job meanwhile).
JOB_LOCK = ".lock"
#: Keys of the resolved configuration that do not change a job's result, or that name the jobs
#: rather than the configuration (the run folder's hash leaves them out).
NOT_CONFIGURATION = ("paths", "progress", "models", "seeds", "model", "seed", "model_params")


@dataclass
class RunResult:
    """What :func:`run_benchmark` produced."""

    run_dir: Path
    jobs: list[str]
    records: list[dict[str, Any]]
    leaderboard_path: Path | None
    summary: list[str]


def job_name(model: str, seed: int, params: dict[str, Any] | None = None) -> str:
    """A job's folder name: ``<model>.seed<seed>``, then a hash of its ``model_params`` if any.

    The run folder's hash leaves ``model_params`` out (a sweep job carries only its own model's),
    so two jobs of one model with other parameters get their own folders here.
    """
    name = f"{model}.seed{seed}"
    if params:
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
        name += f".{digest}"
    return name


def run_folder(cfg: RunConfig, commit: str | None) -> Path:
    """The run folder of ``cfg``: ``<paths.runs>/<split>-<hash>``.

    The hash covers the configuration without the model and seed lists (which name the jobs)
    plus the code version and commit, so every job of one configuration and code lands in one
    folder, whichever command or sweep launched it, and a relaunch finds the jobs it finished.
    """
    core = {k: v for k, v in cfg.resolved.items() if k not in NOT_CONFIGURATION}
    key = {"config": core, "qpebench": __version__, "commit": commit}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return confined(cfg.runs_dir, f"{cfg.split.name}-{digest}")


def _update_index(run_dir: Path, planned: list[str]) -> bool:
    """Add ``planned`` to the run's job list; mark it complete when every job has a record.

    Concurrent launches into one run folder update the index under a lock.

    Returns:
        Whether every job of the run has its record.
    """
    with FileLock(confined(run_dir, ".run.lock")):
        path = confined(run_dir, RUN_INDEX)
        jobs: list[str] = json.loads(path.read_text())["jobs"] if path.exists() else []
        jobs = list(dict.fromkeys([*jobs, *planned]))
        complete = all(confined(run_dir, j, RECORD_FILE).is_file() for j in jobs)
        write_json_atomic(path, {"jobs": jobs, "complete": complete})
    return complete


@dataclass(frozen=True)
class _RunContext:
    """What every job of a run shares."""

    cfg: RunConfig
    store: SampleStore
    data: TrainData
    test_sets: dict[str, Any]
    split_info: dict[str, Any]
    provenance: dict[str, Any]
    run_dir: Path
    world: World

    def job(self, model: str, seed: int) -> str:
        """The folder name of the job of ``model`` and ``seed``."""
        return job_name(model, seed, self.cfg.model_params.get(model))


def _finished_record(path: Path) -> dict[str, Any] | None:
    """The job's record and verified states if the job finished, else ``None``."""
    if not path.is_file():
        return None
    record = load_record(path)
    read_states(path, record)
    return record


def _run_job(
    ctx: _RunContext, name: str, seed: int, log: Callable[[str], None]
) -> dict[str, Any] | None:
    """Fit, evaluate and record one job; ``None`` when another process is running it.

    A job whose record exists is not run again. A killed job leaves its checkpoint: the same
    command resumes the fit. Only rank 0 writes; the record is written last.
    """
    world = ctx.world
    job_dir = confined(ctx.run_dir, ctx.job(name, seed))
    record_path = confined(job_dir, RECORD_FILE)
    done = _finished_record(record_path)
    if done is not None:
        log(f"{job_dir.name}: finished before, not run again")
        return done
    if world.main:
        job_dir.mkdir(parents=True, exist_ok=True)
    barrier()
    lock = FileLock(confined(job_dir, JOB_LOCK)) if world.size == 1 else None
    try:
        if lock is not None:
            lock.acquire(timeout=0)
    except Timeout:
        log(f"{job_dir.name}: running in another process, skipped")
        return None
    try:
        return _fit_and_record(ctx, name, seed, job_dir, log)
    finally:
        if lock is not None:
            lock.release()


def _fit_and_record(
    ctx: _RunContext, name: str, seed: int, job_dir: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    cfg, world, store = ctx.cfg, ctx.world, ctx.store
    seed_everything(seed)
    model = build_configured(name, cfg, frame_step(store, ctx.data.train))
    t0 = time.perf_counter()
    checkpoints = confined(job_dir, CHECKPOINT_DIR)
    training = model.fit(
        ctx.data, seed=seed, progress=cfg.progress and world.main, checkpoint_dir=checkpoints
    )
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = evaluate_model(model, store, ctx.test_sets, cfg.evaluation, seed)
    eval_s = time.perf_counter() - t0
    record_path = confined(job_dir, RECORD_FILE)
    if world.main:
        if model.card.trainable:
            model.save(confined(job_dir, MODEL_FILE))
        states_path = confined(job_dir, STATES_FILE)
        states_path.unlink(missing_ok=True)  # left by a job killed before its record
        record = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "run_id": ctx.run_dir.name,
            "created": now_utc(),
            "split": ctx.split_info,
            "model": model.card.to_json(),
            "model_config": model.config,
            "metrics": ev.metrics,
            "intervals": ev.intervals,
            "strata": ev.strata,
            "strata_intervals": ev.strata_intervals,
            "curves": ev.curves,
            "examples": ev.examples,
            "states": write_states(states_path, ev),
            "n_samples": {k: int(v.size) for k, v in ctx.test_sets.items()},
            "input_window_min": _windows(
                model.card, store, {"train": ctx.data.train, **ctx.test_sets}
            ),
            "config": cfg.resolved,
            "dataset": {
                "adapter": store.manifest["adapter"],
                "version": store.dataset_version,
                "store": str(store.root),
            },
            "seed": seed,
            "training": training,
            "provenance": {**ctx.provenance, "precision": training.get("precision", "fp32")},
            "runtime_s": {"fit": fit_s, "evaluate": eval_s},
        }
        write_record(record_path, record)
        shutil.rmtree(checkpoints, ignore_errors=True)
    barrier()
    id_scores = ev.metrics.get("id_test", {})
    log(
        f"{job_dir.name}: CSI@1 ID {id_scores.get('csi@1', math.nan):.3f}, "
        f"RMSE ID {id_scores.get('rmse', math.nan):.3f} mm/h "
        f"(fit {fit_s:.0f} s, evaluate {eval_s:.0f} s)"
    )
    return load_record(record_path)  # what the file holds, nothing else


def _summary(records: list[dict[str, Any]], run_dir: Path, board: Path | None) -> list[str]:
    """One line per board entry (model configuration) and test set, then what next.

    The figures are the board's (:func:`qpebench.leaderboard.aggregate.group_records`): CSI@1 and
    RMSE of one seed, or their mean ± standard deviation over the seeds with a value.
    """
    lines = []
    for entry in group_records(records, oracle=True).entries:
        seeds = ", ".join(map(str, entry.seeds))
        who = f"{entry.label} seed{'s' if len(entry.seeds) > 1 else ''} {seeds}"
        for test_set in entry.test_sets:
            cells = []
            for metric, unit in (("csi@1", ""), ("rmse", " mm/h")):
                stat = entry.stat(test_set, metric)
                text = "–" if stat.missing else f"{stat.mean:.3f}"
                if stat.n > 1:
                    text += f" ± {stat.std:.3f}"
                if 0 < stat.n < len(entry.seeds):
                    text += f" (n={stat.n})"
                cells.append(f"{metric.upper()} {text}{unit}")
            lines.append(f"  {who:<36} {test_set:<20} {'  '.join(cells)}")
    lines.append(f"run folder: {run_dir}")
    if board is not None:
        lines.append(f"board: {board}")
    lines.append(f"render: qpebench leaderboard render {run_dir} --out board/")
    lines.append(f"publish: qpebench leaderboard publish {run_dir}")
    return lines


def run_benchmark(cfg: RunConfig, log: Callable[[str], None] = print) -> RunResult:
    """Run every job (model × seed) of ``cfg``: store, split, then fit, evaluate and record each.

    Each job writes only into its own folder ``<run>/<model>.seed<seed>/`` (:func:`run_folder`):
    its checkpoint while it trains, its model file, its day states and, last, its record. Jobs
    that finished before are not run again; a job another process is running is skipped.
    Every comparison is made when records are rendered (:mod:`qpebench.states`); the run's own
    board (``<run>/leaderboard.md``) is rendered from all the finished jobs of its folder.
    Nothing is written outside ``paths.runs`` (``qpebench leaderboard publish`` writes to
    ``leaderboard/results``). Under torchrun, every process runs every job together (DDP);
    only rank 0 writes.

    Args:
        cfg: The checked configuration.
        log: Where progress lines go.

    Returns:
        The run folder, this launch's records, the board and a summary.

    Raises:
        ConfigError: ``paths.runs`` or (for a store to build) ``paths.cache`` is not a writable
            folder.
    """
    load_builtins()
    started = time.perf_counter()
    world = init_distributed(cfg.train.device)
    say = log if world.main else _quiet
    check_writable(cfg.runs_dir, "paths.runs")
    store = prepare_store(cfg.data, cfg.cache_dir, progress=cfg.progress and world.main, log=say)
    say(f"store {store.root} ({len(store)} samples, dataset version {store.dataset_version})")
    split = cfg.split.resolve(
        store.metadata,
        patch_shape=store.patch_shape,
        frames=store.frames,
        grids=store.manifest["grids"],
    )
    say(f"split {cfg.split.name}:\n{format_summary(split.summary(store.metadata))}")
    metadata_strata(store.metadata, cfg.evaluation.strata)  # a bad stratifier fails before training
    train_step = frame_step(store, split.sets["train"])
    for name in cfg.models:  # a window in minutes that does not fit fails before training too
        build_configured(name, cfg, train_step)
    device = str(resolve_device(cfg.train.device, world))
    prov = provenance(device, resolve_precision(cfg.train.precision, torch.device(device)))
    run_dir = run_folder(cfg, prov["commit"])
    jobs = [(name, seed) for seed in cfg.seeds for name in cfg.models]
    names = [job_name(m, s, cfg.model_params.get(m)) for m, s in jobs]
    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _update_index(run_dir, names)
    barrier()
    domains = split.domains()
    ctx = _RunContext(
        cfg=cfg,
        store=store,
        data=TrainData(store=store, train=split.sets["train"], val=split.sets["id_val"]),
        test_sets=dict(split.test_sets),
        split_info={
            "name": cfg.split.name,
            "description": cfg.split.description,
            "sizes": {k: int(v.size) for k, v in split.sets.items()},
            "dropped_by_buffer": split.dropped_by_buffer,
            "train_domain": domains["train"],
            "test_domains": {k: domains[k] for k in split.test_sets},
            **_ceiling(store, split.test_sets, cfg.evaluation),
        },
        provenance=prov,
        run_dir=run_dir,
        world=world,
    )
    results = [(n, _run_job(ctx, m, s, say)) for n, (m, s) in zip(names, jobs, strict=True)]
    finished = [(n, r) for n, r in results if r is not None]
    records = [r for _, r in finished]
    board, records_in_run = None, records
    if world.main:
        complete = _update_index(run_dir, [])
        records_in_run, states = load_records(find_records([run_dir]).files)
        markdown = leaderboard_markdown(records_in_run, None, states)
        board = confined(run_dir, "leaderboard.md")
        write_bytes_atomic(board, markdown.encode("utf-8"))
        if not complete:
            say(f"run {run_dir}: some jobs are not finished (another process, or failed)")
    say(f"run {run_dir} finished in {time.perf_counter() - started:.0f} s")
    return RunResult(
        run_dir=run_dir,
        jobs=[n for n, _ in finished],
        records=records,
        leaderboard_path=board,
        summary=_summary(records_in_run, run_dir, board),
    )


def _ceiling(
    store: SampleStore, test_sets: Mapping[str, Any], settings: EvalSettings
) -> dict[str, Any]:
    """``truth_ceiling`` for the record's split block when the store holds the true rain."""
    ceiling = truth_ceiling(store, test_sets, settings)
    return {"truth_ceiling": ceiling} if ceiling else {}


def frame_step(store: SampleStore, indices: Any) -> int | None:
    """The one frame interval (s) of the samples ``indices``; ``None`` if they mix intervals."""
    steps = np.unique(store.metadata["frame_step_s"].to_numpy()[indices])
    return int(steps[0]) if steps.size == 1 else None


def _windows(card: ModelCard, store: SampleStore, sets: Mapping[str, Any]) -> dict[str, Any]:
    """Minutes from the first to the last input frame on each set (``None`` where mixed)."""
    column = store.metadata["frame_step_s"].to_numpy()
    out: dict[str, Any] = {}
    for name, idx in sets.items():
        steps = np.unique(column[idx])
        out[name] = (
            float((card.frames - 1) * card.step * steps[0] / 60) if steps.size == 1 else None
        )
    return out


def _quiet(line: str) -> None:
    """The log of processes other than rank 0."""


def rebuild_store(
    data: dict[str, Any],
    cache_dir: Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> SampleStore:
    """Delete the cached store of ``data`` and build it again, holding the store's lock.

    A job preparing the same store meanwhile waits and then reuses the new store. A job that
    already opened the old store is not protected: it fails with a :class:`StoreError` when it
    next opens a shard (or when its verification finds a shard gone), so rebuild a store only
    while no run reads it.

    Raises:
        ConfigError: ``cache_dir`` is not a writable folder.
        StoreError: The lock file cannot be created.
    """
    root = store_path(cache_dir, data)
    check_writable(cache_dir, "paths.cache")
    with folder_lock(root, cache_lock_file(cache_dir, root.name), on_wait=log):
        remove_store(root)
        return prepare_store(data, cache_dir, progress=progress, log=log)
