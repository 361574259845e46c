"""``imnet weights list|fetch|verify``: the official weights of the zoo, where they come from, whether
they are cached, fetching them and checking the cached files again.

One row per zoo model with official weights (:func:`weights_table`); models that share a file
fetch it once. Fetching and checking are :func:`imnet.zoo.weights.
fetch_weights` and its checks; the mirror and offline settings are those of :mod:`imnet.download`.
"""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from imnet.download import DownloadError, Expected, check_file, mirror, mirror_sha256, remove_quietly
from imnet.errors import ImnetError
from imnet.zoo.config import ModelConfig
from imnet.zoo.figures import torchvision_file_size
from imnet.zoo.registry import get_config, list_models
from imnet.zoo.weights import (HF_FETCH_FILES, remove_hub_file, stderr_line, fetch_weights, hash_in_name,
                               hub_file_check, read_state_dict, resolve_official)

FORMATS = ("text", "csv", "json")


@dataclass(frozen=True)
class WeightsRow:
    """One zoo model's official weights: ``source`` (URL, or ``hf:<hub id>``), ``filename`` (in the
    mirror: ``mirror_path``), ``size`` (bytes when cached, else the source's figure or None),
    ``hash`` (what the file can be checked against), and where it is cached (None: not cached)."""

    model: str
    source: str
    filename: str
    mirror_path: str
    size: int | None
    size_note: str
    hash: str
    cached: str | None
    where: str


def models_with_weights(pattern: str | list[str] = "*") -> list[str]:
    """Zoo models matching ``pattern`` (shell patterns, or names, library pass-throughs such as
    ``timm/<name>`` included) that name official weights; :class:`ImnetError` when none do."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    names = [n for n in list_models(patterns) if get_config(n).weights is not None]
    for p in patterns:
        if not any(ch in p for ch in "*?[") and p not in names and "/" in p:
            if get_config(p).weights is not None:  # ImnetError for an unknown name
                names.append(p)
    if not names:
        raise ImnetError(f"no zoo model with official weights matches {pattern!r}; "
                         "`imnet weights list` shows them all")
    return names


def _file_key(config: ModelConfig) -> str:
    w = config.weights
    assert w is not None
    return f"hf:{w.hf_hub_id}:{w.filename or ''}" if w.hf_hub_id else str(w.url)


def _row(config: ModelConfig) -> WeightsRow:
    w = config.weights
    assert w is not None
    path, where = resolve_official(config)
    if w.hf_hub_id:
        names = (w.filename,) if w.filename else HF_FETCH_FILES
        filename = w.filename or " or ".join(names)
        mirror_path = " or ".join(f"{w.hf_hub_id}/{n}" for n in names)
        source, hash_note = f"hf:{w.hf_hub_id}", "SHA-256 = the hub's ETag"
        size_note = ""
    else:
        filename = mirror_path = Path(str(w.url)).name
        prefix = hash_in_name(filename)
        source = str(w.url)
        hash_note = f"SHA-256 {prefix}... (file name)" if prefix else "none published"
        mb = torchvision_file_size(filename)
        size_note = f"~{mb:.1f} MB" if mb else ""
    size = path.stat().st_size if path is not None else None
    return WeightsRow(config.name, source, filename, mirror_path, size, size_note, hash_note,
                      str(path) if path is not None else None, where if path is not None else "-")


def weights_table(pattern: str | list[str] = "*") -> list[WeightsRow]:
    """One :class:`WeightsRow` per zoo model matching ``pattern`` that has official weights."""
    return [_row(get_config(n)) for n in models_with_weights(pattern)]


def _size_text(row: WeightsRow) -> str:
    if row.size is not None:
        return f"{row.size / 1e6:.1f} MB"
    return row.size_note or "?"


def render_table(rows: list[WeightsRow], fmt: str = "text") -> str:
    """The rows as aligned text (one model a line), CSV or JSON."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    if fmt == "json":
        return json.dumps([asdict(r) for r in rows], indent=1) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(list(WeightsRow.__dataclass_fields__))
        for r in rows:
            writer.writerow(["" if v is None else v for v in asdict(r).values()])
        return out.getvalue()
    width = max([len(r.model) for r in rows] + [5])
    lines = [f"{'model':<{width}}  {'cached':<7} {'size':>10}  hash / source / file"]
    for r in rows:
        lines.append(f"{r.model:<{width}}  {'yes' if r.cached else 'no':<7} {_size_text(r):>10}  "
                     f"{r.hash}; {r.source}" + (f" [{r.filename}]" if r.source.startswith("hf:") else ""))
        if r.cached:
            lines.append(f"{'':<{width}}  -> {r.where}: {r.cached}")
    cached = sum(r.cached is not None for r in rows)
    lines.append(f"{len(rows)} models with official weights, {cached} cached (~: size from torchvision's "
                 "docs); mirror layout: <mirror>/<file name>, hub files <mirror>/<hub id>/<file>")
    return "\n".join(lines) + "\n"


