"""Shared plumbing for analysis views: long work off the GUI thread with a progress bar and a
Cancel button, and export of the view as PNG and of its data as CSV or JSON.

A view subclasses :class:`AnalysisView`, puts its controls and plots in ``self.body`` (a
QVBoxLayout), runs heavy collection with :meth:`run_job`, and implements :meth:`export_data`
(rows for CSV, or any JSON-able object). A job runs on an :class:`explorer.workers.Worker`: its
function gets a :class:`~explorer.workers.WorkContext` and passes ``ctx.core_progress`` (or a
callback calling ``ctx.progress``) to the core, so Cancel raises
:class:`detr_core.cancel.Cancelled` between batches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QPixmap, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from torch import nn

from ..saving import csv_text, save_bytes, save_png
from ..stable_label import wrap_label
from ..workers import Worker, readable_error


def fill_sources(combo: QComboBox, toy: str, dataset: str | None) -> None:
    """A view's Source list: the toy data, then the open dataset when there is one (silently:
    the caller chooses the current entry)."""
    combo.blockSignals(True)
    combo.clear()
    combo.addItem(toy)
    if dataset is not None:
        combo.addItem(dataset)
    combo.blockSignals(False)


class AnalysisView(QWidget):
    """A view with a progress row (bar + Cancel), export buttons, and a body for content."""

    jobFinished = Signal(object)  # the job's result, after on_done ran
    jobFailed = Signal(str)
    jobCancelled = Signal()
    errorShown = Signal(str)

    def __init__(self, title: str, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.title = title
        self.job: Worker | None = None  # the latest job
        self._job_button: QPushButton | None = None
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.progress_label = wrap_label(QLabel(""))  # also the view's errors: they wrap
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_job)
        # one Export button with a menu: two buttons took 200 px of a 420 px dock's top row
        self.export_button = QToolButton()
        self.export_button.setText("Export")
        self.export_button.setToolTip("Save this view as a picture, or its data as CSV or JSON")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        self.export_png_action = menu.addAction("Picture (PNG)…", self._choose_png)
        self.export_data_action = menu.addAction("Data (CSV or JSON)…", self._choose_data)
        self.export_button.setMenu(menu)
        self.progress_bar.setMinimumWidth(40)  # it shares the top row with the progress text
        top = QHBoxLayout()
        top.addWidget(self.progress_bar, 1)
        top.addWidget(self.progress_label)
        top.addWidget(self.cancel_button)
        top.addStretch(0)
        top.addWidget(self.export_button)
        self._top = top
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addLayout(top)
        self.body = QVBoxLayout()
        outer.addLayout(self.body, 1)
        self._deferred: dict[str, Callable[[], None]] = {}

    def add_help(self, title: str) -> None:
        """A "?" button at the end of the top row that says what the view ``title`` shows."""
        from ..help import help_button

        self.help_button = help_button(title)
        self._top.addWidget(self.help_button)

    # --- the state's model ------------------------------------------------------------------
    # Views that follow the application state set ``self.state`` (an explorer.state.AppState).
    @property
    def model(self) -> nn.Module | None:
        """The explorer's model, read only, in eval mode (never the one being trained)."""
        loaded = self.state.model
        return loaded.model if loaded is not None else None

    @property
    def class_names(self) -> list[str]:
        return self.state.class_names

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
        return self.job is not None and self.job.is_running

    def run_job(
        self, fn: Callable[..., Any], *args: Any, on_done: Callable[[Any], None], button: QPushButton | None = None
    ) -> bool:
        """Start ``fn(ctx, *args)`` off the GUI thread; ``on_done(result)`` runs on the GUI thread.
        ``ctx`` is a :class:`~explorer.workers.WorkContext`. ``button`` (the one that started the
        job) stays disabled until the job ends, however it ends."""
        if self.busy:
            return False
        job = Worker(fn, *args, parent=self, subject=self.title)
        self.job = job
        self._job_started(button)
        job.progress.connect(self._job_progress)
        job.result.connect(lambda result: self._job_succeeded(result, on_done))
        job.error.connect(self._job_failed)
        job.cancelled.connect(self._job_cancelled)
        job.start()
        return True

    def cancel_job(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def wait_job(self, msecs: int = 60000) -> bool:
        return self.job.wait(msecs) if self.job is not None else True

    # The progress row, for run_job and for views that follow other work (the runs view).
    def _job_started(self, button: QPushButton | None = None) -> None:
        self._job_button = button
        if button is not None:
            button.setEnabled(False)
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setVisible(True)
        self.cancel_button.setVisible(True)
        self.progress_label.setText("Working…")

    def _job_progress(self, done: int, total: int, text: str = "") -> None:
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)
        self.progress_label.setText(text or f"{done} / {total}")

    def _job_succeeded(self, result: Any, on_done: Callable[[Any], None]) -> None:
        self._job_ended("Done.")
        on_done(result)
        self.jobFinished.emit(result)

    def _job_failed(self, message: str) -> None:
        self._job_ended("Failed.")
        self.show_error(message)
        self.jobFailed.emit(message)

    def _job_cancelled(self) -> None:
        self._job_ended("Cancelled.")
        self.jobCancelled.emit()

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
        """Save the view as a PNG; False (and a message naming the file and why) if it cannot."""
        self.flush_deferred()
        return self.write_file(Path(path), self.grab())

    def export_data_to(self, path: Path) -> bool:
        """Write :meth:`export_data` as CSV or JSON; False (and a message) if it cannot."""
        data = self.export_data()
        if data is None:
            self.show_error("Nothing to export yet.")
            return False
        path = Path(path)
        as_csv = path.suffix.lower() == ".csv"
        return self.write_file(path, csv_text(data if isinstance(data, list) else [data]) if as_csv
                               else json.dumps(data, indent=1, default=float))

    def write_file(self, path: Path, content: str | bytes | QPixmap) -> bool:
        """Write ``content`` (text, bytes or a picture, as PNG) to ``path`` through a temporary file
        renamed into place; on failure the old file is kept, a message names the file and why, and
        False."""
        try:
            if isinstance(content, QPixmap):
                save_png(path, content)
            else:
                save_bytes(path, content.encode("utf-8") if isinstance(content, str) else content)
        except OSError as e:
            message = readable_error(e, str(path))
            self.show_error(message if message.startswith("cannot save") else f"cannot save {message}")
            return False
        return True

    def _choose_png(self) -> None:
        name = self.title.lower().replace(" ", "_") + ".png"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {self.title}", name, "PNG (*.png)")
        if path:
            self.export_png(Path(path))  # a failure shows its own message

    def _choose_data(self) -> None:
        name = self.title.lower().replace(" ", "_") + ".csv"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {self.title} data", name, "CSV (*.csv);;JSON (*.json)")
        if path:
            self.export_data_to(Path(path))


def row_table(table: QTableWidget) -> QTableWidget:
    """``table`` set up as the views' read-only tables of rows: not editable, whole rows selected, no
    row numbers, the last column stretched. Returns it."""
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setStretchLastSection(True)
    return table
