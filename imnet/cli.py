"""The ``imnet`` command line. This module only wires: each command parses its options and calls one
library function that tests and Python users call directly. Results go to stdout; progress bars and
logs go to stderr. A user error (:class:`imnet.errors.ImnetError`) is printed as one line and exits
with status 2; ``--debug`` shows its traceback.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click

from imnet.errors import ImnetError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show the full traceback of user errors too.")
@click.version_option(package_name="imnet")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """imnet: ImageNet (ILSVRC2012) prep, loaders, training and evaluation.

    \b
    imnet prep  --src /data/tars --dst /data/imagenet   # verify, extract, reorganize, manifests
    imnet train --arch vanillanet_9 --data /data/imagenet
    imnet eval  --crops 10 --real-labels --data /data/imagenet
    imnet demo  --out demo_out                         # the whole pipeline on generated data
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@cli.command()
def info() -> None:
    """Print versions (imnet, Python, torch, torchvision, DALI, PIL) and the hardware seen."""
    from imnet.info import collect_info

    for key, value in collect_info().items():
        click.echo(f"{key + ':':<14}{value}")


# --- prep, verify, fake: data preparation (issue 3) -------------------------------------------------


@cli.command()
@click.option("--src", required=True, type=click.Path(path_type=Path),
              help="Where ILSVRC2012 is (never modified; must not be inside --dst): a folder with the official "
                   "ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz; the "
                   "Hugging Face ILSVRC/imagenet-1k download (the hub cache, a snapshot, or a folder with "
                   "data/train_images_{0..4}.tar.gz, data/val_images.tar.gz, classes.py); Kaggle's "
                   "imagenet-object-localization-challenge folder or its zip; or an extracted tree "
                   "(train/<wnid>/, val/<wnid>/ or a flat val/ with the devkit). A folder may also hold eval-set "
                   "archives under their publishers' names (imagenetv2-*.tar.gz, imagenet-a.tar, imagenet-r.tar, "
                   "ImageNet-Sketch.zip), alone or beside the official archives.")
@click.option("--dst", required=True, type=click.Path(path_type=Path),
              help="Folder for the prepared tree (train/, val/, meta/); must not be inside --src, and its "
                   "train/, val/ and meta/ must hold nothing imnet prep did not write.")
@click.option("--source", "source", type=click.Choice(["auto", "official", "hf", "kaggle", "tree"]), default="auto",
              show_default=True, help="What --src holds; auto tells by its files (the official archives first).")
@click.option("--devkit", type=click.Path(path_type=Path), default=None,
              help="For the other sources: the official ILSVRC2012_devkit_t12.tar.gz, which adds the "
                   "ILSVRC2012_IDs to classes.tsv and checks the per-class train counts and every val label "
                   "against it.")
@click.option("--checksums", type=click.Path(path_type=Path), default=None,
              help="md5sum-format file replacing the shipped official MD5s (for mirrors and fake archives).")
@click.option("--only", default=None, metavar="NAMES",
              help="Prepare only these, comma-separated: train, val, imagenetv2-matched-frequency (v2), "
                   "imagenetv2-threshold0.7, imagenetv2-top-images, imagenet-a (a), imagenet-r (r), "
                   "imagenet-sketch (sketch). Default: train and val, and every eval set whose archive is in "
                   "--src.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes writing images (default: the CPU count).")
@click.option("--reverify", is_flag=True,
              help="On splits already prepared, re-hash the archives (official MD5s; the Hugging Face archives' "
                   "SHA-256) and check every file's size and SHA-256 (meta/<split>.sha256).")
@click.option("--redo", is_flag=True,
              help="Prepare the chosen splits again even when complete, e.g. from other archives than the "
                   "recorded ones (which prep otherwise refuses); removes only what prep wrote for them.")
def prep(src, dst, source, devkit, checksums, only, workers, reverify, redo) -> None:
    """Verify, extract, decode-check, hash (SHA-256) and reorganize ILSVRC2012 into DST: from the official
    archives (MD5s checked), the Hugging Face archives (streamed, never unpacked), Kaggle's folder or
    zip, or an extracted tree, always into the same tree with the same manifests; one read pass,
    resumable after a crash, a write error or SIGTERM, one run per tree at a time (DST/.imnet-lock),
    and a no-op on a complete tree.

    Eval sets found in --src go to DST/<set>/<wnid>/ with meta/<set>.txt in the 1000-class index
    space (ImageNetV2's folder i is class i); they need the tree's meta/classes.tsv or the devkit in
    --src. Their MD5 is checked where one is published (ImageNet-A/-R) or listed in --checksums;
    otherwise MD5 and SHA-256 are recorded.

    \b
    imnet prep --src /data/tars --dst /data/imagenet                    # everything found in --src
    imnet prep --src /data/robustness --dst /data/imagenet --only a,r,v2
    """
    from imnet.prep import format_summary, prepare

    summary = prepare(src, dst, checksums=checksums, only=only, workers=workers, reverify=reverify, redo=redo,
                      source=source, devkit=devkit)
    click.echo(format_summary(summary))


