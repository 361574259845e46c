"""VanillaNet (seed: VanillaNet; Chen et al. 2023, "VanillaNet: the Power of Minimalism").

No shortcuts, no attention: a 4x4/4 stem, one 1x1 convolution per stage followed by max-pooling and
the *series-informed activation* (ReLU, then a learnable depthwise (2n+1)x(2n+1) convolution that
mixes neighbouring activations), and a 1x1-convolution classifier.

Deep training: in the training form each 1x1 convolution is two (conv + BN, leaky ReLU with slope
``act_learn``, conv + BN); ``act_learn`` rises from 0 to 1 during training (``change_act``), after which
the leaky ReLU is the identity and :meth:`VanillaNet.switch_to_deploy` fuses BNs and the two
convolutions into one. ``deploy=True`` builds that deployed form directly; the published parameter
counts are for it. Module names follow the official code (huawei-noah/VanillaNet), so its
checkpoints (``model`` / ``model_ema`` wrappers, either form) load unchanged.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from imnet.errors import ImnetError
from imnet.zoo.registry import ModelConfig, Published, WeightsSource, register_model

RELEASE_URL = "https://github.com/huawei-noah/VanillaNet/releases/download/ckpt/"


def _fuse_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BN into the preceding convolution: returns (weight, bias)."""
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    bias = torch.zeros_like(bn.running_mean) if bias is None else bias
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias + (bias - bn.running_mean) * scale


