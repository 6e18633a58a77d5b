"""2-D positional encodings of the image tokens.

- :class:`PositionEmbeddingSine` (the paper's choice): normalized coordinates, scale 2*pi,
  temperature 10000, computed from the padding mask so padded pixels do not shift positions.
- :class:`PositionEmbeddingLearned` (the paper's Table 3 alternative): one learned vector per row
  and one per column, as the reference's ``PositionEmbeddingLearned`` (same parameter names).

:func:`build_position_encoding` picks one from ``DETRConfig.position_embedding``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    """Returns [B, 2 * num_pos_feats, H, W]: the first half encodes y, the second half x."""

    def __init__(
        self,
        num_pos_feats: int = 128,
        temperature: float = 10000.0,
        normalize: bool = True,
        scale: float = 2 * math.pi,
    ) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale

    def forward(self, mask: Tensor) -> Tensor:
        # mask: [B, H, W] bool, True on padding
        not_mask = (~mask).to(torch.float32)
        y_embed = not_mask.cumsum(1)  # [B, H, W], 1..h_valid down each column
        x_embed = not_mask.cumsum(2)  # [B, H, W], 1..w_valid along each row
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x_embed[:, :, :, None] / dim_t  # [B, H, W, F]
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)  # [B, 2F, H, W]


class PositionEmbeddingLearned(nn.Module):
    """Returns [B, 2 * num_pos_feats, H, W]: the first half is the column's (x) embedding, the
    second the row's (y), as the reference. Rows and columns are counted from the top left
    corner, padding or not; a grid larger than ``size`` in either direction is refused."""

    def __init__(self, num_pos_feats: int = 128, size: int = 50) -> None:
        super().__init__()
        self.row_embed = nn.Embedding(size, num_pos_feats)
        self.col_embed = nn.Embedding(size, num_pos_feats)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, mask: Tensor) -> Tensor:
        # mask: [B, H, W] bool, True on padding (only its shape is used)
        b, h, w = mask.shape
        size = self.row_embed.num_embeddings
        if h > size or w > size:
            raise ValueError(f"the learned position encoding covers grids up to {size}x{size} tokens, "
                             f"got {h}x{w}: use smaller images or position_embedding='sine'")
        x_emb = self.col_embed(torch.arange(w, device=mask.device))  # [W, F]
        y_emb = self.row_embed(torch.arange(h, device=mask.device))  # [H, F]
        pos = torch.cat([x_emb[None, :, :].expand(h, w, -1), y_emb[:, None, :].expand(h, w, -1)], dim=-1)
        return pos.permute(2, 0, 1)[None].expand(b, -1, -1, -1)  # [B, 2F, H, W]


def build_position_encoding(kind: str, d_model: int) -> nn.Module:
    """``kind`` "sine" or "learned" (``DETRConfig.position_embedding``), d_model channels."""
    if kind == "sine":
        return PositionEmbeddingSine(d_model // 2)
    if kind == "learned":
        return PositionEmbeddingLearned(d_model // 2)
    raise ValueError(f"unknown position encoding {kind!r}")


def sine_box_embedding(boxes: Tensor, num_pos_feats: int, temperature: float = 10000.0) -> Tensor:
    """Sine embedding of normalized boxes (DAB-DETR's anchor-box positional query).

    boxes: [..., 4] cxcywh in [0, 1] -> [..., 4 * num_pos_feats], ordered (y, x, w, h) as in DAB-DETR.
    """
    scale = 2 * math.pi
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=boxes.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    p = boxes[..., [1, 0, 2, 3], None] * scale / dim_t  # [..., 4, F], all four coordinates at once
    return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2).flatten(-2)
