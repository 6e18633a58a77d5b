"""Query specialization (the paper's Figure 7): where each query slot puts its boxes.

Run the detector over a set of images, keep every slot's prediction on every image, and
summarise each slot: which class it mostly predicts, where its box centres fall (mean and
spread), how often it predicts an object at all. Points are coloured by box size and shape as
in the paper: small boxes, large wide boxes and large tall boxes (:class:`BoxSize`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

import torch
from torch import Tensor, nn

from detr_core.analysis.predict import batches, evaluating, forward
from detr_core.cancel import Progress
from detr_core.model.postprocess import class_probabilities, scores_and_labels

# A box is "large" when the geometric mean of its sides, sqrt(w * h), is at least this fraction
# of the image side (area >= 1/16 of the image). On the toy shapes (sides 0.12 to 0.42) this
# splits objects roughly in half; on COCO it sits near the "large" area bucket at 800 px.
LARGE_SIDE = 0.25


class BoxSize(IntEnum):
    """Figure 7's colour code: green = small, red = large and wide, blue = large and tall."""

    SMALL = 0
    LARGE_WIDE = 1  # large, w >= h
    LARGE_TALL = 2  # large, h > w


def size_category(w: float, h: float, large_side: float = LARGE_SIDE) -> BoxSize:
    """One box's category; w, h normalized to the image side ([0, 1])."""
    if math.sqrt(max(w, 0.0) * max(h, 0.0)) < large_side:
        return BoxSize.SMALL
    return BoxSize.LARGE_WIDE if w >= h else BoxSize.LARGE_TALL


def size_categories(boxes_cxcywh: Tensor, large_side: float = LARGE_SIDE) -> Tensor:
    """[..., 4] cxcywh in [0, 1] -> [...] int64 :class:`BoxSize` values (same rule as above)."""
    w = boxes_cxcywh[..., 2].clamp(min=0)
    h = boxes_cxcywh[..., 3].clamp(min=0)
    large = (w * h).sqrt() >= large_side
    out = torch.full(w.shape, int(BoxSize.SMALL), dtype=torch.long, device=w.device)
    out[large & (w >= h)] = int(BoxSize.LARGE_WIDE)
    out[large & (h > w)] = int(BoxSize.LARGE_TALL)
    return out


class ImageBatches(Protocol):
    """Anything that hands out batches of model-ready images: the toy splits, a loaded dataset.

    ``batch(indices)`` returns [B, 3, H, W] normalized images (or a list of [3, H_i, W_i]) and
    one target dict per image (ignored here).
    """

    def __len__(self) -> int: ...

    def batch(self, indices: Sequence[int]) -> tuple[Tensor | list[Tensor], list[dict[str, Tensor]]]: ...


@dataclass
class SlotPredictions:
    """Every query slot's last-layer prediction on every image (B images, Q slots)."""

    boxes_cxcywh: Tensor  # [B, Q, 4] cxcywh in [0, 1], relative to each image
    scores: Tensor  # [B, Q] probability of the best real class
    labels: Tensor  # [B, Q] int64 best real class
    is_object: Tensor  # [B, Q] bool: the best real class beats "no object" (focal: score > 0.5)

    def __post_init__(self) -> None:
        n, q = self.scores.shape
        if self.boxes_cxcywh.shape != (n, q, 4) or self.labels.shape != (n, q) or self.is_object.shape != (n, q):
            raise ValueError("SlotPredictions: need boxes [B, Q, 4] and scores, labels, is_object [B, Q]")

    @property
    def num_images(self) -> int:
        return int(self.scores.shape[0])

    @property
    def num_queries(self) -> int:
        return int(self.scores.shape[1])

    def shown(self, confident_only: bool, threshold: float) -> Tensor:
        """[B, Q] bool: the predictions a plot shows (all of them, or only score >= threshold)."""
        if confident_only:
            return self.scores >= threshold
        return torch.ones_like(self.is_object)

    def size_categories(self, large_side: float = LARGE_SIDE) -> Tensor:
        """[B, Q] int64 :class:`BoxSize` of every prediction."""
        return size_categories(self.boxes_cxcywh, large_side)


