"""The training loop of every torch model: data, optimisation, precision, checkpoints, DDP.

:class:`Trainer` owns the loop; the model (:class:`qpebench.training.TorchRainModel`) owns its
network, input normalisation, output spec and state; an algorithm turns a batch into loss
terms (the WILDS pattern: :class:`ERM` is plain supervised training; a domain-adaptation method
subclasses it and overrides :meth:`ERM.training_step`, which also receives an unlabeled batch).

**Exact batches.** ``train.batch_size`` is the number of samples of one optimiser step, over
all processes; it is split into ``world size × train.accumulate`` micro-batches. Every loss term
is a sum over pixels divided by a normaliser that depends on the data only (the rain weights,
the valid-pixel count: :meth:`ERM.normalisers`); the trainer sums the normalisers over the
step's micro-batches and processes before dividing. So an accumulated or distributed step
computes the same loss (and gradient, up to float rounding) as one big batch. Batch
normalisation is the exception: it normalises each micro-batch, so a fit on ``R`` processes
with ``accumulate = A`` equals a one-process fit with ``accumulate = R × A`` (the micro-batches
are the same, see :class:`EpochBatches`; torch's ``SyncBatchNorm`` exists for CUDA only, and
would make CPU and GPU fits differ); networks without it give the same fit for any ``R × A``.

**Data.** Samples stream from the store through ``DataLoader`` workers (persistent, prefetching;
pinned memory and non-blocking copies on CUDA), each worker reading a whole micro-batch with one
store read (the sampler yields lists of positions); or, when ``train.preload`` allows and the
training and validation sets fit in ``train.memory_budget``, from memory. The order is a
permutation seeded by the seed and the epoch (:class:`EpochBatches`), so it does not depend on
the number of processes or on a resume.

**Protocol.** The whole schedule runs (early stopping only with ``schedule: constant``, where
stopping leaves nothing half done); the kept weights are those of the epoch with the lowest
``id_val`` loss (``select: best``) or the last ones (``select: final``); the training log says
which epoch was kept and why.

**Checkpoints.** With a checkpoint folder, an atomic checkpoint is written after every epoch
(and every ``train.checkpoint_steps`` optimiser steps): weights, optimiser, schedule, gradient
scaler, the RNG states of torch, NumPy and Python, the position in the epoch, the history and
the kept weights, under a hash of everything that changes the result. Running the same fit again
resumes from it and ends with the same weights and training log (bit-identical on CPU with
deterministic kernels); a checkpoint of another configuration is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from qpebench.atomic import write_with
from qpebench.distributed import World, all_reduce_sum, barrier, current_world
from qpebench.errors import ConfigError
from qpebench.limits import human, parse_size
from qpebench.models import TrainData
from qpebench.torchdata import BandMoments, StoreDataset, sample_nbytes

if TYPE_CHECKING:
    from qpebench.training import TorchRainModel

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("onecycle", "constant")
SELECTIONS = ("best", "final")
#: Settings that change how fast a fit runs, not what it computes (left out of the
#: checkpoint's configuration hash, so a fit may resume on another device or loader setting).
RUNTIME_SETTINGS = frozenset({"device", "workers", "preload", "memory_budget", "checkpoint_steps"})
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "qpebench-checkpoint"
CHECKPOINT_VERSION = 1
#: Samples per read when normalisation statistics and validation losses are computed.
EVAL_BATCH = 64


def _integer(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"train.{key} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"train.{key} must be at least {minimum}, got {value}")


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"train.{key} must be one of {list(allowed)}, got {value!r}")


@dataclass(frozen=True)
class TrainSettings:
    """How a torch model is trained (the ``train`` config group, ``docs/training.md``).

    Attributes:
        epochs: Passes over the training set.
        batch_size: Samples per optimiser step, over all processes.
        accumulate: Micro-batches per step and process (gradient accumulation).
        lr: Peak learning rate.
        weight_decay: AdamW weight decay.
        schedule: ``onecycle`` (warm-up then annealing over all epochs) or ``constant``.
        patience: Stop after this many epochs without a lower validation loss; only with
            ``schedule: constant`` (``null``: run every epoch).
        select: Keep the weights of the ``best`` epoch on ``id_val`` or the ``final`` ones.
        clip_grad_norm: Clip the gradients' global norm to this (``null``: no clipping).
        precision: ``fp32``, ``bf16``, ``fp16`` (CUDA only, with a gradient scaler) or ``auto``
            (bf16 on CUDA devices that support it, else fp32).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        deterministic: Deterministic torch kernels only (same seed, same weights).
        preload: ``auto`` (load into memory when the sets fit in ``memory_budget``), ``true``
            or ``false`` (stream from the store).
        memory_budget: Memory the preloaded sets may take (``512M``, ``2G`` …).
        workers: Data-loader worker processes when streaming (``auto``: one per core, up to
            4; on 2 cores 2 workers fed training faster than 1, ``docs/performance.md``).
        checkpoint_steps: Also checkpoint every this many optimiser steps (0: each epoch only).
    """

    epochs: int = 10
    batch_size: int = 16
    accumulate: int = 1
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    patience: int | None = None
    select: str = "best"
    clip_grad_norm: float | None = None
    precision: str = "auto"
    device: str = "auto"
    deterministic: bool = True
    preload: str | bool = "auto"
    memory_budget: str = "2G"
    workers: int | str = "auto"
    checkpoint_steps: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.deterministic, bool):
            raise ConfigError(
                f"train.deterministic must be true or false, got {self.deterministic!r}"
            )
        for key in ("epochs", "batch_size", "accumulate"):
            _integer(key, getattr(self, key), 1)
        _integer("checkpoint_steps", self.checkpoint_steps, 0)
        if self.patience is not None:
            _integer("patience", self.patience, 1)
            if self.schedule != "constant":
                raise ConfigError(
                    f"train.patience={self.patience} stops early, which only schedule=constant "
                    f"allows (stopping a {self.schedule} schedule midway leaves the learning "
                    "rate near its peak); set train.patience=null or train.schedule=constant"
                )
        for key in ("lr", "weight_decay"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"train.{key} must be a number, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        clip = self.clip_grad_norm
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, int | float)):
            raise ConfigError(f"train.clip_grad_norm must be a number or null, got {clip!r}")
        if clip is not None and not clip > 0:
            raise ConfigError(f"train.clip_grad_norm must be positive, got {clip}")
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("select", self.select, SELECTIONS)
        _choice("precision", self.precision, PRECISIONS)
        if self.preload not in ("auto", True, False):
            raise ConfigError(f"train.preload must be auto, true or false, got {self.preload!r}")
        if not isinstance(self.memory_budget, str):
            raise ConfigError(
                f"train.memory_budget must be a size such as 2G, got {self.memory_budget!r}"
            )
        parse_size(self.memory_budget, "train.memory_budget")
        if self.workers != "auto":
            _integer("workers", self.workers, 0)
        resolve_device(self.device)

    @property
    def budget_bytes(self) -> int:
        """``memory_budget`` in bytes."""
        return parse_size(self.memory_budget, "train.memory_budget")


#: Keys of model files written before the trainer (their fits stopped early at ``patience``
#: in a one-cycle schedule, which is no longer allowed; the key is dropped when they load).
_LEGACY_KEYS = frozenset({"patience"})


def train_settings(value: TrainSettings | Mapping[str, Any] | None) -> TrainSettings:
    """``value`` as :class:`TrainSettings` (a mapping, as saved in a model file, is converted).

    A mapping without ``schedule`` comes from a model file written before the trainer; its
    ``patience`` (early stopping inside the one-cycle schedule) is dropped so the file loads.

    Raises:
        ConfigError: A mapping with keys that are not settings, or a bad value.
    """
    if value is None:
        return TrainSettings()
    if isinstance(value, TrainSettings):
        return value
    values = dict(value)
    if "schedule" not in values:
        values = {k: v for k, v in values.items() if k not in _LEGACY_KEYS}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(TrainSettings)})
    if unknown:
        raise ConfigError(f"train: unknown settings {unknown}")
    return TrainSettings(**values)


def resolve_device(name: str, world: World | None = None) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as given.

    In a multi-process CUDA job, process ``local_rank`` uses GPU ``local_rank``.

    Raises:
        ConfigError: Not a torch device name, or CUDA asked for where there is none.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"train.device: {name!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but CUDA is not available here; use auto")
    if device.type == "cuda" and device.index is None and world is not None and world.size > 1:
        device = torch.device("cuda", world.local_rank)
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a fit uses: ``auto`` → bf16 on CUDA devices that support it, else fp32.

    Raises:
        ConfigError: fp16 or bf16 asked for on a device that cannot train in it.
    """
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"train.precision=bf16: {torch.cuda.get_device_name(device)} lacks it")
    return precision


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextmanager
def deterministic_kernels(enabled: bool) -> Iterator[None]:
    """Use only deterministic torch kernels inside the block (restored after)."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    if enabled:
        # cuBLAS needs a fixed workspace for deterministic results (read when CUDA starts)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.benchmark = not enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


Batch = dict[str, torch.Tensor]


class ERM:
    """Empirical risk minimisation: a batch becomes the model's own loss terms.

    Other methods (domain adaptation) subclass it and override :meth:`training_step`.

    Every term is ``sum / normaliser``: :meth:`training_step` returns the sums, which need the
    network; :meth:`normalisers` the normalisers, which depend on the data only, so the trainer
    can add them up over a whole step (micro-batches and processes) before dividing.

    Args:
        model: The model being trained (its ``forward`` goes through DDP while training).
    """

    def __init__(self, model: TorchRainModel) -> None:
        self.model = model

    def normalisers(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The normaliser of each loss term for a labeled micro-batch."""
        return self.model.outputs.normalisers(batch["rain"], batch["valid"])

    def training_step(self, batch: Batch, unlabeled_batch: Batch | None = None) -> dict[str, Any]:
        """The summed loss terms of a labeled micro-batch (``unlabeled_batch``: IR only)."""
        out = self.model.forward(batch["ir"])
        return self.model.outputs.loss_sums(out, batch["rain"], batch["valid"])


