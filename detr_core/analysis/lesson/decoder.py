"""The decoder's questions, answered by experiment on one image: what the positional encoding
gives cross-attention, what decoder self-attention does against duplicates, and what NMS would
add to DETR's output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.ops import box_iou

from detr_core.analysis.capture import InferenceResult, run_inference
from detr_core.analysis.duplicates import duplicate_stats
from detr_core.analysis.layerwise import nms_predictions
from detr_core.analysis.lesson.interventions import (
    decoder_self_attention_off,
    positional_encoding_off,
)


def _peaks(result: InferenceResult, queries: list[int]) -> np.ndarray:
    """[N, 2] (cy, cx) normalized image coordinates of each query's last-layer cross-attention
    peak (mean over heads), at the peak cell's centre."""
    assert result.cross_attention is not None
    maps = result.cross_attention[-1].mean(0)[queries]  # [N, h, w]
    h, w = maps.shape[-2:]
    flat = maps.reshape(len(queries), -1).argmax(-1).numpy()
    i, j = np.divmod(flat, w)
    eh, ew = result.grid_extent()
    cy = (i + 0.5) / h * eh / result.image_size[0]
    cx = (j + 0.5) / w * ew / result.image_size[1]
    return np.stack([cy, cx], 1).astype(np.float32)


def _inside(points: np.ndarray, boxes_cxcywh: np.ndarray) -> np.ndarray:
    cy, cx = points[:, 0], points[:, 1]
    bx, by, bw, bh = boxes_cxcywh.T
    return (np.abs(cx - bx) <= bw / 2) & (np.abs(cy - by) <= bh / 2)


@dataclass
class PositionEffect:
    """Positional encoding on and off, for the queries kept with it on (N of them)."""

    queries: list[int]  # the kept queries, best first
    boxes_cxcywh: np.ndarray  # [N, 4] their boxes with the encoding on (normalized)
    peaks_on: np.ndarray  # [N, 2] (cy, cx) normalized: cross-attention peak with the encoding
    peaks_off: np.ndarray  # [N, 2] the same without it
    box_iou: np.ndarray  # [N] IoU of each query's box off vs on
    kept_on: int
    kept_off: int
    result_off: InferenceResult  # the inference without the encoding (for drawing)

    @property
    def peak_distance_on(self) -> float:
        """Mean distance, in image widths/heights, from each peak to its own box's centre."""
        return self._distance(self.peaks_on)

    @property
    def peak_distance_off(self) -> float:
        return self._distance(self.peaks_off)

    def _distance(self, peaks: np.ndarray) -> float:
        if not len(self.queries):
            return float("nan")
        centres = self.boxes_cxcywh[:, [1, 0]]
        return float(np.linalg.norm(peaks - centres, axis=1).mean())

    @property
    def inside_on(self) -> float:
        """Fraction of peaks inside their own box (encoding on)."""
        return float(_inside(self.peaks_on, self.boxes_cxcywh).mean()) if self.queries else float("nan")

    @property
    def inside_off(self) -> float:
        return float(_inside(self.peaks_off, self.boxes_cxcywh).mean()) if self.queries else float("nan")


def positional_encoding_experiment(
    model: nn.Module, image_rgb: np.ndarray, class_names: list[str], threshold: float = 0.5,
    result_on: InferenceResult | None = None,
) -> PositionEffect:
    """Inference with and without the positional encoding (zeroed at inference, weights as they
    are). The kept queries are those at or above ``threshold`` with the encoding on (the best
    query when none is)."""
    on = result_on if result_on is not None and result_on.cross_attention is not None else \
        run_inference(model, image_rgb, class_names)  # type: ignore[arg-type]
    with positional_encoding_off(model):
        off = run_inference(model, image_rgb, class_names)  # type: ignore[arg-type]
    queries = on.kept(threshold) or [int(on.scores.argmax())]
    iou = box_iou(on.boxes_xyxy[queries], off.boxes_xyxy[queries]).diag().numpy()
    return PositionEffect(
        queries=queries,
        boxes_cxcywh=on.boxes_cxcywh[queries].numpy().astype(np.float32),
        peaks_on=_peaks(on, queries),
        peaks_off=_peaks(off, queries),
        box_iou=iou.astype(np.float32),
        kept_on=len(on.kept(threshold)),
        kept_off=len(off.kept(threshold)),
        result_off=off,
    )


def _predictions(result: InferenceResult) -> dict[str, torch.Tensor]:
    return {"scores": result.scores, "labels": result.labels, "boxes": result.boxes_xyxy}


@dataclass
class DuplicateEffect:
    """Decoder self-attention kept and dropped at inference, on one image."""

    pairs_with: int  # duplicate pairs (same class, IoU > iou, both kept)
    pairs_without: int
    kept_with: int
    kept_without: int
    threshold: float
    iou: float
    result_without: InferenceResult

    @property
    def verdict(self) -> str:
        """"raised", "unchanged" or "lowered": what dropping self-attention did to the count."""
        if self.pairs_without > self.pairs_with:
            return "raised"
        return "unchanged" if self.pairs_without == self.pairs_with else "lowered"


def decoder_self_attention_experiment(
    model: nn.Module, image_rgb: np.ndarray, class_names: list[str], threshold: float = 0.5, iou: float = 0.5,
    result_with: InferenceResult | None = None,
) -> DuplicateEffect:
    """Count duplicate pairs with decoder self-attention and without it (dropped at inference)."""
    with_ = result_with if result_with is not None else run_inference(model, image_rgb, class_names)  # type: ignore[arg-type]
    with decoder_self_attention_off(model):
        without = run_inference(model, image_rgb, class_names)  # type: ignore[arg-type]
    a = duplicate_stats([_predictions(with_)], threshold, iou)
    b = duplicate_stats([_predictions(without)], threshold, iou)
    return DuplicateEffect(a.pairs, b.pairs, a.kept, b.kept, threshold, iou, without)


@dataclass
class NmsEffect:
    """Class-wise NMS applied to DETR's kept boxes."""

    kept: list[int]  # queries at or above the threshold, best first
    after_nms: list[int]  # those NMS keeps
    iou: float

    @property
    def removed(self) -> list[int]:
        return [q for q in self.kept if q not in self.after_nms]


def nms_experiment(result: InferenceResult, threshold: float = 0.5, iou: float = 0.7) -> NmsEffect:
    """What ``torchvision.ops.batched_nms`` at ``iou`` would remove from the kept boxes."""
    kept = result.kept(threshold)
    idx = torch.tensor(kept, dtype=torch.int64)
    preds = {"scores": result.scores[idx], "labels": result.labels[idx], "boxes": result.boxes_xyxy[idx],
             "query": idx}
    after = nms_predictions([preds], iou)[0]["query"].tolist()
    return NmsEffect(kept, [q for q in kept if q in after], iou)
