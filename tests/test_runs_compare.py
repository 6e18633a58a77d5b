"""The Runs tab beyond the classic ablations: any preset with typed changes, the study questions,
a clear message for bad changes, and the comparison at equal steps and equal seconds."""

import pytest

from detr_core.presets import PRESETS
from detr_core.train.ablations import EXPERIMENTS, RunSpec, custom_spec, parse_changes, run_name
from detr_core.train.run_store import RunRecord, equal_marks
from explorer.views.runs import AT_SECONDS, AT_STEPS, RunsView
from tests.test_runs import TINY, tiny_spec
from tests.test_training_panel_fit import FakeRunWorker


def _record(name: str, evals: list[tuple[int, float, float]]) -> RunRecord:
    return RunRecord(tiny_spec(name), status="completed", step=evals[-1][0], elapsed=evals[-1][1],
                     evals=[{"step": s, "elapsed": t, "AP": ap} for s, t, ap in evals])


# --- core ----------------------------------------------------------------------------------------
def test_metric_at_interpolates_between_evaluations_and_marks_are_the_shortest_run():
    a = _record("a", [(100, 10.0, 0.2), (200, 20.0, 0.4), (300, 30.0, 0.5)])
    b = _record("b", [(150, 10.0, 0.1), (250, 20.0, 0.3)])
    assert equal_marks([a, b]) == (250, 20.0) and equal_marks([RunRecord(RunSpec("x", seconds=1))]) is None
    assert a.metric_at("step", 250) == pytest.approx(0.45) and b.metric_at("step", 250) == pytest.approx(0.3)
    assert a.metric_at("elapsed", 20.0) == pytest.approx(0.4) and a.metric_at("elapsed", 15.0) == pytest.approx(0.3)
    assert a.metric_at("step", 300) == 0.5 and a.metric_at("step", 301) is None  # not trained that far
    assert b.metric_at("step", 100) is None  # not evaluated by then


def test_changes_text_names_and_clear_errors():
    assert parse_changes("dn_groups=2, lr=1e-3;  data.classes=rectangle,ellipse") == [
        "dn_groups=2", "lr=1e-3", "data.classes=rectangle,ellipse"]
    assert run_name("fast", []) == "fast" and run_name("dino", ["dn_groups=2"]) == "dino + dn_groups=2"
    spec = custom_spec("vanilla", "num_queries=7 loss.matcher=greedy", seconds=None, steps=2, common=["threads=1"])
    assert spec.name == "vanilla + num_queries=7, loss.matcher=greedy" and spec.overrides[0] == "threads=1"
    model, train = spec.configs()
    assert (model.num_queries, train.loss.matcher, train.threads) == (7, "greedy", 1)
    for text, said in [("dn_grups=2", "unknown setting 'dn_grups'; did you mean dn_groups?"),
                       ("weight_bbox", "'weight_bbox' is not a change: write name=value"),
                       ("num_queries=many", "num_queries: expected a whole number, got 'many'"),
                       ("matcher=argmax", "unknown matcher 'argmax'")]:
        with pytest.raises(ValueError) as error:
            custom_spec("fast", text)
        assert said in str(error.value), text
    with pytest.raises(ValueError, match="unknown preset 'fastest'"):
        custom_spec("fastest", "")


# --- the view ------------------------------------------------------------------------------------
@pytest.fixture
def view(qtbot, tmp_path, monkeypatch):
    from explorer import run_queue

    monkeypatch.setattr(run_queue, "TrainingWorker", FakeRunWorker)  # no training process: specs only
    v = RunsView(tmp_path / "runs", common_overrides=TINY)
    qtbot.addWidget(v)
    v.resize(1200, 500)
    v.show()
    yield v
    v.cancel_job()


def _queued(view: RunsView) -> list[RunSpec]:
    return ([view.live.spec] if view.live is not None else []) + list(view.pending)


