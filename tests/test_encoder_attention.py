"""RT-DETR's intra-scale encoder self-attention (AIFI) on the top level, captured
(``ModelCapture.encoder_self``) for a small random transformers RT-DETR and the native ``rt_detr``
preset: its shape and level, rows summing to 1, equal to transformers' own eager attention maps
and to softmax(q k^T / sqrt(d)) recomputed from the native layer's input; predictions unchanged
and nothing recorded without ``capture``. The Deformable view's clicked-pixel mode draws the
clicked point's map from the capture, and says so in words for a model without one."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detr_core.analysis.capture import run_inference
from detr_core.model.registry import build_model
from detr_core.presets import rt_detr

NAMES = ["rectangle", "ellipse", "triangle"]
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, a shared machine


def tiny_rt_detr(**changes) -> torch.nn.Module:
    """The native ``rt_detr`` preset at test size (d_model 32, two heads; 128 px: a 4 x 4 top level)."""
    model, _ = rt_detr()
    torch.manual_seed(0)
    config = dataclasses.replace(model, d_model=32, nheads=2, dim_feedforward=64, num_queries=10,
                                 pretrained_backbone=False, **changes)
    return build_model(config).eval()


@pytest.fixture(scope="module")
def native():
    return tiny_rt_detr(num_encoder_layers=2)


@pytest.fixture(scope="module")
def native_result(native):
    """The native model on a 100 x 130 image (resized to 128 x 166: a 4 x 6 top level)."""
    rgb = (np.random.default_rng(1).random((100, 130, 3)) * 255).astype(np.uint8)
    return rgb, run_inference(native, rgb, NAMES)


@pytest.fixture(scope="module")
def wrapped():
    """(transformers' RT-DETR, the explorer's wrapper of it with the same weights)."""
    pytest.importorskip("transformers")
    from detr_core.model.hf_families.rt_detr import RTDetr
    from tests.test_hf_families import _rt_detr

    hf = _rt_detr()
    model = build_model(RTDetr.detr_config(hf.config.to_dict())).eval()
    model.detector.load_state_dict(hf.state_dict())
    return hf, model


def _rows_sum_to_one(weights: torch.Tensor) -> None:
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))


def record_aifi_inputs(hf) -> tuple[list, list]:
    """Forward pre-hooks on a transformers RT-DETR-family model's AIFI attention layers (its
    coarsest level's) keeping each call's (module, keyword arguments); returns (calls, handles)."""
    calls: list = []
    layers = hf.model.encoder.aifi[-1].layers
    handles = [layer.self_attn.register_forward_pre_hook(lambda m, a, k: calls.append((m, k)), with_kwargs=True)
               for layer in layers]
    return calls, handles


def aifi_weights(attention, kwargs) -> torch.Tensor:
    """softmax(q k^T * scaling) [B, heads, S, S] of one transformers AIFI attention call, from its
    input (hidden_states [B, S, D] plus position_embeddings, as transformers' eager attention)."""
    x, pos = kwargs["hidden_states"], kwargs.get("position_embeddings")
    qk = x if pos is None else x + pos
    heads = x.shape[-1] // attention.head_dim
    split = lambda t: t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)
    return (split(attention.q_proj(qk)) @ split(attention.k_proj(qk)).transpose(2, 3) * attention.scaling).softmax(-1)


def check_wrapped_aifi(capture, calls: list, shape: tuple[int, int], level: int = 2, stride: int = 32) -> None:
    """``capture.encoder_self`` of a wrapped RT-DETR-family model against transformers' own AIFI
    calls on the same input (recorded by :func:`record_aifi_inputs`)."""
    enc = capture.encoder_self
    assert enc is not None and (enc.level, enc.shape, enc.stride) == (level, shape, stride)
    assert capture.attention.shapes[level] == shape and len(enc.weights) == len(calls)
    with torch.no_grad():
        for weights, (attention, kwargs) in zip(enc.weights, calls):
            _rows_sum_to_one(weights)
            torch.testing.assert_close(weights, aifi_weights(attention, kwargs), rtol=1e-5, atol=1e-5)


