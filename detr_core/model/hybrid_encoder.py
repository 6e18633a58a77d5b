"""RT-DETR's hybrid encoder (Zhao et al., "DETRs Beat YOLOs on Real-time Object Detection", 2024).

Two parts replace Deformable DETR's multi-scale deformable encoder:

- AIFI (attention-based intra-scale feature interaction): plain transformer encoder layers over the
  tokens of the top (coarsest) level only, where a few tokens carry the most semantic features;
- CCFM (CNN-based cross-scale feature fusion): a top-down then bottom-up path (FPN then PAN) of
  convolutional fusion blocks joining the levels, each level keeping its shape.

The decoder then reads the fused levels as it reads a deformable encoder's memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detr_core.config import DETRConfig
from detr_core.model.capture_protocol import AttentionCapture, EncoderSelfAttention
from detr_core.model.transformer import TransformerEncoderLayer, attention_weights


class ConvNormAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, act: bool = True) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, padding=(kernel - 1) // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.SiLU() if act else nn.Identity(),
        )


class FusionBlock(nn.Module):
    """RT-DETR's CSP fusion block, small: [B, 2D, h, w] (two levels concatenated) -> [B, D, h, w].
    One branch goes through 3x3 blocks with residuals, the other is a 1x1 shortcut; they add."""

    def __init__(self, d: int, blocks: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(2 * d, d, 1)
        self.conv2 = ConvNormAct(2 * d, d, 1)
        self.blocks = nn.ModuleList(ConvNormAct(d, d, 3) for _ in range(blocks))

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(x)
        for block in self.blocks:
            y = y + block(y)
        return y + self.conv2(x)


def _resize_to(x: Tensor, like: Tensor) -> Tensor:
    return x if x.shape[-2:] == like.shape[-2:] else F.interpolate(x, size=like.shape[-2:], mode="nearest")


class HybridEncoder(nn.Module):
    """Per-level maps [B, D, h_l, w_l] (finest first) -> the same shapes, fused."""

    def __init__(self, config: DETRConfig) -> None:
        super().__init__()
        d, levels = config.d_model, config.num_feature_levels
        self.layers = nn.ModuleList(  # AIFI, on the top level
            TransformerEncoderLayer(d, config.nheads, config.dim_feedforward, config.dropout, pre_norm=False)
            for _ in range(config.num_encoder_layers)
        )
        self.lateral = nn.ModuleList(ConvNormAct(d, d, 1) for _ in range(levels - 1))
        self.fpn = nn.ModuleList(FusionBlock(d) for _ in range(levels - 1))
        self.downsample = nn.ModuleList(ConvNormAct(d, d, 3, stride=2) for _ in range(levels - 1))
        self.pan = nn.ModuleList(FusionBlock(d) for _ in range(levels - 1))

    def forward(
        self, srcs: list[Tensor], masks: list[Tensor], pos: list[Tensor], capture: bool = False
    ) -> tuple[list[Tensor], list[AttentionCapture]]:
        """srcs, pos: per level [B, D, h_l, w_l]; masks: per level [B, h_l, w_l] True on padding.
        Returns the fused maps and (with ``capture``) each AIFI layer's queries and keys."""
        top = srcs[-1]
        b, d, h, w = top.shape
        tokens = top.flatten(2).transpose(1, 2)  # [B, h*w, D]
        top_pos = pos[-1].flatten(2).transpose(1, 2)
        padded = masks[-1].flatten(1)  # [B, h*w]
        # no mask without padding (the fastest kernel); an exported program takes unpadded batches
        # and torch.export cannot branch on the mask's values (as in model/transformer.py)
        any_padding = not torch.compiler.is_exporting() and bool(padded.any())
        allowed = (~padded)[:, None, None, :] if any_padding else None
        caps = []
        for layer in self.layers:
            tokens, cap = layer(tokens, top_pos, allowed, capture)
            if cap is not None:
                caps.append(cap)
        feats = list(srcs[:-1]) + [tokens.transpose(1, 2).reshape(b, d, h, w)]

        # top-down (FPN): each finer level takes the upsampled coarser one
        inner = [feats[-1]]
        for i, level in enumerate(range(len(feats) - 1, 0, -1)):
            high = self.lateral[i](inner[0])
            inner[0] = high
            low = feats[level - 1]
            inner.insert(0, self.fpn[i](torch.cat([_resize_to(F.interpolate(high, scale_factor=2.0), low), low], 1)))
        # bottom-up (PAN): each coarser level takes the downsampled finer one
        outs = [inner[0]]
        for i in range(len(feats) - 1):
            high = inner[i + 1]
            down = _resize_to(self.downsample[i](outs[-1]), high)
            outs.append(self.pan[i](torch.cat([down, high], 1)))
        return outs, caps


def encoder_self_attention(layers: list[AttentionCapture], mask: Tensor, level: int, stride: int
                           ) -> EncoderSelfAttention:
    """The AIFI layers' captured queries and keys (each [B, heads, S, dh], S = h * w of the top
    level) as their attention weights [B, heads, S, S], with the padded keys masked out as the
    layers masked them; ``mask`` [B, h, w] True on padding, ``level`` and ``stride`` the top level's."""
    padded = mask.flatten(1)  # [B, S]
    any_padding = bool(padded.any())
    allowed = (~padded)[:, None, None, :] if any_padding else None
    # float32: the layers may have run in bfloat16 (autocast); the map is read, not trained
    weights = [attention_weights(c.q.float(), c.k.float(), allowed) for c in layers]
    h, w = int(mask.shape[-2]), int(mask.shape[-1])
    return EncoderSelfAttention(weights=weights, level=level, shape=(h, w), stride=stride,
                                feature_mask=mask if any_padding else None)
