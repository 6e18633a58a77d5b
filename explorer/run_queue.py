"""The Runs queue: runs waiting their turn and the one training, one at a time, each in its own
process (a :class:`~detr_core.train.runs.RunJob`, which trains through the core's training
session). Not a widget: the Runs tab is a view of it.

    queue = RunQueue(store, parent=view)
    queue.event.connect(...)           # the running run's trainer events (GUI thread)
    queue.ended.connect(...)           # (record or None, failure message, cancelled) per run
    queue.restore()                    # the runs queued when the app last closed, held
    queue.add(specs)
    spec = queue.start_next()          # None when nothing is waiting, it is held, or a run is under way
    queue.cancel()                     # drop the waiting runs, stop the running one (it is saved)
    queue.stop_keeping_queue()         # quitting: stop the running run, keep the waiting ones

The waiting runs are kept in the store (``RunStore.save_queue``) each time they change, so
quitting (or a crash) does not lose them: the next queue over the store has them back, held
until :meth:`RunQueue.resume` (or :meth:`RunQueue.drop`).
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QObject, Signal

from detr_core.train.ablations import RunSpec
from detr_core.train.run_store import RunRecord, RunStore
from detr_core.train.runs import RunJob

from .training_worker import TrainingWorker


class RunQueue(QObject):
    """Queued RunSpecs and the training process of the current one (GUI thread only)."""

    event = Signal(object)  # a trainer Event of the current run
    ended = Signal(object, str, bool)  # (RunRecord or None, why there is none, cancelled)

    def __init__(self, store: RunStore | str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store if isinstance(store, RunStore) else RunStore(store)
        self.pending: list[RunSpec] = []
        self.current: RunSpec | None = None
        self.worker: TrainingWorker | None = None  # the current (or last) run's training process
        self.cancelled = False
        self.held = False  # runs kept from the last session wait for resume()
        self.closing = False  # quitting: the queue in the store stays as it is
        self._failure = ""  # the current run's last "failed" message

    @property
    def busy(self) -> bool:
        return self.worker is not None and self.worker.is_running

    def save(self) -> None:
        """Keep the waiting runs in the store (not while quitting: they stay as they were).
        Raises OSError when they cannot be written."""
        if not self.closing:
            self.store.save_queue(self.pending)

    def restore(self) -> list[RunSpec]:
        """The runs queued when the app last closed, put in front of the queue and held. An
        unreadable queue gives none and is named in the store's ``errors``."""
        kept = self.store.load_queue()
        self.pending[:0] = kept
        self.held = bool(self.pending) and (self.held or bool(kept))
        return kept

    def add(self, specs: Sequence[RunSpec]) -> None:
        """Queue ``specs``; they start after any kept from the last session (which no longer wait)."""
        self.pending.extend(specs)
        self.held = False
        self.save()

    def remove(self, specs: Sequence[RunSpec]) -> None:
        for spec in specs:
            if spec in self.pending:
                self.pending.remove(spec)
        self.held = self.held and bool(self.pending)
        self.save()

    def resume(self) -> None:
        self.held = False

    def drop(self) -> None:
        """Forget the waiting runs."""
        self.pending.clear()
        self.held = False
        self.save()

    def stop_keeping_queue(self) -> None:
        """For quitting: stop the running run (its process saves it, as "stopped") and start no
        other; the waiting runs stay in the store, for the next session. Does not wait."""
        self.closing = True
        if self.busy and self.worker is not None:
            self.cancelled = True
            self.worker.stop()

    def quit_cancelled(self) -> None:
        """Quitting was cancelled after :meth:`stop_keeping_queue`: the queue stays, held."""
        if self.closing:
            self.closing = False
            self.held = bool(self.pending)

    def start_next(self) -> RunSpec | None:
        """Start the first waiting run and return it; None when none waits, the queue is held or
        quitting, or one is running."""
        if self.current is not None or self.busy or not self.pending or self.held or self.closing:
            return None
        spec = self.current = self.pending.pop(0)
        self.save()
        self.cancelled, self._failure = False, ""
        worker = TrainingWorker(job=RunJob(spec, str(self.store.root)), parent=self)
        worker.event.connect(self.event.emit)
        worker.failed.connect(self._on_failed_message)
        worker.finished.connect(self._on_session_ended)
        self.worker = worker
        worker.start()
        return spec

    def cancel(self) -> None:
        """Drop the waiting runs and stop the current one (its process saves it as "stopped")."""
        self.drop()
        if self.busy and self.worker is not None:
            self.cancelled = True
            self.worker.stop()

    def wait(self, msecs: int = 60000) -> bool:
        return self.worker.wait(msecs) if self.worker is not None else True

    def _on_failed_message(self, message: str) -> None:
        self._failure = message  # said when the run ends without a record

    def _on_session_ended(self) -> None:
        """The run's process has ended: a record (done), a cancelled run, or a failure (the
        last ``failed`` message: the session says why a process ended without a record)."""
        if self.worker is None:
            return
        record: RunRecord | None = self.worker.result
        name = self.current.name if self.current is not None else "run"
        self.current = None
        if self.cancelled:
            self.ended.emit(None, "", True)  # the stopped run was saved by its process
        elif record is not None:
            self.ended.emit(record, "", False)
        else:
            self.ended.emit(None, self._failure or f"{name}: the training process ended without a result", False)
