"""Multi-scale deformable attention (Zhu et al., "Deformable DETR", ICLR 2021), in plain PyTorch.

Each query looks at ``n_points`` sampling points per head and per feature level, placed around
its reference point by learned offsets, and mixes the bilinearly sampled values with learned
weights (a softmax over levels and points together). The sampling is
``torch.nn.functional.grid_sample`` (``align_corners=False``, zero padding), as in the authors'
PyTorch fallback and in Hugging Face ``transformers``, so it runs on CPU, CUDA and MPS alike.

``torchvision.ops`` has ``deform_conv2d`` (deformable *convolution*, one level, offsets per kernel
tap) but no multi-scale deformable *attention*; the authors' CUDA kernel (``MultiScaleDeformableAttention``)
and the kernels packaged by mmcv are CUDA-only builds. On a CPU the ``grid_sample`` path is the
operator, so that is the one used everywhere: one code path, whose sampling locations the
explorer can show as they are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def multi_scale_deformable_attention(
    value: Tensor, shapes: list[tuple[int, int]], sampling_locations: Tensor, attention_weights: Tensor
) -> Tensor:
    """Sample every level at its points and mix them.

    value: [B, S, heads, dh], the levels' tokens one after another (S = sum of h_l * w_l)
    sampling_locations: [B, Q, heads, L, P, 2] (x, y) in [0, 1] of each level's valid+padded map
    attention_weights: [B, Q, heads, L, P], summing to 1 over (L, P)
    Returns [B, Q, heads * dh].
    """
    b, _, heads, dh = value.shape
    _, q, _, n_levels, n_points, _ = sampling_locations.shape
    values = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample's [-1, 1]
    sampled = []
    for level, (h, w) in enumerate(shapes):
        v = values[level].flatten(2).transpose(1, 2).reshape(b * heads, dh, h, w)  # [B*heads, dh, h, w]
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # [B*heads, Q, P, 2]
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attention_weights.transpose(1, 2).reshape(b * heads, 1, q, n_levels * n_points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)  # [B*heads, dh, Q]
    return out.view(b, heads * dh, q).transpose(1, 2).contiguous()


class MultiScaleDeformableAttention(nn.Module):
    """The module (names as in the authors' ``MSDeformAttn``: sampling_offsets, attention_weights,
    value_proj, output_proj)."""

    def __init__(self, d_model: int, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' initialisation: head h starts looking along angle 2*pi*h/heads, point p at
        distance p + 1 (in cells of each level); uniform weights."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: Tensor,  # [B, Q, D], position already added
        reference_points: Tensor,  # [B, Q, L, 2] (x, y) or [B, Q, L, 4] cxcywh, in [0, 1] of each level
        value_input: Tensor,  # [B, S, D]
        shapes: list[tuple[int, int]],  # (h_l, w_l) per level
        shapes_tensor: Tensor,  # [L, 2] long, the same
        padding_mask: Tensor | None,  # [B, S] True on padding
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (output [B, Q, D], sampling locations [B, Q, heads, L, P, 2] (x, y) in [0, 1],
        attention weights [B, Q, heads, L, P])."""
        b, q, _ = query.shape
        s = value_input.shape[1]
        heads, levels, points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(value_input)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(b, s, heads, self.d_model // heads)
        offsets = self.sampling_offsets(query).view(b, q, heads, levels, points, 2)
        weights = self.attention_weights(query).view(b, q, heads, levels * points)
        weights = F.softmax(weights, -1).view(b, q, heads, levels, points)
        if reference_points.shape[-1] == 2:
            normalizer = torch.stack([shapes_tensor[..., 1], shapes_tensor[..., 0]], -1)  # [L, 2] (w, h)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise ValueError(f"reference points have 2 or 4 coordinates, got {reference_points.shape[-1]}")
        out = multi_scale_deformable_attention(value, shapes, locations, weights)
        return self.output_proj(out), locations, weights
