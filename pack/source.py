"""What a pack is made from: the samples of one split, in the order the pack stores them.

* :func:`tree_split`: a split of a tree prepared by ``imnet prep`` (its ``meta/<split>.txt``,
  ``classes.tsv`` and ``prep.json``). The split must be complete and no imnet run may be writing
  the tree. Images prep recorded as undecodable: an unacknowledged one is refused (train would use
  it, eval would score it); acknowledged ones are left out of train and kept in val (so positions
  stay those of ``val.txt``), listed in the pack's record for the loaders to skip.
* :func:`wds_split`: published ``timm/imagenet-1k-wds`` shards (``imagenet1k-<split>-NNNN.tar`` and
  their ``_info.json``). Every shard is scanned (tar headers and the small ``.cls``/``.json``
  members; image data is skipped over): the shard's sample count must be its ``shard_lengths``
  entry, the split's total its ``num_samples``, every sample needs a ``.jpg`` and a ``.cls`` in the
  class list's range, and where a ``.json`` gives a ``label`` or a train ``filename``
  (``<wnid>_N.JPEG``) they must agree with the ``.cls`` and the class list.

Each sample is a :class:`SampleRef`: where its image bytes are (a file, or a byte range of a tar)
and what it is (``wnid/file name``, class index).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tarfile
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from imnet.errors import ImnetError
from imnet.prep.layout import TreeLayout, read_prep_json, split_is_complete
from imnet.prep.lock import describe_holder, lock_holder
from imnet.prep.manifests import ClassInfo, read_classes, read_file_list
from imnet.pack.layout import SHARD_SPLIT

VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$")
TRAIN_NAME = re.compile(r"^(n\d{8})_\d+\.(?:JPEG|jpg|jpeg)$")


@dataclass(frozen=True, slots=True)  # slots: 1.28M of them stay small
class SampleRef:
    """One image: ``file`` ("wnid/name", as in a tree's file list), ``label`` (class index), and its
    bytes: ``path`` whole (``size`` -1) or ``size`` bytes at ``offset`` of ``path``."""

    file: str
    label: int
    path: str
    offset: int = 0
    size: int = -1

    @property
    def key(self) -> str:
        """The WebDataset key: the file name without its extension."""
        return self.file.rsplit("/", 1)[-1].split(".", 1)[0]

    def read(self) -> bytes:
        with open(self.path, "rb") as handle:
            if self.size < 0:
                return handle.read()
            handle.seek(self.offset)
            data = handle.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self.path}: cut short at byte {self.offset + len(data)} (expected {self.size} bytes "
                          f"of {self.file} at {self.offset})")
        return data


@dataclass
class SourceSplit:
    """A split to pack: its samples in source order, the class list, what to record about the
    source (``identity``: equal identities mean the same input), and ``bad`` ({file: reason} of
    images kept although recorded as undecodable)."""

    split: str
    samples: list[SampleRef]
    classes: list[ClassInfo]
    identity: dict
    source_bytes: int
    bad: dict[str, str]
    decode_checked: bool = False


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_key(file: str, where: str) -> None:
    name = file.rsplit("/", 1)[-1]
    stem = name.split(".", 1)[0]
    if not stem or any(c.isspace() for c in name) or name.count(".") > 1:
        raise ImnetError(f"{where}: file name {name!r} cannot be a WebDataset key (it needs one dot, before its "
                         f"extension, and no whitespace)")


def tree_split(tree: Path, split: str) -> SourceSplit:
    """The ``split`` ("train" or "val") of the prepared tree ``tree`` (see the module docstring)."""
    tree = Path(tree)
    layout = TreeLayout(tree)
    if not tree.is_dir():
        raise ImnetError(f"--data {tree}: folder not found; give a tree prepared by `imnet prep`")
    holder = lock_holder(layout.lock)
    if holder is not None:
        raise ImnetError(f"--data {tree} is being written by another imnet run ({describe_holder(holder)}; lock "
                         f"file {layout.lock}); pack it once that run has finished")
    record = read_prep_json(layout)
    if not split_is_complete(record, split):
        from imnet.prep.verify import interrupted_prep

        why = interrupted_prep(tree, split, check_lock=False)
        if why or not layout.file_list(split).is_file():
            raise ImnetError(f"{layout.file_list(split)}: the {split} split of {tree} is not prepared; "
                             + (why or "run `imnet prep` (or `imnet verify --write-manifests` for a tree made by "
                                       "another tool) before packing"))
        # A tree from another tool with manifests written by `imnet verify --write-manifests`: packed as
        # listed; its record in the pack says it had no prep record (and no decode check).
        print(f"imnet pack: note: {layout.prep_json} has no record of the {split} split; packing "
              f"{layout.file_list(split)} as listed (no decode check recorded)", file=sys.stderr)
    split_record = record["splits"].get(split, {})
    entries = read_file_list(layout.file_list(split))
    if len(entries) != split_record.get("images", len(entries)):
        raise ImnetError(f"{layout.file_list(split)}: {len(entries)} images listed, {layout.prep_json} records "
                         f"{split_record.get('images')}; run `imnet verify --data {tree}`")
    classes = read_classes(tree)
    undecodable = {item["file"].split("/", 1)[1]: item for item in split_record.get("undecodable", [])}
    refused = [f for f, item in undecodable.items() if not item.get("acknowledged")]
    if refused:
        raise ImnetError(f"{tree / split / refused[0]}: does not decode (recorded in {layout.prep_json}, "
                         f"{len(refused)} such image(s)); repair it or accept it with `imnet verify --data {tree} "
                         f"--acknowledge-bad` before packing")
    root = layout.split_dir(split)
    samples, bad = [], {}
    for relative, label in entries:
        if relative in undecodable:
            if split == "train":
                continue
            bad[relative] = undecodable[relative].get("reason", "does not decode")
        _check_key(relative, str(layout.file_list(split)))
        samples.append(SampleRef(relative, label, os.fsdecode(os.fsencode(str(root / relative)))))
    identity = {"kind": "tree", "path": str(tree.resolve()),
                "prep_json_sha256": _sha256_file(layout.prep_json) if split_record else None,
                "file_list_sha256": _sha256_file(layout.file_list(split)),
                "archive_md5": split_record.get("md5"), "images": len(entries)}
    source_bytes = int(split_record.get("bytes", 0)) or sum(os.path.getsize(s.path) for s in samples[:256]) * \
        len(samples) // max(1, min(256, len(samples)))
    return SourceSplit(split, samples, classes, identity, source_bytes, bad,
                       bool(split_record.get("decode_checked")))


def load_classes(path: Path) -> list[ClassInfo]:
    """The class list for ``--from``: a ``classes.tsv``, a prepared tree (its ``meta/classes.tsv``) or the
    devkit archive ``ILSVRC2012_devkit_t12.tar.gz``."""
    path = Path(path)
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        from imnet.prep.devkit import parse_devkit

        return parse_devkit(path).classes
    return read_classes(path)


def official_classes() -> list[ClassInfo]:
    """The 1000 ILSVRC2012 classes by their sorted wnids (``manifests/ILSVRC2012_wnids.txt``); no
    ILSVRC2012_IDs (0) or words: the default class list of ``--from``."""
    from imnet.prep.sources.base import official_wnids

    return [ClassInfo(i, wnid, 0, "") for i, wnid in enumerate(official_wnids())]


def _scan_shard(args: tuple[str, int, int]) -> tuple[list[tuple], str | None]:
    """Scan one published shard: ([(key, label, json or None, jpg offset, jpg size)], problem or None)."""
    path, expected, num_classes = args
    samples: dict[str, dict] = {}
    order: list[str] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                slash = member.name.rfind("/") + 1
                dot = member.name.find(".", slash)
                if dot <= slash:  # no extension, or a hidden file: not part of a sample
                    continue
                key, ext = member.name[:dot], member.name[dot + 1:]
                if key not in samples:
                    samples[key] = {}
                    order.append(key)
                sample = samples[key]
                if ext in ("jpg", "jpeg", "JPEG"):
                    sample["jpg"] = (member.offset_data, member.size)
                elif ext in ("cls", "json"):
                    sample[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        return [], f"{path}: not a readable tar ({err})"
    rows = []
    for key in order:
        sample = samples[key]
        if "jpg" not in sample or "cls" not in sample:
            missing = "jpg" if "jpg" not in sample else "cls"
            return [], f"{path}: sample {key!r} has no .{missing} member"
        text = sample["cls"].decode("ascii", "replace").strip()
        if not text.isdigit() or int(text) >= num_classes:
            return [], f"{path}: sample {key!r} has class {text!r}, outside 0..{num_classes - 1} of the class list"
        meta = None
        if "json" in sample:
            try:
                meta = json.loads(sample["json"])
            except ValueError:
                return [], f"{path}: sample {key!r} has a .json that does not parse"
        rows.append((key, int(text), meta, *sample["jpg"]))
    if len(rows) != expected:
        return [], f"{path}: {len(rows)} samples, _info.json gives {expected} for this shard"
    return rows, None


def wds_split(source: Path, split: str, classes: list[ClassInfo], workers: int = 1,
              progress: bool = True) -> SourceSplit:
    """The ``split`` of published ``timm/imagenet-1k-wds`` shards in ``source`` (module docstring);
    val in val-number order when every file name is ``ILSVRC2012_val_N.JPEG``."""
    from tqdm import tqdm

    source = Path(source)
    info_path = source / "_info.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        entry = info["splits"][SHARD_SPLIT[split]]
        filenames, lengths = list(entry["filenames"]), [int(n) for n in entry["shard_lengths"]]
        num_samples = int(entry["num_samples"])
    except FileNotFoundError:
        raise ImnetError(f"--from {source}: no _info.json; give the folder of the timm/imagenet-1k-wds shards "
                         f"with their _info.json") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ImnetError(f"{info_path}: no {SHARD_SPLIT[split]} split with num_samples, filenames and "
                         f"shard_lengths ({type(err).__name__}: {err})") from None
    if len(filenames) != len(lengths) or sum(lengths) != num_samples:
        raise ImnetError(f"{info_path}: the {SHARD_SPLIT[split]} split's shard_lengths ({len(lengths)} shards, "
                         f"{sum(lengths)} samples) do not match its filenames ({len(filenames)}) and "
                         f"num_samples ({num_samples})")
    for name in filenames:
        if not (source / name).is_file():
            raise ImnetError(f"{source / name}: shard listed in {info_path} not found")
    by_index = {c.class_index: c for c in classes}
    tasks = [(str(source / name), n, len(classes)) for name, n in zip(filenames, lengths)]
    bar = tqdm(total=len(tasks), desc=f"check {SHARD_SPLIT[split]} shards", unit="shard", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    samples: list[SampleRef] = []
    try:
        if workers > 1:
            pool = get_context("fork").Pool(workers)
            results = pool.imap(_scan_shard, tasks)
        else:
            pool, results = None, map(_scan_shard, tasks)
        for (path, _, _), (rows, problem) in zip(tasks, results):
            if problem:
                raise ImnetError(problem)
            for key, label, meta, offset, size in rows:
                wnid = by_index[label].wnid
                name = (meta or {}).get("filename") or f"{key.rsplit('/', 1)[-1]}.JPEG"
                if meta and "label" in meta and int(meta["label"]) != label:
                    raise ImnetError(f"{path}: sample {key!r}: .json label {meta['label']} but .cls {label}")
                match = TRAIN_NAME.match(name)
                if split == "train" and match and match.group(1) != wnid:
                    raise ImnetError(f"{path}: sample {key!r} ({name}) has class {label}, which is {wnid} in the "
                                     f"class list, not {match.group(1)}: the class list does not fit these shards")
                file = f"{wnid}/{name}"
                _check_key(file, path)
                samples.append(SampleRef(file, label, path, offset, size))
            bar.update(1)
    finally:
        bar.close()
        if workers > 1:
            pool.terminate()
    if split == "val":
        numbers = [VAL_NAME.match(s.file.split("/", 1)[1]) for s in samples]
        if all(numbers):
            samples = [s for _, s in sorted(zip((int(m.group(1)) for m in numbers), samples))]
    identity = {"kind": "timm-wds", "path": str(source.resolve()), "info_json_sha256": _sha256_file(info_path),
                "images": len(samples)}
    return SourceSplit(split, samples, classes, identity, sum(max(0, s.size) for s in samples), {})
