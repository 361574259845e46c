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


def collect_info() -> dict[str, str]:
    """Ordered name -> value pairs describing this installation and machine."""
    import torch
    import torchvision

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
        "cpus": str(os.cpu_count()),
        "platform": platform.platform(),
    }