def test_view_offers_every_preset_and_queues_experiments_on_preset_plus_changes(view):
    assert [view.base_combo.itemText(i) for i in range(view.base_combo.count())] == list(PRESETS)
    assert set(view.experiment_checks) == set(EXPERIMENTS)
    for key, box in view.experiment_checks.items():
        box.setChecked(key in ("baseline", "no-giou-loss", "learned-position"))
    view.base_combo.setCurrentText("vanilla")
    view.changes_edit.setText("num_queries=7")
    assert view.estimate_label.text() == "3 runs · about 6 minutes"
    view.run_button.click()
    queued = _queued(view)
    assert [s.name for s in queued] == [
        "vanilla + num_queries=7", "vanilla + num_queries=7, position_embedding=learned",
        "vanilla + num_queries=7, loss.weight_giou=0"]
    assert [s.experiment for s in queued] == ["baseline", "learned-position", "no-giou-loss"]
    configs = [s.configs() for s in queued]
    assert {(m.num_queries, m.d_model) for m, _ in configs} == {(7, 32)}  # the changes and the common overrides
    assert configs[1][0].position_embedding == "learned" and configs[2][1].loss.weight_giou == 0
    # the sentence of an experiment, when pointed at
    view.explain("no-giou-loss")
    assert view.explanation_label.text() == EXPERIMENTS["no-giou-loss"].explanation
    # nothing checked: the preset + changes alone
    view.cancel_job()
    for box in view.experiment_checks.values():
        box.setChecked(False)
    view.base_combo.setCurrentText("fast")
    view.changes_edit.setText("dn_groups=2")
    view.run_button.click()
    assert [s.name for s in _queued(view)] == ["fast + dn_groups=2"]


def test_view_says_what_is_wrong_with_bad_changes(qtbot, view):
    for box in view.experiment_checks.values():
        box.setChecked(False)
    for base, text, checked, said in [
        ("fast", "dn_grups=2", None, "did you mean dn_groups?"),
        ("fast", "lr", None, "'lr' is not a change: write name=value"),
        ("fast", "num_queries=0", None, "num_queries must be at least 1"),
        ("deformable", "", "position-at-input", "deformable attention needs position_embedding='sine'"),
    ]:
        view.base_combo.setCurrentText(base)
        view.changes_edit.setText(text)
        if checked:
            view.experiment_checks[checked].setChecked(True)
        with qtbot.waitSignal(view.errorShown, timeout=2000) as blocker:
            view.run_button.click()
        assert said in blocker.args[0], (text, blocker.args[0])
        assert _queued(view) == [] and view.table.rowCount() == 0


def test_view_compares_the_runs_at_equal_steps_and_seconds(qtbot, tmp_path):
    from detr_core.train.run_store import RunStore

    store = RunStore(tmp_path / "runs")
    a = _record("a", [(100, 10.0, 0.2), (200, 20.0, 0.4), (300, 30.0, 0.5)])
    b = _record("b", [(150, 10.0, 0.1), (250, 20.0, 0.3)])
    stopped = _record("stopped early", [(20, 2.0, 0.01)])
    stopped.status = "stopped"
    a.created, b.created, stopped.created = 1.0, 2.0, 3.0
    for record in (a, b, stopped):
        store.save(record)
    view = RunsView(store)
    qtbot.addWidget(view)

    def column(col: int) -> list[str]:
        return [view.table.item(r, col).text() for r in range(view.table.rowCount())]

    header = view.table.horizontalHeaderItem
    assert (header(AT_STEPS).text(), header(AT_SECONDS).text()) == ("AP @ 250 steps", "AP @ 20 s")
    # the completed runs set the marks; the stopped one has no AP that far
    assert column(AT_STEPS) == ["0.450", "0.300", "—"] and column(AT_SECONDS) == ["0.400", "0.300", "—"]
    view.table.selectRow(0)  # only the selected are compared: a alone, at its own end
    assert (header(AT_STEPS).text(), header(AT_SECONDS).text()) == ("AP @ 300 steps", "AP @ 30 s")
    assert column(AT_STEPS) == ["0.500", "", ""] and column(AT_SECONDS) == ["0.500", "", ""]
