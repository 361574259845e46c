"""``imnet prep`` from another source: the same tree, manifests and guarantees as from the official archives.

The flow is the official one (:mod:`imnet.prep.pipeline`), with a :class:`~imnet.prep.sources.base.Source`
in place of the archives: the tree's lock for the whole run, refusal of a ``--dst`` holding files prep
did not write, the source's class list and every check that can be made from its listing before
anything is written, the disk-space check, then per split: units journaled as they finish (a killed
run resumes on the same input), the counts checked against the class list, the devkit and the
official figures, the manifests and hash list, and the completion record written last. A bad input
discards everything the split wrote and nothing else; a write or read error, a dead worker or
SIGTERM keeps the journal, and the same command resumes.
"""
from __future__ import annotations

import collections
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from imnet.errors import ImnetError
from imnet.prep.devkit import Devkit, parse_devkit
from imnet.prep.extract import UnitResult
from imnet.prep.layout import (
    TreeLayout,
    blocks_for,
    check_src_dst,
    read_prep_json,
    remove_stale_temp_files,
    split_is_complete,
)
from imnet.prep.lock import TreeLock
from imnet.prep.manifests import ClassInfo, read_classes, write_classes
from imnet.prep.owner import check_owned
from imnet.prep.pipeline import (
    ARENA_MIN,
    META_BYTES_PER_IMAGE,
    _SIGNALS,
    Terminated,
    _crash_point,
    _split_record,
    _Workers,
    all_hashed,
    keep_complete,
    kept_or_discarded,
    make_room,
    open_journal,
    prepared_line,
    warn_undecodable,
    write_lists,
    write_split_record,
)
from imnet.prep.sources.base import VAL_PER_CLASS, ClassList, Source, SplitPlan, official_counts
from imnet.prep.sources.work import ReadError
from imnet.prep.verify import check_hashes, verify_split

MEAN_IMAGE_BYTES = 110_000.0  # ILSVRC2012's mean JPEG size, when a stream's first members cannot be sampled


def prepare_source(source: Source, dst: Path, only: str | None = None, workers: int | None = None,
                   reverify: bool = False, progress: bool = True, redo: bool = False,
                   devkit: Path | None = None) -> dict:
    """Prepare the tree ``dst`` from ``source`` (see :func:`imnet.prep.sources.prepare`). Returns the
    same summary as :func:`imnet.prep.pipeline.prepare`, plus ``"source"``."""
    t0 = time.time()
    dst = Path(dst)
    available = source.splits()
    if only is not None and only not in available:
        raise ImnetError(f"--src {source.location}: holds no {only} split ({source.summary})")
    splits = [only] if only else available
    if not splits:
        raise ImnetError(f"--src {source.location}: holds neither a train nor a val split ({source.summary})")
    check_src_dst(source.location, dst)
    if dst.exists() and not dst.is_dir():
        raise ImnetError(f"--dst {dst} is not writable: it exists and is not a folder")
    kit = parse_devkit(Path(devkit)) if devkit is not None else None
    layout = TreeLayout(dst)
    with _SIGNALS, TreeLock(layout.lock, "imnet prep", label="--dst"):
        _crash_point("locked")
        try:
            return _prepare_locked(source, layout, splits, kit, workers, reverify, progress, redo, t0)
        except Terminated as err:
            if "while preparing" in str(err):
                raise
            raise Terminated(f"terminated by {err}; nothing is left half-done: run the same command again",
                             err.signum) from None


def _keep_recorded_ids(layout: TreeLayout, classes: ClassList, record: dict, todo: list[str]) -> ClassList:
    """A tree whose other split is prepared already must keep its classes: the same wnids (else the
    labels of the two splits would not agree), and the ILSVRC2012_IDs and words it records where this
    source has none (Hugging Face and Kaggle carry no IDs)."""
    others = [s for s in record["splits"] if s not in todo and split_is_complete(record, s)]
    if not others or not layout.classes_tsv.is_file():
        return classes
    recorded = read_classes(layout.dst)
    if [c.wnid for c in recorded] != classes.wnids:
        raise ImnetError(f"{layout.classes_tsv}: the tree's {', '.join(others)} split has {len(recorded)} classes, "
                         f"not the {len(classes.classes)} of {classes.origin}; prepare every split from the same "
                         f"data set (--redo without --only), or choose another --dst")
    merged = [ClassInfo(c.class_index, c.wnid, c.ilsvrc_id or r.ilsvrc_id, c.words or r.words)
              for c, r in zip(classes.classes, recorded)]
    return ClassList(merged, classes.origin, classes.official, classes.devkit)


