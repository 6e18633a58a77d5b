"""One page of the lesson: a title, a short text of our own, a live view of the block on the
current image and model, and the block's question with an experiment that answers it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..workers import Worker

if TYPE_CHECKING:
    from .panel import LessonPanel

SIDE_MIN = 200  # the text column's least width, px
SIDE_SHARE = 0.28  # of the page's width, the text column's usual width ...
SIDE_PREFERRED_MAX = 420  # ... up to this many px, wider only when its text needs the room
SIDE_MAX_SHARE = 0.46  # and never more than this share of the page


class LessonPage(QWidget):
    title = ""
    text = ""  # a few sentences, ours
    question = ""
    experiment_name = "Run the experiment"
    experiment_copies_model = True  # False for experiments that never run the model

    def __init__(self, panel: LessonPanel) -> None:
        super().__init__()
        self.setObjectName("lesson_page")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)  # the presentation background, also in exports
        self.panel = panel
        self.state = panel.state
        self.dirty = True
        self.job: Worker | None = None  # the latest experiment or computation
        self.experiment_result: Any = None
        self._redraw_after_job = False
        self.title_label = QLabel(self.title)
        self.title_label.setObjectName("lesson_title")
        # a long title in presentation fonts must not widen the panel past the dock: it wraps
        self.title_label.setWordWrap(True)
        self.title_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.text_label = QLabel(self.text)
        self.text_label.setObjectName("lesson_text")
        self.text_label.setWordWrap(True)
        self.text_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.text_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.info_label = QLabel("")  # live numbers of the view
        self.info_label.setObjectName("lesson_info")
        self.info_label.setWordWrap(True)
        self.info_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.live = QHBoxLayout()  # the live view, filled by the page
        self.question_label = QLabel("Q: " + self.question)
        self.question_label.setObjectName("lesson_question")
        self.question_label.setWordWrap(True)
        self.run_button = QPushButton(self.experiment_name)
        self.run_button.clicked.connect(self.run_experiment)
        self.result_label = QLabel("")
        self.result_label.setObjectName("lesson_result")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        side = QVBoxLayout()
        side.addWidget(self.text_label)
        side.addWidget(self.info_label)
        side.addStretch(1)
        side_widget = QWidget()
        side_widget.setLayout(side)
        # The text column is as wide as its text needs to fit the page's height (see fit_side);
        # it scrolls only when even its widest leaves the text too little height (a tiny dock).
        side_area = QScrollArea()
        side_area.setWidget(side_widget)
        side_area.setWidgetResizable(True)
        side_area.setFrameShape(QFrame.Shape.NoFrame)
        side_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        side_area.setFixedWidth(SIDE_MIN)
        self.side_widget = side_area
        side_area.installEventFilter(self)  # its height changed: fit its width again
        side_widget.installEventFilter(self)  # its texts changed: the same
        body = QHBoxLayout()
        body.addWidget(side_area)
        body.addLayout(self.live, 1)
        ask = QHBoxLayout()
        ask.addWidget(self.question_label, 1)
        ask.addWidget(self.run_button)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 4, 6, 4)
        outer.addWidget(self.title_label)
        outer.addLayout(body, 1)
        outer.addLayout(ask)
        outer.addWidget(self.result_label)

    # --- the text column's width --------------------------------------------------------------
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.Type.Resize, QEvent.Type.LayoutRequest):
            self.fit_side()
        return False

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.fit_side()

    def fit_side(self) -> None:
        """Give the text column the width its text needs to fit the column's height without
        scrolling: at least its share of the page (SIDE_SHARE), wider when the text needs it (large
        presentation fonts, a low window), never more than SIDE_MAX_SHARE of the page: the live view
        keeps the rest."""
        area = self.side_widget
        inner = area.widget()
        page_width = self.width()
        if inner is None or page_width <= 0:
            return
        height = area.height()
        low = max(SIDE_MIN, min(int(page_width * SIDE_SHARE), SIDE_PREFERRED_MAX))
        high = max(low, int(page_width * SIDE_MAX_SHARE))
        # fitting beside a scroll bar too: once shown, QScrollArea measures the text at the width
        # the bar leaves, and keeps the bar if it does not fit there
        bar = area.verticalScrollBar().sizeHint().width()
        width = low
        while width < high and inner.heightForWidth(width - bar) > height:
            width = min(high, width + 10)
        if area.width() != width or area.minimumWidth() != width:
            area.setFixedWidth(width)

    # --- what pages implement ---------------------------------------------------------------
    def draw(self) -> None:
        """Render the live view from the state."""

    def live_data(self) -> np.ndarray:
        """The numbers the live view shows now (tests compare them across images and models)."""
        return np.zeros(0)

    def experiment(self) -> tuple[Callable[..., Any], tuple, Callable[[Any], None]] | None:
        """(fn(ctx, model_copy, *args), args, on_result) or None when it cannot run (say why in
        :attr:`result_label`)."""
        return None

    def set_presentation(self, on: bool) -> None:
        """Pages with pictures scale their lines."""

    # --- the mechanism ----------------------------------------------------------------------
    def refresh(self) -> None:
        self.dirty = False
        try:
            self.draw()
        except (ValueError, RuntimeError) as e:  # a model this page cannot show: say so
            self.info_label.setText(f"This page cannot show the open model: {e}")

    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.is_running

    def start_job(self, fn: Callable[..., Any], args: tuple, on_result: Callable[[Any], None],
                  copy_model: bool = True) -> bool:
        """``fn(ctx, model, *args)`` on a worker; ``model`` is a copy of the open model when
        ``copy_model`` (experiments hook modules: the explorer's own model is never touched)."""
        loaded = self.state.model
        if loaded is None:
            return False
        if self.busy:
            self._redraw_after_job = True  # the state changed meanwhile: draw again once it ends
            return False
        model = loaded.model

        def work(ctx: Any, *a: Any) -> Any:
            m = copy.deepcopy(model) if copy_model else model
            return fn(ctx, m, *a)

        job = Worker(work, *args, parent=self, subject=self.title)
        self.job = job
        job.result.connect(on_result)
        job.error.connect(lambda message: self.result_label.setText(f"The experiment failed: {message}"))
        job.finished.connect(self._job_finished)
        self.run_button.setEnabled(False)
        job.start()
        return True

    def _job_finished(self) -> None:
        self.run_button.setEnabled(True)
        if self._redraw_after_job:
            self._redraw_after_job = False
            self.panel.page_changed(self)

    def run_experiment(self) -> bool:
        """Start the page's experiment; False when it cannot run now."""
        if self.state.model is None or self.state.image is None:
            self.result_label.setText("Open a model and an image first.")
            return False
        spec = self.experiment()
        if spec is None:
            return False
        fn, args, on_result = spec

        def done(result: Any) -> None:
            self.experiment_result = result
            on_result(result)
            self.panel.experimentFinished.emit(self.title, result)

        self.result_label.setText("Running…")
        return self.start_job(fn, args, done, copy_model=self.experiment_copies_model)

    def wait(self, msecs: int = 30000) -> bool:
        return self.job.wait(msecs) if self.job is not None else True
