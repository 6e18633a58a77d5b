"""Value fields (spin boxes, combo boxes, sliders) take the mouse wheel only when they have the
keyboard focus. Without this, scrolling a settings panel changes whatever field passes under the
cursor; with it, the wheel scrolls the panel, and a click (or Tab) on a field lets the wheel
change it."""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSlider, QAbstractSpinBox, QComboBox, QScrollBar, QWidget


class WheelGuard(QObject):
    """An event filter: a wheel event on an unfocused field goes to its parent instead."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Wheel and isinstance(obj, QWidget) and not obj.hasFocus():
            parent = obj.parentWidget()
            if parent is not None:
                QCoreApplication.sendEvent(parent, event)  # e.g. the scroll area around a form
            return True
        return False


_guard: WheelGuard | None = None


def guard_wheel(root: QWidget) -> int:
    """Guard every value field under ``root`` (and ``root`` itself); returns how many."""
    global _guard
    if _guard is None:
        _guard = WheelGuard(QCoreApplication.instance())
    fields = [w for w in [root, *root.findChildren(QWidget)]
              if isinstance(w, (QAbstractSpinBox, QComboBox, QAbstractSlider)) and not isinstance(w, QScrollBar)]
    for w in fields:
        if w.property("wheelGuarded"):
            continue
        w.setProperty("wheelGuarded", True)
        w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # the wheel alone does not focus it
        w.installEventFilter(_guard)
    return len(fields)
