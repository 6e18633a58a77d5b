"""Recipes as compositions of levers: every preset's combination builds, trains a few steps and
captures (with its denoising queries while training with targets); the DINO and RT-DETR levers
on the deformable family do what their papers say; each preset names its papers."""

import dataclasses

import pytest
import torch

from detr_core.config import DETRConfig, LossConfig, ToyDataConfig
from detr_core.model.losses import SetCriterion
from detr_core.model.registry import build_model
from detr_core.presets import PRESETS, apply_overrides, preset, preset_papers

pytestmark = pytest.mark.usefixtures("one_thread")

TARGETS = [{"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]])},
           {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.2, 0.2, 0.3, 0.3]])}]
SHRINK = {"tiny_width": 8, "num_encoder_layers": 1, "num_decoder_layers": 2, "dim_feedforward": 32,
          "num_queries": 5, "nheads": 2, "image_min_size": 64, "image_max_size": 96,
          "steps": 2, "max_seconds": None, "batch_size": 2, "warmup_steps": 0, "eval_images": 2, "bf16": False,
          "seed": 0}
RECIPES = ("vanilla", "fast", "deformable", "dino", "rt_detr")


def tiny(name: str, **model_changes):
    model, train = apply_overrides(*preset(name), SHRINK)
    train = dataclasses.replace(train, data=ToyDataConfig(image_size=64, max_objects=3))
    return dataclasses.replace(model, **model_changes), train


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_builds_trains_and_captures(name):
    from detr_core.train.trainer import StepEvent, Trainer

    model_cfg, train = tiny(name)
    trainer = Trainer(model_cfg, train)
    steps = [e for e in trainer.events() if isinstance(e, StepEvent)]
    assert len(steps) == 2 and all(torch.isfinite(torch.tensor(v)) for v in steps[-1].losses.values())
    model = trainer.model.train()
    images = [torch.randn(3, 64, 64), torch.randn(3, 48, 64)]
    cap = model(images, TARGETS, capture=True)["capture"]
    q = model_cfg.num_queries * model_cfg.num_query_groups
    assert cap.layer_boxes.shape == (2, 2, q, 4)
    dn = cap.denoising
    assert (dn is not None) == (model_cfg.dn_groups > 0)
    if dn is not None:
        p = dn.input_boxes.shape[1]
        assert dn.layer_boxes.shape == (2, 2, p, 4) and dn.layer_logits.shape[:3] == (2, 2, p)
        assert (~dn.positive).any() == model_cfg.dn_contrastive  # DINO's negatives
        assert dn.target_index[1].max() == 0  # image 1 has one object
    model.eval()
    with torch.no_grad():
        plain, captured = model(images), model(images, capture=True)
    torch.testing.assert_close(plain["pred_boxes"], captured["pred_boxes"])  # dense capture: explicit attention
    assert captured["capture"].denoising is None and captured["pred_boxes"].shape == (2, 5, 4)


def test_dino_and_rt_detr_are_the_levers_the_issue_names():
    dino, _ = preset("dino")
    assert (dino.attention, dino.query_type, dino.query_select, dino.look_forward_twice, dino.with_box_refine,
            dino.dn_contrastive) == ("deformable", "anchor", True, True, True, True) and dino.dn_groups > 0
    rt, rt_train = preset("rt_detr")
    assert rt.hybrid_encoder and rt.query_select and rt_train.loss.varifocal and rt.num_feature_levels == 3
    for name in PRESETS:
        assert preset_papers(name).startswith("DETR (Carion et al. 2020)")
    assert "DINO (Zhang et al. 2023): contrastive denoising, query selection, look forward twice" in preset_papers("dino")
    assert "RT-DETR (Zhao et al. 2024): hybrid encoder" in preset_papers("rt_detr")
    assert "Deformable DETR" not in preset_papers("fast")
    with pytest.raises(ValueError, match="unknown preset"):
        preset_papers("nope")


def test_refusals_are_only_for_what_is_not_built():
    base = tiny("deformable")[0]
    for change, words in ((dict(dense_aux=True), "dense_aux=False"), (dict(query_type="anchor", spatial_prior=True),
                          "spatial_prior=False"), (dict(query_type="anchor", two_stage=True), "two_stage")):
        with pytest.raises(ValueError, match=words):
            dataclasses.replace(base, **change)
    with pytest.raises(ValueError, match="hybrid_encoder .* needs attention='deformable'"):
        dataclasses.replace(tiny("fast")[0], hybrid_encoder=True)
    with pytest.raises(ValueError, match="dn_contrastive needs"):
        dataclasses.replace(base, query_type="anchor", dn_contrastive=True)
    # what the deformable family used to refuse and now builds
    dataclasses.replace(base, query_type="anchor", dn_groups=1, num_query_groups=2, query_select=True)
    dataclasses.replace(base, num_query_groups=2)


def _dino(**changes) -> DETRConfig:
    return tiny("dino", **changes)[0]


