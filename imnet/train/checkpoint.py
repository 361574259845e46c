"""Training checkpoints: atomic writes, strict reads, RNG state capture, the run record ``run.json``.

A checkpoint (``last.pth``) is a dict with ``"format": "imnet-train-checkpoint"`` and everything a
resumed run needs to continue bit-for-bit: model, optimizer, scheduler, AMP scaler and EMA states, the
epoch and the loader position inside it, and the torch / numpy / Python RNG states (at the last step
and at the start of the epoch, so a mid-epoch resume can replay the loader). ``best.pth`` holds only
the best weights (``"model"``) and the same header. Files are written to a temp file in the same
folder, fsynced, then renamed, so a crash never leaves a half-written file under the final name.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from imnet.errors import ImnetError

CHECKPOINT_FORMAT = "imnet-train-checkpoint"
CHECKPOINT_VERSION = 1
RUN_FORMAT = "imnet-train-run"


def _atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, fsync it, rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` (a checkpoint dict, see the module doc) atomically to ``path``."""
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    _atomic_write(Path(path), lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path, arch: str | None = None) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; tensors land on the CPU.

    Raises :class:`ImnetError` naming ``path`` when it is missing, unreadable or truncated (corrupt),
    not an imnet training checkpoint (foreign), of a newer format, or for another ``arch``.
    """
    path = Path(path)
    if not path.is_file():
        raise ImnetError(f"{path}: checkpoint not found")
    try:
        # weights_only: a checkpoint is data; nothing in it may run code when loaded.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):
            # e.g. an old training script's checkpoint holding an argparse.Namespace
            raise ImnetError(f"{path}: not an imnet training checkpoint (it holds Python objects beyond "
                             "tensors and plain data, which imnet never writes)") from None
        detail = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0][:120]
        raise ImnetError(f"{path}: corrupt or truncated checkpoint, cannot be read (unpickling failed: {detail})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise ImnetError(f"{path}: corrupt or truncated checkpoint, cannot be read ({reason[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        keys = ", ".join(sorted(map(str, state))[:6]) if isinstance(state, dict) else type(state).__name__
        raise ImnetError(
            f"{path}: not an imnet training checkpoint (no format {CHECKPOINT_FORMAT!r}; found {keys}); "
            "--resume wants a run directory written by `imnet train`"
        )
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise ImnetError(f"{path}: checkpoint format version {state['version']} is newer than this imnet reads")
    if arch is not None and state.get("arch") != arch:
        raise ImnetError(f"{path}: checkpoint is for arch {state.get('arch')!r}, not {arch!r}")
    return state


def capture_rng_state() -> dict:
    """The torch (CPU and CUDA), numpy and Python RNG states, as tensors and plain values."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict) -> None:
    """Restore what :func:`capture_rng_state` captured."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(
        (npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def write_run_record(run_dir: Path, record: dict) -> None:
    """Write ``run_dir/run.json`` atomically (``"format": "imnet-train-run"`` is added)."""
    record = {"format": RUN_FORMAT, **record}
    data = (json.dumps(record, indent=2, sort_keys=False, default=str) + "\n").encode()
    _atomic_write(Path(run_dir) / "run.json", lambda handle: handle.write(data))


def read_run_record(run_dir: Path) -> dict:
    """Read ``run_dir/run.json``; :class:`ImnetError` naming the file when missing or not a run record."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise ImnetError(f"{path}: not found; {run_dir} is not an `imnet train` run directory")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ImnetError(f"{path}: cannot read run record ({err})") from None
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT or "arch" not in record:
        raise ImnetError(f"{path}: not an imnet train run record (format {RUN_FORMAT!r} with an 'arch')")
    return record


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (summary.csv and other small files)."""
    data = text.encode("utf-8")
    _atomic_write(Path(path), lambda handle: handle.write(data))
