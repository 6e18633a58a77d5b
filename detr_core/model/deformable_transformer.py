"""Deformable DETR's transformer and its multi-scale inputs.

- :class:`MultiScaleBackbone`: the same conv nets as plain DETR (``backbone.0.body`` keeps its
  parameter names), returning the last three stages instead of one, each with its padding mask
  and a sine position encoding (Deformable DETR's: cell centres, ``(cumsum - 0.5) / n``).
- :class:`DeformableTransformer`: level embeddings, an encoder of multi-scale deformable
  self-attention (every pixel of every level is a query, its reference point its own centre),
  and a decoder of dense self-attention plus multi-scale deformable cross-attention around each
  query's reference point, optionally refined layer by layer (``with_box_refine``) or taken from
  the encoder's best proposals (``two_stage``).

Module names follow the authors' code (``level_embed``, ``reference_points``, ``cross_attn``,
``norm1`` ...). With ``capture`` the transformer also returns, for every layer, the sampling
locations and attention weights it used (:class:`SamplingPoints`): nothing is recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detr_core.box_ops import inverse_sigmoid
from detr_core.config import DETRConfig
from detr_core.model.backbone import Backbone, TinyBody
from detr_core.model.capture_protocol import AttentionCapture, SamplingPoints
from detr_core.model.deformable_attention import MultiScaleDeformableAttention
from detr_core.model.hybrid_encoder import HybridEncoder
from detr_core.model.nested_tensor import NestedTensor
from detr_core.model.position_encoding import sine_box_embedding
from detr_core.model.transformer import MLP, MultiheadAttention


def centered_sine_position(mask: Tensor, num_pos_feats: int, temperature: float = 10000.0) -> Tensor:
    """Deformable DETR's sine encoding: [B, H, W] mask (True on padding) -> [B, 2F, H, W], y then x,
    cell centres normalized by the valid extent ((i - 0.5) / n * 2 pi)."""
    not_mask = (~mask).to(torch.float32)
    y_embed = not_mask.cumsum(1)
    x_embed = not_mask.cumsum(2)
    eps, scale = 1e-6, 2 * math.pi
    y_embed = (y_embed - 0.5) / (y_embed[:, -1:, :] + eps) * scale
    x_embed = (x_embed - 0.5) / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=mask.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def _tiny_stages(body: TinyBody) -> list[tuple[int, int, int]]:
    """(end index in ``body.layers``, channels, stride) after each strided block of a TinyBody."""
    stages, stride = [], 1
    for i, m in enumerate(body.layers):
        if isinstance(m, nn.Conv2d) and m.stride[0] == 2:
            stride *= 2
            stages.append([i + 3, m.out_channels, stride])  # conv, norm, relu
        elif isinstance(m, nn.Conv2d) and stages:
            stages[-1][0] = i + 3  # a stride-1 block belongs to the stage before it
    return [tuple(s) for s in stages]  # type: ignore[misc]


class MultiScaleBackbone(nn.Sequential):
    """Image -> the last ``levels`` (at most 3) stages of the conv net, with masks and positions.

    ``self[0]`` is plain DETR's :class:`Backbone`, so parameter names stay ``backbone.0.body...``."""

    def __init__(self, config: DETRConfig) -> None:
        inner = Backbone(config)
        super().__init__(inner)
        self.levels = min(config.num_feature_levels, 3)
        self.num_pos_feats = config.d_model // 2
        if isinstance(inner.body, TinyBody):
            stages = _tiny_stages(inner.body)[-self.levels:]
            self._tiny_ends = [s[0] for s in stages]
            self.num_channels = [s[1] for s in stages]
            self.strides = [s[2] for s in stages]
        else:
            names = ["layer2", "layer3", "layer4"][-self.levels:]
            inner.body.return_layers = {n: str(i) for i, n in enumerate(names)}  # type: ignore[union-attr]
            resnet_out = {"resnet18": (128, 256, 512), "resnet34": (128, 256, 512)}.get(
                config.backbone, (512, 1024, 2048))
            if config.backbone == "resnet":
                resnet_out = tuple(config.resnet_widths[2:5])
            strides = (8, 16, 16 if config.dilation else 32)
            self.num_channels = list(resnet_out[-self.levels:])
            self.strides = list(strides[-self.levels:])
        self.stride = self.strides[0]

    def forward(self, samples: NestedTensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:  # type: ignore[override]
        """Returns (features [B, C_l, h_l, w_l], masks [B, h_l, w_l] True on padding,
        positions [B, D, h_l, w_l]) per level, finest first."""
        inner: Backbone = self[0]  # type: ignore[assignment]
        x = samples.tensors
        if isinstance(inner.body, TinyBody):
            feats, start = [], 0
            for end in self._tiny_ends:
                x = inner.body.layers[start:end](x)
                feats.append(x)
                start = end
        else:
            if inner.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out = inner.body(x)
            feats = [out[str(i)] for i in range(len(out))]
        masks = [F.interpolate(samples.mask[None].float(), size=f.shape[-2:]).to(torch.bool)[0] for f in feats]
        pos = [centered_sine_position(m, self.num_pos_feats).to(f.dtype) for m, f in zip(masks, feats)]
        return feats, masks, pos


class DeformableEncoderLayer(nn.Module):
    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor, shapes: list[tuple[int, int]],
                shapes_tensor: Tensor, padding_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, loc, w = self.self_attn(src + pos, reference_points, src, shapes, shapes_tensor, padding_mask)
        src = self.norm1(src + self.dropout1(out))
        src = self.norm2(src + self.dropout3(self.linear2(self.dropout2(F.relu(self.linear1(src))))))
        return src, loc, w


class DeformableDecoderLayer(nn.Module):
    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.cross_attn = MultiScaleDeformableAttention(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        # the project's drop-in for nn.MultiheadAttention (the same parameters): on the CPU its
        # explicit path trains several times faster in bfloat16 than the fused kernel
        self.self_attn = MultiheadAttention(d_model, n_heads, dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, query_pos: Tensor, reference_points: Tensor, memory: Tensor,
                shapes: list[tuple[int, int]], shapes_tensor: Tensor, padding_mask: Tensor,
                self_allowed: Tensor | None = None,  # [B or 1, 1, Q, Q] bool: which queries see which
                ) -> tuple[Tensor, Tensor, Tensor]:
        q = k = tgt + query_pos
        tgt2 = self.self_attn(q, k, tgt, self_allowed, same_qk=True)[0]
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2, loc, w = self.cross_attn(tgt + query_pos, reference_points, memory, shapes, shapes_tensor, padding_mask)
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt = self.norm3(tgt + self.dropout4(self.linear2(self.dropout3(F.relu(self.linear1(tgt))))))
        return tgt, loc, w


@dataclass
class DeformableOutput:
    hs: Tensor  # [L_dec, B, Q, D] every decoder layer's output
    references: list[Tensor]  # per decoder layer [B, Q, 2 or 4]: the reference it predicts its box from
    # (x, y, or cxcywh with box refinement after the first layer), in [0, 1]
    memory: Tensor  # [B, S, D]
    enc_logits: Tensor | None = None  # two-stage: [B, S, C] the encoder's proposal scores
    enc_boxes: Tensor | None = None  # two-stage: [B, S, 4] cxcywh proposals
    capture: SamplingPoints | None = None
    aifi: list[AttentionCapture] | None = None  # hybrid encoder, with capture: each AIFI layer's q and k
    selected_tokens: Tensor | None = None  # two-stage: [B, Q] the encoder tokens the queries start from
    selection_scores: Tensor | None = None  # two-stage: [B, Q] sigmoid of the objectness logit they were ranked by
    selection_boxes: Tensor | None = None  # two-stage: [B, Q, 4] cxcywh, their proposals (the first references)


def valid_ratio(mask: Tensor) -> Tensor:
    """[B, h, w] padding mask -> [B, 2] (w, h) fraction of the map that is image."""
    _, h, w = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1)
    valid_w = (~mask[:, 0, :]).sum(1)
    return torch.stack([valid_w.float() / w, valid_h.float() / h], -1)


def encoder_reference_points(shapes: list[tuple[int, int]], valid_ratios: Tensor) -> Tensor:
    """Every token's own cell centre, per level: [B, S, L, 2] (x, y) in [0, 1] of each level."""
    refs = []
    for level, (h, w) in enumerate(shapes):
        ref_y, ref_x = torch.meshgrid(
            torch.linspace(0.5, h - 0.5, h, dtype=valid_ratios.dtype, device=valid_ratios.device),
            torch.linspace(0.5, w - 0.5, w, dtype=valid_ratios.dtype, device=valid_ratios.device),
            indexing="ij",
        )
        ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * h)
        ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * w)
        refs.append(torch.stack((ref_x, ref_y), -1))
    return torch.cat(refs, 1)[:, :, None] * valid_ratios[:, None]


