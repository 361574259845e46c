"""imnet's loaders: DALI pipelines (GPU "mixed" decoding, or the same graph on the CPU) and a
torchvision + PIL fallback, both reading a prepared tree's ``meta/<split>.txt`` (DESIGN.md) or a
pack's shards (``imnet pack``; ``packsplit``, ``dali_pack``, ``torch_pack``).

Entry points (docs/INTERFACES.md): :func:`build_eval_loader` and :func:`build_train_loader`.
Modules, bottom up: ``filelist`` and ``transforms`` (the list, sizes and boxes), ``base`` (the types
both backends share), ``resources`` (default threads per rank), the backends ``dali`` and
``torch_loader``, and ``loaders`` (the builders, which choose a backend). DALI is imported only
when a DALI loader is built, so the fallback works without it.
"""
from imnet.data.base import EvalBatch, EvalLoader, TrainLoader
from imnet.data.filelist import SplitList, shard_range
from imnet.data.packsplit import PackSplit, read_split
from imnet.data.loaders import build_eval_loader, build_train_loader, choose_loader
from imnet.data.resources import loader_resources
from imnet.data.transforms import crop_boxes, eval_resize_size, resized_size

__all__ = ["EvalBatch", "EvalLoader", "PackSplit", "SplitList", "TrainLoader", "build_eval_loader",
           "build_train_loader", "choose_loader", "crop_boxes", "eval_resize_size", "loader_resources",
           "read_split", "resized_size", "shard_range"]
