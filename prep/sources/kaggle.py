"""Kaggle's "imagenet-object-localization-challenge": the folder, or the competition zip as downloaded.

Layout (both)::

    ILSVRC/Data/CLS-LOC/train/<wnid>/<wnid>_<n>.JPEG     the 1,281,167 train images
    ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_XXXXXXXX.JPEG  the 50,000 val images, flat
    ILSVRC/Data/CLS-LOC/test/...                          no labels: skipped
    ILSVRC/ImageSets/CLS-LOC/train_cls.txt                "<wnid>/<name> <n>" per train image: checked
    ILSVRC/Annotations/...                                boxes: ignored
    LOC_synset_mapping.txt                                "<wnid> <words>": the class list
    LOC_val_solution.csv                                  ImageId,PredictionString ("<wnid> x0 y0 x1 y1" per box)
    LOC_train_solution.csv, LOC_sample_submission.csv     ignored

A val image's label is the wnid of its boxes (every fifth token of its PredictionString; all of an
image's boxes name its one class). The zip is read member by member from its central directory,
never unpacked; each member's CRC-32 is checked.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

from imnet.errors import ImnetError
from imnet.prep.devkit import Devkit
from imnet.prep.sources.base import ClassList, Source, SplitPlan, make_class_list
from imnet.prep.sources.classlist import read_synset_mapping
from imnet.prep.sources.listing import list_split, listing_plan, walk_split
from imnet.prep.sources.work import copy_files, copy_zip_members

DATA = "ILSVRC/Data/CLS-LOC"
MAPPING = "LOC_synset_mapping.txt"
VAL_SOLUTION = "LOC_val_solution.csv"
TRAIN_CLS = "ILSVRC/ImageSets/CLS-LOC/train_cls.txt"
ZIP_NAME = "imagenet-object-localization-challenge.zip"
IGNORED = ("ILSVRC/Annotations", f"{DATA}/test", "ILSVRC/ImageSets (train_cls.txt is checked)",
           "LOC_train_solution.csv", "LOC_sample_submission.csv")
VAL_ID = re.compile(r"^ILSVRC2012_val_(\d{8})$")


def read_val_solution(text: str, path, classes: ClassList) -> dict[int, str]:
    """``{val number: wnid}`` from ``LOC_val_solution.csv`` text; errors name the file and line (a
    row whose boxes name two classes, an unknown wnid, a val image listed twice)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
        raise ImnetError(f"{path}: expected the header 'ImageId,PredictionString', got {header!r}")
    labels: dict[int, str] = {}
    for number, row in enumerate(reader, 2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise ImnetError(f"{path}:{number}: expected 'ImageId,PredictionString', got {','.join(row)!r}")
        match = VAL_ID.match(row[0].strip())
        tokens = row[1].split()
        if match is None:
            raise ImnetError(f"{path}:{number}: {row[0]!r} is not a val image id (ILSVRC2012_val_XXXXXXXX)")
        if not tokens or len(tokens) % 5:
            raise ImnetError(f"{path}:{number}: PredictionString is not '<wnid> x0 y0 x1 y1' per box: {row[1]!r}")
        wnids = set(tokens[0::5])
        if len(wnids) != 1:
            raise ImnetError(f"{path}:{number}: the boxes of {row[0]} name {len(wnids)} classes "
                             f"({', '.join(sorted(wnids))}); one label per image is needed")
        wnid = wnids.pop()
        classes.require(wnid, f"{path}:{number}")
        val_number = int(match.group(1))
        if val_number in labels:
            raise ImnetError(f"{path}:{number}: {row[0]} is listed twice")
        labels[val_number] = wnid
    if not labels:
        raise ImnetError(f"{path}: lists no val images")
    return labels


def read_train_cls(text: str) -> set[str]:
    """The train images ``train_cls.txt`` lists, as ``<wnid>/<name>.JPEG``."""
    return {line.split()[0] + ".JPEG" for line in text.splitlines() if line.strip()}


def check_train_cls(expected: set[str], listed: set[str], path: str, data: str) -> None:
    """Refuse a train folder that is not exactly what ``train_cls.txt`` lists (an incomplete unzip)."""
    missing, extra = sorted(expected - listed), sorted(listed - expected)
    if missing:
        raise ImnetError(f"{path} lists {missing[0]} ({len(missing)} images in all) but {data} has no such file; "
                         f"the download or unzip is incomplete")
    if extra:
        raise ImnetError(f"{data}/{extra[0]} is not listed in {path} ({len(extra)} such files); not a train image "
                         f"of the competition")


class KaggleSource(Source):
    kind = "kaggle"
    summary = (f"Kaggle's imagenet-object-localization-challenge: a folder with {DATA}/, {MAPPING} and "
               f"{VAL_SOLUTION}, or {ZIP_NAME}")

    def __init__(self, src: Path, zip_path: Path | None = None):
        super().__init__(src)
        self.zip_path = zip_path
        self._members: dict[str, tuple] | None = None
        self._prefix = ""

    @classmethod
    def detect(cls, src: Path) -> "KaggleSource | None":
        if src.is_file() and src.suffix.lower() == ".zip":
            return cls(src, src)
        if not src.is_dir():
            return None
        if (src / MAPPING).is_file() or (src / DATA).is_dir():
            return cls(src)
        if (src / ZIP_NAME).is_file():
            return cls(src, src / ZIP_NAME)
        return None

    @property
    def location(self) -> Path:
        return self.zip_path or self.src

    # --- files, from the folder or the zip ---------------------------------------------------------------

    def _zip_members(self) -> dict[str, tuple]:
        """Member name (below the zip's top folder, if any) -> (name, offset, compressed, size, CRC, method)."""
        if self._members is None:
            try:
                with zipfile.ZipFile(self.zip_path) as archive:
                    infos = archive.infolist()
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                raise ImnetError(f"{self.zip_path}: not a readable zip ({err}); the download is truncated or "
                                 f"corrupt, download it again") from err
            mapping = next((i.filename for i in infos if i.filename.rsplit("/", 1)[-1] == MAPPING), None)
            if mapping is None:
                raise ImnetError(f"{self.zip_path}: no {MAPPING} in the zip; not the Kaggle competition zip")
            self._prefix = mapping[: -len(MAPPING)]
            self._members = {i.filename[len(self._prefix):]: (i.filename, i.header_offset, i.compress_size,
                                                              i.file_size, i.CRC, i.compress_type)
                             for i in infos if i.filename.startswith(self._prefix) and not i.is_dir()}
        return self._members

    def _where(self, rel: str) -> str:
        return f"{self.zip_path}:{self._prefix}{rel}" if self.zip_path else str(self.src / rel)

    def _text(self, rel: str, required: bool) -> str | None:
        if self.zip_path is None:
            path = self.src / rel
            if not path.is_file():
                if required:
                    raise ImnetError(f"{path} is missing; the Kaggle download holds it next to ILSVRC/")
                return None
            return path.read_text(encoding="utf-8")
        member = self._zip_members().get(rel)
        if member is None:
            if required:
                raise ImnetError(f"{self._where(rel)} is missing from the zip; not the complete competition zip")
            return None
        from imnet.prep.sources.work import read_zip_member

        with open(self.zip_path, "rb") as handle:
            return read_zip_member(handle, str(self.zip_path), member).decode("utf-8")

    def _entries(self, split: str):
        base = f"{DATA}/{split}/"
        if self.zip_path is None:
            return walk_split(self.src / base)
        return [(tuple(rel[len(base):].split("/")), member[3], member, member[4])
                for rel, member in sorted(self._zip_members().items()) if rel.startswith(base)]

    # --- the source ----------------------------------------------------------------------------------------

    def splits(self) -> list[str]:
        if self.zip_path is None:
            return [s for s in ("train", "val") if (self.src / DATA / s).is_dir()]
        members = self._zip_members()
        return [s for s in ("train", "val") if any(rel.startswith(f"{DATA}/{s}/") for rel in members)]

    def class_list(self, devkit: Devkit | None) -> ClassList:
        where = self._where(MAPPING)
        return make_class_list(read_synset_mapping(self._text(MAPPING, True), where), where, devkit)

    def plan(self, split: str, classes: ClassList) -> SplitPlan:
        base = self._where(f"{DATA}/{split}")
        labels, labels_from = None, ""
        if split == "val":
            labels_from = self._where(VAL_SOLUTION)
            labels = read_val_solution(self._text(VAL_SOLUTION, True), labels_from, classes)
            if classes.devkit is not None:
                truth = {n: classes.classes[i].wnid for n, i in enumerate(classes.devkit.val_class_indices, 1)}
                wrong = next((n for n, w in sorted(labels.items()) if truth.get(n) != w), None)
                if wrong is not None:
                    raise ImnetError(f"{labels_from}: ILSVRC2012_val_{wrong:08d} is labelled {labels[wrong]}, the "
                                     f"ground truth of {classes.devkit.path} says {truth.get(wrong)}")
        entries = self._entries(split)
        listing = list_split(entries, split, classes, base, labels, labels_from)
        record = {"kind": self.kind, "path": base, "classes_from": classes.origin,
                  "labels_from": labels_from or "class folders", "ignored_parts": list(IGNORED)}
        if split == "train":
            train_cls = self._text(TRAIN_CLS, False)
            if train_cls is not None:
                check_train_cls(read_train_cls(train_cls), {i.rel for i in listing.images}, self._where(TRAIN_CLS),
                                base)
                record["checked_against"] = self._where(TRAIN_CLS)
        stamps = [(parts, size, stamp) for parts, size, _, stamp in entries]
        if self.zip_path is None:
            return listing_plan(listing, split, self.kind, f"kaggle:{base}", copy_files,
                                lambda run: [(i.wnid, i.name, i.where) for i in run], stamps, record)
        zip_path = str(self.zip_path)
        stamps = [self.zip_path.stat().st_size, stamps]
        return listing_plan(listing, split, self.kind, f"kaggle:{base}", copy_zip_members,
                            lambda run: (zip_path, [(i.wnid, i.name, i.where) for i in run]), stamps, record)

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.location), "zip": self.zip_path is not None}
