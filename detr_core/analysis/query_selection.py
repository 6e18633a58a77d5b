"""Query selection, on the image: which encoder tokens became the decoder's queries, how the
encoder scored them, the box each query started from and where it ended.

Two-stage Deformable DETR, DINO-style anchors (the ``fast`` preset), RT-DETR, D-FINE, LW-DETR
and RF-DETR do not start the decoder from learned query embeddings: the encoder scores every
token (one cell of one feature level) and the Q best become the queries, each starting from its
token's proposal box. Their capture says which (``ModelCapture.selected_tokens``,
``selection_scores``, ``selection_boxes``); this module puts that on the image as given.

    sel = result.query_selection                 # from run_inference; None without query selection
    sel.centres_xy[q], sel.levels[q]             # (x, y) pixels of the cell query q started from, its level
    sel.scores[q]                                # the score the encoder ranked that token by
    sel.start_boxes_xyxy[q], sel.final_boxes_xyxy[q]   # where query q started and where it ended
    rows = selection_starts(result, result.kept(0.5))  # where each kept prediction started

A token's index runs over every level's cells, levels in the capture's order (finest first, the
order of ``SamplingPoints.shapes`` and ``strides``), row-major within a level. A cell's centre
is placed like :class:`~detr_core.analysis.deformable_capture.DeformableSampling`'s: a level's
map covers ``cells * stride`` input pixels (it may overhang the image by less than a cell).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from detr_core.box_ops import normalized_cxcywh_to_pixel_xyxy
from detr_core.model.capture_protocol import ModelCapture, SamplingPoints

if TYPE_CHECKING:
    from detr_core.analysis.capture import InferenceResult

# the families whose decoder queries are selected encoder tokens (what a view names when the
# open model has none)
QUERY_SELECTING_FAMILIES = ("two-stage Deformable DETR", "DINO-style anchors (the fast preset)", "RT-DETR",
                            "D-FINE", "LW-DETR", "RF-DETR")


@dataclass
class QuerySelection:
    """One image's selected tokens, in pixels of the image as given (Q = the decoder's queries)."""

    shapes: list[tuple[int, int]]  # (h_l, w_l) of each level's map, finest first
    level_extents: list[tuple[float, float]]  # (height, width) in image pixels each level's map covers
    tokens: Tensor  # [Q] long: the encoder token each query started from
    levels: Tensor  # [Q] long: its level (0 = finest)
    cells: Tensor  # [Q, 2] long: its (row, col) in that level's map
    centres_xy: Tensor  # [Q, 2] (x, y) image pixels: the centre of its cell
    scores: Tensor | None  # [Q] in [0, 1]: the score the selection ranked it by (None if not captured)
    start_boxes_xyxy: Tensor | None  # [Q, 4] image pixels: the proposal box the query started from
    final_boxes_xyxy: Tensor  # [Q, 4] image pixels: the box its last decoder layer predicts

    @property
    def num_queries(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def num_levels(self) -> int:
        return len(self.shapes)

    def level_counts(self) -> list[int]:
        """How many queries started on each level."""
        return torch.bincount(self.levels, minlength=self.num_levels).tolist()

    def ranks(self) -> Tensor:
        """[Q] long: each query's place in the selection's score order (0 = the best token)."""
        if self.scores is None:
            return torch.arange(self.num_queries)
        order = torch.argsort(self.scores, descending=True, stable=True)
        ranks = torch.empty_like(order)
        ranks[order] = torch.arange(self.num_queries)
        return ranks


def token_cells(shapes: list[tuple[int, int]], tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Tokens [N] (indices over all levels' cells) -> (level, row, col), each [N] long.
    Raises ValueError on an index outside the levels."""
    sizes = torch.tensor([h * w for h, w in shapes], dtype=torch.long)
    ends = sizes.cumsum(0)
    tokens = tokens.long().cpu()
    if len(tokens) and (int(tokens.min()) < 0 or int(tokens.max()) >= int(ends[-1])):
        raise ValueError(f"token index out of range: the levels {shapes} hold {int(ends[-1])} tokens")
    levels = torch.bucketize(tokens, ends, right=True)  # the first level whose end lies beyond the token
    local = tokens - (ends - sizes)[levels]
    widths = torch.tensor([w for _, w in shapes], dtype=torch.long)[levels]
    return levels, local // widths, local % widths


def level_extents(shapes: list[tuple[int, int]], strides: list[int], input_size: tuple[int, int],
                  image_size: tuple[int, int]) -> list[tuple[float, float]]:
    """(height, width) in pixels of the image as given that each level's map covers."""
    if len(strides) != len(shapes):
        raise ValueError(f"{len(shapes)} levels but {len(strides)} strides")
    sy = image_size[0] / input_size[0]
    sx = image_size[1] / input_size[1]
    return [(h * s * sy, w * s * sx) for (h, w), s in zip(shapes, strides)]


