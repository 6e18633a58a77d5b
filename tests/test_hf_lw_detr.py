"""LW-DETR (a windowed ViT backbone, a C2f projector, a deformable decoder) opens from a
``save_pretrained`` folder, reproduces transformers' forward on a padded batch of two sizes, and
captures every layer's boxes, the selected encoder tokens and the sampling points. A tiny random
model built with transformers' config classes; nothing is downloaded."""

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
from detr_core.model.capture_protocol import SamplingPoints
from detr_core.model.nested_tensor import nested_tensor_from_tensor_list

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, a shared machine

TOL = {"rtol": 1e-4, "atol": 1e-4}
LABELS = {"id2label": {0: "cat", 1: "dog", 2: "bird"}, "label2id": {"cat": 0, "dog": 1, "bird": 2}}
DECODER = dict(d_model=32, decoder_layers=2, decoder_self_attention_heads=2, decoder_cross_attention_heads=2,
               decoder_n_points=2, num_queries=12, group_detr=2, decoder_ffn_dim=48, c2f_num_blocks=1, num_labels=3,
               dropout=0.0, **LABELS)


def randomized(model):
    """Random batch-norm statistics and a non-zero reference and class head (a fresh model's are 0)."""
    torch.manual_seed(3)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if "running_var" in name:
                buf.uniform_(0.5, 1.5)
            elif "running_mean" in name:
                buf.normal_(0, 0.1)
        for name, p in model.named_parameters():
            if "reference_point_embed" in name or "bbox_embed.layers.2" in name or "sampling_offsets" in name:
                p.normal_(0, 0.3)
        # tokens transformers marks invalid (padding) are zeroed before the selection's head: with this
        # bias their class-0 score is the highest any token can get, so a selection that did not
        # exclude them would pick them
        head = model.model.enc_out_class_embed[0].weight[0]
        model.model.enc_output[0].bias.copy_(head - head.mean())
    return model.eval()


def tiny_lw_detr():
    from transformers import LwDetrConfig, LwDetrForObjectDetection, LwDetrViTConfig

    torch.manual_seed(0)
    backbone = LwDetrViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=64,
                               pretrain_image_size=64, patch_size=16, window_block_indices=[0], num_windows=4,
                               out_indices=[1, 2])
    return randomized(LwDetrForObjectDetection(LwDetrConfig(backbone_config=backbone,
                                                            projector_scale_factors=[2.0, 0.5], **DECODER)))


@pytest.fixture(scope="module")
def lw_folder(tmp_path_factory):
    hf = tiny_lw_detr()
    folder = tmp_path_factory.mktemp("lw_detr")
    hf.save_pretrained(folder)
    return hf, folder


def start_boxes(model, memory, feature_masks, queries: int):
    """[B, Q, 4] cxcywh: the proposal boxes of the Q best-scoring encoder tokens, written out from the
    two papers' recipe (not transformers' functions): each level's cell centre over the image's own
    cells, 0.05 * 2 ** level wide and high, refined by the first group's head; padding cells and
    proposals off the image (a coordinate outside (0.01, 0.99)) never chosen."""
    proposals, invalid = [], []
    for level, mask in enumerate(feature_masks):  # [B, h, w] True on padding
        b, h, w = mask.shape
        rows = (~mask[:, :, 0]).sum(1).float()[:, None, None]  # [B, 1, 1] image cells down
        cols = (~mask[:, 0, :]).sum(1).float()[:, None, None]
        ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
        cx, cy = (xs + 0.5) / cols, (ys + 0.5) / rows  # [B, h, w]
        size = torch.full_like(cx, 0.05 * 2 ** level)
        box = torch.stack([cx, cy, size, size], -1).flatten(1, 2)  # [B, h*w, 4]
        proposals.append(box)
        invalid.append(mask.flatten(1) | ((box <= 0.01) | (box >= 0.99)).any(-1))
    proposals, invalid = torch.cat(proposals, 1), torch.cat(invalid, 1)  # [B, S, 4], [B, S]
    features = model.enc_output_norm[0](model.enc_output[0](memory.masked_fill(invalid[..., None], 0)))
    delta = model.enc_out_bbox_embed[0](features)  # [B, S, 4]
    boxes = torch.cat([proposals[..., :2] + delta[..., :2] * proposals[..., 2:],
                       proposals[..., 2:] * delta[..., 2:].exp()], -1)
    scores = model.enc_out_class_embed[0](features).max(-1).values.masked_fill(invalid, float("-inf"))
    best = scores.topk(queries, dim=1).indices  # [B, Q]
    return boxes.gather(1, best[..., None].expand(-1, -1, 4))


