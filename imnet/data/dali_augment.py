"""The DALI train pipeline's per-image augmentation, following the policies the torch loader takes
from timm and torchvision, on DALI operators (``nvidia.dali.auto_aug``'s selection and its
TrivialAugment).

* **RandAugment** (:func:`rand_augment`): timm's policy, not DALI's stock ``rand_augment``, which
  has another op set (no Invert or SolarizeAdd, an Identity op), one fixed magnitude bin for every
  image (no ``mstd`` noise), no per-op probability and AutoAugment's posterize and solarize ranges.
  Here each of the ``n`` layers picks one of timm's 15 ops uniformly (with replacement, as timm),
  applies it with probability ``p``, at a level drawn per image and layer from N(m, mstd) clipped to
  [0, mmax] (uniform in [0, m] for an infinite mstd), and maps the level to the op's argument with
  timm's formula (``_LEVEL_DENOM`` 10): rotate 30 degrees, shear 0.3, translate 0.45 of the side,
  enhance factors 1 +- 0.9 (increasing set) or 0.1-1.9, posterize 4 -> 0 bits kept, solarize
  threshold 256 -> 0, solarize-add 0 -> 110, a random sign where timm negates. Arguments are
  computed per image by DALI arithmetic, so the levels are continuous as timm's.
  :data:`DIFFERENCES` lists where the pixels still differ from timm's PIL ops.
  How timm's string would map onto DALI's stock ``rand_augment(data, n, m, num_magnitude_bins,
  monotonic_mag)``: ``n`` -> ``n``; ``m`` (out of 10) -> bin ``m / 10 x (bins - 1)`` (``m`` itself with
  11 bins); ``inc1`` ~ ``monotonic_mag=True``, except that DALI's posterize keeps 8 -> 4 bits where
  timm's increasing one keeps 4 -> 0; ``mstd`` has no counterpart (one bin for every image), nor has
  ``p`` (DALI applies every op it draws, and draws an identity op instead), nor timm's Invert and
  SolarizeAdd. Hence the policy rebuilt here from DALI's selection and operators.
* **TrivialAugmentWide** (:func:`trivial_augment`): DALI's own ``trivial_augment_wide`` (31 bins,
  torchvision's ranges: translate 32 px, shear 0.99, rotate 135, enhance 0.99, posterize 8 -> 2
  bits), black fill and bilinear, as torchvision's reference recipe runs it.
* **Colour jitter** (:func:`color_jitter`): brightness, contrast and saturation factors uniform in
  [1 - x, 1 + x], in one of the 6 orders per image, as torchvision's ``ColorJitter``; the blends are
  PIL's (``ImageEnhance``): scale, blend with the mean grey, blend with the grey image (DALI's
  brightness, contrast and hsv operators compute them; within one grey level of PIL).

All work on uint8 HWC images after the crop and flip, on the images' device (CPU in the CPU twin,
GPU after "mixed" decoding). The pipeline must be built with ``enable_conditionals=True``.
"""
from __future__ import annotations

import math

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, types
from nvidia.dali.auto_aug import augmentations as dali_ops
from nvidia.dali.auto_aug.core import select
from nvidia.dali.auto_aug.trivial_augment import trivial_augment_wide

from imnet.data.transforms import RandAugmentSpec

LEVEL_DENOM = 10.0  # timm's _LEVEL_DENOM: "m7" is 7/10 of each op's full range
_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2 luma, PIL's convert("L")
_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13  # PIL's ImageFilter.SMOOTH
_IDENTITY = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
# PIL's posterize masks keeping 0..4 high bits
_POSTER_MASKS = [int(np.uint8(255) ^ np.uint8(2 ** (8 - bits) - 1)) for bits in range(5)]

# timm's op names, in its list order (_RAND_INCREASING_TRANSFORMS / _RAND_TRANSFORMS)
RAND_OPS_INCREASING = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
                       "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                       "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
            "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")

# Where this DALI RandAugment / TrivialAugment / colour jitter differ from timm's and torchvision's PIL code.
DIFFERENCES = (
    "geometric ops (rotate, shear, translate) resample bilinearly (DALI's warp ops offer linear or nearest; timm "
    "uses the train interpolation: bicubic for VanillaNet, bilinear or bicubic at random for 'random') and fill "
    "with one grey, the mean of timm's per-channel fill (124, 116, 104 for the ImageNet mean)",
    "equalize follows OpenCV's histogram equalization (DALI's), not PIL's (a slightly different lookup table)",
    "sharpness filters the 1-pixel border too (PIL copies it unchanged)",
    "contrast blends with the exact mean grey (PIL rounds it to an integer); saturation (DALI's YIQ transform) is "
    "within one grey level of PIL's blend with the grey image",
    "TrivialAugmentWide (DALI's): solarize thresholds span 256 -> 0 (torchvision: 255 -> 0), equalize as above",
)


def _on(images, node):
    """``node`` (computed on the CPU) where ``images`` are, for arithmetic with them."""
    return node.gpu() if images.device == "gpu" else node


