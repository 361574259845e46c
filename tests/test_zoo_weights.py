"""Weights: resolution from each place (explicit file, $IMNET_WEIGHTS, torch hub cache, Hugging Face
cache, training runs), foreign checkpoint formats, corrupt and mismatched files; the figures published
for each official weights file; no import circle between registry and weights. Downloads are tested
against a real server in test_weights_fetch.py. Every cache is redirected into tmp_path through the
variables torch/huggingface_hub honour."""
import json
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

import imnet.zoo as zoo
from imnet.errors import ImnetError
from imnet.zoo import weights as zoo_weights
from imnet.zoo.table import zoo_rows
from imnet.zoo.weights import find_run_checkpoint, resolve_weights

SMALL = "cifar_resnet20"


@pytest.fixture(autouse=True)
def caches(tmp_path, monkeypatch):
    """All weight locations under tmp_path, nothing set, no downloads."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("IMNET_OFFLINE", "1")
    for var in ("HF_HUB_CACHE", "IMNET_WEIGHTS", "IMNET_RUNS", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _same_weights(model: torch.nn.Module, state_dict: dict) -> bool:
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in state_dict.items())


def _trained(name: str, seed: int = 1, **kwargs) -> dict:
    torch.manual_seed(seed)
    return zoo.create_model(name, **kwargs).state_dict()


def test_explicit_file(tmp_path):
    state = _trained(SMALL)
    torch.save(state, tmp_path / "mine.pth")
    model = zoo.create_model(SMALL, weights=tmp_path / "mine.pth")
    assert _same_weights(model, state)
    assert resolve_weights(SMALL, tmp_path / "mine.pth") == (tmp_path / "mine.pth", "given file")


def test_explicit_file_missing_is_an_error(tmp_path):
    with pytest.raises(ImnetError, match="nope.pth: weights file not found"):
        zoo.create_model(SMALL, weights=tmp_path / "nope.pth")


def test_imnet_weights_dir_wins_over_caches(tmp_path, monkeypatch):
    state = _trained("simplenetv1_small_m1_05")
    monkeypatch.setenv("IMNET_WEIGHTS", str(tmp_path / "w"))
    (tmp_path / "w").mkdir()
    torch.save(state, tmp_path / "w" / "simplenetv1_small_m1_05.pth")
    hub_file = tmp_path / "torch" / "hub" / "checkpoints" / zoo.get_config("simplenetv1_small_m1_05").weights.filename
    hub_file.parent.mkdir(parents=True)
    torch.save(_trained("simplenetv1_small_m1_05", seed=2), hub_file)
    path, where = resolve_weights("simplenetv1_small_m1_05")
    assert (path, where) == (tmp_path / "w" / "simplenetv1_small_m1_05.pth", "$IMNET_WEIGHTS")
    assert _same_weights(zoo.create_model("simplenetv1_small_m1_05", pretrained=True), state)
    (tmp_path / "w" / "simplenetv1_small_m1_05.pth").unlink()
    assert resolve_weights("simplenetv1_small_m1_05") == (hub_file, "torch hub cache")


def test_torchvision_checkpoint_in_torch_hub_cache_gives_identical_logits(tmp_path):
    torch.manual_seed(3)
    reference = torchvision.models.resnet18().eval()
    filename = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    hub_file = tmp_path / "torch" / "hub" / "checkpoints" / filename
    hub_file.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), hub_file)  # torchvision's own key names
    model = zoo.create_model("resnet18", pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("env", ["HF_HOME", "HF_HUB_CACHE"])
def test_timm_weights_in_hugging_face_cache(tmp_path, monkeypatch, env):
    root = tmp_path / "hf" / "hub" if env == "HF_HOME" else tmp_path / "hub-cache"
    if env == "HF_HUB_CACHE":
        monkeypatch.setenv("HF_HUB_CACHE", str(root))
    hf_hub_id = zoo.get_config("dla46_c").weights.hf_hub_id
    repo = root / f"models--{hf_hub_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    torch.manual_seed(4)
    state = timm.create_model("dla46_c").state_dict()
    save_file(state, str(repo / "snapshots" / "abc123" / "model.safetensors"))
    path, where = resolve_weights("dla46_c")
    assert where == "Hugging Face cache" and path.name == "model.safetensors"
    assert _same_weights(zoo.create_model("dla46_c", pretrained=True), state)


def _write_run(run_dir: Path, arch: str, state: dict, finished: bool = True, checkpoint: str = "best.pth") -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"arch": arch, "finished": finished}))
    torch.save({"format": "imnet-train-checkpoint", "model": state}, run_dir / checkpoint)
    return run_dir


def test_training_run_directory(tmp_path, monkeypatch):
    state = _trained(SMALL)
    run = _write_run(tmp_path / "runs" / "r1", SMALL, state, checkpoint="last.pth")
    assert find_run_checkpoint(run) == run / "last.pth"
    assert _same_weights(zoo.create_model(SMALL, weights=run), state)
    # Found by arch under $IMNET_RUNS when nothing else resolves.
    monkeypatch.setenv("IMNET_RUNS", str(tmp_path / "runs"))
    path, where = resolve_weights(SMALL)
    assert path == run / "last.pth" and where == f"training run {run}"
    assert _same_weights(zoo.create_model(SMALL, pretrained=True), state)


@pytest.mark.parametrize("problem, message", [
    ("other_arch", "run trained 'cifar_resnet32', not 'cifar_resnet20'"),
    ("unfinished", "not finished"),
    ("no_checkpoint", "has no best.pth or last.pth"),
    ("no_record", "not an imnet train run directory"),
])
def test_bad_training_runs(tmp_path, problem, message):
    run = tmp_path / "run"
    if problem == "other_arch":
        _write_run(run, "cifar_resnet32", _trained("cifar_resnet32"))
    elif problem == "unfinished":
        _write_run(run, SMALL, _trained(SMALL), finished=False)
    elif problem == "no_checkpoint":
        _write_run(run, SMALL, _trained(SMALL))
        (run / "best.pth").unlink()
    else:
        run.mkdir()
    with pytest.raises(ImnetError, match=message):
        zoo.create_model(SMALL, weights=run)


@pytest.mark.parametrize("wrap", ["state_dict+module", "model_ema", "safetensors", "torch_compile"])
def test_foreign_checkpoint_formats(tmp_path, wrap):
    state = _trained(SMALL)
    if wrap == "state_dict+module":
        path = tmp_path / "ddp.pth"
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    elif wrap == "model_ema":
        path = tmp_path / "ema.pth"
        torch.save({"model": _trained(SMALL, seed=9), "model_ema": state}, path)  # EMA weights preferred
    elif wrap == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file(state, str(path))
    else:
        path = tmp_path / "compiled.pth"
        torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, path)
    assert _same_weights(zoo.create_model(SMALL, weights=path), state)


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"PK\x03\x04 truncated zip"])
def test_corrupt_file_names_the_file(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(ImnetError, match=r"broken\.pth: corrupt or unreadable checkpoint"):
        zoo.create_model(SMALL, weights=path)


def test_truncated_real_checkpoint(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(_trained(SMALL), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImnetError, match=r"cut\.pth: corrupt"):
        zoo.create_model(SMALL, weights=path)


def test_mismatched_checkpoint_names_first_keys(tmp_path):
    path = tmp_path / "r32.pth"
    torch.save(_trained("cifar_resnet32"), path)
    with pytest.raises(ImnetError, match=r"r32\.pth: does not fit cifar_resnet20 \(unexpected keys: layers\.0\.3\."):
        zoo.create_model(SMALL, weights=path)
    torch.save(_trained("cifar_wrn16_4"), path)
    with pytest.raises(ImnetError, match=r"shape mismatch: init_layer\.0\.weight"):
        zoo.create_model("cifar_resnet18_small", weights=path)


def test_family_filter_errors_name_the_file(tmp_path):
    path = tmp_path / "vanillanet_5_deploy.pth"
    with torch.device("meta"):
        deployed = zoo.create_model("vanillanet_5", num_classes=4, deploy=True)
    torch.save({k: torch.zeros(v.shape) for k, v in deployed.state_dict().items()}, path)
    with pytest.raises(ImnetError, match=r"vanillanet_5_deploy\.pth: deployed VanillaNet checkpoint: .*deploy=True"):
        zoo.create_model("vanillanet_5", num_classes=4, weights=path)


def test_no_state_dict_in_file(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(ImnetError, match=r"meta\.pth: no state_dict found .*epoch, lr"):
        zoo.create_model(SMALL, weights=path)


def test_other_class_count_keeps_fresh_classifier(tmp_path):
    state = _trained(SMALL)
    torch.save(state, tmp_path / "ten.pth")
    model = zoo.create_model(SMALL, num_classes=5, weights=tmp_path / "ten.pth")
    assert model.head.out_features == 5
    assert _same_weights(model, {k: v for k, v in state.items() if not k.startswith("head.")})


def test_nothing_resolves_offline_names_every_place(tmp_path):
    path, reason = resolve_weights("simplenetv1_small_m1_05")
    assert path is None
    assert "$IMNET_WEIGHTS (not set)" in reason and str(tmp_path / "torch" / "hub" / "checkpoints") in reason
    assert "$IMNET_RUNS (not set)" in reason
    with pytest.raises(ImnetError, match="simplenetv1_small_m1_05: no weights found; looked in"):
        zoo.create_model("simplenetv1_small_m1_05", pretrained=True)
    assert "no official weights published" in resolve_weights("cifar_resnet20")[1]


def test_zoo_table_shows_where_weights_resolve(tmp_path, monkeypatch):
    monkeypatch.setenv("IMNET_WEIGHTS", str(tmp_path))
    torch.save(_trained(SMALL), tmp_path / f"{SMALL}.pth")
    rows = {r.name: r for r in zoo_rows([SMALL, "cifar_resnet32"], measure=False, progress=False)}
    assert rows[SMALL].weights == "$IMNET_WEIGHTS" and rows["cifar_resnet32"].weights == "-"
    assert zoo_weights.hf_hub_cache_dir() == tmp_path / "hf" / "hub"


def test_zoo_table_shows_official_weights_and_their_published_figures():
    rows = {r.name: r for r in zoo_rows(["resnet50", "dla46_c", "vanillanet_5", "cifar_resnet20"],
                                        measure=False, weights=False, progress=False)}
    r50 = rows["resnet50"]
    assert r50.official_weights == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert (r50.weights_top1, r50.weights_top5, r50.weights_real_top1) == (76.13, 92.862, 82.969)
    assert r50.weights_eval == "224/0.875/bilinear" and "ResNet50_Weights.IMAGENET1K_V1" in r50.weights_figures_from
    assert "resnet50.tv_in1k, the same file" in r50.weights_figures_from
    # resnet50 is torchvision's network and carries its figures; the pytorch_model_integration table's
    # ResNet50 row is another network, pmi_resnet50 (issue 13).
    assert r50.pub_top1 == 76.13 and r50.pub_source == "torchvision docs (same architecture)"
    assert rows["dla46_c"].official_weights == "hf:timm/dla46_c.in1k"
    assert rows["vanillanet_5"].weights_top1 == 72.49 and rows["vanillanet_5"].weights_top5 is None
    assert rows["cifar_resnet20"].official_weights == "" and rows["cifar_resnet20"].weights_top1 is None


@pytest.mark.parametrize("name", [n for n in zoo.list_models() if zoo.get_config(n).weights is not None])
def test_every_official_weights_file_carries_figures_at_its_eval_config(name):
    config = zoo.get_config(name)
    fig = config.weights.figures
    assert fig is not None and fig.top1 is not None and fig.source
    assert fig.matches(config.input_size[-1], config.crop_pct, config.interpolation), fig.eval_config()


def test_figures_come_from_the_weights_own_source():
    # torchvision: the installed torchvision's weight docs, for the very file the zoo names.
    tv = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["_metrics"]["ImageNet-1K"]
    r50 = zoo.get_config("resnet50").weights.figures
    assert (r50.top1, r50.top5) == (tv["acc@1"], tv["acc@5"])
    b1 = zoo.get_config("efficientnet_b1")  # torchvision's default is V2 (240 px, bilinear)
    v2 = torchvision.models.EfficientNet_B1_Weights.IMAGENET1K_V2
    assert b1.weights.url == v2.url and b1.weights.figures.top1 == v2.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert b1.weights.figures.eval_config() == "240/0.9412/bilinear" and b1.published.top1 == 78.8  # paper's
    # timm: results CSVs at the zoo's eval config (mobilenetv1_100 has rows at 224 and 256).
    mv1 = zoo.get_config("mobilenetv1_100").weights.figures
    assert (mv1.top1, mv1.top5, mv1.real_top1, mv1.img_size) == (75.388, 92.310, 82.292, 224)
    # The seeds' READMEs: SimpleNet (with ReaL for the m2 models), VanillaNet (top-1 only, EMA).
    for name in zoo.list_models("simplenetv1_*"):
        config = zoo.get_config(name)
        assert (config.weights.figures.top1, config.weights.figures.real_top1) == (
            config.published.top1, config.published.real_top1)
    assert "EMA" in zoo.get_config("vanillanet_9").weights.figures.source
    # The figures follow the file: a pass-through name with other weights gets their own.
    ssl = zoo.get_config("timm/resnext101_32x4d").weights
    assert ssl.hf_hub_id.endswith("fb_ssl_yfcc100m_ft_in1k") and ssl.figures.top1 == 80.936


def test_resnext101_32x4d_points_at_imagenet_1k_weights():
    """timm's default resnext101_32x4d weights are pretrained semi-weakly supervised on YFCC100M;
    the zoo row (the pytorch_model_integration table, ImageNet-1k training) names the Gluon ones."""
    config = zoo.get_config("resnext101_32x4d")
    assert config.weights.hf_hub_id == "timm/resnext101_32x4d.gluon_in1k"
    assert "semiweak" not in (config.weights.url or "") and "yfcc" not in config.weights.hf_hub_id
    assert config.interpolation == "bicubic" and config.weights.figures.top1 == 80.336
    assert config.weights.figures.real_top1 == 85.740


def _imports(module_path: Path) -> set[str]:
    """Every imnet module a source file imports, at the top or inside functions."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(module_path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imnet"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("imnet"))
    return found


def test_no_import_circle_between_registry_and_weights():
    """registry and weights import the shared records (imnet.zoo.config), never each other, not even
    inside a function; create_model, which needs both, is imnet.zoo.factory."""
    zoo_dir = Path(zoo.__file__).parent
    machinery = ["config", "figures", "registry", "weights", "factory", "official"]
    graph = {m: {i.split(".")[2] for i in _imports(zoo_dir / f"{m}.py")
                 if i.startswith("imnet.zoo.") and i.split(".")[2] in machinery} - {m}
             for m in machinery}
    assert "weights" not in graph["registry"] and "factory" not in graph["registry"]
    assert graph["config"] == set() and graph["figures"] == {"config"}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph[start])

    assert not any(reaches(m, m) for m in machinery), graph
