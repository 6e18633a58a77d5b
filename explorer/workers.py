"""The one way the window runs long work off the GUI thread.

    worker = Worker(fn, *args)            # fn(ctx, *args); ctx is a WorkContext
    worker.result.connect(on_result)      # on the GUI thread
    worker.start()

``fn`` runs on its own thread and may report progress and check for cancellation through its
:class:`WorkContext`; core functions get ``ctx.core_progress`` as their ``progress`` callback, so
Cancel raises :class:`detr_core.cancel.Cancelled` between their batches (the core's one rule).
If ``fn`` is a generator function, every value it yields is emitted as ``yielded`` (a training
session's reader is one) and cancelling closes the generator between two values.

Signals, all delivered on the GUI thread, in this order: ``started``; any number of
``progress`` and ``yielded``; then exactly one of ``result`` (the return value), ``error`` (a
readable message) or ``cancelled``; and last ``finished``, however it ended. Only signals cross
threads. :class:`WorkQueue` runs workers one after another (model loading and inference).
"""

from __future__ import annotations

import inspect
import threading
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QThread, Signal

from detr_core.cancel import Cancelled

_running: set[Worker] = set()  # started and not yet finished; keeps each alive while it runs
_running_lock = threading.Lock()


def running_workers() -> list[Worker]:
    """Workers started and not yet finished (the tests check none is left behind)."""
    with _running_lock:
        return list(_running)


def readable_error(e: BaseException, subject: str = "") -> str:
    """A one-line message for a failure that names ``subject`` (the file or the job, when given
    and not already named) and the problem in words: the text alone for errors about the input
    (ValueError, OSError: ``[Errno 13] Permission denied: 'x'`` becomes ``x: permission denied``),
    "not enough memory" for a MemoryError, and for anything else (a bug) "an unexpected error"
    with its type and text, its traceback on stderr for a bug report."""
    if isinstance(e, OSError) and e.strerror and str(e).startswith("[Errno"):
        words = e.strerror[0].lower() + e.strerror[1:]
        if e.filename is not None:
            words = f"{e.filename}: {words}"
    elif isinstance(e, (ValueError, OSError)):
        words = str(e) or type(e).__name__
    elif isinstance(e, MemoryError):
        words = "not enough memory for this"
    else:
        traceback.print_exception(e)
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        words = f"an unexpected error ({type(e).__name__}{': ' + text if text else ''})"
    words = words.strip().splitlines()[0] if words.strip() else type(e).__name__  # one line
    if subject and subject not in words:
        words = f"{subject}: {words}"
    return words


class WorkContext:
    """Given to a worker's function: report progress, check for cancellation. It refers to its
    worker weakly (the worker holds it: no reference cycle for the cyclic collector to break)."""

    def __init__(self, worker: Worker) -> None:
        self._worker = weakref.ref(worker)
        self._cancel = threading.Event()

    def progress(self, done: int, total: int, text: str = "") -> None:
        """Report progress; raises Cancelled once the work was cancelled."""
        self.check()
        worker = self._worker()  # alive while it runs (``_running`` holds it)
        if worker is not None:
            worker.progress.emit(int(done), int(total), text)

    def core_progress(self, done: int, total: int) -> None:
        """The ``progress`` callback for ``detr_core`` functions."""
        self.progress(done, total)

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()


class _Thread(QThread):
    def __init__(self, body: Callable[[], None]) -> None:
        super().__init__()
        self._body = body

    def run(self) -> None:
        self._body()


