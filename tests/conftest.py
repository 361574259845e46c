"""Shared pytest setup: markers, and a GPU check for tests that need one."""
import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: heavy test (large models, long runs)")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped cleanly without one")
    config.addinivalue_line("markers", "demo: the `imnet demo` end-to-end run (select with -m demo)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for tiny models: they gain nothing from two, and a shared 2-core box
    punishes spin-waiting threads (torchrun workers get OMP_NUM_THREADS=1 likewise)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_vanillanet():
    """A VanillaNet small enough for a test (3 stages of 16-64 channels at 32 px), registered for the
    test's duration only; its parameter names are VanillaNet's (stem*, stages.N, cls*)."""
    from imnet.zoo import registry
    from imnet.zoo.registry import ModelConfig, register_model
    from imnet.zoo.vanillanet import VanillaNet

    name = "test_vanillanet_tiny"
    config = ModelConfig(name=name, family="vanillanet", source="test", input_size=(3, 32, 32), crop_pct=1.0,
                         first_conv="stem1.0", classifier="cls2.0")
    register_model(config)(lambda num_classes=1000, **kw: VanillaNet([16, 32, 64], [2, 2], num_classes=num_classes, **kw))
    yield name
    registry._REGISTRY.pop(name)


@pytest.fixture
def isolated_caches(tmp_path, monkeypatch):
    """Every download cache under tmp_path; online; no mirror; no host remembered as unreachable
    (the weights and eval-fetch tests, against the loopback server)."""
    from imnet.download import forget_unreachable

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HF_HUB_CACHE", "IMNET_WEIGHTS", "IMNET_RUNS", "XDG_CACHE_HOME", "IMNET_OFFLINE",
                "HF_HUB_OFFLINE", "IMNET_WEIGHTS_MIRROR", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    forget_unreachable()
    yield tmp_path
    forget_unreachable()


@pytest.fixture
def cli_error(capsys):
    """Run the CLI in this process with ``args``; assert it exits 2 without a traceback; return its
    last stderr line (the one-line error)."""
    from imnet.cli import main

    def run(args) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err.strip().replace("\r", "\n").splitlines()[-1]

    return run
