"""ReaL labels (Beyer et al. 2020, "Are we done with ImageNet?"): reading and finding ``real.json``.

``real.json`` is a JSON list with one entry per val image in val-number order
(ILSVRC2012_val_00000001 first); each entry is a list of the class indices judged correct for that
image, possibly empty (the image is then left out of ReaL metrics).
"""
from __future__ import annotations

import json
from pathlib import Path

from imnet.errors import ImnetError

REAL_FILE_NAME = "real.json"
NUM_CLASSES = 1000


def _val_name(position: int) -> str:
    return f"entry {position} (ILSVRC2012_val_{position + 1:08d}.JPEG)"


def load_real_labels(path: Path, num_images: int, num_classes: int = NUM_CLASSES) -> list[list[int]]:
    """Read ``real.json`` at ``path``: a list of ``num_images`` lists of class indices in
    0..``num_classes`` - 1.

    ``num_images`` is the number of val images of the split evaluated, counted before any
    ``--limit``; ``num_classes`` the classes of the tree (1000 for ILSVRC2012): a label outside them
    could never be predicted and would silently lower ReaL accuracy. Returns the lists as read.
    Raises :class:`ImnetError` naming the file and the first bad entry when the file is missing, not
    JSON, of the wrong length, or holds a non-list entry or an index that is not such an integer."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ImnetError(f"{path}: ReaL labels file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ImnetError(f"{path}: not a readable JSON ReaL labels file ({err})") from None
    if not isinstance(data, list):
        raise ImnetError(f"{path}: ReaL labels must be a JSON list of lists, got a {type(data).__name__}")
    if len(data) != num_images:
        raise ImnetError(
            f"{path}: {len(data)} ReaL label entries but the val split has {num_images} images; "
            "the file must list every val image in val-number order"
        )
    for position, entry in enumerate(data):
        if not isinstance(entry, list):
            raise ImnetError(
                f"{path}: {_val_name(position)} is {json.dumps(entry)[:40]}, not a list of class indices"
            )
        for class_index in entry:
            # bool is an int subclass in Python; true/false in the file is a format error.
            if (not isinstance(class_index, int) or isinstance(class_index, bool)
                    or not 0 <= class_index < num_classes):
                raise ImnetError(
                    f"{path}: {_val_name(position)} holds {json.dumps(class_index)[:40]}, "
                    f"not a class index in 0..{num_classes - 1} (the tree has {num_classes} classes)"
                )
    return data


def find_real_labels(data: Path | None, src: Path | None = None) -> Path:
    """Where ``--real-labels`` with no value finds ``real.json``: in ``data`` (the prepared tree or
    its ``meta/``), then in ``src`` (the archives folder). Raises :class:`ImnetError` listing the places
    looked at when none holds it."""
    candidates = []
    for root in (data, src):
        if root is not None:
            candidates += [Path(root) / REAL_FILE_NAME, Path(root) / "meta" / REAL_FILE_NAME]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates) or "nowhere (give --data or --src)"
    raise ImnetError(f"--real-labels: no {REAL_FILE_NAME} found; looked at {looked}. "
                     "Give the file: --real-labels PATH")


# --- the official file (google-research/reassessed-imagenet) ----------------------------------------

REAL_URL = "https://raw.githubusercontent.com/google-research/reassessed-imagenet/master/real.json"
REAL_MD5 = "c03b536b209b127cb61430fd1ce950d5"
REAL_SIZE = 388_478  # bytes; 50,000 entries, 3,163 of them empty


def official_real_path() -> Path:
    """Where the official ``real.json`` is kept once fetched: beside the official weights, in
    ``torch.hub.get_dir()/checkpoints/real.json`` (``$TORCH_HOME`` moves it)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / REAL_FILE_NAME


def fetch_real_labels(url: str = REAL_URL, md5: str = REAL_MD5, size: int | None = REAL_SIZE,
                      target: Path | None = None, progress: bool = True, echo=None) -> Path:
    """The official ReaL file, verified: ``target`` (default :func:`official_real_path`) when it is
    there with the right MD5 (a bad one is deleted and fetched again), else fetched from ``url``, or
    from ``$IMNET_WEIGHTS_MIRROR/real.json`` when the mirror is set, and checked against ``md5`` and
    ``size`` before it gets its name. :class:`ImnetError` saying why when it cannot be had (offline,
    not on the mirror, HTTP error, checksum mismatch: the download is then deleted)."""
    from imnet.download import (DownloadError, Expected, check_file, fetch_to, mirror, mirror_is_url,
                                mirror_location, offline_reason)

    target = Path(target) if target is not None else official_real_path()
    expected = Expected(md5=md5, size=size)
    if target.is_file():
        problem = check_file(target, expected)
        if problem is None:
            return target
        target.unlink()  # never scored against a file that is not the official one
        if echo is not None:
            echo(f"imnet: {target}: {problem}; deleted, fetching it again")
    value = mirror()
    location = mirror_location(value, REAL_FILE_NAME) if value is not None else url
    reason = offline_reason()
    if reason is not None and (value is None or mirror_is_url(value)):
        raise ImnetError(f"--real-labels: no {REAL_FILE_NAME} found and network access is off ({reason}); "
                         f"put the official file at {target} or give --real-labels PATH")
    if echo is not None:
        echo(f"imnet: fetching ReaL labels: {location}")
    try:
        return fetch_to(location, target, expected, progress=progress, echo=echo)
    except DownloadError as err:
        raise ImnetError(f"--real-labels: could not fetch the official {REAL_FILE_NAME} ({err}); "
                         "give the file with --real-labels PATH") from None


def find_or_fetch_real_labels(data: Path | None, src: Path | None = None, progress: bool = True,
                              echo=None) -> Path:
    """``--real-labels`` without a path: a ``real.json`` in ``data`` or ``src``
    (:func:`find_real_labels`), else the official file, fetched into the cache and verified
    (:func:`fetch_real_labels`)."""
    try:
        return find_real_labels(data, src)
    except ImnetError:
        try:
            return fetch_real_labels(progress=progress, echo=echo)
        except ImnetError as err:
            raise ImnetError(f"{err} (no {REAL_FILE_NAME} in --data or --src either)") from None
