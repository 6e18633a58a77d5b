"""Box helpers. Conversions, IoU and GIoU come from ``torchvision.ops``; this file only adds
the few DETR-specific pieces around them (scaling to pixels, inverse sigmoid, pairwise L1).

Box formats are named in every signature: ``cxcywh`` normalized to [0, 1] is what the model
predicts; ``xyxy`` in pixels is what people look at and what COCO evaluation wants (as xywh).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "cxcywh_to_xyxy",
    "xyxy_to_cxcywh",
    "normalized_cxcywh_to_pixel_xyxy",
    "inverse_sigmoid",
]


def cxcywh_to_xyxy(boxes_cxcywh: Tensor) -> Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x0, y0, x1, y1), same units."""
    # torchvision's box_convert arithmetic (centre -/+ half the size) in two ops instead of eight
    centre, size = boxes_cxcywh[..., :2], boxes_cxcywh[..., 2:]
    return torch.cat((centre - 0.5 * size, centre + 0.5 * size), dim=-1)


def xyxy_to_cxcywh(boxes_xyxy: Tensor) -> Tensor:
    """[..., 4] (x0, y0, x1, y1) -> [..., 4] (cx, cy, w, h), same units."""
    from torchvision.ops import box_convert  # imported on use: torchvision costs seconds at startup

    shape = boxes_xyxy.shape
    return box_convert(boxes_xyxy.reshape(-1, 4), "xyxy", "cxcywh").reshape(shape)


def normalized_cxcywh_to_pixel_xyxy(boxes_cxcywh: Tensor, height: float, width: float) -> Tensor:
    """[..., 4] cxcywh in [0, 1] -> [..., 4] xyxy in pixels of an image of size (height, width)."""
    scale = boxes_cxcywh.new_tensor([width, height, width, height])
    return cxcywh_to_xyxy(boxes_cxcywh) * scale


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """logit(x), clamped so that boxes touching the image border stay finite."""
    x = x.clamp(min=0.0, max=1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))
