"""Training throughput and memory of the trainer (issue 13): networks, loader, RSS, DDP, GPU.

    python -P benchmarks/training.py [--quick] [--repeats 7]

Everything runs on the default synthetic data's geometry (64 × 64 patches, 4 frames, 7 bands),
batch 16, with ``torch`` using one thread per core; all ratios are between figures of the
same run. The stores are built in a temporary folder and deleted at the end.

1. **Networks.** Samples/s of one optimiser step of the trainer (``Trainer._step``: forward,
   loss, backward, AdamW; deterministic kernels as a fit uses them) for every torch family of
   the model registry (the factories that take ``train``), in fp32 and bf16 (autocast), on a
   batch of 16 real samples; median of ``--repeats`` steps after 2 warm-up steps.
2. **Loader.** Samples/s of the trainer's own ``DataLoader`` (``Trainer._loader`` over a
   ``StoreDataset``, ``EpochBatches``, streaming) with 0, 1 and 2 workers; median of the epochs
   after the first (which starts the persistent workers), against the fastest network's
   consumption from (1). Then the step rate inside ``Trainer.fit`` of that network, preloaded
   against streaming. Both read whole shards (the store's first 512 samples) through a freshly
   opened store: HDF5 keeps up to 8 MiB of decompressed chunks per open dataset (HDF5 2.0's
   default), so a few random samples per shard would be served from that cache after the
   first epoch, which a fit over whole shards (35 chunks of 128 fit in the cache) does not get.
3. **Peak memory.** ``Trainer.fit`` (``early_fusion``, 1 epoch over the whole store, streaming
   because the sets exceed ``memory_budget``, a quarter of the smaller store: 256M) in a fresh
   process per store, on stores of at least 1 GiB and 2 GiB of decoded samples; the process
   samples the PSS and RSS of itself and its loader workers every 0.1 s and reads its own
   ``VmHWM`` and its reaped workers' ``ru_maxrss``.
4. **DDP on CPU.** The same fit (preloaded, ``early_fusion``, global batch 16) under
   ``torchrun`` with 1 and 2 processes, threads per process = cores / processes; samples/s =
   16 / the median interval between training steps.
5. **CUDA** (only where ``torch.cuda.is_available()``): (1) on the GPU, and the GPU's
   utilisation during a streaming fit with the loader's best worker count.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from qpebench.datasets.synthetic import build_synthetic_store
from qpebench.distributed import close_distributed, init_distributed
from qpebench.models import TrainData, build_model
from qpebench.registry import MODELS, load_builtins
from qpebench.store import SampleStore
from qpebench.torchdata import BandMoments, StoreDataset, sample_nbytes
from qpebench.trainer import (
    ERM,
    Batch,
    EpochBatches,
    Trainer,
    TrainSettings,
    deterministic_kernels,
)
from qpebench.training import TorchRainModel

BATCH = 16
FRAMES = 4
PATCH = 64
GIB = 1024**3
#: The network of the memory and DDP fits (the default run's temporal network).
FIT_MODEL = "early_fusion"
PRECISIONS = ("fp32", "bf16")
HERE = Path(__file__).resolve()


# ---- helpers ---------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def torch_families() -> list[str]:
    """The registry models built on torch: those whose factory takes ``train``."""
    load_builtins()
    return [n for n in MODELS.names() if "train" in inspect.signature(MODELS.get(n)).parameters]


def build(name: str, settings: TrainSettings, bands: Sequence[str]) -> TorchRainModel:
    model = build_model(name, frames=FRAMES, bands=bands, train=settings)
    assert isinstance(model, TorchRainModel)
    return model


def n_samples_for(nbytes: int) -> int:
    """Samples whose decoded tensors take at least ``nbytes`` (4 frames, 7 bands, 64²)."""
    return math.ceil(nbytes / sample_nbytes(FRAMES, 7, PATCH, PATCH))


def make_store(root: Path, n: int) -> tuple[SampleStore, float]:
    """A Europe-only synthetic store of ``n`` samples, and its build time in seconds."""
    t0 = time.perf_counter()
    store = build_synthetic_store(
        root, regions={"europe": {"n_samples": n, "years": [2021, 2024]}}, progress=False
    )
    return store, time.perf_counter() - t0


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def head_split(n: int, every: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The store's first ``n`` samples (whole shards), every ``every``-th one to validation."""
    idx = np.arange(n, dtype=np.int64)
    return idx[idx % every != 0], idx[idx % every == 0]


