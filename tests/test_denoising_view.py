"""The Denoising view (issue 28): for a model with denoising queries it shows the ground truth, the
noised boxes (a colour per group, negatives dashed), what each became per layer and which were
repaired, also from a training run's probe; for a model without them it says so and how to turn
them on."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pyqtgraph as pg
import pytest
import torch
from PySide6.QtCore import Qt

from detr_core.analysis.denoising import DenoisingProbe
from detr_core.config import DETRConfig, LossConfig, ToyDataConfig
from detr_core.data.toy import ToyShapes
from detr_core.model.registry import build_model
from explorer.state import AppState, DataSource, LoadedModel

DN = DETRConfig(backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
                num_decoder_layers=2, dim_feedforward=64, num_queries=6, num_classes=3, dropout=0.0,
                image_min_size=64, image_max_size=64, query_type="anchor", dn_groups=2)
DATA = ToyDataConfig(image_size=64, min_objects=2, max_objects=3)
NAMES = ["rectangle", "ellipse", "triangle"]


@pytest.fixture
def view(qtbot):
    from explorer.views.denoising import DenoisingView

    state = AppState()
    v = DenoisingView(state)
    qtbot.addWidget(v)
    v.resize(800, 630)
    v.show()
    yield v
    v.shutdown()


def _open(view, config: DETRConfig) -> tuple:
    torch.manual_seed(0)
    model = build_model(config).eval()
    stream = ToyShapes(DATA, seed=0, split="train")
    view.state.set_model(LoadedModel(model, NAMES, "tiny"), DataSource(DATA, LossConfig(), stream))
    return model, stream


def _shown_boxes(view) -> int:
    return sum(r.isVisible() for r in view.canvas.rects)


def test_a_denoising_model_shows_its_noised_boxes_per_group_and_layer(qtbot, view):
    with qtbot.waitSignal(view.snapshotShown, timeout=60000) as blocker:
        _open(view, DN)
    s = blocker.args[0]
    m, p = len(s.target_labels), s.num_queries
    assert s.available and p == 2 * m and not view.notice.isVisible()
    view._draw()  # (a redraw may wait for the throttle)
    assert _shown_boxes(view) == m + p and view.table.rowCount() == p
    assert [view.group_combo.itemText(i) for i in range(view.group_combo.count())] == ["all groups", "group 1",
                                                                                       "group 2"]
    assert view.layer_slider.maximum() == 2 and view.stage == 2  # the last layer first
    assert view.summary.text().startswith("After layer 2:") and f"of {p}</b>" in view.summary.text()
    assert len(view.canvas.links) == p  # from each box fed in to what it became
    view.set_group(1)
    assert view.table.rowCount() == p // 2 and _shown_boxes(view) == m + p // 2
    assert {view.table.item(r, 0).text() for r in range(view.table.rowCount())} == {"2"}
    view.set_stage(0)
    assert view.layer_label.text() == "noised input" and view.canvas.links == []
    assert view.summary.text().startswith("Fed in:")
    # the canvas shows the noised boxes fed in: the snapshot's, in pixels
    rect = view.canvas.rects[m].rect()
    x0, y0, x1, y1 = s.boxes_xyxy(0)[s.group == 1][0]
    assert (rect.x(), rect.y()) == pytest.approx((x0, y0), abs=1e-3)
    assert view.export_data()[0]["section"] == "queries"
    view.table.cellClicked.emit(1, 0)  # a row clicked: its query's box drawn thick
    chosen = np.flatnonzero(s.group == 1)[1]
    assert view.selected == chosen and view.canvas.rects[m + 1].pen().width() == 4


def test_negatives_are_dashed_and_a_training_probe_is_followed(qtbot, view):
    model, stream = _open(view, DN)
    qtbot.waitUntil(lambda: view.snapshot is not None, timeout=60000)
    probed = DenoisingProbe(3)(SimpleNamespace(model=model, dataset=stream, step=5))  # what a run's probe sends
    probed.positive = np.arange(probed.num_queries) % 2 == 0  # as a DINO capture marks its negatives
    with qtbot.waitSignal(view.snapshotShown, timeout=5000):
        view.state.probed.emit("denoising", probed)
    view._draw()
    m = len(probed.target_labels)
    styles = [view.canvas.rects[m + q].pen().style() for q in range(probed.num_queries)]
    assert styles == [Qt.PenStyle.SolidLine if pos else Qt.PenStyle.DashLine for pos in probed.positive]
    assert "at step 5" in view.status.text() and view.history[-1][0] == 5
    assert "Negatives" in view.summary.text()


def test_a_model_without_denoising_says_so_and_how_to_turn_it_on(qtbot, view):
    _open(view, dataclasses.replace(DN, dn_groups=0))
    qtbot.waitUntil(lambda: view.notice.isVisible(), timeout=5000)
    assert "dn_groups = 0" in view.notice.text() and "Denoising groups" in view.notice.text()
    assert view.snapshot is None and view.table.rowCount() == 0 and _shown_boxes(view) == 0
    assert not view.busy
    # no heatmap here, so no "attention weight" colour bar beside the empty image either
    assert not [item for item in view.canvas.scene().items() if isinstance(item, pg.ColorBarItem) and item.isVisible()]
