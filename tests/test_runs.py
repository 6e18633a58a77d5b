"""Ablation runs: specs, the duplicate rate, records and their store, execute_run, the runs view."""

import csv
import dataclasses
import itertools
import json
import math
import time

import pytest
import torch
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QMessageBox
from torchvision.ops import batched_nms, box_iou

from detr_core.analysis.duplicates import duplicate_rate, duplicate_stats, find_duplicates
from detr_core.checkpoint import load_model
from detr_core.presets import preset
from detr_core.train.ablations import ABLATIONS, RunSpec, ablation_specs, experiment_specs
from detr_core.train.run_store import RunRecord, RunStore
from detr_core.train.runs import execute_run
from detr_core.train.trainer import EvalEvent, FinishedEvent, StepEvent, TrainControl
from explorer.views.runs import RunsView

TINY = ["d_model=32", "dim_feedforward=64", "num_encoder_layers=1", "num_decoder_layers=2", "tiny_width=8",
        "batch_size=2", "eval_images=8"]


def tiny_spec(name: str = "tiny", steps: int = 3, extra: tuple[str, ...] = (), **kw) -> RunSpec:
    return RunSpec(name, overrides=[*TINY, *extra], seed=0, seconds=None, steps=steps, eval_every_steps=2, **kw)


def _flat(config) -> dict:
    out = {}
    for k, v in dataclasses.asdict(config).items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def _diff(a, b) -> dict:
    fa, fb = _flat(a), _flat(b)
    return {k: fb[k] for k in fa if fa[k] != fb[k]}


# --- specs -------------------------------------------------------------------------------------
def test_ablation_specs_share_seed_and_budget_and_change_one_thing():
    specs = ablation_specs(base="fast", seed=3, seconds=30.0)
    assert [s.experiment for s in specs] == list(ABLATIONS) == [
        "baseline", "one-query", "ten-queries", "no-self-attention", "no-aux-loss"]
    assert [s.name for s in specs] == [  # a run is named by its preset and its changes
        "fast", "fast + num_queries=1", "fast + num_queries=10, data.max_objects=6",
        "fast + decoder_self_attention=off", "fast + aux_loss=off"]
    assert {(s.seed, s.seconds, s.steps, s.base) for s in specs} == {(3, 30.0, 0, "fast")}
    configs = {s.experiment: s.configs() for s in specs}
    base_model, base_train = configs["baseline"]
    preset_model, preset_train = preset("fast")
    assert _diff(preset_model, base_model) == {}
    assert _diff(preset_train, base_train) == {"seed": 3, "max_seconds": 30.0}
    expected = {
        "one-query": {"num_queries": 1},
        "ten-queries": {"num_queries": 10},
        "no-self-attention": {"decoder_self_attention": False},
        "no-aux-loss": {"aux_loss": False},
    }
    for name, model_change in expected.items():
        model, train = configs[name]
        assert _diff(base_model, model) == model_change, name
        assert _diff(base_train, train) == {}, name  # same seed, budget, data and recipe
    assert configs["ten-queries"][1].data.max_objects == 6


def test_ablation_specs_subset_common_overrides_and_errors():
    specs = ablation_specs(seed=1, seconds=None, steps=7, common=["threads=1"], only=["no-aux-loss", "baseline"])
    assert [s.experiment for s in specs] == ["baseline", "no-aux-loss"]  # ABLATIONS order
    assert [s.name for s in specs] == ["fast", "fast + aux_loss=off"]  # the common overrides are not in names
    assert all(s.configs()[1].threads == 1 and s.configs()[1].steps == 7 for s in specs)
    assert specs[0].configs()[1].max_seconds is None
    with pytest.raises(ValueError, match="unknown ablation"):
        ablation_specs(only=["no-such-run"])
    with pytest.raises(ValueError, match="no budget"):
        RunSpec("x", seconds=None, steps=0)


def test_spec_seed_and_budget_win_over_overrides():
    spec = RunSpec("x", overrides=["seed=99", "steps=1000", "num_queries=5"], seed=4, seconds=None, steps=2)
    model, train = spec.configs()
    assert (train.seed, train.steps, train.max_seconds, model.num_queries) == (4, 2, None, 5)
    with pytest.raises(ValueError, match="unknown setting"):
        RunSpec("bad", overrides=["no_such_setting=1"]).configs()


