"""Eval sets in ``imnet eval``: which sets a run scores, their class subsets, and the protocol.

A run evaluates every model on every set of ``--sets`` (``val`` and the eval sets ``imnet prep``
wrote beside it: :mod:`imnet.prep.sets`), each set a pass of its own into the same predictions store.
The stored scores are always the model's full 1000-way outputs; the protocol is applied when the
results are computed, so it can be changed from the store alone:

* ``subset`` (default): ImageNet-A and -R rank only the classes they hold (200 for the real sets): the
  argmax over those logits, as their publishers' eval code and timm's results do. The subset is the
  sorted class indices present in the set's file list (the positions of its wnids among the sorted
  1000: ImageNet-A's begins 6, 11, 13, 15, 17; ImageNet-R's 1, 2, 4, 6, 8). The "clean" rows
  (``imagenet-a-clean``, ``imagenet-r-clean``) score ImageNet val restricted to those classes with
  the same subset, as timm's ``results-imagenet-{a,r}-clean.csv``.
* ``all``: the argmax over every class (what a plain ImageFolder eval does), for comparison; timm's
  published A/R figures are not shown beside such rows.
"""
from __future__ import annotations

from pathlib import Path

import torch

from imnet.data import read_split
from imnet.data.filelist import CLEAN_SUFFIX, EVAL_SET_NAMES, EVAL_SETS, SUBSET_SETS, resolve_set_names
from imnet.errors import ImnetError

PROTOCOLS = ("subset", "all")
# Column order of the wide table: val first, then the sets as timm's results folder lists them.
SET_ORDER = ("val", "imagenetv2-matched-frequency", "imagenetv2-threshold0.7", "imagenetv2-top-images",
             "imagenet-sketch", "imagenet-a", "imagenet-a-clean", "imagenet-r", "imagenet-r-clean")


def resolve_sets(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """``--sets``: comma-separated split or set names and aliases -> canonical names, in order."""
    names = resolve_set_names(value, allowed=("train", "val"))
    if not names:
        raise ImnetError("--sets names no split or eval set")
    return names


def class_subset(data: Path, name: str) -> list[int] | None:
    """The sorted class indices an ImageNet-A/-R set of the tree holds (from its whole file list,
    before any ``--limit``), or None for a set scored on every class."""
    if name not in SUBSET_SETS:
        return None
    return sorted(set(read_split(Path(data), name).labels))


def set_label(name: str) -> str:
    """A set's title for tables (``ImageNet-A``, ``ImageNet-A clean``, ``ImageNet val``)."""
    if name == "val":
        return "ImageNet val"
    if name.endswith(CLEAN_SUFFIX) and name[:-len(CLEAN_SUFFIX)] in EVAL_SETS:
        return f"{EVAL_SETS[name[:-len(CLEAN_SUFFIX)]].title} clean"
    return EVAL_SETS[name].title if name in EVAL_SETS else name


def restrict(scores: torch.Tensor, labels: torch.Tensor, subset: list[int]
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores and labels on a class subset: the subset's columns of ``scores`` (N, C) for the rows
    whose label is in it, and those labels as positions in ``subset``. Returns (scores (M, S),
    labels (M,), row mask (N,) bool)."""
    columns = torch.as_tensor(subset, dtype=torch.int64)
    position = torch.full((int(scores.shape[1]),), -1, dtype=torch.int64)
    position[columns] = torch.arange(len(subset), dtype=torch.int64)
    mapped = position[labels.to(torch.int64)]
    keep = mapped >= 0
    return scores[keep][:, columns], mapped[keep], keep


def protocol_label(classes: int, subset: list[int] | None, protocol: str) -> str:
    """What a row's argmax ranked: ``argmax over 200 of 1000 classes`` or ``argmax over 1000 classes``."""
    if subset is not None and protocol == "subset":
        return f"argmax over {len(subset)} of {classes} classes"
    return f"argmax over {classes} classes"


__all__ = ["PROTOCOLS", "SET_ORDER", "EVAL_SET_NAMES", "SUBSET_SETS", "CLEAN_SUFFIX", "resolve_sets",
           "class_subset", "set_label", "restrict", "protocol_label"]
