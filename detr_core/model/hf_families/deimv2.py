"""DEIMv2 (``DETRConfig(attention="deimv2")``), wrapped from transformers' ``Deimv2ForObjectDetection``.

Huang et al., "Real-Time Object Detection Meets DINOv3" (DEIMv2, 2025): D-FINE's decoder (see
:mod:`~detr_core.model.hf_families.d_fine`: fine-grained distribution refinement, LQE, deformable
attention with a point count per level) with RMSNorm and SwiGLU layers, optionally without the
gate, on an HGNetV2 backbone (hybrid or "lite" encoder) or a DINOv3 ViT with a spatial tuning
adapter. The decoder's loop is D-FINE's, so the capture is D-FINE's: sampling points per layer,
head and level, every layer's logits and boxes, and each layer's edge distributions
(``ModelCapture.edge_distributions``).

Input: as D-FINE and RT-DETR (transformers' image processor for DEIMv2 is RT-DETR's: rescaled to
[0, 1], not normalized unless the folder's preprocessor_config.json says so, as its DINOv3
models' do, with its ``image_mean`` and ``image_std``: followed (see
:meth:`~detr_core.model.hf_families.base.WrappedDetector.normalization`); padded with 0 to a
multiple of 32; boxes rescaled to each image).
"""

from __future__ import annotations

from detr_core.model.hf_families.base import (
    FamilySpec,
    registry_entries,
)
from detr_core.model.hf_families.d_fine import DFine, backbone_name

SPEC = FamilySpec(
    name="deimv2", model_type="deimv2", config_class="Deimv2Config", model_class="Deimv2ForObjectDetection",
    title="DEIMv2", paper="Huang et al. 2025, Real-Time Object Detection Meets DINOv3",
    attention_kind="sampling", imagenet_normalized=False, takes_pixel_mask=False,
    image_min_size=640, image_max_size=640, stretch=True, size_divisor=32,
    traced_size_dynamic=False,
)


class Deimv2(DFine):
    SPEC = SPEC


# The family's entries in detr_core.model.registry
FAMILY = registry_entries(Deimv2, backbone_name)

__all__ = ["FAMILY", "Deimv2", "backbone_name"]
