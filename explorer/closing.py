"""Closing the window without losing work and without freezing it. The window's closeEvent asks
:meth:`CloseGuard.may_close`, which asks, in order:

1. a training run is going: "Stop training and quit?";
2. runs of the Runs tab are training or queued: "1 run is training and 3 are queued: stop them
   and quit?" (the running run is kept as stopped; the queued ones stay in the run store and are
   offered again next time);
3. the model shown holds trained weights never saved: Save / Discard / Cancel.

Between 2 and 3 the runs are asked to stop and the window waits for their processes to hand
back what they trained, on a timer: it never blocks, and a second close only says it is still
stopping. A process that does not answer (stopped by a signal: at once; silent for
:data:`NO_ANSWER_SECONDS`, e.g. swapping) is ended, and question 3 then says so and offers to
save the model the window holds. Once every process has ended the window closes itself."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QMessageBox

from .unsaved import ask_to_save, quit_question

if TYPE_CHECKING:
    from .main_window import MainWindow
    from .training_worker import TrainingWorker

# A stopping run sends its last steps, a preview and its weights; a process silent for this long
# after Stop (swapping, or hung) is taken as not answering. One stopped by a signal cannot answer
# at all: it is ended after SUSPENDED_SECONDS.
NO_ANSWER_SECONDS = 20.0
SUSPENDED_SECONDS = 1.0
POLL_MS = 200
Button = QMessageBox.StandardButton

TRAINING_TITLE = "Training is running"
RUNS_TITLE = "Runs are training"
NO_ANSWER_TITLE = "The training process does not answer"


def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def runs_question(running: int, queued: int) -> str:
    """The question asked before quitting stops the Runs tab's queue."""
    if running and queued:
        said = f"{_runs(running)} is training and {queued} {'is' if queued == 1 else 'are'} queued: stop them and quit?"
    elif running:
        said = f"{_runs(running)} is training: stop it and quit?"
    else:
        said = f"{_runs(queued)} {'is' if queued == 1 else 'are'} queued: quit?"
    kept = []
    if running:
        kept.append("the running one is kept as stopped")
    if queued:
        kept.append("the queue is kept, to resume in the Runs tab next time")
    kept_said = "; ".join(kept)
    return f"{said} {kept_said[:1].upper()}{kept_said[1:]}."


def no_answer_text(unsaved: bool) -> str:
    said = ("The training process did not answer (it was stopped, or the computer is swapping), so it was "
            "ended: the weights of its run are lost.")
    if unsaved:
        return f"{said} The model the window shows has not been saved. Save it before quitting?"
    return f"{said} The model the window shows is saved. Quit now?"


class CloseGuard(QObject):
    """What the window asks and waits for before it closes (see the module docstring)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self._confirmed: set[str] = set()  # questions answered "stop and quit" in this attempt
        self._waiting: dict[TrainingWorker, float] = {}  # process readers -> when asked to stop
        self._ended: set[TrainingWorker] = set()  # those ended because they did not answer
        self.not_answering = False  # a process was ended because it did not answer
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)

    @property
    def stopping(self) -> bool:
        """Waiting for training processes to stop before the window closes."""
        return bool(self._waiting)

    def may_close(self) -> bool:
        """True: close now. False: the window stays open, because a question was cancelled or
        because runs are stopping (the window then closes itself once they have)."""
        w = self.window
        if self._waiting:
            w.notify("Still stopping the training before quitting…")
            return False
        training = w.training.worker if w.training_running else None
        runs = w.runs if w.views_built else None  # (asking for them would build them)
        runs_worker = runs.worker if runs is not None and runs.busy else None
        queued = len(runs.pending) if runs is not None and not runs.queue_held else 0
        if training is not None and "training" not in self._confirmed:
            answer = QMessageBox.question(w, TRAINING_TITLE, "Stop training and quit?", Button.Yes | Button.No,
                                          Button.No)
            if answer != Button.Yes:
                return self._cancel()
            self._confirmed.add("training")
        if (runs_worker is not None or queued) and "runs" not in self._confirmed:
            answer = QMessageBox.question(w, RUNS_TITLE, runs_question(int(runs_worker is not None), queued),
                                          Button.Yes | Button.Cancel, Button.Cancel)
            if answer != Button.Yes:
                return self._cancel()
            self._confirmed.add("runs")
        if runs is not None:
            runs.stop_keeping_queue()  # the queue stays in the store, for next time
        stopping = [worker for worker in (training, runs_worker) if worker is not None]
        if stopping:
            for worker in stopping:
                worker.stop()
                self._waiting[worker] = time.monotonic()
            self._timer.start()
            w.notify("Stopping the training before quitting…")
            return False
        if not self._ask_to_save():
            return self._cancel()
        self._confirmed.clear()
        self.not_answering = False
        return True

    def _ask_to_save(self) -> bool:
        w = self.window
        unsaved = w.state.model is not None and w.state.model.unsaved
        if self.not_answering:
            if unsaved:
                return ask_to_save(w, no_answer_text(True), w.choose_save_checkpoint, title=NO_ANSWER_TITLE)
            answer = QMessageBox.question(w, NO_ANSWER_TITLE, no_answer_text(False), Button.Yes | Button.Cancel,
                                          Button.Yes)
            return answer != Button.Cancel
        return not unsaved or ask_to_save(w, quit_question(), w.choose_save_checkpoint)

    def _cancel(self) -> bool:
        """The user keeps the window: every question is asked again next time."""
        self._confirmed.clear()
        self.not_answering = False
        if self.window.views_built:
            self.window.runs.quit_cancelled()
        return False

    def _poll(self) -> None:
        """On the timer: forget the processes that have ended, end those that do not answer, and
        close the window once none is left."""
        now = time.monotonic()
        for worker, asked in list(self._waiting.items()):
            if worker.ended:
                del self._waiting[worker]
                continue
            silent = now - max(asked, worker.last_heard)
            limit = SUSPENDED_SECONDS if worker.session.suspended else NO_ANSWER_SECONDS
            if silent > limit and worker not in self._ended:
                worker.kill()  # its reader then ends (and says the process was killed)
                self._ended.add(worker)
                self.not_answering = True
        if not self._waiting:
            self._timer.stop()
            self._ended.clear()
            self.window.close()  # the questions left (unsaved weights), then the window closes
