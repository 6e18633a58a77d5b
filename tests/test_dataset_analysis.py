"""The analyses on a COCO or VOC split: AP per decoder layer through pycocotools, counting by
ground-truth count, matching a dataset image (with the model's classes in another order)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from detr_core.analysis.counting import count_objects
from detr_core.analysis.evaluate import evaluate_model
from detr_core.analysis.label_map import label_map_for
from detr_core.analysis.layerwise import layerwise_ap
from detr_core.analysis.matching import match_sample, matcher_for
from detr_core.checkpoint import load_model
from detr_core.data.export import write_toy_dataset
from detr_core.data.sources import open_dataset
from detr_core.data.transforms import eval_transform

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundled():
    return load_model(Path(__file__).parents[1] / "checkpoints" / "toy_shapes.pt")


@pytest.fixture(scope="module")
def voc_val(bundled, tmp_path_factory):
    root = write_toy_dataset(tmp_path_factory.mktemp("voc") / "toy", train=2, val=8, fmt="voc")
    cfg = bundled[0].config
    return open_dataset(f"voc:{root}", role="val").with_transform(eval_transform(cfg.image_min_size,
                                                                                  cfg.image_max_size))


def test_layerwise_ap_on_a_voc_split(bundled, voc_val):
    model, _ = bundled
    rows = layerwise_ap(model, voc_val, num_images=100, nms_iou=0.7)  # more than there are: all 8
    assert [r.layer for r in rows] == list(range(1, model.config.num_decoder_layers + 1))
    final = evaluate_model(model, voc_val)
    assert final["images"] == 8 and rows[-1].ap == pytest.approx(final["AP"], abs=1e-9)
    assert rows[-1].ap50 == pytest.approx(final["AP50"], abs=1e-9) and rows[-1].ap > 0.3
    assert all(0 <= r.ap <= r.ap50 <= 1 for r in rows)


def test_counting_groups_dataset_images_by_their_count(bundled, voc_val):
    model, ckpt = bundled
    result = count_objects(model, voc_val, threshold=0.5, train_max_objects=6,
                           label_map=label_map_for(ckpt.class_names, voc_val.class_names))
    assert result.grouped and result.data_config is None
    truth = {r.image_id: len(r.labels) for r in voc_val.records}
    assert {row.image_id: row.true_count for row in result.rows} == truth
    assert [m.true_count for m in result.means()] == sorted(set(truth.values()))
    for row in result.rows:
        assert 0 <= row.correct <= min(row.detected, row.true_count)
        assert row.error == row.detected - row.true_count
    assert sum(row.correct for row in result.rows) >= sum(truth.values()) // 2  # a trained model
    # a higher threshold keeps fewer detections, image by image
    strict = count_objects(model, voc_val, threshold=0.99)
    assert all(s.detected <= r.detected for s, r in zip(strict.rows, result.rows))


def test_matching_a_dataset_image_with_the_models_classes_reordered(bundled, voc_val):
    model, _ = bundled
    matcher = matcher_for(model, None)
    plain = match_sample(model, matcher, voc_val, 3)
    record = voc_val.records[3]
    assert plain.image_name == record.path.name and plain.target_labels.tolist() == record.labels.tolist()
    assert plain.num_targets == len(record.labels) and plain.num_queries == model.config.num_queries
    # the same image, the dataset's labels given in a model's order that differs: same assignment
    names = list(voc_val.class_names)
    to_model = [names.index(c) for c in names[::-1]]  # dataset label -> a reversed model's label
    reordered = match_sample(model, matcher, voc_val, 3, model_labels=to_model, class_names=names[::-1])
    assert reordered.target_labels.tolist() == [to_model[k] for k in record.labels.tolist()]
    assert [reordered.class_name(int(k)) for k in reordered.target_labels] == [names[k] for k in record.labels]
    assert np.allclose(reordered.cost["bbox"], plain.cost["bbox"])
    assert torch.equal(torch.from_numpy(plain.target_boxes_cxcywh), torch.from_numpy(reordered.target_boxes_cxcywh))
