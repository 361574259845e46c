"""imnet prep of the eval sets (ImageNetV2 x3, ImageNet-A, -R, -Sketch) from fake archives in their
publishers' layouts: the archives read back by plain tarfile/zipfile, label maps against independent
facts (the writer's own truth, torchvision's ImageFolder for the string-sort trap, timm's and the
hendrycks eval code's index lists), repairs by content, checksums, bad members refused with nothing
left, kill -9 and resume, and the 1000-class index space required."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from imnet.cli import main
from imnet.errors import ImnetError
from imnet.prep import prepare
from imnet.prep.manifests import read_classes, read_file_list
from imnet.prep.sets import EVAL_SET_NAMES, EVAL_SETS, published_facts
from imnet.testing import fake_ilsvrc
from imnet.testing.fake import meta_mat_bytes, write_checksums, write_devkit
from imnet.testing.fake_sets import class_subset, fake_eval_sets, prepared_tree_with_sets
from imnet.testing.fs import can_mount, tmpfs

SMALL = dict(classes=12, train_per_class=4, val=24, image_size=(40, 32))
TIMM_INFO = Path(__import__("timm").__file__).parent / "data" / "_info"
needs_root = pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs root")
# Facts of the publishers' eval code, written out here as an independent reference: the first and last
# class indices of ImageNet-A (natural-adv-examples eval.py, thousand_k_to_200: 6 -> 0, ..., 988 -> 199)
# and of ImageNet-R (imagenet-r eval.py's imagenet_r_indices comment).
A_FIRST, A_LAST = [6, 11, 13, 15, 17, 22, 23, 27, 30, 37], [971, 972, 980, 981, 984, 986, 987, 988]
R_FIRST, R_LAST = [1, 2, 4, 6, 8, 9, 11, 13, 22, 23], [963, 965, 967, 980, 981, 983, 988]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A tree with train, val and every eval set, and what the fake writer says it wrote."""
    return prepared_tree_with_sets(tmp_path_factory.mktemp("sets"), **SMALL)


def _not_left(dst: Path, name: str) -> None:
    """Nothing of the set ``name`` is left that could look prepared."""
    assert not (dst / name).exists()
    assert not (dst / "meta" / f"{name}.txt").exists() and not (dst / "meta" / f"{name}.sha256").exists()
    assert not (dst / "meta" / f".journal-{name}.jsonl").exists()
    if (dst / "meta" / "prep.json").exists():
        assert name not in json.loads((dst / "meta" / "prep.json").read_text())["splits"]


def test_fake_archives_are_in_the_publishers_layouts(tree):
    _, fake = tree
    for name in EVAL_SET_NAMES:
        spec, path = EVAL_SETS[name], fake.archives[name]
        assert path.name == spec.archive
        if spec.packing == "zip":
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in archive.infolist() if not i.is_dir())
            files = [n for n in names if not n.endswith("/")]
            assert "sketch/" in names and all(n.startswith("sketch/n") and "/sketch_" in n and n.endswith(".JPEG")
                                              for n in files)
        else:
            with tarfile.open(path, "r:gz" if spec.packing == "tar.gz" else "r:") as archive:
                members = archive.getmembers()
                data = {m.name: archive.extractfile(m).read() for m in members if m.isfile()}
            names = [m.name for m in members]
            files = [m.name for m in members if m.isfile()]
            root = spec.roots[0]
            assert names[0] == root and members[0].isdir()
            if spec.folders == "index":  # <root>/<class index>/<sha1 of the file>.jpeg
                assert root == f"{name}-format-val"
                for member in files:
                    _, folder, file = member.split("/")
                    assert folder.isdigit() and file == f"{hashlib.sha1(data[member]).hexdigest()}.jpeg"
            else:
                assert f"{root}/README.txt" in files
                images = [f for f in files if not f.endswith("README.txt")]
                assert all(f.split("/")[1].startswith("n") and f.endswith(".jpg") for f in images)
        assert sorted(m for m, _ in fake.members[name]) == sorted(f for f in files if not f.endswith("README.txt"))
    assert any(" _ " in m and "'" in m for m, _ in fake.members["imagenet-a"])  # spaces, an apostrophe


