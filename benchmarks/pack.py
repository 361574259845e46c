"""Packs against the folder tree, in one run: ``python benchmarks/pack.py [options]``.

On generated ImageNet-like JPEGs (400x350, ~110 KB, ``imnet.data.benchmark.write_bench_tree``):

1. **Train-loader images per CPU-second** (all the loader's processes and threads, from /proc) and
   images/s, for (a) the folder tree, (b) a pack of the original images, (c) a pack resized to max
   side 320 and (d) 256 (``imnet pack --max-side N --quality 90``), with imnet's torch and DALI-CPU
   train loaders (RandomResizedCrop 224 + flip + normalize, batch 64), each with ``--workers``
   workers: one warm-up epoch, then the median of ``--repeats`` epochs. Ratios against (a) of the
   same backend and workers.
2. **Time to the first batch from a cold start** with ``--cold-images`` (100k+) list entries: a
   fresh process (imports included) builds the train loader and takes its first batch, from the
   tree and from its pack, after dropping the page cache where allowed (root:
   /proc/sys/vm/drop_caches; else warm, and said so). The cold set's images are small (80x64) so
   100k of them fit the box; what is timed is listing, opening and starting, not decoding.
3. **Pack writing speed** against plain ``tar cf`` of the same files (warm cache, same disk):
   wall and CPU seconds (children's user + sys), MB/s of images written.

Results: benchmarks/RESULTS.md ("Packs").

    .venv/bin/python benchmarks/pack.py --images 1200 --repeats 3 --workers 1,2 --cold-images 100000
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imnet.data import build_train_loader
from imnet.data.benchmark import MEAN, STD, pil_flavour, tree_cpu_seconds, write_bench_tree

SOURCES = {"(a) tree": None, "(b) pack": None, "(c) pack 320": 320, "(d) pack 256": 256}


def classes_tsv(tree: Path, classes: int) -> None:
    (tree / "meta").mkdir(parents=True, exist_ok=True)
    (tree / "meta" / "classes.tsv").write_text(
        "".join(f"{i}\tn{i:08d}\t{i + 1}\tclass {i}\n" for i in range(classes)), encoding="utf-8")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str]) -> tuple[float, float]:
    """(wall, CPU seconds of the child) of running ``command``."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0, children_cpu() - cpu0


def imnet_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "imnet", *map(str, args)]


def write_packs(tree: Path, work: Path, workers: int) -> dict[str, dict]:
    """Pack the tree's train split (originals, 320, 256) and ``tar cf`` it; times of each."""
    images_bytes = sum(p.stat().st_size for p in (tree / "train").rglob("*.JPEG"))
    subprocess.run(["tar", "cf", "/dev/null", "-C", str(tree), "train"], check=True)  # warm the cache
    rows = {}
    plain = work / "plain.tar"
    wall, cpu = timed(["tar", "cf", str(plain), "-C", str(tree), "train"])
    rows["tar cf"] = {"wall": wall, "cpu": cpu, "MB/s": images_bytes / wall / 1e6}
    plain.unlink()
    for name, side in SOURCES.items():
        if side is None and name.startswith("(a)"):
            continue
        out = work / name.split()[-1].replace("pack", "orig")
        shutil.rmtree(out, ignore_errors=True)
        extra = ["--max-side", side, "--quality", 90] if side else []
        wall, cpu = timed(imnet_cmd("pack", "--data", tree, "--out", out, "--only", "train", "--workers", workers,
                                    "--shard-size", 256, "--no-progress", *extra))
        rows[f"imnet pack{f' --max-side {side}' if side else ''}"] = {
            "wall": wall, "cpu": cpu, "MB/s": images_bytes / wall / 1e6, "out": out,
            "bytes": sum(p.stat().st_size for p in out.glob("*.tar"))}
    return rows


