"""Distributed training set-up on PyTorch's own engine (``torch.distributed``, DDP).

A job runs as one process, or as N processes started by ``torchrun --nproc_per_node=N`` (or
``srun`` under SLURM). :func:`world_from_env` reads the launcher's variables in one place (as
timm's ``utils/distributed.py`` does): torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, else
SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``. :func:`init_distributed` starts the
process group (gloo on CPU, NCCL on GPU); the :class:`~qpebench.trainer.Trainer` then shards data
by rank, and only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import distributed as dist

from qpebench.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the job's processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that writes files."""
        return self.rank == 0


def _env_int(names: tuple[str, ...]) -> int | None:
    for name in names:
        text = os.environ.get(name)
        if text is None:
            continue
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"environment variable {name}={text!r} is not an integer") from None
    return None


def world_from_env() -> World:
    """The process's rank, world size and local rank from torchrun's or SLURM's variables.

    SLURM's are used only when no torchrun variable is set and ``SLURM_NTASKS`` > 1 (a
    single-task allocation is a plain one-process job).

    Raises:
        ConfigError: A variable that is not an integer, or a rank outside the world.
    """
    if "WORLD_SIZE" in os.environ:
        size = _env_int(("WORLD_SIZE",)) or 1
        rank = _env_int(("RANK",)) or 0
        local = _env_int(("LOCAL_RANK",)) or 0
    elif (_env_int(("SLURM_NTASKS",)) or 1) > 1:
        size = _env_int(("SLURM_NTASKS",)) or 1
        rank = _env_int(("SLURM_PROCID",)) or 0
        local = _env_int(("SLURM_LOCALID",)) or 0
    else:
        return World()
    if not 0 <= rank < size or local < 0:
        raise ConfigError(f"distributed rank {rank} (local {local}) outside a world of {size}")
    return World(rank=rank, size=size, local_rank=local)


def current_world() -> World:
    """The world of the initialised process group, or a one-process world when there is none."""
    if dist.is_available() and dist.is_initialized():
        local = _env_int(("LOCAL_RANK", "SLURM_LOCALID")) or 0
        return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local)
    return World()


def init_distributed(device: str) -> World:
    """Join the job's process group when the launcher started several processes.

    Backend: NCCL for CUDA devices, gloo otherwise. Under SLURM (no torchrun), ``MASTER_ADDR``
    and ``MASTER_PORT`` must be exported by the batch script (see ``docs/training.md``).

    Args:
        device: The configured ``train.device`` (``auto``, ``cpu``, ``cuda``).

    Returns:
        The world (one process when no launcher variables are set).

    Raises:
        ConfigError: Several processes but no rendezvous address, or an invalid variable.
    """
    world = world_from_env()
    if world.size == 1 or dist.is_initialized():
        return current_world() if world.size > 1 else world
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(
            f"{world.size} processes but {missing} not set: launch with torchrun, or export "
            "MASTER_ADDR/MASTER_PORT in the SLURM batch script"
        )
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(world.local_rank)
    os.environ.setdefault("RANK", str(world.rank))
    os.environ.setdefault("WORLD_SIZE", str(world.size))
    os.environ.setdefault("LOCAL_RANK", str(world.local_rank))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return world


def close_distributed() -> None:
    """Leave the process group (a no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over every process (itself without a process group), in place."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather(obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order (``[obj]`` without a process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def barrier() -> None:
    """Wait for every process (a no-op without a process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
