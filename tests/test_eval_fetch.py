"""`imnet eval` and `imnet train --init-from official` fetching official weights from a real HTTP
server on 127.0.0.1 (imnet.testing.server) that stands in for the Hugging Face hub and a mirror.

The served checkpoints are generated timm DLA weights (dla46_c, dla46x_c: the zoo's smallest with
official weights) with the official files' 1000-class heads, evaluated on a generated 1000-class tree
of 3 val images."""
import hashlib
import json
import shutil

import pytest
import timm
import torch
from safetensors.torch import save as save_safetensors

import imnet.zoo as zoo
from imnet.cli import main
from imnet.eval.store import read_model, stored_models
from imnet.testing import prepared_tree
from imnet.testing.server import WeightsServer

CLASSES, VAL = 1000, 3
SERVED = {"timm/dla46_c.in1k": "dla46_c", "timm/dla46x_c.in1k": "dla46x_c"}


@pytest.fixture(autouse=True)
def caches(isolated_caches):
    return isolated_caches


@pytest.fixture(scope="module")
def checkpoints():
    """hub id -> (state_dict, safetensors bytes) of a 4-class model."""
    out = {}
    for seed, (hub_id, arch) in enumerate(SERVED.items()):
        torch.manual_seed(seed)
        state = timm.create_model(arch, num_classes=CLASSES).state_dict()
        out[hub_id] = (state, save_safetensors(state))
    return out


@pytest.fixture
def tree(tmp_path):
    """1000 classes (one tiny train image each), 3 val images, real.json in the tree."""
    data = prepared_tree(tmp_path / "tree", classes=CLASSES, train_per_class=1, val=VAL, image_size=(32, 32))
    shutil.copy(data.parent / "src" / "real.json", data / "real.json")  # --real-labels finds it locally
    return data


@pytest.fixture
def small_tree(tmp_path):
    return prepared_tree(tmp_path / "small", classes=4, train_per_class=2, val=4)


@pytest.fixture
def server():
    with WeightsServer() as s:
        yield s