class Worker(QObject):
    """``fn(ctx, *args)`` on its own thread (``fn(*args)`` with ``context=False``)."""

    started = Signal()
    progress = Signal(int, int, str)  # done, total, text
    yielded = Signal(object)
    result = Signal(object)
    error = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, fn: Callable[..., Any], *args: Any, context: bool = True,
                 parent: QObject | None = None, subject: str = "") -> None:
        super().__init__(parent)
        self.fn = fn
        self.subject = subject  # what the work is on (a file name, a view): named in ``error``
        self.args = args
        self.context = context
        self.ctx = WorkContext(self)
        self._thread: _Thread | None = None
        self._done = threading.Event()
        self._ended = False  # its thread has ended (and is deleted by Qt soon after)

    # --- control, from the GUI thread ------------------------------------------------------
    def start(self) -> Worker:
        if self._thread is not None:
            raise RuntimeError("a worker runs once")
        with _running_lock:
            _running.add(self)
        self._thread = _Thread(self._run)
        self._thread.finished.connect(self._forget)
        # Qt deletes the ended QThread on this thread's event loop, whoever still refers to its
        # (Python-owned) wrapper: its C++ destructor never runs inside a garbage collection
        self._thread.finished.connect(self._thread.deleteLater)
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.ctx.cancel()

    @property
    def is_running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the function has returned (True) or ``msecs`` passed (False)."""
        if self._thread is None or self._ended:  # not started, or its thread has ended
            return True
        return self._thread.wait(msecs)

    # --- on the worker's thread ------------------------------------------------------------
    def _run(self) -> None:
        self.started.emit()
        try:
            value = self.fn(self.ctx, *self.args) if self.context else self.fn(*self.args)
            if inspect.isgenerator(value):
                value = self._drain(value)
            self.ctx.check()
        except Cancelled:
            self.cancelled.emit()
        except Exception as e:  # noqa: BLE001 - every failure becomes a readable message
            self.error.emit(readable_error(e, self.subject))
        else:
            self.result.emit(value)
        finally:
            self._done.set()
            self.finished.emit()

    def _drain(self, generator: Any) -> Any:
        try:
            while True:
                self.ctx.check()
                self.yielded.emit(next(generator))
        except StopIteration as stop:
            return stop.value
        finally:
            generator.close()

    def _forget(self) -> None:
        """Its thread has ended: drop the work and its arguments, so a finished worker keeps no
        image or model alive. Slots are not disconnected here (PySide6 can crash disconnecting a
        signal while events are being delivered); :meth:`WorkQueue.submit` connects its
        callbacks through a holder it empties instead.

        A worker with a parent (a queue's, a view's job) is then deleted by Qt (``deleteLater``:
        every signal it emitted has been delivered, as they were posted before its thread's
        ``finished``). Its parent kept it otherwise: one worker per image shown, some 8 KB each,
        never given back. A Python reference to it (a view's ``job``) still answers
        :attr:`is_running`, :meth:`wait` and :meth:`cancel`.

        The thread's body (this worker's ``_run``) is dropped too, once the thread has really
        ended: that breaks the cycle worker -> thread -> ``_run`` -> worker, so a finished worker
        and its thread's wrapper are freed by reference counting when the worker goes (with its
        parent, or its last reference). The QThread itself is deleted by Qt (``deleteLater`` on
        ``finished``, connected after this slot): the cyclic collector would otherwise run its C++
        destructor in the middle of a collection (a worker still referred to from a closed
        window's cyclic garbage), while other threads may run Python."""
        with _running_lock:
            _running.discard(self)
        self.fn, self.args = None, ()
        self._ended = True
        if self._thread is not None:
            self._thread.wait()  # finished is emitted as run() returns: the thread ends at once
            self._thread._body = None
        if shiboken6.isValid(self) and self.parent() is not None:  # (its parent may have gone first)
            self.deleteLater()


class WorkQueue(QObject):
    """Runs workers one at a time, in the order they were submitted."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._waiting: deque[Worker] = deque()
        self._current: Worker | None = None

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_result: Callable[[Any], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        context: bool = False,
        subject: str = "",
    ) -> Worker:
        worker = Worker(fn, *args, context=context, parent=self, subject=subject)
        # The callbacks are reached through a holder emptied when the worker finishes: what they
        # capture (an image, a model) is not kept alive by the finished worker's connections.
        callbacks = {"result": on_result, "error": on_error}
        worker.result.connect(lambda value: (f := callbacks.get("result")) and f(value))
        worker.error.connect(lambda message: (f := callbacks.get("error")) and f(message))
        worker.finished.connect(callbacks.clear)
        worker.finished.connect(self._next)
        self._waiting.append(worker)
        if self._current is None:
            self._next()
        return worker

    def _next(self) -> None:
        self._current = self._waiting.popleft().start() if self._waiting else None

    @property
    def busy(self) -> bool:
        return self._current is not None

    def cancel_all(self) -> None:
        """Drop the waiting work and cancel the running one."""
        self._waiting.clear()
        if self._current is not None:
            self._current.cancel()

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the running worker has returned (True) or ``msecs`` passed."""
        return self._current.wait(msecs) if self._current is not None else True
