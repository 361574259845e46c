"""Multi-crop arithmetic: which crops one forward pass holds, and the 1-, 5- and 10-crop scores from it.

Crop layout of the loader's multi-crop batches (torchvision FiveCrop / TenCrop order):
0..3 the corners (tl, tr, bl, br), 4 the centre, 5..9 the same five flipped horizontally.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

CROP_COUNTS = (1, 5, 10)
CENTRE_CROP = 4


def pass_crops(crop_counts: Iterable[int]) -> int:
    """How many crops one forward pass must cut to serve every requested crop count: 1 when only
    1-crop is asked for, else the largest count (5-crop is the head of 10-crop, 1-crop its crop 4)."""
    counts = set(crop_counts)
    bad = counts - set(CROP_COUNTS)
    if bad or not counts:
        raise ValueError(f"crop counts must be among {CROP_COUNTS}, got {sorted(counts)}")
    return max(counts)


def crop_probabilities(crop_logits: torch.Tensor, crops: int) -> torch.Tensor:
    """Class probabilities (N, C) of ``crops`` crops from the per-crop logits (N, K, C) of a pass.

    The three crop counts come out of the same forward pass: a 10-crop batch holds FiveCrop's five
    crops followed by their flips, so 5-crop is its first five crops and 1-crop its crop 4, which is
    the centre crop exactly (torchvision's FiveCrop cuts its centre with ``center_crop``, the same
    function as CenterCrop). A 1-crop batch (K == 1) holds the centre crop alone. Probabilities of the
    crops are averaged (softmax first, then mean), in float32."""
    k = crop_logits.shape[1]
    if crops == 1:
        chosen = crop_logits[:, :1] if k == 1 else crop_logits[:, CENTRE_CROP:CENTRE_CROP + 1]
    elif crops in (5, 10) and k >= crops:
        chosen = crop_logits[:, :crops]
    else:
        raise ValueError(f"cannot derive {crops} crops from a pass of {k}")
    return torch.softmax(chosen.float(), dim=-1).mean(dim=1)


def crop_scores(crop_logits: torch.Tensor, crops: int) -> torch.Tensor:
    """The stored "logits" of ``crops`` crops, (N, C) float32: the centre crop's own logits for 1 crop,
    the log of the averaged probabilities for 5 and 10 (its softmax gives back the averaged
    probabilities, so ranking and any probability metric are the same)."""
    k = crop_logits.shape[1]
    if crops == 1:
        return crop_logits[:, 0 if k == 1 else CENTRE_CROP].float()
    # Clamp: log(0) would be -inf, which float16 keeps but which breaks means downstream.
    return crop_probabilities(crop_logits, crops).clamp_min(torch.finfo(torch.float32).tiny).log()
