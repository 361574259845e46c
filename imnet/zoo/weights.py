"""Finding, reading and loading model weights; fetching the official ones into the caches.

Resolution order for a model ``name`` (:func:`resolve_weights`):

1. an explicit ``weights`` argument: a checkpoint file, or a finished ``imnet train`` run directory;
2. ``$IMNET_WEIGHTS/<name>.pth`` (or ``.safetensors``);
3. the torch hub cache torchvision (and timm's URL weights) download into:
   ``torch.hub.get_dir()/checkpoints/<file name of the URL>`` (``$TORCH_HOME`` moves it);
4. the Hugging Face hub cache timm downloads into:
   ``$HF_HUB_CACHE`` (default ``$HF_HOME/hub``) ``/models--<org>--<repo>/snapshots/<rev>/<file>``,
   then a hub file fetched from a mirror: ``torch.hub.get_dir()/checkpoints/<org>--<repo>--<file>``;
5. the newest finished ``imnet train`` run for this arch under ``$IMNET_RUNS``.

:func:`load_weights` reads a checkpoint in any of the usual wrappers (``model``, ``state_dict``,
``model_ema``, ``module.`` prefixes), passes it through the family's ``checkpoint_filter`` and loads
it strictly; a corrupt file or mismatched keys raise :class:`ImnetError` naming the file and the
first mismatching keys. :func:`fetch_weights` (alias ``download_weights``) brings a model's official
file into the caches above, exactly where steps 3/4 find it again: from the Hugging Face hub with
``huggingface_hub.hf_hub_download`` (``$HF_ENDPOINT`` honoured), from its URL with a resumable
download (:mod:`imnet.download`), or from ``$IMNET_WEIGHTS_MIRROR`` when that is set; it checks what
can be checked (the SHA-256 prefix torchvision and SimpleNet file names carry, the hub's SHA-256
ETag, the mirror's ``SHA256SUMS``; a file with no hash must at least read as a checkpoint) and
deletes a file that fails. :func:`resolve_or_fetch` is the step ``imnet eval`` and ``imnet train
--init-from`` take per model.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from imnet.download import (DownloadError, Expected, check_reachable, describe_failure, fetch_to, mirror,
                            mirror_location, mirror_sha256, offline_reason, remember_unreachable,
                            remove_quietly)
from imnet.errors import ImnetError
from imnet.zoo.config import ModelConfig
from imnet.zoo.registry import get_config

WEIGHT_SUFFIXES = (".pth", ".safetensors")
# File names timm and huggingface_hub use for weights in a hub repo, in timm's order of preference.
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
# What fetching tries for a hub id without a file name (timm's load_state_dict_from_hf order).
HF_FETCH_FILES = ("model.safetensors", "pytorch_model.bin")
# torch hub's convention: "<name>-<first hex digits of the SHA-256>.<ext>" (torch.hub.HASH_REGEX).
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")
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
            out += [("torch hub cache (hub file from a mirror)", mirrored_hub_file(source.hf_hub_id, f))
                    for f in ((source.filename,) if source.filename else HF_FETCH_FILES)]
    return out


def mirrored_hub_file(hf_hub_id: str, filename: str) -> Path:
    """Where a hub file fetched from ``$IMNET_WEIGHTS_MIRROR`` is kept: the Hugging Face cache needs
    the hub's commit ids and ETags, which a mirror has not, so it goes into the torch hub cache as
    ``checkpoints/<org>--<repo>--<file>``."""
    return torch_hub_checkpoint_dir() / f"{hf_hub_id.replace('/', '--')}--{filename}"


def official_files(config: ModelConfig) -> list[tuple[str, Path]]:
    """(where, path) of every place the official file of ``config`` is cached (steps 3-4), whether
    the files exist or not; empty without official weights."""
    return [(w, p) for w, p in _candidates(config.name, config) if w != "$IMNET_WEIGHTS"]


def resolve_official(config: ModelConfig) -> tuple[Path | None, str]:
    """The cached official file of ``config`` (torch hub / Hugging Face caches only), else
    ``(None, reason)``."""
    if config.weights is None:
        return None, "no official weights published"
    looked = []
    for where, path in official_files(config):
        if path.is_file():
            return path, where
        looked.append(str(path))
    return None, "official weights not cached; looked in: " + ", ".join(looked)


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

    With no local weights, the official ones are fetched (:func:`fetch_weights`) unless
    ``download`` is False or ``$IMNET_OFFLINE``/``$HF_HUB_OFFLINE`` is set (a mirror folder still
    serves then). When the model was built
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
            download = offline_reason() is None or _mirror_folder() is not None
        if not download or config.weights is None:
            raise ImnetError(f"{config.name}: {where}")
        path = fetch_weights(config)
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


# --- fetching the official files ------------------------------------------------------------------

def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def hash_in_name(filename: str) -> str | None:
    """The SHA-256 prefix a torch hub style file name carries (``resnet50-0676ba61.pth``), or None."""
    found = _HASH_IN_NAME.search(filename)
    return found.group(1) if found else None


def _mirror_folder() -> str | None:
    """The mirror when it is a local folder (usable offline), else None."""
    from imnet.download import mirror_is_url

    value = mirror()
    return value if value is not None and not mirror_is_url(value) else None


@dataclass(frozen=True)
class FetchStep:
    """One way to obtain a model's official file, tried in order: ``location`` (a URL or a mirror
    path; for a hub download ``<endpoint>/<hub id>/<file>``), where it lands (``target``; None for a
    hub download, the Hugging Face cache decides) and what it must be (``expected``)."""

    location: str
    target: Path | None
    expected: Expected
    hub: tuple[str, str] | None = None  # (hub id, file name) for hf_hub_download


def fetch_steps(config: ModelConfig) -> list[FetchStep]:
    """How :func:`fetch_weights` would obtain ``config``'s official file now: from the mirror when
    ``$IMNET_WEIGHTS_MIRROR`` is set (hub files as ``<hub id>/<file>``, others by the URL's file name),
    else from the Hugging Face hub (a hub id wins over a URL, as in timm) or the URL."""
    source = config.weights
    if source is None:
        return []
    value = mirror()
    if source.hf_hub_id:
        names = (source.filename,) if source.filename else HF_FETCH_FILES
        if value is not None:
            return [FetchStep(mirror_location(value, f"{source.hf_hub_id}/{n}"),
                              mirrored_hub_file(source.hf_hub_id, n),
                              Expected(sha256=mirror_sha256(value, f"{source.hf_hub_id}/{n}")))
                    for n in names]
        endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        return [FetchStep(f"{endpoint}/{source.hf_hub_id}/resolve/main/{n}", None, Expected(),
                          hub=(source.hf_hub_id, n)) for n in names]
    name = Path(source.url).name
    prefix = hash_in_name(name)
    if value is not None:
        return [FetchStep(mirror_location(value, name), torch_hub_checkpoint_dir() / name,
                          Expected(sha256_prefix=prefix, sha256=mirror_sha256(value, name)))]
    return [FetchStep(source.url, torch_hub_checkpoint_dir() / name, Expected(sha256_prefix=prefix))]


def hub_file_check(path: Path) -> tuple[bool, str | None]:
    """(verifiable, problem) of a file in the Hugging Face cache: its blob is named by the hub's ETag,
    the SHA-256 of an LFS file (64 hex digits) or the git blob id of a small one (40)."""
    import hashlib

    from imnet.download import file_digests

    blob = Path(os.path.realpath(path))
    etag = blob.name
    if re.fullmatch(r"[0-9a-f]{64}", etag):
        sha, _ = file_digests(blob)
        return True, None if sha == etag else f"SHA-256 {sha}, the hub's ETag says {etag}"
    if re.fullmatch(r"[0-9a-f]{40}", etag):
        data = blob.read_bytes()
        git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        return True, None if git == etag else f"git blob id {git}, the hub's ETag says {etag}"
    return False, None


def remove_hub_file(path: Path) -> None:
    blob = Path(os.path.realpath(path))
    remove_quietly(path)
    if blob != path:
        remove_quietly(blob)


def _hub_download(step: FetchStep, progress: bool) -> Path:
    from huggingface_hub import hf_hub_download

    from imnet.download import bar_class

    hub_id, filename = step.hub  # type: ignore[misc]
    reason = offline_reason()
    if reason is not None:
        raise DownloadError(f"{step.location}: not fetched, network access is off ({reason})", "offline")
    check_reachable(step.location)
    try:
        path = Path(hf_hub_download(hub_id, filename, cache_dir=hf_hub_cache_dir(),
                                    endpoint=os.environ.get("HF_ENDPOINT") or None,
                                    tqdm_class=bar_class(progress)))
    except Exception as err:  # huggingface_hub's and httpx's errors share no base class
        kind, detail = describe_failure(err)
        remember_unreachable(step.location, kind, detail)
        raise DownloadError(f"{step.location}: {detail}", kind) from None
    verifiable, problem = hub_file_check(path)
    if problem is not None:
        remove_hub_file(path)
        raise DownloadError(f"{step.location}: {problem}; the download was deleted", "hash mismatch")
    return path


def fetch_weights(config: ModelConfig, progress: bool = True,
                  echo: Callable[[str], None] | None = stderr_line) -> Path:
    """Fetch ``config``'s official file into the cache :func:`resolve_weights` reads and return it
    (one line on ``echo`` per download, a tqdm bar on stderr). The steps of :func:`fetch_steps` are
    tried in order while the file is not found; any other failure ends the fetch.
    :class:`DownloadError` (its ``kind`` a short reason) when the model has no official weights,
    when offline, when no source has the file, on network errors and failed checks; a file failing
    its checks, or one without a hash that does not read as a checkpoint, is deleted."""
    steps = fetch_steps(config)
    if not steps:
        raise DownloadError(f"{config.name}: no official weights published", "no official weights")
    if echo is not None:
        others = "".join(f" (else {Path(st.location).name})" for st in steps[1:])
        echo(f"imnet: fetching {config.name}: {steps[0].location}{others}")
    missing: list[DownloadError] = []
    for step in steps:
        try:
            if step.hub is not None:
                path = _hub_download(step, progress)
                verified = hub_file_check(path)[0]
            else:
                path = fetch_to(step.location, step.target, step.expected,  # type: ignore[arg-type]
                                progress=progress, echo=echo)
                verified = step.expected.verifiable
        except DownloadError as err:
            if err.kind.startswith("not found") or err.kind == "not on the mirror":
                missing.append(err)
                continue
            raise DownloadError(f"{config.name}: {err}", err.kind) from None
        if not verified:
            try:  # no hash to check it against: it must at least be a checkpoint
                read_state_dict(path)
            except ImnetError as err:
                (remove_hub_file if step.hub is not None else remove_quietly)(path)
                what = str(err).split(" (", 1)[0]  # "<path>: corrupt or unreadable checkpoint"
                raise DownloadError(f"{config.name}: {what} (from {step.location}, which publishes no "
                                    "hash to check it against); the download was deleted",
                                    "not a checkpoint") from None
        return path
    where = "on the mirror" if mirror() is not None else "at its source"
    raise DownloadError(f"{config.name}: not found {where} ({'; '.join(map(str, missing))})",
                        missing[-1].kind)


download_weights = fetch_weights  # the name INTERFACES.md gave it first


@dataclass(frozen=True)
class Resolution:
    """What :func:`resolve_or_fetch` found for one model: the file and where it came from, or None
    and the reason, with ``kind`` a short group label for summaries."""

    path: Path | None
    where: str
    fetched: bool = False
    kind: str = ""


def resolve_or_fetch(name: str, weights: str | os.PathLike | None = None, fetch: bool = True,
                     progress: bool = True, echo: Callable[[str], None] | None = stderr_line) -> Resolution:
    """The weights of ``name`` as :func:`resolve_weights` finds them; when none are found and the
    model has official weights, fetched (:func:`fetch_weights`) unless ``fetch`` is False or network
    access is off (a mirror folder still serves). A failed fetch is a :class:`Resolution` without
    a path, its reason and kind from the failure; an explicit ``weights`` that is wrong still raises
    :class:`ImnetError`."""
    path, where = resolve_weights(name, weights)
    if path is not None:
        return Resolution(path, where)
    config = get_config(name)
    if config.weights is None:
        return Resolution(None, where, kind="no weights")
    if not fetch:
        return Resolution(None, where, kind="not cached")
    reason = offline_reason()
    if reason is not None and _mirror_folder() is None:
        return Resolution(None, f"official weights not cached and network access is off ({reason})",
                          kind="offline, not cached")
    try:
        path = fetch_weights(config, progress=progress, echo=echo)
    except DownloadError as err:
        return Resolution(None, str(err), kind=f"fetch failed: {err.kind}")
    where = next((w for w, p in official_files(config) if p == path), "cache")
    return Resolution(path, f"{where} (fetched)", fetched=True)


INIT_OFFICIAL = "official"


def initialise_from(model: nn.Module, config: ModelConfig, init_from: str | os.PathLike,
                    progress: bool = True) -> str:
    """Load the starting weights of a fine-tuning run (``imnet train --init-from``) into ``model``:
    ``"official"`` is the model's official file (fetched when not cached, unless offline), anything
    else a checkpoint file or a finished ``imnet train`` run directory. A classifier of another class
    count than the data's is left freshly initialised. Returns what was loaded, for ``run.json``.
    :class:`ImnetError` saying why when the weights cannot be had or do not fit."""
    if str(init_from) != INIT_OFFICIAL:
        path = load_weights(model, config, Path(init_from))
        return str(path)
    path, where = resolve_official(config)
    if path is None:
        if config.weights is None:
            raise ImnetError(f"--init-from official: {config.name} has no official weights; "
                             "give a checkpoint file or run directory instead")
        reason = offline_reason()
        if reason is not None and _mirror_folder() is None:
            raise ImnetError(f"--init-from official: the weights of {config.name} are not cached and "
                             f"network access is off ({reason}); `imnet weights fetch {config.name}` "
                             "where it is on, or set IMNET_WEIGHTS_MIRROR")
        try:
            path = fetch_weights(config, progress=progress)
        except DownloadError as err:
            raise ImnetError(f"--init-from official: {err}") from None
    load_weights(model, config, path)
    return f"official: {path}"


def is_official_file(config: ModelConfig, path: str | os.PathLike) -> bool:
    """Whether ``path`` is (a cached copy of) ``config``'s official file: the URL's file name, a
    snapshot of its hub repo in the Hugging Face cache, or its mirror-fetched hub file."""
    source = config.weights
    if source is None:
        return False
    path = Path(path)
    if source.hf_hub_id:
        flat = source.hf_hub_id.replace("/", "--")
        if f"models--{flat}" in path.parts or path.name.startswith(f"{flat}--"):
            return True
    return bool(source.url) and path.name == Path(str(source.url)).name
