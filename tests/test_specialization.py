"""Query specialization: the core collection and summaries, and the Qt view."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from PySide6.QtCore import QPoint, Qt

from detr_core.analysis.specialization import (
    LARGE_SIDE,
    BoxSize,
    SlotPredictions,
    collect_slot_predictions,
    size_categories,
    size_category,
    slot_summaries,
)
from detr_core.config import DETRConfig, ToyDataConfig
from detr_core.data.toy import heldout_split
from detr_core.model.detr import DETR
from detr_core.model.postprocess import class_probabilities

NAMES = ["rectangle", "ellipse", "triangle"]


def tiny_config(**changes) -> DETRConfig:
    values: dict = {
        "backbone": "tiny", "tiny_width": 8, "tiny_stride": 16, "d_model": 32, "nheads": 4,
        "num_encoder_layers": 1, "num_decoder_layers": 2, "dim_feedforward": 64, "num_queries": 8,
        "num_classes": 3, "dropout": 0.0, "image_min_size": 128, "image_max_size": 256,
    }
    values.update(changes)
    return DETRConfig(**values)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: the machine is shared, stay modest


@pytest.fixture(scope="module")
def tiny_model() -> DETR:
    torch.manual_seed(0)
    return DETR(tiny_config()).eval()


def synthetic() -> SlotPredictions:
    """4 images, 3 slots with known answers (see test_summaries_on_known_predictions)."""
    boxes = torch.zeros(4, 3, 4)
    # slot 0: centres on the corners of a 0.2 square around (0.3, 0.3), small boxes
    boxes[:, 0] = torch.tensor(
        [[0.2, 0.2, 0.1, 0.1], [0.4, 0.2, 0.1, 0.1], [0.2, 0.4, 0.1, 0.1], [0.4, 0.4, 0.1, 0.1]])
    # slot 1: always the same place, a large tall box
    boxes[:, 1] = torch.tensor([0.7, 0.5, 0.3, 0.6])
    # slot 2: large wide boxes on two images, small on two
    boxes[:, 2] = torch.tensor(
        [[0.5, 0.8, 0.6, 0.3], [0.6, 0.9, 0.6, 0.3], [0.1, 0.1, 0.1, 0.1], [0.2, 0.2, 0.1, 0.1]])
    scores = torch.tensor([[0.9, 0.2, 0.9], [0.8, 0.3, 0.6], [0.75, 0.1, 0.2], [0.95, 0.2, 0.1]])
    labels = torch.tensor([[1, 0, 2], [1, 0, 2], [0, 2, 0], [1, 0, 0]])
    is_object = torch.tensor(
        [[True, False, True], [True, False, True], [True, False, False], [True, False, False]])
    return SlotPredictions(boxes, scores, labels, is_object)


# --- core -------------------------------------------------------------------------------------
def test_size_category_follows_figure_7():
    assert size_category(0.1, 0.1) == BoxSize.SMALL
    assert size_category(0.6, 0.05) == BoxSize.SMALL  # long but thin: sqrt(w*h) ~ 0.17
    assert size_category(0.5, 0.3) == BoxSize.LARGE_WIDE
    assert size_category(0.3, 0.5) == BoxSize.LARGE_TALL
    assert size_category(0.4, 0.4) == BoxSize.LARGE_WIDE  # square counts as wide (w >= h)
    assert size_category(LARGE_SIDE, LARGE_SIDE) != BoxSize.SMALL  # the threshold is inclusive
    assert size_category(LARGE_SIDE * 0.99, LARGE_SIDE * 0.99) == BoxSize.SMALL
    assert size_category(0.3, 0.5, large_side=0.5) == BoxSize.SMALL


def test_vectorised_categories_match_the_scalar_rule():
    torch.manual_seed(1)
    boxes = torch.rand(7, 9, 4)  # [N, Q, 4] cxcywh
    got = size_categories(boxes)
    assert got.shape == (7, 9)
    for i in range(7):
        for q in range(9):
            w, h = boxes[i, q, 2].item(), boxes[i, q, 3].item()
            assert got[i, q].item() == size_category(w, h)


def test_collect_shapes_and_progress(tiny_model):
    dataset = heldout_split(ToyDataConfig(), 20)
    calls = []
    preds = collect_slot_predictions(tiny_model, dataset, 6, batch_size=4,
                                     progress=lambda d, t: calls.append((d, t)))
    assert preds.boxes_cxcywh.shape == (6, 8, 4)
    assert preds.scores.shape == preds.labels.shape == preds.is_object.shape == (6, 8)
    assert preds.is_object.dtype == torch.bool
    assert ((preds.boxes_cxcywh >= 0) & (preds.boxes_cxcywh <= 1)).all()
    assert calls == [(0, 6), (4, 6), (6, 6)]
    # the same as running the model directly on those images
    images, _ = dataset.batch(range(6))
    with torch.no_grad():
        out = tiny_model(images)
    probs = class_probabilities(out["pred_logits"], "softmax")
    torch.testing.assert_close(preds.boxes_cxcywh, out["pred_boxes"])
    torch.testing.assert_close(preds.scores, probs[..., :-1].max(-1).values)
    assert torch.equal(preds.is_object, probs[..., :-1].max(-1).values > probs[..., -1])


def test_collect_is_capped_by_the_dataset_and_restores_training_mode():
    torch.manual_seed(0)
    model = DETR(tiny_config(classifier="focal"))  # left in training mode on purpose
    preds = collect_slot_predictions(model, heldout_split(ToyDataConfig(), 3), 10)
    assert preds.num_images == 3
    assert model.training
    assert torch.equal(preds.is_object, preds.scores > 0.5)  # focal: "no object" is 1 - best score


def test_progress_can_cancel(tiny_model):
    class Stop(Exception):
        pass

    def progress(done: int, total: int) -> None:
        if done >= 2:
            raise Stop()

    with pytest.raises(Stop):
        collect_slot_predictions(tiny_model, heldout_split(ToyDataConfig(), 10), 10, batch_size=2,
                                 progress=progress)


def test_slot_predictions_reject_mismatched_shapes():
    p = synthetic()
    with pytest.raises(ValueError):
        SlotPredictions(p.boxes_cxcywh[:, :2], p.scores, p.labels, p.is_object)


def test_summaries_on_known_predictions():
    s0, s1, s2 = slot_summaries(synthetic(), NAMES)
    assert (s0.query, s0.shown, s0.objects, s0.object_frequency) == (0, 4, 4, 1.0)
    assert s0.dominant_class == "ellipse" and s0.dominant_share == pytest.approx(0.75)
    assert (s0.mean_cx, s0.mean_cy) == pytest.approx((0.3, 0.3))
    assert (s0.std_cx, s0.std_cy) == pytest.approx((0.1, 0.1))
    assert s0.spread == pytest.approx(math.sqrt(0.02))
    assert (s0.small, s0.large_wide, s0.large_tall) == pytest.approx((1.0, 0.0, 0.0))
    assert not s0.never_predicts

    assert s1.never_predicts and s1.objects == 0 and s1.object_frequency == 0.0
    assert s1.dominant_class is None and s1.dominant_share == 0.0
    assert (s1.mean_cx, s1.mean_cy, s1.spread) == pytest.approx((0.7, 0.5, 0.0))
    assert s1.large_tall == 1.0

    assert s2.object_frequency == 0.5 and s2.dominant_class == "triangle" and s2.dominant_share == 1.0
    assert (s2.small, s2.large_wide, s2.large_tall) == pytest.approx((0.5, 0.5, 0.0))


def test_confident_only_filters_centres_but_not_the_frequency():
    s0, s1, s2 = slot_summaries(synthetic(), NAMES, confident_only=True, threshold=0.7)
    assert s0.shown == 4 and s2.shown == 1 and s1.shown == 0
    assert (s2.mean_cx, s2.mean_cy, s2.spread) == pytest.approx((0.5, 0.8, 0.0))
    assert s2.object_frequency == 0.5  # counts every image, whatever the filter
    assert math.isnan(s1.mean_cx) and s1.never_predicts
    assert s1.to_row()["mean_cx"] is None  # exports stay valid JSON
    s0_strict = slot_summaries(synthetic(), NAMES, confident_only=True, threshold=0.85)[0]
    assert s0_strict.shown == 2 and s0_strict.mean_cy == pytest.approx(0.3)
    assert s0_strict.dominant_class == "ellipse" and s0_strict.dominant_share == 1.0


# --- view -------------------------------------------------------------------------------------
@pytest.fixture
def view(qtbot):
    from explorer.state import AppState
    from explorer.views.specialization import SpecializationView

    v = SpecializationView(AppState())
    qtbot.addWidget(v)
    v.resize(1200, 760)
    yield v
    v.cancel_job()
    assert v.wait_job(20000), "the collection thread is still running"


def set_model(view, model, data_config=None):
    """The state's model (and its training data), as the window sets it."""
    from explorer.state import DataSource, LoadedModel

    view.state.set_model(LoadedModel(model, NAMES, "test"), DataSource(data_config))


