"""Hungarian matching made visible: the core snapshot and stability probe, and the Qt view
(static model, following a real TrainingWorker, selection, export)."""

import csv
import itertools
import json
import math

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPointF

from detr_core.analysis.matching import (
    COST_PARTS,
    MatchingStability,
    match_image,
    match_sample,
)
from detr_core.config import DETRConfig, LossConfig, ToyDataConfig, TrainConfig
from detr_core.data.toy import ToyShapes
from detr_core.model.detr import DETR
from detr_core.model.matcher import HungarianMatcher
from explorer.state import DataSource, LoadedModel

SMALL = DETRConfig(backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
                   num_decoder_layers=2, dim_feedforward=64, num_queries=8, num_classes=3, dropout=0.0,
                   image_min_size=128, image_max_size=256)
# anchor queries: even untrained, every query predicts its own distinct box (no ties in the cost)
ANCHOR = DETRConfig(**{**SMALL.__dict__, "query_type": "anchor"})
NAMES = ["rectangle", "ellipse", "triangle"]


def _model(config: DETRConfig = SMALL, seed: int = 0) -> DETR:
    torch.manual_seed(seed)
    model = DETR(config)
    if config.query_type == "learned":
        with torch.no_grad():  # untrained learned queries otherwise predict nearly the same box
            model.query_embed.weight.mul_(3)
    return model.eval()


@torch.no_grad()
def _permute_queries(model: DETR, order: list[int]) -> None:
    """Query i takes the embedding query order[i] had: predictions permute the same way."""
    for embedding in (model.query_content, model.refpoint_embed):
        embedding.weight.copy_(embedding.weight[order])


def _brute_force_min(cost: np.ndarray) -> float:
    n, m = cost.shape
    return min(sum(cost[perm[j], j] for j in range(m)) for perm in itertools.permutations(range(n), m))


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def matcher():
    lc = LossConfig()
    return HungarianMatcher(lc.cost_class, lc.cost_bbox, lc.cost_giou, "softmax")


@pytest.fixture(scope="module")
def dataset():
    return ToyShapes(ToyDataConfig(min_objects=2, max_objects=3), seed=7, split="train")


# --- core -------------------------------------------------------------------------------------
def test_snapshot_cost_and_assignment_agree_with_the_matcher(model, matcher, dataset):
    images, targets = dataset.batch([4])
    snap = match_image(model, matcher, images[0], targets[0], sample_index=4, step=11, class_names=NAMES)
    with torch.no_grad():
        out = model(images)
    parts = matcher.cost_parts(out["pred_logits"][0], out["pred_boxes"][0], targets[0]["labels"], targets[0]["boxes"])
    m = len(targets[0]["labels"])
    for key in COST_PARTS:
        assert snap.cost[key].shape == (SMALL.num_queries, m)
        np.testing.assert_allclose(snap.cost[key], parts[key].numpy(), rtol=1e-5, atol=1e-5)
    weighted = 1.0 * snap.cost["class"] + 5.0 * snap.cost["bbox"] + 2.0 * snap.cost["giou"]
    np.testing.assert_allclose(snap.cost["total"], weighted, rtol=1e-5, atol=1e-5)
    (rows, cols), = matcher(out, [targets[0]])
    assert sorted(zip(cols.tolist(), rows.tolist())) == list(zip(snap.target_indices.tolist(),
                                                                  snap.query_indices.tolist()))
    assert snap.matched_cost() == pytest.approx(_brute_force_min(snap.cost["total"]), abs=1e-4)
    assert snap.sample_index == 4 and snap.step == 11 and snap.image.shape == (128, 128, 3)
    np.testing.assert_array_equal(snap.image, dataset.sample(4).image)  # the image the model saw
    # pixel boxes follow the image size; the assignment matrix marks exactly the pairs
    np.testing.assert_allclose(snap.target_boxes_xyxy(), dataset.sample(4).boxes_xyxy, atol=1e-3)
    assert snap.assignment_matrix().sum() == m
    assert len(snap.rows()) == SMALL.num_queries * m
    assert sum(r["assigned"] for r in snap.rows()) == m


