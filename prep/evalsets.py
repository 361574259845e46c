"""``imnet prep`` for the eval sets beside ILSVRC2012 val: ImageNetV2 (three sets), ImageNet-A, -R and
-Sketch, from their publishers' archives (:mod:`imnet.prep.sets`) into ``DST/<set>/<wnid>/<file>``.

Each archive is recognised by its name in ``--src`` and checked against its publisher's layout as it
streams (a member outside it is refused, naming it). The guarantees are those of the ILSVRC2012
splits, with the same machinery (:mod:`imnet.prep.pipeline`): the tree's lock, ownership of what is
written, one read pass (the tar, the gzip stream or the zip's local entries read front to back
through a hashing reader: MD5 and SHA-256 of every byte), every image decode-checked, repaired by
content (a PNG or CMYK file under a JPEG name) and SHA-256-hashed by the worker processes, chunks of
images journaled as they finish (``kill -9`` and the same command resumes), the file list, hash list
and completion record written last, a bad archive discarded whole.

The MD5 is checked where one is known: the ``--checksums`` list, else the one the publisher gives
(ImageNet-A and -R, ``manifests/evalsets.md5``); ImageNetV2 and ImageNet-Sketch publish none, so
their archives' MD5 and SHA-256 are recorded, and a later ``--reverify`` or re-run compares with them.

The labels are class indices of the tree's 1000 classes (``meta/classes.tsv``; from the devkit in
``--src`` when the tree has none yet): ImageNetV2's folder ``i`` is class ``i`` (never a string sort),
the other sets' folders are wnids, located among the sorted wnids.
"""
from __future__ import annotations

import os
import platform
import re
import stat
import struct
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

import imnet
from imnet.errors import ImnetError
from imnet.prep.checksum import HashingReader, check_digest
from imnet.prep.extract import UnitResult, write_images
from imnet.prep.layout import TreeLayout, blocks_for, read_prep_json, split_is_complete
from imnet.prep.manifests import ClassInfo, read_classes, write_classes
from imnet.prep.owner import WNID, check_owned
from imnet.prep.sets import EVAL_SET_NAMES, EVAL_SETS, EvalSetSpec, published_facts, published_md5s

CHUNK_FILES = 256
CHUNK_BYTES = 32 << 20
MEAN_IMAGE_BYTES = 110_000  # space estimate when no count is published (ImageNet-like JPEGs)
TAR_BUFFER = 1 << 20
_INDEX_FOLDER = re.compile(r"^(0|[1-9][0-9]{0,5})$")  # ImageNetV2's class-index folders, no leading zeros
_ZIP_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_ZIP_LOCAL_MAGIC = 0x04034B50


def archives_in(src: Path) -> list[str]:
    """The eval sets whose publisher's archive (by file name) is in ``src``, in :data:`EVAL_SET_NAMES` order."""
    return [name for name, spec in EVAL_SETS.items() if os.path.lexists(Path(src) / spec.archive)]


def expected_md5(spec: EvalSetSpec, checksums: dict[str, str]) -> tuple[str | None, str]:
    """(the MD5 the archive must have, where it comes from): the ``--checksums`` list's entry, else
    the publisher's (shipped ``manifests/evalsets.md5``), else (None, "") when no one publishes one."""
    if spec.archive in checksums:
        return checksums[spec.archive], "checksum list"
    published = published_md5s().get(spec.archive)
    if published:
        return published, "manifests/evalsets.md5 (the publisher's)"
    return None, ""


# --- reading the archives ------------------------------------------------------------------------------

