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


def test_deimv2_follows_the_folders_normalization(deimv2_folder, tmp_path):
    """DEIMv2's processor (RT-DETR's) normalizes only where its preprocessor_config.json says so (its
    DINOv3 models do): with do_normalize true and false, the outputs are transformers' on the pixel
    values the processor itself makes of the same photos (two sizes, the second padded)."""
    import json
    import shutil

    import numpy as np
    import torch
    from transformers import RTDetrImageProcessor

    from detr_core.checkpoint import CheckpointError, load_checkpoint
    from detr_core.data.images import IMAGENET_MEAN, IMAGENET_STD
    from detr_core.model.hf_families.base import processor_pixels
    from detr_core.model.hf_families.deimv2 import Deimv2

    hf, folder = deimv2_folder
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)]
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    images = [(torch.from_numpy(p).permute(2, 0, 1).float() / 255 - mean) / std for p in photos]  # as the explorer feeds
    scale = torch.tensor([[1.0, 1, 1, 1], [96 / 64, 64 / 48, 96 / 64, 64 / 48]])[:, None]  # [B, 1, 4] to each image
    outputs = []
    for normalize in (True, False):
        copy = tmp_path / f"normalize_{normalize}"
        shutil.copytree(folder, copy)
        processor = RTDetrImageProcessor(size={"height": 64, "width": 96}, do_pad=True, do_normalize=normalize,
                                         image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.3, 0.25])
        processor.save_pretrained(copy)
        # [2, 3, 64, 96], padded with 0: the photos as they are (the folder's processor would stretch the second)
        pixels = processor(images=photos, do_resize=False, return_tensors="pt")["pixel_values"]
        if normalize:  # opened as the app opens it
            model = load_checkpoint(copy).build_model()
        else:  # the same config, without loading the weights from the files again
            hf_config = json.loads((copy / "config.json").read_text())
            model = Deimv2(Deimv2.detr_config(hf_config, pixels=processor_pixels(copy)))
            model.detector.load_state_dict(hf.state_dict())
        assert model.config.transformers_processor["do_normalize"] is normalize
        with torch.no_grad():
            theirs, ours = hf(pixel_values=pixels), model(images)
        torch.testing.assert_close(ours["pred_logits"], theirs.logits, rtol=1e-4, atol=1e-4)
        # the padding's cells score alike (ties broken by rounding): the padded image's queries may come in
        # another order, so each image's boxes are compared as sets
        for mine, their in zip(ours["pred_boxes"], theirs.pred_boxes * scale):
            distance = torch.cdist(mine, their)  # [Q, Q]
            assert distance.min(0).values.max() < 1e-4 and distance.min(1).values.max() < 1e-4
        outputs.append(ours["pred_logits"])
    assert not torch.allclose(outputs[0], outputs[1], atol=1e-3)  # the two folders' inputs differ

    config = json.loads((copy / "preprocessor_config.json").read_text())
    (copy / "preprocessor_config.json").write_text(json.dumps(dict(config, image_std=[0.2, 0, 0.25])))
    with pytest.raises(CheckpointError, match=r"preprocessor_config.json: image_std=\[0.2, 0, 0.25\] is not positive"):
        load_checkpoint(copy)
