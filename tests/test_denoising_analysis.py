"""Denoising made visible (issue 28), the core: the repair measure (IoU of each denoising query
with its object, fed in and after every layer), the denoising capture of one training sample
(the run it probes left untouched), and DN-DETR's instability count (matching changes per step)."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from detr_core.analysis.denoising import (
    DenoisingProbe,
    DenoisingSnapshot,
    capture_denoising,
    denoising_sample,
    noised_inputs,
    repair_iou,
)
from detr_core.analysis.instability import (
    denoising_instability_experiment,
    instability_run,
    matching_changes,
    query_targets,
)
from detr_core.config import DETRConfig, LossConfig, ToyDataConfig, TrainConfig
from detr_core.data.toy import ToyShapes
from detr_core.model.matcher import HungarianMatcher
from detr_core.model.registry import build_model

DN = DETRConfig(backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
                num_decoder_layers=2, dim_feedforward=64, num_queries=6, num_classes=3, dropout=0.0,
                image_min_size=64, image_max_size=64, query_type="anchor", dn_groups=2)
DATA = ToyDataConfig(image_size=64, min_objects=1, max_objects=3)


def _iou_brute(a, b):
    """IoU of two cxcywh boxes, by hand."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_repair_iou_is_each_querys_iou_with_its_own_object_at_every_stage():
    rng = np.random.default_rng(0)
    targets = np.concatenate([rng.uniform(0.3, 0.7, (3, 2)), rng.uniform(0.1, 0.4, (3, 2))], 1).astype(np.float32)
    index = np.array([0, 1, 2, 0, 1, 2, 2])
    inputs = targets[index] + rng.normal(0, 0.05, (7, 4)).astype(np.float32)
    inputs[:, 2:] = np.abs(inputs[:, 2:]) + 0.02
    layers = np.stack([inputs * 0.9 + targets[index] * 0.1, targets[index]])  # [2, 7, 4]: the last is exact
    iou = repair_iou(inputs, layers, targets, index)
    assert iou.shape == (3, 7)
    for stage, boxes in enumerate([inputs, *layers]):
        for p in range(7):
            assert iou[stage, p] == pytest.approx(_iou_brute(boxes[p], targets[index[p]]), abs=1e-5)
    assert np.allclose(iou[2], 1.0, atol=1e-5)
    assert repair_iou(np.zeros((0, 4)), np.zeros((2, 0, 4)), targets, np.zeros(0, np.int64)).shape == (3, 0)


def _snapshot(layer_boxes, positive, input_labels, layer_labels):
    targets = np.array([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]], np.float32)
    inputs = np.array([[0.32, 0.3, 0.2, 0.2], [0.7, 0.75, 0.2, 0.2], [0.4, 0.4, 0.3, 0.3]], np.float32)
    p = len(inputs)
    return DenoisingSnapshot(
        sample_index=0, step=None, image=np.zeros((8, 8, 3), np.uint8), target_boxes_cxcywh=targets,
        target_labels=np.array([0, 1]), input_boxes_cxcywh=inputs, input_labels=np.array(input_labels),
        target_index=np.array([0, 1, 0]), positive=np.array(positive), group=np.zeros(p, np.int64),
        layer_boxes_cxcywh=np.asarray(layer_boxes, np.float32), layer_scores=np.full((len(layer_boxes), p), 0.5, np.float32),
        layer_labels=np.asarray(layer_labels), class_names=["a", "b"])


def test_repaired_counts_positives_whose_iou_went_up_and_never_a_negative():
    targets = np.array([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]], np.float32)
    better = np.array([targets[0], [0.7, 0.8, 0.2, 0.2], targets[0]], np.float32)  # q0 fixed, q1 worse, q2 (neg) fixed
    s = _snapshot([better], [True, True, False], input_labels=[1, 1, 0], layer_labels=[[0, 0, 0]])
    assert s.repaired().tolist() == [True, False, False]
    r = s.summary()
    assert (r.positives, r.negatives, r.repaired) == (2, 1, 1)
    assert r.iou_in == pytest.approx(float(s.iou[0, :2].mean())) and r.iou_out == pytest.approx(float(s.iou[1, :2].mean()))
    assert (r.flipped, r.flips_fixed) == (1, 1)  # q0 was fed "b" for an "a" and predicts "a" again
    assert s.label_flipped().tolist() == [True, False, False]
    assert [row["repaired"] for row in s.rows()] == [True, False, False]


@pytest.fixture(scope="module")
def dn_model():
    torch.manual_seed(0)
    return build_model(DN).eval()


