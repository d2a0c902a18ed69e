"""Data-parallel training under ``torchrun``: the process group, and each rank's share of a batch.

``torchrun --nproc_per_node N -m viewal.cli train ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT`` set. :func:`init_from_env` joins them into one process
group (gloo on CPU, nccl on GPUs); ``viewal.nn.train.fit`` then wraps the model in
``torch.nn.parallel.DistributedDataParallel`` and every rank trains on its share of each global batch
(:func:`shard`). Only rank 0 writes files (:func:`is_main`).

How a global batch is shared: every rank draws the same global batch (same seeded generator), assembles
it (loading and augmentation, whose generators must stay in step across ranks), and runs the network on
its rows ``rank::world``. So the ``uniform``, ``labels`` (weighted, with replacement) and ``crops``
samplings are all sharded alike, and the batches, augmentations and dropout masks are those of a
single-process run with the same global batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["World", "world", "init_from_env", "finish", "is_main", "shard", "barrier", "backend_for"]


@dataclass(frozen=True)
class World:
    """rank and size of the process group (``size == 1``: not distributed)."""

    rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """The current process group's rank and size (0 and 1 without one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def backend_for(device: str) -> str:
    """``"nccl"`` for CUDA devices, ``"gloo"`` otherwise."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def init_from_env(device: str = "cpu") -> World:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1); a no-op in a
    plain process. On CUDA each rank takes the GPU ``LOCAL_RANK``."""
    import torch.distributed as dist

    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or (dist.is_initialized()):
        return world()
    if str(device).startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend_for(device))
    return world()


def finish() -> None:
    """Leave the process group (``destroy_process_group``) when this process is in one; a no-op otherwise.
    What a torchrun worker calls before it exits."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0 (and in a plain process): the one process that writes files."""
    return world().rank == 0


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    import torch.distributed as dist

    if world().distributed:
        dist.barrier()


def shard(batch: dict, w: World, size: int) -> dict:
    """This rank's rows ``rank::size`` of every tensor of a collated batch whose first axis is the global
    batch ``size``; other values are kept as they are."""
    if not w.distributed:
        return batch
    return {k: (v[w.rank::w.size] if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == size else v)
            for k, v in batch.items()}
