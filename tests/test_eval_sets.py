"""imnet eval over ImageNet val and every eval set in one run: a model trained on the fake train split
(random convolutions + a least-squares linear probe) scores far above chance on every set, whose
images are drawn in the same class looks; the rows per model, set and crop count, the ImageNet-A/-R
class-subset protocol checked against a plain numpy computation on the stored logits, the clean rows,
the wide table, the per-set plot, published figures beside official weights, and bad requests."""
import csv
import json
import shutil

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from imnet.cli import main
from imnet.errors import ImnetError
from imnet.eval.report import results_from_store, rows_for_model
from imnet.eval.runner import EvalOptions, evaluate
from imnet.eval.store import ModelPredictions, read_model, read_store
from imnet.prep.manifests import read_classes, read_file_list
from imnet.prep.sets import EVAL_SET_NAMES
from imnet.testing.fake_sets import prepared_tree_with_sets
from imnet.zoo import create_model, get_config

ARCH, IMG, RESIZE = "resnet18", 32, 37
CLASSES = 12
ALL = ("val", *EVAL_SET_NAMES)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return prepared_tree_with_sets(tmp_path_factory.mktemp("evalsets"), classes=CLASSES, train_per_class=4, val=24,
                                   image_size=(40, 32))


@pytest.fixture(scope="module")
def weights(tree, tmp_path_factory):
    """resnet18 weights trained on the fake train split: random convolutions, least-squares probe."""
    data, _ = tree
    torch.manual_seed(0)
    model = create_model(ARCH, num_classes=CLASSES).eval()
    config = get_config(ARCH)
    prep = T.Compose([T.Resize(RESIZE), T.CenterCrop(IMG), T.ToTensor(), T.Normalize(config.mean, config.std)])
    train = read_file_list(data / "meta" / "train.txt")
    captured = []
    hook = model.get_submodule(config.classifier).register_forward_hook(
        lambda mod, inp, out: captured.append(inp[0].flatten(1)))
    with torch.inference_mode():
        images = []
        for rel, _ in train:
            with Image.open(data / "train" / rel) as image:
                images.append(prep(image.convert("RGB")))
        model(torch.stack(images))
    hook.remove()
    feats = torch.cat([captured[0], torch.ones(len(train), 1)], 1)
    onehot = torch.nn.functional.one_hot(torch.tensor([c for _, c in train]), CLASSES).float()
    solution = torch.linalg.solve(feats.T @ feats + 1e-2 * torch.eye(feats.shape[1]), feats.T @ onehot)
    state = model.state_dict()
    state[f"{config.classifier}.weight"] = solution[:-1].T.contiguous()
    state[f"{config.classifier}.bias"] = solution[-1].contiguous()
    path = tmp_path_factory.mktemp("weights") / f"{ARCH}.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def run(tree, weights, tmp_path_factory):
    """One `imnet eval` over val and every eval set at 1, 5 and 10 crops, through the CLI."""
    data, _ = tree
    out = tmp_path_factory.mktemp("eval") / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--arch", ARCH, "--weights", str(weights), "--data", str(data), "--img-size", str(IMG),
              "--sets", "val,v2,v2-threshold0.7,v2-top-images,a,r,sketch", "--crops", "1", "5", "10",
              "--loader", "torch", "--workers", "0", "--batch-size", "8", "--out", str(out)])
    assert exit_info.value.code == 0
    return out


def test_every_set_in_one_run_far_above_chance(run, tree):
    data, fake = tree
    results = json.loads((run / "results.json").read_text())
    rows = {(r["set"], r["crops"]): r for r in results["results"]}
    expected_sets = set(ALL) | {"imagenet-a-clean", "imagenet-r-clean"}
    assert {s for s, _ in rows} == expected_sets and {c for _, c in rows} == {1, 5, 10}
    assert len(results["results"]) == len(expected_sets) * 3  # one row per model, set and crop count
    for (name, crops), row in rows.items():
        subset = fake.subsets.get(name.removesuffix("-clean"))
        chance = 100 / (len(subset) if subset else CLASSES)
        assert row["top1"] >= max(60.0, 4 * chance), (name, crops, row["top1"])
        assert row["model"] == ARCH and not row["partial"]
        if subset and name in ("imagenet-a", "imagenet-r"):
            assert row["n_images"] == len(fake.members[name])
            assert row["protocol"] == f"argmax over {len(subset)} of {CLASSES} classes"
        elif subset:  # the clean rows: val images of the set's classes
            val_labels = [c for _, c in read_file_list(data / "meta" / "val.txt")]
            assert row["n_images"] == sum(label in subset for label in val_labels)
        else:
            assert row["protocol"] == f"argmax over {CLASSES} classes"
    assert results["sets"] == list(ALL) and results["argmax"] == "subset"
    with open(run / "results.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header[:9] == ["model", "top1", "top1_err", "top5", "top5_err", "param_count", "img_size", "crop_pct",
                          "interpolation"] and header[-2:] == ["set", "protocol"]


