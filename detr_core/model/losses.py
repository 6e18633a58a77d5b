"""The set criterion: Hungarian matching, then classification, L1 and GIoU losses.

``SetCriterion(...)(outputs, targets)`` returns a dict of named, *unweighted* parts
(``loss_ce``, ``loss_bbox``, ``loss_giou`` for the last decoder layer, ``loss_ce_0`` ... for the
earlier layers, ``dn_loss_*`` for denoising), the logging-only ``class_error`` and
``cardinality_error``, and ``loss``: the weighted total, computed in one place
(:meth:`SetCriterion.weighted_total`).

The weights are an explicit dict built in one place, :func:`loss_terms` (as the reference
implementation builds its ``weight_dict``; :attr:`SetCriterion.weight_dict` is name -> weight): every weighted entry by name, with its part, where
it comes from (decoder, denoising, dense head), its decoder layer and its weight. Whatever needs
to know what a loss name means (the run records, the plots) looks it up there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou, generalized_box_iou_loss, sigmoid_focal_loss

from detr_core.box_ops import cxcywh_to_xyxy
from detr_core.config import DETRConfig, LossConfig
from detr_core.model.dense_head import dense_assignment
from detr_core.model.matcher import HungarianMatcher, Matched, PackedTargets

LOSS_PARTS: tuple[str, ...] = ("loss_ce", "loss_bbox", "loss_giou")  # the weighted parts of one prediction set


@dataclass(frozen=True)
class LossTerm:
    """One weighted entry of the criterion's output."""

    part: str  # one of LOSS_PARTS
    source: str  # "decoder" (the matching queries), "denoising" or "dense"
    layer: int | None  # an earlier decoder layer (0 = the first); None for the last layer and the dense head
    weight: float


def loss_terms(model_config: DETRConfig, loss_config: LossConfig | None = None) -> dict[str, LossTerm]:
    """Every weighted entry :class:`SetCriterion` can return, by name (the only place the names
    and weights are made): ``<part>`` for the last decoder layer and ``<part>_<i>`` for the earlier
    layers (with ``aux_loss``); ``dn_<part>`` and ``dn_<part>_<i>`` for the denoising queries
    (with ``dn_groups``), scaled by ``weight_dn``; ``dense_<part>`` for the dense head (with
    ``dense_aux``), scaled by ``weight_dense``. Anything else the criterion returns (``loss``,
    ``class_error``, ``cardinality_error``) is for logging only, with weight 0."""
    lc = loss_config or LossConfig()
    base = {"loss_ce": lc.weight_class, "loss_bbox": lc.weight_bbox, "loss_giou": lc.weight_giou}
    earlier = range(model_config.num_decoder_layers - 1) if model_config.aux_loss else range(0)
    denoising = model_config.dn_groups > 0
    terms: dict[str, LossTerm] = {}
    for part, w in base.items():
        terms[part] = LossTerm(part, "decoder", None, w)
        if denoising:
            terms[f"dn_{part}"] = LossTerm(part, "denoising", None, w * lc.weight_dn)
        if model_config.dense_aux:
            terms[f"dense_{part}"] = LossTerm(part, "dense", None, w * lc.weight_dense)
        # the encoder's proposals: Deformable DETR's two-stage (class-agnostic), or the ones query
        # selection picks from where no dense head does (DINO, RT-DETR)
        if model_config.two_stage or (model_config.query_select and not model_config.dense_aux):
            terms[f"enc_{part}"] = LossTerm(part, "encoder", None, w)
        for i in earlier:
            terms[f"{part}_{i}"] = LossTerm(part, "decoder", i, w)
        for i in earlier if denoising else ():
            terms[f"dn_{part}_{i}"] = LossTerm(part, "denoising", i, w * lc.weight_dn)
    return terms


