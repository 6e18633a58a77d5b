"""D-FINE opens from a ``save_pretrained`` folder (HGNetV2 backbone), reproduces transformers'
forward, and captures sampling points per layer, head and level and each layer's edge
distributions (fine-grained distribution refinement). A tiny random model built with
transformers' config classes; nothing is downloaded."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from torch.nn import functional as F

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

from detr_core.checkpoint import CheckpointError, load_checkpoint
from detr_core.data.images import IMAGENET_MEAN, IMAGENET_STD
from detr_core.model.capture_protocol import SamplingPoints
from tests.test_encoder_attention import check_wrapped_aifi, record_aifi_inputs

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, a shared machine

TOL = {"rtol": 1e-4, "atol": 1e-4}
LABELS = {"id2label": {0: "cat", 1: "dog", 2: "bird"}, "label2id": {"cat": 0, "dog": 1, "bird": 2}}
POINTS = [2, 4, 2]  # a different number of sampling points per level, as D-FINE's releases ([3, 6, 3])


def _randomize(model):
    """Random batch-norm statistics and non-zero heads (a fresh D-FINE's LQE and offsets are 0)."""
    torch.manual_seed(3)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if "running_var" in name:
                buf.uniform_(0.5, 1.5)
            elif "running_mean" in name:
                buf.normal_(0, 0.1)
        for name, p in model.named_parameters():
            if any(k in name for k in ("lqe_layers", "sampling_offsets", "attention_weights", "bbox_embed")):
                p.normal_(0, 0.3)
    return model


def tiny_d_fine(config_class: str = "DFineConfig", model_class: str = "DFineForObjectDetection", backbone=None,
                **extra):
    from transformers import HGNetV2Config

    torch.manual_seed(0)
    backbone = backbone or HGNetV2Config(
        stem_channels=[3, 8, 8], stage_in_channels=[8, 16, 24, 32], stage_mid_channels=[8, 8, 16, 16],
        stage_out_channels=[16, 24, 32, 48], stage_num_blocks=[1, 1, 1, 1], stage_numb_of_layers=[1, 1, 1, 1],
        stage_kernel_size=[3, 3, 3, 3], hidden_sizes=[16, 24, 32, 48], depths=[1, 1, 1, 1],
        out_features=["stage2", "stage3", "stage4"])
    fields = dict(
        backbone_config=backbone, encoder_in_channels=[24, 32, 48], encoder_hidden_dim=32, d_model=32,
        encoder_ffn_dim=48, decoder_ffn_dim=48, encoder_attention_heads=2, decoder_attention_heads=2,
        decoder_layers=2, num_queries=12, decoder_in_channels=[32, 32, 32], num_denoising=0, num_labels=3,
        decoder_n_points=POINTS, max_num_bins=8, lqe_hidden_dim=16, depth_mult=0.34, **LABELS)
    config = getattr(transformers, config_class)(**{**fields, **extra})
    return _randomize(getattr(transformers, model_class)(config).eval())


@pytest.fixture(scope="module")
def d_fine_folder(tmp_path_factory):
    hf = tiny_d_fine()
    folder = tmp_path_factory.mktemp("d_fine")
    hf.save_pretrained(folder)
    return hf, folder


def rescaled(x: torch.Tensor) -> torch.Tensor:
    """The project's ImageNet-normalized pixels back in [0, 1], as D-FINE's processor gives them."""
    return x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]