class EpochBatches(Sampler[list[int]]):
    """This process's micro-batches of one epoch.

    Epoch ``e`` draws one permutation of the training set from seed ``seed + e`` (as
    ``DistributedSampler`` does), the same in every process. Optimiser step ``k`` takes the
    permutation's positions ``[k·B, (k+1)·B)``, cut into ``R × A`` contiguous micro-batches;
    process ``r`` takes micro-batches ``r·A … r·A + A − 1``. So the samples of a step do not
    depend on the number of processes ``R``, and even each micro-batch is the same when
    ``R × A`` is: batch normalisation, which sees one micro-batch, makes a fit on ``R``
    processes equal a one-process fit with ``accumulate = R × A``. (``DistributedSampler``
    interleaves the processes' samples instead, which would change every micro-batch.)
    :meth:`set_epoch` also says how many steps to skip (a resume).

    Args:
        n: Training samples.
        micro: Samples per micro-batch.
        steps: Optimiser steps per epoch.
        accumulate: Micro-batches per step and process.
        seed: The fit's seed.
        world: This process's rank and the number of processes.
    """

    def __init__(
        self, n: int, micro: int, steps: int, accumulate: int, seed: int, world: World
    ) -> None:
        self.n, self.micro, self.steps, self.accumulate = n, micro, steps, accumulate
        self.seed, self.world = seed, world
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Serve epoch ``epoch``, leaving out its first ``skip`` optimiser steps."""
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        step_size = self.micro * self.accumulate * self.world.size
        for step in range(self.skip, self.steps):
            for j in range(self.accumulate):
                start = step * step_size + (self.world.rank * self.accumulate + j) * self.micro
                yield order[start : start + self.micro]

    def __len__(self) -> int:
        return (self.steps - self.skip) * self.accumulate


def _rng_state() -> dict[str, Any]:
    np_state: Any = np.random.get_state()  # noqa: NPY002 - third-party code may draw from it
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(  # noqa: NPY002
        ("MT19937", keys, np_state["pos"], np_state["has_gauss"], np_state["cached"])
    )
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _indices_hash(indices: npt.NDArray[np.int64]) -> str:
    return hashlib.sha256(np.ascontiguousarray(indices, np.int64).tobytes()).hexdigest()[:16]


def _clone(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


@dataclass
class _Progress:
    """What a checkpoint restores besides the model, optimiser and schedule."""

    epoch: int = 0  # the epoch to run next
    step: int = 0  # optimiser steps of that epoch already taken
    loss_sum: float = 0.0  # training loss summed over those steps
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best: float = math.inf
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    stale: int = 0
    finished: bool = False
    seconds: float = 0.0


class Trainer:
    """Fits a :class:`~qpebench.training.TorchRainModel` (see the module docstring).

    Args:
        settings: The training settings.
        checkpoint_dir: Folder of the fit's checkpoint (``None``: no checkpoints, no resume).
        progress: Show a progress bar (rank 0 only).
    """

    def __init__(
        self,
        settings: TrainSettings,
        *,
        checkpoint_dir: Path | None = None,
        progress: bool = True,
    ) -> None:
        self.settings = settings
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress
        self.world = current_world()
        self.device = resolve_device(settings.device, self.world)
        self.precision = resolve_precision(settings.precision, self.device)

    # ---- data ----------------------------------------------------------------------------

    def _workers(self, preload: bool) -> int:
        if preload:
            return 0
        if self.settings.workers == "auto":
            return min(4, os.cpu_count() or 1)
        return int(self.settings.workers)

    def _loader(self, dataset: StoreDataset, sampler: Any, preload: bool) -> DataLoader[Any]:
        workers = self._workers(preload)
        return DataLoader(  # batch_size=None: the sampler yields whole batches
            dataset,
            sampler=sampler,
            batch_size=None,
            num_workers=workers,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            pin_memory=self.device.type == "cuda",
        )

    def _to_device(self, batch: Batch) -> Batch:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _autocast(self) -> Any:
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def plan_preload(
        self, model: TorchRainModel, n_samples: int, patch: tuple[int, int]
    ) -> tuple[bool, int]:
        """Whether a fit on ``n_samples`` (training + validation) preloads, and their bytes."""
        c = model.card
        nbytes = n_samples * sample_nbytes(c.frames, c.channels, *patch)
        if self.settings.preload == "auto":
            return nbytes <= self.settings.budget_bytes, nbytes
        return bool(self.settings.preload), nbytes

    # ---- checkpoints ---------------------------------------------------------------------

    def identity(self, model: TorchRainModel, data: TrainData, seed: int) -> str:
        """Hash of everything that changes a fit's result (a checkpoint must match it)."""
        semantic = {k: v for k, v in asdict(self.settings).items() if k not in RUNTIME_SETTINGS}
        config = {k: v for k, v in getattr(model, "config", {}).items() if k != "train"}
        key = {
            "settings": semantic,
            "precision": self.precision,
            "card": model.card.to_json(),
            "config": config,
            "seed": seed,
            "dataset": data.store.dataset_version,
            "train": _indices_hash(data.train),
            "val": _indices_hash(data.val),
        }
        text = json.dumps(key, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _checkpoint_path(self) -> Path | None:
        return None if self.checkpoint_dir is None else self.checkpoint_dir / CHECKPOINT

    def _load_checkpoint(self, identity: str) -> dict[str, Any] | None:
        path = self._checkpoint_path()
        if path is None or not path.exists():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a damaged file
            text = " ".join(str(exc).split())[:200]
            raise ConfigError(
                f"{path}: cannot read the checkpoint ({text}); delete it to start the fit again"
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{path}: not a qpebench checkpoint")
        if payload.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(
                f"{path}: checkpoint version {payload.get('version')}, this qpebench writes "
                f"{CHECKPOINT_VERSION}; delete it to start the fit again"
            )
        if payload.get("identity") != identity:
            raise ConfigError(
                f"{path}: checkpoint of another configuration (hash {payload.get('identity')}, "
                f"this fit {identity}); use another run folder or delete it to start again"
            )
        return payload

    def _save_checkpoint(
        self,
        identity: str,
        model: TorchRainModel,
        net: nn.Module,
        opt: torch.optim.Optimizer,
        sched: torch.optim.lr_scheduler.LRScheduler | None,
        scaler: torch.amp.GradScaler,
        progress: _Progress,
    ) -> None:
        path = self._checkpoint_path()
        if path is None:
            return
        if self.world.main:
            payload = {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "identity": identity,
                "net": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                "norm_mean": model.mean.cpu(),
                "norm_std": model.std.cpu(),
                "optimizer": opt.state_dict(),
                "scheduler": None if sched is None else sched.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": _rng_state(),
                "progress": {
                    **{f.name: getattr(progress, f.name) for f in dataclasses.fields(progress)},
                    "best_state": {k: v.cpu() for k, v in progress.best_state.items()},
                },
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            write_with(path, lambda tmp: torch.save(payload, tmp))
        barrier()

    # ---- the fit -------------------------------------------------------------------------

    def _moments(self, dataset: StoreDataset, preload: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-band mean and standard deviation of the training IR, by one streaming pass.

        Each process reads its share of the samples; the shares' moments are merged.
        """
        mine = [i for i in range(len(dataset)) if i % self.world.size == self.world.rank]
        batches = [mine[s : s + EVAL_BATCH] for s in range(0, len(mine), EVAL_BATCH)]
        moments = BandMoments(dataset.channels)
        for batch in self._loader(dataset, batches, preload):
            moments.add(batch["ir"])
        moments = moments.merged_over_processes()
        return moments.mean_std()

    @torch.no_grad()
    def validation_loss(
        self, algorithm: ERM, dataset: StoreDataset, loader: DataLoader[Any] | None = None
    ) -> float:
        """The loss over the whole set (each term's sums over its normalisers' sums)."""
        algorithm.model.net.eval()
        sums: dict[str, torch.Tensor] = {}
        norms: dict[str, torch.Tensor] = {}
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        if loader is None:
            loader = self._loader(dataset, self._shard_batches(len(dataset)), preload=False)
        for raw in loader:
            batch = self._to_device(raw)
            with self._autocast():
                terms = algorithm.training_step(batch)
            for key, value in terms.items():
                sums[key] = sums.get(key, zero) + value.detach().double()
            for key, value in algorithm.normalisers(batch).items():
                norms[key] = norms.get(key, zero) + value.detach().double()
        keys = sorted(norms)
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        packed = torch.stack([sums.get(k, zero) for k in keys] + [norms[k] for k in keys])
        packed = all_reduce_sum(packed)
        n = len(keys)
        return float(sum(packed[i] / packed[n + i].clamp_min(1e-6) for i in range(n)))

    def _shard_batches(self, n: int) -> list[list[int]]:
        mine = list(range(self.world.rank, n, self.world.size))
        return [mine[s : s + EVAL_BATCH] for s in range(0, len(mine), EVAL_BATCH)]

    def fit(
        self,
        model: TorchRainModel,
        data: TrainData,
        *,
        seed: int,
        algorithm: ERM | None = None,
    ) -> dict[str, Any]:
        """Train ``model`` on ``data.train``, selecting on ``data.val``; resume if possible.

        Returns:
            The training log of the record (history, kept epoch and why, settings, sizes, …).

        Raises:
            ConfigError: An empty set, a training set smaller than one step, a batch size that
                does not split into the processes' micro-batches, or an unusable checkpoint.
        """
        s = self.settings
        for key, indices in (("training", data.train), ("validation", data.val)):
            if len(indices) == 0:
                raise ConfigError(f"{model.card.name}: the {key} set is empty")
        parts = self.world.size * s.accumulate
        if s.batch_size % parts:
            raise ConfigError(
                f"train.batch_size={s.batch_size} does not split into {self.world.size} "
                f"process(es) x train.accumulate={s.accumulate} equal micro-batches"
            )
        steps = len(data.train) // s.batch_size
        if steps == 0:
            raise ConfigError(
                f"{model.card.name}: the training set has {len(data.train)} samples, fewer than "
                f"train.batch_size={s.batch_size}"
            )
        algorithm = algorithm or ERM(model)
        with deterministic_kernels(s.deterministic):
            return self._fit(model, data, seed, algorithm, steps, s.batch_size // parts)

    def _fit(
        self,
        model: TorchRainModel,
        data: TrainData,
        seed: int,
        algorithm: ERM,
        steps: int,
        micro: int,
    ) -> dict[str, Any]:
        s = self.settings
        started = time.perf_counter()
        identity = self.identity(model, data, seed)
        checkpoint = self._load_checkpoint(identity)
        n = len(data.train) + len(data.val)
        preload, nbytes = self.plan_preload(model, n, data.store.patch_shape)
        c = model.card
        train, val = (
            StoreDataset(
                data.store,
                part,
                frames=c.frames,
                step=c.step,
                bands=c.bands,
                oracle=c.oracle_inputs,
                preload=preload,
            )
            for part in (data.train, data.val)
        )
        if checkpoint is None:
            model.mean, model.std = self._moments(train, preload)
        else:
            model.mean, model.std = checkpoint["norm_mean"], checkpoint["norm_std"]
        torch.manual_seed(seed)
        net = model.net.to(self.device)
        opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        sched = (
            torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=s.lr, total_steps=s.epochs * steps, pct_start=0.2
            )
            if s.schedule == "onecycle"
            else None
        )
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        progress = _Progress(best_state=_clone(net.state_dict()))
        resumed = None
        if checkpoint is not None:
            net.load_state_dict(checkpoint["net"])
            opt.load_state_dict(checkpoint["optimizer"])
            if sched is not None:
                sched.load_state_dict(checkpoint["scheduler"])
            scaler.load_state_dict(checkpoint["scaler"])
            _set_rng_state(checkpoint["rng"])
            saved = checkpoint["progress"]
            progress = _Progress(**{**saved, "best_state": _clone(saved["best_state"])})
            resumed = {"epoch": progress.epoch, "step": progress.step}
        batches = EpochBatches(len(train), micro, steps, s.accumulate, seed, self.world)
        loader = self._loader(train, batches, preload)
        val_loader = self._loader(val, self._shard_batches(len(val)), preload)
        wrapped: nn.Module = net
        if self.world.size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = DistributedDataParallel(net, device_ids=ids)
        model.net = wrapped
        try:
            self._epochs(
                identity,
                model,
                net,
                wrapped,
                algorithm,
                opt,
                sched,
                scaler,
                progress,
                batches,
                loader,
                val,
                val_loader,
                steps,
            )
        finally:
            model.net = net
        progress.seconds += time.perf_counter() - started
        if s.select == "best":
            net.load_state_dict(progress.best_state)
            kept = progress.best_epoch
            why = f"lowest id_val loss ({progress.best:.5f}) of {len(progress.history)} epochs"
        else:
            kept = int(progress.history[-1]["epoch"])
            why = f"final epoch of {len(progress.history)} (train.select=final)"
        return {
            "history": progress.history,
            "best_val_loss": progress.best,
            "epochs_run": len(progress.history),
            "selected_epoch": int(kept),
            "selection": why,
            "stopped_early": len(progress.history) < s.epochs,
            "steps_per_epoch": steps,
            "train_seconds": progress.seconds,
            "settings": asdict(s),
            "precision": self.precision,
            "processes": self.world.size,
            "preload": {"used": preload, "bytes": nbytes, "budget": human(s.budget_bytes)},
            "resumed_from": resumed,
            "n_train": len(train),
            "n_val": len(val),
        }

    def _epochs(
        self,
        identity: str,
        model: TorchRainModel,
        net: nn.Module,
        wrapped: nn.Module,
        algorithm: ERM,
        opt: torch.optim.Optimizer,
        sched: torch.optim.lr_scheduler.LRScheduler | None,
        scaler: torch.amp.GradScaler,
        progress: _Progress,
        batches: EpochBatches,
        loader: DataLoader[Any],
        val: StoreDataset,
        val_loader: DataLoader[Any],
        steps: int,
    ) -> None:
        s = self.settings
        bar = tqdm(
            total=s.epochs,
            initial=progress.epoch,
            desc=f"train {model.card.name}",
            unit="epoch",
            disable=not (self.progress and self.world.main),
        )
        save = self._save_checkpoint
        while not progress.finished and progress.epoch < s.epochs:
            epoch = progress.epoch
            batches.set_epoch(epoch, progress.step)
            net.train()
            stream = iter(loader)
            for step in range(progress.step, steps):
                micro = [self._to_device(next(stream)) for _ in range(s.accumulate)]
                progress.loss_sum += self._step(algorithm, wrapped, opt, scaler, micro)
                if sched is not None:
                    sched.step()
                progress.step = step + 1
                every = s.checkpoint_steps
                if every and progress.step % every == 0 and progress.step < steps:
                    save(identity, model, net, opt, sched, scaler, progress)
            model.net = net  # validation without DDP's gradient hooks
            val_loss = self.validation_loss(algorithm, val, val_loader)
            model.net = wrapped
            train_loss = progress.loss_sum / steps
            progress.history.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "lr": float(opt.param_groups[0]["lr"]),
                }
            )
            bar.update(1)
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
            if val_loss < progress.best - 1e-6:
                progress.best, progress.best_epoch, progress.stale = val_loss, epoch, 0
                progress.best_state = _clone(net.state_dict())
            else:
                progress.stale += 1
            progress.epoch, progress.step, progress.loss_sum = epoch + 1, 0, 0.0
            if s.patience is not None and progress.stale >= s.patience:
                progress.finished = True
            progress.finished = progress.finished or progress.epoch == s.epochs
            save(identity, model, net, opt, sched, scaler, progress)
        bar.close()

    def _step(
        self,
        algorithm: ERM,
        wrapped: nn.Module,
        opt: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        micro: list[Batch],
    ) -> float:
        """One optimiser step over the micro-batches; returns the step's (global) loss."""
        norms: dict[str, torch.Tensor] = {}
        for batch in micro:
            for key, value in algorithm.normalisers(batch).items():
                norms[key] = norms.get(key, 0.0) + value.detach().float()
        keys = sorted(norms)
        total = all_reduce_sum(torch.stack([norms[k] for k in keys]))
        global_norm = {k: total[i].clamp_min(1e-6) for i, k in enumerate(keys)}
        loss_value = torch.zeros((), device=self.device)
        for j, batch in enumerate(micro):
            last = j == len(micro) - 1
            sync = nullcontext() if last or self.world.size == 1 else wrapped.no_sync()  # type: ignore[operator]
            with sync:
                with self._autocast():
                    terms = algorithm.training_step(batch)
                loss = sum(terms[k].float() / global_norm[k] for k in terms)
                # DDP averages gradients over processes: scale back up to the global sum
                scaler.scale(loss * self.world.size).backward()
                loss_value += loss.detach()
        if self.settings.clip_grad_norm is not None:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(wrapped.parameters(), self.settings.clip_grad_norm)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return float(all_reduce_sum(loss_value))
