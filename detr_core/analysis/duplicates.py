"""Duplicate detections: pairs of kept predictions of one class that overlap (what decoder
self-attention and the set loss are there to prevent)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import box_iou


@dataclass
class DuplicateStats:
    pairs: int  # unordered pairs of kept predictions, same class, IoU above the limit
    kept: int  # predictions with score >= threshold, over all images
    images: int  # images with at least one such pair

    @property
    def rate(self) -> float:
        return self.pairs / self.kept if self.kept else 0.0


def duplicate_stats(
    predictions: Sequence[dict[str, Tensor]], threshold: float = 0.5, iou: float = 0.7
) -> DuplicateStats:
    """Count duplicate pairs. predictions: per image {scores [Q], labels [Q], boxes [Q, 4] xyxy
    (any consistent unit)}; a prediction is kept when its score is >= ``threshold``."""
    pairs = kept = images = 0
    for p in predictions:
        keep = p["scores"] >= threshold  # [Q]
        boxes, labels = p["boxes"][keep].float(), p["labels"][keep]  # [N, 4], [N]
        kept += len(boxes)
        if len(boxes) < 2:
            continue
        overlap = box_iou(boxes, boxes) > iou  # [N, N]
        same_class = labels[:, None] == labels[None, :]  # [N, N]
        n = int(torch.triu(overlap & same_class, diagonal=1).sum())
        pairs += n
        images += n > 0
    return DuplicateStats(pairs, kept, images)


def duplicate_rate(
    predictions: Sequence[dict[str, Tensor]], threshold: float = 0.5, iou: float = 0.7
) -> float:
    """Duplicate pairs per kept prediction, over all images.

    A prediction is kept when its score is >= ``threshold``. A duplicate pair is an unordered
    pair of kept predictions in one image with the same class and box IoU > ``iou``. The rate is
    (number of such pairs) / (number of kept predictions): 0 when no two kept boxes of one class
    overlap that much, 0.5 when every object is found exactly twice, 1.0 when three times; 0 when
    nothing is kept.
    """
    return duplicate_stats(predictions, threshold, iou).rate
