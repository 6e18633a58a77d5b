"""While a window is open, cyclic garbage is collected on the GUI thread only (explorer.gc_policy):
a worker thread's allocations never run a collection (which could destroy Qt objects off the GUI
thread); closing the last window gives automatic collection back."""

import gc
import threading

import pytest

from explorer.gc_policy import GuiThreadCollector, active
from explorer.workers import Worker


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def collections():
    """The thread of every collection that starts while the test runs."""
    seen: list[int] = []

    def callback(phase, info) -> None:
        if phase == "start":
            seen.append(threading.get_ident())

    gc.callbacks.append(callback)
    yield seen
    gc.callbacks.remove(callback)


def test_a_worker_threads_garbage_is_collected_on_the_gui_thread(qtbot, collections):
    assert gc.isenabled() and not active()
    collector = GuiThreadCollector(interval_ms=50)
    try:
        assert not gc.isenabled() and active()
        made = []

        def garbage() -> int:
            made.append(threading.get_ident())
            for _ in range(50_000):  # far past every generation's threshold
                _Cycle()
            return len(made)

        worker = Worker(garbage, context=False)
        with qtbot.waitSignal(worker.result, timeout=20000):
            worker.start()
        worker.wait()
        assert made and made[0] != threading.get_ident()
        assert made[0] not in collections  # no collection ran on the worker's thread
        qtbot.waitUntil(lambda: collector.collections > 0, timeout=5000)
        assert set(collections) == {threading.get_ident()}  # the GUI thread collected it
    finally:
        collector.stop()
    assert gc.isenabled() and not active()


def test_automatic_collection_comes_back_with_the_last_window(qtbot, settings, tmp_path):
    from explorer.main_window import MainWindow

    first = MainWindow(settings=settings, checkpoint=None, runs_folder=tmp_path / "runs")
    second = MainWindow(settings=settings, checkpoint=None, runs_folder=tmp_path / "runs")
    for w in (first, second):
        qtbot.addWidget(w)
    assert not gc.isenabled()
    first.close()
    assert not gc.isenabled()  # one window is still open
    second.close()
    assert gc.isenabled()
    for w in (first, second):
        w.controller.wait(10000)
