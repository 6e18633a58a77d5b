"""Application entry point: ``uv run main.py``."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from detr_core.live import warm_up

from .main_window import MainWindow


def run_app(paths: list[str] | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("DETR Explorer")
    app.setOrganizationName("DETR Explorer")
    window = MainWindow()
    window.show()
    # start the training processes' forkserver (it imports torch) once the first result is on
    # screen, so pressing Start later begins training at once
    window.resultShown.connect(lambda: QTimer.singleShot(500, warm_up), type=Qt.ConnectionType.SingleShotConnection)
    for p in paths or []:
        window.open_path(Path(p))
    return app.exec()
