"""The window stays responsive while the model runs (issue 12, real photos at real sizes): a busy
indicator shows, the previous result stays on screen until the newest one arrives, and a new
request replaces one that has not started yet. The model is held at real points instead of being
made slow: a job ahead in the controller's queue (as a model being loaded), or the inference's
own thread, stopped just before the forward pass."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import Qt

from explorer.main_window import BUNDLED_CHECKPOINT, MainWindow

pytestmark = pytest.mark.usefixtures("no_blocking_questions")


@pytest.fixture
def window(qtbot, settings, tmp_path):
    w = MainWindow(settings=settings, checkpoint=BUNDLED_CHECKPOINT, runs_folder=tmp_path / "runs")
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: w.state.result is not None and not w.controller.queue.busy, timeout=20000)
    w.queries.set_threshold(0.0)  # every query's box drawn
    yield w
    w.controller.wait(10000)


def _images() -> list[np.ndarray]:
    """Three photos told apart by their size (a result records the size it was computed on)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (s, s + 10, 3), dtype=np.uint8) for s in (120, 140, 160)]


def _boxes_on_screen(window) -> int:
    return sum(1 for r in window.canvas.rects if r.isVisible())


def test_a_waiting_request_is_replaced_and_the_previous_result_stays(window, qtbot):
    c, state = window.controller, window.state
    before, shown_before = state.result, _boxes_on_screen(window)
    assert shown_before > 0
    ran: list[int] = []
    c.inference_started.connect(ran.append, Qt.ConnectionType.DirectConnection)
    release = threading.Event()
    c.queue.submit(lambda: release.wait(20))  # work ahead of the model (as a checkpoint loading)
    try:
        for i, image in enumerate(_images()):
            state.set_image(image, f"photo {i}")
        assert c.inference_superseded == 2  # the first and second requests never run
        # (i) the busy indicator, (ii) the previous result still on screen
        assert not window.busy.isHidden() and window.activity.text() == "Running the model…"
        assert state.result is before and _boxes_on_screen(window) == shown_before
    finally:
        release.set()
    qtbot.waitUntil(lambda: state.result is not before, timeout=20000)
    # (iii) only the newest request ran, and its result is the one shown
    assert ran == [c._request] and state.result.image_size == (160, 170)
    qtbot.waitUntil(lambda: window.busy.isHidden(), timeout=5000)
    assert window.activity.text() == "Ready"


def test_the_running_request_finishes_but_only_the_newest_result_is_shown(window, qtbot):
    c, state = window.controller, window.state
    before = state.result
    first, second, third = _images()
    entered, release = threading.Event(), threading.Event()
    ran: list[int] = []

    def hold_the_first(number: int) -> None:  # on the inference's thread, before the forward pass
        ran.append(number)
        if len(ran) == 1:
            entered.set()
            release.wait(20)

    c.inference_started.connect(hold_the_first, Qt.ConnectionType.DirectConnection)
    shown: list = []
    state.resultChanged.connect(shown.append)
    try:
        state.set_image(first, "first")
        assert entered.wait(10)  # the model runs on the first photo
        running = c._request
        state.set_image(second, "second")  # queued behind the running one...
        state.set_image(third, "third")  # ...and replaced before it starts
        qtbot.wait(50)
        assert not window.busy.isHidden() and state.result is before
    finally:
        release.set()
    qtbot.waitUntil(lambda: state.result is not before, timeout=20000)
    c.wait(10000)
    qtbot.wait(50)
    assert ran == [running, c._request]  # the first finished; the second never ran
    assert [r.image_size for r in shown] == [(160, 170)]  # the first's result was not shown
    assert window.busy.isHidden()
