"""The window half of the robustness issue (pytest-qt, offscreen): live previews only of the image
they were computed on, the layer view's guard, Step after a failed Start, NaN checkpoints, huge
images, and every error message naming the file and the problem while keeping what was shown."""

import queue
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from detr_core.analysis.capture import run_inference
from detr_core.checkpoint import save_checkpoint
from detr_core.config import DETRConfig, ToyDataConfig, TrainConfig
from detr_core.model.detr import DETR
from detr_core.train.live import LiveJob
from detr_core.train.trainer import TrainControl
from explorer.main_window import MainWindow

SMALL = DETRConfig(backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
                   num_decoder_layers=2, dim_feedforward=64, num_queries=8, num_classes=3, dropout=0.0,
                   image_min_size=128, image_max_size=256)
NAMES = ["rectangle", "ellipse", "triangle"]


def _model(seed: int = 0) -> DETR:
    torch.manual_seed(seed)
    return DETR(SMALL).eval()


@pytest.fixture
def small_checkpoint(tmp_path):
    return save_checkpoint(tmp_path / "small.pt", _model(), NAMES)


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture(autouse=True)
def no_blocking_questions(monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)


@pytest.fixture
def window(qtbot, settings, small_checkpoint):
    w = MainWindow(settings=settings, checkpoint=small_checkpoint,
                   runs_folder=Path(settings.fileName()).parent / "runs")
    qtbot.addWidget(w)
    w.resize(1000, 700)
    w.show()
    qtbot.waitUntil(lambda: w.state.result is not None and w.state.model is not None, timeout=20000)
    yield w
    if w.training.is_running:
        w.training.stop(wait_ms=30000)
    for view in w.views:
        view.cancel_job()
        view.wait_job(10000)
    w.controller.shutdown(10000)


def _new_sample(qtbot, window):
    """A new toy image (the same 128x128 size as every toy image) and the model's result of it."""
    with qtbot.waitSignal(window.state.resultChanged, timeout=20000):
        window.new_toy_sample()
    window.controller.wait(10000)


def _small_training(window):
    t = window.training
    t.preset.setCurrentText("fast")
    t.queries.setValue(8)
    t.enc_layers.setValue(1)
    t.dec_layers.setValue(2)
    t.d_model.setCurrentText("32")
    t.batch.setValue(2)
    t.minutes.setValue(5)
    t.eval_every.setValue(0)
    t.dense.setChecked(False)
    t.query_groups.setValue(1)
    t.dn_groups.setValue(0)


# --- 1. a live preview is shown only on the image it was computed on ------------------------------
def test_the_training_child_tags_each_preview_with_its_image_id():
    """In-process run_job: a new preview image sent with an id; every later preview carries it."""
    data = ToyDataConfig(image_size=64, max_objects=3, noise=0.0)
    train = TrainConfig(lr=1e-3, lr_backbone=1e-3, batch_size=2, steps=3, schedule="constant", seed=4, data=data,
                        threads=1, eval_every=0)
    small = replace(SMALL, image_min_size=64, image_max_size=64)
    first, second = np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 200, np.uint8)
    job = LiveJob(small, train, preview_image=first, preview_every=0.0, preview_image_id="first")
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    sent: list[tuple] = []

    def send(*message):
        sent.append(message)
        if message[0] == "preview" and len(sent) < 3:  # after the first preview: a new image
            inbox.put(("preview_image", second, "second"))

    job.run(send, TrainControl(), inbox)
    ids = [m[2] for m in sent if m[0] == "preview"]
    assert ids[0] == "first" and ids[-1] == "second" and len(ids) >= 3
    assert ids == sorted(ids)  # never back to the first image once the second was sent


def test_a_preview_of_the_previous_image_is_not_drawn_on_a_new_one_of_the_same_size(qtbot, window):
    state = window.state
    old_id, old_image = state.image_id, state.image
    stale = run_inference(_model(1), old_image, NAMES, capture=True)  # "training weights", old image
    _new_sample(qtbot, window)
    assert state.image.shape == old_image.shape and state.image_id != old_id
    assert window.training.preview_image_id == state.image_id  # the training run is told the new id
    shown = state.result
    window.training.preview.emit(stale, old_id)  # arrives late, tagged with the old image
    assert state.result is shown and not state.result_is_preview
    fresh = run_inference(_model(1), state.image, NAMES, capture=True)
    window.training.preview.emit(fresh, state.image_id)
    assert state.result is fresh and state.result_is_preview