def test_mixed_query_selection_starts_from_the_encoders_best_proposals():
    """Each query's first box is the i-th best-scoring encoder proposal (the refinement starts as
    the identity, so layer 0 predicts it); the content is the learned embedding and trains."""
    torch.manual_seed(0)
    model = build_model(_dino(dn_groups=1)).train()
    with torch.no_grad():  # proposals whose scores differ from token to token
        model.enc_class_embed.weight.normal_(0, 1.0)
    out = model([torch.randn(3, 64, 64), torch.randn(3, 48, 64)], TARGETS, capture=True)
    enc = out["enc_outputs"]
    chosen = out["capture"].selected_tokens  # [B, Q]
    score = enc["pred_logits"].amax(-1)
    assert torch.equal(chosen[0], score[0].topk(5).indices)
    expected = enc["pred_boxes"].gather(1, chosen[..., None].expand(-1, -1, 4))
    torch.testing.assert_close(out["aux_outputs"][0]["pred_boxes"], expected, atol=1e-5, rtol=1e-5)
    SetCriterion(model.config)(out, TARGETS)["loss"].backward()
    assert model.query_content.weight.grad.abs().sum() > 0
    assert model.enc_class_embed.weight.grad.abs().sum() > 0  # the proposals are trained (enc_loss_*)


@pytest.mark.parametrize("twice", [True, False])
def test_look_forward_twice_lets_a_layers_box_loss_refine_the_layer_before(twice):
    torch.manual_seed(0)
    model = build_model(_dino(look_forward_twice=twice, dn_groups=1)).train()
    out = model([torch.randn(3, 64, 64)], TARGETS[:1])
    out["pred_boxes"].sum().backward()  # the last (second) layer's boxes only
    grad = model.bbox_embed[0].layers[-1].weight.grad
    assert (grad is not None and grad.abs().sum() > 0) == twice


def test_contrastive_negatives_are_trained_as_no_object():
    torch.manual_seed(0)
    cfg = _dino()
    model = build_model(cfg).train()
    out = model([torch.randn(3, 64, 64), torch.randn(3, 64, 64)], TARGETS)
    meta = out["dn_meta"]
    negative = ~meta.slot_positive().repeat(meta.groups)  # [P]
    crit = SetCriterion(cfg)
    losses = []
    for value in (-8.0, 8.0):  # negatives sure there is no object, then sure there is
        layers = [{**layer, "pred_logits": layer["pred_logits"].detach().clone()} for layer in out["dn_outputs"]]
        for layer in layers:
            layer["pred_logits"][:, negative] = value
        losses.append(crit({**out, "dn_outputs": layers}, TARGETS)["dn_loss_ce"].item())
    assert losses[1] > losses[0] + 1.0


def test_varifocal_target_is_the_iou():
    """The varifocal gradient on a matched query's class vanishes where its probability equals its
    box's IoU with the object, and pushes it up below that."""
    from detr_core.model.matcher import Matched, PackedTargets

    cfg = dataclasses.replace(_dino(), dn_groups=0, dn_contrastive=False)
    crit = SetCriterion(cfg, LossConfig(varifocal=True))
    packed = PackedTargets.pack(TARGETS[:1])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.15], [0.8, 0.8, 0.1, 0.1]]])  # query 0: half the first object
    matched = Matched.from_indices([(torch.tensor([0]), torch.tensor([0]))], packed)
    for p, sign in ((0.5, 0), (0.2, -1)):  # IoU of query 0 with object 0 is 0.5
        logits = torch.full((1, 2, 3), -20.0)
        logits[0, 0, 0] = torch.logit(torch.tensor(p))
        logits.requires_grad_()
        crit.loss_labels(logits, packed, matched, 1.0, log=False, boxes=boxes)["loss_ce"].backward()
        g = logits.grad[0, 0, 0].item()
        assert (abs(g) < 1e-6) if sign == 0 else (g < -0.1)


@pytest.mark.parametrize("content", ["learned", "encoder"])
def test_the_decoders_first_content_is_the_embedding_or_the_selected_encoder_tokens(content):
    """RT-DETR (``learn_query_content=False``, its default): each query's content starts as its
    selected token's projected encoder feature, detached; DINO's mixed selection keeps the
    learned embedding (only the boxes come from the encoder)."""
    torch.manual_seed(0)
    model = build_model(tiny("rt_detr", query_content=content)[0]).train()
    with torch.no_grad():  # proposals whose scores differ from token to token
        model.enc_class_embed.weight.normal_(0, 1.0)
    first = []
    model.transformer.decoder.layers[0].register_forward_pre_hook(lambda module, args: first.append(args[0]))
    cap = model([torch.randn(3, 64, 64), torch.randn(3, 48, 64)], capture=True)["capture"]
    content_in = first[0]  # [B, Q, D] the first decoder layer's tgt
    t = model.transformer
    if content == "encoder":
        projected = t.enc_output_norm(t.enc_output(cap.memory))  # [B, S, D]
        expected = projected.gather(1, cap.selected_tokens[..., None].expand(-1, -1, projected.shape[-1]))
        assert not hasattr(model, "query_content") and not content_in.requires_grad
        assert expected[0, 0].ne(expected[0, 1]).any()  # different tokens, different content
    else:
        expected = model.query_content.weight[None].expand(2, -1, -1)
        assert content_in.requires_grad
    torch.testing.assert_close(content_in, expected)


def test_rt_detr_takes_its_content_from_the_encoder_and_dino_learns_it():
    assert preset("rt_detr")[0].query_content == "encoder" and preset("dino")[0].query_content == "learned"
    with pytest.raises(ValueError, match="query_content='encoder' needs query_select"):
        dataclasses.replace(_dino(), query_select=False, query_content="encoder")
    with pytest.raises(ValueError, match="query_content='encoder' .* needs attention='deformable'"):
        dataclasses.replace(tiny("fast")[0], query_content="encoder")
    with pytest.raises(ValueError, match="unknown query_content"):
        dataclasses.replace(_dino(), query_content="both")
