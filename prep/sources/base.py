"""What every other source of ILSVRC2012 shares: official names, the class list, units of work, plans.

A source (``imnet.prep.sources.hf``, ``kaggle``, ``tree``) turns what the user has into the same
prepared tree as the official archives: it finds its files (:meth:`Source.detect`), gives the class
list (:meth:`Source.class_list`), and for each split a :class:`SplitPlan` whose :meth:`SplitPlan.units`
yields the :class:`Unit` s prep's writer processes run, with the checks that can be made before
anything is written already made. :mod:`imnet.prep.sources.run` composes them with prep's journal,
lock, ownership and record machinery.

File names are normalized to the official ones (``n01440764_10026.JPEG``,
``ILSVRC2012_val_00000001.JPEG``) where a source renames them: Hugging Face appends the wnid
(``n01440764_10026_n01440764.JPEG``, ``ILSVRC2012_val_00000001_n01751748.JPEG``). ReaL labels and
every tool keyed by ``ILSVRC2012_val_%08d`` then line up.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from imnet.errors import ImnetError
from imnet.manifests import manifest_path
from imnet.prep.devkit import Devkit
from imnet.prep.manifests import ClassInfo, official_archives

# Official figures (manifests/ILSVRC2012.json and the devkit): checked for a source with the 1000 classes.
VAL_PER_CLASS = 50
CHUNK_FILES = 256  # images per unit where a source has no class-sized units (streams, flat val)
CHUNK_BYTES = 32 << 20
WNID = re.compile(r"^n\d{8}$")
# Train: <wnid>_<n>.JPEG, optionally with Hugging Face's _<wnid> suffix; val likewise.
TRAIN_NAME = re.compile(r"^(?P<stem>(?P<wnid>n\d{8})_\d+)(?:_(?P<suffix>n\d{8}))?\.JPEG$")
VAL_NAME = re.compile(r"^(?P<stem>ILSVRC2012_val_(?P<number>\d{8}))(?:_(?P<suffix>n\d{8}))?\.JPEG$")
TEST_NAME = re.compile(r"^ILSVRC2012_test_\d{8}\.JPEG$")
NAME_PATTERNS = {"train": TRAIN_NAME, "val": VAL_NAME}
EXPECTED_NAMES = {"train": "n01440764_10026.JPEG (or n01440764_10026_n01440764.JPEG)",
                  "val": "ILSVRC2012_val_00000001.JPEG (or ILSVRC2012_val_00000001_n01751748.JPEG)"}


def official_counts() -> dict[str, int]:
    """Images per split of the official ILSVRC2012 (manifests/ILSVRC2012.json): 1,281,167 and 50,000."""
    return {info["split"]: int(info["images"]) for info in official_archives().values() if "images" in info}


def official_wnids() -> list[str]:
    """The 1000 ILSVRC2012 wnids, sorted (``manifests/ILSVRC2012_wnids.txt``)."""
    lines = manifest_path("ILSVRC2012_wnids.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


@dataclass(frozen=True)
class Name:
    """A source's file name read as an official one: ``name`` (official), ``wnid`` (from the name:
    a train name's prefix or Hugging Face's suffix; None when the name does not say), ``number``
    (val number) and whether the source renamed it."""

    name: str
    wnid: str | None
    number: int | None
    renamed: bool


def official_name(split: str, name: str) -> Name | None:
    """``name`` as an official file name of ``split``, or None when it is not one (in either form).
    A Hugging Face train name whose suffix names another class than its prefix is refused by the
    caller (:func:`label_of`)."""
    match = NAME_PATTERNS[split].match(name)
    if match is None:
        return None
    suffix = match.group("suffix")
    if split == "train":
        wnid = match.group("wnid")
        if suffix is not None and suffix != wnid:
            return Name(f"{match.group('stem')}.JPEG", None, None, True)  # contradictory: no label
        return Name(f"{match.group('stem')}.JPEG", wnid, None, suffix is not None)
    return Name(f"{match.group('stem')}.JPEG", suffix, int(match.group("number")), suffix is not None)


def label_of(where: str, split: str, name: Name, folder: str | None, listed: str | None, listed_from: str) -> str:
    """The wnid of one image from what says it: its class ``folder``, its file ``name`` and a label
    list (``listed``, from ``listed_from``: a CSV, the devkit). They must agree; none saying it, or two
    disagreeing, raises :class:`ImnetError` naming ``where``."""
    said = {}
    if folder is not None:
        said["its class folder"] = folder
    if name.wnid is not None:
        said["its file name"] = name.wnid
    elif name.renamed and split == "train":
        raise ImnetError(f"{where}: the file name names two different classes")
    if listed is not None:
        said[listed_from] = listed
    if not said:
        raise ImnetError(f"{where}: no label for this image: it is not in a class folder, its name carries no "
                         f"wnid, and {listed_from} does not list it")
    wnids = set(said.values())
    if len(wnids) > 1:
        raise ImnetError(f"{where}: the labels disagree: " + ", ".join(f"{k} says {v}" for k, v in said.items()))
    return wnids.pop()


@dataclass
class ClassList:
    """The classes of a source, in index order (index = sorted-wnid position), where they came from,
    whether they are the 1000 official ones, and the devkit when one gave them (ILSVRC2012_IDs,
    ``num_train_images``, the val ground truth)."""

    classes: list[ClassInfo]
    origin: str
    official: bool
    devkit: Devkit | None = None

    @property
    def wnids(self) -> list[str]:
        return [c.wnid for c in self.classes]

    @property
    def index(self) -> dict[str, int]:
        return {c.wnid: c.class_index for c in self.classes}

    def require(self, wnid: str, where: str) -> None:
        """Raise :class:`ImnetError` naming ``where`` when ``wnid`` is not one of the classes."""
        if wnid not in self._set:
            raise ImnetError(f"{where}: class {wnid} is not one of the {len(self.classes)} classes of {self.origin}")

    def __post_init__(self) -> None:
        self._set = set(self.wnids)


def check_official_set(wnids: list[str], origin: str) -> bool:
    """Whether ``wnids`` are the 1000 official ILSVRC2012 classes. A list of 1000 (or more) that is not
    exactly that set is an error naming what differs; a shorter list is a subset (a test fixture, a
    sample): allowed, and then counts are not checked against the official ones."""
    if len(set(wnids)) != len(wnids):
        duplicate = next(w for w in wnids if wnids.count(w) > 1)
        raise ImnetError(f"{origin}: lists class {duplicate} twice")
    bad = [w for w in wnids if not WNID.match(w)]
    if bad:
        raise ImnetError(f"{origin}: {bad[0]!r} is not a wnid (nXXXXXXXX)")
    if len(wnids) < 1000:
        return False
    official = set(official_wnids())
    extra, missing = sorted(set(wnids) - official), sorted(official - set(wnids))
    if extra or missing:
        raise ImnetError(f"{origin}: {len(wnids)} classes, not the 1000 of ILSVRC2012 "
                         f"({len(extra)} not in ILSVRC2012, e.g. {', '.join(extra[:3]) or '-'}; {len(missing)} "
                         f"missing, e.g. {', '.join(missing[:3]) or '-'})")
    return True


def make_class_list(words: dict[str, str], origin: str, devkit: Devkit | None = None) -> ClassList:
    """A :class:`ClassList` from ``{wnid: words}`` (sorted by wnid). With a ``devkit`` (``--devkit``),
    its classes must be the same set; it gives each class its ILSVRC2012_ID and words (otherwise the
    ID is 0: Hugging Face and Kaggle do not carry it)."""
    wnids = sorted(words)
    official = check_official_set(wnids, origin)
    if devkit is not None:
        kit = {c.wnid: c for c in devkit.classes}
        if set(kit) != set(wnids):
            extra, missing = sorted(set(wnids) - set(kit)), sorted(set(kit) - set(wnids))
            raise ImnetError(f"{devkit.path}: the devkit's {len(kit)} classes are not the {len(wnids)} of {origin} "
                             f"(only in {origin}: {', '.join(extra[:3]) or '-'}; only in the devkit: "
                             f"{', '.join(missing[:3]) or '-'}); the devkit belongs to another data set")
        classes = [ClassInfo(i, w, kit[w].ilsvrc_id, kit[w].words) for i, w in enumerate(wnids)]
        origin = f"{origin} and {devkit.path.name}"
    else:
        classes = [ClassInfo(i, w, 0, words[w]) for i, w in enumerate(wnids)]
    return ClassList(classes, origin, official, devkit)


@dataclass
class Unit:
    """One unit of work for prep's writer processes: ``fn(data, split_dir, name, split)`` writes its
    images and returns a :class:`~imnet.prep.extract.UnitResult`; ``nbytes`` is what it reads."""

    name: str
    nbytes: int
    fn: Callable
    data: object


@dataclass
class SplitPlan:
    """How one split is read from a source. ``units()`` yields the units (a stream source checks each
    member as it comes and raises :class:`ImnetError` on a bad one); ``finish()`` runs once every unit
    is written (end-of-stream checks: gzip CRCs, blob SHA-256s). ``record`` is what ``prep.json``
    says of the source for this split (kind, files, renamed names, where labels came from, what was
    ignored); ``fingerprint`` identifies the input (a journal resumes only on the same one)."""

    split: str
    kind: str
    description: str  # e.g. "hf:/path/to/snapshot" (the record's "archive" field)
    total_bytes: int
    images: int | None  # known up front (listings), else None
    fingerprint: str
    units: Callable[[Callable[[int], None]], Iterator[Unit]]
    finish: Callable[[], None] = lambda: None
    record: dict = field(default_factory=dict)
    sample_size: float | None = None  # mean image size seen, for the space check of streams
    # --reverify: re-read the input, ``rehash(advance, recorded source record) -> problems``
    rehash: Callable[[Callable[[int], None], dict], list[str]] | None = None

    @property
    def identity(self) -> dict:
        """The journal's identity line (``archive`` and ``md5`` are the keys prep's journals carry)."""
        return {"archive": self.description, "bytes": self.total_bytes, "md5": self.fingerprint, "source": self.kind}


def fingerprint(parts) -> str:
    """SHA-256 of a JSON-able description of a source's input (relative names, sizes, mtimes, digests)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def chunks(items: list, sizes: list[int], files: int = CHUNK_FILES, limit: int = CHUNK_BYTES):
    """Split ``items`` (with byte ``sizes``) into runs of at most ``files`` items or about ``limit`` bytes."""
    run, run_bytes = [], 0
    for item, size in zip(items, sizes):
        run.append(item)
        run_bytes += size
        if len(run) >= files or run_bytes >= limit:
            yield run, run_bytes
            run, run_bytes = [], 0
    if run:
        yield run, run_bytes