class TimedERM(ERM):
    """Plain training that notes when each training micro-batch starts (not validation)."""

    def __init__(self, model: TorchRainModel) -> None:
        super().__init__(model)
        self.stamps: list[float] = []

    def training_step(self, batch: Batch, unlabeled_batch: Batch | None = None) -> dict[str, Any]:
        """ERM's step, after noting the time of a training (not validation) micro-batch."""
        if self.model.net.training:
            self.stamps.append(time.perf_counter())
        return super().training_step(batch, unlabeled_batch)

    def step_seconds(self, skip: int = 2) -> list[float]:
        """Intervals between consecutive training steps, leaving out the first ``skip``."""
        return [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)][skip:]


# ---- 1. networks -----------------------------------------------------------------------------


@dataclass
class Stepper:
    """One network's optimiser step on a fixed batch of 16 real samples (``Trainer._step``)."""

    name: str
    precision: str
    device: str
    store: SampleStore
    times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings = TrainSettings(
            device=self.device, precision=self.precision, batch_size=BATCH
        )
        torch.manual_seed(0)
        self.model = build(self.name, self.settings, self.store.bands)
        self.trainer = Trainer(self.settings, progress=False)
        c = self.model.card
        self.frames = c.frames
        data = StoreDataset(
            self.store, np.arange(BATCH), frames=c.frames, bands=c.bands, preload=True
        ).preloaded()
        moments = BandMoments(len(c.bands))
        moments.add(data["ir"])
        self.model.mean, self.model.std = moments.mean_std()
        self.batch = {k: v.to(self.trainer.device) for k, v in data.items()}
        self.net = self.model.net.to(self.trainer.device)
        self.net.train()
        s = self.settings
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        enabled = self.trainer.precision == "fp16"
        self.scaler = torch.amp.GradScaler(self.trainer.device.type, enabled=enabled)
        self.algorithm = ERM(self.model)

    def step(self, timed: bool = True) -> None:
        """One step (its result is a float, so CUDA is synchronised)."""
        t0 = time.perf_counter()
        with deterministic_kernels(self.settings.deterministic):
            self.trainer._step(self.algorithm, self.net, self.opt, self.scaler, [self.batch])
        if timed:
            self.times.append(time.perf_counter() - t0)

    @property
    def rate(self) -> float:
        """Median samples/s of the timed steps."""
        return BATCH / statistics.median(self.times)


def networks(
    store: SampleStore, families: list[str], device: str, repeats: int
) -> tuple[dict[tuple[str, str], float], dict[str, int]]:
    """Samples/s per (family, precision), and the frames each family reads.

    Per family, fp32 and bf16 steps alternate (2 warm-up steps each): both see the same load.
    """
    rates: dict[tuple[str, str], float] = {}
    frames: dict[str, int] = {}
    for name in families:
        steppers = [Stepper(name, precision, device, store) for precision in PRECISIONS]
        for i in range(2 + repeats):
            for stepper in steppers:
                stepper.step(timed=i >= 2)
        for stepper in steppers:
            rates[name, stepper.precision] = stepper.rate
            frames[name] = stepper.frames
    return rates, frames


def print_networks(
    rates: dict[tuple[str, str], float],
    frames: dict[str, int],
    loader_auto: dict[int, float] | None,
) -> None:
    head = f"{'family':<18} {'frames':>6} {'fp32':>8} {'bf16':>8} {'bf16/fp32':>9}"
    if loader_auto is not None:
        head += f" {'loader/fp32':>11} {'loader/bf16':>11}"
    print(head + "   (samples/s of one optimiser step, batch 16)")
    for name in frames:
        fp32, bf16 = rates[name, "fp32"], rates[name, "bf16"]
        line = f"{name:<18} {frames[name]:>6} {fp32:>8.1f} {bf16:>8.1f} {bf16 / fp32:>8.2f}×"
        if loader_auto is not None:
            feed = loader_auto[frames[name]]
            line += f" {feed / fp32:>10.1f}× {feed / bf16:>10.1f}×"
        print(line)


# ---- 2. loader -------------------------------------------------------------------------------


