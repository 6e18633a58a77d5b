"""Deformable DETR: the same outputs and sampling locations as Hugging Face ``transformers``'
``DeformableDetrForObjectDetection`` (random weights, a small ResNet, nothing downloaded), for one
image and for a padded batch; capture changes no output; checkpoints save and reopen."""

import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

import tqdm

tqdm.tqdm.monitor_interval = 0  # no monitor thread left running after a test

from detr_core.checkpoint import load_checkpoint, save_checkpoint
from detr_core.config import DETRConfig
from detr_core.model.detr import DETR
from detr_core.model.nested_tensor import nested_tensor_from_tensor_list
from detr_core.model.registry import build_model

TOL = {"rtol": 1e-4, "atol": 1e-4}


def _hf_model(with_box_refine=False, two_stage=False):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    backbone = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                                         layer_type="bottleneck", out_features=["stage2", "stage3", "stage4"])
    config = transformers.DeformableDetrConfig(
        backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, d_model=32,
        encoder_layers=1, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=48, decoder_ffn_dim=48, num_queries=6, num_labels=3, dropout=0.0,
        num_feature_levels=4, encoder_n_points=2, decoder_n_points=3, with_box_refine=with_box_refine,
        two_stage=two_stage, two_stage_num_proposals=6,
        id2label={0: "cat", 1: "dog", 2: "bird"}, label2id={"cat": 0, "dog": 1, "bird": 2},
    )
    model = transformers.DeformableDetrForObjectDetection(config).eval()
    with torch.no_grad():  # random everywhere: the default init zeroes the offsets' and weights' matrices
        seen = set()
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if id(p) in seen or "num_batches" in name:
                continue
            seen.add(id(p))
            if "running_var" in name:
                p.uniform_(0.5, 1.5)
            else:
                p.add_(torch.randn_like(p) * (0.02 if "sampling_offsets" in name else 0.1))
    return model


def _images():
    torch.manual_seed(1)
    return [torch.randn(3, 96, 112), torch.randn(3, 64, 80)]


def _hf_forward(model, images):
    """HF logits, boxes, the decoder's and encoder's sampling locations (read where its attention
    uses them) and the decoder's attention weights."""
    batch = nested_tensor_from_tensor_list(images)
    locations, encoder = [], []
    hooks = [layer.encoder_attn.attn.register_forward_pre_hook(lambda m, args: locations.append(args[4]))
             for layer in model.model.decoder.layers]
    hooks += [layer.self_attn.attn.register_forward_pre_hook(lambda m, args: encoder.append(args[4]))
              for layer in model.model.encoder.layers]
    with torch.no_grad():
        out = model(pixel_values=batch.tensors, pixel_mask=(~batch.mask).long(), output_attentions=True)
    for h in hooks:
        h.remove()
    return [out.logits, out.pred_boxes, *locations, *out.cross_attentions, *encoder]


def _our_forward(model, images):
    with torch.no_grad():
        out = model(images, capture=True)
    cap = out["capture"].attention
    return [out["pred_logits"], out["pred_boxes"], *cap.decoder_locations, *cap.decoder_weights,
            *cap.encoder_locations]


@pytest.mark.parametrize("refine,two_stage", [(False, False), (True, True)])
def test_hf_deformable_folder_opens_to_the_same_outputs_and_sampling_points(tmp_path, refine, two_stage):
    hf = _hf_model(refine, two_stage)
    hf.save_pretrained(tmp_path / "m")
    ckpt = load_checkpoint(tmp_path / "m")
    cfg = ckpt.model_config
    assert ckpt.class_names == ["cat", "dog", "bird"]
    assert (cfg.attention, cfg.num_feature_levels, cfg.enc_n_points, cfg.dec_n_points) == ("deformable", 4, 2, 3)
    assert (cfg.with_box_refine, cfg.two_stage) == (refine, two_stage)
    ours = ckpt.build_model()
    images = _images()
    for batch in (images[:1], images):  # one image, then a padded batch of two sizes
        expected, got = _hf_forward(hf, batch), _our_forward(ours, batch)
        assert len(expected) == len(got) == 2 + 2 * 2 + 1
        for x, y in zip(got, expected):
            torch.testing.assert_close(x, y, **TOL)


