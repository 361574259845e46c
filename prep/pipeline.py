"""``imnet prep``: the archives in ``--src`` -> a verified, prepared tree in ``--dst``.

Per split, one read pass over its archive: ``tarfile`` streams the archive through an MD5-hashing
reader while a pool of worker processes decodes, hashes and writes the members (inner class tars
stay in memory). A finished unit is journaled; the split's manifests and hash list come next, and
its completion record in ``prep.json`` is written last, atomically. A checksum mismatch or a bad
member discards everything the split wrote (and only that). Killed at any moment, the same command
resumes and ends with the same tree; a write error or SIGTERM ends it with one line and the same
command resumes. The whole run holds the tree's lock (``DST/.imnet-lock``).
"""
from __future__ import annotations

import collections
import contextlib
import json
import mmap
import multiprocessing
import os
import platform
import signal
import sys
import tarfile
import threading
import time
from pathlib import Path

from tqdm import tqdm

import imnet
from imnet.errors import ImnetError
from imnet.prep.checksum import HashingReader, check_digest, md5_file, read_checksums
from imnet.prep.devkit import Devkit, parse_devkit
from imnet.prep.extract import SKIP_CHECKS_ENV, UnitResult, extract_class_tar, write_val_chunk
from imnet.prep.layout import (
    SPLITS,
    TreeLayout,
    WriteError,
    atomic_write_lines,
    atomic_write_text,
    blocks_for,
    check_disk_space,
    check_src_dst,
    ensure_writable_dir,
    free_space,
    fsync_dir,
    read_journal_lines,
    read_prep_json,
    remove_stale_temp_files,
    split_is_complete,
    temp_path,
    write_error,
)
from imnet.prep.lock import TreeLock
from imnet.prep.manifests import known_quirks, official_archives, write_classes, write_file_list
from imnet.prep.owner import check_owned, journal_identity, remove_split_files
from imnet.prep.quirks import Quirk, cross_check
from imnet.prep.stream import TRAIN_CLASS_TAR, VAL_IMAGE, iter_stream
from imnet.prep.verify import check_hashes, quick_check, verify_split

ARCHIVES = {
    "train": "ILSVRC2012_img_train.tar",
    "val": "ILSVRC2012_img_val.tar",
    "devkit": "ILSVRC2012_devkit_t12.tar.gz",
}
VAL_CHUNK_FILES = 256
VAL_CHUNK_BYTES = 32 << 20
INFLIGHT_BYTES = 1 << 30
# Shared-memory ring for the inner class tars: room for a few units per worker, reused as they pass
# (a small ring stays in cache and avoids page faults); units larger than it go by pipe.
ARENA_MIN, ARENA_MAX = 64 << 20, 2 << 30
# On an error, how long _Workers.close lets units in flight finish before killing the workers.
CLOSE_GRACE_SECONDS = 120.0
# Beyond the images themselves: the journal, file list and hash list take about this much per image.
META_BYTES_PER_IMAGE = 320
CRASH_ENV = "IMNET_PREP_CRASH_AT"
STOP_ENV = "IMNET_PREP_STOP_AT"
SHOWN_BAD = 20


def _crash_point(label: str) -> None:
    """Test hooks for the crash-safety and concurrency tests: with ``IMNET_PREP_CRASH_AT=<label>`` in
    the environment prep kills itself with SIGKILL when it reaches that point (labels:
    ``<split>:unit:<n>`` after the n-th unit journaled in this run, ``<split>:manifests``,
    ``<split>:record-temp``, ``<split>:record``, ``worker``); with ``IMNET_PREP_STOP_AT=<label>`` it
    stops itself (SIGSTOP, until the test sends SIGCONT) at ``locked`` (lock held, nothing written)
    or ``space-checked`` (about to write the first image)."""
    if os.environ.get(CRASH_ENV) == label:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(STOP_ENV) == label:
        os.kill(os.getpid(), signal.SIGSTOP)


def _worker_init() -> None:
    """Pool workers die with their parent (``kill -9`` of prep leaves no orphans behind) and leave
    SIGINT/SIGTERM to it (it stops them once the journal is in order)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


_ARENA: mmap.mmap | None = None


def _run_from_arena(offset: int, size: int, fn, *args) -> UnitResult:
    """Worker side: run ``fn(data, *args)`` on the bytes the parent placed in the arena."""
    _crash_point("worker")
    return fn(memoryview(_ARENA)[offset:offset + size], *args)


def _run_sent(fn, data, *args) -> UnitResult:
    """Worker side: run ``fn(data, *args)`` on bytes sent through the pool's pipe."""
    _crash_point("worker")
    return fn(data, *args)


class WorkerDied(ImnetError):
    """A writer process died under prep (killed from outside). Its split is not discarded: the
    journal keeps every finished unit and the same command resumes."""


