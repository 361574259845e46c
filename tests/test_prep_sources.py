"""imnet prep from the other places ILSVRC2012 comes from (issue 19): the Hugging Face archives (a folder
or the hub cache), Kaggle's challenge folder and zip, extracted trees. Each fake layout holds the images
of the official-format fake of the same seed, so each prepared tree must be that fake's tree: same
files, same bytes, same manifests. Bad inputs are one line and exit 2 with nothing kept; kill -9 resumes;
the lock, ownership and records are the official path's."""
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from imnet.errors import ImnetError
from imnet.prep import prepare, verify_tree
from imnet.prep.lock import LockHeld
from imnet.prep.manifests import read_classes
from imnet.prep.sources import detect_source
from imnet.prep.sources.base import check_official_set, official_wnids
from imnet.prep.sources.classlist import read_classes_py
from imnet.testing import fake_ilsvrc
from imnet.testing.fake_sources import LAYOUTS, classes_py_text, fake_source

SMALL = dict(classes=5, train_per_class=4, val=15, image_size=(40, 32))
KIND = {"hf": "hf", "hf-cache": "hf", "kaggle": "kaggle", "kaggle-zip": "kaggle", "tree": "tree", "tree-flat": "tree"}
SAME_IN_RECORD = ("images", "bytes", "classes", "repaired", "grayscale", "undecodable", "decode_checked",
                  "quirks_vs_known", "hashes")


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    return fake_ilsvrc(tmp_path_factory.mktemp("official"), **SMALL)


@pytest.fixture(scope="module")
def reference(official, tmp_path_factory):
    """The tree prepared from the official-format fake: what every source must give."""
    dst = tmp_path_factory.mktemp("reference") / "data"
    prepare(official.root, dst, checksums=official.checksums, workers=1, progress=False)
    return dst


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("sources")
    return {layout: fake_source(base / layout, layout, **SMALL) for layout in LAYOUTS}


def files_of(root: Path) -> dict:
    """Every file of a tree but prep.json -> md5 of its bytes."""
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "prep.json"}


def splits_of(root: Path) -> dict:
    record = json.loads((root / "meta" / "prep.json").read_text())
    return {split: {key: r.get(key) for key in SAME_IN_RECORD} for split, r in record["splits"].items()}


def run_cli(*args, env=None):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMNET_PREP_")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "imnet", *map(str, args)], capture_output=True, text=True,
                          env=environment)


def error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().replace("\r", "\n").splitlines()[-1]
    assert last.startswith("imnet: error: "), result.stderr
    return last


def copy_source(fake, tmp_path: Path) -> Path:
    """A copy of a fake source to damage (hub-cache links kept as links); returns its --src."""
    shutil.copytree(fake.out, tmp_path / "src", symlinks=True)
    return tmp_path / "src" / fake.src.relative_to(fake.out)


def assert_nothing_of(dst: Path, split: str) -> None:
    assert not any((dst / split).rglob("*")) if (dst / split).exists() else True
    for name in (f"{split}.txt", f"{split}.sha256", f".journal-{split}.jsonl"):
        assert not (dst / "meta" / name).exists()
    if (dst / "meta" / "prep.json").exists():
        assert split not in json.loads((dst / "meta" / "prep.json").read_text())["splits"]


# --- every source gives the official tree -------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_source_gives_the_official_tree(official, reference, sources, tmp_path, layout):
    fake = sources[layout]
    found = detect_source(fake.src)
    assert found is not None and found.kind == KIND[layout]
    dst = tmp_path / "data"
    summary = prepare(fake.src, dst, devkit=official.devkit, workers=2, progress=False)
    assert summary["source"].startswith(KIND[layout])
    assert files_of(dst) == files_of(reference)  # images, classes.tsv, file lists, hash lists: byte for byte
    assert splits_of(dst) == splits_of(reference)
    record = json.loads((dst / "meta" / "prep.json").read_text())
    for split in ("train", "val"):
        source = record["splits"][split]["source"]
        assert source["kind"] == KIND[layout] and source["classes_official"] is False
        assert source["ilsvrc2012_ids"] == "from the devkit"
    assert record["source"]["kind"] == KIND[layout] and record["devkit"]["md5"] == hashlib.md5(
        official.devkit.read_bytes()).hexdigest()
    report = verify_tree(dst, hashes=True, progress=False)
    assert report.ok, report.problems


