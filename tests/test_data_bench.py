"""``imnet bench loader`` end to end on a small generated tree."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from PIL import Image

from imnet.cli import cli
from imnet.data import read_split
from imnet.data.benchmark import (BENCH_SIZE, BaselineProcess, find_stock_pillow, tree_cpu_seconds,
                                  write_bench_tree)


def test_bench_loader_prints_ratios_against_the_baseline(tmp_path):
    tree = tmp_path / "tree"
    result = CliRunner().invoke(cli, ["bench", "loader", "--tree", str(tree), "--images", "64",
                                      "--workers", "1", "--repeats", "1", "--batch-size", "16",
                                      "--pipelines", "eval", "--no-decode"])
    assert result.exit_code == 0, result.output
    split = read_split(tree, "val")
    assert len(split) == 64 and Image.open(split.path(0)).size == BENCH_SIZE
    rows = [line.split(" | ") for line in result.output.splitlines() if line.startswith("| eval | 1 |")]
    assert rows[0][2].startswith("baseline (ImageFolder+transforms, ")  # then the baseline's PIL
    assert [row[2] for row in rows[1:]] == ["imnet torch", "imnet dali-cpu"]
    assert rows[0][5] == "1.00" and rows[0][-1] == "1.00 |" and all(float(row[3]) > 0 for row in rows)
    assert all(float(row[6]) > 0 for row in rows)  # images per CPU-second, all processes counted
    kilobytes = int(re.search(r"mean (\d+) KB", result.output).group(1))
    assert "PIL: " in result.output and 80 < kilobytes < 140  # ImageNet-like ~110 KB JPEGs


def test_bench_loader_rejects_bad_worker_lists(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "loader", "--tree", str(tmp_path), "--workers", "one"])
    assert result.exit_code == 2 and "comma-separated integers" in result.output


def test_baseline_subprocess_runs_on_stock_pillow(tmp_path):
    stock = find_stock_pillow()
    if stock is None:
        pytest.skip("no stock Pillow folder (scripts/bootstrap.sh installs .venv/stock-pillow)")
    tree = write_bench_tree(tmp_path / "tree", images=64)
    baseline = BaselineProcess(tree, "eval", 0, 32, stock)
    try:
        assert baseline.stock and ".post" not in baseline.pil_version
        assert baseline.pil_file.startswith(str(stock))
        assert baseline.label == f"baseline (ImageFolder+transforms, stock Pillow {baseline.pil_version})"
        rate, cpu_rate = baseline.timed_pass()
        assert rate > 0 and cpu_rate > 0
    finally:
        baseline.close()
    assert baseline.process.returncode == 0


BURN = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\n"
# A parent process that starts two burners, says their pids, then waits to be killed.
PARENT = f"""import subprocess, sys, time
children = [subprocess.Popen([sys.executable, "-c", {BURN + "time.sleep(60)"!r}]) for _ in range(2)]
print(*[child.pid for child in children], flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_tree_cpu_seconds_counts_children_and_leaves_out_excluded_ones():
    # The parent's two children burn 0.5 CPU-s each while the parent sleeps: the parent's tree
    # reaches ~1 CPU-s, ~0.5 with one child excluded, and each child alone ~0.5.
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        children = [int(pid) for pid in parent.stdout.readline().split()]
        deadline = time.monotonic() + 30
        while tree_cpu_seconds(parent.pid) < 1.0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.1)  # both burners are sleeping now
        whole = tree_cpu_seconds(parent.pid)
        without_one = tree_cpu_seconds(parent.pid, exclude=[children[0]])
        alone = tree_cpu_seconds(children[1])
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    assert 1.0 <= whole < 1.6  # the parent's own start-up (an interpreter) is counted too
    assert 0.5 <= whole - without_one < 0.7
    assert 0.5 <= alone < 0.7
    assert tree_cpu_seconds(root=2 ** 22 + 12345) is None  # no such process