class _Workers:
    """Runs units in a process pool (or inline with one worker), handing results back in submission
    order, with a bound on the bytes in flight. Large units (inner class tars) travel through a ring
    buffer of shared memory: :meth:`reserve` a region, read the archive into it, :meth:`submit`."""

    def __init__(self, workers: int, arena_bytes: int = ARENA_MIN):
        global _ARENA
        self.workers = workers
        self._pool = None
        # (nbytes, async result, arena region or None, archive offset where the unit's bytes end)
        self._pending: collections.deque = collections.deque()
        self._inflight_bytes = 0
        self._ready: list = []  # finished units whose results are not collected yet
        self._reserved: tuple[int, int] | None = None
        self.reader: HashingReader | None = None  # set per split: arena bytes must be hashed before reuse
        if workers > 1:
            _ARENA = self._arena = mmap.mmap(-1, arena_bytes)
            self._arena_bytes = arena_bytes
            self._pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init)
            self._pids = {process.pid for process in self._pool._pool}

    def _await(self, handle) -> None:
        """Wait for a unit's result. ``multiprocessing.Pool`` replaces a worker that dies (SIGKILL from
        the out-of-memory killer, say) and loses its task, whose result would then never come: so
        while waiting, compare the pool's worker pids with those it started with."""
        while not handle.ready():
            handle.wait(0.5)
            if not handle.ready() and {process.pid for process in self._pool._pool} != self._pids:
                raise WorkerDied(
                    "a prep worker process died (killed from outside, e.g. by the out-of-memory killer); "
                    "units not journaled are not counted: run the same command again to resume")

    def _live(self) -> list[tuple[int, int]]:
        return [region for _, _, region, _ in self._pending if region is not None]

    def _retire(self, entry) -> None:
        """Free a finished unit's arena region once the hashing thread has passed its bytes too."""
        nbytes, handle, region, file_end = entry
        self._await(handle)
        if region is not None and self.reader is not None:
            self.reader.wait_hashed(file_end)
        self._inflight_bytes -= nbytes

    def _fit(self, nbytes: int) -> int | None:
        """Start of a free arena region of ``nbytes`` after the newest live one, or None if full."""
        live = self._live()
        if not live:
            return 0
        oldest, newest = live[0], live[-1]
        if newest[0] >= oldest[0]:  # live bytes are [oldest, newest end): room after it, or from 0
            if newest[1] + nbytes <= self._arena_bytes:
                return newest[1]
            return 0 if nbytes <= oldest[0] else None
        return newest[1] if newest[1] + nbytes <= oldest[0] else None  # wrapped around

    def reserve(self, nbytes: int) -> memoryview | None:
        """A shared buffer for the next unit's ``nbytes`` (waiting for older units to free space);
        None when running inline or when the unit is larger than the arena (it then goes by pipe)."""
        if self._pool is None or nbytes > self._arena_bytes or nbytes == 0:
            return None
        start = self._fit(nbytes)
        while start is None:  # wait for the oldest unit; its result is collected by the next submit
            entry = self._pending.popleft()
            self._retire(entry)
            self._ready.append(entry[1])
            start = self._fit(nbytes)
        self._reserved = (start, start + nbytes)
        return memoryview(self._arena)[start:start + nbytes]

    def unreserve(self) -> None:
        """Give back the region of a unit that turned out not to need work (already journaled)."""
        if self._reserved is not None and self.reader is not None:
            self.reader.wait_hashed()
        self._reserved = None

    def submit(self, nbytes: int, fn, data, *args) -> list[UnitResult]:
        """Queue ``fn(data, *args)``; return the results of units that finished meanwhile, in order.
        ``data`` is bytes, or the buffer :meth:`reserve` returned."""
        if self._pool is None:
            return [fn(data, *args)]
        region = None
        if self._reserved is not None and isinstance(data, memoryview):
            region, self._reserved = self._reserved, None
            handle = self._pool.apply_async(_run_from_arena, (region[0], nbytes, fn, *args))
        else:
            handle = self._pool.apply_async(_run_sent, (fn, data, *args))
        self._pending.append((nbytes, handle, region, self.reader.tell() if self.reader else 0))
        self._inflight_bytes += nbytes
        done, self._ready = [h.get() for h in self._ready], []
        while self._pending and (len(self._pending) > 2 * self.workers or self._inflight_bytes > INFLIGHT_BYTES
                                 or self._pending[0][1].ready()):
            done.append(self._pop())
        return done

    def _pop(self) -> UnitResult:
        entry = self._pending.popleft()
        self._retire(entry)
        return entry[1].get()

    def drain(self) -> list[UnitResult]:
        """Wait for every queued unit; return their results in order."""
        done, self._ready = [h.get() for h in self._ready], []
        return done + [self._pop() for _ in range(len(self._pending))]

    def close(self, grace: float = CLOSE_GRACE_SECONDS) -> None:
        """Stop the workers. Units still in flight are let finish (their results are dropped: they are
        not journaled, so a later run redoes them), for up to ``grace`` seconds, then the pool is
        closed the normal way: workers exit on their end-of-work sentinels, nothing is killed.

        Not ``Pool.terminate()``: it kills workers that may be in the middle of sending a result, and
        a worker killed while it holds the result queue's lock hangs terminate() for good (seen in the
        test suite: the error path of a bad devkit, with units in flight). A worker that died, or
        units still running after ``grace``, make it :meth:`abandon` the pool (kill) instead."""
        global _ARENA
        if self._pool is None:
            self._pending.clear()
            return
        deadline = time.monotonic() + grace
        for _, handle, _, _ in self._pending:
            while not handle.ready():
                died = {process.pid for process in self._pool._pool} != self._pids
                if died or time.monotonic() > deadline:
                    self.abandon()
                    return
                handle.wait(0.2)
        pool, self._pool = self._pool, None
        pool.close()
        pool.join()
        _ARENA = None
        self._pending.clear()

    def abandon(self) -> None:
        """Stop the pool after one of its workers died. ``Pool.terminate()`` can deadlock then: it takes
        the task queue's lock, which a worker killed inside ``get()`` holds forever. So stop the pool's
        worker maintenance (no respawns), cancel its exit-time finalizer (same lock), kill the workers."""
        global _ARENA
        pool, self._pool = self._pool, None
        if pool is not None:
            from multiprocessing.pool import TERMINATE

            pool._state = TERMINATE
            pool._worker_handler._state = TERMINATE
            pool._terminate.cancel()
            for process in list(pool._pool):
                process.kill()
                process.join(timeout=5)
            _ARENA = None
        self._pending.clear()



