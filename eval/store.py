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

Writes are atomic per model and cost what the model costs, not the store:

* **Adding** a model appends to the store in place. HDF5 writes through :class:`_CopyOnWrite`, which
  leaves the file untouched: pages below its old size that HDF5 changes (the superblock, the
  ``models`` group's header: a few KiB) are kept in memory, the new data goes to a temp tail file.
  Then an undo journal ``.predictions.h5.journal`` (the old size and the old bytes of those pages) is
  written, fsynced and renamed into place; the tail is appended, the pages written, the store
  fsynced, and the journal deleted. A journal found later means the append did not finish: the old
  pages are put back and the file cut to its old size (:func:`recover_store`, run before any open),
  which gives back exactly the previous store.
* **Replacing** a model (``--force``, or more crop counts for a stored one) rebuilds the store from
  the other groups into a temp file that is fsynced and renamed over it (HDF5 never gives back a
  deleted group's space); a **new** store is written the same way.

A run killed at any point leaves the previous store (or, once the journal is gone, the new one),
readable, with every model finished before. One writer at a time (rank 0 of a run).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from imnet.errors import ImnetError

STORE_FORMAT = "imnet-predictions"
STORE_VERSION = 1
JOURNAL_FORMAT = "imnet-predictions-undo"
PAGE = 4096
CRASH_ENV = "IMNET_STORE_CRASH_AT"  # test hook: SIGKILL at "journal", "tail" or "pages"


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
    recover_store(path)
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


def _crash_point(label: str) -> None:
    """Test hook for the crash tests: ``IMNET_STORE_CRASH_AT=<label>`` kills the process there."""
    if os.environ.get(CRASH_ENV) == label:
        os.kill(os.getpid(), signal.SIGKILL)


def _journal_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.journal")


class _CopyOnWrite(io.RawIOBase):
    """A file-like view of the store for h5py whose writes never touch the store: pages below its
    size that are written are kept in memory (``pages``), bytes beyond it go to ``tail_path``.
    :meth:`commit` then applies them under an undo journal."""

    def __init__(self, path: Path, tail_path: Path) -> None:
        super().__init__()
        self.path = path
        self._base = open(path, "rb")
        self.base_size = os.fstat(self._base.fileno()).st_size
        self._tail = open(tail_path, "w+b")
        self.size = self.base_size
        self.pages: dict[int, bytearray] = {}
        self._pos = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _page(self, index: int) -> bytearray:
        page = self.pages.get(index)
        if page is None:
            self._base.seek(index * PAGE)
            page = self.pages[index] = bytearray(self._base.read(PAGE).ljust(PAGE, b"\0"))
        return page

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self.size - self._pos))
        done = 0
        while done < count:
            pos = self._pos + done
            if pos < self.base_size:
                index, offset = divmod(pos, PAGE)
                step = min(count - done, PAGE - offset, self.base_size - pos)
                if index in self.pages:
                    view[done:done + step] = self.pages[index][offset:offset + step]
                else:
                    self._base.seek(pos)
                    view[done:done + step] = self._base.read(step)
            else:
                step = count - done
                self._tail.seek(pos - self.base_size)
                chunk = self._tail.read(step)
                view[done:done + len(chunk)] = chunk
                view[done + len(chunk):done + step] = bytes(step - len(chunk))
            done += step
        self._pos += count
        return count

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            pos = self._pos + done
            if pos < self.base_size:
                index, offset = divmod(pos, PAGE)
                step = min(len(view) - done, PAGE - offset, self.base_size - pos)
                self._page(index)[offset:offset + step] = view[done:done + step]
            else:
                step = len(view) - done
                self._tail.seek(pos - self.base_size)
                self._tail.write(view[done:done + step])
            done += step
        self._pos += len(view)
        self.size = max(self.size, self._pos)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if size < self.base_size:  # HDF5 only grows a file it appends to; never lose old bytes
            raise OSError(f"{self.path}: HDF5 asked to shrink the store below its old size")
        self._tail.truncate(size - self.base_size)
        self.size = size
        return size

    def flush(self) -> None:
        if not self._tail.closed:
            self._tail.flush()

    def commit(self) -> None:
        """Apply the append to the store under an undo journal (see the module docstring)."""
        journal = _journal_path(self.path)
        pending = journal.with_name(f"{journal.name}.tmp-{os.getpid()}")
        indices = sorted(self.pages)
        header = json.dumps({"format": JOURNAL_FORMAT, "size": self.base_size, "pages": indices})
        with open(pending, "wb") as undo:
            undo.write(header.encode() + b"\n")
            for index in indices:
                self._base.seek(index * PAGE)
                undo.write(self._base.read(PAGE).ljust(PAGE, b"\0"))
            undo.flush()
            os.fsync(undo.fileno())
        os.replace(pending, journal)
        _fsync_path(self.path.parent)
        _crash_point("journal")
        with open(self.path, "r+b") as store:
            store.seek(self.base_size)
            self._tail.seek(0)
            shutil.copyfileobj(self._tail, store, 2**22)
            store.flush()
            _crash_point("tail")
            for index in indices:
                store.seek(index * PAGE)
                store.write(self.pages[index][:min(PAGE, self.base_size - index * PAGE)])
            store.truncate(self.size)
            store.flush()
            _crash_point("pages")
            os.fsync(store.fileno())
        journal.unlink()
        _fsync_path(self.path.parent)

    def close(self) -> None:
        super().close()
        for handle in (self._base, self._tail):
            handle.close()


