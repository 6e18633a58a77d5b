"""The first blocks of the pipeline, measured: the backbone's feature grid, the sine positional
encoding, and how far encoder self-attention reaches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from detr_core.analysis.capture import InferenceResult, run_inference
from detr_core.data.images import prepare
from detr_core.model.position_encoding import PositionEmbeddingSine


@dataclass
class BackboneGrid:
    """The feature grid the backbone makes of one image."""

    input_size: tuple[int, int]  # (H', W') input pixels after resizing
    feature_size: tuple[int, int]  # (h, w) cells
    stride: int  # input pixels per cell
    receptive_field: int  # theoretical receptive field of one cell, input pixels (side)

    @property
    def tokens(self) -> int:
        return self.feature_size[0] * self.feature_size[1]

    def cell_centre(self, i: int, j: int) -> tuple[float, float]:
        """(y, x) input pixels of the centre of cell (i, j)."""
        return ((i + 0.5) * self.stride, (j + 0.5) * self.stride)


def receptive_field(body: nn.Module) -> int:
    """The theoretical receptive field (input pixels) of one output cell of a conv body, from its
    convolutions and poolings in order (r += (k - 1) * jump, jump *= stride). ResNet shortcut
    projections run beside the main path and are skipped."""
    r, jump = 1, 1
    for name, m in body.named_modules():
        if "downsample" in name:
            continue
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            d = getattr(m, "dilation", 1)
            d = d if isinstance(d, int) else d[0]
            r += (k - 1) * d * jump
            jump *= s
    return r


def backbone_grid(model: nn.Module, result: InferenceResult) -> BackboneGrid:
    """The grid of ``result`` (an inference of ``model``) with the backbone's receptive field."""
    body = model.backbone[0].body  # type: ignore[index]
    return BackboneGrid(result.input_size, result.feature_size, result.stride, receptive_field(body))


@dataclass
class TokenCounts:
    """The same image at two input sizes: fewer input pixels, fewer tokens."""

    full_input: tuple[int, int]
    full_grid: tuple[int, int]
    small_input: tuple[int, int]
    small_grid: tuple[int, int]

    @property
    def full_tokens(self) -> int:
        return self.full_grid[0] * self.full_grid[1]

    @property
    def small_tokens(self) -> int:
        return self.small_grid[0] * self.small_grid[1]


def token_counts(model: nn.Module, image_rgb: np.ndarray, class_names: list[str], scale: float = 0.5) -> TokenCounts:
    """Run ``model`` on the image at its usual input size and at ``scale`` times it; the grids."""
    cfg = model.config  # type: ignore[attr-defined]
    full = run_inference(model, image_rgb, class_names, capture=False)  # type: ignore[arg-type]
    small_min = max(int(cfg.image_min_size * scale), model.stride)  # type: ignore[attr-defined]
    small_max = max(int(cfg.image_max_size * scale), small_min)
    x = prepare(image_rgb, small_min, small_max)
    small = run_inference(model, image_rgb, class_names, capture=False, input_tensor=x)  # type: ignore[arg-type]
    return TokenCounts(full.input_size, full.feature_size, small.input_size, small.feature_size)


def sine_channels(model: nn.Module, feature_size: tuple[int, int]) -> np.ndarray:
    """The positional encoding of an unpadded (h, w) grid: [2F, h, w] float32, the first F
    channels encode y and the last F encode x, lowest frequency first within each half."""
    pe = next((m for m in model.modules() if isinstance(m, PositionEmbeddingSine)), None)
    if pe is None:
        raise ValueError("this model has no sine positional encoding")
    h, w = feature_size
    with torch.no_grad():
        pos = pe(torch.zeros(1, h, w, dtype=torch.bool))[0]  # [2F, h, w]
    return pos.numpy().astype(np.float32)


def position_similarity(channels: np.ndarray, i: int, j: int) -> np.ndarray:
    """Cosine similarity of cell (i, j)'s code with every cell's: [h, w] in [-1, 1]."""
    c = channels.reshape(channels.shape[0], -1)  # [2F, h*w]
    c = c / (np.linalg.norm(c, axis=0, keepdims=True) + 1e-8)
    w = channels.shape[2]
    sim = c[:, i * w + j] @ c  # [h*w]
    return sim.reshape(channels.shape[1], channels.shape[2]).astype(np.float32)


def attention_distance(result: InferenceResult, max_tokens: int = 256) -> np.ndarray:
    """Mean attention distance of encoder self-attention: [L_enc, heads] in input pixels.

    For each query token, the attention-weighted mean distance (cell centre to cell centre) to
    the tokens it attends to, averaged over query tokens (at most ``max_tokens`` of them, evenly
    spread, to bound the work on large grids). ViT's measure of how far a layer looks."""
    if result.encoder_queries is None or result.encoder_keys is None:
        raise ValueError("this result was computed without attention capture")
    from detr_core.model.transformer import attention_weights

    h, w = result.feature_size
    s = h * w
    rows = np.linspace(0, s - 1, min(s, max_tokens)).round().astype(np.int64)
    q = result.encoder_queries[:, :, rows]  # [L, heads, S', dh]
    weights = attention_weights(q, result.encoder_keys, None)  # [L, heads, S', S]
    ys, xs = np.divmod(np.arange(s), w)
    centres = torch.from_numpy(np.stack([ys, xs], 1).astype(np.float32)) * result.stride  # [S, 2]
    dist = torch.cdist(centres[rows], centres)  # [S', S] input pixels
    return (weights * dist).sum(-1).mean(-1).numpy().astype(np.float32)  # [L, heads]
