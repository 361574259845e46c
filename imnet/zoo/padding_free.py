"""Padding-free downsampling and the hybrid stem block, swapped into library bodies.

Seed: "Lightweight Deep Neural Network Model With Padding-free Downsampling"
(github.com/xiaohe725/Padding-free-Downsampling-And-Hybrid-Stem). Two reusable blocks:

* :class:`StemBlock` replaces a network's first convolution: a 3x3 conv, then a depthwise 3x3 conv
  beside a 3x3 max-pool of the same features, concatenated and fused by a 1x1 conv.
* :class:`PaddingFreeDownsample` replaces a stride-2 depthwise convolution: the convolution runs with
  ``padding=(k - 3) // 2`` (0 for 3x3, 1 for 5x5) and a 3x3/2 max-pool of its input (no padding) is
  added to its output, so both branches see only real pixels and agree in size.

The swaps work on torchvision's MobileNetV3-Large and ShuffleNetV2 and timm's GhostNet, built with the
seed's CIFAR strides (stride 1 in the stem and the first stage) or the ImageNet strides. Parameter
counts change only by the stem; MACs drop because the stride-2 convolutions see no padding.

Variants (``<family>_<dataset>`` is the seed's original, ``..._pfd`` its padding-free twin):
CIFAR-100 (second hyper-parameter set of the seed, 32x32, 100 classes), VegFru-292 (224x224,
292 classes) and ImageNet-1k (MobileNetV3-Large only).
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import timm.models.ghostnet as timm_ghostnet
import torch
import torch.nn as nn
import torchvision.models.mobilenetv3 as tv_mobilenetv3
import torchvision.models.shufflenetv2 as tv_shufflenetv2

from imnet.zoo.registry import ModelConfig, Published, register_model

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


# --- building blocks ---------------------------------------------------------------------------------


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation; ``act_layer=None`` leaves the activation out."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, groups: int = 1,
                 act_layer: Callable[..., nn.Module] | None = nn.ReLU) -> None:
        padding = (kernel_size - 1) // 2 if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_chs),
        ]
        if act_layer is not None:
            layers.append(act_layer(inplace=True))
        super().__init__(*layers)


class StemBlock(nn.Module):
    """The seed's hybrid stem: conv3x3 -> [depthwise conv3x3 | max-pool 3x3] -> concat -> conv1x1.

    ``stride`` is the first conv's stride (1 for 32x32 CIFAR inputs, 2 for 224x224 inputs);
    ``branch_stride`` the stride of both branches (2 where the stem also replaces a stem max-pool, as in
    ShuffleNetV2). Input ``(B, in_chs, H, W)``, output ``(B, out_chs, H / (stride*branch_stride), ...)``.
    ``residual=True`` adds the first conv's output to the result (the seed's ResNet stem)."""

    def __init__(self, in_chs: int, out_chs: int, act_layer: Callable[..., nn.Module] = nn.ReLU,
                 stride: int = 1, branch_stride: int = 1, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual and branch_stride == 1
        self.stem_1 = ConvNormAct(in_chs, out_chs, 3, stride, act_layer=act_layer)
        self.stem_1_1 = ConvNormAct(out_chs, out_chs, 3, branch_stride, groups=out_chs, act_layer=act_layer)
        self.stem_2p = nn.MaxPool2d(kernel_size=3, stride=branch_stride, padding=1)
        self.stem_3 = ConvNormAct(out_chs * 2, out_chs, 1, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_1(x)
        out = self.stem_3(torch.cat((self.stem_1_1(x), self.stem_2p(x)), dim=1))
        return out + x if self.residual else out


class PaddingFreeDownsample(nn.Module):
    """``op(x) + maxpool3x3/2(x)``: a stride-2 op whose convolution uses no padding, plus a max-pool.

    ``op`` is the stride-2 depthwise convolution (alone, or followed by its norm/activation) with its
    padding already set to ``(k - 3) // 2`` (see :func:`padding_free_conv`), so its output has the size
    of the unpadded 3x3/2 max-pool. ``shortcut`` (optional, e.g. a 1x1 conv) maps the pooled input to
    the op's channel count where they differ (the seed's ResNet units)."""

    def __init__(self, op: nn.Module, pool_size: int = 3, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.op = op
        # A 5x5 pool with padding 1 gives the same size as 3x3 with none; GhostNet's seed code uses it.
        self.pool = nn.MaxPool2d(kernel_size=pool_size, stride=2, padding=(pool_size - 3) // 2)
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x) + self.shortcut(self.pool(x))


def padding_free_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """Set a stride-2 conv's padding to ``(k - 3) // 2`` in place (0 for 3x3, 1 for 5x5); returns it."""
    k = conv.kernel_size[0]
    if conv.stride[0] != 2 or k not in (3, 5):
        raise ValueError(f"padding-free downsampling needs a stride-2 3x3 or 5x5 conv, got {conv}")
    conv.padding = ((k - 3) // 2, (k - 3) // 2)
    return conv


# --- swapping the blocks into library bodies -------------------------------------------------------


def _tv_mobilenetv3_large(num_classes: int, cifar: bool) -> tv_mobilenetv3.MobileNetV3:
    setting, last_channel = tv_mobilenetv3._mobilenet_v3_conf("mobilenet_v3_large")
    model = tv_mobilenetv3.MobileNetV3(setting if not cifar else _cifar_setting(setting),
                                       last_channel, num_classes=num_classes)
    if cifar:  # the seed's CIFAR model: stride 1 in the stem conv and in the first stride-2 block (C1)
        model.features[0][0].stride = (1, 1)
    return model


def _cifar_setting(setting: list) -> list:
    setting[1].stride = 1
    return setting


def mobilenetv3_to_padding_free(model: tv_mobilenetv3.MobileNetV3, stem_stride: int) -> nn.Module:
    """Swap the stem for :class:`StemBlock` and every stride-2 depthwise conv-BN-act for
    :class:`PaddingFreeDownsample` in a torchvision MobileNetV3 (in place); returns the model."""
    stem_chs = model.features[0][0].out_channels
    model.features[0] = StemBlock(3, stem_chs, nn.Hardswish, stride=stem_stride)
    for block in model.features[1:]:
        if not isinstance(block, tv_mobilenetv3.InvertedResidual):
            continue
        for i, layer in enumerate(block.block):
            conv = layer[0] if isinstance(layer, nn.Sequential) else None
            if isinstance(conv, nn.Conv2d) and conv.stride[0] == 2 and conv.groups == conv.in_channels:
                padding_free_conv(conv)
                block.block[i] = PaddingFreeDownsample(layer)
    return model


def shufflenetv2_to_padding_free(model: tv_shufflenetv2.ShuffleNetV2, stride: int) -> nn.Module:
    """Swap conv1 + max-pool for :class:`StemBlock` and wrap each stride-2 depthwise conv of
    torchvision's ShuffleNetV2 (both branches) in :class:`PaddingFreeDownsample` (in place)."""
    stem_chs = model.conv1[0].out_channels
    model.conv1 = StemBlock(3, stem_chs, nn.ReLU, stride=stride, branch_stride=stride)
    model.maxpool = nn.Identity()
    for stage in (model.stage2, model.stage3, model.stage4):
        for unit in stage:
            for branch in (unit.branch1, unit.branch2):
                for i, layer in enumerate(branch):
                    if isinstance(layer, nn.Conv2d) and layer.stride[0] == 2:
                        branch[i] = PaddingFreeDownsample(padding_free_conv(layer))
    return model


def _timm_ghostnet(num_classes: int, cifar: bool) -> timm_ghostnet.GhostNet:
    cfgs = [[list(row) for row in stage] for stage in _GHOSTNET_CFGS]
    if cifar:  # the seed's CIFAR model: stride 1 in the stem and the first stride-2 stage
        cfgs[1][0][4] = 1
    model = timm_ghostnet.GhostNet(cfgs, num_classes=num_classes)
    if cifar:
        model.conv_stem.stride = (1, 1)
    return model


def ghostnet_to_padding_free(model: timm_ghostnet.GhostNet, stride: int) -> nn.Module:
    """Swap conv_stem/bn1/act1 for :class:`StemBlock` and each stride-2 GhostBottleneck's depthwise
    conv + BN for :class:`PaddingFreeDownsample` (its shortcut's depthwise conv loses its padding too)."""
    stem_chs = model.conv_stem.out_channels
    model.conv_stem = StemBlock(3, stem_chs, nn.ReLU, stride=stride)
    model.bn1, model.act1 = nn.Identity(), nn.Identity()
    for stage in model.blocks:
        for block in stage:
            if not isinstance(block, timm_ghostnet.GhostBottleneck) or block.stride == 1:
                continue
            k = block.conv_dw.kernel_size[0]
            block.conv_dw = PaddingFreeDownsample(
                nn.Sequential(padding_free_conv(block.conv_dw), block.bn_dw), pool_size=k)
            block.bn_dw = nn.Identity()
            padding_free_conv(block.shortcut[0])
    return model


# k, t, c, SE, s  (GhostNet 1.0x, as timm and the seed build it)
_GHOSTNET_CFGS = [
    [[3, 16, 16, 0, 1]],
    [[3, 48, 24, 0, 2]],
    [[3, 72, 24, 0, 1]],
    [[5, 72, 40, 0.25, 2]],
    [[5, 120, 40, 0.25, 1]],
    [[3, 240, 80, 0, 2]],
    [[3, 200, 80, 0, 1], [3, 184, 80, 0, 1], [3, 184, 80, 0, 1], [3, 480, 112, 0.25, 1],
     [3, 672, 112, 0.25, 1]],
    [[5, 672, 160, 0.25, 2]],
    [[5, 960, 160, 0, 1], [5, 960, 160, 0.25, 1], [5, 960, 160, 0, 1], [5, 960, 160, 0.25, 1]],
]


def build_body(family: str, num_classes: int, dataset: str, padding_free: bool) -> nn.Module:
    """The seed's network ``family`` (mobilenetv3_large, ghostnet, shufflenetv2) for ``dataset``
    (cifar100: CIFAR strides; vegfru292 or in1k: ImageNet strides), as original or padding-free twin."""
    cifar = dataset == "cifar100"
    stride = 1 if cifar else 2
    if family == "mobilenetv3_large":
        model = _tv_mobilenetv3_large(num_classes, cifar)
        return mobilenetv3_to_padding_free(model, stride) if padding_free else model
    if family == "ghostnet":
        model = _timm_ghostnet(num_classes, cifar)
        return ghostnet_to_padding_free(model, stride) if padding_free else model
    if family == "shufflenetv2":
        model = tv_shufflenetv2.ShuffleNetV2([4, 8, 4], [24, 116, 232, 464, 1024], num_classes=num_classes)
        if cifar:  # the seed's CIFAR model: no downsampling in the stem
            model.conv1[0].stride = (1, 1)
            model.maxpool = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        return shufflenetv2_to_padding_free(model, stride) if padding_free else model
    raise ValueError(f"unknown padding-free family {family!r}")


def _cfg(name: str, family: str, dataset: str, published: Published, source: str) -> ModelConfig:
    size = 32 if dataset == "cifar100" else 224
    classes = {"cifar100": 100, "vegfru292": 292, "in1k": 1000}[dataset]
    return ModelConfig(
        name=name, family=f"padding_free/{family}", source=source,
        input_size=(3, size, size), crop_pct=1.0 if size == 32 else 0.875,
        mean=CIFAR100_MEAN if size == 32 else (0.485, 0.456, 0.406),
        std=CIFAR100_STD if size == 32 else (0.229, 0.224, 0.225),
        first_conv=_FIRST_CONV[family] + (".stem_1.0" if name.endswith("_pfd") else _FIRST_CONV_TAIL[family]),
        classifier=_CLASSIFIER[family], num_classes=classes, published=published)


# module paths of the first conv (before / after the stem swap) and of the classifier
_FIRST_CONV = {"mobilenetv3_large": "features.0", "ghostnet": "conv_stem", "shufflenetv2": "conv1"}
_FIRST_CONV_TAIL = {"mobilenetv3_large": ".0", "ghostnet": "", "shufflenetv2": ".0"}
_CLASSIFIER = {"mobilenetv3_large": "classifier.3", "ghostnet": "classifier", "shufflenetv2": "fc"}


_SEED = "seed 001 (Padding-free Downsampling), table {}; body: {}"
_BODY = {"mobilenetv3_large": "torchvision MobileNetV3", "ghostnet": "timm GhostNet",
         "shufflenetv2": "torchvision ShuffleNetV2 1.0x"}
_FLOPS_NOTE = ("the seed's FLOPs column is thop's multiply-add count, which adds BN, activation and "
               "pooling terms to the conv/linear MACs measured here (FlopCounterMode / 2): a few "
               "percent higher")

# family, dataset, padding-free, seed table, params (M, 3 decimals as printed), seed FLOPs (M), top-1
_VARIANTS = [
    ("mobilenetv3_large", "cifar100", False, "Orig CIFAR-100 (second set)", 4.330, 68.8, 76.00),
    ("mobilenetv3_large", "cifar100", True, "Ours CIFAR-100 (second set)", 4.331, 54.7, 76.60),
    ("ghostnet", "cifar100", False, "Orig CIFAR-100 (second set)", 4.029, 44.6, 74.00),
    ("ghostnet", "cifar100", True, "Ours CIFAR-100 (second set)", 4.030, 34.8, 74.10),
    ("shufflenetv2", "cifar100", False, "Orig CIFAR-100 (second set)", 1.356, 46.2, 70.90),
    ("shufflenetv2", "cifar100", True, "Ours CIFAR-100 (second set)", 1.358, 35.7, 71.50),
    ("mobilenetv3_large", "vegfru292", False, "Orig VegFru-292", 4.576, 224.5, 89.20),
    ("mobilenetv3_large", "vegfru292", True, "Ours VegFru-292", 4.577, 205.7, 89.90),
    ("ghostnet", "vegfru292", False, "Orig VegFru-292", 4.276, 147.9, 89.60),
    ("ghostnet", "vegfru292", True, "Ours VegFru-292", 4.276, 136.9, 90.30),
    ("shufflenetv2", "vegfru292", False, "Orig VegFru-292", 1.553, 148.1, 88.40),
    ("shufflenetv2", "vegfru292", True, "Ours VegFru-292", 1.554, 130.7, 87.70),
    ("mobilenetv3_large", "in1k", False, "Orig ImageNet", 5.480, 232.5, 69.50),
    ("mobilenetv3_large", "in1k", True, "Ours ImageNet", 5.481, 214.9, 69.50),
]

_IN1K_NOTE = ("the seed prints 5.480M/5.481M; the network (torchvision MobileNetV3-Large, which the "
              "seed's code is) has 5,483,032 parameters and its padding-free twin 720 more "
              "(5,483,752): the seed's two figures differ by the same stem, but start from 5.480")


def _register(family: str, dataset: str, pfd: bool, table: str, params: float, flops: float,
              top1: float) -> None:
    name = f"{family}_{dataset}" + ("_pfd" if pfd else "")
    # The seed's "FLOPs" column is thop's count, i.e. multiply-adds: stored as MACs.
    published = Published(params=params, params_precision=3, macs=flops / 1000, top1=top1,
                          num_classes={"cifar100": 100, "vegfru292": 292, "in1k": 1000}[dataset],
                          params_note=_IN1K_NOTE if dataset == "in1k" else "",
                          macs_note=_FLOPS_NOTE, note=f"seed 001, table {table}")
    config = _cfg(name, family, dataset, published, _SEED.format(table, _BODY[family]))
    builder = partial(_build, family=family, dataset=dataset, padding_free=pfd)
    builder.__doc__ = f"{name}: {table} row of seed 001."
    register_model(config)(builder)


def _build(num_classes: int, family: str, dataset: str, padding_free: bool, **kwargs) -> nn.Module:
    return build_body(family, num_classes, dataset, padding_free)


for _row in _VARIANTS:
    _register(*_row)
