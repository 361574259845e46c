"""Default loader resources per rank: a share of the node's CPUs with caps, the decoder scratch they
imply, and what `imnet info` says a run on this node would use."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from imnet.data import build_eval_loader, build_train_loader
from imnet.data.resources import loader_resources
from imnet.testing import prepared_tree

MIB = 2**20


def test_an_8_gpu_node_with_192_cpus():
    # Before: every rank took all 192 CPUs: DALI 192 threads x 201 MiB GPU + 268 MiB pinned
    # (~38 GiB GPU per rank, ~400 GiB pinned per node) and 2 x 192 x 8 = 3,072 worker processes.
    node = loader_resources(cpus=192, local_ranks=8)
    assert node.per_rank == 24
    assert node.threads("dali-gpu") == 8
    assert node.threads("dali-cpu") == 24 and node.threads("torch") == 24
    device, pinned = node.dali_scratch()
    assert (device, pinned) == (128 * MIB, 128 * MIB)  # per pipeline
    # train + val pipelines on each of 8 ranks
    assert 2 * device == 256 * MIB and 8 * 2 * pinned == 2 * 2**30
    # torch: train workers persist (8 x 24), val workers only run during validation
    assert 8 * node.threads("torch") == 192


@pytest.mark.parametrize("cpus, ranks, expected", [
    (192, 1, {"dali-gpu": 8, "dali-cpu": 32, "torch": 32}),   # caps
    (3, 8, {"dali-gpu": 1, "dali-cpu": 1, "torch": 1}),        # never 0
    (16, 2, {"dali-gpu": 8, "dali-cpu": 8, "torch": 8}),
])
def test_share_and_caps(cpus, ranks, expected):
    res = loader_resources(cpus=cpus, local_ranks=ranks)
    assert {backend: res.threads(backend) for backend in expected} == expected


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return prepared_tree(tmp_path_factory.mktemp("tree"), classes=2, train_per_class=4, val=4)


def test_builders_default_to_the_ranks_share(tree, monkeypatch):
    norm = dict(mean=(0.5,) * 3, std=(0.2,) * 3, crop_size=16, resize_size=20)
    cpus = len(os.sched_getaffinity(0))
    for ranks in (1, 2):
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(ranks))
        share = max(1, cpus // ranks)
        assert build_eval_loader(tree, loader="torch", **norm).workers == share
        assert build_eval_loader(tree, loader="dali", **norm).workers == share
        assert build_train_loader(tree, loader="torch", batch_size=2, **norm).workers == share
    assert build_eval_loader(tree, loader="torch", workers=0, **norm).workers == 0  # --workers wins


def test_affinity_not_the_machine_decides():
    # A process limited to one CPU (taskset, a cgroup cpuset) gets one thread, whatever the machine has.
    code = ("import os; os.sched_setaffinity(0, {0}); "
            "from imnet.data.resources import loader_resources as r; print(r().cpus, r().threads('torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_info_prints_what_a_run_on_this_node_would_use():
    env = dict(os.environ, LOCAL_WORLD_SIZE="8")
    out = subprocess.run([sys.executable, "-m", "imnet", "info"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(":", 1) for line in out.stdout.splitlines())
    assert lines["local ranks"].strip() == "8 (LOCAL_WORLD_SIZE)"
    plan = lines["loader/rank"]
    assert "CPUs per rank" in plan and "dali-gpu" in plan and "torch" in plan and "MiB GPU" in plan
    assert "torch on a CPU device" in lines["loader auto"]


def test_loader_modules_import_one_way():
    # The backends and the shared types never import the builders (the old loaders <-> dali /
    # torch_loader circle): base <- dali, torch_loader <- loaders.
    import ast
    from pathlib import Path

    import imnet.data

    folder = Path(imnet.data.__file__).parent
    below = {"base": {"filelist", "transforms", "resources", "decode"},
             "dali": {"base", "filelist", "transforms", "decode"},
             "torch_loader": {"base", "filelist", "transforms", "decode"},
             "resources": set(), "filelist": set(), "transforms": set(), "decode": {"transforms"},
             "packsplit": {"filelist"}, "dali_pack": {"base", "dali", "packsplit", "transforms"},
             "torch_pack": {"base", "packsplit", "torch_loader", "transforms"}}
    for module, allowed in below.items():
        tree = ast.parse((folder / f"{module}.py").read_text())
        imported = {node.module.split(".")[2] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imnet.data.")}
        assert imported <= allowed, (module, imported - allowed)
    out = subprocess.run([sys.executable, "-c", "import imnet.data.dali, imnet.data.torch_loader, imnet.data.loaders"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
