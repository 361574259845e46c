"""`imnet weights list|fetch|verify` and the fetch behind `imnet eval` / `create_model(pretrained=True)`,
against a real HTTP server on 127.0.0.1 (imnet.testing.server) standing in for download.pytorch.org,
GitHub releases, the Hugging Face hub and a mirror. Small generated checkpoints are served; the
zoo gets test models whose URLs point at the server (with real SHA-256 prefixes in their names)."""
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import timm
import torch
from safetensors.torch import save as save_safetensors

import imnet.zoo as zoo
from imnet.cli import main
from imnet.testing.server import WeightsServer, refused_url
from imnet.zoo import registry
from imnet.zoo.config import ModelConfig, WeightsSource
from imnet.zoo.weights import fetch_weights, resolve_official, resolve_weights

BODY = "cifar_resnet20"  # the architecture behind the test models (0.27M parameters, ~1.1 MB file)


@pytest.fixture(autouse=True)
def caches(isolated_caches):
    return isolated_caches


@pytest.fixture
def server():
    with WeightsServer() as s:
        yield s


@pytest.fixture
def test_zoo(monkeypatch):
    """Register test models for this test only; returns ``add(name, url)``."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    builder = registry.get_builder(BODY)

    def add(name: str, url: str | None = None, hf_hub_id: str | None = None) -> ModelConfig:
        config = ModelConfig(name=name, family="test", source="test", input_size=(3, 32, 32),
                             classifier="head", num_classes=10,
                             weights=WeightsSource(url=url, hf_hub_id=hf_hub_id,
                                                   filename=url.rsplit("/", 1)[-1] if url else None))
        registry.register_model(config)(builder)
        return zoo.get_config(name)

    return add


def _checkpoint(seed: int = 0, pad_mb: int = 0) -> tuple[dict, bytes]:
    """A checkpoint of the test body; ``pad_mb`` adds that much beside the state_dict (``model``),
    for tests that need a file larger than huggingface_hub's 10 MiB write chunks."""
    torch.manual_seed(seed)
    state = zoo.create_model(BODY).state_dict()
    buffer = io.BytesIO()
    torch.save({"model": state, "padding": torch.randn(pad_mb << 18)} if pad_mb else state, buffer)
    return state, buffer.getvalue()


def _hashed_name(stem: str, data: bytes) -> str:
    """torch hub's convention: the first hex digits of the SHA-256 in the file name."""
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:10]}.pth"


def _same(model, state) -> bool:
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in state.items())


def _cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def _hub_checkpoint(arch: str, classes: int = 4, seed: int = 0) -> tuple[dict, bytes]:
    torch.manual_seed(seed)
    state = timm.create_model(arch, num_classes=classes).state_dict()
    return state, save_safetensors(state)


# --- fetch from a URL into the torch hub cache --------------------------------------------------------

def test_fetch_lands_where_resolution_finds_it(server, test_zoo, capsys, tmp_path):
    state, data = _checkpoint(1)
    name = _hashed_name("tiny", data)
    config = test_zoo("test_tiny", server.add(f"/models/{name}", data))
    code, out, err = _cli(["weights", "fetch", "test_tiny", "--no-progress"], capsys)
    assert code == 0, err
    target = tmp_path / "torch" / "hub" / "checkpoints" / name
    assert target.read_bytes() == data
    assert f"imnet: fetching test_tiny: {config.weights.url}" in err
    assert "fetched 1, already cached 0, failed 0" in out
    assert resolve_weights("test_tiny") == (target, "torch hub cache")
    assert _same(zoo.create_model("test_tiny", pretrained=True), state)
    # Cached now: not fetched again, and `list` says where it is.
    code, out, _ = _cli(["weights", "fetch", "test_tiny", "--no-progress"], capsys)
    assert code == 0 and "fetched 0, already cached 1" in out and len(server.gets()) == 1
    code, out, _ = _cli(["weights", "list", "test_tiny"], capsys)
    assert code == 0 and f"torch hub cache: {target}" in out and f"SHA-256 {name[5:15]}..." in out


