"""Matching and the set loss, in the small: re-matching after a ground-truth box moved, the loss
parts of every decoder layer for one sample, L1 against L1 + GIoU for a small and a large box,
and the no-object probability over training."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from torchvision.ops import box_iou, generalized_box_iou, generalized_box_iou_loss

from detr_core.analysis.matching import MatchingSnapshot
from detr_core.analysis.predict import evaluating, forward
from detr_core.box_ops import cxcywh_to_xyxy
from detr_core.config import LossConfig
from detr_core.model.losses import SetCriterion
from detr_core.model.matcher import HungarianMatcher
from detr_core.model.postprocess import class_probabilities


def rematch(snapshot: MatchingSnapshot, target_boxes_cxcywh: np.ndarray) -> MatchingSnapshot:
    """The same predictions matched to moved ground-truth boxes ([M, 4] cxcywh in [0, 1]): the L1
    and GIoU costs are recomputed, the class cost (which does not depend on boxes) is kept, and
    the optimal assignment is solved again. The model does not run."""
    boxes = torch.from_numpy(snapshot.pred_boxes_cxcywh).float()  # [Q, 4]
    targets = torch.from_numpy(np.asarray(target_boxes_cxcywh, dtype=np.float32))  # [M, 4]
    if targets.shape != (snapshot.num_targets, 4):
        raise ValueError(f"expected {snapshot.num_targets} boxes, got shape {tuple(targets.shape)}")
    cost_bbox = torch.cdist(boxes, targets, p=1).numpy()
    cost_giou = -generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(targets)).numpy()
    w = snapshot.weights
    total = w["class"] * snapshot.cost["class"] + w["bbox"] * cost_bbox + w["giou"] * cost_giou
    rows, cols = linear_sum_assignment(total)
    order = np.argsort(cols)
    cost = {"class": snapshot.cost["class"], "bbox": cost_bbox.astype(np.float32),
            "giou": cost_giou.astype(np.float32), "total": total.astype(np.float32)}
    return replace(snapshot, cost=cost, query_indices=rows[order].astype(np.int64),
                   target_indices=cols[order].astype(np.int64), target_boxes_cxcywh=targets.numpy())


@dataclass
class LayerLoss:
    layer: int  # 1-based decoder layer (the last one is the prediction the model gives)
    parts: dict[str, float]  # "loss_ce", "loss_bbox", "loss_giou": unweighted


def set_loss_by_layer(
    model: nn.Module, image: Tensor, target: dict[str, Tensor], loss_config: LossConfig | None = None
) -> list[LayerLoss]:
    """The set loss of one sample, part by part, for every decoder layer (the auxiliary losses),
    with the model in eval mode. image: [3, H, W] normalized; target: labels [M], boxes [M, 4]
    cxcywh in [0, 1]."""
    cfg = model.config  # type: ignore[attr-defined]
    criterion = SetCriterion(replace(cfg, aux_loss=True), loss_config)
    with evaluating(model):
        out = forward(model, image[None])
    outputs = {k: v for k, v in out.items() if k in ("pred_logits", "pred_boxes", "aux_outputs")}
    outputs = {"pred_logits": outputs["pred_logits"].float().cpu(), "pred_boxes": outputs["pred_boxes"].float().cpu(),
               "aux_outputs": [{k: v.float().cpu() for k, v in a.items()} for a in out["aux_outputs"]]}
    losses = criterion(outputs, [{"labels": target["labels"].cpu(), "boxes": target["boxes"].cpu().float()}])
    n = len(outputs["aux_outputs"]) + 1
    rows = []
    for i in range(n):
        suffix = "" if i == n - 1 else f"_{i}"
        rows.append(LayerLoss(i + 1, {p: float(losses[p + suffix]) for p in ("loss_ce", "loss_bbox", "loss_giou")}))
    return rows


@dataclass
class BoxLossComparison:
    """One prediction error (the same shift in normalized units) on a small and a large box."""

    shift: float  # added to cx and cy
    small_side: float
    large_side: float
    l1_small: float  # L1 loss (sum over cx, cy, w, h)
    l1_large: float
    giou_small: float  # 1 - GIoU
    giou_large: float
    iou_small: float
    iou_large: float
    weights: tuple[float, float]  # (L1 weight, GIoU weight) of the combined loss

    @property
    def combined_small(self) -> float:
        return self.weights[0] * self.l1_small + self.weights[1] * self.giou_small

    @property
    def combined_large(self) -> float:
        return self.weights[0] * self.l1_large + self.weights[1] * self.giou_large


def box_loss_comparison(shift: float = 0.04, small_side: float = 0.1, large_side: float = 0.5,
                        loss_config: LossConfig | None = None) -> BoxLossComparison:
    """Score a prediction shifted by ``shift`` from a small and from a large square ground-truth
    box with L1 alone and with L1 + GIoU (the loss config's weights). L1 is blind to the box's
    size; GIoU sees that the small box is badly missed."""
    lc = loss_config or LossConfig()
    out: dict[str, float] = {}
    for name, side in (("small", small_side), ("large", large_side)):
        gt = torch.tensor([[0.5, 0.5, side, side]])
        pred = gt + torch.tensor([[shift, shift, 0.0, 0.0]])
        out[f"l1_{name}"] = float((pred - gt).abs().sum())
        out[f"giou_{name}"] = float(generalized_box_iou_loss(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(gt)).sum())
        out[f"iou_{name}"] = float(box_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(gt))[0, 0])
    return BoxLossComparison(shift, small_side, large_side, weights=(lc.weight_bbox, lc.weight_giou), **out)


@dataclass
class NoObjectPoint:
    """At one training step, on a fixed set of training images."""

    step: int | None
    matched_true_class: float  # mean probability matched queries give their object's class
    unmatched_no_object: float  # mean "no object" probability of the unmatched queries


def no_object_point(model: nn.Module, matcher: HungarianMatcher, images: Any, targets: list[dict[str, Tensor]],
                    step: int | None = None) -> NoObjectPoint:
    """Match ``images`` with ``model`` (eval mode) and average the two probabilities."""
    with evaluating(model):
        out = forward(model, images)
    logits = out["pred_logits"].float().cpu()  # [B, Q, C]
    boxes = out["pred_boxes"].float().cpu()
    targets = [{"labels": t["labels"].cpu(), "boxes": t["boxes"].cpu().float()} for t in targets]
    probs = class_probabilities(logits, matcher.classifier)  # [B, Q, K + 1]
    matched, unmatched = [], []
    for b, (rows, cols) in enumerate(matcher({"pred_logits": logits, "pred_boxes": boxes}, targets)):
        labels = targets[b]["labels"][cols]
        matched.append(probs[b, rows, labels])
        mask = torch.ones(probs.shape[1], dtype=torch.bool)
        mask[rows] = False
        unmatched.append(probs[b, mask, -1])
    m = torch.cat(matched) if matched else torch.zeros(0)
    u = torch.cat(unmatched) if unmatched else torch.zeros(0)
    return NoObjectPoint(step, float(m.mean()) if len(m) else math.nan, float(u.mean()) if len(u) else math.nan)


class NoObjectProbe:
    """A training probe (see :mod:`detr_core.train.live`): :func:`no_object_point` on the first
    ``num_images`` images of the training stream with the live model. Picklable."""

    def __init__(self, num_images: int = 8) -> None:
        self.num_images = num_images
        self.active = True
        self._batch: Any = None
        self._last_step: int | None = None

    def __call__(self, trainer: Any) -> NoObjectPoint | None:
        if not self.active or trainer.step == self._last_step:
            return None
        if self._batch is None:
            self._batch = trainer.dataset.batch(list(range(self.num_images)))
        self._last_step = trainer.step
        images, targets = self._batch
        return no_object_point(trainer.model, trainer.criterion.matcher, images, targets, trainer.step)
