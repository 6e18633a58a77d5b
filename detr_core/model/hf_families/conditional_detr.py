"""Conditional DETR (``DETRConfig(attention="conditional_detr")``), wrapped from transformers'
``ConditionalDetrForObjectDetection``.

Meng et al., "Conditional DETR for Fast Training Convergence" (ICCV 2021): DETR whose decoder
cross-attention splits each query into a content part and a spatial part (a sine embedding of a
reference point, scaled per layer by a transformation of the decoder embedding), so each head
looks at a narrow band around the object's extremities; the boxes are predicted relative to
each query's reference point. Sigmoid (focal) classification, 300 queries.

Capture recipe (forward hooks):

- decoder cross-attention maps [B, heads, Q, S] (the second output of each layer's
  ``encoder_attn``; the model runs eager attention, since sdpa returns none) and decoder
  self-attention maps (each ``self_attn``'s) -> :class:`DenseAttention`;
- each decoder cross-attention's content and spatial halves: the outputs of its ``q_content_proj``,
  ``k_content_proj``, ``k_pos_proj`` and ``q_pos_sine_proj`` (the spatial query: the reference
  point's sine embedding, scaled per layer), and of ``q_pos_proj`` where it runs (the first
  layer, which adds the positions to the content halves); concatenated per head as transformers
  does, they give the content-only and spatial-only maps (``DenseAttention.decoder_cross_split``,
  computed when asked for), whose renormalised product is the captured map;
- encoder self-attention as q and k (the outputs of each encoder layer's ``q_proj`` and
  ``k_proj``, whose inputs already hold the position embedding, as the project's own encoder keeps them);
- the feature grid's padding mask (the backbone's last mask);
- every decoder layer's logits and boxes: transformers' own heads (``class_labels_classifier``,
  ``bbox_predictor`` around the reference point) on the decoder's layer-normed layer outputs, as
  its auxiliary loss reads them; the last layer's are transformers' outputs.

Input: ImageNet-normalized pixels and a ``pixel_mask``, as DETR (padding is masked out exactly).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from detr_core.model.capture_protocol import ModelCapture, SplitCrossAttention
from detr_core.model.hf_families.base import (
    FamilySpec,
    Recording,
    WrappedDetector,
    dense_attention,
    heads_first,
    output_of,
    registry_entries,
)
from detr_core.model.nested_tensor import NestedTensor

SPEC = FamilySpec(
    name="conditional_detr", model_type="conditional_detr", config_class="ConditionalDetrConfig",
    model_class="ConditionalDetrForObjectDetection", title="Conditional DETR",
    paper="Meng et al. 2021, Conditional DETR for Fast Training Convergence",
    attention_kind="dense", imagenet_normalized=True, takes_pixel_mask=True,
)


def backbone_stride(hf_config) -> int:
    """Input pixels per cell of the backbone's last feature map, as its config says it (a ResNet
    stage N: 2 ** (N + 1); a dilated last stage, ``output_stride`` 16, halves it)."""
    backbone = getattr(hf_config, "backbone_config", None)
    if isinstance(getattr(backbone, "output_stride", None), int):
        return int(backbone.output_stride)
    out = list(getattr(backbone, "out_features", None) or ["stage4"])
    stage = int(out[-1][len("stage"):]) if out[-1].startswith("stage") else 4
    return 2 ** (stage + 1)


def grid_stride(input_size: tuple[int, int], grid: tuple[int, int], guess: int) -> int:
    """The stride that maps an input of ``input_size`` (H, W) onto a feature ``grid`` (h, w) (each
    side rounded up), ``guess`` when several or none do."""
    fits = [s for s in (4, 8, 16, 32, 64) if all(-(-n // s) == g for n, g in zip(input_size, grid))]
    return guess if guess in fits or len(fits) != 1 else fits[0]


class DenseWrapped(WrappedDetector):
    """What the dense families (Conditional DETR, DAB-DETR) share: one head count for the views,
    and the backbone's stride as measured on the last captured forward."""

    @staticmethod
    def _one_head_count(c) -> None:
        if c.encoder_attention_heads != c.decoder_attention_heads:
            raise ValueError(f"encoder_attention_heads={c.encoder_attention_heads} is not supported (the views "
                             f"show one head count; only decoder_attention_heads={c.decoder_attention_heads})")

    @property
    def stride(self) -> int:
        """The backbone's stride, as measured on the last captured forward (else as configured)."""
        return getattr(self, "_measured_stride", None) or backbone_stride(self.detector.config)

    def _measure_stride(self, samples: NestedTensor, grid: tuple[int, int]) -> None:
        self._measured_stride = grid_stride(tuple(samples.tensors.shape[-2:]), grid,
                                            backbone_stride(self.detector.config))