def _check_name(name: str, archive: Path) -> str:
    """A member name made safe to look at: refuse absolute paths, ``..``, backslashes, control
    characters and names that are not UTF-8; drop a leading ``./`` and a trailing ``/``."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise ImnetError(f"{archive}: member {name!r} has an absolute path; refusing it")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ImnetError(f"{archive}: member {name.encode('utf-8', 'surrogateescape')!r} has a name that is "
                         f"not UTF-8 (a file list is UTF-8 text); refusing it") from None
    if "\\" in name or re.search(r"[\x00-\x1f\x7f]", name):
        raise ImnetError(f"{archive}: member {name!r} has a backslash or a control character in its name; refusing it")
    while name.startswith("./"):
        name = name[2:]
    if ".." in name.split("/"):
        raise ImnetError(f"{archive}: member {name!r} points outside the destination ('..'); refusing it")
    return name.rstrip("/")


def _tar_members(reader, archive: Path, gzipped: bool) -> Iterator[tuple[str, bool, bytes]]:
    """(name, is_dir, data) of each member of a tar (``gzipped``: a .tar.gz), read front to back."""
    try:
        with tarfile.open(fileobj=reader, mode="r|gz" if gzipped else "r|", bufsize=TAR_BUFFER) as tar:
            for member in tar:
                name = _check_name(member.name, archive)
                if member.issym() or member.islnk():
                    raise ImnetError(f"{archive}: member {member.name!r} is a link (to {member.linkname!r}); "
                                     f"refusing it")
                if member.isdev() or member.isfifo():
                    raise ImnetError(f"{archive}: member {member.name!r} is a device or fifo; refusing it")
                if member.isdir():
                    yield name, True, b""
                    continue
                if not member.isreg():
                    raise ImnetError(f"{archive}: member {member.name!r} is not a regular file; refusing it")
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    raise tarfile.ReadError("unexpected end of data")
                yield name, False, data
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise ImnetError(f"{archive}: truncated or corrupt archive ({err}); download it again") from err


def _zip_members(reader: HashingReader, archive: Path) -> Iterator[tuple[str, bool, bytes]]:
    """(name, is_dir, data) of each entry of a zip, in the order of their bytes in the file: the
    central directory (at the end) is read first for the entries' offsets and sizes, then each
    local entry is read, inflated and CRC-checked through ``reader``, which only moves forward."""
    try:
        with zipfile.ZipFile(archive) as listing:
            infos = sorted(listing.infolist(), key=lambda info: info.header_offset)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ImnetError(f"{archive}: not a readable zip archive ({err}); download it again") from err
    for info in infos:
        name = _check_name(info.filename, archive)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise ImnetError(f"{archive}: member {info.filename!r} is a link; refusing it")
        if info.header_offset < reader.tell():
            raise ImnetError(f"{archive}: member {info.filename!r} overlaps the member before it; refusing the archive")
        if info.is_dir():
            yield name, True, b""
            continue
        if kind not in (0, stat.S_IFREG):
            raise ImnetError(f"{archive}: member {info.filename!r} is not a regular file; refusing it")
        if info.flag_bits & 0x1:
            raise ImnetError(f"{archive}: member {info.filename!r} is encrypted; refusing it")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ImnetError(f"{archive}: member {info.filename!r} uses compression method {info.compress_type}, "
                             f"not stored or deflated; refusing it")
        try:
            reader.seek(info.header_offset)
            header = reader.read(_ZIP_LOCAL_HEADER.size)
            if len(header) != _ZIP_LOCAL_HEADER.size:
                raise EOFError("unexpected end of file")
            fields = _ZIP_LOCAL_HEADER.unpack(header)
            if fields[0] != _ZIP_LOCAL_MAGIC:
                raise zipfile.BadZipFile(f"no local header at byte {info.header_offset}")
            reader.read(fields[9] + fields[10])  # the local name and extra field
            raw = reader.read(info.compress_size)
            if len(raw) != info.compress_size:
                raise EOFError("unexpected end of file")
            if info.compress_type == zipfile.ZIP_DEFLATED:
                inflate = zlib.decompressobj(-15)
                data = inflate.decompress(raw, info.file_size + 1)
            else:
                data = raw
            if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
                raise zipfile.BadZipFile(f"member {info.filename!r} does not match its size or CRC-32")
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise ImnetError(f"{archive}: truncated or corrupt zip archive ({err}); download it again") from err
        yield name, False, data


def iter_members(spec: EvalSetSpec, reader: HashingReader, archive: Path) -> Iterator[tuple[str, bool, bytes]]:
    """Every member of ``archive`` (packed as ``spec`` says), safety-checked, front to back."""
    if spec.packing == "zip":
        return _zip_members(reader, archive)
    return _tar_members(reader, archive, gzipped=spec.packing == "tar.gz")


def _layout_hint(spec: EvalSetSpec) -> str:
    folder = "<class index>" if spec.folders == "index" else "<wnid>"
    extras = f" and {', '.join(f'{spec.roots[0]}/{e}' for e in spec.extras)}" if spec.extras else ""
    return f"{spec.title}'s layout is {spec.roots[0]}/{folder}/<image>{extras}"


def place_member(spec: EvalSetSpec, name: str, is_dir: bool, wnids: list[str], archive: Path,
                 known: set[str] | frozenset[str] | None = None) -> tuple[str, str] | None:
    """Where a member goes in the tree: ``(wnid, file name)`` for an image, None for what is skipped
    (folders, the README). ImageNetV2's folder ``i`` is the tree's class ``i`` (``wnids`` in class
    index order; ``known``: the same wnids as a set, when the caller has one). A member outside the
    publisher's layout is refused, naming it."""
    parts = name.split("/")
    refuse = f"{archive}: unexpected member {name!r} ({_layout_hint(spec)}); refusing it"
    if not parts[0] or parts[0] not in spec.roots or len(parts) > 3:
        raise ImnetError(refuse)
    if len(parts) == 1:
        if is_dir:
            return None
        raise ImnetError(refuse)
    if len(parts) == 2 and not is_dir:
        if parts[1] in spec.extras:
            return None
        raise ImnetError(refuse)
    folder = parts[1]
    if spec.folders == "index":
        if not _INDEX_FOLDER.match(folder):
            raise ImnetError(f"{archive}: member {name!r}: folder {folder!r} is not a class index "
                             f"({_layout_hint(spec)}); refusing it")
        if int(folder) >= len(wnids):
            raise ImnetError(f"{archive}: member {name!r}: class index {folder} is not one of the tree's "
                             f"{len(wnids)} classes (0..{len(wnids) - 1}); archive and tree do not belong together")
        wnid = wnids[int(folder)]
    else:
        if not WNID.match(folder):
            raise ImnetError(f"{archive}: member {name!r}: folder {folder!r} is not a wnid ({_layout_hint(spec)}); "
                             f"refusing it")
        if folder not in (known if known is not None else set(wnids)):
            raise ImnetError(f"{archive}: member {name!r}: class {folder} is not one of the tree's {len(wnids)} "
                             f"classes (meta/classes.tsv); archive and tree do not belong together")
        wnid = folder
    if is_dir:
        if len(parts) == 2:
            return None
        raise ImnetError(refuse)
    if not spec.image.match(parts[2]) or len(parts[2].encode("utf-8")) > 255:
        raise ImnetError(f"{archive}: member {name!r}: {parts[2]!r} is not an image file name of {spec.title} "
                         f"(expected {spec.image.pattern}); refusing it")
    return wnid, parts[2]


