"""imnet.eval: multi-crop evaluation of zoo models, metrics (incl. ReaL), the predictions store, reports.

``evaluate(EvalOptions(...))`` runs models over a prepared val split (:mod:`imnet.eval.runner`);
:mod:`~imnet.eval.metrics` and :mod:`~imnet.eval.crops` hold the arithmetic, :mod:`~imnet.eval.real` the
ReaL file, :mod:`~imnet.eval.store` ``predictions.h5``, :mod:`~imnet.eval.report` the results tables
and plot, :mod:`~imnet.eval.distributed` the torchrun gather. The runner is imported lazily: the
metrics, the store and the reports need neither a model nor the loaders.
"""
from imnet.eval.metrics import TopK, rank_classes, real_accuracy, topk_accuracy
from imnet.eval.real import find_real_labels, load_real_labels

__all__ = ["EvalOptions", "TopK", "evaluate", "find_real_labels", "load_real_labels", "rank_classes",
           "real_accuracy", "topk_accuracy"]


def __getattr__(name: str):
    if name in ("evaluate", "EvalOptions"):
        from imnet.eval import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'imnet.eval' has no attribute {name!r}")
