"""imnet demo end to end, at a small size: fake archives -> prep -> train -> eval (1/5/10 crops + ReaL).

Run it alone with ``pytest -m demo``. A second run must reuse every step.
"""
from __future__ import annotations

import json

import pytest
import torch

from imnet.cli import main
from imnet.errors import ImnetError

pytestmark = [pytest.mark.demo, pytest.mark.usefixtures("one_torch_thread")]

SMALL = ["--classes", "4", "--train-per-class", "24", "--val", "24", "--epochs", "3", "--batch-size", "16",
         "--loader", "torch", "--workers", "0", "--no-progress"]




def _demo(out, capsys, extra=()):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--out", str(out), *SMALL, *extra])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_demo_end_to_end_then_reuses_everything(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, stderr = _demo(out, capsys)
    assert code == 0, stderr[-2000:]
    # the results table (one row per crop count, ReaL columns) and the plot's path on stdout
    table = [line for line in stdout.splitlines() if line.startswith("| cifar_resnet20 |")]
    assert [line.split("|")[2].strip() for line in table] == ["1", "5", "10"]
    assert "ReaL top-1" in stdout
    plot = out / "eval" / "accuracy_vs_speed.png"
    assert stdout.strip().splitlines()[-1] == f"plot: {plot}" and plot.stat().st_size > 0
    # each step says what it did in one line
    for step in ("archives:", "prep:", "train:", "eval:", "done in"):
        assert f"imnet demo: {step}" in stderr
    results = json.loads((out / "eval" / "results.json").read_text())["results"]
    by_crops = {row["crops"]: row for row in results}
    assert set(by_crops) == {1, 5, 10}
    assert by_crops[1]["top1"] > 100 / 4 + 15, by_crops[1]  # learned the fake classes
    assert by_crops[1]["real_top1"] is not None
    record = json.loads((out / "run" / "run.json").read_text())
    assert record["finished"] is True and record["completed_epochs"] == 3
    stamps = {p: p.stat().st_mtime_ns for p in (out / "run" / "last.pth", out / "eval" / "predictions.h5",
                                                out / "archives" / "ILSVRC2012_img_train.tar")}

    code, stdout_again, stderr = _demo(out, capsys)
    assert code == 0, stderr[-2000:]
    assert "archives: reusing" in stderr and "train: reusing finished run" in stderr
    assert "eval: reused stored predictions" in stderr
    assert "epoch 1/3" not in stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert [line for line in stdout_again.splitlines() if line.startswith("| cifar_resnet20 |")] == table


def test_demo_refuses_a_folder_made_with_other_settings(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo.json").write_text(json.dumps({"arch": "cifar_resnet20", "classes": 99}))
    code, _, stderr = _demo(out, capsys)
    assert code == 2
    assert stderr.startswith(f"imnet: error: {out / 'demo.json'}: {out} holds a demo made with other settings")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.tex").write_text("keep me")
    code, _, stderr = _demo(tmp_path / "other", capsys)
    assert code == 2 and "is not an imnet demo folder" in stderr
    assert (tmp_path / "other" / "thesis.tex").read_text() == "keep me"


def test_demo_config_rejects_nonsense_sizes(tmp_path):
    from imnet.demo import DemoConfig, run_demo

    with pytest.raises(ImnetError, match="at least 2 classes"):
        run_demo(DemoConfig(out=tmp_path / "d", classes=1))
