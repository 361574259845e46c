"""Shipped data: official archive checksums (md5sum format), sizes, expected counts, known quirks."""
from pathlib import Path

MANIFEST_DIR = Path(__file__).resolve().parent


def manifest_path(name: str) -> Path:
    """Path of a shipped manifest file, e.g. ``manifest_path("ILSVRC2012.md5")``."""
    return MANIFEST_DIR / name