def _prepare_locked(source: Source, layout: TreeLayout, splits: list[str], devkit: Devkit | None,
                    workers: int | None, reverify: bool, progress: bool, redo: bool, t0: float) -> dict:
    dst = layout.dst
    record = read_prep_json(layout) if dst.is_dir() else {"splits": {}}
    scans = check_owned(layout, record)
    remove_stale_temp_files(layout.meta)
    classes = source.class_list(devkit)
    summary: dict = {"dst": str(dst), "source": f"{source.kind} {source.location}", "splits": {}}
    plans: dict[str, SplitPlan] = {}
    todo, discard = [], []
    for split in splits:
        plan = source.plan(split, classes)  # the listing and its checks: errors before anything is written
        split_record = record["splits"].get(split, {})
        if split_is_complete(record, split):
            recorded = (split_record.get("source") or {}).get("fingerprint")
            refusal = None if recorded == plan.fingerprint else (
                f"--src {source.location}: the {split} split of {dst} was prepared from "
                f"{split_record.get('archive')}, not from these files: a different input")
            again = (lambda: _reverify(split, plan, layout, split_record, progress)) if reverify else None
            if keep_complete(layout, split, split_record, scans[split].counts, f"the {split} split", refusal, redo,
                             again, summary):
                continue
            discard.append(split)
        elif redo:
            discard.append(split)
        plans[split] = plan
        todo.append(split)
    if not todo:
        summary["seconds"] = round(time.time() - t0, 3)
        return summary
    classes = _keep_recorded_ids(layout, classes, record, todo)

    make_room(layout, todo, discard, lambda split, journaled, block: _space_needed(plans[split], classes, block,
                                                                                  journaled))

    pool = _Workers(workers if workers is not None else (os.cpu_count() or 1), ARENA_MIN)
    try:
        for split in todo:
            split_record = prepare_source_split(plans[split], classes, source, layout, pool, progress)
            summary["splits"][split] = prepared_line(layout, split, split_record)
    finally:
        pool.close()
    warn_undecodable(dst, summary)
    summary["seconds"] = round(time.time() - t0, 3)
    return summary


