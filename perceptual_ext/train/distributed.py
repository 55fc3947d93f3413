"""Distributed data parallel set-up shared by the trainers.

Under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1) a trainer initialises a process group
(gloo on CPU, nccl on CUDA), wraps its model(s) in DistributedDataParallel and gives each process
its slice of every global batch. Only rank 0 shows progress and writes samples and checkpoints.
BatchNorm is converted to SyncBatchNorm on CUDA; on the CPU (gloo) it normalizes per process.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, NamedTuple

import torch
from torch import Tensor, nn


class Process(NamedTuple):
    """This process's place in the run: ``rank`` of ``world`` processes, on ``device``."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


@contextmanager
def process_group(device: torch.device) -> Iterator[Process]:
    """The :class:`Process` of this run; under torchrun, a process group for the duration.

    The group is created if none exists and torn down on exit. After a run that completed, every
    process waits at a barrier first, so none tears its group down while a peer (rank 0) still
    writes its checkpoint.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Process(0, 1, device)
        return
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    completed = False
    try:
        yield Process(dist.get_rank(), dist.get_world_size(), device)
        completed = True
    finally:
        if created:
            if completed:
                dist.barrier()
            dist.destroy_process_group()


def wrap(model: nn.Module, process: Process) -> nn.Module:
    """``model`` for training: as it is in one process, else in DistributedDataParallel."""
    if process.world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if process.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[process.device.index] if process.device.type == "cuda" else None)


def mean_over_processes(value: Tensor, world: int) -> float:
    """The mean of a scalar over all processes (the value itself in one process)."""
    if world > 1:
        import torch.distributed as dist

        value = value.detach().clone()
        dist.all_reduce(value)
        value /= world
    return float(value.detach())
