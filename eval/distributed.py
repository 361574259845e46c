"""Evaluation under torchrun: each rank scores its shard, rank 0 gathers every image once, in val order.

The loaders shard the split without padding (each image goes to exactly one rank), so shards differ
in size, and a shard may be empty (more ranks than images, or every image of a rank skipped as
undecodable). :func:`gather_rows` first exchanges every rank's row count and row shape, pads each
rank's rows to the longest shard (an empty rank takes the others' row shape and dtype) for the
collective, cuts the padding off again on rank 0, then sorts by val index and checks that no index
came twice. NCCL needs the tensors on the rank's GPU; gloo (CPU) takes them where they are.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from imnet.distributed import DistContext, init_distributed  # noqa: F401  (re-exported)


def gather_rows(ctx: DistContext, indices: torch.Tensor, *columns: torch.Tensor
                ) -> tuple[torch.Tensor, ...] | None:
    """Gather per-image rows from every rank onto rank 0, sorted by val index.

    ``indices`` (n,) int64 are this rank's positions in the split's file list; each of ``columns``
    has n rows (any trailing shape, any dtype), aligned with ``indices``. Returns
    ``(indices, *columns)`` for the whole split on rank 0, in ascending index order, on the CPU, and
    None on the other ranks. Raises RuntimeError if an index arrives twice (a sharding bug)."""
    if not ctx.distributed:
        order = torch.argsort(indices.cpu(), stable=True)
        result = (indices.cpu()[order], *(c.cpu()[order] for c in columns))
    else:
        dev = torch.device(ctx.device)
        tensors = (indices, *columns)
        layout = [(int(t.shape[0]), tuple(t.shape[1:]), str(t.dtype)) for t in tensors]
        every = [None] * ctx.world_size
        dist.all_gather_object(every, layout)
        sizes = [rank_layout[0][0] for rank_layout in every]
        longest = max(sizes)
        shapes = [_row_shape(every, column) for column in range(len(tensors))]
        if longest == 0:  # no rank has a row: nothing to send
            return tuple(torch.zeros((0, *shape), dtype=dtype) for shape, dtype in shapes) if ctx.is_main else None
        gathered = []
        for tensor, (row_shape, dtype) in zip(tensors, shapes):
            tensor = tensor.to(dev).contiguous()
            padded = torch.zeros((longest, *row_shape), dtype=dtype, device=dev)
            if tensor.shape[0]:
                padded[: tensor.shape[0]] = tensor
            parts = [torch.empty_like(padded) for _ in range(ctx.world_size)] if ctx.is_main else None
            dist.gather(padded, parts, dst=0)
            if ctx.is_main:
                gathered.append(torch.cat([p[:s].cpu() for p, s in zip(parts, sizes)]))
        if not ctx.is_main:
            return None
        order = torch.argsort(gathered[0], stable=True)
        result = tuple(g[order] for g in gathered)
    sorted_indices = result[0]
    if sorted_indices.numel() > 1 and bool((sorted_indices[1:] == sorted_indices[:-1]).any()):
        dup = int(sorted_indices[1:][sorted_indices[1:] == sorted_indices[:-1]][0])
        raise RuntimeError(f"val index {dup} was evaluated by more than one rank")
    return result


def _row_shape(every: list, column: int) -> tuple[tuple[int, ...], torch.dtype]:
    """The row shape and dtype of ``column`` on the ranks that have rows (all must agree)."""
    seen = {(shape, dtype) for rank_layout in every for n, shape, dtype in [rank_layout[column]] if n}
    if not seen:  # no rank has rows: any rank's description will do
        seen = {(every[0][column][1], every[0][column][2])}
    if len(seen) > 1:
        raise RuntimeError(f"ranks disagree on the rows of column {column}: {sorted(seen)}")
    shape, dtype = seen.pop()
    return shape, getattr(torch, dtype.replace("torch.", ""))


def gather_objects(ctx: DistContext, items: list) -> list:
    """Concatenate every rank's small picklable list (e.g. skipped files) on every rank."""
    if not ctx.distributed:
        return list(items)
    parts: list = [None] * ctx.world_size
    dist.all_gather_object(parts, list(items))
    return [item for part in parts for item in part]
