"""Attention maps as images: pick layer and head, upsample to image pixels."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from detr_core.analysis.capture import CROSS_FULL, InferenceResult

MAX_SIDE = 512  # upsampled heatmaps never need more pixels than this on screen


def _select(maps: torch.Tensor, layer: int, head: int | None) -> torch.Tensor:
    """maps: [L, heads, h, w] -> [h, w]."""
    layer = min(max(layer, 0), maps.shape[0] - 1)
    m = maps[layer]
    return m.mean(0) if head is None else m[min(head, m.shape[0] - 1)]


def upsample(heat: torch.Tensor, extent_hw: tuple[float, float]) -> torch.Tensor:
    """Bilinear upsampling of an [h, w] grid map to (at most MAX_SIDE on the long side) pixels."""
    eh, ew = extent_hw
    scale = min(1.0, MAX_SIDE / max(eh, ew, 1.0))
    size = (max(1, round(eh * scale)), max(1, round(ew * scale)))
    return F.interpolate(heat[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def cross_attention_map(result: InferenceResult, query: int, layer: int, head: int | None, smooth: bool = True,
                        part: str = CROSS_FULL) -> np.ndarray:
    """Where ``query`` looks in decoder layer ``layer``: [h, w] (or upsampled) numpy array; ``part``
    (CROSS_PARTS): the whole map, or only its content or spatial-query map where the model has them."""
    maps = result.cross_attention_for(query, part)  # [L, heads, h, w]
    assert maps is not None
    heat = _select(maps, layer, head)
    if smooth:
        heat = upsample(heat, result.grid_extent())
    return heat.numpy()


def encoder_attention_map(encoder_maps: torch.Tensor, result: InferenceResult, layer: int, head: int | None,
                          smooth: bool = True) -> np.ndarray:
    """encoder_maps: [L_enc, heads, h, w] for one point (see InferenceResult.encoder_attention_at)."""
    heat = _select(encoder_maps, layer, head)
    if smooth:
        heat = upsample(heat, result.grid_extent())
    return heat.numpy()
