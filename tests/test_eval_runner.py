"""`imnet eval` end to end on a generated tree: correctness against plain torchvision transforms, the
CLI, resuming, --from-store, the no --arch listing, and every bad input named."""
import csv
import json
import shutil

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from click.testing import CliRunner
from PIL import Image

from imnet.cli import cli, main
from imnet.errors import ImnetError
from imnet.eval.runner import EvalOptions, evaluate
from imnet.eval.store import read_model, stored_models
from imnet.testing import prepared_tree
from imnet.zoo import create_model, get_config

ARCH, IMG, RESIZE = "resnet18", 32, 37          # 37 = round(32 / 0.875), resnet18's crop_pct
CLASSES, VAL = 4, 41                              # an odd number of val images


def _features(model, name, images):
    """Inputs of the model's classifier (the pooled features) for a batch."""
    captured = []
    head = model.get_submodule(get_config(name).classifier)
    handle = head.register_forward_hook(lambda mod, inp, out: captured.append(inp[0].flatten(1)))
    try:
        model(images)
    finally:
        handle.remove()
    return captured[0]


def _load(path):
    with Image.open(path) as img:
        return img.convert("RGB")


NORMALIZE = T.Compose([T.ToTensor(), T.Normalize(get_config(ARCH).mean, get_config(ARCH).std)])


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A prepared tree and resnet18 weights that really classify it: random convolutions with a
    least-squares linear probe fitted on the train images, so predictions differ per image."""
    base = tmp_path_factory.mktemp("eval")
    data = prepared_tree(base, classes=CLASSES, train_per_class=6, val=VAL)
    torch.manual_seed(0)
    model = create_model(ARCH, num_classes=CLASSES).eval()
    train = [line.split() for line in (data / "meta" / "train.txt").read_text().splitlines()]
    prep = T.Compose([T.Resize(RESIZE), T.CenterCrop(IMG)])
    with torch.inference_mode():
        x = torch.stack([NORMALIZE(prep(_load(data / "train" / f))) for f, _ in train])
        feats = _features(model, ARCH, x)
    onehot = torch.nn.functional.one_hot(torch.tensor([int(c) for _, c in train]), CLASSES).float()
    feats1 = torch.cat([feats, torch.ones(len(feats), 1)], 1)
    solution = torch.linalg.solve(feats1.T @ feats1 + 1e-2 * torch.eye(feats1.shape[1]), feats1.T @ onehot)
    head = model.get_submodule(get_config(ARCH).classifier)
    with torch.no_grad():
        head.weight.copy_(solution[:-1].T * 10)
        head.bias.copy_(solution[-1] * 10)
    weights = base / "weights"
    weights.mkdir()
    torch.save(model.state_dict(), weights / f"{ARCH}.pth")
    return data, weights / f"{ARCH}.pth", model


@pytest.fixture(scope="module")
def reference(tree):
    """Class probabilities per crop count with plain torchvision transforms (Resize, CenterCrop /
    FiveCrop / TenCrop, ToTensor, Normalize), probabilities of the crops averaged."""
    data, _, model = tree
    files = [line.split()[0] for line in (data / "meta" / "val.txt").read_text().splitlines()]
    images = [T.Resize(RESIZE)(_load(data / "val" / f)) for f in files]
    out = {}
    with torch.inference_mode():
        ten = torch.stack([torch.stack([NORMALIZE(v) for v in T.TenCrop(IMG)(img)]) for img in images])
        centre = torch.stack([NORMALIZE(T.CenterCrop(IMG)(img)) for img in images])
        logits10 = model(ten.flatten(0, 1)).reshape(len(files), 10, -1)
        probs10 = torch.softmax(logits10, -1)
        out["crop_logits"] = logits10
        out["centre_logits"] = model(centre)
        out[1] = torch.softmax(out["centre_logits"], -1)
        out[5] = probs10[:, :5].mean(1)
        out[10] = probs10.mean(1)
    labels = torch.tensor([int(line.split()[1]) for line in (data / "meta" / "val.txt").read_text().splitlines()])
    return out, labels


@pytest.mark.parametrize("loader", ["torch", "dali"])
def test_matches_torchvision_reference(tree, reference, tmp_path, loader):
    data, weights, _ = tree
    ref, labels = reference
    summary = evaluate(EvalOptions(data=data, out=tmp_path, archs=[ARCH], weights=weights, crops=(1, 5, 10),
                                   loader=loader, batch_size=16, workers=1, img_size=IMG))
    assert summary.evaluated == [ARCH]
    preds = read_model(tmp_path / "predictions.h5", ARCH)
    assert preds.indices.tolist() == list(range(VAL)) and preds.labels.tolist() == labels.tolist()
    assert preds.info["loader"].startswith(loader) and preds.info["pass_crops"] == 10
    rows = {r.crops: r for r in summary.rows}
    assert ref[1].argmax(1).unique().numel() > 1            # the model does discriminate
    for crops in (1, 5, 10):
        got = torch.from_numpy(preds.logits[crops]).float()
        agreement = (got.argmax(1) == ref[crops].argmax(1)).float().mean().item()
        assert agreement >= 0.99, (crops, agreement)
        ref_correct = int((ref[crops].argmax(1) == labels).sum())
        assert abs(rows[crops].top1 * VAL / 100 - ref_correct) <= 1.0 + 1e-6
        assert torch.allclose(torch.softmax(got, -1), ref[crops], atol=0.02)
    # The crops are the right ones, not just crops that agree: the stored 1-crop logits are those of
    # the centre crop (crop 4 of TenCrop, equal to CenterCrop), far from any other crop's.
    one = torch.from_numpy(preds.logits[1]).float()
    assert torch.allclose(ref["crop_logits"][:, 4], ref["centre_logits"], atol=1e-4)
    distance = [(one - ref["crop_logits"][:, j]).abs().mean().item() for j in range(10)]
    assert distance[4] * 5 < min(distance[:4] + distance[5:]), distance
    # 5-crop = the first five (not the flips), 10-crop = all ten; log of averaged probabilities
    log_probs = torch.softmax(ref["crop_logits"], -1)
    for crops, wrong in ((5, log_probs[:, 5:].mean(1)), (10, log_probs[:, :5].mean(1))):
        got = torch.from_numpy(preds.logits[crops]).float()
        right = (got - log_probs[:, :crops].mean(1).log()).abs().mean().item()
        assert right * 5 < (got - wrong.log()).abs().mean().item()


def test_cli_limit_real_resume_and_from_store(tree, tmp_path):
    data, weights, _ = tree
    out = tmp_path / "out"
    args = ["eval", "--arch", ARCH, "--weights", str(weights), "--data", str(data), "--src",
            str(data.parent / "src"), "--crops", "1", "10", "--real-labels", "--img-size", str(IMG),
            "--limit", "9", "--loader", "torch", "--workers", "0", "--batch-size", "4", "--out", str(out)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "partial" in first.output
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["crops"] for r in rows] == ["1", "10"]
    assert all(r["n_images"] == "9" and r["partial"] == "True" and r["real_top1"] for r in rows)
    assert rows[0]["img_size"] == str(IMG) and rows[0]["crop_pct"] == "0.875"
    results = json.loads((out / "results.json").read_text())
    assert results["partial"] is True
    # ReaL: recomputed by hand from real.json and the stored logits
    real = json.loads((data.parent / "src" / "real.json").read_text())
    preds = read_model(out / "predictions.h5", ARCH)
    kept = [i for i in preds.indices if real[i]]
    hits = sum(int(np.argmax(preds.logits[1][j])) in real[i]
               for j, i in enumerate(preds.indices) if real[i])
    assert float(rows[0]["real_top1"]) == pytest.approx(100 * hits / len(kept), abs=1e-3)
    # re-run: finished in the store, reused without a forward pass
    stamp = (out / "predictions.h5").stat().st_mtime_ns
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "reused from" in again.output and "evaluated 0, reused 1" in again.output
    assert (out / "predictions.h5").stat().st_mtime_ns == stamp
    forced = CliRunner().invoke(cli, args + ["--force", "--crops", "5"])   # redone, now with 1, 5, 10
    assert forced.exit_code == 0 and "reused from" not in forced.output and "evaluated 1, reused 0" in forced.output
    assert set(read_model(out / "predictions.h5", ARCH).logits) == {1, 5, 10}
    assert np.array_equal(read_model(out / "predictions.h5", ARCH).logits[10], preds.logits[10])
    # --from-store recomputes the same table without a model
    (out / "results.csv").rename(out / "first.csv")
    recomputed = CliRunner().invoke(cli, ["eval", "--from-store", str(out / "predictions.h5"),
                                          "--real-labels", str(data.parent / "src" / "real.json")])
    assert recomputed.exit_code == 0, recomputed.output
    assert (out / "results.csv").read_text() == (out / "first.csv").read_text()


def test_no_arch_evaluates_models_with_weights_and_lists_the_rest(tree, tmp_path, monkeypatch):
    data, weights, _ = tree
    for var in ("IMNET_WEIGHTS", "IMNET_RUNS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(weights, folder / f"{ARCH}.pth")
    shutil.copy(weights, folder / "resnet34.pth")            # found, but resnet18's: does not load
    result = CliRunner().invoke(cli, ["eval", "--weights", str(folder), "--data", str(data),
                                      "--img-size", str(IMG), "--limit", "3", "--loader", "torch",
                                      "--workers", "0", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert stored_models(tmp_path / "out" / "predictions.h5") == [ARCH]
    md = (tmp_path / "out" / "results.md").read_text()
    assert "## Skipped" in md and f"| resnet50 | no weights found; looked for {folder / 'resnet50.pth'} |" in md
    assert "| resnet34 | weights do not load: " in md and "does not fit resnet34" in md
    # The summary groups the skipped models by reason instead of one line each.
    assert "skipped 1, weights do not load: resnet34" in result.output
    assert "not in the --weights folder: " in result.output and "densenet121" in result.output


@pytest.fixture
def base_args(tree, tmp_path):
    data, weights, _ = tree
    return ["eval", "--arch", ARCH, "--weights", str(weights), "--data", str(data), "--img-size", str(IMG),
            "--loader", "torch", "--workers", "0", "--limit", "4", "--out", str(tmp_path / "out")]


def _replace(args, option, value):
    args = list(args)
    args[args.index(option) + 1] = value
    return args


def _cli_error(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().replace("\r", "\n").splitlines()[-1]   # after any progress bar
    assert last.startswith("imnet: error: ")
    return last


def test_missing_tree(base_args, tmp_path, capsys):
    err = _cli_error(_replace(base_args, "--data", str(tmp_path / "nowhere")), capsys)
    assert str(tmp_path / "nowhere") in err and "not found" in err


def test_tree_without_manifests(tree, base_args, tmp_path, capsys):
    data = tree[0]
    bare = tmp_path / "bare"
    shutil.copytree(data / "val", bare / "val")
    err = _cli_error(_replace(base_args, "--data", str(bare)), capsys)
    assert str(bare / "meta" / "val.txt") in err and "--write-manifests" in err


def test_weights_of_another_architecture(tree, base_args, tmp_path, capsys):
    other = tmp_path / "resnet34.pth"
    torch.save(create_model("resnet34", num_classes=CLASSES).state_dict(), other)
    err = _cli_error(_replace(base_args, "--weights", str(other)), capsys)
    assert str(other) in err and "does not fit resnet18" in err


def test_weights_for_another_class_count(tree, base_args, tmp_path, capsys):
    other = tmp_path / "resnet18_1000.pth"
    torch.save(create_model(ARCH).state_dict(), other)
    err = _cli_error(_replace(base_args, "--weights", str(other)), capsys)
    assert str(other) in err and "1000 classes but the data has 4" in err


def test_corrupt_weights(base_args, tmp_path, capsys):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    err = _cli_error(_replace(base_args, "--weights", str(bad)), capsys)
    assert str(bad) in err and "corrupt" in err


def test_corrupt_image_named_then_counted_with_skip_bad(tree, base_args, tmp_path, capsys):
    data = tree[0]
    copy = tmp_path / "tree"
    shutil.copytree(data, copy)
    victim = (copy / "meta" / "val.txt").read_text().splitlines()[2].split()[0]
    (copy / "val" / victim).write_bytes(b"\xff\xd8\xff\xe0 truncated")
    args = _replace(base_args, "--data", str(copy))
    err = _cli_error(args, capsys)
    assert victim.split("/")[-1] in err and "--skip-bad" in err
    with pytest.raises(SystemExit) as exit_info:
        main(args + ["--skip-bad"])
    assert exit_info.value.code == 0
    preds = read_model(tmp_path / "out" / "predictions.h5", ARCH)
    assert preds.indices.tolist() == [0, 1, 3] and preds.info["partial"]
    assert [s[1] for s in preds.info["skipped_images"]] == [victim]


@pytest.mark.parametrize("payload, message", [
    ([[0]] * (VAL - 1), f"{VAL - 1} ReaL label entries but the val split has {VAL}"),
    ([[0]] * (VAL - 1) + [[1000]], f"entry {VAL - 1} (ILSVRC2012_val_{VAL:08d}.JPEG) holds 1000"),
])
def test_bad_real_file_fails_before_any_forward(base_args, tmp_path, capsys, payload, message):
    real = tmp_path / "real.json"
    real.write_text(json.dumps(payload))
    err = _cli_error(base_args + ["--real-labels", str(real)], capsys)
    assert str(real) in err and message in err
    assert not (tmp_path / "out" / "predictions.h5").exists()


def test_unwritable_out(base_args, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    err = _cli_error(_replace(base_args, "--out", str(blocker / "out")), capsys)
    assert str(blocker / "out") in err and "not a writable folder" in err


def test_evaluate_cpu_bf16_channels_last(tree, tmp_path):
    data, weights, _ = tree
    summary = evaluate(EvalOptions(data=data, out=tmp_path, archs=[ARCH], weights=weights, loader="torch",
                                   workers=0, img_size=IMG, limit=5, amp="bf16", channels_last=True))
    preds = read_model(tmp_path / "predictions.h5", ARCH)
    assert preds.info["amp"] == "bf16" and preds.info["channels_last"] and preds.logits[1].shape == (5, CLASSES)
    assert summary.rows[0].amp == "bf16"


def test_torchrun_two_cpu_processes_equal_single_process(tree, tmp_path):
    """2 ranks (gloo, CPU) over an odd number of images: every image once, same predictions."""
    import os
    import subprocess
    import sys

    data, weights, _ = tree
    common = ["eval", "--arch", ARCH, "--weights", str(weights), "--data", str(data), "--img-size", str(IMG),
              "--crops", "1", "5", "--loader", "torch", "--workers", "0", "--batch-size", "4", "--limit", "11"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "imnet", *common, "--out", str(tmp_path / "two")],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = evaluate(EvalOptions(data=data, out=tmp_path / "one", archs=[ARCH], weights=weights, crops=(1, 5),
                                  loader="torch", workers=0, batch_size=4, img_size=IMG, limit=11))
    assert single.rows[0].n_images == 11
    two = read_model(tmp_path / "two" / "predictions.h5", ARCH)
    one = read_model(tmp_path / "one" / "predictions.h5", ARCH)
    assert two.info["world_size"] == 2 and one.info["world_size"] == 1
    assert two.indices.tolist() == list(range(11)) and two.files == one.files
    assert np.array_equal(two.labels, one.labels)
    for crops in (1, 5):
        # equal up to float16 rounding of a last bit (thread counts may change float sums)
        assert np.allclose(two.logits[crops].astype(np.float32), one.logits[crops].astype(np.float32),
                           rtol=2e-3, atol=2e-3)
        assert np.array_equal(two.logits[crops].argmax(1), one.logits[crops].argmax(1))
    with (tmp_path / "two" / "results.csv").open() as f:
        assert [r["top1"] for r in csv.DictReader(f)] == [f"{r.top1}" for r in single.rows]


def test_weights_from_a_finished_training_run(tree, tmp_path):
    data, weights, _ = tree
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"arch": ARCH, "finished": True}))
    torch.save({"model": torch.load(weights), "epoch": 3}, run / "best.pth")
    summary = evaluate(EvalOptions(data=data, out=tmp_path / "out", weights=run, loader="torch", workers=0,
                                   img_size=IMG, limit=3))      # no --arch: the run's arch
    assert summary.evaluated == [ARCH] and summary.skipped == []
    preds = read_model(tmp_path / "out" / "predictions.h5", ARCH)
    assert preds.config["weights"] == str((run / "best.pth").resolve())
    with pytest.raises(ImnetError, match="the run trained 'resnet18', not 'resnet34'"):
        evaluate(EvalOptions(data=data, out=tmp_path / "out", archs=["resnet34"], weights=run, img_size=IMG))


@pytest.mark.gpu
def test_gpu_dali_mixed_amp_channels_last_matches_cpu(tree, reference, tmp_path):
    """The GPU path (DALI "mixed" decoding, bf16 autocast, channels_last, torch.compile) against the
    torchvision reference computed on the CPU."""
    data, weights, _ = tree
    ref, _ = reference
    summary = evaluate(EvalOptions(data=data, out=tmp_path, archs=[ARCH], weights=weights, crops=(1, 5, 10),
                                   loader="dali", device="cuda", amp="bf16", channels_last=True, compile=True,
                                   batch_size=16, img_size=IMG))
    preds = read_model(tmp_path / "predictions.h5", ARCH)
    assert preds.info["loader"] == "dali-gpu" and summary.rows[0].device != "cpu"
    assert preds.info["compile"]["ran"] == "compiled" and preds.info["cudnn_benchmark"] is True
    assert preds.info["tf32"] is False and preds.info["images_per_sec"] > 0
    for crops in (1, 5, 10):
        got = torch.from_numpy(preds.logits[crops]).float()
        assert (got.argmax(1) == ref[crops].argmax(1)).float().mean().item() >= 0.99
