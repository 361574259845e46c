"""A split of a pack (``imnet pack``) as the loaders see it: the same :class:`SplitList` as a tree's
(files, labels, in the pack's order) plus its shards, and which samples of which shard a rank or
worker reads.

Positions are the samples' places in the pack's ``meta/<split>.txt`` (shard 0 first). For val that
is val-number order, so eval's ``indices`` line up with a prepared tree's ``meta/val.txt``.

Sharding (both backends, matching DALI's ``fn.readers.webdataset`` with ``shard_id``/``num_shards``):
the split's samples are cut into ``world_size`` contiguous ranges ``[i * N // W, (i + 1) * N // W)``
(:func:`imnet.data.filelist.shard_range`). Eval: rank r reads range r once per pass, so every image
is read exactly once across ranks. Train: every epoch the shards are put in a new order (the same
on every rank: DALI's ``shuffle_after_epoch``), their samples cut into ``world_size`` contiguous
ranges, and rank r reads range r, shuffled again in a buffer: a fresh partition of the split every
epoch, at shard granularity. The pack's train samples were shuffled across shards when it was
written, so each shard is a random sample of the whole set.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imnet.data.filelist import SplitList
from imnet.data.filelist import read_split as read_tree_split
from imnet.errors import ImnetError
from imnet.pack.layout import PackLayout, PackSplitInfo, pack_split
from imnet.prep.manifests import read_file_list


@dataclass(frozen=True)
class PackSplit(SplitList):
    """A pack's split: ``files``/``labels`` in pack order, ``shards`` (tars, DALI indexes, lengths)."""

    shards: PackSplitInfo | None = None

    def path(self, position: int) -> Path:
        """Where the image at ``position`` is: ``<shard>.tar:<wnid>/<file name>`` (for messages)."""
        shard, _ = self.locate(position)
        return Path(f"{self.shards.tars[shard]}:{self.files[position]}")

    def locate(self, position: int) -> tuple[int, int]:
        """(shard, sample within the shard) of ``position``."""
        for shard, length in enumerate(self.shards.lengths):
            if position < length:
                return shard, position
            position -= length
        raise IndexError(position)

    def pieces(self, positions: range) -> list["Piece"]:
        """The contiguous ``positions`` as per-shard pieces, in order."""
        out, start = [], 0
        for shard, length in enumerate(self.shards.lengths):
            lo, hi = max(positions.start, start), min(positions.stop, start + length)
            if lo < hi:
                out.append(Piece(shard, lo - start, hi - start, lo))
            start += length
        return out


@dataclass(frozen=True)
class Piece:
    """Samples ``start``..``stop - 1`` of shard ``shard``; the first is at list position ``first``."""

    shard: int
    start: int
    stop: int
    first: int


def read_split(data: Path, split: str, limit: int | None = None) -> SplitList:
    """A split of ``data`` as the loaders read it: of a pack (``data/meta/pack.json``, written by
    ``imnet pack``) a :class:`PackSplit`, which the builders give to the pack readers; of a prepared
    tree its file list (:func:`imnet.data.filelist.read_split`)."""
    from imnet.pack.layout import is_pack

    if is_pack(Path(data)):
        return read_pack_split(data, split, limit)
    return read_tree_split(data, split, limit)


def read_pack_split(data: Path, split: str, limit: int | None = None) -> PackSplit:
    """The complete ``split`` of the pack ``data`` (first ``limit`` samples if given); ImnetError naming
    the file when the pack lacks it or its list disagrees with its record."""
    info = pack_split(Path(data), split)
    layout = PackLayout(Path(data))
    list_path = layout.file_list(split)
    entries = read_file_list(list_path)
    if len(entries) != info.num_samples:
        raise ImnetError(f"{list_path}: {len(entries)} images listed, {layout.pack_json} records "
                         f"{info.num_samples}; run `imnet pack --redo` for this split")
    entries = entries[:limit]
    if not entries:
        raise ImnetError(f"{list_path}: the file list is empty")
    return PackSplit(root=layout.root, list_path=list_path, files=[f for f, _ in entries],
                     labels=[label for _, label in entries], shards=info)


def shard_order(num_shards: int, seed: int, epoch: int) -> list[int]:
    """The order of the shards in train epoch ``epoch``: a permutation drawn from ``(seed, epoch)``,
    the same on every rank (DALI's ``shuffle_after_epoch`` does the same with its own stream)."""
    import torch

    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_shards, generator=generator).tolist()


def train_pieces(split: PackSplit, rank: int, world_size: int, seed: int, epoch: int) -> list[Piece]:
    """What rank ``rank`` trains on in ``epoch``: the shards in :func:`shard_order`, their samples
    one after the other, cut into ``world_size`` contiguous ranges; range ``rank``, as pieces. The
    ranges partition the split, so every sample is read by exactly one rank per epoch."""
    from imnet.data.filelist import shard_range

    starts = [sum(split.shards.lengths[:i]) for i in range(len(split.shards.lengths))]
    mine = shard_range(len(split), rank, world_size)
    out, at = [], 0
    for shard in shard_order(len(split.shards.lengths), seed, epoch):
        length = split.shards.lengths[shard]
        lo, hi = max(mine.start, at), min(mine.stop, at + length)
        if lo < hi:
            out.append(Piece(shard, lo - at, hi - at, starts[shard] + lo - at))
        at += length
    return out
