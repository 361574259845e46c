"""The loaders' input: one split of a prepared tree and its file list, and how it is sharded.

A split is ``DATA/<split>/`` (ImageFolder layout) plus ``DATA/meta/<split>.txt`` in DALI's file_list
format, ``"<path relative to DATA/<split>> <class_index>"`` per line, written by ``imnet prep``
(DESIGN.md). Both loader backends read the same list and cut the same shards, so a rank sees the same
images whichever backend it runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imnet.errors import ImnetError
from imnet.prep.manifests import read_file_list

SPLITS = ("train", "val")


@dataclass(frozen=True)
class SplitList:
    """One split's images: ``files[i]`` (relative to ``root``) has class index ``labels[i]``.

    ``list_path`` is the ``meta/<split>.txt`` the entries came from (named in error messages).
    """

    root: Path
    list_path: Path
    files: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.files)

    def path(self, position: int) -> Path:
        """The absolute path of the image at ``position`` in the list."""
        return self.root / self.files[position]


def read_split(data: Path, split: str, limit: int | None = None) -> SplitList:
    """Read ``data/meta/<split>.txt`` of a prepared tree; keep the first ``limit`` entries if given.

    Lines are parsed by ``imnet.prep.manifests.read_file_list`` (the writer's own reader). Raises
    ImnetError naming the file when the tree or the list is missing or empty, or a line is malformed
    (not ``"<relative path> <class index>"``, or a path leaving the split folder).
    """
    data = Path(data)
    if split not in SPLITS:
        raise ImnetError(f"{data}: unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    root = data / split
    list_path = data / "meta" / f"{split}.txt"
    if not list_path.is_file():
        why = unfinished_prep(data, split)  # an unfinished (or running) imnet prep: finish it
        raise ImnetError(f"{list_path}: file list not found; " + (why or f"is {data} a tree prepared by "
                         f"`imnet prep` (it writes meta/{split}.txt)?"))
    if not root.is_dir():
        raise ImnetError(f"{root}: image folder not found (listed by {list_path}); "
                         f"run `imnet prep` for the {split} split")
    entries = read_file_list(list_path)[:limit]
    for line_number, (relative, _) in enumerate(entries, start=1):
        if relative.startswith("/") or ".." in Path(relative).parts:
            raise ImnetError(f"{list_path}:{line_number}: path {relative!r} leaves {root}")
    files = [relative for relative, _ in entries]
    labels = [class_index for _, class_index in entries]
    if not files:
        raise ImnetError(f"{list_path}: the file list is empty")
    return SplitList(root=root, list_path=list_path, files=files, labels=labels)


def unfinished_prep(data: Path, split: str) -> str | None:
    """Advice when ``split`` of the tree ``data`` has no file list because an ``imnet prep`` of it was
    interrupted (a journal or an incomplete record) or is running now: run the same prep again to
    finish it, or wait. None when neither (then the tree is not prep's)."""
    from imnet.prep.verify import interrupted_prep

    return interrupted_prep(Path(data), split)


def shard_range(num_images: int, rank: int, world_size: int) -> range:
    """The positions rank ``rank`` of ``world_size`` reads: DALI's contiguous shard of the list.

    DALI's file reader gives shard ``i`` the entries ``[floor(i * N / S), floor((i + 1) * N / S))``;
    the torch loader uses the same ranges so both backends shard alike. The shards partition the list.
    """
    check_rank(rank, world_size)
    return range(rank * num_images // world_size, (rank + 1) * num_images // world_size)


def check_rank(rank: int, world_size: int) -> None:
    """Raise ImnetError unless ``0 <= rank < world_size``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ImnetError(f"rank {rank} is not in 0..{world_size - 1} (world size {world_size})")
