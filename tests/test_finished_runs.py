"""A finished training run keeps no model: the window holds the model it shows (and the one it
offers to go back to), not every model trained in the session."""

import gc
import weakref

import pytest
from conftest import small_training
from PySide6.QtCore import QCoreApplication, QEvent

from detr_core.checkpoint import load_checkpoint
from explorer.main_window import BUNDLED_CHECKPOINT, MainWindow
from explorer.training_worker import TrainingWorker

pytestmark = pytest.mark.usefixtures("no_blocking_questions")


def _one_step_run(qtbot, window):
    """Step once (a run that starts paused and trains one step), stop it, wait until it has
    ended and handed its model over; returns the model's weak reference."""
    panel = window.training
    panel.btn_step.click()
    qtbot.waitUntil(lambda: len(panel.plots.steps) == 1, timeout=60000)
    panel.stop(wait_ms=30000)
    qtbot.waitUntil(panel.btn_start.isEnabled, timeout=30000)  # ended: its model handed over
    assert window.state.model.trained is not None and window.state.model.trained.step == 1
    return weakref.ref(window.state.model.model)


def test_a_finished_run_lets_go_of_its_model_and_the_latest_can_be_saved(qtbot, settings, tmp_path):
    window = MainWindow(settings=settings, checkpoint=BUNDLED_CHECKPOINT, runs_folder=tmp_path / "runs")
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.state.result is not None and window.state.model is not None, timeout=20000)
    bundled = window.state.model
    small_training(window)
    first = _one_step_run(qtbot, window)
    window.back_to_previous_model()  # the first run's model is now kept only to come back to
    assert window.state.model is bundled and window._previous_model.model is first()
    second = _one_step_run(qtbot, window)  # replaces it as the model to go back from
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()

    assert first() is None  # the first run's model is freed
    panel = window.training
    assert panel.findChildren(TrainingWorker) == [panel.worker]  # with its worker
    assert panel.worker.result is None  # the latest one handed its model over and let go of it
    assert second() is window.state.model.model and window._previous_model is bundled

    out = tmp_path / "latest.pt"
    assert window.save_checkpoint(out)  # the latest can be saved, as trained
    saved = load_checkpoint(out)
    assert saved.step == 1
    assert all(v.equal(saved.state_dict[k]) for k, v in second().state_dict().items())
    # going back and forth keeps the pair; opening another model forgets "Back to" and its model
    window.back_to_previous_model()
    assert window.state.model is bundled and window._previous_model.model is second()
    window.back_to_previous_model()
    assert window.state.model.model is second() and window._previous_model is bundled
    with qtbot.waitSignal(window.state.modelChanged, timeout=20000):
        window.open_checkpoint(out)
    qtbot.waitUntil(lambda: window.state.model.path == out, timeout=20000)
    assert window._previous_model is None
    window.controller.wait(10000)
    gc.collect()
    assert second() is None  # neither shown nor offered: freed
    window.controller.wait(10000)