def test_store_labels_are_the_1000_class_indices(run, tree):
    """An ImageNet-A image of wnid w is scored against the index of w among the tree's classes; an
    ImageNetV2 image of folder i against class i."""
    data, fake = tree
    wnids = [c.wnid for c in read_classes(data)]
    store = run / "predictions.h5"
    for name in EVAL_SET_NAMES:
        preds = read_model(store, ARCH, name)
        assert preds is not None and preds.split == name and set(preds.logits) == {1, 5, 10}
        truth = {f"{wnids[index]}/{member.rsplit('/', 1)[1]}": index for member, index in fake.members[name]}
        assert dict(zip(preds.files, preds.labels.tolist())) == truth
        assert preds.logits[1].shape == (len(truth), CLASSES)  # the full outputs are stored
        if name == "imagenet-a":
            assert all(wnids.index(f.split("/")[0]) == label for f, label in zip(preds.files, preds.labels))
            assert preds.info["class_subset"] == fake.subsets[name]
    assert read_model(store, ARCH).split == "val"


def test_subset_protocol_against_numpy(run, tree):
    """Top-1 of ImageNet-A/-R and their clean rows recomputed with numpy from the stored logits: the
    argmax over the subset's columns (subset protocol) or over all of them (--argmax all)."""
    _, fake = tree
    store = run / "predictions.h5"
    val = read_model(store, ARCH)
    for name in ("imagenet-a", "imagenet-r"):
        subset = fake.subsets[name]
        preds = read_model(store, ARCH, name)
        for argmax in ("subset", "all"):
            rows = {(r.set, r.crops): r for r in results_from_store(store, protocol=argmax)}
            for crops in (1, 10):
                for base, row_set in ((preds, name), (val, f"{name}-clean")):
                    logits = base.logits[crops].astype(np.float32)
                    keep = np.isin(base.labels, subset)
                    if argmax == "subset":
                        predicted = np.array(subset)[logits[keep][:, subset].argmax(1)]
                    else:
                        predicted = logits[keep].argmax(1)
                    top1 = 100 * float(np.mean(predicted == base.labels[keep]))
                    assert rows[(row_set, crops)].top1 == pytest.approx(top1, abs=1e-3), (row_set, crops, argmax)
    # on random outputs the two protocols differ: the subset can only help
    rng = np.random.default_rng(0)
    labels = np.array(fake.subsets["imagenet-a"] * 20)
    scores = rng.normal(size=(len(labels), CLASSES)).astype(np.float16)
    fake_preds = ModelPredictions("m", [f"f{i}" for i in range(len(labels))], labels, np.arange(len(labels)),
                                  {1: scores}, config={"split": "imagenet-a", "num_classes": CLASSES},
                                  info={"class_subset": fake.subsets["imagenet-a"]})
    subset_row, = rows_for_model(fake_preds, protocol="subset")
    all_row, = rows_for_model(fake_preds, protocol="all")
    assert subset_row.top1 > all_row.top1


def test_results_md_wide_table_and_plots(run):
    text = (run / "results.md").read_text()
    table = text[text.index("## Top-1 by set"):].splitlines()
    header = [cell.strip() for cell in table[2].strip("|").split("|")]
    assert header == ["model", "crops", "ImageNet val", "ImageNetV2 MatchedFrequency", "ImageNetV2 Threshold0.7",
                      "ImageNetV2 TopImages", "ImageNet-Sketch", "ImageNet-A", "ImageNet-A clean", "ImageNet-R",
                      "ImageNet-R clean"]
    assert [line.split("|")[1].strip() for line in table[4:7]] == [ARCH] * 3
    assert "imagenet-a: argmax over 5 of 12 classes" in text
    for plot in ("accuracy_vs_speed.png", "accuracy_vs_speed_sets.png"):
        with Image.open(run / plot) as image:
            pixels = np.asarray(image.convert("L"))
        assert pixels.std() > 0
    with Image.open(run / "accuracy_vs_speed_sets.png") as image:
        assert image.size[0] >= 3 * 450 and image.size[1] >= 3 * 350  # a 3 x 3 grid, a panel per set


