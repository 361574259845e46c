"""The accuracy timm publishes on the eval sets beside ImageNet val, for the official weights files.

timm's ``results/`` folder (huggingface/pytorch-image-models, commit aa4b5850, 2026-08) prints, per
weights tag and eval config, top-1/top-5 on ImageNetV2 MatchedFrequency
(``results-imagenetv2-matched-frequency.csv``), ImageNet-Sketch (``results-sketch.csv``), ImageNet-A
and ImageNet-R (``results-imagenet-a.csv``, ``results-imagenet-r.csv``: the argmax over each set's
200 classes) and the "clean" val restricted to those classes (``results-imagenet-a-clean.csv``,
``results-imagenet-r-clean.csv``). Here are the rows of the files the zoo names as official weights,
keyed like :mod:`imnet.zoo.figures` by the file's identity: the timm hub tag, or for a torchvision
file the timm tag re-hosting that very file (``resnet50-0676ba61.pth`` -> ``resnet50.tv_in1k``), at the
eval config timm measured (which is the zoo model's). timm prints no ImageNet-A row for
``resnet50.tv_in1k`` (None); it publishes no ImageNetV2 Threshold0.7 / TopImages results.
"""
from __future__ import annotations

from pathlib import PurePosixPath

from imnet.zoo.config import ModelConfig, WeightsFigures

SET_CSVS = {
    "imagenetv2-matched-frequency": "timm results-imagenetv2-matched-frequency.csv",
    "imagenet-sketch": "timm results-sketch.csv",
    "imagenet-a": "timm results-imagenet-a.csv",
    "imagenet-a-clean": "timm results-imagenet-a-clean.csv",
    "imagenet-r": "timm results-imagenet-r.csv",
    "imagenet-r-clean": "timm results-imagenet-r-clean.csv",
}
_ORDER = tuple(SET_CSVS)

