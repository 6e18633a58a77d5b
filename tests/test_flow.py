"""The wrapping row of controls (explorer/views/flow.py) outlives the widgets taken out of it or
deleted while in it. Deleting a checkbox in a Flow (``deleteLater``, as the Deformable attention
view did when a new model had another number of heads) once crashed the app with a segfault: the
flow laid itself out from inside the half-destroyed child's ChildRemoved event. Run in a child
process, so that a crash is a failed test, not a lost test run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtWidgets import QApplication, QCheckBox, QLabel, QVBoxLayout, QWidget
from explorer.views.flow import Flow

app = QApplication([])
top = QWidget()
QVBoxLayout(top).addWidget(flow := Flow())
flow.addWidget(QLabel("Heads"))
top.resize(300, 200)
top.show()
for round_ in range(6):
    boxes = [QCheckBox(str(i)) for i in range(8 + 4 * (round_ % 2))]  # 8, then 12 heads, ...
    for box in boxes:
        flow.addWidget(box)
    app.processEvents()
    assert len(flow.widgets()) == 1 + len(boxes)
    for i, box in enumerate(boxes):
        if i % 2:
            flow.removeWidget(box)  # taken out, then deleted
        else:
            box.hide()  # deleted while in the flow
        box.deleteLater()
    del box, boxes
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    app.processEvents()
    assert len(flow.widgets()) == 1, len(flow.widgets())
    assert flow.heightForWidth(300) > 0
print("ok")
"""


def test_widgets_deleted_in_a_flow_or_taken_out_of_it_leave_it_without_a_crash():
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    run = subprocess.run([sys.executable, "-X", "faulthandler", "-c", SCRIPT, str(ROOT)], capture_output=True,
                         text=True, timeout=120, env=env, check=False)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), (run.returncode, run.stdout[-500:],
                                                                       run.stderr[-2000:])


def test_a_label_whose_text_grows_gets_its_room_and_its_line(qtbot):
    """A label in a Flow (in a pair, as the specialization pager's, or on its own) whose text grows
    gets its width, and wraps to a new line when its line has no room left, once the event loop
    runs: in the two passes Qt's own nested layouts take (the pair's layout, then the Flow's). A
    picture taken in the same pass as the change showed the pager cut ("slots 0–19 o")."""
    from PySide6.QtCore import QPoint, QRect
    from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

    from explorer.views.flow import Flow, side_by_side

    top = QWidget()
    qtbot.addWidget(top)
    column = QVBoxLayout(top)
    column.addWidget(flow := Flow())
    column.addStretch(1)
    pager = QLabel("no slots yet")
    flow.addWidget(side_by_side(QPushButton("◀ Prev"), pager, QPushButton("Next ▶")))
    flow.addWidget(note := QLabel("short"))
    top.resize(500, 200)
    top.show()
    qtbot.waitExposed(top)
    qtbot.wait(20)  # laid out: what follows is a change, not the first layout
    one_line = flow.height()
    pair = pager.parentWidget()
    assert note.y() < pair.geometry().bottom()  # side by side on one line

    def has_room(label: QLabel) -> bool:
        inside = QRect(label.mapTo(flow, QPoint(0, 0)), label.size())
        return label.width() >= label.sizeHint().width() and flow.rect().contains(inside)

    pager.setText("slots 0–19 of 100 (page 1/5)")
    note.setText("a note long enough that it no longer fits beside the pager")
    qtbot.waitUntil(lambda: has_room(pager) and has_room(note), timeout=2000)
    assert note.y() > pair.geometry().bottom()  # on a line of its own
    qtbot.waitUntil(lambda: flow.height() == flow.heightForWidth(flow.width()) > one_line, timeout=2000)
