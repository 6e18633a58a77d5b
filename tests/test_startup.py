"""The first picture comes before the heavy imports; the rest of the window follows it.

The window shows the bundled model's boxes on a toy image without importing torchvision (which
imports torch._dynamo: as long again as torch itself), scipy or pycocotools; the training panel
and the analysis views are built afterwards, and are told the state as if they had been there
from the start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.main_window import BUNDLED_CHECKPOINT, MainWindow

pytestmark = pytest.mark.usefixtures("no_blocking_questions")
ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torchvision", "scipy", "pycocotools", "torch._dynamo", "explorer.training_panel",
         "explorer.views.matching", "detr_core.train.trainer")

FIRST_PICTURE = """
import json, sys, tempfile
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication
app = QApplication([])
from explorer.main_window import MainWindow
settings = QSettings(tempfile.mktemp(suffix=".ini"), QSettings.Format.IniFormat)
window = MainWindow(settings=settings)
window.show()
report = {}
def done():
    window.controller.wait()
    report.update(kept=len(window.state.kept_queries()), loaded=[m for m in sys.argv[1:] if m in sys.modules])
    app.quit()
window.state.resultChanged.connect(lambda r: r is not None and QTimer.singleShot(0, done))
app.exec()
# then what a command-line run does: detr_core, then torchvision (which imports torch._dynamo,
# which imports triton when it is installed)
import detr_core
import torchvision
report["triton"] = "triton" in sys.modules and sys.modules["triton"] is not None
print(json.dumps(report), flush=True)
"""


@pytest.fixture(scope="module")
def first_picture():
    """One fresh interpreter (importing torch costs seconds per process) for two questions: the
    window's first picture, then torchvision imported after detr_core, as a run does, and what
    the process says when it exits. Its exit status, stderr and report."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", FIRST_PICTURE, *HEAVY], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_the_first_picture_imports_none_of_the_heavy_modules(first_picture):
    report, _ = first_picture
    assert report["kept"] >= 1  # the bundled model's boxes are on the toy image
    assert report["loaded"] == []


def test_views_built_after_the_first_result_see_the_current_state(qtbot, settings):
    window = MainWindow(settings=settings, checkpoint=BUNDLED_CHECKPOINT, runs_folder=Path(settings.fileName()).parent)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.state.result is not None, timeout=20000)
    assert not window.views_built
    assert window.docks["matching"].widget().__class__.__name__ == "QLabel"  # "Loading…"
    window.state.set_selected_query(window.state.kept_queries()[0])
    with qtbot.waitSignal(window.viewsBuilt, timeout=60000):
        window.warm_up_views()
    assert window.registry._warming.wait(10000)
    # each view was told the model and result that were set before it existed
    assert window.layers.result is window.state.result
    assert window.training.open_model is window.state.model
    window.layers.flush_deferred()
    window.controller.wait(10000)


def test_without_a_gpu_a_run_ends_without_triton_leak_reports(first_picture):
    """Triton's bindings report 'leaked' objects at exit (some thirty lines) once torchvision has
    imported it; without a CUDA device nothing needs triton, so detr_core keeps it out."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("with a CUDA device triton is left alone")
    report, stderr = first_picture
    assert report["triton"] is False
    assert "nanobind" not in stderr and "leaked" not in stderr, stderr[-2000:]