class Terminated(ImnetError):
    """prep got SIGTERM or SIGINT. The journal keeps every finished unit; the same command resumes.
    The CLI exits with 128 + the signal number, as a shell reports a terminated command."""

    def __init__(self, message: str, signum: int = signal.SIGTERM):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class _Signals:
    """SIGTERM/SIGINT during prep raise :class:`Terminated` in the main thread, except inside
    :meth:`protected` sections (the manifests and the completion record, a discard), where the
    signal is held until the section ends. Only installed when prep runs in the main thread."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self.depth = 0
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.depth:
            self.pending = signum
            return
        raise Terminated(signal.Signals(signum).name, signum)

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @contextlib.contextmanager
    def protected(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending is not None:
                signum, self.pending = self.pending, None
                raise Terminated(signal.Signals(signum).name, signum)


_SIGNALS = _Signals()


class Journal:
    """The finished units of a split in progress: ``DST/meta/.journal-<split>.jsonl``, an identity
    line (archive name, size, mtime, expected md5) then one JSON line per finished unit (its files,
    sizes, SHA-256s and quirks), appended and flushed as units finish. A line cut short by a kill is
    dropped on the next load (that unit is simply redone)."""

    def __init__(self, path: Path, identity: dict, done: dict[str, UnitResult]):
        self.path = path
        self.done = done
        self.written_this_run = 0
        self.created_dir = bool(identity.get("created_dir"))
        lines = [json.dumps(identity)] + [json.dumps(r.to_dict()) for r in done.values()]
        atomic_write_lines(path, (line + "\n" for line in lines), fsync=False)
        try:
            self._handle = open(path, "a", encoding="utf-8")
        except OSError as err:
            raise write_error(path, err) from err

    def record(self, result: UnitResult, split: str) -> None:
        """Append a finished unit (flushed to the OS, so it survives a kill of this process)."""
        try:
            self._handle.write(json.dumps(result.to_dict()) + "\n")
            self._handle.flush()
        except OSError as err:
            raise write_error(self.path, err) from err
        self.done[result.unit] = result
        self.written_this_run += 1
        _crash_point(f"{split}:unit:{self.written_this_run}")

    def close(self) -> None:
        if not self._handle.closed:
            try:
                self._handle.close()
            except OSError:
                pass  # a line cut short (disk full) is dropped on the next load


def read_journal(path: Path) -> tuple[dict | None, dict[str, UnitResult]]:
    """(identity, finished units by name) of a split's journal; ``(None, {})`` when there is none. Read
    line by line (a full train journal holds a line per class tar with its 1,300 hashes)."""
    def unit(line: dict) -> tuple[str, UnitResult]:
        result = UnitResult.from_dict(line)
        return result.unit, result

    return read_journal_lines(path, unit)


def _archive_identity(archive: Path, md5: str) -> dict:
    stat = archive.stat()
    return {"archive": archive.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "md5": md5}


def discard_split(layout: TreeLayout, split: str) -> None:
    """Remove everything prep wrote for a split (its images, class folders, manifests, journal and
    record), and nothing else, so nothing from a bad archive can look prepared. The record and the
    journal go last: until then the files are still recorded as prep's own."""
    with _SIGNALS.protected():
        record = read_prep_json(layout)
        made = (journal_identity(layout.journal(split)) or {}).get("created_dir") or \
            record["splits"].get(split, {}).get("created_dir")
        remove_split_files(layout, split, remove_folder=bool(made))
        layout.file_list(split).unlink(missing_ok=True)
        layout.hash_list(split).unlink(missing_ok=True)
        layout.journal(split).unlink(missing_ok=True)
        record = read_prep_json(layout)
        if split in record["splits"]:
            del record["splits"][split]
            atomic_write_text(layout.prep_json, json.dumps(record, indent=1, sort_keys=True) + "\n")


def make_room(layout: TreeLayout, todo: list[str], discard: list[str], need) -> None:
    """Before the first image is written: refuse (one line) when DST lacks the space or inodes for the
    splits ``todo`` (``need(split, journaled, block) -> (bytes, files)``, the units an earlier run
    journaled counting as written), check DST is writable, then discard the splits to be prepared
    again (``discard``)."""
    block = free_space(layout.dst).block
    needed_bytes = needed_files = 0
    for split in todo:
        journaled = [] if split in discard else list(read_journal(layout.journal(split))[1].values())
        more_bytes, more_files = need(split, journaled, block)
        needed_bytes += more_bytes
        needed_files += more_files
    check_disk_space(layout.dst, needed_bytes, needed_files, " and ".join(todo))
    ensure_writable_dir(layout.dst)
    for split in discard:
        discard_split(layout, split)
    _crash_point("space-checked")


def open_journal(layout: TreeLayout, split: str, identity: dict) -> Journal:
    """Resume the journal of an interrupted run of ``split`` on the same archive (same name, size,
    mtime, expected md5); otherwise discard whatever prep wrote for the split and start afresh."""
    previous, done = read_journal(layout.journal(split))
    made = bool(previous and previous.pop("created_dir", False))
    if previous != identity:
        discard_split(layout, split)
        done, made = {}, False
    split_dir = layout.split_dir(split)
    if not os.path.lexists(split_dir):
        try:
            split_dir.mkdir()
        except OSError as err:
            raise write_error(split_dir, err) from err
        made = True
    # Whether prep made DST/<split>: only then does a discard remove the (empty) folder itself.
    return Journal(layout.journal(split), dict(identity, created_dir=made), done)


def all_hashed(results: list[UnitResult]) -> bool:
    """Whether every image of ``results`` has its SHA-256 (a test can switch the hashing off)."""
    return all(len(r.sha256) == 32 * len(r.files) for r in results) and \
        "hash" not in os.environ.get(SKIP_CHECKS_ENV, "")


