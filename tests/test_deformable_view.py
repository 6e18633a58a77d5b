"""The deformable attention view: the right number of sampling points per level and head, updated
on layer, head and level changes, the encoder's points for a clicked pixel, a dense model's heatmap
beside them, and a page that says what to do when the open model is dense."""

import numpy as np
import pytest
import torch

from detr_core.analysis.capture import run_inference
from detr_core.model.detr import DETR
from detr_core.model.registry import build_model
from explorer.state import AppState, LoadedModel
from explorer.views.deformable import MODE_PIXEL, DeformableView
from tests.test_deformable import tiny_deformable

NAMES = ["rectangle", "ellipse", "triangle"]


@pytest.fixture
def view(qtbot, tiny_config):
    state = AppState()
    v = DeformableView(state)
    qtbot.addWidget(v)
    v.resize(900, 500)
    v.show()
    torch.manual_seed(0)
    dense = DETR(tiny_config).eval()
    state.set_model(LoadedModel(dense, NAMES, "a dense test model"))  # remembered for the comparison
    assert v.pages.currentIndex() == 0 and "open or train a deformable model" in v.dense_note.text()
    model = build_model(tiny_deformable(with_box_refine=True)).eval()
    rgb = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    state.set_model(LoadedModel(model, NAMES, "test"))
    state.set_image(rgb, "noise")
    state.set_result(run_inference(model, rgb, NAMES))
    yield v
    v.cancel_job()
    v.wait_job(10000)


def _count(v):
    return len(v.points_item.data)


def test_points_per_level_and_head_follow_the_toggles_and_layers(qtbot, view):
    assert view.pages.currentIndex() == 1
    s = view.sampling
    heads, levels, points = s.num_heads, s.num_levels, s.num_points
    assert len(view.level_boxes) == levels and len(view.head_boxes) == heads
    view.state.set_selected_query(3)
    assert _count(view) == heads * levels * points
    view.set_level_visible(1, False)
    assert _count(view) == heads * (levels - 1) * points
    view.set_head_visible(0, False)
    assert _count(view) == (heads - 1) * (levels - 1) * points
    drawn = sorted(map(tuple, np.round(view.shown_points()[0], 3)))
    expected = s.decoder_points[view.layer_slider.value(), 3, 1:][:, [0, 2, 3]].reshape(-1, 2).numpy()
    assert drawn == sorted(map(tuple, np.round(expected, 3)))
    before = [tuple(p.pos()) for p in view.points_item.points()]
    view.set_layer(0)
    assert view.state.layer == 0 and "decoder layer 1 of 2" in view.layer_label.text()
    after = [tuple(p.pos()) for p in view.points_item.points()]
    assert after != before
    ref = view.reference_item.points()[0].pos()
    assert np.allclose((ref.x(), ref.y()), s.decoder_references[0, 3].numpy())
    view.state.set_selected_query(4)
    assert [tuple(p.pos()) for p in view.points_item.points()] != after
    rows = view.export_data()
    assert len(rows) == _count(view) and {r["level"] for r in rows} == {1, 3, 4}


def test_a_clicked_pixel_shows_the_encoders_points_and_the_dense_heatmap_is_beside(qtbot, view):
    qtbot.waitUntil(lambda: view.dense_result is not None, timeout=20000)
    assert view.heat_item.image is not None and "a dense test model" in view.dense_caption.text()
    view.show_pixel(20.0, 40.0)
    assert view.mode == MODE_PIXEL and "encoder layer 1 of 1" in view.layer_label.text()
    s = view.sampling
    assert _count(view) == s.num_heads * s.num_levels * s.num_points
    ref = view.reference_item.points()[0].pos()
    _, cy, cx = s.cell_centre(s.token_at(20.0, 40.0, 0))
    assert (ref.x(), ref.y()) == pytest.approx((cx, cy))
    view.pixel_level.setCurrentIndex(2)  # the same pixel, on the coarser level's token
    ref2 = view.reference_item.points()[0].pos()
    assert (ref2.x(), ref2.y()) != (ref.x(), ref.y())


@pytest.mark.usefixtures("no_blocking_questions")
def test_the_window_opens_a_deformable_checkpoint_and_every_view_says_what_it_shows(qtbot, settings, tmp_path,
                                                                                    tiny_config):
    from detr_core.checkpoint import save_checkpoint
    from explorer.attention_panel import DEFORMABLE_NOTE
    from explorer.main_window import MainWindow

    torch.manual_seed(0)
    dense = save_checkpoint(tmp_path / "dense.pt", DETR(tiny_config).eval(), NAMES)
    deformable = save_checkpoint(tmp_path / "deformable.pt", build_model(tiny_deformable()).eval(), NAMES)
    w = MainWindow(settings=settings, checkpoint=dense, runs_folder=tmp_path / "runs")
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    try:
        qtbot.waitUntil(lambda: w.state.result is not None, timeout=20000)
        assert w.deformable.pages.currentIndex() == 0
        w.open_checkpoint(deformable)
        qtbot.waitUntil(lambda: w.state.result is not None and w.state.result.deformable is not None, timeout=20000)
        w.deformable_dock.raise_()
        assert w.deformable.pages.currentIndex() == 1
        w.state.set_selected_query(0)
        s = w.state.result.deformable
        qtbot.waitUntil(lambda: len(w.deformable.points_item.data) == s.num_heads * s.num_levels * s.num_points,
                        timeout=5000)
        assert w.attention.info.text() == DEFORMABLE_NOTE
        w.grid_dock.raise_()
        qtbot.waitUntil(lambda: w.grid.note.text() == DEFORMABLE_NOTE, timeout=5000)
        qtbot.waitUntil(lambda: w.deformable.dense_result is not None, timeout=20000)  # the dense one, kept
        w.deformable.train_button.click()
        assert w.training.preset.currentText() == "deformable"
    finally:
        for view in w.views:
            view.cancel_job()
            view.wait_job(10000)
        w.controller.shutdown(10000)


def test_without_a_dense_model_open_before_the_bundled_one_is_opened_off_the_gui_thread(qtbot, tmp_path,
                                                                                        tiny_config):
    from detr_core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    bundled = save_checkpoint(tmp_path / "bundled.pt", DETR(tiny_config).eval(), NAMES)
    model = build_model(tiny_deformable()).eval()
    not_dense = save_checkpoint(tmp_path / "deformable.pt", model, NAMES)
    rgb = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    for path, opens in ((bundled, True), (not_dense, False)):
        state = AppState()
        v = DeformableView(state, bundled_dense=path)
        qtbot.addWidget(v)
        state.set_model(LoadedModel(model, NAMES, "test"))
        state.set_image(rgb, "noise")
        state.set_result(run_inference(model, rgb, NAMES))
        v.wait_job(20000)
        qtbot.waitUntil(lambda: not v.busy, timeout=20000)
        if opens:
            qtbot.waitUntil(lambda: v.dense_result is not None, timeout=5000)
            assert v.dense_model.path == bundled
        else:
            qtbot.waitUntil(lambda: "could not be opened" in v.dense_caption.text(), timeout=5000)
            assert "not a dense DETR" in v.dense_caption.text() and v.bundled_dense is None
