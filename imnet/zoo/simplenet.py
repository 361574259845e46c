"""SimpleNetV1 (seed: SimpleNet; Hasanpour et al. 2016, "Lets keep it simple").

A plain stack of 3x3 (and two 1x1) convolutions with BN and ReLU, two max-pools, global max pooling
and one linear classifier. The ImageNet variants differ in width (``scale``), base layout (5m or 9m)
and stem stride mode (m1: the first three layers stride 2; m2: layers 0, 1 and 3 do). Follows the
official PyTorch implementation (Coderx7/SimpleNet_Pytorch, 2023 version with unpadded 1x1
convolutions, whose release weights ``checkpoint_filter_fn`` maps onto this module layout).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from imnet.zoo.registry import ModelConfig, Published, WeightsSource, register_model

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
RELEASE_URL = "https://github.com/Coderx7/SimpleNet_Pytorch/releases/download/v1.0.0/"

# Layouts: one entry per layer, in order. (channels, kernel) for a conv + BN + ReLU (stride 1 unless
# the stride mode says otherwise), "p" for a 2x2 max-pool with stride 2.
LAYOUTS: dict[str, list[tuple[int, int] | str]] = {
    "imagenet_5m": [(64, 3), (128, 3), (128, 3), (128, 3), (128, 3), (128, 3), "p",
                    (256, 3), (256, 3), (256, 3), (512, 3), "p", (2048, 1), (256, 1), (256, 3)],
    "imagenet_9m": [(128, 3), (192, 3), (192, 3), (192, 3), (192, 3), (192, 3), "p",
                    (320, 3), (320, 3), (320, 3), (640, 3), "p", (2560, 1), (320, 1), (320, 3)],
    "cifar_5m": [(64, 3), (128, 3), (128, 3), (128, 3), "p", (128, 3), (128, 3), (256, 3), "p",
                 (256, 3), (256, 3), "p", (512, 3), (2048, 1), (256, 1), "p", (256, 3)],
}
# Stride modes: layer index -> stride (overrides the layout's 1, or a pool's 2).
STRIDE_MODES: dict[int, dict[int, int]] = {
    0: {},
    1: {0: 2, 1: 2, 2: 2},
    2: {0: 2, 1: 2, 2: 1, 3: 2},
    3: {0: 2, 1: 2, 2: 1, 3: 1, 4: 2},
    4: {0: 2, 1: 1, 2: 2, 3: 1, 4: 2, 5: 1},
}
# The official code's index of the dropout after the global max-pool, for every layout.
LAST_DROPOUT_INDEX = 15
# Layers after which the official code has no dropout module (CIFAR layout; ``None`` in its cfg)
# unless ``drop_rates`` gives that layer a rate.
_CIFAR_NO_DROPOUT = {3, 7, 10, 14, 16}


class ConvBlock(nn.Module):
    """Conv (3x3 padded / 1x1 unpadded) -> BN (momentum 0.05) -> ReLU -> Dropout2d."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2)
        self.bn = nn.BatchNorm2d(out_chs, eps=1e-5, momentum=0.05)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout2d(drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.bn(self.conv(x))))


class PoolBlock(nn.Module):
    """2x2 max-pool -> Dropout2d."""

    def __init__(self, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=stride)
        self.drop = nn.Dropout2d(drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.pool(x))


