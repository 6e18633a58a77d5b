"""The training panel's one table of settings (issue 29): a preset shown in the panel and read
back is the preset; a table row without its widget fails when the panel is made."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtCore import QObject, Signal

from detr_core.presets import preset


def _flat(config: object, prefix: str = "") -> dict[str, object]:
    """Every field of a (nested) config dataclass, by dotted name."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_flat(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = value
    return out


@pytest.fixture
def panel(qtbot):
    from explorer.training_panel import TrainingPanel

    p = TrainingPanel()
    qtbot.addWidget(p)
    return p


@pytest.mark.parametrize("name", ["fast", "vanilla", "deformable", "dino", "rt_detr"])
def test_a_preset_shown_in_the_panel_reads_back_as_the_preset(panel, name):
    from detr_core.presets import preset_papers
    from explorer.training_panel import SETTINGS

    assert panel.preset.findText(name) >= 0  # offered in the list
    panel.preset.setCurrentText(name)
    assert preset_papers(name) in panel.preset.toolTip()  # which paper each of its levers comes from
    model, train = panel.configs()
    want_model, want_train = preset(name)
    # the panel's own fields (a preset does not set them) are what its widgets say
    own = {row.field: row.from_widget(panel._widget(row).value()) for row in SETTINGS if row.to_widget is None}
    assert own == {"eval_every": 200}
    want_train = dataclasses.replace(want_train, **own)
    assert _flat(model) == _flat(want_model)
    assert _flat(train) == _flat(want_train)


# (preset, the panel's widget, the field it sets): every lever the dino and rt_detr presets turn on
NEW_LEVERS = [
    ("dino", "dn_contrastive", "dn_contrastive"),
    ("dino", "dn_box_noise", "dn_box_noise"),
    ("dino", "dn_label_noise", "dn_label_noise"),
    ("dino", "query_select", "query_select"),
    ("dino", "look_forward_twice", "look_forward_twice"),
    ("dino", "feature_levels", "num_feature_levels"),
    ("deformable", "anchor", "query_type"),
    ("rt_detr", "query_content", "query_content"),
    ("rt_detr", "hybrid_encoder", "hybrid_encoder"),
    ("rt_detr", "varifocal", "loss.varifocal"),
]


def test_each_dino_and_rt_detr_lever_changes_exactly_its_field(panel):
    """Toggling a lever's check box (or moving its spin box) on the preset that uses it changes
    that one field of the configs the panel gives, and every lever names its paper."""
    from PySide6.QtWidgets import QCheckBox

    for name, widget_name, field in NEW_LEVERS:
        panel.preset.setCurrentText(name)
        model, train = panel.configs()
        before = {**_flat(model), **{"loss." + k: v for k, v in _flat(train.loss).items()}}
        widget = getattr(panel, widget_name)
        assert widget.isEnabled() and "et al. 20" in widget.toolTip(), widget_name
        if isinstance(widget, QCheckBox):
            widget.toggle()
        else:
            widget.setValue(widget.value() + (1 if isinstance(widget.value(), int) else 0.1))
        model, train = panel.configs()
        after = {**_flat(model), **{"loss." + k: v for k, v in _flat(train.loss).items()}}
        assert {k for k in after if after[k] != before[k]} == {field}, (name, widget_name)
    # a lever the others rule out is greyed out and off in the configs
    panel.preset.setCurrentText("dino")
    panel.dn_groups.setValue(0)
    assert not panel.dn_contrastive.isEnabled() and panel.dn_contrastive.isChecked()
    assert panel.configs()[0].dn_contrastive is False
    panel.query_select.setChecked(False)
    panel.preset.setCurrentText("rt_detr")
    panel.query_select.setChecked(False)
    assert not panel.query_content.isEnabled() and panel.configs()[0].query_content == "learned"
    panel.preset.setCurrentText("fast")
    assert not panel.hybrid_encoder.isEnabled() and not panel.query_content.isEnabled()
    assert not panel.feature_levels.isEnabled() and not panel.dn_box_noise.isEnabled()  # nothing they act on
    assert panel.configs()[0].dn_box_noise == preset("fast")[0].dn_box_noise  # kept, as the preset has it


