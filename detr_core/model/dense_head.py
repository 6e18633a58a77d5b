"""A dense auxiliary head on the encoder output (training only).

Every encoder token predicts a class and a box for the object whose centre region it lies in
(one-to-many, FCOS-style centre sampling), as in Co-DETR's collaborative auxiliary heads. It
gives the backbone and encoder a strong, dense training signal from the first step, which the
Hungarian-matched queries alone provide only slowly. Its own predictions are never the
detector's output: those still come from the fixed set of queries, one per query, without NMS.
With query selection (``query_select``) the head also runs at inference, to choose each
image's anchor boxes for the queries (see ``DETR._selected_anchors``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from detr_core.box_ops import inverse_sigmoid
from detr_core.model.transformer import MLP

if TYPE_CHECKING:  # the matcher pulls in scipy and torchvision: not needed to build the model
    from detr_core.model.matcher import PackedTargets


class DenseHead(nn.Module):
    def __init__(self, d_model: int, num_logits: int) -> None:
        super().__init__()
        self.class_embed = nn.Linear(d_model, num_logits)
        self.bbox_embed = MLP(d_model, d_model, 4, 2)
        nn.init.constant_(self.class_embed.bias, -4.6)  # prior probability 0.01
        nn.init.zeros_(self.bbox_embed.layers[-1].weight)
        nn.init.zeros_(self.bbox_embed.layers[-1].bias)

    def forward(self, memory: Tensor, grid_hw: tuple[int, int]) -> dict[str, Tensor]:
        """memory [B, S, D] -> logits [B, S, C], boxes [B, S, 4] cxcywh in [0, 1]."""
        anchors = cell_boxes(grid_hw, memory.device)  # [S, 4]
        boxes = (self.bbox_embed(memory) + inverse_sigmoid(anchors)).sigmoid()
        return {"logits": self.class_embed(memory), "boxes": boxes}


def cell_boxes(grid_hw: tuple[int, int], device: torch.device) -> Tensor:
    """[h*w, 4] cxcywh: each cell's centre with a box two cells wide (the head's starting guess)."""
    h, w = grid_hw
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    size = torch.stack([torch.full_like(cx, 2.0 / w), torch.full_like(cy, 2.0 / h)], dim=-1)
    return torch.cat([cx[..., None], cy[..., None], size], dim=-1).reshape(h * w, 4)


@torch.no_grad()
def dense_assignment(
    targets: list[dict[str, Tensor]] | PackedTargets, grid_hw: tuple[int, int], valid: Tensor, radius: float = 1.5
) -> Tensor:
    """For every token, the index of the target it predicts, or -1.

    A token is assigned to an object when its cell centre lies inside the object's box and
    within ``radius`` cells of its centre (the centre cell always counts); ties go to the
    smaller object. valid: [B, S] bool (False on padding). Returns [B, S] int64. All images at
    once, their targets padded to the largest count (padding is never positive).
    """
    from detr_core.model.matcher import PackedTargets

    packed = PackedTargets.pack(targets)
    h, w = grid_hw
    device = valid.device
    boxes, present = packed.padded_boxes.to(device), packed.padded_valid.to(device)  # [B, M, 4], [B, M]
    if boxes.shape[1] == 0:
        return torch.full(valid.shape, -1, dtype=torch.long, device=device)
    centres = cell_boxes(grid_hw, device)[:, :2]  # [S, 2]
    d = (centres[None, :, None, :] - boxes[:, None, :, :2]).abs()  # [B, S, M, 2]
    cell = torch.tensor([1.0 / w, 1.0 / h], device=device)
    inside_box = (d <= boxes[:, None, :, 2:] / 2).all(-1)
    near_centre = (d <= radius * cell).all(-1)
    centre_cell = (d <= cell / 2).all(-1)  # the cell that holds the centre
    positive = ((inside_box & near_centre) | centre_cell) & present[:, None, :]  # [B, S, M]
    area = (boxes[..., 2] * boxes[..., 3])[:, None, :].expand_as(positive)
    area = torch.where(positive, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(dim=2)
    return torch.where(torch.isfinite(best_area) & valid, best, torch.full_like(best, -1))
