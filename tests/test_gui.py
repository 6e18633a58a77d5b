"""The explorer window, driven as a user would (pytest-qt, offscreen)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_training
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from detr_core.checkpoint import save_checkpoint
from detr_core.config import DETRConfig
from detr_core.model.detr import DETR
from explorer.attention_panel import MODE_CROSS, MODE_ENCODER
from explorer.main_window import BUNDLED_CHECKPOINT, MainWindow

pytestmark = pytest.mark.usefixtures("no_blocking_questions")


SMALL = DETRConfig(backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
                   num_decoder_layers=2, dim_feedforward=64, num_queries=8, num_classes=3, dropout=0.0,
                   image_min_size=128, image_max_size=256)


@pytest.fixture
def small_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = DETR(SMALL)
    with torch.no_grad():  # sharpen attention and the class head: untrained queries then differ
        model.query_embed.weight.mul_(3)
        for layer in model.transformer.decoder.layers:
            layer.multihead_attn.in_proj_weight[: 2 * SMALL.d_model].mul_(4)
        model.class_embed.weight.mul_(10)
    return save_checkpoint(tmp_path / "small.pt", model, ["rectangle", "ellipse", "triangle"])



def _open(qtbot, settings, checkpoint):
    runs = Path(settings.fileName()).parent / "runs"
    window = MainWindow(settings=settings, checkpoint=checkpoint, runs_folder=runs)
    qtbot.addWidget(window)
    window.resize(1200, 800)
    window.show()
    qtbot.waitUntil(lambda: window.state.result is not None and window.state.model is not None, timeout=20000)
    return window


@pytest.fixture
def window(qtbot, settings, small_checkpoint):
    w = _open(qtbot, settings, small_checkpoint)
    w.queries.set_threshold(0.0)  # an untrained model: show every query
    yield w
    if w.training_running:  # (not w.training.is_running: asking for the panel builds every view)
        w.training.stop(wait_ms=30000)
    w.controller.wait(10000)


def _visible_boxes(window):
    return [i for i, r in enumerate(window.canvas.rects) if r.isVisible()]


def test_opens_with_the_bundled_model(qtbot, settings):
    if not BUNDLED_CHECKPOINT.exists():
        pytest.fail("checkpoints/toy_shapes.pt is missing")
    w = _open(qtbot, settings, BUNDLED_CHECKPOINT)
    assert w.state.model.path == BUNDLED_CHECKPOINT
    assert w.state.image is not None and w.state.image.shape == (128, 128, 3)
    assert "tiny" in w.model_label.text() and "queries" in w.model_label.text()
    assert len(_visible_boxes(w)) >= 1  # the trained model finds the toy sample's shapes
    w.controller.wait(10000)


def test_loading_an_image_shows_boxes(qtbot, window, tmp_path):
    path = tmp_path / "photo.jpg"
    rgb = (np.random.default_rng(0).random((90, 160, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    with qtbot.waitSignal(window.state.resultChanged, timeout=20000):
        window.open_image(path)
    assert window.state.image.shape == (90, 160, 3)
    assert window.state.image_name == "photo.jpg"
    assert len(_visible_boxes(window)) == SMALL.num_queries
    assert window.state.result.image_size == (90, 160)
    assert str(path) in window.recent_files()


def test_unchecking_a_query_hides_its_box(window):
    assert 3 in _visible_boxes(window)
    model = window.queries.model
    model.setData(model.index(3, 0), Qt.CheckState.Unchecked, Qt.ItemDataRole.CheckStateRole)
    assert 3 not in _visible_boxes(window)
    window.queries.btn_none.click()
    assert _visible_boxes(window) == []
    window.queries.btn_all.click()
    assert len(_visible_boxes(window)) == SMALL.num_queries


def test_threshold_changes_which_boxes_are_shown(window):
    scores = window.state.result.scores.numpy()
    splits = [t / 100 for t in range(101) if 0 < (scores >= t / 100).sum() < len(scores)]
    assert splits, scores  # an untrained softmax head spreads its scores enough to split them
    t = splits[len(splits) // 2]
    window.queries.set_threshold(t)
    shown = set(_visible_boxes(window))
    assert shown == {i for i, s in enumerate(scores) if s >= t}
    assert 0 < len(shown) < SMALL.num_queries
    window.queries.show_all_slots.setChecked(True)  # the others come back, dimmed
    assert len(_visible_boxes(window)) == SMALL.num_queries
    below = [i for i, s in enumerate(scores) if s < t][0]
    assert window.canvas.rects[below].pen().style() == Qt.PenStyle.DashLine


def _heat(window):
    return window.canvas.heat_item.image.copy()


def test_layer_and_head_change_the_heatmap(window, monkeypatch):
    assert window.attention.mode == MODE_CROSS and window.canvas.heat_item.isVisible()
    submit, submitted = window.controller.queue.submit, []
    monkeypatch.setattr(window.controller.queue, "submit", lambda *a, **k: submitted.append(a) or submit(*a, **k))
    before = _heat(window)
    window.attention.layer.setCurrentIndex(0)
    after_layer = _heat(window)
    assert not np.allclose(before, after_layer)
    window.attention.head.setCurrentIndex(2)  # head 2 instead of the mean
    after_head = _heat(window)
    assert not np.allclose(after_layer, after_head)
    # the drawn map is this query's attention in that layer and head
    from detr_core.analysis.heatmaps import cross_attention_map

    expected = cross_attention_map(window.state.result, window.state.selected_query, 0, 1, smooth=True)
    np.testing.assert_allclose(after_head, expected, rtol=1e-5, atol=1e-9)  # attention weights, unscaled
    assert window.canvas.colorbar.isVisible()
    assert window.canvas.colorbar.levels() == pytest.approx((0.0, float(expected.max())))
    assert submitted == []  # redrawn from cache: no inference ran


def test_selecting_a_box_or_row_selects_the_query_everywhere(window):
    x0, y0, x1, y1 = window.state.result.boxes_xyxy[5].tolist()
    window.queries.btn_none.click()
    model = window.queries.model
    model.setData(model.index(5, 0), Qt.CheckState.Checked, Qt.ItemDataRole.CheckStateRole)
    window.canvas.click_image((y0 + y1) / 2, (x0 + x1) / 2)
    assert window.state.selected_query == 5
    assert window.queries.table.selectionModel().currentIndex().row() == 5
    window.queries.btn_all.click()
    window.queries.table.selectRow(2)
    assert window.state.selected_query == 2
    assert window.canvas.rects[2].pen().width() == 4


def test_a_view_behind_a_tab_draws_the_selected_query_when_its_tab_comes_forward(qtbot, window):
    layers_dock = window.workspaces.show_dock("layers")  # the Analyse workspace
    qtbot.waitUntil(lambda: window.layers.result is not None and window.layers.on_screen, timeout=20000)
    window.state.set_selected_query(1)
    assert window.layers.legend.text().startswith("Query 1:")
    window.docks["matching"].raise_()  # the tab beside it
    qtbot.waitUntil(lambda: not window.layers.on_screen, timeout=5000)
    window.state.set_selected_query(4)
    assert window.layers.selected_query == 4
    assert window.layers.legend.text().startswith("Query 1:")  # not redrawn while unseen
    layers_dock.raise_()
    qtbot.waitUntil(lambda: window.layers.legend.text().startswith("Query 4:"), timeout=5000)
    assert window.layers.table.item(0, 0).text() == "L1"


def test_clicking_a_point_shows_encoder_self_attention(window):
    window.canvas.click_image(40.0, 90.0, shift=True)
    assert window.attention.mode == MODE_ENCODER
    assert window.canvas.heat_item.isVisible()
    assert window.state.encoder_point == (40.0, 90.0)
    maps = window.state.result.encoder_attention_at(40.0, 90.0)
    from detr_core.analysis.heatmaps import encoder_attention_map

    expected = encoder_attention_map(maps, window.state.result, window.attention.layer_index, None)
    np.testing.assert_allclose(_heat(window), expected, rtol=1e-5, atol=1e-9)
    assert window.canvas.marker.data["x"][0] == pytest.approx(90.0)


def test_a_bad_image_gives_a_message_and_keeps_the_previous_one(qtbot, window, tmp_path):
    before = window.state.image.copy()
    name = window.state.image_name
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    with qtbot.waitSignal(window.errorShown, timeout=10000) as blocker:
        window.open_image(bad)
    assert "broken.png" in blocker.args[0]
    assert np.array_equal(window.state.image, before) and window.state.image_name == name
    with qtbot.waitSignal(window.errorShown, timeout=10000):
        window.open_image(tmp_path / "missing.jpg")
    assert np.array_equal(window.state.image, before)


def test_a_bad_checkpoint_gives_a_message_and_keeps_the_model(qtbot, window, tmp_path):
    model = window.state.model.model
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage" * 100)
    with qtbot.waitSignal(window.errorShown, timeout=10000) as blocker:
        window.open_checkpoint(bad)
    assert "bad.pt" in blocker.args[0]
    assert window.state.model.model is model



def test_start_then_stop_training(qtbot, window):
    small_training(window)
    panel = window.training
    with qtbot.waitSignal(panel.running, timeout=10000):
        panel.btn_start.click()
    assert panel.is_running
    qtbot.waitUntil(lambda: len(panel.plots.steps) >= 2, timeout=60000)
    assert "loss" in panel.plots.data
    with qtbot.waitSignal(window.state.modelChanged, timeout=60000):
        panel.btn_stop.click()
    qtbot.waitUntil(lambda: not panel.is_running, timeout=30000)
    assert not panel.worker.is_running
    assert not panel.worker.session.alive and panel.worker.session.exitcode == 0  # no process left
    assert window.state.model.unsaved and window.state.model.trained is not None
    assert window.state.model.trained.step == len(panel.plots.steps)
    assert "*" in window.windowTitle()


def test_single_steps(qtbot, window):
    small_training(window)
    panel = window.training
    panel.btn_step.click()
    qtbot.waitUntil(lambda: len(panel.plots.steps) == 1, timeout=60000)
    panel.btn_step.click()
    qtbot.waitUntil(lambda: len(panel.plots.steps) == 2, timeout=60000)
    qtbot.wait(300)
    assert len(panel.plots.steps) == 2 and panel.btn_pause.text() == "Resume"
    panel.stop(wait_ms=30000)
    qtbot.waitUntil(lambda: not panel.is_running, timeout=30000)


def test_closing_while_training_stops_it_and_asks_to_save(qtbot, window, monkeypatch):
    small_training(window)
    panel = window.training
    panel.btn_start.click()
    qtbot.waitUntil(lambda: len(panel.plots.steps) >= 1, timeout=60000)
    asked = []

    def answer(parent, title, text, *args, **kwargs):
        asked.append(title)
        return QMessageBox.StandardButton.Yes if title == "Training is running" else QMessageBox.StandardButton.Discard

    monkeypatch.setattr(QMessageBox, "question", answer)
    worker = panel.worker
    assert not window.close()  # the window stays (and answers) while the run stops, then closes
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30000)
    assert asked == ["Training is running", "Unsaved trained weights"]
    assert not worker.is_running and not worker.session.alive


def test_a_non_finite_loss_in_training_is_shown_and_the_app_stays_up(qtbot, window, monkeypatch):
    from dataclasses import replace

    from detr_core.config import LossConfig

    small_training(window)
    panel = window.training
    model_cfg, train_cfg = panel.configs()
    loss = LossConfig()
    loss.weight_bbox = float("inf")  # set past validation (which refuses it): the loss is inf at step 1
    broken = replace(train_cfg, loss=loss)
    monkeypatch.setattr(panel, "configs", lambda: (model_cfg, broken))
    with qtbot.waitSignal(window.errorShown, timeout=60000) as blocker:
        panel.btn_start.click()
    assert "loss is inf" in blocker.args[0]
    qtbot.waitUntil(panel.btn_start.isEnabled, timeout=30000)  # ready for another try
    assert not panel.is_running and not panel.worker.session.alive
    window.new_toy_sample()  # and the rest of the window still works
    qtbot.waitUntil(lambda: window.state.result is not None and window.state.image_name.startswith("toy"), timeout=20000)


def test_save_export_and_settings_persist(qtbot, window, settings, tmp_path, small_checkpoint):
    out = tmp_path / "saved.pt"
    assert window.save_checkpoint(out)
    assert out.exists() and window.state.model.path == out
    png = tmp_path / "view.png"
    assert window.export_png(png)
    assert Image.open(png).size[0] > 100
    window.queries.set_threshold(0.37)
    window.attention.colormap.setCurrentText("viridis")
    window.close()
    again = _open(qtbot, settings, small_checkpoint)
    assert again.queries.threshold == pytest.approx(0.37)
    assert again.attention.colormap.currentText() == "viridis"
    assert str(out) in again.recent_files()
    again.controller.wait(10000)


def test_new_toy_sample_and_dropped_checkpoint(qtbot, window, small_checkpoint):
    first = window.state.image.copy()
    with qtbot.waitSignal(window.state.resultChanged, timeout=20000):
        window.act_sample.trigger()
    assert not np.array_equal(first, window.state.image)
    with qtbot.waitSignal(window.state.modelChanged, timeout=20000):
        window.open_path(Path(small_checkpoint))
    assert window.state.model.path == Path(small_checkpoint)


def test_attention_grid_shows_kept_queries(window):
    window.grid_dock.raise_()
    window.grid_dock.show()
    window.queries.set_threshold(0.0)
    window.grid.redraw()
    assert len(window.grid.cells) == SMALL.num_queries
    window.queries.set_threshold(1.0)
    assert len(window.grid.cells) == 0


def test_the_splash_shows_before_torch_is_imported():
    """``run_app`` puts up its splash before the slow imports: the module it lives in must not
    pull in torch (checked in a fresh interpreter)."""
    import os
    import subprocess
    import sys

    code = ("import sys; from PySide6.QtWidgets import QApplication; app = QApplication([]); "
            "from explorer.app import make_splash; s = make_splash(); s.show(); app.processEvents(); "
            "print('torch' in sys.modules, s.message())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, check=True)
    assert out.stdout.strip() == "False Loading PyTorch…"


def test_an_opened_checkpoint_shows_the_curves_of_its_training(qtbot, settings):
    from detr_core.checkpoint import load_checkpoint

    w = _open(qtbot, settings, BUNDLED_CHECKPOINT)
    history = load_checkpoint(BUNDLED_CHECKPOINT).history["steps"]
    plots = w.training.plots  # built after the first result, told the model then
    assert plots.steps == history["step"]
    x, y = plots.curves["loss"].getOriginalDataset()  # (what it draws is thinned to the pixels)
    assert len(x) == len(history["step"]) and np.allclose(y, history["loss"], equal_nan=True)
    assert "4000 steps" in w.training.progress_label.text()
    w.controller.wait(10000)


def test_the_held_out_ap_plot_says_its_latest_figures(qtbot):
    """The AP curve cannot be read to two decimals: its title says the latest AP and AP50."""
    from detr_core.train.trainer import EvalEvent
    from explorer.training_panel import AP_TITLE, LossPlots

    plots = LossPlots()
    qtbot.addWidget(plots)
    plots.reset()
    assert plots.ap_plot.titleLabel.text == AP_TITLE
    plots.add_eval(EvalEvent(200, 20.0, {"AP": 0.4123, "AP50": 0.7}, 1.0))
    plots.add_eval(EvalEvent(400, 40.0, {"AP": 0.6789, "AP50": 0.912}, 1.0))
    assert plots.ap_plot.titleLabel.text == f"{AP_TITLE}: AP 0.68, AP50 0.91 at step 400"
    assert list(plots.ap_curve.getData()[1]) == [0.4123, 0.6789]
    plots.reset()  # a new run
    assert plots.ap_plot.titleLabel.text == AP_TITLE
