"""``imnet verify``: check a prepared tree against its manifests, and adopt trees made by other tools.

Checks: every file listed in ``meta/<split>.txt`` is present, no image is unlisted, labels agree with
``classes.tsv`` and the folder each file is in, per-class counts and byte sizes agree with the split's
record in ``prep.json`` (when prep wrote it), and with ``decode`` every image decodes. A tree laid
out like torchvision's ``ImageNet`` (``train/<wnid>/``, ``val/<wnid>/``, maybe ``meta.bin``) gets
its missing manifests written with ``write_manifests``.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from imnet.errors import ImnetError
from imnet.prep.layout import SPLITS, TreeLayout, read_prep_json
from imnet.prep.manifests import ClassInfo, read_classes, read_file_list, write_classes, write_file_list

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


@dataclass
class VerifyReport:
    """What :func:`verify_tree` found: ``problems`` (empty when the tree is sound), image counts per
    split, and the manifests it wrote."""

    dst: Path
    images: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    wrote: list[Path] = field(default_factory=list)

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


def quick_check(layout: TreeLayout, split: str, split_record: dict) -> list[str]:
    """Cheap check of a split marked complete: manifest present, and the number of files in every class
    folder as recorded. No hashing, no reading of images. Returns problems (empty: fine)."""
    if not layout.file_list(split).is_file():
        return [f"{layout.file_list(split)} is missing"]
    split_dir = layout.split_dir(split)
    if not split_dir.is_dir():
        return [f"{split_dir} is missing"]
    found = _scan_split(split_dir)
    expected = split_record.get("classes", {})
    problems = []
    for wnid, counts in expected.items():
        have = len(found.get(wnid, []))
        if have != counts["images"]:
            problems.append(f"{split_dir / wnid} holds {have} files, {counts['images']} expected")
    for wnid in sorted(set(found) - set(expected)):
        if found[wnid]:
            problems.append(f"{split_dir / wnid} is not a class of the record")
    return problems


def verify_split(layout: TreeLayout, split: str, split_record: dict | None = None, decode: bool = False,
                 progress: bool = True, classes: list[ClassInfo] | None = None) -> list[str]:
    """Full check of one split against ``meta/<split>.txt`` (and ``split_record`` from prep.json when
    given): presence, unlisted files, labels, per-class counts and bytes, and with ``decode`` a decode
    of every image. Returns the problems found, each naming the file."""
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
        problems += decode_images(split_dir, [rel for rel, _ in entries], progress, desc=f"decode {split}")
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
            problems.append(f"{path} does not decode: {err}")
    return problems


def _classes_for_foreign_tree(dst: Path, devkit: Path | None) -> list[ClassInfo]:
    """The class list of a tree prep did not write: from a devkit archive, from torchvision's
    ``meta.bin``, or from the class folders (then ILSVRC2012_ID is unknown and written as 0)."""
    if devkit is not None:
        from imnet.prep.devkit import parse_devkit

        return parse_devkit(devkit).classes
    meta_bin = dst / "meta.bin"
    if meta_bin.is_file():
        import torch

        try:
            wnid_to_words, _ = torch.load(meta_bin, weights_only=True)
        except Exception as err:
            raise ImnetError(f"{meta_bin}: unreadable torchvision meta file ({err})") from err
        return [ClassInfo(i, wnid, 0, ", ".join(wnid_to_words[wnid])) for i, wnid in enumerate(sorted(wnid_to_words))]
    for split in SPLITS:
        split_dir = dst / split
        if split_dir.is_dir():
            wnids = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
            return [ClassInfo(i, wnid, 0, "") for i, wnid in enumerate(wnids)]
    raise ImnetError(f"{dst}: no train/ or val/ folder; not an ImageNet tree")


def write_foreign_manifests(dst: Path, devkit: Path | None = None) -> list[Path]:
    """Write ``meta/classes.tsv`` and ``meta/<split>.txt`` for a torchvision-layout tree (for those
    that are missing). Val files are ordered by val number, train files by (class, name)."""
    layout = TreeLayout(dst)
    layout.meta.mkdir(parents=True, exist_ok=True)
    wrote = []
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
            entries += [(f"{wnid}/{e.name}", wnid_index[wnid]) for e in files
                        if e.name.lower().endswith(IMAGE_SUFFIXES) and not e.name.startswith(".")]
        entries.sort(key=(lambda e: e[0].rsplit("/", 1)[1]) if split == "val" else (lambda e: e[0]))
        write_file_list(layout.file_list(split), entries)
        wrote.append(layout.file_list(split))
    return wrote


def verify_tree(dst: Path, decode: bool = False, write_manifests: bool = False, devkit: Path | None = None,
                progress: bool = True) -> VerifyReport:
    """Check the prepared tree ``dst``; with ``write_manifests`` first write the manifests a tree from
    another tool lacks. Returns a :class:`VerifyReport`; raises :class:`ImnetError` when ``dst`` is no
    tree at all."""
    dst = Path(dst)
    if not dst.is_dir():
        raise ImnetError(f"--data {dst} is not a folder")
    layout = TreeLayout(dst)
    report = VerifyReport(dst)
    if write_manifests:
        report.wrote = write_foreign_manifests(dst, devkit)
    record = read_prep_json(layout)
    splits = [s for s in SPLITS if layout.split_dir(s).is_dir() or layout.file_list(s).is_file()]
    if not splits:
        raise ImnetError(f"{dst}: no train/ or val/ folder; not a prepared tree (run imnet prep)")
    if not layout.classes_tsv.is_file():
        report.problems.append(f"{layout.classes_tsv} is missing (a tree from another tool? use --write-manifests)")
        return report
    classes = read_classes(dst)
    for split in splits:
        if not layout.file_list(split).is_file():
            report.problems.append(f"{layout.file_list(split)} is missing (use --write-manifests)")
            continue
        split_record = record["splits"].get(split)
        if split_record is not None and not split_record.get("complete"):
            report.problems.append(f"{layout.prep_json}: the {split} split is not complete; run imnet prep again")
        if record["splits"] and split_record is None:
            report.problems.append(f"{layout.prep_json}: no record of the {split} split; run imnet prep again")
        report.images[split] = len(read_file_list(layout.file_list(split)))
        report.problems += verify_split(layout, split, split_record, decode, progress, classes)
    return report
