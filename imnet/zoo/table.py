"""``imnet zoo``: the table of every model, and ``--check`` against the published figures.

:func:`zoo_rows` measures each model (parameters, GMACs at its input size; :mod:`imnet.zoo.measure`)
beside its published figures and whether its weights resolve locally; :func:`render_rows` writes the
rows as Markdown, CSV or JSON. :func:`check_models` compares every model whose config has
``published.params`` (any family, any part of the zoo) with its measurement: parameters at the printed
precision, MACs (or FLOPs, taken as 2 x MACs) within 2%. A difference the source's own counting
explains is recorded in the config (``params_note``/``macs_note``) and reported as "explained".

With ``function=True`` the check also compares what each model computes with every independent
reference it has (:mod:`imnet.zoo.fidelity`: the torch-resnet, torchvision, timm and bsconv packages,
and recordings of the original code): the "function" column is ``same``, ``DIFFERS`` (a failure),
``unavailable`` (the reference package is not installed) or ``-`` (no reference).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Iterable

from tqdm import tqdm

from imnet.zoo.fidelity import FunctionCheck, check_function, has_reference
from imnet.zoo.measure import Measurement, measure_model
from imnet.zoo.registry import ModelConfig, get_config, list_models

MACS_TOLERANCE = 0.02
FORMATS = ("md", "csv", "json")


@dataclass(frozen=True)
class ZooRow:
    """One line of the zoo table. Measured: ``params``, ``gmacs`` (of the model built as ``counted_as``
    says, the form its published figures count); the rest from the config."""

    name: str
    family: str
    source: str
    img_size: int
    counted_as: str
    crop_pct: float
    interpolation: str
    params: int | None
    gmacs: float | None
    pub_params_m: float | None
    pub_gmacs: float | None
    pub_gflops: float | None
    pub_top1: float | None
    pub_top5: float | None
    pub_real_top1: float | None
    pub_real_top5: float | None
    pub_source: str
    weights: str
    # The official weights file (URL or hf:<hub id>; "" when none is published) and the accuracy its
    # source publishes for that file at the eval config in weights_eval (see imnet.zoo.figures).
    official_weights: str = ""
    weights_top1: float | None = None
    weights_top5: float | None = None
    weights_real_top1: float | None = None
    weights_real_top5: float | None = None
    weights_eval: str = ""
    weights_figures_from: str = ""


@dataclass
class CheckResult:
    """Outcome of checking one model: ``status`` is "ok", "explained" or "failed"; ``functions`` the
    comparisons with its references (empty: none made)."""

    name: str
    status: str
    messages: list[str] = field(default_factory=list)
    measurement: Measurement | None = None
    functions: list[FunctionCheck] = field(default_factory=list)

    @property
    def function(self) -> str:
        """The function column: "same", "DIFFERS", "unavailable" or "-"."""
        states = {f.status for f in self.functions}
        if "differs" in states:
            return "DIFFERS"
        if "same" in states:
            return "same"
        return "unavailable" if states else "-"


def _weights_where(name: str) -> str:
    from imnet.zoo.weights import resolve_weights

    path, where = resolve_weights(name)
    return where if path is not None else "-"


def _official_columns(config: ModelConfig) -> dict:
    """The official_weights / weights_* columns of a row."""
    source = config.weights
    if source is None:
        return {}
    out: dict = {"official_weights": f"hf:{source.hf_hub_id}" if source.hf_hub_id else str(source.url)}
    fig = source.figures
    if fig is not None:
        sources = fig.source + (f"; ReaL: {fig.real_source}" if fig.real_source and fig.real_source != fig.source
                                else "")
        out.update(weights_top1=fig.top1, weights_top5=fig.top5, weights_real_top1=fig.real_top1,
                   weights_real_top5=fig.real_top5, weights_eval=fig.eval_config(),
                   weights_figures_from=sources)
    return out


def _counted_as(config: ModelConfig) -> str:
    """How the measured/published columns build the model, where not the default (e.g. ``deploy=True``)."""
    pub = config.published
    parts = [f"{k}={v}" for k, v in pub.build_kwargs.items()]
    if pub.num_classes and pub.num_classes != config.num_classes:
        parts.append(f"num_classes={pub.num_classes}")
    return " ".join(parts)


def zoo_rows(pattern: str | list[str] = "*", measure: bool = True, weights: bool = True,
             progress: bool = True) -> list[ZooRow]:
    """Rows for every model matching ``pattern``; ``measure=False`` leaves params/gmacs empty,
    ``weights=False`` skips the (file-system) weights lookup."""
    rows = []
    for name in tqdm(list_models(pattern), desc="zoo", unit="model", disable=not progress):
        config = get_config(name)
        pub = config.published
        # Measured in the form the published figures count (e.g. VanillaNet deployed).
        measured = measure_model(name, num_classes=pub.num_classes, **dict(pub.build_kwargs)) if measure else None
        rows.append(ZooRow(
            name=name, family=config.family, source=config.source, img_size=config.input_size[-1],
            counted_as=_counted_as(config),
            crop_pct=config.crop_pct, interpolation=config.interpolation,
            params=measured.params if measured else None,
            gmacs=round(measured.gmacs, 3) if measured else None,
            pub_params_m=pub.params, pub_gmacs=pub.macs, pub_gflops=pub.flops, pub_top1=pub.top1,
            pub_top5=pub.top5, pub_real_top1=pub.real_top1, pub_real_top5=pub.real_top5,
            pub_source=pub.note,
            weights=_weights_where(name) if weights else "",
            **_official_columns(config),
        ))
    return rows


def render_rows(rows: Iterable[ZooRow], fmt: str = "md") -> str:
    """The rows as a Markdown table, CSV (header line first) or a JSON list of objects."""
    rows = list(rows)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    columns = list(ZooRow.__dataclass_fields__)
    if fmt == "json":
        return json.dumps([asdict(r) for r in rows], indent=1) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else v for v in asdict(row).values()])
        return out.getvalue()
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = ["" if v is None else (f"{v:,}" if isinstance(v, int) and k == "params" else str(v))
                 for k, v in asdict(row).items()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def check_config(config: ModelConfig, measured: Measurement) -> CheckResult:
    """Compare one measurement with ``config.published``; see the module docstring for the rules."""
    pub = config.published
    result = CheckResult(config.name, "ok", measurement=measured)
    problems: list[tuple[str, str]] = []  # (message, explaining note)
    if pub.params is not None:
        precision = pub.params_precision if pub.params_precision is not None else 1
        got = round(measured.params / 1e6, precision)
        if got != round(pub.params, precision):
            problems.append((f"params {measured.params:,} = {got:.{precision}f}M, published "
                             f"{pub.params:.{precision}f}M", pub.params_note))
    if (pub.macs is not None or pub.flops is not None) and measured.macs is not None:
        published, label = (pub.macs, "MACs") if pub.macs is not None else (pub.flops / 2, "FLOPs/2")
        deviation = abs(measured.gmacs - published) / published
        if deviation > MACS_TOLERANCE:
            problems.append((f"GMACs {measured.gmacs:.3f}, published {label} {published:.3f}G "
                             f"({deviation:.1%} off)", pub.macs_note))
    for message, note in problems:
        if note:
            result.messages.append(f"{message}; explained: {note}")
            result.status = "explained" if result.status == "ok" else result.status
        else:
            result.messages.append(message)
            result.status = "failed"
    return result


def check_function_of(result: CheckResult, checks: list[FunctionCheck]) -> CheckResult:
    """Add the comparisons with the model's references to ``result``: one that differs fails it."""
    result.functions = checks
    for check in checks:
        if check.status == "differs":
            result.messages.append(f"function differs from {check.reference}: {check.detail}")
            result.status = "failed"
        elif check.status == "unavailable":
            result.messages.append(f"function not compared with {check.reference}: {check.detail}")
    same = [f"{c.reference} ({c.detail})" for c in checks if c.status == "same"]
    if same:
        result.messages.append("function = " + ", ".join(same))
    return result


