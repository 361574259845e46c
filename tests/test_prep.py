"""imnet prep on fake archives: the tree and manifests, repairs, re-runs, --only, --reverify, and
crash safety (kill -9 at chosen points, then the same command again gives the clean run's tree)."""
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from imnet.cli import cli
from imnet.prep import prepare
from imnet.prep.manifests import read_classes, read_file_list
from imnet.testing import fake_ilsvrc

SMALL = dict(classes=5, train_per_class=4, val=15, image_size=(40, 32))
TIMING = ("started", "finished", "seconds")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return fake_ilsvrc(tmp_path_factory.mktemp("src"), **SMALL)


@pytest.fixture(scope="module")
def clean(fake, tmp_path_factory):
    """A tree prepared in one uninterrupted run, the reference for the other tests."""
    dst = tmp_path_factory.mktemp("clean") / "data"
    prepare(fake.root, dst, checksums=fake.checksums, workers=2, progress=False)
    return dst


def tree_digest(dst: Path) -> dict:
    """Every file of a tree -> md5 of its bytes; prep.json compared without its timing fields."""
    digest = {}
    for path in sorted(dst.rglob("*")):
        if path.is_dir():
            continue
        rel = str(path.relative_to(dst))
        if rel == "meta/prep.json":
            record = json.loads(path.read_text())
            for split in record["splits"].values():
                for key in TIMING:
                    split.pop(key)
            digest[rel] = record
        else:
            digest[rel] = hashlib.md5(path.read_bytes()).hexdigest()
    return digest


def assert_same_tree(dst: Path, reference: Path) -> None:
    """The resumed tree equals a clean run's, file for file (prep.json without timings and worker count)."""
    digests = tree_digest(dst), tree_digest(reference)
    for digest in digests:
        for record in digest["meta/prep.json"]["splits"].values():
            record.pop("workers")
    assert digests[0] == digests[1]


def src_digest(src: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, hashlib.md5(p.read_bytes()).hexdigest()) for p in src.iterdir()}


def test_tree_layout_and_manifests(fake, clean):
    classes = read_classes(clean)
    assert [c.wnid for c in classes] == fake.wnids
    assert [c.class_index for c in classes] == list(range(len(fake.wnids)))
    assert {c.wnid: c.ilsvrc_id for c in classes} == fake.ilsvrc_ids
    train = read_file_list(clean / "meta" / "train.txt")
    assert train == [(f"{w}/{n}", fake.wnids.index(w)) for w, n in fake.train_files]
    val = read_file_list(clean / "meta" / "val.txt")
    assert [rel.rsplit("/", 1)[1] for rel, _ in val] == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 16)]
    assert [label for _, label in val] == fake.val_labels
    for split, entries in (("train", train), ("val", val)):
        for rel, label in entries:
            assert rel.split("/")[0] == fake.wnids[label]
            assert (clean / split / rel).is_file()
    assert not list(clean.rglob(".*")), "no temp files or journals left behind"


def test_prep_json_records_splits_and_repairs(fake, clean):
    record = json.loads((clean / "meta" / "prep.json").read_text())
    assert record["devkit"]["classes"] == 5
    for split, n in (("train", 20), ("val", 15)):
        rec = record["splits"][split]
        assert rec["complete"] is True and rec["images"] == n
        assert rec["md5"] == hashlib.md5((fake.root / rec["archive"]).read_bytes()).hexdigest()
        assert sum(c["images"] for c in rec["classes"].values()) == n
    repaired = {q["file"]: q["kind"] for s in record["splits"].values() for q in s["repaired"]}
    expected = {rel: kind for rel, kind in fake.quirks.items() if kind != "grayscale"}
    assert repaired == expected
    assert record["splits"]["train"]["grayscale"] == [r for r, k in fake.quirks.items() if k == "grayscale"]
    # The planted files carry the real set's names: the cross-check against manifests/ finds them.
    cross = record["splits"]["train"]["quirks_vs_known"]
    assert cross["found_expected"] == ["n01739381_1309.JPEG", "n02105855_2933.JPEG"] and not cross["missing"]


