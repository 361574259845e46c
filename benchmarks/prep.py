"""Benchmark ``imnet prep`` against the ways people prepare ILSVRC2012 today, in one run.

Methods (each starts from the same archives in the page cache and writes a fresh tree):

* ``imnet``: ``imnet prep --src --dst --checksums`` (MD5 verified in the same pass, repairs, manifests,
  every image fully decoded and SHA-256 hashed: all checks on, as users run it);
* ``imnet_full_decode``, ``imnet_no_decode`` and ``imnet_no_checks``: the same with every image
  decoded in full (no structural shortcut), with the decode check off, and with the decode check and
  the per-image SHA-256 off (the benchmark-only ``IMNET_PREP_SKIP_CHECKS`` hook), so the differences
  give what each check costs in the same run;
* ``(a) seed``: the recipe users replace: ``md5sum -c`` of the archives, ``tar xf`` of the outer train
  tar, a loop of ``tar xf`` over the inner class tars and ``rm`` of them, ``tar xf`` of val and the
  classic ``valprep.sh`` (one ``mkdir`` per class and one ``mv`` per val image, written from the
  devkit beforehand, as users download it);
* ``(b) torchvision``: ``torchvision.datasets.ImageNet(root, split=...)`` first-time parse of both
  splits (MD5 check, extraction, val move, folder scan);
* ``(c) tar floor``: plain two-level ``tar xf`` (outer, then inner tars, then val) with no verification.

Archives of ``--size`` GB each (train ~90%, val ~10%; 100 classes; ImageNet-like 400x350 JPEGs of
~110 KB, drawn from a pool of pre-encoded noisy images) are generated under ``--workdir`` and deleted
afterwards. Prints a markdown table: median seconds over ``--repeats``, CPU seconds (user + sys of
the process tree), bytes/s, images/s and the ratios (a)/imnet, (b)/imnet, imnet/(c); then the cost
of each new check in seconds per GB: from the end-to-end runs (wall and CPU), and measured alone on
one core over the pool's images (PIL decode as prep does it, SHA-256).

    .venv/bin/python benchmarks/prep.py --size 0.25 --size 0.5 --size 1 --repeats 3
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
import tarfile
import time
from pathlib import Path

import numpy as np

from imnet.testing.fake import (add_bytes, encode, meta_mat_bytes, render_image, _class_looks, write_checksums,
                                write_devkit)

CLASSES = 100
POOL = 48
IMAGE_SIZE = (400, 350)
NOISE = 55.0  # ~110 KB at quality 90, as ImageNet's mean JPEG
METHODS = ("imnet", "imnet_full_decode", "imnet_no_decode", "imnet_no_checks", "a_seed", "b_torchvision", "c_tar")
SKIPPED = {"imnet_full_decode": "shortcut", "imnet_no_decode": "decode", "imnet_no_checks": "decode,hash"}


def image_pool(seed: int = 0) -> list[bytes]:
    """The pre-encoded JPEGs the archives are drawn from."""
    looks = _class_looks(CLASSES, seed)
    return [encode(render_image(looks[i % CLASSES], IMAGE_SIZE, np.random.default_rng([seed, i]), NOISE))
            for i in range(POOL)]


def check_costs(pool: list[bytes], repeats: int = 5) -> dict:
    """CPU seconds per GB of image bytes, on one core, of prep's two new per-image checks: the decode
    verdict as prep gets it (``inspect_image``: ``decodes_by_structure``, else ``decode_fully``), ``decode_fully`` alone
    (PIL, JPEG at 1/8 DCT scale), a plain full-size decode, and SHA-256."""
    import hashlib

    from PIL import Image

    from imnet.prep.quirks import decode_fully, inspect_image

    def verdict(data):
        inspect_image("train/n0/n0_1.JPEG", data)  # what a writer process runs per image

    def decode(data):
        with Image.open(io.BytesIO(data)) as image:
            decode_fully(image)

    def full_decode(data):
        with Image.open(io.BytesIO(data)) as image:
            image.load()

    total = sum(map(len, pool))
    costs = {}
    for name, work in (("verdict", verdict), ("decode", decode), ("decode_full_size", full_decode),
                       ("sha256", lambda d: hashlib.sha256(d).digest())):
        times = []
        for _ in range(repeats):
            start = time.process_time()
            for data in pool:
                work(data)
            times.append(time.process_time() - start)
        costs[name] = statistics.median(times) / total * 1e9
    return costs


def generate(out: Path, size_gb: float, seed: int = 0) -> dict:
    """Write train/val/devkit archives totalling about ``size_gb`` GB into ``out``; returns counts."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pool = image_pool(seed)
    mean = sum(map(len, pool)) / POOL
    images = int(size_gb * 1e9 / (mean + 1024))
    n_val = max(CLASSES, images // 10)
    per_class = max(1, (images - n_val) // CLASSES)
    wnids = sorted(f"n{n:08d}" for n in rng.choice(np.arange(1_000_000, 15_000_000), CLASSES, replace=False))
    ids = {w: i + 1 for i, w in enumerate(rng.permutation(wnids))}
    with tarfile.open(out / "ILSVRC2012_img_train.tar", "w", format=tarfile.USTAR_FORMAT) as outer:
        for c, wnid in enumerate(wnids):
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as inner:
                for i in range(per_class):
                    add_bytes(inner, f"{wnid}_{i + 1}.JPEG", pool[int(rng.integers(POOL))])
            add_bytes(outer, f"{wnid}.tar", buffer.getvalue())
    labels = [int(x) for x in rng.permutation(np.arange(n_val) % CLASSES)]
    with tarfile.open(out / "ILSVRC2012_img_val.tar", "w", format=tarfile.USTAR_FORMAT) as val:
        for number in range(1, n_val + 1):
            add_bytes(val, f"ILSVRC2012_val_{number:08d}.JPEG", pool[int(rng.integers(POOL))])
    write_devkit(out / "ILSVRC2012_devkit_t12.tar.gz",
                 meta_mat_bytes(wnids, ids, ["n00000001", "n00000002"], {w: per_class for w in wnids}),
                 [ids[wnids[label]] for label in labels])
    archives = [out / n for n in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz")]
    write_checksums(out / "checksums.md5", archives)
    # valprep.sh as users download it: mkdir per class, mv per image.
    lines = [f"mkdir -p {w}\n" for w in wnids]
    lines += [f"mv ILSVRC2012_val_{n:08d}.JPEG {wnids[label]}/\n" for n, label in enumerate(labels, 1)]
    (out / "valprep.sh").write_text("".join(lines))
    return {"images": per_class * CLASSES + n_val, "bytes": sum(a.stat().st_size for a in archives[:2])}


SEED_RECIPE = r"""set -e
cd "$SRC" && md5sum --quiet -c checksums.md5
mkdir -p "$DST/train" "$DST/val"
cd "$DST/train" && tar xf "$SRC/ILSVRC2012_img_train.tar"
for f in *.tar; do d="${f%.tar}"; mkdir -p "$d"; tar xf "$f" -C "$d"; rm "$f"; done
cd "$DST/val" && tar xf "$SRC/ILSVRC2012_img_val.tar" && bash "$SRC/valprep.sh"
"""

TAR_FLOOR = r"""set -e
mkdir -p "$DST/train" "$DST/val"
cd "$DST/train" && tar xf "$SRC/ILSVRC2012_img_train.tar"
for f in *.tar; do d="${f%.tar}"; mkdir -p "$d"; tar xf "$f" -C "$d"; rm "$f"; done
cd "$DST/val" && tar xf "$SRC/ILSVRC2012_img_val.tar"
"""

TORCHVISION = r"""
import sys, torchvision.datasets.imagenet as tv
src, root = sys.argv[1], sys.argv[2]
md5 = dict(reversed(l.split("  ")) for l in open(src + "/checksums.md5").read().splitlines())
for key, name in (("train", "ILSVRC2012_img_train.tar"), ("val", "ILSVRC2012_img_val.tar"),
                  ("devkit", "ILSVRC2012_devkit_t12.tar.gz")):
    tv.ARCHIVE_META[key] = (name, md5[name])
for split in ("train", "val"):
    print(split, len(tv.ImageNet(root, split=split)))
"""


# CPU seconds (user + sys of the whole process tree) per method, in run order: less noisy than wall
# time on a shared machine.
CPU_SECONDS: dict[str, list[float]] = {}


def run_method(method: str, src: Path, dst: Path) -> float:
    """Run one method from ``src`` into a fresh ``dst``; returns wall seconds (CPU seconds are
    appended to ``CPU_SECONDS``)."""
    shutil.rmtree(dst, ignore_errors=True)
    env = dict(os.environ, SRC=str(src), DST=str(dst))
    env.pop("IMNET_PREP_SKIP_CHECKS", None)
    if method in SKIPPED:
        env["IMNET_PREP_SKIP_CHECKS"] = SKIPPED[method]
    if method.startswith("imnet"):
        command = [sys.executable, "-m", "imnet", "prep", "--src", str(src), "--dst", str(dst),
                   "--checksums", str(src / "checksums.md5")]
    elif method == "a_seed":
        command = ["bash", "-c", SEED_RECIPE]
    elif method == "c_tar":
        command = ["bash", "-c", TAR_FLOOR]
    else:
        dst.mkdir(parents=True)
        for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"):
            os.symlink(src / name, dst / name)
        command = [sys.executable, "-c", TORCHVISION, str(src), str(dst)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_SECONDS.setdefault(method, []).append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    shutil.rmtree(dst, ignore_errors=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, action="append", help="archive size in GB (repeatable)")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions per method and size (median)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/imnet-prep-bench"), help="scratch folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw timings here")
    args = parser.parse_args()
    sizes = args.size or [1.0]
    results = []
    try:
        for size in sizes:
            src = args.workdir / f"src-{size}"
            t0 = time.perf_counter()
            counts = generate(src, size)
            print(f"generated {counts['bytes'] / 1e9:.2f} GB, {counts['images']} images in "
                  f"{time.perf_counter() - t0:.0f}s", file=sys.stderr)
            times = {m: [] for m in METHODS}
            CPU_SECONDS.clear()
            for repeat in range(args.repeats):
                order = METHODS[repeat % len(METHODS):] + METHODS[:repeat % len(METHODS)]  # rotate
                for method in order:
                    times[method].append(run_method(method, src, args.workdir / "dst"))
                    print(f"  {size} GB {method}: {times[method][-1]:.2f}s", file=sys.stderr)
            shutil.rmtree(src)
            results.append({"size_gb": size, **counts, "times": times,
                            "median": {m: statistics.median(t) for m, t in times.items()},
                            "cpu_median": {m: statistics.median(t) for m, t in CPU_SECONDS.items()}})
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    print("| archives | method | median s | CPU s | MB/s | images/s | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        med = r["median"]
        ratios = {"imnet": "1.00", "a_seed": f"{med['a_seed'] / med['imnet']:.2f}x slower than imnet",
                  "imnet_full_decode": f"imnet takes {med['imnet'] / med['imnet_full_decode']:.2f}x its time",
                  "imnet_no_decode": f"imnet takes {med['imnet'] / med['imnet_no_decode']:.2f}x its time",
                  "imnet_no_checks": f"imnet takes {med['imnet'] / med['imnet_no_checks']:.2f}x its time",
                  "b_torchvision": f"{med['b_torchvision'] / med['imnet']:.2f}x slower than imnet",
                  "c_tar": f"imnet takes {med['imnet'] / med['c_tar']:.2f}x its time"}
        for method in METHODS:
            print(f"| {r['bytes'] / 1e9:.2f} GB, {r['images']} img | {method} | {med[method]:.2f} | "
                  f"{r['cpu_median'][method]:.2f} | "
                  f"{r['bytes'] / med[method] / 1e6:.0f} | {r['images'] / med[method]:.0f} | {ratios[method]} |")
    print()
    print("| archives | check | wall s per GB (end to end) | CPU s per GB (end to end) |")
    print("| --- | --- | --- | --- |")
    for r in results:
        med, cpu, gb = r["median"], r["cpu_median"], r["bytes"] / 1e9
        for check, (with_it, without) in {"decode check (as prep runs it)": ("imnet", "imnet_no_decode"),
                                          "decode of every image in full": ("imnet_full_decode", "imnet_no_decode"),
                                          "sha256": ("imnet_no_decode", "imnet_no_checks")}.items():
            print(f"| {gb:.2f} GB | {check} | {(med[with_it] - med[without]) / gb:.2f} | "
                  f"{(cpu[with_it] - cpu[without]) / gb:.2f} |")
    costs = check_costs(image_pool())
    pool = image_pool()
    print()
    print(f"Alone, one core, over the {POOL} pool images ({IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, mean "
          f"{sum(map(len, pool)) / POOL / 1e3:.0f} KB): decode verdict as prep gets it {costs['verdict']:.2f} "
          f"CPU-s per GB, decode at 1/8 DCT scale {costs['decode']:.2f}, full-size decode "
          f"{costs['decode_full_size']:.2f}, SHA-256 {costs['sha256']:.2f}.")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "check_costs": costs}, indent=1))


if __name__ == "__main__":
    main()