# --- duplicates --------------------------------------------------------------------------------
def _pred(boxes, labels, scores):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.long), "scores": torch.tensor(scores)}


def test_duplicate_rate_on_known_duplicates():
    image1 = _pred(
        [[10, 10, 50, 50], [11, 11, 50, 50], [10, 10, 50, 50], [10, 10, 50, 50], [70, 70, 90, 90]],
        [0, 0, 1, 0, 2],
        [0.9, 0.8, 0.9, 0.3, 0.7],  # 4th: a duplicate, but below the threshold
    )
    image2 = _pred([[0, 0, 20, 20], [0, 10, 20, 30]], [1, 1], [0.9, 0.9])  # IoU 1/3: not duplicates
    stats = duplicate_stats([image1, image2])
    assert (stats.pairs, stats.kept, stats.images) == (1, 6, 1)  # only the first two boxes of image 1
    assert duplicate_rate([image1, image2]) == pytest.approx(1 / 6)
    # lower the score threshold: box 4 joins, making pairs with boxes 1 and 2
    assert duplicate_stats([image1], threshold=0.2).pairs == 3
    # an IoU limit below 1/3 makes image 2's pair a duplicate too
    assert duplicate_stats([image2], iou=0.3).pairs == 1
    triple = _pred([[0, 0, 10, 10]] * 3, [2, 2, 2], [0.9, 0.9, 0.9])
    assert duplicate_rate([triple]) == pytest.approx(1.0)  # three copies: 3 pairs / 3 kept
    assert duplicate_rate([]) == 0.0
    assert duplicate_rate([_pred([], [], [])]) == 0.0


def test_find_duplicates_on_constructed_detections():
    one_object_three_times = _pred(
        [[10, 10, 50, 50], [12, 10, 50, 50], [10, 12, 50, 52], [70, 70, 90, 90], [70, 70, 90, 90], [10, 10, 50, 50]],
        [0, 0, 0, 1, 2, 0],
        [0.4, 0.9, 0.35, 0.8, 0.7, 0.2],  # class 1 and 2 on one box: not duplicates; the last: below 0.3
    )
    found = find_duplicates([one_object_three_times])  # score >= 0.3, IoU >= 0.5
    assert (found.duplicates, found.kept) == (2, 5)  # the 0.4 and 0.35 copies of the 0.9 box
    assert found.fraction == pytest.approx(2 / 5)
    assert find_duplicates([one_object_three_times], threshold=0.5).duplicates == 0  # the copies score below 0.5
    assert find_duplicates([one_object_three_times], threshold=0.1).duplicates == 3
    half = _pred([[0, 0, 10, 10], [0, 0, 10, 5]], [1, 1], [0.9, 0.8])  # IoU exactly 0.5
    assert find_duplicates([half], iou=0.5).duplicates == 1 and find_duplicates([half], iou=0.51).duplicates == 0
    tie = _pred([[0, 0, 10, 10]] * 2, [1, 1], [0.6, 0.6])
    assert find_duplicates([tie]).duplicates == 1  # of two equal scores one is the copy
    assert find_duplicates([]).fraction == 0.0 and find_duplicates([_pred([], [], [])]).kept == 0
    # across images: boxes of different images never duplicate each other
    assert find_duplicates([_pred([[0, 0, 10, 10]], [0], [0.9])] * 2).duplicates == 0


def _near_copies(seed: int, images: int, most: int, jitter: float) -> list[dict]:
    """Per image up to ``most`` - 1 random boxes, each with a near-copy (moved by up to ``jitter``
    px), random labels of two classes and random scores."""
    g = torch.Generator().manual_seed(seed)
    preds = []
    for _ in range(images):
        n = int(torch.randint(0, most, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 40
        base = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 20], 1)
        boxes = torch.cat([base, base + torch.rand(n, 4, generator=g) * jitter])
        preds.append({"boxes": boxes, "labels": torch.randint(0, 2, (2 * n,), generator=g),
                      "scores": torch.rand(2 * n, generator=g)})
    return preds


