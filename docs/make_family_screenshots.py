"""The screenshots of the wrapped DETR families (issue 27), made from the real window:

    uv sync --extra hf
    uv run docs/make_family_screenshots.py [--families rt_detr d_fine] [--size 1366x768]

Per family, the small-but-real model of ``benchmarks/hf_families.py`` (the R18-vd layout for
RT-DETR, ResNet-18 for Conditional and DAB-DETR, ...) with **random weights**: nothing is
downloaded here, so these pictures show what each view draws, not what a trained model predicts
(the weights are moved off transformers' initialisation, under which every query predicts the
same box; the twelve best-scoring queries are drawn).
The model is saved with ``save_pretrained`` and opened by the window as a user's folder is
(File ▸ Open Checkpoint), on a generated photo-like image (shaded background, textured objects,
sensor noise: ``benchmarks/big_model.py``; no photo is downloaded either), and the view that family is about is
brought forward: the dense attention map (Conditional, DAB-DETR), the spatial query's map
(Conditional DETR), RT-DETR's encoder attention at a point, the query selection (RT-DETRv2,
LW-DETR), D-FINE's edge distributions on the box, layer by layer, and the sampling points (DEIMv2,
RF-DETR).
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

# family: (the dock brought forward, the workspace it lives in, what is chosen in it)
VIEWS = {
    "conditional_detr": ("attention", "explore", "spatial query map"),
    "dab_detr": ("attention", "explore", "full map"),
    "rt_detr": ("deformable", "explore", "encoder attention at a point"),
    "rt_detr_v2": ("query_selection", "explore", ""),
    "d_fine": ("layers", "analyse", "edge distributions"),
    "deimv2": ("deformable", "explore", ""),
    "lw_detr": ("query_selection", "explore", ""),
    "rf_detr": ("deformable", "explore", ""),
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
    import numpy as np
    import torch
    from PySide6.QtCore import QCoreApplication, QEvent, QSettings
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
            # what Qt deletes later (tab bars of rearranged docks): an event loop would, processEvents does not
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
            time.sleep(0.005)
        return until is None

    window.resize(width, height)
    window.show()
    wait(60, lambda: window.state.result is not None)
    window.build_views()
    window.dismiss_hint()
    from big_model import photo_like  # benchmarks/big_model.py: a generated photo-like image
    from PIL import Image

    photo = folder / "photo.png"
    Image.fromarray(photo_like(480, 640, seed=3)).save(photo)
    window.files.open_image(photo)
    wait(60, lambda: window.state.result is not None and window.state.result.image_size == (480, 640))
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
        dock, workspace, choice = VIEWS[family]
        for _ in range(2):  # the workspace's default layout (a new window's first arrangement is narrower)
            window.workspaces.show(workspace)
            window.workspaces.reset()
            wait(0.5)
        result = window.state.result
        scores = result.scores.clone()
        x0, y0, x1, y1 = result.boxes_xyxy.unbind(-1)
        h_img, w_img = result.image_size
        inside = (x0 >= 0) & (y0 >= 0) & (x1 <= w_img) & (y1 <= h_img) & ((x1 - x0) * (y1 - y0) > 0.01 * h_img * w_img)
        if int(inside.sum()) >= 3:  # random weights: prefer boxes on the image, where the views can be seen
            scores[~inside] -= 2
        best = scores.argsort(descending=True)[:12].numpy()
        window.queries.set_threshold(float(result.scores[best].min()))
        shown = np.zeros(len(scores), bool)
        shown[best] = True
        window.state.set_visible_queries(shown)  # the twelve best, where many share a score
        window.state.set_selected_query(int(best[0]))
        if dock != "attention":
            window.workspaces.show_dock(dock)
        window.state.set_cross_part("spatial" if choice == "spatial query map" else "full")
        if choice == "encoder attention at a point":
            h_img, w_img = window.state.result.image_size
            window.deformable.show_pixel(h_img * 0.45, w_img * 0.55)
        elif dock == "deformable":
            from explorer.views.deformable import MODE_QUERY

            window.deformable.set_mode(MODE_QUERY)  # the selected query's sampling points
        wait(20, lambda: not any(view.busy for view in window.views if hasattr(view, "busy")))
        wait(1.5)
        path = args.out / f"family-{family}-{width}x{height}.png"
        window.grab().save(str(path))
        print("wrote", path, "|", window.state.model.config.attention, flush=True)
    window.controller.wait(10000)
    window.close()


if __name__ == "__main__":
    main()