def _space_needed(plan: SplitPlan, classes: ClassList, block: int, journaled: list[UnitResult]) -> tuple[int, int]:
    """(bytes, files) the split takes on a file system of ``block``-byte blocks, less what its journal
    says is written: every image a whole number of blocks (half a block more than its size on average),
    the manifests and journal, a block per 100 entries of each class folder. A listing gives the images
    and their sizes; for a stream, the official count (1000 classes) or the archive bytes over the mean
    size of its first members."""
    data = plan.total_bytes
    if plan.images:
        images = plan.images
    else:
        official = official_counts().get(plan.split) if classes.official else None
        images = official or max(1, round(data / ((plan.sample_size or MEAN_IMAGE_BYTES) + 768)))
    per_image = max(block, data / images + block / 2)
    folders = len(classes.classes) * blocks_for(max(1, images // len(classes.classes)) * 40, block)
    total = images * per_image + images * META_BYTES_PER_IMAGE + folders
    written = sum(blocks_for(size, block) for r in journaled for _, size in r.files)
    done_files = sum(len(r.files) for r in journaled)
    return max(0, int(total) - written), max(0, images - done_files) + len(classes.classes) + 8


def _reverify(split: str, plan: SplitPlan, layout: TreeLayout, split_record: dict, progress: bool) -> None:
    """``--reverify`` on a complete split: re-read the source's archives where it has a digest for them
    (Hugging Face), then every file's presence, the per-class sizes and every image's SHA-256."""
    problems = []
    if plan.rehash is not None:
        with tqdm(total=plan.total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc=f"re-hash {split}",
                  file=sys.stderr, disable=not progress) as bar:
            problems += plan.rehash(bar.update, split_record.get("source") or {})
    problems += verify_split(layout, split, split_record=split_record, decode=False, progress=progress)
    if not problems:
        problems = check_hashes(layout, split, split_record, progress=progress)
    if problems:
        raise ImnetError(f"{layout.dst}: the {split} split differs from its record: {problems[0]}"
                         + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))


def check_split(split: str, results: list[UnitResult], classes: ClassList, plan: SplitPlan) -> None:
    """The counts of a written split against the class list, the devkit and, for the 1000 classes, the
    official figures; raises :class:`ImnetError` naming the first difference (the caller discards)."""
    where = plan.description.split(":", 1)[1]
    rels = [rel for r in results for rel, _ in r.files]
    per_class = collections.Counter(rel.split("/", 1)[0] for rel in rels)
    for wnid in per_class:
        classes.require(wnid, where)
    names = collections.Counter(rel.rsplit("/", 1)[1] for rel in rels)
    twice = next((name for name, count in names.items() if count > 1), None)
    if twice is not None:
        raise ImnetError(f"{where}: {twice} is there twice ({'in two archives, or ' if plan.kind == 'hf' else ''}"
                         f"under two classes); the input is not one copy of ILSVRC2012")
    official = official_counts()
    kit = classes.devkit
    if split == "train":
        empty = [w for w in classes.wnids if not per_class[w]]
        if empty:
            raise ImnetError(f"{where}: no train images of class {empty[0]} ({len(empty)} of the {len(classes.wnids)} "
                             f"classes have none); the download is incomplete")
        if kit is not None and kit.train_images:
            wrong = next((w for w in classes.wnids if kit.train_images.get(w) != per_class[w]), None)
            if wrong is not None:
                raise ImnetError(f"{where}: class {wrong} has {per_class[wrong]} train images, {kit.path.name} says "
                                 f"{kit.train_images.get(wrong)} (num_train_images); the download is incomplete or "
                                 f"damaged")
        if classes.official and len(rels) != official["train"]:
            raise ImnetError(f"{where}: {len(rels):,} train images; ILSVRC2012 has {official['train']:,}; the download "
                             f"is incomplete or holds other images")
        return
    labels = {int(rel.rsplit("/", 1)[1][15:23]): rel.split("/", 1)[0] for rel in rels}
    if kit is not None:
        truth = kit.val_class_indices
        for number, wnid in sorted(labels.items()):
            if not 1 <= number <= len(truth):
                raise ImnetError(f"{where}: ILSVRC2012_val_{number:08d} has no line in the ground truth of "
                                 f"{kit.path} ({len(truth)} lines)")
            if classes.classes[truth[number - 1]].wnid != wnid:
                raise ImnetError(f"{where}: ILSVRC2012_val_{number:08d} is labelled {wnid}, the ground truth of "
                                 f"{kit.path} says {classes.classes[truth[number - 1]].wnid}")
        if len(labels) != len(truth):
            missing = next(n for n in range(1, len(truth) + 1) if n not in labels)
            raise ImnetError(f"{where}: {len(labels)} val images, the ground truth of {kit.path} lists {len(truth)} "
                             f"(ILSVRC2012_val_{missing:08d} is missing); the download is incomplete")
    if classes.official:
        if len(labels) != official["val"]:
            raise ImnetError(f"{where}: {len(labels):,} val images; ILSVRC2012 has {official['val']:,}; the download "
                             f"is incomplete or holds other images")
        wrong = next((w for w in classes.wnids if per_class[w] != VAL_PER_CLASS), None)
        if wrong is not None:
            raise ImnetError(f"{where}: class {wrong} has {per_class[wrong]} val images; ILSVRC2012 has "
                             f"{VAL_PER_CLASS} of every class")


def _hash_lines(split: str, results: list[UnitResult]):
    """``sha256sum`` lines of every image in the file list's order (train by class and name, val by
    number), whatever order the source's units came in."""
    pairs = [pair for result in results for pair in result.digests()]
    pairs.sort(key=(lambda p: p[0]) if split == "train" else (lambda p: p[0].rsplit("/", 1)[1]))
    for rel, digest in pairs:
        yield f"{digest}  {split}/{rel}\n"


def _changes(record: dict, classes: ClassList) -> list[str]:
    """What prep changed on the way from the source to the tree, in words (``prep.json``)."""
    source = record["source"]
    changes = []
    if source.get("renamed"):
        changes.append(f"{source['renamed']} file names normalized to the official ones "
                       f"({source.get('rename_rule', '<name>_<wnid>.JPEG -> <name>.JPEG')})")
    if record["repaired"]:
        changes.append(f"{len(record['repaired'])} images repaired by content (CMYK or PNG -> RGB JPEG; see repaired)")
    if source.get("skipped_members"):
        changes.append(f"{source['skipped_members']} archive members that are not .JPEG images skipped")
    if source.get("ignored"):
        changes.append(f"{source['ignored']} hidden files ignored (see ignored_first)")
    if not any(c.ilsvrc_id for c in classes.classes):
        changes.append("ILSVRC2012_ID column of classes.tsv is 0: the source does not carry it (--devkit adds it)")
    if source.get("test_split"):
        changes.append(source["test_split"])
    return changes


def prepare_source_split(plan: SplitPlan, classes: ClassList, source: Source, layout: TreeLayout, pool: _Workers,
                         progress: bool = True) -> dict:
    """Read one split from its plan into ``layout``: units to the writer processes, journaled; the checks;
    the manifests, hash list and completion record. Returns the split's record."""
    split = plan.split
    started = time.time()
    journal = open_journal(layout, split, plan.identity)
    split_dir = layout.split_dir(split)
    bar = tqdm(total=plan.total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
               desc=f"prep {split} ({plan.kind})", file=sys.stderr, disable=not progress, dynamic_ncols=True)

    def finished(result: UnitResult) -> None:
        if not result.files:
            raise ImnetError(f"{plan.description}: unit {result.unit} wrote no images")
        journal.record(result, split)
        bar.set_postfix(images=sum(len(r.files) for r in journal.done.values()), refresh=False)

    with kept_or_discarded(f"the {split} split", "units", layout, split, journal, pool, bar, also=(ReadError,)):
        for unit in plan.units(bar.update):
            if unit.name in journal.done:
                continue
            for result in pool.submit(unit.nbytes, unit.fn, unit.data, split_dir, unit.name, split):
                finished(result)
        for result in pool.drain():
            finished(result)
        plan.finish()
        check_split(split, list(journal.done.values()), classes, plan)
    results = sorted(journal.done.values(), key=lambda r: r.unit)
    hashed = all_hashed(results)
    record, entries = _split_record(split, plan.description, plan.total_bytes, plan.fingerprint, classes.classes,
                                    results, started, pool.workers, hashed, journal.created_dir)
    record["md5"] = None  # no MD5 list covers these inputs: the fingerprint and the source's own checks do
    record["source"] = dict(plan.record, fingerprint=plan.fingerprint, classes_official=classes.official,
                            ilsvrc2012_ids="from the devkit" if classes.devkit is not None else
                            "kept from the tree's classes.tsv" if any(c.ilsvrc_id for c in classes.classes) else
                            "unknown (0): give --devkit for them")
    record["source"]["changes"] = _changes(record, classes)
    with _SIGNALS.protected():
        write_classes(layout.classes_tsv, classes.classes)
        write_lists(layout, split, entries, _hash_lines(split, results) if hashed else None)
        _crash_point(f"{split}:manifests")
        write_split_record(layout, split, record, classes.devkit, top={"source": source.describe()})
        _crash_point(f"{split}:record")
        journal.path.unlink(missing_ok=True)
    return record
