"""The panels around the image (issue 29): the query selected and the queries ticked when a new
image comes, box labels that stay readable, and the Queries, Attention, Model, Attention grid and
Layer by layer panels at the sizes their workspaces give them. With the bundled toy-shapes model,
built on an AppState as the window builds them (no window: fast)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from fit import fit_in
from PySide6.QtCore import QPoint, QRect, QRectF, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

from detr_core.analysis.capture import run_inference
from detr_core.checkpoint import load_model
from detr_core.data.toy import ToyShapes
from explorer.state import MODE_ENCODER, AppState, LoadedModel

BUNDLED = Path(__file__).resolve().parents[1] / "checkpoints" / "toy_shapes.pt"
pytestmark = pytest.mark.skipif(not BUNDLED.exists(), reason="checkpoints/toy_shapes.pt is missing")

# the dock sizes of tests' /tmp/sizes.md (issue 29): (small: a 1024x700 window, laptop: 1366x768)
RIGHT_COLUMN = {"Queries": ((340, 300), (430, 330)), "Attention": ((340, 260), (430, 290))}
EXPLORE_BOTTOM = ((680, 260), (930, 300))
ANALYSE = ((600, 560), (800, 630))


@pytest.fixture(scope="module")
def bundled():
    torch.manual_seed(0)
    model, ckpt = load_model(BUNDLED)
    return model.eval(), ckpt


@pytest.fixture(scope="module")
def samples(bundled):
    """Four toy images and the bundled model's results on them."""
    model, ckpt = bundled
    images = [ToyShapes(seed=0).sample(i).image for i in range(4)]
    return [(image, run_inference(model, image, ckpt.class_names, capture=True)) for image in images]


@pytest.fixture
def state(qtbot, bundled):
    model, ckpt = bundled
    s = AppState()
    s.set_model(LoadedModel(model, ckpt.class_names, ckpt.source, BUNDLED, ckpt))
    return s


def _show(state, image, result):
    """A new image and its result, as the window's inference sets them."""
    state.set_image(image, "toy")
    state.set_result(result)


def _hosted(qtbot, widget, size=(500, 500)):
    """``widget`` (a pyqtgraph view) shown inside a plain widget, as the window holds it: qtbot
    closing a top-level pyqtgraph view after a failed test crashes the interpreter."""
    host = QWidget()
    qtbot.addWidget(host)
    QVBoxLayout(host).addWidget(widget)
    host.resize(*size)
    host.show()
    widget.test_host = host  # qtbot holds it weakly
    return widget


def _settle(n=3):
    for _ in range(n):
        QApplication.processEvents()


def _carried_over(samples):
    """(first, second, query): a query drawn on the first image, not its best, and below the
    threshold on the second."""
    for first in samples:
        for second in samples:
            for q in first[1].kept(0.5)[1:]:
                if float(second[1].scores[q]) < 0.5:
                    return first, second, q
    raise AssertionError("no query is kept on one sample and not on another")


# --- 6: a new image selects its own best query ----------------------------------------------------
def test_a_new_images_result_selects_its_best_query_and_draws_its_box(qtbot, state, bundled, samples):
    from explorer.canvas import ImageView

    canvas = _hosted(qtbot, ImageView(state))
    (image, result), (new_image, new_result), q = _carried_over(samples)
    _show(state, image, result)
    state.set_selected_query(q)  # the user's choice, on this image
    model, ckpt = bundled
    state.set_result(run_inference(model, image, ckpt.class_names, capture=True))  # same image (a preview)
    assert state.selected_query == q
    _show(state, new_image, new_result)  # New Toy Sample
    best = int(new_result.scores.argmax())
    assert state.selected_query == best != q
    assert canvas.rects[best].isVisible() and canvas.rects[best].pen().width() == 4  # the heatmap's box is drawn
    assert not canvas.rects[q].isVisible()
    # another model on the same image (a run's model, "Back to", a reopened file): its own best too
    state.set_selected_query(q)
    state.set_model(LoadedModel(model, ckpt.class_names, "trained in this session"))
    state.set_result(run_inference(model, new_image, ckpt.class_names, capture=True))
    assert state.selected_query == best