def _cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_eval_fetches_two_models_and_skips_the_one_the_server_answers_404(
        server, checkpoints, tree, tmp_path, monkeypatch, capsys):
    for hub_id, (_, data) in checkpoints.items():
        server.add_hub(hub_id, "model.safetensors", data)
    monkeypatch.setenv("HF_ENDPOINT", server.url)  # ghostnet_100's repo is not there: 404
    out = tmp_path / "out"
    code, stdout, stderr = _cli(["eval", "--arch", "dla46_c", "--arch", "dla46x_c", "--arch", "ghostnet_100",
                                 "--data", str(tree), "--out", str(out), "--loader", "torch", "--workers", "0"],
                                capsys)
    assert code == 0, stdout + stderr
    assert "evaluated 2, reused 0, fetched 2, skipped 1" in stdout
    assert "skipped ghostnet_100: ghostnet_100: not found at its source" in stdout and "HTTP 404" in stdout
    assert f"imnet: fetching dla46_c: {server.url}/timm/dla46_c.in1k/resolve/main/model.safetensors" in stderr
    assert stored_models(out / "predictions.h5") == ["dla46_c", "dla46x_c"]
    preds = read_model(out / "predictions.h5", "dla46_c")
    assert preds.info["weights_from"] == "Hugging Face cache (fetched)"
    assert "models--timm--dla46_c.in1k" in preds.info["weights"]
    # The official file was evaluated: its published figures (timm's CSV, at this eval config) beside it.
    rows = {r["model"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    assert rows["dla46_c"]["published_top1"] == 64.88 and "dla46_c.in1k" in rows["dla46_c"]["published_source"]
    assert "| ghostnet_100 |" in (out / "results.md").read_text()
    # Cached now: a second run fetches nothing and reuses both.
    server.requests.clear()
    code, stdout, _ = _cli(["eval", "--arch", "dla46*", "--data", str(tree), "--out", str(out),
                            "--loader", "torch", "--workers", "0"], capsys)
    assert code == 0 and "evaluated 0, reused 2, fetched 0, skipped 0" in stdout
    assert server.requests == []


def test_eval_offline_does_not_fetch(server, checkpoints, tree, tmp_path, monkeypatch, capsys):
    server.add_hub("timm/dla46_c.in1k", "model.safetensors", checkpoints["timm/dla46_c.in1k"][1])
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("IMNET_OFFLINE", "1")
    code, _, stderr = _cli(["eval", "--arch", "dla46_c", "--data", str(tree), "--out", str(tmp_path / "o")],
                           capsys)
    assert code == 2
    assert ("imnet: error: no model to evaluate: dla46_c: official weights not cached and network access "
            "is off (IMNET_OFFLINE=1)") in stderr
    assert server.requests == []


def test_official_weights_of_another_class_count_are_not_fetched(server, checkpoints, small_tree, tmp_path,
                                                                monkeypatch, capsys):
    server.add_hub("timm/dla46_c.in1k", "model.safetensors", checkpoints["timm/dla46_c.in1k"][1])
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    code, _, stderr = _cli(["eval", "--arch", "dla46_c", "--data", str(small_tree), "--out", str(tmp_path / "o")],
                           capsys)
    assert code == 2 and ("dla46_c: its official weights classify 1000 classes, the tree has 4; not fetched"
                          in stderr)
    assert server.requests == []


def test_acceptance_eval_with_no_options_evaluates_what_the_server_provides(
        server, checkpoints, tree, tmp_path, monkeypatch, capsys):
    """`imnet eval --crops 10 --real-labels --data D`, nothing else, with a mirror on 127.0.0.1 as the
    only internet: every zoo model whose file the mirror has is fetched and evaluated (the two DLA
    files serve dla46_c and dla46x_c; the pmi_dla* models are the seed's DLA, another network, with no
    official weights: issue 13); every other model with official weights is reported, grouped by
    reason."""
    for hub_id, (_, data) in checkpoints.items():
        server.add(f"/mirror/{hub_id}/model.safetensors", data)
    monkeypatch.setenv("IMNET_WEIGHTS_MIRROR", server.url + "/mirror")
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = _cli(["eval", "--crops", "10", "--real-labels", "--data", str(tree)], capsys)
    assert code == 0, stdout + stderr[-3000:]
    with_weights = [n for n in zoo.list_models() if zoo.get_config(n).weights is not None]
    served = ["dla46_c", "dla46x_c"]
    rest = len(with_weights) - len(served)
    assert f"evaluated 2, reused 0, fetched 2, skipped {rest}" in stdout
    assert f"  skipped {rest}, fetch failed: not found (HTTP 404): " in stdout
    out = tmp_path / "eval_out"
    assert stored_models(out / "predictions.h5") == sorted(served)
    results = json.loads((out / "results.json").read_text())
    rows = {r["model"]: r for r in results["results"]}
    assert set(rows) == set(served) and all(r["crops"] == 10 and r["real_top1"] is not None for r in rows.values())
    assert len(results["skipped"]) == rest and {s["kind"] for s in results["skipped"]} == {
        "fetch failed: not found (HTTP 404)"}
    # Only the mirror was asked: each official file by its file name (hub files as <hub id>/<file>).
    paths = {r.path for r in server.requests}
    assert "/mirror/timm/dla46_c.in1k/model.safetensors" in paths
    assert "/mirror/resnet50-0676ba61.pth" in paths and all(p.startswith("/mirror/") for p in paths)
    assert stderr.count("imnet: fetching ") == len(with_weights)  # one line per file tried


def test_train_init_from_official_fine_tunes_from_the_fetched_weights(server, small_tree, tmp_path, monkeypatch,
                                                                     capsys, one_torch_thread):
    """The official file classifies 1000 classes, the tree 4: every other weight is the official one
    (lr 0 keeps it so) and the classifier starts fresh; run.json says where the weights came from."""
    torch.manual_seed(5)
    official = timm.create_model("dla46_c").state_dict()
    data = save_safetensors(official)
    server.add_hub("timm/dla46_c.in1k", "model.safetensors", data)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    run = tmp_path / "run"
    args = ["train", "--arch", "dla46_c", "--data", str(small_tree), "--out", str(run), "--epochs", "1",
            "--batch-size", "4", "--img-size", "32", "--lr", "0", "--loader", "torch", "--workers", "0",
            "--device", "cpu", "--no-progress", "--init-from", "official"]
    code, stdout, stderr = _cli(args, capsys)
    assert code == 0, stderr[-3000:]
    record = json.loads((run / "run.json").read_text())
    blob = hashlib.sha256(data).hexdigest()
    assert record["init_from"].startswith("official: ") and "models--timm--dla46_c.in1k" in record["init_from"]
    assert (tmp_path / "hf" / "hub" / "models--timm--dla46_c.in1k" / "blobs" / blob).is_file()
    trained = torch.load(run / "last.pth", map_location="cpu", weights_only=True)["model"]
    assert trained["fc.weight"].shape[0] == 4
    for key in ("base_layer.0.weight", "level5.tree2.conv2.weight"):
        assert torch.equal(trained[key], official[key]), key
    # Offline with nothing cached: one clear line, exit 2.
    shutil.rmtree(tmp_path / "hf")
    monkeypatch.setenv("IMNET_OFFLINE", "1")
    code, _, stderr = _cli(args[:-2] + ["--out", str(tmp_path / "run2"), "--init-from", "official"], capsys)
    assert code == 2 and "--init-from official: the weights of dla46_c are not cached and network access is off" in stderr
    code, _, stderr = _cli(["train", "--resume", str(run), "--init-from", "official"], capsys)
    assert code == 2 and "drop --init-from" in stderr


@pytest.mark.slow
def test_torchrun_two_ranks_fetch_once(server, checkpoints, tree, tmp_path):
    """Under torchrun (2 processes, gloo) local rank 0 fetches, the other rank waits and then finds
    the file cached: one download, every image evaluated once."""
    import os
    import subprocess
    import sys

    server.add_hub("timm/dla46_c.in1k", "model.safetensors", checkpoints["timm/dla46_c.in1k"][1])
    out = tmp_path / "out"
    env = {**os.environ, "HF_ENDPOINT": server.url, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "imnet", "eval", "--arch", "dla46_c", "--data", str(tree), "--out", str(out),
         "--loader", "torch", "--workers", "0", "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "evaluated 1, reused 0, fetched 1, skipped 0" in done.stdout
    assert len(server.gets("/timm/dla46_c.in1k/resolve/main/model.safetensors")) == 1
    preds = read_model(out / "predictions.h5", "dla46_c")
    assert preds.info["world_size"] == 2 and sorted(preds.indices.tolist()) == list(range(VAL))
