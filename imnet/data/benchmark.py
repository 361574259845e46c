"""Loader throughput: imnet's DALI-CPU and torch loaders against the loader a user would write.

The baseline is torchvision ``ImageFolder`` + ``transforms`` (Resize, RandomCrop/CenterCrop, flip,
ToTensor, Normalize) + ``DataLoader`` with the same worker count and **stock Pillow**, measured in
the same run over the same tree. Each pass is timed by the wall clock and by the CPU time of all
the loader's processes and threads (:func:`tree_cpu_seconds`): images per CPU-second is the
per-core figure, steady where wall-clock rates swing with the machine's other load. PIL cannot be swapped inside one process, so the baseline runs in a
subprocess (:class:`BaselineProcess`) whose ``sys.path`` starts with a stock Pillow folder
(``.venv/stock-pillow``, made by scripts/bootstrap.sh, or ``$IMNET_STOCK_PILLOW``); that subprocess
reports which PIL it really imported and the baseline's label names it. Without such a folder the
baseline falls back to the installed PIL (often Pillow-SIMD) and the report says so in a warning.
The decode-path table compares decoders directly (installed PIL).

``write_bench_tree`` makes a prepared-tree-shaped folder of ImageNet-sized JPEGs (400x350, ~110 KB:
crops of a real photo, rescaled, with luminance noise, quality 98), ``run_loader_benchmark`` measures.
"""
from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image, features
from tqdm import tqdm

BENCH_SIZE = (400, 350)  # width, height: about ImageNet's mean image size
BENCH_QUALITY = 98
BENCH_NOISE = 8.0
STOCK_PILLOW_ENV = "IMNET_STOCK_PILLOW"
BASELINE = "baseline (ImageFolder+transforms)"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _photo() -> Image.Image:
    """A real photograph shipped with matplotlib (Grace Hopper, 512x600), as the image source."""
    import matplotlib

    return Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")