# --- 3. Step after a failed Start -----------------------------------------------------------------
def test_step_when_start_fails_reports_the_reason_and_does_not_assert(qtbot, window, monkeypatch):
    panel = window.training

    def refuse():
        raise ValueError("lr must be a finite number above 0 (got nan)")

    monkeypatch.setattr(panel, "configs", refuse)
    with qtbot.waitSignal(window.errorShown, timeout=5000) as blocker:
        panel.btn_step.click()
    assert blocker.args[0] == "Cannot start training: lr must be a finite number above 0 (got nan)"
    assert panel.worker is None and not panel.is_running and panel.btn_start.isEnabled()


# --- 2. the layer view: a generation guard, cancel, and no previews -------------------------------
@pytest.fixture
def layer_view(qtbot):
    from explorer.state import AppState, LoadedModel
    from explorer.views.layers import LayerView

    view = LayerView(AppState())
    qtbot.addWidget(view)
    view.resize(800, 500)
    view.show()
    view.state.set_model(LoadedModel(_model(), NAMES, "test"))
    yield view
    view.shutdown()


def test_layer_ap_of_an_old_model_never_appears_after_the_model_changed(qtbot, layer_view, monkeypatch):
    import threading

    from detr_core.analysis.layerwise import LayerAP
    from explorer.state import LoadedModel
    from explorer.views import layers

    release = threading.Event()
    old_rows = [LayerAP(layer=1, ap=0.9, ap50=0.9, ap_nms=0.9, ap50_nms=0.9)]

    def slow_ap(ctx, *args):
        release.wait(10)
        return old_rows  # ignores cancellation, as a job past its last check would

    monkeypatch.setattr(layers, "_ap_job", slow_ap)
    # a model change while the AP runs cancels it
    assert layer_view.run_ap()
    layer_view.state.set_model(LoadedModel(_model(1), NAMES, "another"))
    assert layer_view.job.ctx.cancelled
    with qtbot.waitSignal(layer_view.jobCancelled, timeout=10000):
        release.set()
    # a result already on its way (the job ended, its signal not yet delivered) is dropped
    release.clear()
    assert layer_view.wait_job(10000)
    assert layer_view.run_ap()
    release.set()
    assert layer_view.job.wait(10000)  # returned; its result waits in the event queue
    layer_view.state.set_model(LoadedModel(_model(2), NAMES, "a third"))
    with qtbot.waitSignal(layer_view.jobFinished, timeout=10000):
        pass
    assert layer_view.ap_rows == [] and "New model" in layer_view.ap_summary.text()
    assert len(layer_view.curves["AP"].getData()[0] or []) == 0


def test_layer_ap_of_the_same_model_is_shown(qtbot, layer_view, monkeypatch):
    from detr_core.analysis.layerwise import LayerAP
    from explorer.views import layers

    rows = [LayerAP(layer=i, ap=0.1 * i, ap50=0.2 * i, ap_nms=0.1 * i, ap50_nms=0.2 * i) for i in (1, 2)]
    monkeypatch.setattr(layers, "_ap_job", lambda ctx, *args: rows)
    with qtbot.waitSignal(layer_view.jobFinished, timeout=10000):
        assert layer_view.run_ap()
    assert layer_view.ap_rows == rows


def test_training_previews_do_not_feed_the_layer_view(layer_view):
    state = layer_view.state
    image = np.full((128, 128, 3), 120, np.uint8)
    state.set_image(image)
    mine = run_inference(state.model.model, image, NAMES, capture=False)
    state.set_result(mine)
    assert layer_view.result is mine
    preview = run_inference(_model(3), image, NAMES, capture=False)  # the training weights
    state.set_result(preview, preview=True)
    assert layer_view.result is mine  # the layer view stays with the model its AP is of
