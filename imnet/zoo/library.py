"""Library adapters: timm and torchvision classifiers registered under imnet names.

imnet writes nothing a library already does: each adapter builds the library's model
(``timm.create_model`` / ``torchvision.models.get_model``, never with pretrained weights: those go
through :mod:`imnet.zoo.weights`) and takes the library's eval config (timm's ``pretrained_cfg``,
torchvision's ``Weights.transforms``) as its :class:`ModelConfig`. The classic zoo of the
pytorch_model_integration seed is registered here; where that table's row counts exactly the library
model's parameters at its printed precision, its figures are attached (else the library's own).

Any other library classifier passes through by prefix: ``timm/<name>`` and ``tv/<name>``.

Other family files register library builders with :func:`register_library_model`.
"""
from __future__ import annotations

import difflib
from pathlib import PurePosixPath
from typing import Any, Callable

import torch.nn as nn

from imnet.errors import ImnetError
from imnet.zoo.registry import ModelConfig, Published, WeightsSource, register_model, register_prefix

LIBRARIES = ("timm", "torchvision")
PMI = "pytorch_model_integration"
_PMI_FLOPS_NOTE = ("the table's EfficientNet FLOPs/G column (0.016-0.085) is off by orders of magnitude "
                   "from any count of these models (0.39-37.7 GMACs measured at their input sizes)")