def write_bench_tree(root: Path, images: int = 600, classes: int = 10, seed: int = 0) -> Path:
    """Write ``images`` JPEGs into ``root/{train,val}/<wnid>/`` with ``root/meta/{train,val}.txt``.

    Both splits list the same files (train and val pipelines read the same bytes). Reuses a complete
    tree (``meta/val.txt`` is written last, through a temp file). Returns ``root``.
    """
    root = Path(root)
    if (root / "meta" / "val.txt").is_file():
        return root
    rng = np.random.default_rng(seed)
    photo = _photo()
    width, height = BENCH_SIZE
    lines = []
    for number in tqdm(range(images), desc="bench tree", unit="img", file=sys.stderr):
        class_index = number % classes
        wnid = f"n{class_index:08d}"
        crop_w, crop_h = int(rng.integers(150, photo.width)), int(rng.integers(150, photo.height))
        left, top = int(rng.integers(0, photo.width - crop_w + 1)), int(rng.integers(0, photo.height - crop_h + 1))
        pixels = np.asarray(photo.crop((left, top, left + crop_w, top + crop_h))
                            .resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
        pixels = pixels + rng.normal(0, BENCH_NOISE, (height, width, 1))
        encoded = io.BytesIO()
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(encoded, "JPEG", quality=BENCH_QUALITY)
        name = f"{wnid}/{wnid}_{number}.JPEG"
        for split in ("train", "val"):
            (root / split / wnid).mkdir(parents=True, exist_ok=True)
            (root / split / name).write_bytes(encoded.getvalue())
        lines.append(f"{name} {class_index}\n")
    (root / "meta").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        partial = root / "meta" / f".{split}.txt.partial"
        partial.write_text("".join(lines), encoding="utf-8")
        partial.rename(root / "meta" / f"{split}.txt")
    return root


def pil_flavour() -> str:
    """Which PIL is active: "Pillow-SIMD <version>" or "Pillow <version>", and its JPEG library."""
    import PIL

    name = "Pillow-SIMD" if ".post" in PIL.__version__ else "Pillow"
    turbo = "libjpeg-turbo" if features.check_feature("libjpeg_turbo") else "libjpeg"
    return f"{name} {PIL.__version__} ({turbo})"


def stock_pillow_candidates(path: str | os.PathLike | None = None) -> list[Path]:
    """Where to look for a stock Pillow (a folder holding ``PIL/``), in order: ``path``, else
    ``$IMNET_STOCK_PILLOW``, else ``<venv>/stock-pillow`` (``sys.prefix``) and the repository's
    ``.venv/stock-pillow`` (what scripts/bootstrap.sh installs)."""
    chosen = path or os.environ.get(STOCK_PILLOW_ENV)
    if chosen:
        return [Path(chosen)]
    candidates = [Path(sys.prefix) / "stock-pillow",
                  Path(__file__).resolve().parents[2] / ".venv" / "stock-pillow"]
    return list(dict.fromkeys(c.resolve() for c in candidates))


def find_stock_pillow(path: str | os.PathLike | None = None) -> Path | None:
    """The first of :func:`stock_pillow_candidates` that holds a PIL package, else None."""
    for candidate in stock_pillow_candidates(path):
        if (candidate / "PIL" / "__init__.py").is_file():
            return candidate.resolve()
    return None


def tree_cpu_seconds(root: int | None = None, exclude: Iterable[int] = ()) -> float | None:
    """User + system CPU seconds used so far by process ``root`` (default: this one), all its
    threads, and every living descendant process (loader workers), leaving out the subtrees of the
    pids in ``exclude``. Read from /proc; None where there is no /proc (then only wall-clock rates
    are reported). Descendants that already exited are not counted: loaders here keep their
    workers alive between passes (persistent workers)."""
    root = os.getpid() if root is None else root
    tick = os.sysconf("SC_CLK_TCK")
    parents, seconds = {}, {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        parents[int(name)] = int(fields[1])
        seconds[int(name)] = (int(fields[11]) + int(fields[12])) / tick
    if root not in seconds:
        return None
    excluded, total = set(exclude), 0.0
    for pid, used in seconds.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor not in excluded and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root and pid not in excluded:
            total += used
    return total


_REPLY = "@imnet-baseline "  # prefix of the subprocess's replies on stdout; other lines are ignored


def baseline_server() -> None:
    """Body of the baseline subprocess (``sys.argv[1]``: JSON of root, pipeline, workers,
    batch_size). Builds the baseline loader, replies with the PIL it imported, then answers each
    ``pass`` line on stdin with the images/s of one full pass. Anything else printed goes to stderr."""
    import PIL

    args = json.loads(sys.argv[1])
    replies, sys.stdout = sys.stdout, sys.stderr

    def reply(**message) -> None:
        replies.write(_REPLY + json.dumps(message) + "\n")
        replies.flush()

    loader = _baseline(Path(args["root"]), args["pipeline"], args["workers"], args["batch_size"])
    reply(version=PIL.__version__, file=str(Path(PIL.__file__).resolve()), flavour=pil_flavour())
    for line in sys.stdin:
        if line.strip() != "pass":
            break
        rate, cpu_rate = _one_pass(loader)
        reply(rate=rate, cpu_rate=cpu_rate)


class BaselineProcess:
    """The baseline loader in a subprocess whose ``sys.path`` starts with ``stock`` (a folder with a
    stock Pillow; None: the installed PIL). Verifies the PIL it got: with ``stock``, it must come from
    that folder and carry no ".post" suffix (Pillow-SIMD's mark). ``label`` names it;
    ``timed_pass()`` returns the images/s and images per CPU-second of one pass, made in the
    subprocess."""

    def __init__(self, root: Path, pipeline: str, workers: int, batch_size: int,
                 stock: Path | None = None):
        env = dict(os.environ)
        if stock is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(stock)] + [p for p in [env.get("PYTHONPATH")] if p])
        args = json.dumps({"root": str(root), "pipeline": pipeline, "workers": workers,
                           "batch_size": batch_size})
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from imnet.data.benchmark import baseline_server; baseline_server()",
             args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        try:
            hello = self._receive()
            self.pil_version, self.pil_file, self.flavour = hello["version"], hello["file"], hello["flavour"]
            self.stock = ".post" not in self.pil_version
            if stock is not None and not (self.stock and Path(self.pil_file).is_relative_to(stock)):
                raise RuntimeError(f"baseline subprocess imported PIL {self.pil_version} from "
                                   f"{self.pil_file}, not the stock Pillow in {stock}")
        except BaseException:
            self.close()
            raise
        name, version = self.flavour.split(" (")[0].rsplit(" ", 1)
        self.label = f"{BASELINE[:-1]}, {'stock ' if self.stock else ''}{name} {version})"

    def _receive(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(_REPLY):
                return json.loads(line[len(_REPLY):])
        raise RuntimeError(f"baseline subprocess exited with status {self.process.wait()} "
                           "(its errors are on stderr above)")

    def timed_pass(self) -> tuple[float, float | None]:
        """(images/s, images per CPU-second of the subprocess and its workers) of one pass."""
        try:
            self.process.stdin.write("pass\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it has exited: _receive says so
        reply = self._receive()
        return reply["rate"], reply.get("cpu_rate")

    def close(self) -> None:
        if self.process.poll() is None:
            try:  # an explicit "exit": loader workers forked later in this process inherit the
                # pipe, so closing it here would not give the subprocess its end of input
                self.process.stdin.write("exit\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


@dataclass
class Measurement:
    """One loader on one pipeline ("train"/"eval") with ``workers``, over repeats: images/s
    (wall clock) and images per CPU-second (all its processes and threads: the per-core figure)."""

    loader: str
    pipeline: str
    workers: int
    rates: list[float] = field(default_factory=list)
    cpu_rates: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu_rates) if self.cpu_rates else None


def _baseline(root: Path, pipeline: str, workers: int, batch_size: int) -> Iterable:
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    if pipeline == "train":
        recipe = [T.Resize(256), T.RandomCrop(224), T.RandomHorizontalFlip()]
    else:
        recipe = [T.Resize(256), T.CenterCrop(224)]
    dataset = ImageFolder(str(root / pipeline.replace("eval", "val")),
                          transform=T.Compose(recipe + [T.ToTensor(), T.Normalize(MEAN, STD)]))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=pipeline == "train",
                                       num_workers=workers, persistent_workers=workers > 0)


def _imnet(root: Path, pipeline: str, workers: int, batch_size: int, backend: str) -> Iterable:
    from imnet.data import build_eval_loader, build_train_loader

    if pipeline == "train":
        return build_train_loader(root, mean=MEAN, std=STD, batch_size=batch_size, workers=workers,
                                  loader=backend)
    # persistent workers, as the baseline's: a timed pass measures decoding, not worker start-up
    return build_eval_loader(root, crop_size=224, resize_size=256, mean=MEAN, std=STD,
                             batch_size=batch_size, workers=workers, loader=backend, persistent_workers=True)


LOADER_FACTORIES: dict[str, Callable[[Path, str, int, int], Iterable]] = {
    BASELINE: _baseline,  # run_loader_benchmark runs it in a BaselineProcess
    "imnet torch": lambda r, p, w, b: _imnet(r, p, w, b, "torch"),
    "imnet dali-cpu": lambda r, p, w, b: _imnet(r, p, w, b, "dali"),
}


def _one_pass(loader: Iterable, exclude: Iterable[int] = ()) -> tuple[float, float | None]:
    """(images/s, images per CPU-second) of one full pass over ``loader``; the CPU time is this
    process's and its workers', leaving out the process trees in ``exclude`` (the baseline
    subprocesses, idle meanwhile). A :class:`BaselineProcess` measures its own pass."""
    if isinstance(loader, BaselineProcess):
        return loader.timed_pass()
    cpu_before = tree_cpu_seconds(exclude=exclude)
    count, start = 0, time.perf_counter()
    for batch in loader:
        count += len(batch[0])
    wall = time.perf_counter() - start
    cpu_after = tree_cpu_seconds(exclude=exclude)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return count / wall, (count / cpu if cpu else None)


def run_loader_benchmark(root: Path, workers: Iterable[int] = (1, 2), repeats: int = 3,
                         batch_size: int = 64, pipelines: Iterable[str] = ("train", "eval"),
                         loaders: Iterable[str] | None = None,
                         stock_pillow: Path | None = None) -> list[Measurement]:
    """Measure every loader x pipeline x worker count on the tree at ``root``: after one warm-up
    pass each (workers / pipelines started), ``repeats`` rounds in which every loader of the group
    makes one timed pass in turn, so background load on a shared machine hits all of them alike.
    The baseline runs in a :class:`BaselineProcess` on the stock Pillow folder ``stock_pillow``
    (None: the installed PIL); its measurements carry the label naming that PIL."""
    names = list(loaders or LOADER_FACTORIES)
    results = []
    groups = [(pipeline, count) for pipeline in pipelines for count in workers]
    progress = tqdm(total=len(groups) * len(names) * (repeats + 1), desc="loader bench", unit="pass",
                    file=sys.stderr)
    for pipeline, count in groups:
        built = {}
        try:
            for name in names:
                built[name] = (BaselineProcess(Path(root), pipeline, count, batch_size, stock_pillow)
                               if name == BASELINE else
                               LOADER_FACTORIES[name](Path(root), pipeline, count, batch_size))
        except BaseException:
            for loader in built.values():
                if hasattr(loader, "close"):
                    loader.close()
            raise
        measured = {name: Measurement(getattr(loader, "label", name), pipeline, count)
                    for name, loader in built.items()}
        baselines = [loader.process.pid for loader in built.values()
                     if isinstance(loader, BaselineProcess)]
        for round_number in range(repeats + 1):
            for name, loader in built.items():
                rate, cpu_rate = _one_pass(loader, exclude=baselines)
                if round_number:  # round 0 is the warm-up
                    measured[name].rates.append(rate)
                    if cpu_rate is not None:
                        measured[name].cpu_rates.append(cpu_rate)
                progress.update()
        for loader in built.values():
            if hasattr(loader, "close"):
                loader.close()
        results += measured.values()
    progress.close()
    return results


def format_loader_table(results: list[Measurement]) -> str:
    """A markdown table: median images/s, median images per CPU-second (per core), and each one's
    ratio to the baseline of the same row group."""
    baselines = {(m.pipeline, m.workers): m for m in results if m.loader.startswith("baseline")}

    def ratio(value: float | None, base: float | None) -> str:
        return f"{value / base:.2f}" if value and base else "-"

    lines = ["| pipeline | workers | loader | images/s (median) | min-max | x baseline "
             "| images per CPU-s (median) | x baseline per core |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in results:
        base = baselines.get((m.pipeline, m.workers))
        cpu = f"{m.cpu_median:.0f}" if m.cpu_median else "-"
        lines.append(f"| {m.pipeline} | {m.workers} | {m.loader} | {m.median:.0f} | "
                     f"{min(m.rates):.0f}-{max(m.rates):.0f} | {ratio(m.median, base and base.median)} | "
                     f"{cpu} | {ratio(m.cpu_median, base and base.cpu_median)} |")
    return "\n".join(lines)


def run_decode_benchmark(root: Path, images: int = 200, repeats: int = 3) -> dict[str, float]:
    """Single-thread images/s of decode + resize-shorter-to-256 paths over the tree's first images:
    PIL (as imnet's torch loader does it, with draft), PIL without draft, torchvision.io.decode_jpeg
    + tensor resize (antialiased bilinear). Median of ``repeats``."""
    import torchvision.io
    import torchvision.transforms.functional as TF

    from imnet.data.decode import decode_resized
    from imnet.data.filelist import read_split

    split = read_split(Path(root), "val", limit=images)
    paths = [split.path(i) for i in range(len(split))]

    def torchvision_io(path: Path) -> torch.Tensor:
        data = torchvision.io.read_file(str(path))
        image = torchvision.io.decode_jpeg(data, mode=torchvision.io.ImageReadMode.RGB)
        return TF.resize(image, 256, antialias=True)

    paths_fns = {
        "PIL decode + resize, draft where safe (imnet torch)": lambda p: decode_resized(p, 256),
        "PIL decode + resize, no draft": lambda p: decode_resized(p, 256, use_draft=False),
        "torchvision.io.decode_jpeg + tensor resize": torchvision_io,
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rates = {}
        for name, decode in paths_fns.items():
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                for path in paths:
                    decode(path)
                runs.append(len(paths) / (time.perf_counter() - start))
            rates[name] = statistics.median(runs)
    finally:
        torch.set_num_threads(threads)
    return rates


def loader_report(root: Path, images: int = 600, workers: Iterable[int] = (1, 2), repeats: int = 3,
                  batch_size: int = 64, pipelines: Iterable[str] = ("train", "eval"),
                  decode: bool = True, stock_pillow: str | os.PathLike | None = None) -> str:
    """Make (or reuse) the bench tree at ``root`` and return the markdown report: the environment,
    the decode-path table (with ``decode``) and the loader table. The baseline runs on the stock
    Pillow found by :func:`find_stock_pillow` (``stock_pillow``, ``$IMNET_STOCK_PILLOW``,
    ``.venv/stock-pillow``); without one, on the installed PIL, with a warning in the report."""
    import torchvision

    stock = find_stock_pillow(stock_pillow)
    warning = []
    if stock is None:
        looked = ", ".join(str(c) for c in stock_pillow_candidates(stock_pillow))
        warning = [f"**WARNING: no stock Pillow found (looked in {looked}); the baseline runs on the "
                   f"installed {pil_flavour()}, NOT stock Pillow. Run scripts/bootstrap.sh or set "
                   f"{STOCK_PILLOW_ENV} to a folder holding PIL/.**", ""]
        print(warning[0].strip("*"), file=sys.stderr)
    root = write_bench_tree(Path(root), images=images)
    sizes = [path.stat().st_size for path in sorted((root / "val").rglob("*.JPEG"))]
    lines = [f"tree: {root} ({len(sizes)} JPEGs, {BENCH_SIZE[0]}x{BENCH_SIZE[1]}, "
             f"mean {statistics.mean(sizes) / 1e3:.0f} KB); PIL: {pil_flavour()} (imnet loaders, "
             f"decode table); baseline PIL: {'installed' if stock is None else stock}; "
             f"torch {torch.__version__}, torchvision {torchvision.__version__}; "
             f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at start)", "", *warning]
    if decode:
        lines += ["| decode + resize to 256, one thread | images/s (median) |", "| --- | --- |"]
        lines += [f"| {name} | {rate:.0f} |" for name, rate in run_decode_benchmark(root).items()]
        lines.append("")
    results = run_loader_benchmark(root, workers=workers, repeats=repeats, batch_size=batch_size,
                                   pipelines=pipelines, stock_pillow=stock)
    lines.append(format_loader_table(results))
    return "\n".join(lines)
