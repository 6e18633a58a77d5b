"""Counting beyond training: crowded toy images, detected against true count, and the view."""

from __future__ import annotations

import csv
import dataclasses
import json

import pyqtgraph as pg
import pytest
import torch

from detr_core.analysis.counting import (
    CountingResult,
    CountRow,
    correct_detections,
    count_crowded,
)
from detr_core.config import DETRConfig, ToyDataConfig
from detr_core.data.crowded import crowded_config, draw_count
from detr_core.data.toy import ToyShapes
from detr_core.model.detr import DETR

NAMES = ["rectangle", "ellipse", "triangle"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: the machine is shared, stay modest


@pytest.fixture(scope="module")
def tiny_model() -> DETR:
    torch.manual_seed(0)
    config = DETRConfig(
        backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
        num_decoder_layers=2, dim_feedforward=64, num_queries=8, num_classes=3, dropout=0.0,
        image_min_size=128, image_max_size=256,
    )
    return DETR(config).eval()


# --- core -------------------------------------------------------------------------------------
def test_crowded_config_fits_the_objects_without_growing_them():
    base = ToyDataConfig(max_objects=6)
    few = crowded_config(base, 2)
    many = crowded_config(base, 40)
    assert (few.min_side, few.max_side) == (base.min_side, base.max_side)  # nothing to shrink
    assert many.max_side < few.max_side and many.min_side <= many.max_side
    assert many.classes == base.classes and many.image_size == base.image_size


@pytest.mark.parametrize("count", [0, 1, 7, 20, 25])
def test_crowded_images_hold_exactly_the_asked_count(count):
    config = dataclasses.replace(crowded_config(None, 25), min_objects=count, max_objects=count)
    dataset = ToyShapes(config, split=f"counting-{count}")
    for image in range(3):
        assert len(draw_count(dataset, count, image).labels) == count


def test_correct_detections_is_one_to_one_and_class_aware():
    true_xyxy = torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.9, 0.8]])
    true_labels = torch.tensor([0, 2])
    exact = torch.tensor([[0.2, 0.2, 0.2, 0.2], [0.75, 0.7, 0.3, 0.2]])  # cxcywh of the same boxes
    assert correct_detections(exact, torch.tensor([0, 2]), true_xyxy, true_labels) == 2
    assert correct_detections(exact, torch.tensor([1, 2]), true_xyxy, true_labels) == 1  # wrong class
    twice = exact[[0, 0]]
    assert correct_detections(twice, torch.tensor([0, 0]), true_xyxy, true_labels) == 1  # one object, once
    off = torch.tensor([[0.5, 0.5, 0.1, 0.1]])
    assert correct_detections(off, torch.tensor([0]), true_xyxy, true_labels) == 0
    nothing, no_labels = torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
    assert correct_detections(nothing, no_labels, true_xyxy, true_labels) == 0
    assert correct_detections(exact, torch.tensor([0, 2]), nothing, no_labels) == 0


def test_counting_returns_rows_for_the_asked_counts(tiny_model):
    calls = []
    result = count_crowded(tiny_model, [1, 5, 12], images_per_count=2, threshold=0.3,
                           data_config=ToyDataConfig(), train_max_objects=6, batch_size=4,
                           progress=lambda d, t: calls.append((d, t)))
    assert [(r.asked, r.image) for r in result.rows] == [(1, 0), (1, 1), (5, 0), (5, 1), (12, 0), (12, 1)]
    assert [r.true_count for r in result.rows] == [1, 1, 5, 5, 12, 12]
    assert all(0 <= r.correct <= r.detected <= 8 for r in result.rows)
    assert result.num_queries == 8 and result.train_max_objects == 6 and result.threshold == 0.3
    assert calls == [(0, 6), (4, 6), (6, 6)]
    assert [m.true_count for m in result.means()] == [1, 5, 12]


def test_detections_never_exceed_the_number_of_queries(tiny_model):
    # threshold 0 keeps every query: exactly Q detections, even with more objects than queries
    result = count_crowded(tiny_model, [3, 12], images_per_count=2, threshold=0.0)
    assert [r.detected for r in result.rows] == [8, 8, 8, 8]
    assert [r.true_count for r in result.rows[2:]] == [12, 12]
    # the result does not depend on the batch size
    again = count_crowded(tiny_model, [3, 12], images_per_count=2, threshold=0.0, batch_size=1)
    assert again.rows == result.rows


def test_means_group_by_true_count():
    rows = [CountRow(3, 3, 2, 1, 0), CountRow(3, 3, 4, 3, 1), CountRow(5, 4, 4, 4, 0)]
    result = CountingResult(rows, 10, 0.5, None, ToyDataConfig())
    (m3, m4) = result.means()
    assert (m3.true_count, m3.images, m3.mean_detected) == (3, 2, 3.0)
    assert (m3.std_detected, m3.mean_correct) == (1.0, 2.0)
    assert (m4.true_count, m4.images, m4.mean_detected) == (4, 1, 4.0)


