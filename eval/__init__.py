"""imnet.eval: multi-crop evaluation of zoo models, metrics (incl. ReaL), the predictions store, reports.

``evaluate(EvalOptions(...))`` runs models over a prepared val split (:mod:`imnet.eval.runner`);
:mod:`~imnet.eval.metrics` and :mod:`~imnet.eval.crops` hold the arithmetic, :mod:`~imnet.eval.real` the
ReaL file, :mod:`~imnet.eval.store` ``predictions.h5``, :mod:`~imnet.eval.report` the results tables
and plot, :mod:`~imnet.eval.distributed` the torchrun gather. Names are imported on first use, so
reading a store (h5py, numpy) does not import torch or the zoo.
"""
import importlib

_EXPORTS = {
    "EvalOptions": "runner", "evaluate": "runner", "report_from_store": "runner",
    "TopK": "metrics", "rank_classes": "metrics", "real_accuracy": "metrics", "topk_accuracy": "metrics",
    "find_real_labels": "real", "load_real_labels": "real",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
