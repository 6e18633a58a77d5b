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

import tqdm

tqdm.tqdm.monitor_interval = 0  # no monitor thread left running after a test

from detr_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from detr_core.data.images import IMAGENET_MEAN, IMAGENET_STD
from detr_core.model.capture_protocol import DenseAttention, SamplingPoints
from detr_core.model.nested_tensor import nested_tensor_from_tensor_list
from tests.test_encoder_attention import check_wrapped_aifi, record_aifi_inputs

transformers = pytest.importorskip("transformers")

TOL = {"rtol": 1e-4, "atol": 1e-4}
LABELS = {"id2label": {0: "cat", 1: "dog", 2: "bird"}, "label2id": {"cat": 0, "dog": 1, "bird": 2}}


def _randomize_norms(model):
    """Random, non-trivial batch-norm statistics (a fresh model's are the identity), and every
    weight moved off transformers' initialisation (whose zero class heads score all queries alike)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for name, buf in model.named_buffers():
            if "running_var" in name:
                buf.uniform_(0.5, 1.5)
            elif "running_mean" in name:
                buf.normal_(0, 0.1)
    return model


def _rt_detr(version: int = 1):
    from transformers import (
        RTDetrConfig,
        RTDetrForObjectDetection,
        RTDetrResNetConfig,
        RTDetrV2Config,
        RTDetrV2ForObjectDetection,
    )

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


@pytest.fixture(scope="module")
def rt_opened(rt_folder):
    """The folder opened as the window and the command line open it: (checkpoint, model)."""
    ckpt = load_checkpoint(rt_folder[1])
    return ckpt, ckpt.build_model()


def _unnormalized(x: torch.Tensor) -> torch.Tensor:
    """The project's ImageNet-normalized pixels back in [0, 1], as RT-DETR's processor gives them."""
    return x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]


def test_rt_detr_folder_reproduces_transformers_and_captures_sampling_points(rt_folder, rt_opened):
    from detr_core.analysis.capture import run_inference
    from detr_core.data.images import prepare

    hf, _ = rt_folder
    ckpt, model = rt_opened
    assert ckpt.model_config.attention == "rt_detr" and ckpt.class_names == ["cat", "dog", "bird"]
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
    torch.testing.assert_close(cap.selection_scores, theirs.enc_topk_logits.max(-1).values.sigmoid())
    torch.testing.assert_close(att.decoder_references[0], theirs.enc_topk_bboxes)
    torch.testing.assert_close(cap.selection_boxes, theirs.enc_topk_bboxes)  # where each query started
    # the views' result: sampling points in image pixels, no dense maps
    import numpy as np

    rgb = (np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)
    result = run_inference(model, rgb, ckpt.class_names, input_tensor=prepare(rgb, 64, 96))  # not 640: fast
    assert result.cross_attention is None and result.deformable is not None
    assert result.deformable.decoder_points.shape == (2, 12, 2, 3, 4, 2)


def test_rt_detr_boxes_are_relative_to_each_image_when_padded(rt_folder, rt_opened):
    """RT-DETR predicts relative to its whole (padded) input; the wrapper rescales to each image."""
    hf, _ = rt_folder
    model = rt_opened[1]
    torch.manual_seed(2)
    image = torch.randn(3, 64, 80)  # padded to 64 x 96 (a multiple of 32) with black
    padded = torch.zeros(3, 64, 96)
    padded[:, :, :80] = _unnormalized(image)
    with torch.no_grad():
        theirs = hf(pixel_values=padded[None])
        ours = model([image], capture=True)
    scale = torch.tensor([96 / 80, 1, 96 / 80, 1])
    torch.testing.assert_close(ours["pred_logits"], theirs.logits, **TOL)
    torch.testing.assert_close(ours["pred_boxes"], theirs.pred_boxes * scale, **TOL)
    torch.testing.assert_close(ours["capture"].selection_boxes, theirs.enc_topk_bboxes * scale, **TOL)  # start boxes too


def test_hub_cache_layout_and_the_explorers_own_checkpoint(rt_folder, rt_opened, tmp_path):
    hf, folder = rt_folder
    entry = tmp_path / "models--PekingU--rtdetr_tiny"
    snapshot = entry / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("0123abcd")
    for f in folder.iterdir():
        (snapshot / f.name).symlink_to(f)
    from detr_core.formats.hf import hub_snapshot, is_hf_checkpoint

    assert is_hf_checkpoint(entry)  # so File > Open, a drop and the command line take it
    opened = load_checkpoint(entry)
    ckpt, model = rt_opened
    assert opened.model_config == ckpt.model_config
    assert all(torch.equal(opened.state_dict[k], v) for k, v in ckpt.state_dict.items())
    (entry / "refs" / "main").unlink()  # without refs/main: the newest snapshot
    (entry / "snapshots" / "00old").mkdir()
    os.utime(entry / "snapshots" / "00old", (1, 1))
    assert hub_snapshot(entry) == snapshot
    image = [torch.randn(3, 64, 96)]  # the other tests' size: no new convolution shapes to set up
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


def test_without_transformers_the_message_names_the_family_and_the_command(rt_folder, rt_opened, monkeypatch):
    from detr_core.config import DETRConfig, to_dict
    from detr_core.model.registry import build_model

    _, folder = rt_folder
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers raises ImportError
    message = r"RT-DETR models open through the transformers library, which is not installed: run `uv sync --extra hf`"
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)
    config = DETRConfig(**to_dict(rt_opened[0].model_config))  # the config itself needs no transformers
    with pytest.raises(CheckpointError, match=message):
        build_model(config)


def _dense_family(name: str):
    from transformers import (
        ConditionalDetrConfig,
        ConditionalDetrForObjectDetection,
        DabDetrConfig,
        DabDetrForObjectDetection,
        ResNetConfig,
    )

    torch.manual_seed(0)
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic",
                            out_features=["stage4"])
    shared = dict(backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, encoder_layers=1,
                  decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=48,
                  decoder_ffn_dim=48, num_queries=8, num_labels=3, **LABELS)
    if name == "conditional_detr":
        model = ConditionalDetrForObjectDetection(ConditionalDetrConfig(d_model=32, **shared))
    else:
        model = DabDetrForObjectDetection(DabDetrConfig(hidden_size=32, **shared))
    return _randomize_norms(model.eval())


@pytest.fixture(scope="module")
def dense_folders(tmp_path_factory):
    folders = {}
    for name in ("conditional_detr", "dab_detr"):
        hf = _dense_family(name)
        folders[name] = (hf, tmp_path_factory.mktemp(name))
        hf.save_pretrained(folders[name][1], safe_serialization=name == "conditional_detr")  # .bin for DAB
    return folders


@pytest.mark.parametrize("family", ["conditional_detr", "dab_detr"])
def test_dense_families_reproduce_transformers_on_a_padded_batch_and_capture_maps(dense_folders, family):
    hf, folder = dense_folders[family]
    ckpt = load_checkpoint(folder)
    assert ckpt.model_config.attention == family
    model = ckpt.build_model()
    torch.manual_seed(1)
    images = [torch.randn(3, 64, 96), torch.randn(3, 48, 64)]  # the second padded, masked out
    batch = nested_tensor_from_tensor_list(images)
    with torch.no_grad():
        theirs = hf(pixel_values=batch.tensors, pixel_mask=(~batch.mask).long())
        alone = hf(pixel_values=images[0][None])
        plain, ours = model(images), model(images, capture=True)
        first = model(images[:1])
    for out in (plain, ours):
        torch.testing.assert_close(out["pred_logits"], theirs.logits, **TOL)
        torch.testing.assert_close(out["pred_boxes"], theirs.pred_boxes, **TOL)
    torch.testing.assert_close(first["pred_boxes"], alone.pred_boxes, **TOL)
    cap = ours["capture"]
    att = cap.attention
    assert isinstance(att, DenseAttention) and att.grid == (2, 3) and model.stride == 32
    assert cap.layer_boxes.shape == (2, 2, 8, 4) and torch.equal(cap.layer_boxes[-1], ours["pred_boxes"])
    assert len(att.decoder_cross) == 2 and len(att.decoder_self) == 2 and len(att.encoder) == 1
    for c in att.decoder_cross:  # [B, heads, Q, S]: rows sum to 1, padding cells get nothing
        torch.testing.assert_close(c.weights.sum(-1), torch.ones(c.weights.shape[:3]))
        assert c.weights[1][..., att.feature_mask[1].flatten()].abs().max() == 0
    assert att.feature_mask[1].any() and not att.feature_mask[0].any()
    assert att.encoder[0].q.shape == (2, 2, 6, 16) and cap.memory.shape == (2, 6, 32)
    # the earlier layer's boxes are transformers' own heads on that layer (its auxiliary outputs)
    with torch.no_grad():
        hf.config.auxiliary_loss = True
        labels = [{"class_labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}] * 2
        aux = hf(pixel_values=batch.tensors, pixel_mask=(~batch.mask).long(), labels=labels).auxiliary_outputs
        hf.config.auxiliary_loss = False
    if family == "dab_detr":  # Conditional DETR with auxiliary_loss also norms between layers: another forward
        torch.testing.assert_close(cap.layer_boxes[0], aux[0]["pred_boxes"], **TOL)
        torch.testing.assert_close(cap.layer_logits[0], aux[0]["logits"], **TOL)


def test_rt_detr_v2_reproduces_transformers_and_its_sampling_locations(tmp_path):
    from torch.nn import functional as F

    hf = _rt_detr(version=2)
    hf.save_pretrained(tmp_path)
    model = load_checkpoint(tmp_path).build_model()
    torch.manual_seed(1)
    image = torch.randn(3, 64, 96)
    attn = hf.model.decoder.layers[-1].encoder_attn
    captured = {}  # the last layer's attention output, as transformers computes it
    handle = attn.output_proj.register_forward_hook(lambda m, a, o: captured.update(input=a[0]))  # returns None
    aifi_calls, aifi_hooks = record_aifi_inputs(hf)
    with torch.no_grad():
        theirs = hf(pixel_values=_unnormalized(image)[None])
    for h in (handle, *aifi_hooks):
        h.remove()
    with torch.no_grad():
        ours = model([image], capture=True)
    torch.testing.assert_close(ours["pred_logits"], theirs.logits, **TOL)
    torch.testing.assert_close(ours["pred_boxes"], theirs.pred_boxes, **TOL)
    att = ours["capture"].attention
    assert isinstance(att, SamplingPoints) and att.decoder_locations[1].shape == (1, 12, 2, 3, 4, 2)
    check_wrapped_aifi(ours["capture"], aifi_calls, shape=(2, 3))  # the encoder's self-attention, as RT-DETR's
    # the recorded locations and weights, sampled with grid_sample, give the layer's attention output
    # (checked on the last layer: value = value_proj(memory))
    memory = ours["capture"].memory
    value = attn.value_proj(memory).view(1, -1, 2, 16)
    starts = [0, 96, 120, 126]
    sampled = 0
    for level, (h, w) in enumerate(att.shapes):
        v = value[:, starts[level]:starts[level + 1]].permute(0, 2, 3, 1).reshape(2, 16, h, w)  # [heads, dh, h, w]
        grid = 2 * att.decoder_locations[-1][0, :, :, level].transpose(0, 1) - 1  # [heads, Q, P, 2]
        s = F.grid_sample(v, grid, align_corners=False)  # [heads, dh, Q, P]
        sampled = sampled + (s * att.decoder_weights[-1][0, :, :, level].permute(1, 0, 2)[:, None]).sum(-1)
    expected = captured["input"][0].view(12, 2, 16).permute(1, 2, 0)  # [heads, dh, Q]
    torch.testing.assert_close(sampled.detach(), expected, **TOL)


def test_main_info_and_predict_name_the_family(rt_folder, dense_folders, capsys, tmp_path):
    import numpy as np
    from PIL import Image

    from main import main

    expected = {rt_folder: ("RT-DETR", "Zhao et al.", "rt_detr_resnet (basic, depths 1-1-1-1)", 12),
                dense_folders["conditional_detr"]: ("Conditional DETR", "Meng et al.", "resnet (basic", 8),
                dense_folders["dab_detr"]: ("DAB-DETR", "Liu et al.", "resnet (basic", 8)}
    for (hf, folder), (family, paper, backbone, queries) in expected.items():
        assert main(["info", str(folder)]) == 0
        model = json.loads(capsys.readouterr().out)["model"]
        assert model["family"] == family and model["paper"].startswith(paper)
        assert model["backbone"].startswith(backbone) and model["queries"] == queries and model["classes"] == 3
        assert model["parameters"] == sum(p.numel() for p in hf.parameters())
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)).save(photo)
    small = ["--set", "image_min_size=64", "--set", "image_max_size=96"]  # not 640: fast
    assert main(["predict", str(rt_folder[1]), str(photo), "--threshold", "0", "--json", *small]) == 0
    detections = json.loads(capsys.readouterr().out)["detections"]
    assert len(detections) == 12 and {d["class"] for d in detections} <= {"cat", "dog", "bird"}


def test_fields_the_wrapper_cannot_capture_are_refused_by_name(dense_folders, tmp_path):
    _, folder = dense_folders["conditional_detr"]
    copy = _copy(folder, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(dict(config, encoder_attention_heads=4)))
    with pytest.raises(CheckpointError, match="config.json: encoder_attention_heads=4 is not supported"):
        load_checkpoint(copy)
    (copy / "config.json").write_text(json.dumps(dict(config, backbone="microsoft/resnet-50", backbone_config=None)))
    with pytest.raises(CheckpointError, match="backbone='microsoft/resnet-50' names a Hub model to download"):
        load_checkpoint(copy)


def test_a_wrapped_family_is_not_trained_here(rt_opened):
    from detr_core.config import TrainConfig
    from detr_core.train.trainer import Trainer

    with pytest.raises(ValueError, match="RT-DETR is opened here, not trained"):
        Trainer(rt_opened[0].model_config, TrainConfig(steps=1, batch_size=1, threads=1))


def test_a_capture_records_only_its_own_threads_calls(dense_folders):
    """The window may run one model on two threads; a plain pass on another thread must not write
    into a capture's recording (its attention maps would be another image's)."""
    import threading

    from detr_core.model.hf_families.base import Recording, output_of

    hf, _ = dense_folders["dab_detr"]
    recording = Recording()
    handle = output_of(hf.model.backbone, "valid", lambda o: o[0][-1][1])(recording)
    try:
        other = threading.Thread(target=lambda: hf(pixel_values=torch.zeros(1, 3, 64, 64)))
        with torch.no_grad():
            other.start()
            other.join()
            hf(pixel_values=torch.zeros(1, 3, 64, 96))
    finally:
        handle.remove()
    assert [v.shape for v in recording["valid"]] == [(1, 2, 3)]  # this thread's 64 x 96 pass only
