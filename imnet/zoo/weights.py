"""Finding, reading and loading model weights; downloading the official ones for online users.

Resolution order for a model ``name`` (:func:`resolve_weights`):

1. an explicit ``weights`` argument: a checkpoint file, or a finished ``imnet train`` run directory;
2. ``$IMNET_WEIGHTS/<name>.pth`` (or ``.safetensors``);
3. the torch hub cache torchvision (and timm's URL weights) download into:
   ``torch.hub.get_dir()/checkpoints/<file name of the URL>`` (``$TORCH_HOME`` moves it);
4. the Hugging Face hub cache timm downloads into:
   ``$HF_HUB_CACHE`` (default ``$HF_HOME/hub``) ``/models--<org>--<repo>/snapshots/<rev>/<file>``;
5. the newest finished ``imnet train`` run for this arch under ``$IMNET_RUNS``.

:func:`load_weights` reads a checkpoint in any of the usual wrappers (``model``, ``state_dict``,
``model_ema``, ``module.`` prefixes), passes it through the family's ``checkpoint_filter`` and loads
it strictly; a corrupt file or mismatched keys raise :class:`ImnetError` naming the file and the
first mismatching keys. :func:`download_weights` fetches official weights into the caches above with
torch hub / huggingface_hub, exactly where step 3/4 find them again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from imnet.errors import ImnetError
from imnet.zoo.registry import ModelConfig, get_config

WEIGHT_SUFFIXES = (".pth", ".safetensors")
# File names timm and huggingface_hub use for weights in a hub repo, in timm's order of preference.
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
_STATE_DICT_KEYS = ("state_dict_ema", "model_ema", "model", "state_dict", "net", "weights")
RUN_CHECKPOINTS = ("best.pth", "last.pth")


# --- where weights are looked for -------------------------------------------------------------------

def torch_hub_checkpoint_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where torchvision (and timm for URL weights) cache files."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``~/.cache/huggingface/hub`` (the rules huggingface_hub itself follows)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def _hf_snapshot_files(hf_hub_id: str, filename: str | None) -> list[Path]:
    """Candidate weight files of ``hf_hub_id`` in the HF cache: the snapshot ``refs/main`` points
    to first, then any other snapshot."""
    repo_dir = hf_hub_cache_dir() / f"models--{hf_hub_id.replace('/', '--')}"
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return []
    revisions = sorted(p for p in snapshots.iterdir() if p.is_dir())
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        main = snapshots / ref.read_text().strip()
        revisions = [main] + [r for r in revisions if r != main]
    names = (filename,) if filename else HF_WEIGHT_FILES
    return [rev / name for rev in revisions for name in names]


def find_run_checkpoint(run_dir: Path | str) -> Path:
    """The weights file of a finished ``imnet train`` run directory: ``best.pth``, else ``last.pth``.

    The directory must hold ``run.json`` with an ``"arch"``; :class:`ImnetError` (naming the file)
    when it is missing, unreadable, not finished, or has no checkpoint."""
    run_dir = Path(run_dir)
    record = _read_run_record(run_dir)
    if record.get("finished") is False:
        raise ImnetError(f"{run_dir / 'run.json'}: the training run is not finished (\"finished\": false)")
    for name in RUN_CHECKPOINTS:
        if (run_dir / name).is_file():
            return run_dir / name
    raise ImnetError(f"{run_dir}: training run has no {' or '.join(RUN_CHECKPOINTS)}")


def _read_run_record(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ImnetError(f"{run_dir}: not an imnet train run directory (no run.json)") from None
    except (OSError, ValueError) as err:
        raise ImnetError(f"{path}: unreadable run record ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("arch"), str):
        raise ImnetError(f"{path}: run record has no \"arch\"")
    return record


def _runs_for(name: str) -> list[Path]:
    """Finished runs of arch ``name`` under ``$IMNET_RUNS``, newest first."""
    root = os.environ.get("IMNET_RUNS")
    if not root or not Path(root).is_dir():
        return []
    found = []
    for record_path in Path(root).glob("*/run.json"):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("arch") == name and record.get("finished", True):
            if any((record_path.parent / c).is_file() for c in RUN_CHECKPOINTS):
                found.append(record_path.parent)
    return sorted(found, key=lambda p: (p / "run.json").stat().st_mtime, reverse=True)


def _candidates(name: str, config: ModelConfig) -> list[tuple[str, Path]]:
    """(where, path) pairs in resolution order (steps 2-4), whether the files exist or not."""
    out: list[tuple[str, Path]] = []
    if os.environ.get("IMNET_WEIGHTS"):
        base = Path(os.environ["IMNET_WEIGHTS"]).expanduser()
        safe = name.replace("/", "--")
        out += [("$IMNET_WEIGHTS", base / f"{safe}{suffix}") for suffix in WEIGHT_SUFFIXES]
    source = config.weights
    if source is not None:
        if source.url:
            out.append(("torch hub cache", torch_hub_checkpoint_dir() / Path(source.url).name))
        if source.hf_hub_id:
            out += [("Hugging Face cache", p) for p in _hf_snapshot_files(source.hf_hub_id, source.filename)]
    return out


def resolve_weights(name: str, weights: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """Find the weights of zoo model ``name`` without loading them.

    Returns ``(path, where)`` with ``where`` saying which place it came from, or ``(None, reason)``
    with a reason naming every place looked in. An explicit ``weights`` that does not exist is a
    user error (:class:`ImnetError`), not a reason."""
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_dir():
            return find_run_checkpoint(path), f"training run {path}"
        if path.is_file():
            return path, "given file"
        raise ImnetError(f"{path}: weights file not found")
    config = get_config(name)
    looked: list[str] = []
    for where, path in _candidates(name, config):
        if path.is_file():
            return path, where
        looked.append(str(path))
    runs = _runs_for(name)
    if runs:
        return find_run_checkpoint(runs[0]), f"training run {runs[0]}"
    if not os.environ.get("IMNET_WEIGHTS"):
        looked.insert(0, "$IMNET_WEIGHTS (not set)")
    looked.append(f"$IMNET_RUNS ({os.environ.get('IMNET_RUNS') or 'not set'})")
    if config.weights is None:
        looked.append("no official weights published")
    return None, "no weights found; looked in: " + ", ".join(looked)


# --- reading and loading ----------------------------------------------------------------------------

def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file (``torch.save`` pickle or safetensors) and unwrap it to a state_dict:
    the first of ``state_dict_ema``/``model_ema``/``model``/``state_dict``/... that is a dict of
    tensors, with ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes removed.
    :class:`ImnetError` naming the file when it is corrupt or holds no state_dict."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ImnetError(f"{path}: weights file not found") from None
    except Exception as err:  # pickle, zip and safetensors errors have no common base class
        raise ImnetError(f"{path}: corrupt or unreadable checkpoint ({type(err).__name__}: {err})") from None
    state_dict = _unwrap(obj)
    if state_dict is None:
        keys = ", ".join(list(obj)[:8]) if isinstance(obj, dict) else type(obj).__name__
        raise ImnetError(f"{path}: no state_dict found in the checkpoint (top-level: {keys})")
    out = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _unwrap(obj: Any) -> dict | None:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, dict):
        for key in _STATE_DICT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner:
                found = _unwrap(inner)
                if found is not None:
                    return found
    return None


def load_weights(model: nn.Module, config: ModelConfig, weights: str | os.PathLike | None = None,
                 download: bool | None = None) -> Path:
    """Resolve (see :func:`resolve_weights`) and load weights into ``model`` in place; returns the
    file loaded.

    With no local weights, the official ones are downloaded (:func:`download_weights`) unless
    ``download`` is False or ``$IMNET_OFFLINE``/``$HF_HUB_OFFLINE`` is set. When the model was built
    with another ``num_classes`` than the checkpoint's, the classifier (``config.classifier``) is left
    as initialised (fine-tuning). :class:`ImnetError` on a corrupt file or mismatched keys."""
    if weights is not None and Path(weights).expanduser().is_dir():
        record = _read_run_record(Path(weights).expanduser())
        if record["arch"] != config.name:
            raise ImnetError(f"{Path(weights) / 'run.json'}: run trained {record['arch']!r}, "
                             f"not {config.name!r}")
    path, where = resolve_weights(config.name, weights)
    if path is None:
        if download is None:
            download = not (os.environ.get("IMNET_OFFLINE") or os.environ.get("HF_HUB_OFFLINE"))
        if not download or config.weights is None:
            raise ImnetError(f"{config.name}: {where}")
        path = download_weights(config)
    state_dict = read_state_dict(path)
    if config.checkpoint_filter is not None:
        try:
            state_dict = config.checkpoint_filter(state_dict, model)
        except ImnetError as err:
            raise ImnetError(f"{path}: {err}") from None
    _load_strict(model, state_dict, path, config)
    return path


def _load_strict(model: nn.Module, state_dict: dict, path: Path, config: ModelConfig) -> None:
    own = model.state_dict()
    # Checkpoints older than BN's num_batches_tracked buffer (torchvision's) lack it: keep ours.
    state_dict = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **state_dict}
    head = config.classifier
    skipped_head = False
    if head and own.get(f"{head}.weight") is not None and state_dict.get(f"{head}.weight") is not None:
        if own[f"{head}.weight"].shape[0] != state_dict[f"{head}.weight"].shape[0]:
            # Different class count: keep the freshly initialised classifier.
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith(f"{head}.")}
            skipped_head = True
    missing = [k for k in own if k not in state_dict and not (skipped_head and k.startswith(f"{head}."))]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state_dict and hasattr(state_dict[k], "shape") and state_dict[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else ""))
    if shapes:
        problems.append(f"shape mismatch: {', '.join(shapes[:3])}" + (" ..." if len(shapes) > 3 else ""))
    if problems:
        raise ImnetError(f"{path}: does not fit {config.name} ({'; '.join(problems)})")
    model.load_state_dict(state_dict, strict=not skipped_head)


# --- download (online users) ------------------------------------------------------------------------

def download_weights(config: ModelConfig) -> Path:
    """Download ``config``'s official weights into the cache :func:`resolve_weights` reads (torch hub
    checkpoints for a URL, the Hugging Face cache for a hub id); returns the file. :class:`ImnetError`
    when the model has none or the download fails."""
    source = config.weights
    if source is None:
        raise ImnetError(f"{config.name}: no official weights published")
    try:
        if source.hf_hub_id:
            from huggingface_hub import hf_hub_download

            last_error: Exception | None = None
            for filename in ((source.filename,) if source.filename else HF_WEIGHT_FILES):
                try:
                    return Path(hf_hub_download(source.hf_hub_id, filename, cache_dir=hf_hub_cache_dir()))
                except Exception as err:  # EntryNotFound: try timm's next file name
                    last_error = err
            raise last_error or RuntimeError("no file")
        target = torch_hub_checkpoint_dir() / Path(source.url).name
        target.parent.mkdir(parents=True, exist_ok=True)
        # download_url_to_file writes a temp file and renames it: no half file under the final name.
        torch.hub.download_url_to_file(source.url, str(target), progress=True)
        return target
    except ImnetError:
        raise
    except Exception as err:
        where = source.hf_hub_id or source.url
        raise ImnetError(f"{config.name}: could not download weights from {where} ({err}); "
                         f"place the file in $IMNET_WEIGHTS/{config.name}.pth instead") from None
