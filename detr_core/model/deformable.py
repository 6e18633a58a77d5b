"""The Deformable DETR family (``DETRConfig(attention="deformable")``): :class:`DeformableDETR`.

The same output dict as plain DETR (``pred_logits``, ``pred_boxes``, ``aux_outputs``) and the same
capture protocol (with :class:`~detr_core.model.capture_protocol.SamplingPoints` for attention),
so checkpoints, the trainer, evaluation and the views take either model. What changes is inside: multi-scale features (the backbone's last three stages, each through a 1x1
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
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detr_core.box_ops import inverse_sigmoid
from detr_core.config import DETRConfig, check_number
from detr_core.model.capture_protocol import ModelCapture
from detr_core.model.deformable_transformer import (
    DeformableTransformer,
    MultiScaleBackbone,
    centered_sine_position,
)
from detr_core.model.nested_tensor import NestedTensor, nested_tensor_from_tensor_list
from detr_core.model.transformer import MLP


class DeformableDETR(nn.Module):
    """Multi-scale backbone -> per-level projections -> deformable transformer -> per-layer heads."""

    def __init__(self, config: DETRConfig) -> None:
        super().__init__()
        self.config = config
        # the authors' modules in the authors' order (so seeded initializations stay the same)
        d = config.d_model
        self.num_queries = config.num_queries
        self.backbone = MultiScaleBackbone(config)
        channels = self.backbone.num_channels
        projections = [nn.Sequential(nn.Conv2d(c, d, kernel_size=1), nn.GroupNorm(32, d)) for c in channels]
        c_in = channels[-1]
        for _ in range(config.num_feature_levels - len(channels)):
            projections.append(nn.Sequential(nn.Conv2d(c_in, d, kernel_size=3, stride=2, padding=1), nn.GroupNorm(32, d)))
            c_in = d
        self.input_proj = nn.ModuleList(projections)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        self.transformer = DeformableTransformer(config)
        if not config.two_stage:
            self.query_embed = nn.Embedding(config.num_queries, 2 * d)  # [Q, 2D]: position half, content half

        class_embed = nn.Linear(d, config.num_logits)
        nn.init.constant_(class_embed.bias, -math.log((1 - 0.01) / 0.01))  # prior probability 0.01
        bbox_embed = MLP(d, d, 4, 3)
        nn.init.zeros_(bbox_embed.layers[-1].weight)
        nn.init.zeros_(bbox_embed.layers[-1].bias)
        num_pred = config.num_decoder_layers + (1 if config.two_stage else 0)
        if config.with_box_refine:
            self.class_embed = nn.ModuleList(copy.deepcopy(class_embed) for _ in range(num_pred))
            self.bbox_embed = nn.ModuleList(copy.deepcopy(bbox_embed) for _ in range(num_pred))
            nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)
        else:
            nn.init.constant_(bbox_embed.layers[-1].bias[2:], -2.0)
            self.class_embed = nn.ModuleList([class_embed] * num_pred)  # one head shared by every layer
            self.bbox_embed = nn.ModuleList([bbox_embed] * num_pred)
        if config.two_stage:
            for box in self.bbox_embed:
                nn.init.constant_(box.layers[-1].bias[2:], 0.0)

    @property
    def stride(self) -> int:
        """Input pixels per cell of the finest feature map."""
        return self.backbone.stride

    def forward(
        self,
        samples: NestedTensor | Tensor | list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
        capture: bool = False,
    ) -> dict[str, Any]:
        """Run the detector: samples [B, 3, H, W], a list of [3, H_i, W_i] or a NestedTensor;
        ``targets`` are not used (no denoising queries).

        Returns pred_logits [B, Q, K] (sigmoid per class), pred_boxes [B, Q, 4] cxcywh in [0, 1],
        aux_outputs (every earlier decoder layer), query_groups (1); two-stage adds enc_outputs (the
        encoder's proposals, [B, S, K] and [B, S, 4]). With ``capture``: ``capture``, a
        :class:`~detr_core.model.capture_protocol.ModelCapture` whose attention is
        :class:`~detr_core.model.capture_protocol.SamplingPoints`.
        """
        if not isinstance(samples, NestedTensor):
            samples = nested_tensor_from_tensor_list(samples)
        cfg = self.config
        feats, masks, pos = self.backbone(samples)
        srcs = [proj(f) for proj, f in zip(self.input_proj, feats)]  # per level [B, D, h_l, w_l]
        n_backbone = len(feats)
        for level in range(n_backbone, cfg.num_feature_levels):
            src = self.input_proj[level](feats[-1] if level == n_backbone else srcs[-1])
            mask = F.interpolate(samples.mask[None].float(), size=src.shape[-2:]).to(torch.bool)[0]
            srcs.append(src)
            masks.append(mask)
            pos.append(centered_sine_position(mask, cfg.d_model // 2).to(src.dtype))

        out = self.transformer(
            srcs, masks, pos,
            None if cfg.two_stage else self.query_embed.weight,
            box_heads=self.bbox_embed if cfg.with_box_refine else None,
            proposal_heads=(self.class_embed[-1], self.bbox_embed[-1]) if cfg.two_stage else None,
            capture=capture,
        )
        logits, boxes = [], []
        for level in range(out.hs.shape[0]):
            hs = out.hs[level]
            reference = inverse_sigmoid(out.references[level])
            delta = self.bbox_embed[level](hs)
            if reference.shape[-1] == 4:
                coord = delta + reference
            else:
                coord = torch.cat([delta[..., :2] + reference, delta[..., 2:]], -1)
            logits.append(self.class_embed[level](hs))
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
            sampling = out.capture
            assert sampling is not None
            sampling.strides = level_strides(self)
            sampling.feature_masks = masks
            result["capture"] = ModelCapture(
                layer_logits=torch.stack(logits), layer_boxes=torch.stack(boxes), attention=sampling, memory=out.memory,
                selected_tokens=out.selected_tokens, selection_scores=out.selection_scores,
                selection_boxes=out.selection_boxes,
            )
        return result


def level_strides(model: DeformableDETR) -> list[int]:
    """Input pixels per cell of each of the model's feature levels (extra levels halve the last)."""
    strides = list(model.backbone.strides)
    while len(strides) < model.config.num_feature_levels:
        strides.append(strides[-1] * 2)
    return strides


# The family's entries in :mod:`detr_core.model.registry`
build = DeformableDETR
TITLE = "Deformable DETR"
PAPER = "Zhu et al. 2021, Deformable DETR: Deformable Transformers for End-to-End Object Detection"
ATTENTION_KIND = "sampling"  # its capture's cross-attention: SamplingPoints
# its levels' sizes and start offsets are Python numbers: a traced (ONNX) graph holds one image size
TRACED_SIZE_DYNAMIC = False
EXPORT_PROBLEM = ("deformable attention (both formats hold plain DETR; a Hugging Face Deformable DETR "
                  "folder opens here but is not written)")


def check_config(config: DETRConfig) -> None:
    """Raise ValueError on options Deformable DETR cannot build."""
    for name in ("num_feature_levels", "enc_n_points", "dec_n_points"):
        check_number(name, getattr(config, name), 1, 16, whole=True)
    if config.d_model % 32 != 0:
        raise ValueError(f"deformable attention needs d_model divisible by 32 (GroupNorm), got {config.d_model}")
    unsupported = {
        "classifier='focal'": config.classifier == "focal",
        "query_type='learned'": config.query_type == "learned",
        "dn_groups=0": config.dn_groups == 0,
        "num_query_groups=1": config.num_query_groups == 1,
        "dense_aux=False": not config.dense_aux,
        "pre_norm=False": not config.pre_norm,
        "decoder_self_attention=True": config.decoder_self_attention,
        "decoder_norm_between_layers=False": not config.decoder_norm_between_layers,
        "with_box_refine=True for two_stage": config.with_box_refine or not config.two_stage,
    }
    missing = [k for k, ok in unsupported.items() if not ok]
    if missing:
        raise ValueError("deformable attention needs " + ", ".join(missing))
    if config.position_embedding != "sine" or config.position_added != "every_layer":
        raise ValueError("deformable attention needs position_embedding='sine' and position_added='every_layer' "
                         "(its encoding is per feature level, at every layer)")