class SimpleNet(nn.Module):
    """SimpleNetV1: ``layout`` (a key of :data:`LAYOUTS`), width ``scale``, stride ``mode`` (0-4).

    ``drop_rates`` maps layer indices (convs and pools counted, as in the official code) to
    Dropout2d rates; index 15 also sets the dropout after the global max-pool, as the official code
    reads it for every layout (the last layer of the ImageNet layouts; in the 17-layer CIFAR layout
    index 15 is its last pool, whose dropout takes the same rate)."""

    def __init__(self, layout: str = "imagenet_5m", scale: float = 1.0, mode: int = 2, num_classes: int = 1000,
                 in_chans: int = 3, drop_rates: dict[int, float] | None = None) -> None:
        super().__init__()
        self.layout, self.scale, self.mode = layout, scale, mode
        drop_rates = {int(k): float(v) for k, v in (drop_rates or {}).items()}
        self.drop_rates = drop_rates
        strides = STRIDE_MODES[mode]
        layers: list[nn.Module] = []
        chs = in_chans
        for index, layer in enumerate(LAYOUTS[layout]):
            drop = drop_rates.get(index, 0.0)
            if layer == "p":
                layers.append(PoolBlock(strides.get(index, 2), drop))
            else:
                out_chs, kernel = layer
                out_chs = round(out_chs * scale)
                layers.append(ConvBlock(chs, out_chs, kernel, strides.get(index, 1), drop))
                chs = out_chs
        self.features = nn.Sequential(*layers)
        self.num_features = chs
        self.last_drop_rate = drop_rates.get(LAST_DROPOUT_INDEX, 0.0)
        self.classifier = nn.Linear(chs, num_classes) if num_classes else nn.Identity()
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain("relu"))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map ``(B, num_features, H', W')``."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``: global max-pool, dropout, linear."""
        x = self.forward_features(x)
        x = torch.amax(x, dim=(-2, -1))
        x = F.dropout(x, self.last_drop_rate, training=self.training)
        return self.classifier(x)


def checkpoint_filter_fn(state_dict: dict, model: SimpleNet) -> dict:
    """Map the official checkpoints' flat ``features.<n>`` keys (conv at n, BN at n+1; each conv
    followed by ReLU and, except where its cfg says None and ``drop_rates`` gives no rate, Dropout2d;
    each pool by Dropout2d) onto this layout's ``features.<layer>.conv`` / ``.bn``. imnet's own keys
    pass unchanged."""
    if any(".conv." in k for k in state_dict):
        return state_dict
    renames: dict[str, str] = {}
    flat = 0
    for index, layer in enumerate(LAYOUTS[model.layout]):
        if layer == "p":
            flat += 2
            continue
        renames[f"features.{flat}."] = f"features.{index}.conv."
        renames[f"features.{flat + 1}."] = f"features.{index}.bn."
        has_dropout = not (model.layout.startswith("cifar") and index in _CIFAR_NO_DROPOUT
                           and index not in model.drop_rates)
        flat += 4 if has_dropout else 3
    out = {}
    for key, value in state_dict.items():
        prefix = key[: key.index(".", len("features.")) + 1] if key.startswith("features.") else ""
        out[renames[prefix] + key[len(prefix):] if prefix in renames else key] = value
    return out


# --- variants ----------------------------------------------------------------------------------------

def _cfg(name: str, url_file: str | None = None, published: Published = Published(), **kwargs: Any) -> ModelConfig:
    fields: dict[str, Any] = dict(
        name=name, family="simplenet", source="seed:SimpleNet", interpolation="bicubic", crop_pct=0.875,
        first_conv="features.0.conv", classifier="classifier", published=published,
        weights=WeightsSource(url=RELEASE_URL + url_file, filename=url_file) if url_file else None,
        checkpoint_filter=checkpoint_filter_fn)
    fields.update(kwargs)
    return ModelConfig(**fields)


def _pub(params: float, top1: float, top5: float, real_top1: float | None = None,
         real_top5: float | None = None) -> Published:
    """SimpleNet README: params (M, 2 decimals, benchmark table), ImageNet and ReaL top-1/top-5."""
    return Published(params=params, params_precision=2, top1=top1, top5=top5, real_top1=real_top1,
                     real_top5=real_top5, note="SimpleNet README")


def _create(num_classes: int, **kwargs: Any) -> SimpleNet:
    return SimpleNet(num_classes=num_classes, **kwargs)


@register_model(_cfg("simplenetv1_small_m1_05", "simplenetv1_small_m1_05-be804903.pth",
                     _pub(1.51, 61.122, 82.988)))
