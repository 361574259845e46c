"""The eval sets beside ILSVRC2012 val: what each publisher ships, and how imnet names and scores it.

Data only (no prep machinery), so the tree's ownership rules, the loaders and eval all read the same
facts. Each set becomes one folder of the prepared tree, ``DST/<name>/<wnid>/<file>``, with a file list
``meta/<name>.txt`` in the format of ``meta/val.txt`` and class indices in the 1000-class space
(:mod:`imnet.prep.evalsets` prepares them).

=============================  ======================================  =========================================
set (alias)                    archive (as published)                  members
=============================  ======================================  =========================================
imagenetv2-matched-frequency   imagenetv2-matched-frequency.tar.gz     imagenetv2-matched-frequency-format-val/
(v2, v2-matched-frequency)                                             <class index 0..999>/<sha1>.jpeg
imagenetv2-threshold0.7        imagenetv2-threshold0.7.tar.gz          imagenetv2-threshold0.7-format-val/...
imagenetv2-top-images          imagenetv2-top-images.tar.gz            imagenetv2-top-images-format-val/...
imagenet-a (a)                 imagenet-a.tar (MD5 c3e55429...)        imagenet-a/<wnid>/<name>.jpg, README.txt
imagenet-r (r)                 imagenet-r.tar (MD5 a6131213...)        imagenet-r/<wnid>/<style>_<n>.jpg, README.txt
imagenet-sketch (sketch)       ImageNet-Sketch.zip                     sketch/<wnid>/sketch_<n>.JPEG
=============================  ======================================  =========================================

ImageNetV2's folder name **is the class index** (the position of the wnid among the sorted 1000), not a
wnid: a string sort of its folders (torchvision's ``ImageFolder``) puts "10" before "2" and mislabels
most of the set. imnet maps folder ``i`` to the tree's class ``i`` and writes it under that class's wnid.

ImageNet-A and -R hold 200 of the 1000 classes; their protocol (the publishers' eval code, timm's
``results-imagenet-{a,r}.csv``) ranks only those 200 classes' logits: the class subset is the sorted
class indices of the wnids the set holds (:data:`SUBSET_SETS`). The "clean" rows score ImageNet val
restricted to the same classes with the same subset.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

from imnet.errors import ImnetError
from imnet.manifests import manifest_path

# A file name inside a class folder: no path separator, control character or leading dot (hidden and
# temp names stay prep's), at most 255 bytes, an image extension. ImageNet-A names hold spaces and
# apostrophes ("0.000116_digital clock _ digital clock_0.865662.jpg").
_IMAGE_FILE = r"(?!\.)[^/\\\x00-\x1f\x7f]{1,250}\.(?:jpe?g|JPE?G|png|PNG)"


@dataclass(frozen=True)
class EvalSetSpec:
    """One eval set: its canonical ``name`` (the tree's folder and ``meta/<name>.txt``), CLI
    ``aliases``, the publisher's ``archive`` file name and ``packing`` ("tar", "tar.gz", "zip"),
    the ``roots`` its members live under, whether class folders are named by ``"index"`` or
    ``"wnid"``, the ``image`` file-name pattern, the non-image ``extras`` allowed under the root,
    whether it is scored on its class subset (``subset``) and must hold every class of the tree
    (``every_class``), a ``title`` and where it comes from (``source``)."""

    name: str
    aliases: tuple[str, ...]
    archive: str
    packing: str
    roots: tuple[str, ...]
    folders: str
    image: re.Pattern
    extras: tuple[str, ...] = ()
    subset: bool = False
    every_class: bool = False
    title: str = ""
    source: str = ""


def _v2(variant: str, aliases: tuple[str, ...], title: str) -> EvalSetSpec:
    return EvalSetSpec(
        name=f"imagenetv2-{variant}", aliases=aliases, archive=f"imagenetv2-{variant}.tar.gz", packing="tar.gz",
        # The HF archives extract to imagenetv2-<variant>-format-val; older copies of top-images did
        # to imagenetv2-topimages-format-val (modestyachts/ImageNetV2_pytorch's FNAMES).
        roots=(f"imagenetv2-{variant}-format-val",) + (("imagenetv2-topimages-format-val",)
                                                       if variant == "top-images" else ()),
        folders="index", image=re.compile(r"^[0-9a-f]{40}\.jpeg$"), every_class=True, title=title,
        source="huggingface.co/datasets/vaishaal/ImageNetV2 (github.com/modestyachts/ImageNetV2)")


EVAL_SETS: dict[str, EvalSetSpec] = {spec.name: spec for spec in (
    _v2("matched-frequency", ("v2", "v2-matched-frequency"), "ImageNetV2 MatchedFrequency"),
    _v2("threshold0.7", ("v2-threshold0.7",), "ImageNetV2 Threshold0.7"),
    _v2("top-images", ("v2-top-images",), "ImageNetV2 TopImages"),
    EvalSetSpec(
        name="imagenet-a", aliases=("a",), archive="imagenet-a.tar", packing="tar", roots=("imagenet-a",),
        folders="wnid", image=re.compile(rf"^{_IMAGE_FILE}$"), extras=("README.txt",), subset=True,
        title="ImageNet-A", source="people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar "
                                   "(github.com/hendrycks/natural-adv-examples)"),
    EvalSetSpec(
        name="imagenet-r", aliases=("r",), archive="imagenet-r.tar", packing="tar", roots=("imagenet-r",),
        folders="wnid", image=re.compile(rf"^{_IMAGE_FILE}$"), extras=("README.txt",), subset=True,
        title="ImageNet-R",
        source="people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar (github.com/hendrycks/imagenet-r)"),
    EvalSetSpec(
        name="imagenet-sketch", aliases=("sketch",), archive="ImageNet-Sketch.zip", packing="zip", roots=("sketch",),
        folders="wnid", image=re.compile(rf"^{_IMAGE_FILE}$"), every_class=True, title="ImageNet-Sketch",
        source="the Google Drive file of github.com/HaohanWang/ImageNet-Sketch"),
)}
EVAL_SET_NAMES: tuple[str, ...] = tuple(EVAL_SETS)
SUBSET_SETS: tuple[str, ...] = tuple(name for name, spec in EVAL_SETS.items() if spec.subset)
# Result rows derived from val with a subset set's classes ("clean" rows, as timm's -clean CSVs).
CLEAN_SUFFIX = "-clean"
_ALIASES = {alias: spec.name for spec in EVAL_SETS.values() for alias in (spec.name, *spec.aliases)}


def resolve_set_name(name: str, allowed: tuple[str, ...] = ("train", "val")) -> str:
    """The canonical name of a split or eval set given by name or alias (``a`` -> ``imagenet-a``);
    ``allowed`` are the other names accepted as they are. :class:`ImnetError` listing the choices."""
    name = name.strip()
    if name in allowed:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    choices = ", ".join([*allowed, *(f"{s.name} ({'/'.join(s.aliases)})" for s in EVAL_SETS.values())])
    raise ImnetError(f"unknown split or eval set {name!r}; choose from {choices}")


def resolve_set_names(value: str | list[str] | tuple[str, ...], allowed: tuple[str, ...] = ("train", "val")
                      ) -> list[str]:
    """Comma-separated names (or a list of them) -> canonical names, in order, without repeats."""
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in str(v).split(",")]
    names: list[str] = []
    for part in parts:
        if part.strip():
            name = resolve_set_name(part, allowed)
            if name not in names:
                names.append(name)
    return names


@lru_cache(maxsize=1)
def _facts() -> dict:
    return json.loads(manifest_path("evalsets.json").read_text(encoding="utf-8"))["sets"]


def published_facts(name: str) -> dict:
    """The shipped facts of one set (``manifests/evalsets.json``): archive, md5 (None when its
    publisher gives none), images, classes, and for ImageNet-A/-R their 200 ``wnids``."""
    return dict(_facts()[name])


def published_md5s() -> dict[str, str]:
    """Archive file name -> published MD5, for the sets whose publisher gives one (``manifests/evalsets.md5``)."""
    from imnet.prep.checksum import read_checksums

    return read_checksums(manifest_path("evalsets.md5"))