class SetCriterion(nn.Module):
    def __init__(self, model_config: DETRConfig, loss_config: LossConfig | None = None) -> None:
        super().__init__()
        lc = loss_config or LossConfig()
        self.loss_config = lc
        self.num_classes = model_config.num_classes
        self.classifier = model_config.classifier
        self.aux_loss = model_config.aux_loss
        self.matcher = HungarianMatcher(
            lc.cost_class, lc.cost_bbox, lc.cost_giou, model_config.classifier, lc.focal_alpha, lc.focal_gamma,
            lc.matcher,
        )
        empty_weight = torch.ones(self.num_classes + 1)
        empty_weight[-1] = lc.no_object_weight
        self.register_buffer("empty_weight", empty_weight)
        self.terms = loss_terms(model_config, lc)  # every weighted part by name
        self.weight_dict = {name: term.weight for name, term in self.terms.items()}
        # the counts the losses are normalized by (target boxes, the dense head's assigned tokens,
        # the matched queries of class_error), from this batch's count: None keeps it; distributed
        # training sets the mean over the processes (as the reference does for the boxes), so that
        # every part is the one of the whole batch in one process
        self.box_count: Callable[[int], float] | None = None

    def count(self, n: int) -> float:
        """``n`` counted in this process's share of the batch, as the losses normalize by it."""
        return float(n) if self.box_count is None else self.box_count(n)

    # --- the parts -----------------------------------------------------------------------
    def loss_labels(
        self, logits: Tensor, targets: PackedTargets, matched: Matched, num_boxes: float,
        log: bool = True, boxes: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """logits: [B, Q, C]. Unmatched queries are trained towards "no object". ``boxes``
        ([B, Q, 4] cxcywh) is needed for IoU-aware focal classification."""
        idx = (matched.batch, matched.src)
        target_o = targets.labels[matched.flat]
        if self.classifier == "softmax":
            target = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
            target[idx] = target_o
            loss = F.cross_entropy(logits.transpose(1, 2), target, self.empty_weight)
        elif self.loss_config.varifocal and boxes is not None:
            # varifocal loss (Zhang et al. 2021, RT-DETR's): a matched query's target is its IoU,
            # weighted by it; every other score is pushed down with weight alpha * p^gamma
            target = torch.zeros_like(logits)
            if len(target_o):
                src = boxes[idx].detach()
                iou = box_iou(cxcywh_to_xyxy(src), cxcywh_to_xyxy(targets.boxes[matched.flat])).diag()
                target[idx[0], idx[1], target_o] = iou.to(target.dtype)
            positive = torch.zeros_like(logits)
            positive[idx[0], idx[1], target_o] = 1.0
            p = logits.sigmoid().detach()
            lc = self.loss_config
            weight = lc.varifocal_alpha * p.pow(lc.focal_gamma) * (1 - positive) + target
            loss = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum") / num_boxes
        elif self.loss_config.iou_aware and boxes is not None:
            # quality focal loss (Li et al., 2020): the target of a matched query is the IoU of its
            # box with the object, so scores rank predictions by how well they are localized
            target = torch.zeros_like(logits)
            if len(target_o):
                src = boxes[idx].detach()
                tgt = targets.boxes[matched.flat]
                iou = box_iou(cxcywh_to_xyxy(src), cxcywh_to_xyxy(tgt)).diag().clamp(min=0.01)
                target[idx[0], idx[1], target_o] = iou
            p = logits.sigmoid()
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            loss = (bce * (p - target).abs().pow(self.loss_config.focal_gamma)).sum() / num_boxes
        else:
            onehot = torch.zeros_like(logits)
            onehot[idx[0], idx[1], target_o] = 1.0
            loss = sigmoid_focal_loss(
                logits, onehot, self.loss_config.focal_alpha, self.loss_config.focal_gamma, reduction="sum"
            ) / num_boxes
        out = {"loss_ce": loss}
        if log:
            with torch.no_grad():
                matched = logits[idx]
                wrong = (matched[:, : self.num_classes].argmax(-1) != target_o).sum().float()
                # over the matched queries of every process (0 wrong when there are none)
                out["class_error"] = wrong * 100 / (self.count(len(target_o)) or 1.0)
        return out

    @torch.no_grad()
    def loss_cardinality(self, logits: Tensor, targets: PackedTargets) -> dict[str, Tensor]:
        """|number of predicted objects - number of true objects|, averaged over images (logging only)."""
        lengths = torch.as_tensor(targets.sizes, device=logits.device, dtype=torch.float)
        if self.classifier == "softmax":
            predicted = (logits.argmax(-1) != logits.shape[-1] - 1).sum(1)
        else:
            predicted = (logits.sigmoid().max(-1).values > 0.5).sum(1)
        return {"cardinality_error": F.l1_loss(predicted.float(), lengths)}

    def loss_boxes(
        self, boxes: Tensor, targets: PackedTargets, matched: Matched, num_boxes: float
    ) -> dict[str, Tensor]:
        """boxes: [B, Q, 4] cxcywh. L1 and GIoU over matched pairs, normalized by num_boxes."""
        src = boxes[matched.batch, matched.src]
        tgt = targets.boxes[matched.flat]
        loss_bbox = F.l1_loss(src, tgt, reduction="sum") / num_boxes
        if len(src):
            loss_giou = generalized_box_iou_loss(cxcywh_to_xyxy(src), cxcywh_to_xyxy(tgt), reduction="sum") / num_boxes
        else:
            loss_giou = boxes.sum() * 0.0
        return {"loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def loss_denoising_labels(
        self, logits: Tensor, targets: PackedTargets, dn_matched: Matched, num_boxes: float,
        negatives: Matched | None = None,
    ) -> Tensor:
        """Denoising queries: each positive must name its object's true class, each contrastive
        negative (DINO) "no object"; padding slots are ignored."""
        target_o = targets.labels[dn_matched.flat]
        matched = logits[dn_matched.batch, dn_matched.src]  # [P_valid, C]
        neg = logits[negatives.batch, negatives.src] if negatives is not None else logits[:0, 0]  # [N_valid, C]
        lc = self.loss_config
        if self.classifier == "softmax":
            loss = F.cross_entropy(matched, target_o, reduction="sum")
            if len(neg):
                no_object = torch.full((len(neg),), self.num_classes, dtype=torch.long, device=neg.device)
                loss = loss + F.cross_entropy(neg, no_object, reduction="sum")
            return loss / num_boxes
        onehot = F.one_hot(target_o, self.num_classes).to(matched.dtype)
        loss = sigmoid_focal_loss(matched, onehot, lc.focal_alpha, lc.focal_gamma, reduction="sum")
        if len(neg):
            loss = loss + sigmoid_focal_loss(neg, torch.zeros_like(neg), lc.focal_alpha, lc.focal_gamma, reduction="sum")
        return loss / num_boxes

    # --- the whole criterion -------------------------------------------------------------
    def forward(self, outputs: dict, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        groups = outputs.get("query_groups", 1)
        packed = PackedTargets.pack(targets)  # gathered once, for the matcher and every loss
        n_targets = self.count(len(packed.labels))
        num_boxes = max(float(n_targets) * groups, 1.0)  # query groups: the mean over groups

        losses: dict[str, Tensor] = {}
        layers = [outputs] + (outputs["aux_outputs"] if self.aux_loss else [])
        suffixes = [""] + [f"_{i}" for i in range(len(layers) - 1)]
        all_matched = self.matcher.match_layers_flat(
            [(layer["pred_logits"].detach(), layer["pred_boxes"].detach()) for layer in layers], packed, groups
        )
        for layer, suffix, matched in zip(layers, suffixes, all_matched):
            logits, boxes = layer["pred_logits"].float(), layer["pred_boxes"].float()
            parts = self.loss_labels(logits, packed, matched, num_boxes, log=suffix == "", boxes=boxes)
            parts.update(self.loss_boxes(boxes, packed, matched, num_boxes))
            if suffix == "":
                parts.update(self.loss_cardinality(logits[:, : logits.shape[1] // groups], packed))
            losses.update({k + suffix: v for k, v in parts.items()})

        if "dn_outputs" in outputs:
            meta = outputs["dn_meta"]
            dn_matched = Matched.from_indices(meta.indices(), packed)
            negatives = Matched.from_indices(meta.negative_indices(), packed) if meta.contrastive else None
            dn_boxes = max(float(n_targets) * meta.groups, 1.0)
            dn_layers = outputs["dn_outputs"] if self.aux_loss else outputs["dn_outputs"][-1:]
            n = len(dn_layers)
            for i, layer in enumerate(dn_layers):
                suffix = "" if i == n - 1 else f"_{i}"
                logits, boxes = layer["pred_logits"].float(), layer["pred_boxes"].float()
                losses["dn_loss_ce" + suffix] = self.loss_denoising_labels(logits, packed, dn_matched, dn_boxes,
                                                                           negatives)
                for k, v in self.loss_boxes(boxes, packed, dn_matched, dn_boxes).items():
                    losses["dn_" + k + suffix] = v
        if "dense" in outputs:
            losses.update(self.dense_losses(outputs["dense"], packed))
        if "enc_outputs" in outputs:
            losses.update(self.proposal_losses(outputs["enc_outputs"], packed, max(float(n_targets), 1.0)))
        losses["loss"] = self.weighted_total(losses)
        return losses

    def proposal_losses(self, enc: dict, packed: PackedTargets, num_boxes: float) -> dict[str, Tensor]:
        """The encoder's per-token proposals, matched one to one to the objects: as if every
        object were class 0 for two-stage Deformable DETR (the authors' class-agnostic proposal
        loss, ``enc["class_agnostic"]``), with their classes for query selection (DINO, RT-DETR;
        with varifocal loss their scores learn the IoU: RT-DETR's IoU-aware query selection)."""
        binary = packed
        if enc.get("class_agnostic", True):
            binary = replace(packed, labels=torch.zeros_like(packed.labels),
                             padded_labels=torch.zeros_like(packed.padded_labels))
        logits, boxes = enc["pred_logits"].float(), enc["pred_boxes"].float()  # [B, S, C], [B, S, 4]
        matched = self.matcher.match_layers_flat([(logits.detach(), boxes.detach())], binary, 1)[0]
        parts = self.loss_labels(logits, binary, matched, num_boxes, log=False, boxes=boxes)
        parts.update(self.loss_boxes(boxes, binary, matched, num_boxes))
        return {"enc_" + k: v for k, v in parts.items()}

    def dense_losses(self, dense: dict, targets: list[dict[str, Tensor]] | PackedTargets) -> dict[str, Tensor]:
        """The dense auxiliary head: focal classification over all tokens, L1 + GIoU on the
        tokens assigned to an object; normalized by the number of assigned tokens (over every
        process, as the main loss's boxes)."""
        logits, boxes = dense["logits"].float(), dense["boxes"].float()  # [B, S, C], [B, S, 4]
        packed = PackedTargets.pack(targets)
        assigned = dense_assignment(packed, dense["grid"], dense["valid"])  # [B, S]
        pos = assigned >= 0
        b_idx, s_idx = torch.nonzero(pos, as_tuple=True)
        n_pos = max(self.count(len(b_idx)), 1.0)
        flat = packed.offsets[b_idx] + assigned[b_idx, s_idx]  # into packed.labels / .boxes
        labels = packed.labels[flat]
        target_boxes = packed.boxes[flat]
        valid = dense["valid"]
        lc = self.loss_config
        if self.classifier == "focal":
            onehot = torch.zeros_like(logits)
            onehot[b_idx, s_idx, labels] = 1.0
            per = sigmoid_focal_loss(logits, onehot, lc.focal_alpha, lc.focal_gamma, reduction="none")
            loss_ce = (per * valid[..., None]).sum() / n_pos
        else:
            target = torch.full(logits.shape[:2], self.num_classes, dtype=torch.long, device=logits.device)
            target[b_idx, s_idx] = labels
            per = F.cross_entropy(logits.transpose(1, 2), target, self.empty_weight, reduction="none")
            loss_ce = (per * valid).sum() / n_pos
        src = boxes[b_idx, s_idx]
        loss_bbox = F.l1_loss(src, target_boxes, reduction="sum") / n_pos
        loss_giou = (
            generalized_box_iou_loss(cxcywh_to_xyxy(src), cxcywh_to_xyxy(target_boxes), reduction="sum") / n_pos
            if len(src) else boxes.sum() * 0.0
        )
        return {"dense_loss_ce": loss_ce, "dense_loss_bbox": loss_bbox, "dense_loss_giou": loss_giou}

    def weighted_total(self, losses: dict[str, Tensor]) -> Tensor:
        """The sum of every part times its weight in :attr:`weight_dict` (in the order of ``losses``)."""
        total: Tensor | None = None
        for name, value in losses.items():
            w = self.weight_dict.get(name, 0.0)
            if w:
                total = value * w if total is None else total + value * w
        assert total is not None, "no weighted loss parts"
        return total
