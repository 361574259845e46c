"""``imnet pack``: a prepared split (or published timm shards) -> a pack (:mod:`imnet.pack.layout`).

Per split: the samples in pack order (train: a permutation of the whole split drawn from ``seed``,
so every shard is a random sample of all classes; val: val-number order), cut into ``shards``
near-equal shards (lengths differ by at most one). Worker processes each write whole shards
(reading the images, re-encoding those over ``max_side``, writing the tar and its DALI index to
temp names, fsync, rename) while the main process journals each finished shard
(``meta/.journal-<split>.jsonl``: an identity line, then per shard its name, images, sizes and
SHA-256s). Killed at any moment, the same command resumes: journaled shards whose file still has
the journaled size are kept, every other shard is written again (same input, same bytes). The
split's file list, ``SHA256SUMS``, its ``_info.json`` entry and its record in ``meta/pack.json``
come last, the record last of all, so a split looks complete only once it is. The whole run holds
``PACK/.imnet-lock``; ``--out`` may hold only what imnet pack writes.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import imnet
from imnet.errors import ImnetError
from imnet.prep.layout import (TEMP_FILE, atomic_write_lines, atomic_write_text, blocks_for, check_disk_space,
                               free_space, fsync_dir, human_bytes, read_journal_lines, remove_stale_temp_files,
                               write_error)
from imnet.prep.lock import TreeLock
from imnet.prep.manifests import write_classes
from imnet.pack.layout import (FORMAT, SHARD_NAME, SHARD_SPLIT, PackLayout, index_name, read_pack_json,
                               shard_name)
from imnet.pack.resize import ResizeSettings, fit
from imnet.pack.shard import Sample, WrittenShard, write_shard
from imnet.pack.source import SampleRef, SourceSplit, load_classes, official_classes, tree_split, wds_split

SPLITS = ("train", "val")
# The timm/imagenet-1k-wds layout: 1024 train and 64 validation shards.
DEFAULT_SHARDS = {"train": 1024, "val": 64}
MIN_DEFAULT_SHARD = 256  # default shard counts shrink for small splits: at least this many images per shard
TAR_BYTES_PER_SAMPLE = 3 * 512 + 3 * 512  # three headers and (at most) three paddings per sample
CRASH_ENV = "IMNET_PACK_CRASH_AT"
META_FILES = {"pack.json", "classes.tsv", "train.txt", "val.txt", ".journal-train.jsonl", ".journal-val.jsonl"}
TOP_FILES = {"_info.json", "SHA256SUMS", ".imnet-lock", "meta"}


@dataclass(frozen=True)
class PackOptions:
    """What ``imnet pack`` does: source (``data``: a prepared tree, or ``from_wds``: timm shards, with
    ``classes``), ``out``, splits (``only``), ``shard_size`` (images per shard; default the timm
    layout's counts), train shuffle ``seed``, ``resize`` (and ``resize_val``: also for val),
    ``workers`` (default: CPU count), ``redo`` (pack complete splits again)."""

    out: Path
    data: Path | None = None
    from_wds: Path | None = None
    classes: Path | None = None
    only: str | None = None
    shard_size: int | None = None
    seed: int = 0
    resize: ResizeSettings = ResizeSettings()
    resize_val: bool = False
    workers: int | None = None
    redo: bool = False
    progress: bool = True


def _crash_point(label: str) -> None:
    """Test hook: ``IMNET_PACK_CRASH_AT=<split>:shard:<n>`` kills this process (SIGKILL) right after
    the n-th shard journaled in this run; ``<split>:lists`` / ``<split>:info`` before the split's record."""
    if os.environ.get(CRASH_ENV) == label:
        os.kill(os.getpid(), signal.SIGKILL)


def _worker_init() -> None:
    """Writer processes die with their parent (so ``kill -9`` of imnet pack leaves none behind) and
    leave SIGINT to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def shard_count(images: int, split: str, shard_size: int | None) -> int:
    """Shards for ``images``: ``ceil(images / shard_size)``, or by default the timm layout's 1024 train
    / 64 val shards, fewer for a small split (at least 256 images per shard), at least one."""
    if shard_size:
        return max(1, -(-images // shard_size))
    return max(1, min(DEFAULT_SHARDS[split], images // MIN_DEFAULT_SHARD))


def pack_order(samples: list[SampleRef], split: str, seed: int) -> list[SampleRef]:
    """Train: a permutation of every sample drawn from ``seed`` (the global shuffle across shards);
    val: as given (val-number order)."""
    if split != "train":
        return list(samples)
    order = np.random.default_rng(seed).permutation(len(samples))
    return [samples[i] for i in order]


def cut(count: int, shards: int) -> list[range]:
    """Positions of each shard: ``[i * count // shards, (i + 1) * count // shards)``."""
    return [range(i * count // shards, (i + 1) * count // shards) for i in range(shards)]


@dataclass
class ShardResult:
    """A shard written by a worker, with how many of its images were re-encoded and its largest side."""

    shard: WrittenShard
    index: int
    resized: int
    max_side: int

    def to_dict(self) -> dict:
        return {**asdict(self.shard), "index": self.index, "resized": self.resized, "max_side": self.max_side}


def _write_one(task: tuple) -> ShardResult:
    """Worker: read, resize where asked, and write one shard (and its index)."""
    index, path, refs, resize, positions = task
    samples, resized, largest = [], 0, 0
    for ref, position in zip(refs, positions):
        try:
            data = ref.read()
        except FileNotFoundError:
            raise ImnetError(f"{ref.path}: listed image not found; run `imnet verify` on the source") from None
        except OSError as err:
            raise ImnetError(f"{ref.path}: cannot read ({err.strerror or err})") from None
        try:
            data, original = fit(data, resize)
        except (OSError, SyntaxError, ValueError) as err:
            raise ImnetError(f"{ref.path}: cannot decode to resize it ({err})") from None
        if original is not None:
            resized += 1
        if resize.max_side:
            largest = max(largest, resize.max_side if original else _longer_side(data))
        wnid, name = ref.file.split("/", 1)
        meta = {"filename": name, "wnid": wnid, "label": ref.label, "index": position}
        if original is not None:
            meta["original_size"] = list(original)
        samples.append(Sample(ref.key, data, ref.label, meta))
    return ShardResult(write_shard(Path(path), samples), index, resized, largest)


def _longer_side(data: bytes) -> int:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return max(image.size)


def check_out(layout: PackLayout, source_dirs: list[Path]) -> None:
    """Refuse an ``--out`` that is or holds a source, lies inside one, or holds anything imnet pack
    does not write (naming the first such path)."""
    out = layout.root.resolve()
    for source in source_dirs:
        source = source.resolve()
        if out == source or source in out.parents or out in source.parents:
            raise ImnetError(f"--out {layout.root} and the source {source} overlap; a pack is written into a "
                             f"folder of its own")
    if not layout.root.exists():
        return
    if not layout.root.is_dir():
        raise ImnetError(f"--out {layout.root} exists and is not a folder")
    ours = layout.pack_json.exists() or any(layout.journal(s).exists() for s in SPLITS)
    for entry in sorted(os.scandir(layout.root), key=lambda e: e.name):
        name = entry.name
        if name in TOP_FILES or TEMP_FILE.match(name) or (ours and SHARD_NAME.match(name)):
            if name == "meta" and (entry.is_symlink() or not entry.is_dir()):
                raise ImnetError(f"--out {layout.root}: {entry.path} is not the pack's meta folder")
            continue
        raise ImnetError(f"--out {layout.root}: {entry.path} was not written by imnet pack; a pack is written into "
                         f"an empty folder or a pack of its own: move it away or choose another --out")
    if layout.meta.is_dir():
        for entry in os.scandir(layout.meta):
            if entry.name not in META_FILES and not TEMP_FILE.match(entry.name):
                raise ImnetError(f"--out {layout.root}: {entry.path} was not written by imnet pack; move it away "
                                 f"or choose another --out")


# --- the journal ----------------------------------------------------------------------------------

def read_journal(path: Path) -> tuple[dict | None, dict[int, dict]]:
    """(identity, {shard index: its line}) of a journal; (None, {}) when there is none. A line cut
    short by a kill is dropped (that shard is written again)."""
    return read_journal_lines(path, lambda entry: (int(entry["index"]), entry))


def _still_there(layout: PackLayout, entry: dict) -> bool:
    """A journaled shard is kept when it and its index have the journaled sizes."""
    try:
        return (os.path.getsize(layout.root / entry["name"]) == entry["bytes"]
                and os.path.getsize(layout.root / index_name(entry["name"])) == entry["index_bytes"])
    except OSError:
        return False


def remove_split(layout: PackLayout, split: str) -> None:
    """Remove what imnet pack wrote for ``split``: its record (first, so nothing half-removed looks
    complete), its ``_info.json`` entry, shards, indexes, file list and journal; and nothing else."""
    record = read_pack_json(layout)
    if split in record["splits"]:
        del record["splits"][split]
        atomic_write_text(layout.pack_json, json.dumps(record, indent=1, sort_keys=True) + "\n")
    _write_info(layout, record)
    for entry in os.scandir(layout.root):
        match = SHARD_NAME.match(entry.name)
        if match and match.group(1) == SHARD_SPLIT[split] and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
    layout.file_list(split).unlink(missing_ok=True)
    layout.journal(split).unlink(missing_ok=True)
    _write_sums(layout, record)


def _write_info(layout: PackLayout, record: dict) -> None:
    """``_info.json`` in timm's format for the complete splits of ``record`` (removed when none)."""
    splits = {}
    for split in SPLITS:
        entry = record["splits"].get(split)
        if entry and entry.get("complete"):
            splits[SHARD_SPLIT[split]] = {"name": SHARD_SPLIT[split], "num_samples": entry["images"],
                                          "filenames": [s["name"] for s in entry["shards"]],
                                          "shard_lengths": [s["images"] for s in entry["shards"]]}
    if not splits:
        layout.info_json.unlink(missing_ok=True)
        return
    info = {"name": "imagenet-1k", "num_classes": record.get("num_classes"), "splits": splits}
    atomic_write_text(layout.info_json, json.dumps(info, indent=1) + "\n")


def _write_sums(layout: PackLayout, record: dict) -> None:
    """``SHA256SUMS`` (``sha256sum -c`` format) of every shard and index of the complete splits."""
    lines = []
    for split in SPLITS:
        entry = record["splits"].get(split)
        if entry and entry.get("complete"):
            for shard in entry["shards"]:
                lines.append(f"{shard['sha256']}  {shard['name']}\n")
                lines.append(f"{shard['index_sha256']}  {index_name(shard['name'])}\n")
    if lines:
        atomic_write_lines(layout.sums, sorted(lines, key=lambda line: line[66:]))
    else:
        layout.sums.unlink(missing_ok=True)


# --- one split --------------------------------------------------------------------------------------

def _identity(source: SourceSplit, options: PackOptions, shards: int, resize: ResizeSettings) -> dict:
    return {"source": source.identity, "split": source.split, "shards": shards,
            "seed": options.seed if source.split == "train" else None, "resize": resize.to_dict(),
            "format": FORMAT}


def pack_split(layout: PackLayout, source: SourceSplit, options: PackOptions, workers: int) -> dict:
    """Write (or finish) one split of the pack from ``source``; returns its record."""
    split = source.split
    started = time.time()
    resize = options.resize if (split == "train" or options.resize_val) else ResizeSettings()
    samples = pack_order(source.samples, split, options.seed)
    if not samples:
        raise ImnetError(f"the {split} split of the source holds no images")
    shards = shard_count(len(samples), split, options.shard_size)
    identity = _identity(source, options, shards, resize)
    previous, done = read_journal(layout.journal(split))
    if previous != identity:
        if previous is not None or any(SHARD_NAME.match(n) and SHARD_SPLIT[split] in n for n in os.listdir(layout.root)):
            remove_split(layout, split)
        done = {}
    done = {i: entry for i, entry in done.items() if _still_there(layout, entry)}
    ranges = cut(len(samples), shards)
    todo = [i for i in range(shards) if i not in done]

    block = free_space(layout.root).block
    per_image = source.source_bytes / max(1, len(source.samples)) + TAR_BYTES_PER_SAMPLE
    needed = sum(len(ranges[i]) for i in todo) * per_image + len(todo) * 2 * block
    check_disk_space(layout.root, blocks_for(int(needed), block) + (1 << 20), 2 * len(todo) + 8,
                     f"{len(todo)} {SHARD_SPLIT[split]} shards")

    lines = [json.dumps(identity)] + [json.dumps(done[i]) for i in sorted(done)]
    atomic_write_lines(layout.journal(split), (line + "\n" for line in lines), fsync=False)
    journal = open(layout.journal(split), "a", encoding="utf-8")
    bar = tqdm(total=len(samples), initial=sum(len(ranges[i]) for i in done), unit="img",
               desc=f"pack {SHARD_SPLIT[split]}", file=sys.stderr, disable=not options.progress,
               dynamic_ncols=True)
    tasks = [(i, str(layout.root / shard_name(split, i)), [samples[p] for p in ranges[i]], resize, list(ranges[i]))
             for i in todo]
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init) if workers > 1 and \
        len(tasks) > 1 else None
    written = 0
    try:
        results = pool.imap_unordered(_write_one, tasks) if pool else map(_write_one, tasks)
        for result in results:
            entry = result.to_dict()
            try:
                journal.write(json.dumps(entry) + "\n")
                journal.flush()
            except OSError as err:
                raise write_error(layout.journal(split), err) from err
            done[result.index] = entry
            written += 1
            bar.update(result.shard.images)
            _crash_point(f"{split}:shard:{written}")
        if pool:
            pool.close()
            pool.join()
    except BaseException:
        if pool:
            pool.terminate()
            pool.join()
        raise
    finally:
        bar.close()
        journal.close()

    entries = [done[i] for i in range(shards)]
    order = [(s.file, s.label) for s in samples]
    atomic_write_lines(layout.file_list(split), (f"{file} {label}\n" for file, label in order))
    _crash_point(f"{split}:lists")
    record = read_pack_json(layout)
    split_record = {
        "complete": True, "images": len(samples), "shard_split": SHARD_SPLIT[split],
        "bytes": sum(e["bytes"] for e in entries), "shards": [
            {k: e[k] for k in ("name", "images", "bytes", "sha256", "index_bytes", "index_sha256", "resized",
                               "max_side")} for e in entries],
        "order": "shuffled" if split == "train" else "source (val-number order)",
        "seed": identity["seed"], "resize": resize.to_dict(),
        "resized": sum(e["resized"] for e in entries),
        "max_side": max(e["max_side"] for e in entries) if resize.max_side else None,
        "source": source.identity, "undecodable": [{"file": f, "position": i, "reason": source.bad[f]}
                                                  for i, (f, _) in enumerate(order) if f in source.bad],
        "decode_checked": source.decode_checked, "seconds": round(time.time() - started, 3), "workers": workers,
    }
    record["splits"][split] = split_record
    record["num_classes"] = len(source.classes)
    write_classes(layout.classes_tsv, source.classes)
    _write_sums(layout, record)
    _write_info(layout, record)
    _crash_point(f"{split}:info")
    _write_record(layout, record)
    layout.journal(split).unlink(missing_ok=True)
    return split_record


def _write_record(layout: PackLayout, record: dict) -> None:
    from PIL import __version__ as pil_version

    record.update(kind="imnet-pack", format=FORMAT, imnet_version=imnet.__version__, PIL=pil_version)
    atomic_write_text(layout.pack_json, json.dumps(record, indent=1, sort_keys=True) + "\n")
    fsync_dir(layout.meta)


def _complete_and_same(layout: PackLayout, record: dict, split: str, source: SourceSplit,
                       options: PackOptions) -> str | None:
    """For a complete split: None when it was packed from this source with these settings and its
    files are there, else why not."""
    entry = record["splits"][split]
    resize = options.resize if (split == "train" or options.resize_val) else ResizeSettings()
    if entry.get("source") != source.identity:
        return f"it was packed from {entry.get('source', {}).get('path')} (another source or another prep.json)"
    if entry.get("resize") != resize.to_dict() or (split == "train" and entry.get("seed") != options.seed) or \
            len(entry["shards"]) != shard_count(entry["images"], split, options.shard_size):
        return "it was packed with other settings (shards, seed or resize)"
    for shard in entry["shards"]:
        if not _still_there(layout, {**shard}):
            return f"{layout.root / shard['name']} is missing or has another size"
    return None


def write_pack(options: PackOptions) -> dict:
    """Write the pack ``options`` describes (see :class:`PackOptions`); returns a summary
    ``{"out", "seconds", "splits": {split: {"status", "images", "shards", "bytes", "resized"}}}``."""
    t0 = time.time()
    if (options.data is None) == (options.from_wds is None):
        raise ImnetError("give one source: --data TREE (prepared by imnet prep) or --from WDS_DIR (timm shards)")
    if options.only not in (None, *SPLITS):
        raise ImnetError(f"--only must be train or val, not {options.only!r}")
    if options.resize.max_side is not None and options.resize.max_side < 8:
        raise ImnetError(f"--max-side {options.resize.max_side}: too small (at least 8 pixels)")
    if not 1 <= options.resize.quality <= 100:
        raise ImnetError(f"--quality {options.resize.quality}: must be 1..100")
    if options.shard_size is not None and options.shard_size < 1:
        raise ImnetError(f"--shard-size {options.shard_size}: must be at least 1")
    source_dir = Path(options.data or options.from_wds)
    if not source_dir.is_dir():
        raise ImnetError(f"{'--data' if options.data else '--from'} {source_dir}: folder not found")
    classes = None
    if options.from_wds is not None:
        # the shards carry class indices, not the class list: --classes, else the 1000 official wnids
        classes = load_classes(Path(options.classes)) if options.classes is not None else official_classes()
        if not (source_dir / "_info.json").is_file():
            raise ImnetError(f"--from {source_dir}: no _info.json; give the folder of the timm/imagenet-1k-wds "
                             f"shards with their _info.json")
    layout = PackLayout(Path(options.out))
    check_out(layout, [source_dir])
    splits = [options.only] if options.only else list(SPLITS)
    workers = options.workers or os.cpu_count() or 1
    summary: dict = {"out": str(layout.root), "splits": {}}
    try:
        layout.meta.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(layout.meta, err) from err
    with TreeLock(layout.lock, "imnet pack", label="--out"):
        check_out(layout, [source_dir])
        remove_stale_temp_files(layout.root)
        remove_stale_temp_files(layout.meta)
        for split in splits:
            if options.data is not None:
                source = tree_split(Path(options.data), split)
            else:
                if not any(f"-{SHARD_SPLIT[split]}-" in n for n in os.listdir(source_dir)) and options.only is None:
                    continue
                source = wds_split(source_dir, split, classes, workers, options.progress)
            record = read_pack_json(layout)
            if record["splits"].get(split, {}).get("complete"):
                why = _complete_and_same(layout, record, split, source, options)
                if why is None and not options.redo:
                    entry = record["splits"][split]
                    summary["splits"][split] = {"status": "already packed", "images": entry["images"],
                                                "shards": len(entry["shards"]), "bytes": entry["bytes"],
                                                "resized": entry["resized"], "seconds": 0.0}
                    continue
                if why is not None and not options.redo:
                    raise ImnetError(f"{layout.pack_json}: the {split} split is complete but {why}; pack it again "
                                     f"with --redo, or choose another --out")
                print(f"imnet pack: --redo: packing the {split} split again", file=sys.stderr)
                remove_split(layout, split)
            entry = pack_split(layout, source, options, workers)
            summary["splits"][split] = {"status": "packed", "images": entry["images"], "shards": len(entry["shards"]),
                                        "bytes": entry["bytes"], "resized": entry["resized"],
                                        "seconds": entry["seconds"]}
    if not summary["splits"]:
        raise ImnetError(f"--from {source_dir}: no shards of the chosen splits found")
    summary["seconds"] = round(time.time() - t0, 3)
    return summary


def format_summary(summary: dict) -> str:
    """One line for stdout: each split's status, images, shards, size, re-encoded images."""
    parts = []
    for split, info in summary["splits"].items():
        rate = f", {info['images'] / info['seconds']:.0f} images/s" if info["status"] == "packed" and info["seconds"] \
            else ""
        parts.append(f"{split} {info['status']}: {info['images']} images in {info['shards']} shards, "
                     f"{human_bytes(info['bytes'])}, {info['resized']} re-encoded{rate}")
    return f"{'; '.join(parts)} -> {summary['out']} ({summary['seconds']:.1f}s)"
