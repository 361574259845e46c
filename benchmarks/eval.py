"""Benchmark of ``imnet eval``'s loop: images/s of a full eval (decode + crops + forward) against

* the model's pure forward throughput on the same device and batch (synthetic input, no data), and
* a timm ``validate.py``-style loop (torchvision ``ImageFolder`` + ``Resize``/``CenterCrop``/``TenCrop``/
  ``ToTensor``/``Normalize`` in a ``DataLoader``, model forward, top-k per batch),

for each model and crop count, measured interleaved in the same run (median of ``--repeats``), in
steady state (after the first batch's forward pass, so start-up is left out of both loops). The
data are generated JPEGs of ImageNet's typical size (500x375 by default, ``imnet.testing``); the
weights are random (speed does not depend on them). Goals: on CPU, imnet eval >= 1.2x the timm-style
loop; on a GPU, imnet eval >= 0.9x the pure forward throughput.

    python benchmarks/eval.py                          # resnet50 + mobilenet_v3_small, 1 and 10 crops
    python benchmarks/eval.py --models resnet50 --crops 1 --images 512 --batch-size 64 --amp bf16  # GPU
    python benchmarks/eval.py --timm-channels-last       # both loops in channels_last (same format)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision.datasets as tvd
import torchvision.transforms as T
from torch.utils.data import DataLoader

from imnet.data import build_eval_loader, eval_resize_size, loader_resources
from imnet.eval.runner import AMP_DTYPES, numerics, run_forward
from imnet.testing import prepared_tree
from imnet.zoo import create_model, get_config

INTERPOLATION = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
                 "nearest": T.InterpolationMode.NEAREST}


def _autocast(device: str, amp: str):
    return torch.autocast(torch.device(device).type, dtype=AMP_DTYPES.get(amp, torch.bfloat16),
                          enabled=amp in AMP_DTYPES)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def pure_forward(model, device: str, batch: int, crops: int, size: int, amp: str, channels_last: bool,
                 images: int) -> float:
    """Images/s of the model alone on synthetic input: batches of ``batch`` images x ``crops`` crops."""
    x = torch.randn(batch * crops, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    steps = max(1, -(-images // batch))
    with torch.inference_mode(), _autocast(device, amp):
        model(x)  # warm-up (cuDNN autotune, allocator)
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        _sync(device)
    return steps * batch / (time.perf_counter() - start)


class SteadyClock:
    """Wraps a loader and notes when the consumer asks for its second batch, i.e. when the first
    batch's forward pass is done (timm's loop syncs on .item(), imnet's on the first batch), so a
    loop's steady-state speed leaves out the start-up (workers forking, DALI building its pipeline,
    the first decode, cuDNN autotuning), which a 50,000-image eval pays once but a benchmark of a
    few batches would mostly measure. The same rule as ``imnet eval``'s ``images_per_sec``."""

    def __init__(self, loader) -> None:
        self.loader = loader
        self.first_at: float | None = None
        self.first_images = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for number, batch in enumerate(self.loader):
            yield batch
            if number == 0:
                self.first_at = time.perf_counter()
                self.first_images = len(batch[1]) if isinstance(batch, (tuple, list)) else len(batch.labels)

    def rate(self, images: int, end: float) -> float:
        """Images/s after the first batch, to ``end`` (nan with a single batch: no steady state)."""
        if self.first_at is None or images <= self.first_images:
            return float("nan")
        return (images - self.first_images) / (end - self.first_at)


def imnet_eval(model, data: Path, cfg: dict, crops: int, args) -> float:
    """Steady images/s of imnet eval's own loop (:func:`imnet.eval.runner.run_forward`) over the
    imnet loader."""
    loader = build_eval_loader(data, "val", crops=crops, batch_size=args.batch_size, workers=args.workers,
                               loader=args.loader, device=args.device, channels_last=args.channels_last, **cfg)
    try:
        _, _, _, timing = run_forward(model, loader, [crops], args.device, args.amp, args.channels_last,
                                      progress=False, num_classes=8)
    finally:
        loader.close()
    return timing.steady_images / timing.steady_s if timing.steady_images else float("nan")


def _ten_crop_tensor(normalize):
    def stack(views):
        return torch.stack([normalize(v) for v in views])
    return stack


def timm_style(model, data: Path, cfg: dict, crops: int, args) -> float:
    """Images/s of a timm ``validate.py``-style loop: torchvision ImageFolder + transforms in a
    DataLoader (same workers, batch and AMP; NCHW as timm's default unless --timm-channels-last),
    forward, top-1/top-5 per batch."""
    normalize = T.Compose([T.ToTensor(), T.Normalize(cfg["mean"], cfg["std"])])
    resize = T.Resize(cfg["resize_size"], interpolation=INTERPOLATION[cfg["interpolation"]])
    if crops == 1:
        transform = T.Compose([resize, T.CenterCrop(cfg["crop_size"]), normalize])
    else:
        cut = T.TenCrop(cfg["crop_size"]) if crops == 10 else T.FiveCrop(cfg["crop_size"])
        transform = T.Compose([resize, cut, _ten_crop_tensor(normalize)])
    dataset = tvd.ImageFolder(str(data / "val"), transform=transform)
    loader = SteadyClock(DataLoader(dataset, batch_size=args.batch_size, shuffle=False,
                                    num_workers=args.workers, pin_memory=args.device.startswith("cuda")))
    n = 0
    with torch.no_grad():
        for images, target in loader:
            images = images.to(args.device, non_blocking=True)
            target = target.to(args.device, non_blocking=True)
            if crops > 1:
                images = images.flatten(0, 1)
            if args.timm_channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with _autocast(args.device, args.amp):
                output = model(images)
            if crops > 1:
                output = output.softmax(-1).reshape(target.shape[0], crops, -1).mean(1)
            top5 = output.topk(min(5, output.shape[1]), 1).indices
            (top5 == target[:, None]).any(1).float().sum().item()  # timm's accuracy() syncs too
            n += target.shape[0]
    _sync(args.device)
    return loader.rate(n, time.perf_counter())


