"""Hungarian matching between predictions and ground truth (``scipy.optimize.linear_sum_assignment``).

scipy and torchvision are imported where they are used: the window imports this module at
startup, long before anything is matched, and those two imports cost seconds there.

cost = w_class * class cost + w_L1 * L1 + w_giou * (-GIoU). With softmax classification the class
cost is -p(class), as in the paper; with focal classification it is the focal-loss difference
used by Deformable DETR. Each prediction is costed against its own image's targets only (padded
to the largest count, all images and decoder layers in one go), then each image (and each query
group) is assigned on its own. Non-finite predictions raise ``FloatingPointError`` before matching.

``assignment="greedy"`` (a study lever, ``LossConfig.matcher``) replaces the optimal assignment
by :func:`greedy_assignment`: still one query per object, but each pair is chosen for itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from detr_core.box_ops import cxcywh_to_xyxy

Indices = list[tuple[Tensor, Tensor]]  # per image: (query indices, target indices), both int64


@dataclass
class PackedTargets:
    """A batch's targets, gathered once per training step: every image's labels and boxes in one
    tensor (image by image), where each image's begin, and the same padded to the largest count."""

    labels: Tensor  # [N] int64
    boxes: Tensor  # [N, 4] cxcywh
    sizes: list[int]  # objects per image
    offsets: Tensor  # [B] int64: index of each image's first object in ``labels`` / ``boxes``
    padded_labels: Tensor  # [B, M] int64, 0 past an image's own count
    padded_boxes: Tensor  # [B, M, 4] float32, (0.5, 0.5, 1, 1) past an image's own count (a valid box)
    padded_valid: Tensor  # [B, M] bool

    @classmethod
    def pack(cls, targets: list[dict[str, Tensor]] | PackedTargets) -> PackedTargets:
        if isinstance(targets, PackedTargets):
            return targets
        sizes = [len(t["labels"]) for t in targets]
        b, m = len(targets), max(sizes, default=0)
        device = targets[0]["labels"].device if targets else torch.device("cpu")
        labels = torch.cat([t["labels"] for t in targets]) if targets else torch.zeros(0, dtype=torch.int64)
        boxes = torch.cat([t["boxes"] for t in targets]) if targets else torch.zeros(0, 4)
        counts = torch.tensor(sizes, dtype=torch.int64, device=device)
        offsets = torch.cumsum(counts, 0) - counts
        image = torch.repeat_interleave(torch.arange(b, device=device), counts)  # [N]
        slot = torch.arange(len(labels), device=device) - offsets[image]  # [N]
        padded_labels = torch.zeros(b, m, dtype=torch.int64, device=device)
        padded_labels[image, slot] = labels
        padded_boxes = boxes.new_tensor([0.5, 0.5, 1.0, 1.0]).float().repeat(b, m, 1)
        padded_boxes[image, slot] = boxes.float()
        padded_valid = torch.zeros(b, m, dtype=torch.bool, device=device)
        padded_valid[image, slot] = True
        return cls(labels, boxes, sizes, offsets, padded_labels, padded_boxes, padded_valid)