@pytest.mark.parametrize("layout", ["hf", "kaggle", "tree"])
def test_without_the_devkit_only_the_ilsvrc_ids_are_unknown(reference, sources, tmp_path, layout):
    dst = tmp_path / "data"
    prepare(sources[layout].src, dst, workers=1, progress=False)
    ours, official = files_of(dst), files_of(reference)
    assert ours.pop("meta/classes.tsv") != official.pop("meta/classes.tsv")
    assert ours == official
    got, want = read_classes(dst), read_classes(reference)
    assert [(c.class_index, c.wnid, c.words) for c in got] == [(c.class_index, c.wnid, c.words) for c in want]
    assert {c.ilsvrc_id for c in got} == {0}
    changes = json.loads((dst / "meta" / "prep.json").read_text())["splits"]["val"]["source"]["changes"]
    assert any("ILSVRC2012_ID column of classes.tsv is 0" in change for change in changes)


def test_hf_names_are_normalized_and_the_record_says_what_changed(sources, tmp_path):
    fake = sources["hf-cache"]
    dst = tmp_path / "data"
    prepare(fake.src, dst, workers=1, progress=False)
    record = json.loads((dst / "meta" / "prep.json").read_text())
    for split, count in (("train", 20), ("val", 15)):
        source = record["splits"][split]["source"]
        assert source["renamed"] == count and source["labels_from"] == "file names (wnid suffix)"
        assert any(c.startswith(f"{count} file names normalized") for c in source["changes"])
        assert "test_images.tar.gz: skipped (no labels)" in source["changes"]
        for info in source["files"]:  # the blob names are the SHA-256s, and were checked on the bytes read
            assert info["sha256"] == info["sha256_expected"] == Path(os.path.realpath(
                Path(source["path"]) / info["file"])).name
            assert info["sha256_from"] == "the hub's blob name"
    assert len(record["splits"]["train"]["source"]["files"]) == 5
    assert not list((dst / "train").rglob("*_n*_n*.JPEG")) and not list((dst / "val").rglob("*_n*.JPEG"))