@dataclass
class FetchReport:
    """What :func:`fetch_official` did per model: fetched now, found cached, or failed (reason)."""

    fetched: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, DownloadError] = field(default_factory=dict)

    def summary(self) -> str:
        """``fetched 2, already cached 1, failed 1`` and one line per failure kind."""
        lines = [f"fetched {len(self.fetched)}, already cached {len(self.cached)}, failed {len(self.failed)}"]
        for kind, names in group_by_kind({n: e.kind for n, e in self.failed.items()}).items():
            lines.append(f"  {kind}: {len(names)} ({_names(names)})")
        for name, err in self.failed.items():
            lines.append(f"failed {name}: {str(err).removeprefix(name + ': ')}")
        return "\n".join(lines)


def group_by_kind(kinds: dict[str, str]) -> dict[str, list[str]]:
    """model -> kind, regrouped as kind -> models (largest group first)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name, kind in kinds.items():
        groups[kind].append(name)
    return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", and {len(names) - limit} more" if len(names) > limit else "")


def fetch_official(pattern: str | list[str] = "*", force: bool = False, progress: bool = True,
                   echo: Callable[[str], None] | None = stderr_line) -> FetchReport:
    """Fetch the official file of every zoo model matching ``pattern`` that is not cached (all of
    them with ``force``: the cached files are deleted first); one download per file, failures
    recorded per model and the others going on."""
    report = FetchReport()
    by_file: dict[str, list[ModelConfig]] = defaultdict(list)
    for name in models_with_weights(pattern):
        config = get_config(name)
        by_file[_file_key(config)].append(config)
    for configs in tqdm(list(by_file.values()), desc="weights", unit="file", disable=not progress):
        config = configs[0]
        path, _ = resolve_official(config)
        if path is not None and force:
            (remove_hub_file if config.weights.hf_hub_id else remove_quietly)(path)  # type: ignore[union-attr]
            path = None
        if path is not None:
            report.cached += [c.name for c in configs]
            continue
        try:
            fetch_weights(config, progress=progress, echo=echo)
        except DownloadError as err:
            for c in configs:
                report.failed[c.name] = err
            continue
        report.fetched += [c.name for c in configs]
    return report


@dataclass(frozen=True)
class VerifyResult:
    """One model's cached official file checked again: ``status`` "ok", "unverified" (no hash
    known; it reads as a checkpoint), "bad" or "not cached"; ``detail`` says against what."""

    model: str
    status: str
    detail: str
    path: str | None = None


def _verify_file(config: ModelConfig, path: Path) -> tuple[str, str]:
    w = config.weights
    assert w is not None
    if w.hf_hub_id and "models--" in str(path):
        verifiable, problem = hub_file_check(path)
        if verifiable:
            return ("bad", problem) if problem else ("ok", "SHA-256 matches the hub's ETag")
    else:
        relative = f"{w.hf_hub_id}/{path.name.split('--')[-1]}" if w.hf_hub_id else path.name
        value = mirror()
        expected = Expected(sha256_prefix=None if w.hf_hub_id else hash_in_name(path.name),
                            sha256=mirror_sha256(value, relative) if value else None)
        if expected.verifiable:
            problem = check_file(path, expected)
            against = "the file name's SHA-256 prefix" if expected.sha256_prefix else "the mirror's SHA256SUMS"
            return ("bad", problem) if problem else ("ok", f"matches {against}")
    try:
        read_state_dict(path)
    except ImnetError as err:
        return "bad", str(err)
    return "unverified", "no hash published; reads as a checkpoint"


def verify_official(pattern: str | list[str] = "*", delete: bool = False,
                    progress: bool = True) -> list[VerifyResult]:
    """Check the cached official file of every zoo model matching ``pattern`` again (hashes, else
    that it reads as a checkpoint); with ``delete``, a file found bad is removed so the next fetch
    gets it again."""
    results = []
    checked: dict[str, tuple[str, str]] = {}
    for name in tqdm(models_with_weights(pattern), desc="verify", unit="model", disable=not progress):
        config = get_config(name)
        path, _ = resolve_official(config)
        if path is None:
            results.append(VerifyResult(name, "not cached", "-"))
            continue
        key = str(path)
        if key not in checked:
            checked[key] = _verify_file(config, path)
            if checked[key][0] == "bad" and delete:
                (remove_hub_file if "models--" in key else remove_quietly)(path)
                checked[key] = ("bad", checked[key][1] + "; deleted")
        status, detail = checked[key]
        results.append(VerifyResult(name, status, detail, key))
    return results


def format_verify(results: list[VerifyResult]) -> str:
    """One line per model and a count line."""
    lines = [f"{r.status:<10} {r.model}: {r.detail}" + (f" ({r.path})" if r.path else "")
             for r in results]
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "unverified", "bad", "not cached")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines) + "\n"