def test_find_duplicates_matches_brute_force_and_bounds_nms():
    preds = _near_copies(seed=1, images=30, most=6, jitter=6)
    expected = nms_removed = 0
    for p in preds:
        kept = [i for i in range(len(p["scores"])) if p["scores"][i] >= 0.3]
        ious = box_iou(p["boxes"], p["boxes"])
        for i in kept:  # a better kept box of the same class overlaps it
            expected += any(p["scores"][j] > p["scores"][i] and p["labels"][j] == p["labels"][i]
                            and ious[i, j] >= 0.5 for j in kept)
        k = torch.tensor(kept, dtype=torch.long)
        nms_removed += len(k) - len(batched_nms(p["boxes"][k], p["scores"][k], p["labels"][k], 0.5))
    found = find_duplicates(preds)
    assert expected > 0 and found.duplicates == expected
    assert nms_removed <= found.duplicates  # NMS removes no box the measure does not count


def test_duplicate_stats_match_brute_force():
    preds = _near_copies(seed=0, images=20, most=8, jitter=3)

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        area_a = (a[2] - a[0]) * (a[3] - a[1])
        area_b = (b[2] - b[0]) * (b[3] - b[1])
        return inter / (area_a + area_b - inter)

    pairs = kept = 0
    for p in preds:
        keep = [i for i in range(len(p["scores"])) if p["scores"][i] >= 0.5]
        kept += len(keep)
        for i, j in itertools.combinations(keep, 2):
            same = p["labels"][i] == p["labels"][j]
            pairs += bool(same and iou(p["boxes"][i].tolist(), p["boxes"][j].tolist()) > 0.7)
    stats = duplicate_stats(preds)
    assert pairs > 0 and (stats.pairs, stats.kept) == (pairs, kept)


# --- records and the store ---------------------------------------------------------------------
def _record(name="r", created=1.0, **kw) -> RunRecord:
    return RunRecord(
        tiny_spec(name), status="completed", step=3, elapsed=1.5, wall_seconds=2.0,
        curves={"step": [1.0, 2.0, 3.0], "elapsed": [0.5, 1.0, 1.5], "loss": [3.0, 2.0, float("nan")]},
        evals=[{"step": 3, "elapsed": 1.5, "AP": 0.25, "AP50": 0.5, "AP75": 0.125, "duplicate_rate": 0.1}],
        ap=0.25, ap50=0.5, ap75=0.125, duplicate_rate=0.1, created=created, message="", **kw,
    )


def test_record_json_round_trip():
    record = _record(checkpoint="/somewhere/checkpoint.pt", config={"model": {"d_model": 32}})
    back = RunRecord.from_json(record.to_json())
    assert isinstance(back.spec, RunSpec) and back.spec == record.spec
    nan_free = {k: v for k, v in dataclasses.asdict(back).items() if k != "curves"}
    assert nan_free == {k: v for k, v in dataclasses.asdict(record).items() if k != "curves"}
    assert back.curves["loss"][:2] == [3.0, 2.0] and math.isnan(back.curves["loss"][2])  # NaN kept
    empty = RunRecord(RunSpec("q", seconds=5))
    assert RunRecord.from_json(empty.to_json()) == empty  # metrics None survive
    assert record.seconds_to("AP50", 0.5) == 1.5 and record.seconds_to("AP50", 0.6) is None
    with pytest.raises(ValueError):
        RunRecord.from_json("{not json")
    with pytest.raises(ValueError, match="run record"):
        RunRecord.from_json(json.dumps({"spec": {}}))
    newer = {**record.to_dict(), "format_version": 99}
    with pytest.raises(ValueError, match="format 99"):
        RunRecord.from_dict(newer)
    # a later version's new measurement (as duplicates and ap50_nms were): what is known still opens
    later = RunRecord.from_dict({**record.to_dict(), "ap50_tta": 0.99})
    assert later.ap50 == record.ap50 and later.curves["step"] == record.curves["step"]
    with pytest.raises(ValueError, match="incompatible"):  # a run's settings are never guessed
        RunRecord.from_dict({**record.to_dict(), "spec": {**dataclasses.asdict(record.spec), "warp": 1}})