@cli.command()
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Prepared tree to check (DST of imnet prep, or a torchvision ImageNet root).")
@click.option("--decode", is_flag=True, help="Also decode every image (slow; shows a progress bar).")
@click.option("--hashes", is_flag=True,
              help="Also check every image's SHA-256 against meta/<split>.sha256 (reads every byte; progress bar).")
@click.option("--write-manifests", is_flag=True,
              help="Write meta/classes.tsv and meta/<split>.txt where missing (trees made by other tools).")
@click.option("--devkit", type=click.Path(path_type=Path), default=None,
              help="Devkit archive giving ILSVRC2012_IDs and words for --write-manifests.")
@click.option("--acknowledge-bad", is_flag=True,
              help="Settle the images imnet prep found undecodable: each that decodes now (you replaced it) is "
                   "recorded as repaired, each that does not as acknowledged (the loaders then skip it); "
                   "then check the tree.")
def verify(data, decode, hashes, write_manifests, devkit, acknowledge_bad) -> None:
    """Check a prepared tree against its manifests: counts per class, every listed file present,
    sizes, labels, no unacknowledged undecodable image; exits 2 naming what is wrong."""
    from imnet.prep import verify_tree
    from imnet.prep.verify import acknowledge_bad as settle_bad

    if acknowledge_bad:
        acknowledged, repaired = settle_bad(data)
        for rel in acknowledged:
            click.echo(f"acknowledged {data / rel} (undecodable; the loaders skip it)", err=True)
        for rel in repaired:
            click.echo(f"recorded {data / rel} as repaired (it decodes now; new size and SHA-256)", err=True)
    report = verify_tree(data, decode=decode, write_manifests=write_manifests, devkit=devkit, hashes=hashes)
    for path in report.wrote:
        click.echo(f"wrote {path}", err=True)
    for note in report.notes:
        click.echo(f"imnet verify: note: {note}", err=True)
    counts = ", ".join(f"{split} {n} images" for split, n in report.images.items())
    if report.problems:
        for problem in report.problems[:20]:
            click.echo(f"imnet verify: {problem}", err=True)
        more = len(report.problems) - 20
        raise ImnetError(f"{data}: {len(report.problems)} problems found ({counts})"
                         + (f"; {more} more not shown" if more > 0 else ""))
    checked = "".join(f", {what}" for flag, what in ((decode, "decoded"), (hashes, "hashes checked")) if flag)
    click.echo(f"ok: {data}: {counts}{checked}")


@cli.command()
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Folder to write the fake archives, checksums.md5 and real.json into (or the --layout).")
@click.option("--classes", type=click.IntRange(min=1), default=10, show_default=True, help="Number of classes.")
@click.option("--train-per-class", type=click.IntRange(min=1), default=10, show_default=True,
              help="Train images per class.")
@click.option("--val", type=click.IntRange(min=1), default=50, show_default=True, help="Number of val images.")
@click.option("--image-size", type=(int, int), default=(80, 64), show_default=True, help="Width and height.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed; same seed, same bytes.")
@click.option("--no-quirks", is_flag=True, help="Do not plant the CMYK, PNG and grayscale quirks.")
@click.option("--layout", type=click.Choice(["official", "hf", "hf-cache", "kaggle", "kaggle-zip", "tree",
                                             "tree-flat"]),
              default="official", show_default=True,
              help="official: the three archives; hf: the Hugging Face ILSVRC/imagenet-1k files (data/*.tar.gz, "
                   "classes.py); hf-cache: the same in the hub cache's layout; kaggle: the Kaggle challenge "
                   "folder; kaggle-zip: its zip; tree: train/<wnid>/, val/<wnid>/, meta.bin; tree-flat: a flat "
                   "val/ and the devkit. Every layout holds the official layout's images of the same seed.")
@click.option("--eval-sets", default=None, metavar="NAMES",
              help="Also write these eval-set archives in their publishers' layouts (comma-separated names or "
                   "aliases, or 'all': imagenetv2-*.tar.gz, imagenet-a.tar, imagenet-r.tar, ImageNet-Sketch.zip), "
                   "drawn in the same class looks, their MD5s added to checksums.md5 (official layout only).")
@click.option("--eval-per-class", type=click.IntRange(min=1), default=2, show_default=True,
              help="Images per class held by each eval set.")
