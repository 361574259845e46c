"""imnet pack: writing (layout, DALI index, checksums, shuffle, resize), resume after kill -9, the
lock and refusals, --from published timm shards, and reading a pack with timm's wds reader, both
imnet loaders under torchrun (2 gloo ranks; every sample exactly once per epoch across ranks and
workers) and `imnet demo --pack`."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from imnet.pack.layout import read_index
from imnet.pack.resize import ResizeSettings
from imnet.pack.writer import PackOptions, write_pack
from imnet.prep.manifests import read_file_list
from imnet.testing import prepared_tree
from imnet.testing.fake_wds import fake_timm_wds

# One image per train class: a batch's labels name its samples, so the loaders' exactly-once
# property can be checked from what they hand out.
TREE = dict(classes=32, train_per_class=1, val=30, image_size=(120, 90))
SHARD = 5  # 32 train -> 7 shards, 30 val -> 6: ranks' ranges cut across shards


def _imnet(*args, env=None, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "imnet", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="session")
def tree(tmp_path_factory) -> Path:
    return prepared_tree(tmp_path_factory.mktemp("pack-tree"), **TREE)


@pytest.fixture(scope="session")
def pack(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "pack"
    write_pack(PackOptions(out=out, data=tree, shard_size=SHARD, seed=3, workers=2, progress=False))
    return out


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("imagenet1k-*"))}


def test_pack_layout_index_checksums_and_order(tree, pack, tmp_path):
    info = json.loads((pack / "_info.json").read_text())
    train, val = info["splits"]["train"], info["splits"]["validation"]
    assert train["num_samples"] == 32 and sum(train["shard_lengths"]) == 32
    assert train["filenames"] == [f"imagenet1k-train-{i:04d}.tar" for i in range(7)]
    assert val["filenames"] == [f"imagenet1k-validation-{i:04d}.tar" for i in range(6)] and val["num_samples"] == 30
    assert max(train["shard_lengths"]) - min(train["shard_lengths"]) <= 1
    # the checksum list, checked by the standard tool
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=pack).returncode == 0
    assert len((pack / "SHA256SUMS").read_text().splitlines()) == 2 * 13
    # each index is what DALI's own wds2idx writes for the shard
    wds2idx = Path(sys.executable).with_name("wds2idx")
    for name in (train["filenames"][0], val["filenames"][-1]):
        subprocess.run([sys.executable, str(wds2idx), str(pack / name), str(tmp_path / "ref.idx")],
                       check=True, capture_output=True)
        assert (pack / name).with_suffix(".idx").read_text() == (tmp_path / "ref.idx").read_text()
    # members: <key>.jpg/.cls/.json, the original bytes (no --max-side), labels as in the tree
    tree_train = dict(read_file_list(tree / "meta" / "train.txt"))
    with tarfile.open(pack / train["filenames"][0]) as tar:
        names = tar.getnames()
        key = names[0].split(".")[0]
        assert names[:3] == [f"{key}.jpg", f"{key}.cls", f"{key}.json"]
        meta = json.loads(tar.extractfile(f"{key}.json").read())
        relative = f"{meta['wnid']}/{meta['filename']}"
        assert int(tar.extractfile(f"{key}.cls").read()) == tree_train[relative] == meta["label"]
        assert tar.extractfile(f"{key}.jpg").read() == (tree / "train" / relative).read_bytes()
    # train shuffled across shards with the recorded seed; val in val.txt's order
    pack_train = read_file_list(pack / "meta" / "train.txt")
    assert sorted(pack_train) == sorted(tree_train.items()) and pack_train != read_file_list(tree / "meta" / "train.txt")
    assert read_file_list(pack / "meta" / "val.txt") == read_file_list(tree / "meta" / "val.txt")
    record = json.loads((pack / "meta" / "pack.json").read_text())
    assert record["splits"]["train"]["seed"] == 3 and record["splits"]["val"]["seed"] is None
    source = record["splits"]["train"]["source"]
    assert source["path"] == str(tree.resolve())
    assert source["prep_json_sha256"] == hashlib.sha256((tree / "meta" / "prep.json").read_bytes()).hexdigest()
    # same input, same bytes: a second pack with the same settings is identical
    again = tmp_path / "again"
    write_pack(PackOptions(out=again, data=tree, shard_size=SHARD, seed=3, workers=1, progress=False))
    assert _digests(again) == _digests(pack)
    # a re-run on the complete pack changes nothing and says so
    summary = write_pack(PackOptions(out=again, data=tree, shard_size=SHARD, seed=3, progress=False))
    assert {s["status"] for s in summary["splits"].values()} == {"already packed"}


def test_timm_wds_reader_opens_an_imnet_pack(pack):
    timm_data = pytest.importorskip("timm.data")
    labels = {f.rsplit("/", 1)[1].split(".")[0]: label for f, label in read_file_list(pack / "meta" / "val.txt")}
    dataset = timm_data.create_dataset("wds/imagenet-1k", root=str(pack), split="validation", is_training=False,
                                       batch_size=1)
    items = list(dataset)
    assert len(dataset) == 30 and len(items) == 30
    assert sorted(target for _, target in items) == sorted(labels.values())
    assert all(image.size == (120, 90) for image, _ in items)
    train = timm_data.create_dataset("wds/imagenet-1k", root=str(pack), split="train", is_training=False, batch_size=1)
    assert sorted(t for _, t in train) == list(range(32))


def test_resized_pack_has_the_recorded_max_side_and_keeps_small_images(tree, pack, tmp_path):
    small = tmp_path / "small"
    write_pack(PackOptions(out=small, data=tree, shard_size=SHARD, seed=3, resize=ResizeSettings(64, 85),
                           workers=2, progress=False))
    record = json.loads((small / "meta" / "pack.json").read_text())
    assert record["splits"]["train"]["resize"] == {"max_side": 64, "quality": 85}
    assert record["splits"]["train"]["resized"] == 32 and record["splits"]["val"]["resize"]["max_side"] is None
    for shard in sorted(small.glob("imagenet1k-train-*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".jpg"):
                    with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
                        assert max(image.size) == 64 and image.size == (64, 48) and image.format == "JPEG"
    # val keeps the original bytes unless asked
    assert _digests(small).keys() == _digests(pack).keys()
    assert {k: v for k, v in _digests(small).items() if "validation" in k} == \
        {k: v for k, v in _digests(pack).items() if "validation" in k}
    # images no larger than max_side keep their bytes: a 120-pixel limit changes nothing
    same = tmp_path / "same"
    write_pack(PackOptions(out=same, data=tree, shard_size=SHARD, seed=3, resize=ResizeSettings(120), workers=1,
                           progress=False))
    assert {k: v for k, v in _digests(same).items() if "train" in k} == \
        {k: v for k, v in _digests(pack).items() if "train" in k}
    # the complete pack refuses other settings without --redo
    again = _imnet("pack", "--data", tree, "--out", small, "--shard-size", SHARD, "--seed", 3, "--no-progress",
                   check=False)
    assert again.returncode == 2 and "other settings" in again.stderr and "--redo" in again.stderr


def test_resume_after_kill_9(tree, pack, tmp_path):
    out = tmp_path / "killed"
    args = ["pack", "--data", tree, "--out", out, "--shard-size", SHARD, "--seed", 3, "--workers", 1, "--no-progress"]
    killed = _imnet(*args, env={"IMNET_PACK_CRASH_AT": "train:shard:3"}, check=False)
    assert killed.returncode == -9
    record = json.loads((out / "meta" / "pack.json").read_text()) if (out / "meta" / "pack.json").exists() else {}
    assert "train" not in record.get("splits", {}) and not (out / "_info.json").exists()
    journal = (out / "meta" / ".journal-train.jsonl").read_text().splitlines()
    assert len(journal) == 1 + 3  # identity + the three journaled shards
    # killed again just before the split's record: still not complete
    killed = _imnet(*args, env={"IMNET_PACK_CRASH_AT": "val:info"}, check=False)
    assert killed.returncode == -9
    record = json.loads((out / "meta" / "pack.json").read_text())
    assert record["splits"]["train"]["complete"] and "val" not in record["splits"]
    from imnet.data import read_split
    from imnet.errors import ImnetError

    with pytest.raises(ImnetError, match="not complete.*run the same imnet pack again"):
        read_split(out, "val")
    done = _imnet(*args)
    assert "val packed" in done.stdout and "train already packed" in done.stdout
    assert _digests(out) == _digests(pack)
    assert not list(out.rglob(".*.part")) and not (out / "meta" / ".journal-val.jsonl").exists()


def test_lock_foreign_files_and_bad_sources(tree, tmp_path):
    from imnet.prep.lock import TreeLock

    out = tmp_path / "locked"
    with TreeLock(out / ".imnet-lock", "imnet pack"):
        held = _imnet("pack", "--data", tree, "--out", out, "--no-progress", check=False)
    assert held.returncode == 2 and "being written by another imnet run" in held.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = _imnet("pack", "--data", tree, "--out", foreign, check=False)
    assert refused.returncode == 2 and "notes.txt was not written by imnet pack" in refused.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    inside = _imnet("pack", "--data", tree, "--out", tree / "pack", check=False)
    assert inside.returncode == 2 and "overlap" in inside.stderr
    no_info = _imnet("pack", "--from", foreign, "--out", tmp_path / "p", check=False)
    assert no_info.returncode == 2 and "no _info.json" in no_info.stderr


def test_pack_from_published_timm_shards(tree, tmp_path):
    source = fake_timm_wds(tree, tmp_path / "timm", shards={"train": 3, "val": 2})
    out = tmp_path / "from"
    done = _imnet("pack", "--from", source, "--classes", tree, "--out", out, "--shard-size", 8, "--no-progress")
    assert "train packed: 32 images" in done.stdout and "val packed: 30 images" in done.stdout
    # val back in val-number order: positions line up with a prepared tree's val.txt (and ReaL)
    assert read_file_list(out / "meta" / "val.txt") == read_file_list(tree / "meta" / "val.txt")
    assert sorted(read_file_list(out / "meta" / "train.txt")) == sorted(read_file_list(tree / "meta" / "train.txt"))
    # a shard count that disagrees with _info.json, and a class list that does not fit, are refused
    info = json.loads((source / "_info.json").read_text())
    info["splits"]["train"]["shard_lengths"][0] += 1
    info["splits"]["train"]["num_samples"] += 1
    (source / "_info.json").write_text(json.dumps(info))
    bad = _imnet("pack", "--from", source, "--classes", tree, "--out", tmp_path / "bad", check=False)
    assert bad.returncode == 2 and "imagenet1k-train-0000.tar" in bad.stderr and "_info.json gives" in bad.stderr
    info["splits"]["train"]["shard_lengths"][0] -= 1
    info["splits"]["train"]["num_samples"] -= 1
    (source / "_info.json").write_text(json.dumps(info))
    # without --classes the 1000 official wnids are the list: the fixture's 32 classes are not those
    wrong = _imnet("pack", "--from", source, "--out", tmp_path / "wrong", check=False)
    assert wrong.returncode == 2 and "the class list does not fit these shards" in wrong.stderr


DIST_CHECK = r'''
import json, sys
import torch.distributed as dist
from imnet.data import build_eval_loader, build_train_loader
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
pack, out = sys.argv[1], sys.argv[2]
norm = dict(mean=(0.5,) * 3, std=(0.25,) * 3, rank=rank, world_size=world)
result = {}
for loader, workers in (("torch", 2), ("dali", 1)):
    with build_eval_loader(pack, "val", crop_size=48, resize_size=56, crops=1, batch_size=4, loader=loader,
                           workers=workers, **norm) as ev:
        seen = [(int(i), int(l)) for b in ev for i, l in zip(b.indices, b.labels)]
    train = build_train_loader(pack, crop_size=48, resize_size=56, batch_size=4, loader=loader, workers=workers,
                               seed=1, **norm)
    epochs = []
    for epoch in range(2):
        train.set_epoch(epoch)
        epochs.append([int(l) for _, labels in train for l in labels])
    gathered = [None] * world
    dist.all_gather_object(gathered, {"eval": seen, "train": epochs, "batches": len(train), "name": train.name})
    result[loader] = gathered
    train.close()
if rank == 0:
    json.dump(result, open(out, "w"))
dist.destroy_process_group()
'''


def test_both_loaders_read_a_pack_under_torchrun_exactly_once(pack, tmp_path):
    script = tmp_path / "check.py"
    script.write_text(DIST_CHECK)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(pack), str(tmp_path / "out.json")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    val = read_file_list(pack / "meta" / "val.txt")
    for loader, ranks in result.items():
        # eval: every val image exactly once across ranks, with its position in val.txt and its label
        seen = sorted(tuple(x) for r in ranks for x in r["eval"])
        assert seen == [(i, label) for i, (_, label) in enumerate(val)], loader
        # train: 16 samples (4 batches of 4) per rank; across ranks (and, for torch, their 2 workers
        # each) every one of the 32 samples once per epoch (one image per class: labels name samples)
        assert [r["batches"] for r in ranks] == [4, 4]
        for epoch in range(2):
            labels = sorted(label for r in ranks for label in r["train"][epoch])
            assert labels == list(range(32)), (loader, epoch)
        # and each epoch is a new partition and order
        assert ranks[0]["train"][0] != ranks[0]["train"][1], loader
    assert result["dali"][0]["name"] == "dali-cpu" and result["torch"][0]["name"] == "torch"


@pytest.mark.usefixtures("one_torch_thread")
def test_demo_runs_through_a_pack(tmp_path):
    from imnet.demo import DemoConfig, run_demo

    result = run_demo(DemoConfig(out=tmp_path / "demo", classes=3, train_per_class=16, val_images=12, epochs=1,
                                 batch_size=8, pack=True, progress=False, workers=0))
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["data"] == str(tmp_path / "demo" / "pack")
    assert json.loads((tmp_path / "demo" / "pack" / "meta" / "pack.json").read_text())["splits"]["val"]["complete"]
    assert "| 10 |" in result.table or "| cifar_resnet20 | 10 |" in result.table


def test_disk_full_and_missing_image_are_one_line_errors(tree, tmp_path):
    from imnet.testing.fs import can_mount, tmpfs

    broken = tmp_path / "broken"
    shutil.copytree(tree, broken)
    victim = read_file_list(broken / "meta" / "train.txt")[5][0]
    (broken / "train" / victim).unlink()
    missing = _imnet("pack", "--data", broken, "--out", tmp_path / "p", "--shard-size", SHARD, "--workers", 1,
                     "--no-progress", check=False)
    assert missing.returncode == 2 and victim in missing.stderr and "not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    if not can_mount():
        pytest.skip("mounting a tmpfs needs root")
    with tmpfs(tmp_path / "disk", size="200k") as disk:
        full = _imnet("pack", "--data", tree, "--out", disk / "pack", "--no-progress", check=False)
        assert full.returncode == 2 and "not enough disk space" in full.stderr
        assert not list((disk / "pack").glob("imagenet1k-*"))


def test_eval_sets_on_a_pack_point_at_its_tree(tree, pack, tmp_path):
    # A pack holds train and val; asking it for an eval set names the tree it was packed from,
    # before any model is built, instead of telling the user to `imnet prep` into the pack.
    done = _imnet("eval", "--arch", "cifar_resnet20", "--data", pack, "--sets", "val,v2", "--device", "cpu",
                  "--out", tmp_path / "ev", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert f"{pack}: ImageNetV2 MatchedFrequency is not in this pack" in line
    assert f"--data {tree.resolve()}" in line and "imnet prep" not in line
    assert not (tmp_path / "ev" / "predictions.h5").exists()
