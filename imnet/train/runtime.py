"""Process-wide settings of a training run: the device, seeding, and determinism switches."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from imnet.errors import ImnetError


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


def set_determinism(deterministic: bool, device: torch.device) -> None:
    """Deterministic algorithms and cuDNN when asked, else cuDNN autotuning on CUDA."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
