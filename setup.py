"""imnet: ImageNet (ILSVRC2012) data prep, loaders, training and evaluation.

Installed, only the name ``imnet`` enters site-packages: ``prep/``, ``eval/`` and ``pack/`` at the
repository root are mapped onto ``imnet.prep``, ``imnet.eval`` and ``imnet.pack`` with ``package_dir``.
"""
from setuptools import find_packages, setup

# Top-level source folders and the import names they install as.
ROOTS = {"imnet": "imnet", "imnet.prep": "prep", "imnet.eval": "eval", "imnet.pack": "pack", "imnet.manifests": "manifests"}
PACKAGES = dict(ROOTS)
for name, folder in ROOTS.items():
    for sub in find_packages(folder):
        PACKAGES[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(
    name="imnet",
    version="0.1.0",
    description="ImageNet (ILSVRC2012) data-prep, training and evaluation pipeline",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=list(PACKAGES),
    package_dir=PACKAGES,
    package_data={"imnet.manifests": ["*.md5", "*.json", "*.tsv", "*.txt"], "imnet.zoo": ["originals.json.gz"]},
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "timm>=1.0",
        "huggingface_hub>=1.0",  # hf_hub_download and the resumable http_get behind `imnet weights`
        "nvidia-dali-cuda130",
        "numpy",
        "scipy",
        "h5py",
        "tqdm",
        "click>=8",
        "matplotlib",
        "pyyaml",
        "webdataset>=0.2.86",  # the torch loader's reader of packs (imnet pack), and timm's wds/ reader
    ],
    # torch-resnet and bsconv: independent references the zoo's fidelity tests compare with (their only
    # dependency is torch, already installed above; bsconv declares none).
    extras_require={"test": ["pytest>=7", "pytest-xdist>=3.5", "torch-resnet==0.0.4", "bsconv==0.4.0"]},
    entry_points={"console_scripts": ["imnet=imnet.cli:main"]},
)