def many_slots(num_images: int = 30, num_queries: int = 45) -> SlotPredictions:
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(num_images, num_queries, 4, generator=g)
    scores = torch.rand(num_images, num_queries, generator=g)
    labels = torch.randint(0, 3, (num_images, num_queries), generator=g)
    return SlotPredictions(boxes, scores, labels, scores > 0.5)


def shown_points(cell) -> int:
    return len(cell.scatter.data)


def test_view_runs_the_model_off_the_gui_thread(qtbot, view, tiny_model):
    set_model(view, tiny_model, ToyDataConfig())
    view.num_images.setValue(12)
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        assert view.run()
        assert not view.run_button.isEnabled()
    assert view.predictions is not None and view.predictions.boxes_cxcywh.shape == (12, 8, 4)
    assert [c.query for c in view.cells] == list(range(8))
    assert all(shown_points(c) == 12 for c in view.cells)
    assert view.table.rowCount() == 8
    assert view.run_button.isEnabled()
    assert "12 images" in view.status.text()


def test_paging_through_all_slots(view):
    view.set_predictions(many_slots())
    assert len(view.cells) == 20
    assert [c.query for c in view.cells] == list(range(20))
    assert not view.prev_button.isEnabled() and view.next_button.isEnabled()
    view.next_button.click()
    assert [c.query for c in view.cells] == list(range(20, 40))
    view.next_button.click()
    assert [c.query for c in view.cells][:5] == list(range(40, 45))
    assert all(c.query == -1 and shown_points(c) == 0 for c in view.cells[5:])
    assert not view.next_button.isEnabled()
    assert "40–44 of 45" in view.page_label.text()
    view.prev_button.click()
    assert view.cells[0].query == 20
    # the pager is as wide as a long text from the start: it keeps its place as the text grows
    metrics = view.page_label.fontMetrics()
    assert view.page_label.minimumWidth() >= metrics.horizontalAdvance("slots 880–899 of 900 (page 45/45)")


