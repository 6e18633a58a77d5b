"""Where RT-DETR's encoder looks from a point of the image: the intra-scale self-attention (AIFI)
of the top level, for image 0 of a capture, on that level's grid placed over the image as given.

    maps = result.encoder_self                    # from run_inference(rt_detr_model, ...)
    maps.at(y, x)                                 # [L_enc, heads, h, w]: the token under pixel (y, x)
    maps.cell_at(y, x), maps.cell_box(i, j)       # its cell, and where that cell lies in pixels

The weights are the capture's own (:class:`~detr_core.model.capture_protocol.EncoderSelfAttention`);
the level's map may overhang the image by less than one cell (its size is rounded up), so the grid
covers ``extent`` pixels, as a deformable level's does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from detr_core.model.capture_protocol import EncoderSelfAttention


@dataclass
class EncoderSelfMaps:
    weights: Tensor  # [L_enc, heads, S, S] (from, to), S = h * w, rows sum to 1
    level: int  # the level it runs on (index among the model's levels, finest first)
    num_levels: int  # how many levels the model has
    shape: tuple[int, int]  # (h, w) of that level's grid
    stride: int  # input pixels per cell
    extent: tuple[float, float]  # (height, width) in image pixels the grid covers
    padded: Tensor | None  # [h, w] True on cells of padding, None when none are

    @property
    def num_layers(self) -> int:
        return int(self.weights.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.weights.shape[1])

    def cell_at(self, y: float, x: float) -> tuple[int, int]:
        """(row, column) of the grid cell under image pixel (y, x), clamped to the grid."""
        h, w = self.shape
        eh, ew = self.extent
        return min(max(int(y / eh * h), 0), h - 1), min(max(int(x / ew * w), 0), w - 1)

    def cell_box(self, i: int, j: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) image pixels of cell (i, j)."""
        h, w = self.shape
        ch, cw = self.extent[0] / h, self.extent[1] / w
        return j * cw, i * ch, (j + 1) * cw, (i + 1) * ch

    def at(self, y: float, x: float) -> Tensor:
        """Where the token under image pixel (y, x) attends: [L_enc, heads, h, w], each map sums to 1."""
        i, j = self.cell_at(y, x)
        h, w = self.shape
        return self.weights[:, :, i * w + j].reshape(self.num_layers, self.num_heads, h, w)


def encoder_self_maps(capture: EncoderSelfAttention, num_levels: int, input_size: tuple[int, int],
                      image_size: tuple[int, int]) -> EncoderSelfMaps:
    """Image 0 of a batch's capture, placed over the image as given. input_size: (H', W') of the
    model's input; image_size: (H, W) of the image as given."""
    h, w = capture.shape
    sy, sx = image_size[0] / input_size[0], image_size[1] / input_size[1]
    weights = torch.stack([layer[0] for layer in capture.weights]).float().cpu()  # [L, heads, S, S]
    padded = None if capture.feature_mask is None else capture.feature_mask[0].cpu()
    if padded is not None and not bool(padded.any()):
        padded = None
    return EncoderSelfMaps(weights=weights, level=capture.level, num_levels=num_levels, shape=(h, w),
                           stride=capture.stride, extent=(h * capture.stride * sy, w * capture.stride * sx),
                           padded=padded)