def test_pretrained_fetches_when_not_cached_and_not_when_offline(server, test_zoo, monkeypatch):
    state, data = _checkpoint(2)
    test_zoo("test_tiny", server.add(f"/m/{_hashed_name('tiny', data)}", data))
    monkeypatch.setenv("IMNET_OFFLINE", "1")
    with pytest.raises(Exception, match="test_tiny: no weights found"):
        zoo.create_model("test_tiny", pretrained=True)
    assert server.requests == []
    monkeypatch.setenv("IMNET_OFFLINE", "0")  # "0" is not offline
    assert _same(zoo.create_model("test_tiny", pretrained=True), state)


def test_resume_after_a_cut_connection(server, test_zoo, capsys, tmp_path):
    """The server closes the connection 15 MB into a 24 MB file; the download goes on with a Range
    request from the last 10 MiB chunk written (huggingface_hub's write size) and the file is whole
    and verified."""
    state, data = _checkpoint(3, pad_mb=24)
    name = _hashed_name("tiny", data)
    test_zoo("test_tiny", server.add(f"/models/{name}", data))
    server.cut(f"/models/{name}", after_bytes=15_000_000)
    code, out, err = _cli(["weights", "fetch", "test_tiny", "--no-progress"], capsys)
    assert code == 0, out + err
    gets = server.gets(f"/models/{name}")
    assert [g.range for g in gets] == [None, f"bytes={10 << 20}-"]
    assert (tmp_path / "torch" / "hub" / "checkpoints" / name).read_bytes() == data
    assert _same(zoo.create_model("test_tiny", pretrained=True), state)


_FETCH_SCRIPT = textwrap.dedent("""
    import sys
    from imnet.zoo import registry
    from imnet.zoo.config import ModelConfig, WeightsSource
    from imnet.zoo.weights import fetch_weights
    config = ModelConfig(name="test_tiny", family="test", source="test", weights=WeightsSource(url=sys.argv[1]))
    registry.register_model(config)(registry.get_builder("cifar_resnet20"))
    fetch_weights(registry.get_config("test_tiny"), progress=False)
""")


