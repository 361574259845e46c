"""``evaluate(...)``: run zoo models over a prepared val split, fill ``predictions.h5``, write reports.

One model at a time: resolve its weights, build it at its own eval config (``--img-size``/``--crop-pct``
override and are recorded), let the loader decode each image once and cut the crops of one pass
(1, 5 or 10; see :mod:`imnet.eval.crops`), run the forward pass (AMP, channels_last, torch.compile
optional), gather the scores of every rank on rank 0 in val order and write the model to the store
atomically. The results tables are then computed from the store alone (:mod:`imnet.eval.report`).

What each model's record says about how it ran (``info`` in the store):

* ``images_per_sec``: steady state, from the end of the first batch's forward pass (the loader's
  start, the first decode, cuDNN's autotuning and compilation all come before) to the end;
  ``startup_s`` is that first stretch, ``images_per_sec_with_startup`` the whole pass. Across ranks:
  the images of all ranks over the slowest rank's time.
* ``compile``: with ``--compile``, dynamo's caches are reset before each model (models of one class
  share a ``forward`` code object, and its recompile limit would silently leave later models eager)
  and the last partial batch is padded to the full batch (one shape, one graph; padded outputs are
  dropped). What dynamo really did is recorded: frames seen and compiled, graphs, and ``ran``
  ("compiled", "partly" when some frames fell back to eager, or "eager").
* ``cudnn_benchmark`` (on for CUDA: shapes are fixed within a model) and ``tf32`` (``--tf32``; off by
  default, so ``--amp off`` is true float32 on Ampere and later GPUs too: torch's own default
  computes cuDNN convolutions in TF32).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
from tqdm import tqdm

from imnet.errors import ImnetError
from imnet.eval.crops import crop_scores, pass_crops
from imnet.eval.distributed import DistContext, gather_objects, gather_rows, init_distributed
from imnet.eval.real import load_real_labels
from imnet.eval.sets import CLEAN_SUFFIX, PROTOCOLS, class_subset, protocol_label, resolve_sets
from imnet.eval.report import ReportFiles, ResultRow, Skipped, results_from_store, write_reports
from imnet.eval.store import (ModelPredictions, is_finished, read_model, remove_stale_temp_files,
                              write_model)

STORE_NAME = "predictions.h5"
STORE_WAIT = timedelta(hours=2)
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class EvalOptions:
    """What ``imnet eval`` was asked to do (the CLI's options, one field each).

    ``archs``: names or shell patterns; empty means every zoo model whose weights resolve.
    ``weights``: a checkpoint file (needs one model), a directory of ``<name>.pth``, or a finished
    ``imnet train`` run directory. ``real_labels``: the ReaL file to score against (already found).
    ``device``: "auto" (CUDA when present), "cpu", "cuda". ``amp``: "bf16", "fp16" or "off".
    ``channels_last`` (default on): measured 1.2-1.5x faster forward on a 2-core CPU for resnet50
    and mobilenet_v3_small (benchmarks/RESULTS.md); the memory format does not change the maths; the
    loader delivers that layout. ``compile_backend``: torch.compile's backend ("inductor"; "eager"
    traces without code generation). ``tf32``: TensorFloat-32 matmuls and convolutions on CUDA.
    ``sets``: the splits and eval sets to score, each model on each (names or aliases, e.g.
    ``("val", "v2", "a", "r", "sketch")``; empty: ``split`` alone); ``argmax``: "subset" (ImageNet-A/-R
    ranked on their classes, the publishers' protocol) or "all" (:mod:`imnet.eval.sets`)."""

    data: Path
    out: Path
    archs: list[str] = field(default_factory=list)
    weights: Path | None = None
    split: str = "val"
    crops: tuple[int, ...] = (1,)
    real_labels: Path | None = None
    loader: str = "auto"
    batch_size: int = 64
    workers: int | None = None
    amp: str = "off"
    channels_last: bool = True  # faster on CPU (oneDNN) and GPU (cuDNN); same predictions
    compile: bool = False
    compile_backend: str = "inductor"
    tf32: bool = False
    limit: int | None = None
    img_size: int | None = None
    crop_pct: float | None = None
    skip_bad: bool = False
    force: bool = False
    device: str = "auto"
    sets: tuple[str, ...] = ()
    argmax: str = "subset"


@dataclass
class EvalSummary:
    """What a run did: result rows (from the store), the models evaluated now, those reused from the
    store, those skipped and why, and where the files are (None on ranks other than 0)."""

    rows: list[ResultRow]
    evaluated: list[str]
    reused: list[str]
    skipped: list[Skipped]
    store: Path
    reports: ReportFiles | None
    fetched: list[str] = field(default_factory=list)  # models whose official weights were fetched now


@dataclass(frozen=True)
class ModelPlan:
    """One model to evaluate and the weights file it resolved to."""

    name: str
    weights: Path
    where: str
    fetched: bool = False  # its official weights were downloaded for this run


# --- choosing the models --------------------------------------------------------------------------

def _run_arch(run_dir: Path) -> str | None:
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    return record.get("arch") if isinstance(record, dict) else None


def plan_models(archs: list[str], weights: Path | None, fetch: bool = False, num_classes: int | None = None
                ) -> tuple[list[ModelPlan], list[Skipped]]:
    """Which models to evaluate with which weights, and which to skip with the reason.

    ``archs`` are names (``timm/...`` pass-throughs too) or shell patterns over the zoo; none means
    every zoo model with official weights or weights found locally (:func:`default_models`), or the
    run's arch when ``weights`` is a training run directory. ``weights`` may be a file (exactly one
    model), a directory of ``<name>.pth`` or a run directory; without it each model's weights are
    looked for where :func:`imnet.zoo.weights.resolve_weights` looks and, with ``fetch``, official
    weights not cached are fetched (:func:`imnet.zoo.weights.resolve_or_fetch`), unless they
    classify another number of classes than ``num_classes`` (the tree's; they could not be evaluated
    on it); a failed fetch skips the model with its reason."""
    from imnet.zoo import get_config, list_models
    from imnet.zoo.weights import resolve_or_fetch

    run_arch = _run_arch(weights) if weights is not None and weights.is_dir() else None
    names: list[str] = []
    for arch in archs:
        matched = list_models(arch) if any(ch in arch for ch in "*?[") else [arch]
        if not matched:
            raise ImnetError(f"--arch {arch!r} matches no zoo model; `imnet zoo` lists them")
        names += [n for n in matched if n not in names]
    if not names:
        names = [run_arch] if run_arch else default_models()
    if weights is not None and not weights.exists():
        raise ImnetError(f"{weights}: weights file or directory not found")
    if weights is not None and weights.is_file() and len(names) != 1:
        raise ImnetError(f"{weights}: one weights file fits one model; name it with --arch")

    plans, skipped = [], []
    for name in names:
        given: Path | None = weights
        if weights is not None and weights.is_dir() and run_arch is None:
            candidates = [weights / f"{name.replace('/', '--')}{s}" for s in (".pth", ".safetensors")]
            given = next((c for c in candidates if c.is_file()), None)
            if given is None:
                skipped.append(Skipped(name, f"no weights found; looked for {candidates[0]}",
                                       kind="not in the --weights folder"))
                continue
        if run_arch is not None and name != run_arch:
            raise ImnetError(f"{weights / 'run.json'}: the run trained {run_arch!r}, not {name!r}")
        found = resolve_or_fetch(name, given, fetch=fetch and given is None and _fits(name, num_classes))
        if found.path is None and found.kind == "not cached" and fetch and not _fits(name, num_classes):
            classes = get_config(name).num_classes
            skipped.append(Skipped(name, f"its official weights classify {classes} classes, the tree has "
                                         f"{num_classes}; not fetched", kind=f"official weights classify {classes} classes"))
        elif found.path is None:
            skipped.append(Skipped(name, found.where, kind=found.kind))
        else:
            plans.append(ModelPlan(name, found.path, found.where, found.fetched))
    return plans, skipped


def _fits(name: str, num_classes: int | None) -> bool:
    """Whether official weights of ``name`` could be evaluated on a tree of ``num_classes`` classes."""
    from imnet.zoo import get_config

    return num_classes is None or get_config(name).num_classes == num_classes


def default_models() -> list[str]:
    """What ``imnet eval`` without ``--arch`` evaluates: every zoo model with official weights, and
    every other one whose weights resolve locally (``$IMNET_WEIGHTS``, a finished run)."""
    from imnet.zoo import get_config, list_models
    from imnet.zoo.weights import resolve_weights

    return [n for n in list_models("*")
            if get_config(n).weights is not None or resolve_weights(n)[0] is not None]


# --- one model ------------------------------------------------------------------------------------

def _count_classes(data: Path, split: str) -> int:
    """Classes of the tree: rows of ``meta/classes.tsv`` (DESIGN.md), else class folders of the split."""
    classes_tsv = data / "meta" / "classes.tsv"
    if classes_tsv.is_file():
        return sum(1 for line in classes_tsv.read_text(encoding="utf-8").splitlines() if line.strip())
    split_dir = data / split
    if not split_dir.is_dir():
        raise ImnetError(f"{data}: no {split}/ folder and no meta/classes.tsv; is it a prepared tree?")
    return sum(1 for p in split_dir.iterdir() if p.is_dir())


def _checkpoint_classes(name: str, weights: Path) -> int | None:
    """The class count of the checkpoint's classifier, or None when the config names no classifier."""
    from imnet.zoo import create_model, get_config
    from imnet.zoo.weights import find_run_checkpoint, read_state_dict

    config = get_config(name)
    if not config.classifier:
        return None
    path = find_run_checkpoint(weights) if weights.is_dir() else weights
    state_dict = read_state_dict(path)
    if config.checkpoint_filter is not None:
        with torch.device("meta"):
            state_dict = config.checkpoint_filter(state_dict, create_model(name))
    head = state_dict.get(f"{config.classifier}.weight")
    return int(head.shape[0]) if head is not None else None


def build_model(name: str, weights: Path, num_classes: int) -> torch.nn.Module:
    """Zoo model ``name`` with ``weights`` loaded strictly, in eval mode, for a tree of
    ``num_classes`` classes. :class:`ImnetError` when the weights classify another number of classes
    (a classifier left randomly initialised would be evaluated silently otherwise), are corrupt, or
    belong to another architecture."""
    from imnet.zoo import create_model, get_config
    from imnet.zoo.weights import load_weights

    head_classes = _checkpoint_classes(name, weights)
    if head_classes is not None and head_classes != num_classes:
        raise ImnetError(f"{weights}: the weights classify {head_classes} classes but the data has "
                         f"{num_classes}; evaluate them on a tree of the same classes")
    model = create_model(name, num_classes=num_classes)
    load_weights(model, get_config(name), weights, download=False)
    return model.eval()


def eval_config(name: str, options: EvalOptions, weights: Path, num_classes: int) -> dict:
    """The eval config of ``name`` under ``options``: crop size, resize size (``round(size /
    crop_pct)``, DESIGN.md), interpolation, mean, std, plus what else decides the predictions (data,
    split, weights, limit). A stored model is reused only when this dict is equal."""
    from imnet.data import eval_resize_size
    from imnet.zoo import get_config

    config = get_config(name)
    if options.img_size is not None and options.img_size < 1:
        raise ImnetError(f"--img-size {options.img_size}: must be at least 1 (pixels of the crop)")
    crop_size = options.img_size or config.input_size[-1]
    crop_pct = options.crop_pct or config.crop_pct
    if not 0 < crop_pct <= 1:
        raise ImnetError(f"--crop-pct {crop_pct}: must be in (0, 1]")
    return {
        "model": name,
        "crop_size": int(crop_size),
        "resize_size": eval_resize_size(int(crop_size), float(crop_pct)),
        "crop_pct": float(crop_pct),
        "interpolation": config.interpolation,
        "mean": list(config.mean),
        "std": list(config.std),
        "overridden": options.img_size is not None or options.crop_pct is not None,
        "num_classes": num_classes,
        "data": str(Path(options.data).resolve()),
        "split": options.split,
        "weights": str(Path(weights).resolve()),
        "limit": options.limit,
    }


def _resolve_device(device: str, ctx_local_rank: int = 0) -> str:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ImnetError("--device cuda: no CUDA GPU is visible")
        return f"cuda:{ctx_local_rank}" if device == "cuda" else device
    return device


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"


@dataclass
class PassTiming:
    """One rank's forward pass: ``images`` scored in ``seconds`` (loader start to the last batch
    done); ``startup_s`` until the first batch's forward was done (None when the shard was empty),
    and the ``steady_images`` after it in ``steady_s``."""

    images: int = 0
    seconds: float = 0.0
    startup_s: float | None = None
    steady_images: int = 0
    steady_s: float = 0.0


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run_forward(model: torch.nn.Module, loader, crop_counts: list[int], device: str, amp: str = "off",
                channels_last: bool = False, progress: bool = True, desc: str = "",
                num_classes: int | None = None, pad_to: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, PassTiming]:
    """Score every batch of ``loader`` with ``model``: returns ``(indices (n,), labels (n,),
    scores (n, len(crop_counts), C) float16, timing)`` for this rank, in loader order.

    Each batch is (B, K, 3, H, W); its B*K crops go through the model in one forward pass and the
    scores of each requested crop count are cut from the same logits (:func:`crop_scores`). A batch
    of fewer than ``pad_to`` images is padded with zeros to ``pad_to`` (a compiled model then sees one
    shape) and the padding's outputs dropped. An empty shard gives ``(0, len(crop_counts),
    num_classes)`` scores, so every rank's rows have the same trailing shape."""
    dev = torch.device(device)
    autocast = (torch.autocast(dev.type, dtype=AMP_DTYPES[amp]) if amp in AMP_DTYPES
                else contextlib.nullcontext())
    all_indices, all_labels, all_scores = [], [], []
    timing = PassTiming()
    start = time.perf_counter()
    first_done = None
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, unit="batch", file=sys.stderr, disable=not progress,
                          dynamic_ncols=True):
            images = batch.images.to(dev, non_blocking=True)
            b, k = images.shape[:2]
            x = images.reshape(b * k, *images.shape[2:])
            if pad_to is not None and b < pad_to:
                x = torch.cat([x, x.new_zeros(((pad_to - b) * k, *x.shape[1:]))])
            if channels_last:  # a no-op when the loader already delivers channels_last
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = model(x)
            logits = logits[:b * k].float().reshape(b, k, -1)
            all_scores.append(torch.stack([crop_scores(logits, c) for c in crop_counts], 1).half())
            all_indices.append(batch.indices.to(torch.int64).cpu())
            all_labels.append(batch.labels.to(torch.int64).cpu())
            timing.images += b
            if first_done is None:
                _sync(dev)
                first_done = time.perf_counter()
                timing.startup_s = first_done - start
            else:
                timing.steady_images += b
    _sync(dev)
    end = time.perf_counter()
    timing.seconds = end - start
    timing.steady_s = end - first_done if first_done is not None else 0.0
    if not all_scores:
        empty = torch.zeros(0, dtype=torch.int64)
        scores = torch.zeros((0, len(crop_counts), num_classes or 0), dtype=torch.float16)
        return empty, empty, scores, timing
    return torch.cat(all_indices), torch.cat(all_labels), torch.cat(all_scores).cpu(), timing


