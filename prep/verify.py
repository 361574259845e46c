"""``imnet verify``: check a prepared tree against its manifests, and adopt trees made by other tools.

Checks: every file listed in ``meta/<split>.txt`` is present, no image is unlisted, labels agree with
``classes.tsv`` and the folder each file is in, per-class counts and byte sizes agree with the split's
record in ``prep.json`` (when prep wrote it), no image prep found undecodable is left unacknowledged,
with ``hashes`` every image's SHA-256 agrees with ``meta/<split>.sha256``, and with ``decode`` every
image decodes. A tree laid out like torchvision's ``ImageNet`` (``train/<wnid>/``, ``val/<wnid>/``,
maybe ``meta.bin``) gets its missing manifests written with ``write_manifests``, under the tree's lock,
never for a split an interrupted ``imnet prep`` left behind.

Undecodable images: prep decodes every image and lists those PIL refuses under ``undecodable`` in the
split's record. :func:`acknowledge_bad` (``imnet verify --acknowledge-bad``) settles each one: a file
that decodes now (the user replaced it) is recorded as repaired, with its new size and SHA-256; a file
that still does not decode is marked acknowledged, and from then on the loaders skip it (eval marks
its rows partial) and ``imnet verify`` passes.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from imnet.errors import ImnetError
from imnet.prep.layout import SPLITS, TreeLayout, atomic_write_lines, atomic_write_text, read_prep_json
from imnet.prep.lock import TreeLock, describe_holder, lock_holder
from imnet.prep.manifests import ClassInfo, read_classes, read_file_list, write_classes, write_file_list
from imnet.prep.owner import journal_identity

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
HASH_WINDOW = 4096  # hash-list lines read and hashed at a time (bounded memory at any size)
SHOWN = 20


@dataclass
class VerifyReport:
    """What :func:`verify_tree` found: ``problems`` (empty when the tree is sound), image counts per
    split, the manifests it wrote, and ``notes`` (facts that are not problems, e.g. acknowledged
    undecodable images)."""

    dst: Path
    images: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    wrote: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _scan_split(split_dir: Path) -> dict[str, list[os.DirEntry]]:
    """The image files of a split folder by class folder (hidden files, e.g. temp files, included)."""
    found = {}
    with os.scandir(split_dir) as classes:
        for entry in classes:
            if entry.is_dir():
                with os.scandir(entry.path) as images:
                    found[entry.name] = [e for e in images if e.is_file()]
    return found


def quick_check(layout: TreeLayout, split: str, split_record: dict, counts: dict[str, int] | None = None) -> list[str]:
    """Cheap check of a split marked complete: manifest present, and the number of files in every class
    folder as recorded (``counts``: files per class folder when the caller listed them already). No
    hashing, no reading of images. Returns problems (empty: fine)."""
    if not layout.file_list(split).is_file():
        return [f"{layout.file_list(split)} is missing"]
    split_dir = layout.split_dir(split)
    if not split_dir.is_dir():
        return [f"{split_dir} is missing"]
    if counts is None:
        counts = {wnid: len(files) for wnid, files in _scan_split(split_dir).items()}
    expected = split_record.get("classes", {})
    problems = []
    for wnid, recorded in expected.items():
        have = counts.get(wnid, 0)
        if have != recorded["images"]:
            problems.append(f"{split_dir / wnid} holds {have} files, {recorded['images']} expected")
    for wnid in sorted(set(counts) - set(expected)):
        if counts[wnid]:
            problems.append(f"{split_dir / wnid} is not a class of the record")
    return problems


def verify_split(layout: TreeLayout, split: str, split_record: dict | None = None, decode: bool = False,
                 progress: bool = True, classes: list[ClassInfo] | None = None) -> list[str]:
    """Full check of one split against ``meta/<split>.txt`` (and ``split_record`` from prep.json when
    given): presence, unlisted files, labels, per-class counts and bytes, and with ``decode`` a decode
    of every image (except those the record lists as undecodable: reported by :func:`bad_image_problems`).
    Returns the problems found, each naming the file."""
    list_path = layout.file_list(split)
    entries = read_file_list(list_path)
    classes = classes if classes is not None else read_classes(layout.dst)
    wnid_index = {c.wnid: c.class_index for c in classes}
    split_dir = layout.split_dir(split)
    problems: list[str] = []
    per_class: dict[str, dict] = {}
    listed = set()
    for rel, label in tqdm(entries, desc=f"verify {split}", unit="file", file=sys.stderr,
                           disable=not progress, leave=False):
        wnid = rel.split("/", 1)[0]
        listed.add(rel)
        if wnid_index.get(wnid) != label:
            problems.append(f"{list_path}: {rel} has label {label} but {wnid} is class {wnid_index.get(wnid)}")
        try:
            size = (split_dir / rel).stat().st_size
        except OSError:
            problems.append(f"{split_dir / rel} is listed in {list_path.name} but missing")
            continue
        counts = per_class.setdefault(wnid, {"images": 0, "bytes": 0})
        counts["images"] += 1
        counts["bytes"] += size
    if len(listed) != len(entries):
        problems.append(f"{list_path}: some files are listed twice")
    if split_dir.is_dir():
        for wnid, files in sorted(_scan_split(split_dir).items()):
            for entry in files:
                if f"{wnid}/{entry.name}" not in listed:
                    problems.append(f"{entry.path} is not listed in {list_path.name}")
    else:
        problems.append(f"{split_dir} is missing")
    if split_record:
        for wnid, counts in split_record.get("classes", {}).items():
            have = per_class.get(wnid, {"images": 0, "bytes": 0})
            if have != counts:
                problems.append(f"{split_dir / wnid}: {have['images']} images, {have['bytes']} bytes; "
                                f"prep recorded {counts['images']} images, {counts['bytes']} bytes")
    if decode:
        known = {b["file"] for b in (split_record or {}).get("undecodable", [])}
        rels = [rel for rel, _ in entries if f"{split}/{rel}" not in known]
        problems += decode_images(split_dir, rels, progress, desc=f"decode {split}")
    return problems


def decode_images(split_dir: Path, rels: list[str], progress: bool = True, desc: str = "decode") -> list[str]:
    """Fully decode every image (PIL, to RGB); returns one problem per file that fails."""
    from PIL import Image

    problems = []
    for rel in tqdm(rels, desc=desc, unit="img", file=sys.stderr, disable=not progress):
        path = split_dir / rel
        try:
            with Image.open(path) as image:
                image.convert("RGB").load()
        except FileNotFoundError:
            continue  # reported as missing already
        except Exception as err:
            from imnet.prep.quirks import undecodable_reason

            problems.append(f"{path} does not decode: {undecodable_reason(err)}")
    return problems


# --- hashes -----------------------------------------------------------------------------------------

def _sha256_of(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            digest = hashlib.sha256()
            while block := handle.read(1 << 20):
                digest.update(block)  # hashlib releases the GIL: the pool's threads hash in parallel
            return digest.hexdigest()
    except OSError:
        return None


def check_hashes(layout: TreeLayout, split: str, split_record: dict | None, progress: bool = True,
                 workers: int | None = None) -> list[str]:
    """Check every image of ``split`` against its ``meta/<split>.sha256`` (what ``cd DST && sha256sum -c
    meta/<split>.sha256`` checks), reading and hashing on a pool of threads with a progress bar in
    bytes; the list is streamed in windows, so memory stays bounded at any size. Returns a problem per
    changed, missing or unlisted file. A split recorded before imnet wrote hash lists gets a note on
    stderr and no problem."""
    path = layout.hash_list(split)
    if split_record is not None and "hashes" not in split_record:
        print(f"imnet: note: {layout.dst}: the {split} split was prepared by an older imnet, without a hash "
              f"list; only sizes were checked (`imnet prep --redo --only {split}` writes one)", file=sys.stderr)
        return []
    if not path.is_file():
        return [f"{path} is missing: the SHA-256 of every {split} image is unknown"]
    total = (split_record or {}).get("bytes")
    problems: list[str] = []
    lines = 0
    workers = workers or max(2, min(16, os.cpu_count() or 1))
    with open(path, encoding="utf-8") as handle, ThreadPoolExecutor(workers) as pool, \
            tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"sha256 {split}",
                 file=sys.stderr, disable=not progress) as bar:
        while True:
            window = list(itertools.islice(handle, HASH_WINDOW))
            if not window:
                break
            parsed = []
            for number, line in enumerate(window, lines + 1):
                digest, sep, rel = line.rstrip("\n").partition("  ")
                if not sep or len(digest) != 64:
                    problems.append(f"{path}:{number}: not a sha256sum line: {line.strip()!r}")
                    continue
                parsed.append((digest, rel))
            lines += len(window)
            for (digest, rel), actual in zip(parsed, pool.map(_sha256_of, [layout.dst / r for _, r in parsed])):
                file = layout.dst / rel
                if actual is None:
                    problems.append(f"{file} is listed in {path.name} but cannot be read")
                    continue
                if actual != digest:
                    problems.append(f"{file}: SHA-256 {actual} differs from {path.name} ({digest}): the file "
                                    f"changed since prep")
                try:
                    bar.update(file.stat().st_size)
                except OSError:
                    pass
    if split_record is not None and lines != split_record.get("images"):
        problems.append(f"{path}: {lines} lines, but the record has {split_record.get('images')} {split} images")
    return problems


# --- undecodable images -------------------------------------------------------------------------------

def recorded_undecodable(dst: Path, split: str) -> tuple[bool, list[dict]]:
    """(whether prep decoded every image of ``split``, the images it found undecodable: ``{"file":
    "<split>/<wnid>/<name>", "reason", "acknowledged"}``) from the tree's ``prep.json``; ``(False,
    [])`` for a tree with no such record (another tool's, or an older imnet's). For the loaders."""
    try:
        record = read_prep_json(TreeLayout(Path(dst)))
    except ImnetError:
        return False, []
    split_record = record["splits"].get(split) or {}
    if not split_record.get("decode_checked"):
        return False, []
    return True, [dict(b) for b in split_record.get("undecodable", [])]


def bad_image_problems(layout: TreeLayout, split: str, split_record: dict) -> tuple[list[str], list[str]]:
    """(problems, notes) about the images prep found undecodable in ``split``: each unacknowledged one
    is a problem, the acknowledged ones one note."""
    problems, acknowledged = [], []
    for item in split_record.get("undecodable", []):
        reason = item.get("reason") or item.get("action", "")
        if item.get("acknowledged"):
            acknowledged.append(item["file"])
        else:
            problems.append(f"{layout.dst / item['file']} does not decode ({reason}; found by imnet prep): "
                            f"repair it (replace the file) or accept it as it is, then run "
                            f"`imnet verify --data {layout.dst} --acknowledge-bad`")
    notes = []
    if acknowledged:
        notes.append(f"{len(acknowledged)} undecodable {split} image(s) acknowledged, which the loaders skip "
                     f"(eval rows partial): {', '.join(acknowledged[:3])}{' ...' if len(acknowledged) > 3 else ''}")
    return problems, notes


def _decodes(path: Path) -> str | None:
    """None when ``path`` decodes fully, else why not."""
    from PIL import Image

    from imnet.prep.quirks import undecodable_reason

    try:
        with Image.open(path) as image:
            image.load()
    except Exception as err:
        return undecodable_reason(err)
    return None


def acknowledge_bad(dst: Path) -> tuple[list[str], list[str]]:
    """Settle the undecodable images of a prepared tree (``imnet verify --acknowledge-bad``), under the
    tree's lock: each one that decodes now is recorded as repaired (new size in the per-class bytes,
    new line in the hash list, moved to ``repaired_by_user``); each one that still does not is marked
    ``acknowledged`` (a time stamp). Returns (acknowledged, repaired) paths relative to ``dst``."""
    dst = Path(dst)
    layout = TreeLayout(dst)
    if not layout.prep_json.is_file():
        raise ImnetError(f"{layout.prep_json}: no prep record; --acknowledge-bad settles the undecodable images "
                         f"imnet prep found, in a tree it prepared")
    acknowledged, repaired = [], []
    with TreeLock(layout.lock, "imnet verify --acknowledge-bad", label="--data"):
        record = read_prep_json(layout)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for split, split_record in record["splits"].items():
            kept, new_hashes = [], {}
            for item in split_record.get("undecodable", []):
                path = dst / item["file"]
                if item.get("acknowledged"):
                    kept.append(item)
                    continue
                if path.is_file() and _decodes(path) is None:
                    wnid = item["file"].split("/")[1]
                    size = path.stat().st_size
                    old = item.get("bytes")
                    counts = split_record["classes"][wnid]
                    if old is None:
                        old = _old_size(layout, split, item["file"], counts)
                    counts["bytes"] += size - old
                    split_record["bytes"] += size - old
                    new_hashes[item["file"]] = _sha256_of(path)
                    split_record.setdefault("repaired_by_user", []).append({"file": item["file"], "at": stamp})
                    repaired.append(item["file"])
                else:
                    kept.append(dict(item, acknowledged=stamp))
                    acknowledged.append(item["file"])
            split_record["undecodable"] = kept
            if new_hashes and layout.hash_list(split).is_file():
                _rewrite_hashes(layout.hash_list(split), new_hashes)
        atomic_write_text(layout.prep_json, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return acknowledged, repaired


def _old_size(layout: TreeLayout, split: str, rel: str, counts: dict) -> int:
    """The recorded size of one file: the class's recorded bytes less the current sizes of its other
    listed files (prep records sizes per class, not per file)."""
    wnid = rel.split("/")[1]
    others = 0
    for path in (layout.split_dir(split) / wnid).iterdir():
        if f"{split}/{wnid}/{path.name}" != rel:
            others += path.stat().st_size
    return counts["bytes"] - others


def _rewrite_hashes(path: Path, new: dict[str, str]) -> None:
    """Replace the lines of the files in ``new`` in a hash list (streamed; atomic)."""
    def lines():
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                digest, _, rel = line.rstrip("\n").partition("  ")
                yield f"{new[rel]}  {rel}\n" if rel in new else line
    atomic_write_lines(path, lines())


# --- trees made by other tools ----------------------------------------------------------------------

def _classes_for_foreign_tree(dst: Path, devkit: Path | None) -> list[ClassInfo]:
    """The class list of a tree prep did not write, as ``imnet prep --src <tree>`` reads it
    (:func:`imnet.prep.sources.tree.tree_classes`): from a devkit archive, torchvision's ``meta.bin``,
    ``LOC_synset_mapping.txt``, or the class folders (then ILSVRC2012_ID is unknown and written as 0).
    Only a devkit given with ``--devkit`` is used (prep also finds one lying in the tree)."""
    from imnet.prep.devkit import parse_devkit
    from imnet.prep.sources.tree import tree_classes

    if not any((dst / split).is_dir() for split in SPLITS):
        raise ImnetError(f"{dst}: no train/ or val/ folder; not an ImageNet tree")
    return tree_classes(dst, parse_devkit(devkit) if devkit is not None else None, find_devkit=False).classes


def interrupted_prep(dst: Path, split: str, check_lock: bool = True) -> str | None:
    """Advice when ``split`` of ``dst`` is an ``imnet prep`` not finished (a journal, or a record not
    complete) or being written now (its lock held), else None. For ``--write-manifests`` and for the
    loaders' "no file list" errors."""
    layout = TreeLayout(Path(dst))
    holder = lock_holder(layout.lock) if check_lock else None
    if holder is not None:
        return (f"an imnet run is writing {dst} now ({describe_holder(holder)}; lock file {layout.lock}): wait "
                f"for it to finish")
    if journal_identity(layout.journal(split)):
        return (f"the {split} split of {dst} is not complete: an imnet prep of it was interrupted "
                f"({layout.journal(split)}); run the same imnet prep again to finish it")
    try:
        split_record = read_prep_json(layout)["splits"].get(split)
    except ImnetError:
        return None
    if split_record is not None and not split_record.get("complete"):
        return (f"the {split} split of {dst} is not complete ({layout.prep_json}); run the same imnet prep "
                f"again to finish it")
    return None


