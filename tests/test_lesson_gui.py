"""Lesson mode in the window, with the bundled model, driven as a teacher would (pytest-qt)."""

import re

import numpy as np
import pyqtgraph as pg
import pytest
import torch
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QLabel, QToolBar

from detr_core.checkpoint import save_checkpoint
from detr_core.config import DETRConfig
from detr_core.model.detr import DETR
from explorer.main_window import BUNDLED_CHECKPOINT, MainWindow

pytestmark = pytest.mark.usefixtures("no_blocking_questions")


def _open(qtbot, settings, checkpoint=BUNDLED_CHECKPOINT, size=(1366, 768)):
    window = MainWindow(settings=settings, checkpoint=checkpoint, runs_folder=settings.fileName() + ".runs")
    qtbot.addWidget(window)
    window.resize(*size)
    window.show()
    qtbot.waitUntil(lambda: window.state.result is not None and window.state.model is not None, timeout=20000)
    return window


@pytest.fixture
def window(qtbot, settings):
    w = _open(qtbot, settings)
    assert not w.lesson.built  # like the analysis views, built when first needed, after the first picture
    w.lesson.show()
    assert w.lesson.built and w.lesson.dock.isVisible()
    yield w
    w.lesson.panel.wait_jobs()
    w.controller.wait(10000)


def _show(window, index):
    panel = window.lesson.panel
    panel.show_page(index)
    page = panel.pages[index]
    assert page.wait(20000)
    QTest.qWait(10)  # deliver a computed view (matching, set loss)
    return page


def _run(qtbot, page):
    with qtbot.waitSignal(page.panel.experimentFinished, timeout=30000):
        page.run_button.click()
    return page.experiment_result


def _next_image(qtbot, window):
    with qtbot.waitSignal(window.state.resultChanged, timeout=20000):
        window.new_toy_sample()


def test_every_page_follows_the_image(qtbot, window):
    panel = window.lesson.panel
    assert len(panel.pages) == 10
    titles = [p.title for p in panel.pages]
    assert [t.split(" · ")[0] for t in titles] == [str(i) for i in range(1, 11)]
    before = {}
    for i in range(10):
        page = _show(window, i)
        assert not page.dirty and page.question and page.text
        before[i] = page.live_data().copy()
    _next_image(qtbot, window)
    for i in range(10):
        page = _show(window, i)
        if i == 7:  # the training page follows training runs, not the image (see its own test)
            continue
        after = page.live_data()
        assert len(after) and (after.shape != before[i].shape or not np.allclose(after, before[i])), page.title
    # the matching page uses the current toy image's own ground truth
    assert "current image (toy sample #1)" in panel.pages[5].info_label.text()
    # a new image while the page computes: it draws again for the newest image
    _next_image(qtbot, window)
    _show(window, 5)
    qtbot.waitUntil(lambda: "toy sample #2" in panel.pages[5].info_label.text(), timeout=20000)
    panel.wait_jobs()


def test_experiments_have_the_expected_effect(qtbot, window):
    panel = window.lesson.panel
    tokens = _run(qtbot, _show(window, 0))
    assert tokens.small_tokens < tokens.full_tokens

    position = _run(qtbot, _show(window, 1))
    assert position.peak_distance_off > position.peak_distance_on  # attention loses its place
    assert "further from" in panel.pages[1].result_label.text()

    distance = _run(qtbot, _show(window, 2))
    assert distance.shape == (window.state.model.config.num_encoder_layers, window.state.model.config.nheads)
    assert (distance > 0).all()

    page = _show(window, 3)
    duplicates = _run(qtbot, page)
    assert duplicates.verdict in ("raised", "unchanged")  # the page reports which
    words = {"raised": "raised the duplicate count", "unchanged": "left the duplicate count unchanged"}
    assert words[duplicates.verdict] in page.result_label.text()

    query = _run(qtbot, _show(window, 4))
    assert window.state.selected_query == query == int(window.state.result.probs[:, -1].argmax())

    comparison = _run(qtbot, _show(window, 6))
    assert comparison.giou_small > comparison.giou_large and comparison.l1_small == pytest.approx(comparison.l1_large)

    point = _run(qtbot, _show(window, 7))
    assert 0 <= point.matched_true_class <= 1 and 0 <= point.unmatched_no_object <= 1

    page = _show(window, 8)
    nms = _run(qtbot, page)
    assert nms.kept and nms.removed == [] and "changed nothing" in page.result_label.text()
    # experiments ran on a copy: the explorer's model has no hooks left
    assert not any(m._forward_hooks for m in window.state.model.model.modules())


