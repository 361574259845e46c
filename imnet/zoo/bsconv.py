"""BSConv networks (Haase & Amthor, CVPR 2020; zeiss-microscopy/BSConv) and their padding-free twins.

No library ships BSConv, so the networks are written here: the CIFAR MobileNetV3-Large (with its
lightweight head: 960 channels straight into a 1x1 classifier), the CIFAR ResNet-20/110 and the
pre-activation Wide ResNets, the BSConv-U replacement (every full 3x3 conv becomes a pointwise conv
followed by a depthwise one) and BSConv-S for MobileNets (same network plus an orthonormality
regulariser on each bottleneck's projection; ``model.regularization_loss()``).

The padding-free twins are the seed's (001, first hyper-parameter set and Stanford Dogs) with the
blocks of :mod:`imnet.zoo.padding_free`: the hybrid stem replaces the init conv, and every stride-2
conv loses its padding and gains a 3x3/2 max-pool branch (through a 1x1 conv where the unit changes
width). The ResNet projection shortcut of a stride-2 unit becomes depthwise 3x3/2 (no padding) +
BN + 1x1 + BN, as in the seed's code.
"""
from __future__ import annotations

import re
from functools import partial

import torch
import torch.nn as nn

from imnet.zoo.padding_free import (CIFAR100_MEAN, CIFAR100_STD, PaddingFreeDownsample, StemBlock,
                                    padding_free_conv)
from imnet.zoo.fidelity import Reference, register_reference
from imnet.zoo.registry import ModelConfig, Published, register_model


# --- building blocks ---------------------------------------------------------------------------------


class HardSigmoid(nn.Module):
    """relu6(x + 3) / 6, as BSConv's SE units use it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.relu6(x + 3.0) / 6.0


_ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish}


def conv_block(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, groups: int = 1,
               act: str | None = "relu", use_bn: bool = True) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> optional BN -> optional activation."""
    layers: list[nn.Module] = [nn.Conv2d(in_chs, out_chs, kernel_size, stride, (kernel_size - 1) // 2,
                                         groups=groups, bias=False)]
    if use_bn:
        layers.append(nn.BatchNorm2d(out_chs))
    if act is not None:
        layers.append(_ACTS[act](inplace=True))
    return nn.Sequential(*layers)


class SEUnit(nn.Module):
    """Squeeze-excite with biased 1x1 convs, ``channels // 4`` squeeze channels, hard-sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels // 4, 1)
        self.conv2 = nn.Conv2d(channels // 4, channels, 1)
        self.gate = HardSigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.conv2(torch.relu(self.conv1(s))))


class BSConvU(nn.Sequential):
    """Blueprint separable conv, unconstrained: pointwise ``in -> out`` then depthwise ``k x k``."""

    def __init__(self, conv: nn.Conv2d) -> None:
        out_chs = conv.out_channels
        super().__init__()
        self.pw = nn.Conv2d(conv.in_channels, out_chs, 1, bias=False)
        self.dw = nn.Conv2d(out_chs, out_chs, conv.kernel_size, conv.stride, conv.padding,
                            groups=out_chs, bias=conv.bias is not None)


def to_bsconv_u(module: nn.Module) -> nn.Module:
    """Replace every full (groups=1) 3x3 or 5x5 ``nn.Conv2d`` below ``module`` by :class:`BSConvU`."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and child.groups == 1 and child.kernel_size in ((3, 3), (5, 5)):
            setattr(module, name, BSConvU(child))
        else:
            to_bsconv_u(child)
    return module