def test_resume_across_runs_after_kill_9(server, test_zoo, capsys, tmp_path):
    """A fetch killed with SIGKILL mid-file leaves its partial file (never the final name); the next
    run asks for the rest with a Range request and ends with the verified file."""
    state, data = _checkpoint(4, pad_mb=40)
    name = _hashed_name("tiny", data)
    url = server.add(f"/models/{name}", data)
    test_zoo("test_tiny", url)
    server.throttle = (1 << 18, 0.02)  # ~13 MB/s: the kill lands mid-file
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    partial = checkpoints / f"{name}.imnet-partial"
    proc = subprocess.Popen([sys.executable, "-c", _FETCH_SCRIPT, url], env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (partial.is_file() and partial.stat().st_size >= 10 << 20):
            assert proc.poll() is None, "the fetch ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = partial.stat().st_size
    assert 10 << 20 <= kept < len(data) and not (checkpoints / name).exists()
    assert resolve_official(zoo.get_config("test_tiny"))[0] is None  # a partial file is never taken as good
    server.throttle = None
    code, out, err = _cli(["weights", "fetch", "test_tiny", "--no-progress"], capsys)
    assert code == 0, out + err
    assert server.gets(f"/models/{name}")[-1].range == f"bytes={kept}-"
    assert (checkpoints / name).read_bytes() == data and not partial.exists()


def test_hash_mismatch_removes_the_file_and_says_so(server, test_zoo, capsys, tmp_path):
    _, data = _checkpoint(5)
    name = "tiny-0123456789.pth"  # the name's SHA-256 prefix is not the content's
    test_zoo("test_tiny", server.add(f"/models/{name}", data))
    code, out, err = _cli(["weights", "fetch", "test_tiny", "--no-progress"], capsys)
    assert code == 1
    assert "hash mismatch: 1 (test_tiny)" in out
    assert "its file name says 0123456789...; the download was deleted" in out
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert not (checkpoints / name).exists() and not (checkpoints / f"{name}.imnet-partial").exists()
    assert resolve_weights("test_tiny")[0] is None


def test_404_and_connection_refused_are_clear_and_the_others_go_on(server, test_zoo, capsys):
    state, data = _checkpoint(6)
    test_zoo("test_ok", server.add(f"/models/{_hashed_name('ok', data)}", data))
    test_zoo("test_missing", f"{server.url}/models/missing-0123456789.pth")
    test_zoo("test_refused", refused_url("/models/refused.pth"))
    code, out, err = _cli(["weights", "fetch", "test_*", "--no-progress"], capsys)
    assert code == 1
    assert "fetched 1, already cached 0, failed 2" in out
    assert "not found (HTTP 404): 1 (test_missing)" in out and "connection refused: 1 (test_refused)" in out
    assert f"failed test_missing: not found at its source ({server.url}/models/missing" in out
    assert _same(zoo.create_model("test_ok", pretrained=True), state)


def test_unreachable_host_is_not_asked_again_for_every_model(test_zoo, capsys):
    url = refused_url("/models/")
    for i in range(3):
        test_zoo(f"test_refused{i}", f"{url}refused{i}.pth")
    start = time.monotonic()
    code, out, _ = _cli(["weights", "fetch", "test_refused*", "--no-progress"], capsys)
    assert code == 1 and "connection refused: 3" in out
    assert out.count("failed a moment ago") == 2
    assert time.monotonic() - start < 30  # one host's retries, not three


# --- the Hugging Face hub ($HF_ENDPOINT) ---------------------------------------------------------------

def test_hub_weights_through_hf_endpoint(server, monkeypatch, capsys, tmp_path):
    state, data = _hub_checkpoint("dla46_c", classes=1000)
    server.add_hub("timm/dla46_c.in1k", "model.safetensors", data)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    # (pmi_dla46_c is the seed's DLA, another network: timm's file is not its weights, issue 13)
    code, out, err = _cli(["weights", "fetch", "dla46_c", "--no-progress"], capsys)
    assert code == 0, out + err
    assert "fetched 1, already cached 0" in out
    assert [(r.method, r.path) for r in server.requests] == [
        ("HEAD", "/timm/dla46_c.in1k/resolve/main/model.safetensors"),
        ("GET", "/timm/dla46_c.in1k/resolve/main/model.safetensors")]
    path, where = resolve_weights("dla46_c")
    assert where == "Hugging Face cache" and path.read_bytes() == data
    assert (tmp_path / "hf" / "hub" / "models--timm--dla46_c.in1k" / "blobs" / hashlib.sha256(data).hexdigest()).is_file()
    assert _same(zoo.create_model("dla46_c", pretrained=True), state)
    code, out, _ = _cli(["weights", "verify", "dla46_c", "--no-progress"], capsys)
    assert code == 0 and out.count("SHA-256 matches the hub's ETag") == 1


def test_hub_file_failing_its_etag_is_removed(server, monkeypatch, capsys, tmp_path):
    _, data = _hub_checkpoint("dla46x_c")
    server.add_hub("timm/dla46x_c.in1k", "model.safetensors", data, etag="ab" * 32)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    code, out, _ = _cli(["weights", "fetch", "dla46x_c", "--no-progress"], capsys)
    assert code == 1 and "hash mismatch" in out and "the hub's ETag says abab" in out
    repo = tmp_path / "hf" / "hub" / "models--timm--dla46x_c.in1k"
    assert not list((repo / "blobs").iterdir()) and not list(repo.glob("snapshots/*/model.safetensors"))
    assert resolve_weights("dla46x_c")[0] is None


def test_hub_repo_without_the_file_is_a_404(server, monkeypatch):
    server.add_hub_repo("timm/ghostnet_100.in1k")
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    with pytest.raises(Exception, match=r"ghostnet_100: not found at its source .*model\.safetensors.*"
                                         r"pytorch_model\.bin: HTTP 404") as info:
        fetch_weights(zoo.get_config("ghostnet_100"), progress=False, echo=None)
    assert info.value.kind == "not found (HTTP 404)"


# --- the mirror ------------------------------------------------------------------------------------------

def test_mirror_url_serves_every_file_by_name(server, test_zoo, monkeypatch, capsys, tmp_path):
    state, data = _checkpoint(7)
    name = _hashed_name("tiny", data)
    test_zoo("test_tiny", refused_url(f"/models/{name}"))  # the origin is down: only the mirror serves
    hub_state, hub_data = _hub_checkpoint("dla46_c", classes=1000)
    server.add(f"/mirror/{name}", data)
    server.add("/mirror/timm/dla46_c.in1k/model.safetensors", hub_data)
    monkeypatch.setenv("IMNET_WEIGHTS_MIRROR", server.url + "/mirror/")
    monkeypatch.setenv("HF_ENDPOINT", refused_url())
    code, out, err = _cli(["weights", "fetch", "test_tiny", "dla46_c", "--no-progress"], capsys)
    assert code == 0, out + err
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert (checkpoints / name).read_bytes() == data
    assert resolve_weights("dla46_c") == (checkpoints / "timm--dla46_c.in1k--model.safetensors",
                                          "torch hub cache (hub file from a mirror)")
    assert _same(zoo.create_model("dla46_c", pretrained=True), hub_state)
    assert {r.path for r in server.gets()} == {f"/mirror/{name}", "/mirror/timm/dla46_c.in1k/model.safetensors",
                                              "/mirror/SHA256SUMS"}
    code, out, _ = _cli(["weights", "list", "test_tiny", "dla46_c"], capsys)
    assert code == 0 and "2 models with official weights, 2 cached" in out
    assert "torch hub cache (hub file from a mirror): " in out


def test_mirror_folder_works_offline_and_checks_sha256sums(test_zoo, monkeypatch, capsys, tmp_path):
    state, data = _checkpoint(8)
    _, other = _checkpoint(9)
    test_zoo("test_plain", refused_url("/models/plain.pth"))  # no hash in its name
    test_zoo("test_listed", refused_url("/models/listed.pth"))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "plain.pth").write_bytes(data)
    (mirror / "listed.pth").write_bytes(other)
    (mirror / "SHA256SUMS").write_text(f"{'0' * 64}  listed.pth\n")  # lists another content
    monkeypatch.setenv("IMNET_WEIGHTS_MIRROR", str(mirror))
    monkeypatch.setenv("IMNET_OFFLINE", "1")
    code, out, _ = _cli(["weights", "fetch", "test_*", "--no-progress"], capsys)
    assert code == 1
    assert "fetched 1, already cached 0, failed 1" in out and "hash mismatch: 1 (test_listed)" in out
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert (checkpoints / "plain.pth").read_bytes() == data and not (checkpoints / "listed.pth").exists()
    code, out, _ = _cli(["weights", "verify", "test_*", "--no-progress"], capsys)
    assert code == 0 and "unverified test_plain: no hash published; reads as a checkpoint" in out
    assert "not cached test_listed" in out


