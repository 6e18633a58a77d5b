"""Guards against a broken Qt binding: PySide6 6.12.0 dropped a reference to None on every call
that returns nothing, and Python 3.11 aborts ("deallocating None") once a long session has made
enough such calls. pyproject.toml excludes that release; this test notices if it comes back."""

import sys

from PySide6.QtWidgets import QLabel


def test_qt_calls_do_not_leak_references_to_none(qtbot):
    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for _ in range(5000):
        label.setText("x")
    after = sys.getrefcount(None)
    assert after - before > -100, f"None lost {before - after} references over 5000 Qt calls"
