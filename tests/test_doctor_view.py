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
    axes = view.plot.getPlotItem().getAxis("left")
    assert not axes.isVisible()  # no picture yet: no pixel axes around an empty box
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        assert view.check(f"coco:{root}")
    # the bundled model has 3 classes, the dataset now 4
    assert [f.key for f in view.report.findings] == ["beyond_model_classes", "empty_category"]
    head = view.findings.topLevelItem(0)
    assert [head.child(i).text(0) for i in range(2)] == ["More classes than the model has", "Categories with no objects"]

    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        view.open_example("1")
    assert view.image_item.image is not None and len(view._boxes) >= 1 and axes.isVisible()
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


def test_a_missed_object_layer_by_layer_and_in_the_image_view(qtbot) -> None:
    """Held-out image 1, object 4 (a small triangle) is misplaced by the bundled model: the view
    plots its matched query's IoU and class probability by layer, its class probabilities, its
    box at every layer and its cross-attention; the main image view then shows that query."""
    import numpy as np

    from detr_core.analysis.heatmaps import cross_attention_map
    from detr_core.checkpoint import load_model
    from detr_core.data.toy import heldout_split
    from explorer.canvas import ImageView
    from explorer.controller import Controller

    state = AppState()
    model, ckpt = load_model(Path(__file__).parents[1] / "checkpoints" / "toy_shapes.pt")
    state.set_model(LoadedModel(model, ckpt.class_names, "bundled", checkpoint=ckpt))
    view = DoctorView(state)
    qtbot.addWidget(view)
    smp = heldout_split(size=2).sample(1)
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        assert view.open_image(smp.image, smp.labels, smp.boxes_xyxy, "held-out image 1")
    assert [d.object_index for d in view.missed] == [4] and not view.missed_panel.isHidden()
    d, r = view.shown_missed, view.missed_result
    assert d.verdict == "misplaced" and view.missed_pick.currentText() == "object 4 (triangle): misplaced"
    assert "What failed: localization" in view.missed_text.text() and f"query {d.query}" in view.missed_text.text()
    L = r.num_layers
    assert view.layer_pick.value() == L  # the last layer first
    x, y = view.iou_curve.getData()
    np.testing.assert_allclose(x, np.arange(1, L + 1))
    np.testing.assert_allclose(y, d.layer_ious)
    np.testing.assert_allclose(view.prob_curve.getData()[1], d.layer_class_probs)
    assert 0.2 < y[-1] < 0.5

    def shown(layer: int) -> None:  # bars, boxes and heatmap are the query's at ``layer`` (0-based)
        bars = view.prob_bars.opts["width"]  # horizontal bars: a bar's length is its probability
        np.testing.assert_allclose(bars, r.layer_probs[layer, d.query].numpy())
        assert len(bars) == 4  # 3 classes and no-object
        assert len(view._layer_boxes) == L
        xs, ys = view._layer_boxes[layer].getData()
        x0, y0, x1, y1 = d.layer_boxes_xyxy[layer]
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max(), ys.max()], [x0, y0, x1, y1], rtol=1e-6)
        assert view._layer_boxes[layer].opts["pen"].width() == 3  # the chosen layer's box stands out
        np.testing.assert_allclose(view.heat_item.image, cross_attention_map(r, d.query, layer, None))

    shown(L - 1)
    last_heat = view.heat_item.image.copy()
    view.layer_pick.setValue(1)
    shown(0)
    assert not np.allclose(view.heat_item.image, last_heat)
    assert view.layer_line.value() == 1

    # the main view: this image, the matched query and layer selected, its heatmap drawn
    controller = Controller(state)
    canvas = ImageView(state)
    qtbot.addWidget(canvas)
    assert view.show_in_image_view()
    qtbot.waitUntil(lambda: state.result is not None, timeout=20000)
    controller.wait(10000)
    assert state.image is smp.image and state.image_name == "held-out image 1"
    assert (state.selected_query, state.layer) == (d.query, 0)
    np.testing.assert_allclose(canvas.heat_item.image, view.heat_item.image, rtol=1e-5, atol=1e-9)


def test_the_check_button_checks_the_open_dataset(qtbot, tmp_path: Path) -> None:
    """Issue 29, defect 1: the button's click (its ``checked`` argument) must not reach the data
    field, and after File ▸ Open Dataset the Doctor checks that dataset, not the toy data."""
    from PySide6.QtCore import Qt

    from detr_core.data.export import write_toy_dataset
    from explorer.dataset_session import open_path

    state = AppState()
    view = DoctorView(state)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        qtbot.mouseClick(view.check_button, Qt.MouseButton.LeftButton)
    assert view.report.name == "toy shapes" and view.source.text() == "toy"

    root = write_toy_dataset(tmp_path / "shapes", train=3, val=2, fmt="yolo")
    state.set_dataset(open_path(root))
    assert view.source.text() == f"yolo:{root}"  # the field shows what will be checked
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        qtbot.mouseClick(view.check_button, Qt.MouseButton.LeftButton)
    assert view.report.name == "YOLO shapes train" and view.report.images == 3

    state.set_dataset(None)  # closed: back to the toy data
    assert view.source.text() == "toy"


