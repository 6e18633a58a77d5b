"""The query selection view: a two-stage model's selected tokens drawn where the capture puts
them, each kept prediction's start and final boxes, the selected query highlighted (and selected
from the view); a plain message naming the families that select queries otherwise; it fits the
Explore workspace's bottom dock."""

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")

from detr_core.analysis.capture import run_inference  # noqa: E402
from detr_core.model.detr import DETR  # noqa: E402
from explorer.state import AppState, LoadedModel  # noqa: E402
from explorer.views.query_selection import COLOUR_LEVEL, QuerySelectionView  # noqa: E402
from tests.test_query_selection import NAMES, two_stage_model  # noqa: E402
from tests.test_views_fit import EXPLORE_BOTTOM, assert_fits  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _boxes_drawn(view):
    """How many kept predictions have their final box drawn."""
    return sum(1 for _, final, _ in view._box_items if final.getData()[0] is not None and len(final.getData()[0]))


def _points(view):
    return [(p.pos().x(), p.pos().y()) for p in view.tokens_item.points()]


def test_the_selected_tokens_are_drawn_and_the_selected_query_highlighted(qtbot, tiny_config):
    state = AppState()
    view = QuerySelectionView(state)
    qtbot.addWidget(view)
    view.add_help("Query selection")
    view.resize(900, 300)
    view.show()
    torch.manual_seed(0)
    state.set_model(LoadedModel(DETR(tiny_config).eval(), NAMES, "a dense test model"))
    assert view.pages.currentIndex() == 0
    assert "No query selection" in view.note.text() and "two-stage Deformable DETR" in view.note.text()
    assert "learned embeddings" in view.note.text()

    model = two_stage_model()
    rgb = (np.random.default_rng(0).random((32, 64, 3)) * 255).astype(np.uint8)
    state.set_model(LoadedModel(model, NAMES, "two-stage test"))
    state.set_image(rgb, "noise")
    state.set_result(run_inference(model, rgb, NAMES))
    assert view.pages.currentIndex() == 1
    sel = state.result.query_selection
    assert sorted(_points(view)) == sorted(map(tuple, sel.centres_xy.tolist()))
    colours = {p.brush().color().name() for p in view.tokens_item.points()}
    view.set_colour_by(COLOUR_LEVEL)
    assert {p.brush().color().name() for p in view.tokens_item.points()} != colours

    state.set_threshold(0.0)  # every prediction kept: a start and a final box each, a table row each
    assert _boxes_drawn(view) == sel.num_queries and view.table.rowCount() == sel.num_queries
    state.set_threshold(1.01)
    assert view.table.rowCount() == 0 and _boxes_drawn(view) == 0

    state.set_selected_query(2)
    ring = view.ring_item.points()[0].pos()
    assert (ring.x(), ring.y()) == pytest.approx(tuple(sel.centres_xy[2].tolist()))
    xs, ys = view.start_item.getData()
    x0, y0, x1, y1 = sel.start_boxes_xyxy[2].tolist()
    assert (min(xs), min(ys), max(xs), max(ys)) == pytest.approx((x0, y0, x1, y1))
    assert "Query 2 started from token" in view.caption.text()
    # clicking a token (here: the scatter's own click signal) selects its query
    spot = next(p for p in view.tokens_item.points() if p.data() == 4)
    view.tokens_item.sigClicked.emit(view.tokens_item, [spot], None)
    assert state.selected_query == 4
    rows = view.export_data()
    assert len(rows) == sel.num_queries and {r["level"] for r in rows} <= {1, 2, 3, 4}
    assert_fits(view, EXPLORE_BOTTOM, "Query selection, a two-stage model")
