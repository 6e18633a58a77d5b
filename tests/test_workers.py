"""explorer.workers: a finished worker and its QThread are freed by reference counting alone.

A reference cycle through a worker's QThread left it to the cyclic collector, which then ran the
QThread's C++ destructor in the middle of a collection (see the note in conftest.py)."""

import gc
import weakref

import pytest
import shiboken6
from PySide6.QtCore import QObject

from detr_core.cancel import Cancelled
from explorer.workers import Worker, running_workers


def _double(ctx, x):
    ctx.progress(1, 1)
    return 2 * x


def _count(ctx, n):
    yield from range(n)
    return n


def _fail(ctx, x):
    raise ValueError("no good")


def _cancelled(ctx, x):
    raise Cancelled()


def _run_to_the_end(qtbot, worker):
    with qtbot.waitSignal(worker.finished, timeout=10000):
        worker.start()
    qtbot.waitUntil(lambda: worker not in running_workers(), timeout=5000)  # its thread has ended


@pytest.mark.parametrize(("fn", "end"), [(_double, "result"), (_count, "result"), (_fail, "error"),
                                         (_cancelled, "cancelled")], ids=["result", "generator", "error", "cancelled"])
def test_a_finished_worker_and_its_thread_are_freed_by_reference_counting(qtbot, fn, end):
    ended = []
    was_enabled = gc.isenabled()
    gc.disable()  # only reference counting frees anything in this block
    try:
        worker = Worker(fn, 3)
        for name in ("result", "error", "cancelled"):
            getattr(worker, name).connect(lambda *a, name=name: ended.append(name))
        _run_to_the_end(qtbot, worker)
        assert ended == [end]
        assert not worker.is_running and worker.wait(0)  # the API as before
        with pytest.raises(RuntimeError, match="runs once"):
            worker.start()
        worker_ref, thread_ref = weakref.ref(worker), weakref.ref(worker._thread)
        del worker
        assert worker_ref() is None and thread_ref() is None
    finally:
        if was_enabled:
            gc.enable()


def test_a_finished_worker_leaves_its_parent_and_takes_its_thread(qtbot):
    """A queue or a view that runs a worker per image does not keep every finished one."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        parent = QObject()
        worker = Worker(_double, 3, parent=parent)
        got = []
        worker.result.connect(got.append)
        _run_to_the_end(qtbot, worker)
        assert got == [6]
        qtbot.waitUntil(lambda w=worker: not shiboken6.isValid(w), timeout=5000)  # Qt deleted it
        assert parent.children() == []
        assert not worker.is_running and worker.wait(0)  # a reference to it still answers
        worker.cancel()
        worker_ref, thread_ref = weakref.ref(worker), weakref.ref(worker._thread)
        del worker
        assert worker_ref() is None and thread_ref() is None  # the parent kept nothing
    finally:
        if was_enabled:
            gc.enable()


def test_qt_deletes_an_ended_thread_while_its_worker_lives_on(qtbot):
    """Whoever still refers to a finished worker (a closed window's cyclic garbage, say), its
    QThread's C++ object is deleted by Qt on the event loop, not by a garbage collection."""
    worker = Worker(_double, 3)
    _run_to_the_end(qtbot, worker)
    qtbot.waitUntil(lambda: not shiboken6.isValid(worker._thread), timeout=5000)
    assert worker.wait() and not worker.is_running  # the API as before