def test_labels_match_the_writers_truth(tree):
    """Every image of every set is listed under its class index in the 1000-class space: ImageNetV2's
    folder i is class i, the other sets' wnid folders are located among the tree's sorted wnids."""
    data, fake = tree
    classes = read_classes(data)
    wnids = [c.wnid for c in classes]
    assert wnids == sorted(wnids)
    for name in EVAL_SET_NAMES:
        listed = dict(read_file_list(data / "meta" / f"{name}.txt"))
        expected = {}
        for member, index in fake.members[name]:
            parts = member.split("/")
            expected[f"{wnids[index]}/{parts[-1]}"] = index
            if EVAL_SETS[name].folders == "wnid":
                assert parts[1] == wnids[index]
            else:
                assert parts[1] == str(index)
        assert listed == expected, name
        for rel in listed:
            assert (data / name / rel).is_file()


def test_v2_folders_are_class_indices_not_string_sorted(tree, tmp_path):
    """The trap: torchvision's ImageFolder (a string sort) maps ImageNetV2's folder "10" to class 2;
    prep maps it to class 10, the wnid at position 10 of the sorted classes."""
    from torchvision.datasets import ImageFolder

    data, fake = tree
    with tarfile.open(fake.archives["imagenetv2-matched-frequency"]) as archive:
        archive.extractall(tmp_path, filter="data")
    folder = ImageFolder(tmp_path / "imagenetv2-matched-frequency-format-val")
    assert folder.class_to_idx["10"] == 2 and folder.class_to_idx["2"] == 4  # what a plain ImageFolder does
    wnid10 = read_classes(data)[10].wnid
    listed = read_file_list(data / "meta" / "imagenetv2-matched-frequency.txt")
    from_10 = sorted(p.name for p in (tmp_path / "imagenetv2-matched-frequency-format-val" / "10").iterdir())
    assert sorted(rel.split("/")[1] for rel, index in listed if index == 10) == from_10
    assert all(rel.startswith(f"{wnid10}/") for rel, index in listed if index == 10)


def test_v2_folder_100_is_class_100(tmp_path):
    """With more than 100 classes: folder "100" is class 100 (a string sort makes it 3)."""
    fake = fake_ilsvrc(tmp_path / "src", classes=101, train_per_class=1, val=101, image_size=(16, 16), quirks=False)
    sets = fake_eval_sets(tmp_path / "src", fake.wnids, sets=("imagenetv2-top-images",), per_class=1,
                          image_size=(16, 16), quirks=False, checksums=fake.checksums)
    prepare(tmp_path / "src", tmp_path / "data", checksums=fake.checksums, only="v2-top-images,val", workers=1,
            progress=False)
    listed = dict(read_file_list(tmp_path / "data" / "meta" / "imagenetv2-top-images.txt"))
    member = next(m for m, index in sets.members["imagenetv2-top-images"] if m.split("/")[1] == "100")
    assert listed[f"{fake.wnids[100]}/{member.rsplit('/', 1)[1]}"] == 100
    assert sorted(str(i) for i in range(101)).index("100") == 3


