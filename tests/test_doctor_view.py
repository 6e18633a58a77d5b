"""The doctor view: Check Dataset lists findings; an example opens with its boxes and, with the
bundled model, a diagnosis of what it misses."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from explorer.state import AppState, LoadedModel  # noqa: E402
from explorer.views.doctor import DoctorView  # noqa: E402


def test_check_lists_findings_and_opens_an_example(qtbot, tmp_path: Path) -> None:
    import json

    from detr_core.checkpoint import load_model
    from detr_core.data.export import write_toy_dataset

    root = write_toy_dataset(tmp_path / "coco", train=6, val=1)
    ann = root / "annotations" / "instances_train2017.json"
    data = json.loads(ann.read_text())
    data["categories"].append({"id": 4, "name": "hexagon"})
    ann.write_text(json.dumps(data))

    state = AppState()
    model, ckpt = load_model(Path(__file__).parents[1] / "checkpoints" / "toy_shapes.pt")
    state.set_model(LoadedModel(model, ckpt.class_names, "bundled", checkpoint=ckpt))
    view = DoctorView(state)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        assert view.check(f"coco:{root}")
    # the bundled model has 3 classes, the dataset now 4
    assert [f.key for f in view.report.findings] == ["beyond_model_classes", "empty_category"]
    head = view.findings.topLevelItem(0)
    assert [head.child(i).text(0) for i in range(2)] == ["More classes than the model has", "Categories with no objects"]

    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        view.open_example("1")
    assert view.image_item.image is not None and len(view._boxes) >= 1
    assert "objects found by the model" in view.verdicts.text()
    assert "## Data" in view.report_text()


def test_watch_warnings_from_the_training_process_are_shown(qtbot) -> None:
    from detr_core.doctor.watch import WatchWarning

    state = AppState()
    view = DoctorView(state)
    qtbot.addWidget(view)
    shown = []
    view.errorShown.connect(shown.append)
    warning = WatchWarning(20, "no_object_collapse", "No-object collapse", "numbers.", "lower the no-object weight")
    state.probed.emit("doctor watch", [warning])
    assert view.findings.topLevelItem(0).child(0).text(0) == "No-object collapse"
    assert "lower the no-object weight" in view.verdicts.text() and shown
    assert "## Training watch" in view.report_text()


def test_overfit_from_the_window_can_be_cancelled(qtbot) -> None:
    state = AppState()
    view = DoctorView(state)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.jobCancelled, timeout=30000):
        assert view.run_overfit()
        qtbot.waitUntil(lambda: view.progress_bar.value() >= 1, timeout=30000)
        view.cancel_job()
    assert view.wait_job()
