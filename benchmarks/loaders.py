"""Loader throughput benchmark: ``python benchmarks/loaders.py [options]`` = ``imnet bench loader``.

Generates ImageNet-sized JPEGs (400x350, ~110 KB) under /tmp and prints images/s of imnet's DALI-CPU
and torch loaders against torchvision ImageFolder + transforms + DataLoader with the same worker
counts on stock Pillow (a subprocess with ``.venv/stock-pillow`` first on sys.path; ``--stock-pillow``
or ``IMNET_STOCK_PILLOW`` to point elsewhere), measured in the same run (``imnet.data.benchmark``).
Figures: benchmarks/RESULTS.md.
"""
import sys

from imnet.cli import main

if __name__ == "__main__":
    main(["bench", "loader", *sys.argv[1:]])
