"""The lesson in the Lesson workspace (issue 29): every page fits the lesson's dock at the laptop,
small and presentation sizes, its charts show every bar, name and whole title, its mini-plots have
axes and colour bars, its text follows the presentation font, and the training page tells one
model's story. One lesson panel on the bundled model serves the module (a few seconds in all)."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyqtgraph as pg
import pytest
from fit import scroll_needed
from PySide6.QtCore import QObject, QRectF, Signal
from PySide6.QtGui import QFont, QPainter, QPicture
from PySide6.QtWidgets import QApplication, QFrame, QLabel, QScrollArea

from detr_core.analysis import lesson as core
from detr_core.analysis.capture import run_inference
from detr_core.checkpoint import load_model
from detr_core.config import TrainConfig
from detr_core.data.toy import ToyShapes
from detr_core.train.trainer import History
from explorer.lesson.panel import LessonPanel
from explorer.state import AppState, DataSource, LoadedModel, TrainingSession
from explorer.training_worker import TrainedModel

BUNDLED = Path(__file__).resolve().parents[1] / "checkpoints" / "toy_shapes.pt"
SMALL, LAPTOP, PRESENTATION = (1020, 600), (1360, 630), (1276, 640)  # the Lesson workspace's dock
PRESENTATION_POINTS = 14  # the window's font in presentation mode (explorer.lesson)


def _settle() -> None:
    for _ in range(3):
        QApplication.processEvents()


def _show_toy(state: AppState, toy: ToyShapes, index: int) -> None:
    """What New Toy Sample does, with the model run on the GUI thread."""
    image = toy.sample(index).image
    state.set_image(image, f"toy sample #{index}")
    state.set_result(run_inference(state.model.model, image, state.class_names, capture=True))


@pytest.fixture(scope="module")
def lesson(qapp):
    """A lesson panel on the bundled model and the explorer's first toy sample, in a resizable
    scroll area as the Lesson dock holds it (see explorer.lesson.Lesson.panel)."""
    model, ckpt = load_model(BUNDLED)
    state = AppState()
    bundled = LoadedModel(model, ckpt.class_names, ckpt.source, BUNDLED, ckpt)
    state.set_model(bundled)
    toy = ToyShapes(seed=12345, split="explorer")  # the controller's toy images
    _show_toy(state, toy, 0)
    history: dict[str, list[float]] = {}  # what the training panel plots
    panel = LessonPanel(state, toy, lambda: dict(history))
    panel.set_presentation(False)
    area = QScrollArea()
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidgetResizable(True)
    area.setWidget(panel)
    yield SimpleNamespace(state=state, panel=panel, area=area, toy=toy, bundled=bundled, history=history)
    panel.wait_jobs()
    area.close()
    area.deleteLater()


def _presentation(lesson, on: bool, points: float = PRESENTATION_POINTS) -> None:
    """What View ▸ Presentation Mode does: the window's font first, then the panel."""
    font = QFont(QApplication.font())
    if on:
        font.setPointSizeF(points)
    lesson.area.setFont(font)
    lesson.panel.set_presentation(on)


def _show(lesson, index: int, size: tuple[int, int]):
    lesson.area.resize(*size)
    lesson.area.show()
    lesson.panel.show_page(index)
    page = lesson.panel.pages[index]
    assert page.wait(20000)
    _settle()  # a computed view (matching, set loss) is delivered, then laid out
    return page


def _views(page) -> list:
    """What a page shows besides its text: its pictures and charts."""
    from explorer.lesson.widgets import Picture

    return [w for w in page.findChildren(Picture) + page.findChildren(pg.PlotWidget) if w.isVisible()]


def _plots(page) -> list[pg.PlotWidget]:
    return [w for w in page.findChildren(pg.PlotWidget) if w.isVisible()]


# --- defect 7: every page fits, in presentation mode too -------------------------------------------
@pytest.mark.parametrize("size, presentation, scroll_down", [(SMALL, False, True), (LAPTOP, False, False),
                                                              (PRESENTATION, True, False)])
