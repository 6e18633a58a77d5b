"""Running work off the GUI thread. Only signals cross threads: a task's result or error comes
back through its ``TaskSignals`` and is handled on the GUI thread."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class TaskSignals(QObject):
    done = Signal(object)
    failed = Signal(str)


class Task(QRunnable):
    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__()
        self.fn = fn
        self.args = args
        self.signals = TaskSignals()
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            result = self.fn(*self.args)
        except Exception as e:  # noqa: BLE001 - every failure becomes a readable message
            message = str(e) or type(e).__name__
            if not isinstance(e, (ValueError, OSError)):
                message = f"{type(e).__name__}: {message}"
                traceback.print_exc()
            self.signals.failed.emit(message)
        else:
            self.signals.done.emit(result)


class TaskRunner(QObject):
    """A serial queue of tasks on one worker thread; ``busy`` says whether anything runs."""

    def __init__(self, parent: QObject | None = None, threads: int = 1) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._live: set[Task] = set()

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> Task:
        task = Task(fn, *args)
        self._live.add(task)
        if on_done is not None:
            task.signals.done.connect(on_done)
        if on_error is not None:
            task.signals.failed.connect(on_error)
        task.signals.done.connect(lambda *_: self._live.discard(task))
        task.signals.failed.connect(lambda *_: self._live.discard(task))
        self.pool.start(task)
        return task

    @property
    def busy(self) -> bool:
        return bool(self._live)

    def wait(self, msecs: int = 30000) -> bool:
        return self.pool.waitForDone(msecs)