def test_a_transformers_rt_detr_captures_its_aifi_maps_as_transformers_computes_them(wrapped):
    from tests.test_hf_families import _unnormalized

    hf, model = wrapped
    torch.manual_seed(1)
    image = torch.randn(3, 96, 128)  # 3 x 4 cells of stride 32
    # while the encoder's attention runs: how many hooks are on its projections (none without capture)
    attention = model.detector.model.encoder.aifi[0].layers[0].self_attn
    hooked = []
    spy = attention.register_forward_pre_hook(
        lambda m, a: hooked.append(len(m.q_proj._forward_hooks) + len(m.k_proj._forward_hooks)))
    try:
        with torch.no_grad():
            plain, ours = model([image]), model([image], capture=True)
    finally:
        spy.remove()
    assert hooked == [0, 2] and not attention.q_proj._forward_hooks  # and none left after the capture
    assert "capture" not in plain
    assert torch.equal(plain["pred_logits"], ours["pred_logits"])  # hooks only: bit for bit
    assert torch.equal(plain["pred_boxes"], ours["pred_boxes"])
    cap = ours["capture"]
    enc = cap.encoder_self
    assert enc is not None and (enc.level, enc.shape, enc.stride) == (2, (3, 4), 32)
    assert cap.attention.shapes[enc.level] == enc.shape and enc.feature_mask is None
    assert len(enc.weights) == hf.config.encoder_layers and enc.weights[0].shape == (1, 2, 12, 12)
    _rows_sum_to_one(enc.weights[0])
    # transformers' own maps: its eager attention returns them (the default sdpa kernel does not)
    eager = copy.deepcopy(hf)
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        theirs = eager(pixel_values=_unnormalized(image)[None], output_attentions=True).encoder_attentions
    assert len(theirs) == len(enc.weights)
    for mine, reference in zip(enc.weights, theirs):
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-5)


def _recomputed(layer, src: torch.Tensor, pos: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(dh)) of a native encoder layer from its input src, pos [B, S, D]."""
    attention = layer.self_attn
    d, heads = attention.d_model, attention.nheads
    w, b = attention.in_proj_weight, attention.in_proj_bias
    q = F.linear(src + pos, w[:d], b[:d])
    k = F.linear(src + pos, w[d : 2 * d], b[d : 2 * d])
    split = lambda x: x.view(x.shape[0], x.shape[1], heads, d // heads).transpose(1, 2)
    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // heads)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(-1)


def test_the_native_hybrid_encoder_captures_its_aifi_maps_with_padding_masked(native):
    inputs = []
    hooks = [layer.register_forward_pre_hook(lambda m, a: inputs.append(a[:3]))
             for layer in native.transformer.encoder.layers]
    images = [torch.randn(3, 128, 128), torch.randn(3, 64, 96)]  # the second padded: 2 x 3 of 4 x 4 cells
    try:
        with torch.no_grad():
            plain = native(images)
            inputs.clear()  # the layers' inputs of the capturing pass only
            ours = native(images, capture=True)
    finally:
        for h in hooks:
            h.remove()
    assert torch.equal(plain["pred_logits"], ours["pred_logits"]) and "capture" not in plain
    cap = ours["capture"]
    enc = cap.encoder_self
    top = len(cap.attention.shapes) - 1
    assert (enc.level, enc.shape, enc.stride) == (top, (4, 4), 32) and cap.attention.shapes[top] == (4, 4)
    assert len(enc.weights) == 2 and all(w.shape == (2, 2, 16, 16) for w in enc.weights)
    padded = enc.feature_mask
    assert padded is not None and not padded[0].any() and padded[1].sum() == 16 - 6
    for layer, weights, (src, pos, allowed) in zip(native.transformer.encoder.layers, enc.weights, inputs):
        _rows_sum_to_one(weights)
        torch.testing.assert_close(weights, _recomputed(layer, src, pos, allowed), rtol=1e-5, atol=1e-5)
    assert (enc.weights[-1][1][..., padded[1].flatten()] == 0).all()  # padding is not attended to

    without = tiny_rt_detr(num_encoder_layers=0)  # a hybrid encoder without attention layers
    with torch.no_grad():
        assert without([torch.randn(3, 64, 64)], capture=True)["capture"].encoder_self is None


def test_the_result_places_the_maps_on_the_image(native_result):
    _, r = native_result
    maps = r.encoder_self
    assert maps is not None and maps.num_layers == 2 and maps.num_heads == 2 and maps.num_levels == 3
    assert maps.shape == (4, 6) and maps.padded is None
    h, w = maps.shape
    eh, ew = maps.extent  # the grid covers the image, overhanging by less than one cell
    assert eh >= 100 and ew >= 130 and eh - eh / h < 100 and ew - ew / w < 130
    i, j = maps.cell_at(60.0, 90.0)
    x0, y0, x1, y1 = maps.cell_box(i, j)
    assert x0 <= 90 < x1 and y0 <= 60 < y1
    at = maps.at(60.0, 90.0)  # [L, heads, h, w]
    torch.testing.assert_close(at.flatten(2), maps.weights[:, :, i * w + j])
    torch.testing.assert_close(at.sum((-1, -2)), torch.ones(2, 2))


def _click(qtbot, view, y: float, x: float) -> None:
    """A mouse click on the view's picture at image pixel (y, x)."""
    from PySide6.QtCore import QPointF, Qt

    scene = view.left.mapViewToScene(QPointF(x, y))
    qtbot.mouseClick(view.graphics.viewport(), Qt.MouseButton.LeftButton, pos=view.graphics.mapFromScene(scene))