@dataclass
class LoaderRun:
    """The trainer's own streaming ``DataLoader`` over ``indices``, timed epoch by epoch."""

    root: Path
    indices: npt.NDArray[np.int64]
    frames: int
    workers: int
    device: str
    times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        settings = TrainSettings(device=self.device, preload=False, workers=self.workers)
        self.trainer = Trainer(settings, progress=False)
        store = SampleStore(self.root)  # its own HDF5 handles and chunk caches
        dataset = StoreDataset(store, self.indices, frames=self.frames, bands=store.bands)
        self.steps = len(self.indices) // BATCH
        self.sampler = EpochBatches(len(dataset), BATCH, self.steps, 1, 0, self.trainer.world)
        self.loader: Any = self.trainer._loader(dataset, self.sampler, preload=False)

    def epoch(self) -> None:
        """One epoch: every batch fetched and moved to the device as a fit does."""
        self.sampler.set_epoch(len(self.times))
        t0 = time.perf_counter()
        for raw in self.loader:
            self.trainer._to_device(raw)
        if self.trainer.device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - t0)

    @property
    def first(self) -> float:
        """Samples/s of the first epoch (which starts the persistent workers)."""
        return self.steps * BATCH / self.times[0]

    @property
    def steady(self) -> float:
        """Median samples/s of the later epochs."""
        return self.steps * BATCH / statistics.median(self.times[1:])

    def close(self) -> None:
        """Shut the workers down."""
        self.loader = None


def loader_rates(
    root: Path,
    indices: npt.NDArray[np.int64],
    frames: Sequence[int],
    workers: Sequence[int],
    epochs: int,
    device: str,
) -> dict[tuple[int, int], tuple[float, float]]:
    """(first epoch, median of the later epochs) samples/s per (frames, workers).

    The settings take turns epoch by epoch, so that all see the same machine load.
    """
    runs = {(t, w): LoaderRun(root, indices, t, w, device) for t in frames for w in workers}
    for _ in range(1 + epochs):
        for run in runs.values():
            run.epoch()
    out = {key: (run.first, run.steady) for key, run in runs.items()}
    for run in runs.values():
        run.close()
    return out


def in_fit_steps(
    root: Path,
    name: str,
    precision: str,
    device: str,
    train: npt.NDArray[np.int64],
    val: npt.NDArray[np.int64],
    preload: bool,
    workers: int | str,
) -> list[float]:
    """Seconds between the training steps of a one-epoch ``Trainer.fit`` (first 2 left out).

    The store is opened afresh (cold HDF5 chunk caches), as a new fit's would be.
    """
    store = SampleStore(root)
    settings = TrainSettings(
        epochs=1,
        batch_size=BATCH,
        device=device,
        precision=precision,
        preload=preload,
        workers=workers,
    )
    torch.manual_seed(0)
    model = build(name, settings, store.bands)
    algorithm = TimedERM(model)
    Trainer(settings, progress=False).fit(model, TrainData(store, train, val), seed=0,
                                          algorithm=algorithm)  # fmt: skip
    return algorithm.step_seconds()


