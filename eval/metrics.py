"""Accuracy metrics on class scores: top-k against the original labels and against ReaL labels.

Scores are any per-class values whose order ranks the classes (logits, probabilities, log of averaged
probabilities). Ties are broken deterministically: among equal scores the lower class index ranks
first, so a result never depends on the sort kernel or the device. Accuracies are percentages, as in
timm's results tables.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TopK:
    """Top-1/top-5 accuracy in percent over ``n_images`` images (``None`` when nothing was counted)."""

    top1: float | None
    top5: float | None
    n_images: int


def rank_classes(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` best class indices per row of ``scores`` (N, C), best first, shape (N, min(k, C)).

    Equal scores rank by lower class index first (stable sort on descending score), unlike
    :func:`torch.topk`, whose order among ties is unspecified."""
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {tuple(scores.shape)}")
    k = min(k, scores.shape[1])
    scores = scores.float()  # float16 kernels are slow on CPU
    # topk finds the k best fast but orders ties arbitrarily: re-sort its k indices by (score desc,
    # index asc). That is exact unless a tie straddles the k-th place (more candidates than k): those
    # rows get a full stable sort.
    values, picked = torch.topk(scores, min(k + 1, scores.shape[1]), dim=1)
    picked = picked[:, :k].sort(dim=1).values
    order = torch.sort(scores.gather(1, picked), dim=1, descending=True, stable=True).indices
    best = picked.gather(1, order)
    if values.shape[1] > k:
        straddling = values[:, k] == values[:, k - 1]
        if bool(straddling.any()):
            best[straddling] = torch.sort(scores[straddling], dim=1, descending=True,
                                          stable=True).indices[:, :k]
    return best


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Bool (N,): whether ``labels[i]`` is among the ``k`` best classes of ``scores[i]``.

    With fewer than ``k`` classes every label is among the top k (k is clamped to C)."""
    best = rank_classes(scores, k)
    return (best == labels.reshape(-1, 1).to(best.device)).any(dim=1)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> TopK:
    """Top-1 and top-5 accuracy (percent) of ``scores`` (N, C) against ``labels`` (N,) int."""
    n = int(labels.shape[0])
    if scores.shape[0] != n:
        raise ValueError(f"{scores.shape[0]} score rows but {n} labels")
    if n == 0:
        return TopK(None, None, 0)
    best = rank_classes(scores, max(ks))
    hit = best == labels.reshape(-1, 1).to(best.device)
    acc = {k: 100.0 * hit[:, :k].any(dim=1).float().mean().item() for k in ks}
    return TopK(acc.get(1), acc.get(5), n)


def real_accuracy(scores: torch.Tensor, real_labels: Sequence[Sequence[int]],
                  ks: Sequence[int] = (1, 5)) -> TopK:
    """Top-k accuracy (percent) against ReaL labels (Beyer et al. 2020).

    ``real_labels[i]`` is the list of acceptable class indices of row ``i`` of ``scores`` (N, C).
    Rows with an empty list are left out (``n_images`` counts the rows kept); a row is correct at
    top-k when any of its k best classes is in its list."""
    if scores.shape[0] != len(real_labels):
        raise ValueError(f"{scores.shape[0]} score rows but {len(real_labels)} ReaL label lists")
    keep = [i for i, accepted in enumerate(real_labels) if len(accepted) > 0]
    if not keep:
        return TopK(None, None, 0)
    best = rank_classes(scores[keep], max(ks)).tolist()
    acc = {}
    for k in ks:
        hits = sum(1 for row, i in zip(best, keep) if not set(row[:k]).isdisjoint(real_labels[i]))
        acc[k] = 100.0 * hits / len(keep)
    return TopK(acc.get(1), acc.get(5), len(keep))
