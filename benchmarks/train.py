"""Benchmark ``imnet train``'s images/s against baselines measured in the same run.

Two modes. The default times the training loop:

* ``imnet``: the real training loop (``imnet.train.train``) on a prepared fake tree; its per-epoch
  ``images_per_sec`` from ``summary.csv`` (train time only, loader waits included), median of the
  epochs after the first;
* ``synthetic``: the same model, optimizer, loss and batch on random tensors already on the device
  (no data path at all): the step-rate ceiling; imnet / synthetic is the data path's cost;
* ``imagefolder``: the pytorch/examples imagenet recipe: ``torchvision.datasets.ImageFolder`` over the
  same ``train/`` folder, ``RandomResizedCrop`` + flip + ``ToTensor`` + ``Normalize`` in DataLoader
  workers, SGD momentum; whole epochs timed like imnet's.

imnet trains with ``--aug rrc`` here so both loops do the same augmentation. Goals: on CPU imnet
>= 1.2x imagefolder; on a GPU imnet >= 0.9x synthetic. Prints a markdown table (median images/s
and ratios); ``--json`` also writes the figures.

    .venv/bin/python benchmarks/train.py                               # CPU, small images
    .venv/bin/python benchmarks/train.py --arch resnet50 --img-size 224 --image-size 500x375 \\
        --classes 20 --train-per-class 64 --batch-size 64 --device cuda   # on a GPU

``--loaders`` times the train *loader* alone with the VanillaNet recipe's augmentation (bicubic
RandomResizedCrop 224, flip, RandAugment ``rand-m7-mstd0.5-inc1``, random erasing 0.25 in pixel mode)
on ImageNet-like JPEGs (400x350, ~110 KB: ``imnet.data.benchmark.write_bench_tree``): images/s and
images per CPU-second (all the loader's processes and threads) of imnet's torch loader and DALI-CPU
loader against timm's reference loader, ``ImageFolder`` + ``timm.data.create_transform`` (the same
policy) + ``DataLoader`` with timm's worker seeding, all on the installed PIL, in interleaved rounds:

    .venv/bin/python benchmarks/train.py --loaders --images 600 --workers-list 1,2 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height or width)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="cifar_resnet20", help="zoo model to train")
    parser.add_argument("--img-size", type=int, default=32, help="training crop size")
    parser.add_argument("--image-size", type=_size, default=(96, 80), help="generated JPEG size WxH")
    parser.add_argument("--classes", type=int, default=10, help="classes of the generated tree")
    parser.add_argument("--train-per-class", type=int, default=64, help="train images per class")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (per process)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per method (the first is warm-up)")
    parser.add_argument("--workers", type=int, default=None,
                        help="loader workers/threads (default: imnet's per-rank default, `imnet info`)")
    parser.add_argument("--loader", default="auto", choices=["auto", "dali", "torch"], help="imnet's loader")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--data", type=Path, default=None, help="use this prepared tree instead of generating one")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--loaders", action="store_true",
                        help="time the train loaders with RandAugment + erasing against timm's loader instead")
    parser.add_argument("--images", type=int, default=600, help="--loaders: generated ImageNet-like JPEGs")
    parser.add_argument("--bench-dir", type=Path, default=Path("/tmp/imnet-bench-jpegs"),
                        help="--loaders: folder of the generated JPEGs (reused when complete)")
    parser.add_argument("--workers-list", default="1,2", help="--loaders: worker counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="--loaders: timed passes per loader (after a warm-up)")
    parser.add_argument("--aa", default="rand-m7-mstd0.5-inc1", help="--loaders: the RandAugment policy")
    return parser.parse_args(argv)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _model_and_optimizer(args, num_classes: int, device: torch.device):
    from imnet.zoo import create_model

    torch.manual_seed(0)
    model = create_model(args.arch, num_classes=num_classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    return model, optimizer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_synthetic(args, num_classes: int, steps: int, device: torch.device) -> list[float]:
    """Images/s of the bare training step on device-resident random batches, one figure per epoch."""
    model, optimizer = _model_and_optimizer(args, num_classes, device)
    images = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    labels = torch.randint(0, num_classes, (args.batch_size,), device=device)
    criterion = nn.CrossEntropyLoss()
    amp = device.type == "cuda"
    rates = []
    for _ in range(args.epochs):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        _sync(device)
        rates.append(steps * args.batch_size / (time.perf_counter() - t0))
    return rates


def bench_imagefolder(args, data: Path, num_classes: int, workers: int, device: torch.device) -> list[float]:
    """Images/s of the pytorch/examples imagenet loop over ``data/train``, one figure per epoch."""
    import torchvision.datasets as datasets
    import torchvision.transforms as T

    from imnet.zoo import get_config

    cfg = get_config(args.arch)
    transform = T.Compose([T.RandomResizedCrop(args.img_size), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(cfg.mean, cfg.std)])
    dataset = datasets.ImageFolder(str(data / "train"), transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", drop_last=True)
    model, optimizer = _model_and_optimizer(args, num_classes, device)
    criterion = nn.CrossEntropyLoss()
    amp = device.type == "cuda"
    rates = []
    for _ in range(args.epochs):
        seen = 0
        t0 = time.perf_counter()
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seen += images.shape[0]
        _sync(device)
        rates.append(seen / (time.perf_counter() - t0))
    return rates


def bench_imnet(args, data: Path, workers: int, device: torch.device, out: Path) -> tuple[list[float], str]:
    """Images/s of ``imnet train`` per epoch (summary.csv), and the loader it used."""
    import csv

    from imnet.train import TrainConfig, load_recipe, train

    recipe = load_recipe("classic", {"epochs": args.epochs, "batch_size": args.batch_size, "lr": 0.01,
                                     "aug": "rrc", "img_size": args.img_size})
    run_dir = train(TrainConfig(arch=args.arch, data=data, out=out, recipe=recipe, loader=args.loader,
                                workers=workers, device=device.type, amp="auto", progress=False))
    with open(run_dir / "summary.csv", newline="") as handle:
        rates = [float(row["images_per_sec"]) for row in csv.DictReader(handle)]
    loader = json.loads((run_dir / "run.json").read_text())["loader"]
    return rates, loader


AUGMENT_LOADERS = ("timm reference (ImageFolder + create_transform)", "imnet torch", "imnet dali-cpu")


def _augment_loader(name: str, root: Path, workers: int, batch_size: int, aa: str):
    """One of :data:`AUGMENT_LOADERS` with the VanillaNet recipe's train augmentation at 224 px."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    if name.startswith("timm"):
        import torchvision.datasets as datasets
        from timm.data import create_transform
        from timm.data.loader import _worker_init

        transform = create_transform(224, is_training=True, auto_augment=aa, interpolation="bicubic", re_prob=0.25,
                                     re_mode="pixel", re_count=1, color_jitter=0.4, mean=mean, std=std)
        dataset = datasets.ImageFolder(str(root / "train"), transform)
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                           drop_last=True, persistent_workers=workers > 0, worker_init_fn=_worker_init)
    from imnet.data import build_train_loader

    return build_train_loader(root, crop_size=224, aug="rrc", interpolation="bicubic", auto_augment=aa, reprob=0.25,
                              remode="pixel", recount=1, color_jitter=0.4, mean=mean, std=std, batch_size=batch_size,
                              workers=workers, loader="torch" if name == "imnet torch" else "dali")