def recover_store(path: Path) -> bool:
    """Undo an append that a killed run left half done (its journal is beside the store): put the
    old pages back and cut the store to its old size. Returns whether there was one to undo."""
    path = Path(path)
    journal = _journal_path(path)
    if not journal.exists():
        return False
    try:
        with open(journal, "rb") as undo:
            header = json.loads(undo.readline())
            if header.get("format") != JOURNAL_FORMAT:
                raise ValueError("not an imnet undo journal")
            with open(path, "r+b") as store:
                for index in header["pages"]:
                    page = undo.read(PAGE)
                    store.seek(index * PAGE)
                    store.write(page[:max(0, min(PAGE, header["size"] - index * PAGE))])
                store.truncate(header["size"])
                store.flush()
                os.fsync(store.fileno())
    except (OSError, ValueError, KeyError) as err:
        raise ImnetError(f"{journal}: cannot undo the interrupted write of {path} ({err})") from None
    journal.unlink()
    _fsync_path(path.parent)
    return True


def _append_model(path: Path, key: str, preds: ModelPredictions) -> None:
    """Add a model group to an existing store in place, atomically (see the module docstring)."""
    tail = path.with_name(f".{path.name}.tail-{os.getpid()}")
    view = _CopyOnWrite(path, tail)
    try:
        with h5py.File(view, "r+") as new:
            _write_group(new.require_group("models").create_group(key), preds)
        view.commit()
    finally:
        view.close()
        _discard(tail)


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
            if not replacing:
                _append_model(path, key, preds)
                return
            # HDF5 never gives back a deleted group's space: rebuild from the other models.
            with _open_store(path) as old, h5py.File(tmp, "w") as new:
                new.attrs.update(old.attrs)
                models = new.create_group("models")
                for other in old["models"]:
                    if other != key:
                        old.copy(old["models"][other], models, name=other)
                _write_group(models.create_group(key), preds)
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
    """Undo an interrupted append (:func:`recover_store`), then delete temp files left beside the
    store at ``path`` by killed runs (copies, tails, unfinished journals); returns what was deleted."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    if path.exists():
        recover_store(path)
    stale = sorted(p for pattern in (f".{path.name}.tmp-*", f".{path.name}.tail-*",
                                     f".{path.name}.journal.tmp-*") for p in path.parent.glob(pattern))
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