# --- the 1000 classes -----------------------------------------------------------------------------------

def tree_classes(layout: TreeLayout, src: Path, checksums: dict[str, str], checksums_name: str,
                 needed_by: str) -> tuple[list[ClassInfo], bool]:
    """The tree's classes (``meta/classes.tsv``), else those of the devkit in ``src`` (checked by its
    MD5); returns (classes, whether they came from the devkit and classes.tsv must be written). The
    eval sets are labelled in that index space, so without either :class:`ImnetError` says what to do."""
    if layout.classes_tsv.is_file():
        return read_classes(layout.dst), False
    from imnet.prep.devkit import parse_devkit
    from imnet.prep.pipeline import ARCHIVES, _check_archive

    devkit_path = Path(src) / ARCHIVES["devkit"]
    if not devkit_path.is_file():
        raise ImnetError(
            f"{needed_by} is labelled with ImageNet's 1000 class indices (sorted wnids), which come from the "
            f"ILSVRC2012 devkit: put {ARCHIVES['devkit']} in --src {src}, or prepare into a tree that has "
            f"{layout.classes_tsv} (written by an earlier imnet prep of train or val)")
    devkit_md5 = _check_archive(devkit_path, checksums.get(devkit_path.name), checksums_name)
    devkit = parse_devkit(devkit_path)
    check_digest(devkit_path, devkit.md5, devkit_md5, checksums_name)
    return devkit.classes, True


