"""Application entry point: ``uv run main.py``.

Importing torch and torchvision takes several seconds, so a splash screen goes up first (Qt
alone loads in a fraction of a second) and says what is loading; the window replaces it once
it exists.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QRect, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QPainter, QPixmap
from PySide6.QtWidgets import QApplication, QLabel, QWidget

if TYPE_CHECKING:
    from .main_window import MainWindow


class Splash(QLabel):
    """The splash: a frameless picture with a status line. (Not QSplashScreen: its show() waits
    up to a second for the window system to report the window exposed, measured as a full second
    offscreen and on X without a window manager, added to every launch.)"""

    def __init__(self, pixmap: QPixmap) -> None:
        super().__init__()
        self.setWindowFlags(Qt.WindowType.SplashScreen | Qt.WindowType.FramelessWindowHint
                            | Qt.WindowType.WindowStaysOnTopHint)
        self._picture = pixmap
        self._message = ""
        self.setPixmap(pixmap)
        self.resize(pixmap.size())
        screen = QApplication.primaryScreen()
        if screen is not None:
            self.move(screen.availableGeometry().center() - self.rect().center())

    def message(self) -> str:
        return self._message

    def showMessage(self, text: str) -> None:  # noqa: N802 (QSplashScreen's name)
        self._message = text
        pixmap = QPixmap(self._picture)
        painter = QPainter(pixmap)
        painter.setPen(QColor("#f1f3f4"))
        painter.drawText(pixmap.rect().adjusted(0, 0, 0, -8),
                         Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter, text)
        painter.end()
        self.setPixmap(pixmap)
        if self.isVisible():
            self.repaint()

    def finish(self, window: QWidget) -> None:  # noqa: ARG002 (QSplashScreen's signature)
        self.close()


def make_splash() -> Splash:
    """A plain splash (drawn, no image file) with room for a status line at the bottom."""
    pixmap = QPixmap(460, 200)
    pixmap.fill(QColor("#202124"))
    painter = QPainter(pixmap)
    painter.setPen(QColor("#f1f3f4"))
    font = QFont()
    font.setPointSize(20)
    font.setBold(True)
    painter.setFont(font)
    painter.drawText(QRect(0, 40, 460, 50), Qt.AlignmentFlag.AlignCenter, "DETR Explorer")
    font.setPointSize(10)
    font.setBold(False)
    painter.setFont(font)
    painter.setPen(QColor("#9aa0a6"))
    painter.drawText(QRect(0, 90, 460, 30), Qt.AlignmentFlag.AlignCenter,
                     "End-to-End Object Detection with Transformers, to see and touch")
    painter.end()
    splash = Splash(pixmap)
    splash.showMessage("Loading PyTorch…")
    return splash


def _warm_up_training() -> None:
    import gc

    from detr_core.train.live import warm_up

    warm_up()
    # everything imported and built so far lives as long as the app: keep it out of the cyclic
    # garbage collector's full passes, which otherwise walk it all (a pause of 0.3 to 1 s was
    # measured while a 2000-image dataset's thumbnails were made)
    gc.freeze()


def run_app(paths: list[str] | None = None, on_window: Callable[[MainWindow], None] | None = None) -> int:
    """Splash, window, event loop. ``on_window(window)`` runs once the window is up (benchmarks)."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("DETR Explorer")
    app.setOrganizationName("DETR Explorer")
    splash = make_splash()
    splash.show()
    app.processEvents()

    from .main_window import MainWindow  # the slow import: torch

    splash.showMessage("Opening the model…")
    app.processEvents()
    window = MainWindow()
    window.show()
    splash.finish(window)
    if on_window is not None:
        on_window(window)
    # once the first result is on screen: import and build the analysis views and the training
    # panel (their modules are not needed for the first picture), then start the training
    # processes' forkserver (it imports torch), so pressing Start later begins training at once
    window.state.resultChanged.connect(window.warm_up_views, type=Qt.ConnectionType.SingleShotConnection)
    window.viewsBuilt.connect(lambda: QTimer.singleShot(500, _warm_up_training), type=Qt.ConnectionType.SingleShotConnection)
    for p in paths or []:
        window.open_path(Path(p))
    return app.exec()