def test_focal_classification_uses_the_focal_class_cost(dataset):
    from explorer.views.matching import matcher_for

    focal = _model(DETRConfig(**{**ANCHOR.__dict__, "classifier": "focal"}))
    matcher = matcher_for(focal, LossConfig(cost_class=2.0))
    assert matcher.classifier == "focal" and matcher.cost_class == 2.0
    snap = match_sample(focal, matcher, dataset, 1)
    images, targets = dataset.batch([1])
    with torch.no_grad():
        out = focal(images)
    parts = matcher.cost_parts(out["pred_logits"][0], out["pred_boxes"][0], targets[0]["labels"], targets[0]["boxes"])
    np.testing.assert_allclose(snap.cost["class"], parts["class"].numpy(), rtol=1e-5, atol=1e-6)
    assert snap.weights == {"class": 2.0, "bbox": 5.0, "giou": 2.0}
    assert snap.matched_cost() == pytest.approx(_brute_force_min(snap.cost["total"]), abs=1e-4)


def test_match_toy_sample_keeps_training_mode_and_needs_no_grad(matcher, dataset):
    model = _model()
    model.train()
    snap = match_sample(model, matcher, dataset, 2, step=3)
    assert model.training  # restored
    assert snap.class_names == NAMES
    assert all(isinstance(v, np.ndarray) for v in snap.cost.values())


def test_empty_image_and_more_objects_than_queries(matcher):
    empty = ToyShapes(ToyDataConfig(min_objects=0, max_objects=0), seed=1)
    snap = match_sample(_model(), matcher, empty, 0)
    assert snap.num_targets == 0 and snap.cost["total"].shape == (SMALL.num_queries, 0)
    assert len(snap.query_indices) == 0 and snap.rows() == [] and snap.matched_cost() == 0.0

    two_queries = DETRConfig(**{**SMALL.__dict__, "num_queries": 2})
    crowded = ToyShapes(ToyDataConfig(min_objects=5, max_objects=6), seed=1)
    snap = match_sample(_model(two_queries), matcher, crowded, 0)
    assert snap.num_targets >= 3
    per_object = snap.matched_queries()
    assert sorted(per_object[per_object >= 0].tolist()) == [0, 1]  # each query once
    assert (per_object == -1).sum() == snap.num_targets - 2
    unmatched = int(np.flatnonzero(per_object == -1)[0])
    assert snap.matched_query(unmatched) is None


def test_stability_is_zero_for_an_unchanged_model_and_one_after_permuting_queries(matcher, dataset):
    model = _model(ANCHOR)
    stability = MatchingStability(dataset, num_images=6)
    assert math.isnan(stability.check(model, matcher, step=0))
    assert stability.check(model, matcher, step=1) == 0.0
    before = stability.previous
    # query i now predicts what query i - 1 predicted: every object's query moves up by one
    q = ANCHOR.num_queries
    _permute_queries(model, [(i - 1) % q for i in range(q)])
    fraction = stability.check(model, matcher, step=2)
    assert fraction == pytest.approx(1.0)
    after = stability.previous
    for old, new in zip(before, after):
        np.testing.assert_array_equal(new, (old + 1) % q)
    assert [p.step for p in stability.history] == [0, 1, 2]
    assert stability.history[-1].changed == stability.history[-1].objects == stability.num_objects
    # the per-image assignment is the one match_sample shows
    snap = match_sample(model, matcher, dataset, 3)
    np.testing.assert_array_equal(after[3], snap.matched_queries())
    stability.reset()
    assert stability.history == [] and math.isnan(stability.check(model, matcher))


def test_stability_counts_a_partial_change(matcher, dataset):
    model = _model(ANCHOR)
    stability = MatchingStability(dataset, num_images=6)
    stability.check(model, matcher)
    before = stability.previous
    held = np.concatenate(before)
    a, b = int(held[0]), int(held[1])  # two queries that hold objects
    order = list(range(ANCHOR.num_queries))
    order[a], order[b] = b, a
    _permute_queries(model, order)  # swap them: only the objects they held move
    fraction = stability.check(model, matcher)
    moved = int(np.isin(held, [a, b]).sum())  # every object, in any image, that a or b held
    assert 0 < fraction < 1
    assert fraction == pytest.approx(moved / stability.num_objects)
    swapped = {a: b, b: a}
    for old, new in zip(before, stability.previous):
        np.testing.assert_array_equal(new, [swapped.get(int(x), int(x)) for x in old])