def tiny_deformable(**kw):
    return DETRConfig(backbone="tiny", tiny_stride=32, tiny_width=8, d_model=64, nheads=2, num_encoder_layers=1,
                      num_decoder_layers=2, dim_feedforward=32, num_queries=5, num_classes=3, dropout=0.0,
                      classifier="focal", attention="deformable", image_min_size=64, image_max_size=96, **kw)


@pytest.mark.parametrize("kw", [{}, {"with_box_refine": True}])
def test_capture_changes_no_output_and_checkpoint_reopens(tmp_path, kw):
    torch.manual_seed(0)
    model = build_model(tiny_deformable(**kw)).eval()
    images = [torch.randn(3, 64, 64), torch.randn(3, 48, 56)]
    with torch.no_grad():
        plain, captured = model(images), model(images, capture=True)
    for key in ("pred_logits", "pred_boxes"):
        assert torch.equal(plain[key], captured[key])
    cap = captured["capture"].attention
    assert cap.shapes == [(8, 8), (4, 4), (2, 2), (1, 1)]  # 64 px at strides 8, 16, 32 and the extra level
    s = sum(h * w for h, w in cap.shapes)
    assert cap.encoder_locations[0].shape == (2, s, 2, 4, 4, 2)
    assert cap.decoder_weights[1].shape == (2, 5, 2, 4, 4)
    torch.testing.assert_close(cap.decoder_weights[1].sum((-1, -2)), torch.ones(2, 5, 2))
    save_checkpoint(tmp_path / "d.pt", model, ["a", "b", "c"])
    again = load_checkpoint(tmp_path / "d.pt")
    assert again.model_config.attention == "deformable"
    with torch.no_grad():
        reopened = again.build_model().eval()(images)
    for key in ("pred_logits", "pred_boxes"):
        assert torch.equal(plain[key], reopened[key])


def test_deformable_config_says_what_it_needs():
    with pytest.raises(ValueError, match="focal"):
        DETRConfig(attention="deformable")
    with pytest.raises(ValueError, match="divisible by 32"):
        DETRConfig(attention="deformable", classifier="focal", d_model=48, nheads=4)
    with pytest.raises(ValueError, match="unknown attention"):
        DETRConfig(attention="sparse")
    from detr_core.export import export_problems

    assert "deformable" in " ".join(export_problems(DETRConfig(attention="deformable", classifier="focal"), "hf"))


def test_inference_result_carries_the_sampling_points_in_image_pixels():
    import numpy as np

    from detr_core.analysis.capture import run_inference

    torch.manual_seed(0)
    model = build_model(tiny_deformable(with_box_refine=True))
    rgb = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    captured = run_inference(model, rgb, ["a", "b", "c"], capture=True)
    plain = run_inference(model, rgb, ["a", "b", "c"], capture=False)
    assert torch.equal(captured.layer_boxes_cxcywh, plain.layer_boxes_cxcywh) and plain.deformable is None
    s = captured.deformable
    assert captured.cross_attention is None and s is not None
    assert (s.num_heads, s.num_levels, s.num_points, s.num_encoder_layers) == (2, 4, 4, 1)
    assert s.decoder_points.shape == (2, 5, 2, 4, 4, 2) and s.decoder_references.shape == (2, 5, 2)
    # the input is resized (shorter side 64); every level's map covers the whole image
    for eh, ew in s.level_extents:
        assert eh >= 50 - 1e-6 and ew >= 70 - 1e-6
    # the encoder token under a pixel, and its own cell centre, on every level
    for level in range(4):
        points, weights, (cy, cx) = s.encoder_at(20.0, 30.0, level)
        assert points.shape == (1, 2, 4, 4, 2) and weights.shape == (1, 2, 4, 4)
        h, w = s.shapes[level]
        eh, ew = s.level_extents[level]
        assert abs(cy - 20.0) <= eh / h / 2 + 1e-4 and abs(cx - 30.0) <= ew / w / 2 + 1e-4
    # the layer-2 reference is the layer-1 box's centre (box refinement), placed as grid_sample reads
    # it: on the finest map, which overhangs the image by its rounding (here 96 input px for 90)
    box1 = captured.layer_boxes_cxcywh[0]  # [Q, 4] normalized
    ext_h, ext_w = s.level_extents[0]
    assert ext_w > 70.5
    torch.testing.assert_close(s.decoder_references[1], box1[:, :2] * torch.tensor([ext_w, ext_h]))


