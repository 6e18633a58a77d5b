"""One page of the lesson: a title, a short text of our own, a live view of the block on the
current image and model, and the block's question with an experiment that answers it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt
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
        # a long title in presentation fonts must not widen the panel past the dock: it is cut instead
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
        # the text scrolls when a small screen or presentation fonts leave it too little height
        side_area = QScrollArea()
        side_area.setWidget(side_widget)
        side_area.setWidgetResizable(True)
        side_area.setFrameShape(QFrame.Shape.NoFrame)
        side_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        side_area.setMinimumWidth(220)
        side_area.setMaximumWidth(420)
        self.side_widget = side_area
        body = QHBoxLayout()
        body.addWidget(side_area, 2)
        body.addLayout(self.live, 5)
        ask = QHBoxLayout()
        ask.addWidget(self.question_label, 1)
        ask.addWidget(self.run_button)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 4, 6, 4)
        outer.addWidget(self.title_label)
        outer.addLayout(body, 1)
        outer.addLayout(ask)
        outer.addWidget(self.result_label)

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
