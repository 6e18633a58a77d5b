"""The set criterion: named unweighted parts, a weighted total, and the paper's definitions."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, generalized_box_iou

from detr_core.config import LossConfig
from detr_core.model.losses import LossTerm, SetCriterion, loss_terms


def _outputs(b, q, c, layers=1, seed=0):
    g = torch.Generator().manual_seed(seed)

    def one():
        return {"pred_logits": torch.randn(b, q, c, generator=g, requires_grad=True),
                "pred_boxes": (torch.rand(b, q, 4, generator=g) * 0.4 + 0.3).requires_grad_()}

    out = one()
    out["aux_outputs"] = [one() for _ in range(layers - 1)]
    return out


TARGETS = [
    {"labels": torch.tensor([1, 0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.3, 0.3, 0.1, 0.1]])},
    {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.6, 0.4, 0.3, 0.2]])},
]


def test_parts_match_the_paper_definitions(tiny_config):
    crit = SetCriterion(tiny_config, LossConfig())
    out = _outputs(2, tiny_config.num_queries, tiny_config.num_classes + 1)
    losses = crit(out, TARGETS)
    indices = crit.matcher(out, TARGETS)
    # classification: CE over all queries, unmatched -> no-object with weight 0.1
    target = torch.full((2, tiny_config.num_queries), tiny_config.num_classes)
    for i, (r, c) in enumerate(indices):
        target[i, r] = TARGETS[i]["labels"][c]
    weight = torch.ones(tiny_config.num_classes + 1)
    weight[-1] = 0.1
    ce = F.cross_entropy(out["pred_logits"].transpose(1, 2), target, weight)
    torch.testing.assert_close(losses["loss_ce"], ce)
    # boxes: L1 and 1 - GIoU over matched pairs, divided by the number of objects (3)
    src = torch.cat([out["pred_boxes"][i, r] for i, (r, _) in enumerate(indices)])
    tgt = torch.cat([TARGETS[i]["boxes"][c] for i, (_, c) in enumerate(indices)])
    torch.testing.assert_close(losses["loss_bbox"], (src - tgt).abs().sum() / 3)
    giou = torch.diag(generalized_box_iou(box_convert(src, "cxcywh", "xyxy"), box_convert(tgt, "cxcywh", "xyxy")))
    torch.testing.assert_close(losses["loss_giou"], (1 - giou).sum() / 3)


def test_total_is_the_weighted_sum_over_layers(tiny_config):
    tiny_config = replace(tiny_config, num_decoder_layers=3)  # the three layers of the outputs below
    crit = SetCriterion(tiny_config, LossConfig(weight_class=1, weight_bbox=5, weight_giou=2))
    out = _outputs(2, tiny_config.num_queries, tiny_config.num_classes + 1, layers=3)
    losses = crit(out, TARGETS)
    for suffix in ("", "_0", "_1"):
        assert {f"loss_ce{suffix}", f"loss_bbox{suffix}", f"loss_giou{suffix}"} <= losses.keys()
    expected = sum(losses[f"loss_ce{s}"] + 5 * losses[f"loss_bbox{s}"] + 2 * losses[f"loss_giou{s}"]
                   for s in ("", "_0", "_1"))
    torch.testing.assert_close(losses["loss"], expected)
    assert {"class_error", "cardinality_error"} <= losses.keys()
    losses["loss"].backward()
    assert out["aux_outputs"][0]["pred_boxes"].grad is not None


def test_no_aux_loss_uses_only_the_last_layer(tiny_config):
    crit = SetCriterion(replace(tiny_config, aux_loss=False))
    losses = crit(_outputs(2, tiny_config.num_queries, tiny_config.num_classes + 1, layers=3), TARGETS)
    assert "loss_ce_0" not in losses


def test_empty_targets_give_finite_losses(tiny_config):
    crit = SetCriterion(tiny_config)
    empty = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}] * 2
    losses = crit(_outputs(2, tiny_config.num_queries, tiny_config.num_classes + 1), empty)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_bbox"] == 0 and losses["loss_giou"] == 0
    losses["loss"].backward()


def test_perfect_predictions_have_zero_box_loss(tiny_config):
    crit = SetCriterion(tiny_config)
    q = tiny_config.num_queries
    logits = torch.full((2, q, 4), -10.0)
    logits[..., -1] = 10.0
    boxes = torch.full((2, q, 4), 0.5)
    for i, t in enumerate(TARGETS):
        n = len(t["labels"])
        boxes[i, :n] = t["boxes"]
        logits[i, torch.arange(n), t["labels"]] = 30.0
    losses = crit({"pred_logits": logits, "pred_boxes": boxes, "aux_outputs": []}, TARGETS)
    assert losses["loss_bbox"].item() == pytest.approx(0, abs=1e-6)
    assert losses["loss_giou"].item() == pytest.approx(0, abs=1e-5)  # torchvision's eps
    assert losses["loss_ce"].item() < 1e-6
    assert losses["class_error"].item() == 0
    assert losses["cardinality_error"].item() == 0


def test_focal_and_denoising_parts(tiny_config):
    from detr_core.model.detr import DETR

    cfg = replace(tiny_config, query_type="anchor", dn_groups=3, num_query_groups=2, classifier="focal")
    model = DETR(cfg).train()
    out = model(torch.randn(2, 3, 64, 64), TARGETS)
    losses = SetCriterion(cfg, LossConfig(weight_dn=0.5))(out, TARGETS)
    for name in ("dn_loss_ce", "dn_loss_bbox", "dn_loss_giou", "dn_loss_bbox_0"):
        assert name in losses and torch.isfinite(losses[name])
    crit = SetCriterion(cfg, LossConfig(weight_dn=0.5))
    assert crit.weight_dict["dn_loss_bbox_0"] == 2.5
    assert crit.weight_dict["loss_bbox_0"] == 5.0  # the earlier (of two) decoder layers
    assert crit.weight_dict.get("class_error", 0.0) == 0.0
    # every part the criterion returns has its weight in the one dict; the rest is logging only
    assert set(losses) - set(crit.weight_dict) == {"loss", "class_error", "cardinality_error"}
    terms = loss_terms(cfg, LossConfig(weight_dn=0.5))
    assert terms["dn_loss_bbox_0"] == LossTerm("loss_bbox", "denoising", 0, 2.5)
    assert terms["loss_giou"] == LossTerm("loss_giou", "decoder", None, 2.0)
    losses["loss"].backward()
    assert model.label_enc.weight.grad is not None  # the denoising queries are trained
