"""The DETR encoder-decoder transformer.

Parameter names and shapes match the reference implementation (``self_attn.in_proj_weight``,
``multihead_attn``, ``linear1``, ``norm1``...), so official checkpoints load one to one. Tensors are
batch-first inside this module: ``[B, S, D]`` for the S = h * w image tokens of the feature grid,
``[B, Q, D]`` for the queries (Q counts the denoising queries too, when there are any), and
``[B, heads, ..., dh]`` inside attention; decoder outputs stack the L layers first.

Attention runs through ``F.scaled_dot_product_attention`` (fused) unless attention weights are
asked for (``capture=True``); then it is computed explicitly with the same projections, and the
outputs agree with the fused path to float precision.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detr_core.box_ops import inverse_sigmoid
from detr_core.model.capture_protocol import AttentionCapture, DenseAttention
from detr_core.model.position_encoding import sine_box_embedding


def attention_weights(q: Tensor, k: Tensor, allowed: Tensor | None, bias: Tensor | None = None) -> Tensor:
    """softmax(q k^T / sqrt(d) + bias) with masked keys removed.

    q: [B, heads, Sq, dh], k: [B, heads, Sk, dh], allowed: bool broadcastable to
    [B, heads, Sq, Sk] (True = may attend); bias: float, the same shape (a spatial prior).
    Returns [B, heads, Sq, Sk]; every row sums to 1.
    """
    scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-2, -1))
    if bias is not None:
        scores = scores + bias
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(dim=-1)


class MultiheadAttention(nn.Module):
    """Drop-in for ``nn.MultiheadAttention`` (same parameters), batch-first, fused by default."""

    def __init__(self, d_model: int, nheads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model = d_model
        self.nheads = nheads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape  # [B, S, D] -> [B, heads, S, dh]
        return x.view(b, n, self.nheads, self.d_model // self.nheads).transpose(1, 2)

    def forward(
        self,
        query: Tensor,  # [B, Sq, D]
        key: Tensor,  # [B, Sk, D]
        value: Tensor,  # [B, Sk, D]
        allowed: Tensor | None = None,  # bool, broadcastable to [B, heads, Sq, Sk]
        capture: bool = False,
        same_qk: bool = False,  # query is key (self-attention): project both in one matmul
        keep_weights: bool = True,  # with capture: False keeps q and k only (the fused kernel runs)
        bias: Tensor | None = None,  # float, broadcastable to [B, heads, Sq, Sk]: added to the logits
    ) -> tuple[Tensor, AttentionCapture | None]:
        d = self.d_model
        w, b = self.in_proj_weight, self.in_proj_bias
        if same_qk:
            q, k = F.linear(query, w[: 2 * d], b[: 2 * d]).chunk(2, dim=-1)
        else:
            q = F.linear(query, w[:d], b[:d])
            k = F.linear(key, w[d : 2 * d], b[d : 2 * d])
        v = F.linear(value, w[2 * d :], b[2 * d :])
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        p = self.dropout if self.training else 0.0
        captured = None
        # On the CPU, PyTorch's fused kernel is slow to train in bfloat16 and falls back to an
        # unfused path with dropout; the explicit form below is faster there (benchmarks/README).
        explicit = (capture and keep_weights) or (
            q.device.type == "cpu" and torch.is_grad_enabled() and (q.dtype == torch.bfloat16 or p > 0)
        )
        if explicit:
            weights = attention_weights(q, k, allowed, bias)
            out = torch.matmul(F.dropout(weights, p, self.training), v)
            if capture:
                captured = AttentionCapture(weights, q, k)
        else:
            mask = allowed
            if bias is not None:  # one float mask: the prior, and -inf where a key is not allowed
                mask = bias.to(q.dtype) if allowed is None else bias.to(q.dtype).masked_fill(~allowed, float("-inf"))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            if capture:  # the encoder's weights are recomputed from q and k where a view needs them
                captured = AttentionCapture(None, q, k)
        out = out.transpose(1, 2).reshape(query.shape[0], query.shape[1], d)  # [B, Sq, D]
        return self.out_proj(out), captured


class TransformerEncoderLayer(nn.Module):
    def __init__(self, d_model: int, nheads: int, dim_feedforward: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nheads, dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(
        self, src: Tensor, pos: Tensor | None, allowed: Tensor | None, capture: bool = False
    ) -> tuple[Tensor, AttentionCapture | None]:
        # src, pos: [B, S, D]; positions go into queries and keys, never values (None: the
        # encoding was added to the encoder's input instead, position_added="input")
        if self.pre_norm:
            x = self.norm1(src)
            qk = x if pos is None else x + pos
            attn, cap = self.self_attn(qk, qk, x, allowed, capture, same_qk=True, keep_weights=False)
            src = src + self.dropout1(attn)
            src = src + self.dropout2(self._ffn(self.norm2(src)))
            return src, cap
        qk = src if pos is None else src + pos
        attn, cap = self.self_attn(qk, qk, src, allowed, capture, same_qk=True, keep_weights=False)
        src = self.norm1(src + self.dropout1(attn))
        src = self.norm2(src + self.dropout2(self._ffn(src)))
        return src, cap


class TransformerDecoderLayer(nn.Module):
    def __init__(
        self,
        d_model: int,
        nheads: int,
        dim_feedforward: int,
        dropout: float,
        pre_norm: bool,
        self_attention: bool = True,
    ):
        super().__init__()
        # Without decoder self-attention (the ablation) the layer has no self_attn/norm1 at all.
        if self_attention:
            self.self_attn = MultiheadAttention(d_model, nheads, dropout)
            self.norm1 = nn.LayerNorm(d_model)
            self.dropout1 = nn.Dropout(dropout)
        self.has_self_attention = self_attention
        self.multihead_attn = MultiheadAttention(d_model, nheads, dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(
        self,
        tgt: Tensor,  # [B, Q, D] query content
        query_pos: Tensor,  # [B or 1, Q, D] query positions
        memory: Tensor,  # [B, S, D] encoder output (values)
        memory_keys: Tensor,  # [B, S, D] memory + positional encoding (keys)
        memory_allowed: Tensor | None,  # bool [B, 1, 1, S]
        self_allowed: Tensor | None,  # bool [B or 1, 1, Q, Q]: which queries may see which
        capture: bool = False,
        cross_bias: Tensor | None = None,  # float [B, heads, Q, S]: the spatial prior, if any
    ) -> tuple[Tensor, AttentionCapture | None, AttentionCapture | None]:
        self_cap = None
        if self.pre_norm:
            if self.has_self_attention:
                x = self.norm1(tgt)
                qk = x + query_pos
                attn, self_cap = self.self_attn(qk, qk, x, self_allowed, capture, same_qk=True)
                tgt = tgt + self.dropout1(attn)
            x = self.norm2(tgt)
            attn, cross_cap = self.multihead_attn(x + query_pos, memory_keys, memory, memory_allowed, capture,
                                                  bias=cross_bias)
            tgt = tgt + self.dropout2(attn)
            tgt = tgt + self.dropout3(self._ffn(self.norm3(tgt)))
            return tgt, self_cap, cross_cap
        if self.has_self_attention:
            qk = tgt + query_pos
            attn, self_cap = self.self_attn(qk, qk, tgt, self_allowed, capture, same_qk=True)
            tgt = self.norm1(tgt + self.dropout1(attn))
        attn, cross_cap = self.multihead_attn(tgt + query_pos, memory_keys, memory, memory_allowed, capture,
                                              bias=cross_bias)
        tgt = self.norm2(tgt + self.dropout2(attn))
        tgt = self.norm3(tgt + self.dropout3(self._ffn(tgt)))
        return tgt, self_cap, cross_cap


class MLP(nn.Module):
    """A small feed-forward net (ReLU between layers). Keys: ``layers.0``, ``layers.1`` ..."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else F.relu(layer(x))
        return x


