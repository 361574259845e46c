"""The accuracy each source publishes for the official weights file of a zoo model.

:func:`weights_figures` gives the :class:`WeightsFigures` of a config's official weights (attached
to ``config.weights.figures`` by the registry), keyed by the file's identity (hub id or file name),
never by the model name, so that a library switching a model's default weights gets no stale figure:

- torchvision files: the installed torchvision's own ``Weights.meta["_metrics"]`` (the weight docs)
  at the weights' ``transforms()`` (crop, resize, interpolation). ReaL is not in torchvision's docs;
  where timm re-hosts the same file (``<model>.tv_in1k`` / ``tv2_in1k``: for the ResNets and ResNeXt
  timm's pretrained cfg names the very torchvision URL, for VGG the tag and licence do) and its
  results row is at the same eval config, the ReaL figures come from timm's
  ``results/results-imagenet-real.csv``.
- timm hub files: ``results/results-imagenet.csv`` and ``results-imagenet-real.csv`` of
  huggingface/pytorch-image-models (commit aa4b5850, 2026-08), the row of that tag at the zoo
  model's eval config (timm prints rows at several sizes for some tags).
- SimpleNet release files (v1.0.0): the SimpleNet README (ImageNet and ReaL tables), measured with
  the repository's timm cfg: 224, crop_pct 0.875, bicubic.
- VanillaNet release files (``ckpt``): the VanillaNet README's Acc column, the EMA weights
  (its test command loads ``--model_key model_ema``, ``--crop_pct 0.875``; bicubic resize), the same
  whether deployed or not. No top-5 or ReaL is printed.

Where a model's weights changed to match its figure: ``resnext101_32x4d`` names timm's
``gluon_in1k`` weights (ImageNet-1k only), not the default ``fb_ssl_yfcc100m_ft_in1k`` (pretrained
semi-weakly supervised on YFCC100M), so the row measures ImageNet-1k training like the table it sits in.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import PurePosixPath

from imnet.zoo.config import ModelConfig, WeightsFigures

TIMM_CSV = "timm results-imagenet.csv"
TIMM_REAL_CSV = "timm results-imagenet-real.csv"

# hub id: img_size, crop_pct, interpolation, top1, top5, ReaL top1, ReaL top5 (timm's results CSVs)
_TIMM: dict[str, tuple[int, float, str, float, float, float, float]] = {
    "timm/dla102.in1k": (224, 0.875, "bilinear", 78.016, 93.952, 84.192, 96.202),
    "timm/dla102x.in1k": (224, 0.875, "bilinear", 78.516, 94.226, 84.826, 96.541),
    "timm/dla102x2.in1k": (224, 0.875, "bilinear", 79.448, 94.654, 85.381, 96.633),
    "timm/dla169.in1k": (224, 0.875, "bilinear", 78.702, 94.334, 84.914, 96.522),
    "timm/dla34.in1k": (224, 0.875, "bilinear", 74.632, 92.052, 81.653, 94.863),
    "timm/dla46_c.in1k": (224, 0.875, "bilinear", 64.880, 86.330, 72.611, 90.503),
    "timm/dla46x_c.in1k": (224, 0.875, "bilinear", 66.008, 86.946, 73.645, 91.122),
    "timm/dla60.in1k": (224, 0.875, "bilinear", 77.036, 93.316, 83.724, 95.922),
    "timm/dla60_res2net.in1k": (224, 0.875, "bilinear", 78.480, 94.204, 84.837, 96.466),
    "timm/dla60_res2next.in1k": (224, 0.875, "bilinear", 78.488, 94.144, 84.835, 96.394),
    "timm/dla60x.in1k": (224, 0.875, "bilinear", 78.234, 94.022, 84.531, 96.293),
    "timm/dla60x_c.in1k": (224, 0.875, "bilinear", 67.928, 88.426, 75.671, 92.164),
    "timm/ghostnet_100.in1k": (224, 0.875, "bicubic", 73.958, 91.542, 80.673, 94.368),
    "timm/inception_v4.tf_in1k": (299, 0.875, "bicubic", 80.144, 94.982, 86.150, 96.925),
    "timm/mobilenetv1_100.ra4_e3600_r224_in1k": (224, 0.875, "bicubic", 75.388, 92.310, 82.292, 95.053),
    "timm/resnext101_32x4d.gluon_in1k": (224, 0.875, "bicubic", 80.336, 94.908, 85.740, 96.622),
    # Not used by the zoo (semi-weakly supervised pretraining); kept so `timm/resnext101_32x4d`
    # passed through by name shows what its default weights are.
    "timm/resnext101_32x4d.fb_ssl_yfcc100m_ft_in1k": (224, 0.875, "bilinear", 80.936, 95.732, 86.511, 97.466),
}

# torchvision file: timm tag re-hosting it, ReaL top1, ReaL top5 (results-imagenet-real.csv, at the
# torchvision weights' own eval config: 224, crop 0.875 (0.965 for the V2 file), bilinear)
_TV_REAL: dict[str, tuple[str, float, float]] = {
    "resnet18-f37072fd.pth": ("resnet18.tv_in1k", 77.291, 92.760),
    "resnet34-b627a593.pth": ("resnet34.tv_in1k", 80.396, 94.408),
    "resnet50-0676ba61.pth": ("resnet50.tv_in1k", 82.969, 95.474),
    "resnet101-63fe2227.pth": ("resnet101.tv_in1k", 83.863, 95.892),
    "resnet152-394f9c45.pth": ("resnet152.tv_in1k", 84.815, 96.219),
    "wide_resnet50_2-95faca4d.pth": ("wide_resnet50_2.tv_in1k", 84.414, 96.249),
    "wide_resnet101_2-32ee1156.pth": ("wide_resnet101_2.tv_in1k", 84.561, 96.347),
    "resnext50_32x4d-1a0047aa.pth": ("resnext50_32x4d.tv2_in1k", 86.276, 97.054),
    "vgg11-8a719046.pth": ("vgg11.tv_in1k", 76.397, 92.160),
    "vgg11_bn-6002323d.pth": ("vgg11_bn.tv_in1k", 77.945, 93.225),
    "vgg13-19584684.pth": ("vgg13.tv_in1k", 77.238, 92.707),
    "vgg13_bn-abd245e5.pth": ("vgg13_bn.tv_in1k", 78.985, 93.640),
    "vgg16-397923af.pth": ("vgg16.tv_in1k", 79.029, 93.653),
    "vgg16_bn-6c64b313.pth": ("vgg16_bn.tv_in1k", 80.532, 94.577),
    "vgg19-dcbb9e9d.pth": ("vgg19.tv_in1k", 79.486, 93.868),
    "vgg19_bn-c79401a0.pth": ("vgg19_bn.tv_in1k", 81.438, 94.775),
}

_SIMPLENET = "SimpleNet README"
_VANILLANET = "VanillaNet README (EMA weights, deployed or not)"
# file name: top1, top5, ReaL top1, ReaL top5, source (all at 224, crop 0.875, bicubic)
_RELEASES: dict[str, tuple[float, float | None, float | None, float | None, str]] = {
    "simplenetv1_small_m1_05-be804903.pth": (61.122, 82.988, None, None, _SIMPLENET),
    "simplenetv1_small_m2_05-ca4b3e2b.pth": (61.67, 83.488, 69.31, 88.195, _SIMPLENET),
    "simplenetv1_small_m1_075-098acbff.pth": (67.784, 87.718, None, None, _SIMPLENET),
    "simplenetv1_small_m2_075-609ff4da.pth": (68.506, 88.15, 76.283, 92.02, _SIMPLENET),
    "simplenetv1_5m_m1-36c4ca4d.pth": (71.548, 89.94, None, None, _SIMPLENET),
    "simplenetv1_5m_m2-9bd6bb36.pth": (72.03, 90.324, 79.328, 93.714, _SIMPLENET),
    "simplenetv1_9m_m1-524f9972.pth": (73.792, 91.486, None, None, _SIMPLENET),
    "simplenetv1_9m_m2-59e8733b.pth": (74.23, 91.748, 81.22, 94.756, _SIMPLENET),
    "vanillanet_5.pth": (72.49, None, None, None, _VANILLANET),
    "vanillanet_6.pth": (76.36, None, None, None, _VANILLANET),
    "vanillanet_7.pth": (77.98, None, None, None, _VANILLANET),
    "vanillanet_8.pth": (79.13, None, None, None, _VANILLANET),
    "vanillanet_9.pth": (79.87, None, None, None, _VANILLANET),
    "vanillanet_10.pth": (80.57, None, None, None, _VANILLANET),
    "vanillanet_11.pth": (81.08, None, None, None, _VANILLANET),
    "vanillanet_12.pth": (81.55, None, None, None, _VANILLANET),
    "vanillanet_13.pth": (82.05, None, None, None, _VANILLANET),
    "vanillanet_13_x1_5.pth": (82.53, None, None, None, _VANILLANET),
    "vanillanet_13_x1_5_ada_pool.pth": (83.11, None, None, None, _VANILLANET),
}
_RELEASE_HOSTS = ("github.com/Coderx7/SimpleNet_Pytorch/", "github.com/huawei-noah/VanillaNet/")


@lru_cache(maxsize=1)
def _torchvision_files() -> dict[str, tuple[str, object]]:
    """file name -> (``"<Enum>.<member>"``, weights member) for every torchvision classification weight."""
    import torchvision

    out: dict[str, tuple[str, object]] = {}
    for name in torchvision.models.list_models(module=torchvision.models):
        try:
            enum = torchvision.models.get_model_weights(name)
        except (ValueError, KeyError):
            continue
        for member in enum:
            out.setdefault(PurePosixPath(member.url).name, (f"{enum.__name__}.{member.name}", member))
    return out


def torchvision_file_size(filename: str) -> float | None:
    """The size in MB torchvision's weight docs give for one of its files (``meta["_file_size"]``)."""
    found = _torchvision_files().get(filename)
    return None if found is None else found[1].meta.get("_file_size")  # type: ignore[attr-defined]