def test_second_run_reuses_every_set(run, tree, weights, capsys):
    data, _ = tree
    before = (run / "predictions.h5").stat().st_mtime_ns
    summary = evaluate(EvalOptions(data=data, out=run, archs=[ARCH], weights=weights, img_size=IMG, crops=(1, 10),
                                   loader="torch", workers=0, sets=("val", "a", "r")))
    assert summary.reused == [ARCH] and summary.evaluated == []
    assert (run / "predictions.h5").stat().st_mtime_ns == before
    assert {r.set for r in summary.rows} == {"val", "imagenet-a", "imagenet-a-clean", "imagenet-r", "imagenet-r-clean"}
    again = evaluate(EvalOptions(data=data, out=run, archs=[ARCH], weights=weights, img_size=IMG, crops=(1,),
                                 loader="torch", workers=0, sets=("a",)))
    assert {r.set for r in again.rows} == {"imagenet-a"}  # no val: no clean row


def test_from_store_with_argmax_all(run, tmp_path):
    store = tmp_path / "predictions.h5"
    shutil.copy(run / "predictions.h5", store)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--from-store", str(store), "--argmax", "all"])
    assert exit_info.value.code == 0
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert {r["protocol"] for r in rows if r["set"] == "imagenet-a"} == {f"argmax over {CLASSES} classes"}
    assert len(read_store(store)) == len(ALL)


def test_published_figures_of_official_weights_beside_each_set():
    """resnet50's torchvision file: timm's published V2-MF 63.190, Sketch 24.064, R 36.157, A-clean
    91.890 beside 1-crop rows at its eval config, not beside --argmax all A/R rows."""
    config = {"crop_size": 224, "crop_pct": 0.875, "interpolation": "bilinear", "num_classes": 1000}
    info = {"weights": "/cache/checkpoints/resnet50-0676ba61.pth", "class_subset": list(range(200))}
    labels = np.arange(4)
    expected = {"imagenetv2-matched-frequency": 63.190, "imagenet-sketch": 24.064, "imagenet-r": 36.157}
    for name, top1 in expected.items():
        preds = ModelPredictions("resnet50", ["a", "b", "c", "d"], labels, np.arange(4),
                                 {1: np.zeros((4, 1000), np.float16), 10: np.zeros((4, 1000), np.float16)},
                                 config={**config, "split": name}, info=info)
        one, ten = rows_for_model(preds)
        assert one.published_top1 == top1 and f"({'resnet50.tv_in1k'})" in one.published_source
        assert ten.published_top1 is None  # published figures are 1-crop
        if name == "imagenet-r":
            assert rows_for_model(preds, protocol="all")[0].published_top1 is None
    val = ModelPredictions("resnet50", ["a"], np.array([0]), np.array([0]), {1: np.zeros((1, 1000), np.float16)},
                           config={**config, "split": "val"}, info=info)
    clean, = rows_for_model(val, clean_subset=list(range(200)), clean_of="imagenet-a")
    assert clean.set == "imagenet-a-clean" and clean.published_top1 == 91.890
    other = ModelPredictions("resnet50", ["a"], np.array([0]), np.array([0]), {1: np.zeros((1, 1000), np.float16)},
                             config={**config, "split": "imagenet-r"}, info={"weights": "/runs/mine/best.pth"})
    assert rows_for_model(other)[0].published_top1 is None  # other weights: nothing to compare with


def test_unprepared_or_unknown_set_is_one_line(tree, weights, tmp_path, capsys):
    data, _ = tree
    bare = tmp_path / "bare"
    shutil.copytree(data, bare, ignore=shutil.ignore_patterns("imagenet-a*", "imagenet-r*"))
    record = json.loads((bare / "meta" / "prep.json").read_text())
    for name in ("imagenet-a", "imagenet-r"):
        record["splits"].pop(name)
    (bare / "meta" / "prep.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--arch", ARCH, "--weights", str(weights), "--data", str(bare), "--sets", "val,a",
              "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"imnet: error: {bare / 'meta' / 'imagenet-a.txt'}: ImageNet-A is not prepared in {bare}")
    assert "put imagenet-a.tar" in line and "--only imagenet-a" in line
    with pytest.raises(ImnetError, match=r"unknown split or eval set 'imagenet-o'"):
        evaluate(EvalOptions(data=data, out=tmp_path / "out", archs=[ARCH], weights=weights, sets=("imagenet-o",)))
    assert not (tmp_path / "out").exists()