def speed_record(timings: list[PassTiming]) -> dict:
    """Throughput of a pass over all ranks: steady images/s (every rank's images after its first
    batch over the slowest rank's steady time), with start-up, and the start-up itself (slowest)."""
    wall = max(t.seconds for t in timings)
    steady_s = max(t.steady_s for t in timings)
    steady_images = sum(t.steady_images for t in timings)
    images = sum(t.images for t in timings)
    startups = [t.startup_s for t in timings if t.startup_s is not None]
    return {
        "images_per_sec": steady_images / steady_s if steady_images and steady_s > 0 else None,
        "images_per_sec_with_startup": images / wall if images and wall > 0 else None,
        "startup_s": max(startups) if startups else None,
        "seconds": wall,
    }


def _dynamo_counts() -> dict[str, int]:
    from torch._dynamo.utils import counters

    return {"frames": counters["frames"]["total"], "frames_compiled": counters["frames"]["ok"],
            "graphs": counters["stats"]["unique_graphs"]}


def _compile_record(options: "EvalOptions", before: dict[str, int] | None) -> dict:
    """What torch.compile really did for one model (dynamo's counters since its reset)."""
    if not options.compile or before is None:
        return {"requested": False, "ran": "eager"}
    after = _dynamo_counts()
    done = {key: after[key] - before[key] for key in after}
    ran = ("eager" if done["frames_compiled"] == 0 else
           "compiled" if done["frames_compiled"] == done["frames"] else "partly")
    return {"requested": True, "backend": options.compile_backend, **done, "ran": ran}


