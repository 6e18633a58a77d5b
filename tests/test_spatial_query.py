"""Conditional DETR's and DAB-DETR's cross-attention split into a content map and a spatial-query
map: per head the logit is ``c_q . c_k + p_q . p_k``, so the captured full map is the product of
the two maps the capture adds, renormalised over the image's tokens. Tiny random models as in
tests/test_hf_families.py; nothing is downloaded."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from detr_core.checkpoint import load_checkpoint  # noqa: E402
from tests.test_hf_families import _dense_family  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, a shared machine
FAMILIES = ("conditional_detr", "dab_detr")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """family -> a save_pretrained folder whose image processor asks for small inputs (a fast window)."""
    made = {}
    for name in FAMILIES:
        made[name] = folder = tmp_path_factory.mktemp(name)
        _dense_family(name).save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 64,
                                                                              "longest_edge": 96}}))
    return made


@pytest.fixture(scope="module")
def models(folders):
    """family -> the wrapped model, opened from its folder as the window opens it."""
    return {name: load_checkpoint(folder).build_model() for name, folder in folders.items()}


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return [torch.randn(3, 64, 96), torch.randn(3, 48, 64), torch.randn(3, 64, 96)]  # the second is padded


@pytest.mark.parametrize("family", FAMILIES)
def test_the_full_map_is_the_content_map_times_the_spatial_map(models, images, family):
    model = models[family]
    with torch.no_grad():
        plain = model(images[:2])
        out = model(images[:2], capture=True)
    assert torch.equal(plain["pred_logits"], out["pred_logits"]) and torch.equal(plain["pred_boxes"],
                                                                                 out["pred_boxes"])
    att = out["capture"].attention
    padding = att.feature_mask.flatten(1)  # [B, S] True on padding cells
    assert padding[1].any() and not padding[0].any()
    assert len(att.decoder_cross_content) == len(att.decoder_cross_spatial) == len(att.decoder_cross) == 2
    for full, content, spatial in zip(att.decoder_cross, att.decoder_cross_content, att.decoder_cross_spatial):
        assert content.shape == spatial.shape == full.weights.shape == (2, 2, 8, 6)  # [B, heads, Q, S]
        for part in (content, spatial):
            torch.testing.assert_close(part.sum(-1), torch.ones(part.shape[:3]), rtol=0, atol=1e-6)
            assert part[1][..., padding[1]].abs().max() == 0  # padding cells get nothing
        # softmax(content logits + spatial logits) over the valid tokens: the logits are the maps'
        # logs up to a constant per row
        logits = (content.log() + spatial.log()).masked_fill(padding[:, None, None, :], float("-inf"))
        torch.testing.assert_close(logits.softmax(-1), full.weights, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_first_layers_spatial_map_does_not_see_the_image(models, images, family):
    """Layer 1's spatial query is the reference point's sine embedding (its scaling starts at 1)
    and its keys' spatial halves are the grid's positions: another image of the same size leaves
    the spatial map unchanged and moves the content map. It is no uniform map either."""
    with torch.no_grad():
        att = models[family]([images[0], images[2]], capture=True)["capture"].attention
    spatial, content = att.decoder_cross_spatial[0], att.decoder_cross_content[0]  # [2, heads, Q, S]
    torch.testing.assert_close(spatial[0], spatial[1], rtol=0, atol=1e-6)
    assert (content[0] - content[1]).abs().max() > 1e-3
    assert (spatial.amax(-1) - spatial.amin(-1)).min() > 1e-3  # every row prefers some cells
    # the later layers' spatial query is scaled by the decoder embedding, which has seen the image
    assert (att.decoder_cross_spatial[1][0] - att.decoder_cross_spatial[1][1]).abs().max() > 1e-4


def test_the_inference_result_holds_the_maps_on_the_grid(models):
    from detr_core.analysis.capture import CROSS_CONTENT, CROSS_FULL, CROSS_SPATIAL, run_inference
    from detr_core.analysis.heatmaps import cross_attention_map

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 72, 3), dtype=np.uint8)
    result = run_inference(models["conditional_detr"], image, ["cat", "dog", "bird"])
    assert result.has_cross_parts
    assert result.cross_attention_of(CROSS_FULL) is result.cross_attention
    # one query's part is computed alone (what the heatmap asks for) and equals the whole part's row
    one = result.cross_attention_for(2, CROSS_SPATIAL)
    torch.testing.assert_close(result.cross_attention_for(2, CROSS_FULL), result.cross_attention[:, :, 2])
    spatial = result.cross_attention_of(CROSS_SPATIAL)
    torch.testing.assert_close(one, spatial[:, :, 2], rtol=0, atol=1e-7)
    assert result.cross_attention_of(CROSS_SPATIAL) is spatial  # computed once, then kept
    assert spatial.shape == result.cross_attention.shape == result.cross_attention_of(CROSS_CONTENT).shape
    product = result.cross_attention_content * spatial
    product = product / product.sum((-1, -2), keepdim=True)
    torch.testing.assert_close(product, result.cross_attention, rtol=0, atol=1e-5)
    heat = cross_attention_map(result, 2, 1, 0, smooth=False, part=CROSS_SPATIAL)
    np.testing.assert_array_equal(heat, spatial[1, 0, 2].numpy())
    with pytest.raises(ValueError, match="unknown part"):
        result.cross_attention_of("position")


def test_the_attention_panel_switches_between_the_full_and_the_spatial_query_map(qtbot, models, folders):
    """The panel, the image's heatmap and the attention grid on one AppState, as the window builds
    them (no window: fast)."""
    from fit import fit_in
    from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

    from detr_core.analysis.capture import CROSS_CONTENT, CROSS_FULL, CROSS_SPATIAL, run_inference
    from detr_core.analysis.heatmaps import cross_attention_map
    from detr_core.checkpoint import load_checkpoint
    from explorer.attention_grid import AttentionGrid
    from explorer.attention_panel import AttentionPanel
    from explorer.canvas import ImageView
    from explorer.state import AppState, LoadedModel

    ckpt, model = load_checkpoint(folders["conditional_detr"]), models["conditional_detr"]
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    result = run_inference(model, image, ckpt.class_names)
    state = AppState()
    state.set_model(LoadedModel(model, ckpt.class_names, ckpt.source, folders["conditional_detr"], ckpt))
    panel, canvas, grid = AttentionPanel(state), ImageView(state), AttentionGrid(state)
    assert panel.part.isHidden() and panel.part_caption.isHidden()  # before any result
    host = QWidget()  # pyqtgraph views inside a plain widget, as the window holds them
    qtbot.addWidget(host)
    layout = QVBoxLayout(host)
    for widget in (panel, canvas, grid):
        layout.addWidget(widget)
    host.resize(500, 900)
    host.show()
    state.set_threshold(0.0)
    state.set_image(image, "noise")
    state.set_result(result)
    QApplication.processEvents()
    heat = canvas.heat_item
    assert result.has_cross_parts and panel.part.isVisible() and panel.part_caption.isVisible()
    assert [panel.part.itemText(i) for i in range(panel.part.count())] == ["full", "content", "spatial query"]
    assert panel.part.currentText() == "full" and "content map times the spatial-query map" in \
        panel.part_caption.text()
    state.set_selected_query(3)
    panel.layer.setCurrentIndex(0)
    panel.head.setCurrentIndex(2)  # head 2 (index 0 is the mean)
    full = cross_attention_map(result, 3, 0, 1, smooth=True)
    np.testing.assert_allclose(heat.image, full, rtol=1e-5, atol=1e-9)

    panel.part.setCurrentIndex(2)  # the spatial query's map, drawn as the full one is
    assert state.cross_part == CROSS_SPATIAL and "multiplied by" in panel.part_caption.text()
    spatial = cross_attention_map(result, 3, 0, 1, smooth=True, part=CROSS_SPATIAL)
    assert np.abs(spatial - full).max() > 1e-3
    np.testing.assert_allclose(heat.image, spatial, rtol=1e-5, atol=1e-9)
    cell = next(c for c in grid.cells if c.query == 3)  # the grid draws the same part
    np.testing.assert_allclose(cell.heat.image, spatial, rtol=1e-5, atol=1e-9)
    assert "spatial query alone" in grid.note.text()
    panel.part.setCurrentIndex(1)
    np.testing.assert_allclose(heat.image, cross_attention_map(result, 3, 0, 1, True, CROSS_CONTENT),
                               rtol=1e-5, atol=1e-9)
    state.set_encoder_point((20.0, 30.0))  # the encoder's map has no such parts: no choice
    assert panel.part.isHidden() and panel.part_caption.isHidden()
    state.set_selected_query(3)  # back to the cross-attention, as the user left it
    assert not panel.part.isHidden() and panel.part.currentText() == "content"
    panel.part.setCurrentIndex(2)
    layout.removeWidget(panel)
    # the longest caption fits the Attention dock of a 1024x700 window and of a laptop's (as
    # tests/test_image_panels.py sizes them) without scrolling
    assert fit_in(panel, 340, 260).fits and fit_in(panel, 430, 290).fits

    # a model whose attention does not split (as DETR's results): no choice, the full map
    state.set_result(replace(result, cross_split=None))
    assert state.cross_part == CROSS_FULL and panel.part.isHidden() and panel.part_caption.isHidden()
    np.testing.assert_allclose(heat.image, full, rtol=1e-5, atol=1e-9)