class ConditionalDetr(DenseWrapped):
    SPEC = SPEC

    @classmethod
    def _sizes(cls, c) -> dict[str, Any]:
        cls._one_head_count(c)
        return {"d_model": c.d_model, "nheads": c.decoder_attention_heads, "num_encoder_layers": c.encoder_layers,
                "num_decoder_layers": c.decoder_layers, "dim_feedforward": c.decoder_ffn_dim,
                "num_queries": c.num_queries, "dilation": bool(c.dilation)}

    def _hooks(self, capture: bool) -> list:
        model = self.detector.model
        hooks = [output_of(layer, "layer_out") for layer in model.decoder.layers]
        hooks.append(output_of(model, "reference", lambda o: o.reference_points))  # [Q, B, 2], transformers' layout
        if capture:
            for i, layer in enumerate(model.decoder.layers):
                hooks.append(output_of(layer.encoder_attn, "cross", lambda o: o[1]))
                hooks.append(output_of(layer.self_attn, "self", lambda o: o[1]))
                cross = layer.encoder_attn  # its halves, each [B, Q or S, D]
                hooks.append(output_of(cross.q_content_proj, "cross_q_content"))
                hooks.append(output_of(cross.k_content_proj, "cross_k_content"))
                hooks.append(output_of(cross.k_pos_proj, "cross_k_spatial"))
                hooks.append(output_of(cross.q_pos_sine_proj, "cross_q_spatial"))
                if cross.q_pos_proj is not None:  # the first layer's only (transformers drops the others')
                    hooks.append(output_of(cross.q_pos_proj, f"cross_q_position.{i}"))
            for layer in model.encoder.layers:
                hooks.append(output_of(layer.self_attn.q_proj, "enc_q"))
                hooks.append(output_of(layer.self_attn.k_proj, "enc_k"))
            hooks.append(output_of(model.backbone, "valid", lambda o: o[-1][1]))  # [B, h, w] True on image
            hooks.append(output_of(model.encoder, "memory", lambda o: o.last_hidden_state))
        return hooks

    def _layers(self, out: Any, recording: Recording) -> tuple[Tensor, Tensor]:
        from transformers.models.conditional_detr.modeling_conditional_detr import inverse_sigmoid

        det = self.detector
        reference = inverse_sigmoid(recording["reference"][0]).transpose(0, 1)  # [B, Q, 2]
        logits, boxes = [], []
        for hidden in recording["layer_out"][:-1]:
            normed = det.model.decoder.layernorm(hidden)  # [B, Q, D]
            delta = det.bbox_predictor(normed)
            logits.append(det.class_labels_classifier(normed))
            boxes.append(torch.cat([delta[..., :2] + reference, delta[..., 2:]], -1).sigmoid())
        return torch.stack([*logits, out.logits]), torch.stack([*boxes, out.pred_boxes])

    def _capture(self, out: Any, recording: Recording, logits: Tensor, boxes: Tensor,
                 samples: NestedTensor) -> ModelCapture:
        valid = recording["valid"][0]
        attention = dense_attention(recording, self.config.nheads, valid)
        attention.decoder_cross_split = self._split(recording, valid)
        self._measure_stride(samples, attention.grid)
        return ModelCapture(layer_logits=logits, layer_boxes=boxes, attention=attention,
                            memory=recording["memory"][0])

    def _split(self, recording: Recording, valid: Tensor) -> list[SplitCrossAttention]:
        """Per decoder layer, the cross-attention's per-head queries and keys as content and spatial
        halves, built from the recorded parts as transformers' ConditionalDetrDecoderCrossAttention
        builds them (their maps are computed when asked for)."""
        heads = self.config.nheads
        split = []
        for i, layer in enumerate(self.detector.model.decoder.layers):
            q_content = recording["cross_q_content"][i]  # [B, Q, D]
            k_content = recording["cross_k_content"][i]  # [B, S, D]
            k_spatial = recording["cross_k_spatial"][i]  # [B, S, D]
            if f"cross_q_position.{i}" in recording:  # the first layer adds the positions to the content
                q_content = q_content + recording[f"cross_q_position.{i}"][0]
                k_content = k_content + k_spatial
            q = torch.cat([heads_first(q_content, heads), heads_first(recording["cross_q_spatial"][i], heads)], -1)
            k = torch.cat([heads_first(k_content, heads), heads_first(k_spatial, heads)], -1)  # [B, heads, S, 2 dh]
            split.append(SplitCrossAttention(q, k, layer.encoder_attn.scaling, valid))
        return split


# The family's entries in detr_core.model.registry
FAMILY = registry_entries(ConditionalDetr)

__all__ = ["FAMILY", "ConditionalDetr", "DenseWrapped"]