@pytest.mark.parametrize("rel_kind", ["cmyk", "png", "grayscale"])
def test_quirky_images_are_repaired_by_content(fake, clean, rel_kind):
    for rel, kind in fake.quirks.items():
        if kind != rel_kind:
            continue
        with Image.open(clean / rel) as image:
            assert image.format == "JPEG"
            assert image.mode == ("L" if kind == "grayscale" else "RGB")
            image.load()


def test_workers_do_not_change_the_tree(fake, clean, tmp_path):
    prepare(fake.root, tmp_path / "one", checksums=fake.checksums, workers=1, progress=False)
    a, b = tree_digest(clean), tree_digest(tmp_path / "one")
    a["meta/prep.json"]["splits"]["train"].pop("workers"), a["meta/prep.json"]["splits"]["val"].pop("workers")
    b["meta/prep.json"]["splits"]["train"].pop("workers"), b["meta/prep.json"]["splits"]["val"].pop("workers")
    assert a == b


def test_rerun_on_complete_tree_changes_nothing(fake, clean, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(clean, dst)
    before = {p: p.stat().st_mtime_ns for p in dst.rglob("*")}
    summary = prepare(fake.root, dst, checksums=fake.checksums, progress=False)
    assert {s["status"] for s in summary["splits"].values()} == {"already prepared"}
    assert {p: p.stat().st_mtime_ns for p in dst.rglob("*")} == before


def test_rerun_without_archives_still_verifies_cheaply(fake, clean, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(clean, dst)
    (tmp_path / "empty").mkdir()
    summary = prepare(tmp_path / "empty", dst, progress=False)
    assert summary["splits"]["train"]["status"] == "already prepared"


def test_reverify_rehashes_and_detects_changes(fake, clean, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(clean, dst)
    summary = prepare(fake.root, dst, checksums=fake.checksums, reverify=True, progress=False)
    assert {s["status"] for s in summary["splits"].values()} == {"reverified"}
    victim = dst / "train" / read_file_list(dst / "meta" / "train.txt")[0][0]
    victim.write_bytes(victim.read_bytes() + b"x")
    with pytest.raises(Exception, match="differs from its record"):
        prepare(fake.root, dst, checksums=fake.checksums, reverify=True, progress=False)


def test_damaged_complete_split_is_redone(fake, clean, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(clean, dst)
    first = dst / "val" / read_file_list(dst / "meta" / "val.txt")[0][0]
    first.unlink()
    summary = prepare(fake.root, dst, checksums=fake.checksums, progress=False)
    assert summary["splits"]["val"]["status"] == "prepared"
    assert summary["splits"]["train"]["status"] == "already prepared"
    assert tree_digest(dst) == tree_digest(clean)


def test_only_one_split_then_the_other(fake, clean, tmp_path):
    dst = tmp_path / "data"
    prepare(fake.root, dst, checksums=fake.checksums, only="val", progress=False)
    record = json.loads((dst / "meta" / "prep.json").read_text())
    assert list(record["splits"]) == ["val"] and not (dst / "train").exists()
    prepare(fake.root, dst, checksums=fake.checksums, only="train", workers=2, progress=False)
    assert tree_digest(dst) == tree_digest(clean)


def test_src_is_never_modified(fake, tmp_path):
    before = src_digest(fake.root)
    prepare(fake.root, tmp_path / "data", checksums=fake.checksums, progress=False)
    assert src_digest(fake.root) == before


def test_cli_prep_prints_one_summary_line_and_shows_progress(fake, tmp_path):
    result = subprocess.run([sys.executable, "-m", "imnet", "prep", "--src", str(fake.root), "--dst",
                             str(tmp_path / "data"), "--checksums", str(fake.checksums)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert "train prepared: 20 images" in result.stdout and "val prepared: 15 images" in result.stdout
    assert "prep train" in result.stderr and "100%" in result.stderr  # tqdm bars on stderr


def test_cli_help_documents_every_option():
    for command in ("prep", "verify", "fake"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0
        options = [line for line in result.output.splitlines() if line.strip().startswith("--")]
        assert options and all(len(line.split("  ")) > 1 for line in options), result.output


# --- crash safety -------------------------------------------------------------------------------------

def run_prep(fake, dst, crash_at=None, workers=2):
    env = dict(os.environ)
    env.pop("IMNET_PREP_CRASH_AT", None)
    if crash_at:
        env["IMNET_PREP_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "imnet", "prep", "--src", str(fake.root), "--dst", str(dst),
                           "--checksums", str(fake.checksums), "--workers", str(workers)],
                          capture_output=True, text=True, env=env)


@pytest.mark.parametrize("crash_at", ["train:unit:1", "train:unit:3", "train:manifests", "train:record-temp",
                                      "train:record", "val:unit:1", "val:record-temp"])
def test_kill_9_then_resume_gives_the_clean_tree(fake, clean, tmp_path, crash_at):
    dst = tmp_path / "data"
    killed = run_prep(fake, dst, crash_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    record = dst / "meta" / "prep.json"
    split = crash_at.split(":")[0]
    if record.exists():  # whatever was interrupted does not look complete
        complete = json.loads(record.read_text())["splits"].get(split, {}).get("complete")
        assert complete is None or crash_at.endswith(":record")
    resumed = run_prep(fake, dst, workers=1)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_tree(dst, clean)


def test_killed_worker_fails_clearly_then_resume_gives_the_clean_tree(fake, clean, tmp_path):
    """A writer process killed from outside (the OOM killer, say) must not hang prep: it fails with one
    line, nothing looks complete, and the same command resumes to the clean tree."""
    dst = tmp_path / "data"
    failed = run_prep(fake, dst, "worker", workers=2)
    assert failed.returncode == 2, failed.stderr
    assert "worker process died" in failed.stderr and "Traceback" not in failed.stderr
    record = dst / "meta" / "prep.json"
    if record.exists():
        assert not json.loads(record.read_text())["splits"].get("train", {}).get("complete")
    assert not (dst / "meta" / "train.txt").exists()
    resumed = run_prep(fake, dst, workers=1)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_tree(dst, clean)


def test_resume_skips_journaled_units(fake, tmp_path):
    dst = tmp_path / "data"
    assert run_prep(fake, dst, "train:unit:3", workers=1).returncode == -signal.SIGKILL
    lines = (dst / "meta" / ".journal-train.jsonl").read_text().splitlines()
    done = sorted(json.loads(line)["unit"] for line in lines[1:])
    assert len(done) == 3
    stamps = {w: (dst / "train" / w).stat().st_mtime_ns for w in done}
    time.sleep(0.01)
    prepare(fake.root, dst, checksums=fake.checksums, workers=1, progress=False)
    assert {w: (dst / "train" / w).stat().st_mtime_ns for w in done} == stamps
    assert not (dst / "meta" / ".journal-train.jsonl").exists()


def test_external_kill_9_after_files_appear_then_resume(tmp_path):
    fake = fake_ilsvrc(tmp_path / "src", classes=12, train_per_class=25, val=30, image_size=(96, 80))
    clean_dst = tmp_path / "clean"
    prepare(fake.root, clean_dst, checksums=fake.checksums, workers=1, progress=False)
    dst = tmp_path / "data"
    process = subprocess.Popen([sys.executable, "-m", "imnet", "prep", "--src", str(fake.root), "--dst", str(dst),
                                "--checksums", str(fake.checksums), "--workers", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        if (dst / "train").is_dir() and sum(1 for _ in (dst / "train").rglob("*.JPEG")) >= 20:
            break
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "prep finished before it could be killed"
    assert not (dst / "meta" / "prep.json").exists()
    resumed = run_prep(fake, dst, workers=2)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_tree(dst, clean_dst)