@contextlib.contextmanager
def kept_or_discarded(what: str, units: str, layout: TreeLayout, split: str, journal: Journal, workers,
                      bar, also: tuple = ()):
    """Around a split's read-and-write pass (``what``: "the train split", "imagenet-a"): a write
    error, a dead worker, SIGTERM (or the ``also`` faults) keep the journal's finished ``units`` so
    the same command resumes, and say so; any other error is about the input, so everything of the
    split is discarded first and the error says nothing was kept."""
    try:
        yield
    except (WorkerDied, WriteError, Terminated, *also) as err:
        workers.abandon()  # the journal keeps the finished units: a re-run resumes
        bar.close()
        journal.close()
        kept = f"{len(journal.done)} finished {units}"
        if isinstance(err, Terminated):
            raise Terminated(f"terminated by {err} while preparing {what}; {kept} are kept in "
                             f"{journal.path}: run the same command again to resume", err.signum) from None
        raise type(err)(f"{err} [{kept} of {what} are kept in {journal.path}]") from err
    except ImnetError as err:
        bar.close()
        journal.close()
        workers.close()  # stop writers still in flight before removing what they wrote
        discard_split(layout, split)
        raise ImnetError(f"{err} [nothing of {what} was kept]") from err
    finally:
        bar.close()
        journal.close()


def prepared_line(layout: TreeLayout, split: str, split_record: dict) -> dict:
    """The summary's entry for a split this run prepared (its undecodable images said on stderr)."""
    return {"status": "prepared", "images": split_record["images"], "bytes": split_record["bytes"],
            "repaired": len(split_record["repaired"]), "undecodable": _report_bad(layout, split, split_record),
            "seconds": split_record["seconds"]}


def warn_undecodable(dst: Path, summary: dict) -> None:
    """After a run: what follows from undecodable images in any split of the summary."""
    if any(info.get("undecodable") for info in summary["splits"].values()):
        print(f"imnet prep: `imnet verify --data {dst}` fails until the undecodable images are repaired or "
              f"acknowledged (`imnet verify --data {dst} --acknowledge-bad`); the loaders refuse them "
              f"(`imnet eval --skip-bad` skips them)", file=sys.stderr)


def keep_complete(layout: TreeLayout, split: str, split_record: dict, counts, what: str, refusal: str | None,
                  redo: bool, reverify, summary: dict) -> bool:
    """A split recorded complete (``what``: "the train split", "imagenet-a"): True when it stays as it is,
    its line in ``summary`` (after ``reverify()``, re-reading its input, when given); False when it is to
    be prepared again (``--redo``, or its files no longer match the record: said on stderr).
    ``refusal``: why this run's input is not the one recorded (refused unless ``redo``)."""
    if refusal and not redo:
        raise ImnetError(f"{refusal}. Prepare {what} again with --redo, or choose another --dst")
    if redo:
        print(f"imnet prep: --redo: preparing {what} again", file=sys.stderr)
        return False
    problems = quick_check(layout, split, split_record, counts)
    if problems:
        print(f"imnet prep: {split} was marked complete but {problems[0]}; preparing it again", file=sys.stderr)
        return False
    layout.journal(split).unlink(missing_ok=True)  # left when a run was killed between the record and the clean-up
    if reverify is not None:
        reverify()
    bad = _report_bad(layout, split, split_record)
    summary["splits"][split] = {"status": "reverified" if reverify is not None else "already prepared",
                                "images": split_record["images"], "bytes": split_record["bytes"],
                                "repaired": len(split_record["repaired"]), "undecodable": bad, "seconds": 0.0}
    return True


def write_lists(layout: TreeLayout, split: str, entries, hash_lines) -> None:
    """A split's file list and (``hash_lines`` not None) its hash list; a stale hash list goes."""
    write_file_list(layout.file_list(split), entries)
    if hash_lines is not None:
        atomic_write_lines(layout.hash_list(split), hash_lines)
    else:
        layout.hash_list(split).unlink(missing_ok=True)


def _official(archive: Path, md5: str | None) -> dict | None:
    """The manifest's facts about ``archive`` when it is the official one (its expected md5 is the
    official md5), else None."""
    official = official_archives().get(archive.name)
    return official if official and md5 is not None and official.get("md5") == md5 else None


def _expected_class_counts(archive: Path, md5: str, devkit: Devkit) -> dict[str, int] | None:
    """Per-class image counts the train archive must hold: for the official archive, the official
    devkit's ``num_train_images`` (they sum to the manifest's 1,281,167); None for other archives."""
    official = _official(archive, md5)
    counts = devkit.train_images
    if official and counts and sum(counts.values()) == official.get("images"):
        return counts
    return None


