import math

import pytest
import torch

from detr_core.analysis.evaluate import coco_evaluate

NAMES = ["rectangle", "ellipse", "triangle"]


def _gt():
    return [
        {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[10.0, 10, 50, 40], [60, 60, 100, 120]])},
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[5.0, 5, 30, 30]])},
    ]


def test_perfect_predictions_score_one():
    gt = _gt()
    preds = [{"labels": g["labels"], "boxes": g["boxes"], "scores": torch.ones(len(g["labels"]))} for g in gt]
    m = coco_evaluate(preds, gt, NAMES, [(128, 128)] * 2)
    assert m["AP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0) and m["AP75"] == pytest.approx(1.0)
    assert m["AP/triangle"] == pytest.approx(1.0) and m["images"] == 2


def test_wrong_class_and_shifted_boxes():
    gt = _gt()
    wrong = [{"labels": (g["labels"] + 1) % 3, "boxes": g["boxes"], "scores": torch.ones(len(g["labels"]))} for g in gt]
    assert coco_evaluate(wrong, gt, NAMES, [(128, 128)] * 2)["AP"] == 0.0
    # IoU 0.6 boxes: they count at 0.5 but not at 0.75
    shifted = []
    for g in gt:
        b = g["boxes"].clone()
        w = b[:, 2] - b[:, 0]
        b[:, 0] += w * 0.25
        b[:, 2] += w * 0.25
        shifted.append({"labels": g["labels"], "boxes": b, "scores": torch.ones(len(b))})
    m = coco_evaluate(shifted, gt, NAMES, [(128, 128)] * 2)
    assert m["AP50"] == pytest.approx(1.0) and m["AP75"] == 0.0


def test_duplicates_and_low_scores_rank_below():
    gt = _gt()[:1]
    boxes = torch.cat([gt[0]["boxes"], gt[0]["boxes"]])
    preds = [{"labels": torch.tensor([0, 1, 0, 1]), "boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.3, 0.2])}]
    m = coco_evaluate(preds, gt, NAMES, [(128, 128)])
    assert m["AP50"] == pytest.approx(1.0)  # duplicates below the true positives cost nothing
    assert math.isnan(m["AP/triangle"])  # no triangle in this image


def test_no_detections():
    gt = _gt()
    empty = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}] * 2
    assert coco_evaluate(empty, gt, NAMES, [(128, 128)] * 2)["AP"] == 0.0