def check_models(pattern: str | list[str] = "*", progress: bool = True, function: bool = False) -> list[CheckResult]:
    """Check every model matching ``pattern`` whose config has ``published.params``, built at the
    published class count and in the counted form (``published.build_kwargs``); with ``function``,
    also every model with a reference, compared with each (:func:`imnet.zoo.fidelity.check_function`)."""
    names = [n for n in list_models(pattern) if get_config(n).published.params is not None
             or (function and has_reference(n))]
    results = []
    for name in tqdm(names, desc="zoo --check", unit="model", disable=not progress):
        config = get_config(name)
        pub = config.published
        if pub.params is not None:
            with_macs = pub.macs is not None or pub.flops is not None  # the forward costs the most
            measured = measure_model(name, num_classes=pub.num_classes, with_macs=with_macs,
                                     **dict(pub.build_kwargs))
            result = check_config(config, measured)
        else:
            result = CheckResult(name, "ok")
        if function:
            check_function_of(result, check_function(name))
        results.append(result)
    return results


def format_check(results: list[CheckResult]) -> str:
    """A header, one line per model (``ok``/``explained``/``FAILED``, the function column, name,
    details) and a summary line."""
    lines = [f"{'status':<10} {'function':<11} model"]
    for r in results:
        tag = {"ok": "ok", "explained": "explained", "failed": "FAILED"}[r.status]
        detail = "; ".join(r.messages)
        lines.append(f"{tag:<10} {r.function:<11} {r.name}" + (f": {detail}" if detail else ""))
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "explained", "failed")}
    summary = (f"{len(results)} models checked: {counts['ok']} ok, {counts['explained']} explained, "
               f"{counts['failed']} failed")
    functions = {s: sum(r.function == s for r in results) for s in ("same", "DIFFERS", "unavailable", "-")}
    if any(r.functions for r in results):
        summary += (f"; function: {functions['same']} same as their references, {functions['DIFFERS']} differ, "
                    f"{functions['unavailable']} unavailable, {functions['-']} without a reference")
    lines.append(summary)
    return "\n".join(lines) + "\n"