def test_mirror_file_that_is_not_a_checkpoint_is_deleted(test_zoo, monkeypatch, tmp_path):
    test_zoo("test_plain", refused_url("/models/plain.pth"))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "plain.pth").write_bytes(b"<html>a login page, not weights</html>")
    monkeypatch.setenv("IMNET_WEIGHTS_MIRROR", str(mirror))
    with pytest.raises(Exception, match=r"plain\.pth: corrupt or unreadable checkpoint .*deleted") as info:
        fetch_weights(zoo.get_config("test_plain"), progress=False, echo=None)
    assert info.value.kind == "not a checkpoint"
    assert not (tmp_path / "torch" / "hub" / "checkpoints" / "plain.pth").exists()


# --- offline ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("var", ["IMNET_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_never_touches_the_network(server, test_zoo, monkeypatch, capsys, var):
    _, data = _checkpoint(10)
    test_zoo("test_tiny", server.add(f"/models/{_hashed_name('tiny', data)}", data))
    server.add_hub("timm/dla46_c.in1k", "model.safetensors", _hub_checkpoint("dla46_c")[1])
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv(var, "1")
    code, out, _ = _cli(["weights", "fetch", "test_tiny", "dla46_c", "--no-progress"], capsys)
    assert code == 1 and "offline: 2 (dla46_c, test_tiny)" in out and f"network access is off ({var}=1)" in out
    monkeypatch.setenv("IMNET_WEIGHTS_MIRROR", server.url)  # a URL mirror is network too
    code, out, _ = _cli(["weights", "fetch", "test_tiny", "--no-progress"], capsys)
    assert code == 1 and "offline: 1" in out
    assert server.requests == []