def test_derived_fields_follow_d_model(panel):
    panel.d_model.setCurrentText("128")
    model, _ = panel.configs()
    assert (model.d_model, model.dim_feedforward, model.nheads) == (128, 512, 4)


def test_fine_tuning_loads_and_reads_the_fine_tuning_recipe(panel, monkeypatch):
    from detr_core.train.finetune import finetune_train_config

    monkeypatch.setattr(type(panel), "fine_tuning", property(lambda self: True))
    panel.load_preset("vanilla")
    _, train = panel.configs()
    recipe = finetune_train_config()
    assert (train.lr, train.lr_backbone, train.batch_size) == (recipe.lr, recipe.lr_backbone, recipe.batch_size)
    assert train.steps == 0 and train.max_seconds == preset("vanilla")[1].max_seconds  # the panel's minutes


def test_a_setting_without_its_widget_fails_when_the_panel_is_made(qtbot, monkeypatch):
    from explorer import training_panel

    broken = (*training_panel.SETTINGS, training_panel.Setting("num_classes", "classes"))
    monkeypatch.setattr(training_panel, "SETTINGS", broken)
    with pytest.raises(LookupError, match="no widget 'classes'"):
        training_panel.TrainingPanel()


def test_a_setting_the_configs_do_not_have_fails_when_the_panel_is_made(qtbot, monkeypatch):
    from explorer import training_panel

    broken = (*training_panel.SETTINGS, training_panel.Setting("num_querys", "queries"))
    monkeypatch.setattr(training_panel, "SETTINGS", broken)
    with pytest.raises(LookupError, match="num_querys"):
        training_panel.TrainingPanel()


def test_the_data_line_names_every_format_a_dataset_can_be_opened_in():
    """Defect 12: the panel's data line listed COCO and VOC, not YOLO."""
    from explorer.dataset_training import describe

    line = describe(None, None)
    assert all(name in line for name in ("COCO", "VOC", "YOLO")), line


# --- the held-out AP plot (defect 8) ---------------------------------------------------------------
class FakeWorker(QObject):
    """A training run without its process: the panel's signals, fed by the test."""

    trainingStarted = Signal(dict)
    threadsChanged = Signal(int, str)
    progress = Signal(list)
    evaluated = Signal(object)
    preview = Signal(object, object)
    failed = Signal(str)
    trained = Signal(object)
    finished = Signal()

    def __init__(self, model_config, train_config, image, start_paused=False, parent=None, **_):  # noqa: ANN001
        super().__init__(parent)
        self.train_config = train_config
        self.is_running = self.ended = False
        self.paused = start_paused

    def start(self) -> None:
        self.is_running = True

    def stop(self) -> None:
        self.is_running, self.ended = False, True
        self.finished.emit()

    def release(self) -> None:
        pass


@pytest.fixture
def fake_runs(monkeypatch):
    from explorer import training_panel

    monkeypatch.setattr(training_panel, "TrainingWorker", FakeWorker)


def steps(first: int, last: int, total: int = 1000) -> list:
    from detr_core.train.trainer import StepEvent

    return [StepEvent(s, {"loss": 3.0 / s, "loss_ce": 1.0 / s, "loss_bbox": 0.5 / s, "loss_giou": 0.8 / s},
                      1e-3, 60.0, s * 0.1, s / total) for s in range(first, last + 1)]