def check_family(hf, folder, family: str, strides: list[int]):
    """What LW-DETR and RF-DETR share: transformers' outputs on a padded batch of two sizes,
    every layer's logits and boxes against transformers' auxiliary outputs, the selected tokens,
    and sampling points that re-sample the attention's output."""
    ckpt = load_checkpoint(folder)
    assert ckpt.model_config.attention == family and ckpt.class_names == ["cat", "dog", "bird"]
    model = ckpt.build_model()
    torch.manual_seed(1)
    images = [torch.randn(3, 64, 96), torch.randn(3, 48, 64)]  # the second padded, masked out
    batch = nested_tensor_from_tensor_list(images)
    pixels, pixel_mask = batch.tensors, (~batch.mask).long()
    labels = [{"class_labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}] * 2
    attn = hf.model.decoder.layers[-1].cross_attn
    kept = {}
    handle = attn.output_proj.register_forward_pre_hook(lambda m, a: kept.__setitem__("in", a[0]))  # [B, Q, D]
    with torch.no_grad():
        theirs = hf(pixel_values=pixels, pixel_mask=pixel_mask)
        handle.remove()
        plain, ours = model(images), model(images, capture=True)
        aux = hf(pixel_values=pixels, pixel_mask=pixel_mask, labels=labels).auxiliary_outputs
    for out in (plain, ours):
        torch.testing.assert_close(out["pred_logits"], theirs.logits, **TOL)
        torch.testing.assert_close(out["pred_boxes"], theirs.pred_boxes, **TOL)
    cap = ours["capture"]
    assert cap.layer_boxes.shape == (2, 2, 12, 4) and torch.equal(cap.layer_boxes[-1], ours["pred_boxes"])
    assert torch.equal(cap.layer_logits[-1], ours["pred_logits"])
    # the earlier layer's prediction is transformers' own (its auxiliary loss reads it)
    torch.testing.assert_close(cap.layer_boxes[0], aux[0]["pred_boxes"], **TOL)
    torch.testing.assert_close(cap.layer_logits[0], aux[0]["logits"], **TOL)

    att = cap.attention
    assert isinstance(att, SamplingPoints) and att.strides == strides and len(att.decoder_locations) == 2
    levels = len(strides)
    assert att.decoder_locations[0].shape == (2, 12, 2, levels, 2, 2)
    assert [tuple(m.shape[1:]) for m in att.feature_masks] == [(64 // s, 96 // s) for s in strides]
    assert att.feature_masks[0][1].any() and not att.feature_masks[0][0].any()  # image 2's padding
    for w in att.decoder_weights:  # [B, Q, heads, levels, P]: each head's weights sum to 1
        torch.testing.assert_close(w.sum((-1, -2)), torch.ones(w.shape[:3]))
    torch.testing.assert_close(att.decoder_references[0], theirs.init_reference_points)
    # the selected tokens: on the image, and transformers' class scores of its queries are theirs
    selected = cap.selected_tokens  # [B, Q]
    on_image = ~torch.cat([m.flatten(1) for m in att.feature_masks], 1)  # [B, S]
    assert on_image.gather(1, selected).all() and not on_image[1].all()
    assert all(len(set(s.tolist())) == 12 for s in selected)
    features = model.detector.model.enc_output_norm[0](model.detector.model.enc_output[0](cap.memory))  # [B, S, D]
    scores = model.detector.model.enc_out_class_embed[0](features).gather(1, selected[..., None].expand(-1, -1, 3))
    torch.testing.assert_close(scores, theirs.enc_outputs_class, **TOL)
    torch.testing.assert_close(cap.selection_scores, scores.max(-1).values.sigmoid(), **TOL)  # the view's colours
    # where each query started: the selected tokens' proposal boxes, recomputed from the memory (image 1
    # unpadded, image 2 padded) and equal to what transformers returns
    starts = start_boxes(model.detector.model, cap.memory, att.feature_masks, 12)
    torch.testing.assert_close(cap.selection_boxes, starts, **TOL)
    torch.testing.assert_close(cap.selection_boxes, theirs.enc_outputs_coord_logits, **TOL)

    # the last layer's locations and weights, sampled with grid_sample, give its attention's output
    value = attn.value_proj(cap.memory).masked_fill(~on_image[..., None], 0).view(2, -1, 2, 16)  # [B, S, heads, dh]
    starts = [0]
    for h, w in att.shapes:
        starts.append(starts[-1] + h * w)
    sampled = 0
    for level, (h, w) in enumerate(att.shapes):
        v = value[:, starts[level]:starts[level + 1]].permute(0, 2, 3, 1).reshape(4, 16, h, w)  # [B*heads, dh, h, w]
        grid = 2 * att.decoder_locations[-1][:, :, :, level].transpose(1, 2).flatten(0, 1) - 1  # [B*heads, Q, P, 2]
        s = F.grid_sample(v, grid, align_corners=False)  # [B*heads, dh, Q, P]
        weight = att.decoder_weights[-1][:, :, :, level].transpose(1, 2).flatten(0, 1)  # [B*heads, Q, P]
        sampled = sampled + (s * weight[:, None]).sum(-1)
    expected = kept["in"].view(2, 12, 2, 16).permute(0, 2, 3, 1).flatten(0, 1)  # [B*heads, dh, Q]
    torch.testing.assert_close(sampled, expected, **TOL)
    return model


def test_lw_detr_reproduces_transformers_on_a_padded_batch_and_captures_sampling_points(lw_folder):
    check_family(*lw_folder, family="lw_detr", strides=[8, 32])


def test_an_input_with_fewer_cells_than_queries_is_refused_in_words(tmp_path):
    """The queries start from the encoder's best cells (torch.topk): a 64x64 input has 64 + 4 cells
    at strides 8 and 32, too few for 80 queries; the message says so, not torch's words."""
    from transformers import LwDetrConfig, LwDetrForObjectDetection

    hf = tiny_lw_detr()
    config = LwDetrConfig(**{**hf.config.to_dict(), "num_queries": 80})
    LwDetrForObjectDetection(config).save_pretrained(tmp_path)
    model = load_checkpoint(tmp_path).build_model().eval()
    with torch.no_grad(), pytest.raises(ValueError, match=r"80 queries .* a 64x64 input has fewer cells"):
        model([torch.randn(3, 64, 64)])


def test_the_matching_view_matches_a_toy_sample_at_the_models_own_size(tmp_path):
    """The Matching view's toy samples are 128 px: at that size a 300-query LW-DETR has too few
    cells to start its queries from; matched at the model's own size (as a photo is), it works."""
    from transformers import LwDetrConfig, LwDetrForObjectDetection

    from detr_core.analysis.matching import match_sample, matcher_for
    from detr_core.config import ToyDataConfig
    from detr_core.data.toy import ToyShapes

    hf = tiny_lw_detr()
    LwDetrForObjectDetection(LwDetrConfig(**{**hf.config.to_dict(), "num_queries": 300})).save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 256, "longest_edge": 320}}))
    model = load_checkpoint(tmp_path).build_model().eval()
    matcher = matcher_for(model, None)
    stream = ToyShapes(ToyDataConfig(image_size=128), seed=0, split="train")
    with pytest.raises(ValueError, match="300 queries"):
        match_sample(model, matcher, stream, 0)
    snapshot = match_sample(model, matcher, stream, 0, at_model_size=True)
    assert snapshot.image.shape[:2] == (256, 256)
    objects = len(stream.annotations(0).labels)
    assert len(snapshot.query_indices) == len(snapshot.target_labels) == objects > 0
    assert snapshot.cost["total"].shape == (300, len(snapshot.target_labels))


