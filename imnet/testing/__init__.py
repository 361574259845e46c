"""Fixtures for tests and the demo: fake ILSVRC2012 archives in the official formats, and prepared
trees made from them.

``fake_ilsvrc(out, ...)`` writes the archives (see :mod:`imnet.testing.fake`);
``prepared_tree(tmp_dir, ...)`` generates and prepares a tree in one call, for other parts' tests;
:func:`imnet.testing.fake_sources.fake_source` lays the same images out as the other sources do
(Hugging Face, Kaggle, extracted trees).
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from imnet.testing.fake import FakeILSVRC, fake_ilsvrc

__all__ = ["FakeILSVRC", "fake_ilsvrc", "prepared_tree"]

# One generated-and-prepared tree per distinct set of arguments and process; callers get copies.
_CACHE: dict[tuple, Path] = {}


def _drop_cache() -> None:
    for base in _CACHE.values():
        shutil.rmtree(base, ignore_errors=True)


atexit.register(_drop_cache)


def prepared_tree(tmp_dir: Path, **fake_kwargs) -> Path:
    """Generate fake archives with ``fake_ilsvrc(**fake_kwargs)`` and prepare them with ``imnet prep``;
    returns the prepared tree ``tmp_dir/"data"`` (train/, val/, meta/). The archives, their
    ``checksums.md5`` and ``real.json`` are in ``tmp_dir/"src"``. Repeated calls with the same
    arguments copy a cached tree, so they cost milliseconds."""
    from imnet.prep import prepare

    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in fake_kwargs.items()))
    base = _CACHE.get(key)
    if base is None or not (base / "data" / "meta" / "prep.json").is_file():
        base = Path(tempfile.mkdtemp(prefix="imnet-fixture-"))
        fake = fake_ilsvrc(base / "src", **fake_kwargs)
        prepare(base / "src", base / "data", checksums=fake.checksums, workers=1, progress=False)
        _CACHE[key] = base
    tmp_dir = Path(tmp_dir)
    shutil.copytree(base / "src", tmp_dir / "src", dirs_exist_ok=True)
    shutil.copytree(base / "data", tmp_dir / "data", dirs_exist_ok=True)
    return tmp_dir / "data"