def test_class_subsets_of_a_and_r_against_published_index_lists(tmp_path):
    """On ImageNet's real 1000 wnids (timm's imagenet_synsets.txt), ImageNet-A/-R's labels are exactly
    timm's imagenet_{a,r}_indices.txt and begin and end as the publishers' eval code says; the shipped
    wnid lists are timm's; prep checks an archive's folders against them."""
    wnids = (TIMM_INFO / "imagenet_synsets.txt").read_text().split()
    assert len(wnids) == 1000 and wnids == sorted(wnids)
    src = tmp_path / "src"
    src.mkdir()
    ids = {w: i + 1 for i, w in enumerate(reversed(wnids))}
    write_devkit(src / "ILSVRC2012_devkit_t12.tar.gz",
                 meta_mat_bytes(wnids, ids, [f"n0000000{i}" for i in range(8)], {w: 1 for w in wnids}), [ids[wnids[0]]])
    fake_eval_sets(src, wnids, sets=("imagenet-a", "imagenet-r"), per_class=1, image_size=(8, 8), quirks=False)
    write_checksums(src / "checksums.md5", sorted(src.iterdir()))
    prepare(src, tmp_path / "data", checksums=src / "checksums.md5", workers=2, progress=False)
    for name, first, last in (("imagenet-a", A_FIRST, A_LAST), ("imagenet-r", R_FIRST, R_LAST)):
        short = name.split("-")[1]
        timm_wnids = (TIMM_INFO / f"imagenet_{short}_synsets.txt").read_text().split()
        timm_indices = [int(x) for x in (TIMM_INFO / f"imagenet_{short}_indices.txt").read_text().split()]
        assert published_facts(name)["wnids"] == timm_wnids
        labels = sorted({index for _, index in read_file_list(tmp_path / "data" / "meta" / f"{name}.txt")})
        assert labels == timm_indices and labels[:len(first)] == first and labels[-len(last):] == last
        record = json.loads((tmp_path / "data" / "meta" / "prep.json").read_text())["splits"][name]
        assert record["class_indices"] == timm_indices and record["protocol"] == "argmax over the 200 classes of the set"
        assert class_subset(name, wnids) == timm_indices
    # An ImageNet-A archive missing one of the 200 folders is refused on the real classes.
    shutil.rmtree(tmp_path / "data")
    archive = src / "imagenet-a.tar"
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tar:
        for member, content in members:
            if "/n01498041" not in member.name:
                tar.addfile(member, None if content is None else __import__("io").BytesIO(content))
    write_checksums(src / "checksums.md5", sorted(p for p in src.iterdir() if p.name != "checksums.md5"))
    with pytest.raises(ImnetError, match=r"holds 199 class folders, ImageNet-A has the 200 .*missing n01498041"):
        prepare(src, tmp_path / "data", checksums=src / "checksums.md5", only="a", workers=1, progress=False)
    _not_left(tmp_path / "data", "imagenet-a")


def test_quirks_found_by_content_and_repaired(tree):
    data, fake = tree
    record = json.loads((data / "meta" / "prep.json").read_text())["splits"]
    planted = {path: kind for path, kind in fake.quirks.items()}
    assert {"png", "cmyk", "grayscale"} <= set(planted.values())
    for path, kind in planted.items():
        name = path.split("/", 1)[0]
        repaired = {q["file"]: q["kind"] for q in record[name]["repaired"]}
        with Image.open(data / path) as image:
            assert image.format == "JPEG"
            if kind == "grayscale":
                assert path in record[name]["grayscale"] and image.mode == "L"
            else:
                assert repaired[path] == kind and image.mode == "RGB"


def test_hash_lists_and_archive_digests(tree):
    data, fake = tree
    record = json.loads((data / "meta" / "prep.json").read_text())["splits"]
    for name in EVAL_SET_NAMES:
        if shutil.which("sha256sum"):
            assert subprocess.run(["sha256sum", "--quiet", "-c", f"meta/{name}.sha256"], cwd=data).returncode == 0
        archive = fake.archives[name].read_bytes()
        assert record[name]["md5"] == hashlib.md5(archive).hexdigest()
        assert record[name]["sha256"] == hashlib.sha256(archive).hexdigest()
        assert record[name]["md5_checked_against"] == "checksum list" and record[name]["decode_checked"]
    assert main_ok(["verify", "--data", str(data), "--hashes"])


def main_ok(args) -> bool:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code == 0


def test_rerun_is_a_noop_and_only_takes_aliases(tree, tmp_path, capsys, cli_error):
    data, fake = tree
    stamps = {p: p.stat().st_mtime_ns for p in (data / "meta").iterdir()}
    assert main_ok(["prep", "--src", str(fake.root), "--dst", str(data), "--checksums", str(fake.root / "checksums.md5"),
                    "--only", "a,r,sketch,v2"])
    out = capsys.readouterr().out
    assert "imagenet-a already prepared: 10 images" in out and "imagenetv2-matched-frequency already prepared" in out
    assert "train" not in out.split("->")[0]
    assert {p: p.stat().st_mtime_ns for p in (data / "meta").iterdir()} == stamps
    line = cli_error(["prep", "--src", str(fake.root), "--dst", str(tmp_path / "x"), "--only", "imagenet-c"])
    assert "unknown split or eval set 'imagenet-c'" in line and "imagenet-a (a)" in line


