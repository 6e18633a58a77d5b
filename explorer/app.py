"""Application entry point: ``uv run main.py``."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtWidgets import QApplication

from .main_window import MainWindow


def run_app(paths: list[str] | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("DETR Explorer")
    app.setOrganizationName("DETR Explorer")
    window = MainWindow()
    window.show()
    for p in paths or []:
        window.open_path(Path(p))
    return app.exec()