def test_hf_members_under_a_folder_and_other_members(reference, sources, tmp_path):
    """Members may sit under a folder in the archive (the name's last part counts); members that are not
    .JPEG images are skipped and counted; links are refused."""
    src = copy_source(sources["hf"], tmp_path)
    archive = src / "data" / "val_images.tar.gz"
    with tarfile.open(archive, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]

    def write(extra: tarfile.TarInfo | None = None) -> None:
        with gzip.open(archive, "wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
            folder = tarfile.TarInfo("val")
            folder.type = tarfile.DIRTYPE
            tar.addfile(folder)
            for member, data in members:
                member.name = f"val/{member.name.rsplit('/', 1)[-1]}"
                tar.addfile(member, io.BytesIO(data))
            note = tarfile.TarInfo("val/README.txt")
            note.size = 6
            tar.addfile(note, io.BytesIO(b"notes\n"))
            if extra is not None:
                tar.addfile(extra)

    write()
    dst = tmp_path / "data"
    prepare(src, dst, only="val", workers=1, progress=False)
    ours = {k: v for k, v in files_of(dst).items() if k.startswith("val/") or k.startswith("meta/val")}
    assert ours == {k: v for k, v in files_of(reference).items() if k.startswith("val/") or k.startswith("meta/val")}
    source = json.loads((dst / "meta" / "prep.json").read_text())["splits"]["val"]["source"]
    assert source["skipped_members"] == 1 and source["skipped_first"] == ["val_images.tar.gz:val/README.txt"]
    link = tarfile.TarInfo("val/ILSVRC2012_val_00000099_n01739381.JPEG")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    write(link)
    with pytest.raises(ImnetError, match="member 'val/ILSVRC2012_val_00000099_n01739381.JPEG' is a link "
                                         "\\(to '/etc/passwd'\\); refusing it"):
        prepare(src, tmp_path / "d2", only="val", workers=1, progress=False)
    assert_nothing_of(tmp_path / "d2", "val")


def test_a_split_from_another_source_keeps_the_trees_classes(official, reference, sources, tmp_path):
    """train from the official archives, val from the Hugging Face archives (no devkit): classes.tsv keeps
    the devkit's IDs, and the tree is the official one."""
    dst = tmp_path / "data"
    prepare(official.root, dst, checksums=official.checksums, only="train", workers=1, progress=False)
    prepare(sources["hf"].src, dst, only="val", workers=1, progress=False)
    assert files_of(dst) == files_of(reference)


# --- the fake layouts, read by independent readers ------------------------------------------------------

def test_fake_layouts_are_what_the_publishers_tools_read(official, sources, tmp_path):
    from huggingface_hub import scan_cache_dir
    from torchvision.datasets import ImageFolder, ImageNet

    cache = scan_cache_dir(sources["hf-cache"].src)
    (repo,) = cache.repos
    assert repo.repo_id == "ILSVRC/imagenet-1k" and repo.repo_type == "dataset"
    (revision,) = repo.revisions
    assert revision.refs == frozenset({"main"})
    assert sorted(str(f.file_path.relative_to(revision.snapshot_path)) for f in revision.files) == sorted(
        ["classes.py", "data/test_images.tar.gz", "data/val_images.tar.gz"]
        + [f"data/train_images_{i}.tar.gz" for i in range(5)])
    # The dataset's own reading rule: <IMAGE_FILENAME>_<SYNSET_ID>.JPEG, label = position in classes.py.
    hf = sources["hf"]
    classes = read_classes_py(hf.out / "classes.py")
    labels = []
    with tarfile.open(hf.out / "data" / "val_images.tar.gz", "r:gz") as tar:
        for member in tar:
            root, _ = os.path.splitext(member.name)
            number, synset = root.rsplit("_", 1)
            labels.append((int(number[-8:]), list(classes).index(synset)))
    assert [label for _, label in sorted(labels)] == official.val_labels
    with zipfile.ZipFile(sources["kaggle-zip"].src) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
    assert "LOC_val_solution.csv" in names and "ILSVRC/ImageSets/CLS-LOC/train_cls.txt" in names
    assert sum(n.startswith("ILSVRC/Data/CLS-LOC/train/") for n in names) == 20
    tree = sources["tree"].src
    for split, count in (("train", 20), ("val", 15)):
        dataset = ImageNet(str(tree), split=split)  # torchvision reads meta.bin and the class folders
        assert len(dataset) == count and dataset.wnids == official.wnids
    assert len(ImageFolder(str(sources["tree-flat"].src / "train"))) == 20


def test_fake_sources_are_deterministic(tmp_path):
    for layout in ("hf-cache", "kaggle-zip"):
        a = fake_source(tmp_path / "a" / layout, layout, seed=3, classes=2, train_per_class=2, val=3)
        b = fake_source(tmp_path / "b" / layout, layout, seed=3, classes=2, train_per_class=2, val=3)
        assert files_of(a.out) == files_of(b.out)


def test_cli_fake_layout_and_prep_help(tmp_path):
    result = run_cli("fake", "--out", tmp_path / "k", "--layout", "kaggle", "--classes", 2, "--train-per-class", 2,
                     "--val", 4)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "k" / "LOC_val_solution.csv").is_file() and "imnet prep --src" in result.stdout
    prep = run_cli("prep", "--src", tmp_path / "k", "--dst", tmp_path / "d", "--workers", 1)
    assert prep.returncode == 0, prep.stderr
    assert "from kaggle" in prep.stdout and "prep train (kaggle)" in prep.stderr  # summary line; progress bar
    helps = run_cli("prep", "--help").stdout + run_cli("fake", "--help").stdout
    for word in ("--source", "--devkit", "Hugging Face", "Kaggle", "hf-cache", "kaggle-zip", "tree-flat"):
        assert word in helps
    from imnet.cli import fake, prep
    from imnet.prep.sources import source_kinds

    choices = {(command.name, p.name): list(p.type.choices) for command in (prep, fake) for p in command.params
               if p.name in ("source", "layout")}
    assert choices == {("prep", "source"): source_kinds(), ("fake", "layout"): ["official", *LAYOUTS]}


# --- bad inputs: one line, exit 2, nothing of the split kept --------------------------------------------

