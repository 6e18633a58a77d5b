"""Where a Deformable DETR looked, in image pixels: for every decoder layer and query its
reference point and its sampling points per head, level and point with their attention weights;
for the encoder, the same for any pixel of any level.

    sampling = result.deformable                       # from run_inference(deformable_model, ...)
    sampling.decoder_points[layer, query]              # [heads, levels, points, 2] (x, y) pixels
    sampling.decoder_weights[layer, query]             # [heads, levels, points], sums to 1 per head
    points, weights, centre = sampling.encoder_at(y, x, level=0)

Everything comes from the forward pass's own sampling locations (``capture=True``), converted
from each level's normalized map coordinates (grid_sample's, ``align_corners=False``: 0 and 1 are
the outer edges of the map) to pixels of the image as given. A level's map may overhang the
image by less than one of its cells (its size is rounded up), so each level has its own extent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from detr_core.model.capture_protocol import SamplingPoints


@dataclass
class DeformableSampling:
    shapes: list[tuple[int, int]]  # (h_l, w_l) of each level's map
    level_extents: list[tuple[float, float]]  # (height, width) in image pixels each level's map covers
    decoder_references: Tensor  # [L_dec, Q, 2] (x, y) image pixels: the reference point each layer used
    decoder_reference_boxes: Tensor | None  # [L_dec, Q, 4] xyxy pixels when the references are boxes
    decoder_points: Tensor  # [L_dec, Q, heads, levels, P, 2] (x, y) image pixels
    decoder_weights: Tensor  # [L_dec, Q, heads, levels, P]
    encoder_points: Tensor  # [L_enc, S, heads, levels, P, 2] (x, y) image pixels; S = all levels' cells
    encoder_weights: Tensor  # [L_enc, S, heads, levels, P]

    @property
    def num_heads(self) -> int:
        return int(self.decoder_weights.shape[2])

    @property
    def num_levels(self) -> int:
        return len(self.shapes)

    @property
    def num_points(self) -> int:
        return int(self.decoder_weights.shape[-1])

    @property
    def num_encoder_layers(self) -> int:
        return int(self.encoder_weights.shape[0])

    def token_at(self, y: float, x: float, level: int = 0) -> int:
        """Index (over all levels' cells) of the encoder token of ``level`` under image pixel (y, x)."""
        if not 0 <= level < self.num_levels:
            raise ValueError(f"level {level} does not exist (the model has {self.num_levels})")
        h, w = self.shapes[level]
        eh, ew = self.level_extents[level]
        i = min(max(int(y / eh * h), 0), h - 1)
        j = min(max(int(x / ew * w), 0), w - 1)
        return sum(a * b for a, b in self.shapes[:level]) + i * w + j

    def cell_centre(self, token: int) -> tuple[int, float, float]:
        """(level, y, x) in image pixels of an encoder token's cell centre."""
        start = 0
        for level, (h, w) in enumerate(self.shapes):
            if token < start + h * w:
                i, j = divmod(token - start, w)
                eh, ew = self.level_extents[level]
                return level, (i + 0.5) * eh / h, (j + 0.5) * ew / w
            start += h * w
        raise ValueError(f"token {token} out of range")

    def encoder_at(self, y: float, x: float, level: int = 0) -> tuple[Tensor, Tensor, tuple[float, float]]:
        """The encoder's sampling at the ``level`` cell under pixel (y, x): points
        [L_enc, heads, levels, P, 2] (x, y) pixels, weights [L_enc, heads, levels, P], and the
        cell's centre (y, x)."""
        if self.num_encoder_layers == 0:
            raise ValueError("the model has no encoder layers")
        token = self.token_at(y, x, level)
        _, cy, cx = self.cell_centre(token)
        return self.encoder_points[:, token], self.encoder_weights[:, token], (cy, cx)


def _to_pixels(locations: Tensor, extents: Tensor) -> Tensor:
    """[..., levels, P, 2] normalized (x, y) -> pixels, with extents [levels, 2] (width, height)."""
    return locations * extents[:, None, :]


def deformable_sampling(
    capture: SamplingPoints, input_size: tuple[int, int], image_size: tuple[int, int]
) -> DeformableSampling:
    """Image 0 of a batch's capture, in pixels of the image as given.

    input_size: (H', W') of the model's input; image_size: (H, W) of the image as given."""
    sy = image_size[0] / input_size[0]
    sx = image_size[1] / input_size[1]
    extents = [(h * s * sy, w * s * sx) for (h, w), s in zip(capture.shapes, capture.strides)]
    wh = torch.tensor([[e[1], e[0]] for e in extents], dtype=torch.float32)  # [levels, 2] (width, height)
    dec_points = torch.stack([loc[0] for loc in capture.decoder_locations]).float().cpu()
    dec_weights = torch.stack([w[0] for w in capture.decoder_weights]).float().cpu()
    # a layer's reference as it used it: scaled by the valid ratios, drawn on the finest level
    ratios = capture.valid_ratios[0].float().cpu()  # [levels, 2]
    refs = [r[0].float().cpu() for r in capture.decoder_references]
    ref_xy = torch.stack([r[:, :2] * ratios[0] * wh[0] for r in refs])  # [L_dec, Q, 2]
    ref_boxes = None
    if all(r.shape[-1] == 4 for r in refs):
        cxcy = torch.stack([r[:, :2] for r in refs]) * ratios[0]
        size = torch.stack([r[:, 2:] for r in refs]) * ratios[0]
        ref_boxes = torch.cat([cxcy - size / 2, cxcy + size / 2], -1) * wh[0].repeat(2)
    if capture.encoder_locations:
        enc_points = torch.stack([loc[0] for loc in capture.encoder_locations]).float().cpu()
        enc_weights = torch.stack([w[0] for w in capture.encoder_weights]).float().cpu()
    else:
        s = sum(h * w for h, w in capture.shapes)
        enc_points = dec_points.new_zeros((0, s, *dec_points.shape[2:]))
        enc_weights = dec_weights.new_zeros((0, s, *dec_weights.shape[2:]))
    return DeformableSampling(
        shapes=list(capture.shapes),
        level_extents=extents,
        decoder_references=ref_xy,
        decoder_reference_boxes=ref_boxes,
        decoder_points=_to_pixels(dec_points, wh),
        decoder_weights=dec_weights,
        encoder_points=_to_pixels(enc_points, wh),
        encoder_weights=enc_weights,
    )