@contextlib.contextmanager
def numerics(device: str, tf32: bool):
    """cuDNN autotuning on (CUDA), TF32 for matmuls and cuDNN as asked; yields what was set and
    restores the previous switches afterwards. Uses the ``allow_tf32`` switches, which set cuDNN's
    conv and RNN precision together: torch 2.14 refuses to answer ``cudnn.allow_tf32`` (which
    inductor's conv templates ask) once conv and RNN were set apart through ``fp32_precision``."""
    cuda = device.startswith("cuda")
    saved = {"benchmark": torch.backends.cudnn.benchmark}
    for name, flags in (("cudnn", torch.backends.cudnn), ("matmul", torch.backends.cuda.matmul)):
        try:
            saved[name] = flags.allow_tf32
        except RuntimeError:  # someone mixed torch's two TF32 APIs before us: leave it as we find it
            pass
    try:
        torch.backends.cudnn.benchmark = cuda
        torch.backends.cudnn.allow_tf32 = bool(tf32)
        torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
        yield {"cudnn_benchmark": cuda, "tf32": bool(tf32 and cuda)}
    finally:
        torch.backends.cudnn.benchmark = saved["benchmark"]
        if "cudnn" in saved:
            torch.backends.cudnn.allow_tf32 = saved["cudnn"]
        if "matmul" in saved:
            torch.backends.cuda.matmul.allow_tf32 = saved["matmul"]