def test_store_save_list_load_delete(tmp_path):
    store = RunStore(tmp_path / "runs")
    assert store.list() == []
    late, early = _record("late", created=20.0), _record("early", created=10.0)
    store.save(late)
    store.save(early)
    assert late.run_id != early.run_id and late.run_id.endswith("-late")
    assert [r.name for r in store.list()] == ["early", "late"]  # oldest first
    loaded = store.load(late.run_id)
    assert loaded.checkpoint is None  # no checkpoint file in its folder
    assert dataclasses.replace(loaded, curves={}) == dataclasses.replace(late, curves={}, checkpoint=None)
    # an unreadable run is skipped and named
    bad = tmp_path / "runs" / "broken"
    bad.mkdir()
    (bad / RunStore.RECORD).write_text("{")
    assert [r.name for r in store.list()] == ["early", "late"]
    assert len(store.errors) == 1 and "broken" in store.errors[0]
    assert store.new_id("late") != store.new_id("late")  # never the same folder twice
    store.delete(early.run_id)
    assert not (tmp_path / "runs" / early.run_id).exists()
    assert "early" not in [r.name for r in store.list()]
    for bad_id in ("../x", "", ".."):
        with pytest.raises(ValueError):
            store.delete(bad_id)


# --- execute_run -------------------------------------------------------------------------------
def test_execute_run_trains_evaluates_and_saves(tmp_path):
    store = RunStore(tmp_path)
    events = []
    record = execute_run(tiny_spec("t", extra=("num_queries=5",)), store, on_event=events.append)
    assert record.status == "completed" and record.step == 3 and record.run_id
    assert [type(e) for e in events] == [StepEvent, StepEvent, EvalEvent, StepEvent, EvalEvent, FinishedEvent]
    assert [e["step"] for e in record.evals] == [2, 3]
    assert record.curves["step"] == [1.0, 2.0, 3.0]
    assert {"loss", "loss_giou", "loss_bbox", "loss_ce", "elapsed"} <= set(record.curves)
    assert not any(k.endswith("_0") for k in record.curves)  # earlier layers' parts are left out
    for value in (record.ap, record.ap50, record.ap75, record.duplicate_rate, record.duplicates, record.ap50_nms):
        assert value is not None and 0.0 <= value <= 1.0
    assert record.ap50 == record.evals[-1]["AP50"] and record.duplicate_rate == record.evals[-1]["duplicate_rate"]
    assert (record.duplicates, record.ap50_nms) == (record.evals[-1]["duplicates"], record.evals[-1]["AP50_nms"])
    model, ckpt = load_model(record.checkpoint)
    assert model.config.num_queries == 5 and model.config.d_model == 32 and ckpt.step == 3
    assert ckpt.extra["run_id"] == record.run_id
    again = store.load(record.run_id)
    assert again.to_dict() == record.to_dict()
    # the same spec again: the same seed gives the same losses
    twin = execute_run(tiny_spec("t", extra=("num_queries=5",)), store)
    assert twin.curves["loss"] == record.curves["loss"] and twin.run_id != record.run_id


def test_execute_run_stop_and_bad_spec(tmp_path):
    store = RunStore(tmp_path)
    control = TrainControl()

    def stop_at_two(event):
        if isinstance(event, StepEvent) and event.step == 2:
            control.stop()

    record = execute_run(tiny_spec("s", steps=50), store, on_event=stop_at_two, control=control)
    assert record.status == "stopped" and record.step == 2
    assert record.ap is None and record.duplicate_rate is None
    assert load_model(record.checkpoint)[1].step == 2
    assert [r.status for r in store.list()] == ["stopped"]

    early = TrainControl()
    early.stop()
    nothing = execute_run(tiny_spec("never"), store, control=early)
    assert nothing.status == "stopped" and nothing.step == 0 and nothing.run_id == ""
    with pytest.raises(ValueError, match="unknown setting"):
        execute_run(RunSpec("bad", overrides=["no_such_setting=1"], seconds=1), store)
    assert len(store.list()) == 1 and len(list(tmp_path.iterdir())) == 1


# --- the view ----------------------------------------------------------------------------------
@pytest.fixture
def make_view(qtbot, tmp_path):
    views = []

    def make(folder=tmp_path / "runs", **kw) -> RunsView:
        view = RunsView(folder, common_overrides=TINY, **kw)
        qtbot.addWidget(view)
        view.resize(1000, 700)
        view.show()
        views.append(view)
        return view

    yield make
    for view in views:
        assert view.shutdown(20000)
        assert view.worker is None or not view.worker.is_running


