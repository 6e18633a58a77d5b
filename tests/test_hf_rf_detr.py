"""RF-DETR (LW-DETR's decoder on a windowed DINOv2 backbone, one feature level) opens from a
``save_pretrained`` folder, reproduces transformers' forward on a padded batch of two sizes and
captures what LW-DETR's does. A tiny random model; nothing is downloaded."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.test_hf_lw_detr import DECODER, check_family, check_info_and_refusals, randomized

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, a shared machine


@pytest.fixture(scope="module")
def rf_folder(tmp_path_factory):
    import torch
    from transformers import RfDetrConfig, RfDetrDinov2Config, RfDetrForObjectDetection

    torch.manual_seed(0)
    backbone = RfDetrDinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                  patch_size=16, image_size=64, num_windows=2, out_features=["stage1", "stage2"])
    hf = randomized(RfDetrForObjectDetection(RfDetrConfig(backbone_config=backbone, **DECODER)))
    folder = tmp_path_factory.mktemp("rf_detr")
    hf.save_pretrained(folder)
    return hf, folder


def test_rf_detr_reproduces_transformers_on_a_padded_batch_and_captures_sampling_points(rf_folder):
    model = check_family(*rf_folder, family="rf_detr", strides=[16])
    assert model.stride == 16 and model.divisor == 32


def test_rf_detr_info_and_refusals(rf_folder, tmp_path, capsys):
    from detr_core.checkpoint import CheckpointError, load_checkpoint

    hf, folder = rf_folder
    check_info_and_refusals(folder, tmp_path, capsys, "RF-DETR", "Robinson et al. 2025",
                            "rf_detr_dinov2 (2 layers, width 32, patch 16, 2 x 2 windows)",
                            sum(p.numel() for p in hf.parameters()), other_backbone="dinov2")
    levels = tmp_path / "levels"
    shutil.copytree(folder, levels)
    config = json.loads((levels / "config.json").read_text())
    (levels / "config.json").write_text(json.dumps(dict(config, num_feature_levels=2)))
    with pytest.raises(CheckpointError, match="num_feature_levels=2 is not supported"):
        load_checkpoint(levels)
