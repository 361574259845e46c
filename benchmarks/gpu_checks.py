"""The measurements benchmarks/gpu.sh makes, one subcommand each; every figure is printed as a
``RESULT <key> <value> [unit] [note]`` line, which ``summary`` turns into the goals table.

    python benchmarks/gpu_checks.py loaders DATA DEVICE           # DALI train/eval loaders alone
    python benchmarks/gpu_checks.py pixels DATA DEVICE            # GPU vs CPU twin vs torch loader
    python benchmarks/gpu_checks.py memory DATA DEVICE CASE       # GPU memory of pipelines (fresh process)
    python benchmarks/gpu_checks.py steps ARCH BATCH DEVICE AMP   # synthetic train steps (no data)
    python benchmarks/gpu_checks.py train-rate RUN_DIR NAME       # imnet train's last-epoch images/s
    python benchmarks/gpu_checks.py summary RESULTS_FILE          # figures and goals

Environment: ``T`` (DALI threads / loader workers; unset = the per-rank defaults, which is what is
being measured), ``IMG``/``RESIZE`` (224/256), ``TBS``/``EBS`` (train/eval batch).
"""
from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

NORM = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
IMG, RESIZE = int(os.environ.get("IMG", 224)), int(os.environ.get("RESIZE", 256))
THREADS = int(os.environ["T"]) if os.environ.get("T") else None
R50 = os.environ.get("R50", "resnet50")
GOALS = [  # key, comparison, target, what
    ("loader.train.rrc.steady_img_s", ">=", 10_000, f"DALI mixed train loader at {IMG} (rrc), img/s"),
    (f"eval_vs_forward.{R50}.1crop", ">=", 0.9, f"eval loop / pure forward, {R50}, 1 crop"),
    (f"train_vs_synthetic.{R50}", ">=", 0.9, f"imnet train / synthetic step rate, {R50}"),
    ("memory.defaults.train_val_gib", "<", 2.0, "GPU memory of the loaders per rank at the defaults, GiB"),
]