def _statuses(view: RunsView) -> list[str]:
    return [view.table.item(r, 1).text() for r in range(view.table.rowCount())]


def _names(view: RunsView) -> list[str]:
    return [view.table.item(r, 0).text() for r in range(view.table.rowCount())]


def test_view_runs_a_queue_one_at_a_time(qtbot, make_view):
    """Two tiny runs of "preset + changes" (one a study question on top), named by them, one after
    the other; the table compares them at equal steps and seconds."""
    view = make_view()
    finished = []
    view.runFinished.connect(finished.append)
    specs = experiment_specs(["baseline", "greedy-matching"], base="fast", seconds=None, steps=3, common=TINY,
                             changes=["num_queries=3"], eval_every_steps=2)
    names = ["fast + num_queries=3", "fast + num_queries=3, loss.matcher=greedy"]
    with qtbot.waitSignal(view.queueFinished, timeout=60000):  # two process starts: slow on a busy machine
        view.queue(specs)
        assert _names(view) == names
        assert _statuses(view)[0].startswith("running") and _statuses(view)[1] == "queued"
        assert view.progress_bar.isVisible()
    assert [r.name for r in finished] == names
    first, second = view.records
    assert second.created >= first.created + first.wall_seconds - 0.05  # the second began after the first
    assert _names(view) == names and _statuses(view) == ["completed", "completed"]
    assert first.config["model"]["num_queries"] == second.config["model"]["num_queries"] == 3
    assert (first.config["train"]["loss"]["matcher"], second.config["train"]["loss"]["matcher"]) == (
        "hungarian", "greedy")
    row = [view.table.item(0, c).text() for c in range(view.table.columnCount())]
    assert row[8] == "3" and row[2] == f"{first.ap:.3f}" and row[3] == f"{first.ap50:.3f}"
    assert row[6] == f"{first.duplicates:.3f}" and row[-1].endswith("checkpoint.pt")
    assert row[7] == f"{first.ap50_nms - first.ap50:+.3f}"
    assert view.table.horizontalHeaderItem(4).text() == "AP @ 3 steps"  # both ran 3 steps: their final AP
    assert [view.table.item(r, 4).text() for r in (0, 1)] == [f"{first.ap:.3f}", f"{second.ap:.3f}"]
    assert not view.progress_bar.isVisible() and not view.is_running


def test_view_cancel_stops_the_run_and_drops_the_queue(qtbot, make_view):
    view = make_view()
    view.queue([tiny_spec("long", steps=100_000), tiny_spec("never")])
    qtbot.waitUntil(lambda: view.live is not None and len(view.live.curves["step"]) > 0, timeout=20000)
    assert _statuses(view)[1] == "queued"
    with qtbot.waitSignal(view.queueFinished, timeout=20000):
        view.cancel_button.click()
    assert view.worker is not None and view.worker.wait(5000)
    assert view.pending == [] and not view.is_running
    assert [(r.name, r.status) for r in view.records] == [("long", "stopped")]
    assert 0 < view.records[0].step < 100_000 and view.records[0].checkpoint
    assert _statuses(view) == ["stopped"]


def test_view_buttons_queue_the_checked_ablations(qtbot, make_view):
    view = make_view()
    for key, box in view.ablation_checks.items():
        box.setChecked(key in ("baseline", "no-self-attention"))
    view.seed_spin.setValue(5)
    view.minutes_spin.setValue(0.5)
    view.run_button.click()
    queued = [view.live.spec] + view.pending
    assert [s.experiment for s in queued] == ["baseline", "no-self-attention"]
    assert [s.name for s in queued] == ["fast", "fast + decoder_self_attention=off"]
    assert {(s.seed, s.seconds, s.base, s.eval_every_seconds) for s in queued} == {(5, 30.0, "fast", 2.5)}
    assert queued[1].configs()[0].decoder_self_attention is False
    assert queued[0].configs()[0].d_model == 32  # the view's common overrides
    with qtbot.waitSignal(view.queueFinished, timeout=20000):
        view.cancel_job()
    assert view.pending == []


def test_view_reports_a_bad_spec(qtbot, make_view):
    view = make_view()
    with qtbot.waitSignal(view.errorShown, timeout=2000) as blocker:
        view.queue([tiny_spec("bad", extra=("no_such_setting=1",))])
    assert "no_such_setting" in blocker.args[0]
    assert view.pending == [] and not view.is_running and view.table.rowCount() == 0


