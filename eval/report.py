"""Results from a predictions store: ``results.csv``, ``results.json``, ``results.md`` and
``accuracy_vs_speed.png``.

Every figure in the tables is computed from ``predictions.h5`` (:func:`results_from_store`), so a
table can always be recomputed without a model or a GPU (``imnet eval --from-store``). The CSV keeps
timm's results columns first (model, top1, top1_err, top5, top5_err, param_count, img_size, crop_pct,
interpolation), then imnet's; one row per model, set and crop count (``set``: ``val``, an eval set, or
a ``-clean`` row of ImageNet-A/-R, with the ``protocol`` it was scored under: :mod:`imnet.eval.sets`).
``results.md`` adds a wide table, model x set top-1, like timm's results files; with more than one
set, ``accuracy_vs_speed_sets.png`` has a panel per set.
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
from imnet.eval.sets import CLEAN_SUFFIX, SET_ORDER, SUBSET_SETS, protocol_label, restrict, set_label
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
    set: str = "val"  # val, an eval set (imnet.prep.sets) or "<set>-clean" (val on ImageNet-A/-R's classes)
    protocol: str = ""  # what the argmax ranked: "argmax over 200 of 1000 classes", "argmax over 1000 classes"


@dataclass
class Skipped:
    """A model left out of a run, and why (e.g. no weights found, with where it looked)."""

    model: str
    reason: str
    kind: str = ""  # a short group label for summaries ("fetch failed: not found (HTTP 404)", ...)


COLUMNS = [f.name for f in fields(ResultRow)]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _published(preds: ModelPredictions, set_name: str = "val"
               ) -> tuple[float | None, float | None, float | None, str, object]:
    """(top1, top5, ReaL top1, source, figures) to print beside a stored model's row on ``set_name``:
    the figures its source publishes for the official weights file when that file is what was
    evaluated (``config.weights.figures`` on val, timm's results on the other sets:
    :mod:`imnet.zoo.set_figures`; with their own eval config in ``figures``), else on val the
    architecture's published figures (``config.published``; ``figures`` None)."""
    try:
        from imnet.zoo import get_config
        from imnet.zoo.weights import is_official_file

        config = get_config(preds.name)
    except ImnetError:  # not a zoo name (e.g. a training run's directory)
        return None, None, None, "", None
    weights = preds.info.get("weights")
    official = config.weights is not None and bool(weights) and is_official_file(config, weights)
    if set_name != "val":
        from imnet.zoo.set_figures import set_figures

        fig = set_figures(config, set_name) if official else None
        return (fig.top1, fig.top5, None, fig.source, fig) if fig is not None else (None, None, None, "", None)
    fig = config.weights.figures if config.weights is not None else None
    if fig is not None and official:
        return fig.top1, fig.top5, fig.real_top1, fig.source, fig
    pub = config.published
    return pub.top1, pub.top5, pub.real_top1, pub.note, None


def _compiled(record) -> str:
    """The ``compiled`` column from a stored ``compile`` record (older stores: a bool)."""
    if isinstance(record, dict):
        return record.get("ran", "") if record.get("requested") else ""
    return "requested" if record else ""


def rows_for_model(preds: ModelPredictions, real_labels: list[list[int]] | None = None, protocol: str = "subset",
                   clean_subset: list[int] | None = None, clean_of: str = "") -> list[ResultRow]:
    """Result rows of one stored model on one set, one per crop count, computed from its stored logits.

    ``real_labels`` is the whole val split's ReaL list (val-number order); the rows' images are picked
    from it by their stored ``indices`` (val rows only). ImageNet-A/-R rows rank only the set's classes
    (``info["class_subset"]``) unless ``protocol`` is ``"all"``. With ``clean_subset`` (``preds`` on
    val) the rows are the "clean" rows of the set ``clean_of``: val images of those classes, ranked
    on them."""
    cfg, info = preds.config, preds.info
    set_name = f"{clean_of}{CLEAN_SUFFIX}" if clean_subset is not None else preds.split
    subset = clean_subset if clean_subset is not None else (
        info.get("class_subset") if preds.split in SUBSET_SETS else None)
    classes = int(cfg.get("num_classes", 0)) or None
    labels = torch.as_tensor(preds.labels, dtype=torch.int64)
    real_rows = None
    if real_labels is not None and set_name == "val":
        real_rows = [real_labels[int(i)] for i in preds.indices]
    pub_top1, pub_top5, pub_real, pub_source, figures = _published(preds, set_name)
    rows = []
    for crops, logits in sorted(preds.logits.items()):
        scores = torch.from_numpy(logits)
        classes = classes or int(scores.shape[1])
        row_labels = labels
        if subset is not None:
            sub_scores, sub_labels, keep = restrict(scores, labels, subset)
            if protocol == "subset":
                scores, row_labels = sub_scores, sub_labels
            else:
                scores, row_labels = scores[keep], labels[keep]
        acc = topk_accuracy(scores, row_labels)
        real = real_accuracy(scores, real_rows) if real_rows is not None else None
        # Published figures are for one 1-crop eval config (and A/R for the subset protocol).
        comparable = crops == 1 and not cfg.get("overridden", False) and (subset is None or protocol == "subset")
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
            set=set_name,
            protocol=protocol_label(classes, subset, protocol),
        ))
    return rows


