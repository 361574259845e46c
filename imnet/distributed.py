"""Joining torchrun's process group, shared by ``imnet train`` and ``imnet eval``.

torchrun (one node or many, its own rendezvous) exports RANK, WORLD_SIZE and LOCAL_RANK; a process
joins with ``init_process_group`` over env:// — NCCL when it runs on a GPU, gloo on the CPU. Without
torchrun everything here is a single-process no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


# gloo groups for waits that may outlast the default group's timeout (created on first use, by
# every rank at the same point, as new_group requires), keyed by timeout
_WAIT_GROUPS: dict[timedelta, object] = {}


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank, world size, local rank, and its device (where its
    model runs and its collectives go: its GPU under NCCL, the CPU under gloo)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    owns_group: bool = False  # this context created the process group (and so ends it)

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the only rank that writes files and shows progress)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    def close(self) -> None:
        """End the process group if this context started it (torchrun warns about leaked groups)."""
        _WAIT_GROUPS.clear()
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self, timeout: timedelta | None = None) -> None:
        """Wait for every rank (no-op in a single process). With ``timeout``, the wait goes over a
        gloo group with that timeout instead of the default group (NCCL's watchdog would abort a
        wait longer than its own timeout, e.g. while rank 0 writes a large file)."""
        if not self.distributed:
            return
        if timeout is None:
            dist.barrier()
            return
        group = _WAIT_GROUPS.get(timeout)
        if group is None:
            group = _WAIT_GROUPS[timeout] = dist.new_group(backend="gloo", timeout=timeout)
        dist.barrier(group=group)

    def broadcast_object(self, value):
        """Rank 0's ``value`` (any picklable object) on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, value) -> list:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        if not self.distributed:
            return [value]
        out = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def all_reduce(self, tensor: torch.Tensor, op=None) -> torch.Tensor:
        """Reduce ``tensor`` in place across ranks (sum unless ``op``); returns it."""
        if self.distributed:
            dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
        return tensor


def init_distributed(device: str) -> DistContext:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK),
    or return a single-process context when there is none. ``device`` "cuda..." picks NCCL and pins
    this rank to GPU LOCAL_RANK; anything else picks gloo. An already initialised group is reused."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not dist.is_initialized():
        return DistContext(device=device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank,
                       f"cuda:{local_rank}" if use_cuda else "cpu", owns_group)
