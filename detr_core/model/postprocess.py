"""From raw outputs to per-query predictions: one prediction per query, no NMS (DETR's rule)."""

from __future__ import annotations

import torch
from torch import Tensor

from detr_core.box_ops import normalized_cxcywh_to_pixel_xyxy


def class_probabilities(logits: Tensor, classifier: str) -> Tensor:
    """[..., C] logits -> [..., K + 1] per-class probabilities, the last entry "no object".

    softmax: the usual distribution. focal: independent sigmoids per class, and "no object" is
    1 - the largest of them (so the row does not sum to 1).
    """
    if classifier == "softmax":
        return logits.float().softmax(-1)
    p = logits.float().sigmoid()
    return torch.cat([p, 1 - p.max(-1, keepdim=True).values], dim=-1)


def scores_and_labels(probs: Tensor) -> tuple[Tensor, Tensor]:
    """[..., K + 1] -> (score [...], label [...]): the best real class of each query."""
    scores, labels = probs[..., :-1].max(-1)
    return scores, labels


def detections(
    logits: Tensor, boxes_cxcywh: Tensor, classifier: str, sizes: Tensor
) -> list[dict[str, Tensor]]:
    """Batch outputs -> per image {scores [Q], labels [Q], boxes [Q, 4] xyxy pixels}.

    logits [B, Q, C], boxes_cxcywh [B, Q, 4] in [0, 1], sizes [B, 2] as (height, width).
    """
    scores, labels = scores_and_labels(class_probabilities(logits, classifier))
    out = []
    for s, lab, bx, (h, w) in zip(scores, labels, boxes_cxcywh.float(), sizes.tolist()):
        out.append({"scores": s, "labels": lab, "boxes": normalized_cxcywh_to_pixel_xyxy(bx, h, w)})
    return out
