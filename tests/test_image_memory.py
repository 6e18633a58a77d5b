"""Image after image, the window keeps memory flat: nothing is kept per image shown.

Every new image runs the model on a worker of the controller's queue; each finished worker
stayed a child of the queue (a QObject, its QThread's wrapper, its locks and events: some 8 KB),
so a long session grew by that much per image and never gave it back."""

import gc

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QObject

from explorer.main_window import BUNDLED_CHECKPOINT, MainWindow
from explorer.workers import Worker

pytestmark = pytest.mark.usefixtures("no_blocking_questions")


def _workers() -> int:
    """Worker objects alive in this process (Python's view: whoever keeps them)."""
    gc.collect()
    return sum(isinstance(o, Worker) for o in gc.get_objects())


def test_new_images_keep_nothing_per_image(qtbot, settings, tmp_path):
    window = MainWindow(settings=settings, checkpoint=BUNDLED_CHECKPOINT, runs_folder=tmp_path / "runs")
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.state.result is not None, timeout=20000)

    def show_new_images(count: int) -> None:
        for _ in range(count):
            shown = window.state.result
            window.new_toy_sample()
            qtbot.waitUntil(lambda shown=shown: window.state.result is not shown and not window.controller.queue.busy,
                            timeout=20000)
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)  # what Qt deletes, deleted

    show_new_images(10)
    qobjects, workers = len(window.findChildren(QObject)), _workers()
    show_new_images(40)  # a clear signal (40 against 5 at most), in seconds on a quiet machine
    assert len(window.findChildren(QObject)) <= qobjects + 5  # was one more per image (a Worker)
    assert _workers() <= workers + 2  # the one running and the one its thread just ended, at most