def _timm_config(name: str, library_name: str, family: str, source: str, published: Published,
                 **overrides: Any) -> ModelConfig:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(library_name)
    if cfg is None:  # a timm architecture without pretrained configs: imnet's defaults, no weights
        return ModelConfig(name=name, family=family, source=source, published=published, **overrides)
    weights = None
    if cfg.hf_hub_id or cfg.url:
        weights = WeightsSource(url=cfg.url or None, hf_hub_id=cfg.hf_hub_id or None,
                                filename=cfg.hf_hub_filename or None)
    fields: dict[str, Any] = dict(
        name=name, family=family, source=source, input_size=tuple(cfg.input_size),
        crop_pct=cfg.crop_pct, interpolation=cfg.interpolation or "bicubic",
        mean=tuple(cfg.mean), std=tuple(cfg.std), first_conv=cfg.first_conv or "",
        classifier=cfg.classifier or "", num_classes=cfg.num_classes or 1000,
        published=published, weights=weights,
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def _torchvision_config(name: str, library_name: str, family: str, source: str, published: Published,
                        **overrides: Any) -> ModelConfig:
    import torchvision

    weights_enum = torchvision.models.get_model_weights(library_name)
    tv_weights = weights_enum.DEFAULT
    transform = tv_weights.transforms()
    crop = int(transform.crop_size[0])
    resize = int(transform.resize_size[0])
    meta = tv_weights.meta
    metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
    if published == Published():
        # The library's own published figures: torchvision's "GFLOPS" counts multiply-adds.
        published = Published(
            params=meta["num_params"] / 1e6, params_precision=6, macs=meta.get("_ops"),
            top1=metrics.get("acc@1"), top5=metrics.get("acc@5"), note="torchvision docs",
        )
    fields: dict[str, Any] = dict(
        name=name, family=family, source=source, input_size=(3, crop, crop),
        crop_pct=round(crop / resize, 4), interpolation=transform.interpolation.value,
        mean=tuple(transform.mean), std=tuple(transform.std), num_classes=len(meta["categories"]),
        published=published,
        weights=WeightsSource(url=tv_weights.url, filename=PurePosixPath(tv_weights.url).name),
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def library_builder(library: str, library_name: str, **fixed_kwargs: Any) -> Callable[..., nn.Module]:
    """A builder ``(num_classes, **kwargs) -> nn.Module`` that makes the library's model, randomly
    initialised (``fixed_kwargs`` are always passed; caller kwargs override them)."""
    if library not in LIBRARIES:
        raise ValueError(f"library must be one of {LIBRARIES}, not {library!r}")

    def build(num_classes: int = 1000, **kwargs: Any) -> nn.Module:
        merged = {**fixed_kwargs, **kwargs}
        if library == "timm":
            import timm

            return timm.create_model(library_name, pretrained=False, num_classes=num_classes, **merged)
        import torchvision

        return torchvision.models.get_model(library_name, weights=None, num_classes=num_classes, **merged)

    build.__name__ = f"{library}_{library_name}"
    build.__doc__ = f"{library}'s {library_name}, randomly initialised."
    return build


def library_config(name: str, library_name: str, *, library: str = "timm", family: str,
                   source: str | None = None, published: Published = Published(),
                   **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of a library model under an imnet ``name``: the library's eval
    config (input size, crop_pct, interpolation, mean/std, first_conv, classifier) and weights
    location, ``published`` figures (the library's own for torchvision when none are given), and
    any field in ``overrides`` (e.g. ``first_conv``, ``checkpoint_filter``)."""
    source = source or f"{library}:{library_name}"
    make = _timm_config if library == "timm" else _torchvision_config
    return make(name, library_name, family, source, published, **overrides)


def register_library_model(name: str, library_name: str, *, library: str = "timm", family: str,
                           source: str | None = None, published: Published = Published(),
                           builder_kwargs: dict[str, Any] | None = None,
                           **overrides: Any) -> ModelConfig:
    """Register ``library``'s (``"timm"`` or ``"torchvision"``) ``library_name`` as imnet model
    ``name`` with the library's eval config; returns the registered config.

    ``builder_kwargs`` are passed to the library's constructor on every build (e.g.
    ``{"aux_logits": False}``); ``overrides`` replace config fields (see :func:`library_config`)."""
    config = library_config(name, library_name, library=library, family=family, source=source,
                            published=published, **overrides)
    register_model(config)(library_builder(library, library_name, **(builder_kwargs or {})))
    return config


# --- checkpoint filters --------------------------------------------------------------------------

def drop_aux_logits(state_dict: dict, model: nn.Module) -> dict:
    """torchvision's GoogLeNet / Inception v3 checkpoints carry the auxiliary classifiers used in
    training; the eval models here are built without them, so their keys are dropped."""
    own = model.state_dict()
    return {k: v for k, v in state_dict.items()
            if k in own or not (k.startswith("aux") or k.startswith("AuxLogits."))}


# --- the classic zoo (pytorch_model_integration seed, issue 4) ------------------------------------

def _pmi(params: float, flops: float, top1: float | None = None, top5: float | None = None,
         macs_note: str = "") -> Published:
    """A row of the pytorch_model_integration table: params in M (6 decimals printed), FLOPs in G."""
    return Published(params=params, params_precision=6, flops=flops, top1=top1, top5=top5,
                     macs_note=macs_note, note=f"{PMI} table")


_TV_FIXED = {
    # Eval-form GoogLeNet / Inception v3: no auxiliary heads; inputs re-normalised as the
    # torchvision weights expect (torchvision sets the same when it loads them).
    "googlenet": {"aux_logits": False, "init_weights": False, "transform_input": True},
    "inception_v3": {"aux_logits": False, "init_weights": False, "transform_input": True},
}

# imnet name, library, library name, family, first_conv, classifier, pmi row (or None)
_CLASSIC: list[tuple[str, str, str, str, str, str, Published | None]] = [
    ("vgg11", "torchvision", "vgg11", "vgg", "features.0", "classifier.6", None),
    ("vgg11_bn", "torchvision", "vgg11_bn", "vgg", "features.0", "classifier.6", None),
    ("vgg13", "torchvision", "vgg13", "vgg", "features.0", "classifier.6", None),
    ("vgg13_bn", "torchvision", "vgg13_bn", "vgg", "features.0", "classifier.6", None),
    ("vgg16", "torchvision", "vgg16", "vgg", "features.0", "classifier.6", None),
    ("vgg16_bn", "torchvision", "vgg16_bn", "vgg", "features.0", "classifier.6", None),
    ("vgg19", "torchvision", "vgg19", "vgg", "features.0", "classifier.6", None),
    ("vgg19_bn", "torchvision", "vgg19_bn", "vgg", "features.0", "classifier.6", None),
    ("resnext50_32x4d", "torchvision", "resnext50_32x4d", "resnext", "conv1", "fc",
     _pmi(25.028904, 8.51937, 77.80)),
    # timm's default resnext101_32x4d weights are pretrained semi-weakly supervised on YFCC100M;
    # the Gluon weights are ImageNet-1k only, the training the table's row describes.
    ("resnext101_32x4d", "timm", "resnext101_32x4d.gluon_in1k", "resnext", "", "",
     _pmi(44.177704, 16.02570, 78.8)),
    ("densenet121", "torchvision", "densenet121", "densenet", "features.conv0", "classifier", None),
    ("densenet169", "torchvision", "densenet169", "densenet", "features.conv0", "classifier", None),
    ("densenet201", "torchvision", "densenet201", "densenet", "features.conv0", "classifier", None),
    ("mobilenetv1_100", "timm", "mobilenetv1_100", "mobilenet", "", "",
     _pmi(4.231976, 1.14757, 70.60)),
    ("mobilenet_v2", "torchvision", "mobilenet_v2", "mobilenet", "features.0.0", "classifier.1", None),
    ("mobilenet_v3_large", "torchvision", "mobilenet_v3_large", "mobilenet", "features.0.0",
     "classifier.3", None),
    ("mobilenet_v3_small", "torchvision", "mobilenet_v3_small", "mobilenet", "features.0.0",
     "classifier.3", None),
    ("squeezenet1_0", "torchvision", "squeezenet1_0", "squeezenet", "features.0", "classifier.1", None),
    ("squeezenet1_1", "torchvision", "squeezenet1_1", "squeezenet", "features.0", "classifier.1", None),
    ("shufflenet_v2_x0_5", "torchvision", "shufflenet_v2_x0_5", "shufflenet", "conv1.0", "fc", None),
    ("shufflenet_v2_x1_0", "torchvision", "shufflenet_v2_x1_0", "shufflenet", "conv1.0", "fc", None),
    ("shufflenet_v2_x1_5", "torchvision", "shufflenet_v2_x1_5", "shufflenet", "conv1.0", "fc", None),
    ("shufflenet_v2_x2_0", "torchvision", "shufflenet_v2_x2_0", "shufflenet", "conv1.0", "fc", None),
    ("ghostnet_100", "timm", "ghostnet_100", "ghostnet", "", "", None),
    ("efficientnet_b0", "torchvision", "efficientnet_b0", "efficientnet", "features.0.0", "classifier.1",
     _pmi(5.288548, 0.01604, 76.30, 93.20, _PMI_FLOPS_NOTE)),
    ("efficientnet_b1", "torchvision", "efficientnet_b1", "efficientnet", "features.0.0", "classifier.1",
     _pmi(7.794184, 0.02124, 78.80, 94.40, _PMI_FLOPS_NOTE)),
    ("efficientnet_b2", "torchvision", "efficientnet_b2", "efficientnet", "features.0.0", "classifier.1",
     _pmi(9.109994, 0.02240, 79.80, 94.90, _PMI_FLOPS_NOTE)),
    ("efficientnet_b3", "torchvision", "efficientnet_b3", "efficientnet", "features.0.0", "classifier.1",
     _pmi(12.233232, 0.02905, 81.10, 95.50, _PMI_FLOPS_NOTE)),
    ("efficientnet_b4", "torchvision", "efficientnet_b4", "efficientnet", "features.0.0", "classifier.1",
     _pmi(19.341616, 0.03762, 82.60, 96.30, _PMI_FLOPS_NOTE)),
    ("efficientnet_b5", "torchvision", "efficientnet_b5", "efficientnet", "features.0.0", "classifier.1",
     _pmi(30.389784, 0.05086, 83.30, 96.70, _PMI_FLOPS_NOTE)),
    ("efficientnet_b6", "torchvision", "efficientnet_b6", "efficientnet", "features.0.0", "classifier.1",
     _pmi(43.040704, 0.06443, 84.00, 96.90, _PMI_FLOPS_NOTE)),
    ("efficientnet_b7", "torchvision", "efficientnet_b7", "efficientnet", "features.0.0", "classifier.1",
     _pmi(66.34796, 0.08516, 84.40, 97.10, _PMI_FLOPS_NOTE)),
    ("googlenet", "torchvision", "googlenet", "inception", "conv1.conv", "fc", None),
    ("inception_v3", "torchvision", "inception_v3", "inception", "Conv2d_1a_3x3.conv", "fc",
     _pmi(23.834568, 7.60887, 78.80, 94.40, "the table's GoogleNet V3 FLOPs/G (7.61) is neither MACs "
          "nor 2 x MACs of the model at 299 px (5.71 GMACs measured); its counting is not documented")),
    ("inception_v4", "timm", "inception_v4", "inception", "", "",
     _pmi(42.679816, 12.31977, 80.00, 95.10, "the table's GoogleNet V4 FLOPs/G counts multiply-adds "
          "(12.32 vs 12.25 GMACs measured at 299 px, 0.6% off), unlike its other rows")),
    ("dla34", "timm", "dla34", "dla", "", "", None),
    ("dla46_c", "timm", "dla46_c", "dla", "", "", None),
    ("dla46x_c", "timm", "dla46x_c", "dla", "", "", None),
    ("dla60", "timm", "dla60", "dla", "", "", None),
    ("dla60x", "timm", "dla60x", "dla", "", "", None),
    ("dla60x_c", "timm", "dla60x_c", "dla", "", "", None),
    ("dla60_res2net", "timm", "dla60_res2net", "dla", "", "", None),
    ("dla60_res2next", "timm", "dla60_res2next", "dla", "", "", None),
    ("dla102", "timm", "dla102", "dla", "", "", None),
    ("dla102x", "timm", "dla102x", "dla", "", "", None),
    ("dla102x2", "timm", "dla102x2", "dla", "", "", None),
    ("dla169", "timm", "dla169", "dla", "", "", None),
]


def _register_classic() -> None:
    for name, library, library_name, family, first_conv, classifier, pmi in _CLASSIC:
        overrides: dict[str, Any] = {}
        if first_conv:  # torchvision has no first_conv/classifier metadata; timm's cfg has them
            overrides.update(first_conv=first_conv, classifier=classifier)
        if library_name in _TV_FIXED:
            overrides["checkpoint_filter"] = drop_aux_logits
        register_library_model(name, library_name, library=library, family=family,
                               published=pmi or Published(),
                               builder_kwargs=_TV_FIXED.get(library_name), **overrides)


_register_classic()


# --- pass-through: timm/<name>, tv/<name> ---------------------------------------------------------

def _unknown(library: str, library_name: str, known: list[str]) -> ImnetError:
    close = difflib.get_close_matches(library_name, known, n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ImnetError(f"{library} has no ImageNet classifier named {library_name!r}{hint}")


def _resolve_timm(library_name: str) -> tuple[Callable[..., nn.Module], ModelConfig]:
    import timm

    if not timm.is_model(library_name):
        raise _unknown("timm", library_name, timm.list_models())
    config = library_config(f"timm/{library_name}", library_name, library="timm", family="timm")
    return library_builder("timm", library_name), config


def _resolve_torchvision(library_name: str) -> tuple[Callable[..., nn.Module], ModelConfig]:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if library_name not in known:
        raise _unknown("torchvision", library_name, known)
    fixed = _TV_FIXED.get(library_name, {})
    overrides = {"checkpoint_filter": drop_aux_logits} if fixed else {}
    config = library_config(f"tv/{library_name}", library_name, library="torchvision",
                            family="torchvision", **overrides)
    return library_builder("torchvision", library_name, **fixed), config


register_prefix("timm/", _resolve_timm)
register_prefix("tv/", _resolve_torchvision)
