"""``imnet bench loader`` end to end on a small generated tree."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from PIL import Image

from imnet.cli import cli
from imnet.data import read_split
from imnet.data.benchmark import BENCH_SIZE, BaselineProcess, find_stock_pillow, write_bench_tree


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
    assert rows[0][-1] == "1.00 |" and all(float(row[3]) > 0 for row in rows)
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
        assert baseline.timed_pass() > 0
    finally:
        baseline.close()
    assert baseline.process.returncode == 0