# --- the view ---------------------------------------------------------------------------------
@pytest.fixture
def view(qtbot):
    from explorer.state import AppState
    from explorer.views.matching import MatchingView

    v = MatchingView(AppState())
    qtbot.addWidget(v)
    v.resize(1000, 650)
    v.show()
    yield v
    v.shutdown()


def _show_static(qtbot, view, model, index=0):
    with qtbot.waitSignal(view.snapshotShown, timeout=20000) as blocker:
        view.set_sample_index(index)
        view.state.set_model(LoadedModel(model, NAMES, "test"),
                             DataSource(loss_config=LossConfig(), training_stream=ToyShapes(ToyDataConfig(), seed=42)))
    qtbot.waitUntil(lambda: not view.busy, timeout=10000)
    return blocker.args[0]


def test_view_shows_heatmap_assignment_and_links(qtbot, view, model, matcher):
    snap = _show_static(qtbot, view, model, index=5)
    assert snap.sample_index == 5
    m, q = snap.num_targets, snap.num_queries
    assert m > 0
    shown = view.heat_image.image
    assert shown.shape == (m, q)  # objects down, queries across
    np.testing.assert_allclose(shown, snap.cost["total"].T)
    # the marks sit on the matcher's own assignment
    images, targets = ToyShapes(ToyDataConfig(), seed=42).batch([5])
    with torch.no_grad():
        out = model(images)
    (rows, cols), = matcher(out, targets)
    xs, ys = view.assigned_marks.getData()
    assert sorted(zip(xs.astype(int).tolist(), ys.astype(int).tolist())) == sorted(zip(rows.tolist(), cols.tolist()))
    # image: every GT box and each matched query's box, one link per pair
    visible = [i for i, r in enumerate(view.canvas.rects) if r.isVisible()]
    assert visible == list(range(m)) + sorted(m + int(r) for r in rows)
    assert len(view.canvas.links) == len(rows)
    for link, (query, obj) in zip(view.canvas.links, zip(snap.query_indices, snap.target_indices)):
        lx, ly = link.getData()
        gt = snap.target_boxes_xyxy()[obj]
        assert (lx[0], ly[0]) == pytest.approx(((gt[0] + gt[2]) / 2, (gt[1] + gt[3]) / 2), abs=1e-3)
    assert view.table.rowCount() == m
    assert view.canvas.colorbar is None  # no attention drawn on the sample: no colour bar
    assert view.table.item(0, 2).text() == str(snap.matched_query(0))
    view.all_queries.setChecked(True)
    assert sum(r.isVisible() for r in view.canvas.rects) == m + q


def test_part_selector_changes_the_heatmap(qtbot, view, model):
    snap = _show_static(qtbot, view, model)
    seen = []
    for part in COST_PARTS:
        view.set_part(part)
        image = view.heat_image.image.copy()
        np.testing.assert_allclose(image, snap.cost[part].T)
        assert view.colorbar.levels() == pytest.approx((float(image.min()), float(image.max())), abs=1e-5)
        seen.append(image)
    assert all(not np.allclose(a, b) for a, b in itertools.combinations(seen, 2))
    assert "GIoU" in view.heat_plot.titleLabel.text
    # the cheapest-query dots follow the part shown; the assignment marks do not
    dots_x, _ = view.cheapest_marks.getData()
    np.testing.assert_array_equal(dots_x.astype(int), snap.cost["giou"].argmin(0))


def test_changing_the_sample_recomputes(qtbot, view, model):
    _show_static(qtbot, view, model, index=0)
    with qtbot.waitSignal(view.snapshotShown, timeout=20000) as blocker:
        view.set_sample_index(9)
    assert blocker.args[0].sample_index == 9
    assert view.snapshot.sample_index == 9