def _ratio(a: float, b: float) -> float:
    return a / b if b and a == a and b == b else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,mobilenet_v3_small", help="comma-separated zoo names")
    parser.add_argument("--crops", type=int, nargs="+", default=[1, 10], help="crop counts to measure")
    parser.add_argument("--images", type=int, default=32, help="val images per 1-crop measurement")
    parser.add_argument("--images-10crop", type=int, default=16, help="val images per 5/10-crop measurement")
    parser.add_argument("--image-size", default="500x375", help="generated JPEG size WxH (ImageNet's typical)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None,
                        help="loader workers / DALI threads of both loops [default: imnet's per-rank default, "
                             "`imnet info`]")
    parser.add_argument("--loader", default="auto", choices=["auto", "dali", "torch"], help="imnet's loader")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="imnet eval and pure forward in NCHW (imnet's default is channels_last)")
    parser.add_argument("--timm-channels-last", action="store_true",
                        help="the timm-style loop in channels_last too (timm validate.py's default is NCHW)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per figure (median)")
    parser.add_argument("--result-lines", action="store_true",
                        help="also print RESULT lines (eval_vs_forward.<model>.<crops>crop ...) for benchmarks/gpu.sh")
    args = parser.parse_args(argv)
    if args.workers is None:
        args.workers = loader_resources().threads("torch")

    width, height = (int(v) for v in args.image_size.split("x"))
    print(f"# imnet eval benchmark: device={args.device} amp={args.amp} channels_last={args.channels_last} "
          f"(timm-style: {args.timm_channels_last}) "
          f"batch={args.batch_size} workers={args.workers} loader={args.loader} "
          f"images={args.images}/{args.images_10crop} of {width}x{height} repeats={args.repeats} "
          f"torch threads={torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp, numerics(args.device, tf32=False):
        trees = {}
        for crops in args.crops:
            count = args.images if crops == 1 else args.images_10crop
            if count not in trees:
                trees[count] = prepared_tree(Path(tmp) / f"n{count}", classes=8, train_per_class=1, val=count,
                                             image_size=(width, height), quirks=False)
        print("| model | crops | img | imnet eval img/s | pure forward img/s | timm-style img/s "
              "| eval / forward | eval / timm-style |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for name in args.models.split(","):
            config = get_config(name)
            size = config.input_size[-1]
            cfg = dict(crop_size=size, resize_size=eval_resize_size(size, config.crop_pct),
                       interpolation=config.interpolation, mean=config.mean, std=config.std)
            torch.manual_seed(0)
            model = create_model(name, num_classes=8).eval().to(args.device)
            # The timm-style loop gets its own copy in its own memory format.
            timm_model = create_model(name, num_classes=8).eval().to(args.device)
            timm_model.load_state_dict(model.state_dict())
            if args.channels_last:
                model = model.to(memory_format=torch.channels_last)
            if args.timm_channels_last:
                timm_model = timm_model.to(memory_format=torch.channels_last)
            for crops in args.crops:
                data = trees[args.images if crops == 1 else args.images_10crop]
                count = args.images if crops == 1 else args.images_10crop
                figures: dict[str, list[float]] = {"eval": [], "forward": [], "timm": []}
                imnet_eval(model, data, cfg, crops, args)  # warm-up: page cache, DALI/worker start
                for _ in range(args.repeats):  # interleaved, so load changes hit all three alike
                    figures["eval"].append(imnet_eval(model, data, cfg, crops, args))
                    figures["forward"].append(pure_forward(model, args.device, args.batch_size, crops, size,
                                                           args.amp, args.channels_last, count))
                    figures["timm"].append(timm_style(timm_model, data, cfg, crops, args))
                    print(f"  {name} {crops}-crop: " + ", ".join(f"{k} {v[-1]:.3g}" for k, v in figures.items()),
                          file=sys.stderr)
                med = {k: statistics.median(v) for k, v in figures.items()}
                print(f"| {name} | {crops} | {size} | {med['eval']:.3g} | {med['forward']:.3g} | {med['timm']:.3g} "
                      f"| {_ratio(med['eval'], med['forward']):.2f}x | {_ratio(med['eval'], med['timm']):.2f}x |",
                      flush=True)
                if args.result_lines:
                    for what, base in (("forward", "pure forward"), ("timm", "timm-style loop")):
                        print(f"RESULT eval_vs_{what}.{name}.{crops}crop {_ratio(med['eval'], med[what]):.4g} x "
                              f"imnet eval {med['eval']:.4g} img/s vs {base} {med[what]:.4g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
