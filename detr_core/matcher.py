"""Hungarian matching between predictions and ground truth (``scipy.optimize.linear_sum_assignment``).

cost = w_class * class cost + w_L1 * L1 + w_giou * (-GIoU). With softmax classification the class
cost is -p(class), as in the paper; with focal classification it is the focal-loss difference
used by Deformable DETR. One cost matrix is built for the whole batch, then split per image
(and per query group).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import generalized_box_iou

from .box_ops import cxcywh_to_xyxy

Indices = list[tuple[Tensor, Tensor]]  # per image: (query indices, target indices), both int64


@dataclass
class HungarianMatcher:
    cost_class: float = 1.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    classifier: str = "softmax"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    @torch.no_grad()
    def cost_parts(self, logits: Tensor, boxes: Tensor, labels: Tensor, target_boxes: Tensor) -> dict[str, Tensor]:
        """Unweighted cost parts between N predictions and M targets.

        logits: [N, C], boxes: [N, 4] cxcywh, labels: [M], target_boxes: [M, 4] cxcywh.
        Returns {"class", "bbox", "giou", "total"}, each [N, M] ("total" is weighted).
        """
        logits = logits.float()
        boxes = boxes.float()
        target_boxes = target_boxes.float()
        if self.classifier == "softmax":
            cost_class = -logits.softmax(-1)[:, labels]
        else:
            p = logits.sigmoid()
            a, g = self.focal_alpha, self.focal_gamma
            neg = (1 - a) * p.pow(g) * -(1 - p + 1e-8).log()
            pos = a * (1 - p).pow(g) * -(p + 1e-8).log()
            cost_class = pos[:, labels] - neg[:, labels]
        cost_bbox = torch.cdist(boxes, target_boxes, p=1)
        if len(target_boxes) and len(boxes):
            cost_giou = -generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(target_boxes))
        else:
            cost_giou = boxes.new_zeros(len(boxes), len(target_boxes))
        total = self.cost_class * cost_class + self.cost_bbox * cost_bbox + self.cost_giou * cost_giou
        return {"class": cost_class, "bbox": cost_bbox, "giou": cost_giou, "total": total}

    @torch.no_grad()
    def __call__(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]], groups: int = 1) -> Indices:
        """outputs: pred_logits [B, G*Q, C], pred_boxes [B, G*Q, 4]; each group is matched one-to-one
        on its own. Returns per image (query indices, target indices) over all groups."""
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        b, n = logits.shape[:2]
        labels = torch.cat([t["labels"] for t in targets])
        target_boxes = torch.cat([t["boxes"] for t in targets])
        cost = self.cost_parts(logits.flatten(0, 1), boxes.flatten(0, 1), labels, target_boxes)["total"]
        cost = cost.view(b, n, len(labels)).cpu()  # [B, G*Q, sum of M_i]
        sizes = [len(t["boxes"]) for t in targets]
        per_group = n // groups
        indices: Indices = []
        for i, c in enumerate(cost.split(sizes, -1)):
            c = c[i]  # [G*Q, M_i]
            rows_all, cols_all = [], []
            for g in range(groups):
                rows, cols = linear_sum_assignment(c[g * per_group : (g + 1) * per_group].numpy())
                rows_all.append(torch.as_tensor(rows, dtype=torch.int64) + g * per_group)
                cols_all.append(torch.as_tensor(cols, dtype=torch.int64))
            indices.append((torch.cat(rows_all), torch.cat(cols_all)))
        device = logits.device
        return [(r.to(device), c.to(device)) for r, c in indices]