def square_sizes(view) -> set[tuple[int, int]]:
    """The (width, height) of every slot's plot and of its square's view box, in pixels."""
    return {(round(c.plot.geometry().width()), round(c.plot.geometry().height()),
             round(c.plot.vb.width()), round(c.plot.vb.height())) for c in view.cells}


def test_the_squares_are_laid_out_as_soon_as_the_results_arrive(qtbot, view):
    """Right after a run, before the event loop runs again, every square has the same size (the
    one it keeps): the first frame, or a picture taken then, once had a last row of bigger squares
    out of line with the others, laid out before their titles."""
    view.show()
    qtbot.waitExposed(view)
    view.set_predictions(many_slots(num_queries=20))
    sizes = square_sizes(view)
    assert len(sizes) == 1, sizes
    qtbot.wait(30)
    assert square_sizes(view) == sizes


def test_confident_only_changes_what_is_plotted(view):
    preds = many_slots()
    view.set_predictions(preds)
    assert shown_points(view.cells[3]) == 30
    view.threshold.setValue(0.6)
    assert shown_points(view.cells[3]) == 30  # the threshold only matters with the box ticked
    view.confident_only.setChecked(True)
    assert shown_points(view.cells[3]) == int((preds.scores[:, 3] >= 0.6).sum()) < 30
    view.threshold.setValue(0.9)
    assert shown_points(view.cells[3]) == int((preds.scores[:, 3] >= 0.9).sum())
    assert view.table.item(3, 6).text() == str(int((preds.scores[:, 3] >= 0.9).sum()))
    view.confident_only.setChecked(False)
    assert shown_points(view.cells[3]) == 30


