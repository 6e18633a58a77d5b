"""DEIMv2 (D-FINE's decoder with RMSNorm and SwiGLU, here without the gate, on a DINOv3 backbone)
opens from a ``save_pretrained`` folder, reproduces transformers' forward and captures what D-FINE's does
(sampling points, every layer, edge distributions). Tiny random model; nothing is downloaded."""

from __future__ import annotations

import pytest

from tests.test_hf_d_fine import check_family, tiny_d_fine

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, a shared machine


@pytest.fixture(scope="module")
def deimv2_folder(tmp_path_factory):
    from transformers import DINOv3ViTConfig

    # DEIMv2's DINOv3 variant: three of the ViT's layers, resized to strides 8-16-32 and fused with
    # its spatial tuning adapter's convolutions
    backbone = DINOv3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                               patch_size=16, image_size=64, out_features=["stage1", "stage2", "stage3"])
    hf = tiny_d_fine("Deimv2Config", "Deimv2ForObjectDetection", backbone=backbone, use_gateway=False,
                     spatial_tuning_adapter_inplanes=8, encoder_in_channels=[32, 32, 32])
    folder = tmp_path_factory.mktemp("deimv2")
    hf.save_pretrained(folder)
    return hf, folder


def test_deimv2_reproduces_transformers_and_captures_points_and_edge_distributions(deimv2_folder):
    # what main.py info prints (D-FINE's test runs main.py info itself)
    from detr_core.checkpoint import model_summary

    hf, folder = deimv2_folder
    model = model_summary(check_family(hf, folder, family="deimv2", title="DEIMv2"))
    assert model["family"] == "DEIMv2" and model["paper"].startswith("Huang et al. 2025")
    assert model["backbone"] == "dinov3_vit (3 layers, width 32, patch 16)"
    assert model["queries"] == 12 and model["classes"] == 3