def test_no_published_checksum_records_md5_and_sha256(tree, tmp_path, capsys):
    _, fake = tree
    listed = [line for line in (fake.root / "checksums.md5").read_text().splitlines() if "imagenetv2" not in line]
    checksums = tmp_path / "no-v2.md5"
    checksums.write_text("\n".join(listed) + "\n")
    assert main_ok(["prep", "--src", str(fake.root), "--dst", str(tmp_path / "data"), "--checksums", str(checksums),
                    "--only", "v2-threshold0.7", "--workers", "1"])
    assert "(no published checksum: MD5 and SHA-256 recorded)" in capsys.readouterr().out
    record = json.loads((tmp_path / "data" / "meta" / "prep.json").read_text())["splits"]["imagenetv2-threshold0.7"]
    archive = fake.archives["imagenetv2-threshold0.7"].read_bytes()
    assert record["md5_checked_against"] is None
    assert (record["md5"], record["sha256"]) == (hashlib.md5(archive).hexdigest(), hashlib.sha256(archive).hexdigest())


def test_published_md5_applies_without_a_listed_one(tree, tmp_path):
    """imagenet-a.tar not in --checksums: the publisher's MD5 is the one to match (a fake is refused)."""
    _, fake = tree
    checksums = tmp_path / "ilsvrc-only.md5"
    checksums.write_text("".join(f"{line}\n" for line in (fake.root / "checksums.md5").read_text().splitlines()
                                 if "ILSVRC2012" in line))
    with pytest.raises(ImnetError, match=r"imagenet-a.tar: checksum mismatch: md5 [0-9a-f]+, expected "
                                         r"c3e55429088dc681f30d81f4726b6595 \(from manifests/evalsets.md5"):
        prepare(fake.root, tmp_path / "data", checksums=checksums, only="a", workers=1, progress=False)
    _not_left(tmp_path / "data", "imagenet-a")


def _rewrite_tar(path: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]], gz: bool) -> None:
    with tarfile.open(path, "r:gz" if gz else "r:") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]
    import gzip
    import io

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for member, content in members + extra:
            tar.addfile(member, None if content is None else io.BytesIO(content))
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0) if gz else raw.getvalue())


def _member(name: str, data: bytes | None = b"x", kind=tarfile.REGTYPE, link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data or b""), link
    return info, data


@pytest.mark.parametrize("name, extra, message", [
    ("imagenetv2-matched-frequency", _member("imagenetv2-matched-frequency-format-val/12/" + "a" * 40 + ".jpeg"),
     r"class index 12 is not one of the tree's 12 classes"),
    ("imagenetv2-matched-frequency", _member("imagenetv2-matched-frequency-format-val/07/" + "b" * 40 + ".jpeg"),
     r"folder '07' is not a class index"),
    ("imagenet-a", _member("imagenet-a/n99999999/x.jpg"), r"class n99999999 is not one of the tree's 12 classes"),
    ("imagenet-a", _member("imagenet-a/../evil.jpg"), r"points outside the destination"),
    ("imagenet-r", _member("imagenet-r/notes.txt"), r"unexpected member 'imagenet-r/notes.txt' \(ImageNet-R's layout"),
    ("imagenet-r", _member("imagenet-r/n00000000/x.jpg", None, tarfile.SYMTYPE, "/etc/passwd"), r"is a link"),
])
def test_bad_members_are_refused_and_nothing_is_kept(tree, tmp_path, name, extra, message, cli_error):
    _, fake = tree
    src = tmp_path / "src"
    shutil.copytree(fake.root, src)
    spec = EVAL_SETS[name]
    _rewrite_tar(src / spec.archive, [extra], gz=spec.packing == "tar.gz")
    write_checksums(src / "checksums.md5", sorted(p for p in src.iterdir() if p.suffix != ".md5"))
    line = cli_error(["prep", "--src", str(src), "--dst", str(tmp_path / "data"), "--checksums",
                      str(src / "checksums.md5"), "--only", f"val,{name}", "--workers", "1"])
    assert line.startswith(f"imnet: error: {src / spec.archive}: ") and f"[nothing of {name} was kept]" in line
    assert __import__("re").search(message, line), line
    _not_left(tmp_path / "data", name)
    assert (tmp_path / "data" / "meta" / "val.txt").is_file()  # the other split is untouched