def _stream_train(reader, archive: Path, md5: str, devkit: Devkit, layout: TreeLayout, journal: Journal,
                  workers: _Workers, bar: tqdm) -> None:
    """Send each inner class tar of the train archive to the workers (skipping journaled ones)."""
    expected = set(devkit.wnids)
    counts = _expected_class_counts(archive, md5, devkit)
    seen: set[str] = set()
    split_dir = layout.split_dir("train")

    def finished(result: UnitResult) -> None:
        source = f"{archive}:{result.unit}.tar"
        if not result.files:
            raise ImnetError(f"{source} holds no images; the archive is incomplete or corrupt, download it again")
        if counts is not None and len(result.files) != counts[result.unit]:
            raise ImnetError(f"{source} holds {len(result.files)} images; the official archive has "
                             f"{counts[result.unit]} in this class (num_train_images of {devkit.path.name}); "
                             f"the archive is damaged, download it again")
        journal.record(result, "train")
        bar.set_postfix(classes=len(journal.done), refresh=False)

    for match, data in iter_stream(reader, str(archive), TRAIN_CLASS_TAR, into=workers.reserve):
        wnid = match.group(1)
        if wnid not in expected:
            raise ImnetError(f"{archive}: class tar {wnid}.tar is not one of the devkit's {len(expected)} classes")
        if wnid in seen:
            raise ImnetError(f"{archive}: class tar {wnid}.tar appears twice")
        seen.add(wnid)
        if wnid in journal.done:
            workers.unreserve()
            continue
        for result in workers.submit(len(data), extract_class_tar, data, split_dir, wnid, str(archive)):
            finished(result)
    for result in workers.drain():
        finished(result)
    if seen != expected:
        missing = sorted(expected - seen)
        raise ImnetError(
            f"{archive}: holds {len(seen)} class tars but the devkit lists {len(expected)} classes "
            f"(missing e.g. {', '.join(missing[:3])}); the archive is incomplete"
        )


def _stream_val(reader, archive: Path, md5: str, devkit: Devkit, layout: TreeLayout, journal: Journal,
                workers: _Workers, bar: tqdm) -> None:
    """Send the val images, in chunks, to the workers, each to ``val/<wnid>/`` of its ground truth."""
    truth = devkit.val_class_indices
    seen: set[int] = set()
    split_dir = layout.split_dir("val")
    chunk: list[tuple[str, str, bytes]] = []
    chunk_bytes = 0
    chunk_number = 0

    def flush() -> None:
        nonlocal chunk, chunk_bytes, chunk_number
        unit = f"chunk-{chunk_number:06d}"
        if unit not in journal.done:
            for result in workers.submit(chunk_bytes, write_val_chunk, chunk, split_dir, unit):
                journal.record(result, "val")
                bar.set_postfix(images=sum(len(r.files) for r in journal.done.values()), refresh=False)
        chunk, chunk_bytes, chunk_number = [], 0, chunk_number + 1

    for match, data in iter_stream(reader, str(archive), VAL_IMAGE):
        number = int(match.group(1))
        if not 1 <= number <= len(truth):
            raise ImnetError(
                f"{archive}: {match.group(0)} has no line in the devkit's ground-truth file "
                f"({len(truth)} lines); archive and devkit do not belong together"
            )
        if number in seen:
            raise ImnetError(f"{archive}: {match.group(0)} appears twice")
        seen.add(number)
        chunk.append((devkit.classes[truth[number - 1]].wnid, match.group(0), data))
        chunk_bytes += len(data)
        if len(chunk) >= VAL_CHUNK_FILES or chunk_bytes >= VAL_CHUNK_BYTES:
            flush()
    if chunk:
        flush()
    for result in workers.drain():
        journal.record(result, "val")
    if len(seen) != len(truth):
        raise ImnetError(
            f"{devkit.path}: the ground-truth file has {len(truth)} lines but {archive} holds "
            f"{len(seen)} images; archive and devkit do not belong together"
        )


def _hash_lines(split: str, results: list[UnitResult]):
    """``sha256sum`` lines (``<hex>  <split>/<wnid>/<file>``, relative to DST) of every image, in the
    order of the split's file list: train by (class, name), val by val number. Streamed."""
    for result in results:
        pairs = result.digests()
        if split == "train":
            pairs = sorted(pairs)
        for rel, digest in pairs:
            yield f"{digest}  {split}/{rel}\n"


def units_record(split: str, results: list[UnitResult], classes: list, started: float, workers: int, hashed: bool,
                 created_dir: bool) -> tuple[dict, list[tuple[str, int]], list[dict]]:
    """What the finished units of ``split`` (an ILSVRC2012 split or an eval set) wrote, as the part of its
    ``prep.json`` record every split has, its file list (by class, then name) and its quirks (by file).
    ``classes``: the :class:`~imnet.prep.manifests.ClassInfo` rows."""
    index = {c.wnid: c.class_index for c in classes}
    files = sorted(rel for r in results for rel, _ in r.files)
    entries = [(rel, index[rel.split("/", 1)[0]]) for rel in files]
    per_class: dict[str, dict] = {}
    for result in results:
        for rel, size in result.files:
            counts = per_class.setdefault(rel.split("/", 1)[0], {"images": 0, "bytes": 0})
            counts["images"] += 1
            counts["bytes"] += size
    quirks = sorted((q for r in results for q in r.quirks), key=lambda q: q["file"])
    bad = {q["file"]: {"file": q["file"], "reason": q["action"].removeprefix("kept; ")}
           for q in quirks if q["kind"] == "undecodable"}
    if bad:  # their sizes, for the record (a second pass only when there are any)
        for result in results:
            for rel, size in result.files:
                if f"{split}/{rel}" in bad:
                    bad[f"{split}/{rel}"]["bytes"] = size
    record = {
        "complete": True,
        "images": len(files),
        "bytes": sum(c["bytes"] for c in per_class.values()),
        "classes": dict(sorted(per_class.items())),
        "repaired": [q for q in quirks if q["kind"] not in ("grayscale", "undecodable") and q["action"] != "kept"],
        "grayscale": [q["file"] for q in quirks if q["kind"] == "grayscale"],
        # Every image got PIL's verdict: the ones it refused (loaders and imnet verify read this).
        "decode_checked": "decode" not in os.environ.get(SKIP_CHECKS_ENV, ""),
        "undecodable": list(bad.values()),
        "hashes": layout_hash_name(split) if hashed else None,
        "created_dir": created_dir,
        "workers": workers,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 3),
    }
    return record, entries, quirks