@dataclass
class DecoderOutput:
    hs: Tensor  # [L, B, Q, D], every layer's output after the decoder's final LayerNorm
    boxes: Tensor | None  # [L, B, Q, 4] cxcywh in [0, 1], anchor queries only (refined per layer)


class Transformer(nn.Module):
    def __init__(
        self,
        d_model: int = 256,
        nheads: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        pre_norm: bool = False,
        decoder_self_attention: bool = True,
        anchor_queries: bool = False,
        look_forward_twice: bool = True,
        spatial_prior: bool = False,
        norm_between_layers: bool = False,
        position_at_input: bool = False,
    ) -> None:
        super().__init__()
        # DETR's Table 3 study: the image's positional encoding added once, to the encoder's input,
        # instead of to the queries and keys of every attention layer (encoder and cross-attention)
        self.position_at_input = position_at_input
        enc = TransformerEncoderLayer(d_model, nheads, dim_feedforward, dropout, pre_norm)
        self.encoder = TransformerEncoder(enc, num_encoder_layers, nn.LayerNorm(d_model) if pre_norm else None)
        dec = TransformerDecoderLayer(
            d_model, nheads, dim_feedforward, dropout, pre_norm, decoder_self_attention
        )
        self.decoder = TransformerDecoder(dec, num_decoder_layers, nn.LayerNorm(d_model), norm_between_layers)
        if anchor_queries:
            # DAB-DETR: a query's position is an MLP of the sine embedding of its current box.
            self.decoder.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)
        self.d_model = d_model
        self.nheads = nheads
        self.look_forward_twice = look_forward_twice
        for p in self.parameters():  # the reference's _reset_parameters
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        if spatial_prior:
            # SMCA (Gao et al. 2021): cross-attention logits get a Gaussian around each query's
            # current box, sigma = scale * box side, one learned scale per layer and head; the
            # heads start from narrow (0.35) to wide (1.4)
            start = torch.linspace(math.log(0.35), math.log(1.4), nheads)
            self.decoder.prior_log_scale = nn.Parameter(start.repeat(num_decoder_layers, 1))

    def forward(
        self,
        src: Tensor,  # [B, D, H, W] projected features
        mask: Tensor,  # [B, H, W] bool, True on padding
        pos: Tensor,  # [B, D, H, W] positional encoding
        tgt: Tensor,  # [B or 1, Q, D] query content (zeros for DETR's learned queries)
        query_pos: Tensor | None = None,  # [1, Q, D] DETR's learned query embeddings
        refpoints: Tensor | None = None,  # [B or 1, Q, 4] initial anchor boxes, cxcywh in [0, 1]
        box_head: Callable[[Tensor], Tensor] | None = None,  # anchor queries: hs -> box delta (logit)
        self_allowed: Tensor | None = None,  # [B or 1, 1, Q, Q] bool, query visibility (groups, denoising)
        capture: bool = False,
        select_refpoints: Callable[[Tensor], Tensor] | None = None,  # memory [B, S, D] -> [B, Q, 4]
    ) -> tuple[DecoderOutput, Tensor, DenseAttention | None]:
        b = src.shape[0]
        src = src.flatten(2).transpose(1, 2)  # [B, S, D]
        pos = pos.flatten(2).transpose(1, 2)  # [B, S, D]
        key_padding = mask.flatten(1)  # [B, S]
        # No padding (the usual case for a single image or equal sizes): no mask, fastest kernel.
        # An exported program (detr_core/formats/pt2.py) takes unpadded [B, 3, H, W] batches only,
        # and torch.export cannot branch on the mask's values.
        padded = not torch.compiler.is_exporting() and bool(key_padding.any())
        allowed = (~key_padding)[:, None, None, :] if padded else None
        cap = DenseAttention(memory_allowed=allowed) if capture else None
        if self.position_at_input:
            src = src + pos  # once; the tokens carry their position from here on
            memory = self.encoder(src, None, allowed, cap)
            memory_keys = memory
        else:
            memory = self.encoder(src, pos, allowed, cap)
            memory_keys = memory + pos
        if select_refpoints is not None:  # query selection: the anchors come from the encoder
            refpoints = select_refpoints(memory)
        tgt = tgt.expand(b, -1, -1)
        out = self.decoder(
            tgt, memory, memory_keys, allowed, self_allowed, cap,
            query_pos=query_pos, refpoints=refpoints, box_head=box_head,
            look_forward_twice=self.look_forward_twice,
            key_xy=token_centres(mask) if hasattr(self.decoder, "prior_log_scale") else None,
        )
        return out, memory, cap


