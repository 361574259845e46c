"""The seed's comparison baselines (seed 001, "Comparison with other downsampling"): the CIFAR-100
networks of its second hyper-parameter set with EfficientFormerV2's downsampling (Li et al., ICCV 2023)
in place of each stride-2 unit.

That downsampling is a conv3x3/2 (with bias) + BN, plus, in the deeper stages, timm's
``Attention2dDownsample`` (local-global query, 8 heads, key dim 16) added to it. The seed swaps it
in for the whole stride-2 unit: MobileNetV3-Large's C2-C4 blocks (attention in C3, C4), GhostNet's
stride-2 bottlenecks (attention in stages 4, 5), ShuffleNetV2's first unit of each stage (attention
in stage 4) and ParC-MobileNetV2's stride-2 inverted residuals (attention in the 64 and 160 stages).
The attention's bias table fixes the feature map size, so these models take 32x32 inputs only.

The seed counts with thop, which leaves out ``attention_biases`` (and ParC's positional embeddings):
:func:`thop_uncounted_params` gives that part.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torchvision.models.mobilenetv3 as tv_mobilenetv3
import torchvision.models.mobilenetv2 as tv_mobilenetv2
from timm.models.efficientformer_v2 import Attention2dDownsample

from imnet.errors import ImnetError
from imnet.zoo.padding_free import CIFAR100_MEAN, CIFAR100_STD, build_body
from imnet.zoo.parc import ParCMobileNetV2, ParCOperator
from imnet.zoo.registry import ModelConfig, Published, register_model


class EfficientFormerDownsample(nn.Module):
    """conv3x3/2 + BN (+ attention downsampling): ``(B, in, R, R) -> (B, out, ceil(R/2), ceil(R/2))``."""

    def __init__(self, in_chs: int, out_chs: int, resolution: int, attention: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 3, 2, 1)
        self.bn = nn.BatchNorm2d(out_chs)
        self.attn = (Attention2dDownsample(dim=in_chs, out_dim=out_chs, resolution=resolution, act_layer=nn.GELU)
                     if attention else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(x))
        if self.attn is None:
            return out
        if tuple(x.shape[-2:]) != self.attn.resolution:
            raise ImnetError(f"this EfficientFormerV2 attention downsampling is built for "
                             f"{self.attn.resolution[0]}x{self.attn.resolution[1]} feature maps (32x32 "
                             f"inputs), got {x.shape[-2]}x{x.shape[-1]}; use --img-size 32")
        return out + self.attn(x)


def _mobilenetv3(num_classes: int) -> nn.Module:
    model = build_body("mobilenetv3_large", num_classes, "cifar100", padding_free=False)
    size = 32
    for i, block in enumerate(model.features):
        if isinstance(block, tv_mobilenetv3.InvertedResidual) and block._is_cn:
            in_chs = block.block[0][0].in_channels
            model.features[i] = EfficientFormerDownsample(in_chs, block.out_channels, size, attention=size <= 16)
            size //= 2
    return model


def _ghostnet(num_classes: int) -> nn.Module:
    model = build_body("ghostnet", num_classes, "cifar100", padding_free=False)
    size = 32
    for stage in model.blocks:
        for i, block in enumerate(stage):
            if getattr(block, "stride", 1) == 2:
                in_chs = block.ghost1.primary_conv[0].in_channels
                out_chs = block.shortcut[-1].num_features
                stage[i] = EfficientFormerDownsample(in_chs, out_chs, size, attention=size <= 16)
                size //= 2
    return model


def _shufflenetv2(num_classes: int) -> nn.Module:
    model = build_body("shufflenetv2", num_classes, "cifar100", padding_free=False)
    size, in_chs = 32, model.conv1[0].out_channels
    for stage in (model.stage2, model.stage3, model.stage4):
        out_chs = stage[1].branch2[0].in_channels * 2
        stage[0] = EfficientFormerDownsample(in_chs, out_chs, size, attention=size <= 8)
        size, in_chs = size // 2, out_chs
    return model


def _parc_mobilenetv2(num_classes: int) -> nn.Module:
    model = ParCMobileNetV2(num_classes, input_size=32)
    size = 32
    for i, block in enumerate(model.features):
        if isinstance(block, tv_mobilenetv2.InvertedResidual) and block.stride == 2:
            in_chs = block.conv[0][0].in_channels
            model.features[i] = EfficientFormerDownsample(in_chs, block.out_channels, size, attention=size <= 16)
            size //= 2
    return model


def thop_uncounted_params(model: nn.Module) -> int:
    """Parameters thop does not count: attention bias tables and ParC positional embeddings."""
    biases = sum(m.attention_biases.numel() for m in model.modules() if isinstance(m, Attention2dDownsample))
    pes = sum(m.pe.numel() for m in model.modules() if isinstance(m, ParCOperator) and m.pe is not None)
    return biases + pes


_TABLE = "EfficientFormerv2-Downsampling CIFAR-100"
_PARAMS_NOTE = ("the seed counts with thop, which leaves out the attention bias tables{}; without "
                "them the count matches ({:,})")
_MACS_NOTE = ("the seed's FLOPs column is thop's multiply-add count, which leaves out the attention "
              "matmuls and adds BN/activation terms; measured MACs count every conv/linear/matmul")

# name, builder, first conv, classifier, params (M), seed FLOPs (M), top-1, thop-counted params,
# what else thop leaves out
_VARIANTS = [
    ("mobilenetv3_large_cifar100_efv2ds", _mobilenetv3, "features.0.0", "classifier.3", 4.317, 78.0, 75.80,
     4316812, ""),
    ("ghostnet_cifar100_efv2ds", _ghostnet, "conv_stem", "classifier", 4.092, 58.3, 74.30, 4091996, ""),
    ("shufflenetv2_cifar100_efv2ds", _shufflenetv2, "conv1.0", "fc", 2.804, 84.1, 70.60, 2803558, ""),
    ("parc_mobilenetv2_cifar100_efv2ds", _parc_mobilenetv2, "features.0.0", "classifier.1", 2.558, 97.5, 75.70,
     2558004, " and the ParC positional embeddings"),
]


def _build(num_classes: int, body, **kwargs) -> nn.Module:
    return body(num_classes)


for _name, _body, _first_conv, _classifier, _params, _flops, _top1, _thop, _extra in _VARIANTS:
    register_model(ModelConfig(
        name=_name, family="efficientformer_downsampling", num_classes=100, first_conv=_first_conv,
        classifier=_classifier,
        source=f"seed 001 (Padding-free Downsampling), table {_TABLE}; bodies as in imnet.zoo.padding_free",
        input_size=(3, 32, 32), crop_pct=1.0, mean=CIFAR100_MEAN, std=CIFAR100_STD,
        published=Published(params=_params, params_precision=3, macs=_flops / 1000, top1=_top1, num_classes=100,
                            params_note=_PARAMS_NOTE.format(_extra, _thop), macs_note=_MACS_NOTE,
                            note=f"seed 001, table {_TABLE}"),
    ))(partial(_build, body=_body))
