"""Hungarian matching made visible: the cost matrix of one training sample, its optimal
assignment, and how stable the assignment is over training.

    snapshot = match_sample(model, criterion.matcher, dataset, index=3, step=trainer.step)
    snapshot.cost["giou"]            # [Q, M] -GIoU between every query and every object
    snapshot.matched_query(0)        # the query object 0 was assigned to

    stability = MatchingStability(dataset, num_images=16)
    stability.check(model, matcher, step)   # fraction of objects whose query changed (nan at first)

The assignment comes from the very matcher the loss uses, so what is shown is what is trained.
Everything here runs the model in eval mode without gradients and returns CPU numpy copies, so a
snapshot can be handed to another thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from detr_core.analysis.predict import evaluating, forward
from detr_core.box_ops import normalized_cxcywh_to_pixel_xyxy
from detr_core.config import LossConfig, TrainConfig
from detr_core.data.dataset import DetectionDataset
from detr_core.data.images import resize_tensor, to_uint8
from detr_core.data.toy import ToyShapes
from detr_core.model.matcher import HungarianMatcher
from detr_core.model.nested_tensor import NestedTensor
from detr_core.model.postprocess import class_probabilities, scores_and_labels

# Keys of HungarianMatcher.cost_parts, and the names people know them by.
COST_PARTS: tuple[str, ...] = ("total", "class", "bbox", "giou")
COST_PART_NAMES: dict[str, str] = {"total": "Total", "class": "Class", "bbox": "L1", "giou": "GIoU"}


@dataclass
class MatchingSnapshot:
    """The matching of one sample by one model state. Q queries, M ground-truth objects."""

    sample_index: int
    step: int | None  # training step of the weights, None for a model outside training
    image: np.ndarray  # [H, W, 3] uint8 RGB, the image as the model saw it
    cost: dict[str, np.ndarray]  # COST_PARTS -> [Q, M] float32; parts unweighted, "total" weighted
    weights: dict[str, float]  # "class", "bbox", "giou": the weights of the total
    query_indices: np.ndarray  # [K] int64, K = min(Q, M): assigned queries, ordered by object
    target_indices: np.ndarray  # [K] int64: the objects they are assigned to
    pred_boxes_cxcywh: np.ndarray  # [Q, 4] float32 cxcywh in [0, 1]
    pred_scores: np.ndarray  # [Q] float32, best real-class probability
    pred_labels: np.ndarray  # [Q] int64, best real class
    target_labels: np.ndarray  # [M] int64
    target_boxes_cxcywh: np.ndarray  # [M, 4] float32 cxcywh in [0, 1]
    class_names: list[str] = field(default_factory=list)
    image_id: int = -1  # a dataset image's own id (-1: a toy sample)
    image_name: str = ""  # a dataset image's file name ("": a toy sample)

    @property
    def num_queries(self) -> int:
        return int(self.pred_boxes_cxcywh.shape[0])

    @property
    def num_targets(self) -> int:
        return int(self.target_labels.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    def class_name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else str(label)

    def matched_query(self, target: int) -> int | None:
        """The query assigned to object ``target`` (None when there are more objects than queries)."""
        hits = np.flatnonzero(self.target_indices == target)
        return int(self.query_indices[hits[0]]) if len(hits) else None

    def matched_queries(self) -> np.ndarray:
        """[M] int64: the query of every object, -1 where none was assigned."""
        out = np.full(self.num_targets, -1, dtype=np.int64)
        out[self.target_indices] = self.query_indices
        return out

    def assignment_matrix(self) -> np.ndarray:
        """[Q, M] bool, True at the assigned (query, object) cells."""
        mask = np.zeros((self.num_queries, self.num_targets), dtype=bool)
        mask[self.query_indices, self.target_indices] = True
        return mask

    def matched_cost(self, part: str = "total") -> float:
        """Sum of ``part`` over the assigned cells (the Hungarian objective for "total")."""
        return float(self.cost[part][self.query_indices, self.target_indices].sum())

    def pred_boxes_xyxy(self) -> np.ndarray:
        """[Q, 4] xyxy in pixels of :attr:`image`."""
        h, w = self.image_size
        return normalized_cxcywh_to_pixel_xyxy(torch.from_numpy(self.pred_boxes_cxcywh), h, w).numpy()

    def target_boxes_xyxy(self) -> np.ndarray:
        """[M, 4] xyxy in pixels of :attr:`image`."""
        h, w = self.image_size
        return normalized_cxcywh_to_pixel_xyxy(torch.from_numpy(self.target_boxes_cxcywh), h, w).numpy()

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per (query, object) cell: every cost part and whether it was assigned."""
        assigned = self.assignment_matrix()
        out = []
        for q in range(self.num_queries):
            for m in range(self.num_targets):
                row: dict[str, Any] = {
                    "sample": self.sample_index,
                    **({"image_id": self.image_id, "image": self.image_name} if self.image_name else {}),
                    "step": self.step if self.step is not None else "",
                    "query": q,
                    "object": m,
                    "object_class": self.class_name(int(self.target_labels[m])),
                }
                row.update({COST_PART_NAMES[p]: float(self.cost[p][q, m]) for p in COST_PARTS})
                row["assigned"] = bool(assigned[q, m])
                out.append(row)
        return out


