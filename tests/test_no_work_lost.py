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
from PySide6.QtWidgets import QFileDialog, QMessageBox

from detr_core.analysis.capture import run_inference
from detr_core.checkpoint import load_checkpoint, save_checkpoint
from detr_core.config import DETRConfig, TrainConfig
from detr_core.model.detr import DETR
from detr_core.train.ablations import RunSpec
from detr_core.train.run_store import RunStore
from detr_core.train.trainer import History
from explorer.closing import NO_ANSWER_TITLE, RUNS_TITLE
from explorer.closing import TRAINING_TITLE as CLOSING_TITLE
from explorer.main_window import MainWindow
from explorer.training_worker import TrainedModel
from explorer.unsaved import TITLE

SMALL = DETRConfig(backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
                   num_decoder_layers=2, dim_feedforward=64, num_queries=8, num_classes=3, dropout=0.0,
                   image_min_size=128, image_max_size=256)
NAMES = ["rectangle", "ellipse", "triangle"]
Button = QMessageBox.StandardButton
TINY_RUN = ["d_model=32", "dim_feedforward=64", "num_encoder_layers=1", "num_decoder_layers=2", "tiny_width=8",
            "batch_size=2", "eval_images=8"]


def tiny_spec(name: str, steps: int = 3) -> RunSpec:
    return RunSpec(name, overrides=TINY_RUN, seed=0, seconds=None, steps=steps, eval_every_steps=0)


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
    if w.views_built:  # (asking for a view builds them all: a second or so, for nothing)
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


# --- 5. unsaved trained weights are never replaced without a question ------------------------------
def _trained(window, seed: int = 1):
    """A run of this session ends (as the training panel says it): its model is shown, unsaved."""
    torch.manual_seed(seed)
    trained = TrainedModel(DETR(SMALL).eval(), NAMES, SMALL, TrainConfig(), History(), step=7, reason="stopped")
    window.training.trained.emit(trained)
    assert window.state.model.trained is trained and window.state.model.unsaved
    return window.state.model


def test_opening_a_checkpoint_over_unsaved_weights_asks_and_cancel_keeps_them(qtbot, window, questions,
                                                                                small_checkpoint, tmp_path,
                                                                                monkeypatch):
    trained = _trained(window)
    questions.answers[TITLE] = Button.Cancel
    window.open_checkpoint(small_checkpoint)  # as File > Open Checkpoint, a recent file or a drop do
    qtbot.waitUntil(lambda: bool(questions.asked), timeout=20000)
    window.controller.wait(10000)
    title, text = questions.asked[-1]
    assert title == TITLE and "Opening small.pt replaces it" in text and "7 steps" in text
    assert window.state.model is trained and trained.unsaved and "*" in window.windowTitle()
    # a new run asks too, before it starts; Cancel leaves the panel idle
    window.training.btn_start.click()
    assert questions.asked[-1][1].startswith("The model trained in this session (7 steps)")
    assert window.training.worker is None and not window.training.is_running
    # Save: the weights are written first, then the checkpoint opens
    questions.answers[TITLE] = Button.Save
    out = tmp_path / "kept.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    with qtbot.waitSignal(window.state.modelChanged, timeout=20000):
        window.open_path(small_checkpoint)
    assert window.state.model.path == small_checkpoint and not window.state.model.unsaved
    assert out.exists() and load_checkpoint(out).step == 7


def test_quitting_after_a_cancelled_open_still_offers_to_save(qtbot, window, questions, small_checkpoint):
    _trained(window)
    questions.answers[TITLE] = Button.Cancel
    window.open_checkpoint(small_checkpoint)
    qtbot.waitUntil(lambda: bool(questions.asked), timeout=20000)
    window.controller.wait(10000)
    questions.asked.clear()
    assert not window.close()  # Cancel again: the window stays
    assert questions.titles == [TITLE] and "before quitting" in questions.asked[0][1]
    questions.answers[TITLE] = Button.Discard
    assert window.close()


def test_back_to_over_unsaved_weights_asks_and_cancel_keeps_them(qtbot, window, questions):
    before = window.state.model
    trained = _trained(window)
    questions.answers[TITLE] = Button.Cancel
    window.back_to_previous_model()
    assert questions.asked[-1][0] == TITLE and "Going back to small.pt replaces it" in questions.asked[-1][1]
    assert window.state.model is trained and window.controller.previous_model is before  # as it was
    questions.answers[TITLE] = Button.Discard
    window.back_to_previous_model()
    assert window.state.model is before and window.controller.previous_model is trained  # can come back


