"""The predictions store ``predictions.h5``: every metric of a run is recomputed from it, without a model.

Layout (HDF5, written with h5py)::

    /                          attrs: format="imnet-predictions", version=1
    /models/<key>/             one group per model; attrs: name, config (JSON: the eval config used),
                               info (JSON: param_count, gmacs, loader, amp, device, images_per_sec,
                               pass_crops, n_split, limit, skipped, weights, ...)
        files    (N,) str      file names relative to the split folder, in val-number order
        labels   (N,) int64    class indices
        indices  (N,) int64    positions in the split's file list (val_number - 1)
        crops<K>/logits (N, C) float16   K in {1, 5, 10}: the centre crop's logits for K=1, the log of
                                          the averaged crop probabilities for K=5 and 10

Writes are atomic per model: a new model is added to a copy of the store (``shutil.copyfile``, then
append) and replacing one rebuilds the copy from the other groups; the copy is fsynced and renamed over
``predictions.h5``. A run killed at any point leaves the previous store intact and readable, with
every model finished before. One writer at a time (rank 0 of a run).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from imnet.errors import ImnetError

STORE_FORMAT = "imnet-predictions"
STORE_VERSION = 1


@dataclass
class ModelPredictions:
    """One model's predictions over a split, for each crop count evaluated.

    ``logits`` maps crop count -> float16 array (N, C); ``files``/``labels``/``indices`` are in
    val-number order and line up with its rows. ``config`` is the eval config used (what decides
    whether a stored entry can be reused); ``info`` is everything else reported (speed, device, ...)."""

    name: str
    files: list[str]
    labels: np.ndarray
    indices: np.ndarray
    logits: dict[int, np.ndarray]
    config: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.files)
        if len(self.labels) != n or len(self.indices) != n:
            raise ValueError(f"{self.name}: {n} files, {len(self.labels)} labels, {len(self.indices)} indices")
        for crops, rows in self.logits.items():
            if rows.ndim != 2 or rows.shape[0] != n:
                raise ValueError(f"{self.name}: crops{crops} logits of shape {rows.shape} for {n} images")


def _key(name: str) -> str:
    # '/' separates HDF5 groups; model names and run-directory names never hold '%'.
    return name.replace("%", "%25").replace("/", "%2F")


def _open_store(path: Path, mode: str = "r") -> h5py.File:
    try:
        f = h5py.File(path, mode)
    except FileNotFoundError:
        raise ImnetError(f"{path}: predictions store not found") from None
    except OSError as err:
        raise ImnetError(f"{path}: not a readable HDF5 predictions store ({err})") from None
    if f.attrs.get("format") != STORE_FORMAT:
        f.close()
        raise ImnetError(f"{path}: not an imnet predictions store (no format={STORE_FORMAT!r} attribute)")
    return f


def _write_group(group: h5py.Group, preds: ModelPredictions) -> None:
    group.attrs["name"] = preds.name
    group.attrs["config"] = json.dumps(preds.config, sort_keys=True)
    group.attrs["info"] = json.dumps(preds.info, sort_keys=True)
    group.create_dataset("files", data=np.array(preds.files, dtype=object), dtype=h5py.string_dtype())
    group.create_dataset("labels", data=np.asarray(preds.labels, dtype=np.int64))
    group.create_dataset("indices", data=np.asarray(preds.indices, dtype=np.int64))
    for crops, rows in sorted(preds.logits.items()):
        rows = np.asarray(rows, dtype=np.float16)
        chunks = (max(1, min(len(rows), 1024)), rows.shape[1]) if len(rows) else None
        group.create_dataset(f"crops{crops}/logits", data=rows, chunks=chunks)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:  # e.g. the folder is not a folder: then nothing was written either
        pass


def write_model(path: Path, preds: ModelPredictions) -> None:
    """Add (or replace) one model's predictions in the store at ``path``, atomically.

    The store is created when missing. Raises :class:`ImnetError` when ``path`` exists but is not a
    store, or cannot be written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    key = _key(preds.name)
    try:
        if path.exists():
            with _open_store(path) as old:
                replacing = key in old.get("models", {})
            if replacing:
                # HDF5 never gives back a deleted group's space: rebuild from the other models.
                with _open_store(path) as old, h5py.File(tmp, "w") as new:
                    new.attrs.update(old.attrs)
                    models = new.create_group("models")
                    for other in old["models"]:
                        if other != key:
                            old.copy(old["models"][other], models, name=other)
                    _write_group(models.create_group(key), preds)
            else:
                shutil.copyfile(path, tmp)
                with h5py.File(tmp, "a") as new:
                    _write_group(new.require_group("models").create_group(key), preds)
        else:
            with h5py.File(tmp, "w") as new:
                new.attrs["format"] = STORE_FORMAT
                new.attrs["version"] = STORE_VERSION
                _write_group(new.create_group("models").create_group(key), preds)
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_path(path.parent)
    except OSError as err:
        _discard(tmp)
        raise ImnetError(f"{path}: cannot write the predictions store ({err})") from None
    except BaseException:
        _discard(tmp)
        raise


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Delete temp copies left beside the store at ``path`` by killed runs; returns what was deleted."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.tmp-*")) if path.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def stored_models(path: Path) -> list[str]:
    """Names of the models in the store at ``path`` (empty when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with _open_store(path) as f:
        return sorted(str(g.attrs["name"]) for g in f.get("models", {}).values())


def _read_group(path: Path, group: h5py.Group) -> ModelPredictions:
    try:
        logits = {int(k[len("crops"):]): group[k]["logits"][()] for k in group if k.startswith("crops")}
        return ModelPredictions(
            name=str(group.attrs["name"]),
            files=[s.decode() if isinstance(s, bytes) else str(s) for s in group["files"][()]],
            labels=group["labels"][()],
            indices=group["indices"][()],
            logits=logits,
            config=json.loads(group.attrs["config"]),
            info=json.loads(group.attrs["info"]),
        )
    except (KeyError, ValueError) as err:
        raise ImnetError(f"{path}: model group {group.name} is incomplete or malformed ({err})") from None


def read_model(path: Path, name: str) -> ModelPredictions | None:
    """One model's predictions from the store at ``path``, or None when it holds no such model."""
    path = Path(path)
    if not path.exists():
        return None
    with _open_store(path) as f:
        group = f.get("models", {}).get(_key(name))
        return None if group is None else _read_group(path, group)


def read_store(path: Path) -> list[ModelPredictions]:
    """Every model's predictions in the store at ``path``, sorted by name. Raises
    :class:`ImnetError` when the file is missing or not a store."""
    path = Path(path)
    with _open_store(path) as f:
        preds = [_read_group(path, g) for g in f.get("models", {}).values()]
    return sorted(preds, key=lambda p: p.name)


def is_finished(path: Path, name: str, config: dict, crop_counts: list[int]) -> bool:
    """Whether the store at ``path`` already holds ``name`` evaluated with this same ``config`` and
    every crop count in ``crop_counts`` (so a re-run can skip it)."""
    path = Path(path)
    if not path.exists():
        return False
    with _open_store(path) as f:
        group = f.get("models", {}).get(_key(name))
        if group is None:
            return False
        same_config = json.loads(group.attrs.get("config", "null")) == json.loads(json.dumps(config))
        return same_config and all(f"crops{c}" in group for c in crop_counts)