def fake(out, classes, train_per_class, val, image_size, seed, no_quirks, layout, eval_sets, eval_per_class) -> None:
    """Write fake ILSVRC2012 archives in the official formats, or the same images in the layout of
    another source (for tests, demos and benchmarks), and with --eval-sets fake ImageNetV2 /
    ImageNet-A / -R / -Sketch archives beside the official ones."""
    from imnet.prep.sets import EVAL_SET_NAMES, resolve_set_names
    from imnet.testing import fake_ilsvrc

    options = dict(classes=classes, train_per_class=train_per_class, val=val, seed=seed, image_size=image_size,
                   quirks=not no_quirks)
    counts = f"{classes} classes, {classes * train_per_class} train, {val} val images"
    chosen = []
    if eval_sets is not None:
        if layout != "official":
            raise ImnetError(f"--eval-sets writes beside the official archives; not with --layout {layout}")
        chosen = list(EVAL_SET_NAMES) if eval_sets.strip() == "all" else resolve_set_names(eval_sets, allowed=())
    if layout != "official":
        from imnet.testing.fake_sources import fake_source

        written = fake_source(out, layout, **options)
        click.echo(f"wrote the {layout} layout to {out} ({counts}); prepare it with "
                   f"imnet prep --src {written.src} --dst DST")
        return
    result = fake_ilsvrc(out, **options)
    click.echo(f"wrote {result.train_tar.name}, {result.val_tar.name}, {result.devkit.name}, "
               f"checksums.md5, real.json to {out} ({counts})")
    if chosen:
        from imnet.testing.fake_sets import fake_eval_sets

        sets = fake_eval_sets(out, result.wnids, seed=seed, sets=tuple(chosen), per_class=eval_per_class,
                              image_size=image_size, quirks=not no_quirks, checksums=result.checksums)
        click.echo(f"wrote {', '.join(p.name for p in sets.archives.values())} to {out} "
                   f"({sum(len(m) for m in sets.members.values())} images)")


# --- pack: tar shards for clusters and fast training (issue 18) -------------------------------------


@cli.command(context_settings={"show_default": True})
@click.option("--data", type=click.Path(path_type=Path),
              help="Tree prepared by `imnet prep` to pack (read only; must be complete and not being written).")
@click.option("--from", "from_wds", type=click.Path(path_type=Path),
              help="Instead of --data: a folder of the published timm/imagenet-1k-wds shards and their "
                   "_info.json (counts and labels are checked, then repacked with imnet's index and records).")
@click.option("--classes", type=click.Path(path_type=Path),
              help="With --from: the class list, as a classes.tsv, a prepared tree or ILSVRC2012_devkit_t12.tar.gz "
                   "[default: the 1000 ILSVRC2012 wnids shipped in manifests/, sorted].")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Folder of the pack (empty, or a pack imnet pack wrote); never inside the source.")
@click.option("--only", type=click.Choice(["train", "val"]), default=None, help="Pack only this split.")
@click.option("--shard-size", type=click.IntRange(min=1), default=None,
              help="Images per shard [default: the timm layout, 1024 train and 64 val shards; fewer for small "
                   "splits, at least 256 images each].")
@click.option("--seed", type=int, default=0, help="Seed of the global shuffle of train samples across shards (recorded).")
@click.option("--max-side", type=click.IntRange(min=8), default=None,
              help="Re-encode train images whose longer side exceeds N pixels to that size (others keep their "
                   "bytes); e.g. 320 for training at 160-224 px.")
@click.option("--quality", type=click.IntRange(1, 100), default=90, help="JPEG quality of re-encoded images.")
@click.option("--resize-val", is_flag=True, help="Apply --max-side to val too (default: val keeps its original bytes).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Writer processes [default: CPU count].")
@click.option("--redo", is_flag=True, help="Pack the chosen splits again even when complete (e.g. other settings).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def pack(data, from_wds, classes, out, only, shard_size, seed, max_side, quality, resize_val, workers, redo,
         no_progress) -> None:
    """Pack a prepared tree (or timm's published shards) into WebDataset tar shards in the
    timm/imagenet-1k-wds layout, with DALI index files, SHA256SUMS and a record of the source; train
    samples shuffled across shards. Resumable after a kill; one run per pack (PACK/.imnet-lock).
    `imnet train/eval --data PACK` read it.

    \b
    imnet pack --data /data/imagenet --out /data/imagenet-pack
    imnet pack --data /data/imagenet --out /data/in1k-320 --max-side 320 --quality 90
    imnet pack --from /data/timm-imagenet-1k-wds --classes /data/imagenet --out /data/in1k-pack
    """
    from imnet.pack.resize import ResizeSettings
    from imnet.pack.writer import PackOptions, format_summary, write_pack

    summary = write_pack(PackOptions(
        out=out, data=data, from_wds=from_wds, classes=classes, only=only, shard_size=shard_size, seed=seed,
        resize=ResizeSettings(max_side, quality), resize_val=resize_val, workers=workers, redo=redo,
        progress=not no_progress))
    click.echo(format_summary(summary))


# --- zoo (issue 4, 8) -------------------------------------------------------------------------------


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "json"]), default="md", show_default=True,
              help="Output format of the table.")
@click.option("--filter", "pattern", default="*", show_default=True,
              help="Shell-style pattern of model names, e.g. 'vanillanet_*'.")
@click.option("--check", is_flag=True,
              help="Measure every model with published figures and compare: params at the printed "
                   "precision, MACs within 2%; and (the 'function' column) compare what each model with "
                   "a reference computes with it (torch-resnet, torchvision, timm, bsconv, recordings of "
                   "the original code); exit 1 naming each model that differs unexplained.")
