"""Shared plumbing for analysis views: long work off the GUI thread with a progress bar and a
Cancel button, and export of the view as PNG and of its data as CSV or JSON.

A view subclasses :class:`AnalysisView`, puts its controls and plots in ``self.body`` (a
QVBoxLayout), runs heavy collection with :meth:`run_job`, and implements :meth:`export_data`
(rows for CSV, or any JSON-able object).
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class Cancelled(Exception):
    """Raised inside a job when the user pressed Cancel."""


class JobContext:
    """Given to a job function: report progress, check for cancellation."""

    def __init__(self, signals: _JobSignals) -> None:
        self._signals = signals
        self._cancel = threading.Event()

    def progress(self, done: int, total: int, text: str = "") -> None:
        """Report progress; raises Cancelled if the user cancelled."""
        if self._cancel.is_set():
            raise Cancelled()
        self._signals.progress.emit(int(done), int(total), text)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()


class _JobSignals(QObject):
    progress = Signal(int, int, str)
    done = Signal(object)
    failed = Signal(str)
    cancelled = Signal()


class Job(QThread):
    """Runs ``fn(ctx, *args)`` on its own thread; only signals come back."""

    def __init__(self, fn: Callable[..., Any], args: tuple, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.signals = _JobSignals()
        self.ctx = JobContext(self.signals)
        self.fn = fn
        self.args = args

    def run(self) -> None:
        try:
            result = self.fn(self.ctx, *self.args)
        except Cancelled:
            self.signals.cancelled.emit()
        except Exception as e:  # noqa: BLE001 - shown as a message, never fatal
            self.signals.failed.emit(f"{type(e).__name__}: {e}" if not isinstance(e, ValueError) else str(e))
        else:
            if self.ctx.cancelled:
                self.signals.cancelled.emit()
            else:
                self.signals.done.emit(result)


class AnalysisView(QWidget):
    """A view with a progress row (bar + Cancel), export buttons, and a body for content."""

    jobFinished = Signal(object)  # the job's result, after on_done ran
    jobFailed = Signal(str)
    jobCancelled = Signal()
    errorShown = Signal(str)

    def __init__(self, title: str, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.title = title
        self.job: Job | None = None
        self._job_button: QPushButton | None = None
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.progress_label = QLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_job)
        self.export_png_button = QPushButton("Export PNG…")
        self.export_data_button = QPushButton("Export data…")
        self.export_png_button.clicked.connect(self._choose_png)
        self.export_data_button.clicked.connect(self._choose_data)
        top = QHBoxLayout()
        top.addWidget(self.progress_bar, 1)
        top.addWidget(self.progress_label)
        top.addWidget(self.cancel_button)
        top.addStretch(0)
        top.addWidget(self.export_png_button)
        top.addWidget(self.export_data_button)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addLayout(top)
        self.body = QVBoxLayout()
        outer.addLayout(self.body, 1)
        self._deferred: dict[str, Callable[[], None]] = {}

    # --- drawing only what is seen ---------------------------------------------------------
    def when_visible(self, key: str, draw: Callable[[], None]) -> None:
        """Run ``draw`` now if the view is on screen, else at :meth:`flush_deferred` (only the
        latest ``draw`` per ``key``), which runs when the view is shown and, in the window, when
        its dock's tab comes to the front. A view in a tab behind another then costs nothing
        when the selected query changes, which keeps switching queries fast."""
        if self.on_screen:
            self._deferred.pop(key, None)
            draw()
        else:
            self._deferred[key] = draw

    @property
    def on_screen(self) -> bool:
        """Shown and not hidden behind another tab (a tabified dock stays "visible" in Qt)."""
        return self.isVisible() and not self.visibleRegion().isEmpty()

    def flush_deferred(self) -> None:
        while self._deferred:
            self._deferred.pop(next(iter(self._deferred)))()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        self.flush_deferred()

    # --- jobs ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.isRunning()

    def run_job(
        self, fn: Callable[..., Any], *args: Any, on_done: Callable[[Any], None], button: QPushButton | None = None
    ) -> bool:
        """Start ``fn(ctx, *args)`` off the GUI thread; ``on_done(result)`` runs on the GUI thread.
        ``button`` (the one that started the job) stays disabled until the job ends, however it ends."""
        if self.busy:
            return False
        job = Job(fn, args, self)
        self.job = job
        self._job_button = button
        if button is not None:
            button.setEnabled(False)
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setVisible(True)
        self.cancel_button.setVisible(True)
        self.progress_label.setText("Working…")

        def progress(done: int, total: int, text: str) -> None:
            self.progress_bar.setRange(0, max(total, 1))
            self.progress_bar.setValue(done)
            self.progress_label.setText(text or f"{done} / {total}")

        def finished_ok(result: Any) -> None:
            self._job_ended("Done.")
            on_done(result)
            self.jobFinished.emit(result)

        def failed(message: str) -> None:
            self._job_ended("Failed.")
            self.show_error(message)
            self.jobFailed.emit(message)

        def cancelled() -> None:
            self._job_ended("Cancelled.")
            self.jobCancelled.emit()

        job.signals.progress.connect(progress)
        job.signals.done.connect(finished_ok)
        job.signals.failed.connect(failed)
        job.signals.cancelled.connect(cancelled)
        job.start()
        return True

    def cancel_job(self) -> None:
        if self.job is not None:
            self.job.ctx.cancel()

    def wait_job(self, msecs: int = 60000) -> bool:
        return self.job.wait(msecs) if self.job is not None else True

    def _job_ended(self, text: str) -> None:
        if self._job_button is not None:
            self._job_button.setEnabled(True)
            self._job_button = None
        self.progress_bar.setVisible(False)
        self.cancel_button.setVisible(False)
        self.progress_label.setText(text)

    def show_error(self, message: str) -> None:
        self.progress_label.setText(message)
        self.errorShown.emit(message)

    # --- export ----------------------------------------------------------------------------
    def export_data(self) -> list[dict[str, Any]] | dict[str, Any] | None:
        """The view's data: a list of flat dicts (written as CSV or JSON) or a dict (JSON)."""
        return None

    def export_png(self, path: Path) -> bool:
        self.flush_deferred()
        return self.grab().save(str(path), "PNG")

    def export_data_to(self, path: Path) -> bool:
        data = self.export_data()
        if data is None:
            self.show_error("Nothing to export yet.")
            return False
        path = Path(path)
        if path.suffix.lower() == ".csv":
            if not isinstance(data, list):
                data = [data]
            fields: list[str] = []
            for row in data:
                fields += [k for k in row if k not in fields]
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(data)
        else:
            path.write_text(json.dumps(data, indent=1, default=float))
        return True

    def _choose_png(self) -> None:
        name = self.title.lower().replace(" ", "_") + ".png"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {self.title}", name, "PNG (*.png)")
        if path and not self.export_png(Path(path)):
            self.show_error(f"Could not write {path}")

    def _choose_data(self) -> None:
        name = self.title.lower().replace(" ", "_") + ".csv"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {self.title} data", name, "CSV (*.csv);;JSON (*.json)")
        if path:
            self.export_data_to(Path(path))