def _compose_1x1(outer_w: torch.Tensor, outer_b: torch.Tensor, inner_w: torch.Tensor,
                 inner_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One convolution equal to ``inner`` (any kernel) followed by the 1x1 ``outer``."""
    outer = outer_w.flatten(1)  # (out, mid)
    weight = torch.einsum("om,mikl->oikl", outer, inner_w)
    return weight, outer_b + outer @ inner_b


class SeriesActivation(nn.Module):
    """ReLU followed by a depthwise (2*act_num+1)^2 convolution (+ BN in the training form)."""

    def __init__(self, dim: int, act_num: int = 3, deploy: bool = False) -> None:
        super().__init__()
        self.dim, self.act_num, self.deploy = dim, act_num, deploy
        self.weight = nn.Parameter(torch.empty(dim, 1, 2 * act_num + 1, 2 * act_num + 1))
        nn.init.trunc_normal_(self.weight, std=0.02)
        if deploy:
            self.bias = nn.Parameter(torch.zeros(dim))
        else:
            self.bias = None
            self.bn = nn.BatchNorm2d(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(F.relu(x), self.weight, self.bias, padding=self.act_num, groups=self.dim)
        return x if self.deploy else self.bn(x)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold the BN into the depthwise kernel and a bias."""
        if self.deploy:
            return
        weight, bias = _fuse_bn(self.weight, None, self.bn)
        self.weight.data = weight
        self.bias = nn.Parameter(bias)
        del self.bn
        self.deploy = True


class Block(nn.Module):
    """One stage: 1x1 conv (two with BN in training form), max-pool (stride or adaptive), activation."""

    def __init__(self, dim: int, dim_out: int, act_num: int = 3, stride: int = 2, deploy: bool = False,
                 ada_pool: int | None = None) -> None:
        super().__init__()
        self.act_learn = 1.0
        self.deploy = deploy
        if deploy:
            self.conv = nn.Conv2d(dim, dim_out, kernel_size=1)
        else:
            self.conv1 = nn.Sequential(nn.Conv2d(dim, dim, kernel_size=1), nn.BatchNorm2d(dim, eps=1e-6))
            self.conv2 = nn.Sequential(nn.Conv2d(dim, dim_out, kernel_size=1), nn.BatchNorm2d(dim_out, eps=1e-6))
        if stride == 1:
            self.pool: nn.Module = nn.Identity()
        elif ada_pool:
            self.pool = nn.AdaptiveMaxPool2d((ada_pool, ada_pool))
        else:
            self.pool = nn.MaxPool2d(stride)
        self.act = SeriesActivation(dim_out, act_num, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            x = self.conv(x)
        else:
            x = self.conv2(F.leaky_relu(self.conv1(x), self.act_learn))
        return self.act(self.pool(x))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fuse conv1+BN, conv2+BN and the (identity) leaky ReLU between them into ``conv``."""
        if self.deploy:
            return
        w1, b1 = _fuse_bn(self.conv1[0].weight, self.conv1[0].bias, self.conv1[1])
        w2, b2 = _fuse_bn(self.conv2[0].weight, self.conv2[0].bias, self.conv2[1])
        weight, bias = _compose_1x1(w2, b2, w1, b1)
        self.conv = self.conv2[0]
        self.conv.weight.data, self.conv.bias.data = weight, bias
        del self.conv1, self.conv2
        self.act.switch_to_deploy()
        self.deploy = True


class VanillaNet(nn.Module):
    """VanillaNet: ``dims`` (stem width, then one per stage), ``strides`` (one per stage),
    ``act_num`` (activation kernel 2n+1), optional ``ada_pool`` output sizes per stage (adaptive
    max-pools where the stage strides), ``stem_stride`` / ``stem_padding`` of the 4x4 stem conv (the
    official code uses 3 / 1 whenever ``ada_pool`` is given, 4 / 0 otherwise)."""

    def __init__(self, dims: Sequence[int], strides: Sequence[int], num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.0, act_num: int = 3, deploy: bool = False,
                 ada_pool: Sequence[int] | None = None, stem_stride: int = 4, stem_padding: int = 0) -> None:
        super().__init__()
        if len(dims) != len(strides) + 1:
            raise ValueError("VanillaNet needs one more dim than strides (the stem width)")
        self.deploy = deploy
        self.num_classes = num_classes
        self.act_learn = 1.0
        if deploy:
            self.stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], 4, stem_stride, stem_padding),
                                      SeriesActivation(dims[0], act_num, deploy=True))
        else:
            self.stem1 = nn.Sequential(nn.Conv2d(in_chans, dims[0], 4, stem_stride, stem_padding),
                                       nn.BatchNorm2d(dims[0], eps=1e-6))
            self.stem2 = nn.Sequential(nn.Conv2d(dims[0], dims[0], 1), nn.BatchNorm2d(dims[0], eps=1e-6),
                                       SeriesActivation(dims[0], act_num))
        self.stages = nn.ModuleList(
            Block(dims[i], dims[i + 1], act_num, strides[i], deploy, ada_pool[i] if ada_pool else None)
            for i in range(len(strides)))
        self.depth = len(strides)
        head = [nn.AdaptiveAvgPool2d(1), nn.Dropout(drop_rate), nn.Conv2d(dims[-1], num_classes, 1)]
        if deploy:
            self.cls = nn.Sequential(*head)
        else:
            self.cls1 = nn.Sequential(*head, nn.BatchNorm2d(num_classes, eps=1e-6))
            self.cls2 = nn.Sequential(nn.Conv2d(num_classes, num_classes, 1))
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def change_act(self, act_learn: float) -> None:
        """Set the slope of the leaky ReLUs between paired convolutions (deep training: 0 -> 1)."""
        self.act_learn = act_learn
        for stage in self.stages:
            stage.act_learn = act_learn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        if self.deploy:
            x = self.stem(x)
        else:
            x = self.stem2(F.leaky_relu(self.stem1(x), self.act_learn))
        for stage in self.stages:
            x = stage(x)
        if self.deploy:
            x = self.cls(x)
        else:
            x = self.cls2(F.leaky_relu(self.cls1(x), self.act_learn))
        return x.flatten(1)

    @torch.no_grad()
    def switch_to_deploy(self) -> "VanillaNet":
        """Fuse the training form into the deployed form in place (eval-mode BN statistics are used);
        needs ``act_learn == 1`` (the end of deep training). Returns ``self``."""
        if self.deploy:
            return self
        if self.act_learn != 1:
            raise ImnetError(f"switch_to_deploy needs act_learn == 1 (end of deep training), not {self.act_learn}")
        self.stem2[2].switch_to_deploy()
        w1, b1 = _fuse_bn(self.stem1[0].weight, self.stem1[0].bias, self.stem1[1])
        w2, b2 = _fuse_bn(self.stem2[0].weight, self.stem2[0].bias, self.stem2[1])
        conv = self.stem1[0]
        conv.weight.data, conv.bias.data = _compose_1x1(w2, b2, w1, b1)
        self.stem = nn.Sequential(conv, self.stem2[2])
        del self.stem1, self.stem2
        for stage in self.stages:
            stage.switch_to_deploy()
        w1, b1 = _fuse_bn(self.cls1[2].weight, self.cls1[2].bias, self.cls1[3])
        conv = self.cls1[2]
        conv.weight.data, conv.bias.data = _compose_1x1(self.cls2[0].weight, self.cls2[0].bias, w1, b1)
        self.cls = nn.Sequential(*self.cls1[:3])
        del self.cls1, self.cls2
        self.deploy = True
        return self


def checkpoint_filter_fn(state_dict: dict, model: VanillaNet) -> dict:
    """Official checkpoints use this module's names already; only the form must match: a deployed
    checkpoint (``stem.0.weight``) needs ``deploy=True`` and a training-form one the training form."""
    deployed = "stem.0.weight" in state_dict
    if deployed and not model.deploy:
        raise ImnetError("deployed VanillaNet checkpoint: create the model with deploy=True")
    if not deployed and "stem1.0.weight" in state_dict and model.deploy:
        raise ImnetError("training-form VanillaNet checkpoint: create the model without deploy=True "
                         "and call switch_to_deploy()")
    return state_dict


# --- variants ----------------------------------------------------------------------------------------

def _cfg(name: str, params: float, flops: float, top1: float) -> ModelConfig:
    """VanillaNet README row: #params (M, deployed form), FLOPs (B), top-1. The release ``ckpt`` holds
    ``<name>.pth`` for every variant (training form, ``model``/``model_ema`` wrapped)."""
    return ModelConfig(
        name=name, family="vanillanet", source="seed:VanillaNet", interpolation="bicubic", crop_pct=0.875,
        first_conv="stem1.0", classifier="cls2.0",
        published=Published(params=params, params_precision=1, macs=flops, top1=top1,
                            build_kwargs={"deploy": True},
                            note="VanillaNet README (deployed form; FLOPs counted as multiply-adds)"),
        weights=WeightsSource(url=f"{RELEASE_URL}{name}.pth", filename=f"{name}.pth"),
        checkpoint_filter=checkpoint_filter_fn)


def _create(dims: list[int], strides: list[int], num_classes: int, **kwargs: Any) -> VanillaNet:
    return VanillaNet(dims=dims, strides=strides, num_classes=num_classes, **kwargs)


# Widths are multiples of 128 (x4, or x6 for the 1.5x models); 13 layers = stem + 11 stages + head.
_W4 = [128 * 4, 128 * 4, 256 * 4, 512 * 4, 512 * 4, 512 * 4, 512 * 4, 512 * 4, 512 * 4, 512 * 4, 1024 * 4, 1024 * 4]
_W6 = [c // 4 * 6 for c in _W4]
_S13 = [1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1]


@register_model(_cfg("vanillanet_5", 15.5, 5.2, 72.49))
def vanillanet_5(num_classes: int = 1000, **kwargs: Any) -> VanillaNet:
    return _create([128 * 4, 256 * 4, 512 * 4, 1024 * 4], [2, 2, 2], num_classes, **kwargs)


@register_model(_cfg("vanillanet_6", 32.5, 6.0, 76.36))
def vanillanet_6(num_classes: int = 1000, **kwargs: Any) -> VanillaNet:
    return _create([128 * 4, 256 * 4, 512 * 4, 1024 * 4, 1024 * 4], [2, 2, 2, 1], num_classes, **kwargs)


@register_model(_cfg("vanillanet_7", 32.8, 6.9, 77.98))
def vanillanet_7(num_classes: int = 1000, **kwargs: Any) -> VanillaNet:
    return _create(_W4[:4] + _W4[-2:], [1, 2, 2, 2, 1], num_classes, **kwargs)


@register_model(_cfg("vanillanet_8", 37.1, 7.7, 79.13))
def vanillanet_8(num_classes: int = 1000, **kwargs: Any) -> VanillaNet:
    return _create(_W4[:5] + _W4[-2:], [1, 2, 2, 1, 2, 1], num_classes, **kwargs)


@register_model(_cfg("vanillanet_9", 41.4, 8.6, 79.87))
def vanillanet_9(num_classes: int = 1000, **kwargs: Any) -> VanillaNet:
    return _create(_W4[:6] + _W4[-2:], [1, 2, 2, 1, 1, 2, 1], num_classes, **kwargs)


@register_model(_cfg("vanillanet_10", 45.7, 9.4, 80.57))
def vanillanet_10(num_classes: int = 1000, **kwargs: Any) -> VanillaNet:
    return _create(_W4[:7] + _W4[-2:], [1, 2, 2, 1, 1, 1, 2, 1], num_classes, **kwargs)


@register_model(_cfg("vanillanet_11", 50.0, 10.3, 81.08))
def vanillanet_11(num_classes: int = 1000, **kwargs: Any) -> VanillaNet:
    return _create(_W4[:8] + _W4[-2:], [1, 2, 2, 1, 1, 1, 1, 2, 1], num_classes, **kwargs)


@register_model(_cfg("vanillanet_12", 54.3, 11.1, 81.55))
def vanillanet_12(num_classes: int = 1000, **kwargs: Any) -> VanillaNet:
    return _create(_W4[:9] + _W4[-2:], [1, 2, 2, 1, 1, 1, 1, 1, 2, 1], num_classes, **kwargs)


@register_model(_cfg("vanillanet_13", 58.6, 11.9, 82.05))
def vanillanet_13(num_classes: int = 1000, **kwargs: Any) -> VanillaNet:
    return _create(_W4, _S13, num_classes, **kwargs)


@register_model(_cfg("vanillanet_13_x1_5", 127.8, 26.5, 82.53))
def vanillanet_13_x1_5(num_classes: int = 1000, **kwargs: Any) -> VanillaNet:
    return _create(_W6, _S13, num_classes, **kwargs)


# The released ada_pool weights were trained with the code of the "release ckpt" commit and after
# (huawei-noah/VanillaNet f6d5bd0): stem stride 3, padding 1 (224 -> 75), adaptive pools 38, 19, 10.
@register_model(_cfg("vanillanet_13_x1_5_ada_pool", 127.8, 48.9, 83.11))
def vanillanet_13_x1_5_ada_pool(num_classes: int = 1000, **kwargs: Any) -> VanillaNet:
    return _create(_W6, _S13, num_classes, **{"ada_pool": [0, 38, 19, 0, 0, 0, 0, 0, 0, 10, 0], "stem_stride": 3,
                                              "stem_padding": 1, **kwargs})