# --- one set --------------------------------------------------------------------------------------------

def _space_needed(spec: EvalSetSpec, archive: Path, official: bool, block: int, journaled: list[UnitResult],
                  tree_classes: int) -> tuple[int, int]:
    """(bytes, files) the set will take: its images in whole blocks (the archive's size, JPEGs do not
    compress; the count published for an official archive, else estimated), a folder per class, less
    what is journaled."""
    size = archive.stat().st_size
    images = published_facts(spec.name)["images"] if official else max(1, round(size / MEAN_IMAGE_BYTES))
    per_image = max(block, size / images + block / 2)
    classes = min(published_facts(spec.name)["classes"], tree_classes)
    total = images * per_image + images * 320 + classes * block
    written = sum(blocks_for(s, block) for r in journaled for _, s in r.files)
    done = sum(len(r.files) for r in journaled)
    return max(0, int(total) - written), max(0, images - done) + classes + 8


def _check_contents(spec: EvalSetSpec, archive: Path, per_class: dict[str, dict], classes: list[ClassInfo],
                    official: bool) -> None:
    """What a whole archive must hold, once streamed: images; for ImageNetV2 and -Sketch every class of
    the tree; for ImageNet-A/-R exactly the publisher's 200 wnids when the tree holds them all (the
    real ImageNet); for an archive with the published MD5 the published image count."""
    images = sum(c["images"] for c in per_class.values())
    if not images:
        raise ImnetError(f"{archive} holds no images; the archive is incomplete or not {spec.title}")
    if spec.every_class:
        missing = [c for c in classes if c.wnid not in per_class]
        if missing:
            shown = ", ".join(f"{c.class_index} ({c.wnid})" for c in missing[:3])
            raise ImnetError(f"{archive} holds images of {len(classes) - len(missing)} of the tree's {len(classes)} "
                             f"classes (none of class {shown}{', ...' if len(missing) > 3 else ''}); {spec.title} "
                             f"covers every class: the archive is incomplete")
    facts = published_facts(spec.name)
    if spec.subset and set(facts["wnids"]) <= {c.wnid for c in classes}:
        expected, have = set(facts["wnids"]), set(per_class)
        if have != expected:
            missing, extra = sorted(expected - have), sorted(have - expected)
            raise ImnetError(f"{archive} holds {len(have)} class folders, {spec.title} has the {len(expected)} of "
                             f"manifests/evalsets.json" + (f" (missing {', '.join(missing[:3])})" if missing else "")
                             + (f" (not in it: {', '.join(extra[:3])})" if extra else "") + "; the archive is damaged")
    if official and images != facts["images"]:
        raise ImnetError(f"{archive} holds {images} images; the published {spec.title} archive has {facts['images']}: "
                         f"the archive is damaged, download it again")


def _hash_lines(name: str, results: list[UnitResult]):
    """``sha256sum`` lines of every image (paths relative to DST), in file-list order."""
    pairs = sorted(pair for result in results for pair in result.digests())
    for rel, digest in pairs:
        yield f"{digest}  {name}/{rel}\n"


def _set_record(spec: EvalSetSpec, archive: Path, md5: str, sha256: str, md5_from: str, official: bool,
                classes: list[ClassInfo], results: list[UnitResult], started: float, workers: int, hashed: bool,
                created_dir: bool) -> tuple[dict, list[tuple[str, int]]]:
    """The set's ``prep.json`` record and its file list (by class, then file name)."""
    from imnet.prep.pipeline import units_record

    record, entries, _ = units_record(spec.name, results, classes, started, workers, hashed, created_dir)
    index = {c.wnid: c.class_index for c in classes}
    subset = sorted(index[w] for w in record["classes"])
    record.update({
        "kind": "eval set",
        "set": spec.name,
        "title": spec.title,
        "archive": archive.name,
        "md5": md5,
        "md5_checked_against": md5_from or None,  # None: no published checksum, the MD5 and SHA-256 are recorded
        "sha256": sha256,
        "archive_bytes": archive.stat().st_size,
        "official": official,
        # The class indices (of the tree's classes) the set holds: ImageNet-A/-R are scored on these.
        "class_indices": subset,
        "protocol": (f"argmax over the {len(subset)} classes of the set" if spec.subset
                     else f"argmax over all {len(classes)} classes"),
    })
    return record, entries


