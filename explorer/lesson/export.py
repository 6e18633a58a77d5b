"""File ▸ Export Lesson: a PNG of every page and one self-contained HTML file (pictures embedded
as base64) with the texts and the experiments' results, to hand out after class."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from PySide6.QtWidgets import QApplication

from ..saving import png_bytes, save_bytes, save_text
from .panel import LessonPanel


def _slug(title: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in title.split(":")[0].split(" · ")[-1].lower()).split()
    return "_".join(words)


def export_lesson(panel: LessonPanel, folder: Path) -> list[Path]:
    """Write ``page_01_….png`` … and ``lesson.html`` into ``folder``; the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    start = panel.current
    written: list[Path] = []
    sections = []
    for i, page in enumerate(panel.pages):
        panel.show_page(i)
        page.wait(30000)  # a page that computes its view (matching, loss) finishes first
        for _ in range(3):  # its result is delivered, then the texts it sets are laid out
            QApplication.processEvents()
        path = folder / f"page_{i + 1:02d}_{_slug(page.title)}.png"
        png = png_bytes(page.grab(), path)
        save_bytes(path, png)  # a temporary file renamed into place; SaveError says why not
        written.append(path)
        encoded = base64.b64encode(png).decode("ascii")
        result = page.result_label.text()
        sections.append(
            f"<section><h2>{html.escape(page.title)}</h2><p>{html.escape(page.text)}</p>"
            f"<p class='q'>{html.escape(page.question)}</p>"
            + (f"<p class='r'>{result}</p>" if result else "")
            + f"<img alt='{html.escape(page.title)}' src='data:image/png;base64,{encoded}'></section>")
    panel.show_page(start)
    loaded = panel.state.model
    model = html.escape(loaded.path.name if loaded is not None and loaded.path else
                        (loaded.source if loaded is not None else "no model"))
    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>DETR, block by block</title><style>"
           "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;background:#fff;color:#111}"
           "img{max-width:100%;border:1px solid #ccc}.q{font-weight:bold;color:#7a4d00}.r{background:#f1f3f4;padding:.5em}"
           "</style></head><body><h1>DETR, block by block</h1>"
           f"<p>Model: {model}; image: {html.escape(panel.state.image_name or '')}.</p>" + "".join(sections)
           + "</body></html>")
    out = folder / "lesson.html"
    save_text(out, doc)
    written.append(out)
    return written
