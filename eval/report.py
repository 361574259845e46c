"""Results from a predictions store: ``results.csv``, ``results.json``, ``results.md`` and
``accuracy_vs_speed.png``.

Every figure in the tables is computed from ``predictions.h5`` (:func:`results_from_store`), so a
table can always be recomputed without a model or a GPU (``imnet eval --from-store``). The CSV keeps
timm's results columns first (model, top1, top1_err, top5, top5_err, param_count, img_size, crop_pct,
interpolation), then imnet's.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from imnet.errors import ImnetError
from imnet.eval.metrics import real_accuracy, topk_accuracy
from imnet.eval.real import load_real_labels
from imnet.eval.store import ModelPredictions, read_store


@dataclass
class ResultRow:
    """One model at one crop count. Accuracies in percent; ``param_count`` in millions, ``gmacs`` per
    crop at ``img_size``; ``images_per_sec`` is the steady-state speed of the forward pass that
    produced the row (a 10-crop pass, ``pass_crops``=10, also gives the 1- and 5-crop rows), after its
    ``startup_s``; ``partial`` when ``--limit`` or skipped images left part of the split out;
    ``compiled``: what ``--compile`` really ran ("compiled", "partly", "eager"; "" without it)."""

    model: str
    top1: float | None
    top1_err: float | None
    top5: float | None
    top5_err: float | None
    param_count: float | None
    img_size: int
    crop_pct: float
    interpolation: str
    crops: int
    real_top1: float | None
    real_top5: float | None
    gmacs: float | None
    images_per_sec: float | None
    loader: str
    amp: str
    device: str
    n_images: int
    n_real: int
    pass_crops: int
    partial: bool
    published_top1: float | None = None
    published_top5: float | None = None
    published_real_top1: float | None = None
    published_source: str = ""  # where the published figures come from (see _published)
    startup_s: float | None = None
    compiled: str = ""


@dataclass
class Skipped:
    """A model left out of a run, and why (e.g. no weights found, with where it looked)."""

    model: str
    reason: str
    kind: str = ""  # a short group label for summaries ("fetch failed: not found (HTTP 404)", ...)


COLUMNS = [f.name for f in fields(ResultRow)]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _published(preds: ModelPredictions) -> tuple[float | None, float | None, float | None, str, object]:
    """(top1, top5, ReaL top1, source, figures) to print beside a stored model: the figures its
    source publishes for the official weights file when that file is what was evaluated
    (``config.weights.figures``, with its own eval config in ``figures``), else the architecture's
    published figures (``config.published``; ``figures`` None)."""
    try:
        from imnet.zoo import get_config
        from imnet.zoo.weights import is_official_file

        config = get_config(preds.name)
    except ImnetError:  # not a zoo name (e.g. a training run's directory)
        return None, None, None, "", None
    fig = config.weights.figures if config.weights is not None else None
    weights = preds.info.get("weights")
    if fig is not None and weights and is_official_file(config, weights):
        return fig.top1, fig.top5, fig.real_top1, fig.source, fig
    pub = config.published
    return pub.top1, pub.top5, pub.real_top1, pub.note, None


def _compiled(record) -> str:
    """The ``compiled`` column from a stored ``compile`` record (older stores: a bool)."""
    if isinstance(record, dict):
        return record.get("ran", "") if record.get("requested") else ""
    return "requested" if record else ""


def rows_for_model(preds: ModelPredictions, real_labels: list[list[int]] | None = None) -> list[ResultRow]:
    """Result rows of one stored model, one per crop count, computed from its stored logits.

    ``real_labels`` is the whole split's ReaL list (val-number order); the rows' images are picked
    from it by their stored ``indices``."""
    cfg, info = preds.config, preds.info
    labels = torch.as_tensor(preds.labels, dtype=torch.int64)
    real_rows = None
    if real_labels is not None:
        real_rows = [real_labels[int(i)] for i in preds.indices]
    pub_top1, pub_top5, pub_real, pub_source, figures = _published(preds)
    rows = []
    for crops, logits in sorted(preds.logits.items()):
        scores = torch.from_numpy(logits)
        acc = topk_accuracy(scores, labels)
        real = real_accuracy(scores, real_rows) if real_rows is not None else None
        # Published figures are for one 1-crop eval config; beside other rows they mislead.
        comparable = crops == 1 and not cfg.get("overridden", False)
        if figures is not None:
            comparable = comparable and figures.matches(int(cfg.get("crop_size", 0)),
                                                        float(cfg.get("crop_pct", 0.0)),
                                                        str(cfg.get("interpolation", "")))
        rows.append(ResultRow(
            model=preds.name,
            top1=_round(acc.top1), top1_err=_round(None if acc.top1 is None else 100 - acc.top1),
            top5=_round(acc.top5), top5_err=_round(None if acc.top5 is None else 100 - acc.top5),
            param_count=_round(info.get("param_count"), 2),
            img_size=int(cfg.get("crop_size", 0)), crop_pct=float(cfg.get("crop_pct", 0.0)),
            interpolation=str(cfg.get("interpolation", "")), crops=crops,
            real_top1=_round(real.top1) if real else None, real_top5=_round(real.top5) if real else None,
            gmacs=_round(info.get("gmacs")), images_per_sec=_round(info.get("images_per_sec"), 1),
            loader=str(info.get("loader", "")), amp=str(info.get("amp", "")),
            device=str(info.get("device", "")), n_images=acc.n_images,
            n_real=real.n_images if real else 0, pass_crops=int(info.get("pass_crops", crops)),
            partial=bool(info.get("partial", False)),
            published_top1=pub_top1 if comparable else None,
            published_top5=pub_top5 if comparable else None,
            published_real_top1=pub_real if comparable else None,
            published_source=pub_source if comparable else "",
            startup_s=_round(info.get("startup_s"), 2),
            compiled=_compiled(info.get("compile")),
        ))
    return rows


def results_from_store(store: Path, real_path: Path | None = None) -> list[ResultRow]:
    """Every result row of the store at ``store``, computed from its logits alone.

    With ``real_path``, ReaL top-1/top-5 too; the file's length is checked against the split size
    recorded in the store (the number of val images before ``--limit``)."""
    all_preds = read_store(store)
    real_labels = None
    if real_path is not None and all_preds:
        sizes = {int(p.info.get("n_split", len(p.files))) for p in all_preds}
        if len(sizes) != 1:
            raise ImnetError(f"{store}: models were evaluated on splits of different sizes {sorted(sizes)}; "
                             "ReaL labels fit one split")
        classes = {int(p.config.get("num_classes", 1000)) for p in all_preds}
        real_labels = load_real_labels(real_path, sizes.pop(), min(classes))
    return [row for preds in all_preds for row in rows_for_model(preds, real_labels)]


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:  # the folder itself is unusable: nothing was written
        pass


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        raise ImnetError(f"{path}: cannot write ({err})") from None


def results_csv(rows: list[ResultRow]) -> str:
    """The rows as CSV text, timm's results columns first (empty cell for a missing value)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
    return out.getvalue()


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _diff(measured: float | None, published: float | None) -> str:
    return "" if measured is None or published is None else f"{measured - published:+.2f}"


