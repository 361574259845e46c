"""The per-epoch validation pass: 1-crop mean loss, top-1 and top-5 over every rank's val shard."""
from __future__ import annotations

import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from imnet.distributed import DistContext


@torch.no_grad()
def validate(model: nn.Module, loader, ctx: DistContext, *, device: torch.device,
             amp_dtype: torch.dtype | None, channels_last: bool, num_classes: int, progress: bool,
             desc: str) -> tuple[float, float, float]:
    """One pass of the eval ``loader`` (its 1-crop batches) through ``model`` in eval mode:
    (mean cross-entropy, top-1 %, top-5 %) summed over all ranks. The model's train/eval mode is
    restored afterwards."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, images
    k = min(5, num_classes)
    bar = tqdm(loader, desc=desc, unit="batch", file=sys.stderr, dynamic_ncols=True, leave=False,
               disable=not (ctx.is_main and progress))
    for batch in bar:
        images = batch.images[:, 0].to(device, non_blocking=True)
        labels = batch.labels.to(device, non_blocking=True)
        if channels_last:  # a no-op when the loader already delivers channels_last
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images)
        logits = logits.float()
        correct = logits.topk(k, dim=1).indices.eq(labels[:, None])
        sums += torch.stack([
            F.cross_entropy(logits, labels, reduction="sum").double(),
            correct[:, :1].sum().double(), correct.sum().double(),
            torch.tensor(float(labels.shape[0]), dtype=torch.float64, device=device),
        ])
    bar.close()
    ctx.all_reduce(sums)
    model.train(was_training)
    n = max(1.0, sums[3].item())
    return sums[0].item() / n, 100.0 * sums[1].item() / n, 100.0 * sums[2].item() / n