def test_every_page_fits_the_lesson_dock(lesson, size, presentation, scroll_down):
    """No sideways scrolling at any size; none down at the laptop size and in presentation mode,
    where the page's text needs no scrolling either and its picture or charts take a real share
    of the height."""
    _presentation(lesson, presentation)
    try:
        for index, page in enumerate(lesson.panel.pages):
            _show(lesson, index, size)
            sideways, down = scroll_needed(lesson.area)
            assert sideways == 0, (page.title, size)
            if scroll_down:
                continue
            assert down == 0, (page.title, size)
            assert page.side_widget.verticalScrollBar().maximum() == 0, (page.title, size, "its text scrolls")
            tallest = max(v.height() for v in _views(page))
            assert tallest >= 0.4 * size[1], (page.title, size, tallest)
    finally:
        _presentation(lesson, False)
        lesson.panel.wait_jobs()


def test_presentation_text_follows_the_window_font(lesson):
    """In presentation mode the page's text, the chart titles, axis labels and tick values grow
    with the window's font: a larger presentation font (a 1920x1080 projector) makes them larger."""

    def sizes(points):
        _presentation(lesson, True, points)
        page = _show(lesson, 3, PRESENTATION)
        plots = _plots(page)
        axes = [a for p in plots for a in (p.getPlotItem().getAxis("left"), p.getPlotItem().getAxis("bottom"))]
        titles = [w for w in page.findChildren(QLabel) if w.objectName() == "lesson_chart_title"] or \
            [p.getPlotItem().titleLabel.item for p in plots]
        return (page.text_label.fontInfo().pointSizeF(),
                min(t.font().pointSizeF() if isinstance(t, QLabel) else _html_points(t.toHtml()) for t in titles),
                min(a.style["tickFont"].pointSizeF() for a in axes),
                min((_html_points(a.label.toHtml()) for a in axes if a.labelText), default=0.0))

    try:
        at_14 = sizes(PRESENTATION_POINTS)
        text, title, ticks, labels = at_14
        assert text > PRESENTATION_POINTS and title > PRESENTATION_POINTS
        assert ticks >= PRESENTATION_POINTS - 1 and labels >= PRESENTATION_POINTS
        at_18 = sizes(18)
        assert all(big > small for big, small in zip(at_18, at_14)), (at_14, at_18)
    finally:
        _presentation(lesson, False)


def _html_points(html: str) -> float:
    """The last font size a Qt rich text sets (pyqtgraph's labels), in points."""
    import re

    found = re.findall(r"font-size:\s*([\d.]+)pt", html)
    return float(found[-1]) if found else QApplication.font().pointSizeF()


# --- defects 3 and 10: bars, names and titles visible --------------------------------------------
def _viewport(plot: pg.PlotWidget) -> QRectF:
    return QRectF(plot.viewport().rect())


def _in_view(plot: pg.PlotWidget, scene_rect: QRectF) -> bool:
    r = plot.mapFromScene(scene_rect).boundingRect()
    return _viewport(plot).adjusted(-1, -1, 1, 1).contains(QRectF(r))


def _drawn_names(axis: pg.AxisItem) -> list[tuple[QRectF, str]]:
    """The tick texts an axis draws (and where, in its coordinates): pyqtgraph's own drawing
    specs, computed as its paint does."""
    picture = QPicture()
    painter = QPainter(picture)
    if axis.style["tickFont"]:
        painter.setFont(axis.style["tickFont"])
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [(QRectF(rect), text) for rect, _, text in specs[2]] if specs else []


def _title_shown_whole(plot: pg.PlotWidget) -> bool:
    """The chart's title, if it has one, is drawn whole inside the chart."""
    chart = plot.parentWidget()
    label = chart.findChild(QLabel, "lesson_chart_title") if chart is not None else None
    if label is not None and label.isVisible():
        inside = chart.rect().contains(label.geometry())
        return inside and label.heightForWidth(label.width()) <= label.height()
    title = plot.getPlotItem().titleLabel
    if not title.isVisible() or not title.text:
        return True
    return _in_view(plot, title.item.sceneBoundingRect())


