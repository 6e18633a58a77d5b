"""Counting beyond training (the paper's Figures 5 and 12).

Run the detector over a dataset's images, group them by their ground-truth object count, and
compare the number of confident detections with the true count (:func:`count_objects`). On toy
shapes the images can be drawn with exactly N objects, from one up to more than any training
image held and up to more than the model has queries (:func:`count_crowded`, over a
:class:`~detr_core.data.crowded.CrowdedShapes`). A DETR can never detect more objects than it has
query slots, so past ``num_queries`` the detected count must flatten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from torchvision.ops import box_iou

from detr_core.analysis.evaluate import collect_predictions, image_ids
from detr_core.analysis.label_map import relabel
from detr_core.analysis.predict import image_count
from detr_core.box_ops import cxcywh_to_xyxy
from detr_core.cancel import Progress
from detr_core.config import ToyDataConfig
from detr_core.data.crowded import CrowdedShapes
from detr_core.data.dataset import DetectionDataset

MATCH_IOU = 0.5  # a detection is correct if matched one-to-one to a same-class object at this IoU


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
    dataset: DetectionDataset,
    num_images: int | None = None,
    threshold: float = 0.5,
    train_max_objects: int | None = None,
    label_map: list[int] | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    data_name: str = "",
) -> CountingResult:
    """Detected against true count on the first ``num_images`` images of ``dataset`` (None: all;
    an unreadable image is left out), grouped by their ground-truth object count (crowd /
    difficult objects not counted). ``label_map``: the dataset label of each model label, for the
    "correct" count (see :func:`~detr_core.analysis.label_map.label_map_for`). The model is only
    read (see :func:`~detr_core.analysis.predict.evaluating`). ``progress(done, total)`` is called
    before the first batch and after each one, and cancels by raising
    :class:`~detr_core.cancel.Cancelled`. ``data_name``: what to call the data (default: the
    dataset's name)."""
    n = image_count(dataset, num_images)
    preds, gts = collect_predictions(model, dataset, n, batch_size, progress=progress)
    truth = [dataset.annotations(i) for i in range(n)]
    index = {a.image_id: i for i, a in enumerate(truth)}
    rows: list[CountRow] = []
    for image_id, pred in zip(image_ids(gts), preds):
        i = index[image_id]
        keep = pred["scores"] >= threshold
        kept = {k: v[keep] for k, v in pred.items()}
        if label_map is not None:
            kept = relabel(kept, label_map)
        true = len(truth[i].labels)
        correct = correct_xyxy(kept["boxes"], kept["labels"], torch.from_numpy(truth[i].boxes_xyxy),
                               torch.from_numpy(truth[i].labels))
        rows.append(CountRow(true, true, int(keep.sum()), correct, i, image_id))
    num_queries = int(model.config.num_queries)  # type: ignore[attr-defined]
    return CountingResult(rows, num_queries, float(threshold), train_max_objects, None, data_name or dataset.name)


def count_crowded(
    model: nn.Module,
    counts: Sequence[int],
    images_per_count: int = 10,
    threshold: float = 0.5,
    data_config: ToyDataConfig | None = None,
    train_max_objects: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> CountingResult:
    """:func:`count_objects` on toy images drawn with each of ``counts`` objects,
    ``images_per_count`` images each (a :class:`~detr_core.data.crowded.CrowdedShapes` of the
    training data's config ``data_config``); each row says how many objects its image was asked
    for and its number among the images of that count."""
    dataset = CrowdedShapes(data_config, counts, images_per_count, seed)
    result = count_objects(model, dataset, threshold=threshold, train_max_objects=train_max_objects,
                           batch_size=batch_size, progress=progress)
    rows = [dataclasses.replace(r, asked=dataset.asked(r.image), image=dataset.image_number(r.image), image_id=-1)
            for r in result.rows]
    return dataclasses.replace(result, rows=rows, data_config=dataset.config, data_name="")
