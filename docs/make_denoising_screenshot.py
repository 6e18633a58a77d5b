"""The Denoising view's screenshot (issue 28), made from the real window.

    uv run main.py train --preset fast --set dn_groups=2 --steps 700 --out runs/fast-dn.pt
    uv run docs/make_denoising_screenshot.py runs/fast-dn.pt [--sample 3] [--size 1366x768]

Opens the window on a fresh settings file, opens the checkpoint (a model trained with denoising
groups), brings the Denoising view to the front of the Analyse workspace on one sample of the
model's training stream and saves ``docs/denoising-view-<size>.png``. Offscreen by default."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--sample", type=int, default=3)
    parser.add_argument("--size", default="1366x768")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))

    sys.path.insert(0, str(ROOT))
    from PySide6.QtCore import QCoreApplication, QEvent, QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from explorer.main_window import MainWindow

    folder = Path(tempfile.mkdtemp(prefix="detr_dn_shot_"))
    window = MainWindow(settings=QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat),
                        runs_folder=folder / "runs")

    def wait(seconds: float, until=None) -> None:  # noqa: ANN001
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until is not None and until()):
            app.processEvents()
            # what Qt deletes later (tab bars of rearranged docks): an event loop would, processEvents does not
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
            time.sleep(0.005)

    window.resize(width, height)
    window.show()
    wait(60, lambda: window.state.result is not None)
    window.build_views()
    window.open_checkpoint(args.checkpoint.resolve(), remember=False)
    wait(60, lambda: window.state.model is not None and window.state.model.path == args.checkpoint.resolve())
    wait(60, lambda: window.state.result is not None and not window.controller.queue.busy)
    for _ in range(2):  # the workspace's default layout (the first arrangement of a new window is narrower)
        window.workspaces.show("analyse")
        window.workspaces.reset()
        wait(0.5)
    window.workspaces.show_dock("denoising")
    view = window.denoising
    view.set_sample_index(args.sample)
    wait(60, lambda: view.snapshot is not None and view.snapshot.sample_index == args.sample and not view.busy)
    wait(1.0)
    path = args.out / f"denoising-view-{width}x{height}.png"
    window.grab().save(str(path))
    print("wrote", path, "|", view.status.text())
    window.controller.wait(10000)
    window.close()


if __name__ == "__main__":
    main()