def _split_record(split: str, archive_name: str, archive_bytes: int, md5: str, classes: list, results: list[UnitResult],
                  started: float, workers: int, hashed: bool, created_dir: bool) -> tuple[dict, list[tuple[str, int]]]:
    """The split's ``prep.json`` record and its file list (DALI format entries, in manifest order).
    ``classes``: the :class:`~imnet.prep.manifests.ClassInfo` rows (index order); ``archive_name``,
    ``archive_bytes`` and ``md5`` say what the split was prepared from."""
    record, entries, quirks = units_record(split, results, classes, started, workers, hashed, created_dir)
    if split == "val":
        entries.sort(key=lambda e: e[0].rsplit("/", 1)[1])  # val-number order (zero-padded names)
    present = {rel.rsplit("/", 1)[1] for rel, _ in entries}
    record.update(archive=archive_name, md5=md5, archive_bytes=archive_bytes,
                  quirks_vs_known=cross_check(split, [Quirk(**q) for q in quirks], present, known_quirks()))
    return record, entries


def layout_hash_name(split: str) -> str:
    """The hash list's path relative to DST, as the record names it."""
    return f"meta/{split}.sha256"


def write_split_record(layout: TreeLayout, split: str, split_record: dict, devkit: Devkit | None,
                       top: dict | None = None) -> None:
    """Add ``split``'s completion record to ``prep.json``: temp file, fsync, rename (written last).
    ``top``: more top-level entries (another source's description, for ``imnet.prep.sources``)."""
    from PIL import __version__ as pil_version

    record = read_prep_json(layout)
    record["format"] = 1
    record["imnet_version"] = imnet.__version__
    record["versions"] = {"python": platform.python_version(), "PIL": pil_version}
    if devkit is not None:
        record["devkit"] = {"archive": devkit.path.name, "md5": devkit.md5, "classes": len(devkit.classes),
                            "val_images": len(devkit.val_class_indices)}
    record.update(top or {})
    record["splits"][split] = split_record
    commit_record(layout, record, split)


def commit_record(layout: TreeLayout, record: dict, split: str) -> None:
    """Write ``prep.json`` whole (temp file, fsync, rename, fsync of meta/): the step that makes
    ``split`` complete, so it is the last one and survives a crash of prep."""
    tmp = temp_path(layout.prep_json)
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(record, indent=1, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        _crash_point(f"{split}:record-temp")
        os.replace(tmp, layout.prep_json)
        fsync_dir(layout.meta)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_error(layout.prep_json, err) from err


def prepare_split(split: str, archive: Path, md5: str, checksums_name: str, devkit: Devkit,
                  layout: TreeLayout, workers: _Workers, progress: bool = True) -> dict:
    """Stream, verify and extract one split's archive into ``layout``; write its manifests, its hash
    list and its completion record. Returns the split's record. A bad archive leaves nothing of the
    split behind; a write error, a dead worker or SIGTERM keeps the journal, so the same command
    resumes."""
    started = time.time()
    journal = open_journal(layout, split, _archive_identity(archive, md5))
    size = archive.stat().st_size
    bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"prep {split}",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)
    units = "class tars" if split == "train" else "chunks of val images"
    with kept_or_discarded(f"the {split} split", units, layout, split, journal, workers, bar):
        with HashingReader(archive, on_read=bar.update, threaded=True) as reader:
            workers.reader = reader
            stream = _stream_train if split == "train" else _stream_val
            stream(reader, archive, md5, devkit, layout, journal, workers, bar)
            reader.drain()
            digest = reader.hexdigest()
            workers.reader = None
        check_digest(archive, digest, md5, checksums_name)
    results = sorted(journal.done.values(), key=lambda r: r.unit)
    hashed = all_hashed(results)
    record, entries = _split_record(split, archive.name, archive.stat().st_size, digest, devkit.classes, results,
                                    started, workers.workers, hashed, journal.created_dir)
    with _SIGNALS.protected():
        write_classes(layout.classes_tsv, devkit.classes)
        write_lists(layout, split, entries, _hash_lines(split, results) if hashed else None)
        # Images are not fsynced one by one (a kill cannot lose what the OS holds; a system-wide sync
        # here costs seconds on a busy machine): the record is fsynced, so prep's guarantee is against
        # crashes of prep, not against power loss, where `imnet prep --reverify` checks the tree.
        _crash_point(f"{split}:manifests")
        write_split_record(layout, split, record, devkit)
        _crash_point(f"{split}:record")
        journal.path.unlink(missing_ok=True)
    return record


def _check_archive(archive: Path, md5: str | None, checksums_name: str) -> str:
    """Up-front checks of one archive: present (a file, not a folder), listed in the checksums, and
    the official size when it is an official archive. Returns its expected md5."""
    if archive.is_dir():
        raise ImnetError(f"{archive} is a folder, not the archive file {archive.name}; put the downloaded "
                         f"file itself in --src")
    if not archive.is_file():
        kind = "" if not os.path.lexists(archive) else " (not a regular file)"
        raise ImnetError(f"missing archive {archive}{kind}; download {archive.name} from image-net.org into --src")
    if md5 is None:
        raise ImnetError(f"{checksums_name}: no checksum for {archive.name}")
    official = _official(archive, md5)
    if official and "bytes" in official:
        actual = archive.stat().st_size
        if actual != official["bytes"]:
            raise ImnetError(
                f"{archive}: {actual} bytes, the official archive has {official['bytes']}; "
                f"the download is incomplete or corrupt"
            )
    return md5