def collect_slot_predictions(
    model: nn.Module,
    dataset: ImageBatches,
    num_images: int,
    batch_size: int = 50,
    progress: Progress | None = None,
) -> SlotPredictions:
    """Run ``model`` over the first ``num_images`` images of ``dataset``, keeping every slot.

    The model is only read (see :func:`~detr_core.analysis.predict.evaluating`).
    ``progress(done, total)`` is called before the first batch and after each one; it cancels
    the collection by raising :class:`~detr_core.cancel.Cancelled`.
    """
    num_images = min(int(num_images), len(dataset))
    if num_images < 1:
        raise ValueError("collect_slot_predictions needs at least one image")
    classifier = model.config.classifier  # type: ignore[attr-defined]
    boxes, scores, labels, objects = [], [], [], []
    with evaluating(model):
        for idx in batches(num_images, batch_size, progress):
            images, _ = dataset.batch(idx)
            out = forward(model, images)
            probs = class_probabilities(out["pred_logits"].cpu(), classifier)  # [B, Q, K + 1]
            s, lab = scores_and_labels(probs)  # [B, Q], [B, Q]
            boxes.append(out["pred_boxes"].float().cpu())  # [B, Q, 4] cxcywh in [0, 1]
            scores.append(s)
            labels.append(lab)
            objects.append(s > probs[..., -1])
    return SlotPredictions(torch.cat(boxes), torch.cat(scores), torch.cat(labels), torch.cat(objects))


@dataclass
class SlotSummary:
    """One query slot over all images. Centres and sizes are normalized to the image side."""

    query: int
    shown: int  # predictions plotted (all images, or only the confident ones)
    objects: int  # images on which the slot predicts an object
    object_frequency: float  # objects / images, in [0, 1]
    dominant_class: str | None  # most frequent class among the shown object predictions
    dominant_share: float  # its share of them, in [0, 1] (0 when there are none)
    mean_cx: float  # NaN when nothing is shown
    mean_cy: float
    std_cx: float  # standard deviation of the shown centres (0 for a single point)
    std_cy: float
    spread: float  # sqrt(std_cx^2 + std_cy^2): RMS distance of the centres from their mean
    small: float  # shares of the shown boxes per BoxSize, summing to 1 (0 when nothing shown)
    large_wide: float
    large_tall: float

    @property
    def never_predicts(self) -> bool:
        """The slot says "no object" on every image."""
        return self.objects == 0

    def to_row(self) -> dict[str, object]:
        """Flat values for CSV / JSON; NaN (nothing shown) becomes None."""
        row = {
            "query": self.query, "shown": self.shown, "objects": self.objects,
            "object_frequency": self.object_frequency, "never_predicts": self.never_predicts,
            "dominant_class": self.dominant_class or "", "dominant_share": self.dominant_share,
            "mean_cx": self.mean_cx, "mean_cy": self.mean_cy, "std_cx": self.std_cx, "std_cy": self.std_cy,
            "spread": self.spread, "small": self.small, "large_wide": self.large_wide,
            "large_tall": self.large_tall,
        }
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def slot_summaries(
    preds: SlotPredictions,
    class_names: Sequence[str],
    confident_only: bool = False,
    threshold: float = 0.5,
    large_side: float = LARGE_SIDE,
) -> list[SlotSummary]:
    """One :class:`SlotSummary` per query slot.

    Centres, spread and size shares use the shown predictions (``SlotPredictions.shown``); the
    dominant class uses those among them that are objects; the object frequency always counts
    every image, whatever the filter.
    """
    shown = preds.shown(confident_only, threshold)  # [B, Q]
    sizes = preds.size_categories(large_side)  # [B, Q]
    centres = preds.boxes_cxcywh[..., :2]  # [B, Q, 2]
    n = max(preds.num_images, 1)
    out = []
    for q in range(preds.num_queries):
        mask = shown[:, q]
        xy = centres[mask, q]  # [M, 2]
        m = int(mask.sum())
        if m:
            mean = xy.mean(0)
            std = xy.std(0, unbiased=False)
            shares = torch.bincount(sizes[mask, q], minlength=len(BoxSize)).float() / m
        else:
            mean = torch.full((2,), math.nan)
            std = torch.full((2,), math.nan)
            shares = torch.zeros(len(BoxSize))
        obj = preds.is_object[:, q]
        object_labels = preds.labels[mask & obj, q]
        dominant, share = None, 0.0
        if len(object_labels):
            counts = torch.bincount(object_labels)
            best = int(counts.argmax())
            dominant = class_names[best] if best < len(class_names) else f"class {best}"
            share = float(counts[best]) / len(object_labels)
        out.append(SlotSummary(
            query=q, shown=m, objects=int(obj.sum()), object_frequency=float(obj.sum()) / n,
            dominant_class=dominant, dominant_share=share,
            mean_cx=float(mean[0]), mean_cy=float(mean[1]), std_cx=float(std[0]), std_cy=float(std[1]),
            spread=float(std.pow(2).sum().sqrt()),
            small=float(shares[BoxSize.SMALL]), large_wide=float(shares[BoxSize.LARGE_WIDE]),
            large_tall=float(shares[BoxSize.LARGE_TALL]),
        ))
    return out