def write_set_record(layout: TreeLayout, name: str, set_record: dict) -> None:
    """Add the set's completion record to ``prep.json`` (temp file, fsync, rename: written last)."""
    from PIL import __version__ as pil_version

    from imnet.prep.pipeline import commit_record

    record = read_prep_json(layout)
    record["format"] = 1
    record["imnet_version"] = imnet.__version__
    record["versions"] = {"python": platform.python_version(), "PIL": pil_version}
    record["splits"][name] = set_record
    commit_record(layout, record, name)


def prepare_set(spec: EvalSetSpec, archive: Path, md5: str | None, md5_from: str, classes: list[ClassInfo],
                write_classes_tsv: bool, layout: TreeLayout, workers, progress: bool = True) -> dict:
    """Stream, check and extract one eval set's archive into ``DST/<set>``; then its file list, hash
    list and completion record. Returns the record. A bad archive (a refused member, a checksum
    mismatch, missing classes) leaves nothing of the set behind; a write error, a dead worker or
    SIGTERM keeps the journal, so the same command resumes."""
    from imnet.prep.pipeline import (_SIGNALS, _archive_identity, _crash_point, all_hashed, kept_or_discarded,
                                     open_journal, write_lists)

    name = spec.name
    started = time.time()
    journal = open_journal(layout, name, _archive_identity(archive, md5))
    split_dir = layout.split_dir(name)
    wnids = [c.wnid for c in classes]
    known = frozenset(wnids)
    official = md5 is not None and md5 == published_facts(name).get("md5")
    bar = tqdm(total=archive.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"prep {name}",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)
    seen: set[str] = set()
    chunk: list[tuple[str, str, bytes]] = []
    state = {"bytes": 0, "number": 0}

    def finished(result: UnitResult) -> None:
        journal.record(result, name)
        bar.set_postfix(images=sum(len(r.files) for r in journal.done.values()), refresh=False)

    def flush() -> None:
        unit = f"chunk-{state['number']:06d}"
        if unit not in journal.done:
            for result in workers.submit(state["bytes"], write_images, list(chunk), split_dir, unit, name):
                finished(result)
        chunk.clear()
        state["bytes"] = 0
        state["number"] += 1

    with kept_or_discarded(name, "chunks", layout, name, journal, workers, bar):
        with HashingReader(archive, on_read=bar.update, threaded=True, sha256=True) as reader:
            workers.reader = None  # whole members travel by pipe: no shared buffer to guard
            for member, is_dir, data in iter_members(spec, reader, archive):
                placed = place_member(spec, member, is_dir, wnids, archive, known)
                if placed is None:
                    continue
                rel = f"{placed[0]}/{placed[1]}"
                if rel in seen:
                    raise ImnetError(f"{archive}: {member!r} is the second member that would be {name}/{rel}; "
                                     f"refusing the archive")
                seen.add(rel)
                chunk.append((placed[0], placed[1], data))
                state["bytes"] += len(data)
                if len(chunk) >= CHUNK_FILES or state["bytes"] >= CHUNK_BYTES:
                    flush()
            if chunk:
                flush()
            for result in workers.drain():
                finished(result)
            reader.drain()
            digest, sha256 = reader.hexdigest(), reader.sha256_hexdigest()
        if md5 is not None:
            check_digest(archive, digest, md5, md5_from)
        results = sorted(journal.done.values(), key=lambda r: r.unit)
        per_class: dict[str, dict] = {}
        for result in results:
            for rel, _ in result.files:
                per_class.setdefault(rel.split("/", 1)[0], {"images": 0})["images"] += 1
        _check_contents(spec, archive, per_class, classes, official)
    hashed = all_hashed(results)
    record, entries = _set_record(spec, archive, digest, sha256, md5_from, official, classes, results, started,
                                  workers.workers, hashed, journal.created_dir)
    with _SIGNALS.protected():
        if write_classes_tsv or not layout.classes_tsv.is_file():
            write_classes(layout.classes_tsv, classes)
        write_lists(layout, name, entries, _hash_lines(name, results) if hashed else None)
        _crash_point(f"{name}:manifests")
        write_set_record(layout, name, record)
        _crash_point(f"{name}:record")
        journal.path.unlink(missing_ok=True)
    return record


