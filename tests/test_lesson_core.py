"""The lesson's experiments on the bundled model and on small inputs (plain pytest)."""

import numpy as np
import pytest
import torch

from detr_core.analysis import lesson as core
from detr_core.analysis.capture import run_inference
from detr_core.analysis.matching import match_sample, matcher_for
from detr_core.checkpoint import load_checkpoint
from detr_core.data.toy import ToyShapes
from detr_core.model.detr import DETR
from explorer.main_window import BUNDLED_CHECKPOINT


@pytest.fixture(scope="module")
def bundled():
    ckpt = load_checkpoint(BUNDLED_CHECKPOINT)
    model = ckpt.build_model().eval()
    return model, ckpt


@pytest.fixture(scope="module")
def images():
    toy = ToyShapes(seed=12345, split="explorer")  # the explorer's own toy images
    return [toy.sample(i).image for i in range(4)]


def test_interventions_restore_the_model(bundled, images):
    model, ckpt = bundled
    before = run_inference(model, images[0], ckpt.class_names)
    with core.positional_encoding_off(model) as n_pos, core.decoder_self_attention_off(model) as n_self:
        changed = run_inference(model, images[0], ckpt.class_names)
    after = run_inference(model, images[0], ckpt.class_names)
    assert n_pos == 1 and n_self == model.config.num_decoder_layers
    assert not torch.allclose(before.boxes_cxcywh, changed.boxes_cxcywh)
    assert changed.decoder_self_attention is None  # dropped: nothing to show
    torch.testing.assert_close(before.boxes_cxcywh, after.boxes_cxcywh)
    assert not any(m._forward_hooks for m in model.modules())


def test_positional_encoding_off_moves_attention_away_from_the_boxes(bundled, images):
    model, ckpt = bundled
    for image in images:
        e = core.positional_encoding_experiment(model, image, ckpt.class_names, 0.5)
        assert e.queries and e.peak_distance_off > e.peak_distance_on, (e.peak_distance_on, e.peak_distance_off)
        assert e.inside_off <= e.inside_on


def test_dropping_decoder_self_attention_never_lowers_duplicates_on_the_bundled_model(bundled, images):
    model, ckpt = bundled
    verdicts = []
    for image in images:
        e = core.decoder_self_attention_experiment(model, image, ckpt.class_names, 0.5, 0.5)
        assert e.pairs_without >= e.pairs_with
        verdicts.append(e.verdict)
    assert set(verdicts) <= {"raised", "unchanged"}


def test_nms_changes_nothing_on_the_trained_model(bundled, images):
    model, ckpt = bundled
    for image in images:
        r = run_inference(model, image, ckpt.class_names, capture=False)
        e = core.nms_experiment(r, 0.5)
        assert e.kept and e.removed == []


def test_nms_removes_an_exact_duplicate(bundled, images):
    model, ckpt = bundled
    r = run_inference(model, images[0], ckpt.class_names, capture=False)
    q, other = r.kept(0.5)[0], int(r.scores.argmin())
    r.boxes_xyxy[other], r.labels[other], r.scores[other] = r.boxes_xyxy[q], r.labels[q], r.scores[q] * 0.99
    assert core.nms_experiment(r, 0.5).removed == [other]


def test_backbone_grid_and_token_counts(bundled, images):
    model, ckpt = bundled
    r = run_inference(model, images[0], ckpt.class_names, capture=False)
    g = core.backbone_grid(model, r)
    assert g.feature_size == (8, 8) and g.tokens == 64 and g.stride == 16
    # TinyBody at stride 16: six 3x3 convs with strides 2,2,1,2,1,2 -> 1 + 2*(1+2+4+4+8+8)
    assert g.receptive_field == 55
    t = core.token_counts(model, images[0], ckpt.class_names, 0.5)
    assert t.small_tokens < t.full_tokens and t.small_grid == (4, 4)


def test_sine_channels_and_similarity(bundled):
    model, _ = bundled
    ch = core.sine_channels(model, (6, 9))
    assert ch.shape == (model.config.d_model, 6, 9)
    sim = core.position_similarity(ch, 2, 3)
    assert sim[2, 3] == pytest.approx(1.0, abs=1e-5)
    assert sim[2, 4] > sim[2, 8] and sim[3, 3] > sim[5, 3]  # nearer cells, more similar codes


