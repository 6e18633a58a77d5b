"""The screenshots of the wrapped DETR families (issue 27), made from the real window:

    uv sync --extra hf
    uv run docs/make_family_screenshots.py [--families rt_detr d_fine] [--size 1366x768]

Per family, the small-but-real model of ``benchmarks/hf_families.py`` (the R18-vd layout for
RT-DETR, ResNet-18 for Conditional and DAB-DETR, ...) with **random weights**: nothing is
downloaded here, so these pictures show what each view draws, not what a trained model predicts
(the weights are moved off transformers' initialisation, under which every query predicts the
same box; the twelve best-scoring queries are drawn).
The model is saved with ``save_pretrained`` and opened by the window as a user's folder is
(File ▸ Open Checkpoint), on the window's own first image, and the view that family is about is
brought forward: the dense attention map (Conditional, DAB-DETR), the query selection (RT-DETR,
RT-DETRv2), the sampling points (LW-DETR, RF-DETR), the layer-by-layer boxes (D-FINE, DEIMv2).
Writes ``docs/family-<family>-<size>.png``. Offscreen by default."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]

# family: (the dock brought forward, the workspace it lives in)
VIEWS = {
    "conditional_detr": ("attention", "explore"),
    "dab_detr": ("attention", "explore"),
    "rt_detr": ("query_selection", "explore"),
    "rt_detr_v2": ("query_selection", "explore"),
    "d_fine": ("layers", "analyse"),
    "deimv2": ("layers", "analyse"),
    "lw_detr": ("deformable", "explore"),
    "rf_detr": ("deformable", "explore"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="*", default=list(VIEWS), choices=list(VIEWS))
    parser.add_argument("--size", default="1366x768")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import hf_families  # benchmarks/hf_families.py: the models
    import torch
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from explorer.main_window import MainWindow

    folder = Path(tempfile.mkdtemp(prefix="detr_family_shots_"))
    window = MainWindow(settings=QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat),
                        runs_folder=folder / "runs")

    def wait(seconds: float, until=None) -> bool:  # noqa: ANN001
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if until is not None and until():
                return True
            app.processEvents()
            time.sleep(0.005)
        return until is None

    window.resize(width, height)
    window.show()
    wait(60, lambda: window.state.result is not None)
    window.build_views()
    window.dismiss_hint()
    for family in args.families:
        torch.manual_seed(0)
        model, (h, w) = hf_families.build(family)
        with torch.no_grad():  # off transformers' initialisation, whose queries all predict one box alike
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
        saved = folder / family
        model.save_pretrained(saved)
        config = json.loads((saved / "config.json").read_text())
        config["id2label"] = {str(i): f"class {i}" for i in range(int(config.get("num_labels", 80)))}
        (saved / "config.json").write_text(json.dumps(config))
        (saved / "preprocessor_config.json").write_text(json.dumps({"size": {"height": h, "width": w}}))
        window.open_checkpoint(saved, remember=False)
        wait(120, lambda: window.state.model is not None and window.state.model.path == saved)
        wait(120, lambda: window.state.result is not None and not window.controller.queue.busy)
        dock, workspace = VIEWS[family]
        for _ in range(2):  # the workspace's default layout (a new window's first arrangement is narrower)
            window.workspaces.show(workspace)
            window.workspaces.reset()
            wait(0.5)
        scores = window.state.result.scores
        window.queries.set_threshold(float(scores.sort(descending=True).values[min(11, len(scores) - 1)]) - 0.005)
        window.state.set_selected_query(int(scores.argmax()))
        if dock != "attention":
            window.workspaces.show_dock(dock)
        wait(20, lambda: not any(view.busy for view in window.views if hasattr(view, "busy")))
        wait(1.5)
        path = args.out / f"family-{family}-{width}x{height}.png"
        window.grab().save(str(path))
        print("wrote", path, "|", window.state.model.config.attention, flush=True)
    window.controller.wait(10000)
    window.close()


if __name__ == "__main__":
    main()