def test_the_denoising_page_trains_two_runs_and_draws_their_matching_changes(qtbot, window):
    """Page 10's experiment (DN-DETR's instability, with denoising off and on) at its fewest steps:
    two fresh runs of the fast recipe, each step's matching changes drawn and summed in words."""
    page = _show(window, 9)
    page.steps_spin.setValue(page.steps_spin.minimum())
    steps = page.steps_spin.value()
    comparison = _run(qtbot, page)
    assert len(comparison.off.changes) == len(comparison.on.changes) == steps
    assert list(page.off_curve.getData()[1]) == list(comparison.off.changes)
    assert list(page.on_curve.getData()[1]) == list(comparison.on.changes)
    assert f"{steps} steps each" in page.result_label.text() and "Changes per step" in page.result_label.text()


def _drag(picture, start_yx, end_yx):
    a, b = picture.to_widget(*start_yx).toPoint(), picture.to_widget(*end_yx).toPoint()
    QTest.mousePress(picture, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    QTest.mouseMove(picture, QPoint((a.x() + b.x()) // 2, (a.y() + b.y()) // 2))
    QTest.mouseRelease(picture, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)


def _centre(xyxy):
    return (xyxy[1] + xyxy[3]) / 2, (xyxy[0] + xyxy[2]) / 2  # (y, x)


def test_dragging_ground_truth_boxes_changes_the_assignment(qtbot, window):
    page = _show(window, 5)
    s = page.snapshot
    # the explorer's first toy sample has two ellipses: swap their places by dragging both
    assert s is not None and s.num_targets == 2 and s.target_labels[0] == s.target_labels[1]
    gt = s.target_boxes_xyxy()
    _drag(page.picture, _centre(gt[0]), _centre(gt[1]))
    assert page.snapshot is not s
    _drag(page.picture, _centre(gt[1]), _centre(gt[0]))  # object 1 is drawn on top where both are
    moved = page.snapshot
    assert moved.matched_query(0) == s.matched_query(1) and moved.matched_query(1) == s.matched_query(0)
    assert "assignment changed" in page.result_label.text()
    page.run_button.click()  # reset
    assert page.snapshot is s


def test_pages_follow_the_model(qtbot, window, tmp_path):
    torch.manual_seed(0)
    config = DETRConfig(backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=2,
                        num_decoder_layers=2, dim_feedforward=64, num_queries=8, num_classes=3, dropout=0.0,
                        image_min_size=128, image_max_size=256, decoder_self_attention=False)
    path = save_checkpoint(tmp_path / "small.pt", DETR(config), ["rectangle", "ellipse", "triangle"])
    page = _show(window, 3)
    assert len(page.no_object.values) == 20
    with qtbot.waitSignal(window.state.resultChanged, timeout=20000):
        window.open_checkpoint(path)
    qtbot.waitUntil(lambda: window.state.result.num_queries == 8, timeout=20000)
    assert len(_show(window, 3).live_data()) and len(page.no_object.values) == 8
    encoder = _show(window, 2)
    assert encoder.maps.shape[:2] == (2, 4)  # two encoder layers, four heads now
    # a model trained without decoder self-attention: the experiment says so, the window stays
    page = _show(window, 3)
    assert page.run_experiment()
    page.wait()
    qtbot.waitUntil(lambda: "no self-attention" in page.result_label.text(), timeout=10000)
    assert page.run_button.isEnabled()


def test_training_page_shows_the_probe_results(qtbot, window):
    """The page plots what its probe reports through the state (a real run's process takes tens of
    seconds to start on a loaded machine; the probe itself runs in a trainer in test_lesson_core)."""
    from PySide6.QtCore import QObject, Signal

    from detr_core.analysis import lesson as core
    from detr_core.analysis.matching import matcher_for
    from explorer.state import TrainingSession

    class Worker(QObject):  # a run that has started (its probes' results come through the session)
        probed = Signal(str, object)
        is_running, started_training = True, False

        def add_probe(self, name, probe, every_steps=1):
            pass

        def update_probe(self, name, **attributes):
            pass

    page = _show(window, 7)
    assert "No training run" in page.info_label.text()
    worker = Worker()
    window.state.set_training(TrainingSession(worker))
    ds = window.state.data_source
    images, targets = ds.training_stream.batch(list(range(4)))
    model = window.state.model.model
    for step in (10, 20):
        point = core.no_object_point(model, matcher_for(model, ds.loss_config), images, targets, step)
        worker.probed.emit("lesson_no_object", point)
    assert page.live_data().shape == (4,)
    assert list(page.matched_curve.getData()[0]) == [10, 20]
    assert "step 20" in page.info_label.text()
    worker.is_running = False  # the run is over: the window closes without stopping it


def test_presentation_mode_persists_and_full_screen_is_f11(qtbot, settings, window):
    lesson = window.lesson
    text = lesson.panel.pages[0].text_label
    normal = text.fontInfo().pointSizeF()
    charts = lesson.panel.findChildren(pg.PlotWidget)
    assert len(charts) >= 4
    lesson.act_presentation.setChecked(True)
    assert text.fontInfo().pointSizeF() > normal * 1.5
    for chart in charts:  # the charts' text grows with the rest, for the back of the room
        item = chart.getPlotItem()
        assert item.getAxis("bottom").style["tickFont"].pointSize() >= 13
        assert item.getAxis("left").style["tickFont"].pointSize() >= 13
    titles = lesson.panel.findChildren(QLabel, "lesson_chart_title")
    assert len(titles) >= 4 and all(t.font().pointSizeF() >= 16 for t in titles)
    lesson.act_presentation.setChecked(False)
    assert all(chart.getPlotItem().getAxis("bottom").style["tickFont"] is None for chart in charts)
    lesson.act_presentation.setChecked(True)
    assert not window.findChild(QToolBar, "main_toolbar").isVisible()  # the workspace bar stays
    assert window.findChild(QToolBar, "workspace_toolbar").isVisible()
    assert lesson.act_full_screen.shortcut().toString() == "F11"
    window.close()
    again = _open(qtbot, settings)
    assert again.lesson.act_presentation.isChecked()
    assert not again.findChild(QToolBar, "main_toolbar").isVisible()
    again.lesson.act_presentation.setChecked(False)
    assert all(t.isVisible() for t in again.findChildren(QToolBar))
    again.controller.wait(10000)


def test_export_lesson_writes_every_page(qtbot, window, tmp_path):
    written = window.lesson.export(tmp_path / "handout")
    pngs = sorted((tmp_path / "handout").glob("page_*.png"))
    assert len(pngs) == 10 and all(p.stat().st_size > 1000 for p in pngs)
    html = (tmp_path / "handout" / "lesson.html").read_text(encoding="utf-8")
    for page in window.lesson.panel.pages:
        assert page.title.replace("\"", "&quot;") in html
    assert len(re.findall(r"src='data:image/png;base64,", html)) == 10
    assert written[-1].name == "lesson.html"


def test_pages_6_to_8_take_their_ground_truth_from_the_open_dataset(qtbot, window, tmp_path):
    """With a dataset open whose classes are the model's, matching, the set loss and the training
    page use its images and boxes, not toy samples: the shown dataset image itself when it is one."""
    from detr_core.data.export import write_toy_dataset

    root = write_toy_dataset(tmp_path / "shapes", train=4, val=2, fmt="coco")
    with qtbot.waitSignal(window.state.datasetChanged, timeout=20000):
        assert window.open_dataset(root)
    split = window.state.dataset.splits["train"]
    # the current image is a toy sample: pages 6-8 keep it (it has its ground truth)
    assert "toy sample" in _show(window, 5).info_label.text()
    # an image with no ground truth (a photo): a dataset image stands in, and says which
    with qtbot.waitSignal(window.state.resultChanged, timeout=20000):
        window.state.set_image(np.full((96, 120, 3), 127, np.uint8), "photo.png")
    page = _show(window, 5)
    qtbot.waitUntil(lambda: page.snapshot is not None and "of shapes train" in page.info_label.text(), timeout=20000)
    # a dataset image shown from the Dataset view: its own boxes
    smp = split.sample(2)
    with qtbot.waitSignal(window.state.resultChanged, timeout=20000):
        window.datasets.showImage.emit(smp.image, split.records[2].path.name)
    page = _show(window, 5)
    name = split.records[2].path.name
    qtbot.waitUntil(lambda: f"the current image ({name}" in page.info_label.text(), timeout=20000)
    assert page.snapshot.num_targets == len(smp.labels)
    loss = _show(window, 6)
    qtbot.waitUntil(lambda: f"the current image ({name}" in loss.info_label.text(), timeout=20000)
    assert "Note:" not in loss.info_label.text()
    _run(qtbot, _show(window, 7))
    assert "on 4 images of shapes train" in window.lesson.panel.pages[7].result_label.text()
