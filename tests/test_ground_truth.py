"""Any dataset's ground truth as one pycocotools object, the toy set's included; crowded toy
images as a dataset; how many images an analysis runs."""

import numpy as np
import pytest
import torch

from detr_core.analysis.evaluate import coco_metrics
from detr_core.analysis.predict import image_count
from detr_core.config import ToyDataConfig
from detr_core.data.crowded import CrowdedShapes
from detr_core.data.dataset import Annotations
from detr_core.data.ground_truth import build_coco
from detr_core.data.toy import ToyShapes, heldout_split


def test_the_toy_split_has_coco_ground_truth_in_its_own_ids():
    data = heldout_split(ToyDataConfig(), 6)
    gt = data.coco_ground_truth(4)
    assert sorted(gt.getImgIds()) == [0, 1, 2, 3]
    assert [c["id"] for c in gt.loadCats(gt.getCatIds())] == data.category_ids == [1, 2, 3]
    for i in range(4):
        smp = data.sample(i)
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[i]))
        assert [a["category_id"] - 1 for a in anns] == smp.labels.tolist()
        xywh = [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in smp.boxes_xyxy.tolist()]
        assert [a["bbox"] for a in anns] == xywh and not any(a["iscrowd"] for a in anns)
        assert gt.imgs[i]["height"] == gt.imgs[i]["width"] == 128
    assert data.coco_ground_truth(3) is gt  # made once, for at least the images asked
    assert sorted(data.coco_ground_truth().getImgIds()) == list(range(6))


def test_ignored_objects_are_crowd_regions():
    truth = [Annotations(7, 20, 30, np.array([1]), np.array([[1, 2, 11, 12]], np.float32),
                         np.array([0]), np.array([[0, 0, 5, 5]], np.float32), "a.jpg")]
    gt = build_coco(truth, ["a", "b"], [4, 9])
    anns = gt.loadAnns(gt.getAnnIds(imgIds=[7]))
    assert [(a["category_id"], a["iscrowd"], a["area"]) for a in anns] == [(9, 0, 100.0), (4, 1, 25.0)]
    assert gt.imgs[7] == {"id": 7, "width": 30, "height": 20, "file_name": "a.jpg"}


def test_perfect_predictions_on_toy_shapes_score_one_and_wrong_classes_zero():
    data = heldout_split(ToyDataConfig(), 5)
    ids, perfect, wrong = [], [], []
    for i in range(5):
        smp = data.sample(i)
        labels = torch.from_numpy(smp.labels)
        boxes = torch.from_numpy(smp.boxes_xyxy)
        ids.append(smp.image_id)
        perfect.append({"labels": labels, "boxes": boxes, "scores": torch.ones(len(labels))})
        wrong.append({"labels": (labels + 1) % 3, "boxes": boxes, "scores": torch.ones(len(labels))})
    m = coco_metrics(data, ids, perfect, 5)
    assert m["AP"] == pytest.approx(1.0) and m["AP75"] == pytest.approx(1.0) and m["images"] == 5
    assert all(m[f"AP/{c}"] == pytest.approx(1.0) for c in data.class_names)
    assert coco_metrics(data, ids, wrong, 5)["AP"] == 0.0


def test_crowded_shapes_hold_the_asked_counts_in_order():
    data = CrowdedShapes(ToyDataConfig(), [2, 7], images_per_count=2, seed=1)
    assert len(data) == 4 and data.class_names == list(ToyDataConfig().classes)
    assert [(data.asked(i), data.image_number(i)) for i in range(4)] == [(2, 0), (2, 1), (7, 0), (7, 1)]
    for i in range(4):
        smp = data.sample(i)
        truth = data.annotations(i)
        assert smp.image_id == truth.image_id == i and len(smp.labels) == data.asked(i)
        assert np.array_equal(truth.boxes_xyxy, smp.boxes_xyxy) and (truth.height, truth.width) == (128, 128)
    fresh = CrowdedShapes(ToyDataConfig(), [2, 7], images_per_count=2, seed=1)
    assert np.array_equal(fresh.annotations(3).boxes_xyxy, data.sample(3).boxes_xyxy)  # without drawing first
    with pytest.raises(ValueError):
        CrowdedShapes(None, [], 1)


def test_image_count_of_finite_and_endless_datasets():
    data = heldout_split(ToyDataConfig(), 5)
    assert image_count(data, None) == 5 and image_count(data, 3) == 3 and image_count(data, 50) == 5
    stream = ToyShapes(ToyDataConfig(), seed=0)
    assert image_count(stream, 8) == 8
    with pytest.raises(ValueError):
        image_count(stream, None)
