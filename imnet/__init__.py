"""imnet: ImageNet (ILSVRC2012) data prep, loaders, training and evaluation."""
__version__ = "0.1.0"