def _check_chart(plot: pg.PlotWidget, where: str, every_name: bool, least: int = 2) -> None:
    item = plot.getPlotItem()
    bars = [i for i in item.listDataItems() + item.items if isinstance(i, pg.BarGraphItem)]
    view = item.getViewBox()
    for bar in bars:  # every bar inside the plot's view and on screen
        assert view.sceneBoundingRect().adjusted(-1, -1, 1, 1).contains(bar.sceneBoundingRect()), where
        assert _in_view(plot, bar.sceneBoundingRect()), where
    assert _title_shown_whole(plot), (where, "title cut")
    for name in ("bottom", "left"):
        axis = item.getAxis(name)
        ticks = axis._tickLevels
        if not ticks or not ticks[0]:
            continue  # not an axis of names
        drawn = _drawn_names(axis)
        rects = [axis.mapRectToScene(r) for r, _ in drawn]
        assert all(_in_view(plot, r) for r in rects), (where, name, "a name cut at the edge")
        for k, a in enumerate(rects):  # no two names collide
            assert not any(a.intersects(b) for b in rects[k + 1:]), (where, name, [t for _, t in drawn])
        if every_name:
            assert sorted(t for _, t in drawn) == sorted(t for _, t in ticks[0]), (where, name)
        else:
            assert len(drawn) >= min(least, len(ticks[0])), (where, name)


@pytest.mark.parametrize("size, presentation", [(SMALL, False), (LAPTOP, False), (PRESENTATION, True)])
def test_charts_show_every_bar_name_and_title(lesson, size, presentation):
    """Page 7's set-loss charts (layer 4's bars, the L1 + GIoU bar of the large box), page 4's
    slots (names that do not collide), page 5's classes and page 8's curves."""
    _presentation(lesson, presentation)
    try:
        loss = _show(lesson, 6, size)
        assert loss.run_experiment()
        loss.wait(20000)
        _settle()
        assert len(loss.compare.values) == 6 and len(loss.chart.values) == 3 * 4  # 4 decoder layers
        for index, every_name in ((6, True), (3, False), (4, True), (7, True)):
            page = _show(lesson, index, size)
            for plot in _plots(page):
                if any(isinstance(i, pg.BarGraphItem) for i in plot.getPlotItem().items) or index == 7:
                    _check_chart(plot, f"{page.title} at {size}", every_name)
    finally:
        _presentation(lesson, False)
        lesson.panel.wait_jobs()


@pytest.mark.parametrize("size, presentation", [(SMALL, False), (LAPTOP, False), (PRESENTATION, True)])
def test_mini_plots_have_axes_and_colour_bars(lesson, size, presentation):
    """Pages 2, 3, 4, 6 and 9: the small maps and matrices are plots with labelled axes whose tick
    texts do not collide, and a colour bar that says what a colour means."""
    _presentation(lesson, presentation)
    try:
        _check_mini_plots(lesson, size)
    finally:
        _presentation(lesson, False)
        lesson.panel.wait_jobs()


def _check_mini_plots(lesson, size) -> None:
    for index in (1, 2, 3, 5, 8):
        page = _show(lesson, index, size)
        maps = [p for p in _plots(page) if any(isinstance(i, pg.ImageItem) for i in p.getPlotItem().items)]
        assert maps, page.title
        for plot in maps:
            item = plot.getPlotItem()
            assert item.getAxis("bottom").labelText and item.getAxis("left").labelText, page.title
            bars = [i for i in plot.scene().items() if isinstance(i, pg.ColorBarItem)]
            assert len(bars) == 1, page.title
            # what a colour means: along the bar where it fits its length, else above the plot
            side = bars[0].getAxis("left")
            along = side.labelText and side.label.isVisible() and \
                side.label.document().idealWidth() <= bars[0].getViewBox().height() + 1
            legend = plot.parentWidget().findChild(QLabel, "lesson_chart_legend")
            above = legend is not None and legend.isVisible() and side.labelText in legend.text()
            assert along or above, page.title
            image = next(i for i in item.items if isinstance(i, pg.ImageItem))
            assert image.image is not None and np.isfinite(image.image).any(), page.title
            _check_chart(plot, f"{page.title} at {size}", every_name=False, least=1)


