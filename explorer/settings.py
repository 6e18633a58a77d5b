"""Reading the window's QSettings, and the recent-files list that windows share.

Every value read from the settings goes through :func:`read_setting`: it is converted to the type
of its default and checked, and a value that cannot be used (a hand-edited or damaged settings
file: ``threshold=abc``, ``opacity=1e3``, ``threshold=nan``) falls back to the default with one
line in the log naming the key and the value. The app always starts.

:class:`RecentFiles` keeps the list under ``recentFiles``. Two windows (or two instances of the
app) on one settings file each keep their own cache of it, so writing the cached list back would
drop what the other window added: each window re-reads the stored list and merges its own files
into it (its own newest first) whenever it adds one, and when it closes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import QSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_RECENT = 10
RECENT_KEY = "recentFiles"

_EXPECTED = {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "a list of text"}


def read_setting(settings: QSettings, key: str, default: T, *, kind: type | None = None,
                 valid: Callable[[Any], bool] | None = None, expect: str = "") -> T:
    """The value stored under ``key`` as a ``kind`` (by default the type of ``default``: bool,
    int, float, str or list of str; or a Qt type such as QRect), if ``valid(value)`` accepts it;
    else ``default``, and a line in the log saying what was wrong (``expect`` words what is
    wanted). A missing key gives ``default`` silently."""
    raw = settings.value(key) if settings.contains(key) else None
    if raw is None:  # missing (or an empty value Qt writes as @Invalid())
        return default
    kind = kind or type(default)
    try:
        value = _convert(raw, kind)
        ok = valid is None or bool(valid(value))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        wanted = expect or _EXPECTED.get(kind, f"a {kind.__name__}")
        log.warning("Settings: %s=%s in %s is not %s; using %r instead", key, _shown(raw), settings.fileName(),
                    wanted, default)
        return default
    return value


def _convert(raw: Any, kind: type) -> Any:
    """``raw`` as a ``kind``; TypeError or ValueError if it is not one. (The INI format reads
    every number and bool back as text.)"""
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = raw.strip().lower() if isinstance(raw, str) else None
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValueError(raw)
    if kind in (int, float):
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise TypeError(raw)
        number = float(raw)
        if not math.isfinite(number):
            raise ValueError(raw)
        if kind is int:
            if not number.is_integer():
                raise ValueError(raw)
            return int(number)
        return number
    if kind is list:
        if isinstance(raw, str):  # a list of one is read back as its only item
            return [raw]
        if isinstance(raw, (list, tuple)) and all(isinstance(v, str) for v in raw):
            return list(raw)
        raise TypeError(raw)
    if isinstance(raw, kind):
        return raw
    raise TypeError(raw)


def _shown(raw: Any) -> str:
    text = raw if isinstance(raw, str) else repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


class RecentFiles:
    """The recent files, newest first, shared through ``settings`` with other windows."""

    def __init__(self, settings: QSettings, limit: int = MAX_RECENT) -> None:
        self.settings = settings
        self.limit = limit
        self._own: list[str] = []  # the files this window opened, newest first

    def entries(self) -> list[str]:
        """The stored list (as last read: :meth:`add` and :meth:`store` read it again)."""
        return read_setting(self.settings, RECENT_KEY, [])[: self.limit]

    def add(self, path: str | Path) -> list[str]:
        """``path`` first in this window's list, then :meth:`store`."""
        path = str(path)
        self._own = [path, *(p for p in self._own if p != path)][: self.limit]
        return self.store()

    def store(self) -> list[str]:
        """Merge this window's files (newest first) into the list stored now, write it; the list."""
        self.settings.sync()  # read what other windows and instances stored meanwhile
        if not self._own:
            return self.entries()
        merged = list(dict.fromkeys([*self._own, *self.entries()]))[: self.limit]
        self.settings.setValue(RECENT_KEY, merged)
        self.settings.sync()
        return merged