def check_info_and_refusals(folder, tmp_path, capsys, family: str, paper: str, backbone: str, parameters: int,
                            other_backbone: str = "vit"):
    from main import main

    assert main(["info", str(folder)]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["family"] == family and model["paper"].startswith(paper)
    assert model["backbone"] == backbone and model["queries"] == 12 and model["classes"] == 3
    assert model["parameters"] == parameters
    from detr_core.model.hf_families import family_module
    from detr_core.model.registry import train_problem

    hf_config = json.loads((folder / "config.json").read_text())
    config = family_module(hf_config["model_type"]).build.detr_config(hf_config)
    assert train_problem(config).startswith(f"{family} is opened here, not trained")

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    config = json.loads((broken / "config.json").read_text())
    unknown = dict(config, backbone_config=dict(config["backbone_config"], model_type="no_such_net"))
    (broken / "config.json").write_text(json.dumps(unknown))
    with pytest.raises(CheckpointError, match="backbone_config.model_type='no_such_net' is not a backbone"):
        load_checkpoint(broken)
    other = dict(config, backbone_config=dict(config["backbone_config"], model_type=other_backbone))
    (broken / "config.json").write_text(json.dumps(other))  # a backbone transformers knows, not this family's
    with pytest.raises(CheckpointError, match=f"backbone_config.model_type='{other_backbone}' is not supported"):
        load_checkpoint(broken)
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        load_checkpoint(broken)


def test_lw_detr_info_and_refusals(lw_folder, tmp_path, capsys):
    hf, folder = lw_folder
    check_info_and_refusals(folder, tmp_path, capsys, "LW-DETR", "Chen et al. 2024",
                            "lw_detr_vit (2 layers, width 32, patch 16, 4 windows)",
                            sum(p.numel() for p in hf.parameters()))
