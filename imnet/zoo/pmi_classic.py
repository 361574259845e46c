"""The classic rows of seed 002 (pytorch_model_integration) that no library builds as printed.

Each is a library body changed the way the seed's parameter counts show (all counted at 1000 classes):

* ``pmi_vgg11/13/16/19``: the table's 9.74M-20.5M VGGs are torchvision's VGG-BN feature stacks
  (configs A, B, D, E) followed by global average pooling and a single 512 -> 1000 linear layer, not the
  three 4096-wide fully connected layers (which hold 123.6M of torchvision's 132.9M-143.7M).
* ``pmi_resnet18/34``: torchvision's ResNet with a 1x1 conv + BN projection shortcut on the first unit
  of layer1 too (64 -> 64, 4,224 parameters), where torchvision uses the identity.
* ``pmi_resnext50/101_<C>x<d>d``: torchvision's ResNet with ``groups=C, width_per_group=d``.
* ``pmi_densenet121/169/201/264``: torchvision's DenseNet (growth 32, 64 initial features) with the
  stem BatchNorm (64 channels) replaced by one on the input (3 channels): 122 parameters fewer, the
  constant difference between all four of the seed's DenseNet rows and torchvision's. The seed's
  DenseNet source could not be read; the structure is inferred from that constant difference.
* ``pmi_preactresnet18/34/50/101/152``: pre-activation ResNets (He et al. 2016) in the seed's form: no
  stem BN, no final BN, bias-free 1x1 conv shortcuts (no BN), one also on the first unit of layer1.
* ``pmi_mobilenetv2``: MobileNetV2 1.0 whose units always have the 1x1 expansion (also at t=1) and a
  1x1 conv + BN shortcut on stride-1 units that change width: 59,808 parameters over torchvision's.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from torchvision.models.densenet import DenseNet
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet, conv1x1
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from imnet.zoo.registry import ModelConfig, Published, register_model


class VGGGlobalPool(nn.Module):
    """VGG-BN features -> global average pool -> dropout -> one linear layer (512 -> classes)."""

    def __init__(self, cfg: str, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = make_layers(vgg_cfgs[cfg], batch_norm=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(512, num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def _resnet_with_projection(layers: list[int], num_classes: int) -> ResNet:
    model = ResNet(BasicBlock, layers, num_classes=num_classes)
    first = model.layer1[0]
    first.downsample = nn.Sequential(conv1x1(64, 64), nn.BatchNorm2d(64))
    return model


def _resnext(layers: list[int], groups: int, width: int, num_classes: int) -> ResNet:
    return ResNet(Bottleneck, layers, num_classes=num_classes, groups=groups, width_per_group=width)


def _densenet(block_config: tuple[int, int, int, int], num_classes: int) -> DenseNet:
    model = DenseNet(32, block_config, 64, num_classes=num_classes)
    # Input BatchNorm in place of the stem's norm0 (see module docstring).
    conv0 = model.features.conv0
    model.features.conv0 = nn.Sequential(nn.BatchNorm2d(3), conv0)
    model.features.norm0 = nn.Identity()
    return model


class PreActBlock(nn.Module):
    """Pre-activation basic unit: BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus a 1x1 conv shortcut (no BN)."""

    expansion = 1

    def __init__(self, in_chs: int, planes: int, stride: int, project: bool) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(in_chs), nn.Conv2d(in_chs, planes, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(in_chs, planes, 1, stride, bias=False) if project else None

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        residual = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv2(torch.relu(self.bn2(self.conv1(out))))
        return out + residual


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (x4), 1x1 shortcut."""

    expansion = 4

    def __init__(self, in_chs: int, planes: int, stride: int, project: bool) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(in_chs), nn.Conv2d(in_chs, planes, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.shortcut = nn.Conv2d(in_chs, planes * 4, 1, stride, bias=False) if project else None

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        residual = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv2(torch.relu(self.bn2(self.conv1(out))))
        return self.conv3(torch.relu(self.bn3(out))) + residual


class PreActResNet(nn.Module):
    """The seed's ImageNet PreActResNet: conv7x7/2 (no BN) + max-pool, pre-activation units with
    bias-free 1x1 conv shortcuts (also on the first unit of layer1, as in the seed's ResNet18/34),
    no final BN, global average pool, linear."""

    def __init__(self, block: type[nn.Module], layers: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.MaxPool2d(3, 2, 1))
        stages, in_chs = [], 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            units = []
            for j in range(n):
                stride = 2 if j == 0 and i > 0 else 1
                units.append(block(in_chs, planes, stride, project=j == 0))
                in_chs = planes * block.expansion
            stages.append(nn.Sequential(*units))
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(in_chs, num_classes)

    def forward(self, x):
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


class MobileNetV2Block(nn.Module):
    """MobileNetV2 unit as the seed builds it: the 1x1 expansion is there even at t=1, and a stride-1
    unit that changes width gets a 1x1 conv + BN shortcut (torchvision's has neither)."""

    def __init__(self, in_chs: int, out_chs: int, expansion: int, stride: int) -> None:
        super().__init__()
        mid = in_chs * expansion
        self.stride = stride
        self.conv = nn.Sequential(
            nn.Conv2d(in_chs, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_chs, 1, bias=False), nn.BatchNorm2d(out_chs))
        self.shortcut: nn.Module | None = None
        if stride == 1:
            self.shortcut = nn.Identity() if in_chs == out_chs else nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, bias=False), nn.BatchNorm2d(out_chs))

    def forward(self, x):
        out = self.conv(x)
        return out + self.shortcut(x) if self.shortcut is not None else out


