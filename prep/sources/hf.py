"""The Hugging Face dataset ``ILSVRC/imagenet-1k``: its ``.tar.gz`` archives, read as streams.

Repository files (``data/`` as the dataset's loading script names them)::

    data/train_images_0.tar.gz ... data/train_images_4.tar.gz   1,281,167 images, <name>_<wnid>.JPEG
    data/val_images.tar.gz                                      50,000 images, ILSVRC2012_val_XXXXXXXX_<wnid>.JPEG
    data/test_images.tar.gz                                     no labels: skipped
    classes.py                                                  IMAGENET2012_CLASSES: wnid -> names

``--src`` may be the hub cache (``~/.cache/huggingface/hub``, or ``$HF_HOME``), the dataset's folder in
it (``datasets--ILSVRC--imagenet-1k``), one snapshot (``snapshots/<commit>``), or a folder holding the
files (``hf download --local-dir``, or the archives copied anywhere, with or without ``data/``). In the
hub cache the snapshot's files are symlinks into ``blobs/``, resolved here; an LFS blob is named by
its SHA-256, and a ``--local-dir`` download records it (``.cache/huggingface/download/<file>.metadata``,
trusted while the file is not newer): either is checked on the bytes as they are read. Every archive is read once, front to
back, through gzip (whose CRC-32 and length are checked at its end) and tar, never unpacked to disk;
the label is the wnid suffix of each name, which is dropped (``n01440764_10026_n01440764.JPEG`` ->
``n01440764_10026.JPEG``). Members other than ``.JPEG`` files are skipped and counted.
"""
from __future__ import annotations

import gzip
import os
import re
import tarfile
import zlib
from pathlib import Path

from imnet.errors import ImnetError
from imnet.prep.checksum import HashingReader
from imnet.prep.devkit import Devkit
from imnet.prep.extract import write_images
from imnet.prep.sources.base import (
    CHUNK_BYTES,
    CHUNK_FILES,
    ClassList,
    Source,
    SplitPlan,
    Unit,
    chunks,
    fingerprint,
    label_of,
    make_class_list,
    official_name,
    official_wnids,
)
from imnet.prep.sources.classlist import read_classes_py
from imnet.prep.sources.work import ReadError
from imnet.prep.stream import check_member

REPO_FOLDERS = ("datasets--ILSVRC--imagenet-1k", "datasets--imagenet-1k")
ARCHIVES = {"train": [f"train_images_{i}.tar.gz" for i in range(5)], "val": ["val_images.tar.gz"]}
TEST_ARCHIVE = "test_images.tar.gz"
CLASSES_PY = "classes.py"
SHA256_BLOB = re.compile(r"^[0-9a-f]{64}$")
ANY_MEMBER = re.compile(r"^(?:[^/]+/)*[^/]+$")  # safety checks only; names are read below
SHOWN_SKIPPED = 20
HF_NAMES = {"train": "n01440764_10026_n01440764.JPEG", "val": "ILSVRC2012_val_00000001_n01751748.JPEG"}
DOWNLOAD_HINT = ("hf download ILSVRC/imagenet-1k --repo-type dataset --include 'data/*.tar.gz' --include classes.py")


def _snapshot(repo: Path) -> Path:
    """The snapshot to read in a hub-cache dataset folder: the one ``refs/main`` names, else the only one."""
    snapshots = repo / "snapshots"
    main = repo / "refs" / "main"
    if main.is_file():
        commit = main.read_text(encoding="utf-8").strip()
        if (snapshots / commit).is_dir():
            return snapshots / commit
    found = sorted(p for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise ImnetError(f"{repo}: no snapshot in the hub cache folder; download the dataset first ({DOWNLOAD_HINT})")
    raise ImnetError(f"{repo}: {len(found)} snapshots and no refs/main naming one of them; give the snapshot "
                     f"folder itself as --src (e.g. {found[-1]})")


def find_folder(src: Path) -> Path | None:
    """The folder holding the dataset's files for ``src`` (hub cache, its dataset folder, a snapshot, a
    user folder), or None when ``src`` holds no ``ILSVRC/imagenet-1k`` files."""
    for base in (src, src / "hub"):
        for name in REPO_FOLDERS:
            if (base / name / "snapshots").is_dir():
                return _snapshot(base / name)
    if src.name in REPO_FOLDERS and (src / "snapshots").is_dir():
        return _snapshot(src)
    names = [a for split in ARCHIVES.values() for a in split] + [TEST_ARCHIVE]
    for folder in (src / "data", src):
        if any(os.path.lexists(folder / name) for name in names):
            return src
    return None



def _archive_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / "data" / name, folder / name):
        if os.path.lexists(candidate):
            return candidate
    return None