def rewrite_tar_gz(path: Path, rename: dict[str, str] | None = None) -> None:
    with tarfile.open(path, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with gzip.open(path, "wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for member, data in members:
            member.name = (rename or {}).get(member.name, member.name)
            tar.addfile(member, io.BytesIO(data))


def test_a_val_image_missing_from_the_csv_is_one_line(sources, tmp_path):
    src = copy_source(sources["kaggle"], tmp_path)
    lines = (src / "LOC_val_solution.csv").read_text().splitlines()
    dropped = next(line for line in lines[1:] if line.startswith("ILSVRC2012_val_00000007,"))
    (src / "LOC_val_solution.csv").write_text("\n".join(line for line in lines if line != dropped) + "\n")
    dst = tmp_path / "data"
    line = error_line(run_cli("prep", "--src", src, "--dst", dst, "--workers", 1))
    assert "ILSVRC2012_val_00000007.JPEG: no label for this image in" in line and "LOC_val_solution.csv" in line
    assert not dst.exists() or not any(dst.rglob("*.JPEG"))  # refused from the listing: nothing written


def test_an_unknown_wnid_is_one_line(sources, tmp_path):
    src = copy_source(sources["hf"], tmp_path)
    archive = src / "data" / "val_images.tar.gz"
    with tarfile.open(archive, "r:gz") as tar:
        victim = tar.getnames()[4]
    rewrite_tar_gz(archive, {victim: victim.rsplit("_", 1)[0] + "_n09999999.JPEG"})
    dst = tmp_path / "data"
    line = error_line(run_cli("prep", "--src", src, "--dst", dst, "--only", "val", "--workers", 2))
    assert f"{archive}:{victim.rsplit('_', 1)[0]}_n09999999.JPEG: class n09999999 is not one of the 5 classes of" \
           in line and "classes.py" in line and "nothing of the val split was kept" in line
    assert_nothing_of(dst, "val")


def test_a_truncated_tar_gz_is_one_line_and_leaves_nothing(sources, tmp_path):
    src = copy_source(sources["hf"], tmp_path)
    archive = src / "data" / "train_images_2.tar.gz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    dst = tmp_path / "data"
    line = error_line(run_cli("prep", "--src", src, "--dst", dst, "--workers", 2))
    assert f"{archive}: truncated or corrupt .tar.gz" in line and "download it again" in line
    assert_nothing_of(dst, "train")


@pytest.mark.parametrize("layout, says", [("hf-cache", "the hub's blob name"),
                                          ("hf", r"the download's metadata \(.cache/huggingface/download\)")])
def test_a_damaged_archive_fails_its_sha256(sources, tmp_path, layout, says):
    src = copy_source(sources[layout], tmp_path)
    folder = next((src / "datasets--ILSVRC--imagenet-1k" / "snapshots").iterdir()) if layout == "hf-cache" else src
    target = (folder / "data" / "train_images_0.tar.gz").resolve()
    stat = target.stat()
    target.write_bytes((folder / "data" / "train_images_1.tar.gz").resolve().read_bytes())  # valid gzip, other bytes
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as old as the download's metadata
    with pytest.raises(ImnetError, match=r"train_images_0.tar.gz: checksum mismatch: sha256 [0-9a-f]{64}, "
                                         + says + r" says [0-9a-f]{64}; the file is damaged"):
        prepare(src, tmp_path / "data", only="train", workers=1, progress=False)
    assert_nothing_of(tmp_path / "data", "train")


def test_damaged_and_truncated_zips_are_one_line(sources, tmp_path):
    src = copy_source(sources["kaggle-zip"], tmp_path)
    with zipfile.ZipFile(src) as archive:
        info = archive.getinfo("ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000005.JPEG")
    data = bytearray(src.read_bytes())
    start = info.header_offset + 30 + len(info.filename)
    data[start + info.compress_size // 2] ^= 0xFF
    src.write_bytes(bytes(data))
    line = error_line(run_cli("prep", "--src", src, "--dst", tmp_path / "d1", "--only", "val", "--workers", 1))
    assert f"{src}:ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000005.JPEG: " in line
    assert "damaged" in line
    assert_nothing_of(tmp_path / "d1", "val")
    src.write_bytes(bytes(data[: len(data) - 100]))
    line = error_line(run_cli("prep", "--src", src, "--dst", tmp_path / "d2", "--workers", 1))
    assert f"{src}: not a readable zip" in line


def test_an_incomplete_kaggle_train_folder_is_refused_by_train_cls(sources, tmp_path):
    src = copy_source(sources["kaggle"], tmp_path)
    victim = sorted((src / "ILSVRC" / "Data" / "CLS-LOC" / "train").rglob("*.JPEG"))[3]
    victim.unlink()
    with pytest.raises(ImnetError, match="train_cls.txt lists .* but .* has no such file; the download or unzip is "
                                         "incomplete"):
        prepare(src, tmp_path / "data", workers=1, progress=False)


def test_tree_labels_must_agree(official, sources, tmp_path):
    src = copy_source(sources["tree"], tmp_path)
    moved = sorted((src / "val").rglob("*.JPEG"))[0]
    other = next(p for p in sorted((src / "val").iterdir()) if p.name != moved.parent.name)
    moved.rename(other / moved.name)  # now in the wrong class folder: the devkit's ground truth says otherwise
    with pytest.raises(ImnetError, match=f"{moved.name}: the labels disagree: its class folder says {other.name}, "
                                         f"the ground truth of .* says {moved.parent.name}"):
        prepare(src, tmp_path / "data", devkit=official.devkit, workers=1, progress=False)
    (src / "val" / "n09999999").mkdir()
    shutil.copy(other / moved.name, src / "val" / "n09999999" / "ILSVRC2012_val_00000099.JPEG")
    with pytest.raises(ImnetError, match="class n09999999 is not one of the 5 classes of .*meta.bin"):
        prepare(src, tmp_path / "data", workers=1, progress=False)


def test_counts_are_checked_against_the_devkit_and_the_official_figures(sources, tmp_path):
    other_kit = fake_ilsvrc(tmp_path / "kit5", **dict(SMALL, train_per_class=5)).devkit  # same classes, 5 each
    with pytest.raises(ImnetError, match=r"class n\d{8} has 4 train images, ILSVRC2012_devkit_t12.tar.gz says 5 "
                                         r"\(num_train_images\)"):
        prepare(sources["kaggle"].src, tmp_path / "d1", only="train", devkit=other_kit, workers=1, progress=False)
    assert_nothing_of(tmp_path / "d1", "train")
    # An incomplete download of the real set: classes.py lists the 1000 classes, two have images.
    two = fake_source(tmp_path / "two", "hf", classes=2, train_per_class=2, val=2)  # the quirk classes: real wnids
    (two.out / "classes.py").write_text(classes_py_text({w: "" for w in official_wnids()}))
    with pytest.raises(ImnetError, match="no train images of class n01440764 .998 of the 1000 classes have none.; "
                                         "the download is incomplete"):
        prepare(two.src, tmp_path / "d2", only="train", workers=1, progress=False)
    with pytest.raises(ImnetError, match="2 val images; ILSVRC2012 has 50,000"):
        prepare(two.src, tmp_path / "d3", only="val", workers=1, progress=False)


def test_class_lists_are_the_official_set_or_a_subset(tmp_path):
    wnids = official_wnids()
    assert len(wnids) == 1000 and wnids == sorted(wnids) and check_official_set(wnids, "x") is True
    assert check_official_set(wnids[:10], "x") is False
    with pytest.raises(ImnetError, match=r"x: 1000 classes, not the 1000 of ILSVRC2012 \(1 not in ILSVRC2012, e.g. "
                                         r"n00000001; 1 missing, e.g. n15075141\)"):
        check_official_set(wnids[:-1] + ["n00000001"], "x")
    (tmp_path / "classes.py").write_text("import os\nIMAGENET2012_CLASSES = os.environ\n")
    with pytest.raises(ImnetError, match="not a literal mapping"):
        read_classes_py(tmp_path / "classes.py")  # parsed, never run


def test_what_is_not_a_usable_hf_download_is_said(sources, tmp_path):
    parquet = tmp_path / "parquet"
    (parquet / "data").mkdir(parents=True)
    (parquet / "data" / "train-00000-of-00294.parquet").write_bytes(b"PAR1")
    with pytest.raises(ImnetError, match="holds the parquet files of the dataset, not its .tar.gz archives"):
        detect_source(parquet)
    src = copy_source(sources["hf-cache"], tmp_path)
    repo = src / "datasets--ILSVRC--imagenet-1k"
    (repo / "refs" / "main").unlink()
    shutil.copytree(next((repo / "snapshots").iterdir()), repo / "snapshots" / ("f" * 40), symlinks=True)
    with pytest.raises(ImnetError, match="2 snapshots and no refs/main naming one of them; give the snapshot folder"):
        detect_source(src)
    partial = copy_source(sources["hf"], tmp_path / "p")
    (partial / "data" / "train_images_3.tar.gz").unlink()
    with pytest.raises(ImnetError, match=r"data/train_images_3.tar.gz is missing \(1 of the 5 train archives\)"):
        prepare(partial, tmp_path / "d", only="train", workers=1, progress=False)
    with pytest.raises(ImnetError, match="--checksums lists the MD5s of the official archives"):
        prepare(partial, tmp_path / "d", checksums=tmp_path / "x.md5", progress=False)


# --- resume, identity, the lock ---------------------------------------------------------------------------

@pytest.mark.parametrize("layout, crash_at", [("hf", "train:unit:2"), ("kaggle-zip", "val:unit:1")])
def test_kill_9_then_resume_gives_the_official_tree(official, reference, sources, tmp_path, layout, crash_at):
    dst = tmp_path / "data"
    args = ("prep", "--src", sources[layout].src, "--dst", dst, "--devkit", official.devkit)
    killed = run_cli(*args, "--workers", 2, env={"IMNET_PREP_CRASH_AT": crash_at})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    split = crash_at.split(":")[0]
    assert not (dst / "meta" / f"{split}.txt").exists()
    assert json.loads((dst / "meta" / ".journal-" f"{split}.jsonl").read_text().splitlines()[0])["source"] == KIND[layout]
    resumed = run_cli(*args, "--workers", 1)
    assert resumed.returncode == 0, resumed.stderr
    assert files_of(dst) == files_of(reference) and splits_of(dst) == splits_of(reference)


def test_another_input_is_refused_until_redo_and_a_rerun_changes_nothing(official, reference, sources, tmp_path):
    dst = tmp_path / "data"
    prepare(official.root, dst, checksums=official.checksums, workers=1, progress=False)
    with pytest.raises(ImnetError, match="the train split of .* was prepared from ILSVRC2012_img_train.tar, not from "
                                         "these files: a different input. Prepare the train split again with --redo"):
        prepare(sources["kaggle"].src, dst, devkit=official.devkit, workers=1, progress=False)
    prepare(sources["kaggle"].src, dst, devkit=official.devkit, redo=True, workers=1, progress=False)
    assert files_of(dst) == files_of(reference)
    before = {p: p.stat().st_mtime_ns for p in dst.rglob("*")}
    again = prepare(sources["kaggle"].src, dst, devkit=official.devkit, workers=1, progress=False)
    assert {s: i["status"] for s, i in again["splits"].items()} == {"train": "already prepared",
                                                                     "val": "already prepared"}
    assert {p: p.stat().st_mtime_ns for p in dst.rglob("*")} == before


def test_reverify_rehashes_the_hub_blobs(sources, tmp_path):
    src = copy_source(sources["hf-cache"], tmp_path)
    dst = tmp_path / "data"
    prepare(src, dst, workers=1, progress=False)
    moved = tmp_path / "moved"
    src.rename(moved)  # the same input elsewhere: still the same input (no absolute path in its fingerprint)
    src = moved
    summary = prepare(src, dst, reverify=True, workers=1, progress=False)
    assert {i["status"] for i in summary["splits"].values()} == {"reverified"}
    blob = (next((src / "datasets--ILSVRC--imagenet-1k" / "snapshots").iterdir()) / "data" /
            "val_images.tar.gz").resolve()
    stat = blob.stat()
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 1  # same size and mtime: only the content tells
    blob.write_bytes(bytes(data))
    os.utime(blob, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ImnetError, match=r"the val split differs from its record: .*val_images.tar.gz: sha256"):
        prepare(src, dst, reverify=True, workers=1, progress=False)


def test_a_second_prep_from_a_source_exits_at_once_naming_the_holder(sources, tmp_path):
    dst = tmp_path / "data"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMNET_PREP_")}
    first = subprocess.Popen([sys.executable, "-m", "imnet", "prep", "--src", str(sources["tree"].src), "--dst",
                              str(dst), "--workers", "1"], env=dict(environment, IMNET_PREP_STOP_AT="locked"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with open(f"/proc/{first.pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "T":
                    break
            time.sleep(0.02)
        with pytest.raises(LockHeld, match=f"pid {first.pid} on host"):
            prepare(sources["hf"].src, dst, workers=1, progress=False)
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