def results_markdown(rows: list[ResultRow], skipped: list[Skipped] = ()) -> str:
    """A table to paste into a paper: measured accuracies with the published figures and the
    difference beside them, then the models skipped and why."""
    lines = [
        "| model | crops | img | crop_pct | top-1 | published | Δ | top-5 | published | Δ "
        "| ReaL top-1 | published | Δ | ReaL top-5 | params (M) | GMACs | img/s | images |",
        "|" + " --- |" * 18,
    ]
    for r in rows:
        images = f"{r.n_images}" + (" (partial)" if r.partial else "")
        lines.append(
            f"| {r.model} | {r.crops} | {r.img_size} | {r.crop_pct:.3f} "
            f"| {_fmt(r.top1)} | {_fmt(r.published_top1)} | {_diff(r.top1, r.published_top1)} "
            f"| {_fmt(r.top5)} | {_fmt(r.published_top5)} | {_diff(r.top5, r.published_top5)} "
            f"| {_fmt(r.real_top1)} | {_fmt(r.published_real_top1)} | {_diff(r.real_top1, r.published_real_top1)} "
            f"| {_fmt(r.real_top5)} | {_fmt(r.param_count)} | {_fmt(r.gmacs)} | {_fmt(r.images_per_sec, 1)} "
            f"| {images} |"
        )
    text = "# imnet eval results\n\n" + "\n".join(lines) + "\n"
    text += ("\nPublished figures are the source's 1-crop numbers at the model's own eval config; "
             "Δ = measured − published. img/s is the speed of the pass that produced the row "
             "(1- and 5-crop rows of a 10-crop pass share its speed).\n")
    sources = {r.model: r.published_source for r in rows if r.published_source}
    if sources:
        text += "\nPublished figures from: " + "; ".join(f"{m}: {src}" for m, src in sources.items()) + ".\n"
    if any(r.partial for r in rows):
        text += "\n**Partial**: rows marked (partial) cover only part of the split (`--limit` or skipped images).\n"
    if skipped:
        text += "\n## Skipped\n\n| model | reason |\n| --- | --- |\n"
        text += "".join(f"| {s.model} | {s.reason} |\n" for s in skipped)
    return text


