"""What the views draw of the families wrapped from transformers: D-FINE's edge distributions on
the query's box in "Layer by layer" (a bar per bin where the capture puts it, as tall as its
probability at the chosen layer), and where LW-DETR's queries started in "Query selection"; a
model without edge distributions shows nothing extra. Tiny random models; nothing is downloaded."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

pytest.importorskip("pytestqt")
pytest.importorskip("transformers")

from detr_core.analysis.capture import run_inference  # noqa: E402
from detr_core.data.images import prepare  # noqa: E402
from explorer.state import AppState, LoadedModel  # noqa: E402
from explorer.views.layers import EDGE_HEIGHT, EDGE_MIN_HEIGHT, LayerView  # noqa: E402
from explorer.views.query_selection import QuerySelectionView  # noqa: E402
from tests.test_hf_d_fine import tiny_d_fine  # noqa: E402
from tests.test_hf_lw_detr import tiny_lw_detr  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, a shared machine

H, W = 64, 96  # the photo, and the input: the folders' processors resize to it


def photo() -> np.ndarray:
    """[H, W, 3] uint8: two coloured rectangles on a gradient."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 2] = np.linspace(40, 160, W, dtype=np.uint8)[None]
    rgb[10:40, 12:44] = (220, 80, 40)
    rgb[28:58, 56:90] = (60, 200, 90)
    return rgb


def wrapped(hf) -> tuple[torch.nn.Module, list[str]]:
    """The explorer's model of a transformers detector (as opening its folder makes it, without the
    round trip through files: the views are tested here, not the opening), input resized to H x W."""
    from detr_core.model.hf_families import family_module
    from detr_core.model.hf_families.base import class_names

    hf_config = json.loads(hf.config.to_json_string())
    config = family_module(hf_config["model_type"]).build.detr_config(hf_config, (H, W))
    model = family_module(hf_config["model_type"]).build(config)
    model.detector.load_state_dict(hf.state_dict())
    return model.eval(), class_names(hf_config, config.num_classes)


@pytest.fixture(scope="module")
def d_fine():
    return wrapped(tiny_d_fine())


@pytest.fixture(scope="module")
def lw_detr():
    return wrapped(tiny_lw_detr())


def drawn_edge(view: LayerView, edge: int) -> tuple[np.ndarray, np.ndarray]:
    """(where each bar stands, its length) of one edge's bars, in image pixels, as drawn."""
    xs, ys = view.edge_bars[edge].getData()
    if edge in (0, 2):  # left, right: bars up or down from the box's middle row, along x
        return xs[::2], np.abs(ys[1::2] - ys[::2])
    return ys[::2], np.abs(xs[1::2] - xs[::2])  # top, bottom: bars from the box's middle column, along y


def shown(qtbot, model, names, views, size):
    """An AppState with ``model`` and its result on :func:`photo`, and the ``views`` (classes) on it,
    shown at ``size``: (state, the views, the image)."""
    state = AppState()
    made = tuple(cls(state) for cls in views)
    for view in made:
        qtbot.addWidget(view)
        view.resize(*size)
        view.show()
    rgb = photo()
    state.set_model(LoadedModel(model, names, "a tiny wrapped model"))
    state.set_image(rgb, "shapes")
    state.set_result(run_inference(model, rgb, names))
    return state, made, rgb


def test_d_fine_edge_distributions_are_drawn_on_the_query_box_per_layer(qtbot, d_fine):
    model, names = d_fine
    state, (view,), rgb = shown(qtbot, model, names, (LayerView,), (900, 500))
    result = state.result
    query = 3
    state.set_selected_query(query)
    assert view.edge_layer.isVisibleTo(view) and view.edge_layer.count() == 3  # none, L1, L2
    assert view.edge_layer_shown() == 1  # the last layer first

    with torch.no_grad():  # the capture itself, on the same input
        edges = model(prepare(rgb, H, W)[None], capture=True)["capture"].edge_distributions
    positions = (edges.bin_positions[0, query] * torch.tensor([W, H, W, H])[:, None]).numpy()  # [4, N] pixels
    lengths = []
    for layer in (1, 0):
        view.edge_layer.setCurrentIndex(layer + 1)
        assert f"Edge distributions at L{layer + 1}" in view.legend.text()
        probabilities = edges.probabilities[layer, 0, query].numpy()  # [4, N]
        drawn = []
        x0, y0, x1, y1 = result.layer_boxes_xyxy[layer, query].tolist()
        for e in range(4):
            where, length = drawn_edge(view, e)
            np.testing.assert_allclose(where, positions[e], rtol=1e-5, atol=1e-3)  # each bin where the capture puts it
            scale = max(EDGE_HEIGHT * (y1 - y0 if e in (0, 2) else x1 - x0), EDGE_MIN_HEIGHT * W)  # px per unit
            np.testing.assert_allclose(length / scale, probabilities[e], atol=1e-4)  # ... as long as its probability
            # the bars' expectation is that layer's box edge
            box_edge = float(result.layer_boxes_xyxy[layer, query, e])
            assert float((where * length).sum() / length.sum()) == pytest.approx(box_edge, abs=1e-2)
            drawn.append(length)
        lengths.append(np.concatenate(drawn))
    assert not np.allclose(lengths[0], lengths[1], atol=1e-3)  # the layer's own distributions

    view.edge_layer.setCurrentIndex(0)  # "none"
    assert all(len(drawn_edge(view, e)[0]) == 0 for e in range(4))
    assert "Edge distributions" not in view.legend.text()


def test_lw_detr_start_boxes_are_drawn_and_no_edge_distributions(qtbot, lw_detr):
    model, names = lw_detr
    state, (selection, layers), rgb = shown(qtbot, model, names, (QuerySelectionView, LayerView), (1000, 400))
    state.set_threshold(0.0)
    with torch.no_grad():
        start = model(prepare(rgb, H, W)[None], capture=True)["capture"].selection_boxes[0]  # [Q, 4] cxcywh
    cx, cy, w, h = start.unbind(-1)
    expected = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * torch.tensor([W, H, W, H])
    assert selection.pages.currentIndex() == 1
    for query in (2, 7):
        state.set_selected_query(query)
        xs, ys = selection.start_item.getData()
        assert (min(xs), min(ys), max(xs), max(ys)) == pytest.approx(tuple(expected[query].tolist()), abs=1e-3)
    assert "started from token" in selection.caption.text()

    # no edge distributions: no layer choice, nothing drawn on the box
    assert state.result.edge_distributions is None
    assert not layers.edge_layer.isVisibleTo(layers) and layers.edge_layer_shown() is None
    assert all(len(drawn_edge(layers, e)[0]) == 0 for e in range(4))
