"""Where things live in a pack, and reading one back (for the loaders and for resuming).

A pack is a folder of WebDataset tar shards in the ``timm/imagenet-1k-wds`` layout, which timm's
``wds/`` reader and the ``webdataset`` package read as they are, plus what imnet needs beside it::

    PACK/_info.json                         timm's split record: per split name, num_samples,
                                            filenames, shard_lengths (written last, per split)
    PACK/imagenet1k-train-0000.tar ...      <key>.jpg, <key>.cls (class index as ASCII), <key>.json
    PACK/imagenet1k-train-0000.idx ...      DALI's index of each shard (the format wds2idx writes)
    PACK/imagenet1k-validation-0000.tar ...
    PACK/SHA256SUMS                         ``sha256sum -c`` lines of every shard and index
    PACK/meta/pack.json                     imnet's record: source tree and prep.json, settings, seed,
                                            per split: complete, counts, shards (size, SHA-256, images)
    PACK/meta/classes.tsv                   the class list (as a prepared tree's)
    PACK/meta/train.txt, meta/val.txt       "<wnid>/<file name> <class index>" in pack order (shard 0
                                            first); val in val-number order, so positions line up
                                            with a prepared tree's meta/val.txt
    PACK/.imnet-lock                        while ``imnet pack`` writes it

imnet's split names are ``train`` and ``val``; the shards and ``_info.json`` call val
``validation``, as timm's do. A split is in the pack only when ``meta/pack.json`` marks it
complete; that record and its ``_info.json`` entry are written last, atomically.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from imnet.errors import ImnetError

PREFIX = "imagenet1k"
# imnet split -> the split name of the shards and _info.json (timm's)
SHARD_SPLIT = {"train": "train", "val": "validation"}
IMNET_SPLIT = {v: k for k, v in SHARD_SPLIT.items()}
SHARD_NAME = re.compile(rf"^{PREFIX}-(train|validation)-(\d{{4,}})\.(tar|idx)$")
FORMAT = 1


def shard_name(split: str, index: int, suffix: str = "tar") -> str:
    """``imagenet1k-<train|validation>-NNNN.<suffix>`` for imnet split ``split``."""
    return f"{PREFIX}-{SHARD_SPLIT[split]}-{index:04d}.{suffix}"


def index_name(tar_name: str) -> str:
    """The DALI index beside a shard: the shard's name with ``.idx`` for ``.tar`` (as wds2idx names it)."""
    return tar_name[:-len(".tar")] + ".idx"


@dataclass(frozen=True)
class PackLayout:
    """The paths of a pack rooted at ``root``."""

    root: Path

    @property
    def info_json(self) -> Path:
        return self.root / "_info.json"

    @property
    def meta(self) -> Path:
        return self.root / "meta"

    @property
    def pack_json(self) -> Path:
        return self.meta / "pack.json"

    @property
    def classes_tsv(self) -> Path:
        return self.meta / "classes.tsv"

    @property
    def sums(self) -> Path:
        return self.root / "SHA256SUMS"

    @property
    def lock(self) -> Path:
        return self.root / ".imnet-lock"

    def file_list(self, split: str) -> Path:
        return self.meta / f"{split}.txt"

    def journal(self, split: str) -> Path:
        return self.meta / f".journal-{split}.jsonl"


def is_pack(path: Path) -> bool:
    """Whether ``path`` looks like an imnet pack (``meta/pack.json`` there)."""
    return (Path(path) / "meta" / "pack.json").is_file()


def read_pack_json(layout: PackLayout) -> dict:
    """``meta/pack.json`` as a dict (``{"splits": {}}`` when there is none yet)."""
    if not layout.pack_json.exists():
        return {"splits": {}}
    try:
        record = json.loads(layout.pack_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ImnetError(f"{layout.pack_json}: unreadable pack record ({err}); run the same imnet pack again "
                         f"or remove the pack") from err
    if not isinstance(record, dict) or record.get("kind") != "imnet-pack" or not isinstance(record.get("splits"), dict):
        raise ImnetError(f"{layout.pack_json}: not a record written by imnet pack")
    return record


@dataclass(frozen=True)
class PackSplitInfo:
    """One complete split of a pack: shard tar and index paths, images per shard (``lengths``)."""

    split: str
    tars: list[Path]
    indexes: list[Path]
    lengths: list[int]
    record: dict

    @property
    def num_samples(self) -> int:
        return sum(self.lengths)


def pack_split(root: Path, split: str) -> PackSplitInfo:
    """The complete ``split`` ("train" or "val") of the pack at ``root``; ImnetError naming the file
    when the pack has no complete record of it, or a shard or index it lists is missing."""
    layout = PackLayout(Path(root))
    record = read_pack_json(layout)
    split_record = record["splits"].get(split)
    if not split_record or not split_record.get("complete"):
        journal = layout.journal(split)
        why = (f"an imnet pack of it was interrupted ({journal}): run the same imnet pack again to finish it"
               if journal.exists() else f"it was not packed (imnet pack --only {split})")
        raise ImnetError(f"{layout.pack_json}: the {split} split of the pack is not complete; {why}")
    tars, indexes, lengths = [], [], []
    for shard in split_record["shards"]:
        tar = layout.root / shard["name"]
        index = layout.root / index_name(shard["name"])
        for path in (tar, index):
            if not path.is_file():
                raise ImnetError(f"{path}: missing shard file of the pack (listed in {layout.pack_json}); "
                                 f"run imnet pack again to rewrite it")
        tars.append(tar)
        indexes.append(index)
        lengths.append(int(shard["images"]))
    return PackSplitInfo(split, tars, indexes, lengths, split_record)


def read_index(path: Path) -> list[list[tuple[str, int, int, str]]]:
    """A DALI index file (v1.2: ``v1.2 <samples>`` then per sample ``ext offset size name`` per
    component) as a list of samples, each a list of (ext, data offset, size, member name)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    head = lines[0].split() if lines else []
    if len(head) != 2 or head[0] != "v1.2" or not head[1].isdigit() or int(head[1]) != len(lines) - 1:
        raise ImnetError(f"{path}: not a DALI webdataset index (v1.2) or cut short")
    samples = []
    for line in lines[1:]:
        fields = line.split(" ")
        samples.append([(fields[i], int(fields[i + 1]), int(fields[i + 2]), fields[i + 3])
                        for i in range(0, len(fields), 4)])
    return samples
