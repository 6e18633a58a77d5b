"""RF-DETR (``DETRConfig(attention="rf_detr")``), wrapped from transformers' ``RfDetrForObjectDetection``.

Robinson et al., "RF-DETR: Neural Architecture Search for Real-Time Detection Transformers"
(Roboflow, 2025): LW-DETR (see :mod:`~detr_core.model.hf_families.lw_detr`, whose selection,
decoder, heads and capture this family shares) on a DINOv2 backbone with windowed attention
(``rf_detr_dinov2``: several of its layers' outputs concatenated and projected by a C2f layer into
one feature map at the ViT's patch stride).

Capture: LW-DETR's (every layer's logits and boxes, selected tokens with their scores and
proposal boxes, sampling points on the one level). Input: ImageNet-normalized pixels and a ``pixel_mask`` (its processor is DETR's), padded
and masked to a multiple of ``patch_size * num_windows`` (the backbone splits each side of its
token grid into ``num_windows`` windows). Refused: ``num_feature_levels`` other than 1 (the
projector makes one map; transformers' decoder would expect more) and a ``backbone_config`` of
another type than ``rf_detr_dinov2``.
"""

from __future__ import annotations

from detr_core.model.hf_families.base import (
    FamilySpec,
    registry_entries,
)
from detr_core.model.hf_families.lw_detr import LwDetr, vit_backbone_name

SPEC = FamilySpec(
    name="rf_detr", model_type="rf_detr", config_class="RfDetrConfig", model_class="RfDetrForObjectDetection",
    title="RF-DETR",
    paper="Robinson et al. 2025, RF-DETR: Neural Architecture Search for Real-Time Detection Transformers",
    attention_kind="sampling", imagenet_normalized=True, takes_pixel_mask=True,
    image_min_size=560, image_max_size=560,
    refused={"num_feature_levels": (1, "RF-DETR's projector makes one feature map")},
    traced_size_dynamic=False,
    # transformers' RfDetrDinov2 resizes its position embedding whenever traced (torch.jit.is_tracing)
    torchscript_problem="its DINOv2 backbone resizes its position embedding with antialiased bicubic "
                        "interpolation when traced, which that exporter has no ONNX operator for",
)


class RfDetr(LwDetr):
    SPEC = SPEC
    BACKBONE = "rf_detr_dinov2"

    @property
    def divisor(self) -> int:
        backbone = self.detector.config.backbone_config
        return int(backbone.patch_size) * max(int(backbone.num_windows), 1)

    def _scales(self) -> list[float]:
        return [1.0]  # one map at the backbone's patch stride


def backbone_name(config) -> str:
    """e.g. "rf_detr_dinov2 (12 layers, width 384, patch 14, 4 x 4 windows)"."""
    return vit_backbone_name(config, "dinov2", windows_per_side=True)


# The family's entries in detr_core.model.registry
FAMILY = registry_entries(RfDetr, backbone_name)

__all__ = ["FAMILY", "RfDetr", "backbone_name"]