def _brightness(images, factor):
    """PIL's ``ImageEnhance.Brightness``: a blend with black, i.e. a scale (DALI's operator, saturated)."""
    return fn.brightness(images, brightness=factor)


def _saturation(images, factor):
    """PIL's ``ImageEnhance.Color``: a blend with the grey image. DALI's saturation scales the I and Q
    of YIQ, whose Y is PIL's grey (0.299, 0.587, 0.114): the same blend."""
    return fn.hsv(images, saturation=factor)


def _contrast(images, factor):
    """PIL's ``ImageEnhance.Contrast``: a blend with the mean grey level. On the CPU DALI's contrast
    operator around that centre; on the GPU (where the centre is a GPU value, which DALI cannot take
    as an argument) the same blend in arithmetic."""
    weights = types.Constant(_GREY, device="gpu" if images.device == "gpu" else "cpu")
    mean = fn.reductions.sum(fn.reductions.mean(images, axis_names="HW") * weights)  # grey of the channel means
    if images.device == "gpu":
        return _blend_with(images, mean, factor)
    return fn.contrast(images, contrast=factor, contrast_center=mean)


def _blend_with(images, other, factor):
    """``other + (images - other) * factor`` saturated back to uint8 (PIL's ``Image.blend``)."""
    mixed = other + (fn.cast(images, dtype=types.FLOAT) - other) * _on(images, factor)
    return fn.cast(dmath.clamp(mixed, 0.0, 255.0), dtype=types.UINT8)


def _vector(x, y):
    """A per-image 2-vector (x, y) of scalar nodes / numbers."""
    return fn.stack(fn.cast(x, dtype=types.FLOAT), fn.cast(y, dtype=types.FLOAT))


def _warp(images, matrix, fill: int):
    return fn.warp_affine(images, matrix=matrix, fill_value=fill, interp_type=types.INTERP_LINEAR, inverse_map=False)


def _int(value):
    """``int(value)`` for a non-negative float node (truncation, as timm's level-to-argument code)."""
    return dmath.floor(value)


class _TimmOps:
    """timm's RandAugment ops as functions ``op(images, level=, sign=)`` of a per-image level
    (0..mmax) and sign (+-1), with timm's ``*_level_to_arg`` formulas."""

    def __init__(self, increasing: bool, fill: int) -> None:
        self.increasing, self.fill = increasing, fill

    # -- no argument
    def AutoContrast(self, images, level, sign):  # noqa: N802 (timm's names)
        return dali_ops.auto_contrast.op(images, None)

    def Equalize(self, images, level, sign):  # noqa: N802
        return fn.equalize(images)

    def Invert(self, images, level, sign):  # noqa: N802
        return types.Constant(255, dtype=types.UINT8) - images

    # -- geometric
    def Rotate(self, images, level, sign):  # noqa: N802
        return fn.rotate(images, angle=sign * level / LEVEL_DENOM * 30.0, fill_value=self.fill,
                         interp_type=types.INTERP_LINEAR, keep_size=True)

    def ShearX(self, images, level, sign):  # noqa: N802
        return _warp(images, fn.transforms.shear(shear=_vector(sign * level / LEVEL_DENOM * 0.3, 0.0)), self.fill)

    def ShearY(self, images, level, sign):  # noqa: N802
        return _warp(images, fn.transforms.shear(shear=_vector(0.0, sign * level / LEVEL_DENOM * 0.3)), self.fill)

    def TranslateXRel(self, images, level, sign):  # noqa: N802
        width = fn.cast(images.shape()[1], dtype=types.FLOAT)
        offset = _vector(sign * level / LEVEL_DENOM * 0.45 * width, 0.0)
        return _warp(images, fn.transforms.translation(offset=offset), self.fill)

    def TranslateYRel(self, images, level, sign):  # noqa: N802
        height = fn.cast(images.shape()[0], dtype=types.FLOAT)
        offset = _vector(0.0, sign * level / LEVEL_DENOM * 0.45 * height)
        return _warp(images, fn.transforms.translation(offset=offset), self.fill)

    # -- colour
    def _factor(self, level, sign):
        if self.increasing:  # 1 +- level / 10 * 0.9, at least 0.1
            return dmath.max(1.0 + sign * level / LEVEL_DENOM * 0.9, 0.1)
        return level / LEVEL_DENOM * 1.8 + 0.1

    def Color(self, images, level, sign):  # noqa: N802 (PIL ImageEnhance.Color)
        return _saturation(images, self._factor(level, sign))

    def Contrast(self, images, level, sign):  # noqa: N802 (PIL ImageEnhance.Contrast)
        return _contrast(images, self._factor(level, sign))

    def Brightness(self, images, level, sign):  # noqa: N802 (PIL ImageEnhance.Brightness)
        return _brightness(images, self._factor(level, sign))

    def Sharpness(self, images, level, sign):  # noqa: N802 (PIL ImageEnhance.Sharpness)
        factor = self._factor(level, sign)
        kernel = types.Constant(_SMOOTH) * (1.0 - factor) + types.Constant(_IDENTITY) * factor
        return fn.filter(images, _on(images, kernel))

    def Posterize(self, images, level, sign):  # noqa: N802
        bits = _int(level / LEVEL_DENOM * 4)  # keep 0..4 bits, more with the level
        if self.increasing:
            bits = 4.0 - bits
        mask = sum((bits == float(kept)) * value for kept, value in enumerate(_POSTER_MASKS))
        return images & _on(images, fn.cast(mask, dtype=types.UINT8))

    def Solarize(self, images, level, sign):  # noqa: N802 (pixels >= threshold are inverted)
        threshold = dmath.min(_int(level / LEVEL_DENOM * 256), 256.0)
        if self.increasing:
            threshold = 256.0 - threshold
        keep = images < _on(images, threshold)
        return keep * images + (keep ^ True) * (types.Constant(255, dtype=types.UINT8) - images)

    def SolarizeAdd(self, images, level, sign):  # noqa: N802 (pixels < 128 get the level's shift)
        shift = _on(images, fn.cast(dmath.min(_int(level / LEVEL_DENOM * 110), 128.0), dtype=types.UINT8))
        shifted = images < types.Constant(128, dtype=types.UINT8)
        return shifted * (images + shift) + (shifted ^ True) * images

    def Identity(self, images, level, sign):  # noqa: N802 (a layer not applied)
        return images

    def op(self, name: str):
        if name.endswith("Increasing"):
            name = name[:-len("Increasing")]
        return getattr(self, name)