def evaluate_model(plan: ModelPlan, model: torch.nn.Module, options: EvalOptions, crop_counts: list[int],
                   config: dict, ctx: DistContext, device: str, real_path: Path | None,
                   switches: dict | None = None) -> ModelPredictions | None:
    """Evaluate ``model`` (built by :func:`build_model`) over this rank's shard; on rank 0 return the
    gathered predictions of the whole split (None on other ranks). ``real_path`` is checked against
    the split size before any forward pass, so a bad ReaL file fails fast. Every image of the split
    (of ``--limit``) must come back exactly once, scored or skipped; anything else is an error."""
    from imnet.data import build_eval_loader, read_split
    from imnet.zoo.measure import count_macs, count_params

    # The split's size before --limit: what a ReaL file must match and what "partial" is against.
    n_split = len(read_split(Path(options.data), options.split))
    if real_path is not None:
        load_real_labels(real_path, n_split, int(config["num_classes"]))
    model = model.to(device)
    try:
        macs: int | None = count_macs(model, (3, config["crop_size"], config["crop_size"]))
    except RuntimeError:  # a library model the FLOP counter cannot trace: leave GMACs blank
        macs = None
    params = count_params(model)
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last)
    compile_start = None
    if options.compile:
        torch._dynamo.reset()  # a fresh cache (and recompile budget) for every model
        compile_start = _dynamo_counts()
        model = torch.compile(model, backend=options.compile_backend)
    with build_eval_loader(
        Path(options.data), options.split, crop_size=config["crop_size"], resize_size=config["resize_size"],
        interpolation=config["interpolation"], mean=tuple(config["mean"]), std=tuple(config["std"]),
        crops=pass_crops(crop_counts), batch_size=options.batch_size, workers=options.workers,
        loader=options.loader, device=device, rank=ctx.rank, world_size=ctx.world_size,
        limit=options.limit, skip_bad=options.skip_bad, channels_last=options.channels_last,
    ) as loader:
        indices, labels, scores, timing = run_forward(
            model, loader, crop_counts, device, options.amp, options.channels_last, progress=ctx.is_main,
            desc=f"eval {plan.name} ({pass_crops(crop_counts)}-crop pass)", num_classes=config["num_classes"],
            pad_to=options.batch_size if options.compile else None)
    compiled = ctx.gather_objects(_compile_record(options, compile_start))
    skipped_images = gather_objects(ctx, list(getattr(loader, "skipped", [])))
    timings = ctx.gather_objects(timing)
    gathered = gather_rows(ctx, indices, labels, scores)
    if gathered is None:
        return None
    indices, labels, scores = gathered
    n_done = int(indices.shape[0])
    expected = min(n_split, options.limit) if options.limit else n_split
    _check_every_image_once(plan.name, indices, skipped_images, expected)
    files = [loader.files[int(i)] for i in indices]
    return ModelPredictions(
        name=plan.name, files=files, labels=labels.numpy(), indices=indices.numpy(),
        logits={c: scores[:, j].numpy() for j, c in enumerate(crop_counts)},
        config=config,
        info={
            "param_count": params / 1e6, "gmacs": None if macs is None else macs / 1e9,
            **speed_record(timings), "pass_crops": pass_crops(crop_counts), "loader": getattr(loader, "name", ""),
            "loader_workers": getattr(loader, "workers", None),
            "amp": options.amp, "device": _device_name(device), "world_size": ctx.world_size,
            "batch_size": options.batch_size, "channels_last": options.channels_last,
            "compile": compiled[0], "compile_per_rank": compiled if ctx.world_size > 1 else None,
            **(switches or {}), "n_split": n_split, "limit": options.limit,
            "partial": n_done < n_split,
            "skipped_images": [[int(i), str(f), str(r)] for i, f, r in skipped_images],
            "weights": str(plan.weights), "weights_from": plan.where,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


def _check_every_image_once(name: str, indices: torch.Tensor, skipped: list, expected: int) -> None:
    """Every position 0..expected-1 scored or skipped, once: whatever a loader skipped and however
    the shards fell (empty ones included), nothing is counted twice or lost."""
    scored = indices.tolist()
    skipped_positions = [int(position) for position, _, _ in skipped]
    seen = scored + skipped_positions
    if len(seen) != len(set(seen)) or set(seen) != set(range(expected)):
        missing = sorted(set(range(expected)) - set(seen))[:5]
        twice = sorted({p for p in seen if seen.count(p) > 1})[:5] if len(seen) != len(set(seen)) else []
        raise RuntimeError(f"{name}: {len(scored)} images scored + {len(skipped_positions)} skipped, "
                           f"expected each of {expected} once (missing {missing}, twice {twice})")


# --- the run --------------------------------------------------------------------------------------

def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ImnetError(f"{out}: --out is not a writable folder ({err.strerror or err})") from None


def evaluate(options: EvalOptions) -> EvalSummary:
    """Evaluate the models ``options`` names (or every zoo model with weights) and write
    ``predictions.h5``, ``results.csv/json/md`` and ``accuracy_vs_speed.png`` into ``options.out``.

    A model already in the store with the same eval config and crop counts is reused (``force``
    redoes it). Under torchrun every rank evaluates its shard and rank 0 writes. Returns the
    :class:`EvalSummary`; :class:`ImnetError` on user errors (missing tree, bad weights, bad ReaL
    file, unwritable ``out``, corrupt image without ``skip_bad``)."""
    crop_counts = sorted(set(options.crops))
    pass_crops(crop_counts)  # validates
    data, out = Path(options.data), Path(options.out)
    if not data.is_dir():
        raise ImnetError(f"{data}: --data folder not found; give a tree prepared by `imnet prep`")
    if options.argmax not in PROTOCOLS:
        raise ImnetError(f"--argmax {options.argmax}: expected {' or '.join(PROTOCOLS)}")
    sets = resolve_sets(options.sets or (options.split,))
    for name in sets:
        _check_set(data, name)
    if options.limit is not None and options.limit < 1:
        raise ImnetError(f"--limit {options.limit}: must be at least 1")
    if options.amp not in ("off", *AMP_DTYPES):
        raise ImnetError(f"--amp {options.amp}: expected bf16, fp16 or off")
    store = out / STORE_NAME
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _resolve_device(options.device, local_rank)
    ctx = init_distributed(device)
    try:
        with numerics(device, options.tf32) as switches:
            return _evaluate_models(options, ctx, device, crop_counts, data, out, store, switches, sets)
    finally:
        ctx.close()


def _check_set(data: Path, name: str) -> None:
    """Refuse, before any model runs, a split or eval set the tree does not have ready, saying why."""
    from imnet.data.filelist import EVAL_SETS, unfinished_prep
    from imnet.pack.layout import PackLayout, is_pack, read_pack_json

    file_list = data / "meta" / f"{name}.txt"
    if name in EVAL_SETS and is_pack(data):
        trees = {(split.get("source") or {}).get("path") for split in read_pack_json(PackLayout(data))["splits"].values()
                 if (split.get("source") or {}).get("kind") == "tree"} - {None}
        where = f"the tree it was packed from: --data {sorted(trees)[0]}" if trees else "a prepared tree (--data TREE)"
        raise ImnetError(f"{data}: {EVAL_SETS[name].title} is not in this pack (a pack holds train and val only); "
                         f"evaluate the eval sets on {where}")
    if name in EVAL_SETS:
        # An interrupted prep may have left the list without the record: only a complete set is scored.
        unfinished = unfinished_prep(data, name, check_lock=False)
        if unfinished:
            raise ImnetError(f"{file_list}: {unfinished}")
    if file_list.is_file():
        return
    why = unfinished_prep(data, name)
    if name in EVAL_SETS:
        spec = EVAL_SETS[name]
        raise ImnetError(f"{file_list}: {spec.title} is not prepared in {data}; " + (why or (
            f"put {spec.archive} ({spec.source}) in a folder and run `imnet prep --src FOLDER --dst {data} "
            f"--only {name}`")))
    if (data / name).is_dir():
        raise ImnetError(f"{file_list}: no file list; " + (why or (
            f"{data} looks like an ImageFolder tree: write its manifests with `imnet verify --data {data} "
            f"--write-manifests`")))


def _evaluate_models(options: EvalOptions, ctx: DistContext, device: str, crop_counts: list[int],
                     data: Path, out: Path, store: Path, switches: dict | None = None,
                     sets: list[str] | None = None) -> EvalSummary:
    """The body of :func:`evaluate` inside its process group: plan, then for each model evaluate (or
    reuse) each set in turn, the model built once; then report."""
    sets = sets or [options.split]
    if ctx.is_main:
        _prepare_out(out)
        remove_stale_temp_files(store)
    ctx.barrier()
    num_classes = _count_classes(data, sets[0])
    weights = Path(options.weights) if options.weights else None
    # Local rank 0 fetches missing official weights first; the other ranks then find them cached.
    if ctx.local_rank == 0:
        plans, skipped = plan_models(list(options.archs), weights, fetch=True, num_classes=num_classes)
    ctx.barrier()
    if ctx.local_rank != 0:
        plans, skipped = plan_models(list(options.archs), weights)
    if not plans:
        raise ImnetError("no model to evaluate: " + "; ".join(f"{s.model}: {s.reason}" for s in skipped[:5]))
    subsets = {name: class_subset(data, name) for name in sets}

    evaluated, reused = [], []
    for plan in plans:
        model = None
        unusable = False
        for name in sets:
            set_options = dataclasses.replace(options, split=name)
            config = eval_config(plan.name, set_options, plan.weights, num_classes)
            counts = list(crop_counts)
            if not options.force:
                if is_finished(store, plan.name, config, counts):
                    continue
                previous = read_model(store, plan.name, name)
                if previous is not None and previous.config == json.loads(json.dumps(config)):
                    # Keep the crop counts stored before: one pass serves them all.
                    counts = sorted(set(counts) | set(previous.logits))
            if model is None:
                try:
                    model = build_model(plan.name, plan.weights, num_classes)
                except ImnetError as err:
                    if options.archs:  # asked for by name: the user must hear it
                        raise
                    # A whole-zoo run goes on: weights found for this model but unusable here.
                    skipped.append(Skipped(plan.name, f"weights do not load: {err}", kind="weights do not load"))
                    unusable = True
                    break
            real = options.real_labels if name == "val" else None
            preds = evaluate_model(plan, model, set_options, counts, config, ctx, device, real, switches)
            if ctx.is_main:
                preds.info.update(set=name, class_subset=subsets[name],
                                  protocol=protocol_label(num_classes, subsets[name], "subset"))
                write_model(store, preds)
            # The others wait for rank 0's write over gloo with a long timeout: appending costs the
            # model's size, but replacing a model rebuilds the store, which can outlast NCCL's timeout.
            ctx.barrier(timeout=STORE_WAIT)
        if not unusable:
            # evaluated: on at least one set now; reused: every set came from the store
            (evaluated if model is not None else reused).append(plan.name)
        del model

    if not evaluated and not reused:
        raise ImnetError("no model was evaluated: " + "; ".join(f"{s.model}: {s.reason}" for s in skipped[:5]))
    reports = None
    rows: list[ResultRow] = []
    if ctx.is_main:
        names = set(evaluated) | set(reused)
        wanted = set(sets) | {f"{name}{CLEAN_SUFFIX}" for name in sets if "val" in sets}
        rows = [r for r in results_from_store(store, options.real_labels, options.argmax)
                if r.model in names and r.crops in crop_counts and r.set in wanted]
        reports = write_reports(rows, out, skipped, extra={"store": str(store), "split": sets[0], "sets": sets,
                                                           "argmax": options.argmax, "data": str(data)})
    return EvalSummary(rows, evaluated, reused, skipped, store, reports,
                       fetched=[p.name for p in plans if p.fetched])


def report_from_store(store: Path, out: Path | None = None, real_labels: Path | None = None,
                      argmax: str = "subset") -> EvalSummary:
    """``imnet eval --from-store``: every metric of every model and set in ``store`` recomputed from
    its logits (no model, no GPU), ImageNet-A/-R under the ``argmax`` protocol; reports written into
    ``out`` (default: the store's folder)."""
    store = Path(store)
    out = Path(out) if out is not None else store.parent
    rows = results_from_store(store, real_labels, argmax)
    _prepare_out(out)
    reports = write_reports(rows, out, extra={"store": str(store), "argmax": argmax})
    return EvalSummary(rows, [], sorted({r.model for r in rows}), [], store, reports)