def test_a_short_deformable_training_run_lowers_the_loss():
    from detr_core.config import ToyDataConfig, TrainConfig
    from detr_core.train.trainer import StepEvent, Trainer

    torch.set_num_threads(1)
    train = TrainConfig(lr=2e-3, lr_backbone=2e-3, batch_size=4, steps=40, clip_max_norm=0.5, schedule="constant",
                        data=ToyDataConfig(image_size=64, max_objects=2), eval_images=4, seed=0)
    losses = [e.losses["loss"] for e in Trainer(tiny_deformable(with_box_refine=True), train).events()
              if isinstance(e, StepEvent)]
    assert len(losses) == 40
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.8 * first, (first, last)


def test_the_analyses_of_plain_detr_run_on_the_deformable_model():
    """Query specialization, counting, layer by layer, matching and evaluation read the same output
    dict, so they take a deformable model as they are."""
    from detr_core.analysis.counting import count_crowded
    from detr_core.analysis.evaluate import evaluate_model
    from detr_core.analysis.layerwise import layerwise_ap
    from detr_core.analysis.matching import match_sample, matcher_for
    from detr_core.analysis.specialization import collect_slot_predictions
    from detr_core.config import ToyDataConfig
    from detr_core.data.toy import ToyShapes

    torch.manual_seed(0)
    model = build_model(tiny_deformable(with_box_refine=True)).eval()
    data = ToyShapes(ToyDataConfig(image_size=64, max_objects=3), seed=0, length=6)
    assert collect_slot_predictions(model, data, 4, batch_size=2).boxes_cxcywh.shape[:2] == (4, 5)
    assert len(layerwise_ap(model, data, 4, batch_size=2)) == 2
    assert set(evaluate_model(model, data, 4, batch_size=2)) >= {"AP", "AP50"}
    assert match_sample(model, matcher_for(model, None), data, 0) is not None
    counted = count_crowded(model, [1, 2], images_per_count=1, data_config=ToyDataConfig(image_size=64))
    assert len(counted.rows) == 2 and counted.num_queries == 5


def test_two_stage_trains_its_encoder_proposals():
    from detr_core.config import ToyDataConfig, TrainConfig
    from detr_core.train.trainer import StepEvent, Trainer

    torch.set_num_threads(1)
    train = TrainConfig(lr=1e-3, lr_backbone=1e-3, batch_size=2, steps=3, data=ToyDataConfig(image_size=64),
                        eval_images=2, seed=0)
    events = [e for e in Trainer(tiny_deformable(with_box_refine=True, two_stage=True), train).events()
              if isinstance(e, StepEvent)]
    last = events[-1].losses
    assert {"enc_loss_ce", "enc_loss_bbox", "enc_loss_giou"} <= last.keys()
    assert all(torch.isfinite(torch.tensor(v)) for v in last.values())


def test_sampling_offsets_and_reference_points_train_at_a_tenth_of_the_rate(tiny_config):
    """The authors' optimiser: sampling offsets and reference points at lr * 0.1
    (lr_linear_proj_mult), the backbone at lr_backbone, the rest at lr; the schedule scales all
    three. Plain DETR keeps its two groups."""
    from dataclasses import replace

    from detr_core.config import TrainConfig
    from detr_core.train.trainer import build_optimizer, lr_factor

    model = build_model(tiny_deformable())
    train = TrainConfig(lr=2e-3, lr_backbone=1e-3, warmup_steps=10)
    opt = build_optimizer(model, train)
    ids = {id(p): n for n, p in model.named_parameters()}
    names = [[ids[id(p)] for p in g["params"]] for g in opt.param_groups]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2e-3, 1e-3, 2e-4])
    assert all(n.startswith("backbone.") for n in names[1])
    proj = set(names[2])
    assert proj and all("sampling_offsets" in n or "reference_points" in n for n in proj)
    assert not any("sampling_offsets" in n or "reference_points" in n for n in names[0])
    assert len(proj) + len(names[0]) + len(names[1]) == sum(1 for p in model.parameters() if p.requires_grad)
    factor = lr_factor(train, 4, 0.0)  # mid warm-up: every group scaled alike
    assert factor < 1 and [g["base_lr"] * factor for g in opt.param_groups] == pytest.approx(
        [2e-3 * factor, 1e-3 * factor, 2e-4 * factor])
    plain = build_optimizer(DETR(replace(tiny_config, query_type="anchor")), train)
    assert [g["lr"] for g in plain.param_groups] == pytest.approx([2e-3, 1e-3])