def test_the_layer_view_follows_a_new_image_to_its_best_query(qtbot, state, samples):
    from explorer.views.layers import LayerView

    view = LayerView(state)
    qtbot.addWidget(view)
    view.resize(*ANALYSE[1])
    view.show()
    (image, result), (new_image, new_result), q = _carried_over(samples)
    _show(state, image, result)
    state.set_selected_query(q)
    assert view.selected_query == q
    _show(state, new_image, new_result)
    best = int(new_result.scores.argmax())
    assert view.selected_query == view.query_spin.value() == best
    # the view's own inference (an image of its own) starts from that image's best query too
    view.set_selected_query(q)
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        assert view.set_image(image)
    assert view.selected_query == int(result.scores.argmax()) != q
    view.shutdown()


# --- 9: a ticked row is a drawn box ----------------------------------------------------------------
def _ticked(panel):
    m = panel.model
    return [r for r in range(m.rowCount())
            if m.data(m.index(r, 0), Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked]


def _drawn(canvas):
    return [i for i, r in enumerate(canvas.rects) if r.isVisible()]


def _tick(panel, query, on):
    m = panel.model
    m.setData(m.index(query, 0), Qt.CheckState.Checked if on else Qt.CheckState.Unchecked,
              Qt.ItemDataRole.CheckStateRole)


def test_a_row_is_ticked_exactly_when_its_box_is_drawn(qtbot, state, samples):
    from explorer.canvas import ImageView
    from explorer.query_panel import QueryPanel

    panel, canvas = QueryPanel(state), _hosted(qtbot, ImageView(state))
    qtbot.addWidget(panel)
    (image, result), (new_image, new_result), _ = _carried_over(samples)
    _show(state, image, result)
    scores = result.scores.numpy()

    def above(t):
        return [q for q in range(len(scores)) if scores[q] >= t]

    assert _ticked(panel) == _drawn(canvas) == above(0.5) and 0 < len(above(0.5)) < len(scores)
    low = min(above(0.5), key=lambda q: scores[q])  # the weakest drawn query
    panel.set_threshold(float(scores[low]) + 0.01)  # the threshold moves past it: its tick goes
    assert low not in _ticked(panel) and _ticked(panel) == _drawn(canvas) == above(float(scores[low]) + 0.01)
    below = int(np.argmin(scores))
    _tick(panel, below, True)  # ticking a query below the threshold draws it, not dimmed
    assert below in _drawn(canvas) and canvas.rects[below].pen().style() == Qt.PenStyle.SolidLine
    strong = int(np.argmax(scores))
    _tick(panel, strong, False)  # unticking one above hides it
    assert strong not in _drawn(canvas)
    assert _ticked(panel) == _drawn(canvas)
    # the user's ticks stay while the threshold moves; the other rows follow it
    panel.set_threshold(0.0)
    assert strong not in _ticked(panel) and _ticked(panel) == _drawn(canvas) == [q for q in above(0.0) if q != strong]
    panel.set_threshold(1.0)
    assert _ticked(panel) == _drawn(canvas) == [below]
    assert panel.summary.text().startswith("1 of 20")
    panel.show_all_slots.setChecked(True)  # the no-object slots too, dimmed: ticked as they are drawn
    assert _ticked(panel) == _drawn(canvas) == [q for q in range(len(scores)) if q != strong]
    panel.show_all_slots.setChecked(False)
    panel.set_threshold(0.5)
    panel.btn_above.click()  # back to the threshold's ticks
    assert _ticked(panel) == _drawn(canvas) == above(0.5)
    _tick(panel, below, True)
    _show(state, new_image, new_result)  # a new image: ticks by the threshold again
    assert _ticked(panel) == _drawn(canvas) == sorted(new_result.kept(0.5))
    assert state.kept_queries() == new_result.kept(0.5)  # best first
    panel.btn_none.click()
    assert _ticked(panel) == _drawn(canvas) == []
    panel.set_threshold(0.0)  # "None" holds whatever the threshold
    assert _ticked(panel) == []
    panel.btn_all.click()
    panel.set_threshold(0.9)
    assert _ticked(panel) == _drawn(canvas) == list(range(len(scores)))


def test_when_nothing_reaches_the_threshold_the_heatmaps_query_is_drawn_dashed_and_said(qtbot, state, samples):
    """No query reaches the threshold: the image still shows the selected (best) query's
    cross-attention, so its box is drawn dashed and a caption over the image says why. Boxes the
    user unticked stay hidden, and with no heatmap nothing stands in."""
    from explorer.canvas import ImageView
    from explorer.state import MODE_CROSS, MODE_NONE

    canvas = _hosted(qtbot, ImageView(state))
    image, result = samples[0]
    _show(state, image, result)
    best = int(result.scores.argmax())
    assert float(result.scores[best]) < 1.0
    state.set_threshold(1.0)
    assert state.kept_queries() == [] and canvas.heat_item.isVisible()
    assert _drawn(canvas) == [best] and canvas.rects[best].pen().style() == Qt.PenStyle.DashLine
    assert canvas.labels[best].isVisible()
    label = result.class_names[int(result.labels[best])]
    assert canvas.caption.isVisible()
    score = float(result.scores[best])
    assert canvas.caption.text() == f"Nothing reaches 1.00: showing query {best} ({label} {score:.2f}), dashed"
    assert canvas.rect().contains(canvas.caption.geometry())

    state.set_attention_mode(MODE_NONE)  # no heatmap: no stand-in
    assert _drawn(canvas) == [] and canvas.caption.isHidden()
    state.set_attention_mode(MODE_CROSS)
    state.set_threshold(0.5)  # the best query reaches it: drawn as a detection, solid
    assert best in _drawn(canvas) and canvas.rects[best].pen().style() == Qt.PenStyle.SolidLine
    assert canvas.caption.isHidden()
    state.set_visible_queries(np.zeros(result.num_queries, bool))  # "None": the user's choice holds
    assert _drawn(canvas) == [] and canvas.caption.isHidden()


# --- 10: labels stay inside the image and apart ------------------------------------------------------
def _label_rects(canvas):
    return [label.mapRectToScene(label.boundingRect()) for label in canvas.labels if label.isVisible()]


def _overlap(a: QRectF, b: QRectF) -> float:
    r = a.intersected(b)
    return max(r.width(), 0) * max(r.height(), 0)


@pytest.mark.parametrize("size", [(340, 340), (600, 420)], ids=["small", "large"])
def test_box_labels_stay_inside_the_image_and_do_not_overlap(qtbot, size):
    from explorer.canvas import ImageCanvas

    canvas = _hosted(qtbot, ImageCanvas(), size)
    canvas.set_image(np.full((128, 128, 3), 90, np.uint8))
    boxes = np.array([[2, 0, 60, 30],  # at the top edge
                      [4, 2, 62, 34],  # almost the same box
                      [40, 1, 127, 20],  # at the top and the right edge
                      [100, 60, 128, 128],  # narrow, at the right edge
                      [0, 100, 30, 128],  # at the bottom-left corner
                      [10, 50, 70, 90]], float)
    texts = [f"{q}: rectangle 0.9{q}" for q in range(len(boxes))]
    canvas.set_boxes(boxes, texts, [QColor("#e6194b")] * len(boxes))
    canvas.style_boxes(np.ones(len(boxes), bool), np.zeros(len(boxes), bool), 0)
    _settle()
    image = canvas.image_item.mapRectToScene(canvas.image_item.boundingRect())
    rects = _label_rects(canvas)
    assert len(rects) == len(boxes)
    for r in rects:
        assert image.adjusted(-0.5, -0.5, 0.5, 0.5).contains(r), (r, image)
    for i in range(len(rects)):
        for j in range(i):
            assert _overlap(rects[i], rects[j]) < 1, (i, j, rects[i], rects[j])
    # over every box: the selected box's thick edge does not cross out another label
    assert min(lab.zValue() for lab in canvas.labels) > max(r.zValue() for r in canvas.rects)
    canvas.window().resize(size[0] + 200, size[1] + 100)  # a new scale: placed again
    _settle()
    image = canvas.image_item.mapRectToScene(canvas.image_item.boundingRect())
    assert all(image.adjusted(-0.5, -0.5, 0.5, 0.5).contains(r) for r in _label_rects(canvas))


# --- the captions and the Model panel ------------------------------------------------------------------
def _shows_whole(label) -> bool:
    """The label is visible, inside its window, and as tall as its text needs at its width."""
    window = label.window()
    inside = window.rect().contains(QRect(label.mapTo(window, QPoint(0, 0)), label.size()))
    return label.isVisible() and inside and label.height() >= label.heightForWidth(label.width())


@pytest.mark.parametrize("size", RIGHT_COLUMN["Attention"], ids=["small", "laptop"])
def test_the_attention_caption_shows_whole(qtbot, state, samples, size):
    from explorer.attention_panel import AttentionPanel

    panel = AttentionPanel(state)
    qtbot.addWidget(panel)
    panel.resize(*size)
    panel.show()
    _show(state, *samples[0])
    _settle()
    assert (panel.width(), panel.height()) == size
    assert panel.info.text().startswith(f"Query {state.selected_query} ")
    assert _shows_whole(panel.info), (panel.info.geometry(), panel.info.heightForWidth(panel.info.width()))
    state.set_encoder_point((40.0, 60.0))
    _settle()
    assert state.attention_mode == MODE_ENCODER and "encoder" in panel.info.text()
    assert _shows_whole(panel.info)
    assert panel.layer.isEnabled() and panel.layer.count() > 0
    if size == RIGHT_COLUMN["Attention"][0]:  # a result without dense encoder maps (a deformable model's)
        import dataclasses

        state.set_result(dataclasses.replace(state.result, encoder_queries=None, encoder_keys=None))
        assert panel.layer.count() == 0 and not panel.layer.isEnabled() and not panel.head.isEnabled()


def test_the_model_panel_says_a_session_model_once(qtbot, bundled):
    from explorer.model_info import architecture_text

    model, ckpt = bundled
    trained = LoadedModel(model, ckpt.class_names, "trained in this session")
    assert architecture_text(trained).count("trained in this session") == 1
    opened = LoadedModel(model, ckpt.class_names, ckpt.source, BUNDLED, ckpt)
    assert "toy_shapes.pt" in architecture_text(opened) and f"({ckpt.source})" in architecture_text(opened)


# --- fit: each panel at its workspace's sizes -------------------------------------------------------------
def _fits(widget, sizes):
    """Small: no sideways scrolling; laptop: none at all. The fits, for a message."""
    (small, laptop) = sizes
    fits = [fit_in(widget, *small), fit_in(widget, *laptop)]
    return fits[0].sideways == 0 and fits[1].fits, fits


def test_the_right_column_panels_fit(qtbot, state, samples):
    from explorer.attention_panel import AttentionPanel
    from explorer.model_info import ModelInfoPanel
    from explorer.query_panel import QueryPanel

    panels = {"Queries": QueryPanel(state), "Attention": AttentionPanel(state), "Model": ModelInfoPanel(state)}
    for panel in panels.values():
        qtbot.addWidget(panel)
    _show(state, *samples[3])  # five boxes
    for name, panel in panels.items():
        sizes = RIGHT_COLUMN.get(name, RIGHT_COLUMN["Attention"])  # the Model tab shares Attention's dock
        ok, fits = _fits(panel, sizes)
        assert ok, (name, fits)
        assert fits[0].fits, (name, fits)  # these small panels need no scrolling at the small size either


def _cells_laid_out(grid):
    """Every cell on screen, apart from the others, and not tiny."""
    _settle()
    rects = [cell.view.sceneBoundingRect() for cell in grid.cells]
    for i, r in enumerate(rects):
        assert min(r.width(), r.height()) >= 80 and grid.graphics.sceneRect().contains(r), r
        assert all(_overlap(r, other) < 1 for other in rects[:i])


def test_the_attention_grid_fits_and_reuses_its_cells(qtbot, state, samples):
    from explorer.attention_grid import AttentionGrid

    grid = AttentionGrid(state)
    qtbot.addWidget(grid)
    grid.resize(*EXPLORE_BOTTOM[1])
    grid.show()
    _settle()
    _show(state, *samples[3])
    assert [c.query for c in grid.cells] == samples[3][1].kept(0.5)
    _cells_laid_out(grid)
    views = [c.view for c in grid.cells]
    _show(state, *samples[1])  # other queries, one fewer: the same plot items, updated
    assert [c.query for c in grid.cells] == samples[1][1].kept(0.5)
    assert [c.view for c in grid.cells] == views[:len(grid.cells)]
    _cells_laid_out(grid)
    ok, fits = _fits(grid, EXPLORE_BOTTOM)
    assert ok, fits


def test_the_layer_view_fits_the_analyse_workspace(qtbot, state, samples):
    from explorer.views.layers import LayerView

    view = LayerView(state)
    qtbot.addWidget(view)
    _show(state, *samples[0])
    ok, fits = _fits(view, ANALYSE)
    assert ok, fits
    view.shutdown()
