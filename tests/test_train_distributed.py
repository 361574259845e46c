"""imnet train under torchrun: 2 CPU processes (gloo) match the single-process run of the same global
batch within tolerance, and only rank 0 writes the run directory."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imnet.cli import main
from imnet.testing import prepared_tree

ARCH = "cifar_resnet20"
TREE = dict(classes=4, train_per_class=16, val=24, image_size=(40, 36))
EPOCHS = 3


def _train_command(tree: Path, out: Path, batch_size: int) -> list[str]:
    return ["-m", "imnet", "train", "--arch", ARCH, "--data", str(tree), "--out", str(out), "--recipe", "demo",
            "--epochs", str(EPOCHS), "--batch-size", str(batch_size), "--lr", "0.05", "--set", "warmup_epochs=0",
            "--loader", "torch", "--workers", "0", "--no-progress"]


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_torchrun_two_gloo_processes_match_a_single_process(tmp_path):
    tree = prepared_tree(tmp_path / "tree", **TREE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         *_train_command(tree, tmp_path / "ddp", batch_size=8)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    # the reference: the same command in this process (saves an interpreter start and imports)
    with pytest.raises(SystemExit) as single:
        main(_train_command(tree, tmp_path / "single", batch_size=16)[2:])
    assert single.value.code == 0

    # rank 0 alone prints the run directory and writes the files
    assert ddp.stdout.strip().splitlines() == [str(tmp_path / "ddp")]
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["best.pth", "last.pth", "run.json", "summary.csv"]
    record = json.loads((tmp_path / "ddp" / "run.json").read_text())
    single_record = json.loads((tmp_path / "single" / "run.json").read_text())
    assert record["world_size"] == 2 and single_record["world_size"] == 1
    assert record["global_batch"] == single_record["global_batch"] == 16
    assert record["lr"] == single_record["lr"] and record["finished"] is True

    ddp_rows, single_rows = _rows(tmp_path / "ddp"), _rows(tmp_path / "single")
    assert len(ddp_rows) == len(single_rows) == EPOCHS
    # Same data, schedule and global batch; the order of images, the batch-norm batches and the
    # augmentations differ per rank, so the runs agree within tolerance rather than exactly.
    def mean_train_loss(rows):
        return sum(float(r["train_loss"]) for r in rows) / len(rows)

    # With 24 val images one image is 4.2 points of top-1.
    assert mean_train_loss(ddp_rows) == pytest.approx(mean_train_loss(single_rows), rel=0.2)
    assert abs(float(ddp_rows[-1]["val_loss"]) - float(single_rows[-1]["val_loss"])) <= 0.15
    assert abs(float(ddp_rows[-1]["top1"]) - float(single_rows[-1]["top1"])) <= 17.0  # 4 images
    for rows in (ddp_rows, single_rows):
        assert float(rows[-1]["top1"]) >= 100 / TREE["classes"] + 40
    assert float(ddp_rows[-1]["train_loss"]) < float(ddp_rows[0]["train_loss"])
    # every val image counted once across the two ranks: accuracies are multiples of 1/24
    for row in ddp_rows:
        assert float(row["top1"]) * TREE["val"] / 100 == pytest.approx(round(float(row["top1"]) * TREE["val"] / 100), abs=1e-3)
