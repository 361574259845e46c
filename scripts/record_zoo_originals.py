#!/usr/bin/env python
"""Record what the original code of the zoo's seed-native models computes, into imnet/zoo/originals.json.gz.

For each original network (built by its own repository's code, imported from a local checkout given
on the command line; nothing of it is copied) this records the facts that ``imnet zoo --check`` and
the tests compare the zoo model with:

* its state_dict key names and shapes (BN's ``num_batches_tracked`` left out: each BN has one), and
  the keys its forward pass never uses (dead code);
* the trace of one forward pass (:func:`imnet.zoo.fidelity.trace_model`): every convolution run,
  in order, with kernel, stride, padding, dilation, groups, bias, output size and input's producer;
  the activations; what the last layer reads;
* the fingerprint of its output on :func:`~imnet.zoo.fidelity.seeded_input`, with every tensor of its
  state_dict filled by :func:`~imnet.zoo.fidelity.seeded_state_dict` (eval mode).

Usage (each checkout is a plain clone of the repository at the commit the file records)::

    python scripts/record_zoo_originals.py \\
        --source pmi=/path/to/pytorch_model_backbone --source vanillanet=/path/to/VanillaNet \\
        --source simplenet=/path/to/SimpleNet_Pytorch [--only 'pmi_dla*'] [--out imnet/zoo/originals.json.gz]

With ``--only`` the other entries of an existing output file are kept.
"""
from __future__ import annotations

import argparse
import fnmatch
import gzip
import importlib.util
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imnet.zoo.fidelity import BASE_SEED, fingerprint, seeded_input, seeded_state_dict, trace_model  # noqa: E402

SOURCES = {
    "pmi": "ccq1n/pytorch_model_backbone",  # README title "pytorch_model_integration" (seed 002)
    "vanillanet": "huawei-noah/VanillaNet",
    "simplenet": "Coderx7/SimpleNet_Pytorch",
}

# zoo name, zoo build kwargs, source, file, constructor (evaluated in the file's namespace), input size,
# output ("logits", "log_softmax": the original returns log-probabilities, "features": its forward
# stops before the classifier it builds)
_IMAGENET = (3, 224, 224)
ENTRIES: list[tuple[str, dict[str, Any], str, str, str, tuple[int, int, int], str]] = [
    *[(f"pmi_vgg{d}", {}, "pmi", "models/vgg.py", f"VGG('VGG{d}')", _IMAGENET, "logits") for d in (11, 13, 16, 19)],
    *[(f"pmi_resnet{d}", {}, "pmi", "models/resnet.py", f"ResNet{d}()", _IMAGENET, "logits")
      for d in (18, 34, 50, 101, 152)],
    *[(f"pmi_preactresnet{d}", {}, "pmi", "models/preact_resnet.py", f"PreActResNet{d}()", _IMAGENET, "logits")
      for d in (18, 34, 50, 101, 152)],
    *[(f"pmi_resnext{d}_{c}x{w}d", {}, "pmi", "models/resnext.py", f"ResNeXt{d}({c}, {w})", _IMAGENET, "logits")
      for d in (50, 101) for c, w in ((2, 40), (4, 24), (8, 14))],
    *[(f"pmi_densenet{d}", {}, "pmi", "models/densenet.py", f"DenseNet{d}()", _IMAGENET, "features")
      for d in (121, 169, 201, 264)],
    ("pmi_darknet19", {}, "pmi", "models/darknet_19.py", "DarkNet_19()", _IMAGENET, "logits"),
    ("pmi_darknet53", {}, "pmi", "models/darknet_53.py", "DarkNet_53()", _IMAGENET, "logits"),
    ("pmi_squeezenet", {}, "pmi", "models/squeezenet.py", "SqueezeNet()", _IMAGENET, "logits"),
    ("pmi_squeezenet_simple_bypass", {}, "pmi", "models/squeezenet.py", "SqueezeNet_Simple()", _IMAGENET, "logits"),
    ("pmi_squeezenet_complex_bypass", {}, "pmi", "models/squeezenet.py", "SqueezeNet_Complex()", _IMAGENET, "logits"),
    ("pmi_peleenet", {}, "pmi", "models/peleenet.py", "PeleeNet()", _IMAGENET, "log_softmax"),
    ("pmi_mobilenetv2", {}, "pmi", "models/mobilenetv2.py", "MobileNetV2()", _IMAGENET, "logits"),
    *[(f"pmi_sqnxt23{v}_w{w}", {}, "pmi", "models/squeezenext.py", f"SqNxt_x{w}_23{v}()", _IMAGENET, "logits")
      for w in (1, 2) for v in ("", "v5")],
    *[(f"pmi_igcv3_d_{round(m * 100):03d}", {}, "pmi", "models/igcv3.py", f"IGCV3({m})", _IMAGENET, "features")
      for m in (0.7, 1.0, 1.4)],
    # GoogleNetV1 has its LRN calls commented out: it is pmi_googlenet_v1 (pmi_googlenet_v1_lrn applies them).
    ("pmi_googlenet_v1", {}, "pmi", "models/googlenet_v1.py", "GoogleNetV1()", _IMAGENET, "logits"),
    ("pmi_googlenet_v1_bn", {}, "pmi", "models/googlenet_v1.py", "GoogleNetV1_Bn()", _IMAGENET, "logits"),
    ("pmi_googlenet_v2", {}, "pmi", "models/googlenet_v2.py", "GoogleNetV2()", _IMAGENET, "logits"),
    *[(f"pmi_{n}", {}, "pmi", "models/dlanet.py", f"DLANet{c}()", _IMAGENET, "features")
      for n, c in (("dla34", "34"), ("dla46_c", "46_C"), ("dla60", "60"), ("dla102", "102"), ("dla169", "169"),
                   ("dla46x_c", "X46_C"), ("dla60x_c", "X60_C"), ("dla60x", "X60"), ("dla102x", "X102"))],
    *[(f"vanillanet_{v}", kw, "vanillanet", "models/vanillanet.py", f"vanillanet_{v}({arg})", _IMAGENET, "logits")
      for v in ("5", "6", "7", "8", "9", "10", "11", "12", "13", "13_x1_5", "13_x1_5_ada_pool")
      for kw, arg in (({}, ""), ({"deploy": True}, "deploy=True"))],
    *[(n, {}, "simplenet", "cifar/models/simplenet.py", f"{n}()", _IMAGENET, "logits")
      for n in ("simplenetv1_small_m1_05", "simplenetv1_small_m2_05", "simplenetv1_small_m1_075",
                "simplenetv1_small_m2_075", "simplenetv1_5m_m1", "simplenetv1_5m_m2", "simplenetv1_9m_m1",
                "simplenetv1_9m_m2")],
    ("simplenet_cifar", {}, "simplenet", "cifar/models/simplenet.py", "simplenet_cifar_5m(num_classes=10)",
     (3, 32, 32), "logits"),
]


