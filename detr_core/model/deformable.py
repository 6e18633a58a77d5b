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
    DeformableOutput,
    DeformableTransformer,
    MultiScaleBackbone,
    centered_sine_position,
)
from detr_core.model.denoising import build_denoising_queries, query_visibility
from detr_core.model.hybrid_encoder import encoder_self_attention
from detr_core.model.nested_tensor import NestedTensor, nested_tensor_from_tensor_list
from detr_core.model.transformer import MLP


class DeformableDETR(nn.Module):
    """Multi-scale backbone -> per-level projections -> deformable transformer -> per-layer heads.

    The levers of the DETR line compose here (see :func:`check_config` for what does not):
    anchor-box queries (``query_type="anchor"``, DAB-DETR: a learned content vector and a 4-D box
    per query, the query's position an MLP of the box's sine embedding), DINO's mixed query
    selection (``query_select``: the boxes are each image's best encoder proposals, the content
    stays learned; with ``query_content="encoder"`` the content is the selected tokens' features,
    as RT-DETR does), denoising queries (``dn_groups``, contrastive with ``dn_contrastive``), Group
    DETR's query groups, look-forward-twice, and RT-DETR's hybrid encoder (``hybrid_encoder``).
    """

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
        total_queries = config.num_queries * config.num_query_groups
        self.anchors = config.query_type == "anchor"
        if self.anchors:
            if config.query_content == "learned":  # else the content is the selected encoder tokens'
                self.query_content = nn.Embedding(total_queries, d)  # [Q * groups, D]
            if not config.query_select:
                self.refpoint_embed = nn.Embedding(total_queries, 4)  # box logits: sigmoid -> cxcywh
                with torch.no_grad():
                    xy = torch.rand(total_queries, 2) * 0.9 + 0.05
                    wh = torch.full((total_queries, 2), 0.2)
                    self.refpoint_embed.weight.copy_(inverse_sigmoid(torch.cat([xy, wh], 1)))
        elif not config.two_stage:
            self.query_embed = nn.Embedding(total_queries, 2 * d)  # [Q, 2D]: position half, content half

        class_embed = nn.Linear(d, config.num_logits)
        nn.init.constant_(class_embed.bias, -math.log((1 - 0.01) / 0.01))  # prior probability 0.01
        bbox_embed = MLP(d, d, 4, 3)
        nn.init.zeros_(bbox_embed.layers[-1].weight)
        nn.init.zeros_(bbox_embed.layers[-1].bias)
        num_pred = config.num_decoder_layers + (1 if config.two_stage else 0)
        if config.with_box_refine:
            self.class_embed = nn.ModuleList(copy.deepcopy(class_embed) for _ in range(num_pred))
            self.bbox_embed = nn.ModuleList(copy.deepcopy(bbox_embed) for _ in range(num_pred))
            if not self.anchors:  # anchor boxes carry their own size: refinement starts as the identity
                nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)
        else:
            if not self.anchors:
                nn.init.constant_(bbox_embed.layers[-1].bias[2:], -2.0)
            self.class_embed = nn.ModuleList([class_embed] * num_pred)  # one head shared by every layer
            self.bbox_embed = nn.ModuleList([bbox_embed] * num_pred)
        if config.two_stage:
            for box in self.bbox_embed:
                nn.init.constant_(box.layers[-1].bias[2:], 0.0)
        if config.query_select:  # the encoder proposals' own heads (DINO's enc_out_*_embed)
            self.enc_class_embed = copy.deepcopy(class_embed)
            self.enc_bbox_embed = copy.deepcopy(bbox_embed)
            nn.init.constant_(self.enc_bbox_embed.layers[-1].bias, 0.0)
        if config.dn_groups > 0:
            self.label_enc = nn.Embedding(config.num_classes, d)

    @property
    def stride(self) -> int:
        """Input pixels per cell of the finest feature map."""
        return self.backbone.stride

    def _selected_boxes(self, logits: Tensor, coord_logits: Tensor, valid: Tensor, groups: int
                        ) -> tuple[Tensor, Tensor]:
        """Each image's Q best-scoring proposals (a padded or edge token never), detached:
        (boxes [B, Q * groups, 4] cxcywh, the tokens [B, Q]). logits [B, S, C], coord_logits [B, S, 4].
        Every group starts from the same Q proposals."""
        score = logits.detach().float().amax(-1).masked_fill(~valid, float("-inf"))  # [B, S]
        q = self.num_queries
        k = min(q, score.shape[1])
        idx = score.topk(k, dim=1).indices  # [B, k], best first
        if k < q:  # fewer tokens than queries: the rest repeat the best
            idx = idx[:, torch.arange(q, device=idx.device) % k]
        boxes = coord_logits.detach().gather(1, idx[..., None].expand(-1, -1, 4)).sigmoid()
        return boxes.repeat(1, groups, 1), idx

    def forward(
        self,
        samples: NestedTensor | Tensor | list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
        capture: bool = False,
    ) -> dict[str, Any]:
        """Run the detector: samples [B, 3, H, W], a list of [3, H_i, W_i] or a NestedTensor;
        ``targets`` (training only) are where denoising queries come from.

        Returns pred_logits [B, Q, K] (sigmoid per class), pred_boxes [B, Q, 4] cxcywh in [0, 1],
        aux_outputs (every earlier decoder layer), query_groups (> 1 only in training with Group
        DETR's groups); two-stage and query selection add enc_outputs (the encoder's proposals,
        [B, S, K] and [B, S, 4]); denoising adds dn_outputs / dn_meta. With ``capture``: ``capture``,
        a :class:`~detr_core.model.capture_protocol.ModelCapture` whose attention is
        :class:`~detr_core.model.capture_protocol.SamplingPoints` (and ``denoising`` while
        training with targets).
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

        box_heads = self.bbox_embed if cfg.with_box_refine else None
        pad, dn, enc_outputs = 0, None, None
        if not self.anchors:  # Deformable DETR as its authors built it
            groups = cfg.num_query_groups if self.training else 1
            query_embed = None if cfg.two_stage else self.query_embed.weight[: cfg.num_queries * groups]
            if groups > 1:
                out = self._grouped_learned(srcs, masks, pos, query_embed, groups, capture)
            else:
                out = self.transformer(
                    srcs, masks, pos, query_embed, box_heads=box_heads,
                    proposal_heads=(self.class_embed[-1], self.bbox_embed[-1]) if cfg.two_stage else None,
                    capture=capture,
                )
            hs, references, memory, sampling, aifi = out.hs, out.references, out.memory, out.capture, out.aifi
            selected, selection_scores, selection_boxes = out.selected_tokens, out.selection_scores, out.selection_boxes
            if out.enc_logits is not None:
                enc_outputs = {"pred_logits": out.enc_logits, "pred_boxes": out.enc_boxes, "class_agnostic": True}
        else:
            hs, references, memory, sampling, aifi, selected, enc_outputs, dn, groups = self._anchor_forward(
                srcs, masks, pos, targets, capture)
            selection_scores = selection_boxes = None
            if selected is not None and enc_outputs is not None:  # mixed query selection (DINO, RT-DETR)
                scores = enc_outputs["pred_logits"].detach().float().sigmoid().amax(-1)  # [B, S]
                selection_scores = scores.gather(1, selected)  # [B, Q]
                selection_boxes = enc_outputs["pred_boxes"].detach().gather(1, selected[..., None].expand(-1, -1, 4))
            pad = dn.num_queries if dn is not None else 0

        logits, boxes = [], []
        for level in range(hs.shape[0]):
            h = hs[level]
            reference = inverse_sigmoid(references[level])
            delta = self.bbox_embed[level](h)
            if reference.shape[-1] == 4:
                coord = delta + reference
            else:
                coord = torch.cat([delta[..., :2] + reference, delta[..., 2:]], -1)
            logits.append(self.class_embed[level](h))
            boxes.append(coord.sigmoid())
        all_logits, all_boxes = torch.stack(logits), torch.stack(boxes)  # [L, B, P + Q, C], [L, B, P + Q, 4]
        logits_q, boxes_q = all_logits[:, :, pad:], all_boxes[:, :, pad:]
        result: dict[str, Any] = {
            "pred_logits": logits_q[-1],
            "pred_boxes": boxes_q[-1],
            "aux_outputs": [{"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(logits_q[:-1], boxes_q[:-1])],
            "query_groups": groups,
        }
        if enc_outputs is not None:
            result["enc_outputs"] = enc_outputs
        if dn is not None:
            result["dn_outputs"] = [{"pred_logits": lg[:, :pad], "pred_boxes": bx[:, :pad]}
                                    for lg, bx in zip(all_logits, all_boxes)]
            result["dn_meta"] = dn
        if capture:
            assert sampling is not None
            sampling.strides = level_strides(self)
            sampling.feature_masks = masks
            top = len(masks) - 1  # the hybrid encoder's attention runs on the top level only
            encoder_self = (encoder_self_attention(aifi, masks[top], top, sampling.strides[top])
                            if aifi else None)
            if pad:  # the views follow the matching queries; the denoising ones have their own capture
                for name in ("decoder_references", "decoder_locations", "decoder_weights"):
                    setattr(sampling, name, [x[:, pad:] for x in getattr(sampling, name)])
            result["capture"] = ModelCapture(
                layer_logits=logits_q, layer_boxes=boxes_q, attention=sampling, memory=memory,
                selected_tokens=selected, selection_scores=selection_scores, selection_boxes=selection_boxes,
                denoising=dn.capture(all_logits[:, :, :pad], all_boxes[:, :, :pad]) if dn is not None else None,
                encoder_self=encoder_self,
            )
        return result

    def _grouped_learned(self, srcs: list[Tensor], masks: list[Tensor], pos: list[Tensor], query_embed: Tensor,
                         groups: int, capture: bool) -> DeformableOutput:
        """Learned queries with Group DETR's groups (training): each group sees only itself."""
        t = self.transformer
        enc = t.encode(srcs, masks, pos, capture)
        b, d = enc.memory.shape[0], t.d_model
        query_pos, tgt = torch.split(query_embed, d, dim=1)
        query_pos = query_pos.unsqueeze(0).expand(b, -1, -1)
        reference = t.reference_points(query_pos).sigmoid()  # [B, Q * groups, 2]
        allowed = query_visibility(query_pos.shape[1], groups, None, enc.memory.device)
        hs, refs = t.decode(enc, tgt.unsqueeze(0).expand(b, -1, -1), reference, query_pos,
                            self.bbox_embed if self.config.with_box_refine else None, allowed)
        return DeformableOutput(hs=hs, references=refs, memory=enc.memory, capture=enc.capture, aifi=enc.aifi)

    def _anchor_forward(self, srcs: list[Tensor], masks: list[Tensor], pos: list[Tensor],
                        targets: list[dict[str, Tensor]] | None, capture: bool) -> tuple:
        """Anchor-box queries (DAB-DETR), with query selection, denoising and groups as configured."""
        cfg, t = self.config, self.transformer
        groups = cfg.num_query_groups if self.training else 1
        n_match = cfg.num_queries * groups
        enc = t.encode(srcs, masks, pos, capture)
        b = enc.memory.shape[0]
        enc_outputs = selected = None
        if cfg.query_content == "learned":  # DAB-DETR, DINO's mixed query selection
            tgt = self.query_content.weight[:n_match][None].expand(b, -1, -1)  # [B, Q * groups, D]
        if cfg.query_select:
            enc_logits, enc_coords, valid, projected = t.proposals(enc, (self.enc_class_embed, self.enc_bbox_embed))
            reference, selected = self._selected_boxes(enc_logits, enc_coords, valid, groups)
            enc_outputs = {"pred_logits": enc_logits, "pred_boxes": enc_coords.sigmoid(), "class_agnostic": False}
            if cfg.query_content == "encoder":  # RT-DETR: the selected tokens' features, detached
                picked = projected.detach().gather(1, selected[..., None].expand(-1, -1, projected.shape[-1]))
                tgt = picked.repeat(1, groups, 1)  # [B, Q * groups, D]
        else:
            reference = self.refpoint_embed.weight[:n_match].sigmoid()[None].expand(b, -1, -1)  # [B, Q * groups, 4]
        dn = None
        if self.training and cfg.dn_groups > 0 and targets is not None:
            built = build_denoising_queries(targets, self.label_enc, cfg.num_classes, cfg.dn_groups,
                                            cfg.dn_label_noise, cfg.dn_box_noise, cfg.dn_contrastive)
            if built is not None:
                dn_content, dn_refs, dn = built
                tgt = torch.cat([dn_content.to(tgt.dtype), tgt], dim=1)
                reference = torch.cat([dn_refs.to(reference.dtype), reference], dim=1)
        allowed = query_visibility(n_match, groups, dn, enc.memory.device)
        hs, refs = t.decode(enc, tgt, reference, None, self.bbox_embed if cfg.with_box_refine else None, allowed,
                            look_forward_twice=cfg.look_forward_twice and cfg.with_box_refine)
        return hs, refs, enc.memory, enc.capture, enc.aifi, selected, enc_outputs, dn, groups


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
    """Raise ValueError on options Deformable DETR cannot build, saying what it needs."""
    for name in ("num_feature_levels", "enc_n_points", "dec_n_points"):
        check_number(name, getattr(config, name), 1, 16, whole=True)
    if config.d_model % 32 != 0:
        raise ValueError(f"deformable attention needs d_model divisible by 32 (GroupNorm), got {config.d_model}")
    anchors = config.query_type == "anchor"
    unsupported = {
        "classifier='focal'": config.classifier == "focal",
        "dense_aux=False (its proposals come from query_select instead)": not config.dense_aux,
        "spatial_prior=False (deformable attention already samples near each box)": not config.spatial_prior,
        "pre_norm=False": not config.pre_norm,
        "decoder_self_attention=True": config.decoder_self_attention,
        "decoder_norm_between_layers=False": not config.decoder_norm_between_layers,
        "with_box_refine=True for two_stage": config.with_box_refine or not config.two_stage,
        "query_type='learned' for two_stage (query_select is its anchor-query form)": not (config.two_stage and anchors),
        "num_query_groups=1 for two_stage": config.num_query_groups == 1 or not config.two_stage,
        "num_feature_levels of at least 2 for hybrid_encoder": config.num_feature_levels >= 2 or not config.hybrid_encoder,
    }
    missing = [k for k, ok in unsupported.items() if not ok]
    if missing:
        raise ValueError("deformable attention needs " + ", ".join(missing))
    if config.position_embedding != "sine" or config.position_added != "every_layer":
        raise ValueError("deformable attention needs position_embedding='sine' and position_added='every_layer' "
                         "(its encoding is per feature level, at every layer)")