def _psi_total() -> int | None:
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return int(first.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None


class Pressure:
    """The machine's CPU contention since creation.

    The load average, and the share of the time in which at least one runnable task waited for
    a core (``/proc/pressure/cpu``; the benchmark's own processes count too).
    """

    def __init__(self) -> None:
        self.t0, self.p0 = time.monotonic(), _psi_total()

    def __str__(self) -> str:
        p1 = _psi_total()
        text = load()
        if self.p0 is not None and p1 is not None:
            share = (p1 - self.p0) / 1e6 / max(time.monotonic() - self.t0, 1e-9)
            text += f", CPU pressure {100 * share:.0f} % (some task waiting for a core)"
        return text


# ---- children: peak memory, DDP ----------------------------------------------------------------


def _rollup(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in bytes; (0, 0) once it is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return rss, pss


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from ``/proc/*/stat``)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


@dataclass
class TreeMemory:
    """Samples the summed RSS and PSS of this process and its descendants in a thread."""

    interval: float = 0.1
    peak_rss: int = 0
    peak_pss: int = 0
    max_processes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one sample now."""
        pids = process_tree(os.getpid())
        sizes = [_rollup(pid) for pid in pids]
        self.peak_rss = max(self.peak_rss, sum(r for r, _ in sizes))
        self.peak_pss = max(self.peak_pss, sum(p for _, p in sizes))
        self.max_processes = max(self.max_processes, len(pids))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeMemory:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child_rss(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit once on the store, streaming; the peak memory of this process and its workers."""
    store = SampleStore(spec["store"])
    settings = TrainSettings(**spec["settings"])
    model = build(spec["model"], settings, store.bands)
    data = TrainData(store, np.asarray(spec["train"]), np.asarray(spec["val"]))
    before = vm_hwm()
    with TreeMemory() as memory:
        log = Trainer(settings, progress=False).fit(model, data, seed=0)
        memory.sample()
    return {
        "main_hwm": vm_hwm(),
        "hwm_before_fit": before,
        "worker_maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "tree_rss": memory.peak_rss,
        "tree_pss": memory.peak_pss,
        "processes": memory.max_processes,
        "preload": log["preload"],
        "seconds": log["train_seconds"],
    }


def child_ddp(spec: dict[str, Any]) -> dict[str, Any] | None:
    """One process of a torchrun job: fit, and note the training steps' times (rank 0)."""
    settings = TrainSettings(**spec["settings"])
    world = init_distributed(settings.device)
    torch.set_num_threads(spec["threads"])
    store = SampleStore(spec["store"])
    torch.manual_seed(0)
    model = build(spec["model"], settings, store.bands)
    algorithm = TimedERM(model)
    data = TrainData(store, np.asarray(spec["train"]), np.asarray(spec["val"]))
    log = Trainer(settings, progress=False).fit(model, data, seed=0, algorithm=algorithm)
    close_distributed()
    if not world.main:
        return None
    return {
        "step_seconds": algorithm.step_seconds(),
        "processes": log["processes"],
        "threads": torch.get_num_threads(),
        "fit_seconds": log["train_seconds"],
    }


def run_child(kind: str, spec: dict[str, Any], tmp: Path, processes: int = 0) -> dict[str, Any]:
    """Run this file as a child (``processes`` > 0: under torchrun), return what it wrote."""
    out = tmp / f"{kind}-{time.monotonic_ns()}.json"
    spec_path = out.with_suffix(".spec.json")
    spec_path.write_text(json.dumps({**spec, "out": str(out)}))
    command = [sys.executable, "-P", str(HERE), "--child", kind, str(spec_path)]
    env = dict(os.environ)
    if processes:
        threads = str(spec["threads"])
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        launcher = [sys.executable, "-P", "-m", "torch.distributed.run", "--standalone"]
        command = [*launcher, f"--nproc_per_node={processes}", "--no-python", *command]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def child_main(kind: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = child_rss(spec) if kind == "rss" else child_ddp(spec)
    if result is not None:
        Path(spec["out"]).write_text(json.dumps(result, default=str))


# ---- 5. CUDA -----------------------------------------------------------------------------------


def gpu_utilisation() -> float | None:
    """The GPU's utilisation in percent now, or ``None`` when neither NVML nor nvidia-smi tell."""
    try:
        return float(torch.cuda.utilization())
    except Exception:  # pynvml missing or NVML unavailable: try the command line
        pass
    try:
        text = subprocess.run(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
        return float(text.split()[0])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def gpu_section(
    store: SampleStore,
    families: list[str],
    repeats: int,
    workers: int,
    quick: bool,
    device: str = "cuda",
) -> None:
    """Section 5 on ``device`` (another device than CUDA only to try the code out)."""
    if device == "cuda" and not torch.cuda.is_available():
        print(
            f"\n5. CUDA: not available here (torch {torch.__version__}); "
            "GPU throughput and utilisation skipped"
        )
        return
    name = torch.cuda.get_device_name() if device == "cuda" else device
    print(f"\n5. CUDA ({name}): samples/s of one optimiser step, batch 16")
    rates, frames = networks(store, families, device, repeats)
    print_networks(rates, frames, None)
    fastest = max(families, key=lambda f: rates[f, "bf16"])
    train, val = head_split(len(store) if not quick else min(len(store), 1024), 10)
    settings = TrainSettings(epochs=1, batch_size=BATCH, device=device, precision="bf16",
                             preload=False, workers=workers)  # fmt: skip
    torch.manual_seed(0)
    model = build(fastest, settings, store.bands)
    algorithm = TimedERM(model)
    samples: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.2):
            if algorithm.stamps and model.net.training:
                value = gpu_utilisation() if device == "cuda" else None
                if value is not None:
                    samples.append(value)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        Trainer(settings, progress=False).fit(model, TrainData(store, train, val), seed=0,
                                              algorithm=algorithm)  # fmt: skip
    finally:
        stop.set()
        thread.join()
    rate = BATCH / statistics.median(algorithm.step_seconds())
    util = "unavailable (no NVML, no nvidia-smi)"
    if samples:
        util = f"median {statistics.median(samples):.0f} % over {len(samples)} readings"
    print(
        f"streaming fit of {fastest} (bf16, {workers} workers, {len(train)} samples): "
        f"{rate:.0f} samples/s in training, GPU utilisation {util}"
    )


# ---- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small stores, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per network")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return
    started = time.perf_counter()
    n_cores = cores()
    torch.set_num_threads(n_cores)
    quick = bool(args.quick)
    repeats = args.repeats or (3 if quick else 7)
    rounds = 1 if quick else 2
    sizes = (GIB // 8, GIB // 4) if quick else (GIB, 2 * GIB)
    families = torch_families()
    budget = f"{sizes[0] // 4 // 2**20}M"
    print(
        f"{n_cores} cores ({cpu_model()}), torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, Python {platform.python_version()}; {load()}"
    )
    with tempfile.TemporaryDirectory(prefix="qpebench-training-") as tmp_name:
        tmp = Path(tmp_name)
        first_root = tmp / "store-1"
        store, build_s = make_store(first_root, n_samples_for(sizes[0]))
        print(f"store of {len(store)} samples built in {build_s:.0f} s; {load()}")

        # 1. networks
        pressure = Pressure()
        print(f"\n1. networks ({', '.join(families)}), median of {repeats} steps")
        rates, frames = networks(store, families, "cpu", repeats)

        # 2. loader, alone and inside a fit
        loader_n = 256 if quick else 512
        indices = np.arange(loader_n, dtype=np.int64)
        auto = Trainer(TrainSettings(device="cpu"), progress=False)._workers(preload=False)
        worker_counts = sorted({0, 1, 2, auto})
        all_frames = sorted(set(frames.values()))
        loader = loader_rates(first_root, indices, all_frames, worker_counts, 1 + rounds, "cpu")
        auto_rates = {t: loader[t, auto][1] for t in all_frames}
        print_networks(rates, frames, auto_rates)
        fastest_name, fastest_precision = max(rates, key=lambda k: rates[k])
        consumption = rates[fastest_name, fastest_precision]
        t_fast = frames[fastest_name]
        print(
            f"\n2. loader (Trainer._loader, streaming, the first {loader_n} samples: whole shards, "
            f"batch 16; median of {1 + rounds} epochs after the first); workers=auto → {auto} here"
        )
        print(f"{'frames':>6} {'workers':>7} {'1st epoch':>10} {'samples/s':>10} {'/ fastest':>10}")
        for (t, w), (first, steady) in loader.items():
            ratio = f"{steady / consumption:>9.2f}×" if t == t_fast else f"{'':>10}"
            print(f"{t:>6} {w:>7} {first:>10.0f} {steady:>10.0f} {ratio}")
        best_w = max(worker_counts, key=lambda w: loader[t_fast, w][1])
        best = loader[t_fast, best_w][1]
        print(
            f"fastest network: {fastest_name} {fastest_precision}, {consumption:.0f} samples/s; "
            f"loader/consumption {best / consumption:.2f}× at best ({best_w} workers), "
            f"{loader[t_fast, auto][1] / consumption:.2f}× with workers=auto "
            f"(goal ≥ 3×: {'reached' if best / consumption >= 3 else 'NOT reached'})"
        )
        left = len(process_tree(os.getpid())) - 1
        if left:
            print(f"note: {left} loader worker processes still alive after the loader runs")
        train, val = head_split(loader_n, 16)
        fits = [("preloaded", True, 0)]
        fits += [
            (f"streaming, {w} workers", False, w) for w in ([auto] if quick else worker_counts)
        ]
        fit_steps: dict[str, list[float]] = {}
        for _ in range(rounds):
            for key, preload, w in fits:
                fit_steps.setdefault(key, []).extend(
                    in_fit_steps(first_root, fastest_name, fastest_precision, "cpu", train, val,
                                 preload, w)
                )  # fmt: skip
        fit_rates = {key: BATCH / statistics.median(v) for key, v in fit_steps.items()}
        print(
            f"inside Trainer.fit ({fastest_name} {fastest_precision}, {len(train)} samples, "
            f"median step interval over {rounds} fit(s) each, alternating):"
        )
        for key, value in fit_rates.items():
            print(f"  {key:<22} {value:8.1f} samples/s  {value / fit_rates['preloaded']:.2f}×")
        print(f"sections 1-2: {pressure}")

        # 4. DDP (on the first store, before the second is built)
        ddp_pressure = Pressure()
        ddp_runs: dict[int, list[float]] = {1: [], 2: []}
        n_ddp = (8 if quick else 24) * BATCH
        ddp_train = np.arange(n_ddp, dtype=np.int64)
        ddp_val = np.arange(n_ddp, n_ddp + 32, dtype=np.int64)
        for _ in range(rounds):
            for procs in (1, 2):
                spec = {
                    "store": str(first_root),
                    "model": FIT_MODEL,
                    "train": ddp_train.tolist(),
                    "val": ddp_val.tolist(),
                    "threads": max(1, n_cores // procs),
                    "settings": {"epochs": 1, "batch_size": BATCH, "device": "cpu",
                                 "precision": "fp32", "preload": True, "workers": 0},
                }  # fmt: skip
                result = run_child("ddp", spec, tmp, processes=procs)
                assert result["processes"] == procs
                ddp_runs[procs].append(BATCH / statistics.median(result["step_seconds"]))
        ddp_pressure_text = str(ddp_pressure)

        # 3. peak memory: one fresh process per store, 1 epoch over the whole store
        memory: list[tuple[int, int, int, dict[str, Any]]] = []
        for i, size in enumerate(sizes):
            root = first_root
            if i:
                root = tmp / f"store-{i + 1}"
                store, build_s = make_store(root, n_samples_for(size))
                print(f"\nstore of {len(store)} samples built in {build_s:.0f} s; {load()}")
            store = SampleStore(root)
            train, val = head_split(len(store), 10)
            spec = {
                "store": str(root),
                "model": FIT_MODEL,
                "train": train.tolist(),
                "val": val.tolist(),
                "settings": {"epochs": 1, "batch_size": BATCH, "device": "cpu",
                             "precision": "fp32", "preload": "auto",
                             "memory_budget": budget},
            }  # fmt: skip
            result = run_child("rss", spec, tmp)
            memory.append((len(store), len(store.manifest["shards"]), disk_bytes(root), result))
            if i:
                shutil.rmtree(root)

        print(
            f"\n3. peak memory of a streaming fit ({FIT_MODEL}, 1 epoch over the whole store, "
            f"a tenth for validation; memory_budget={budget}, workers=auto → {auto})"
        )
        print(
            f"{'samples':>8} {'shards':>6} {'decoded':>8} {'on disk':>8} {'preload':>7} "
            f"{'main HWM':>9} {'worker max':>10} {'tree RSS':>9} {'tree PSS':>9} {'procs':>5} "
            f"{'fit s':>6}"
        )
        for n, shards, on_disk, r in memory:
            decoded = n * sample_nbytes(FRAMES, 7, PATCH, PATCH)
            print(
                f"{n:>8} {shards:>6} {decoded / GIB:>7.2f}G {on_disk / GIB:>7.2f}G "
                f"{'yes' if r['preload']['used'] else 'no':>7} {r['main_hwm'] / GIB:>8.2f}G "
                f"{r['worker_maxrss'] / GIB:>9.2f}G {r['tree_rss'] / GIB:>8.2f}G "
                f"{r['tree_pss'] / GIB:>8.2f}G {r['processes']:>5} {r['seconds']:>6.1f}"
            )
        peaks = [r["tree_rss"] for *_, r in memory]
        pss = [r["tree_pss"] for *_, r in memory]
        print(
            f"peak tree RSS {max(peaks) / GIB:.2f} GiB (goal < 3 GB: "
            f"{'met' if max(peaks) < 3e9 else 'NOT met'}); larger / smaller store: RSS "
            f"{peaks[-1] / peaks[0]:.2f}×, PSS {pss[-1] / pss[0]:.2f}× for "
            f"{memory[-1][0] / memory[0][0]:.2f}× the samples (PSS +"
            f"{(pss[-1] - pss[0]) / 2**20:.0f} MiB)"
        )

        one, two = statistics.median(ddp_runs[1]), statistics.median(ddp_runs[2])
        print(
            f"\n4. DDP on CPU ({FIT_MODEL} fp32, preloaded, global batch 16, "
            f"{len(ddp_train)} samples, 1 epoch, torchrun --standalone)"
        )
        for procs, runs in ddp_runs.items():
            listed = ", ".join(f"{r:.1f}" for r in runs)
            print(
                f"  {procs} process(es) × {max(1, n_cores // procs)} threads: "
                f"{statistics.median(runs):7.1f} samples/s (runs: {listed})"
            )
        print(f"  2 processes / 1 process: {two / one:.2f}×; {ddp_pressure_text}")

        gpu_section(SampleStore(first_root), families, repeats, best_w, quick)
    print(f"\n{load()}; benchmark total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