# timm tag: img_size, crop_pct, interpolation, then (top1, top5) on each set of SET_CSVS in that order
_TIMM_SETS: dict[str, tuple] = {
    "dla102.in1k": (224, 0.875, "bilinear",
        (66.590, 86.940), (25.330, 43.837), (5.853, 32.733), (93.070, 98.550), (38.913, 55.377), (93.280, 98.790)),
    "dla102x.in1k": (224, 0.875, "bilinear",
        (67.010, 86.730), (27.051, 45.493), (8.173, 36.840), (93.490, 98.490), (39.653, 56.490), (93.530, 98.860)),
    "dla102x2.in1k": (224, 0.875, "bilinear",
        (68.410, 87.800), (28.411, 46.755), (11.453, 41.133), (94.060, 98.480), (41.680, 58.030), (94.030, 99.010)),
    "dla169.in1k": (224, 0.875, "bilinear",
        (67.620, 87.450), (28.379, 47.505), (8.453, 35.960), (93.330, 98.600), (40.547, 57.387), (93.770, 98.860)),
    "dla34.in1k": (224, 0.875, "bilinear",
        (62.610, 83.860), (23.687, 41.555), (3.240, 23.667), (90.770, 97.650), (35.647, 52.837), (91.260, 98.160)),
    "dla46_c.in1k": (224, 0.875, "bilinear",
        (52.030, 75.670), (14.744, 29.354), (1.493, 15.120), (83.640, 94.930), (25.513, 43.903), (84.740, 96.210)),
    "dla46x_c.in1k": (224, 0.875, "bilinear",
        (53.120, 76.780), (14.402, 29.236), (1.720, 16.373), (84.270, 95.240), (26.403, 43.907), (85.480, 96.460)),
    "dla60.in1k": (224, 0.875, "bilinear",
        (65.150, 85.820), (24.927, 43.320), (3.640, 28.013), (92.210, 98.100), (37.183, 54.293), (92.710, 98.620)),
    "dla60_res2net.in1k": (224, 0.875, "bilinear",
        (67.140, 87.060), (25.681, 43.589), (7.507, 34.587), (93.150, 98.410), (38.700, 54.617), (93.420, 98.840)),
    "dla60_res2next.in1k": (224, 0.875, "bilinear",
        (66.730, 86.900), (25.624, 43.697), (7.773, 34.667), (93.200, 98.410), (38.503, 54.987), (93.610, 98.810)),
    "dla60x.in1k": (224, 0.875, "bilinear",
        (67.060, 87.230), (26.634, 45.025), (6.453, 33.973), (93.100, 98.490), (38.613, 55.503), (93.220, 98.720)),
    "dla60x_c.in1k": (224, 0.875, "bilinear",
        (56.230, 78.840), (16.316, 31.752), (1.600, 17.760), (86.330, 96.090), (28.490, 46.247), (87.110, 97.150)),
    "ghostnet_100.in1k": (224, 0.875, "bicubic",
        (61.160, 82.390), (21.376, 38.128), (3.400, 25.187), (90.200, 97.250), (32.597, 50.417), (90.470, 97.940)),
    "inception_v4.tf_in1k": (299, 0.875, "bicubic",
        (69.390, 88.650), (31.388, 49.248), (17.320, 45.373), (94.380, 98.560), (41.660, 55.367), (94.370, 98.830)),
    "mobilenetv1_100.ra4_e3600_r224_in1k": (224, 0.875, "bicubic",
        (62.880, 84.370), (24.785, 43.457), (4.173, 25.280), (91.190, 97.780), (35.713, 52.810), (91.360, 98.130)),
    "resnext101_32x4d.gluon_in1k": (224, 0.875, "bicubic",
        (68.880, 88.280), (30.873, 48.543), (13.680, 41.347), (94.530, 98.630), (44.330, 59.110), (94.120, 98.910)),
    "resnext101_32x4d.fb_ssl_yfcc100m_ft_in1k": (224, 0.875, "bilinear",
        (70.400, 89.810), (31.455, 52.151), (23.800, 57.227), (95.480, 99.100), (47.183, 63.400), (95.160, 99.330)),
    "resnet18.tv_in1k": (224, 0.875, "bilinear",
        (57.350, 80.080), (20.238, 37.258), (1.120, 16.200), (87.380, 96.270), (33.023, 51.143), (88.200, 97.110)),
    "resnet34.tv_in1k": (224, 0.875, "bilinear",
        (61.210, 82.670), (23.494, 41.380), (1.840, 19.813), (89.930, 97.340), (36.140, 53.553), (90.290, 97.970)),
    "resnet50.tv_in1k": (224, 0.875, "bilinear",
        (63.190, 84.640), (24.064, 41.329), None, (91.890, 98.050), (36.157, 52.870), (92.150, 98.390)),
    "resnet101.tv_in1k": (224, 0.875, "bilinear",
        (65.940, 86.020), (26.974, 45.240), (4.560, 29.013), (92.810, 98.230), (39.297, 55.857), (92.890, 98.650)),
    "resnet152.tv_in1k": (224, 0.875, "bilinear",
        (67.040, 87.460), (28.550, 47.146), (6.053, 31.467), (93.330, 98.380), (41.340, 57.593), (93.270, 98.750)),
    "wide_resnet50_2.tv_in1k": (224, 0.875, "bilinear",
        (66.380, 86.750), (25.340, 42.188), (5.880, 31.867), (93.210, 98.320), (38.667, 54.613), (93.470, 98.970)),
    "wide_resnet101_2.tv_in1k": (224, 0.875, "bilinear",
        (66.550, 86.970), (28.142, 46.560), (7.307, 33.720), (93.760, 98.520), (40.510, 55.987), (93.770, 98.830)),
    "resnext50_32x4d.tv2_in1k": (224, 0.965, "bilinear",
        (69.280, 88.410), (29.496, 47.246), (12.533, 42.853), (94.630, 98.780), (42.753, 57.563), (94.490, 99.020)),
    "vgg11.tv_in1k": (224, 0.875, "bilinear",
        (55.850, 78.770), (15.715, 30.470), (1.613, 15.907), (86.570, 96.310), (26.620, 43.527), (87.340, 97.130)),
    "vgg11_bn.tv_in1k": (224, 0.875, "bilinear",
        (57.010, 79.770), (17.397, 32.952), (1.733, 18.107), (87.500, 96.810), (28.440, 46.477), (88.410, 97.280)),
    "vgg13.tv_in1k": (224, 0.875, "bilinear",
        (57.090, 79.620), (16.127, 30.991), (1.840, 17.933), (87.020, 96.310), (26.307, 43.453), (87.560, 97.120)),
    "vgg13_bn.tv_in1k": (224, 0.875, "bilinear",
        (58.870, 81.030), (17.805, 34.045), (2.080, 20.027), (88.780, 96.970), (28.957, 46.823), (89.230, 97.520)),
    "vgg16.tv_in1k": (224, 0.875, "bilinear",
        (58.640, 81.610), (17.534, 32.760), (2.560, 19.973), (88.540, 96.800), (27.960, 44.757), (89.400, 97.500)),
    "vgg16_bn.tv_in1k": (224, 0.875, "bilinear",
        (60.820, 83.000), (19.963, 36.324), (2.560, 23.587), (90.090, 97.370), (30.380, 47.317), (90.520, 98.000)),
    "vgg19.tv_in1k": (224, 0.875, "bilinear",
        (59.720, 81.440), (17.935, 33.064), (2.107, 20.480), (89.050, 96.880), (28.700, 45.280), (89.700, 97.530)),
    "vgg19_bn.tv_in1k": (224, 0.875, "bilinear",
        (61.880, 83.380), (21.637, 39.288), (2.853, 23.547), (90.100, 97.580), (33.310, 50.883), (90.980, 98.110)),
}


def _tag(config: ModelConfig) -> str | None:
    """The timm tag of ``config``'s official weights file (its hub tag, or the tag re-hosting a
    torchvision file), or None when timm publishes none for that file."""
    from imnet.zoo import figures

    if config.weights is None:
        return None
    if config.weights.hf_hub_id:
        return config.weights.hf_hub_id.split("/", 1)[-1]
    if config.weights.url:
        found = figures._TV_REAL.get(PurePosixPath(config.weights.url).name)
        return found[0] if found else None
    return None


def set_figures(config: ModelConfig, set_name: str) -> WeightsFigures | None:
    """timm's published top-1/top-5 of ``config``'s official weights on ``set_name`` (an eval set or
    a ``-clean`` row name), at the eval config it was measured at; None when not published."""
    tag = _tag(config)
    row = _TIMM_SETS.get(tag) if tag else None
    if row is None or set_name not in SET_CSVS:
        return None
    size, crop, interpolation, *figures = row
    found = figures[_ORDER.index(set_name)]
    if found is None:
        return None
    return WeightsFigures(top1=found[0], top5=found[1], img_size=size, crop_pct=crop, interpolation=interpolation,
                          source=f"{SET_CSVS[set_name]} ({tag})")


def published_sets(config: ModelConfig) -> dict[str, WeightsFigures]:
    """Every set timm publishes figures for ``config``'s official weights on."""
    found = {name: set_figures(config, name) for name in SET_CSVS}
    return {name: fig for name, fig in found.items() if fig is not None}
