"""Quirks are found by content: the JPEG frame header walk, repairs to RGB JPEG, the cross-check
against the known names in manifests/, and a journal line cut short by a kill."""
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from imnet.prep import prepare
from imnet.prep.manifests import KnownQuirk, known_quirks
from imnet.prep.quirks import Quirk, cross_check, inspect_image, jpeg_components
from imnet.testing import fake_ilsvrc
from imnet.testing.fake import encode

_yy, _xx = np.mgrid[0:24, 0:32]
PIXELS = np.stack([_xx * 8, _yy * 10, 255 - _xx * 4], -1).astype(np.uint8)  # smooth: JPEG keeps it


def jpeg(**save):
    out = io.BytesIO()
    Image.fromarray(PIXELS).save(out, format="JPEG", **save)
    return out.getvalue()


def with_exif():
    exif = Image.Exif()
    exif[0x010F] = "imnet test camera"
    return jpeg(exif=exif.tobytes())


@pytest.mark.parametrize("data, components", [
    (jpeg(), 3), (jpeg(progressive=True), 3), (with_exif(), 3),
    (encode(PIXELS, "cmyk"), 4), (encode(PIXELS, "grayscale"), 1), (b"\xff\xd8\xff\xe0\x00", None),
])
def test_jpeg_components_from_the_frame_header(data, components):
    assert jpeg_components(data) == components


@pytest.mark.parametrize("kind, data, expected_kind", [
    ("rgb", jpeg(), None),
    ("exif", with_exif(), None),
    ("cmyk", encode(PIXELS, "cmyk"), "cmyk"),
    ("png", encode(PIXELS, "png"), "png"),
    ("grayscale", encode(PIXELS, "grayscale"), "grayscale"),
    ("garbage", b"\xff\xd8\xff\xe0 this is not a jpeg at all", "undecodable"),
    ("text", b"hello world", "undecodable"),
])
def test_inspect_image_repairs_by_content(kind, data, expected_kind):
    out, quirk = inspect_image("train/n0/n0_1.JPEG", data)
    assert (quirk.kind if quirk else None) == expected_kind
    if expected_kind in ("cmyk", "png"):
        with Image.open(io.BytesIO(out)) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (32, 24))
            # the repaired pixels are the original's (up to JPEG loss and CMYK round trip)
            assert np.abs(np.asarray(image, dtype=int) - PIXELS).mean() < 8
    else:
        assert out == data  # untouched


def test_known_quirks_manifest_holds_the_real_set():
    known = known_quirks()
    assert sum(k.kind == "cmyk" and k.split == "train" for k in known) == 22
    assert KnownQuirk("val", "ILSVRC2012_val_00019877.JPEG", "cmyk") in known
    assert KnownQuirk("train", "n02105855_2933.JPEG", "png") in known


def test_cross_check_reports_found_missing_and_unexpected():
    known = [KnownQuirk("train", "a_1.JPEG", "cmyk"), KnownQuirk("train", "b_2.JPEG", "png"),
             KnownQuirk("train", "z_9.JPEG", "cmyk")]
    found = [Quirk("train/a/a_1.JPEG", "cmyk", "re-encoded"), Quirk("train/c/c_3.JPEG", "cmyk", "re-encoded"),
             Quirk("train/d/d_4.JPEG", "grayscale", "kept")]
    result = cross_check("train", found, {"a_1.JPEG", "b_2.JPEG", "c_3.JPEG", "d_4.JPEG"}, known)
    assert result == {"expected": 2, "found_expected": ["a_1.JPEG"], "missing": ["b_2.JPEG"],
                      "unexpected": ["c_3.JPEG"]}