def padded_input(images: list[torch.Tensor], divisor: int = 32) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1], black padding bottom/right to a common multiple of ``divisor``."""
    h = -(-max(i.shape[1] for i in images) // divisor) * divisor
    w = -(-max(i.shape[2] for i in images) // divisor) * divisor
    out = torch.zeros(len(images), 3, h, w)
    for k, image in enumerate(images):
        out[k, :, :image.shape[1], :image.shape[2]] = rescaled(image)
    return out


def check_family(hf, folder, family: str, title: str, layers: int = 2):
    """What D-FINE and DEIMv2 share: transformers' outputs on a batch of two sizes, every layer's
    logits and boxes against transformers' own (training-mode) decoder, sampling points that
    re-sample the attention's output, and edge distributions whose expectation is each layer's box."""
    ckpt = load_checkpoint(folder)
    assert ckpt.model_config.attention == family and ckpt.class_names == ["cat", "dog", "bird"]
    model = ckpt.build_model()
    assert model.SPEC.title == title
    torch.manual_seed(1)
    images = [torch.randn(3, 64, 96), torch.randn(3, 48, 80)]  # the second padded to 64 x 96 with black
    pixels = padded_input(images)
    scale = torch.tensor([[1.0, 1, 1, 1], [96 / 80, 64 / 48, 96 / 80, 64 / 48]])[:, None]  # [B, 1, 4]
    attn = hf.model.decoder.layers[-1].encoder_attn
    kept = {}
    handle = attn.register_forward_hook(lambda m, a, o: kept.__setitem__("out", o[0]))  # [B, Q, D]
    aifi_calls, aifi_hooks = record_aifi_inputs(hf)  # its encoder's self-attention (AIFI) on the top level
    with torch.no_grad():
        theirs = hf(pixel_values=pixels)
        handle.remove()
        for h in aifi_hooks:
            h.remove()
        plain, ours = model(images), model(images, capture=True)
        hf.model.decoder.train()  # transformers' decoder then returns every layer's logits and boxes
        every = hf(pixel_values=pixels)
        hf.model.decoder.eval()
    for out in (plain, ours):
        torch.testing.assert_close(out["pred_logits"], theirs.logits, **TOL)
        torch.testing.assert_close(out["pred_boxes"], theirs.pred_boxes * scale, **TOL)
    cap = ours["capture"]
    assert cap.layer_boxes.shape == (layers, 2, 12, 4) and torch.equal(cap.layer_boxes[-1], ours["pred_boxes"])
    assert torch.equal(cap.layer_logits[-1], ours["pred_logits"])
    # every[:, 0] is the first layer's pre-refinement box; every[:, 1 + l] is layer l
    torch.testing.assert_close(cap.layer_logits, every.intermediate_logits[:, 1:].transpose(0, 1), **TOL)
    torch.testing.assert_close(cap.layer_boxes, every.intermediate_reference_points[:, 1:].transpose(0, 1)
                               * scale, **TOL)
    torch.testing.assert_close(plain["aux_outputs"][0]["pred_boxes"], cap.layer_boxes[0])

    att = cap.attention
    assert isinstance(att, SamplingPoints) and att.shapes == [(8, 12), (4, 6), (2, 3)] and att.strides == [8, 16, 32]
    assert len(att.decoder_locations) == layers and att.decoder_locations[0].shape == (2, 12, 2, 3, max(POINTS), 2)
    for w in att.decoder_weights:  # [B, Q, heads, levels, P]: each head's weights sum to 1; padded points 0
        torch.testing.assert_close(w.sum((-1, -2)), torch.ones(w.shape[:3]))
        for level, n in enumerate(POINTS):
            assert (w[:, :, :, level, n:] == 0).all() and (w[:, :, :, level, :n] > 0).all()
    torch.testing.assert_close(att.decoder_references[1], every.intermediate_reference_points[:, 1], **TOL)
    selected = theirs.enc_outputs_class.max(-1).values.topk(12, dim=1).indices
    assert torch.equal(cap.selected_tokens, selected)
    check_wrapped_aifi(cap, aifi_calls, shape=(2, 3))
    # the last layer's locations and weights, sampled with grid_sample, give its attention's output
    value = cap.memory.view(2, -1, 2, 16)  # D-FINE samples the memory itself (no value projection)
    starts = [0, 96, 120, 126]
    sampled = 0
    for level, (h, w) in enumerate(att.shapes):
        v = value[:, starts[level]:starts[level + 1]].permute(0, 2, 3, 1).reshape(4, 16, h, w)  # [B*heads, dh, h, w]
        grid = 2 * att.decoder_locations[-1][:, :, :, level].transpose(1, 2).flatten(0, 1) - 1  # [B*heads, Q, P, 2]
        s = F.grid_sample(v, grid, align_corners=False)  # [B*heads, dh, Q, P]
        weight = att.decoder_weights[-1][:, :, :, level].transpose(1, 2).flatten(0, 1)  # [B*heads, Q, P]
        sampled = sampled + (s * weight[:, None]).sum(-1)
    expected = kept["out"].view(2, 12, 2, 16).permute(0, 2, 3, 1).flatten(0, 1)  # [B*heads, dh, Q]
    torch.testing.assert_close(sampled, expected, **TOL)

    edges = cap.edge_distributions
    assert edges is not None and edges.probabilities.shape == (layers, 2, 12, 4, 9)
    torch.testing.assert_close(edges.probabilities.sum(-1), torch.ones(layers, 2, 12, 4))
    expected_edges = (edges.probabilities * edges.bin_positions).sum(-1)  # [L, B, Q, 4] xyxy
    cx, cy, w, h = cap.layer_boxes.unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    torch.testing.assert_close(expected_edges, xyxy, **TOL)
    assert not torch.equal(edges.probabilities[0], edges.probabilities[-1])  # the layers refine
    return model


def test_d_fine_reproduces_transformers_and_captures_points_and_edge_distributions(d_fine_folder):
    check_family(*d_fine_folder, family="d_fine", title="D-FINE")


def test_d_fine_info_and_refusals(d_fine_folder, tmp_path, capsys):
    from main import main

    hf, folder = d_fine_folder
    assert main(["info", str(folder)]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["family"] == "D-FINE" and model["paper"].startswith("Peng et al. 2025")
    assert model["backbone"] == "hgnet_v2 (stage blocks 1-1-1-1, channels 16-24-32-48)"
    assert model["queries"] == 12 and model["classes"] == 3
    assert model["parameters"] == sum(p.numel() for p in hf.parameters())
    from detr_core.model.hf_families.d_fine import DFine
    from detr_core.model.registry import train_problem

    config = DFine.detr_config(json.loads((folder / "config.json").read_text()))
    assert train_problem(config).startswith("D-FINE is opened here, not trained")

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    config = json.loads((broken / "config.json").read_text())
    unknown = dict(config, backbone_config=dict(config["backbone_config"], model_type="no_such_net"))
    (broken / "config.json").write_text(json.dumps(unknown))
    with pytest.raises(CheckpointError, match="backbone_config.model_type='no_such_net' is not a backbone"):
        load_checkpoint(broken)
    (broken / "config.json").write_text(json.dumps(dict(config, eval_idx=0)))
    with pytest.raises(CheckpointError, match="eval_idx=0 is not supported"):
        load_checkpoint(broken)
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        load_checkpoint(broken)


def test_d_fine_sampling_hooks_record_only_their_own_threads_calls(d_fine_folder):
    """The window may run one model on two threads; another thread's pass must not add (or take)
    sampling points in this pass's recording."""
    import threading

    from detr_core.model.hf_families.base import Recording

    hf, folder = d_fine_folder
    model = load_checkpoint(folder).build_model()
    recording = Recording()
    layers = model.detector.model.decoder.layers
    handles = [register(recording) for layer in layers for register in model._sampling_hooks(layer.encoder_attn)]
    errors = []

    def other_pass():
        try:
            with torch.no_grad():
                model.detector(pixel_values=torch.zeros(2, 3, 32, 32))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    try:
        other = threading.Thread(target=other_pass)
        other.start()
        other.join()
        with torch.no_grad():
            model.detector(pixel_values=torch.zeros(1, 3, 64, 64))
    finally:
        for h in handles:
            h.remove()
    assert errors == []  # the hooks left the other thread's pass alone
    assert [loc.shape for loc, _ in recording["sampling"]] == [(1, 12, 2, 3, max(POINTS), 2)] * len(layers)