class Source:
    """A source of ILSVRC2012 images other than the three official archives. Subclasses set ``kind``
    and ``summary`` (for errors and ``--help``) and implement :meth:`detect`, :meth:`class_list` and
    :meth:`plan`; :func:`imnet.prep.sources.register_source` makes one known to ``imnet prep``."""

    kind = ""
    summary = ""

    def __init__(self, src: Path):
        self.src = Path(src)

    @classmethod
    def detect(cls, src: Path) -> "Source | None":
        """The source at ``src`` when it is of this kind, else None (errors only for a source that is
        clearly of this kind but unusable, e.g. a hub cache holding only parquet files)."""
        raise NotImplementedError

    @property
    def location(self) -> Path:
        """What must never be written into, and never hold ``--dst`` (``--src`` itself, or the zip)."""
        return self.src

    def splits(self) -> list[str]:
        """The labelled splits this source holds (``train``, ``val``)."""
        raise NotImplementedError

    def class_list(self, devkit: Devkit | None) -> ClassList:
        raise NotImplementedError

    def plan(self, split: str, classes: ClassList) -> SplitPlan:
        raise NotImplementedError

    def describe(self) -> dict:
        """The top-level ``source`` entry of ``prep.json``."""
        return {"kind": self.kind, "path": str(self.src)}