# --- verify -----------------------------------------------------------------------------------------------

def test_verify_finds_a_damaged_file_and_delete_removes_it(server, test_zoo, capsys, tmp_path):
    _, data = _checkpoint(11)
    name = _hashed_name("tiny", data)
    test_zoo("test_tiny", server.add(f"/models/{name}", data))
    assert _cli(["weights", "fetch", "test_tiny", "--no-progress"], capsys)[0] == 0
    code, out, _ = _cli(["weights", "verify", "test_tiny", "--no-progress"], capsys)
    assert code == 0 and "ok         test_tiny: matches the file name's SHA-256 prefix" in out
    target = tmp_path / "torch" / "hub" / "checkpoints" / name
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF
    target.write_bytes(bytes(damaged))
    code, out, _ = _cli(["weights", "verify", "test_tiny", "--no-progress"], capsys)
    assert code == 1 and "bad        test_tiny: SHA-256" in out and target.exists()
    code, out, _ = _cli(["weights", "verify", "test_tiny", "--delete", "--no-progress"], capsys)
    assert code == 1 and "; deleted" in out and not target.exists()
    assert _cli(["weights", "fetch", "test_tiny", "--no-progress"], capsys)[0] == 0
    assert target.read_bytes() == data


def test_list_shows_every_official_model_with_its_source(capsys):
    code, out, _ = _cli(["weights", "list", "--format", "json"], capsys)
    assert code == 0
    rows = {r["model"]: r for r in json.loads(out)}
    assert len(rows) == sum(zoo.get_config(n).weights is not None for n in zoo.list_models())
    assert rows["resnet50"]["source"] == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert rows["resnet50"]["hash"] == "SHA-256 0676ba61... (file name)" and rows["resnet50"]["size_note"] == "~97.8 MB"
    assert rows["dla34"]["source"] == "hf:timm/dla34.in1k"
    assert rows["dla34"]["mirror_path"] == "timm/dla34.in1k/model.safetensors or timm/dla34.in1k/pytorch_model.bin"
    assert rows["vanillanet_5"]["hash"] == "none published" and rows["vanillanet_5"]["cached"] is None
    code, _, err = _cli(["weights", "list", "cifar_resnet20"], capsys)
    assert code == 2 and "no zoo model with official weights matches" in err


# --- the ReaL file --------------------------------------------------------------------------------------

def _real_json(n: int = 40) -> bytes:
    return json.dumps([[i % 7] if i % 5 else [] for i in range(n)]).encode()