# --- every set of a run ------------------------------------------------------------------------------------

def choose_sets(src: Path, record: dict, requested: list[str] | None) -> list[str]:
    """The eval sets a run handles: those ``requested`` (``--only``), else every set whose archive is in
    ``src`` and every set the tree records (those are checked cheaply)."""
    if requested is not None:
        return [name for name in EVAL_SET_NAMES if name in requested]
    found = set(archives_in(src)) | {name for name in EVAL_SET_NAMES if name in record.get("splits", {})}
    return [name for name in EVAL_SET_NAMES if name in found]


def prepare_eval_sets(src: Path, layout: TreeLayout, sets: list[str], checksums: dict[str, str],
                      checksums_name: str, workers: int | None, reverify: bool, progress: bool, redo: bool,
                      summary: dict) -> None:
    """Prepare (or check, or re-verify) the eval sets ``sets`` of the tree, adding a line per set to
    ``summary["splits"]``. Runs under the tree's lock, after the ILSVRC2012 splits of the same run."""
    from imnet.prep.pipeline import _identity_mismatch, _reverify, _Workers, keep_complete, make_room, prepared_line

    if not sets:
        return
    dst = layout.dst
    record = read_prep_json(layout) if dst.is_dir() else {"splits": {}}
    scans = check_owned(layout, record, writing=tuple(sets), only=tuple(sets))
    todo, discard, expected = [], [], {}
    for name in sets:
        spec = EVAL_SETS[name]
        archive = Path(src) / spec.archive
        expected[name] = expected_md5(spec, checksums)
        set_record = record["splits"].get(name, {})
        if split_is_complete(record, name):
            mismatch = _identity_mismatch(name, set_record, archive, expected[name][0], expected[name][1] or
                                          checksums_name)
            again = (lambda: _reverify(name, Path(src), layout, set_record, progress)) if reverify else None
            if keep_complete(layout, name, set_record, scans[name].counts, name,
                             mismatch and f"{mismatch}: a different archive", redo, again, summary):
                continue
            discard.append(name)
        elif redo:
            discard.append(name)
        todo.append(name)
    if not todo:
        return

    for name in todo:
        spec = EVAL_SETS[name]
        archive = Path(src) / spec.archive
        if archive.is_dir():
            raise ImnetError(f"{archive} is a folder, not the archive file {archive.name}; put the downloaded file "
                             f"itself in --src")
        if not archive.is_file():
            kind = "" if not os.path.lexists(archive) else " (not a regular file)"
            raise ImnetError(f"missing archive {archive}{kind}; download {archive.name} ({spec.title}) from "
                             f"{spec.source} into --src")
    classes, from_devkit = tree_classes(layout, Path(src), checksums, checksums_name,
                                        needed_by=" and ".join(EVAL_SETS[n].archive for n in todo))

    def need(name: str, journaled: list, block: int) -> tuple[int, int]:
        spec, md5 = EVAL_SETS[name], expected[name][0]
        official = md5 is not None and md5 == published_facts(name).get("md5")
        return _space_needed(spec, Path(src) / spec.archive, official, block, journaled, len(classes))

    make_room(layout, todo, discard, need)

    pool = _Workers(workers if workers is not None else (os.cpu_count() or 1))
    try:
        for name in todo:
            spec = EVAL_SETS[name]
            md5, md5_from = expected[name]
            set_record = prepare_set(spec, Path(src) / spec.archive, md5, md5_from or "", classes, from_devkit,
                                     layout, pool, progress)
            from_devkit = False
            summary["splits"][name] = dict(prepared_line(layout, name, set_record),
                                           note="" if md5 is not None else "no published checksum: MD5 and "
                                                                           "SHA-256 recorded")
    finally:
        pool.close()