def plot_accuracy_vs_speed(rows: list[ResultRow], path: Path) -> None:
    """``accuracy_vs_speed.png``: top-1 against images/s, one labelled point per model and crop count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    points = [r for r in rows if r.top1 is not None and r.images_per_sec]
    markers = {1: "o", 5: "s", 10: "^"}
    for crops in sorted({r.crops for r in points}):
        sel = [r for r in points if r.crops == crops]
        ax.scatter([r.images_per_sec for r in sel], [r.top1 for r in sel], marker=markers.get(crops, "o"),
                   label=f"{crops}-crop")
        for r in sel:
            ax.annotate(f"{r.model} ({crops}c)", (r.images_per_sec, r.top1), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    if points and max(r.images_per_sec for r in points) > 10 * min(r.images_per_sec for r in points):
        ax.set_xscale("log")
    ax.set_xlabel("images / s (decode + crops + forward)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("ImageNet val: accuracy vs speed")
    ax.grid(True, alpha=0.3)
    if points:
        ax.legend()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        raise ImnetError(f"{path}: cannot write ({err})") from None
    finally:
        plt.close(fig)


@dataclass
class ReportFiles:
    """Paths of the written report files."""

    csv: Path
    json: Path
    markdown: Path
    plot: Path


def write_reports(rows: list[ResultRow], out: Path, skipped: list[Skipped] = (),
                  extra: dict | None = None) -> ReportFiles:
    """Write ``results.csv``, ``results.json``, ``results.md`` and ``accuracy_vs_speed.png`` into
    ``out`` (each atomically). ``extra`` goes into results.json beside the rows (store path, ...)."""
    out = Path(out)
    files = ReportFiles(out / "results.csv", out / "results.json", out / "results.md",
                        out / "accuracy_vs_speed.png")
    _atomic_write_text(files.csv, results_csv(rows))
    payload = {"results": [asdict(r) for r in rows],
               "skipped": [{k: v for k, v in asdict(s).items() if v or k != "kind"} for s in skipped],
               "partial": any(r.partial for r in rows), **(extra or {})}
    _atomic_write_text(files.json, json.dumps(payload, indent=2) + "\n")
    _atomic_write_text(files.markdown, results_markdown(rows, skipped))
    plot_accuracy_vs_speed(rows, files.plot)
    return files