def test_journal_line_cut_short_by_a_kill_is_redone(tmp_path):
    fake = fake_ilsvrc(tmp_path / "src", classes=3, train_per_class=2, val=3, image_size=(16, 16))
    clean = tmp_path / "clean"
    prepare(fake.root, clean, checksums=fake.checksums, only="train", workers=1, progress=False)
    dst = tmp_path / "data"
    prepare(fake.root, dst, checksums=fake.checksums, only="train", workers=1, progress=False)
    # Rebuild the state of a run killed while appending its third unit's line.
    record = json.loads((dst / "meta" / "prep.json").read_text())
    identity = {"archive": fake.train_tar.name, "bytes": fake.train_tar.stat().st_size,
                "mtime_ns": fake.train_tar.stat().st_mtime_ns, "md5": record["splits"]["train"]["md5"],
                "created_dir": True}
    (dst / "meta" / "prep.json").unlink()
    (dst / "meta" / "train.txt").unlink()
    (dst / "meta" / "train.sha256").unlink()
    units = [{"unit": w, "files": [[f"{w}/{n}", (dst / "train" / w / n).stat().st_size]
                                   for w2, n in fake.train_files if w2 == w],
              "quirks": [q for q in record["splits"]["train"]["repaired"] if q["file"].startswith(f"train/{w}/")],
              "sha256": "".join(hashlib.sha256((dst / "train" / w / n).read_bytes()).hexdigest()
                                for w2, n in fake.train_files if w2 == w)}
             for w in fake.wnids]
    lines = [json.dumps(identity), json.dumps(units[0]), json.dumps(units[1]), json.dumps(units[2])[:25]]
    (dst / "meta" / ".journal-train.jsonl").write_text("\n".join(lines))
    kept = [dst / "train" / w / n for w, n in fake.train_files if w in fake.wnids[:2]]
    stamps = [path.stat().st_mtime_ns for path in kept]
    prepare(fake.root, dst, checksums=fake.checksums, only="train", workers=1, progress=False)
    assert [path.stat().st_mtime_ns for path in kept] == stamps  # journaled units resumed, not rewritten
    assert (dst / "meta" / "train.txt").read_text() == (clean / "meta" / "train.txt").read_text()
    assert (dst / "meta" / "train.sha256").read_text() == (clean / "meta" / "train.sha256").read_text()
    a = json.loads((dst / "meta" / "prep.json").read_text())["splits"]["train"]
    b = json.loads((clean / "meta" / "prep.json").read_text())["splits"]["train"]
    for key in ("started", "finished", "seconds"):
        a.pop(key), b.pop(key)
    assert a == b


def _digest_unit(data, tag):
    """A worker-side unit for the arena test: what the worker saw."""
    import hashlib

    return tag, len(data), hashlib.md5(data).hexdigest()


def test_shared_memory_ring_hands_every_unit_its_own_bytes():
    """Units of varied sizes through a tiny arena (forcing waits and wrap-around, plus one unit too
    big for it, which goes by pipe): each worker sees exactly the bytes read for its unit."""
    import hashlib
    import os

    from imnet.prep.pipeline import _Workers

    workers = _Workers(2, arena_bytes=1000)
    sizes = [300, 450, 200, 999, 1000, 1500, 10, 700, 400, 333, 600, 5, 999]
    expected, results = [], []
    try:
        for tag, size in enumerate(sizes):
            payload = os.urandom(size)
            expected.append((tag, size, hashlib.md5(payload).hexdigest()))
            buffer = workers.reserve(size)
            if buffer is not None:
                buffer[:] = payload
                results += workers.submit(size, _digest_unit, buffer, tag)
            else:
                assert size > 1000
                results += workers.submit(size, _digest_unit, payload, tag)
        results += workers.drain()
    finally:
        workers.close()
    assert results == expected


def test_threaded_hash_survives_arena_reuse(tmp_path):
    """The archive is read into a small, often reused shared ring while a thread hashes it: the
    digest must equal the file's MD5 and every worker must see its own bytes."""
    import hashlib
    import os

    from imnet.prep.checksum import HashingReader
    from imnet.prep.pipeline import _Workers

    payload = os.urandom(400_000)
    path = tmp_path / "archive.bin"
    path.write_bytes(payload)
    workers = _Workers(2, arena_bytes=64_000)
    sizes = [7_000, 30_000, 64_000, 1_000, 45_000] * 12
    results, expected, offset = [], [], 0
    try:
        with HashingReader(path, threaded=True) as reader:
            workers.reader = reader
            for tag, size in enumerate(sizes):
                size = min(size, len(payload) - offset)
                if size <= 0:
                    break
                buffer = workers.reserve(size)
                assert reader.readinto(buffer) == size
                expected.append((tag, size, hashlib.md5(payload[offset:offset + size]).hexdigest()))
                offset += size
                results += workers.submit(size, _digest_unit, buffer, tag)
            results += workers.drain()
            reader.drain()
            assert reader.hexdigest() == hashlib.md5(payload).hexdigest()
    finally:
        workers.close()
    assert results == expected


