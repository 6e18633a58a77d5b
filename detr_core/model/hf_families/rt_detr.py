"""RT-DETR (``DETRConfig(attention="rt_detr")``), wrapped from transformers' ``RTDetrForObjectDetection``.

Zhao et al., "DETRs Beat YOLOs on Real-time Object Detection" (CVPR 2024): a CNN backbone
(ResNet-vd or HGNetV2), a hybrid encoder (one attention layer on the coarsest map, AIFI, then a
convolutional fusion of the scales, CCFF), query selection (the decoder's queries start from the
best-scoring encoder tokens) and a deformable decoder refining a box per layer.

Capture recipe (forward hooks, nothing recomputed but the top-k of the selection scores):

- each decoder layer's cross-attention: the sampling locations and weights transformers hands to
  its ``MultiScaleDeformableAttention`` (a pre-hook on that module), and the reference box the
  layer used (``reference_points`` of the attention's call) -> :class:`SamplingPoints`;
- the decoder's memory and level shapes (a pre-hook on the decoder);
- ``selected_tokens``: the top ``num_queries`` of ``enc_outputs_class`` (as transformers selects);
- every layer's logits and boxes: transformers returns them (``intermediate_logits``,
  ``intermediate_reference_points``);
- the hybrid encoder's self-attention (AIFI) on the top level -> :class:`EncoderSelfAttention`:
  the outputs of each AIFI layer's ``q_proj`` and ``k_proj`` (forward hooks), whose weights are
  softmax(q k^T * scaling) as transformers' eager attention computes them (it runs with no mask);
  the default sdpa kernel returns no weights, and switching the model to eager would change its
  predictions in the last bits. Where a config runs AIFI on several levels (``encode_proj_layers``),
  the coarsest one's is kept. The same modules in RT-DETRv2, D-FINE and DEIMv2 (whose "lite"
  encoder has no attention: ``encoder_self`` is None there).

Input: RT-DETR's processor rescales to [0, 1] without normalizing; the wrapper undoes the
project's ImageNet normalization. RT-DETR takes no pixel mask (padding is seen as black).
Its processor resizes to 640 x 640; the explorer keeps the aspect ratio, longer side 640, and
pads to a multiple of 32 (its encoder's fusion needs it) with black, as the processor pads; the
boxes, predicted relative to the padded input, are rescaled to each image.
``anchor_image_size`` (anchors fixed for one input size) is followed by generating the anchors for
each input's size, which equals the fixed ones at that size and also runs on other sizes.
``learn_initial_query`` (queries whose content is learned, not taken from the selected tokens)
runs with its embedding given the ``tile`` that transformers' forward calls on it (see
:class:`_TileableEmbedding`); the predictions are those of the authors' models.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detr_core.model.capture_protocol import EncoderSelfAttention, ModelCapture, SamplingPoints
from detr_core.model.hf_families.base import (
    FamilySpec,
    Recording,
    WrappedDetector,
    heads_first,
    inputs_of,
    output_of,
    pad_to_multiple,
    registry_entries,
)
from detr_core.model.nested_tensor import NestedTensor

SPEC = FamilySpec(
    name="rt_detr", model_type="rt_detr", config_class="RTDetrConfig", model_class="RTDetrForObjectDetection",
    title="RT-DETR", paper="Zhao et al. 2024, DETRs Beat YOLOs on Real-time Object Detection",
    attention_kind="sampling", imagenet_normalized=False, takes_pixel_mask=False,
    image_min_size=640, image_max_size=640, stretch=True, size_divisor=32,
)


class _TileableEmbedding(nn.Embedding):
    """transformers' learned query content (``learn_initial_query``) with the ``tile`` its forward
    calls: transformers 5.24's ``RTDetrModel.forward`` (and RT-DETRv2's, D-FINE's) runs
    ``self.weight_embedding.tile([batch_size, 1, 1])`` on the ``nn.Embedding`` itself, which has no
    such method (AttributeError). Here it tiles the weight: [Q, D] -> [B, Q, D], the authors'
    ``tgt_embed.weight.unsqueeze(0).tile([B, 1, 1])`` (lyuwenyu/RT-DETR rtdetr_decoder.py)."""

    def tile(self, reps: list[int]) -> Tensor:
        return self.weight.tile(reps)  # [B, Q, D]


class RTDetr(WrappedDetector):
    SPEC = SPEC

    def __init__(self, config) -> None:
        super().__init__(config)
        model = self.detector.model
        learned = getattr(model, "weight_embedding", None)
        if isinstance(learned, nn.Embedding) and not hasattr(learned, "tile"):
            shim = _TileableEmbedding(learned.num_embeddings, learned.embedding_dim, device=learned.weight.device,
                                      dtype=learned.weight.dtype)
            shim.weight = learned.weight  # the same parameter: names and values unchanged
            model.weight_embedding = shim

    @classmethod
    def _adjust(cls, hf_config):
        hf_config.anchor_image_size = None  # anchors for each input's own size (see the module docstring)
        return hf_config

    @classmethod
    def _sizes(cls, c) -> dict[str, Any]:
        return {"d_model": c.d_model, "nheads": c.decoder_attention_heads, "num_encoder_layers": c.encoder_layers,
                "num_decoder_layers": c.decoder_layers, "dim_feedforward": c.decoder_ffn_dim,
                "num_queries": c.num_queries, "num_feature_levels": c.num_feature_levels,
                "dec_n_points": c.decoder_n_points, "with_box_refine": True, "two_stage": True}

    @property
    def stride(self) -> int:
        return int(self.detector.config.feat_strides[0])

    def level_strides(self, levels: int) -> list[int]:
        """Input pixels per cell of each level (extra levels halve the last backbone level)."""
        strides = [int(s) for s in self.detector.config.feat_strides][:levels]
        while len(strides) < levels:
            strides.append(strides[-1] * 2)
        return strides

    def _hooks(self, capture: bool) -> list:
        if not capture:
            return []
        decoder = self.detector.model.decoder
        hooks = [inputs_of(decoder, "memory", lambda a, k: (k["encoder_hidden_states"], k["spatial_shapes_list"]))]
        for layer in decoder.layers:
            hooks.append(inputs_of(layer.encoder_attn, "reference", lambda a, k: k["reference_points"][:, :, 0]))
            hooks += self._sampling_hooks(layer.encoder_attn)
        return hooks + self._encoder_self_hooks()

    def _top_aifi(self) -> tuple[int, Any] | None:
        """(level, module) of the hybrid encoder's AIFI on the coarsest level it runs on; None
        without one (no AIFI module, or ``encoder_layers`` 0)."""
        encoder = self.detector.model.encoder
        modules = getattr(encoder, "aifi", None)
        if not modules or self.detector.config.encoder_layers == 0:
            return None
        levels = len(self.detector.config.encoder_in_channels)
        level, i = max((int(enc) % levels, i) for i, enc in enumerate(encoder.encode_proj_layers))
        return level, modules[i]

    def _encoder_self_hooks(self) -> list:
        """Hooks recording ``aifi_grid`` ((h, w) of the top level's map) and, per AIFI layer,
        ``aifi_q`` and ``aifi_k`` ([B, S, D], S = h * w, the projections of the layer's attention)."""
        top = self._top_aifi()
        if top is None:
            return []
        _, aifi = top
        hooks = [inputs_of(aifi, "aifi_grid", lambda a, k: tuple((a[0] if a else k["hidden_states"]).shape[-2:]))]
        for layer in aifi.layers:
            hooks += [output_of(layer.self_attn.q_proj, "aifi_q"), output_of(layer.self_attn.k_proj, "aifi_k")]
        return hooks

    def _encoder_self(self, recording: Recording, sampling: SamplingPoints) -> EncoderSelfAttention | None:
        """The AIFI layers' attention weights [B, heads, S, S] from their recorded q and k."""
        top = self._top_aifi()
        if top is None or "aifi_q" not in recording:
            return None
        level, aifi = top
        attention = aifi.layers[0].self_attn
        h, w = (int(n) for n in recording["aifi_grid"][0])
        weights = []
        for q, k in zip(recording["aifi_q"], recording["aifi_k"]):  # [B, S, D] each
            heads = q.shape[-1] // attention.head_dim
            scores = torch.matmul(heads_first(q, heads), heads_first(k, heads).transpose(2, 3)) * attention.scaling
            weights.append(scores.softmax(-1))  # as transformers' eager attention, which gets no mask
        mask = sampling.feature_masks[level] if level < len(sampling.feature_masks) else None
        padded = mask is not None and tuple(mask.shape[-2:]) == (h, w) and bool(mask.any())
        return EncoderSelfAttention(weights=weights, level=level, shape=(h, w), stride=sampling.strides[level],
                                    feature_mask=mask if padded else None)

    def _sampling_hooks(self, attention) -> list:
        """Hooks recording ``sampling`` (locations [B, Q, heads, levels, P, 2] in [0, 1] of the padded
        input, weights [B, Q, heads, levels, P]) for one decoder layer's deformable attention."""
        # MultiScaleDeformableAttention(value, shapes, shapes_list, level_start, locations, weights, im2col)
        return [inputs_of(attention.attn, "sampling", lambda a, k: (a[4], a[5]))]

    def _layers(self, out: Any, recording: Recording) -> tuple[Tensor, Tensor]:
        return out.intermediate_logits.transpose(0, 1), out.intermediate_reference_points.transpose(0, 1)

    def _capture(self, out: Any, recording: Recording, logits: Tensor, boxes: Tensor,
                 samples: NestedTensor) -> ModelCapture:
        memory, shapes = recording["memory"][0]  # [B, S, D], per level (h_l, w_l)
        shapes = [(int(h), int(w)) for h, w in shapes]
        mask = samples.mask  # [B, H, W] True on padding
        if self.SPEC.size_divisor > 1:  # the input's own padding too (its maps are of the padded input)
            _, mask = pad_to_multiple(mask[:, None].float(), mask, self.SPEC.size_divisor)
        feature_masks = [F.interpolate(mask[None].float(), size=s).to(torch.bool)[0] for s in shapes]
        locations, weights = zip(*recording["sampling"])
        sampling = SamplingPoints(
            shapes=shapes,
            valid_ratios=memory.new_ones((memory.shape[0], len(shapes), 2)),  # RT-DETR ignores padding
            decoder_references=list(recording["reference"]),  # [B, Q, 4] cxcywh of the padded input
            decoder_locations=list(locations),
            decoder_weights=list(weights),
            strides=self.level_strides(len(shapes)),
            feature_masks=feature_masks,
        )
        scores = out.enc_outputs_class.max(-1).values  # [B, S]: the selection's scores, as transformers ranks
        best, selected = torch.topk(scores, self.detector.config.num_queries, dim=1)  # [B, Q] each
        return ModelCapture(layer_logits=logits, layer_boxes=boxes, attention=sampling, memory=memory,
                            selected_tokens=selected, selection_scores=best.sigmoid(),
                            selection_boxes=getattr(out, "enc_topk_bboxes", None),  # [B, Q, 4] where each started
                            encoder_self=self._encoder_self(recording, sampling))


# The family's entries in detr_core.model.registry
FAMILY = registry_entries(RTDetr)

__all__ = ["FAMILY", "RTDetr"]