def test_zip_with_another_layout_is_refused(tree, tmp_path):
    _, fake = tree
    src = tmp_path / "src"
    shutil.copytree(fake.root, src)
    with zipfile.ZipFile(src / "ImageNet-Sketch.zip", "a") as archive:
        archive.writestr("ImageNet-Sketch/n01440764/sketch_0.JPEG", b"data")
    write_checksums(src / "checksums.md5", sorted(p for p in src.iterdir() if p.suffix != ".md5"))
    with pytest.raises(ImnetError, match=r"unexpected member 'ImageNet-Sketch/n01440764/sketch_0.JPEG' "
                                         r"\(ImageNet-Sketch's layout is sketch/<wnid>/<image>\)"):
        prepare(src, tmp_path / "data", checksums=src / "checksums.md5", only="sketch", workers=1, progress=False)
    _not_left(tmp_path / "data", "imagenet-sketch")


def test_the_1000_classes_are_required(tree, tmp_path):
    _, fake = tree
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(fake.archives["imagenet-a"], src)
    with pytest.raises(ImnetError, match=r"imagenet-a.tar is labelled with ImageNet's 1000 class indices .*put "
                                         r"ILSVRC2012_devkit_t12.tar.gz in --src .*or prepare into a tree that has "
                                         r".*meta/classes.tsv"):
        prepare(src, tmp_path / "data", checksums=fake.root / "checksums.md5", workers=1, progress=False)
    assert not (tmp_path / "data" / "imagenet-a").exists()


def test_foreign_set_folder(tree, tmp_path):
    """A user's own DST/imagenet-a does not block other splits; preparing ImageNet-A there refuses it."""
    _, fake = tree
    dst = tmp_path / "data"
    (dst / "imagenet-a" / "n01440764").mkdir(parents=True)
    (dst / "imagenet-a" / "n01440764" / "mine.jpg").write_bytes(b"keep me")
    prepare(fake.root, dst, checksums=fake.root / "checksums.md5", only="val", workers=1, progress=False)
    with pytest.raises(ImnetError, match=r"imagenet-a/n01440764/mine.jpg was not written by imnet prep"):
        prepare(fake.root, dst, checksums=fake.root / "checksums.md5", only="a", workers=1, progress=False)
    assert (dst / "imagenet-a" / "n01440764" / "mine.jpg").read_bytes() == b"keep me"


def _prep_cmd(fake, dst, only):
    return [sys.executable, "-m", "imnet", "prep", "--src", str(fake.root), "--dst", str(dst), "--checksums",
            str(fake.root / "checksums.md5"), "--only", only, "--workers", "2"]


