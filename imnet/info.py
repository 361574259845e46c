"""``imnet info``: versions of the stack and the hardware, for bug reports and benchmark records."""
from __future__ import annotations

import os
import platform
import sys

import imnet


def pil_description() -> str:
    """Which PIL is active: Pillow-SIMD (versions carry a ``.postN`` suffix) or stock Pillow, and
    whether it decodes JPEG with libjpeg-turbo."""
    try:
        import PIL
        from PIL import features
    except ImportError:
        return "not installed"
    flavour = "Pillow-SIMD" if ".post" in PIL.__version__ else "Pillow"
    turbo = features.check_feature("libjpeg_turbo")
    return f"{flavour} {PIL.__version__} (libjpeg-turbo: {'yes' if turbo else 'no'})"


def dali_version() -> str:
    """DALI's version, or ``not installed``."""
    try:
        import nvidia.dali as dali
    except Exception:  # ImportError, or a broken CUDA library behind it
        return "not installed"
    return dali.__version__


def loader_plan(cpus: int, local_ranks: int) -> str:
    """What each of ``local_ranks`` processes sharing ``cpus`` CPUs would use by default."""
    from imnet.data.resources import loader_resources

    res = loader_resources(cpus, local_ranks)
    device_bytes, pinned_bytes = res.dali_scratch()
    mib = 2**20
    return (f"{res.per_rank} CPUs per rank -> dali-gpu {res.threads('dali-gpu')} threads (nvJPEG scratch "
            f"{device_bytes // mib} MiB GPU + {pinned_bytes // mib} MiB pinned per pipeline; train and val "
            f"pipelines: 2x), dali-cpu {res.threads('dali-cpu')} threads, torch {res.threads('torch')} "
            f"workers (train: kept for the run; val: only during validation); --workers N overrides")


def loader_lines(gpus: int) -> dict[str, str]:
    """The node's CPUs, its ranks, and the default loader resources a run would take here."""
    from imnet.data.resources import local_world_size, visible_cpus

    cpus = visible_cpus()
    ranks = local_world_size()
    set_by = "LOCAL_WORLD_SIZE" if "LOCAL_WORLD_SIZE" in os.environ else "LOCAL_WORLD_SIZE unset: one process"
    lines = {
        "cpus": f"{cpus} usable by this process (affinity), {os.cpu_count()} on the machine",
        "local ranks": f"{ranks} ({set_by})",
        "loader/rank": loader_plan(cpus, ranks),
    }
    if gpus > 1 and "LOCAL_WORLD_SIZE" not in os.environ:
        lines[f"x{gpus} ranks"] = f"torchrun --nproc-per-node {gpus}: " + loader_plan(cpus, gpus)
    lines["loader auto"] = "torch on a CPU device; DALI (gpu) on CUDA when it runs there, else torch"
    return lines


def collect_info() -> dict[str, str]:
    """Ordered name -> value pairs describing this installation and machine."""
    import torch
    import torchvision

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        cuda = f"yes, CUDA {torch.version.cuda}: {torch.cuda.device_count()} x [{names}]"
    else:
        cuda = f"no GPU visible (torch built for CUDA {torch.version.cuda})"
    try:
        import timm

        timm_version = timm.__version__
    except ImportError:
        timm_version = "not installed"
    return {
        "imnet": imnet.__version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm_version,
        "dali": dali_version(),
        "PIL": pil_description(),
        "cuda": cuda,
        **loader_lines(gpus),
        "platform": platform.platform(),
    }