def test_capture_of_a_sample_leaves_the_model_and_the_runs_random_stream_as_they_were(dn_model):
    stream = ToyShapes(DATA, seed=0, split="train")
    dn_model.train()
    before = {k: v.clone() for k, v in dn_model.state_dict().items()}
    rng = torch.get_rng_state()
    s = denoising_sample(dn_model, stream, 2, step=7)
    assert s.available and s.step == 7 and s.num_layers == 2 and s.num_groups == 2
    m = len(s.target_labels)
    assert s.num_queries == 2 * m and sorted(s.target_index.tolist()) == sorted(list(range(m)) * 2)
    assert s.iou.shape == (3, 2 * m) and s.positive.all()
    assert torch.equal(rng, torch.get_rng_state())  # the noise came from a forked generator
    assert all(torch.equal(before[k], v) for k, v in dn_model.state_dict().items())  # BatchNorm statistics too
    assert all(m.training for m in dn_model.modules())  # every module's mode back
    again = denoising_sample(dn_model.eval(), stream, 2)
    assert np.array_equal(again.input_boxes_cxcywh, s.input_boxes_cxcywh)  # one sample, one noise
    assert not all(m.training for m in dn_model.modules())
    # the noise a model is fed is the noise drawn without one
    images, targets = stream.batch([2])
    alone = noised_inputs(images[0], targets[0], DN.num_classes, groups=2, label_noise=DN.dn_label_noise,
                          box_noise=DN.dn_box_noise, sample_index=2)
    assert np.allclose(alone.input_boxes_cxcywh, s.input_boxes_cxcywh)
    assert np.array_equal(alone.input_labels, s.input_labels)
    # the probe a training run calls gives the same
    probed = DenoisingProbe(2)(SimpleNamespace(model=dn_model, dataset=stream, step=3))
    assert probed.step == 3 and np.array_equal(probed.input_boxes_cxcywh, s.input_boxes_cxcywh)


def test_a_model_without_denoising_or_a_sample_without_objects_says_why(dn_model):
    stream = ToyShapes(DATA, seed=0, split="train")
    images, targets = stream.batch([0])
    plain = build_model(dataclasses.replace(DN, dn_groups=0))
    s = capture_denoising(plain, images[0], targets[0], 0)
    assert not s.available and "dn_groups" in s.reason and s.num_queries == 0
    empty = {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}
    s = capture_denoising(dn_model, images[0], empty, 0)
    assert not s.available and "no objects" in s.reason


def test_matching_changes_counts_queries_whose_object_differs():
    before = [np.array([0, -1, 1, -1]), np.array([-1, 0])]
    after = [np.array([1, -1, 0, -1]), np.array([-1, 0])]
    assert matching_changes(before, after) == 2
    assert matching_changes(after, after) == 0
    assert matching_changes(before, [np.array([-1, 0, 1, -1]), np.array([0, -1])]) == 4  # lost, gained, moved
    with pytest.raises(ValueError):
        matching_changes(before, after[:1])


def test_query_targets_is_the_matchers_assignment_per_query(dn_model):
    stream = ToyShapes(DATA, seed=0, split="train")
    images, targets = stream.batch([0, 1, 2])
    matcher = HungarianMatcher(1.0, 5.0, 2.0, DN.classifier)
    per_query = query_targets(dn_model, matcher, images, targets)
    for a, t in zip(per_query, targets):
        assert a.shape == (DN.num_queries,)
        assert sorted(a[a >= 0].tolist()) == list(range(len(t["labels"])))  # every object once


def _train(lr: float) -> TrainConfig:
    return TrainConfig(lr=lr, lr_backbone=lr, batch_size=2, steps=3, warmup_steps=0, schedule="constant", data=DATA,
                       loss=LossConfig(), bf16=False, weight_decay=1e-4)


def test_instability_is_zero_when_nothing_learns_and_counts_real_changes_when_it_does():
    stream = ToyShapes(DATA, seed=0, split="train")
    torch.manual_seed(0)
    frozen = build_model(DN)
    for m in frozen.modules():  # BatchNorm statistics kept too: nothing the eval forward reads changes
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.0
    still = instability_run(frozen, DN, _train(1e-12), stream, [0, 1], steps=1)  # below float32's resolution
    assert still.changes.tolist() == [0] and still.queries == 2 * DN.num_queries
    torch.manual_seed(0)
    moving = instability_run(build_model(DN), DN, _train(0.05), stream, [0, 1], steps=2)
    assert moving.changes.shape == (2,) and 0 <= moving.changes.min() and moving.changes.max() <= moving.queries
    assert moving.total_changes > 0


def test_the_experiment_runs_denoising_off_and_on_from_the_same_start():
    c = denoising_instability_experiment(DN, _train(1e-3), steps=1, probe_images=2)
    assert (c.off.dn_groups, c.on.dn_groups) == (0, 2)
    assert c.off.steps.tolist() == c.on.steps.tolist() == [1]
    assert c.off.objects == c.on.objects > 0
    with pytest.raises(ValueError, match="anchor"):
        denoising_instability_experiment(dataclasses.replace(DN, query_type="learned", dn_groups=0), _train(1e-3))
