"""LW-DETR (``DETRConfig(attention="lw_detr")``), wrapped from transformers' ``LwDetrForObjectDetection``.

Chen et al., "LW-DETR: A Transformer Replacement to YOLO for Real-Time Detection" (2024): a plain
ViT backbone (windowed and global attention, several of its layers' outputs concatenated), a
C2f projector making one or two feature maps (``projector_scale_factors``: 2.0 upsamples, 0.5
downsamples the ViT's stride-16 map), no transformer encoder, two-stage query selection (each of
the top encoder tokens refines a learned reference box) and a deformable decoder. Unlike Deformable
DETR's, the decoder keeps every layer's reference box: each layer's box is the heads' delta on it.

Capture recipe (hooks; nothing recomputed but each earlier layer's heads, which transformers'
auxiliary loss applies the same way):

- each decoder layer's cross-attention: the sampling locations and weights transformers hands its
  ``MultiScaleDeformableAttention`` (a pre-hook on that module) -> :class:`SamplingPoints`;
- the decoder's memory (the projector's maps, flattened), level shapes, valid ratios, padding
  mask and reference boxes (a pre-hook on the decoder);
- ``selected_tokens``: the top ``num_queries`` of the encoder-side class scores (the first call of
  ``enc_out_class_embed[0]``) with the tokens transformers marks invalid (padding, proposals off
  the image, from its own ``gen_encoder_output_proposals``) excluded, as transformers selects;
- ``selection_boxes``: each selected token's proposal box (its cell's box refined by the first
  group's ``enc_out_bbox_embed``), which transformers returns as ``enc_outputs_coord_logits``
  (despite the name, cxcywh in [0, 1] of each image: the proposals are laid out over the
  unpadded cells). At inference only the first of the ``group_detr`` query groups runs, so these
  are the Q boxes the decoder's queries start from; the decoder's first reference box
  (``SamplingPoints.decoder_references``) is each one moved by its query's learned
  ``reference_point_embed`` delta;
- every layer's logits and boxes: ``class_embed`` and ``bbox_embed`` around the reference box on
  each layer's normed output; the last layer's are transformers' outputs.

Input: ImageNet-normalized pixels and a ``pixel_mask`` (its processor is Deformable DETR's), so
padding is masked out and boxes are relative to each image. The ViT splits its token grid into
``num_windows`` windows: the input is padded (masked) to a multiple of ``patch_size *
sqrt(num_windows)``. Refused: a ``backbone_config`` of another type than ``lw_detr_vit``
(transformers would build its ViT from it regardless).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from detr_core.model.capture_protocol import ModelCapture, SamplingPoints
from detr_core.model.hf_families.base import (
    FamilySpec,
    Recording,
    WrappedDetector,
    inputs_of,
    output_of,
    pad_to_multiple,
    registry_entries,
)
from detr_core.model.nested_tensor import NestedTensor

SPEC = FamilySpec(
    name="lw_detr", model_type="lw_detr", config_class="LwDetrConfig", model_class="LwDetrForObjectDetection",
    title="LW-DETR", paper="Chen et al. 2024, LW-DETR: A Transformer Replacement to YOLO for Real-Time Detection",
    attention_kind="sampling", imagenet_normalized=True, takes_pixel_mask=True,
    image_min_size=640, image_max_size=640,
    traced_size_dynamic=False,
)


class LwDetr(WrappedDetector):
    SPEC = SPEC
    BACKBONE = "lw_detr_vit"  # the one backbone transformers builds for this family, whatever the config names

    @classmethod
    def _sizes(cls, c) -> dict[str, Any]:
        kind = getattr(c.backbone_config, "model_type", None)
        if kind != cls.BACKBONE:
            raise ValueError(f"backbone_config.model_type={kind!r} is not supported ({cls.SPEC.title} builds its "
                             f"own backbone; only {cls.BACKBONE!r})")
        return {"d_model": c.d_model, "nheads": c.decoder_cross_attention_heads, "num_encoder_layers": 0,
                "num_decoder_layers": c.decoder_layers, "dim_feedforward": c.decoder_ffn_dim,
                "num_queries": c.num_queries, "num_feature_levels": c.num_feature_levels,
                "dec_n_points": c.decoder_n_points, "with_box_refine": False, "two_stage": True}

    @property
    def divisor(self) -> int:
        """The input's height and width are padded to a multiple of this (the ViT's windows)."""
        backbone = self.detector.config.backbone_config
        return int(backbone.patch_size) * int(math.isqrt(int(backbone.num_windows)))

    @property
    def stride(self) -> int:
        """Input pixels per cell of the finest map: the ViT's patch over the largest projector scale."""
        return int(round(self.detector.config.backbone_config.patch_size / max(self._scales())))

    def _scales(self) -> list[float]:
        return [float(s) for s in self.detector.config.projector_scale_factors]

    def inputs(self, samples: NestedTensor) -> dict[str, Tensor]:
        x, mask = pad_to_multiple(*samples.decompose(), self.divisor)  # padding masked out: boxes stay per image
        return super().inputs(NestedTensor(x, mask))

    def _hooks(self, capture: bool) -> list:
        if not capture:
            return []
        model = self.detector.model
        decoder = model.decoder
        hooks = [
            inputs_of(decoder, "decoder", lambda a, k: {n: k[n] for n in (
                "encoder_hidden_states", "spatial_shapes_list", "valid_ratios", "encoder_attention_mask",
                "reference_points")}),
            output_of(model.enc_out_class_embed[0], "token_logits"),  # first call: every token [B, S, C]
        ]
        for layer in decoder.layers:
            # MultiScaleDeformableAttention(value, shapes, shapes_list, level_start, locations, weights, im2col)
            hooks.append(inputs_of(layer.cross_attn.attn, "sampling", lambda a, k: (a[4], a[5])))
        return hooks

    def _layers(self, out: Any, recording: Recording) -> tuple[Tensor, Tensor]:
        from transformers.models.lw_detr.modeling_lw_detr import refine_bboxes

        hidden = out.intermediate_hidden_states[:-1]  # [L - 1, B, Q, D] the earlier layers' normed outputs
        reference = out.intermediate_reference_points[-1]  # [B, Q, 4] cxcywh, every layer's
        logits = self.detector.class_embed(hidden)
        boxes = refine_bboxes(reference, self.detector.bbox_embed(hidden))
        return torch.cat([logits, out.logits[None]]), torch.cat([boxes, out.pred_boxes[None]])

    def _capture(self, out: Any, recording: Recording, logits: Tensor, boxes: Tensor,
                 samples: NestedTensor) -> ModelCapture:
        seen = recording["decoder"][0]
        memory = seen["encoder_hidden_states"]  # [B, S, D]
        shapes = [(int(h), int(w)) for h, w in seen["spatial_shapes_list"]]
        on_image = seen["encoder_attention_mask"]  # [B, S] True on image tokens
        feature_masks = [~m.view(-1, h, w) for m, (h, w) in zip(on_image.split([h * w for h, w in shapes], 1), shapes)]
        height = math.ceil(samples.mask.shape[-2] / self.divisor) * self.divisor  # the padded input's
        locations, weights = zip(*recording["sampling"])
        layers = len(locations)
        sampling = SamplingPoints(
            shapes=shapes,
            valid_ratios=seen["valid_ratios"],  # [B, levels, 2]
            decoder_references=[seen["reference_points"]] * layers,  # [B, Q, 4] cxcywh, the same for every layer
            decoder_locations=list(locations),  # [B, Q, heads, levels, P, 2] in [0, 1] of the padded input
            decoder_weights=list(weights),  # [B, Q, heads, levels, P]
            strides=[int(round(height / h)) for h, _ in shapes],
            feature_masks=feature_masks,
        )
        # the selection, as transformers makes it: invalid tokens (padding, proposals off the image) never chosen
        _, _, invalid = self.detector.model.gen_encoder_output_proposals(memory, ~on_image, shapes)  # [B, S, 1]
        scores = recording["token_logits"][0].masked_fill(invalid, float("-inf")).max(-1).values  # [B, S]
        best, selected = torch.topk(scores, self.detector.config.num_queries, dim=1)  # [B, Q] each
        start = out.enc_outputs_coord_logits[:, :self.detector.config.num_queries]  # [B, Q, 4] cxcywh, the first group's
        return ModelCapture(layer_logits=logits, layer_boxes=boxes, attention=sampling, memory=memory,
                            selected_tokens=selected, selection_scores=best.sigmoid(), selection_boxes=start)


def vit_backbone_name(config, default_type: str = "vit", windows_per_side: bool = False) -> str:
    """A ViT backbone in words, e.g. "lw_detr_vit (12 layers, width 192, patch 16, 16 windows)";
    ``windows_per_side``: the windows counted per side of the token grid ("4 x 4 windows", RF-DETR's)."""
    backbone = config.transformers_config.get("backbone_config")
    if not isinstance(backbone, dict):
        return "transformers"
    parts = [f"{backbone.get('num_hidden_layers')} layers", f"width {backbone.get('hidden_size')}",
             f"patch {backbone.get('patch_size')}"]
    windows = int(backbone.get("num_windows", 1) or 1)
    if windows > 1:
        parts.append(f"{windows} x {windows} windows" if windows_per_side else f"{windows} windows")
    return f"{backbone.get('model_type', default_type)} ({', '.join(parts)})"


def backbone_name(config) -> str:
    return vit_backbone_name(config)


# The family's entries in detr_core.model.registry
FAMILY = registry_entries(LwDetr, backbone_name)

__all__ = ["FAMILY", "LwDetr", "backbone_name", "vit_backbone_name"]
