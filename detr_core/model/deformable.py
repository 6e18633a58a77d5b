"""Deformable DETR inside :class:`~detr_core.model.detr.DETR` (``DETRConfig(attention="deformable")``).

The same detector class and output dict as plain DETR (``pred_logits``, ``pred_boxes``,
``aux_outputs``), so checkpoints, the trainer, evaluation and the views take either model. What
changes is inside: multi-scale features (the backbone's last three stages, each through a 1x1
conv + GroupNorm, plus ``num_feature_levels - 3`` extra levels from 3x3 stride-2 convs), the
deformable transformer, per-layer class and box heads predicting offsets from each query's
reference point, and the sigmoid focal classifier (``classifier="focal"``, whose loss and matcher
costs the project already has).

Parameter names follow the authors' code (``input_proj.L.0/1``, ``query_embed`` of width 2D,
``class_embed.i``, ``bbox_embed.i``, ``transformer.level_embed`` ...). Without box refinement the
per-layer heads are one shared module (as the authors do); with it they are separate.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from detr_core.box_ops import inverse_sigmoid
from detr_core.config import DETRConfig
from detr_core.model.deformable_transformer import (
    DeformableTransformer,
    MultiScaleBackbone,
    centered_sine_position,
)
from detr_core.model.nested_tensor import NestedTensor
from detr_core.model.transformer import MLP

if TYPE_CHECKING:
    from detr_core.model.detr import DETR


def build_deformable(model: DETR, config: DETRConfig) -> None:
    """Give ``model`` (a DETR being constructed) Deformable DETR's modules."""
    d = config.d_model
    model.num_queries = config.num_queries
    model.backbone = MultiScaleBackbone(config)
    channels = model.backbone.num_channels
    projections = [nn.Sequential(nn.Conv2d(c, d, kernel_size=1), nn.GroupNorm(32, d)) for c in channels]
    c_in = channels[-1]
    for _ in range(config.num_feature_levels - len(channels)):
        projections.append(nn.Sequential(nn.Conv2d(c_in, d, kernel_size=3, stride=2, padding=1), nn.GroupNorm(32, d)))
        c_in = d
    model.input_proj = nn.ModuleList(projections)
    for proj in model.input_proj:
        nn.init.xavier_uniform_(proj[0].weight, gain=1)
        nn.init.constant_(proj[0].bias, 0)
    model.transformer = DeformableTransformer(config)
    if not config.two_stage:
        model.query_embed = nn.Embedding(config.num_queries, 2 * d)  # [Q, 2D]: position half, content half

    class_embed = nn.Linear(d, config.num_logits)
    nn.init.constant_(class_embed.bias, -math.log((1 - 0.01) / 0.01))  # prior probability 0.01
    bbox_embed = MLP(d, d, 4, 3)
    nn.init.zeros_(bbox_embed.layers[-1].weight)
    nn.init.zeros_(bbox_embed.layers[-1].bias)
    num_pred = config.num_decoder_layers + (1 if config.two_stage else 0)
    if config.with_box_refine:
        model.class_embed = nn.ModuleList(copy.deepcopy(class_embed) for _ in range(num_pred))
        model.bbox_embed = nn.ModuleList(copy.deepcopy(bbox_embed) for _ in range(num_pred))
        nn.init.constant_(model.bbox_embed[0].layers[-1].bias[2:], -2.0)
    else:
        nn.init.constant_(bbox_embed.layers[-1].bias[2:], -2.0)
        model.class_embed = nn.ModuleList([class_embed] * num_pred)  # one head shared by every layer
        model.bbox_embed = nn.ModuleList([bbox_embed] * num_pred)
    if config.two_stage:
        for box in model.bbox_embed:
            nn.init.constant_(box.layers[-1].bias[2:], 0.0)


def forward_deformable(model: DETR, samples: NestedTensor, capture: bool = False) -> dict[str, Any]:
    """DETR.forward for the deformable model.

    Returns pred_logits [B, Q, K] (sigmoid per class), pred_boxes [B, Q, 4] cxcywh in [0, 1],
    aux_outputs (every earlier decoder layer), query_groups (1); two-stage adds enc_outputs (the
    encoder's proposals, [B, S, K] and [B, S, 4]). With ``capture``: ``deformable`` (a
    :class:`~detr_core.model.deformable_transformer.DeformableCapture`), ``feature_masks`` (per
    level [B, h_l, w_l]) and ``memory`` [B, S, D].
    """
    cfg = model.config
    feats, masks, pos = model.backbone(samples)
    srcs = [proj(f) for proj, f in zip(model.input_proj, feats)]  # per level [B, D, h_l, w_l]
    n_backbone = len(feats)
    for level in range(n_backbone, cfg.num_feature_levels):
        src = model.input_proj[level](feats[-1] if level == n_backbone else srcs[-1])
        mask = F.interpolate(samples.mask[None].float(), size=src.shape[-2:]).to(torch.bool)[0]
        srcs.append(src)
        masks.append(mask)
        pos.append(centered_sine_position(mask, cfg.d_model // 2).to(src.dtype))

    out = model.transformer(
        srcs, masks, pos,
        None if cfg.two_stage else model.query_embed.weight,
        box_heads=model.bbox_embed if cfg.with_box_refine else None,
        proposal_heads=(model.class_embed[-1], model.bbox_embed[-1]) if cfg.two_stage else None,
        capture=capture,
    )
    logits, boxes = [], []
    for level in range(out.hs.shape[0]):
        hs = out.hs[level]
        reference = inverse_sigmoid(out.references[level])
        delta = model.bbox_embed[level](hs)
        if reference.shape[-1] == 4:
            coord = delta + reference
        else:
            coord = torch.cat([delta[..., :2] + reference, delta[..., 2:]], -1)
        logits.append(model.class_embed[level](hs))
        boxes.append(coord.sigmoid())
    result: dict[str, Any] = {
        "pred_logits": logits[-1],
        "pred_boxes": boxes[-1],
        "aux_outputs": [{"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(logits[:-1], boxes[:-1])],
        "query_groups": 1,
    }
    if out.enc_logits is not None:
        result["enc_outputs"] = {"pred_logits": out.enc_logits, "pred_boxes": out.enc_boxes}
    if capture:
        result["deformable"] = out.capture
        result["feature_masks"] = masks
        result["memory"] = out.memory
    return result
