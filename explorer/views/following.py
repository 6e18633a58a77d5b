"""What the views of one training sample share (Matching, Denoising): with a model that is not
training, the chosen sample is computed off the GUI thread, once per new model or data source and
again when the sample changes; while a run trains, what the run's probe (``PROBE``) sends every
few steps is shown instead.

    class MatchingView(FollowsTraining, AnalysisView):
        PROBE = MATCHING_PROBE
        def __init__(...): ...; self.init_following(); ...; self.follow(state)
        def compute(self) -> bool: ...             # the view's own job, on_done=self._on_static_snapshot
        def show_snapshot(self, snapshot): ...
        def _draw(self): ...                       # redraws, at most every so often (_redraw_timer)
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QTimer

REDRAW_INTERVAL = 0.1  # seconds: at most about 10 redraws per second while training runs


class FollowsTraining:
    """A mixin for an :class:`~explorer.views.base.AnalysisView` with ``state`` (the AppState),
    ``model``, ``status`` (a label), ``sample_spin`` (the sample's index), ``compute()``,
    ``show_snapshot()``, ``_draw()`` (which calls :meth:`drawing`), ``_on_inputs()`` (a new model
    or data source), ``_on_training(session)`` and ``_on_probed(name, result)``."""

    PROBE: str = ""  # the name of the training probe whose results the view shows
    NEXT_RESULT = "the next training step"  # when a new sample chosen during training is shown

    def init_following(self) -> None:
        self._pending_compute = False  # a compute asked for while one runs: run it after
        self._compute_timer = QTimer(self)  # a new model and its data source: one compute
        self._compute_timer.setSingleShot(True)
        self._compute_timer.timeout.connect(self._compute_for_new_inputs)
        self._last_draw = 0.0
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.timeout.connect(self._draw)

    def follow(self, state: Any) -> None:
        """Connect the state's model, data source, training session and probes to the view."""
        self.sample_spin.valueChanged.connect(self._on_sample_changed)
        state.modelChanged.connect(self._on_inputs)
        state.dataSourceChanged.connect(self._on_inputs)
        state.trainingChanged.connect(self._on_training)
        state.probed.connect(self._on_probed)

    @property
    def sample_index(self) -> int:
        return self.sample_spin.value()

    def set_sample_index(self, index: int) -> None:
        self.sample_spin.setValue(index)

    def redraw_soon(self) -> None:
        """Draw the new snapshot: now, or when the view is next seen (behind another tab), or at
        most every REDRAW_INTERVAL while a run sends them faster."""
        if not self.on_screen:
            self.when_visible("snapshot", self._draw)
        elif time.perf_counter() - self._last_draw >= REDRAW_INTERVAL:
            self._draw()
        elif not self._redraw_timer.isActive():
            self._redraw_timer.start(int(REDRAW_INTERVAL * 1000))

    def drawing(self) -> None:
        """Called by ``_draw`` first: the throttle's clock."""
        self._redraw_timer.stop()
        self._last_draw = time.perf_counter()

    @property
    def following(self) -> bool:
        """True while a training run is followed (snapshots come from its probes)."""
        return self.state.training_running

    def _compute_for_new_inputs(self) -> None:
        if self.model is not None and not self.following:
            self.compute()

    def _on_static_snapshot(self, snapshot: Any) -> None:
        self.show_snapshot(snapshot)
        if self._pending_compute:
            QTimer.singleShot(0, self.compute)

    def _on_sample_changed(self, index: int) -> None:
        self.state.update_probe(self.PROBE, sample_index=index)
        if self.following:
            self.status.setText(f"Sample {index} is shown after {self.NEXT_RESULT}.")
        elif self.model is not None:
            self.compute()