@click.option("--no-function", is_flag=True,
              help="With --check: skip the function comparisons (they run each model on the CPU; "
                   "minutes for the whole zoo).")
@click.option("--no-measure", is_flag=True, help="List configs only; skip measuring params and GMACs.")
@click.pass_context
def zoo(ctx: click.Context, fmt: str, pattern: str, check: bool, no_function: bool, no_measure: bool) -> None:
    """Every zoo model: family, source, measured params and GMACs, published params/FLOPs/top-1/top-5/
    ReaL and their source (pub_*), where its weights resolve locally ('-' when they do not), and
    its official weights (URL or hf:<hub id>; empty when none) with the top-1/top-5/ReaL their source
    publishes for that file at the eval config in weights_eval (weights_*)."""
    from imnet.zoo import list_models
    from imnet.zoo.table import check_models, format_check, render_rows, zoo_rows

    if not list_models(pattern):
        raise ImnetError(f"no zoo model matches {pattern!r}; `imnet zoo` lists them all")
    if check:
        results = check_models(pattern, function=not no_function)
        click.echo(format_check(results), nl=False)
        if any(r.status == "failed" for r in results):
            ctx.exit(1)
        return
    click.echo(render_rows(zoo_rows(pattern, measure=not no_measure), fmt), nl=False)


# --- weights: official weights and the ReaL file (issue 15) ------------------------------------------

_WEIGHTS_ENV = """\b
Where files go: torchvision/URL weights to torch.hub.get_dir()/checkpoints ($TORCH_HOME), hub
weights to the Hugging Face cache ($HF_HUB_CACHE, $HF_HOME; $HF_ENDPOINT picks the hub).
IMNET_WEIGHTS_MIRROR=URL_OR_DIR: fetch every file from there instead, by its file name
(hub files as <hub id>/<file>; an optional SHA256SUMS at its root is checked).
IMNET_OFFLINE=1 or HF_HUB_OFFLINE=1: never touch the network (a mirror folder still works)."""


@cli.group(epilog=_WEIGHTS_ENV)
def weights() -> None:
    """Official weights of the zoo: list them, fetch them into the caches, verify cached files.

    \b
    imnet weights list 'resnet*'          # source, file, size, hash, cached or not and where
    imnet weights fetch 'dla*' vgg16      # download what is not cached, resuming partial files
    imnet weights verify                  # re-check every cached file (exit 1 if one is bad)
    """


@weights.command("list", epilog=_WEIGHTS_ENV)
@click.argument("patterns", nargs=-1, metavar="[PATTERN]...")
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "json"]), default="text", show_default=True,
              help="Output format.")
def weights_list(patterns: tuple[str, ...], fmt: str) -> None:
    """Every zoo model with official weights (or those matching the shell PATTERNs): its source (URL
    or hub id), file name and mirror path, size and hash where known, and whether and where it is
    cached."""
    from imnet.zoo.official import render_table, weights_table

    click.echo(render_table(weights_table(list(patterns) or "*"), fmt), nl=False)


