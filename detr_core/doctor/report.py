"""The doctor's findings as one Markdown document: data checks, overfit one batch, warnings
from the training watch and missed-object diagnoses (any of them may be absent)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detr_core.doctor.data_checks import DataReport
from detr_core.doctor.overfit import OverfitResult


def markdown_report(
    data: DataReport | None = None, overfit: OverfitResult | None = None,
    warnings: Sequence[Any] = (), missed: Sequence[Any] = (), title: str = "DETR doctor",
) -> str:
    """``warnings``: :class:`~detr_core.doctor.watch.WatchWarning`; ``missed``:
    :class:`~detr_core.doctor.missed.MissedDiagnosis` (anything with ``markdown()``)."""
    out = [f"# {title}", ""]
    if data is not None:
        out += ["## Data", "", (f"{data.name}: {data.images} images, {data.objects} objects "
                f"(checked for {data.settings['num_queries']} queries, a {data.settings['stride']} px feature cell "
                f"at {data.settings['train_size']} px)."), ""]
        if not data.findings:
            out += ["No problems found.", ""]
        for f in data.findings:
            touched = f"{f.images} images" + (f", {f.objects} objects" if f.objects else "")
            examples = ", ".join(f"`{e}`" for e in f.examples)
            out += [f"### {f.title}", "", f"- Touches: {touched}" + (f"; e.g. images {examples}" if examples else ""),
                    f"- Why: {f.cause}", f"- Fix: {f.fix}", ""]
    if overfit is not None:
        out += ["## Overfit one batch", "", overfit.message, "", "| loss part | start | end | end / start |",
                "|---|---|---|---|"]
        for k, v in overfit.first_losses.items():
            out.append(f"| {k} | {v:.4g} | {overfit.last_losses[k]:.4g} | {overfit.ratio(k):.0%} |")
        out.append("")
    if warnings:
        out += ["## Training watch", ""]
        out += [f"- step {w.step}: **{w.title}**: {w.detail} Lever: {w.lever}" for w in warnings]
        out.append("")
    if missed:
        out += ["## Missed objects", ""]
        for m in missed:
            out += [m.markdown(), ""]
    return "\n".join(out).rstrip() + "\n"


def write_report(path: str | Path, text: str) -> Path:
    """Markdown as is; a ``.html`` path gets a minimal page around the Markdown (readable as text)."""
    path = Path(path)
    if path.suffix.lower() in (".html", ".htm"):
        import html

        text = ("<!doctype html><meta charset='utf-8'><title>DETR doctor</title>\n"
                f"<pre style='white-space: pre-wrap; font-family: sans-serif'>{html.escape(text)}</pre>\n")
    path.write_text(text)
    return path
