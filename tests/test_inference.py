"""Inference with attention capture: typed results, attention that sums to 1, unchanged outputs."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from detr_core.analysis.capture import run_inference
from detr_core.data import ToyShapes
from detr_core.model.detr import DETR


@pytest.fixture(params=["learned", "anchor"])
def model(request, tiny_config):
    torch.manual_seed(0)
    cfg = replace(tiny_config, query_type=request.param, dn_groups=2 if request.param == "anchor" else 0,
                  num_query_groups=2)
    return DETR(cfg).eval()


def test_result_shapes(model, tiny_config):
    image = ToyShapes().sample(0).image  # 128x128 -> resized to 64x64 by the model's input rule
    r = run_inference(model, image, ["a", "b", "c"])
    q, layers, heads = tiny_config.num_queries, tiny_config.num_decoder_layers, tiny_config.nheads
    h, w = r.feature_size
    assert r.image_size == (128, 128) and r.input_size == (64, 64) and (h, w) == (8, 8)
    assert r.probs.shape == (q, 4) and r.scores.shape == (q,) and r.labels.shape == (q,)
    assert r.boxes_xyxy.shape == (q, 4) and r.layer_boxes_xyxy.shape == (layers, q, 4)
    assert r.layer_probs.shape == (layers, q, 4)
    assert r.cross_attention.shape == (layers, heads, q, h, w)
    assert r.decoder_self_attention.shape == (layers, heads, q, q)
    assert r.encoder_attention_at(10, 20).shape == (tiny_config.num_encoder_layers, heads, h, w)
    assert r.encoder_attention().shape == (tiny_config.num_encoder_layers, heads, h * w, h, w)
    # boxes in pixels of the image as given (not clipped, as in the reference's post-processing)
    cx, cy, bw, bh = r.boxes_cxcywh.unbind(-1)
    torch.testing.assert_close(r.boxes_xyxy, torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1) * 128)
    assert r.grid_extent() == (128.0, 128.0)


def test_every_attention_row_sums_to_one(model):
    r = run_inference(model, ToyShapes().sample(1).image, ["a", "b", "c"])
    torch.testing.assert_close(r.cross_attention.sum((-1, -2)), torch.ones(r.cross_attention.shape[:3]))
    torch.testing.assert_close(r.decoder_self_attention.sum(-1), torch.ones(r.decoder_self_attention.shape[:3]))
    enc = r.encoder_attention()
    torch.testing.assert_close(enc.sum((-1, -2)), torch.ones(enc.shape[:3]))
    assert (r.cross_attention >= 0).all()


def test_capture_does_not_change_any_output(model):
    image = ToyShapes().sample(2).image
    with_cap = run_inference(model, image, ["a", "b", "c"], capture=True)
    without = run_inference(model, image, ["a", "b", "c"], capture=False)
    assert without.cross_attention is None
    torch.testing.assert_close(with_cap.layer_probs, without.layer_probs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(with_cap.layer_boxes_cxcywh, without.layer_boxes_cxcywh, atol=1e-5, rtol=1e-5)


def test_point_attention_equals_the_full_map(model):
    r = run_inference(model, ToyShapes().sample(3).image, ["a", "b", "c"])
    full = r.encoder_attention()
    y, x = 70.0, 20.0
    i, j = r.cell_at(y, x)
    assert (i, j) == (4, 1)  # 8 cells over 128 px: 16 px per cell
    torch.testing.assert_close(r.encoder_attention_at(y, x), full[:, :, i * 8 + j])


def test_non_square_image_grid_covers_the_image(model):
    image = np.zeros((90, 200, 3), np.uint8)
    r = run_inference(model, image, ["a", "b", "c"])
    gh, gw = r.grid_extent()
    assert gh >= 90 - 1e-6 and gw >= 200 - 1e-6
    assert gh < 90 + 90 / r.feature_size[0] * 1.01 and gw < 200 + 200 / r.feature_size[1] * 1.01
    assert r.image_size == (90, 200)


def test_model_stays_in_training_mode_after_a_preview(model):
    model.train()
    run_inference(model, ToyShapes().sample(0).image, ["a", "b", "c"])
    assert model.training


def test_rejects_bad_arrays(model):
    with pytest.raises(ValueError):
        run_inference(model, np.zeros((10, 10), np.uint8), ["a", "b", "c"])
