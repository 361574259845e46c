"""The other places ILSVRC2012 comes from, faked in their exact layouts from the official-format fake.

:func:`fake_source` writes the official-format fake of the same arguments (:func:`fake_ilsvrc`) into
a temporary folder, reads its archives back, and lays the very same image bytes out as:

* ``hf``: the Hugging Face dataset ``ILSVRC/imagenet-1k`` as ``hf download --local-dir`` leaves it:
  ``data/train_images_{0..4}.tar.gz`` (the train images spread over the five, names
  ``<name>_<wnid>.JPEG``), ``data/val_images.tar.gz`` (``ILSVRC2012_val_XXXXXXXX_<wnid>.JPEG``),
  ``data/test_images.tar.gz`` (``ILSVRC2012_test_XXXXXXXX.JPEG``), ``classes.py``, and the download
  metadata (``.cache/huggingface/download/<file>.metadata``: commit, etag, time);
* ``hf-cache``: the same in the hub cache's own layout, as ``huggingface_hub`` leaves it:
  ``datasets--ILSVRC--imagenet-1k/{blobs/<sha256 or git sha1>, refs/main, snapshots/<commit>/...}``,
  the snapshot's files relative symlinks into ``blobs/`` (``--src`` is the cache folder);
* ``kaggle``: the "imagenet-object-localization-challenge" folder: ``ILSVRC/Data/CLS-LOC/{train/<wnid>/,
  val/, test/}``, ``ILSVRC/ImageSets/CLS-LOC/*.txt``, ``ILSVRC/Annotations/CLS-LOC/...`` (boxes),
  ``LOC_synset_mapping.txt``, ``LOC_val_solution.csv`` (rows shuffled), ``LOC_train_solution.csv``,
  ``LOC_sample_submission.csv``;
* ``kaggle-zip``: that folder as the competition zip ``imagenet-object-localization-challenge.zip``;
* ``tree``: torchvision's ``ImageNet`` root: ``train/<wnid>/``, ``val/<wnid>/``, ``meta.bin``;
* ``tree-flat``: ``train/<wnid>/``, a flat ``val/`` and the devkit ``ILSVRC2012_devkit_t12.tar.gz``.

Same arguments, same bytes (fixed mtimes in every archive), so a tree prepared from any of them is
the tree prepared from the official-format fake.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from imnet.testing.fake import ARCHIVE_MTIME, FakeILSVRC, add_bytes, fake_ilsvrc

LAYOUTS = ("hf", "hf-cache", "kaggle", "kaggle-zip", "tree", "tree-flat")
HF_REPO_FOLDER = "datasets--ILSVRC--imagenet-1k"
KAGGLE_ZIP = "imagenet-object-localization-challenge.zip"
ZIP_TIME = (2019, 4, 16, 0, 0, 0)


@dataclass
class FakeSource:
    """What :func:`fake_source` wrote: ``src`` (what to give ``imnet prep --src``), the layout, and the
    facts of the official-format fake it was made from (``wnids`` sorted, ``words``, ``val_labels``,
    ``train_files``), plus ``test_images`` (names) and ``files`` (the main files written)."""

    layout: str
    out: Path
    src: Path
    wnids: list[str]
    words: dict[str, str]
    val_labels: list[int]
    train_files: list[tuple[str, str]]
    test_images: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


@dataclass
class _Images:
    train: list[tuple[str, str, bytes]]  # (wnid, official name, bytes), in the official archive's order
    val: list[tuple[int, str, bytes]]  # (number, wnid, bytes), in number order
    test: list[tuple[str, bytes]]
    words: dict[str, str]
    devkit: Path


def _read_official(fake: FakeILSVRC, test_images: int) -> _Images:
    """The images of an official-format fake, read back from its archives (bytes untouched)."""
    from imnet.prep.devkit import parse_devkit

    train = []
    with tarfile.open(fake.train_tar) as outer:
        for member in outer:
            wnid = member.name.removesuffix(".tar")
            with tarfile.open(fileobj=io.BytesIO(outer.extractfile(member).read())) as inner:
                for image in inner:
                    train.append((wnid, image.name, inner.extractfile(image).read()))
    devkit = parse_devkit(fake.devkit)
    wnid_of = [c.wnid for c in devkit.classes]
    val = []
    with tarfile.open(fake.val_tar) as tar:
        for member in tar:
            number = int(member.name[15:23])
            val.append((number, wnid_of[devkit.val_class_indices[number - 1]], tar.extractfile(member).read()))
    val.sort()
    # Test images carry no label: a few val images' bytes under test names will do.
    test = [(f"ILSVRC2012_test_{n:08d}.JPEG", val[(n - 1) % len(val)][2]) for n in range(1, test_images + 1)]
    return _Images(train, val, test, {c.wnid: c.words for c in devkit.classes}, fake.devkit)


def _tar_gz(path: Path, members: list[tuple[str, bytes]]) -> None:
    """A ``.tar.gz`` of ``members`` with fixed mtimes (same input, same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=ARCHIVE_MTIME) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name, data in members:
                add_bytes(tar, name, data)