def proposal_position_embedding(proposals: Tensor, num_pos_feats: int, temperature: float = 10000.0) -> Tensor:
    """Two-stage: [B, Q, 4] box logits -> [B, Q, 4 * num_pos_feats] sine embedding (x, y, w, h)."""
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=proposals.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos = proposals.sigmoid().float()[:, :, :, None] * (2 * math.pi) / dim_t
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=4).flatten(2).to(proposals.dtype)


@dataclass
class EncodedLevels:
    """The encoder's output and what the decoder needs to sample it."""

    memory: Tensor  # [B, S, D] the tokens of every level, finest first
    mask_flat: Tensor  # [B, S] True on padding
    shapes: list[tuple[int, int]]  # (h_l, w_l) per level
    shapes_tensor: Tensor  # [levels, 2] long
    valid_ratios: Tensor  # [B, levels, 2] (w, h)
    capture: SamplingPoints | None
    aifi: list[AttentionCapture] | None = None  # hybrid encoder, with capture: each AIFI layer's q and k


class DeformableTransformer(nn.Module):
    def __init__(self, config: DETRConfig) -> None:
        super().__init__()
        d, levels, heads = config.d_model, config.num_feature_levels, config.nheads
        self.d_model = d
        self.two_stage = config.two_stage
        self.hybrid = config.hybrid_encoder
        self.num_queries = config.num_queries
        if self.hybrid:  # RT-DETR: attention on the top level, convolutional fusion across levels
            self.encoder = HybridEncoder(config)
        else:
            self.encoder = nn.Module()
            self.encoder.layers = nn.ModuleList(
                DeformableEncoderLayer(d, config.dim_feedforward, config.dropout, levels, heads, config.enc_n_points)
                for _ in range(config.num_encoder_layers)
            )
        self.decoder = nn.Module()
        self.decoder.layers = nn.ModuleList(
            DeformableDecoderLayer(d, config.dim_feedforward, config.dropout, levels, heads, config.dec_n_points)
            for _ in range(config.num_decoder_layers)
        )
        if not self.hybrid:
            self.level_embed = nn.Parameter(torch.empty(levels, d))
        if config.two_stage or config.query_select:  # one proposal per encoder token
            self.enc_output = nn.Linear(d, d)
            self.enc_output_norm = nn.LayerNorm(d)
        if config.two_stage:
            self.pos_trans = nn.Linear(2 * d, 2 * d)
            self.pos_trans_norm = nn.LayerNorm(2 * d)
        elif config.query_type == "learned":
            self.reference_points = nn.Linear(d, 2)
        if config.query_type == "anchor":
            # DAB-DETR / DINO: a query's position is an MLP of the sine embedding of its current box
            self.decoder.ref_point_head = MLP(2 * d, d, d, 2)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.reset_parameters()
        if hasattr(self, "reference_points"):
            nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
            nn.init.constant_(self.reference_points.bias, 0.0)
        if not self.hybrid:
            nn.init.normal_(self.level_embed)

    def _encoder_proposals(self, memory: Tensor, padding_mask: Tensor, shapes: list[tuple[int, int]]
                           ) -> tuple[Tensor, Tensor]:
        """One proposal per token, a box of side 0.05 * 2^level at its cell (logits; inf where
        the token is padding or too near the edge)."""
        b = memory.shape[0]
        proposals, start = [], 0
        for level, (h, w) in enumerate(shapes):
            m = padding_mask[:, start:start + h * w].view(b, h, w)
            valid_h = (~m[:, :, 0]).sum(1)
            valid_w = (~m[:, 0, :]).sum(1)
            gy, gx = torch.meshgrid(
                torch.linspace(0, h - 1, h, dtype=memory.dtype, device=memory.device),
                torch.linspace(0, w - 1, w, dtype=memory.dtype, device=memory.device),
                indexing="ij",
            )
            grid = torch.cat([gx.unsqueeze(-1), gy.unsqueeze(-1)], -1)
            scale = torch.cat([valid_w.unsqueeze(-1), valid_h.unsqueeze(-1)], 1).view(b, 1, 1, 2)
            grid = (grid.unsqueeze(0).expand(b, -1, -1, -1) + 0.5) / scale
            wh = torch.ones_like(grid) * 0.05 * (2.0 ** level)
            proposals.append(torch.cat((grid, wh), -1).view(b, -1, 4))
            start += h * w
        props = torch.cat(proposals, 1)
        valid = ((props > 0.01) & (props < 0.99)).all(-1, keepdim=True)
        props = torch.log(props / (1 - props))
        props = props.masked_fill(padding_mask.unsqueeze(-1), float("inf")).masked_fill(~valid, float("inf"))
        query = memory.masked_fill(padding_mask.unsqueeze(-1), 0.0).masked_fill(~valid, 0.0)
        return self.enc_output_norm(self.enc_output(query)), props

    def encode(self, srcs: list[Tensor], masks: list[Tensor], pos_embeds: list[Tensor], capture: bool = False
               ) -> EncodedLevels:
        """srcs, pos_embeds: per level [B, D, h_l, w_l] (projected); masks: per level [B, h_l, w_l]."""
        aifi = None
        if self.hybrid:
            srcs, aifi = self.encoder(srcs, masks, pos_embeds, capture)
        shapes = [(int(s.shape[-2]), int(s.shape[-1])) for s in srcs]
        src_flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)  # [B, S, D]
        mask_flat = torch.cat([m.flatten(1) for m in masks], 1)  # [B, S]
        shapes_tensor = torch.as_tensor(shapes, dtype=torch.long, device=src_flat.device)
        valid_ratios = torch.stack([valid_ratio(m) for m in masks], 1).to(src_flat.dtype)  # [B, L, 2]
        cap = SamplingPoints(shapes=shapes, valid_ratios=valid_ratios) if capture else None
        memory = src_flat
        if not self.hybrid:
            pos_flat = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
                                  for lvl, p in enumerate(pos_embeds)], 1)
            enc_refs = encoder_reference_points(shapes, valid_ratios)  # [B, S, L, 2]
            for layer in self.encoder.layers:
                memory, loc, w = layer(memory, pos_flat, enc_refs, shapes, shapes_tensor, mask_flat)
                if cap is not None:
                    cap.encoder_locations.append(loc)
                    cap.encoder_weights.append(w)
        return EncodedLevels(memory, mask_flat, shapes, shapes_tensor, valid_ratios, cap, aifi if capture else None)

    def proposals(self, enc: EncodedLevels, heads: tuple[nn.Module, nn.Module]
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Every encoder token's proposal through (class, box) heads: logits [B, S, C], box logits
        [B, S, 4] (relative to the token's cell box), valid [B, S] (False: padding or edge), and the
        projected tokens the heads read [B, S, D] (``enc_output``, then its norm; 0 where not valid)."""
        query, props = self._encoder_proposals(enc.memory, enc.mask_flat, enc.shapes)
        return heads[0](query), heads[1](query) + props, torch.isfinite(props).all(-1), query

    def decode(
        self,
        enc: EncodedLevels,
        tgt: Tensor,  # [B, Q, D] query content
        reference: Tensor,  # [B, Q, 2 or 4] in [0, 1]: points, or boxes cxcywh
        query_pos: Tensor | None,  # [B, Q, D]; None: from each layer's box (anchor queries)
        box_heads: nn.ModuleList | None = None,  # with_box_refine: per-layer box MLPs (refine references)
        self_allowed: Tensor | None = None,  # [B or 1, 1, Q, Q] bool, which queries see which
        look_forward_twice: bool = False,
    ) -> tuple[Tensor, list[Tensor]]:
        """Returns hs [L, B, Q, D] and, per layer, the reference [B, Q, 2 or 4] its box is predicted
        from (with ``look_forward_twice`` the previous layer's box with its gradient, as in DINO)."""
        cap, vr = enc.capture, enc.valid_ratios
        hs, refs = [], []
        ref_for_pred = reference
        for i, layer in enumerate(self.decoder.layers):
            if reference.shape[-1] == 4:
                ref_input = reference[:, :, None] * torch.cat([vr, vr], -1)[:, None]
            else:
                ref_input = reference[:, :, None] * vr[:, None]  # [B, Q, L, 2]
            pos = query_pos
            if pos is None:
                pos = self.decoder.ref_point_head(sine_box_embedding(reference, self.d_model // 2)).to(tgt.dtype)
            refs.append(ref_for_pred)
            tgt, loc, w = layer(tgt, pos, ref_input, enc.memory, enc.shapes, enc.shapes_tensor, enc.mask_flat,
                                self_allowed)
            if cap is not None:
                cap.decoder_references.append(reference)
                cap.decoder_locations.append(loc)
                cap.decoder_weights.append(w)
            if box_heads is not None:  # iterative box refinement: the next layer's reference
                delta = box_heads[i](tgt)
                if reference.shape[-1] == 4:
                    new_ref = (delta + inverse_sigmoid(reference)).sigmoid()
                else:
                    new_ref = torch.cat([delta[..., :2] + inverse_sigmoid(reference), delta[..., 2:]], -1).sigmoid()
                reference = new_ref.detach()
                ref_for_pred = new_ref if look_forward_twice else reference
            else:
                ref_for_pred = reference
            hs.append(tgt)
        return torch.stack(hs), refs

    def forward(
        self,
        srcs: list[Tensor],  # per level [B, D, h_l, w_l], already projected to d_model
        masks: list[Tensor],  # per level [B, h_l, w_l] True on padding
        pos_embeds: list[Tensor],  # per level [B, D, h_l, w_l]
        query_embed: Tensor | None,  # [Q, 2D] (position half, content half); None for two-stage
        box_heads: nn.ModuleList | None = None,  # with_box_refine: per-layer box MLPs (refine references)
        proposal_heads: tuple[nn.Module, nn.Module] | None = None,  # two-stage: (class, box) heads
        capture: bool = False,
    ) -> DeformableOutput:
        """Deformable DETR as its authors built it: learned queries (a reference point from each
        query's position half), or two-stage (queries from the encoder's best proposals)."""
        enc = self.encode(srcs, masks, pos_embeds, capture)
        memory = enc.memory
        b, _, d = memory.shape
        enc_logits = enc_boxes = topk = topk_scores = start_boxes = None
        if self.two_stage:
            assert proposal_heads is not None
            enc_logits, enc_coord_logits, _, _ = self.proposals(enc, proposal_heads)  # [B, S, C], [B, S, 4]
            enc_boxes = enc_coord_logits.sigmoid()
            # class 0 is the proposals' objectness: their loss is class-agnostic (the authors' choice)
            topk_logits, topk = torch.topk(enc_logits[..., 0], self.num_queries, dim=1)  # [B, Q] best first
            topk_scores = topk_logits.detach().sigmoid()
            topk_coords = torch.gather(enc_coord_logits, 1, topk.unsqueeze(-1).repeat(1, 1, 4)).detach()
            reference = topk_coords.sigmoid()  # [B, Q, 4]
            start_boxes = reference
            pos_trans = self.pos_trans_norm(self.pos_trans(proposal_position_embedding(topk_coords, d // 2)))
            query_pos, tgt = torch.split(pos_trans, d, dim=2)
        else:
            assert query_embed is not None
            query_pos, tgt = torch.split(query_embed, d, dim=1)
            query_pos = query_pos.unsqueeze(0).expand(b, -1, -1)
            tgt = tgt.unsqueeze(0).expand(b, -1, -1)
            reference = self.reference_points(query_pos).sigmoid()  # [B, Q, 2]
        hs, refs = self.decode(enc, tgt, reference, query_pos, box_heads)
        return DeformableOutput(
            hs=hs, references=refs, memory=memory,
            enc_logits=enc_logits, enc_boxes=enc_boxes, capture=enc.capture, aifi=enc.aifi, selected_tokens=topk,
            selection_scores=topk_scores, selection_boxes=start_boxes,
        )