def drawn_axis_labels(axis) -> list[tuple[str, bool]]:
    """The tick labels a left axis draws, each with whether it fits in the axis's width (".5":
    it did not)."""
    from PySide6.QtGui import QImage, QPainter

    image = QImage(200, 400, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        _, _, texts = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    width = axis.size().width()
    return [(text, 0 <= rect.left() and rect.right() <= width) for rect, _, text in texts]


def bundled_model():
    from detr_core.checkpoint import load_checkpoint
    from explorer.main_window import BUNDLED_CHECKPOINT
    from explorer.state import LoadedModel

    ckpt = load_checkpoint(BUNDLED_CHECKPOINT)
    return LoadedModel(ckpt.build_model(), ckpt.class_names, ckpt.source, BUNDLED_CHECKPOINT, ckpt)


def test_the_bundled_models_empty_ap_plot_says_why_and_shows_no_legend(qtbot, panel):
    from tests.fit import fit_in

    panel.set_open_model(bundled_model())  # its file has 4000 steps of curves, no evaluation
    fit_in(panel, 1360, 300)
    plots = panel.plots
    assert len(plots.steps) == 4000 and plots.ap_steps == []
    assert plots.ap_plot.legend.items == []  # no markers that look like data
    low, high = plots.ap_plot.getViewBox().viewRange()[1]
    assert low <= 0 and high >= 1
    labels = drawn_axis_labels(plots.ap_plot.getAxis("left"))
    assert {"0", "0.5", "1"} <= {text for text, _ in labels}
    assert all(inside for _, inside in labels), labels  # none cut (".5")
    assert plots.ap_note.isVisible() and "No evaluations in this checkpoint" in plots.ap_note.textItem.toPlainText()


def test_the_curves_follow_the_model_shown(qtbot, panel):
    """Its file's curves, its run's (back to a model trained in this session), or none."""
    from detr_core.train.trainer import History
    from explorer.state import LoadedModel
    from explorer.training_worker import TrainedModel

    bundled = bundled_model()
    panel.set_open_model(bundled)
    assert len(panel.plots.steps) == 4000
    ckpt = bundled.checkpoint
    history = History({"step": [1.0, 2.0, 3.0], "loss": [3.0, 2.0, 1.0]}, [{"step": 3, "AP": 0.5, "AP50": 0.7}])
    trained = TrainedModel(bundled.model, ckpt.class_names, ckpt.model_config, ckpt.train_config, history, 3, "finished")
    panel.set_open_model(LoadedModel(bundled.model, ckpt.class_names, "trained in this session", trained=trained))
    assert panel.plots.steps == [1.0, 2.0, 3.0] and panel.plots.ap == [0.5] and not panel.plots.ap_note.isVisible()
    assert panel.progress_label.text() == "The curves of the model trained in this session: 3 steps."

    bare = dataclasses.replace(ckpt, history=None)  # a file that keeps no curves
    panel.set_open_model(LoadedModel(bundled.model, ckpt.class_names, ckpt.source, bundled.path, bare))
    assert panel.plots.steps == [] and panel.plots.ap == []
    assert "No evaluations in this checkpoint" in panel.plots.ap_note.textItem.toPlainText()
    assert panel.progress_label.text() == "toy_shapes.pt keeps no training curves."


def test_a_run_says_when_its_first_evaluation_comes_and_its_points_join_the_legend(qtbot, panel, fake_runs):
    from detr_core.train.trainer import EvalEvent

    panel.eval_every.setValue(150)
    assert panel.start()
    plots = panel.plots
    assert plots.ap_note.isVisible() and "the first at step 150" in plots.ap_note.textItem.toPlainText()
    assert plots.ap_plot.legend.items == []
    panel.worker.progress.emit(steps(1, 149))
    assert plots.ap_note.isVisible()
    panel.worker.evaluated.emit(EvalEvent(150, 15.0, {"AP": 0.25, "AP50": 0.5}, 1.0))
    assert not plots.ap_note.isVisible()
    assert [label.text for _, label in plots.ap_plot.legend.items] == ["AP50", "AP"]
    panel.eval_every.setValue(0)
    panel.worker.stop()
    assert panel.start()  # a run that never evaluates says so
    assert "Evaluate every: 0" in plots.ap_note.textItem.toPlainText() and plots.ap_plot.legend.items == []
    panel.worker.stop()


# --- fitting the Train workspace's bottom dock (issue 29) -------------------------------------------
TRAIN_SIZES = [(1020, 280), (1360, 300)]  # small (1024x700) and laptop (1366x768) windows


def titles_fit(plots) -> list[str]:
    """The titles of the five plots that are wider than their plot (clipped)."""
    from PySide6.QtGui import QFontMetrics

    clipped = []
    for plot in [*plots.plots.values(), plots.ap_plot]:
        label = plot.titleLabel
        if QFontMetrics(label.item.font()).horizontalAdvance(label.text) > plot.width():
            clipped.append(label.text)
    return clipped


@pytest.mark.parametrize("width,height", TRAIN_SIZES)
def test_the_training_panel_fits_the_train_dock_mid_training(qtbot, panel, fake_runs, width, height):
    from detr_core.train.trainer import EvalEvent
    from tests.fit import fit_in

    assert panel.start()
    worker = panel.worker
    worker.threadsChanged.emit(2, "2 threads (1 of 4 cores busy with other work)")
    worker.progress.emit(steps(1, 400))
    worker.evaluated.emit(EvalEvent(200, 20.0, {"AP": 0.3123, "AP50": 0.6}, 1.0))
    worker.evaluated.emit(EvalEvent(400, 40.0, {"AP": 0.4123, "AP50": 0.7}, 1.0))
    panel.plots.redraw()
    fit = fit_in(panel, width, height)
    assert fit.sideways == 0, fit
    if (width, height) == (1360, 300):
        assert fit.down == 0, fit
    from PySide6.QtWidgets import QScrollArea

    form = panel.findChild(QScrollArea)  # the settings form: the one part that may scroll, and only down
    assert form.horizontalScrollBar().maximum() == 0 and form.width() >= form.widget().minimumSizeHint().width()
    assert not titles_fit(panel.plots)
    worker.stop()


# --- "Train a deformable model" (defect 12) --------------------------------------------------------
def preset_in_sight(panel) -> bool:
    from PySide6.QtCore import QRect

    viewport = panel.settings_scroll.viewport()
    where = QRect(panel.preset.mapTo(viewport, panel.preset.rect().topLeft()), panel.preset.size())
    return viewport.rect().contains(where)


def test_show_preset_chooses_it_in_sight_and_clears_a_finished_runs_progress(qtbot, panel, fake_runs):
    panel.resize(1360, 300)
    panel.show()
    qtbot.waitExposed(panel)
    assert panel.start()
    panel.worker.progress.emit(steps(1, 500))
    panel.worker.stop()
    assert panel.progress_label.text().startswith("Finished at step 500") and panel.progress_bar.value() == 500
    bar = panel.settings_scroll.verticalScrollBar()
    bar.setValue(bar.maximum())  # the user had scrolled to the levers
    assert bar.maximum() > 0 and not preset_in_sight(panel)
    panel.show_preset("deformable")
    qtbot.waitUntil(lambda: preset_in_sight(panel))
    assert panel.preset.currentText() == "deformable" and panel.configs()[0].attention == "deformable"
    assert panel.progress_label.text() == "Not training." and panel.progress_bar.value() < panel.progress_bar.minimum()

    assert panel.start()  # while a run goes, its progress stays
    panel.worker.progress.emit(steps(1, 300))
    panel.show_preset("fast")
    assert panel.preset.currentText() == "fast"
    assert panel.progress_label.text().startswith("step 300") and panel.progress_bar.value() == 300
    panel.worker.stop()
    with pytest.raises(ValueError, match="no_such_preset"):
        panel.show_preset("no_such_preset")

    panel.set_open_model(bundled_model())  # the curves of a file: they stay described
    panel.show_preset("deformable")
    assert panel.progress_label.text().startswith("The curves of toy_shapes.pt")


# --- the Runs view: an estimate before Run (defect 11), and the fit -------------------------------------
class FakeRunWorker(QObject):
    """A queued run's training process, without the process: the test sends its events."""

    event = Signal(object)
    failed = Signal(str)
    finished = Signal()

    def __init__(self, job=None, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.is_running = False
        self.result = None

    def start(self) -> None:
        self.is_running = True

    def stop(self) -> None:
        self.is_running = False
        self.finished.emit()

    def wait(self, msecs: int = 0) -> bool:
        return True


@pytest.fixture
def runs_view(qtbot, tmp_path, monkeypatch):
    from explorer import run_queue
    from explorer.views.runs import RunsView

    monkeypatch.setattr(run_queue, "TrainingWorker", FakeRunWorker)

    def make() -> RunsView:
        view = RunsView(tmp_path / "runs")
        view.add_help("Runs")  # as the window adds it
        qtbot.addWidget(view)
        return view

    return make


def spec(name: str, seconds: float = 120.0):
    from detr_core.train.ablations import RunSpec

    return RunSpec(name, seconds=seconds)


def test_runs_says_how_long_the_checked_runs_take_before_run(runs_view):
    view = runs_view()
    assert view.estimate_label.text() == "5 runs · about 10 minutes"  # the default queue: 5 x 2 minutes
    view.ablation_checks["one-query"].setChecked(False)
    view.ablation_checks["ten-queries"].setChecked(False)
    assert view.estimate_label.text() == "3 runs · about 6 minutes"
    view.minutes_spin.setValue(40)
    assert view.estimate_label.text() == "3 runs · about 2 hours"
    view.minutes_spin.setValue(35)
    assert view.estimate_label.text() == "3 runs · about 1.8 hours"
    view.minutes_spin.setValue(0.2)
    assert view.estimate_label.text() == "3 runs · about 1 minute"
    view.minutes_spin.setValue(0.1)
    assert view.estimate_label.text() == "3 runs · under a minute"
    for box in view.ablation_checks.values():
        box.setChecked(False)
    assert view.estimate_label.text() == "No run checked"


def test_the_runs_estimate_follows_the_queue(runs_view, tmp_path):
    from detr_core.train.run_store import RunStore
    from detr_core.train.trainer import StepEvent

    RunStore(tmp_path / "runs").save_queue([spec("a", 60), spec("b", 60), spec("c", 60)])
    view = runs_view()  # the queue kept from the last session: held
    assert view.queue_held and view.estimate_label.text() == "5 runs · about 10 minutes · queue: about 3 minutes left"
    view.drop_queue()
    assert view.estimate_label.text() == "5 runs · about 10 minutes"

    view.queue([spec("first"), spec("second")])  # one runs, one waits
    assert view.is_running and view.estimate_label.text().endswith("queue: about 4 minutes left")
    view.worker.event.emit(StepEvent(100, {"loss": 1.0}, 1e-3, 50.0, 60.0, 0.5))
    assert view.estimate_label.text().endswith("queue: about 3 minutes left")
    view.run_checked()  # 5 more behind them
    assert view.estimate_label.text().endswith("queue: about 13 minutes left")
    view.cancel_job()
    assert not view.is_running and view.estimate_label.text() == "5 runs · about 10 minutes"


@pytest.mark.parametrize("width,height", TRAIN_SIZES)
@pytest.mark.parametrize("state", ["running", "kept queue"])
def test_the_runs_view_fits_the_train_dock(runs_view, tmp_path, state, width, height):
    from detr_core.train.run_store import RunStore
    from tests.fit import fit_in

    if state == "kept queue":  # its Resume / Drop row shown
        RunStore(tmp_path / "runs").save_queue([spec("a", 60), spec("b", 60), spec("c", 60)])
    view = runs_view()
    if state == "running":  # with its progress row shown
        view.queue([spec("first"), spec("second")])
    fit = fit_in(view, width, height)
    assert fit.sideways == 0, fit
    if (width, height) == (1360, 300):
        assert fit.down == 0, fit
    labels = {text for text, inside in drawn_axis_labels(view.metric_plot.getAxis("left")) if inside}
    assert "0" in labels and {"1", "1.0"} & labels, labels  # AP's axis reads 0 to 1
    view.cancel_job()  # (drops a kept queue)
