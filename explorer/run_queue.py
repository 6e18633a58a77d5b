"""The Runs queue: runs waiting their turn and the one training, one at a time, each in its own
process (a :class:`~detr_core.train.runs.RunJob`, which trains through the core's training
session). Not a widget: the Runs tab is a view of it.

    queue = RunQueue(store_root, parent=view)
    queue.event.connect(...)           # the running run's trainer events (GUI thread)
    queue.ended.connect(...)           # (record or None, failure message, cancelled) per run
    queue.add(specs)
    spec = queue.start_next()          # None when nothing is waiting or a run is under way
    queue.cancel()                     # drop the waiting runs, stop the running one (it is saved)
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QObject, Signal

from detr_core.train.ablations import RunSpec
from detr_core.train.run_store import RunRecord
from detr_core.train.runs import RunJob

from .training_worker import TrainingWorker


class RunQueue(QObject):
    """Queued RunSpecs and the training process of the current one (GUI thread only)."""

    event = Signal(object)  # a trainer Event of the current run
    ended = Signal(object, str, bool)  # (RunRecord or None, why there is none, cancelled)

    def __init__(self, store_root: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store_root = store_root
        self.pending: list[RunSpec] = []
        self.current: RunSpec | None = None
        self.worker: TrainingWorker | None = None  # the current (or last) run's training process
        self.cancelled = False
        self._failure = ""  # the current run's last "failed" message

    @property
    def busy(self) -> bool:
        return self.worker is not None and self.worker.is_running

    def add(self, specs: Sequence[RunSpec]) -> None:
        self.pending.extend(specs)

    def start_next(self) -> RunSpec | None:
        """Start the first waiting run and return it; None when none waits or one is running."""
        if self.current is not None or self.busy or not self.pending:
            return None
        spec = self.current = self.pending.pop(0)
        self.cancelled, self._failure = False, ""
        worker = TrainingWorker(job=RunJob(spec, self.store_root), parent=self)
        worker.event.connect(self.event.emit)
        worker.failed.connect(self._on_failed_message)
        worker.finished.connect(self._on_session_ended)
        self.worker = worker
        worker.start()
        return spec

    def cancel(self) -> None:
        """Drop the waiting runs and stop the current one (its process saves it as "stopped")."""
        self.pending.clear()
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
