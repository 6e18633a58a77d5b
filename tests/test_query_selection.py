"""Query selection on the image: the tokens a two-stage Deformable DETR (and the ``fast``
preset's DINO-style anchors) start its queries from, their levels, cells and pixel centres,
their scores, and the box each query started from, all consistent with the forward pass's own
encoder proposals."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from detr_core.analysis.capture import run_inference
from detr_core.analysis.query_selection import selection_starts, token_cells
from detr_core.box_ops import normalized_cxcywh_to_pixel_xyxy
from detr_core.model.detr import DETR
from detr_core.model.registry import build_model
from tests.test_deformable import tiny_deformable

NAMES = ["rectangle", "ellipse", "triangle"]
pytestmark = pytest.mark.usefixtures("one_thread")


def two_stage_model(moved: bool = True) -> torch.nn.Module:
    """A tiny two-stage Deformable DETR whose proposal-box head is the identity (a proposal is its
    token's cell: the positions can be checked against it) and whose decoder's box heads are
    random (queries move away from where they started)."""
    torch.manual_seed(0)
    cfg = replace(tiny_deformable(with_box_refine=True, two_stage=True), image_max_size=128, num_queries=6)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.class_embed[-1].weight.normal_(0, 1.0)  # proposal scores that differ from token to token
        model.bbox_embed[-1].layers[-1].weight.zero_()
        model.bbox_embed[-1].layers[-1].bias.zero_()
        if moved:
            for head in model.bbox_embed[:-1]:
                head.layers[-1].weight.normal_(0, 0.3)
    return model


def test_token_cells_match_counting_through_the_levels():
    shapes = [(3, 5), (2, 3), (1, 2)]
    every = [(lv, i, j) for lv, (h, w) in enumerate(shapes) for i in range(h) for j in range(w)]
    levels, rows, cols = token_cells(shapes, torch.arange(len(every)))
    assert list(zip(levels.tolist(), rows.tolist(), cols.tolist())) == every
    with pytest.raises(ValueError, match="out of range"):
        token_cells(shapes, torch.tensor([len(every)]))


def test_two_stage_selection_is_the_encoders_best_proposals_on_the_image():
    model = two_stage_model()
    rgb = (np.random.default_rng(0).random((32, 64, 3)) * 255).astype(np.uint8)  # resized 2x to 64x128
    with torch.no_grad():
        out = model(run_inference_input(model, rgb)[None], capture=True)
    cap = out["capture"]
    objectness = out["enc_outputs"]["pred_logits"][0, :, 0]  # [S] the score the selection ranks by
    best = objectness.topk(6).indices
    assert torch.equal(cap.selected_tokens[0], best)
    torch.testing.assert_close(cap.selection_scores[0], objectness[best].sigmoid())
    torch.testing.assert_close(cap.selection_boxes, cap.attention.decoder_references[0])  # where layer 1 starts
    torch.testing.assert_close(cap.selection_boxes[0], out["enc_outputs"]["pred_boxes"][0, best])

    result = run_inference(model, rgb, NAMES)
    sel = result.query_selection
    assert sel is not None and sel.shapes == [(8, 16), (4, 8), (2, 4), (1, 2)]
    assert torch.equal(sel.tokens, best)
    # a proposal is centred on its token's cell: the cell centres in pixels are the boxes' centres
    start = sel.start_boxes_xyxy
    torch.testing.assert_close(sel.centres_xy, (start[:, :2] + start[:, 2:]) / 2, atol=1e-3, rtol=0)
    # a level-l proposal is 0.05 * 2^l of the image wide: the levels read from the index agree
    widths = (start[:, 2] - start[:, 0]) / 64
    torch.testing.assert_close(widths, 0.05 * 2.0 ** sel.levels.float(), atol=1e-4, rtol=0)
    torch.testing.assert_close(sel.final_boxes_xyxy, result.boxes_xyxy)
    assert sorted(sel.scores.tolist(), reverse=True) == sel.scores.tolist()  # best first
    assert sum(sel.level_counts()) == 6

    rows = selection_starts(result, threshold=0.0)
    assert [r.query for r in rows] == result.kept(0.0) and len(rows) == 6
    r = rows[0]
    q = r.query
    assert (r.level - 1, r.row, r.col) == tuple(int(v) for v in (sel.levels[q], *sel.cells[q]))
    assert r.selection_rank == q + 1  # tokens come best first
    assert r.start_iou < 0.999 and r.moved > 0  # the random decoder moved the box
    assert selection_starts(result, threshold=1.01) == []
    assert "start_box_x0" in r.as_dict() and "final_box_y1" in r.as_dict()


def run_inference_input(model, rgb):
    from detr_core.data.images import prepare

    return prepare(rgb, model.config.image_min_size, model.config.image_max_size)


def test_dense_query_selection_is_reported_too(tiny_config):
    """The fast preset's DINO-style anchors: the dense head's best boxes on the one feature grid."""
    cfg = replace(tiny_config, query_type="anchor", dense_aux=True, classifier="focal", query_select=True)
    torch.manual_seed(0)
    model = DETR(cfg).eval()
    with torch.no_grad():
        model.dense_head.class_embed.weight.normal_(0, 1.0)
    rgb = (np.random.default_rng(1).random((32, 48, 3)) * 255).astype(np.uint8)  # resized to 64x96
    result = run_inference(model, rgb, NAMES)
    sel = result.query_selection
    assert sel is not None and sel.shapes == [result.feature_size] and sel.level_counts() == [cfg.num_queries]
    with torch.no_grad():
        out = model(run_inference_input(model, rgb)[None], capture=True)
        dense = model.dense_head(out["capture"].memory, result.feature_size)
    best_logit = dense["logits"][0].amax(-1)
    best = best_logit.topk(cfg.num_queries).indices
    assert torch.equal(sel.tokens, best)
    torch.testing.assert_close(sel.scores, best_logit[best].sigmoid())
    torch.testing.assert_close(sel.start_boxes_xyxy, normalized_cxcywh_to_pixel_xyxy(dense["boxes"][0, best], 32, 48))
    # the head's boxes start at their cells (its last layer is zero at first): centres agree
    start = sel.start_boxes_xyxy
    torch.testing.assert_close(sel.centres_xy, (start[:, :2] + start[:, 2:]) / 2, atol=1e-3, rtol=0)


def test_a_model_without_query_selection_reports_none(tiny_config):
    torch.manual_seed(0)
    rgb = np.zeros((32, 32, 3), np.uint8)
    for model in (DETR(tiny_config).eval(), build_model(tiny_deformable(with_box_refine=True)).eval()):
        result = run_inference(model, rgb, NAMES)
        assert result.query_selection is None and selection_starts(result) == []


@pytest.mark.parametrize("name", ["dino", "rt_detr"])
def test_mixed_query_selection_of_the_recipes_is_reported(name):
    """DINO's and RT-DETR's mixed query selection: the tokens, their scores and start boxes are the
    encoder proposals the queries' anchors were taken from."""
    from detr_core.presets import preset

    torch.manual_seed(0)
    cfg = replace(preset(name)[0], image_max_size=128, image_min_size=128)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 128, 128), capture=True)
    cap, enc = out["capture"], out["enc_outputs"]
    q = cfg.num_queries
    assert cap.selected_tokens.shape == (1, q) and cap.selection_scores.shape == (1, q)
    best = enc["pred_logits"].sigmoid().amax(-1)  # [1, S]
    assert torch.allclose(cap.selection_scores, best.gather(1, cap.selected_tokens))
    assert torch.allclose(cap.selection_scores[0], best[0].topk(q).values)  # the best q, best first
    starts = enc["pred_boxes"][0, cap.selected_tokens[0]]
    assert torch.allclose(cap.selection_boxes[0], starts)
    assert torch.allclose(cap.attention.decoder_references[0][0], starts, atol=1e-6)  # where layer 1 started