def classes_py_text(words: dict[str, str]) -> str:
    """``classes.py`` as the dataset ships it: ``IMAGENET2012_CLASSES = OrderedDict({...})``."""
    rows = "".join(f"        {json.dumps(wnid)}: {json.dumps(words[wnid])},\n" for wnid in sorted(words))
    return f"from collections import OrderedDict\n\nIMAGENET2012_CLASSES = OrderedDict(\n    {{\n{rows}    }}\n)\n"


def _write_hf(out: Path, images: _Images, rng: np.random.Generator) -> list[Path]:
    data = out / "data"
    order = rng.permutation(len(images.train))
    files = []
    for i, part in enumerate(np.array_split(order, 5)):
        members = []
        for k in part:
            wnid, name, content = images.train[k]
            members.append((f"{name.removesuffix('.JPEG')}_{wnid}.JPEG", content))
        files.append(data / f"train_images_{i}.tar.gz")
        _tar_gz(files[-1], members)
    val = [images.val[k] for k in rng.permutation(len(images.val))]
    files.append(data / "val_images.tar.gz")
    _tar_gz(files[-1], [(f"ILSVRC2012_val_{n:08d}_{wnid}.JPEG", content) for n, wnid, content in val])
    files.append(data / "test_images.tar.gz")
    _tar_gz(files[-1], images.test)
    files.append(out / "classes.py")
    files[-1].write_text(classes_py_text(images.words), encoding="utf-8")
    # What `hf download --local-dir` keeps beside the files: per file its commit, etag (the SHA-256 of an LFS
    # file, the git blob SHA-1 of a small one) and the time, under .cache/huggingface/download/.
    contents = {path: path.read_bytes() for path in files}
    commit = _commit_of({path.relative_to(out): content for path, content in contents.items()})
    (out / ".cache" / "huggingface").mkdir(parents=True, exist_ok=True)
    (out / ".cache" / "huggingface" / ".gitignore").write_text("*\n")
    for path, content in contents.items():
        os.utime(path, ns=(ARCHIVE_MTIME * 10**9,) * 2)
        etag = hashlib.sha256(content).hexdigest() if path.suffix == ".gz" else _git_blob_sha1(content)
        meta = out / ".cache" / "huggingface" / "download" / f"{path.relative_to(out)}.metadata"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(f"{commit}\n{etag}\n{ARCHIVE_MTIME + 1}.0\n")
    return files


def _commit_of(contents: dict[Path, bytes]) -> str:
    """A stand-in commit id for the fake repository: the SHA-1 of its files' names and SHA-256s."""
    return hashlib.sha1(b"".join(str(rel).encode() + hashlib.sha256(c).digest()
                                 for rel, c in sorted(contents.items()))).hexdigest()


