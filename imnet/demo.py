"""``imnet demo``: the whole pipeline on generated data, with no ImageNet and no network.

Four steps, each a progress bar and a one-line summary on stderr, each reused when a previous run
with the same settings finished it (everything lives under ``--out``):

1. ``OUT/archives``: fake ILSVRC2012 archives in the official formats (:func:`imnet.testing.fake_ilsvrc`),
   generated into a temp folder and renamed when complete;
2. ``OUT/imagenet``: ``imnet prep`` of those archives (resumable itself); with ``--pack`` also
   ``OUT/pack``: ``imnet pack`` of that tree, which training and eval then read;
3. ``OUT/run``: ``imnet train`` of a small CIFAR-style zoo model (resumed when interrupted, reused
   when finished);
4. ``OUT/eval``: ``imnet eval`` of the run with 1, 5 and 10 crops and ReaL labels (the store skips a
   model already evaluated), giving ``results.md`` and the accuracy-vs-speed plot.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from imnet.errors import ImnetError


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo. The defaults finish in a few minutes on a 2-core CPU (see README)."""

    out: Path = Path("demo_out")
    arch: str = "cifar_resnet20"
    classes: int = 50
    train_per_class: int = 48
    val_images: int = 500
    image_size: tuple[int, int] = (44, 40)  # generated JPEGs, (width, height)
    img_size: int = 32  # model input (crop)
    epochs: int = 6
    batch_size: int = 32
    workers: int | None = None
    loader: str = "auto"
    # torch intra-op threads while the demo runs; 1 by default: on a small CPU shared with anything else
    # (the loader's own threads included) more threads spin-wait and run many times slower.
    threads: int | None = 1
    seed: int = 0
    progress: bool = True
    # Train and evaluate through a pack of the prepared tree (OUT/pack, `imnet pack`) instead of the tree.
    pack: bool = False

    def identity(self) -> dict:
        """The settings that decide the demo's results (not how it runs): reuse needs them equal."""
        keep = ("arch", "classes", "train_per_class", "val_images", "image_size", "img_size", "epochs",
                "batch_size", "seed")
        identity = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
                    if k in keep}
        if self.pack:  # only when set, so demo folders made before packs existed stay reusable
            identity["pack"] = True
        return identity


@dataclass
class DemoResult:
    """What the demo produced: the results table (markdown), the plot, the run and the 1-crop top-1."""

    table: str
    plot: Path
    results: Path
    run_dir: Path
    top1: float
    chance: float
    seconds: float


def _say(message: str) -> None:
    print(f"imnet demo: {message}", file=sys.stderr, flush=True)


