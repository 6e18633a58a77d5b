"""Counting beyond training (the paper's Figures 5 and 12).

Draw toy images with a fixed number of objects, from one up to more than any training image
held and up to more than the model has queries, run the detector, and compare the number of
confident detections with the true count. A DETR can never detect more objects than it has
query slots, so past ``num_queries`` the detected count must flatten.

A COCO or VOC split cannot draw images with exactly N objects, but its images can be grouped by
their ground-truth object count (:func:`count_dataset`): per count, the mean number of
confident predictions and the count error answer the same question on real images.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from torchvision.ops import box_iou

from detr_core.analysis.predict import batches, evaluating, forward
from detr_core.box_ops import cxcywh_to_xyxy
from detr_core.cancel import Progress
from detr_core.config import ToyDataConfig
from detr_core.data.files import FileDataset
from detr_core.data.images import to_tensor
from detr_core.data.toy import ToySample, ToyShapes
from detr_core.model.postprocess import class_probabilities, scores_and_labels

# Objects per image area that a crowded image aims at: n objects of side s with n * s^2 <= 0.4
# still leave the random placement room to put every one of them down.
CROWD_DENSITY = 0.4
PLACEMENT_ATTEMPTS = 20  # images drawn per wanted image until one holds every asked object
MATCH_IOU = 0.5  # a detection is correct if matched one-to-one to a same-class object at this IoU


def crowded_config(base: ToyDataConfig | None, max_count: int) -> ToyDataConfig:
    """The toy config of the counting images: ``base`` (the training data) with object sides
    shrunk just enough that ``max_count`` objects fit, and at most the training's largest side.
    The same sizes serve every count, so the count is the only thing that changes."""
    base = base or ToyDataConfig()
    max_side = min(base.max_side, math.sqrt(CROWD_DENSITY / max(max_count, 1)))
    max_side = max(max_side, 4 / base.image_size)  # at least a few pixels wide
    return ToyDataConfig(
        image_size=base.image_size,
        min_objects=0,
        max_objects=max(max_count, 0),
        classes=base.classes,
        min_side=min(base.min_side, max_side),
        max_side=max_side,
        max_overlap=base.max_overlap,
        noise=base.noise,
    )


@dataclass
class CountRow:
    """One image."""

    asked: int  # objects the image was drawn with
    true_count: int  # objects actually placed (less than asked only if they did not fit)
    detected: int  # predictions with score >= threshold (never more than the number of queries)
    correct: int  # detections matched one-to-one to a same-class object with IoU >= MATCH_IOU
    image: int  # index of the image among those of its count (a dataset's: its index in the split)
    image_id: int = -1  # a dataset image's own id (-1: a drawn toy image)

    @property
    def error(self) -> int:
        """Detected minus true count (negative: objects missed)."""
        return self.detected - self.true_count

    def to_row(self) -> dict[str, int]:
        row = {"asked": self.asked, "true_count": self.true_count, "detected": self.detected,
               "correct": self.correct, "image": self.image}
        if self.image_id >= 0:
            row["image_id"] = self.image_id
        return row


@dataclass
class CountMean:
    """All images with the same true count."""

    true_count: int
    images: int
    mean_detected: float
    std_detected: float
    mean_correct: float

    @property
    def mean_error(self) -> float:
        """Mean detected minus true count."""
        return self.mean_detected - self.true_count


@dataclass
class CountingResult:
    rows: list[CountRow]
    num_queries: int  # the model's query slots: the most it can ever detect
    threshold: float  # score threshold of a detection
    train_max_objects: int | None  # most objects in a training image, when known
    data_config: ToyDataConfig | None  # the config the counting images were drawn with (None: a dataset's)
    data_name: str = ""  # the dataset whose images were grouped by count ("": drawn toy images)

    @property
    def grouped(self) -> bool:
        """True for real images grouped by their count, False for toy images drawn with it."""
        return self.data_config is None

    def means(self) -> list[CountMean]:
        """Per true count, ascending."""
        by_count: dict[int, list[CountRow]] = {}
        for row in self.rows:
            by_count.setdefault(row.true_count, []).append(row)
        out = []
        for count in sorted(by_count):
            group = by_count[count]
            detected = np.array([r.detected for r in group], dtype=float)
            out.append(CountMean(count, len(group), float(detected.mean()), float(detected.std()),
                                 float(np.mean([r.correct for r in group]))))
        return out


def draw_count(dataset: ToyShapes, count: int, image: int) -> ToySample:
    """Image number ``image`` with exactly ``count`` objects if the placement allows: draws up to
    PLACEMENT_ATTEMPTS samples of ``dataset`` and keeps the first full one (else the fullest)."""
    best: ToySample | None = None
    for attempt in range(PLACEMENT_ATTEMPTS):
        sample = dataset.sample(image * PLACEMENT_ATTEMPTS + attempt)
        if best is None or len(sample.labels) > len(best.labels):
            best = sample
        if len(sample.labels) >= count:
            break
    assert best is not None
    return best


def correct_detections(
    boxes_cxcywh: Tensor, labels: Tensor, true_boxes_xyxy: Tensor, true_labels: Tensor, iou: float = MATCH_IOU
) -> int:
    """Detections that a one-to-one matching pairs with a same-class true object at IoU >= iou.

    boxes_cxcywh [N, 4] in [0, 1], labels [N]; true_boxes_xyxy [M, 4] in [0, 1], true_labels [M].
    """
    return correct_xyxy(cxcywh_to_xyxy(boxes_cxcywh), labels, true_boxes_xyxy, true_labels, iou)


def correct_xyxy(boxes_xyxy: Tensor, labels: Tensor, true_boxes_xyxy: Tensor, true_labels: Tensor,
                 iou: float = MATCH_IOU) -> int:
    """:func:`correct_detections` with both sets of boxes xyxy in the same units (pixels, say)."""
    if len(boxes_xyxy) == 0 or len(true_boxes_xyxy) == 0:
        return 0
    overlap = box_iou(boxes_xyxy.float(), true_boxes_xyxy.float())  # [N, M]
    overlap = overlap * (labels[:, None] == true_labels[None, :])
    rows, cols = linear_sum_assignment(overlap.numpy(), maximize=True)
    return int((overlap[rows, cols] >= iou).sum())


def count_objects(
    model: nn.Module,
    counts: Sequence[int],
    images_per_count: int = 10,
    threshold: float = 0.5,
    data_config: ToyDataConfig | None = None,
    train_max_objects: int | None = None,
    batch_size: int = 50,
    seed: int = 0,
    progress: Progress | None = None,
) -> CountingResult:
    """Detected against true count on crowded toy images (see :func:`crowded_config`).

    ``data_config`` is the training data's config (image size, classes, sizes); ``counts`` the
    object counts to draw, ``images_per_count`` images each. The model is only read (see
    :func:`~detr_core.analysis.predict.evaluating`). ``progress(done, total)`` is called before
    the first batch and after each one, and cancels by raising :class:`~detr_core.cancel.Cancelled`.
    """
    counts = [int(c) for c in counts]
    if not counts or min(counts) < 0 or images_per_count < 1:
        raise ValueError("count_objects needs non-negative counts and at least one image per count")
    config = crowded_config(data_config, max(counts))
    datasets = {
        c: ToyShapes(dataclasses.replace(config, min_objects=c, max_objects=c), seed, split=f"counting-{c}")
        for c in sorted(set(counts))
    }
    jobs = [(c, j) for c in counts for j in range(images_per_count)]
    classifier = model.config.classifier  # type: ignore[attr-defined]
    size = config.image_size
    rows: list[CountRow] = []
    with evaluating(model):
        for idx in batches(len(jobs), batch_size, progress):
            chunk = jobs[idx.start : idx.stop]
            samples = [draw_count(datasets[c], c, j) for c, j in chunk]
            images = to_tensor(np.stack([s.image for s in samples]))  # [B, 3, H, W]
            out = forward(model, images)
            probs = class_probabilities(out["pred_logits"].cpu(), classifier)  # [B, Q, K + 1]
            scores, labels = scores_and_labels(probs)  # [B, Q]
            boxes = out["pred_boxes"].float().cpu()  # [B, Q, 4] cxcywh in [0, 1]
            for (c, j), sample, s, lab, bx in zip(chunk, samples, scores, labels, boxes):
                keep = s >= threshold
                true_xyxy = torch.from_numpy(sample.boxes_xyxy) / size  # [M, 4] in [0, 1]
                true_labels = torch.from_numpy(sample.labels)
                rows.append(CountRow(c, len(sample.labels), int(keep.sum()),
                                     correct_detections(bx[keep], lab[keep], true_xyxy, true_labels), j))
    num_queries = int(model.config.num_queries)  # type: ignore[attr-defined]
    return CountingResult(rows, num_queries, float(threshold), train_max_objects, config)


def count_dataset(
    model: nn.Module,
    dataset: FileDataset,
    num_images: int | None = None,
    threshold: float = 0.5,
    train_max_objects: int | None = None,
    label_map: list[int] | None = None,
    batch_size: int = 8,
    progress: Progress | None = None,
    data_name: str = "",
) -> CountingResult:
    """Detected against true count on a COCO or VOC split (resized as the model infers), its
    images grouped by their ground-truth object count (crowd / difficult objects not counted).

    ``num_images`` None: the whole split (an unreadable image is left out). ``label_map``: the
    dataset label of each model label, for the "correct" count (see
    :func:`~detr_core.analysis.dataset_eval.label_map_for`). ``progress`` as in
    :func:`count_objects`. ``data_name``: what to call the data (default: the split's name)."""
    from detr_core.analysis.dataset_eval import predict_dataset, relabel

    n = len(dataset) if num_images is None else min(num_images, len(dataset))
    ids, preds = predict_dataset(model, dataset, n, batch_size, progress=progress)
    index = {r.image_id: i for i, r in enumerate(dataset.records[:n])}
    rows: list[CountRow] = []
    for image_id, pred in zip(ids, preds):
        i = index[image_id]
        record = dataset.records[i]
        keep = pred["scores"] >= threshold
        kept = {k: v[keep] for k, v in pred.items()}
        if label_map is not None:
            kept = relabel(kept, label_map)
        true = len(record.labels)
        correct = correct_xyxy(kept["boxes"], kept["labels"], torch.from_numpy(record.boxes_xyxy),
                               torch.from_numpy(record.labels))
        rows.append(CountRow(true, true, int(keep.sum()), correct, i, image_id))
    num_queries = int(model.config.num_queries)  # type: ignore[attr-defined]
    return CountingResult(rows, num_queries, float(threshold), train_max_objects, None, data_name or dataset.name)