def write_foreign_manifests(dst: Path, devkit: Path | None = None) -> tuple[list[Path], list[str]]:
    """Write ``meta/classes.tsv`` and ``meta/<split>.txt`` for a torchvision-layout tree (for those
    that are missing), holding the tree's lock. Val files are ordered by val number, train files by
    (class, name). Never for a split an ``imnet prep`` left unfinished: that one is a problem
    (returned) telling to run the same prep again. Returns (files written, problems)."""
    layout = TreeLayout(dst)
    wrote, problems = [], []
    with TreeLock(layout.lock, "imnet verify --write-manifests", label="--data"):
        unfinished = {split: interrupted_prep(dst, split, check_lock=False) for split in SPLITS}
        unfinished = {split: why for split, why in unfinished.items() if why}
        for split, why in unfinished.items():
            problems.append(f"{why} (not writing {layout.file_list(split)})")
        if unfinished or layout.prep_json.is_file():
            return wrote, problems  # prep's tree: prep writes its manifests
        layout.meta.mkdir(parents=True, exist_ok=True)
        if layout.classes_tsv.is_file():
            classes = read_classes(dst)
        else:
            classes = _classes_for_foreign_tree(dst, devkit)
            write_classes(layout.classes_tsv, classes)
            wrote.append(layout.classes_tsv)
        wnid_index = {c.wnid: c.class_index for c in classes}
        for split in SPLITS:
            split_dir = layout.split_dir(split)
            if not split_dir.is_dir() or layout.file_list(split).is_file():
                continue
            entries = []
            for wnid, files in sorted(_scan_split(split_dir).items()):
                if wnid not in wnid_index:
                    raise ImnetError(f"{split_dir / wnid}: folder is not one of the {len(classes)} classes")
                for entry in files:
                    if entry.name.lower().endswith(IMAGE_SUFFIXES) and not entry.name.startswith("."):
                        try:
                            entry.name.encode("utf-8")
                        except UnicodeEncodeError:
                            raise ImnetError(f"{os.fsencode(entry.path)!r}: file name is not UTF-8; a file list "
                                             f"is UTF-8 text (DALI's format): rename the file") from None
                        entries.append((f"{wnid}/{entry.name}", wnid_index[wnid]))
            entries.sort(key=(lambda e: e[0].rsplit("/", 1)[1]) if split == "val" else (lambda e: e[0]))
            write_file_list(layout.file_list(split), entries)
            wrote.append(layout.file_list(split))
    return wrote, problems


