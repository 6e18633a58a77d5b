"""Cyclic garbage collection on the GUI thread only, while a window is open.

Python's cyclic collector runs on whichever thread happens to allocate when a generation's
threshold is crossed: in this app often a worker thread (a checkpoint load, a training run's
reader, an analysis). What it collects there can include Python-owned Qt objects of a closed
window or a finished job (pyqtgraph's menus, table models, QThread wrappers), whose C++
destructors then run off the GUI thread, which Qt does not allow; shiboken also releases the GIL
around each of them, so other threads run Python in the middle of the collection. The tests saw
the result as a hang or a segfault in the main thread's "Garbage-collecting" while a worker was in
``torch.load``.

So while a window is open, automatic collection is off and a timer on the GUI thread collects each
generation once its count passes the threshold the interpreter would have used (the pattern of
``pyqtgraph.util.garbage_collector``). The last window to close turns automatic collection back
on, so headless work in the same process is as before.
"""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 100  # how often the GUI thread looks at the collector's counts (often: the
# youngest generation stays small even while a worker thread imports a module)

_holders: set[int] = set()  # ids of the GuiThreadCollectors running now
_lock = threading.Lock()
_was_enabled = True  # automatic collection was on before the first holder turned it off
_long_lived = 0  # objects in the oldest generation after its last collection here


class GuiThreadCollector(QObject):
    """Turns automatic collection off until :meth:`stop` (or the parent's destruction) and
    collects on its timer instead, on the thread it was made on (the GUI thread)."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        global _was_enabled
        with _lock:
            if not _holders:
                _was_enabled = gc.isenabled()
                gc.disable()
            _holders.add(id(self))
        self._key = id(self)
        self.collections = 0  # generation collections this timer ran (for tests)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.timer.start(interval_ms)
        self.destroyed.connect(lambda *_, key=self._key: _release(key))

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds, youngest first; the
        oldest, as the interpreter does, only once the objects that reached it since its last
        collection are a quarter of those that survived that one (a full collection of the
        app's some 400,000 objects takes about 0.2 s: not once a minute while training)."""
        global _long_lived
        thresholds = gc.get_threshold()
        counts = gc.get_count()
        for generation in range(3):
            if counts[generation] <= thresholds[generation]:
                break
            if generation == 2:
                oldest = len(gc.get_objects(generation=2))
                if oldest - _long_lived <= _long_lived // 4:
                    break
            gc.collect(generation)
            self.collections += 1
            if generation == 2:
                _long_lived = len(gc.get_objects(generation=2))

    def stop(self) -> None:
        """Stop collecting here; automatic collection comes back with the last one stopped."""
        self.timer.stop()
        _release(self._key)


def _release(key: int) -> None:
    with _lock:
        if key not in _holders:
            return
        _holders.discard(key)
        if not _holders and _was_enabled:
            gc.enable()


def active() -> bool:
    """Whether a window holds automatic collection off now."""
    with _lock:
        return bool(_holders)