def test_bad_arguments_are_refused(tiny_model):
    with pytest.raises(ValueError):
        count_crowded(tiny_model, [], images_per_count=1)
    with pytest.raises(ValueError):
        count_crowded(tiny_model, [2], images_per_count=0)


# --- view -------------------------------------------------------------------------------------
@pytest.fixture
def view(qtbot):
    from explorer.state import AppState
    from explorer.views.counting import CountingView

    v = CountingView(AppState())
    qtbot.addWidget(v)
    v.resize(1000, 600)
    yield v
    v.cancel_job()
    assert v.wait_job(20000), "the counting thread is still running"


def set_model(view, model, data_config=None):
    """The state's model (and its training data), as the window sets it."""
    from explorer.state import DataSource, LoadedModel

    view.state.set_model(LoadedModel(model, NAMES, "test"), DataSource(data_config))


def test_view_runs_and_plots(qtbot, view, tiny_model, tmp_path):
    set_model(view, tiny_model, ToyDataConfig(max_objects=6))
    assert view.max_count.value() == 13  # past the 8 queries
    view.max_count.setValue(10)
    view.images_per_count.setValue(1)
    view.threshold.setValue(0.0)
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        assert view.run()
        assert not view.run_button.isEnabled()
    assert view.run_button.isEnabled()
    r = view.result
    assert r is not None and [row.asked for row in r.rows] == list(range(1, 11))
    xs, ys = view.mean_curve.getData()
    assert list(xs) == list(range(1, 11)) and list(ys) == [8.0] * 10  # threshold 0: every query
    assert len(view.points.data) == 10
    assert view.query_line.isVisible() and view.query_line.value() == 8.5
    assert view.train_line.isVisible() and view.train_line.value() == 6.5
    assert "8 queries" in view.summary.text()
    assert "At least 2 of those 10 must be missed" in view.summary.text()

    assert view.export_png(tmp_path / "counting.png")
    assert (tmp_path / "counting.png").stat().st_size > 1000
    assert view.export_data_to(tmp_path / "counting.csv")
    rows = list(csv.DictReader((tmp_path / "counting.csv").open()))
    assert [int(row["true_count"]) for row in rows] == list(range(1, 11))
    assert all(int(row["detected"]) == 8 and int(row["num_queries"]) == 8 for row in rows)
    assert view.export_data_to(tmp_path / "counting.json")
    assert len(json.loads((tmp_path / "counting.json").read_text())) == 10


def test_view_without_training_data_hides_the_training_marker(view):
    rows = [CountRow(c, c, min(c, 4), min(c, 4), 0) for c in range(1, 7)]
    view.set_result(CountingResult(rows, 4, 0.5, None, ToyDataConfig()))
    assert not view.train_line.isVisible() and view.query_line.isVisible()
    assert "Training images" not in view.summary.text()


def test_the_legend_is_clear_of_a_flat_curve_and_its_ceiling(qtbot, view):
    """A model of 4 queries counted up to 30 objects (a short dock: the Analyse workspace at
    1024x700): it detects 4 whatever the count, a flat curve along the bottom with its "at most 4
    detections" label. The legend sits under the plot, so neither runs under it."""
    from PySide6.QtCore import QPoint, QRect
    from PySide6.QtWidgets import QLabel

    rows = [CountRow(c, c, min(c, 4), 0, 0) for c in range(1, 31)]
    view.resize(590, 560)
    view.show()
    view.set_result(CountingResult(rows, 4, 0.5, 6, ToyDataConfig()))
    qtbot.wait(50)
    scene = view.plot_widget.scene()
    label = view.ceiling.label.sceneBoundingRect()
    curve = [view.plot.vb.mapViewToScene(pg.Point(x, y)) for x, y in zip(*view.mean_curve.getData())]
    for legend in [item for item in scene.items() if isinstance(item, pg.LegendItem) and item.isVisible()]:
        box = legend.sceneBoundingRect()
        assert not box.intersects(label) and not any(box.contains(point) for point in curve)
    names = [w.text() for w in view.legend.findChildren(QLabel) if w.isVisibleTo(view)]
    assert len(names) == 3 and names[1].endswith("mean detected")
    plot = QRect(view.plot_widget.mapTo(view, QPoint(0, 0)), view.plot_widget.size())
    for w in view.legend.findChildren(QLabel):
        assert w.mapTo(view, QPoint(0, 0)).y() >= plot.bottom()  # under the plot


def test_cancel_a_long_count(qtbot, view, tiny_model):
    set_model(view, tiny_model)
    view.max_count.setValue(20)
    view.images_per_count.setValue(500)  # 10 000 images: far longer than the test waits
    with qtbot.waitSignal(view.jobCancelled, timeout=20000):
        assert view.run()
        view.cancel_button.click()
    assert view.result is None
    assert view.export_data() is None
    assert view.wait_job(5000)


def test_run_without_a_model_shows_an_error(qtbot, view):
    with qtbot.waitSignal(view.errorShown, timeout=1000):
        assert not view.run()