class SeedMobileNetV2(nn.Module):
    """MobileNetV2 1.0 with :class:`MobileNetV2Block` units (ImageNet strides, 1280-wide head)."""

    # t, c, n, s
    SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True)]
        in_chs = 32
        for t, c, n, s in self.SETTING:
            for i in range(n):
                layers.append(MobileNetV2Block(in_chs, c, t, s if i == 0 else 1))
                in_chs = c
        layers += [nn.Conv2d(in_chs, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


_SOURCE = "seed 002 (pytorch_model_integration) table; body: {}"
_FLOPS_NOTE = ("the seed's FLOPs/G column is its own count (close to 2 x MACs for these nets); "
               "the measured MACs are stored by the zoo table")

# name, builder, body, params (M, as printed: the exact count / 1e6, trailing zeros dropped), decimals, seed FLOPs (G), top-1, top-5, params note
_VARIANTS = [
    ("pmi_vgg11", partial(VGGGlobalPool, "A"), "torchvision VGG-BN features + GAP + 1 FC", 9.738984, 6, 15.02879, 70.4, 89.6, ""),
    ("pmi_vgg13", partial(VGGGlobalPool, "B"), "torchvision VGG-BN features + GAP + 1 FC", 9.92388, 6, 22.45644, 71.3, 90.1, ""),
    ("pmi_vgg16", partial(VGGGlobalPool, "D"), "torchvision VGG-BN features + GAP + 1 FC", 15.236136, 6, 30.78787, 74.4, 91.9, ""),
    ("pmi_vgg19", partial(VGGGlobalPool, "E"), "torchvision VGG-BN features + GAP + 1 FC", 20.548392, 6, 39.11929, 74.5, 92.0, ""),
    ("pmi_resnet18", partial(_resnet_with_projection, [2, 2, 2, 2]), "torchvision ResNet", 11.693736, 6, 3.65921, None, None, ""),
    ("pmi_resnet34", partial(_resnet_with_projection, [3, 4, 6, 3]), "torchvision ResNet", 21.801896, 6, 7.36109, 75.81, 92.6, ""),
    ("pmi_resnext50_2x40d", partial(_resnext, [3, 4, 6, 3], 2, 40), "torchvision ResNet (groups)", 25.425, 6, 8.29756, 77.00, None, ""),
    ("pmi_resnext50_4x24d", partial(_resnext, [3, 4, 6, 3], 4, 24), "torchvision ResNet (groups)", 25.292968, 6, 8.37150, 77.40, None, ""),
    ("pmi_resnext50_8x14d", partial(_resnext, [3, 4, 6, 3], 8, 14), "torchvision ResNet (groups)", 25.603016, 6, 8.58994, 77.70, None, ""),
    ("pmi_resnext101_2x40d", partial(_resnext, [3, 4, 23, 3], 2, 40), "torchvision ResNet (groups)", 44.456296, 6, 15.75783, 78.3, None, ""),
    ("pmi_resnext101_4x24d", partial(_resnext, [3, 4, 23, 3], 4, 24), "torchvision ResNet (groups)", 44.363432, 6, 15.84712, 78.6, None, ""),
    ("pmi_resnext101_8x14d", partial(_resnext, [3, 4, 23, 3], 8, 14), "torchvision ResNet (groups)", 45.104328, 6, 16.23445, 78.7, None, ""),
    ("pmi_densenet121", partial(_densenet, (6, 12, 24, 16)), "torchvision DenseNet, input BN", 7.978734, 6, 5.69836, None, None, ""),
    ("pmi_densenet169", partial(_densenet, (6, 12, 32, 32)), "torchvision DenseNet, input BN", 14.149358, 6, 6.75643, None, None, ""),
    ("pmi_densenet201", partial(_densenet, (6, 12, 48, 32)), "torchvision DenseNet, input BN", 20.013806, 6, 8.63084, None, None, ""),
    ("pmi_densenet264", partial(_densenet, (6, 12, 64, 48)), "torchvision DenseNet, input BN", 33.337582, 6, 11.57003, None, None, ""),
    ("pmi_preactresnet18", partial(PreActResNet, PreActBlock, [2, 2, 2, 2]), "own (pre-activation ResNet)", 11.690792, 6, 3.65840, None, None, ""),
    ("pmi_preactresnet34", partial(PreActResNet, PreActBlock, [3, 4, 6, 3]), "own (pre-activation ResNet)", 21.798952, 6, 7.36029, None, None, ""),
    ("pmi_preactresnet50", partial(PreActResNet, PreActBottleneck, [3, 4, 6, 3]), "own (pre-activation ResNet)", 25.545256, 6, 8.27566, None, None, ""),
    ("pmi_preactresnet101", partial(PreActResNet, PreActBottleneck, [3, 4, 23, 3]), "own (pre-activation ResNet)", 44.537384, 6, 15.71034, None, None, ""),
    ("pmi_preactresnet152", partial(PreActResNet, PreActBottleneck, [3, 8, 36, 3]), "own (pre-activation ResNet)", 60.181032, 6, 23.14743, 78.90, 94.50, ""),
    ("pmi_mobilenetv2", SeedMobileNetV2, "own (MobileNetV2 with the seed's units)", 3.56468, 6, 0.66214, 74.07, None, ""),
]


# module paths by family (default: torchvision ResNet's conv1 / fc)
_FIRST_CONV = {"vgg": "features.0", "densenet": "features.conv0.1", "preactresnet": "stem.0", "mobilenetv": "features.0"}
_CLASSIFIER = {"vgg": "classifier.1", "densenet": "classifier", "preactresnet": "fc", "mobilenetv": "classifier"}


def _build(num_classes: int, body, **kwargs) -> nn.Module:
    return body(num_classes=num_classes)


for _name, _body, _source, _params, _decimals, _flops, _top1, _top5, _pnote in _VARIANTS:
    register_model(ModelConfig(
        name=_name, family="pmi_classic", source=_SOURCE.format(_source),
        first_conv=_FIRST_CONV.get(_name.split("_")[1].rstrip("0123456789"), "conv1"),
        classifier=_CLASSIFIER.get(_name.split("_")[1].rstrip("0123456789"), "fc"),
        published=Published(params=_params, params_precision=_decimals, flops=_flops, top1=_top1,
                            top5=_top5, num_classes=1000, params_note=_pnote, macs_note=_FLOPS_NOTE,
                            note="seed 002 (pytorch_model_integration)"),
    ))(partial(_build, body=_body))