def query_selection(capture: ModelCapture, input_size: tuple[int, int], image_size: tuple[int, int],
                    strides: list[int] | None = None, index: int = 0) -> QuerySelection | None:
    """Image ``index`` of a capture's query selection, in pixels of the image as given; None when
    the model has no query selection.

    input_size: (H', W') of the model's input; image_size: (H, W) of the image as given;
    strides: input pixels per cell of each level (taken from the capture's sampling points; a
    dense capture, one level, needs the model's stride)."""
    if capture.selected_tokens is None:
        return None
    att = capture.attention
    if isinstance(att, SamplingPoints):
        shapes = list(att.shapes)
        strides = list(att.strides) if strides is None else strides
    else:
        shapes = [att.grid]
        if strides is None:
            raise ValueError("a dense capture's query selection needs the model's stride")
    extents = level_extents(shapes, strides, input_size, image_size)
    tokens = capture.selected_tokens[index].detach().long().cpu()  # [Q]
    levels, rows, cols = token_cells(shapes, tokens)
    ext = torch.tensor(extents, dtype=torch.float32)  # [levels, 2] (height, width)
    hw = torch.tensor(shapes, dtype=torch.float32)  # [levels, 2] (h, w)
    cell = ext[levels] / hw[levels]  # [Q, 2] (height, width) of one cell in pixels
    centres = torch.stack([(cols + 0.5) * cell[:, 1], (rows + 0.5) * cell[:, 0]], -1)  # [Q, 2] (x, y)
    h_img, w_img = image_size

    def pixels(boxes_cxcywh: Tensor) -> Tensor:
        return normalized_cxcywh_to_pixel_xyxy(boxes_cxcywh.detach().float().cpu(), h_img, w_img)

    scores = capture.selection_scores
    start = capture.selection_boxes
    return QuerySelection(
        shapes=shapes,
        level_extents=extents,
        tokens=tokens,
        levels=levels,
        cells=torch.stack([rows, cols], -1),
        centres_xy=centres,
        scores=scores[index].detach().float().cpu() if scores is not None else None,
        start_boxes_xyxy=pixels(start[index]) if start is not None else None,
        final_boxes_xyxy=pixels(capture.layer_boxes[-1, index]),
    )


@dataclass
class SelectionStart:
    """Where one prediction started: its query's token, and the box it moved from and to."""

    query: int
    label: str
    score: float  # the prediction's score
    token: int
    level: int  # 1 = the finest (as the views number levels)
    row: int
    col: int
    x: float  # the token's cell centre, image pixels
    y: float
    selection_score: float | None  # the score the selection ranked the token by
    selection_rank: int  # 1 = the best token of the selection
    start_box_xyxy: tuple[float, float, float, float] | None
    final_box_xyxy: tuple[float, float, float, float]
    start_iou: float | None  # IoU of the start and final boxes
    moved: float | None  # pixels between the start and final boxes' centres

    def as_dict(self) -> dict[str, Any]:
        row = asdict(self)
        for key in ("start_box_xyxy", "final_box_xyxy"):
            box = row.pop(key)
            for name, v in zip(("x0", "y0", "x1", "y1"), box or (None,) * 4):
                row[f"{key[:-5]}_{name}"] = v
        return row


def selection_starts(result: InferenceResult, queries: list[int] | None = None,
                     threshold: float = 0.5) -> list[SelectionStart]:
    """Where each of ``queries`` (default: the predictions at or above ``threshold``, best first)
    started. Empty when the result has no query selection."""
    sel = result.query_selection
    if sel is None:
        return []
    from torchvision.ops import box_iou  # here: the first picture does not import torchvision

    queries = result.kept(threshold) if queries is None else list(queries)
    ranks = sel.ranks()
    rows = []
    for q in queries:
        final = sel.final_boxes_xyxy[q]
        start = sel.start_boxes_xyxy[q] if sel.start_boxes_xyxy is not None else None
        iou = moved = None
        if start is not None:
            iou = float(box_iou(start[None], final[None])[0, 0])
            moved = float(torch.dist((start[:2] + start[2:]) / 2, (final[:2] + final[2:]) / 2))
        rows.append(SelectionStart(
            query=q, label=result.class_names[int(result.labels[q])], score=float(result.scores[q]),
            token=int(sel.tokens[q]), level=int(sel.levels[q]) + 1, row=int(sel.cells[q, 0]),
            col=int(sel.cells[q, 1]), x=float(sel.centres_xy[q, 0]), y=float(sel.centres_xy[q, 1]),
            selection_score=float(sel.scores[q]) if sel.scores is not None else None,
            selection_rank=int(ranks[q]) + 1,
            start_box_xyxy=tuple(float(v) for v in start) if start is not None else None,  # type: ignore[arg-type]
            final_box_xyxy=tuple(float(v) for v in final),  # type: ignore[arg-type]
            start_iou=iou, moved=moved,
        ))
    return rows
