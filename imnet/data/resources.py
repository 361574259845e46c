"""How many CPU threads a loader takes by default, per rank, and what that costs in decoder memory.

A node runs ``LOCAL_WORLD_SIZE`` processes (torchrun sets it; 1 without torchrun), which share the
CPUs this process may run on (``os.sched_getaffinity``). Each rank's share is ``cpus //
local_world_size`` (at least 1), and each backend takes that share up to a cap:

* ``dali-gpu`` (nvJPEG "mixed"): the GPU and its hardware JPEG decoder decode; the CPU threads read
  files and run the host-side Huffman decoding of the images the hardware decoder does not take.
  Each thread also gets nvJPEG scratch from DALI's pools (DALI's defaults: 16 MiB of GPU memory and
  two 8 MiB pinned host buffers, enough to decode a ~5-megapixel image without reallocating; larger
  images grow the pool once). Cap: 8 threads, so a pipeline's scratch stays at 128 MiB of GPU and
  128 MiB of pinned memory.
* ``dali-cpu`` and ``torch``: every stage runs on the CPU, so they use the whole share, up to 32
  threads or DataLoader worker processes.

The torch train loader keeps its workers for the whole run (``persistent_workers``); the val loader
of a training run starts its workers for each validation pass and ends them after it, so a rank
runs at most 2 x its share of worker processes, and only during validation. ``--workers N``
overrides the default for both loaders of a rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

# nvJPEG scratch per decoder thread with DALI's defaults (device_memory_padding, and two buffers of
# host_memory_padding), as DALI's image decoder preallocates them into its pools.
DALI_DEVICE_SCRATCH_PER_THREAD = 16 * 2**20
DALI_PINNED_SCRATCH_PER_THREAD = 2 * 8 * 2**20
THREAD_CAPS = {"dali-gpu": 8, "dali-cpu": 32, "torch": 32}


def visible_cpus() -> int:
    """CPUs this process may run on (its affinity mask: cgroup/taskset limits, not the machine)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def local_world_size() -> int:
    """Processes of this run on this node: torchrun's ``LOCAL_WORLD_SIZE``, else 1."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass(frozen=True)
class LoaderResources:
    """The default loader threads for one rank of ``local_ranks`` sharing ``cpus`` CPUs."""

    cpus: int
    local_ranks: int

    @property
    def per_rank(self) -> int:
        """CPUs per rank: an even share of the node's, at least one."""
        return max(1, self.cpus // self.local_ranks)

    def threads(self, backend: str) -> int:
        """Default DALI threads (``dali-gpu``, ``dali-cpu``) or DataLoader workers (``torch``)."""
        return max(1, min(self.per_rank, THREAD_CAPS[backend]))

    def dali_scratch(self, threads: int | None = None) -> tuple[int, int]:
        """(GPU bytes, pinned host bytes) of nvJPEG scratch of one ``dali-gpu`` pipeline."""
        threads = self.threads("dali-gpu") if threads is None else threads
        return threads * DALI_DEVICE_SCRATCH_PER_THREAD, threads * DALI_PINNED_SCRATCH_PER_THREAD


def loader_resources(cpus: int | None = None, local_ranks: int | None = None) -> LoaderResources:
    """The resources of this process (affinity, ``LOCAL_WORLD_SIZE``), or of the node described."""
    return LoaderResources(visible_cpus() if cpus is None else cpus,
                           local_world_size() if local_ranks is None else local_ranks)


def default_workers(backend: str = "torch") -> int:
    """Default threads / workers of ``backend`` ("dali-gpu", "dali-cpu", "torch") for this rank."""
    return loader_resources().threads(backend)