@weights.command("fetch", epilog=_WEIGHTS_ENV)
@click.argument("patterns", nargs=-1, metavar="[PATTERN]...")
@click.option("--force", is_flag=True, help="Delete the cached files of these models and fetch them again.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.pass_context
def weights_fetch(ctx: click.Context, patterns: tuple[str, ...], force: bool, no_progress: bool) -> None:
    """Fetch the official weights of the models matching the PATTERNs (default: all) that are not
    cached: one line and a progress bar per file, partial files resumed, hashes checked (a file
    failing its check is deleted). A model that fails is named with the reason and the others go on;
    the exit status is 1 when any failed."""
    from imnet.zoo.official import fetch_official

    report = fetch_official(list(patterns) or "*", force=force, progress=not no_progress,
                            echo=lambda line: click.echo(line, err=True))
    click.echo(report.summary())
    if report.failed:
        ctx.exit(1)


@weights.command("verify", epilog=_WEIGHTS_ENV)
@click.argument("patterns", nargs=-1, metavar="[PATTERN]...")
@click.option("--delete", is_flag=True, help="Delete cached files that fail, so the next fetch gets them again.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def weights_verify(ctx: click.Context, patterns: tuple[str, ...], delete: bool, no_progress: bool) -> None:
    """Check the cached official files again: the SHA-256 prefix of torchvision/SimpleNet file names,
    the hub's SHA-256 ETag, a mirror's SHA256SUMS; a file with no published hash must read as a
    checkpoint. Exit status 1 when a file is bad."""
    from imnet.zoo.official import format_verify, verify_official

    results = verify_official(list(patterns) or "*", delete=delete, progress=not no_progress)
    click.echo(format_verify(results), nl=False)
    if any(r.status == "bad" for r in results):
        ctx.exit(1)


# --- bench: loaders and others (issue 5) -------------------------------------------------------------


@cli.group()
def bench() -> None:
    """Benchmarks that print ratios against named baselines measured in the same run."""


def _int_list(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        return [int(part) for part in value.split(",") if part]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


@bench.command("loader")
@click.option("--tree", type=click.Path(path_type=Path), default=Path("/tmp/imnet-bench-tree"),
              show_default=True, help="Folder for the generated ImageNet-sized JPEGs (reused if complete).")
@click.option("--images", type=click.IntRange(min=64), default=600, show_default=True,
              help="How many JPEGs to generate (about 400x350, ~110 KB each).")
@click.option("--workers", default="1,2", show_default=True, callback=_int_list,
              help="Comma-separated worker counts (DataLoader workers / DALI threads) to measure.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed passes per measurement (after one warm-up pass); the median is reported.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Batch size of every loader.")
@click.option("--pipelines", type=click.Choice(["train", "eval", "both"]), default="both",
              show_default=True, help="Which pipelines to measure.")
@click.option("--no-decode", is_flag=True, help="Skip the single-thread decode-path comparison.")
@click.option("--stock-pillow", type=click.Path(path_type=Path), envvar="IMNET_STOCK_PILLOW",
              help="Folder holding a stock Pillow (PIL/) for the baseline's subprocess [default: "
                   ".venv/stock-pillow, made by scripts/bootstrap.sh; missing: the installed PIL, "
                   "with a warning].")
def bench_loader(tree, images, workers, repeats, batch_size, pipelines, no_decode, stock_pillow) -> None:
    """Images/s of imnet's DALI-CPU and torch loaders vs ImageFolder + transforms + DataLoader on
    stock Pillow (run in a subprocess), by the wall clock and per core (images per CPU-second of
    all the loader's processes and threads, read from /proc), each with its ratio to the baseline.

    Example: imnet bench loader --tree /tmp/imnet-bench-600 --images 600 --repeats 5"""
    from imnet.data.benchmark import loader_report

    chosen = ("train", "eval") if pipelines == "both" else (pipelines,)
    click.echo(loader_report(tree, images=images, workers=workers, repeats=repeats,
                             batch_size=batch_size, pipelines=chosen, decode=not no_decode,
                             stock_pillow=stock_pillow))


# --- eval (issue 6) -----------------------------------------------------------------------------------


def _eval_crop_counts(crops: tuple[str, ...], extra: list[str]) -> tuple[int, ...]:
    """``--crops 1 5 10`` (values after the first arrive as extra arguments), ``--crops 1,5,10`` or
    repeated ``--crops``: the crop counts, each 1, 5 or 10."""
    tokens = [t for value in (*crops, *extra) for t in str(value).replace(",", " ").split()]
    counts = []
    for token in tokens:
        if token not in ("1", "5", "10"):
            raise click.UsageError(f"--crops: expected 1, 5 or 10, got {token!r}")
        counts.append(int(token))
    return tuple(sorted(set(counts))) or (1,)


@cli.command("eval", context_settings={"allow_extra_args": True, "show_default": True})
@click.option("--arch", "archs", multiple=True, metavar="NAME|PATTERN",
              help="Zoo model or shell pattern (repeatable). Default: every zoo model with official "
                   "weights and any other whose weights resolve locally. Official weights not cached "
                   "are fetched (see `imnet weights`; not with IMNET_OFFLINE=1); a model whose "
                   "weights cannot be had is skipped with the reason.")
@click.option("--weights", type=click.Path(path_type=Path),
              help="Weights: a file (one --arch), a folder of <name>.pth, or a finished `imnet train` run.")
@click.option("--data", type=click.Path(path_type=Path), help="Tree prepared by `imnet prep`.")
@click.option("--src", type=click.Path(path_type=Path),
              help="Archives folder; where --real-labels looks for real.json after --data.")
@click.option("--split", default="val", help="Split of the tree to evaluate (one; see --sets).")
@click.option("--sets", default=None, metavar="NAMES",
              help="Splits and eval sets to evaluate every model on, in one run, comma-separated: val, "
                   "imagenetv2-matched-frequency (v2), imagenetv2-threshold0.7, imagenetv2-top-images, "
                   "imagenet-a (a), imagenet-r (r), imagenet-sketch (sketch); as prepared by `imnet prep`. "
                   "With val and a or r, the -clean rows (val on their 200 classes) come too. [default: --split]")
@click.option("--argmax", type=click.Choice(["subset", "all"]), default="subset",
              help="ImageNet-A/-R (and -clean): rank only the set's classes (the publishers' and timm's "
                   "protocol) or all 1000 classes. Applied to the stored scores: --from-store takes it too.")
@click.option("--crops", multiple=True, default=("1",), metavar="1|5|10",
              help="Crop counts, several in one pass: --crops 1 5 10 (decode once, cut 10 crops; "
                   "1- and 5-crop come from the same forward passes).")
@click.option("--real-labels", is_flag=False, flag_value="auto", default=None, metavar="[PATH]",
              help="Also score against ReaL labels; without PATH, real.json in --data then --src, "
                   "else the official file fetched into the cache and checked by its MD5.")
@click.option("--loader", type=click.Choice(["auto", "dali", "torch"]), default="auto", help="Data loader.")
@click.option("--batch-size", type=int, default=64, help="Images per batch (each gives 1, 5 or 10 crops).")
@click.option("--workers", type=int,
              help="Loader threads/workers per process [default: this rank's share of the CPUs, capped; "
                   "`imnet info` shows it].")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto",
              help="Where to run the models (auto: CUDA when present).")
@click.option("--amp", type=click.Choice(["off", "bf16", "fp16"]), default="off",
              help="Autocast dtype of the forward pass.")
@click.option("--channels-last/--no-channels-last", default=True,
              help="channels_last memory format (faster convs with oneDNN on CPU and cuDNN on GPU).")
@click.option("--compile", "compile_", is_flag=True,
              help="Wrap each model in torch.compile (dynamo reset per model, fixed batch shape; what "
                   "really compiled is recorded).")
@click.option("--compile-backend", default="inductor", help="torch.compile backend (eager: trace only).")
@click.option("--tf32/--no-tf32", default=False,
              help="TensorFloat-32 matmuls and convolutions on CUDA (faster, ~1e-3 relative error); "
                   "off: --amp off is true float32.")
@click.option("--img-size", type=click.IntRange(min=1),
              help="Override every model's crop size in pixels (recorded in the results).")
@click.option("--crop-pct", type=float, help="Override every model's crop_pct (recorded in the results).")
@click.option("--limit", type=int, help="Evaluate only the first N images (quick check; reported as partial).")
@click.option("--skip-bad", is_flag=True, help="Skip corrupt images (counted, named) instead of failing.")
@click.option("--force", is_flag=True, help="Re-evaluate models already finished in the store.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("eval_out"),
              help="Folder for predictions.h5 and results.* (with --from-store: the store's folder).")
@click.option("--from-store", type=click.Path(path_type=Path),
              help="Recompute every metric from this predictions.h5 (no model, no GPU) and rewrite results.*.")
@click.pass_context
def eval_(ctx, archs, weights, data, src, split, sets, argmax, crops, real_labels, loader, batch_size, workers,
          device, amp, channels_last, compile_, compile_backend, tf32, img_size, crop_pct, limit, skip_bad, force,
          out, from_store):
    """Evaluate zoo models (1-, 5-, 10-crop; original and ReaL labels; ImageNet val and the eval sets)
    into predictions.h5 and results.*

    \b
    imnet eval --crops 10 --real-labels --data /data/imagenet       # every model with official weights
    imnet eval --arch resnet50 --crops 1 5 10 --data /data/imagenet --limit 500
    imnet eval --arch resnet50 --sets val,v2,a,r,sketch --data /data/imagenet   # one row per set
    imnet eval --from-store eval_out/predictions.h5 --real-labels /data/real.json
    """
    from imnet.eval.real import find_or_fetch_real_labels
    from imnet.eval.runner import EvalOptions, evaluate, report_from_store

    crop_counts = _eval_crop_counts(crops, ctx.args)
    real_path = None
    if real_labels == "auto":
        real_path = find_or_fetch_real_labels(data, src, echo=lambda line: click.echo(line, err=True))
    elif real_labels is not None:
        real_path = Path(real_labels)
    if from_store is not None:
        summary = report_from_store(from_store, out if ctx.get_parameter_source("out").name != "DEFAULT"
                                    else None, real_path, argmax)
    else:
        if data is None:
            raise click.UsageError("--data is required (or --from-store)")
        summary = evaluate(EvalOptions(
            data=data, out=out, archs=list(archs), weights=weights, split=split, crops=crop_counts,
            real_labels=real_path, loader=loader, batch_size=batch_size, workers=workers, amp=amp,
            channels_last=channels_last, compile=compile_, compile_backend=compile_backend, tf32=tf32,
            limit=limit, img_size=img_size,
            crop_pct=crop_pct, skip_bad=skip_bad, force=force, device=device,
            sets=tuple(sets.split(",")) if sets else (), argmax=argmax))
    if summary.reports is None:  # not rank 0 under torchrun
        return
    multi = len({r.set for r in summary.rows}) > 1
    set_head = f" {'set':<30}" if multi else ""
    click.echo(f"{'model':<28}{set_head} {'crops':>5} {'top1':>7} {'top5':>7} {'real1':>7} {'real5':>7} "
               f"{'img/s':>8} {'images':>7}")
    for r in summary.rows:
        def cell(v, fmt=".2f"):
            return "-" if v is None else format(v, fmt)
        set_cell = f" {r.set:<30}" if multi else ""
        click.echo(f"{r.model:<28}{set_cell} {r.crops:>5} {cell(r.top1):>7} {cell(r.top5):>7} {cell(r.real_top1):>7} "
                   f"{cell(r.real_top5):>7} {cell(r.images_per_sec, '.1f'):>8} "
                   f"{r.n_images:>7}{' partial' if r.partial else ''}")
    if summary.reused:
        click.echo(f"reused from {summary.store}: {', '.join(summary.reused)}", err=True)
    click.echo(_eval_summary_lines(summary, detailed=len(summary.skipped) <= 3))
    plots = "accuracy_vs_speed.png" + (", accuracy_vs_speed_sets.png" if summary.reports.plot_sets else "")
    click.echo(f"results: {summary.reports.markdown.parent} (results.csv, results.json, results.md, "
               f"{plots}; predictions {summary.store})")


def _eval_summary_lines(summary, detailed: bool) -> str:
    """``evaluated N, reused N, fetched N, skipped N``, then the skipped models grouped by reason
    (each reason in full when there are only a few; results.md lists every one)."""
    from imnet.zoo.official import group_by_kind

    lines = [f"evaluated {len(summary.evaluated)}, reused {len(summary.reused)}, "
             f"fetched {len(summary.fetched)}, skipped {len(summary.skipped)}"]
    if detailed:
        lines += [f"skipped {s.model}: {s.reason}" for s in summary.skipped]
    else:
        groups = group_by_kind({s.model: s.kind or s.reason for s in summary.skipped})
        for kind, names in groups.items():
            shown = ", ".join(names[:8]) + (f", and {len(names) - 8} more" if len(names) > 8 else "")
            lines.append(f"  skipped {len(names)}, {kind}: {shown}")
    return "\n".join(lines)


# --- train, demo (issue 7) ----------------------------------------------------------------------------


@cli.command(context_settings={"show_default": True})
@click.option("--arch", help="Zoo model to train (`imnet zoo` lists them); taken from the run when resuming.")
@click.option("--data", type=click.Path(path_type=Path), help="Tree prepared by `imnet prep`.")
@click.option("--out", type=click.Path(path_type=Path), help="Run directory [default: runs/ARCH-UTCTIME].")
@click.option("--recipe",
              help="Named recipe or a .yaml/.json file [default: the arch's own: vanillanet_5..10 "
                   "(VanillaNet README), simplenetv1 / simplenetv1-small (SimpleNet README), else classic]. "
                   "Named: classic, classic-cosine, resnet-cifar, torchvision (its new recipe), vanillanet_5..10, "
                   "vanillanet (= vanillanet_5), simplenetv1, simplenetv1-small, simplenetv1-phase2, demo.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
              help="Override one recipe field, e.g. --set epochs=10 --set decay_milestones=5,8 (repeatable).")
@click.option("--epochs", type=int, help="Shortcut for --set epochs=N.")
@click.option("--batch-size", type=int, help="Per-process (per-GPU) batch size; shortcut for --set batch_size=N.")
@click.option("--lr", type=float, help="Absolute learning rate (else lr_base x global batch / lr_base_size).")
@click.option("--aug", type=click.Choice(["classic", "rrc"]), help="Train augmentation (shortcut for --set aug=...).")
@click.option("--img-size", type=int, help="Train/val crop size [default: the model's input size].")
@click.option("--accum-steps", type=int, help="Gradient accumulation steps (shortcut for --set accum_steps=N).")
@click.option("--loader", type=click.Choice(["auto", "dali", "torch"]), default="auto", help="Data loader.")
@click.option("--workers", type=int,
              help="Loader threads/workers per rank [default: this rank's share of the CPUs, capped; "
                   "`imnet info` shows it].")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", help="Where to train.")
@click.option("--amp", type=click.Choice(["auto", "none", "bf16", "fp16"]), default="auto",
              help="Mixed precision (auto: bf16 on GPU, none on CPU).")
@click.option("--channels-last", is_flag=True, help="Use channels_last memory format (faster convs on GPU).")
@click.option("--compile", "compile_", is_flag=True, help="Wrap the model in torch.compile.")
@click.option("--deterministic", is_flag=True, help="Deterministic algorithms (bit-exact resume on CPU).")
@click.option("--seed", type=int, default=0, help="Seed of model init, shuffling, augmentation and mixup.")
@click.option("--resume", type=click.Path(path_type=Path), help="Continue the run in this directory.")
@click.option("--init-from", metavar="official|PATH",
              help="Fine-tune: start from the model's official weights ('official': fetched when not "
                   "cached, see `imnet weights`) or from a checkpoint file or finished run; a "
                   "classifier of another class count than the data's starts fresh.")
@click.option("--stop-after-epochs", type=int,
              help="Stop (resumably, as an interruption would) once this many epochs are complete.")
@click.option("--stop-after-updates", type=int, help="Stop (resumably) after this many optimizer steps.")
@click.option("--show-recipe", is_flag=True,
              help="Print the resolved recipe as YAML, each field with the flag of the source command it "
                   "follows, and exit.")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs still go to stderr).")
def train(arch, data, out, recipe, overrides, epochs, batch_size, lr, aug, img_size, accum_steps, loader,
          workers, device, amp, channels_last, compile_, deterministic, seed, resume, init_from, stop_after_epochs,
          stop_after_updates, show_recipe, no_progress) -> None:
    """Train a zoo model on a prepared tree; prints the run directory.

    \b
    imnet train --arch vanillanet_9 --data /data/imagenet        # VanillaNet-9's README command
    imnet train --arch vanillanet_9 --show-recipe                 # what that runs, flag by flag
    imnet train --arch resnet50 --data /data/imagenet --recipe torchvision
    torchrun --nproc_per_node 8 -m imnet train --arch resnet50 --data /data/imagenet --batch-size 64
    imnet train --resume runs/resnet50-20260101-000000
    imnet train --arch resnet50 --init-from official --data /data/flowers --recipe classic-cosine
    """
    from imnet.train import TrainConfig, load_recipe
    from imnet.train import train as run_training
    from imnet.train.recipes import default_recipe, show_recipe as format_recipe

    shortcuts = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "aug": aug, "img_size": img_size,
                 "accum_steps": accum_steps}
    resolved = load_recipe(recipe or default_recipe(arch), list(overrides))
    resolved = resolved.with_overrides(**{k: v for k, v in shortcuts.items() if v is not None})
    if show_recipe:
        click.echo(format_recipe(resolved, arch), nl=False)
        return
    if resume is not None and (recipe or overrides or any(v is not None for v in shortcuts.values())):
        raise ImnetError(f"--resume {resume}: the run keeps its recipe; recipe options cannot change on resume")
    if resume is not None and init_from is not None:
        raise ImnetError(f"--resume {resume}: a resumed run continues from its own checkpoint; drop --init-from")
    config = TrainConfig(
        arch=arch, data=data, out=out, recipe=resolved, loader=loader, workers=workers, device=device, amp=amp,
        channels_last=channels_last, compile=compile_, deterministic=deterministic, seed=seed, resume=resume,
        init_from=init_from, stop_after_epochs=stop_after_epochs, stop_after_updates=stop_after_updates, progress=not no_progress,
    )
    run_dir = run_training(config)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(str(run_dir))