def bench_augment_loaders(args) -> None:
    """``--loaders``: every loader of :data:`AUGMENT_LOADERS` per worker count, a warm-up pass each,
    then ``repeats`` rounds of one timed pass each, interleaved; prints the markdown table."""
    import os

    from imnet.data.benchmark import BENCH_SIZE, _one_pass, pil_flavour, write_bench_tree

    root = write_bench_tree(args.bench_dir, images=args.images)
    sizes = [p.stat().st_size for p in (root / "train").rglob("*.JPEG")]
    workers_list = [int(w) for w in args.workers_list.split(",")]
    print(f"# train loaders with RandAugment {args.aa} + random erasing 0.25 (pixel), bicubic RRC 224, flip; "
          f"{len(sizes)} JPEGs {BENCH_SIZE[0]}x{BENCH_SIZE[1]} (mean {statistics.mean(sizes) / 1e3:.0f} KB), "
          f"batch {args.batch_size}, {args.repeats} timed passes each; {pil_flavour()}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    rows = []
    for workers in workers_list:
        loaders = {name: _augment_loader(name, root, workers, args.batch_size, args.aa) for name in AUGMENT_LOADERS}
        rates = {name: [] for name in loaders}
        cpu_rates = {name: [] for name in loaders}
        for round_number in range(args.repeats + 1):
            for name, loader in loaders.items():
                if hasattr(loader, "set_epoch"):
                    loader.set_epoch(round_number)
                rate, cpu_rate = _one_pass(loader)
                if round_number:  # round 0 warms up (workers, pipelines)
                    rates[name].append(rate)
                    if cpu_rate:
                        cpu_rates[name].append(cpu_rate)
                print(f"  workers {workers} round {round_number} {name}: {rate:.0f} img/s, "
                      f"{cpu_rate or 0:.0f} img/CPU-s", file=sys.stderr)
        for loader in loaders.values():
            if hasattr(loader, "close"):
                loader.close()
        base = statistics.median(cpu_rates[AUGMENT_LOADERS[0]]) if cpu_rates[AUGMENT_LOADERS[0]] else None
        for name in AUGMENT_LOADERS:
            cpu = statistics.median(cpu_rates[name]) if cpu_rates[name] else None
            rows.append((workers, name, statistics.median(rates[name]), min(rates[name]), max(rates[name]), cpu,
                         cpu / base if cpu and base else None))
    print("| workers | loader | images/s (median) | min-max | images per CPU-s (median) | x timm per core |")
    print("| --- | --- | --- | --- | --- | --- |")
    for workers, name, rate, low, high, cpu, ratio in rows:
        print(f"| {workers} | {name} | {rate:.0f} | {low:.0f}-{high:.0f} | {cpu:.0f} | "
              f"{'-' if ratio is None else f'{ratio:.2f}'} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.loaders:
        if args.threads:
            torch.set_num_threads(args.threads)
        bench_augment_loaders(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    from imnet.data.loaders import default_workers
    from imnet.testing import prepared_tree

    device = _device(args.device)
    workers = default_workers() if args.workers is None else args.workers
    with tempfile.TemporaryDirectory(prefix="imnet-bench-train-") as tmp:
        tmp = Path(tmp)
        data = args.data or prepared_tree(tmp, classes=args.classes, train_per_class=args.train_per_class,
                                          val=args.classes * 2, image_size=args.image_size, quirks=False)
        num_classes = sum(1 for line in (data / "meta" / "classes.tsv").read_text().splitlines() if line.strip())
        train_images = sum(1 for line in (data / "meta" / "train.txt").read_text().splitlines() if line.strip())
        steps = train_images // args.batch_size
        print(f"# {args.arch} at {args.img_size}px, batch {args.batch_size}, {train_images} train images "
              f"({args.image_size[0]}x{args.image_size[1]} JPEGs), {args.epochs} epochs per method, "
              f"device {device}, {workers} workers, {torch.get_num_threads()} torch threads", file=sys.stderr)
        results = {}
        imnet_rates, loader = bench_imnet(args, data, workers, device, tmp / "run")
        results["imnet"] = imnet_rates
        results["synthetic"] = bench_synthetic(args, num_classes, steps, device)
        results["imagefolder"] = bench_imagefolder(args, data, num_classes, workers, device)
    # the first epoch is warm-up (worker start, cudnn autotune, allocator)
    median = {name: statistics.median(rates[1:] if len(rates) > 1 else rates) for name, rates in results.items()}
    print(f"| method | images/s (median) | vs imnet |")
    print("| --- | --- | --- |")
    labels = {"imnet": f"imnet train (loader {loader})", "synthetic": "synthetic data (same step)",
              "imagefolder": "pytorch/examples ImageFolder loop"}
    for name in ("imnet", "synthetic", "imagefolder"):
        print(f"| {labels[name]} | {median[name]:.1f} | {median['imnet'] / median[name]:.2f}x |")
    print(f"\nimnet / imagefolder = {median['imnet'] / median['imagefolder']:.2f}x (CPU goal >= 1.2x); "
          f"imnet / synthetic = {median['imnet'] / median['synthetic']:.2f}x (GPU goal >= 0.9x)")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "device": str(device),
                                         "loader": loader, "rates": results, "median": median}, indent=2))


if __name__ == "__main__":
    main()