@pytest.mark.parametrize("point", ["imagenet-sketch:unit:1", "imagenet-sketch:manifests"])
def test_kill_9_then_resume_gives_the_clean_tree(tree, tmp_path, point, cli_error):
    data, fake = tree
    dst = tmp_path / "data"
    env = dict(os.environ, IMNET_PREP_CRASH_AT=point)
    killed = subprocess.run(_prep_cmd(fake, dst, "val,sketch"), env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    record = json.loads((dst / "meta" / "prep.json").read_text())["splits"]
    assert "imagenet-sketch" not in record and (dst / "meta" / ".journal-imagenet-sketch.jsonl").is_file()
    # eval will not score a half-prepared set
    line = cli_error(["eval", "--arch", "cifar_resnet20", "--data", str(dst), "--sets", "val,sketch",
                      "--out", str(tmp_path / "eval")])
    assert "imagenet-sketch" in line and "run the same imnet prep again" in line
    again = subprocess.run(_prep_cmd(fake, dst, "val,sketch"), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    for rel in ("meta/imagenet-sketch.txt", "meta/imagenet-sketch.sha256"):
        assert (dst / rel).read_bytes() == (data / rel).read_bytes()
    for rel, _ in read_file_list(data / "meta" / "imagenet-sketch.txt"):
        assert (dst / "imagenet-sketch" / rel).read_bytes() == (data / "imagenet-sketch" / rel).read_bytes()
    assert not (dst / "meta" / ".journal-imagenet-sketch.jsonl").exists()


def test_reverify_finds_a_changed_image(tree, tmp_path):
    data, fake = tree
    dst = tmp_path / "data"
    shutil.copytree(data, dst)
    prepare(fake.root, dst, checksums=fake.root / "checksums.md5", only="r", reverify=True, workers=1, progress=False)
    rel = read_file_list(dst / "meta" / "imagenet-r.txt")[0][0]
    target = dst / "imagenet-r" / rel
    target.write_bytes(target.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ImnetError, match=rf"the imagenet-r split differs from its record: .*{rel.split('/')[1]}"):
        prepare(fake.root, dst, checksums=fake.root / "checksums.md5", only="r", reverify=True, workers=1,
                progress=False)


@needs_root
def test_write_error_is_one_line_and_the_same_command_resumes(tree, tmp_path, cli_error):
    """DST/imagenet-r on a read-only file system: one line naming the file and EROFS, the journal
    kept, nothing marked complete; writable again, the same command finishes it."""
    data, fake = tree
    dst = tmp_path / "data"
    args = ["prep", "--src", str(fake.root), "--dst", str(dst), "--checksums", str(fake.root / "checksums.md5"),
            "--only", "val,r", "--workers", "1"]
    (dst / "imagenet-r").mkdir(parents=True)
    with tmpfs(dst / "imagenet-r", size="1m", readonly=True):
        line = cli_error(args)
    assert line.startswith(f"imnet: error: {dst / 'imagenet-r'}/") and "cannot write" in line and "(EROFS)" in line
    assert "imagenet-r" not in json.loads((dst / "meta" / "prep.json").read_text())["splits"]
    assert not (dst / "meta" / "imagenet-r.txt").exists()
    with tmpfs(tmp_path / "small", size="64k") as small:
        line = cli_error(["prep", "--src", str(fake.root), "--dst", str(small / "data"), "--checksums",
                          str(fake.root / "checksums.md5"), "--only", "sketch"])
        assert "not enough disk space for imagenet-sketch" in line
    assert main_ok(args)
    assert (dst / "meta" / "imagenet-r.txt").read_bytes() == (data / "meta" / "imagenet-r.txt").read_bytes()


def test_undecodable_image_in_a_set_is_recorded_and_refused_by_the_loaders(tree, tmp_path, capsys):
    from imnet.data import build_eval_loader
    from imnet.testing.fake import corrupt_jpeg

    _, fake = tree
    src = tmp_path / "src"
    shutil.copytree(fake.root, src)
    victim = next(m for m, _ in fake.members["imagenet-r"] if m.endswith("_1.jpg"))
    with tarfile.open(src / "imagenet-r.tar") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]
    import io

    with tarfile.open(src / "imagenet-r.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        for member, content in members:
            if member.name == victim:
                content = corrupt_jpeg(content)
            tar.addfile(member, None if content is None else io.BytesIO(content))
    write_checksums(src / "checksums.md5", sorted(p for p in src.iterdir() if p.suffix != ".md5"))
    dst = tmp_path / "data"
    summary = prepare(src, dst, checksums=src / "checksums.md5", only="val,r", workers=1, progress=False)
    assert summary["splits"]["imagenet-r"]["undecodable"] == 1
    rel = f"imagenet-r/{victim.split('/', 1)[1]}"
    record = json.loads((dst / "meta" / "prep.json").read_text())["splits"]["imagenet-r"]
    assert [b["file"] for b in record["undecodable"]] == [rel]
    assert "undecodable" in capsys.readouterr().err
    assert not main_ok(["verify", "--data", str(dst)])
    with pytest.raises(ImnetError, match=rf"{victim.rsplit('/', 1)[1]}"):
        build_eval_loader(dst, "imagenet-r", crop_size=16, resize_size=18, mean=(0.5,) * 3, std=(0.5,) * 3,
                          loader="torch", workers=0)
    with build_eval_loader(dst, "imagenet-r", crop_size=16, resize_size=18, mean=(0.5,) * 3, std=(0.5,) * 3,
                           loader="torch", workers=0, skip_bad=True) as loader:
        assert sum(batch.images.shape[0] for batch in loader) == len(fake.members["imagenet-r"]) - 1


def test_imnet_fake_writes_the_eval_sets(tmp_path, capsys):
    assert main_ok(["fake", "--out", str(tmp_path), "--classes", "3", "--train-per-class", "1", "--val", "3",
                    "--image-size", "16", "16", "--eval-sets", "a,sketch", "--eval-per-class", "1"])
    assert "wrote imagenet-a.tar, ImageNet-Sketch.zip" in capsys.readouterr().out
    listed = (tmp_path / "checksums.md5").read_text()
    for name in ("imagenet-a.tar", "ImageNet-Sketch.zip", "ILSVRC2012_img_val.tar"):
        digest = hashlib.md5((tmp_path / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}\n" in listed