# --- 4. quitting while the training process is frozen ------------------------------------------------
def _process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_quitting_while_the_training_process_is_frozen_stays_responsive_says_so_and_ends_it(qtbot, window,
                                                                                           questions):
    state, panel = window.state, window.training
    _trained(window)  # the window holds unsaved trained weights, which it offers to save at the end
    small_training(window)
    panel.btn_start.click()  # (asked about them: Discard, the new run's model will replace them)
    qtbot.waitUntil(lambda: panel.worker is not None and panel.worker.started_training, timeout=60000)
    worker = panel.worker
    process = worker.session.process
    os.kill(process.pid, signal.SIGSTOP)  # frozen: it reads no command and sends nothing
    qtbot.waitUntil(lambda: _process_state(process.pid) == "T", timeout=5000)
    questions.answers[CLOSING_TITLE] = Button.Yes
    questions.asked.clear()
    t0 = time.monotonic()
    assert not window.close()  # returns at once: nothing waits on the GUI thread
    assert time.monotonic() - t0 < 2.0
    assert not window.close()  # a second close only says the window is still stopping
    assert questions.titles == [CLOSING_TITLE]
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=20000)
    assert questions.titles == [CLOSING_TITLE, NO_ANSWER_TITLE]
    assert "did not answer" in questions.asked[-1][1] and "Save it before quitting?" in questions.asked[-1][1]
    assert state.model.unsaved  # discarded, as answered: the window held them until then
    process.join(5)
    assert not process.is_alive() and process.exitcode == -signal.SIGKILL  # ended, not left frozen
    assert not worker.is_running


# --- 6. quitting during a Runs queue ------------------------------------------------------------------
def test_quitting_during_a_runs_queue_asks_and_the_next_window_has_the_queue(qtbot, settings, small_checkpoint,
                                                                              questions):
    window = _open(qtbot, settings, small_checkpoint)
    runs = window.runs
    folder = runs.store.root
    runs.queue([tiny_spec("long", steps=100_000), tiny_spec("second"), tiny_spec("third"), tiny_spec("fourth")])
    qtbot.waitUntil(lambda: runs.live is not None and len(runs.live.curves["step"]) > 0, timeout=60000)
    questions.answers[RUNS_TITLE] = Button.Cancel
    assert not window.close()  # Cancel: everything goes on
    assert questions.asked[-1] == (RUNS_TITLE, ("1 run is training and 3 are queued: stop them and quit? "
                                                "The running one is kept as stopped; the queue is kept, to "
                                                "resume in the Runs tab next time."))
    assert runs.busy and [s.name for s in runs.pending] == ["second", "third", "fourth"]
    questions.answers[RUNS_TITLE] = Button.Yes
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30000)
    assert not runs.busy
    assert [s.name for s in RunStore(folder).load_queue()] == ["second", "third", "fourth"]

    again = _open(qtbot, settings, small_checkpoint)  # the next session, on the same store
    kept = again.runs
    assert kept.store.root == folder
    assert [s.name for s in kept.pending] == ["second", "third", "fourth"] and kept.queue_held
    assert [(r.name, r.status) for r in kept.records] == [("long", "stopped")]
    statuses = [kept.table.item(r, 1).text() for r in range(kept.table.rowCount())]
    assert statuses == ["stopped", "queued", "queued", "queued"]
    assert not kept.busy and kept.kept_bar.isVisibleTo(kept) and "3 runs queued" in kept.kept_label.text()
    kept.drop_queue()
    assert kept.pending == [] and RunStore(folder).load_queue() == []
    questions.asked.clear()
    assert again.close() and questions.asked == []  # nothing queued, nothing asked


def test_the_run_store_keeps_a_queue_and_names_an_unreadable_one(tmp_path):
    store = RunStore(tmp_path / "runs")
    assert store.load_queue() == []
    specs = [tiny_spec("a"), tiny_spec("b", steps=5)]
    store.save_queue(specs)
    assert RunStore(store.root).load_queue() == specs
    store.save_queue([])
    assert not (store.root / RunStore.QUEUE).exists()
    (store.root / RunStore.QUEUE).write_text("{not json")
    assert store.load_queue() == [] and store.errors[-1].startswith("queue.json: ")
    assert store.list() == []  # the queue file is not a run
