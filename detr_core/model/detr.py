"""The DETR family (``attention="dense"``): backbone -> 1x1 projection -> transformer -> class and box heads.

With the default config this is the paper's model, module for module (state-dict keys and
shapes equal the official checkpoints'). The fast-convergence levers in ``DETRConfig``
(anchor-box queries, query groups, denoising, focal classification) add modules and
training-time queries, but inference stays DETR: a fixed set of learned queries, one prediction
each, no anchors designed by hand and no NMS.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from detr_core.box_ops import inverse_sigmoid
from detr_core.config import DETRConfig
from detr_core.model.backbone import build_backbone
from detr_core.model.capture_protocol import ModelCapture
from detr_core.model.denoising import build_denoising_queries, query_visibility
from detr_core.model.dense_head import DenseHead
from detr_core.model.nested_tensor import NestedTensor, nested_tensor_from_tensor_list
from detr_core.model.transformer import MLP, Transformer

TITLE = "DETR"  # the family's name and paper (registry.describe)
PAPER = "Carion et al. 2020, End-to-End Object Detection with Transformers"


class DETR(nn.Module):
    def __init__(self, config: DETRConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.num_queries = config.num_queries
        self.transformer = Transformer(
            d_model=d,
            nheads=config.nheads,
            num_encoder_layers=config.num_encoder_layers,
            num_decoder_layers=config.num_decoder_layers,
            dim_feedforward=config.dim_feedforward,
            dropout=config.dropout,
            pre_norm=config.pre_norm,
            decoder_self_attention=config.decoder_self_attention,
            anchor_queries=config.query_type == "anchor",
            look_forward_twice=config.look_forward_twice,
            spatial_prior=config.spatial_prior,
            norm_between_layers=config.decoder_norm_between_layers,
            position_at_input=config.position_added == "input",
        )
        self.class_embed = nn.Linear(d, config.num_logits)
        self.bbox_embed = MLP(d, d, 4, 3)
        total_queries = config.num_queries * config.num_query_groups
        if config.query_type == "learned":
            self.query_embed = nn.Embedding(total_queries, d)
        else:
            self.query_content = nn.Embedding(total_queries, d)
            self.refpoint_embed = nn.Embedding(total_queries, 4)  # box logits: sigmoid -> cxcywh
            with torch.no_grad():
                xy = torch.rand(total_queries, 2) * 0.9 + 0.05
                wh = torch.full((total_queries, 2), 0.2)
                self.refpoint_embed.weight.copy_(inverse_sigmoid(torch.cat([xy, wh], 1)))
                # refinement starts as the identity: layer 0 predicts its anchor box
                nn.init.zeros_(self.bbox_embed.layers[-1].weight)
                nn.init.zeros_(self.bbox_embed.layers[-1].bias)
        if config.dn_groups > 0:
            self.label_enc = nn.Embedding(config.num_classes, d)
        if config.classifier == "focal":
            prior = 0.01
            nn.init.constant_(self.class_embed.bias, -math.log((1 - prior) / prior))
        if config.dense_aux:
            self.dense_head = DenseHead(d, config.num_logits)
        if config.query_select:
            del self.refpoint_embed  # the anchors come from the encoder's boxes
        self.backbone = build_backbone(config)
        self.input_proj = nn.Conv2d(self.backbone.num_channels, d, kernel_size=1)

    def _selected_anchors(self, dense: dict[str, Tensor], mask: Tensor, groups: int
                          ) -> tuple[Tensor, Tensor, Tensor]:
        """The Q best-scoring encoder boxes of each image, detached (DINO's mixed query selection),
        the same for every query group. dense: logits [B, S, C], boxes [B, S, 4]; mask [B, h, w]
        (True on padding). Returns (boxes [B, Q * groups, 4] cxcywh in [0, 1], the tokens they
        came from [B, Q * groups] long, their scores [B, Q * groups]: the best real class's
        probability)."""
        logits = dense["logits"].detach().float()
        focal = self.config.classifier == "focal"
        if focal:
            score = logits.amax(-1)  # the sigmoid is monotonic: rank the logits (no ties where it saturates)
        else:
            score = logits.softmax(-1)[..., :-1].amax(-1)  # [B, S], the best real class
        score = score.masked_fill(mask.flatten(1), float("-inf"))
        q = self.num_queries
        k = min(q, score.shape[1])
        best, idx = score.topk(k, dim=1)  # [B, k], best first
        if focal:
            best = best.sigmoid()
        if k < q:  # fewer tokens than queries: the rest repeat the best boxes
            repeat = torch.arange(q, device=idx.device) % k
            best, idx = best[:, repeat], idx[:, repeat]
        boxes = dense["boxes"].detach().gather(1, idx[..., None].expand(-1, -1, 4))
        return boxes.repeat(1, groups, 1), idx.repeat(1, groups), best.repeat(1, groups)

    @property
    def stride(self) -> int:
        """Input pixels per feature-grid cell."""
        return self.backbone.stride

    def forward(
        self,
        samples: NestedTensor | Tensor | list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
        capture: bool = False,
    ) -> dict[str, Any]:
        """Run the detector.

        samples: [B, 3, H, W] normalized images, a list of [3, H_i, W_i], or a NestedTensor.
        targets: only used in training, for the denoising queries.
        Returns a dict:
          pred_logits [B, Q, C], pred_boxes [B, Q, 4] cxcywh in [0, 1] (last decoder layer);
          aux_outputs: the same for every earlier layer (a list of L - 1 dicts);
          query_groups: how many groups of Q queries the outputs hold (> 1 only in training);
          dn_outputs / dn_meta: denoising predictions per layer (training with dn_groups > 0);
          dense: the dense auxiliary head's per-token predictions (training with dense_aux);
          capture: with ``capture``, a :class:`~detr_core.model.capture_protocol.ModelCapture`
          whose attention is :class:`~detr_core.model.capture_protocol.DenseAttention`.
        """
        if not isinstance(samples, NestedTensor):
            samples = nested_tensor_from_tensor_list(samples)
        features, pos = self.backbone(samples)
        src, mask = features.decompose()  # [B, C, h, w], [B, h, w]
        cfg = self.config
        groups = cfg.num_query_groups if self.training else 1
        n_match = cfg.num_queries * groups
        b = src.shape[0]

        query_pos = refpoints = None
        if cfg.query_type == "learned":
            query_pos = self.query_embed.weight[:n_match][None]  # [1, Q, D]
            tgt = torch.zeros_like(query_pos)
        else:
            tgt = self.query_content.weight[:n_match][None]  # [1, Q, D]
            if not cfg.query_select:
                refpoints = self.refpoint_embed.weight[:n_match].sigmoid()[None]  # [1, Q, 4]

        dn = None
        if self.training and cfg.dn_groups > 0 and targets is not None:
            built = build_denoising_queries(
                targets, self.label_enc, cfg.num_classes, cfg.dn_groups, cfg.dn_label_noise, cfg.dn_box_noise,
                cfg.dn_contrastive,
            )
            if built is not None:
                dn_content, dn_refs, dn = built
                tgt = torch.cat([dn_content, tgt.expand(b, -1, -1)], dim=1)
                if not cfg.query_select:
                    refpoints = torch.cat([dn_refs, refpoints.expand(b, -1, -1)], dim=1)  # type: ignore[union-attr]
        self_allowed = query_visibility(n_match, groups, dn, src.device)
        grid = (src.shape[-2], src.shape[-1])
        dense: dict[str, Tensor] = {}
        selection: dict[str, Tensor] = {}  # the selected tokens and their scores, for the capture

        def select_refpoints(memory: Tensor) -> Tensor:  # [B, P + Q * groups, 4], denoising first
            dense.update(self.dense_head(memory, grid))
            selected, selection["tokens"], selection["scores"] = self._selected_anchors(dense, mask, groups)
            selection["boxes"] = selected
            return torch.cat([dn_refs, selected], dim=1) if dn is not None else selected

        dec, memory, cap = self.transformer(
            self.input_proj(src),
            mask,
            pos,
            tgt,
            query_pos=query_pos,
            refpoints=refpoints,
            box_head=self.bbox_embed if cfg.query_type == "anchor" else None,
            self_allowed=self_allowed,
            capture=capture,
            select_refpoints=select_refpoints if cfg.query_select else None,
        )
        logits = self.class_embed(dec.hs)  # [L, B, P + Q, C], the P denoising queries first
        boxes = dec.boxes if dec.boxes is not None else self.bbox_embed(dec.hs).sigmoid()  # [L, B, P + Q, 4]
        pad = dn.num_queries if dn is not None else 0
        out: dict[str, Any] = {
            "pred_logits": logits[-1, :, pad:],
            "pred_boxes": boxes[-1, :, pad:],
            "aux_outputs": [
                {"pred_logits": lg[:, pad:], "pred_boxes": bx[:, pad:]} for lg, bx in zip(logits[:-1], boxes[:-1])
            ],
            "query_groups": groups,
        }
        if self.training and cfg.dense_aux:
            dense = dense or self.dense_head(memory, grid)
            out["dense"] = {**dense, "grid": grid, "valid": ~mask.flatten(1)}
        if dn is not None:
            out["dn_outputs"] = [{"pred_logits": lg[:, :pad], "pred_boxes": bx[:, :pad]} for lg, bx in zip(logits, boxes)]
            out["dn_meta"] = dn
        if capture:
            assert cap is not None
            cap.feature_mask = mask
            out["capture"] = ModelCapture(
                layer_logits=logits[:, :, pad:], layer_boxes=boxes[:, :, pad:], attention=cap, memory=memory,
                denoising=dn.capture(logits[:, :, :pad], boxes[:, :, :pad]) if dn is not None else None,
                selected_tokens=selection.get("tokens"), selection_scores=selection.get("scores"),
                selection_boxes=selection.get("boxes"),
            )
        return out


# The family's entries in :mod:`detr_core.model.registry`
build = DETR
ATTENTION_KIND = "dense"  # its capture's cross-attention: DenseAttention maps
EXPORT_PROBLEM = ""  # the official and Hugging Face formats hold this family (within export_problems' limits)


def check_config(config: DETRConfig) -> None:
    """Raise ValueError on options plain DETR does not build (its query selection reads the dense
    head's boxes; the hybrid encoder is multi-scale)."""
    if config.query_select and not config.dense_aux:
        raise ValueError("query_select needs query_type='anchor' and dense_aux=True with dense attention "
                         "(the dense head's boxes are where its queries start)")
    if config.query_content != "learned":
        raise ValueError("query_content='encoder' (RT-DETR) needs attention='deformable' (its proposals are "
                         "one per encoder token; the dense head's are not)")
    if config.hybrid_encoder:
        raise ValueError("hybrid_encoder (RT-DETR) needs attention='deformable' (it fuses several feature levels)")