def _check_out(config: DemoConfig) -> None:
    """``OUT/demo.json`` records the settings; a different demo in the same folder is an error."""
    out = Path(config.out)
    record = out / "demo.json"
    identity = config.identity()
    if record.is_file():
        try:
            stored = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ImnetError(f"{record}: unreadable demo record ({err}); delete {out} to start over") from None
        if stored != identity:
            changed = sorted(k for k in identity if stored.get(k) != identity[k])
            raise ImnetError(
                f"{record}: {out} holds a demo made with other settings ({', '.join(changed)}); "
                "use another --out or delete it"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise ImnetError(f"{out}: folder exists and is not an imnet demo folder (no demo.json); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(identity, indent=2) + "\n", encoding="utf-8")
    tmp.replace(record)


def make_archives(config: DemoConfig) -> Path:
    """Step 1: the fake archives in ``OUT/archives`` (reused when complete). Returns that folder."""
    from imnet.testing import fake_ilsvrc

    archives = Path(config.out) / "archives"
    if (archives / "checksums.md5").is_file() and (archives / "real.json").is_file():
        _say(f"archives: reusing {archives}")
        return archives
    t0 = time.perf_counter()
    partial = archives.with_name("archives.partial")
    shutil.rmtree(partial, ignore_errors=True)
    fake = fake_ilsvrc(partial, classes=config.classes, train_per_class=config.train_per_class,
                       val=config.val_images, seed=config.seed, image_size=config.image_size)
    # checksums.md5 and real.json are the last files written; the rename makes the set visible at once
    partial.replace(archives)
    size = sum(p.stat().st_size for p in archives.iterdir()) / 2**20
    _say(f"archives: {len(fake.wnids)} classes, {len(fake.train_files)} train + {len(fake.val_labels)} val images "
         f"({size:.1f} MiB) in {archives} [{time.perf_counter() - t0:.1f}s]")
    return archives


def prepare_tree(config: DemoConfig, archives: Path) -> Path:
    """Step 2: ``imnet prep`` into ``OUT/imagenet`` (prep skips what is complete). Returns the tree."""
    from imnet.prep import prepare

    data = Path(config.out) / "imagenet"
    t0 = time.perf_counter()
    summary = prepare(archives, data, checksums=archives / "checksums.md5", progress=config.progress)
    splits = ", ".join(f"{name} {info.get('status')} ({info.get('images')} images)"
                       for name, info in summary.get("splits", {}).items())
    _say(f"prep: {splits} in {data} [{time.perf_counter() - t0:.1f}s]")
    return data


def pack_tree(config: DemoConfig, tree: Path) -> Path:
    """Step 2b (``--pack``): ``imnet pack`` of the prepared tree into ``OUT/pack`` (reused when complete)."""
    from imnet.pack.writer import PackOptions, write_pack

    out = Path(config.out) / "pack"
    t0 = time.perf_counter()
    summary = write_pack(PackOptions(out=out, data=tree, shard_size=256, seed=config.seed, progress=config.progress))
    splits = ", ".join(f"{name} {info['status']} ({info['images']} images, {info['shards']} shards)"
                       for name, info in summary["splits"].items())
    _say(f"pack: {splits} in {out} [{time.perf_counter() - t0:.1f}s]")
    return out


def train_model(config: DemoConfig, data: Path) -> Path:
    """Step 3: train ``config.arch`` into ``OUT/run``: reused when finished, resumed when interrupted."""
    from imnet.train import TrainConfig, load_recipe, read_run_record, train

    run_dir = Path(config.out) / "run"
    if (run_dir / "run.json").is_file():
        record = read_run_record(run_dir)
        if record.get("finished"):
            _say(f"train: reusing finished run {run_dir} (best top-1 {record.get('best_top1'):.2f}%)")
            return run_dir
        _say(f"train: resuming {run_dir} after epoch {record.get('completed_epochs')}")
        train(TrainConfig(resume=run_dir, data=data, loader=config.loader, workers=config.workers,
                          progress=config.progress))
    else:
        recipe = load_recipe("demo", {"epochs": config.epochs, "batch_size": config.batch_size,
                                      "img_size": config.img_size})
        t0 = time.perf_counter()
        train(TrainConfig(arch=config.arch, data=data, out=run_dir, recipe=recipe, loader=config.loader,
                          workers=config.workers, seed=config.seed, progress=config.progress))
        _say(f"train: {config.arch} for {config.epochs} epochs in {run_dir} [{time.perf_counter() - t0:.1f}s]")
    return run_dir


def evaluate_run(config: DemoConfig, data: Path, run_dir: Path, real_json: Path):
    """Step 4: ``imnet eval`` of the run, 1/5/10 crops and ReaL labels, into ``OUT/eval``."""
    from imnet.eval.runner import EvalOptions, evaluate

    out = Path(config.out) / "eval"
    t0 = time.perf_counter()
    summary = evaluate(EvalOptions(
        data=data, out=out, archs=[config.arch], weights=run_dir, crops=(1, 5, 10), real_labels=real_json,
        loader=config.loader, workers=config.workers, batch_size=64,
    ))
    what = "reused stored predictions" if summary.reused and not summary.evaluated else "evaluated"
    _say(f"eval: {what} for {config.arch} with 1, 5 and 10 crops + ReaL in {out} [{time.perf_counter() - t0:.1f}s]")
    return summary


def run_demo(config: DemoConfig = DemoConfig()) -> DemoResult:
    """Run (or finish, or reuse) the four steps under ``config.out``; returns the results.

    :class:`ImnetError` when ``config.out`` holds something else or a step fails on bad input."""
    if config.classes < 2 or config.epochs < 1:
        raise ImnetError("imnet demo needs at least 2 classes and 1 epoch")
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _run_steps(config)
    finally:
        torch.set_num_threads(threads)


def _run_steps(config: DemoConfig) -> DemoResult:
    t0 = time.perf_counter()
    _check_out(config)
    archives = make_archives(config)
    data = prepare_tree(config, archives)
    if config.pack:
        data = pack_tree(config, data)
    run_dir = train_model(config, data)
    summary = evaluate_run(config, data, run_dir, archives / "real.json")
    reports = summary.reports
    table = reports.markdown.read_text(encoding="utf-8")
    one_crop = [row for row in summary.rows if row.crops == 1]
    top1 = float(one_crop[0].top1) if one_crop else float("nan")
    seconds = time.perf_counter() - t0
    chance = 100.0 / config.classes
    _say(f"done in {seconds:.0f}s: {config.arch} reaches {top1:.1f}% top-1 (1 crop) on {config.classes} classes "
         f"(chance {chance:.1f}%); results in {reports.markdown}")
    return DemoResult(table=table, plot=reports.plot, results=reports.csv, run_dir=run_dir, top1=top1,
                      chance=chance, seconds=seconds)