def _levels(spec: RandAugmentSpec):
    """Per image, the (n,) levels of timm's ``AugmentOp._get_magnitude``: m, N(m, mstd) or uniform in
    [0, m] (infinite mstd), clipped to [0, mmax]."""
    shape = (spec.num_layers,)
    if spec.magnitude_std == 0:
        return fn.full(types.Constant(np.float32(spec.magnitude)), shape=shape)
    if math.isinf(spec.magnitude_std):
        level = fn.random.uniform(range=(0.0, spec.magnitude), shape=shape)
    else:
        level = fn.random.normal(shape=shape) * spec.magnitude_std + spec.magnitude
    return dmath.clamp(level, 0.0, spec.magnitude_max)


def rand_augment(images, spec: RandAugmentSpec, fill: int, only: tuple[str, ...] = ()):
    """timm's RandAugment (``spec``) on a batch of uint8 HWC images, filled with grey ``fill``.
    ``only`` restricts the op set to those timm names (tests measure one op at a time)."""
    table = _TimmOps(spec.increasing, fill)
    names = RAND_OPS_INCREASING if spec.increasing else RAND_OPS
    if only:
        unknown = set(only) - set(names)
        if unknown:
            raise ValueError(f"not RandAugment ops of this set: {sorted(unknown)}")
        names = tuple(n for n in names if n in only)
    suite = [table.op(name) for name in names] + [table.Identity]  # last: the layer is not applied
    skip = len(suite) - 1
    shape = (spec.num_layers,)
    chosen = fn.random.uniform(values=list(range(skip)), shape=shape, dtype=types.INT32)
    if spec.prob < 1:
        applied = fn.cast(fn.random.coin_flip(probability=spec.prob, shape=shape), dtype=types.INT32)
        chosen = chosen * applied + skip * (1 - applied)
    levels = _levels(spec)
    signs = fn.cast(fn.random.coin_flip(shape=shape), dtype=types.FLOAT) * 2.0 - 1.0
    for layer in range(spec.num_layers):
        images = select(suite, chosen[layer], images, level=levels[layer], sign=signs[layer])
    return images


def trivial_augment(images):
    """torchvision's TrivialAugmentWide as the reference recipe runs it (bilinear, black fill),
    through DALI's ``trivial_augment_wide`` (31 magnitude bins, translations of up to 32 pixels)."""
    return trivial_augment_wide(images, num_magnitude_bins=31, fill_value=0, interp_type=types.INTERP_LINEAR)


def _jitter_step(images, which, factor):
    if which == 0:
        images = _brightness(images, factor)
    elif which == 1:
        images = _contrast(images, factor)
    else:
        images = _saturation(images, factor)
    return images


def color_jitter(images, strength: float):
    """torchvision's ``ColorJitter(strength, strength, strength)``: brightness (scale), contrast
    (blend with the mean grey level) and saturation (blend with the grey image), each factor uniform
    in [1 - strength, 1 + strength], applied in one of the 6 orders, chosen per image."""
    factors = fn.random.uniform(range=(1.0 - strength, 1.0 + strength), shape=(3,))
    order = fn.random.uniform(values=list(range(6)), dtype=types.INT32)
    orders = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    for position in range(3):
        which = sum((order == k) * orders[k][position] for k in range(6))
        # the factor of the op at this position (factors[0]: brightness, [1]: contrast, [2]: saturation)
        factor = (which == 0) * factors[0] + (which == 1) * factors[1] + (which == 2) * factors[2]
        images = _jitter_step(images, which, factor)
    return images
