"""The lesson panel: one page per block of DETR, Back / Next, live on the state's model and image."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QEvent, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QHBoxLayout,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from detr_core.data.toy import ToyShapes

from ..state import AppState
from .page import LessonPage
from .pages import PAGES, TrainingPage
from .widgets import Chart

PRESENTATION_STYLE = """
#lesson_title { font-size: %(title)dpt; font-weight: bold; }
#lesson_text { font-size: %(text)dpt; }
#lesson_info, #lesson_result { font-size: %(small)dpt; }
#lesson_question { font-size: %(small)dpt; font-weight: bold; color: %(accent)s; }
#lesson_chart { background: #202124; }
#lesson_chart_title { font-size: %(chart_title)dpt; color: #e8eaed; }
#lesson_chart_legend { font-size: %(chart_legend)dpt; color: #e8eaed; }
"""
# presentation mode: the panel's own colours and control sizes (a style sheet on the panel keeps
# the window's palette from reaching its labels, so they are set here too)
HIGH_CONTRAST = """
QWidget { color: #ffffff; font-size: %(base)dpt; }
QScrollArea, QScrollArea > QWidget > QWidget, QStackedWidget, #lesson_page { background: #000000; }
QPushButton, QComboBox, QSpinBox { background: #202020; border: 2px solid #ffd400; padding: 3px 10px; }
QComboBox QAbstractItemView { background: #000000; selection-background-color: #ffd400; selection-color: #000000; }
"""


def text_points(base: float, presentation: bool) -> dict[str, int]:
    """The lesson's text sizes in points for a window font of ``base`` points: in presentation
    mode (the window's font enlarged, 14 pt) the page's text is larger still, for the back of the
    room; every size follows the window's font."""
    if presentation:
        return {"base": round(base), "title": round(base * 1.5), "text": round(base * 1.25),
                "small": round(base * 1.07), "chart_title": round(base + 2), "chart_legend": round(base - 1)}
    return {"base": round(base), "title": round(base + 3), "text": round(base + 1), "small": round(base),
            "chart_title": round(base), "chart_legend": round(base)}


class _FitLayout(QVBoxLayout):
    """Word-wrapped labels make a layout height-for-width, and a resizable scroll area (the dock)
    then sizes its widget to the preferred height (every picture at full size) instead of to the
    dock. The panel fills the dock and scrolls only below its minimum height."""

    def hasHeightForWidth(self) -> bool:
        return False


class LessonPanel(QWidget):
    experimentFinished = Signal(str, object)  # (page title, result)
    pageShown = Signal(int)

    def __init__(self, state: AppState, toy_stream: ToyShapes | None = None,
                 training_history: Callable[[], dict[str, list[float]]] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.toy_stream = toy_stream  # the explorer's toy images: their ground truth for matching
        self._training_history = training_history  # the training panel's curves ("step", "loss", ...)
        self.sample_index = 0
        self.presentation = False
        self._sized_without_parent = True
        self.stack = QStackedWidget()
        self.pages: list[LessonPage] = [cls(self) for cls in PAGES]
        for page in self.pages:
            self.stack.addWidget(page)
        self.back_button = QPushButton("◀ Back")
        self.next_button = QPushButton("Next ▶")
        self.chooser = QComboBox()
        self.chooser.addItems([p.title.split(":")[0] for p in self.pages])
        self.chooser.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.chooser.setMinimumContentsLength(8)  # long page names do not widen the panel
        self.back_button.clicked.connect(lambda: self.show_page(self.current - 1))
        self.next_button.clicked.connect(lambda: self.show_page(self.current + 1))
        self.chooser.currentIndexChanged.connect(self.show_page)
        row = QHBoxLayout()
        row.addWidget(self.back_button)
        row.addWidget(self.chooser, 1)
        row.addWidget(self.next_button)
        outer = _FitLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.addLayout(row)
        outer.addWidget(self.stack, 1)
        for signal in (state.modelChanged, state.resultChanged, state.selectedQueryChanged, state.thresholdChanged,
                       state.encoderPointChanged, state.dataSourceChanged, state.visibleQueriesChanged):
            signal.connect(self._state_changed)
        self.set_presentation(False)
        self.show_page(0)

    def hasHeightForWidth(self) -> bool:
        # Word-wrapped labels make a layout height-for-width, and a resizable scroll area then sizes
        # its widget to the preferred height (pictures at full size) instead of to the dock: no.
        return False

    @property
    def current(self) -> int:
        return self.stack.currentIndex()

    @property
    def page(self) -> LessonPage:
        return self.pages[self.current]

    def show_page(self, index: int) -> None:
        index = max(0, min(int(index), len(self.pages) - 1))
        self.stack.setCurrentIndex(index)
        self.chooser.blockSignals(True)
        self.chooser.setCurrentIndex(index)
        self.chooser.blockSignals(False)
        self.back_button.setEnabled(index > 0)
        self.next_button.setEnabled(index < len(self.pages) - 1)
        if self.pages[index].dirty:
            self.pages[index].refresh()
        self.pageShown.emit(index)

    def _state_changed(self, *_: Any) -> None:
        for page in self.pages:
            page.dirty = True
        if self.isVisible():
            self.page.refresh()

    def page_changed(self, page: LessonPage) -> None:
        """A page's own data changed (a probe result): redraw it if it is shown."""
        page.dirty = True
        if page is self.page and self.isVisible():
            page.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self.page.dirty:
            self.page.refresh()

    def training_history(self) -> dict[str, list[float]]:
        return self._training_history() if self._training_history is not None else {}

    @property
    def training_page(self) -> TrainingPage:
        return next(p for p in self.pages if isinstance(p, TrainingPage))

    def window_points(self) -> float:
        """The point size of the window's font (the one presentation mode enlarges), which the
        lesson's text sizes follow; the panel's own style sheet sets its font, so it is read
        from the parent."""
        parent = self.parentWidget()
        font = parent.font() if parent is not None else QApplication.font()
        return font.pointSizeF() if font.pointSizeF() > 0 else QApplication.font().pointSizeF()

    def set_presentation(self, on: bool) -> None:
        self.presentation = on
        base = self.window_points()
        self._sized_without_parent = self.parentWidget() is None
        sizes = {**text_points(base, on), "accent": "#ffd400" if on else "#8a5a00"}
        self.setStyleSheet((HIGH_CONTRAST % sizes if on else "") + PRESENTATION_STYLE % sizes)
        for page in self.pages:
            page.set_presentation(on)
        for chart in self.findChildren(Chart):
            chart.set_presentation(on, sizes["base"])
        for page in self.pages:
            page.fit_side()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        # sized before it was put in its dock (the lesson builds it so): now the window's font is known
        if event.type() == QEvent.Type.ParentChange and self._sized_without_parent and self.parentWidget() is not None:
            self.set_presentation(self.presentation)

    def wait_jobs(self, msecs: int = 30000) -> bool:
        return all(page.wait(msecs) for page in self.pages)

    def shutdown(self) -> None:
        self.wait_jobs(30000)