class LinearBottleneck(nn.Module):
    """MobileNetV2/V3 unit: 1x1 expand -> kxk depthwise (stride) -> [SE] -> 1x1 project (+ skip)."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, stride: int, act: str,
                 kernel_size: int, use_se: bool, padding_free: bool = False) -> None:
        super().__init__()
        self.use_skip = in_chs == out_chs and stride == 1
        self.conv1 = conv_block(in_chs, mid_chs, 1, act=act)
        self.conv2 = conv_block(mid_chs, mid_chs, kernel_size, stride, groups=mid_chs, act=act)
        if padding_free and stride == 2:
            padding_free_conv(self.conv2[0])
            self.conv2 = PaddingFreeDownsample(self.conv2)
        self.se = SEUnit(mid_chs) if use_se else nn.Identity()
        self.conv3 = conv_block(mid_chs, out_chs, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.se(self.conv2(self.conv1(x))))
        return x + y if self.use_skip else y


# stage: out channels per unit, mid channels per unit, kernel, activation, SE per unit
_MOBILENETV3_LARGE = [
    ([16], [16], 3, "relu", [0]),
    ([24, 24], [64, 72], 3, "relu", [0, 0]),
    ([40, 40, 40], [72, 120, 120], 5, "relu", [1, 1, 1]),
    ([80, 80, 80, 80, 112, 112], [240, 200, 184, 184, 480, 672], 3, "hswish", [0, 0, 0, 0, 1, 1]),
    ([160, 160, 160], [672, 960, 960], 5, "hswish", [1, 1, 1]),
]


class BSConvMobileNetV3(nn.Module):
    """BSConv's MobileNetV3-Large with the lightweight head (final 1x1 conv to 960, then classifier).

    ``cifar=True``: 32x32 inputs, stride 1 in the init conv and the second stage. ``bsconv_s=True``
    adds :meth:`regularization_loss` (BSConv-S, p=1/6: same parameters). ``padding_free=True`` is the
    seed's twin: hybrid stem and padding-free stride-2 depthwise convs."""

    def __init__(self, num_classes: int = 1000, cifar: bool = False, bsconv_s: bool = False,
                 padding_free: bool = False) -> None:
        super().__init__()
        self.bsconv_s = bsconv_s
        strides = [1, 1, 2, 2, 2] if cifar else [1, 2, 2, 2, 2]
        init_stride = 1 if cifar else 2
        self.data_bn = nn.BatchNorm2d(3)
        self.init_conv = (StemBlock(3, 16, nn.Hardswish, stride=init_stride) if padding_free
                          else conv_block(3, 16, 3, init_stride, act="hswish"))
        stages, in_chs = [], 16
        for (outs, mids, k, act, ses), stride in zip(_MOBILENETV3_LARGE, strides):
            units = []
            for i, (out_chs, mid_chs, se) in enumerate(zip(outs, mids, ses)):
                units.append(LinearBottleneck(in_chs, mid_chs, out_chs, stride if i == 0 else 1, act, k,
                                              bool(se), padding_free))
                in_chs = out_chs
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.final_conv = conv_block(in_chs, 960, 1, act="hswish")
        self.classifier = nn.Conv2d(960, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_conv(self.stages(self.init_conv(self.data_bn(x))))
        return self.classifier(x.mean((2, 3), keepdim=True)).flatten(1)

    def regularization_loss(self) -> torch.Tensor:
        """BSConv-S: sum over bottlenecks of ||W W^T - I||_F of the 1x1 projection weights W."""
        if not self.bsconv_s:
            raise RuntimeError("regularization_loss is defined for the BSConv-S variant only")
        losses = []
        for unit in self.stages.modules():
            if isinstance(unit, LinearBottleneck):
                w = unit.conv3[0].weight[:, :, 0, 0]
                eye = torch.eye(w.shape[0], device=w.device, dtype=w.dtype)
                losses.append(torch.linalg.matrix_norm(w @ w.T - eye))
        return torch.stack(losses).sum()


class ResNetUnit(nn.Module):
    """CIFAR ResNet unit, post-activation (ResNet-20/110) or pre-activation (Wide ResNet).

    With ``padding_free`` and stride 2: conv1 runs without padding and a 3x3/2 max-pool of the input
    (through a 1x1 conv to the new width) is added to it; the projection becomes depthwise 3x3/2 (no
    padding) + BN + 1x1 + BN."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, preact: bool,
                 padding_free: bool = False) -> None:
        super().__init__()
        self.preact = preact
        self.pre = nn.Sequential(nn.BatchNorm2d(in_chs), nn.ReLU(inplace=True)) if preact else nn.Identity()
        self.conv1 = conv_block(in_chs, out_chs, 3, stride)
        self.conv2 = conv_block(out_chs, out_chs, 3, act=None, use_bn=not preact)
        self.projection: nn.Module | None = None
        if padding_free and stride == 2:
            padding_free_conv(self.conv1[0])
            self.conv1 = PaddingFreeDownsample(self.conv1, shortcut=nn.Conv2d(in_chs, out_chs, 1, bias=False))
            self.projection = nn.Sequential(
                padding_free_conv(nn.Conv2d(in_chs, in_chs, 3, 2, groups=in_chs, bias=False)),
                nn.BatchNorm2d(in_chs), nn.Conv2d(in_chs, out_chs, 1, bias=False), nn.BatchNorm2d(out_chs))
        elif in_chs != out_chs or stride != 1:
            self.projection = conv_block(in_chs, out_chs, 1, stride, act=None, use_bn=not preact)
        self.relu = nn.Identity() if preact else nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact and self.projection is not None:
            x = self.pre(x)  # the projection sees the pre-activated input
            residual = self.projection(x)
        else:
            residual = x if self.projection is None else self.projection(x)
            x = self.pre(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


class BSConvCifarResNet(nn.Module):
    """BSConv's CIFAR ResNet / pre-activation Wide ResNet (widths 16, 16k, 32k, 64k; input 32x32)."""

    def __init__(self, units_per_stage: int, width: int = 1, preact: bool = False,
                 num_classes: int = 100, padding_free: bool = False) -> None:
        super().__init__()
        self.data_bn = nn.BatchNorm2d(3)
        self.init_unit = (StemBlock(3, 16, nn.ReLU) if padding_free
                          else conv_block(3, 16, 3, act=None if preact else "relu", use_bn=not preact))
        stages, in_chs = [], 16
        for stage_id, chs in enumerate((16 * width, 32 * width, 64 * width)):
            units = []
            for unit_id in range(units_per_stage):
                stride = 2 if unit_id == 0 and stage_id > 0 else 1
                units.append(ResNetUnit(in_chs, chs, stride, preact, padding_free))
                in_chs = chs
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.final_act = nn.Sequential(nn.BatchNorm2d(in_chs), nn.ReLU(inplace=True)) if preact else nn.Identity()
        self.classifier = nn.Conv2d(in_chs, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_act(self.stages(self.init_unit(self.data_bn(x))))
        return self.classifier(x.mean((2, 3), keepdim=True)).flatten(1)


# --- foreign checkpoints -----------------------------------------------------------------------------

# the bsconv package's names -> this module's, applied in order to each key
_BSCONV_RENAMES = [
    (r"^backbone\.data_bn\.", "data_bn."),
    (r"^backbone\.init_conv\.conv\.", "init_conv.0."), (r"^backbone\.init_conv\.bn\.", "init_conv.1."),
    (r"^backbone\.init_unit\.conv\.conv\.", "init_unit.0."), (r"^backbone\.init_unit\.conv\.bn\.", "init_unit.1."),
    (r"^backbone\.stage(\d+)\.unit(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.{int(m[2]) - 1}."),
    (r"\.(conv\d|projection)\.conv\.", r".\1.0."), (r"\.(conv\d|projection)\.bn\.", r".\1.1."),
    (r"\.se_unit\.", ".se."), (r"^(stages\.\d+\.\d+)\.bn\.", r"\1.pre.0."),
    (r"^backbone\.final_conv1\.conv\.", "final_conv.0."), (r"^backbone\.final_conv1\.bn\.", "final_conv.1."),
    (r"^backbone\.final_activation\.bn\.", "final_act.0."), (r"^classifier\.conv\.", "classifier."),
]


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Map a checkpoint of the bsconv package's models (``backbone.stage1.unit1.conv1.conv``, ...,
    ``classifier.conv``) onto this module's names; imnet's own keys pass unchanged."""
    if not any(k.startswith("backbone.") for k in state_dict):
        return state_dict
    out = {}
    for key, value in state_dict.items():
        for pattern, target in _BSCONV_RENAMES:
            key = re.sub(pattern, target, key)
        out[key] = value
    return out


# --- variants -----------------------------------------------------------------------------------------


def _mobilenetv3(num_classes: int, cifar: bool, bsconv_s: bool, padding_free: bool) -> nn.Module:
    return BSConvMobileNetV3(num_classes, cifar=cifar, bsconv_s=bsconv_s, padding_free=padding_free)


def _resnet(num_classes: int, units: int, width: int, preact: bool, bsconv_u: bool,
            padding_free: bool) -> nn.Module:
    model = BSConvCifarResNet(units, width, preact, num_classes, padding_free)
    return to_bsconv_u(model) if bsconv_u else model


_FLOPS_NOTE = ("the seed's FLOPs column is thop's multiply-add count (conv/linear plus BN, activation "
               "and pooling terms); the MACs measured here count conv/linear only")
_WRN40_3_NOTE = ("the seed prints 5.287M for its WRN-40-3 twin; the twin built by the seed's own rule "
                 "(hybrid stem, padding-free stride-2 conv with a 1x1 max-pool branch, depthwise+1x1 "
                 "projection, which reproduces ResNet-20, ResNet-110 and WRN-40-8 exactly) has "
                 "5,081,882. 5.287M is what the seed's shipped pre-activation code gives with a full "
                 "3x3 projection plus two 1x1 convs per stride-2 unit, a state of its commented-out "
                 "lines that none of its other rows use")
_TRUNCATED_NOTE = ("3,066,512 parameters, exactly the seed's own code; its table prints 3.066M "
                   "(truncated, where its other rows round: the twin's 3,067,232 prints as 3.067M)")
_DOGS_NOTE = ("the seed ships no Stanford Dogs code; this twin is the CIFAR twin at 224x224 with a "
              "stride-2 stem (720 parameters more than the original, 3,086,452), the seed prints "
              "3.087M (0.001M more, as if a 1x1 conv of 16 channels were in its stem)")

# name, builder kwargs, table, params (M, 3 decimals), seed FLOPs (M), top-1, classes, input size
_VARIANTS = [
    ("bsconv_mobilenetv3_large_cifar100", dict(arch="mnv3", cifar=True, bsconv_s=False),
     "Orig CIFAR-100 (first set)", 3.066, 68.5, 75.37),
    ("bsconv_mobilenetv3_large_bsconvs_cifar100", dict(arch="mnv3", cifar=True, bsconv_s=True),
     "Orig CIFAR-100 (first set)", 3.066, 68.5, 77.87),
    ("bsconv_resnet20_cifar100", dict(arch="resnet", units=3, width=1, preact=False, bsconv_u=False),
     "Orig CIFAR-100 (first set)", 0.278, 41.4, 68.12),
    ("bsconv_resnet110_bsconvu_cifar100", dict(arch="resnet", units=18, width=1, preact=False, bsconv_u=True),
     "Orig CIFAR-100 (first set)", 0.245, 41.8, 71.58),
    ("bsconv_wrn40_3_cifar100", dict(arch="resnet", units=6, width=3, preact=True, bsconv_u=False),
     "Orig CIFAR-100 (first set)", 5.056, 735.8, 76.23),
    ("bsconv_wrn40_8_bsconvu_cifar100", dict(arch="resnet", units=6, width=8, preact=True, bsconv_u=True),
     "Orig CIFAR-100 (first set)", 4.286, 675.1, 77.79),
    ("bsconv_mobilenetv3_large_dogs120", dict(arch="mnv3", cifar=False, bsconv_s=False),
     "Orig Stanford Dogs", 3.086, 230.1, 51.07),
    ("bsconv_mobilenetv3_large_bsconvs_dogs120", dict(arch="mnv3", cifar=False, bsconv_s=True),
     "Orig Stanford Dogs", 3.086, 230.1, 59.68),
]
_TWINS = {  # twin of each original: table, params, FLOPs, top-1
    "bsconv_mobilenetv3_large_cifar100": ("Ours CIFAR-100 (first set)", 3.067, 54.6, 75.71),
    "bsconv_mobilenetv3_large_bsconvs_cifar100": ("Ours CIFAR-100 (first set)", 3.067, 54.6, 78.36),
    "bsconv_resnet20_cifar100": ("Ours CIFAR-100 (first set)", 0.282, 37.8, 68.30),
    "bsconv_resnet110_bsconvu_cifar100": ("Ours CIFAR-100 (first set)", 0.249, 38.6, 71.62),
    "bsconv_wrn40_3_cifar100": ("Ours CIFAR-100 (first set)", 5.287, 668.7, 76.28),
    "bsconv_wrn40_8_bsconvu_cifar100": ("Ours CIFAR-100 (first set)", 4.457, 615.6, 78.05),
    "bsconv_mobilenetv3_large_dogs120": ("Ours Stanford Dogs", 3.087, 212.6, 54.11),
    "bsconv_mobilenetv3_large_bsconvs_dogs120": ("Ours Stanford Dogs", 3.087, 212.6, 60.79),
}


def _build(num_classes: int, arch: str, padding_free: bool, **kw) -> nn.Module:
    if arch == "mnv3":
        return _mobilenetv3(num_classes, kw["cifar"], kw["bsconv_s"], padding_free)
    return _resnet(num_classes, kw["units"], kw["width"], kw["preact"], kw["bsconv_u"], padding_free)


def _register(name: str, kwargs: dict, table: str, params: float, flops: float, top1: float,
              padding_free: bool) -> None:
    dogs = name.endswith("dogs120")
    classes, size = (120, 224) if dogs else (100, 32)
    params_note = ""
    if not padding_free and name.startswith("bsconv_mobilenetv3_large") and not dogs:
        params_note = _TRUNCATED_NOTE
    elif padding_free and name.startswith("bsconv_wrn40_3"):
        params_note = _WRN40_3_NOTE
    elif padding_free and dogs:
        params_note = _DOGS_NOTE
    published = Published(params=params, params_precision=3, macs=flops / 1000, top1=top1,
                          num_classes=classes, params_note=params_note, macs_note=_FLOPS_NOTE,
                          note=f"seed 001, table {table}")
    full_name = name + ("_pfd" if padding_free else "")
    config = ModelConfig(
        name=full_name, family="bsconv", num_classes=classes, published=published,
        source=f"seed 001 (Padding-free Downsampling) on zeiss-microscopy/BSConv, table {table}",
        input_size=(3, size, size), crop_pct=1.0 if size == 32 else 0.875,
        mean=CIFAR100_MEAN if size == 32 else (0.485, 0.456, 0.406),
        std=CIFAR100_STD if size == 32 else (0.229, 0.224, 0.225),
        first_conv=_first_conv(kwargs, padding_free), classifier="classifier", checkpoint_filter=checkpoint_filter_fn)
    register_model(config)(partial(_build, padding_free=padding_free, **kwargs))
    if not padding_free:
        register_reference(full_name, bsconv_reference(name, kwargs, classes, size))


def _first_conv(kwargs: dict, padding_free: bool) -> str:
    """Module path of the first conv: the init conv, the stem's first conv, or BSConv-U's pointwise part."""
    path = ("init_conv" if kwargs["arch"] == "mnv3" else "init_unit") + (".stem_1.0" if padding_free else ".0")
    return path + (".pw" if kwargs.get("bsconv_u") else "")




# --- references: the bsconv package builds the same networks as the originals --------------------------

def _bsconv_architecture(kwargs: dict, dogs: bool) -> str:
    """The bsconv package's architecture string of an original (BSConv-S: ``_bsconvs_p1d6``)."""
    if kwargs["arch"] == "mnv3":
        return ("" if dogs else "cifar_") + "mobilenetv3_large_w1" + ("_bsconvs_p1d6" if kwargs["bsconv_s"] else "")
    depth = 6 * kwargs["units"] + 2 if not kwargs["preact"] else 6 * kwargs["units"] + 4
    base = f"cifar_wrn{depth}_{kwargs['width']}" if kwargs["preact"] else f"cifar_resnet{depth}"
    return base + ("_bsconvu" if kwargs["bsconv_u"] else "")


def bsconv_reference(name: str, kwargs: dict, classes: int, size: int) -> Reference:
    """The bsconv package's ``get_model`` of original ``name`` (not the padding-free twins, which it
    does not have), its state_dict mapped by :func:`checkpoint_filter_fn`."""
    architecture = _bsconv_architecture(kwargs, name.endswith("dogs120"))

    def build(num_classes: int) -> nn.Module:
        import bsconv.pytorch

        return bsconv.pytorch.get_model(architecture, num_classes=num_classes)

    return Reference(f"bsconv {architecture}", build, requires="bsconv",
                     input_size=(3, 64, 64) if size > 32 else (3, 32, 32), num_classes=classes)


for _name, _kwargs, *_figures in _VARIANTS:
    _register(_name, _kwargs, *_figures, padding_free=False)
    _register(_name, _kwargs, *_TWINS[_name], padding_free=True)