def _slow_unit(data, seconds):
    """A worker-side unit that takes a while: it is still running when the pool is closed."""
    import time

    time.sleep(seconds)
    return len(data)


def _die_holding_the_result_lock(data):
    """A worker-side unit that takes the pool's result-queue write lock and is killed holding it:
    what ``Pool.terminate()`` can do to a worker that is sending a result."""
    import gc
    import os
    import signal
    from multiprocessing.queues import SimpleQueue

    for queue in [obj for obj in gc.get_objects() if isinstance(obj, SimpleQueue)]:
        queue._wlock.acquire(timeout=1)
    os.kill(os.getpid(), signal.SIGKILL)


def _close_in_thread(workers, **options) -> float:
    """Run ``workers.close()`` in a thread; fail (instead of hanging the suite) past 60 s."""
    import threading
    import time

    start = time.monotonic()
    closer = threading.Thread(target=workers.close, kwargs=options, daemon=True)
    closer.start()
    closer.join(timeout=60)
    assert not closer.is_alive(), "_Workers.close() hung"
    return time.monotonic() - start


def test_close_lets_units_in_flight_finish_and_kills_nothing():
    # The error path closes the pool with units in flight: they finish, then the workers exit on
    # their sentinels (exit code 0), not killed mid-result (a kill can leave a queue lock taken).
    from imnet.prep.pipeline import _Workers

    workers = _Workers(2, arena_bytes=64_000)
    processes = list(workers._pool._pool)
    for _ in range(3):
        workers.submit(1, _slow_unit, b"x", 0.3)
    assert _close_in_thread(workers) >= 0.25
    assert [process.exitcode for process in processes] == [0, 0]
    assert workers._pool is None


def test_close_does_not_hang_when_a_worker_died_holding_a_queue_lock():
    from imnet.prep.pipeline import _Workers

    workers = _Workers(2, arena_bytes=64_000)
    workers.submit(1, _die_holding_the_result_lock, b"x")
    workers.submit(1, _slow_unit, b"x", 0.1)
    assert _close_in_thread(workers) < 30  # seen the death, abandoned (killed) the pool
    assert workers._pool is None


def test_close_kills_units_still_running_after_the_grace_period():
    from imnet.prep.pipeline import _Workers

    workers = _Workers(2, arena_bytes=64_000)
    processes = list(workers._pool._pool)
    workers.submit(1, _slow_unit, b"x", 600)
    assert _close_in_thread(workers, grace=0.5) < 30
    assert any(process.exitcode == -9 for process in processes)  # the busy one was killed


def test_undecodable_image_is_kept_and_reported_by_name(tmp_path):
    """A file PIL cannot identify inside a class tar: prep keeps it, lists it under 'undecodable' in
    prep.json, and imnet verify --decode names it."""
    import shutil

    from imnet.prep import verify_tree
    from imnet.testing.fake import add_to_class_tar, write_checksums

    fake = fake_ilsvrc(tmp_path / "src", classes=3, train_per_class=2, val=3, image_size=(16, 16), quirks=False)
    wnid = fake.wnids[1]
    add_to_class_tar(fake.train_tar, wnid, f"{wnid}_999.JPEG", b"this is not an image")
    write_checksums(fake.checksums, [fake.train_tar, fake.val_tar, fake.devkit])
    prepare(fake.root, tmp_path / "data", checksums=fake.checksums, workers=1, progress=False)
    record = json.loads((tmp_path / "data" / "meta" / "prep.json").read_text())["splits"]["train"]
    assert [q["file"] for q in record["undecodable"]] == [f"train/{wnid}/{wnid}_999.JPEG"]
    assert record["repaired"] == [] and record["images"] == 7
    report = verify_tree(tmp_path / "data", decode=True, progress=False)
    assert len(report.problems) == 1 and f"{wnid}_999.JPEG does not decode" in report.problems[0]
    shutil.rmtree(tmp_path / "src")