@pytest.fixture
def two_runs(tmp_path):
    store = RunStore(tmp_path / "runs")
    execute_run(tiny_spec("alpha"), store)
    time.sleep(0.01)
    execute_run(tiny_spec("beta", steps=4, extra=("num_queries=2",)), store)
    return store


def test_view_reloads_the_store_and_draws_curves(qtbot, make_view, two_runs):
    view = make_view(two_runs.root)
    assert _names(view) == ["alpha", "beta"] and _statuses(view) == ["completed", "completed"]
    loss_items = view.loss_plot.getPlotItem().listDataItems()
    metric_items = view.metric_plot.getPlotItem().listDataItems()
    assert len(loss_items) == len(metric_items) == 2
    alpha, beta = view.records
    assert len(loss_items[1].xData) == len(beta.curves["step"]) == 4
    x, y = metric_items[1].getData()
    assert list(x) == [e["elapsed"] for e in beta.evals] and list(y) == [e["AP50"] for e in beta.evals]
    # another metric and the step axis
    view.metric_combo.setCurrentIndex(view.metric_combo.findData("duplicate_rate"))
    view.x_combo.setCurrentIndex(view.x_combo.findData("step"))
    x, y = view.metric_plot.getPlotItem().listDataItems()[0].getData()
    assert list(x) == [2, 3] and list(y) == [e["duplicate_rate"] for e in alpha.evals]
    # the raw (unsmoothed) loss of one selected run
    view.smooth_check.setChecked(False)
    view.table.selectRow(1)
    items = view.loss_plot.getPlotItem().listDataItems()
    assert len(items) == 1
    x, y = items[0].xData, items[0].yData  # the data as given (getData is log10 on a log axis)
    assert list(x) == beta.curves["step"] and list(y) == pytest.approx(beta.curves["loss_giou"])


def test_a_long_run_name_leaves_the_metrics_in_sight(qtbot, make_view, tmp_path):
    """The Run column grows with the names up to RUN_COLUMN_MAX; a longer name elides (its row's
    tooltip has it whole), so AP, AP50 and the duplicates stay in sight; a user may widen it."""
    from explorer.views.runs import RUN_COLUMN_MAX

    store = RunStore(tmp_path / "long")
    long = "fast + decoder_self_attention=off, dn_groups=3, lr=2e-4, num_queries=40"
    store.save(_record(name=long))
    view = make_view(store.root)
    assert _names(view) == [long] and view.table.columnWidth(0) == RUN_COLUMN_MAX
    assert view.table.sizeHintForColumn(0) > RUN_COLUMN_MAX  # (the name would not fit: it is elided)
    assert long in view.table.item(0, 0).toolTip()
    view.table.setColumnWidth(0, 400)  # widened by hand: a refresh keeps it
    view.reload()
    assert view.table.columnWidth(0) == 400


def test_view_open_delete_and_export(qtbot, make_view, two_runs, tmp_path, monkeypatch):
    view = make_view(two_runs.root)
    assert not view.open_button.isEnabled()
    view.table.selectRow(0)
    with qtbot.waitSignal(view.openCheckpoint, timeout=2000) as blocker:
        view.open_button.click()
    assert blocker.args == [view.records[0].checkpoint]
    assert load_model(blocker.args[0])[1].step == 3

    png = tmp_path / "runs.png"
    assert view.export_png(png) and not QImage(str(png)).isNull()
    assert view.export_data_to(tmp_path / "runs.csv")
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert [r["name"] for r in rows] == ["alpha", "beta"]
    assert float(rows[1]["AP50"]) == pytest.approx(view.records[1].ap50)
    assert view.export_data_to(tmp_path / "runs.json")
    runs = json.loads((tmp_path / "runs.json").read_text())["runs"]
    assert [RunRecord.from_dict(r).curves["step"] for r in runs] == [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]]

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    folder = two_runs.folder(view.records[0].run_id)
    view.table.selectRow(0)
    view.delete_button.click()
    assert not folder.exists() and _names(view) == ["beta"]
    assert len(view.loss_plot.getPlotItem().listDataItems()) == 1
    # a new view over the same folder sees the deletion
    assert _names(make_view(two_runs.root)) == ["beta"]
