"""Class lists as the sources carry them, each read into ``{wnid: words}``.

* Hugging Face ``classes.py``: ``IMAGENET2012_CLASSES = OrderedDict({"n01440764": "tench, Tinca tinca", ...})``
  (or a plain dict, or ``OrderedDict([(wnid, words), ...])``), read with :mod:`ast`, never executed.
* Kaggle ``LOC_synset_mapping.txt``: ``<wnid> <words>`` per line.
* torchvision's ``meta.bin`` (``torch.save((wnid_to_classes, val_wnids))``): words as tuples of names.
* the devkit (``ILSVRC2012_devkit_t12.tar.gz``): :func:`imnet.prep.devkit.parse_devkit`.

Every reader raises :class:`ImnetError` naming the file and line on anything it cannot read.
"""
from __future__ import annotations

import ast
import io
import pickle
import zipfile
from pathlib import Path

from imnet.errors import ImnetError
from imnet.prep.sources.base import WNID

CLASSES_PY_NAME = "IMAGENET2012_CLASSES"


def _literal_pairs(node: ast.AST, path: Path) -> list[tuple[str, str]]:
    """(wnid, words) pairs of a dict literal, ``OrderedDict({...})`` or ``OrderedDict([(k, v), ...])``."""
    if isinstance(node, ast.Call) and node.args and not node.keywords and \
            getattr(node.func, "id", getattr(node.func, "attr", "")) == "OrderedDict":
        node = node.args[0]
    try:
        value = ast.literal_eval(node)
    except ValueError as err:
        raise ImnetError(f"{path}: {CLASSES_PY_NAME} is not a literal mapping of wnids to class names ({err})") \
            from None
    pairs = list(value.items()) if isinstance(value, dict) else value
    if not isinstance(pairs, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
        raise ImnetError(f"{path}: {CLASSES_PY_NAME} is not a mapping of wnids to class names")
    return [(str(k), str(v)) for k, v in pairs]


def read_classes_py(path: Path) -> dict[str, str]:
    """``{wnid: words}`` from the Hugging Face dataset's ``classes.py`` (parsed, not run)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError) as err:
        raise ImnetError(f"{path}: cannot read the class list ({err})") from err
    for statement in tree.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else \
            [statement.target] if isinstance(statement, ast.AnnAssign) and statement.value else []
        if any(getattr(t, "id", None) == CLASSES_PY_NAME for t in targets):
            return _checked(_literal_pairs(statement.value, path), path)
    raise ImnetError(f"{path}: no {CLASSES_PY_NAME} = ... assignment; not the dataset's classes.py")


def read_synset_mapping(text: str, path: Path | str) -> dict[str, str]:
    """``{wnid: words}`` from Kaggle's ``LOC_synset_mapping.txt`` text (``<wnid> <words>`` per line)."""
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        wnid, _, words = line.strip().partition(" ")
        if not WNID.match(wnid):
            raise ImnetError(f"{path}:{number}: expected '<wnid> <words>', got {line!r}")
        pairs.append((wnid, words.strip()))
    return _checked(pairs, path)


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only plain data (dicts, tuples, lists, strings): any class or function is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing {module}.{name}: meta.bin holds only plain data")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing a tensor: meta.bin holds only plain data")


def _load_meta_bin(path: Path):
    """``torch.save``'s zip format read without torch (importing it costs seconds): the pickle of plain
    data in ``<archive>/data.pkl``; other files go to ``torch.load(weights_only=True)``."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if name is not None:
                return _PlainUnpickler(io.BytesIO(archive.read(name))).load()
    import torch

    return torch.load(path, weights_only=True)


def read_meta_bin(path: Path) -> dict[str, str]:
    """``{wnid: words}`` from torchvision's ``ImageNet`` ``meta.bin`` (the names joined by ", ")."""
    try:
        wnid_to_classes, _ = _load_meta_bin(path)
        pairs = [(str(w), ", ".join(names) if isinstance(names, (list, tuple)) else str(names))
                 for w, names in wnid_to_classes.items()]
    except Exception as err:
        raise ImnetError(f"{path}: unreadable torchvision meta file ({err})") from err
    return _checked(pairs, path)


def _checked(pairs: list[tuple[str, str]], path) -> dict[str, str]:
    if not pairs:
        raise ImnetError(f"{path}: the class list is empty")
    words: dict[str, str] = {}
    for wnid, text in pairs:
        if not WNID.match(wnid):
            raise ImnetError(f"{path}: {wnid!r} is not a wnid (nXXXXXXXX)")
        if wnid in words:
            raise ImnetError(f"{path}: lists class {wnid} twice")
        words[wnid] = text
    return words
