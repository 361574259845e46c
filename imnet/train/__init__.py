"""``imnet train``: any zoo model on a prepared tree, as a plain process or under ``torchrun``.

``train(TrainConfig(arch=..., data=..., recipe=load_recipe("classic"))) -> Path`` returns the run
directory (``run.json``, ``last.pth``, ``best.pth``, ``summary.csv``, ``deploy.pth`` for VanillaNet).
Recipes are data (:mod:`imnet.train.recipes`); checkpoints are atomic and strict
(:mod:`imnet.train.checkpoint`, :mod:`imnet.train.state`); the loop is :mod:`imnet.train.loop`, which
drives :mod:`~imnet.train.step`, :mod:`~imnet.train.epoch` and :mod:`~imnet.train.validation`.
"""
from imnet.train.checkpoint import load_checkpoint, read_run_record
from imnet.train.loop import SUMMARY_COLUMNS, TrainConfig, TrainingDiverged, train
from imnet.train.recipes import RECIPES, Recipe, load_recipe

__all__ = [
    "RECIPES",
    "Recipe",
    "SUMMARY_COLUMNS",
    "TrainConfig",
    "TrainingDiverged",
    "load_checkpoint",
    "load_recipe",
    "read_run_record",
    "train",
]