def _git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _write_hf_cache(out: Path, images: _Images, rng: np.random.Generator) -> list[Path]:
    """The ``hf`` files as ``huggingface_hub`` caches them: LFS files (the archives) as blobs named by
    their SHA-256, small files by their git blob SHA-1, the snapshot of a commit linking to them."""
    with tempfile.TemporaryDirectory() as staging:
        staged = _write_hf(Path(staging), images, rng)
        rels = [p.relative_to(staging) for p in staged]
        contents = {rel: (Path(staging) / rel).read_bytes() for rel in rels}
    repo = out / HF_REPO_FOLDER
    commit = _commit_of(contents)
    files = []
    for rel, content in sorted(contents.items()):
        blob = hashlib.sha256(content).hexdigest() if rel.suffix == ".gz" else _git_blob_sha1(content)
        (repo / "blobs").mkdir(parents=True, exist_ok=True)
        (repo / "blobs" / blob).write_bytes(content)
        link = repo / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo / "blobs" / blob, link.parent))
        files.append(link)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return files


def _box(content: bytes, rng: np.random.Generator) -> tuple[int, int, int, int]:
    width, height = Image.open(io.BytesIO(content)).size
    x0, y0 = int(rng.integers(0, width // 3)), int(rng.integers(0, height // 3))
    return x0, y0, int(rng.integers(width // 2, width)), int(rng.integers(height // 2, height))


def _voc_xml(folder: str, stem: str, wnid: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> str:
    return (f"<annotation><folder>{folder}</folder><filename>{stem}</filename><source><database>ILSVRC_2012"
            f"</database></source><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
            f"<segmented>0</segmented><object><name>{wnid}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>0</difficult><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax>"
            f"<ymax>{box[3]}</ymax></bndbox></object></annotation>\n")


def _kaggle_files(images: _Images, rng: np.random.Generator) -> dict[str, bytes]:
    """Every file of the Kaggle competition download, by path."""
    files: dict[str, bytes] = {}
    data, sets, notes = "ILSVRC/Data/CLS-LOC", "ILSVRC/ImageSets/CLS-LOC", "ILSVRC/Annotations/CLS-LOC"
    train_sorted = sorted(images.train)
    for wnid, name, content in train_sorted:
        files[f"{data}/train/{wnid}/{name}"] = content
    for number, _, content in images.val:
        files[f"{data}/val/ILSVRC2012_val_{number:08d}.JPEG"] = content
    for name, content in images.test:
        files[f"{data}/test/{name}"] = content
    stems = [f"{wnid}/{name.removesuffix('.JPEG')}" for wnid, name, _ in train_sorted]
    files[f"{sets}/train_cls.txt"] = "".join(f"{s} {i}\n" for i, s in enumerate(stems, 1)).encode()
    files[f"{sets}/val.txt"] = "".join(f"ILSVRC2012_val_{n:08d} {n}\n" for n, _, _ in images.val).encode()
    files[f"{sets}/test.txt"] = "".join(f"{n.removesuffix('.JPEG')} {i}\n"
                                        for i, (n, _) in enumerate(images.test, 1)).encode()
    located = [(w, n, c) for k, (w, n, c) in enumerate(train_sorted) if k % 3 == 0]  # boxes for some train images
    files[f"{sets}/train_loc.txt"] = "".join(f"{w}/{n.removesuffix('.JPEG')} {i}\n"
                                             for i, (w, n, _) in enumerate(located, 1)).encode()
    train_rows = []
    for wnid, name, content in located:
        box = _box(content, rng)
        stem = name.removesuffix(".JPEG")
        files[f"{notes}/train/{wnid}/{stem}.xml"] = _voc_xml(wnid, stem, wnid, box,
                                                             Image.open(io.BytesIO(content)).size).encode()
        train_rows.append((stem, f"{wnid} {' '.join(map(str, box))} "))
    val_rows = []
    for number, wnid, content in images.val:
        stem = f"ILSVRC2012_val_{number:08d}"
        boxes = [_box(content, rng) for _ in range(1 + number % 2)]  # one or two boxes, of its one class
        files[f"{notes}/val/{stem}.xml"] = _voc_xml("val", stem, wnid, boxes[0],
                                                    Image.open(io.BytesIO(content)).size).encode()
        val_rows.append((stem, "".join(f"{wnid} {' '.join(map(str, box))} " for box in boxes)))
    val_rows = [val_rows[k] for k in rng.permutation(len(val_rows))]
    files["LOC_synset_mapping.txt"] = "".join(f"{w} {images.words[w]}\n" for w in sorted(images.words)).encode()
    for name, rows in (("LOC_val_solution.csv", val_rows), ("LOC_train_solution.csv", train_rows),
                       ("LOC_sample_submission.csv", [(n.removesuffix(".JPEG"), "n01440764 0 0 10 10")
                                                       for n, _ in images.test])):
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["ImageId", "PredictionString"])
        writer.writerows(rows)
        files[name] = text.getvalue().encode()
    return files


def _write_files(root: Path, files: dict[str, bytes]) -> list[Path]:
    written = []
    for rel, content in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.utime(path, ns=(ARCHIVE_MTIME * 10**9,) * 2)
        written.append(path)
    return written


def _write_kaggle(out: Path, images: _Images, rng: np.random.Generator) -> list[Path]:
    return _write_files(out, _kaggle_files(images, rng))


def _write_kaggle_zip(out: Path, images: _Images, rng: np.random.Generator) -> list[Path]:
    path = out / KAGGLE_ZIP
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rel, content in sorted(_kaggle_files(images, rng).items()):
            info = zipfile.ZipInfo(rel, ZIP_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, content, compress_type=zipfile.ZIP_DEFLATED)
    return [path]


def _write_tree(out: Path, images: _Images, rng: np.random.Generator, flat_val: bool = False) -> list[Path]:
    files = {f"train/{wnid}/{name}": content for wnid, name, content in images.train}
    for number, wnid, content in images.val:
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        files[f"val/{name}" if flat_val else f"val/{wnid}/{name}"] = content
    written = _write_files(out, files)
    if flat_val:
        shutil.copy(images.devkit, out / images.devkit.name)
        written.append(out / images.devkit.name)
    else:  # torchvision's ImageNet root keeps its parse of the devkit here
        import torch

        wnid_to_classes = {w: tuple(images.words[w].split(", ")) for w in sorted(images.words)}
        torch.save((wnid_to_classes, [wnid for _, wnid, _ in images.val]), out / "meta.bin")
        written.append(out / "meta.bin")
    return written


WRITERS = {"hf": _write_hf, "hf-cache": _write_hf_cache, "kaggle": _write_kaggle, "kaggle-zip": _write_kaggle_zip,
           "tree": _write_tree, "tree-flat": lambda out, images, rng: _write_tree(out, images, rng, flat_val=True)}


def fake_source(out: Path, layout: str, test_images: int = 3, **fake_kwargs) -> FakeSource:
    """Write ``layout`` (one of :data:`LAYOUTS`) into ``out`` from the images of
    ``fake_ilsvrc(..., **fake_kwargs)``; returns a :class:`FakeSource` (``src`` is what to prepare)."""
    if layout not in WRITERS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imnet-fake-") as tmp:
        official = fake_ilsvrc(Path(tmp) / "official", **fake_kwargs)
        images = _read_official(official, test_images)
        rng = np.random.default_rng([fake_kwargs.get("seed", 0), 19])
        files = WRITERS[layout](out, images, rng)
    src = {"hf-cache": out, "kaggle-zip": out / KAGGLE_ZIP}.get(layout, out)
    return FakeSource(layout=layout, out=out, src=src, wnids=official.wnids, words=images.words,
                      val_labels=official.val_labels, train_files=official.train_files,
                      test_images=[name for name, _ in images.test], files=files)