def test_heatmap_cells_map_to_query_and_object_and_select(qtbot, view, model):
    snap = _show_static(qtbot, view, model)
    qtbot.wait(50)
    vb = view.heat_plot.getViewBox()
    query, obj = int(snap.query_indices[0]), int(snap.target_indices[0])
    assert view.cell_at(vb.mapViewToScene(QPointF(query, obj))) == (query, obj)
    assert view.cell_at(vb.mapViewToScene(QPointF(query + 0.3, obj - 0.3))) == (query, obj)
    assert "(assigned)" in view.describe_cell(query, obj)
    other = (query + 1) % snap.num_queries
    assert "(assigned)" not in view.describe_cell(other, obj)
    with qtbot.waitSignal(view.state.selectedQueryChanged) as blocker:
        view._on_canvas_box(obj)  # clicking a ground-truth box selects its query
    assert blocker.args == [query]
    assert view.selected_column.isVisible()
    assert view.selected_column.getRegion() == pytest.approx((query - 0.5, query + 0.5))


def test_follows_a_paused_training_run_step_by_step(qtbot, view):
    from explorer.state import TrainingSession
    from explorer.training_worker import TrainingWorker
    from explorer.views.matching import training_stream

    train = TrainConfig(steps=20, batch_size=2, threads=1, seed=3)
    worker = TrainingWorker(SMALL, train, start_paused=True)
    snapshots, points = [], []
    view.snapshotShown.connect(snapshots.append)
    view.stabilityUpdated.connect(points.append)
    view.set_sample_index(6)
    view.matching_every, view.stability_every, view.probe_images = 1000, 1000, 4
    view.state.set_training(TrainingSession(worker))  # as the window does when the panel makes a worker
    worker.start()
    try:
        qtbot.waitUntil(lambda: worker.started_training, timeout=30000)
        assert view.following
        for step in (1, 2):
            with qtbot.waitSignal(view.snapshotShown, timeout=20000):
                worker.step_once()
            qtbot.waitUntil(lambda n=step: len(points) == n, timeout=20000)
        assert [s.step for s in snapshots] == [1, 2]
        assert all(s.sample_index == 6 for s in snapshots)
        # the probe matched sample 6 of the run's own training stream
        np.testing.assert_array_equal(snapshots[0].image, training_stream(train).sample(6).image)
        assert view.snapshot.step == 2
        assert not np.allclose(snapshots[0].cost["total"], snapshots[1].cost["total"])  # the weights moved
        assert [p.step for p in view.stability] == [1, 2]
        assert math.isnan(view.stability[0].changed_fraction)
        assert 0.0 <= view.stability[1].changed_fraction <= 1.0
        xs, _ = view.stability_curve.getData()
        assert list(xs) == [2.0]
    finally:
        worker.stop()
        assert worker.wait(30000)
    qtbot.wait(50)
    # the final probe after the run repeats step 2: no duplicate stability point
    assert [p.step for p in view.stability] == [1, 2]
    view.state.set_training(None)
    assert not view.following


def test_export_png_and_data(qtbot, view, model, tmp_path):
    assert view.export_data() is None
    snap = _show_static(qtbot, view, model)
    from detr_core.analysis.matching import StabilityPoint

    view.add_stability(StabilityPoint(1, math.nan, 0, 10))
    view.add_stability(StabilityPoint(5, 0.3, 3, 10))
    png = tmp_path / "matching.png"
    assert view.export_png(png) and png.stat().st_size > 1000
    assert view.export_data_to(tmp_path / "matching.csv")
    with open(tmp_path / "matching.csv") as f:
        rows = list(csv.DictReader(f))
    cost_rows = [r for r in rows if r["section"] == "cost"]
    assert len(cost_rows) == snap.num_queries * snap.num_targets
    assert sum(r["assigned"] == "True" for r in cost_rows) == len(snap.query_indices)
    stability_rows = [r for r in rows if r["section"] == "stability"]
    assert [r["changed_fraction"] for r in stability_rows] == ["", "0.3"]
    assert view.export_data_to(tmp_path / "matching.json")
    def reject(constant):
        raise ValueError(f"not strict JSON: {constant}")

    data = json.loads((tmp_path / "matching.json").read_text(), parse_constant=reject)
    assert {"Total", "Class", "L1", "GIoU"} <= set(data[0])