def test_a_typed_path_stays_and_the_menu_checks_the_open_dataset(qtbot, tmp_path: Path) -> None:
    """A path the user typed is not replaced when a dataset is opened; Data ▸ Check Dataset
    (``check_open_dataset``) checks the open dataset, and the field then says so."""
    from detr_core.data.export import write_toy_dataset
    from explorer.dataset_session import open_path

    typed = write_toy_dataset(tmp_path / "typed", train=2, val=1, fmt="coco")
    opened = write_toy_dataset(tmp_path / "opened", train=4, val=1, fmt="yolo")
    state = AppState()
    view = DoctorView(state)
    qtbot.addWidget(view)
    view.source.clear()
    qtbot.keyClicks(view.source, f"coco:{typed}")
    state.set_dataset(open_path(opened))
    assert view.source.text() == f"coco:{typed}"
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        assert view.check()
    assert view.report.images == 2  # what the user typed

    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        assert view.check_open_dataset()
    assert view.report.name == "YOLO opened train" and view.report.images == 4
    assert view.source.text() == f"yolo:{opened}"


def test_a_model_of_many_classes_shows_its_likeliest_classes_and_the_rest(qtbot) -> None:
    """With COCO's 91 class ids a bar per class cannot be read: the query's class probabilities
    show the object's class, the likeliest others, no object and one bar summing the rest, each
    labelled with its probability, as many as the plot's height shows (at most 10)."""
    import re

    import numpy as np
    import torch

    from detr_core.config import DETRConfig
    from detr_core.data.coco_names import COCO_CLASS_NAMES
    from detr_core.data.toy import heldout_split
    from detr_core.model.detr import DETR
    from explorer.views.doctor import MOST_CLASS_BARS, class_bars

    torch.manual_seed(0)
    config = DETRConfig(backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
                        num_decoder_layers=2, dim_feedforward=64, num_queries=8, num_classes=91, dropout=0.0,
                        image_min_size=128, image_max_size=128)
    names = list(COCO_CLASS_NAMES)
    state = AppState()
    state.set_model(LoadedModel(DETR(config).eval(), names, "untrained, COCO's classes"))
    view = DoctorView(state)
    qtbot.addWidget(view)
    view.resize(560, 900)  # the Data workspace's doctor dock, taller: room for every bar
    view.show()
    smp = heldout_split(size=2).sample(1)
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        assert view.open_image(smp.image, smp.labels + 1, smp.boxes_xyxy, "held-out image 1")  # person, bicycle, car
    d = view.shown_missed
    assert d is not None and d.class_name == "person"
    qtbot.waitUntil(lambda: len(view.shown_bars) == MOST_CLASS_BARS, timeout=2000)  # once the plots are laid out
    probs = view.missed_result.layer_probs[-1, d.query].numpy()  # [92]
    bars = view.shown_bars
    widths = view.prob_bars.opts["width"]
    ticks = [label for _, label in view.prob_plot.getAxis("left")._tickLevels[0]]
    assert len(bars) == len(widths) == len(ticks) == MOST_CLASS_BARS
    assert ticks == [b.label for b in bars] and ticks[0] == f"person {probs[1]:.2f}"
    np.testing.assert_allclose(widths, [b.probability for b in bars])
    assert [b.kind for b in bars] == ["true"] + ["other"] * 7 + ["no_object", "rest"]
    others = np.argsort(-probs[:91], kind="stable")
    assert [b.label for b in bars[1:8]] == [f"{names[i][:11] + '…' if len(names[i]) > 12 else names[i]} "
                                            f"{probs[i]:.2f}" for i in others[others != 1][:7]]
    assert re.fullmatch(r"83 others \d\.\d\d", ticks[-1])
    assert widths[-1] == pytest.approx(1 - sum(widths[:-1]), abs=1e-5)  # softmax: the rest's sum

    view.resize(560, 630)  # the dock at 1366x768: fewer bars, still one text line each
    qtbot.waitUntil(lambda: len(view.shown_bars) < MOST_CLASS_BARS, timeout=2000)
    assert len(view.shown_bars) >= 5 and view.shown_bars[-1].kind == "rest"
    line = view.prob_plot.fontMetrics().height()
    assert view.prob_plot.getViewBox().height() >= len(view.shown_bars) * line

    # a focal classifier's probabilities do not add up: the rest's bar is their largest
    rest = class_bars(probs, names, 1, summed=False)[-1]
    assert rest.label == f"83 others ≤ {np.delete(probs[:91], [1, *others[others != 1][:7]]).max():.2f}"
