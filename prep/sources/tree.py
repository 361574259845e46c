"""An extracted tree: ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (torchvision's ``ImageNet``
root, or any ImageFolder copy), or a flat ``val/`` with the devkit or Kaggle's ``LOC_val_solution.csv``.

Classes come from ``--devkit`` (or ``ILSVRC2012_devkit_t12.tar.gz`` in the tree), torchvision's
``meta.bin``, ``LOC_synset_mapping.txt``, or else the class folders themselves; with a devkit every
val image's label is checked against its ground truth. Names in Hugging Face's form (an extracted
``.tar.gz``) are normalized. The tree is read, never changed: prep writes a verified copy into
``--dst`` (``imnet verify --write-manifests`` instead lists such a tree in place, unverified).
"""
from __future__ import annotations

import os
from pathlib import Path

from imnet.errors import ImnetError
from imnet.prep.devkit import Devkit, parse_devkit
from imnet.prep.layout import SPLITS
from imnet.prep.sources.base import WNID, ClassList, Source, SplitPlan, make_class_list, official_name
from imnet.prep.sources.classlist import read_meta_bin, read_synset_mapping
from imnet.prep.sources.listing import list_split, listing_plan, walk_split
from imnet.prep.sources.work import copy_files

DEVKIT_NAME = "ILSVRC2012_devkit_t12.tar.gz"


def _looks_like_split(folder: Path, split: str) -> bool:
    """Whether ``folder`` holds class folders or ILSVRC2012 image names (a glance at its first entries)."""
    try:
        with os.scandir(folder) as entries:
            for count, entry in enumerate(entries):
                if WNID.match(entry.name) and entry.is_dir():
                    return True
                if official_name(split, entry.name) is not None:
                    return True
                if count > 64:
                    break
    except OSError:
        return False
    return False


def tree_classes(root: Path, devkit: Devkit | None, find_devkit: bool = True) -> ClassList:
    """The class list of a tree at ``root`` (see the module docstring for the order of preference;
    ``find_devkit``: also use a devkit lying in ``root``)."""
    if devkit is None and find_devkit and (root / DEVKIT_NAME).is_file():
        devkit = parse_devkit(root / DEVKIT_NAME)
    for name, reader in (("meta.bin", read_meta_bin),
                         ("LOC_synset_mapping.txt", lambda p: read_synset_mapping(p.read_text(encoding="utf-8"), p))):
        if (root / name).is_file():
            return make_class_list(reader(root / name), str(root / name), devkit)
    if devkit is not None:
        return make_class_list({c.wnid: c.words for c in devkit.classes}, str(devkit.path), devkit)
    wnids = set()
    for split in SPLITS:
        if (root / split).is_dir():
            wnids |= {e.name for e in os.scandir(root / split) if e.is_dir() and WNID.match(e.name)}
    if not wnids:
        raise ImnetError(f"{root}: no class folders and no class list (the devkit, meta.bin or "
                         f"LOC_synset_mapping.txt); give the devkit with --devkit")
    return make_class_list({w: "" for w in wnids}, f"the class folders of {root}")


def val_labels(root: Path, classes: ClassList) -> tuple[dict[int, str] | None, str]:
    """Val labels by number, and where they come from: the devkit's ground truth, else
    ``LOC_val_solution.csv`` in ``root``, else none (class folders or names must say)."""
    if classes.devkit is not None:
        truth = classes.devkit.val_class_indices
        return {n: classes.classes[i].wnid for n, i in enumerate(truth, 1)}, \
            f"the ground truth of {classes.devkit.path}"
    csv_path = root / "LOC_val_solution.csv"
    if csv_path.is_file():
        from imnet.prep.sources.kaggle import read_val_solution

        return read_val_solution(csv_path.read_text(encoding="utf-8"), csv_path, classes), str(csv_path)
    return None, "the label list"


class TreeSource(Source):
    kind = "tree"
    summary = ("an extracted tree: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, or a flat val/ with "
               "ILSVRC2012_devkit_t12.tar.gz (or --devkit) or LOC_val_solution.csv")

    @classmethod
    def detect(cls, src: Path) -> "TreeSource | None":
        if src.is_dir() and any((src / s).is_dir() and _looks_like_split(src / s, s) for s in SPLITS):
            return cls(src)
        return None

    def splits(self) -> list[str]:
        return [s for s in SPLITS if (self.src / s).is_dir()]

    def class_list(self, devkit: Devkit | None) -> ClassList:
        return tree_classes(self.src, devkit)

    def plan(self, split: str, classes: ClassList) -> SplitPlan:
        split_dir = self.src / split
        labels, labels_from = val_labels(self.src, classes) if split == "val" else (None, "")
        entries = walk_split(split_dir)
        if labels is None and split == "val" and any(len(parts) == 1 and official_name(split, parts[0]) is not None
                                                     and official_name(split, parts[0]).wnid is None
                                                     for parts, *_ in entries):
            raise ImnetError(f"{split_dir}: flat val images need their labels: the devkit (--devkit, or "
                             f"{DEVKIT_NAME} in {self.src}) or LOC_val_solution.csv in {self.src}; for Kaggle's "
                             f"download give its top folder (with LOC_val_solution.csv) as --src")
        listing = list_split(entries, split, classes, str(split_dir), labels, labels_from)
        flat = any(len(parts) == 1 for parts, *_ in entries)
        record = {"kind": self.kind, "path": str(split_dir), "classes_from": classes.origin,
                  "labels_from": labels_from if labels is not None else "class folders" if not flat else
                  "file names (wnid suffix)"}
        stamps = [(parts, size, mtime) for parts, size, _, mtime in entries]
        return listing_plan(listing, split, self.kind, f"tree:{split_dir}", copy_files,
                            lambda run: [(i.wnid, i.name, i.where) for i in run], stamps, record)