def result(key: str, value, unit: str = "", note: str = "") -> None:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"RESULT {key} {text} {unit} {note}".rstrip(), flush=True)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def loaders(data: Path, device: str) -> None:
    """Train (rrc, classic) and eval (1, 10 crops) DALI loaders alone: first-batch latency, steady
    img/s (after the first batch) and img/s with start-up, per epoch/pass; pipeline builds."""
    from imnet.data import build_eval_loader, build_train_loader
    from imnet.data import dali

    train_batch, eval_batch = int(os.environ.get("TBS", 256)), int(os.environ.get("EBS", 256))
    for aug, fancy in (("rrc", True), ("classic", True), ("rrc", False)):
        dali.FANCY_UPSAMPLING = fancy
        loader = build_train_loader(data, crop_size=IMG, resize_size=RESIZE, aug=aug, batch_size=train_batch,
                                    workers=THREADS, loader="dali", device=device, **NORM)
        steady = []
        for epoch in range(4):
            loader.set_epoch(epoch)
            start, first, images, first_images = time.perf_counter(), None, 0, 0
            for x, y in loader:
                if first is None:
                    _sync(device)
                    first, first_images = time.perf_counter(), x.shape[0]
                    assert x.shape[1:] == (3, IMG, IMG) and y.device == x.device
                images += x.shape[0]
            _sync(device)
            end = time.perf_counter()
            rate = (images - first_images) / max(1e-9, end - first)
            print(f"train {loader.name} aug={aug} fancy={fancy} batch={train_batch} threads={loader.workers} "
                  f"epoch {epoch}: first batch {first - start:.2f} s, steady {rate:.0f} img/s, "
                  f"with start-up {images / (end - start):.0f} img/s", flush=True)
            if epoch:
                steady.append(rate)
        tag = f"loader.train.{aug}" + ("" if fancy else ".no_fancy")
        result(f"{tag}.steady_img_s", sorted(steady)[len(steady) // 2], "img/s",
               f"median of epochs 1-3, {loader.workers} threads, batch {train_batch}")
        result(f"{tag}.pipeline_builds", loader.pipeline_builds)
        loader.close()
    dali.FANCY_UPSAMPLING = True
    for crops in (1, 10):
        batch = eval_batch if crops == 1 else max(1, eval_batch // 8)
        # the train split's files: more batches than val's for a steady figure
        loader = build_eval_loader(data, "train", crop_size=IMG, resize_size=RESIZE, crops=crops, batch_size=batch,
                                   workers=THREADS, loader="dali", device=device, channels_last=True, **NORM)
        for number in range(3):
            start, first, images, first_images, seen = time.perf_counter(), None, 0, 0, []
            for b in loader:
                if first is None:
                    _sync(device)
                    first, first_images = time.perf_counter(), b.images.shape[0]
                images += b.images.shape[0]
                seen += b.indices.tolist()
            _sync(device)
            end = time.perf_counter()
            assert seen == list(range(len(loader.files))), "eval loader: not every image once, in order"
            rate = (images - first_images) / max(1e-9, end - first)
            print(f"eval {loader.name} crops={crops} batch={batch} threads={loader.workers} pass {number}: "
                  f"first batch {first - start:.2f} s, steady {rate:.0f} img/s ({crops * rate:.0f} crops/s), "
                  f"with start-up {images / (end - start):.0f} img/s", flush=True)
        result(f"loader.eval.{crops}crop.steady_img_s", rate, "img/s", f"pass 2, batch {batch}, {images} images")
        result(f"loader.eval.{crops}crop.startup_s", first - start, "s", "pass 2 (pipeline reused)")
        result(f"loader.eval.{crops}crop.pipeline_builds", loader.pipeline_builds)
        loader.close()


def pixels(data: Path, device: str, count: int = 64) -> None:
    """DALI on ``device`` vs the DALI CPU twin vs the torch loader on the same val images (10 crops),
    in grey levels (0-255)."""
    from imnet.data import build_eval_loader

    std = torch.tensor(NORM["std"]).view(1, 1, 3, 1, 1) * 255
    out = {}
    for name, loader, dev in (("dali-dev", "dali", device), ("dali-cpu", "dali", "cpu"), ("torch", "torch", "cpu")):
        ld = build_eval_loader(data, crop_size=IMG, resize_size=RESIZE, crops=10, batch_size=16, workers=THREADS,
                               loader=loader, device=dev, limit=count, **NORM)
        out[name] = torch.cat([b.images.float().cpu() for b in ld]) * std
        ld.close()
    for a, b in (("dali-dev", "dali-cpu"), ("dali-dev", "torch"), ("dali-cpu", "torch")):
        diff = (out[a] - out[b]).abs().flatten()
        p99 = diff.kthvalue(max(1, int(0.99 * diff.numel()))).values.item()
        print(f"pixels {a} vs {b}: mean |diff| {diff.mean():.3f}, p99 {p99:.1f}, max {diff.max():.0f} grey levels")
        result(f"pixels.{a}_vs_{b}.mean", diff.mean().item(), "grey levels", f"p99 {p99:.1f}, max {diff.max():.0f}")


def memory(data: Path, device: str, case: str) -> None:
    """GPU memory taken by DALI pipelines in this (fresh) process, from cudaMemGetInfo before and
    after building them and running a batch: ``T2``/``T16`` (one eval pipeline, 2/16 threads, batch
    64), ``B256`` (2 threads, batch 256), ``nohints`` (defaults without the HW decoder's
    preallocation hints), ``defaults`` (a training run's train + val pipelines at the defaults)."""
    from imnet.data import build_eval_loader, build_train_loader
    from imnet.data import dali

    torch.zeros(1, device=device)
    _sync(device)
    free_before = torch.cuda.mem_get_info()[0]
    keep = []
    threads = {"T2": 2, "T16": 16, "B256": 2}.get(case, THREADS)
    if case == "nohints":
        dali.MIXED_DECODER_HINTS = {}
    if case == "defaults":
        train = build_train_loader(data, crop_size=IMG, resize_size=RESIZE, aug="rrc", batch_size=128, loader="dali",
                                   device=device, channels_last=True, **NORM)
        keep.append(next(iter(train)))
        threads = train.workers
    batch = 256 if case in ("B256", "defaults") else 64
    val = build_eval_loader(data, crop_size=IMG, resize_size=RESIZE, batch_size=batch, workers=threads, loader="dali",
                            device=device, channels_last=True, **NORM)
    keep.append(next(iter(val)))
    _sync(device)
    used = (free_before - torch.cuda.mem_get_info()[0]) / 2**30
    print(f"memory {case}: {used:.2f} GiB of GPU memory ({threads} threads, eval batch {batch})")
    result(f"memory.{case}.train_val_gib" if case == "defaults" else f"memory.{case}_gib", used, "GiB",
           f"{threads} threads, eval batch {batch}")


def steps(arch: str, batch: int, device: str, amp: str, count: int = int(os.environ.get("STEPS", 30)),
          warm: int = 8) -> None:
    """Synthetic training steps (random input already on the device, channels_last, AMP): the step
    rate the real loop is compared with."""
    from imnet.zoo import create_model

    torch.backends.cudnn.benchmark = device.startswith("cuda")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    model = create_model(arch, num_classes=1000).to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=dtype == torch.float16)
    x = torch.randn(batch, 3, IMG, IMG, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    for i in range(count + warm):
        if i == warm:
            _sync(device)
            start = time.perf_counter()
        with torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    rate = count * batch / (time.perf_counter() - start)
    print(f"synthetic train step {arch} batch={batch} amp={amp} channels_last: {rate:.0f} img/s")
    result(f"synthetic.{arch}.img_s", rate, "img/s", f"batch {batch}, {amp}")


def train_rate(run_dir: Path, name: str) -> None:
    """``imnet train``'s images/s of its last epoch (summary.csv; train time, loader waits included)."""
    with open(run_dir / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    result(f"train.{name}.img_s", float(rows[-1]["images_per_sec"]), "img/s", f"epoch {rows[-1]['epoch']} of {len(rows)}")


def summary(results_file: Path) -> int:
    """Every RESULT line as a table, the derived ratios, and the goals with their status."""
    figures: dict[str, float] = {}
    notes: dict[str, str] = {}
    for line in results_file.read_text().splitlines():
        if line.startswith("RESULT "):
            parts = line.split(maxsplit=3)
            try:
                figures[parts[1]] = float(parts[2])
            except (IndexError, ValueError):
                continue
            notes[parts[1]] = parts[3] if len(parts) > 3 else ""
    for arch in {R50, os.environ.get("VN", "vanillanet_9")}:
        if f"train.{arch}.img_s" in figures and f"synthetic.{arch}.img_s" in figures:
            figures[f"train_vs_synthetic.{arch}"] = figures[f"train.{arch}.img_s"] / figures[f"synthetic.{arch}.img_s"]
            notes[f"train_vs_synthetic.{arch}"] = "imnet train last epoch / synthetic steps"
    print("| figure | value | unit, note |\n| --- | --- | --- |")
    for key in sorted(figures):
        print(f"| {key} | {figures[key]:.4g} | {notes.get(key, '')} |")
    print("\n| goal | target | measured | status |\n| --- | --- | --- | --- |")
    for key, op, target, what in GOALS:
        value = figures.get(key)
        status = "not measured" if value is None else (
            "met" if (value >= target if op == ">=" else value < target) else "NOT met")
        print(f"| {what} | {op} {target} | {'-' if value is None else f'{value:.4g}'} | {status} |")
    return 0


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "loaders":
        loaders(Path(args[0]), args[1])
    elif command == "pixels":
        pixels(Path(args[0]), args[1])
    elif command == "memory":
        memory(Path(args[0]), args[1], args[2])
    elif command == "steps":
        steps(args[0], int(args[1]), args[2], args[3])
    elif command == "train-rate":
        train_rate(Path(args[0]), args[1])
    elif command == "summary":
        return summary(Path(args[0]))
    else:
        raise SystemExit(f"unknown command {command!r}; see --help")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