def test_real_labels_fetched_into_the_cache_and_checked(server, tmp_path):
    from imnet.eval.real import fetch_real_labels, load_real_labels, official_real_path

    data = _real_json()
    url = server.add("/google-research/reassessed-imagenet/master/real.json", data)
    md5 = hashlib.md5(data).hexdigest()
    path = fetch_real_labels(url, md5=md5, size=len(data), progress=False)
    assert path == official_real_path() == tmp_path / "torch" / "hub" / "checkpoints" / "real.json"
    assert load_real_labels(path, 40)[0] == [] and len(server.gets()) == 1
    assert fetch_real_labels(url, md5=md5, size=len(data), progress=False) == path and len(server.gets()) == 1
    path.write_bytes(data.replace(b"[]", b"[1]", 1))  # damaged in the cache: deleted, fetched again
    lines = []
    assert fetch_real_labels(url, md5=md5, size=len(data), progress=False, echo=lines.append).read_bytes() == data
    assert len(server.gets()) == 2 and "deleted, fetching it again" in lines[0]


def test_real_labels_with_the_wrong_checksum_leave_nothing(server, tmp_path):
    from imnet.errors import ImnetError
    from imnet.eval.real import fetch_real_labels

    data = _real_json()
    url = server.add("/real.json", data)
    with pytest.raises(ImnetError, match=r"could not fetch the official real\.json .*MD5 .*expected 0{32}"):
        fetch_real_labels(url, md5="0" * 32, size=len(data), progress=False)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert not (checkpoints / "real.json").exists() and not (checkpoints / "real.json.imnet-partial").exists()
    with pytest.raises(ImnetError, match="HTTP 404"):
        fetch_real_labels(server.url + "/nothing.json", md5="0" * 32, progress=False)


def test_real_labels_local_file_first_then_mirror_then_offline(server, monkeypatch, tmp_path):
    from imnet.errors import ImnetError
    from imnet.eval.real import REAL_MD5, REAL_SIZE, fetch_real_labels, find_or_fetch_real_labels

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "real.json").write_bytes(_real_json())
    assert find_or_fetch_real_labels(data_dir) == data_dir / "real.json"  # as before: no download
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    generated = _real_json()
    (mirror / "real.json").write_bytes(generated)
    monkeypatch.setenv("IMNET_WEIGHTS_MIRROR", str(mirror))
    monkeypatch.setenv("IMNET_OFFLINE", "1")  # a mirror folder is no network access
    got = fetch_real_labels(md5=hashlib.md5(generated).hexdigest(), size=len(generated), progress=False)
    assert got.read_bytes() == generated
    got.unlink()
    # The official checksum: a mirror holding another file is refused and nothing is kept.
    with pytest.raises(ImnetError, match=rf"size {len(generated)} bytes, expected {REAL_SIZE:,}"):
        find_or_fetch_real_labels(tmp_path / "elsewhere")
    (mirror / "real.json").write_bytes(generated.ljust(REAL_SIZE))  # the official size, not its MD5
    with pytest.raises(ImnetError, match=rf"MD5 [0-9a-f]{{32}}, expected {REAL_MD5}"):
        find_or_fetch_real_labels(tmp_path / "elsewhere")
    assert not got.exists()
    monkeypatch.delenv("IMNET_WEIGHTS_MIRROR")
    with pytest.raises(ImnetError, match=r"network access is off \(IMNET_OFFLINE=1\).*--data or --src"):
        find_or_fetch_real_labels(tmp_path / "elsewhere")
    assert server.requests == []


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (needs root and mount rights; skipped cleanly otherwise)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


def test_disk_full_is_named_and_the_partial_file_is_never_taken_as_good(server, test_zoo, small_disk,
                                                                       monkeypatch, capsys):
    _, data = _checkpoint(12, pad_mb=24)
    name = _hashed_name("tiny", data)
    test_zoo("test_tiny", server.add(f"/models/{name}", data))
    monkeypatch.setenv("TORCH_HOME", str(small_disk / "torch"))
    code, out, _ = _cli(["weights", "fetch", "test_tiny", "--no-progress"], capsys)
    assert code == 1 and "disk full: 1 (test_tiny)" in out and "no space left on the device" in out
    checkpoints = small_disk / "torch" / "hub" / "checkpoints"
    assert not (checkpoints / name).exists()
    assert resolve_official(zoo.get_config("test_tiny"))[0] is None