def _same_eval(a: ModelPredictions, b: ModelPredictions) -> bool:
    """Whether two stored entries of a model were made with the same eval config (but the set)."""
    strip = ("split",)
    return a.name == b.name and {k: v for k, v in a.config.items() if k not in strip} == \
        {k: v for k, v in b.config.items() if k not in strip}


def _set_rank(name: str) -> int:
    return SET_ORDER.index(name) if name in SET_ORDER else len(SET_ORDER)


def results_from_store(store: Path, real_path: Path | None = None, protocol: str = "subset") -> list[ResultRow]:
    """Every result row of the store at ``store``, computed from its logits alone: per model, set and
    crop count, plus the "clean" rows of ImageNet-A/-R for a model stored on val and on that set
    (same eval config), sorted by model, set (:data:`SET_ORDER`) and crop count.

    With ``real_path``, ReaL top-1/top-5 of the val rows too; the file's length is checked against the
    val split size recorded in the store (the number of val images before ``--limit``). ``protocol``:
    ``"subset"`` (ImageNet-A/-R ranked on their classes) or ``"all"`` (:mod:`imnet.eval.sets`)."""
    if protocol not in ("subset", "all"):
        raise ImnetError(f"protocol {protocol!r}: expected subset or all")
    all_preds = read_store(store)
    val_preds = [p for p in all_preds if p.split == "val"]
    real_labels = None
    if real_path is not None and val_preds:
        sizes = {int(p.info.get("n_split", len(p.files))) for p in val_preds}
        if len(sizes) != 1:
            raise ImnetError(f"{store}: models were evaluated on val splits of different sizes {sorted(sizes)}; "
                             "ReaL labels fit one split")
        classes = {int(p.config.get("num_classes", 1000)) for p in val_preds}
        real_labels = load_real_labels(real_path, sizes.pop(), min(classes))
    rows = [row for preds in all_preds for row in rows_for_model(preds, real_labels, protocol)]
    for preds in all_preds:
        subset = preds.info.get("class_subset")
        if preds.split in SUBSET_SETS and subset:
            for base in val_preds:
                if _same_eval(base, preds):
                    rows += rows_for_model(base, None, protocol, clean_subset=list(subset), clean_of=preds.split)
    return sorted(rows, key=lambda r: (r.model, _set_rank(r.set), r.set, r.crops))


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
    difference beside them, one row per model, set and crop count; then, when the rows cover more
    than one set, the wide table (model x set, top-1, like timm's results files); then the models
    skipped and why."""
    multi = len({r.set for r in rows}) > 1
    set_cell = "| set " if multi else ""
    lines = [
        f"| model {set_cell}| crops | img | crop_pct | top-1 | published | Δ | top-5 | published | Δ "
        "| ReaL top-1 | published | Δ | ReaL top-5 | params (M) | GMACs | img/s | images |",
        "|" + " --- |" * (19 if multi else 18),
    ]
    for r in rows:
        images = f"{r.n_images}" + (" (partial)" if r.partial else "")
        lines.append(
            f"| {r.model} " + (f"| {r.set} " if multi else "") + f"| {r.crops} | {r.img_size} | {r.crop_pct:.3f} "
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
    protocols = sorted({f"{r.set}: {r.protocol}" for r in rows if r.protocol and r.set != "val"})
    if protocols:
        text += ("\nProtocols (the stored scores are the full outputs; `imnet eval --argmax all` ranks every "
                 "class): " + "; ".join(protocols) + ". A `-clean` row is ImageNet val restricted to that set's "
                 "classes, ranked on them.\n")
    sources = {}
    for r in rows:
        if r.published_source:
            sources.setdefault(r.model, []).append(r.published_source)
    if sources:
        text += "\nPublished figures from: " + "; ".join(f"{m}: {', '.join(dict.fromkeys(src))}"
                                                        for m, src in sources.items()) + ".\n"
    if any(r.partial for r in rows):
        text += "\n**Partial**: rows marked (partial) cover only part of the split (`--limit` or skipped images).\n"
    if multi:
        text += "\n" + paper_table(rows)
    if skipped:
        text += "\n## Skipped\n\n| model | reason |\n| --- | --- |\n"
        text += "".join(f"| {s.model} | {s.reason} |\n" for s in skipped)
    return text


def paper_table(rows: list[ResultRow]) -> str:
    """The wide table: one row per model (per crop count when several), one top-1 column per set in
    :data:`SET_ORDER` (ReaL after val when scored), published figures in parentheses where known."""
    sets = sorted({r.set for r in rows}, key=lambda name: (_set_rank(name), name))
    real = any(r.real_top1 is not None for r in rows)
    columns = []
    for name in sets:
        columns.append((name, "top1"))
        if name == "val" and real:
            columns.append((name, "real_top1"))
    by_key = {(r.model, r.crops, r.set): r for r in rows}
    models = list(dict.fromkeys((r.model, r.crops) for r in rows))
    several_crops = len({crops for _, crops in models}) > 1
    head = ["model"] + (["crops"] if several_crops else []) + [
        f"{set_label(name)} ReaL" if field == "real_top1" else set_label(name) for name, field in columns]
    lines = ["## Top-1 by set", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for model, crops in models:
        cells = [model] + ([str(crops)] if several_crops else [])
        for name, field in columns:
            row = by_key.get((model, crops, name))
            value = getattr(row, field) if row is not None else None
            published = None
            if row is not None:
                published = row.published_real_top1 if field == "real_top1" else row.published_top1
            cells.append(_fmt(value) + (f" ({published:.2f})" if published is not None else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nTop-1 in %, measured (published, where the source prints one for these " \
        "weights at this eval config).\n"


def _scatter(ax, rows: list[ResultRow], title: str) -> bool:
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
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if points:
        ax.legend()
    return bool(points)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        raise ImnetError(f"{path}: cannot write ({err})") from None
    finally:
        plt.close(fig)


def plot_accuracy_vs_speed(rows: list[ResultRow], path: Path) -> None:
    """``accuracy_vs_speed.png``: top-1 against images/s on ImageNet val (or, without val rows, the
    first set's), one labelled point per model and crop count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = "val" if any(r.set == "val" for r in rows) else (rows[0].set if rows else "val")
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    _scatter(ax, [r for r in rows if r.set == shown],
             "ImageNet val: accuracy vs speed" if shown == "val" else f"{set_label(shown)}: accuracy vs speed")
    _save(fig, path)


def plot_sets(rows: list[ResultRow], path: Path) -> None:
    """``accuracy_vs_speed_sets.png``: one panel per set (val, each eval set, the clean rows), top-1
    against the images/s of the pass that produced it."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted({r.set for r in rows}, key=lambda name: (_set_rank(name), name))
    cols = min(3, len(sets))
    lines = math.ceil(len(sets) / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(5.5 * cols, 4.2 * lines), dpi=90, squeeze=False)
    for ax, name in zip(axes.flat, sets):
        _scatter(ax, [r for r in rows if r.set == name], set_label(name))
    for ax in list(axes.flat)[len(sets):]:
        ax.axis("off")
    # fixed margins rather than tight_layout, which measures every label (seconds for nine panels)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.07, top=0.95, wspace=0.25, hspace=0.4)
    _save(fig, path)


@dataclass
class ReportFiles:
    """Paths of the written report files."""

    csv: Path
    json: Path
    markdown: Path
    plot: Path
    plot_sets: Path | None = None  # accuracy_vs_speed_sets.png, when the rows cover more than one set


def write_reports(rows: list[ResultRow], out: Path, skipped: list[Skipped] = (),
                  extra: dict | None = None) -> ReportFiles:
    """Write ``results.csv``, ``results.json``, ``results.md`` and ``accuracy_vs_speed.png`` into
    ``out`` (each atomically), and ``accuracy_vs_speed_sets.png`` when the rows cover more than one
    set. ``extra`` goes into results.json beside the rows (store path, ...)."""
    out = Path(out)
    files = ReportFiles(out / "results.csv", out / "results.json", out / "results.md",
                        out / "accuracy_vs_speed.png",
                        out / "accuracy_vs_speed_sets.png" if len({r.set for r in rows}) > 1 else None)
    _atomic_write_text(files.csv, results_csv(rows))
    payload = {"results": [asdict(r) for r in rows],
               "skipped": [{k: v for k, v in asdict(s).items() if v or k != "kind"} for s in skipped],
               "partial": any(r.partial for r in rows), **(extra or {})}
    _atomic_write_text(files.json, json.dumps(payload, indent=2) + "\n")
    _atomic_write_text(files.markdown, results_markdown(rows, skipped))
    plot_accuracy_vs_speed(rows, files.plot)
    if files.plot_sets is not None:
        plot_sets(rows, files.plot_sets)
    return files
