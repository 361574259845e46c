"""Where ``imnet prep`` reads ILSVRC2012 from: the official archives, or another source.

* ``official``: ``ILSVRC2012_img_train.tar``, ``ILSVRC2012_img_val.tar``, ``ILSVRC2012_devkit_t12.tar.gz``
  (:mod:`imnet.prep.pipeline`);
* ``hf``: the Hugging Face dataset ``ILSVRC/imagenet-1k`` (:mod:`.hf`);
* ``kaggle``: Kaggle's imagenet-object-localization-challenge, folder or zip (:mod:`.kaggle`);
* ``tree``: an extracted tree (:mod:`.tree`).

Every source gives the same prepared tree (files, bytes, manifests) as the official archives holding
the same images; ``prep.json`` records the source and what was changed. :func:`register_source` is
the registration point: a module adding a source registers its :class:`~.base.Source` subclass;
:func:`detect_source` asks them in order (the official archives first).
"""
from __future__ import annotations

import os
from pathlib import Path

from imnet.errors import ImnetError
from imnet.prep.pipeline import ARCHIVES
from imnet.prep.pipeline import prepare as prepare_archives
from imnet.prep.sources.base import Source
from imnet.prep.sources.hf import HFSource
from imnet.prep.sources.kaggle import KaggleSource
from imnet.prep.sources.run import prepare_source
from imnet.prep.sources.tree import TreeSource

SOURCES: dict[str, type[Source]] = {}
OFFICIAL = "official"
OFFICIAL_SUMMARY = "the official archives: ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar, ILSVRC2012_devkit_t12.tar.gz"


def register_source(cls: type[Source]) -> type[Source]:
    """Make a :class:`Source` subclass known to ``imnet prep --source`` and to auto-detection."""
    SOURCES[cls.kind] = cls
    return cls


for _cls in (HFSource, KaggleSource, TreeSource):
    register_source(_cls)


def source_kinds() -> list[str]:
    """The values of ``imnet prep --source``."""
    return ["auto", OFFICIAL, *SOURCES]


def _has_official_archives(src: Path) -> bool:
    """An image archive of the official three in ``src`` (the devkit alone may sit beside a flat val tree)."""
    return src.is_dir() and any(os.path.lexists(src / ARCHIVES[split]) for split in ("train", "val"))


def detect_source(src: Path, kind: str = "auto") -> Source | None:
    """The source at ``src``: None for the official archives, else a :class:`Source`. With ``kind``
    ``"auto"``, the official archives win, then the registered sources in order; a folder none of them
    recognizes is read as the official archives' folder (whose errors say what is missing)."""
    src = Path(src)
    if not src.exists():
        raise ImnetError(f"--src {src} does not exist")
    if kind == OFFICIAL:
        return None
    if kind != "auto":
        if kind not in SOURCES:
            raise ImnetError(f"--source must be one of {', '.join(source_kinds())}, not {kind!r}")
        found = SOURCES[kind].detect(src)
        if found is None:
            raise ImnetError(f"--src {src} is not {SOURCES[kind].summary}")
        return found
    if _has_official_archives(src):
        return None
    for cls in SOURCES.values():
        found = cls.detect(src)
        if found is not None:
            return found
    if src.is_file():
        raise ImnetError(f"--src {src} is a file; expected a folder holding one of: {OFFICIAL_SUMMARY}; "
                         + "; ".join(cls.summary for cls in SOURCES.values()))
    return None


def prepare(src: Path, dst: Path, checksums: Path | None = None, only: str | None = None, workers: int | None = None,
            reverify: bool = False, progress: bool = True, redo: bool = False, source: str = "auto",
            devkit: Path | None = None) -> dict:
    """Prepare ILSVRC2012 from ``src`` into the tree ``dst``: the official archives
    (:func:`imnet.prep.pipeline.prepare`, where ``checksums`` applies), or another source (``source``:
    ``auto`` detects it; ``devkit``: the official devkit, which gives those sources the ILSVRC2012_IDs,
    ``num_train_images`` and the val ground truth to check against). Same guarantees and summary."""
    found = detect_source(Path(src), source)
    if found is None:
        if devkit is not None:
            raise ImnetError("--devkit is for the other sources; with the official archives the devkit is "
                             "ILSVRC2012_devkit_t12.tar.gz in --src")
        return prepare_archives(src, dst, checksums=checksums, only=only, workers=workers, reverify=reverify,
                                progress=progress, redo=redo)
    if checksums is not None:
        raise ImnetError(f"--checksums lists the MD5s of the official archives; --src {src} is {found.summary} "
                         f"(its own checks: see `imnet prep --help`)")
    return prepare_source(found, dst, only=only, workers=workers, reverify=reverify, progress=progress, redo=redo,
                          devkit=devkit)