# --- defect 4: the training page tells one model's story ---------------------------------------------
class _Worker(QObject):
    """A training worker as the session sees it: its probe results, whether it runs."""

    probed = Signal(str, object)

    def __init__(self) -> None:
        super().__init__()
        self.is_running = True
        self.started_training = False
        self.probes: list[str] = []

    def add_probe(self, name, probe, every_steps=1) -> None:
        self.probes.append(name)

    def update_probe(self, name, **attributes) -> None:
        pass


def test_training_page_shows_one_models_story(lesson):
    """A run is probed, stops and hands back its model; then the bundled model is opened again:
    page 8 shows the bundled model's loss curve and no probe (it watched another model), and says
    so. Back to the trained model, its probe points come back."""
    state = lesson.state
    data_source = state.data_source
    page = _show(lesson, 7, LAPTOP)
    worker = _Worker()
    state.set_training(TrainingSession(worker))  # Train ▸ Start Training: the page adds its probe
    assert worker.probes == ["lesson_no_object"]
    run = History({"step": [10.0, 20.0, 30.0], "loss": [9.0, 6.0, 4.0]})
    lesson.history.update(run.steps)  # the training panel plots the run
    for step, (true_class, no_object) in ((10, (0.2, 0.6)), (20, (0.4, 0.8))):
        worker.probed.emit("lesson_no_object", core.NoObjectPoint(step, true_class, no_object))
    _settle()
    assert list(page.matched_curve.getData()[0]) == [10, 20] and "step 20" in page.info_label.text()
    # the run stops: its model replaces the bundled one (the window's use_trained)
    worker.is_running = False
    bundled = lesson.bundled
    trained = LoadedModel(bundled.model, bundled.class_names, "trained in this session", None,
                          trained=TrainedModel(bundled.model, bundled.class_names, bundled.config, TrainConfig(),
                                               run, 30, "stopped"))
    state.set_model(trained, DataSource())
    _settle()
    assert list(page.matched_curve.getData()[0]) == [10, 20]
    assert list(page.loss_curve.getData()[0]) == [10, 20, 30]
    # File ▸ Open Checkpoint: the bundled model again; the training panel shows its curves
    lesson.history.clear()
    lesson.history.update(History.from_dict(bundled.checkpoint.history).steps)
    state.set_model(bundled, DataSource())
    _settle()
    steps = History.from_dict(bundled.checkpoint.history).steps["step"]
    assert list(page.loss_curve.getData()[0]) == steps  # its own training ...
    x, _ = page.matched_curve.getData()
    assert x is None or len(x) == 0  # ... and no probe of the run
    assert len(page.live_data()) == 0
    assert "step 20" not in page.info_label.text() and "No probe for toy_shapes.pt" in page.info_label.text()
    # back to the trained model: its story again
    state.set_model(trained, DataSource())
    _settle()
    assert list(page.matched_curve.getData()[0]) == [10, 20] and "step 20" in page.info_label.text()
    state.set_training(None)
    state.set_model(bundled, data_source)
    _settle()


# --- defect 6: page 5 on a new image ----------------------------------------------------------------
def test_prediction_heads_page_selects_the_best_query_of_a_new_image(lesson):
    """New Toy Sample: page 5 shows the new image's best-scoring query, not the slot number that
    was selected on the last image (whose box on this image scores nearly nothing). Page 5 shows
    AppState's selected query (it keeps none of its own): AppState chooses again on a new image."""
    state = lesson.state
    page = _show(lesson, 4, LAPTOP)
    image, name, result, selected = state.image, state.image_name, state.result, state.selected_query
    try:
        _show_toy(state, lesson.toy, 1)
        _settle()
        assert page.query_spin.value() == int(state.result.scores.argmax())
    finally:  # the first image again, as it was
        state.set_image(image, name)
        state.set_result(result)
        state.set_selected_query(selected)