def simplenetv1_small_m1_05(num_classes: int = 1000, **kwargs: Any) -> SimpleNet:
    return _create(num_classes, **{"layout": "imagenet_5m", "scale": 0.5, "mode": 1, **kwargs})


@register_model(_cfg("simplenetv1_small_m2_05", "simplenetv1_small_m2_05-ca4b3e2b.pth",
                     _pub(1.51, 61.67, 83.488, 69.31, 88.195)))
def simplenetv1_small_m2_05(num_classes: int = 1000, **kwargs: Any) -> SimpleNet:
    return _create(num_classes, **{"layout": "imagenet_5m", "scale": 0.5, "mode": 2, **kwargs})


@register_model(_cfg("simplenetv1_small_m1_075", "simplenetv1_small_m1_075-098acbff.pth",
                     _pub(3.29, 67.784, 87.718)))
def simplenetv1_small_m1_075(num_classes: int = 1000, **kwargs: Any) -> SimpleNet:
    return _create(num_classes, **{"layout": "imagenet_5m", "scale": 0.75, "mode": 1, **kwargs})


@register_model(_cfg("simplenetv1_small_m2_075", "simplenetv1_small_m2_075-609ff4da.pth",
                     _pub(3.29, 68.506, 88.15, 76.283, 92.02)))
def simplenetv1_small_m2_075(num_classes: int = 1000, **kwargs: Any) -> SimpleNet:
    return _create(num_classes, **{"layout": "imagenet_5m", "scale": 0.75, "mode": 2, **kwargs})


@register_model(_cfg("simplenetv1_5m_m1", "simplenetv1_5m_m1-36c4ca4d.pth", _pub(5.75, 71.548, 89.94)))
def simplenetv1_5m_m1(num_classes: int = 1000, **kwargs: Any) -> SimpleNet:
    return _create(num_classes, **{"layout": "imagenet_5m", "scale": 1.0, "mode": 1, **kwargs})


@register_model(_cfg("simplenetv1_5m_m2", "simplenetv1_5m_m2-9bd6bb36.pth",
                     _pub(5.75, 72.03, 90.324, 79.328, 93.714)))
def simplenetv1_5m_m2(num_classes: int = 1000, **kwargs: Any) -> SimpleNet:
    return _create(num_classes, **{"layout": "imagenet_5m", "scale": 1.0, "mode": 2, **kwargs})


@register_model(_cfg("simplenetv1_9m_m1", "simplenetv1_9m_m1-524f9972.pth", _pub(9.51, 73.792, 91.486)))
def simplenetv1_9m_m1(num_classes: int = 1000, **kwargs: Any) -> SimpleNet:
    return _create(num_classes, **{"layout": "imagenet_9m", "scale": 1.0, "mode": 1, **kwargs})


@register_model(_cfg("simplenetv1_9m_m2", "simplenetv1_9m_m2-59e8733b.pth",
                     _pub(9.51, 74.23, 91.748, 81.22, 94.756)))
def simplenetv1_9m_m2(num_classes: int = 1000, **kwargs: Any) -> SimpleNet:
    return _create(num_classes, **{"layout": "imagenet_9m", "scale": 1.0, "mode": 2, **kwargs})


@register_model(_cfg("simplenet_cifar", published=Published(
    params=5.48, params_precision=2, num_classes=10, note="SimpleNet README (CIFAR-10)",
    params_note="the paper's 5.48M counts convolution kernels only (5,482,176); conv biases, BN "
                "affine parameters and the 10-class classifier add 16,202"),
    input_size=(3, 32, 32), crop_pct=1.0, interpolation="bilinear", mean=CIFAR_MEAN, std=CIFAR_STD,
    num_classes=10))
def simplenet_cifar(num_classes: int = 10, **kwargs: Any) -> SimpleNet:
    return _create(num_classes, **{"layout": "cifar_5m", "scale": 1.0, "mode": 0, **kwargs})