def _local_dir_etag(folder: Path, path: Path, target: Path) -> str | None:
    """The SHA-256 that ``hf download --local-dir`` recorded for ``path`` (its
    ``.cache/huggingface/download/<file>.metadata``: commit, etag, time), when the file has not changed
    since (the rule huggingface_hub applies itself), else None. Read only: --src is never written."""
    try:
        rel = path.relative_to(folder)
        lines = (folder / ".cache" / "huggingface" / "download" / f"{rel}.metadata").read_text().splitlines()
        etag, stamp = lines[1].strip(), float(lines[2])
    except (ValueError, IndexError, OSError):
        return None
    return etag if SHA256_BLOB.match(etag) and target.stat().st_mtime - 1 <= stamp else None


def _resolve(path: Path, folder: Path) -> tuple[Path, str | None, str | None]:
    """(the file behind ``path``, the SHA-256 it must have or None, what says so). In the hub cache an
    LFS file is a link to ``blobs/<its SHA-256>``; a ``--local-dir`` download records it in its
    metadata. A link whose target is missing (an interrupted download) is an error naming both."""
    target = path.resolve()
    if not target.is_file():
        if path.is_symlink():
            raise ImnetError(f"{path} is a link to {target}, which is missing (an interrupted download?); download "
                             f"it again ({DOWNLOAD_HINT})")
        raise ImnetError(f"{path} is not a file")
    if target.parent.name == "blobs" and SHA256_BLOB.match(target.name):
        return target, target.name, "the hub's blob name"
    etag = _local_dir_etag(folder, path, target)
    return target, etag, "the download's metadata (.cache/huggingface/download)" if etag else None


class HFSource(Source):
    kind = "hf"
    summary = ("the Hugging Face dataset ILSVRC/imagenet-1k: the hub cache, a snapshot, or a folder with "
               "data/train_images_{0..4}.tar.gz, data/val_images.tar.gz and classes.py")

    def __init__(self, src: Path, folder: Path):
        super().__init__(src)
        self.folder = folder

    @classmethod
    def detect(cls, src: Path) -> "HFSource | None":
        if not src.is_dir():
            return None
        folder = find_folder(src)
        if folder is None:
            parquet = sorted((src / "data").glob("*.parquet")) if (src / "data").is_dir() else []
            if parquet and any(p.name.startswith(("train-", "validation-")) for p in parquet):
                raise ImnetError(f"{src}/data holds the parquet files of the dataset, not its .tar.gz archives; "
                                 f"imnet prep reads data/train_images_{{0..4}}.tar.gz and data/val_images.tar.gz "
                                 f"({DOWNLOAD_HINT})")
            return None
        return cls(src, folder)

    def splits(self) -> list[str]:
        return [s for s, names in ARCHIVES.items() if any(_archive_path(self.folder, n) for n in names)]

    def class_list(self, devkit: Devkit | None) -> ClassList:
        path = self.folder / CLASSES_PY
        if not os.path.lexists(path) and self.folder.name == "data":  # --src named the data/ folder itself
            path = self.folder.parent / CLASSES_PY if os.path.lexists(self.folder.parent / CLASSES_PY) else path
        if os.path.lexists(path):
            target = _resolve(path, self.folder)[0]
            return make_class_list(read_classes_py(target), str(path), devkit)
        if devkit is not None:
            return make_class_list({c.wnid: c.words for c in devkit.classes}, str(devkit.path), devkit)
        return make_class_list({w: "" for w in official_wnids()},
                               f"the 1000 ILSVRC2012 wnids (manifests/ILSVRC2012_wnids.txt; no {path})")

    def archives(self, split: str) -> list[tuple[Path, Path, str | None, str | None]]:
        """(path in the source, the file read, expected SHA-256 or None, what says so) of each archive of ``split``;
        all must be there (the train split is the five archives together)."""
        found, missing = [], []
        for name in ARCHIVES[split]:
            path = _archive_path(self.folder, name)
            if path is None:
                missing.append(name)
                continue
            found.append((path, *_resolve(path, self.folder)))
        if missing:
            raise ImnetError(f"{self.folder}: data/{missing[0]} is missing ({len(missing)} of the {len(ARCHIVES[split])} "
                             f"{split} archives); the {split} split is all of "
                             f"{', '.join(ARCHIVES[split])} ({DOWNLOAD_HINT})")
        return found

    def plan(self, split: str, classes: ClassList) -> SplitPlan:
        archives = self.archives(split)
        files = [{"file": str(path.relative_to(self.folder)), "bytes": target.stat().st_size,
                  "mtime_ns": target.stat().st_mtime_ns, "sha256_expected": expected, "sha256_from": said}
                 for path, target, expected, said in archives]
        seen: dict[str, dict] = {"renamed": 0, "skipped": [], "skipped_count": 0, "sha256": {}}

        def units(advance):
            for (path, target, _, _), info in zip(archives, files):
                yield from _archive_units(path, target, split, classes, advance, seen)
                info["sha256"] = seen["sha256"][str(path)]

        def finish():
            for (path, _, expected, said), info in zip(archives, files):
                digest = seen["sha256"].get(str(path))
                if expected is not None and digest != expected:
                    raise ImnetError(f"{path}: checksum mismatch: sha256 {digest}, {said} says {expected}; "
                                     f"the file is damaged, download it again ({DOWNLOAD_HINT})")
            record.update(renamed=seen["renamed"], skipped_members=seen["skipped_count"],
                          skipped_first=seen["skipped"][:SHOWN_SKIPPED])

        def rehash(advance, recorded: dict) -> list[str]:
            """--reverify: SHA-256 of every archive against its blob name, else against the record."""
            sums = {f["file"]: f.get("sha256") for f in recorded.get("files", [])}
            problems = []
            for (path, target, expected, _), info in zip(archives, files):
                with HashingReader(target, on_read=advance, algorithm="sha256") as reader:
                    reader.drain()
                    digest = reader.hexdigest()
                want = expected or sums.get(info["file"])
                if want is not None and digest != want:
                    problems.append(f"{path}: sha256 {digest}, expected {want}; the archive changed or is damaged")
            return problems

        record = {"kind": self.kind, "path": str(self.folder), "classes_from": classes.origin,
                  "labels_from": "file names (wnid suffix)", "files": files,
                  "rename_rule": "<name>_<wnid>.JPEG -> <name>.JPEG",
                  "test_split": f"{TEST_ARCHIVE}: skipped (no labels)"}
        stamps = [[f["file"], f["bytes"], f["mtime_ns"], f["sha256_expected"]] for f in files]
        return SplitPlan(split=split, kind=self.kind, description=f"hf:{self.folder}",
                         total_bytes=sum(f["bytes"] for f in files), images=None,
                         fingerprint=fingerprint([self.kind, split, stamps]), units=units, finish=finish,
                         record=record, sample_size=_mean_member_size(archives[0][1]), rehash=rehash)

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.src), "folder": str(self.folder)}