def test_never_predicting_slots_are_flagged(view):
    preds = many_slots(num_queries=8)
    preds.is_object[:, 5] = False
    view.set_predictions(preds)
    assert view.table.item(5, 7).text() == "never predicts"
    assert view.table.item(4, 7).text() == ""
    assert "(never)" in view.cells[5].plot.titleLabel.text
    assert "1 never predict" in view.status.text()


def test_clicking_a_slot_selects_that_query(qtbot, view):
    view.set_predictions(many_slots())
    view.show()
    qtbot.waitExposed(view)
    view.next_button.click()
    cell = view.cells[7]  # slot 27
    centre = view.grid.mapFromScene(cell.plot.sceneBoundingRect().center())
    with qtbot.waitSignal(view.state.selectedQueryChanged, timeout=2000) as blocker:
        qtbot.mouseClick(view.grid.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(centre.x(), centre.y()))
    assert blocker.args == [27]
    assert view.selected == 27
    # a table row selects too, and jumps to the slot's page
    with qtbot.waitSignal(view.state.selectedQueryChanged, timeout=2000) as blocker:
        rect = view.table.visualItemRect(view.table.item(2, 1))
        qtbot.mouseClick(view.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == [2]
    assert view.page == 0 and view.cells[2].query == 2


def test_selecting_from_outside_does_not_echo(qtbot, view):
    view.set_predictions(many_slots())
    seen = []
    view.state.selectedQueryChanged.connect(seen.append)
    view.state.set_selected_query(33)  # from outside: the view shows it and does not set it back
    assert seen == [33]
    assert view.page == 1 and view.selected == 33
    assert view.table.currentRow() == 33


def test_cancel_a_long_collection(qtbot, view, tiny_model):
    set_model(view, tiny_model)
    view.num_images.setValue(view.num_images.maximum())
    with qtbot.waitSignal(view.jobCancelled, timeout=20000):
        assert view.run()
        view.cancel_button.click()
    assert view.predictions is None
    assert view.progress_label.text() == "Cancelled."
    assert view.wait_job(5000)


def test_a_new_model_drops_stale_results(qtbot, view, tiny_model):
    set_model(view, tiny_model)
    view.num_images.setValue(4)
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        view.run()
    assert view.predictions is not None
    set_model(view, tiny_model)
    assert view.predictions is None and view.table.rowCount() == 0 and view.cells == []


def test_export_png_csv_and_json(view, tmp_path):
    assert view.export_data() is None
    preds = many_slots(num_images=5, num_queries=8)
    view.set_predictions(preds)
    assert view.export_png(tmp_path / "slots.png")
    assert (tmp_path / "slots.png").stat().st_size > 1000
    assert view.export_data_to(tmp_path / "slots.csv")
    rows = list(csv.DictReader((tmp_path / "slots.csv").open()))
    assert [int(r["query"]) for r in rows] == list(range(8))
    assert {"dominant_class", "mean_cx", "spread", "object_frequency", "never_predicts"} <= set(rows[0])
    view.confident_only.setChecked(True)
    view.threshold.setValue(1.0)  # nothing shown: NaN centres must still give valid JSON
    assert view.export_data_to(tmp_path / "slots.json")
    text = (tmp_path / "slots.json").read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert len(data["slots"]) == 8 and data["slots"][0]["mean_cx"] is None
    assert torch.tensor(data["predictions"]["boxes_cxcywh"]).shape == (5, 8, 4)
    assert data["settings"]["confident_only"] is True


def test_view_says_slots_are_ranks_under_query_selection(qtbot, view, tiny_config):
    """With query selection a slot is a rank among each image's encoder boxes, not a learned
    place: the view says so (the paper's figure assumes the latter)."""
    from dataclasses import replace

    from detr_core.model.detr import DETR

    for select, expected in ((False, False), (True, True)):
        cfg = replace(tiny_config, query_type="anchor", dense_aux=True, classifier="focal", query_select=select)
        set_model(view, DETR(cfg).eval(), ToyDataConfig())
        view.num_images.setValue(4)
        with qtbot.waitSignal(view.jobFinished, timeout=20000):
            assert view.run()
        assert ("slots are ranks" in view.status.text()) == expected
        assert bool(view.status.toolTip()) == expected
