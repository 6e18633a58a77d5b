"""No work lost in the window (pytest-qt, offscreen, with real training processes): a killed
training process leaves the kept model's own result on screen; quitting while the training
process is frozen stays responsive, says so and ends it; unsaved trained weights are never
replaced without a question; quitting during a Runs queue asks and keeps the queue."""

import os
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import small_training
from PySide6.QtWidgets import QMessageBox

from detr_core.analysis.capture import run_inference
from detr_core.checkpoint import save_checkpoint
from detr_core.config import DETRConfig
from detr_core.model.detr import DETR
from explorer.main_window import MainWindow

SMALL = DETRConfig(backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
                   num_decoder_layers=2, dim_feedforward=64, num_queries=8, num_classes=3, dropout=0.0,
                   image_min_size=128, image_max_size=256)
NAMES = ["rectangle", "ellipse", "triangle"]
Button = QMessageBox.StandardButton


@pytest.fixture
def small_checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "small.pt", DETR(SMALL).eval(), NAMES)


class Questions:
    """Answers QMessageBox.question by its title (Discard unless told) and notes what was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []
        self.answers: dict[str, Button] = {}

    def __call__(self, parent, title, text, *args, **kwargs):
        self.asked.append((title, text))
        return self.answers.get(title, Button.Discard)

    @property
    def titles(self) -> list[str]:
        return [title for title, _ in self.asked]


@pytest.fixture
def questions(monkeypatch):
    answer = Questions()
    monkeypatch.setattr(QMessageBox, "question", answer)
    return answer


def _open(qtbot, settings, checkpoint) -> MainWindow:
    window = MainWindow(settings=settings, checkpoint=checkpoint,
                        runs_folder=Path(settings.fileName()).parent / "runs")
    qtbot.addWidget(window)
    window.resize(1000, 700)
    window.show()
    qtbot.waitUntil(lambda: window.state.result is not None and window.state.model is not None, timeout=20000)
    return window


@pytest.fixture
def window(qtbot, settings, small_checkpoint, questions):
    w = _open(qtbot, settings, small_checkpoint)
    yield w
    if w.training.is_running:
        w.training.worker.kill()
        w.training.worker.wait(30000)
    w.runs.shutdown(20000)
    w.controller.shutdown(10000)


# --- 1. a killed training process: the kept model's own result, not the dead run's preview --------
def test_a_killed_training_process_leaves_the_kept_models_own_result_on_screen(qtbot, window):
    state, panel = window.state, window.training
    kept = state.model
    small_training(window)
    panel.dec_layers.setValue(1)  # the run's previews have one decoder layer, the kept model two
    panel.btn_start.click()
    qtbot.waitUntil(lambda: state.result_is_preview, timeout=60000)
    assert state.result.num_layers == 1
    with qtbot.waitSignal(window.errorShown, timeout=30000) as blocker:
        os.kill(panel.worker.session.process.pid, signal.SIGKILL)  # as the out-of-memory killer does
    assert "killed by signal 9" in blocker.args[0]
    qtbot.waitUntil(lambda: not panel.is_running, timeout=30000)
    assert state.model is kept  # no trained model came back
    qtbot.waitUntil(lambda: not state.result_is_preview, timeout=10000)
    assert state.result.num_layers == kept.config.num_decoder_layers == 2
    fresh = run_inference(kept.model, state.image, kept.class_names, capture=True)
    assert torch.allclose(state.result.boxes_cxcywh, fresh.boxes_cxcywh)
