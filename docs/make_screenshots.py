"""The README's workspace screenshots, made from the real window (issue 29).

    uv run docs/make_screenshots.py [--size 1366x768] [--out docs]

Opens the window with the bundled model on a fresh settings file, trains for a few seconds so
the Train workspace has curves and live boxes, collects query specialization, opens a small
toy COCO dataset (written with ``main.py make-dataset``) and checks it with the doctor, then
grabs every workspace at ``--size`` and the lesson in presentation mode at 1280x720. Offscreen
by default (set QT_QPA_PLATFORM=xcb to watch it)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1366x768")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--train-seconds", type=float, default=25)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)

    sys.path.insert(0, str(ROOT))
    from PySide6.QtCore import QCoreApplication, QEvent, QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from explorer.main_window import MainWindow

    folder = Path(tempfile.mkdtemp(prefix="detr_shots_"))
    subprocess.run([sys.executable, str(ROOT / "main.py"), "make-dataset", str(folder / "shapes"), "--train", "24",
                    "--val", "12", "--format", "coco"], check=True, capture_output=True)
    window = MainWindow(settings=QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat),
                        runs_folder=folder / "runs")

    def wait(seconds: float, until=None) -> None:  # noqa: ANN001
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until is not None and until()):
            app.processEvents()
            # what Qt deletes later (tab bars of rearranged docks): an event loop would, processEvents does not
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
            time.sleep(0.005)

    def shot(name: str) -> None:
        wait(0.6)
        path = args.out / name
        window.grab().save(str(path))
        print("wrote", path)

    window.resize(width, height)
    window.show()
    wait(60, lambda: window.state.result is not None)
    window.build_views()

    window.workspaces.show("explore")
    window.workspaces.reset()
    shot(f"workspace-explore-{args.size}.png")

    window.workspaces.show("train")
    window.workspaces.reset()
    window.training.minutes.setValue(args.train_seconds / 60)
    window.training.eval_every.setValue(40)
    window.training.start()
    wait(args.train_seconds + 60, lambda: not window.training.is_running and window.training.plots.steps)
    wait(5, lambda: not window.controller.queue.busy)
    shot(f"workspace-train-{args.size}.png")

    window.workspaces.show("analyse")
    window.workspaces.reset()
    window.specialization.num_images.setValue(60)
    window.specialization.run()
    wait(60, lambda: window.specialization.job is not None and not window.specialization.job.is_running)
    shot(f"workspace-analyse-{args.size}.png")

    window.open_dataset(folder / "shapes")
    wait(60, lambda: window.state.dataset is not None)
    window.workspaces.show("data")
    window.workspaces.reset()
    window.check_dataset()
    wait(60, lambda: window.doctor.job is not None and not window.doctor.job.is_running)
    shot(f"workspace-data-{args.size}.png")

    window.lesson.show()
    window.lesson.panel.show_page(5)  # the prediction heads: the selected query's class probabilities
    shot(f"workspace-lesson-{args.size}.png")

    window.resize(1280, 720)
    window.lesson.act_presentation.setChecked(True)
    shot("presentation-1280x720.png")
    window.lesson.act_presentation.setChecked(False)

    if window.state.model is not None and window.state.model.unsaved:  # closing asks otherwise
        window.save_checkpoint(folder / "trained.pt")
    window.controller.wait(10000)
    window.close()


if __name__ == "__main__":
    main()