def _from_torchvision(filename: str) -> WeightsFigures | None:
    found = _torchvision_files().get(filename)
    if found is None:
        return None
    label, member = found
    metrics = member.meta.get("_metrics", {}).get("ImageNet-1K", {})
    transform = member.transforms()
    crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
    real = _TV_REAL.get(filename)
    return WeightsFigures(
        top1=metrics.get("acc@1"), top5=metrics.get("acc@5"),
        real_top1=real[1] if real else None, real_top5=real[2] if real else None,
        img_size=crop, crop_pct=round(crop / resize, 4), interpolation=transform.interpolation.value,
        source=f"torchvision docs ({label})",
        real_source=f"{TIMM_REAL_CSV} ({real[0]}, the same file)" if real else "")


def figures_for(hf_hub_id: str | None, url: str | None) -> WeightsFigures | None:
    """The published figures of the weights at ``hf_hub_id`` (preferred, as timm fetches it) or
    ``url``, or None when imnet knows none for that file."""
    if hf_hub_id:
        row = _TIMM.get(hf_hub_id)
        if row is None:
            return None
        size, crop, interp, top1, top5, real1, real5 = row
        tag = hf_hub_id.split("/", 1)[-1]
        return WeightsFigures(top1, top5, real1, real5, size, crop, interp,
                              source=f"{TIMM_CSV} ({tag})", real_source=f"{TIMM_REAL_CSV} ({tag})")
    if not url:
        return None
    filename = PurePosixPath(url).name
    if filename in _RELEASES and any(host in url for host in _RELEASE_HOSTS):
        top1, top5, real1, real5, source = _RELEASES[filename]
        return WeightsFigures(top1, top5, real1, real5, 224, 0.875, "bicubic", source=source,
                              real_source=source if real1 is not None else "")
    if url.startswith("https://download.pytorch.org/models/"):
        return _from_torchvision(filename)
    return None


def weights_figures(config: ModelConfig) -> WeightsFigures | None:
    """The figures published for ``config``'s official weights (None without weights or figures)."""
    if config.weights is None:
        return None
    return figures_for(config.weights.hf_hub_id, config.weights.url)