def test_the_deformable_view_shows_the_clicked_points_encoder_attention(qtbot, native, native_result):
    from explorer.state import AppState, LoadedModel
    from explorer.views.deformable import MODE_PIXEL, NO_ENCODER_ATTENTION, DeformableView
    from tests.test_views_fit import EXPLORE_BOTTOM, assert_fits

    state = AppState()
    view = DeformableView(state)  # no dense model to compare with: nothing runs off the GUI thread
    qtbot.addWidget(view)
    view.resize(1000, 420)
    view.show()
    rgb, result = native_result
    state.set_model(LoadedModel(native, NAMES, "rt_detr test"))
    state.set_image(rgb, "noise")
    state.set_result(result)
    enc = result.encoder_self
    assert view.pages.currentIndex() == 1 and view.encoder_map() is None  # the decoder's points first

    def drawn():
        return view.encoder_heat_item.image, tuple(view.cell_item.getData()[0][:2])

    def expected(layer, head, cell):
        maps = enc.weights[layer, :, cell[0] * 6 + cell[1]].reshape(2, 4, 6)  # [heads, h, w]
        return (maps.mean(0) if head is None else maps[head]).numpy()

    _click(qtbot, view, 20.0, 110.0)
    assert view.mode == MODE_PIXEL and state.encoder_point == pytest.approx((20.0, 110.0), abs=1.0)
    view.set_layer(0)
    cell = enc.cell_at(*state.encoder_point)
    assert cell == (0, 4) and "encoder layer 1 of 2" in view.layer_label.text()
    assert view.encoder_head_choice.isVisible() and not view.level_row.isVisible()
    first, outline = drawn()
    np.testing.assert_allclose(first, expected(0, None, cell), rtol=1e-6)
    x0, _, x1, _ = enc.cell_box(*cell)
    assert outline == pytest.approx((x0, x1))
    assert "AIFI" in view.caption.text() and "row 1, column 5" in view.caption.text()

    state.set_encoder_point((95.0, 5.0))  # a click on the main picture moves it too
    second, outline = drawn()
    assert not np.allclose(second, first)
    np.testing.assert_allclose(second, expected(0, None, (3, 0)), rtol=1e-6)
    view.set_layer(1)
    view.set_encoder_head(1)
    np.testing.assert_allclose(drawn()[0], expected(1, 1, (3, 0)), rtol=1e-6)
    assert "head 2 of 2" in view.caption.text() and "layer 2 of 2" in view.caption.text()
    rows = view.export_data()
    assert len(rows) == 24 and {(r["from_row"], r["from_column"], r["head"]) for r in rows} == {(4, 1, 2)}
    assert sum(r["weight"] for r in rows) == pytest.approx(1.0, abs=1e-5)

    # a model whose encoder has neither sampling points nor self-attention says so
    state.set_result(dataclasses.replace(result, encoder_self=None))
    assert view.encoder_heat_item.image is None and view.caption.text() == NO_ENCODER_ATTENTION
    state.set_result(result)
    assert_fits(view, EXPLORE_BOTTOM, "Deformable attention, the encoder's self-attention at a clicked point")
