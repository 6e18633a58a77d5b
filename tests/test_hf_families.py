"""The DETR families only transformers implements (RT-DETR, RT-DETRv2, Conditional DETR, DAB-DETR)
open from ``save_pretrained`` folders through the same entry point as DETR folders, reproduce
transformers' own forward pass, and answer the capture protocol. Tiny random models built with
transformers' config classes, saved into tmp folders; nothing is downloaded."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

from detr_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from detr_core.data.images import IMAGENET_MEAN, IMAGENET_STD
from detr_core.model.capture_protocol import DenseAttention, SamplingPoints
from detr_core.model.nested_tensor import nested_tensor_from_tensor_list

transformers = pytest.importorskip("transformers")

TOL = {"rtol": 1e-4, "atol": 1e-4}
LABELS = {"id2label": {0: "cat", 1: "dog", 2: "bird"}, "label2id": {"cat": 0, "dog": 1, "bird": 2}}


def _randomize_norms(model):
    """Random, non-trivial batch-norm statistics (a fresh model's are the identity)."""
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if "running_var" in name:
                buf.uniform_(0.5, 1.5)
            elif "running_mean" in name:
                buf.normal_(0, 0.1)
    return model


def _rt_detr(version: int = 1):
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig, RTDetrV2Config
    from transformers import RTDetrV2ForObjectDetection

    torch.manual_seed(0)
    backbone = RTDetrResNetConfig(embedding_size=16, hidden_sizes=[16, 24, 32, 48], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    config_class, model_class = (RTDetrConfig, RTDetrForObjectDetection) if version == 1 else (
        RTDetrV2Config, RTDetrV2ForObjectDetection)
    config = config_class(
        backbone_config=backbone, encoder_in_channels=[24, 32, 48], encoder_hidden_dim=32, d_model=32,
        encoder_ffn_dim=48, decoder_ffn_dim=48, encoder_attention_heads=2, decoder_attention_heads=2,
        decoder_layers=2, num_queries=12, decoder_in_channels=[32, 32, 32], num_denoising=0, num_labels=3,
        **LABELS,
    )
    return _randomize_norms(model_class(config).eval())


@pytest.fixture(scope="module")
def rt_folder(tmp_path_factory):
    hf = _rt_detr()
    folder = tmp_path_factory.mktemp("rt_detr")
    hf.save_pretrained(folder)
    return hf, folder


def _unnormalized(x: torch.Tensor) -> torch.Tensor:
    """The project's ImageNet-normalized pixels back in [0, 1], as RT-DETR's processor gives them."""
    return x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]


def test_rt_detr_folder_reproduces_transformers_and_captures_sampling_points(rt_folder):
    from detr_core.analysis.capture import run_inference

    hf, folder = rt_folder
    ckpt = load_checkpoint(folder)
    assert ckpt.model_config.attention == "rt_detr" and ckpt.class_names == ["cat", "dog", "bird"]
    model = ckpt.build_model()
    torch.manual_seed(1)
    image = torch.randn(3, 64, 96)
    with torch.no_grad():
        theirs = hf(pixel_values=_unnormalized(image)[None])
        plain, ours = model([image]), model([image], capture=True)
    for out in (plain, ours):
        torch.testing.assert_close(out["pred_logits"], theirs.logits, **TOL)
        torch.testing.assert_close(out["pred_boxes"], theirs.pred_boxes, **TOL)
    cap = ours["capture"]
    assert isinstance(cap.attention, SamplingPoints)
    assert cap.layer_boxes.shape == (2, 1, 12, 4) and torch.equal(cap.layer_boxes[-1], ours["pred_boxes"])
    assert torch.equal(cap.layer_logits[-1], ours["pred_logits"])
    att = cap.attention
    assert att.shapes == [(8, 12), (4, 6), (2, 3)] and att.strides == [8, 16, 32]
    assert len(att.decoder_locations) == 2 and att.decoder_locations[0].shape == (1, 12, 2, 3, 4, 2)
    for w in att.decoder_weights:  # [B, Q, heads, levels, P]: each head's weights sum to 1
        torch.testing.assert_close(w.sum((-1, -2)), torch.ones(w.shape[:3]))
    # layer 0 samples around the selected encoder boxes; each later layer around the previous layer's box
    torch.testing.assert_close(att.decoder_references[1], cap.layer_boxes[0])
    selected = theirs.enc_outputs_class.max(-1).values.topk(12, dim=1).indices
    assert torch.equal(cap.selected_tokens, selected)
    torch.testing.assert_close(att.decoder_references[0], theirs.enc_topk_bboxes)
    # the views' result: sampling points in image pixels, no dense maps
    import numpy as np

    rgb = (np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)
    result = run_inference(model, rgb, ckpt.class_names)
    assert result.cross_attention is None and result.deformable is not None
    assert result.deformable.decoder_points.shape == (2, 12, 2, 3, 4, 2)


def test_rt_detr_boxes_are_relative_to_each_image_when_padded(rt_folder):
    """RT-DETR predicts relative to its whole (padded) input; the wrapper rescales to each image."""
    hf, folder = rt_folder
    model = load_checkpoint(folder).build_model()
    torch.manual_seed(2)
    image = torch.randn(3, 64, 80)  # padded to 64 x 96 (a multiple of 32) with black
    padded = torch.zeros(3, 64, 96)
    padded[:, :, :80] = _unnormalized(image)
    with torch.no_grad():
        theirs = hf(pixel_values=padded[None])
        ours = model([image])
    torch.testing.assert_close(ours["pred_logits"], theirs.logits, **TOL)
    torch.testing.assert_close(ours["pred_boxes"], theirs.pred_boxes * torch.tensor([96 / 80, 1, 96 / 80, 1]), **TOL)


def test_hub_cache_layout_and_the_explorers_own_checkpoint(rt_folder, tmp_path):
    hf, folder = rt_folder
    entry = tmp_path / "models--PekingU--rtdetr_tiny"
    snapshot = entry / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("0123abcd")
    for f in folder.iterdir():
        (snapshot / f.name).symlink_to(f)
    model = load_checkpoint(entry).build_model()
    image = [torch.randn(3, 64, 64)]
    saved = load_checkpoint(save_checkpoint(tmp_path / "rt.pt", model, ["cat", "dog", "bird"]))
    with torch.no_grad():
        assert torch.equal(saved.build_model()(image)["pred_boxes"], model(image)["pred_boxes"])


def _copy(folder, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def test_refusals_name_the_problem(rt_folder, tmp_path):
    _, folder = rt_folder
    broken = _copy(folder, tmp_path)
    config = json.loads((broken / "config.json").read_text())

    (broken / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="config.json: not readable JSON"):
        load_checkpoint(broken)

    unknown = dict(config, backbone_config=dict(config["backbone_config"], model_type="no_such_net"))
    (broken / "config.json").write_text(json.dumps(unknown))
    with pytest.raises(CheckpointError, match="backbone_config.model_type='no_such_net' is not a backbone"):
        load_checkpoint(broken)

    (broken / "config.json").write_text(json.dumps(config))
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors: not readable RT-DETR weights"):
        load_checkpoint(broken)

    weights.unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        load_checkpoint(broken)


def test_without_transformers_the_message_names_the_family_and_the_command(rt_folder, monkeypatch):
    _, folder = rt_folder
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers raises ImportError
    with pytest.raises(CheckpointError, match=r"RT-DETR models open through the transformers library.*"
                                              r"uv sync --extra hf"):
        load_checkpoint(folder)