def entry_key(name: str, kwargs: dict[str, Any]) -> str:
    """``name`` or ``name[k=v,...]``: the key of a recording in originals.json."""
    return name + ("[" + ",".join(f"{k}={v}" for k, v in sorted(kwargs.items())) + "]" if kwargs else "")


def _load(path: Path, unique: str):
    if unique in sys.modules:
        return sys.modules[unique]
    if unique.startswith("_original_vanillanet"):
        # VanillaNet's file imports ``weight_init`` from timm.models.layers, where timm < 0.9 had it.
        import timm.layers
        import timm.models.layers

        timm.models.layers.weight_init = timm.layers.weight_init
    spec = importlib.util.spec_from_file_location(unique, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module  # timm's register_model looks the module up
    spec.loader.exec_module(module)
    return module


def _commit(checkout: Path) -> str:
    return subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def record(entry: tuple, checkout: Path) -> dict[str, Any]:
    name, kwargs, source, file, build, input_size, output = entry
    module = _load(checkout / file, f"_original_{source}_{Path(file).stem}")
    with torch.device("meta"):
        meta_model = eval(build, vars(module))
    trace = trace_model(meta_model, input_size)
    model = eval(build, vars(module))
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(seeded_state_dict(shapes))
    shapes = {k: v for k, v in shapes.items() if not k.endswith(".num_batches_tracked")}
    model.eval()
    with torch.no_grad():
        out = model(seeded_input((1, *input_size)))
    return {
        "zoo": name, "zoo_kwargs": kwargs, "source": source, "file": file, "build": build,
        "input_size": list(input_size), "output": output, "state_dict": shapes,
        "dead_keys": [k for k in trace.dead_keys if not k.endswith(".num_batches_tracked")],
        "convs": [c.as_list() for c in trace.convs], "activations": trace.activations,
        "classifier": trace.classifier, "fingerprint": fingerprint(out),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", action="append", default=[], metavar="NAME=PATH",
                        help=f"a checkout of an original repository ({', '.join(f'{k}: {v}' for k, v in SOURCES.items())})")
    parser.add_argument("--only", default="*", help="record only the zoo names matching this pattern")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "imnet/zoo/originals.json.gz")
    args = parser.parse_args(argv)
    checkouts = dict(s.split("=", 1) for s in args.source)
    data: dict[str, Any] = {"format": 1, "seed": BASE_SEED, "sources": {}, "models": {}}
    if args.only != "*" and args.out.exists():
        data = json.loads(gzip.decompress(args.out.read_bytes()))
    warnings.simplefilter("ignore")
    for entry in ENTRIES:
        name, kwargs, source = entry[:3]
        if not fnmatch.fnmatchcase(name, args.only) or source not in checkouts:
            continue
        checkout = Path(checkouts[source])
        data["sources"][source] = {"repository": SOURCES[source], "commit": _commit(checkout)}
        print(f"recording {entry_key(name, kwargs)} ({entry[4]})", file=sys.stderr)
        data["models"][entry_key(name, kwargs)] = record(entry, checkout)
    data["models"] = dict(sorted(data["models"].items()))
    text = json.dumps(data, indent=None, separators=(",", ":")) + "\n"
    args.out.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))  # same bytes for the same facts
    print(f"wrote {len(data['models'])} recordings to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