@cli.command(context_settings={"show_default": True})
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo_out"),
              help="Keeps everything: archives, prepared tree, run, eval results; a re-run reuses what is done.")
@click.option("--arch", default=None, help="Zoo model to train [default: the demo's small CIFAR-style model].")
@click.option("--classes", type=int, default=None, help="Classes of the generated ILSVRC2012 stand-in.")
@click.option("--train-per-class", type=int, default=None, help="Generated train images per class.")
@click.option("--val", "val_images", type=int, default=None, help="Generated val images.")
@click.option("--epochs", type=int, default=None, help="Training epochs.")
@click.option("--img-size", type=int, default=None, help="Model input size (crop) in pixels.")
@click.option("--batch-size", type=int, default=None, help="Training batch size.")
@click.option("--workers", type=int, default=None, help="Loader worker processes.")
@click.option("--loader", type=click.Choice(["auto", "dali", "torch"]), default="auto", help="Data loader.")
@click.option("--threads", type=int, default=1,
              help="torch threads for training and eval (1 is robust on small shared CPUs; 0 = torch's default).")
@click.option("--seed", type=int, default=0, help="Seed of the generated data and of training.")
@click.option("--pack", "use_pack", is_flag=True,
              help="Also pack the prepared tree (`imnet pack`, OUT/pack) and train and evaluate through the pack.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def demo(out, arch, classes, train_per_class, val_images, epochs, img_size, batch_size, workers, loader, threads,
         seed, use_pack, no_progress) -> None:
    """The whole pipeline on generated data, no ImageNet and no network needed.

    Generates fake ILSVRC2012 archives, prepares them (`imnet prep`), trains a small zoo model on CPU
    and evaluates it with 1, 5 and 10 crops and ReaL labels; prints the results table and the plot's path.
    """
    from imnet.demo import DemoConfig, run_demo

    defaults = DemoConfig()
    given = {"arch": arch, "classes": classes, "train_per_class": train_per_class, "val_images": val_images,
             "epochs": epochs, "img_size": img_size, "batch_size": batch_size}
    config = dataclasses.replace(
        defaults, out=out, workers=workers, loader=loader, threads=threads or None, seed=seed,
        progress=not no_progress, pack=use_pack,
        **{k: v for k, v in given.items() if v is not None},
    )
    result = run_demo(config)
    click.echo(result.table)
    click.echo(f"plot: {result.plot}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the group, turning user errors into one line and exit 2."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        # standalone_mode=False returns ctx.exit()'s code instead of exiting: pass it on.
        code = cli.main(args=argv, prog_name="imnet", standalone_mode=False)
    except ImnetError as err:
        if debug:
            raise
        click.echo(f"imnet: error: {err}", err=True)
        sys.exit(getattr(err, "exit_code", 2))
    except click.exceptions.Abort:
        click.echo("imnet: aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        click.echo("imnet: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
