"""Benchmark ``imnet prep`` from the other sources against the official archives, in one run.

The same ImageNet-like images (400x350 JPEGs of ~110 KB, the fake's renderer with noise 55) are laid
out as the official archives (the baseline), the Hugging Face ``.tar.gz`` archives (read as gzip
streams, SHA-256 checked), Kaggle's folder, Kaggle's zip, and an extracted tree; each is prepared into
a fresh tree with all checks on (decode check, SHA-256 per image) and ``--workers``. Prints a markdown
table: median seconds over ``--repeats``, CPU seconds (user + sys of the process tree), input MB/s,
images/s, and each source's time over the official archives' (the ratio; > 1 is slower).

    .venv/bin/python benchmarks/prep_sources.py --classes 10 --train-per-class 40 --val 100 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imnet.testing import fake_ilsvrc
from imnet.testing.fake_sources import fake_source

LAYOUTS = ("official", "hf", "kaggle", "kaggle-zip", "tree")


def input_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts)


def run_once(src: Path, dst: Path, workers: int, extra: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the children) of one `imnet prep` into a fresh ``dst``."""
    shutil.rmtree(dst, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "imnet", "prep", "--src", str(src), "--dst", str(dst), "--workers",
                    str(workers), *extra], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imnet-bench-sources-", dir=args.workdir))
    try:
        options = dict(classes=args.classes, train_per_class=args.train_per_class, val=args.val,
                       image_size=(400, 350), noise=55.0)
        official = fake_ilsvrc(work / "official", **options)
        srcs = {"official": (official.root, ["--checksums", str(official.checksums)])}
        for layout in LAYOUTS[1:]:
            srcs[layout] = (fake_source(work / layout, layout, **options).src, ["--devkit", str(official.devkit)])
        images = args.classes * args.train_per_class + args.val
        rows = {}
        for _ in range(args.repeats):  # interleaved, so a slow moment of the machine hits every method alike
            for layout, (src, extra) in srcs.items():
                rows.setdefault(layout, []).append(run_once(src, work / "dst", args.workers, extra))
        base = statistics.median(w for w, _ in rows["official"])
        print(f"{images} images ({args.classes} classes), --workers {args.workers}, {args.repeats} runs each, "
              f"{os.cpu_count()} CPUs\n")
        print("| source | input MB | median s | CPU s | input MB/s | images/s | time / official |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for layout, runs in rows.items():
            wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
            size = input_bytes(srcs[layout][0]) / 1e6
            print(f"| {layout} | {size:.1f} | {wall:.2f} | {cpu:.2f} | {size / wall:.1f} | {images / wall:.0f} | "
                  f"{wall / base:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