def one_epoch(loader, epoch: int) -> tuple[float, float | None]:
    loader.set_epoch(epoch)
    cpu0, count, t0 = tree_cpu_seconds(), 0, time.perf_counter()
    for images, _ in loader:
        count += images.shape[0]
    wall = time.perf_counter() - t0
    cpu1 = tree_cpu_seconds()
    return count / wall, (count / (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None)


def measure(data: Path, backend: str, workers: int, repeats: int, batch_size: int) -> tuple[float, float]:
    loader = build_train_loader(data, crop_size=224, aug="rrc", mean=MEAN, std=STD, batch_size=batch_size,
                                workers=workers, loader=backend, seed=0)
    one_epoch(loader, 0)  # warm-up: workers, pipeline, page cache
    rates = [one_epoch(loader, e + 1) for e in range(repeats)]
    loader.close()
    return statistics.median(r[0] for r in rates), statistics.median(r[1] for r in rates if r[1])


COLD_CHILD = r'''
import sys, time
t0 = float(sys.argv[4])
from imnet.data import build_train_loader
loader = build_train_loader(sys.argv[1], crop_size=56, resize_size=64, mean=(0.5,) * 3, std=(0.25,) * 3,
                            batch_size=64, workers=int(sys.argv[3]), loader=sys.argv[2], seed=0)
next(iter(loader))
print(time.time() - t0)
'''


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
        return True
    except OSError:
        return False


def cold_set(work: Path, images: int) -> tuple[Path, Path]:
    """A tree of ``images`` small JPEGs in 1000 class folders (distinct files), and its pack."""
    tree = work / f"cold-tree-{images}"
    pack = work / f"cold-pack-{images}"
    if not (tree / "meta" / "train.txt").is_file():
        shutil.rmtree(tree, ignore_errors=True)
        rng = np.random.default_rng(0)
        lines = []
        for i in range(images):
            wnid = f"n{i % 1000:08d}"
            (tree / "train" / wnid).mkdir(parents=True, exist_ok=True)
            encoded = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(encoded, "JPEG", quality=80)
            name = f"{wnid}/{wnid}_{i}.JPEG"
            (tree / "train" / name).write_bytes(encoded.getvalue())
            lines.append(f"{name} {i % 1000}\n")
        classes_tsv(tree, 1000)
        (tree / "meta" / "train.txt").write_text("".join(lines), encoding="utf-8")
    if not (pack / "meta" / "pack.json").is_file():
        shutil.rmtree(pack, ignore_errors=True)
        subprocess.run(imnet_cmd("pack", "--data", tree, "--out", pack, "--only", "train", "--no-progress"),
                       check=True, stdout=subprocess.DEVNULL)
    return tree, pack


def cold_start(data: Path, backend: str, workers: int, repeats: int) -> tuple[float, bool]:
    times, cold = [], True
    for _ in range(repeats):
        cold = drop_caches() and cold
        done = subprocess.run([sys.executable, "-c", COLD_CHILD, str(data), backend, str(workers), str(time.time())],
                              check=True, capture_output=True, text=True)
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(times), cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/imnet-pack-bench"))
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cold-images", type=int, default=100_000)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: write, loaders, cold")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    skip = set(args.skip.split(","))
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    tree = write_bench_tree(work / f"tree-{args.images}", images=args.images)
    classes_tsv(tree, 10)
    sizes = [Image.open(p).size for p in list((tree / "train").rglob("*.JPEG"))[:50]]
    mean_kb = statistics.mean(p.stat().st_size for p in (tree / "train").rglob("*.JPEG")) / 1e3
    print(f"# imnet pack benchmark: {args.images} JPEGs of {sizes[0][0]}x{sizes[0][1]}, mean {mean_kb:.0f} KB; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {pil_flavour()}\n")

    packs = write_packs(tree, work, max(workers))
    if "write" not in skip:
        print(f"## Writing the train split ({args.images} images), {max(workers)} worker(s)\n")
        print("| method | wall s | CPU s | MB/s of images | x tar cf (wall) | shards MB |")
        print("| --- | --- | --- | --- | --- | --- |")
        base = packs["tar cf"]["wall"]
        for name, row in packs.items():
            size = f"{row['bytes'] / 1e6:.1f}" if "bytes" in row else ""
            print(f"| {name} | {row['wall']:.2f} | {row['cpu']:.2f} | {row['MB/s']:.0f} | {row['wall'] / base:.2f} "
                  f"| {size} |")
        print()

    if "loaders" not in skip:
        data = {"(a) tree": tree, "(b) pack": work / "orig", "(c) pack 320": work / "320", "(d) pack 256": work / "256"}
        print("## Train loader (rrc 224, batch 64): images per CPU-second (per core), images/s; x (a)\n")
        print("| backend | workers | source | img per CPU-s | x (a) per core | img/s | x (a) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for backend in ("torch", "dali"):
            for w in workers:
                base = None
                for name, path in data.items():
                    rate, cpu_rate = measure(path, backend, w, args.repeats, args.batch_size)
                    base = base or (rate, cpu_rate)
                    print(f"| {backend} | {w} | {name} | {cpu_rate:.0f} | {cpu_rate / base[1]:.2f} | {rate:.0f} | "
                          f"{rate / base[0]:.2f} |", flush=True)
        print()

    if "cold" not in skip:
        cold_tree, cold_pack = cold_set(work, args.cold_images)
        print(f"## Time to the first batch, fresh process, {args.cold_images} list entries\n")
        print("| backend | workers | tree s | pack s | tree / pack | page cache |")
        print("| --- | --- | --- | --- | --- | --- |")
        for backend, w in (("torch", 2), ("dali", 2)):
            t_tree, cold1 = cold_start(cold_tree, backend, w, args.repeats)
            t_pack, cold2 = cold_start(cold_pack, backend, w, args.repeats)
            print(f"| {backend} | {w} | {t_tree:.2f} | {t_pack:.2f} | {t_tree / t_pack:.2f} | "
                  f"{'dropped before each run' if cold1 and cold2 else 'warm (drop_caches not allowed)'} |", flush=True)


if __name__ == "__main__":
    main()