def _eval_outputs(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """Last-layer outputs of ``model`` on ``images`` [B, 3, H, W] in eval mode, on CPU, float32."""
    with evaluating(model):
        out = forward(model, images)
    return {"pred_logits": out["pred_logits"].detach().float().cpu(),  # [B, Q, C]
            "pred_boxes": out["pred_boxes"].detach().float().cpu()}  # [B, Q, 4] cxcywh in [0, 1]


def match_image(
    model: nn.Module,
    matcher: HungarianMatcher,
    image: Tensor,
    target: dict[str, Tensor],
    sample_index: int = -1,
    step: int | None = None,
    class_names: Sequence[str] = (),
) -> MatchingSnapshot:
    """Cost parts and optimal assignment of one image with its ground truth, from a dataset or
    not (see :func:`match_sample` for a dataset's).

    image: [3, H, W] ImageNet-normalized; target: "labels" [M], "boxes" [M, 4] cxcywh in [0, 1].
    """
    out = _eval_outputs(model, image[None])
    logits, boxes = out["pred_logits"][0], out["pred_boxes"][0]  # [Q, C], [Q, 4]
    labels = target["labels"].cpu().long()  # [M]
    target_boxes = target["boxes"].cpu().float()  # [M, 4]
    parts = matcher.cost_parts(logits, boxes, labels, target_boxes)  # each [Q, M]
    (rows, cols), = matcher(out, [{"labels": labels, "boxes": target_boxes}])
    order = torch.argsort(cols)
    scores, pred_labels = scores_and_labels(class_probabilities(logits, matcher.classifier))
    return MatchingSnapshot(
        sample_index=int(sample_index),
        step=step,
        image=to_uint8(image),
        cost={k: parts[k].float().numpy().astype(np.float32) for k in COST_PARTS},
        weights={"class": matcher.cost_class, "bbox": matcher.cost_bbox, "giou": matcher.cost_giou},
        query_indices=rows[order].cpu().numpy().astype(np.int64),
        target_indices=cols[order].cpu().numpy().astype(np.int64),
        pred_boxes_cxcywh=boxes.numpy().astype(np.float32),
        pred_scores=scores.numpy().astype(np.float32),
        pred_labels=pred_labels.numpy().astype(np.int64),
        target_labels=labels.numpy().astype(np.int64),
        target_boxes_cxcywh=target_boxes.numpy().astype(np.float32),
        class_names=list(class_names),
    )


def match_sample(
    model: nn.Module, matcher: HungarianMatcher, dataset: DetectionDataset, index: int, step: int | None = None,
    model_labels: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
    at_model_size: bool = False,
) -> MatchingSnapshot:
    """:func:`match_image` on sample ``index`` of a dataset: the toy training stream, or a COCO /
    VOC split resized as training evaluates (an image read from a file keeps its id and name).
    With ``at_model_size`` the image is first resized as the model infers a photo (its
    ``image_min_size``/``image_max_size``), as the Matching view does for an opened model: one
    opened at 640 px (RT-DETR, LW-DETR, with 300 queries to fill from its feature cells) sees a
    128 px toy sample at its own size. Off, a training run's probe sees the sample as trained.

    ``model_labels``: the model's label of each dataset label, when the model's classes are
    ordered otherwise (None: the same); ``class_names`` then the model's names."""
    images, targets = dataset.batch([index])
    # a file dataset's batch is a NestedTensor; a batch of one has no padding
    image = images.tensors[0] if isinstance(images, NestedTensor) else images[0]
    cfg = getattr(model, "config", None)
    if at_model_size and cfg is not None:
        image = resize_tensor(image, cfg.image_min_size, cfg.image_max_size, cfg.fixed_input_size)  # boxes are relative: unchanged
    target = targets[0]
    if model_labels is not None:
        target = {**target, "labels": torch.as_tensor(list(model_labels), dtype=torch.int64)[target["labels"]]}
    snapshot = match_image(model, matcher, image, target, index, step,
                           dataset.class_names if class_names is None else class_names)
    file_name = dataset.annotations(index).file_name
    if file_name:  # an image read from a file: say which
        snapshot.image_id = int(target["image_id"])
        snapshot.image_name = file_name
    return snapshot


@dataclass
class StabilityPoint:
    step: int | None
    changed_fraction: float  # in [0, 1]; nan at the first check (nothing to compare with)
    changed: int  # objects whose assigned query differs from the previous check
    objects: int  # ground-truth objects in the probe set


class MatchingStability:
    """The assignment of a fixed probe set, compared from one check to the next.

    DN-DETR (Li et al., 2022) traces DETR's slow convergence partly to this instability: the
    query an object is matched to keeps changing, so queries keep being asked for different
    things. Not thread-safe: create and check it on one thread (the training thread).
    """

    def __init__(self, dataset: DetectionDataset, num_images: int = 16, indices: Sequence[int] | None = None) -> None:
        chosen = list(indices) if indices is not None else list(range(num_images))
        self.indices = chosen
        self.images, self.targets = dataset.batch(chosen)  # [B, 3, H, W], targets cxcywh in [0, 1]
        self.previous: list[np.ndarray] | None = None  # per image [M_i] query per object, -1 = none
        self.history: list[StabilityPoint] = []

    @property
    def num_objects(self) -> int:
        return sum(len(t["labels"]) for t in self.targets)

    def assignment(self, model: nn.Module, matcher: HungarianMatcher, batch_size: int = 16) -> list[np.ndarray]:
        """Per probe image, [M_i] int64: the query each object is matched to (-1 = unmatched)."""
        result: list[np.ndarray] = []
        for start in range(0, len(self.indices), batch_size):
            images = self.images[start : start + batch_size] if isinstance(self.images, Tensor) else NestedTensor(
                self.images.tensors[start : start + batch_size], self.images.mask[start : start + batch_size])
            targets = [{"labels": t["labels"], "boxes": t["boxes"]} for t in self.targets[start : start + batch_size]]
            out = _eval_outputs(model, images)
            for (rows, cols), t in zip(matcher(out, targets), targets):
                per_object = np.full(len(t["labels"]), -1, dtype=np.int64)
                per_object[cols.cpu().numpy()] = rows.cpu().numpy()
                result.append(per_object)
        return result

    def check(self, model: nn.Module, matcher: HungarianMatcher, step: int | None = None) -> float:
        """Match the probe set with the model now; the fraction of objects whose query changed
        since the previous check (nan at the first check). Appends to :attr:`history`."""
        current = self.assignment(model, matcher)
        objects = int(sum(len(a) for a in current))
        if self.previous is None:
            changed, fraction = 0, math.nan
        else:
            changed = int(sum(int((a != b).sum()) for a, b in zip(current, self.previous)))
            fraction = changed / objects if objects else 0.0
        self.previous = current
        point = StabilityPoint(step, fraction, changed, objects)
        self.history.append(point)
        return fraction

    def reset(self) -> None:
        self.previous = None
        self.history = []


class MatchingProbe:
    """A training probe (see :mod:`detr_core.train.live`): match one sample of the training stream with
    the live model. Picklable; ``sample_index`` and ``active`` can be changed while it runs."""

    def __init__(self, sample_index: int = 0) -> None:
        self.sample_index = sample_index
        self.active = True

    def __call__(self, trainer: Any) -> MatchingSnapshot | None:
        if not self.active:
            return None
        return match_sample(trainer.model, trainer.criterion.matcher, trainer.dataset,
                            self.sample_index, trainer.step)


class StabilityProbe:
    """A training probe: re-match the first ``num_images`` images of the training stream and
    report the :class:`StabilityPoint` (None when inactive or when the step has not moved)."""

    def __init__(self, num_images: int = 16) -> None:
        self.num_images = num_images
        self.active = True
        self.stability: MatchingStability | None = None  # made on first use, in the trainer's process

    def __call__(self, trainer: Any) -> StabilityPoint | None:
        if not self.active:
            return None
        if self.stability is None:
            self.stability = MatchingStability(trainer.dataset, self.num_images)
        elif self.stability.history and self.stability.history[-1].step == trainer.step:
            return None  # the final call repeats the last step: nothing changed
        self.stability.check(trainer.model, trainer.criterion.matcher, trainer.step)
        return self.stability.history[-1]


def matcher_for(model: nn.Module, loss_config: LossConfig | None) -> HungarianMatcher:
    """The matcher training uses for this model and loss configuration."""
    lc = loss_config or LossConfig()
    return HungarianMatcher(lc.cost_class, lc.cost_bbox, lc.cost_giou, model.config.classifier,  # type: ignore[attr-defined]
                            lc.focal_alpha, lc.focal_gamma, lc.matcher)


def training_stream(train_config: TrainConfig) -> ToyShapes:
    """The toy stream a run with ``train_config`` trains on: sample ``i`` here is the sample
    ``i`` the trainer saw (and the index the probes use while following that run)."""
    return ToyShapes(train_config.data, seed=train_config.seed, split="train")
