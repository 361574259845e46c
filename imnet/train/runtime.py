"""Process-wide settings of a training run: the device, seeding, and determinism switches.

``--deterministic`` turns on ``torch.use_deterministic_algorithms`` with ``warn_only=True``: an op
without a deterministic implementation runs anyway (it used to abort the run on CUDA, e.g. VGG's
7x7 adaptive average pooling backward) and is named. Which modules will do so on CUDA is known from
the model before training (:func:`refused_ops`); what really warned during the first update is
recorded by the step (:func:`nondeterministic_op`) in ``run.json``.
"""
from __future__ import annotations

import os
import random
import re

import numpy as np
import torch
import torch.nn as nn

from imnet.errors import ImnetError

# Modules whose CUDA kernels have no deterministic implementation (the list under
# torch.use_deterministic_algorithms), with the kernel that says so. Adaptive average pooling to
# 1x1 is computed as a mean and is deterministic.
_REFUSED_ON_CUDA: list[tuple[type, str]] = [
    (nn.AdaptiveAvgPool2d, "adaptive_avg_pool2d_backward_cuda"),
    (nn.AdaptiveAvgPool3d, "adaptive_avg_pool3d_backward_cuda"),
    (nn.AdaptiveMaxPool2d, "adaptive_max_pool2d_backward_cuda"),
    (nn.AdaptiveMaxPool3d, "adaptive_max_pool3d_backward_cuda"),
    (nn.AvgPool3d, "avg_pool3d_backward_cuda"),
    (nn.MaxPool3d, "max_pool3d_with_indices_backward_cuda"),
    (nn.FractionalMaxPool2d, "fractional_max_pool2d_backward_cuda"),
    (nn.FractionalMaxPool3d, "fractional_max_pool3d_backward_cuda"),
    (nn.MaxUnpool1d, "max_unpooling1d_forward_out"),
    (nn.MaxUnpool2d, "max_unpooling2d_forward_out"),
    (nn.MaxUnpool3d, "max_unpooling3d_forward_out"),
    (nn.ReflectionPad1d, "reflection_pad1d_backward_out_cuda"),
    (nn.ReflectionPad2d, "reflection_pad2d_backward_cuda"),
    (nn.ReflectionPad3d, "reflection_pad3d_backward_out_cuda"),
    (nn.ReplicationPad1d, "replication_pad1d_backward_cuda"),
    (nn.ReplicationPad2d, "replication_pad2d_backward_cuda"),
    (nn.ReplicationPad3d, "replication_pad3d_backward_cuda"),
    (nn.Upsample, "upsample_<mode>_backward_out_cuda"),
    (nn.EmbeddingBag, "embedding_bag_backward_cuda_max"),
    (nn.CTCLoss, "ctc_loss_backward_gpu"),
    (nn.NLLLoss, "nll_loss2d_forward_out_cuda_template"),
]
_NONDETERMINISTIC = re.compile(r"^(\S+) does not have a deterministic implementation")


def _is_global_mean(module: nn.Module) -> bool:
    size = module.output_size
    sizes = size if isinstance(size, (tuple, list)) else (size,)
    return isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)) and all(s == 1 for s in sizes)


def refused_ops(model: nn.Module) -> list[str]:
    """The modules of ``model`` that have no deterministic CUDA implementation, as
    ``"<module path> <Module(args)>: <kernel>"``. Functional calls inside ``forward`` are not seen
    here; they show up at run time (:func:`nondeterministic_op`)."""
    found = []
    for path, module in model.named_modules():
        for kind, kernel in _REFUSED_ON_CUDA:
            if isinstance(module, kind):
                if _is_global_mean(module) or (isinstance(module, nn.Upsample) and module.mode == "nearest"):
                    continue
                if isinstance(module, nn.Upsample):
                    kernel = kernel.replace("<mode>", module.mode)
                found.append(f"{path or 'model'} {module}: {kernel}")
                break
    return found


def nondeterministic_op(message: str) -> str | None:
    """The op named by torch's warn_only determinism warning ``message``, else None."""
    match = _NONDETERMINISTIC.match(message)
    return match.group(1) if match else None


def resolve_device(name: str) -> torch.device:
    """``--device`` ("auto": CUDA when visible, "cuda", "cpu") as a torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ImnetError("--device cuda: no CUDA GPU is visible to this process; use --device cpu")
    if name not in {"cpu", "cuda"}:
        raise ImnetError(f"--device {name!r}: expected auto, cuda or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_determinism(deterministic: bool, device: torch.device) -> dict:
    """Deterministic algorithms (``warn_only``: an op without one runs and is named) and cuDNN when
    asked, else cuDNN autotuning on CUDA. Returns the switches as set, for ``run.json``."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # TF32 is left at torch's defaults (cuDNN convolutions in TF32, matmuls in full float32) and
    # recorded as torch reports it; training normally runs under bf16 autocast anyway.
    return {"cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "fp32_precision": {"matmul": torch.backends.cuda.matmul.fp32_precision,
                               "conv": torch.backends.cudnn.conv.fp32_precision}}
