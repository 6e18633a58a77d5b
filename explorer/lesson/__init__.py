"""Lesson mode: DETR's pipeline, block by block, live on the open model (the Lesson workspace,
View ▸ Lesson, Ctrl+L).

:class:`Lesson` adds it to the main window: the Lesson dock (the Lesson workspace's one panel)
and its menu entries (View ▸ Lesson, View ▸ Presentation Mode, View ▸ Full Screen (F11),
File ▸ Export Lesson…). Presentation mode persists in the window's QSettings.

Like the window's analysis views, the panel is built when it is first needed (its workspace
shown, a menu entry, a training run starting), never before the first picture: its pages
import the analysis core (torchvision, scipy), which the first picture does without."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor, QFont, QKeySequence, QPalette
from PySide6.QtWidgets import QApplication, QFileDialog, QFrame, QLabel, QScrollArea, QToolBar

from ..settings import read_setting

if TYPE_CHECKING:
    from .panel import LessonPanel

PRESENTATION_KEY = "presentationMode"
PRESENTATION_POINT_SIZE = 14  # the whole window's text in presentation mode (the lesson's is larger)


def high_contrast_palette() -> QPalette:
    """White on black, yellow selection: readable on a projector in a lit room."""
    p = QPalette()
    black, white, yellow = QColor("#000000"), QColor("#ffffff"), QColor("#ffd400")
    for role, colour in ((QPalette.ColorRole.Window, black), (QPalette.ColorRole.WindowText, white),
                         (QPalette.ColorRole.Base, QColor("#101010")), (QPalette.ColorRole.AlternateBase, QColor("#202020")),
                         (QPalette.ColorRole.Text, white), (QPalette.ColorRole.Button, QColor("#202020")),
                         (QPalette.ColorRole.ButtonText, white), (QPalette.ColorRole.Highlight, yellow),
                         (QPalette.ColorRole.HighlightedText, black), (QPalette.ColorRole.ToolTipBase, black),
                         (QPalette.ColorRole.ToolTipText, white), (QPalette.ColorRole.PlaceholderText, QColor("#c0c0c0")),
                         (QPalette.ColorRole.Link, yellow)):
        p.setColor(role, colour)
    return p


class Lesson:
    """The lesson's window parts: its dock (the panel inside once built) and its actions."""

    def __init__(self, window: Any) -> None:
        self.window = window
        self._panel: LessonPanel | None = None
        self.presentation = False
        placeholder = QLabel("Loading…")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.dock = window.add_view("Lesson", placeholder)  # the Lesson workspace shows it
        self.dock.visibilityChanged.connect(lambda seen: seen and self._build_when_ready())
        # a run starting: the training page adds its probe to it
        window.state.trainingChanged.connect(self._on_training)
        self.act_lesson = QAction("&Lesson", window)
        self.act_lesson.setShortcut(QKeySequence("Ctrl+L"))
        self.act_lesson.setStatusTip("DETR block by block, live on the open model (the Lesson workspace)")
        self.act_lesson.triggered.connect(self.show)
        self.act_presentation = QAction("&Presentation Mode", window)
        self.act_presentation.setCheckable(True)
        self.act_presentation.setShortcut(QKeySequence("Ctrl+Shift+P"))
        self.act_presentation.setStatusTip("Large fonts and lines, high contrast, no toolbar: for a projector")
        self.act_presentation.toggled.connect(self.set_presentation)
        self.act_full_screen = QAction("&Full Screen", window)
        self.act_full_screen.setCheckable(True)
        self.act_full_screen.setShortcut(QKeySequence("F11"))
        self.act_full_screen.toggled.connect(self.set_full_screen)
        self.act_export = QAction("Export &Lesson…", window)
        self.act_export.setStatusTip("Every lesson page as a PNG, and one HTML file to hand out")
        self.act_export.triggered.connect(self.choose_export)

    def add_to_window(self) -> None:
        """Its menu entries (once the window's menus exist); presentation mode
        as it was left."""
        window = self.window
        view = window.view_menu
        first = view.actions()[0] if view.actions() else None
        view.insertAction(first, self.act_lesson)
        view.insertAction(first, self.act_presentation)
        view.insertAction(first, self.act_full_screen)
        view.insertSeparator(first)
        for action in window.menuBar().actions():
            if action.menu() is not None and action.text().replace("&", "") == "File":
                menu = action.menu()
                menu.insertAction(window.act_quit, self.act_export)
                menu.insertSeparator(window.act_quit)
        on = read_setting(window.settings, PRESENTATION_KEY, False)
        self.act_presentation.setChecked(on)

    # --- the panel, built on demand -----------------------------------------------------------
    @property
    def built(self) -> bool:
        return self._panel is not None

    @property
    def panel(self) -> LessonPanel:
        """The lesson panel (built on first use)."""
        if self._panel is None:
            from .panel import LessonPanel

            w = self.window
            panel = LessonPanel(w.state, w.controller.toy, self._training_history)
            panel.experimentFinished.connect(lambda title, _: w.notify(f"Lesson: {title.split(':')[0]} done."))
            panel.set_presentation(self.presentation)
            area = QScrollArea()  # a dock shorter than the pages' minimum scrolls
            area.setWidget(panel)
            area.setWidgetResizable(True)
            area.setFrameShape(QFrame.Shape.NoFrame)
            old = self.dock.widget()
            self.dock.setWidget(area)
            old.deleteLater()
            self._panel = panel
        return self._panel

    def _build_when_ready(self) -> None:
        # the tab brought up (also a tab remembered from the last session): after the first picture
        if self.window.state.result is not None:
            self.panel  # noqa: B018 - builds it

    def _training_history(self) -> dict[str, list[float]]:
        training = self.window.__dict__.get("training")  # only once the window has built it
        return dict(training.plots.data) if training is not None else {}

    def _on_training(self, session: Any) -> None:
        if self._panel is None and session is not None:
            self.panel.training_page.follow(session)  # built now: it missed this signal

    def shutdown(self) -> None:
        if self._panel is not None:
            self._panel.shutdown()

    # --- actions ------------------------------------------------------------------------------
    def show(self) -> None:
        """The Lesson workspace: the lesson with the whole window for its pictures."""
        self.panel  # noqa: B018 - builds it
        self.window.workspaces.show_dock("lesson")

    def set_presentation(self, on: bool) -> None:
        w = self.window
        self.presentation = bool(on)
        if on:
            font = QFont(QApplication.font())
            font.setPointSize(PRESENTATION_POINT_SIZE)
            w.setPalette(high_contrast_palette())
            w.setFont(font)
        else:
            w.setPalette(QApplication.palette())
            w.setFont(QApplication.font())
        if self._panel is not None:
            self._panel.set_presentation(on)  # after the window's palette and font: its style sheet builds on them
        for toolbar in w.findChildren(QToolBar):  # the workspace bar stays: the teacher switches with it
            if toolbar.objectName() != "workspace_toolbar":
                toolbar.setVisible(not on)
        if on and w.state.result is not None:
            self.show()
        w.settings.setValue(PRESENTATION_KEY, bool(on))
        w.settings.sync()

    def set_full_screen(self, on: bool) -> None:
        w = self.window
        if on:
            w.setWindowState(w.windowState() | Qt.WindowState.WindowFullScreen)
        else:
            w.setWindowState(w.windowState() & ~Qt.WindowState.WindowFullScreen)

    def choose_export(self) -> None:
        start = read_setting(self.window.settings, "lastImageDir", str(Path.home()))
        folder = QFileDialog.getExistingDirectory(self.window, "Export the lesson to folder", start)
        if folder:
            self.export(Path(folder))

    def export(self, folder: Path) -> list[Path]:
        from .export import export_lesson

        self.show()
        try:
            written = export_lesson(self.panel, folder)
        except OSError as e:
            self.window.show_error("Export Lesson", str(e))
            return []
        self.window.notify(f"Exported the lesson to {folder}: {len(written) - 1} pages and lesson.html.")
        return written


__all__ = ["Lesson"]
