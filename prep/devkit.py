"""The devkit (``ILSVRC2012_devkit_t12.tar.gz``): class list and validation ground truth.

``data/meta.mat`` holds the struct array ``synsets``; its leaf rows (``num_children == 0``) are the
classes, keyed by ``ILSVRC2012_ID``. ``data/ILSVRC2012_validation_ground_truth.txt`` holds one
ILSVRC2012_ID per val image, in val-number order. imnet's class index is the position of the wnid
in sorted order (as in torchvision and timm); ILSVRC2012_ID is only a key into meta.mat.
"""
from __future__ import annotations

import io
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from imnet.errors import ImnetError
from imnet.prep.checksum import HashingReader
from imnet.prep.manifests import ClassInfo

DEVKIT_ROOT = "ILSVRC2012_devkit_t12"
META_MAT = f"{DEVKIT_ROOT}/data/meta.mat"
GROUND_TRUTH = f"{DEVKIT_ROOT}/data/ILSVRC2012_validation_ground_truth.txt"
REQUIRED_FIELDS = ("ILSVRC2012_ID", "WNID", "words", "num_children")


@dataclass
class Devkit:
    """Parsed devkit: ``classes`` in class-index order, ``val_class_indices`` (class index of val
    image 1..N) and the archive's ``md5``."""

    path: Path
    classes: list[ClassInfo]
    val_class_indices: list[int]
    md5: str
    train_images: dict[str, int] | None = None  # meta.mat's num_train_images per leaf wnid, when given

    @property
    def wnids(self) -> list[str]:
        return [c.wnid for c in self.classes]


def read_devkit_members(path: Path) -> tuple[bytes, bytes, str]:
    """Read the devkit ``.tar.gz`` in one pass; return (meta.mat bytes, ground-truth bytes, md5)."""
    wanted: dict[str, bytes] = {}
    try:
        with HashingReader(path) as reader:
            with tarfile.open(fileobj=reader, mode="r|gz") as tar:
                for member in tar:
                    if member.name in (META_MAT, GROUND_TRUTH) and member.isreg():
                        wanted[member.name] = tar.extractfile(member).read()
            reader.drain()
            md5 = reader.hexdigest()
    except FileNotFoundError as err:
        raise ImnetError(f"missing devkit archive {path}; download ILSVRC2012_devkit_t12.tar.gz") from err
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise ImnetError(f"{path}: corrupt devkit archive ({err}); download it again") from err
    for name in (META_MAT, GROUND_TRUTH):
        if name not in wanted:
            raise ImnetError(f"{path}: devkit archive has no {name}")
    return wanted[META_MAT], wanted[GROUND_TRUTH], md5


def parse_meta_mat(data: bytes, source: str) -> list[ClassInfo]:
    """Parse ``meta.mat`` bytes into the leaf classes, sorted by wnid (index = position).
    ``source`` names the file in errors."""
    return _parse_meta_mat(data, source)[0]


def _parse_meta_mat(data: bytes, source: str) -> tuple[list[ClassInfo], dict[str, int] | None]:
    """(leaf classes sorted by wnid, num_train_images per leaf wnid or None when the field is absent)."""
    import numpy as np
    import scipy.io

    try:
        mat = scipy.io.loadmat(io.BytesIO(data), squeeze_me=True)
    except Exception as err:  # scipy raises ValueError, TypeError, MatReadError... on garbage
        raise ImnetError(f"{source}: meta.mat is not a readable MATLAB file ({err})") from err
    if "synsets" not in mat:
        raise ImnetError(f"{source}: meta.mat has no 'synsets' struct array")
    synsets = np.atleast_1d(mat["synsets"])
    names = synsets.dtype.names or ()
    missing = [f for f in REQUIRED_FIELDS if f not in names]
    if missing:
        raise ImnetError(f"{source}: meta.mat 'synsets' lacks the fields {', '.join(missing)}")
    leaves = []
    counts: dict[str, int] | None = {} if "num_train_images" in names else None
    by_id: dict[int, str] = {}
    for row in synsets:
        wnid, ilsvrc_id = str(row["WNID"]), int(row["ILSVRC2012_ID"])
        if ilsvrc_id in by_id:
            # The ground truth names val classes by ID: a second row with the same ID would
            # silently relabel every val image of one of the two classes.
            raise ImnetError(f"{source}: meta.mat gives ILSVRC2012_ID {ilsvrc_id} to both {by_id[ilsvrc_id]} "
                             f"and {wnid}; the devkit is corrupt, download it again")
        by_id[ilsvrc_id] = wnid
        if int(row["num_children"]) == 0:
            leaves.append((wnid, ilsvrc_id, str(row["words"])))
            if counts is not None:
                counts[wnid] = int(row["num_train_images"])
    if not leaves:
        raise ImnetError(f"{source}: meta.mat 'synsets' has no leaf rows (num_children == 0)")
    wnids = [w for w, _, _ in leaves]
    if len(set(wnids)) != len(wnids):
        duplicate = next(w for w in wnids if wnids.count(w) > 1)
        raise ImnetError(f"{source}: meta.mat lists the leaf wnid {duplicate} twice")
    leaves.sort()
    return [ClassInfo(index, wnid, ilsvrc_id, words) for index, (wnid, ilsvrc_id, words) in enumerate(leaves)], counts


def parse_ground_truth(data: bytes, classes: list[ClassInfo], source: str) -> list[int]:
    """Parse the ground-truth file (one ILSVRC2012_ID per line) into class indices of val 1..N."""
    by_id = {c.ilsvrc_id: c.class_index for c in classes}
    indices = []
    for number, line in enumerate(data.decode("ascii", "replace").splitlines(), 1):
        text = line.strip()
        if not text.isdigit():
            raise ImnetError(f"{source}: line {number} is not an ILSVRC2012_ID: {line!r}")
        if int(text) not in by_id:
            raise ImnetError(
                f"{source}: line {number} has ILSVRC2012_ID {text}, which is not one of the "
                f"{len(by_id)} leaf classes of meta.mat"
            )
        indices.append(by_id[int(text)])
    if not indices:
        raise ImnetError(f"{source}: the validation ground-truth file is empty")
    return indices


def parse_devkit(path: Path) -> Devkit:
    """Read and parse the devkit archive at ``path`` (hashing it on the way)."""
    meta, truth, md5 = read_devkit_members(path)
    classes, counts = _parse_meta_mat(meta, f"{path}:{META_MAT}")
    val = parse_ground_truth(truth, classes, f"{path}:{GROUND_TRUTH}")
    return Devkit(path=path, classes=classes, val_class_indices=val, md5=md5, train_images=counts)
