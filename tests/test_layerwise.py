"""AP by decoder layer with and without NMS, and the layer-by-layer view."""

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from detr_core.analysis.capture import run_inference
from detr_core.analysis.evaluate import (
    coco_evaluate,
    collect_predictions,
    collect_predictions_by_layer,
)
from detr_core.analysis.layerwise import (
    LayerAP,
    layerwise_ap,
    nms_predictions,
)
from detr_core.config import DETRConfig, ToyDataConfig
from detr_core.data.toy import ToyShapes, heldout_split
from detr_core.model.detr import DETR

SMALL = DETRConfig(backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
                   num_decoder_layers=3, dim_feedforward=64, num_queries=8, num_classes=3, dropout=0.0,
                   image_min_size=128, image_max_size=256)
NAMES = ["rectangle", "ellipse", "triangle"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DETR(SMALL).eval()


class ScriptedDETR(nn.Module):
    """Stands in for DETR on a toy dataset: it knows the ground truth of the images it is fed
    (in order). Layer 1 predicts every object twice, identical boxes with independent scores;
    the last layer predicts each object once. Unused queries say "no object"."""

    def __init__(self, dataset: ToyShapes, num_queries: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.config = SimpleNamespace(classifier="softmax", num_decoder_layers=2, num_classes=3)
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device
        self.dataset = dataset
        self.num_queries = num_queries
        self.seen = 0
        self.generator = torch.Generator().manual_seed(seed)

    def _layer(self, targets, copies: int) -> dict:
        b, q, k = len(targets), self.num_queries, self.config.num_classes
        probs = torch.full((b, q, k + 1), 1e-6)
        probs[..., -1] = 1.0
        boxes = torch.full((b, q, 4), 0.05)
        for i, t in enumerate(targets):
            for j, (label, box) in enumerate(zip(t["labels"].tolist(), t["boxes"])):
                for c in range(copies):
                    query = copies * j + c
                    score = float(torch.rand((), generator=self.generator)) * 0.5 + 0.5
                    probs[i, query] = 1e-6
                    probs[i, query, label] = score
                    probs[i, query, -1] = 1 - score
                    boxes[i, query] = box
        return {"pred_logits": probs.log(), "pred_boxes": boxes}

    def forward(self, images: torch.Tensor) -> dict:
        _, targets = self.dataset.batch(range(self.seen, self.seen + len(images)))
        self.seen += len(images)
        last = self._layer(targets, copies=1)
        return {**last, "aux_outputs": [self._layer(targets, copies=2)]}


def _evaluate(preds, gts, size=128):
    return coco_evaluate(preds, gts, NAMES, [(size, size)] * len(gts))


# --- core -------------------------------------------------------------------------------------
def test_one_row_per_layer_and_the_last_agrees_with_the_evaluator(model):
    data = heldout_split(ToyDataConfig(), 12)
    calls = []
    rows = layerwise_ap(model, data, 12, batch_size=5, progress=lambda d, t: calls.append((d, t)))
    assert [r.layer for r in rows] == [1, 2, 3]
    for r in rows:
        assert all(0.0 <= v <= 1.0 for v in (r.ap, r.ap50, r.ap_nms, r.ap50_nms))
        assert r.ap <= r.ap50 and r.ap_nms <= r.ap50_nms
        assert set(r.as_dict()) == {"layer", "AP", "AP50", "AP_nms", "AP50_nms", "duplicates"}
        assert 0.0 <= r.duplicates <= 1.0
    preds, gts = collect_predictions(model, data, 12, batch_size=5)
    plain = _evaluate(preds, gts)
    assert rows[-1].ap == pytest.approx(plain["AP"]) and rows[-1].ap50 == pytest.approx(plain["AP50"])
    first, _ = collect_predictions(model, data, 12, batch_size=5, layer=0)
    assert rows[0].ap50_nms == pytest.approx(_evaluate(nms_predictions(first, 0.7), gts)["AP50"])
    # progress: images in batches, then one unit per layer, up to the total
    assert calls == [(0, 15), (5, 15), (10, 15), (12, 15), (13, 15), (14, 15), (15, 15)]
    assert not model.training


def test_collect_layer_predictions_match_single_layer_collection(model):
    data = heldout_split(ToyDataConfig(), 4)
    per_layer, gts = collect_predictions_by_layer(model, data, 4, batch_size=3)
    assert len(per_layer) == 3 and all(len(p) == 4 for p in per_layer) and len(gts) == 4
    for layer in range(3):
        preds, _ = collect_predictions(model, data, 4, batch_size=3, layer=layer)
        for a, b in zip(per_layer[layer], preds):
            torch.testing.assert_close(a["boxes"], b["boxes"])
            torch.testing.assert_close(a["scores"], b["scores"])


def _perfect(dataset: ToyShapes, n: int):
    """Every ground-truth box predicted exactly once (score 0.9) and the ground truth."""
    preds, gts = [], []
    for i in range(n):
        sample = dataset.sample(i)
        boxes = torch.from_numpy(sample.boxes_xyxy)
        labels = torch.from_numpy(sample.labels)
        gts.append({"labels": labels, "boxes": boxes})
        preds.append({"labels": labels, "boxes": boxes.clone(), "scores": torch.full((len(labels),), 0.9)})
    return preds, gts


def test_nms_never_changes_a_perfect_set_without_duplicates():
    data = ToyShapes(ToyDataConfig(max_overlap=0.25), seed=3)
    preds, gts = _perfect(data, 10)
    kept = nms_predictions(preds, 0.5)
    assert [len(p["scores"]) for p in kept] == [len(p["scores"]) for p in preds]
    assert _evaluate(preds, gts)["AP"] == pytest.approx(1.0)
    assert _evaluate(kept, gts)["AP"] == pytest.approx(1.0)


def test_nms_removes_same_class_duplicates_only():
    box = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    pred = {"boxes": torch.cat([box, box + 1, box, torch.tensor([[80.0, 80.0, 100.0, 100.0]])]),
            "scores": torch.tensor([0.5, 0.9, 0.8, 0.7]), "labels": torch.tensor([0, 0, 1, 0])}
    (kept,) = nms_predictions([pred], 0.7)
    assert kept["scores"].tolist() == pytest.approx([0.9, 0.8, 0.7])  # best first, scores unchanged
    assert kept["labels"].tolist() == [0, 1, 0]  # the other class's box at the same place stays
    (empty,) = nms_predictions([{k: v[:0] for k, v in pred.items()}], 0.7)
    assert len(empty["scores"]) == 0


def test_nms_raises_the_ap_of_duplicated_predictions():
    data = ToyShapes(ToyDataConfig(), seed=3)
    preds, gts = _perfect(data, 10)
    generator = torch.Generator().manual_seed(0)
    duplicated = []
    for p in preds:  # each box twice, random scores: the copies outrank other objects' boxes
        n = len(p["scores"])
        duplicated.append({"labels": p["labels"].repeat(2), "boxes": p["boxes"].repeat(2, 1),
                           "scores": torch.rand(2 * n, generator=generator)})
    before = _evaluate(duplicated, gts)
    after = _evaluate(nms_predictions(duplicated, 0.7), gts)
    assert before["AP"] < 0.95 and before["AP50"] < 0.95
    assert after["AP"] == pytest.approx(1.0) and after["AP50"] == pytest.approx(1.0)


def test_layerwise_ap_shows_nms_helping_the_duplicating_layer_only():
    data = heldout_split(ToyDataConfig(), 20)
    rows = layerwise_ap(ScriptedDETR(data), data, 20, nms_iou=0.7, batch_size=8)
    first, last = rows
    assert first.ap < 0.95 and first.ap_nms == pytest.approx(1.0) and first.ap50_nms == pytest.approx(1.0)
    assert last.ap == pytest.approx(1.0) and last.ap_nms == pytest.approx(1.0)


def test_progress_can_cancel(model):
    class Stop(Exception):
        pass

    def progress(done, total):
        if done >= 4:
            raise Stop

    with pytest.raises(Stop):
        layerwise_ap(model, heldout_split(ToyDataConfig(), 20), 20, batch_size=4, progress=progress)
    assert not model.training


# --- the view ---------------------------------------------------------------------------------
@pytest.fixture
def view(qtbot, model):
    from explorer.state import AppState, LoadedModel
    from explorer.views.layers import LayerView

    v = LayerView(AppState())
    qtbot.addWidget(v)
    v.resize(1000, 600)
    v.show()
    v.state.set_model(LoadedModel(model, NAMES, "test"))
    yield v
    v.shutdown()


@pytest.fixture(scope="module")
def result(model):
    image = ToyShapes(seed=1).sample(0).image
    return run_inference(model, image, NAMES, capture=False), image


def _show(view, res, image):
    """The state's image and its result, as the window's inference sets them."""
    view.state.set_image(image)
    view.state.set_result(res)


def _visible(view):
    return [i for i, r in enumerate(view.canvas.rects) if r.isVisible()]


def test_the_selected_query_is_drawn_at_every_layer(view, result):
    res, image = result
    _show(view, res, image)
    assert view.query_spin.maximum() == SMALL.num_queries - 1
    for query in (0, 5):
        view.state.set_selected_query(query)
        assert view.query_spin.value() == query
        assert _visible(view) == [0, 1, 2]
        for layer in range(3):
            rect = view.canvas.rects[layer].rect()
            x0, y0, x1, y1 = res.layer_boxes_xyxy[layer, query].tolist()
            assert (rect.x(), rect.y()) == pytest.approx((x0, y0), abs=1e-3)
            assert (rect.right(), rect.bottom()) == pytest.approx((x1, y1), abs=1e-2)
        assert [lab.toPlainText() for lab in view.canvas.labels[:3]] == ["L1", "L2", "L3"]
        assert len(view.canvas.links) == 2  # the path of the box centre, layer to layer
        assert view.table.rowCount() == 3 and view.table.item(2, 4).text() == "1.000"  # IoU of the last with itself
    colors = {view.canvas.rects[i].pen().color().name() for i in range(3)}
    assert len(colors) == 3
    assert "L3" in view.legend.text()
    rows = view.query_rows()
    assert [r["layer"] for r in rows] == [1, 2, 3] and rows[0]["query"] == 5


def test_query_spin_emits_selection(qtbot, view, result):
    _show(view, *result)
    with qtbot.waitSignal(view.state.selectedQueryChanged) as blocker:
        view.query_spin.setValue(3)
    assert blocker.args == [3]
    x0 = result[0].layer_boxes_xyxy[0, 3, 0].item()
    assert view.canvas.rects[0].rect().x() == pytest.approx(x0, abs=1e-3)


def test_set_image_runs_the_model_off_the_gui_thread(qtbot, view, result):
    _, image = result
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        assert view.set_image(image)
    assert view.result is not None and view.result.num_layers == 3
    np.testing.assert_allclose(view.result.layer_boxes_xyxy.numpy(), result[0].layer_boxes_xyxy.numpy(), atol=1e-4)
    assert _visible(view) == [0, 1, 2]


def test_run_ap_fills_the_chart_and_exports(qtbot, view, result, tmp_path):
    _show(view, *result)
    view.images_spin.setValue(10)
    with qtbot.waitSignal(view.jobFinished, timeout=30000):
        assert view.run_ap()
        assert not view.run_button.isEnabled()
        assert view.progress_bar.isVisible() and view.cancel_button.isVisible()
    assert view.run_button.isEnabled() and not view.progress_bar.isVisible()
    assert len(view.ap_rows) == 3 and all(isinstance(r, LayerAP) for r in view.ap_rows)
    for key, curve in view.curves.items():
        xs, ys = curve.getData()
        assert list(xs) == [1.0, 2.0, 3.0]
        assert list(ys) == pytest.approx([r.as_dict()[key] for r in view.ap_rows])
    assert "L1" in view.ap_summary.text() and "Duplicates (kept at score 0.3" in view.ap_summary.text()

    png = tmp_path / "layers.png"
    assert view.export_png(png) and png.stat().st_size > 1000
    assert view.export_data_to(tmp_path / "layers.csv")
    with open(tmp_path / "layers.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["section"] for r in rows] == ["query"] * 3 + ["ap"] * 3
    assert float(rows[3]["AP50"]) == pytest.approx(view.ap_rows[0].ap50)
    assert view.export_data_to(tmp_path / "layers.json")
    data = json.loads((tmp_path / "layers.json").read_text())
    assert data[-1]["layer"] == 3


def test_cancelling_ap_leaves_the_chart_empty(qtbot, view):
    view.images_spin.setValue(5000)
    with qtbot.waitSignal(view.jobCancelled, timeout=30000):
        assert view.run_ap()
        assert not view.run_ap()  # one job at a time
        view.cancel_job()
    assert view.wait_job(10000)
    assert view.ap_rows == [] and view.run_button.isEnabled()
    assert view.curves["AP"].getData()[0] is None or len(view.curves["AP"].getData()[0]) == 0


def test_a_model_with_other_classes_fails_readably(qtbot, view):
    other = DETR(DETRConfig(**{**SMALL.__dict__, "num_classes": 5})).eval()
    from explorer.state import LoadedModel

    view.state.set_model(LoadedModel(other, [f"c{i}" for i in range(5)], "test"))
    with qtbot.waitSignal(view.jobFailed, timeout=20000) as blocker:
        view.run_ap()
    assert "5 classes" in blocker.args[0]
    assert "5 classes" in view.progress_label.text()
    assert view.export_data() is None


def test_pixel_boxes_of_the_scripted_model_are_the_ground_truth():
    """The scripted stand-in really predicts the ground truth (so the NMS test means what it says)."""
    data = heldout_split(ToyDataConfig(), 3)
    per_layer, gts = collect_predictions_by_layer(ScriptedDETR(data), data, 3)
    for pred, gt in zip(per_layer[-1], gts):
        n = len(gt["labels"])
        torch.testing.assert_close(pred["boxes"][:n], gt["boxes"], atol=1e-3, rtol=0)
        assert pred["labels"][:n].tolist() == gt["labels"].tolist()
        assert (pred["scores"][:n] >= 0.5).all() and (pred["scores"][n:] < 1e-3).all()
