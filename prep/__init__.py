"""imnet.prep: verified, streamed, resumable preparation of the ILSVRC2012 archives.

One short module per step of the data's journey: ``checksum`` (md5sum lists, hashing reader),
``stream`` (safe streaming tar reading), ``devkit`` (meta.mat and ground truth), ``quirks``
(repairs by content), ``extract`` (the workers' unit of work), ``layout`` (the tree, atomic writes,
disk checks), ``manifests`` (classes.tsv, file lists, shipped data), ``verify`` and ``pipeline``
(the official archives -> the tree). ``sources`` reads the other places ILSVRC2012 comes from (the
Hugging Face archives, Kaggle's folder or zip, an extracted tree) into the same tree; its
``prepare`` picks the source and is the ``prepare`` exported here.
"""
from imnet.prep.pipeline import format_summary
from imnet.prep.sources import prepare
from imnet.prep.verify import VerifyReport, verify_tree

__all__ = ["prepare", "format_summary", "verify_tree", "VerifyReport"]