class TransformerEncoder(nn.Module):
    def __init__(self, layer: TransformerEncoderLayer, num_layers: int, norm: nn.Module | None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm

    def forward(
        self, src: Tensor, pos: Tensor | None, allowed: Tensor | None, cap: DenseAttention | None
    ) -> Tensor:
        out = src
        for layer in self.layers:
            out, c = layer(out, pos, allowed, capture=cap is not None)
            if cap is not None:
                cap.encoder.append(c)
        return self.norm(out) if self.norm is not None else out


class TransformerDecoder(nn.Module):
    ref_point_head: MLP

    def __init__(
        self, layer: TransformerDecoderLayer, num_layers: int, norm: nn.Module, norm_between_layers: bool = False
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm
        # transformers' DetrDecoder with auxiliary_loss: the normalised output is what the next
        # layer takes, and the last one is normalised once more (see DETRConfig)
        self.norm_between_layers = norm_between_layers

    def forward(
        self,
        tgt: Tensor,  # [B, Q, D]
        memory: Tensor,  # [B, S, D]
        memory_keys: Tensor,  # [B, S, D]
        memory_allowed: Tensor | None,
        self_allowed: Tensor | None,
        cap: DenseAttention | None,
        query_pos: Tensor | None = None,
        refpoints: Tensor | None = None,
        box_head: Callable[[Tensor], Tensor] | None = None,
        look_forward_twice: bool = True,
        key_xy: Tensor | None = None,  # [B, S, 2] token centres in image fractions (the spatial prior)
    ) -> DecoderOutput:
        capture = cap is not None
        hs, boxes = [], []
        out = tgt
        ref = refpoints  # anchor queries: [B, Q, 4], the box the next layer starts from
        ref_for_pred = refpoints
        for i, layer in enumerate(self.layers):
            if ref is not None:
                d = tgt.shape[-1]
                query_pos = self.ref_point_head(sine_box_embedding(ref, d // 2))  # [B, Q, D]
            assert query_pos is not None
            bias = None
            if key_xy is not None and ref is not None:
                bias = gaussian_prior(ref, key_xy, self.prior_log_scale[i])
            out, self_cap, cross_cap = layer(
                out, query_pos, memory, memory_keys, memory_allowed, self_allowed, capture, cross_bias=bias
            )
            hidden = self.norm(out)
            if self.norm_between_layers:
                out = hidden
                if i == len(self.layers) - 1:
                    hidden = self.norm(hidden)
            hs.append(hidden)
            if capture:
                assert cap is not None
                cap.decoder_self.append(self_cap)
                cap.decoder_cross.append(cross_cap)
            if ref is not None:
                assert box_head is not None and ref_for_pred is not None
                box = (box_head(hidden + query_pos) + inverse_sigmoid(ref_for_pred)).sigmoid()  # [B, Q, 4]
                boxes.append(box)
                ref = box.detach()
                # look forward twice (DINO): the next layer's box loss also reaches this layer
                ref_for_pred = box if look_forward_twice else ref
        return DecoderOutput(torch.stack(hs), torch.stack(boxes) if boxes else None)


def token_centres(mask: Tensor) -> Tensor:
    """[B, h, w] padding mask (True on padding) -> [B, h*w, 2] (x, y) of each token's centre as a
    fraction of its image's unpadded feature grid (the frame boxes are normalised in)."""
    b, h, w = mask.shape
    valid = ~mask
    rows = valid[:, :, 0].sum(1).clamp(min=1).to(torch.float32)  # [B] unpadded rows
    cols = valid[:, 0, :].sum(1).clamp(min=1).to(torch.float32)
    ys = (torch.arange(h, device=mask.device, dtype=torch.float32) + 0.5)[None, :, None] / rows[:, None, None]
    xs = (torch.arange(w, device=mask.device, dtype=torch.float32) + 0.5)[None, None, :] / cols[:, None, None]
    return torch.stack([xs.expand(b, h, w), ys.expand(b, h, w)], dim=-1).flatten(1, 2)


def gaussian_prior(ref: Tensor, key_xy: Tensor, log_scale: Tensor) -> Tensor:
    """SMCA's spatial prior: -((x - cx)^2 / sx^2 + (y - cy)^2 / sy^2) / 2 with sx = scale * w.

    ref: [B or 1, Q, 4] boxes cxcywh (no gradient flows into them); key_xy: [B, S, 2];
    log_scale: [heads]. Returns [B, heads, Q, S] float32 logits to add to cross-attention."""
    ref = ref.detach().float()
    scale = log_scale.float().exp()[None, :, None, None]  # [1, H, 1, 1]
    side = ref[..., 2:].clamp(min=1e-2)  # [B, Q, 2]
    dx = key_xy[:, None, None, :, 0] - ref[:, None, :, None, 0]  # [B, 1, Q, S]
    dy = key_xy[:, None, None, :, 1] - ref[:, None, :, None, 1]
    sx = side[:, None, :, None, 0] * scale  # [B, H, Q, 1]
    sy = side[:, None, :, None, 1] * scale
    return -0.5 * ((dx / sx) ** 2 + (dy / sy) ** 2)