def _sample_member_size(archive: Path, split: str) -> float | None:
    """Mean size of the first images in ``archive`` (tar headers only: the first inner class tar's
    first 256 members for train, the first 256 members for val), or None when it cannot be read."""
    sizes = []
    try:
        with tarfile.open(archive, mode="r:") as tar:
            if split == "train":
                member = tar.next()
                if member is None or not member.isreg():
                    return None
                with tarfile.open(fileobj=tar.extractfile(member), mode="r:") as inner:
                    for image in inner:
                        sizes.append(image.size)
                        if len(sizes) >= 256:
                            break
            else:
                for image in tar:
                    sizes.append(image.size)
                    if len(sizes) >= 256:
                        break
    except (tarfile.TarError, OSError, EOFError):
        return None
    return sum(sizes) / len(sizes) if sizes else None


def _space_needed(split: str, archive: Path, md5: str, block: int, classes: int,
                  journaled: list[UnitResult]) -> tuple[int, int]:
    """(bytes, files) a split will take on a file system of ``block``-byte blocks, less what its
    journal says is written already. Every image takes a whole number of blocks (on average half a
    block more than its size, never less than one block); the count of images comes from the
    manifest for an official archive, else from the archive's size and the mean size of its first
    members."""
    official = _official(archive, md5)
    archive_bytes = archive.stat().st_size
    if official and "images" in official:
        images = int(official["images"])
        data = int(official.get("bytes", archive_bytes))
    else:
        mean = _sample_member_size(archive, split) or 110_000.0
        images = max(1, round(archive_bytes / (mean + 512 + 256)))  # tar: a header and padding per member
        data = int(images * mean)
    per_image = max(block, data / images + block / 2)
    # Class folders: a block per 100 entries or so; the manifests and journal in meta/.
    folders = classes * blocks_for(max(1, images // classes) * 40, block)
    total = images * per_image + images * META_BYTES_PER_IMAGE + folders
    written = sum(blocks_for(size, block) for r in journaled for _, size in r.files)
    done_files = sum(len(r.files) for r in journaled)
    return max(0, int(total) - written), max(0, images - done_files) + classes + 8


def _reverify(split: str, src: Path, layout: TreeLayout, split_record: dict, progress: bool) -> None:
    """``--reverify`` on a complete split: re-hash its archive, check every file's presence, the
    per-class sizes and every image's SHA-256 against ``meta/<split>.sha256``; raises
    :class:`ImnetError` on any difference, changes nothing."""
    archive = src / split_record["archive"]
    if archive.is_dir():
        raise ImnetError(f"{archive} is a folder, not the archive file; --reverify needs the archive to re-hash")
    if not archive.is_file():
        raise ImnetError(f"missing archive {archive}; --reverify needs it to re-hash")
    with tqdm(total=archive.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
              desc=f"re-hash {split}", file=sys.stderr, disable=not progress) as bar:
        digest = md5_file(archive, on_read=bar.update)
    check_digest(archive, digest, split_record["md5"], str(layout.prep_json))
    problems = verify_split(layout, split, split_record=split_record, decode=False, progress=progress)
    if not problems:
        problems = check_hashes(layout, split, split_record, progress=progress)
    if problems:
        raise ImnetError(f"{layout.dst}: the {split} split differs from its record: {problems[0]}"
                         + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))


def _identity_mismatch(split: str, split_record: dict, archive: Path, md5: str | None,
                       checksums_name: str) -> str | None:
    """Why the archive in --src is not the one the complete split was prepared from (its size, or the
    md5 the checksum list gives), or None when it matches or is not there to compare."""
    if not archive.is_file():
        return None
    recorded = f"md5 {split_record.get('md5')}, {split_record.get('archive_bytes')} bytes"
    size = archive.stat().st_size
    if split_record.get("archive_bytes") is not None and size != split_record["archive_bytes"]:
        return f"{archive} has {size} bytes, but the {split} split was prepared from an archive of {recorded}"
    if md5 is not None and md5 != split_record.get("md5"):
        return f"{checksums_name} gives md5 {md5} for {archive.name}, but the {split} split was prepared from " \
               f"an archive of {recorded}"
    return None


def _report_bad(layout: TreeLayout, split: str, split_record: dict) -> int:
    """Name the split's undecodable, unacknowledged images on stderr (the first ones); returns how many."""
    bad = [b for b in split_record.get("undecodable", []) if not b.get("acknowledged")]
    for item in bad[:SHOWN_BAD]:
        reason = item.get("reason") or item.get("action", "")
        print(f"imnet prep: {layout.dst / item['file']} does not decode ({reason}); kept, listed as "
              f"undecodable in {layout.prep_json}", file=sys.stderr)
    if len(bad) > SHOWN_BAD:
        print(f"imnet prep: ... and {len(bad) - SHOWN_BAD} more undecodable {split} images", file=sys.stderr)
    return len(bad)


def prepare(src: Path, dst: Path, checksums: Path | None = None, only: str | list[str] | None = None,
            workers: int | None = None, reverify: bool = False, progress: bool = True,
            redo: bool = False) -> dict:
    """Prepare ILSVRC2012 from the archives in ``src`` into the tree ``dst`` (DESIGN.md layout), and
    the eval sets whose archives are there (ImageNetV2, ImageNet-A/-R/-Sketch: :mod:`imnet.prep.evalsets`).

    ``checksums``: an md5sum-format file replacing the shipped official MD5s; ``only``: the splits and
    eval sets to prepare (``"train"``, ``"val"``, set names or aliases such as ``"a"``; a list or a
    comma-separated string); without it train and val, plus every eval set whose archive is in
    ``src`` or which the tree records (when ``src`` holds eval-set archives but neither ILSVRC2012
    image archive, only the eval sets and the complete splits are handled). ``workers``: extraction
    processes (default: CPU count); ``reverify``: on an already prepared split, re-hash the archive
    and check every image's size and SHA-256; ``redo``: prepare the chosen splits again even when
    complete (e.g. from other archives). Holds the tree's lock for the whole run, and refuses a
    ``dst`` holding files it did not write. Returns a summary: ``{"dst", "seconds", "splits": {split:
    {"status", "images", "bytes", "repaired", "undecodable", "seconds"}}}``. User errors raise
    :class:`ImnetError`.
    """
    from imnet.prep.evalsets import archives_in, choose_sets, prepare_eval_sets
    from imnet.prep.sets import resolve_set_names

    t0 = time.time()
    src, dst = Path(src), Path(dst)
    names = None if only is None else resolve_set_names(only)
    if names is not None and not names:
        raise ImnetError("--only names no split or eval set")
    if not src.is_dir():
        raise ImnetError(f"--src {src} is not a folder holding the ILSVRC2012 archives")
    check_src_dst(src, dst)
    if dst.exists() and not dst.is_dir():
        raise ImnetError(f"--dst {dst} is not writable: it exists and is not a folder")
    layout = TreeLayout(dst)
    checksums_name = str(checksums) if checksums else "the shipped manifests/ILSVRC2012.md5"
    md5s = read_checksums(checksums)
    with _SIGNALS, TreeLock(layout.lock, "imnet prep", label="--dst"):
        _crash_point("locked")
        try:
            record = read_prep_json(layout) if dst.is_dir() else {"splits": {}}
            if names is not None:
                splits = [name for name in SPLITS if name in names]
            elif archives_in(src) and not any(os.path.lexists(src / ARCHIVES[s]) for s in SPLITS):
                splits = [s for s in SPLITS if split_is_complete(record, s)]  # eval sets only: check the rest
            else:
                splits = list(SPLITS)
            sets = choose_sets(src, record, None if names is None else names)
            summary = _prepare_locked(src, layout, splits, md5s, checksums_name, workers, reverify, progress,
                                      redo, t0)
            prepare_eval_sets(src, layout, sets, md5s, checksums_name, workers, reverify, progress, redo, summary)
            warn_undecodable(dst, summary)
            summary["seconds"] = round(time.time() - t0, 3)
            return summary
        except Terminated as err:
            if "while preparing" in str(err):
                raise
            raise Terminated(f"terminated by {err}; nothing is left half-done: run the same command again",
                             err.signum) from None


def _prepare_locked(src: Path, layout: TreeLayout, splits: list[str], md5s: dict[str, str], checksums_name: str,
                    workers: int | None, reverify: bool, progress: bool, redo: bool, t0: float) -> dict:
    dst = layout.dst
    record = read_prep_json(layout) if dst.is_dir() else {"splits": {}}
    scans = check_owned(layout, record, only=SPLITS)  # the eval sets' folders: imnet.prep.evalsets
    remove_stale_temp_files(layout.meta)  # left by killed runs; nothing else writes while we hold the lock
    summary: dict = {"dst": str(dst), "splits": {}}

    todo, discard = [], []
    for split in splits:
        split_record = record["splits"].get(split, {})
        if split_is_complete(record, split):
            archive = src / ARCHIVES[split]
            mismatch = _identity_mismatch(split, split_record, archive, md5s.get(archive.name), checksums_name)
            again = (lambda: _reverify(split, src, layout, split_record, progress)) if reverify else None
            if keep_complete(layout, split, split_record, scans[split].counts, f"the {split} split",
                             mismatch and f"{mismatch}: a different archive", redo, again, summary):
                continue
            discard.append(split)
        elif redo:
            discard.append(split)
        todo.append(split)
    if not todo:
        summary["seconds"] = round(time.time() - t0, 3)
        return summary

    devkit_path = src / ARCHIVES["devkit"]
    devkit_md5 = _check_archive(devkit_path, md5s.get(devkit_path.name), checksums_name)
    archives = {split: src / ARCHIVES[split] for split in todo}
    expected = {split: _check_archive(path, md5s.get(path.name), checksums_name) for split, path in archives.items()}

    devkit = parse_devkit(devkit_path)
    check_digest(devkit_path, devkit.md5, devkit_md5, checksums_name)

    make_room(layout, todo, discard, lambda split, journaled, block: _space_needed(
        split, archives[split], expected[split], block, len(devkit.classes), journaled))

    workers = workers if workers is not None else (os.cpu_count() or 1)
    unit_bytes = archives["train"].stat().st_size / len(devkit.classes) if "train" in archives else 0
    arena_bytes = int(min(ARENA_MAX, max(ARENA_MIN, (workers + 2) * 1.5 * unit_bytes)))
    pool = _Workers(workers, arena_bytes)
    try:
        for split in todo:
            split_record = prepare_split(split, archives[split], expected[split], checksums_name, devkit,
                                         layout, pool, progress)
            summary["splits"][split] = prepared_line(layout, split, split_record)
    finally:
        pool.close()
    summary["seconds"] = round(time.time() - t0, 3)
    return summary


def format_summary(summary: dict) -> str:
    """One line for stdout: what each split is now, and where."""
    parts = []
    for split, info in summary["splits"].items():
        rate = info["images"] / info["seconds"] if info["seconds"] else 0
        extra = f", {rate:.0f} images/s" if info["status"] == "prepared" and rate else ""
        bad = f", {info['undecodable']} undecodable" if info.get("undecodable") else ""
        note = f" ({info['note']})" if info.get("note") else ""
        parts.append(f"{split} {info['status']}: {info['images']} images, {info['bytes'] / 1e6:.1f} MB, "
                     f"{info['repaired']} repaired{bad}{extra}{note}")
    source = f" from {summary['source']}" if summary.get("source") else ""
    return f"{'; '.join(parts)}{source} -> {summary['dst']} ({summary['seconds']:.1f}s)"
