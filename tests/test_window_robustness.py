"""The window half of the robustness issue (pytest-qt, offscreen): live previews only of the image
they were computed on, the layer view's guard, Step after a failed Start, NaN checkpoints, huge
images, and every error message naming the file and the problem while keeping what was shown."""

import queue
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from detr_core.analysis.capture import run_inference
from detr_core.checkpoint import save_checkpoint
from detr_core.config import DETRConfig, ToyDataConfig, TrainConfig
from detr_core.model.detr import DETR
from detr_core.train.live import LiveJob
from detr_core.train.trainer import TrainControl
from explorer.main_window import MainWindow

pytestmark = pytest.mark.usefixtures("no_blocking_questions")


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
def window(qtbot, settings, small_checkpoint):
    w = MainWindow(settings=settings, checkpoint=small_checkpoint,
                   runs_folder=Path(settings.fileName()).parent / "runs")
    qtbot.addWidget(w)
    w.resize(1000, 700)
    w.show()
    qtbot.waitUntil(lambda: w.state.result is not None and w.state.model is not None, timeout=20000)
    yield w
    if w.views_built:  # (asking for a view builds them all: a second or so, for nothing)
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
        if message[0] == "preview" and sum(m[0] == "preview" for m in sent) == 1:  # after the first: a new image
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


# --- 4. NaN checkpoints, huge images ----------------------------------------------------------------
def test_a_nan_checkpoint_is_refused_with_a_message_and_the_model_stays(qtbot, window, tmp_path, capfd):
    model = _model()
    with torch.no_grad():
        model.class_embed.weight[0, 0] = float("nan")
    nan_file = save_checkpoint(tmp_path / "diverged.pt", model, NAMES)
    shown_model, shown_result = window.state.model, window.state.result
    capfd.readouterr()
    with qtbot.waitSignal(window.errorShown, timeout=10000) as blocker:
        window.open_checkpoint(nan_file)
    message = blocker.args[0]
    assert message.startswith("diverged.pt: the weights are not usable: class_embed.weight holds NaN values")
    assert window._error_box is not None and window._error_box.text() == message
    assert window._error_box.windowTitle() == "Cannot open checkpoint"
    window.controller.wait(10000)
    qtbot.wait(50)
    assert window.state.model is shown_model and window.state.result is shown_result  # nothing lost
    assert "Traceback" not in capfd.readouterr().err  # no view printed one


def test_a_finished_job_keeps_nothing_it_ran_on(qtbot):
    """A finished worker (a child of its queue or view for the window's life) lets go of its
    function, its arguments and the slots connected to it: a huge image is not kept."""
    import gc
    import weakref

    from explorer.workers import WorkQueue

    queue_ = WorkQueue()
    image = np.zeros((2048, 2048, 3), np.uint8)
    image_ref = weakref.ref(image)
    got = []
    worker = queue_.submit(lambda a: a.shape, image, on_result=lambda r, kept=image: got.append(r))
    # its thread's end lets go of the work (Worker._forget, on QThread.finished); not waited for as a
    # signal: a job this short can end before a wait connects to it
    qtbot.waitUntil(lambda: worker.fn is None, timeout=10000)
    del image
    gc.collect()
    assert got == [(2048, 2048, 3)] and image_ref() is None


def test_a_huge_pasted_image_is_downscaled_like_an_opened_one():
    from PySide6.QtGui import QImage

    from detr_core.data.images import MAX_SIDE
    from explorer.main_window import qimage_to_rgb

    image = QImage(5000, 2500, QImage.Format.Format_RGB32)
    image.fill(0x336699)
    rgb = qimage_to_rgb(image)
    assert rgb.shape == (MAX_SIDE // 2, MAX_SIDE, 3) and tuple(rgb[10, 10]) == (0x33, 0x66, 0x99)


# --- 5. every message names the file and the problem; nothing is lost ------------------------------
def _kept(window, model, image):
    window.controller.wait(10000)
    assert window.state.model is model and np.array_equal(window.state.image, image)


def test_a_bad_checkpoint_names_the_file_and_the_problem(qtbot, window, tmp_path):
    model, image = window.state.model, window.state.image.copy()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage" * 100)
    with qtbot.waitSignal(window.errorShown, timeout=10000) as blocker:
        window.open_checkpoint(bad)
    assert blocker.args[0] == "bad.pt: not a readable PyTorch checkpoint; is it corrupt or truncated?"
    _kept(window, model, image)


def test_a_text_file_opened_as_an_image_names_the_file_and_the_problem(qtbot, window, tmp_path):
    model, image = window.state.model, window.state.image.copy()
    text = tmp_path / "notes.png"
    text.write_text("these are notes, not pixels\n")
    with qtbot.waitSignal(window.errorShown, timeout=10000) as blocker:
        window.open_path(text)  # as a drop or a recent file would
    assert blocker.args[0] == f"{text}: not an image format this app can read"
    _kept(window, model, image)


def test_saving_where_no_file_can_be_written_names_the_path_and_why(qtbot, window, tmp_path):
    model, image = window.state.model, window.state.image.copy()
    blocker_file = tmp_path / "a_file"
    blocker_file.write_text("x")
    target = blocker_file / "model.pt"  # under a file, not a folder
    with qtbot.waitSignal(window.errorShown, timeout=5000) as blocker:
        assert not window.save_checkpoint(target)
    message = blocker.args[0]
    assert message == f"cannot save {target}: {blocker_file} is a file, not a folder"
    assert "Errno" not in message
    with qtbot.waitSignal(window.errorShown, timeout=5000) as blocker:
        assert not window.export_png(blocker_file / "view.png")
    assert blocker.args[0] == f"cannot save {blocker_file / 'view.png'}: {blocker_file} is a file, not a folder"
    assert window.state.model.path != target
    _kept(window, model, image)


def test_a_view_export_that_cannot_be_written_says_where_and_why(qtbot, window, tmp_path):
    view = window.layers
    view.state.set_selected_query(0)
    blocker_file = tmp_path / "a_file"
    blocker_file.write_text("x")
    with qtbot.waitSignal(view.errorShown, timeout=5000) as blocker:
        assert not view.export_data_to(blocker_file / "layers.csv")
    assert blocker.args[0] == f"cannot save {blocker_file / 'layers.csv'}: {blocker_file} is a file, not a folder"


def test_readable_error_words():
    from explorer.workers import readable_error

    denied = PermissionError(13, "Permission denied", "/data/model.pt")
    assert readable_error(denied) == "/data/model.pt: permission denied"
    assert readable_error(ValueError("x.png: too small"), "x.png") == "x.png: too small"
    assert readable_error(MemoryError(), "big.png") == "big.png: not enough memory for this"
    bug = readable_error(IndexError("index 5 is out of bounds\nmore"), "Layer by layer")
    assert bug == "Layer by layer: an unexpected error (IndexError: index 5 is out of bounds)"


def test_a_view_job_that_fails_names_the_view_and_the_problem(qtbot, layer_view, monkeypatch):
    from explorer.views import layers

    def broken(ctx, *args):
        raise IndexError("index 9 is out of bounds for dimension 0 with size 8")

    monkeypatch.setattr(layers, "_ap_job", broken)
    with qtbot.waitSignal(layer_view.jobFailed, timeout=10000) as blocker:
        layer_view.run_ap()
    assert blocker.args[0] == ("Layer by layer: an unexpected error "
                               "(IndexError: index 9 is out of bounds for dimension 0 with size 8)")
    assert layer_view.progress_label.text() == blocker.args[0] and layer_view.run_button.isEnabled()