def assert_every_field_sorted(config_class, followed, refused, no_effect):
    """Each field of a transformers config class (beyond PretrainedConfig's generic ones) is in
    exactly one of the three tables, and what is refused is transformers' default."""
    from transformers import PretrainedConfig

    generic = set(PretrainedConfig().to_dict())
    fields = set(config_class().to_dict()) - generic
    tables = [set(followed), set(refused), set(no_effect)]
    unknown = sorted(f for f in fields if not any(f in t for t in tables))
    assert not unknown, f"{config_class.__name__} fields neither followed, refused nor without effect: {unknown}"
    both = [f for i, a in enumerate(tables) for b in tables[i + 1:] for f in a & b]
    assert not both, f"fields in two tables: {both}"
    for name, (runs, _why) in refused.items():
        assert getattr(config_class(), name) == runs
    return fields


def test_every_deformable_detr_config_field_is_followed_refused_or_without_effect():
    """A DeformableDetrConfig field that changes transformers' forward pass cannot be ignored
    unnoticed (a new transformers version's new field fails here)."""
    transformers = pytest.importorskip("transformers")
    from detr_core.formats import hf

    fields = assert_every_field_sorted(transformers.DeformableDetrConfig, hf.HF_DEFORMABLE_FOLLOWED,
                                       hf.HF_DEFORMABLE_REFUSED, hf.HF_DEFORMABLE_NO_EFFECT)
    assert {"two_stage", "with_box_refine", "num_feature_levels", "decoder_n_points"} <= fields  # its own fields


def test_the_field_walk_fails_on_a_field_in_no_table(monkeypatch):
    transformers = pytest.importorskip("transformers")
    from detr_core.formats import hf

    monkeypatch.delitem(hf.HF_DEFORMABLE_FOLLOWED, "with_box_refine")
    with pytest.raises(AssertionError, match=r"neither followed, refused nor without effect: \['with_box_refine'\]"):
        assert_every_field_sorted(transformers.DeformableDetrConfig, hf.HF_DEFORMABLE_FOLLOWED,
                                  hf.HF_DEFORMABLE_REFUSED, hf.HF_DEFORMABLE_NO_EFFECT)
    monkeypatch.setitem(hf.HF_DEFORMABLE_REFUSED, "with_box_refine", (False, "test"))
    monkeypatch.setitem(hf.HF_DEFORMABLE_FOLLOWED, "with_box_refine", "with_box_refine")
    with pytest.raises(AssertionError, match="fields in two tables"):
        assert_every_field_sorted(transformers.DeformableDetrConfig, hf.HF_DEFORMABLE_FOLLOWED,
                                  hf.HF_DEFORMABLE_REFUSED, hf.HF_DEFORMABLE_NO_EFFECT)


def test_a_refused_deformable_field_is_named_with_its_value(tmp_path):
    import json

    from detr_core.checkpoint import CheckpointError

    _hf_model().save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    for field, value, said in [("num_channels", 1, "num_channels=1"),
                               ("position_embedding_type", "learned", "position_embedding_type='learned'"),
                               ("activation_function", "gelu", "activation_function='gelu'"),
                               ("backbone_config", {**config["backbone_config"], "out_features": ["stage3", "stage4"]},
                                r"backbone_config.out_features=\['stage3', 'stage4'\]")]:
        (tmp_path / "m" / "config.json").write_text(json.dumps({**config, field: value}))
        with pytest.raises(CheckpointError, match=f"{said} is not supported"):
            load_checkpoint(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False,
                                                            "auxiliary_loss": True, "return_intermediate": False}))
    assert load_checkpoint(tmp_path / "m").model_config.dec_n_points == 3  # what changes nothing opens
