"""One cancellation rule for long work in the core.

Every long function (evaluation, specialization, counting, layer by layer, a training run's
evaluation) takes ``progress: Progress | None`` and calls ``progress(done, total)`` before its
first batch and after each one. To cancel, the callback raises :class:`Cancelled`; the core lets
it propagate (cleaning up on the way out, e.g. restoring a model's train mode) and never returns
a partial result. A caller that wants a stop flag instead wraps it with :func:`check_stop`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Cancelled(Exception):
    """Raised by a progress callback (or a worker) to end long work early."""


class Progress(Protocol):
    def __call__(self, done: int, total: int) -> object: ...


def check_stop(stopped: Callable[[], bool]) -> Progress:
    """A progress callback that raises :class:`Cancelled` once ``stopped()`` is true."""

    def progress(done: int, total: int) -> None:
        if stopped():
            raise Cancelled()

    return progress


def report(progress: Progress | None, done: int, total: int) -> None:
    """Call ``progress(done, total)`` if there is one (it may raise :class:`Cancelled`)."""
    if progress is not None:
        progress(done, total)
