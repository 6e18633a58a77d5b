"""The window's size and place on the screen: the first geometry on a screen of any size, and
the last one again when it still fits."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSettings, QSize, Qt
from PySide6.QtWidgets import QApplication, QMainWindow

from .settings import read_setting

DEFAULT_SIZE = QSize(1400, 900)  # on screens with room for it
MIN_SIZE = QSize(800, 560)  # every workspace stays usable down to a 1024x700 screen


def window_geometry(available: QRect, preferred: QSize = DEFAULT_SIZE) -> QRect:
    """The window's first geometry (client area, logical pixels) on a screen whose available
    geometry (without task bars) is ``available``: the preferred size where it fits, else the
    available size less room for the window frame, centred."""
    frame_w, frame_h = 16, 40  # the window manager's border and title bar
    w = max(min(preferred.width(), available.width() - frame_w), min(MIN_SIZE.width(), available.width()))
    h = max(min(preferred.height(), available.height() - frame_h), min(MIN_SIZE.height(), available.height()))
    title = frame_h - 8  # the title bar sits above the client area
    x = available.x() + (available.width() - w) // 2
    y = available.y() + title + max((available.height() - title - h) // 2, 0)
    if y + h > available.y() + available.height():
        y = available.y()
    return QRect(x, y, w, h)


def fits_inside(geometry: QRect, available: QRect) -> bool:
    return available.contains(geometry)


def available_geometry(window: QMainWindow) -> QRect:
    screen = window.screen() or QApplication.primaryScreen()
    return screen.availableGeometry() if screen is not None else QRect(0, 0, 1400, 900)


def restore_geometry(window: QMainWindow, settings: QSettings, available: QRect) -> None:
    """The last size and place, if they still fit this screen; else the size that fits it."""
    window.setMinimumSize(MIN_SIZE)
    saved = read_setting(settings, "windowRect", None, kind=QRect)
    if isinstance(saved, QRect) and saved.width() <= available.width() and saved.height() <= available.height() \
            and available.intersects(saved):
        x = min(max(saved.x(), available.x()), available.right() + 1 - saved.width())
        y = min(max(saved.y(), available.y()), available.bottom() + 1 - saved.height())
        window.setGeometry(QRect(x, y, saved.width(), saved.height()))
    else:
        window.setGeometry(window_geometry(available))
    if read_setting(settings, "maximized", False):
        window.setWindowState(window.windowState() | Qt.WindowState.WindowMaximized)


def save_geometry(window: QMainWindow, settings: QSettings) -> None:
    maximized = window.isMaximized() or window.isFullScreen()
    settings.setValue("maximized", maximized)
    if not maximized:
        settings.setValue("windowRect", window.geometry())


__all__ = ["DEFAULT_SIZE", "MIN_SIZE", "available_geometry", "fits_inside", "restore_geometry", "save_geometry",
           "window_geometry"]
