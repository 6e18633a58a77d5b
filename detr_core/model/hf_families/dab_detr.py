"""DAB-DETR (``DETRConfig(attention="dab_detr")``), wrapped from transformers' ``DabDetrForObjectDetection``.

Liu et al., "DAB-DETR: Dynamic Anchor Boxes are Better Queries for DETR" (ICLR 2022): the
decoder's queries are learned anchor boxes (x, y, w, h), refined layer by layer; each layer's
cross-attention uses the anchor's sine embedding as its spatial query, modulated by the anchor's
width and height. Sigmoid (focal) classification.

Capture recipe:

- decoder cross- and self-attention maps: transformers returns them with ``output_attentions``
  (asked during a capture only) -> :class:`DenseAttention`;
- each decoder cross-attention's per-head queries and keys as its attention receives them
  (``cross_attn.cross_attn``'s ``hidden_states`` and ``key_states``, [B, Q or S, 2 D]): per head a
  content half and a spatial half (the anchor's sine embedding, scaled by a transformation of
  the decoder embedding and modulated by the anchor's width and height), concatenated as in
  Conditional DETR, so the same content-only and spatial-only maps follow
  (``DenseAttention.decoder_cross_split``, computed when asked for);
- encoder self-attention as q and k (outputs of each encoder layer's ``q_proj`` and ``k_proj``);
- the feature grid's padding mask (the backbone's last mask) and the encoder's output;
- every decoder layer's logits and boxes: transformers' own heads (``class_embed``,
  ``bbox_predictor`` around each layer's anchor) on the decoder's intermediate states, exactly as
  its forward computes the last layer's (recorded from ``model``'s output).

Input: ImageNet-normalized pixels and a ``pixel_mask`` (padding masked out exactly).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from detr_core.model.capture_protocol import ModelCapture, SplitCrossAttention
from detr_core.model.hf_families.base import (
    FamilySpec,
    Recording,
    dense_attention,
    heads_first,
    inputs_of,
    output_of,
    registry_entries,
)
from detr_core.model.hf_families.conditional_detr import DenseWrapped
from detr_core.model.nested_tensor import NestedTensor

SPEC = FamilySpec(
    name="dab_detr", model_type="dab-detr", config_class="DabDetrConfig", model_class="DabDetrForObjectDetection",
    title="DAB-DETR", paper="Liu et al. 2022, DAB-DETR: Dynamic Anchor Boxes are Better Queries for DETR",
    attention_kind="dense", imagenet_normalized=True, takes_pixel_mask=True,
)


class DabDetr(DenseWrapped):
    SPEC = SPEC

    @classmethod
    def _sizes(cls, c) -> dict[str, Any]:
        cls._one_head_count(c)
        return {"d_model": c.hidden_size, "nheads": c.decoder_attention_heads, "num_encoder_layers": c.encoder_layers,
                "num_decoder_layers": c.decoder_layers, "dim_feedforward": c.decoder_ffn_dim,
                "num_queries": c.num_queries * max(1, c.num_patterns), "dilation": bool(c.dilation)}

    def _forward_options(self, capture: bool) -> dict[str, Any]:
        return {"output_attentions": True} if capture else {}

    def _hooks(self, capture: bool) -> list:
        model = self.detector.model
        hooks = [output_of(model, "decoder", lambda o: (o.intermediate_hidden_states, o.reference_points))]
        if capture:
            for layer in model.decoder.layers:
                hooks.append(inputs_of(layer.cross_attn.cross_attn, "cross_qk",
                                       lambda args, kwargs: (kwargs["hidden_states"], kwargs["key_states"])))
            for layer in model.encoder.layers:
                hooks.append(output_of(layer.self_attn.q_proj, "enc_q"))
                hooks.append(output_of(layer.self_attn.k_proj, "enc_k"))
            hooks.append(output_of(model.backbone, "valid", lambda o: o[0][-1][1]))  # [B, h, w] True on image
            hooks.append(output_of(model.encoder, "memory", lambda o: o[0]))
        return hooks

    def _layers(self, out: Any, recording: Recording) -> tuple[Tensor, Tensor]:
        from transformers.models.dab_detr.modeling_dab_detr import inverse_sigmoid

        det = self.detector
        hidden, anchors = recording["decoder"][0]  # [L, B, Q, D], [L, B, Q, 4] the anchor each layer used
        dims = det.config.query_dim
        delta = det.bbox_predictor(hidden)
        boxes = torch.cat([delta[..., :dims] + inverse_sigmoid(anchors), delta[..., dims:]], -1).sigmoid()
        logits = det.class_embed(hidden)
        return torch.cat([logits[:-1], out.logits[None]]), torch.cat([boxes[:-1], out.pred_boxes[None]])

    def _capture(self, out: Any, recording: Recording, logits: Tensor, boxes: Tensor,
                 samples: NestedTensor) -> ModelCapture:
        recording["cross"] = list(out.cross_attentions)  # per layer [B, heads, Q, S]
        recording["self"] = list(out.decoder_attentions)  # per layer [B, heads, Q, Q]
        valid = recording["valid"][0]
        attention = dense_attention(recording, self.config.nheads, valid)
        for layer, (q, k) in zip(self.detector.model.decoder.layers, recording["cross_qk"]):  # [B, Q or S, 2 D]
            heads = layer.cross_attn.cross_attn.attention_heads
            attention.decoder_cross_split.append(SplitCrossAttention(
                heads_first(q, heads), heads_first(k, heads), layer.cross_attn.cross_attn.scaling, valid))
        self._measure_stride(samples, attention.grid)
        return ModelCapture(layer_logits=logits, layer_boxes=boxes, attention=attention,
                            memory=recording["memory"][0])


# The family's entries in detr_core.model.registry
FAMILY = registry_entries(DabDetr)

__all__ = ["FAMILY", "DabDetr"]
