"""D-FINE (``DETRConfig(attention="d_fine")``), wrapped from transformers' ``DFineForObjectDetection``.

Peng et al., "D-FINE: Redefine Regression Task of DETRs as Fine-grained Distribution Refinement"
(ICLR 2025): RT-DETR's design (see :mod:`~detr_core.model.hf_families.rt_detr`: hybrid encoder,
query selection, deformable decoder; here on an HGNetV2 backbone) whose decoder layers do not
regress a box but, for each edge of it, a probability over ``max_num_bins + 1`` bins: distances
of that edge from the box the first layer predicted (its "initial" box), on a non-uniform scale
(``weighting_function``). Each layer adds to the previous layer's bin logits; the box edge is the
expectation. A location-quality head (LQE) adds a score read off the distributions' peakedness.

Capture recipe (hooks; nothing recomputed but each earlier layer's heads, as transformers'
training forward applies them):

- each decoder layer's bin logits: the input of the decoder's ``integral`` (called once per
  layer) -> ``ModelCapture.edge_distributions`` (:class:`EdgeDistributions`: per layer, per
  edge, the softmax over bins, and where each bin puts the edge on the image);
- the initial box: the output of ``pre_bbox_head`` around the decoder's first reference box;
- every layer's box: transformers' ``distance2bbox`` of the initial box and that layer's
  integral; every layer's logits: its ``class_embed`` plus its LQE on that layer's output (at
  inference transformers computes them for the last layer only, which is ``out.logits``);
- the sampling points: each decoder attention's weights (its second output) and locations,
  computed from its hooked ``sampling_offsets`` and reference box as transformers computes them
  (it hands them to a function, which no hook reaches; the test re-samples the attention's output
  from them). D-FINE may sample a different number of points per level (``decoder_n_points=[3,
  6, 3]``); the capture has one count for all levels (the largest): a level's extra points have
  weight 0 and sit on the reference point's centre;
- memory, level shapes and selected tokens as RT-DETR.

Input: as RT-DETR (rescaled to [0, 1], no normalization, no pixel mask, padded to a multiple of 32,
boxes rescaled to each image). Refused: ``eval_idx`` other than the last layer (the prediction
would come from a layer before the last, and the capture's last layer would not be it).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch
from torch import Tensor

from detr_core.model.capture_protocol import EdgeDistributions, ModelCapture
from detr_core.model.hf_families.base import (
    FamilySpec,
    Recording,
    inputs_of,
    output_of,
    registry_entries,
)
from detr_core.model.hf_families.rt_detr import RTDetr
from detr_core.model.hf_families.rt_detr_v2 import _Handles
from detr_core.model.nested_tensor import NestedTensor

SPEC = FamilySpec(
    name="d_fine", model_type="d_fine", config_class="DFineConfig", model_class="DFineForObjectDetection",
    title="D-FINE",
    paper="Peng et al. 2025, D-FINE: Redefine Regression Task of DETRs as Fine-grained Distribution Refinement",
    attention_kind="sampling", imagenet_normalized=False, takes_pixel_mask=False,
    image_min_size=640, image_max_size=640, stretch=True, size_divisor=32,
)


class DFine(RTDetr):
    SPEC = SPEC

    @classmethod
    def _sizes(cls, c) -> dict[str, Any]:
        last = c.decoder_layers - 1
        if c.eval_idx not in (-1, last):
            raise ValueError(f"eval_idx={c.eval_idx} is not supported (the capture's last layer is the "
                             f"prediction; only -1 or {last})")
        points = c.decoder_n_points if isinstance(c.decoder_n_points, list) else [c.decoder_n_points]
        return {**super()._sizes(c), "dec_n_points": max(points)}

    def _hooks(self, capture: bool) -> list:
        decoder = self.detector.model.decoder
        # the earlier layers' boxes and logits come from these (aux_outputs), so they run always
        hooks = [
            inputs_of(decoder.integral, "corners", lambda a, k: (a[0], a[1])),  # [B, Q, 4 * N], bins [N]
            inputs_of(decoder, "first_reference", lambda a, k: k["reference_points"]),  # [B, Q, 4] logits
            output_of(decoder.pre_bbox_head, "pre_bbox"),  # [B, Q, 4] per decoder call, the first is used
        ]
        return hooks + super()._hooks(capture)

    def _sampling_hooks(self, attention) -> list:
        """Hooks recording ``sampling`` for one decoder layer's attention: its locations, computed
        from the hooked ``sampling_offsets`` output and the layer's reference box exactly as
        transformers computes them (they go to a function, not a module), and its weights (the
        attention's second output), per level (:func:`per_level`)."""
        def register(recording: Recording):
            def keep_offsets(module, args, output):
                recording.add("offsets", output)  # [B, Q, heads * sum(points) * 2]; this thread's only

            def keep_sampling(module, args, kwargs, output):
                if threading.get_ident() != recording.thread:
                    return  # another thread's pass of the same model
                raw = recording["offsets"].pop()
                ref = kwargs["reference_points"]  # [B, Q, 1, 4] cxcywh of the padded input
                points = list(module.num_points_list)
                b, q = raw.shape[:2]
                raw = raw.reshape(b, q, module.n_heads, sum(points), 2)
                scale = module.num_points_scale.to(dtype=raw.dtype).unsqueeze(-1)  # [sum(points), 1]
                locations = ref[:, :, None, :, :2] + raw * scale * ref[:, :, None, :, 2:] * module.offset_scale
                recording.add("sampling", per_level(locations, output[1], points, ref[:, :, 0]))

            first = attention.sampling_offsets.register_forward_hook(keep_offsets)
            second = attention.register_forward_hook(keep_sampling, with_kwargs=True)
            return _Handles(first, second)

        return [register]

    def _layers(self, out: Any, recording: Recording) -> tuple[Tensor, Tensor]:
        from transformers.models.d_fine.modeling_d_fine import distance2bbox

        decoder = self.detector.model.decoder
        hidden = out.intermediate_hidden_states  # [L, B, Q, D]
        corners = [c for c, _ in recording["corners"]]  # per layer [B, Q, 4 * N]
        project = recording["corners"][0][1]  # [N] the bins' distances (weighting_function)
        initial = self._initial_boxes(recording)  # [B, Q, 4] cxcywh of the padded input
        logits, boxes = [], []
        for i, (h, c) in enumerate(zip(hidden, corners)):
            if i == len(corners) - 1:
                logits.append(out.logits)
                boxes.append(out.pred_boxes)
            else:  # as transformers' decoder computes them when training (its auxiliary outputs)
                logits.append(decoder.lqe_layers[i](decoder.class_embed[i](h), c))
                boxes.append(distance2bbox(initial, decoder.integral(c, project), decoder.reg_scale))
        return torch.stack(logits), torch.stack(boxes)

    def _initial_boxes(self, recording: Recording) -> Tensor:
        """[B, Q, 4] cxcywh of the padded input: the first layer's box, which every layer's bins refine."""
        from transformers.models.d_fine.modeling_d_fine import inverse_sigmoid

        first = recording["first_reference"][0].sigmoid()
        return torch.sigmoid(recording["pre_bbox"][0] + inverse_sigmoid(first))

    def _capture(self, out: Any, recording: Recording, logits: Tensor, boxes: Tensor,
                 samples: NestedTensor) -> ModelCapture:
        capture = super()._capture(out, recording, logits, boxes, samples)
        capture.edge_distributions = self._edges(recording, samples)
        return capture

    def _edges(self, recording: Recording, samples: NestedTensor) -> EdgeDistributions:
        corners = torch.stack([c for c, _ in recording["corners"]])  # [L, B, Q, 4 * N]
        project = recording["corners"][0][1]  # [N]
        n = project.shape[0]
        probabilities = corners.view(*corners.shape[:3], 4, n).softmax(-1)  # [L, B, Q, 4, N]
        initial = self._initial_boxes(recording) * image_scale(samples, self.SPEC.size_divisor)  # [B, Q, 4]
        reg = self.detector.model.decoder.reg_scale.abs()
        reach = (0.5 * reg + project) / reg  # [N] each bin's edge distance, in box sizes from the centre
        cx, cy, w, h = initial.unbind(-1)  # [B, Q] each
        positions = torch.stack([
            cx[..., None] - reach * w[..., None], cy[..., None] - reach * h[..., None],
            cx[..., None] + reach * w[..., None], cy[..., None] + reach * h[..., None],
        ], dim=2)  # [B, Q, 4, N]
        return EdgeDistributions(probabilities=probabilities, bin_positions=positions)


def per_level(locations: Tensor, weights: Tensor, points: list[int],
              reference: Tensor) -> tuple[Tensor, Tensor]:
    """Sampling locations [B, Q, heads, sum(points), 2] and weights [B, Q, heads, sum(points)] as
    [B, Q, heads, levels, P, 2] and [B, Q, heads, levels, P], P = max(points); a level's missing
    points have weight 0 and sit on the reference [B, Q, 4] cxcywh's centre."""
    most = max(points)
    b, q, heads = weights.shape[:3]
    padded_loc, padded_w = [], []
    centre = reference[:, :, None, None, :2]  # [B, Q, 1, 1, 2]
    for loc, w in zip(locations.split(points, dim=3), weights.split(points, dim=3)):
        missing = most - loc.shape[3]
        if missing:
            loc = torch.cat([loc, centre.expand(b, q, heads, missing, 2).to(loc.dtype)], dim=3)
            w = torch.cat([w, w.new_zeros(b, q, heads, missing)], dim=3)
        padded_loc.append(loc)
        padded_w.append(w)
    return torch.stack(padded_loc, dim=3), torch.stack(padded_w, dim=3)


def image_scale(samples: NestedTensor, divisor: int) -> Tensor:
    """[B, 1, 4] (x, y, x, y) factors from boxes relative to the input padded to a multiple of
    ``divisor`` to boxes relative to each image (as WrappedDetector.forward rescales them)."""
    valid = ~samples.mask  # [B, H, W]
    h = valid.any(2).sum(1).float()  # [B]
    w = valid.any(1).sum(1).float()
    height, width = samples.mask.shape[-2:]
    if divisor > 1:
        height, width = math.ceil(height / divisor) * divisor, math.ceil(width / divisor) * divisor
    return torch.stack([width / w, height / h, width / w, height / h], -1)[:, None, :]


def backbone_name(config) -> str:
    """e.g. "hgnet_v2 (stage blocks 1-1-3-1, channels 128-512-1024-2048)", "dinov3_vit (12 layers,
    width 384, patch 16)" (DEIMv2); other backbones as the seam names them."""
    from detr_core.model.hf_families.base import backbone_name as generic

    backbone = config.transformers_config.get("backbone_config")
    if isinstance(backbone, dict) and backbone.get("patch_size") and backbone.get("num_hidden_layers"):
        return (f"{backbone.get('model_type', 'vit')} ({backbone['num_hidden_layers']} layers, width "
                f"{backbone.get('hidden_size')}, patch {backbone['patch_size']})")
    if not isinstance(backbone, dict) or backbone.get("model_type") != "hgnet_v2":
        return generic(config)
    blocks = "-".join(str(n) for n in backbone.get("stage_num_blocks", []))
    channels = "-".join(str(n) for n in backbone.get("stage_out_channels", []))
    return f"hgnet_v2 (stage blocks {blocks}, channels {channels})"


# The family's entries in detr_core.model.registry
FAMILY = registry_entries(DFine, backbone_name)

__all__ = ["FAMILY", "DFine", "backbone_name"]
