"""benchmarks/gpu.sh, the prepared device run, works end to end on the CPU with small settings:
every stage runs (GPU-only ones say skip), its figures are collected, and the goals table comes."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(DEV="cpu", CLASSES="2", PER_CLASS="8", VAL="8", JPEG="64 48", R50="cifar_resnet20",
             VN="cifar_resnet20", IMG="32", RESIZE="36", TBS="8", EBS="8", BENCH_IMAGES="16",
             BENCH_IMAGES_10="16", BENCH_BS="8", BENCH_JPEG="64x48", EPOCHS="2", STEPS="3", AMP="none", T="1",
             GPU_TESTS="0")


def test_gpu_script_runs_on_cpu_with_small_settings(tmp_path):
    env = {**os.environ, **SMALL, "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1",
           "PY": str(Path(os.sys.executable))}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = proc.stdout.split("=================== status", 1)[1].split("===================", 1)[0]
    lines = [line for line in status.splitlines()[1:] if line.strip()]
    names = [line.split()[0] for line in lines]
    assert names == ["info", "fake", "prep", "loaders", "mem-defaults", "steps-r50", "train-r50", "bench-eval",
                     "eval-cli", "pixels", "mem-T2", "mem-T16", "mem-B256", "mem-nohints", "steps-vn", "train-vn"]
    for line in lines:
        assert " rc=0 " in line or (line.split()[0].startswith("mem-") and " skip " in line), line
    results = (tmp_path / "out" / "results.txt").read_text()
    for key in ("loader.train.rrc.steady_img_s", "loader.train.classic.steady_img_s",
                "loader.train.rrc.no_fancy.steady_img_s", "loader.eval.10crop.steady_img_s",
                "loader.train.rrc.pipeline_builds 1", "pixels.dali-dev_vs_torch.mean",
                "eval_vs_forward.cifar_resnet20.1crop", "eval_vs_forward.cifar_resnet20.10crop",
                "eval_cli.images_per_sec", "synthetic.cifar_resnet20.img_s", "train.cifar_resnet20.img_s"):
        assert f"RESULT {key}" in results, key
    assert "| goal | target | measured | status |" in proc.stdout
    assert "train_vs_synthetic.cifar_resnet20" in proc.stdout


def test_gpu_script_keeps_its_time_budget(tmp_path):
    # BUDGET cuts what is left: late stages are skipped, the tables still come, exit status 0.
    env = {**os.environ, **SMALL, "BUDGET": "15", "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1",
           "PY": str(Path(os.sys.executable))}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = proc.stdout.split("=================== status", 1)[1].split("===================", 1)[0]
    assert "over the 15s budget" in status and "train-vn       skip" in status
    assert "| goal | target | measured | status |" in proc.stdout
