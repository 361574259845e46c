"""Gathering predictions across ranks: 2 processes, gloo on CPU, an odd number of images."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from imnet.eval.distributed import DistContext, gather_objects, gather_rows, init_distributed

N_IMAGES, N_CLASSES = 7, 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _full_split():
    torch.manual_seed(0)
    scores = torch.randn(N_IMAGES, 2, N_CLASSES).half()
    labels = torch.randint(0, N_CLASSES, (N_IMAGES,))
    return torch.arange(N_IMAGES), labels, scores


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.device) == (rank, world_size, "cpu")
    indices, labels, scores = _full_split()
    # DALI-style contiguous shards, 3 and 4 images; rank 1 hands its rows over in reverse order
    shard = range(rank * N_IMAGES // world_size, (rank + 1) * N_IMAGES // world_size)
    mine = torch.tensor(list(shard))
    if rank == 1:
        mine = mine.flip(0)
    gathered = gather_rows(ctx, indices[mine], labels[mine], scores[mine])
    skipped = gather_objects(ctx, [(int(mine[0]), f"rank{rank}.JPEG", "corrupt")])
    if rank == 0:
        torch.save({"gathered": gathered, "skipped": skipped}, os.path.join(out_dir, "gathered.pt"))
    else:
        assert gathered is None
    torch.distributed.destroy_process_group()


def test_gather_two_ranks_odd_split_equals_single_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    result = torch.load(tmp_path / "gathered.pt")
    indices, labels, scores = result["gathered"]
    single = gather_rows(DistContext(), *_full_split())
    assert indices.tolist() == list(range(N_IMAGES))          # every image once, in val order
    assert torch.equal(labels, single[1]) and torch.equal(scores, single[2])
    assert scores.dtype == torch.float16
    assert [s[1] for s in result["skipped"]] == ["rank0.JPEG", "rank1.JPEG"]


def test_gather_rejects_an_image_counted_twice():
    indices = torch.tensor([2, 0, 2])
    with pytest.raises(RuntimeError, match="val index 2"):
        gather_rows(DistContext(), indices, torch.zeros(3))


def _empty_rank_worker(rank: int, world_size: int, port: int, out_dir: str, case: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    ctx = init_distributed("cpu")
    indices, labels, scores = _full_split()
    if case == "rank0_empty":   # what an empty shard's forward pass returns: (0, K, C) scores
        mine = torch.arange(0) if rank == 0 else torch.arange(N_IMAGES)
    else:                       # no rank has a row (every image skipped)
        mine = torch.arange(0)
    gathered = gather_rows(ctx, indices[mine], labels[mine], scores[mine])
    ctx.barrier(timeout=__import__("datetime").timedelta(minutes=5))  # the long-timeout wait works too
    if rank == 0:
        torch.save(gathered, os.path.join(out_dir, "gathered.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("case", ["rank0_empty", "all_empty"])
def test_gather_with_empty_shards(tmp_path, case):
    mp.spawn(_empty_rank_worker, args=(2, _free_port(), str(tmp_path), case), nprocs=2, join=True)
    indices, labels, scores = torch.load(tmp_path / "gathered.pt")
    expected = N_IMAGES if case == "rank0_empty" else 0
    assert indices.tolist() == list(range(expected))
    assert scores.shape == (expected, 2, N_CLASSES) and scores.dtype == torch.float16
    if expected:
        assert torch.equal(scores, _full_split()[2])