def greedy_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching, greedily: the cheapest (query, object) pair of ``cost`` first, then
    the cheapest pair among the queries and objects left, until one side runs out. Where two
    objects want the same query (their argmin collides), the one that wants it more gets it and
    the other takes its next-best query, though giving them the other way round may cost less:
    what the Hungarian algorithm would see.

    cost: [Q, M]. Returns (query indices, object indices), int64 [min(Q, M)] each, sorted by query
    (as ``scipy.optimize.linear_sum_assignment`` returns them)."""
    q, m = cost.shape
    order = np.argsort(cost, axis=None, kind="stable")  # every pair, cheapest first
    query_free = np.ones(q, dtype=bool)
    object_free = np.ones(m, dtype=bool)
    rows, cols = [], []
    for flat in order:
        if len(rows) == min(q, m):
            break
        i, j = divmod(int(flat), m)
        if query_free[i] and object_free[j]:
            query_free[i] = object_free[j] = False
            rows.append(i)
            cols.append(j)
    rows_a, cols_a = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    by_query = np.argsort(rows_a, kind="stable")
    return rows_a[by_query], cols_a[by_query]


ASSIGNMENTS = ("hungarian", "greedy")


@dataclass
class HungarianMatcher:
    """The set matcher: costs, then one assignment per image and query group, the optimal one
    (Hungarian) unless ``assignment="greedy"``."""

    cost_class: float = 1.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    classifier: str = "softmax"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    assignment: str = "hungarian"  # or "greedy" (see greedy_assignment)

    def __post_init__(self) -> None:
        if self.assignment not in ASSIGNMENTS:
            raise ValueError(f"unknown assignment {self.assignment!r}; choose one of {ASSIGNMENTS}")

    def assign(self, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[Q, M] cost -> (query indices, object indices) of this matcher's assignment."""
        if self.assignment == "greedy":
            return greedy_assignment(cost)
        from scipy.optimize import linear_sum_assignment  # on use: scipy costs a second at startup

        return linear_sum_assignment(cost)

    def class_cost_table(self, logits: Tensor) -> Tensor:
        """[..., C] logits -> [..., C] the class cost of each prediction for each class."""
        logits = logits.float()
        if self.classifier == "softmax":
            return -logits.softmax(-1)
        p = logits.sigmoid()
        a, g = self.focal_alpha, self.focal_gamma
        neg = (1 - a) * p.pow(g) * -(1 - p + 1e-8).log()
        pos = a * (1 - p).pow(g) * -(p + 1e-8).log()
        return pos - neg

    @torch.no_grad()
    def cost_parts(self, logits: Tensor, boxes: Tensor, labels: Tensor, target_boxes: Tensor) -> dict[str, Tensor]:
        """Unweighted cost parts between N predictions and M targets (what the inspector shows).

        logits: [Q, C], boxes: [Q, 4] cxcywh, labels: [M], target_boxes: [M, 4] cxcywh.
        Returns {"class", "bbox", "giou", "total"}, each [Q, M] ("total" is weighted).
        """
        from torchvision.ops import (
            generalized_box_iou,  # on use: torchvision costs seconds at startup
        )

        boxes = boxes.float()
        target_boxes = target_boxes.float()
        cost_class = self.class_cost_table(logits)[:, labels]
        cost_bbox = torch.cdist(boxes, target_boxes, p=1)
        if len(target_boxes) and len(boxes):
            cost_giou = -generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(target_boxes))
        else:
            cost_giou = boxes.new_zeros(len(boxes), len(target_boxes))
        total = self.cost_class * cost_class + self.cost_bbox * cost_bbox + self.cost_giou * cost_giou
        return {"class": cost_class, "bbox": cost_bbox, "giou": cost_giou, "total": total}

    @torch.no_grad()
    def batched_cost(
        self, logits: Tensor, boxes: Tensor, targets: list[dict[str, Tensor]] | PackedTargets
    ) -> Tensor:
        """The weighted cost of every prediction against its own image's targets only.

        logits: [B, Q, C], boxes: [B, Q, 4] cxcywh. Returns [B, Q, M_max] (targets padded to the
        largest count; columns past an image's own count are meaningless). Same numbers as
        ``cost_parts`` on each image's block, without building the whole batch-by-batch matrix.
        """
        from torchvision.ops import generalized_box_iou_loss

        b, n = logits.shape[:2]
        packed = PackedTargets.pack(targets)
        labels, tboxes = packed.padded_labels, packed.padded_boxes  # padding boxes are valid boxes
        m = labels.shape[1]
        boxes = boxes.float()
        cost_class = self.class_cost_table(logits).gather(2, labels[:, None, :].expand(b, n, m))
        pb = boxes[:, :, None, :].expand(b, n, m, 4)
        tb = tboxes[:, None, :, :].expand(b, n, m, 4)
        cost_bbox = (pb - tb).abs().sum(-1)
        # elementwise GIoU from torchvision: generalized_box_iou_loss = 1 - GIoU
        cost_giou = generalized_box_iou_loss(
            cxcywh_to_xyxy(pb.reshape(-1, 4)), cxcywh_to_xyxy(tb.reshape(-1, 4)), reduction="none"
        ).view(b, n, m) - 1.0
        return self.cost_class * cost_class + self.cost_bbox * cost_bbox + self.cost_giou * cost_giou

    @torch.no_grad()
    def __call__(
        self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]] | PackedTargets, groups: int = 1
    ) -> Indices:
        """outputs: pred_logits [B, G*Q, C], pred_boxes [B, G*Q, 4]; each group is matched one-to-one
        on its own. Returns per image (query indices, target indices) over all groups."""
        return self.match_layers([(outputs["pred_logits"], outputs["pred_boxes"])], targets, groups)[0]

    @torch.no_grad()
    def match_layers(
        self, layers: list[tuple[Tensor, Tensor]], targets: list[dict[str, Tensor]] | PackedTargets, groups: int = 1
    ) -> list[Indices]:
        """Match several decoder layers at once: one cost computation for all of them.

        layers: per layer (logits [B, G*Q, C], boxes [B, G*Q, 4]). Returns per layer what
        ``__call__`` returns for it.
        """
        result = []
        for m in self.match_layers_flat(layers, targets, groups):
            counts = m.counts
            result.append(list(zip(m.src.split(counts), m.tgt.split(counts))))
        return result

    @torch.no_grad()
    def match_layers_flat(
        self, layers: list[tuple[Tensor, Tensor]], targets: list[dict[str, Tensor]] | PackedTargets, groups: int = 1
    ) -> list[Matched]:
        """What :meth:`match_layers` finds, per layer as three flat index tensors over the batch
        (what the losses gather with), built from one array per layer instead of two per image."""
        logits = torch.cat([lg for lg, _ in layers], 1)
        boxes = torch.cat([bx for _, bx in layers], 1)
        if not (bool(torch.isfinite(logits).all()) and bool(torch.isfinite(boxes).all())):
            # a diverged model: say so, instead of the assignment solver's "invalid numeric entries"
            raise FloatingPointError("the predictions are not finite (NaN or infinite)")
        packed = PackedTargets.pack(targets)
        n = layers[0][0].shape[1]
        per_group = n // groups
        device = logits.device
        sizes = packed.sizes
        cost = self.batched_cost(logits, boxes, packed).cpu().numpy() if max(sizes, default=0) else None
        if cost is not None and not np.isfinite(cost).all():
            raise FloatingPointError("the matching cost is not finite (NaN or infinite)")
        offsets = np.cumsum([0] + sizes[:-1])
        result: list[Matched] = []
        for layer in range(len(layers)):
            rows_all, cols_all, counts = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], []
            for i, m_i in enumerate(sizes):
                count = 0
                for g in range(groups if m_i else 0):
                    start = layer * n + g * per_group
                    rows, cols = self.assign(cost[i, start : start + per_group, :m_i])
                    rows_all.append(rows + g * per_group)
                    cols_all.append(cols)
                    count += len(rows)
                counts.append(count)
            src = torch.as_tensor(np.concatenate(rows_all), dtype=torch.int64)
            tgt = torch.as_tensor(np.concatenate(cols_all), dtype=torch.int64)
            batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.as_tensor(counts, dtype=torch.int64))
            flat = torch.as_tensor(np.repeat(offsets, counts), dtype=torch.int64) + tgt if len(sizes) else tgt
            result.append(Matched(batch.to(device), src.to(device), tgt.to(device), flat.to(device), counts))
        return result


@dataclass
class Matched:
    """One layer's matches over the whole batch, image by image: prediction ``(batch[k], src[k])``
    is matched to object ``tgt[k]`` of its image, which is ``flat[k]`` of :class:`PackedTargets`."""

    batch: Tensor  # [K] int64
    src: Tensor  # [K] int64 query index
    tgt: Tensor  # [K] int64 target index within its image
    flat: Tensor  # [K] int64 target index into PackedTargets.labels / .boxes
    counts: list[int]  # matches per image

    @classmethod
    def from_indices(cls, indices: Indices, packed: PackedTargets) -> Matched:
        counts = [len(src) for src, _ in indices]
        device = packed.labels.device
        batch = torch.repeat_interleave(torch.arange(len(indices), device=device),
                                        torch.as_tensor(counts, dtype=torch.int64, device=device))
        src = torch.cat([s for s, _ in indices]) if indices else torch.zeros(0, dtype=torch.int64, device=device)
        tgt = torch.cat([t for _, t in indices]) if indices else torch.zeros(0, dtype=torch.int64, device=device)
        return cls(batch, src, tgt, packed.offsets[batch] + tgt, counts)