def verify_tree(dst: Path, decode: bool = False, write_manifests: bool = False, devkit: Path | None = None,
                progress: bool = True, hashes: bool = False) -> VerifyReport:
    """Check the prepared tree ``dst``; with ``write_manifests`` first write the manifests a tree from
    another tool lacks; with ``hashes`` check every image's SHA-256 against ``meta/<split>.sha256``.
    Returns a :class:`VerifyReport`; raises :class:`ImnetError` when ``dst`` is no tree at all."""
    dst = Path(dst)
    if not dst.is_dir():
        raise ImnetError(f"--data {dst} is not a folder")
    layout = TreeLayout(dst)
    report = VerifyReport(dst)
    if write_manifests:
        report.wrote, report.problems = write_foreign_manifests(dst, devkit)
    else:
        holder = lock_holder(layout.lock)
        if holder is not None:
            report.problems.append(f"an imnet run is writing {dst} now ({describe_holder(holder)}; lock file "
                                   f"{layout.lock}): verify it once that has finished")
    record = read_prep_json(layout)
    splits = [s for s in SPLITS if layout.split_dir(s).is_dir() or layout.file_list(s).is_file()]
    if not splits:
        raise ImnetError(f"{dst}: no train/ or val/ folder; not a prepared tree (run imnet prep)")
    if not layout.classes_tsv.is_file():
        if not report.problems:
            report.problems.append(f"{layout.classes_tsv} is missing (a tree from another tool? use "
                                   f"--write-manifests)")
        return report
    classes = read_classes(dst)
    for split in splits:
        if not layout.file_list(split).is_file():
            why = interrupted_prep(dst, split)
            report.problems.append(why or f"{layout.file_list(split)} is missing (use --write-manifests)")
            continue
        split_record = record["splits"].get(split)
        if split_record is not None and not split_record.get("complete"):
            report.problems.append(f"{layout.prep_json}: the {split} split is not complete; run imnet prep again")
        if record["splits"] and split_record is None:
            report.problems.append(f"{layout.prep_json}: no record of the {split} split; run imnet prep again")
        report.images[split] = len(read_file_list(layout.file_list(split)))
        report.problems += verify_split(layout, split, split_record, decode, progress, classes)
        if split_record is not None:
            problems, notes = bad_image_problems(layout, split, split_record)
            report.problems += problems
            report.notes += notes
            if not split_record.get("decode_checked") and not decode:
                report.notes.append(f"no decode check recorded for the {split} split (prepared by an older imnet): "
                                    f"--decode checks every image")
        if hashes:
            report.problems += check_hashes(layout, split, split_record, progress)
    return report