def test_attention_distance_matches_brute_force(tiny_config):
    torch.manual_seed(0)
    model = DETR(tiny_config).eval()
    image = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    r = run_inference(model, image, ["a", "b", "c"])
    d = core.attention_distance(r)
    attn = r.encoder_attention().numpy()  # [L, heads, S, h, w]
    h, w = r.feature_size
    ys, xs = np.divmod(np.arange(h * w), w)
    dist = np.hypot(ys[:, None] - ys[None], xs[:, None] - xs[None]) * r.stride  # [S, S]
    brute = (attn.reshape(*attn.shape[:3], -1) * dist).sum(-1).mean(-1)
    np.testing.assert_allclose(d, brute, rtol=1e-4)


def test_box_loss_comparison_l1_is_blind_to_size_giou_is_not():
    c = core.box_loss_comparison(0.04, 0.1, 0.5)
    assert c.l1_small == pytest.approx(c.l1_large)
    assert c.giou_small > c.giou_large and c.iou_small < c.iou_large
    assert c.combined_small > c.combined_large


def test_rematch_keeps_and_changes_the_assignment(bundled):
    model, ckpt = bundled
    ds = ToyShapes(ckpt.train_config.data, seed=0)
    s = match_sample(model, matcher_for(model, ckpt.train_config.loss), ds, 0)
    same = core.rematch(s, s.target_boxes_cxcywh)
    np.testing.assert_array_equal(same.query_indices, s.query_indices)
    np.testing.assert_allclose(same.cost["total"], s.cost["total"], atol=1e-4)
    # object 0 moved onto the box of the slot that has object 1: that slot now takes object 0
    boxes = s.target_boxes_cxcywh.copy()
    q1 = s.matched_query(1)
    boxes[0] = s.pred_boxes_cxcywh[q1]
    moved = core.rematch(s, boxes)
    assert moved.matched_query(0) != s.matched_query(0)
    with pytest.raises(ValueError):
        core.rematch(s, boxes[:1])


def test_set_loss_by_layer_and_no_object_point(bundled):
    model, ckpt = bundled
    ds = ToyShapes(ckpt.train_config.data, seed=0)
    images, targets = ds.batch([0, 1, 2, 3])
    rows = core.set_loss_by_layer(model, images[0], targets[0], ckpt.train_config.loss)
    assert [r.layer for r in rows] == [1, 2, 3, 4]
    assert all(v >= 0 for r in rows for v in r.parts.values())
    assert rows[-1].parts["loss_giou"] < rows[0].parts["loss_giou"]  # later layers fit the boxes better
    p = core.no_object_point(model, matcher_for(model, ckpt.train_config.loss), images, targets)
    assert 0.5 < p.matched_true_class <= 1 and 0.5 < p.unmatched_no_object <= 1
    untrained = DETR(model.config).eval()
    q = core.no_object_point(untrained, matcher_for(untrained, ckpt.train_config.loss), images, targets)
    assert q.matched_true_class < p.matched_true_class


def test_no_object_probe_in_a_training_loop(tiny_config):
    import dataclasses

    from detr_core.config import ToyDataConfig, TrainConfig
    from detr_core.train.trainer import StepEvent, Trainer

    train = TrainConfig(batch_size=2, steps=3, eval_images=2, eval_every=0, bf16=False, threads=1,
                        data=ToyDataConfig(image_size=64, max_objects=2))
    trainer, probe = Trainer(dataclasses.replace(tiny_config, num_queries=5), train), core.NoObjectProbe(4)
    points = [probe(trainer) for e in trainer.events() if isinstance(e, StepEvent)]
    assert [p.step for p in points] == [1, 2, 3]
    assert all(0 <= p.matched_true_class <= 1 and 0 <= p.unmatched_no_object <= 1 for p in points)
    assert probe(trainer) is None  # the same step again: nothing new
    assert trainer.model.training  # the probe gave the model back in training mode


def test_interventions_say_what_a_model_lacks(tiny_config):
    import dataclasses

    model = DETR(dataclasses.replace(tiny_config, decoder_self_attention=False)).eval()
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="no self-attention"):
        core.decoder_self_attention_experiment(model, image, ["a", "b", "c"])
    assert not any(m._forward_hooks for m in model.modules())
    e = core.positional_encoding_experiment(model, image, ["a", "b", "c"], threshold=2.0)  # nothing kept
    assert e.kept_on == 0 and len(e.queries) == 1  # the best query stands in
