"""RT-DETRv2 (``DETRConfig(attention="rt_detr_v2")``), wrapped from transformers' ``RTDetrV2ForObjectDetection``.

Lv et al., "RT-DETRv2: Improved Baseline with Bag-of-Freebies for Real-Time Detection
Transformer" (2024): RT-DETR (see :mod:`~detr_core.model.hf_families.rt_detr`, whose inputs,
layers and selection this family shares) with a decoder whose deformable attention scales each
point's offset by its level's point count and ``decoder_offset_scale`` and may sample discretely
(``decoder_method="discrete"``).

Capture recipe: v2's attention calls a function, not a module, with its sampling locations, so
they are computed from the hooked ``sampling_offsets`` output and the layer's reference box
exactly as transformers computes them (``reference + offset * n_points_scale * wh * offset_scale``);
the weights are the attention's second output.
"""

from __future__ import annotations

import threading

from detr_core.model.hf_families.base import (
    FamilySpec,
    Recording,
    registry_entries,
)
from detr_core.model.hf_families.rt_detr import RTDetr

SPEC = FamilySpec(
    name="rt_detr_v2", model_type="rt_detr_v2", config_class="RTDetrV2Config",
    model_class="RTDetrV2ForObjectDetection", title="RT-DETRv2",
    paper="Lv et al. 2024, RT-DETRv2: Improved Baseline with Bag-of-Freebies for Real-Time Detection Transformer",
    attention_kind="sampling", imagenet_normalized=False, takes_pixel_mask=False,
    image_min_size=640, image_max_size=640, stretch=True, size_divisor=32,
)


class RTDetrV2(RTDetr):
    SPEC = SPEC

    @classmethod
    def _sizes(cls, c):
        if c.decoder_n_levels != c.num_feature_levels:
            raise ValueError(f"decoder_n_levels={c.decoder_n_levels} is not supported (the capture draws one "
                             f"level per feature map; only num_feature_levels={c.num_feature_levels})")
        return super()._sizes(c)

    def _sampling_hooks(self, attention) -> list:
        def register(recording: Recording):
            offsets: list = []

            def keep_offsets(module, args, output):
                if threading.get_ident() == recording.thread:
                    offsets.append(output)

            def keep_sampling(module, args, kwargs, output):
                if threading.get_ident() != recording.thread:
                    return
                raw = offsets.pop()  # [B, Q, heads * levels * P * 2]
                ref = kwargs["reference_points"]  # [B, Q, 1, 4] cxcywh
                b, q = raw.shape[:2]
                heads, levels, points = module.n_heads, module.n_levels, module.n_points
                raw = raw.view(b, q, heads, levels * points, 2)
                scale = module.n_points_scale.to(raw.dtype)[:, None]  # [levels * P, 1]
                locations = ref[:, :, None, :, :2] + raw * scale * ref[:, :, None, :, 2:] * module.offset_scale
                weights = output[1].view(b, q, heads, levels, points)
                recording.add("sampling", (locations.view(b, q, heads, levels, points, 2), weights))

            first = attention.sampling_offsets.register_forward_hook(keep_offsets)
            second = attention.register_forward_hook(keep_sampling, with_kwargs=True)
            return _Handles(first, second)

        return [register]


class _Handles:
    """Several hook handles removed as one."""

    def __init__(self, *handles) -> None:
        self.handles = handles

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


# The family's entries in detr_core.model.registry
FAMILY = registry_entries(RTDetrV2)

__all__ = ["FAMILY", "RTDetrV2"]
