"""A finished training run keeps no model: the window holds the model it shows (and the one it
offers to go back to), not every model trained in the session.

A job that runs with a model holds it until it ends: the matching view matches a sample with
every new model, off the GUI thread, whatever the tab in front. So the checks wait until no job
runs (and each has let go of its work) before they collect. Without that wait the last check
failed in 3 of 9 runs on a busy machine: the matching view's job on the model before could
still be running (its worker's arguments hold the model; a matching job made 3 s slower, as on
a busy machine, fails it every time)."""

import gc
import types
import weakref

import pytest
from conftest import small_training
from PySide6.QtCore import QCoreApplication, QEvent

from detr_core.checkpoint import load_checkpoint
from explorer.main_window import BUNDLED_CHECKPOINT, MainWindow
from explorer.training_worker import TrainingWorker
from explorer.workers import running_workers

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


def _once_jobs_end(qtbot):
    """Wait until no job runs and every finished one has let go of its work (its thread's end
    delivered), then collect cyclic garbage."""
    qtbot.waitUntil(lambda: not running_workers(), timeout=30000)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


def _held_by(obj: object, depth: int = 4) -> str:
    """Who keeps ``obj`` alive, for the failure message: chains of referrers up to an object
    that is not a plain container (a Worker, a view...)."""
    containers = (dict, list, tuple, set, types.CellType, types.MethodType)
    chains, level, seen = [], [(obj, "")], {id(obj)}
    for _ in range(depth):
        above = []
        for thing, chain in level:
            for r in gc.get_referrers(thing):
                if isinstance(r, types.FrameType) or r is level or r is above or id(r) in seen:
                    continue
                seen.add(id(r))
                if isinstance(r, containers):
                    above.append((r, f"{chain} in {type(r).__qualname__}" if chain else type(r).__qualname__))
                else:
                    chains.append(f"{chain} in {r!r:.80}" if chain else f"{r!r:.80}")
        level = above
    return "held by: " + ("; ".join(chains) or ", ".join(c for _, c in level) or "nothing tracked")


def test_a_finished_run_lets_go_of_its_model_and_the_latest_can_be_saved(qtbot, settings, tmp_path):
    window = MainWindow(settings=settings, checkpoint=BUNDLED_CHECKPOINT, runs_folder=tmp_path / "runs")
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.state.result is not None and window.state.model is not None, timeout=20000)
    bundled = window.state.model
    small_training(window)
    first = _one_step_run(qtbot, window)
    window.back_to_previous_model()  # the first run's model is now kept only to come back to
    assert window.state.model is bundled and window.controller.previous_model.model is first()
    second = _one_step_run(qtbot, window)  # replaces it as the model to go back from
    _once_jobs_end(qtbot)

    assert first() is None, _held_by(first())  # the first run's model is freed
    panel = window.training
    assert panel.findChildren(TrainingWorker) == [panel.worker]  # with its worker
    assert panel.worker.result is None  # the latest one handed its model over and let go of it
    assert second() is window.state.model.model and window.controller.previous_model is bundled

    out = tmp_path / "latest.pt"
    assert window.save_checkpoint(out)  # the latest can be saved, as trained
    saved = load_checkpoint(out)
    assert saved.step == 1
    assert all(v.equal(saved.state_dict[k]) for k, v in second().state_dict().items())
    # going back and forth keeps the pair; opening another model forgets "Back to" and its model
    window.back_to_previous_model()
    assert window.state.model is bundled and window.controller.previous_model.model is second()
    window.back_to_previous_model()
    assert window.state.model.model is second() and window.controller.previous_model is bundled
    with qtbot.waitSignal(window.state.modelChanged, timeout=20000):
        window.open_checkpoint(out)
    qtbot.waitUntil(lambda: window.state.model.path == out, timeout=20000)
    assert window.controller.previous_model is None
    _once_jobs_end(qtbot)
    assert second() is None, _held_by(second())  # neither shown nor offered: freed
    window.controller.wait(10000)