def _mean_member_size(target: Path, count: int = 64) -> float | None:
    """Mean size of the first members of a ``.tar.gz`` (a little is decompressed), for the space check."""
    sizes = []
    try:
        with gzip.open(target, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if member.isreg():
                    sizes.append(member.size)
                if len(sizes) >= count:
                    break
    except (tarfile.TarError, EOFError, OSError, zlib.error):
        return None
    return sum(sizes) / len(sizes) if sizes else None


def _archive_units(path: Path, target: Path, split: str, classes: ClassList, advance, seen: dict):
    """Stream one archive: check each member, read its name as an official one and its label from the
    suffix, and yield the images in units of ``CHUNK_FILES``. Records the archive's SHA-256 in
    ``seen["sha256"]`` once read to its end (gzip trailer included)."""
    stem = path.name.removesuffix(".tar.gz")
    members = []
    try:
        reader = HashingReader(target, on_read=advance, threaded=True, algorithm="sha256")
    except OSError as err:
        raise ReadError(f"{path}: cannot read: {err.strerror or err}") from err
    try:
        with reader:
            stream = gzip.GzipFile(fileobj=reader, mode="rb")
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    if member.isdir():
                        if member.name.startswith("/") or ".." in member.name.split("/"):
                            check_member(member, str(path), ANY_MEMBER)  # raises naming it
                        continue
                    check_member(member, str(path), ANY_MEMBER)
                    base = member.name.rsplit("/", 1)[-1]
                    if not base.endswith(".JPEG"):
                        seen["skipped_count"] += 1
                        if len(seen["skipped"]) < SHOWN_SKIPPED:
                            seen["skipped"].append(f"{path.name}:{member.name}")
                        continue
                    where = f"{path}:{member.name}"
                    name = official_name(split, base)
                    if name is None or name.wnid is None and not name.renamed:
                        raise ImnetError(f"{where}: not a {split} image name of the dataset (expected names like "
                                         f"{HF_NAMES[split]})")
                    wnid = label_of(where, split, name, None, None, "")
                    classes.require(wnid, where)
                    seen["renamed"] += name.renamed
                    members.append((wnid, name.name, tar.extractfile(member).read()))
                    if len(members) >= 4 * CHUNK_FILES:  # bounded memory: hand out full chunks as they come
                        yield from _flush(members, stem, seen, final=False)
            while stream.read(1 << 20):  # the rest of the gzip stream: its CRC-32 and length are checked at the end
                pass
            reader.drain()
            seen["sha256"][str(path)] = reader.hexdigest()
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as err:
        raise ImnetError(f"{path}: truncated or corrupt .tar.gz ({err}); download it again ({DOWNLOAD_HINT})") from err
    yield from _flush(members, stem, seen, final=True)


def _flush(members: list, stem: str, seen: dict, final: bool):
    """Yield units of the members collected so far (all when ``final``, else only full chunks)."""
    counter = seen.setdefault("chunk", {})
    while members:
        run, nbytes = next(chunks(members, [len(data) for _, _, data in members]))
        if len(run) < CHUNK_FILES and not final and nbytes < CHUNK_BYTES:
            return
        del members[:len(run)]
        number = counter.get(stem, 0)
        counter[stem] = number + 1
        yield Unit(f"{stem}:{number:06d}", nbytes, write_images, run)
