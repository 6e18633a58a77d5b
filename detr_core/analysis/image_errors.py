"""What the model gets right and wrong on each image of a dataset, at IoU 0.5.

For one image, the kept predictions (score at or above a threshold) are matched greedily in
order of score to the ground-truth object of the same class with the highest IoU >= 0.5 that is
still free: a matched prediction is a true positive, an unmatched one a false positive, an
unmatched ground-truth object is missed. A prediction that matches nothing but overlaps an
ignored object (COCO ``iscrowd``, VOC ``difficult``) by IoU >= 0.5 is neither right nor wrong.
``ap50`` is the image's AP at IoU 0.5 over all its predictions (not only the kept ones), the mean
over the classes it has objects of; NaN for an image without objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from detr_core.analysis.evaluate import collect_predictions, image_ids
from detr_core.analysis.voc_map import all_point_ap
from detr_core.cancel import Progress
from detr_core.data.dataset import DetectionDataset, Sample

TP, FP, IGNORED = 1, 0, -1  # status of a kept prediction
IOU_THRESHOLD = 0.5


@dataclass
class ImageErrors:
    """One image's predictions against its ground truth (dataset labels, stored pixels)."""

    index: int  # in the dataset
    gt_labels: np.ndarray  # [N] int64
    gt_xyxy: np.ndarray  # [N, 4] float32
    gt_found: np.ndarray  # [N] bool: a kept prediction matched it (else missed)
    labels: np.ndarray  # [K] int64, the kept predictions, best score first
    scores: np.ndarray  # [K] float32
    boxes_xyxy: np.ndarray  # [K, 4] float32
    status: np.ndarray  # [K] int8: TP, FP or IGNORED
    ap50: float

    @property
    def tp(self) -> int:
        return int((self.status == TP).sum())

    @property
    def fp(self) -> int:
        return int((self.status == FP).sum())

    @property
    def missed(self) -> int:
        return int((~self.gt_found).sum())

    @property
    def errors(self) -> int:
        """False positives plus missed objects."""
        return self.fp + self.missed


def match_image(
    gt_labels: np.ndarray, gt_xyxy: np.ndarray, scores: Tensor, labels: Tensor, boxes_xyxy: Tensor,
    threshold: float, ignored_labels: np.ndarray | None = None, ignored_xyxy: np.ndarray | None = None,
    index: int = 0,
) -> ImageErrors:
    """``scores`` [Q], ``labels`` [Q], ``boxes_xyxy`` [Q, 4] pixels: every query of the image."""
    gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
    gt_xyxy = np.asarray(gt_xyxy, np.float32).reshape(-1, 4)
    ign_labels = np.zeros(0, np.int64) if ignored_labels is None else np.asarray(ignored_labels, np.int64)
    ign_xyxy = np.zeros((0, 4), np.float32) if ignored_xyxy is None else np.asarray(ignored_xyxy, np.float32)
    order = scores.argsort(descending=True)
    scores, labels, boxes = scores[order], labels[order], boxes_xyxy[order].float()
    iou = box_iou(boxes, torch.as_tensor(gt_xyxy)).numpy() if len(gt_xyxy) else np.zeros((len(boxes), 0))
    iou_ign = box_iou(boxes, torch.as_tensor(ign_xyxy)).numpy() if len(ign_xyxy) else np.zeros((len(boxes), 0))
    lab = labels.numpy()

    def greedy(count: int) -> tuple[np.ndarray, np.ndarray]:
        """Status of the first ``count`` predictions and which objects they found."""
        found = np.zeros(len(gt_labels), bool)
        status = np.full(count, FP, np.int8)
        for k in range(count):
            candidates = np.where((gt_labels == lab[k]) & ~found & (iou[k] >= IOU_THRESHOLD))[0]
            if len(candidates):
                found[candidates[iou[k, candidates].argmax()]] = True
                status[k] = TP
            elif ((ign_labels == lab[k]) & (iou_ign[k] >= IOU_THRESHOLD)).any():
                status[k] = IGNORED
        return status, found

    kept = int((scores >= threshold).sum())
    status, found = greedy(kept)
    all_status, _ = greedy(len(lab))
    return ImageErrors(index, gt_labels, gt_xyxy, found, lab[:kept].copy(), scores[:kept].numpy().copy(),
                       boxes[:kept].numpy().copy(), status, _image_ap50(gt_labels, lab, all_status))


def _image_ap50(gt_labels: np.ndarray, labels: np.ndarray, status: np.ndarray) -> float:
    """Mean over the image's classes of the all-point interpolated AP of its score-ordered
    predictions (``status`` in that order)."""
    aps = []
    for c in np.unique(gt_labels):
        mine = status[(labels == c) & (status != IGNORED)]
        positives = int((gt_labels == c).sum())
        aps.append(all_point_ap(mine == TP, positives))
    return float(np.mean(aps)) if aps else math.nan


def predict_images(
    model: nn.Module, dataset: DetectionDataset, batch_size: int = 8, progress: Progress | None = None,
) -> tuple[list[int], list[dict[str, Tensor]]]:
    """Image ids and {scores [Q], labels [Q], boxes [Q, 4] xyxy pixels of the stored image} of
    every image ``dataset`` can read (resized as the model infers)."""
    preds, gts = collect_predictions(model, dataset, len(dataset), batch_size, progress=progress)
    return image_ids(gts), preds


def match_predictions(
    stored: DetectionDataset, image_ids: list[int], predictions: list[dict[str, Tensor]], threshold: float,
    label_map: list[int] | None = None,
) -> list[ImageErrors]:
    """:class:`ImageErrors` of each predicted image against ``stored`` (the images as stored: its
    ground truth, in its pixels). ``label_map``: each model label's dataset label (-1: none), see
    :func:`~detr_core.analysis.label_map.label_map_for`."""
    records = getattr(stored, "records", None)
    # an unreadable image is left out of the predictions: they are aligned by image id
    index_of = {rec.image_id: i for i, rec in enumerate(records)} if records is not None else None
    out = []
    for position, (image_id, pred) in enumerate(zip(image_ids, predictions)):
        index = index_of[image_id] if index_of is not None else position
        if label_map is not None:
            labels = torch.as_tensor(label_map)[pred["labels"]]
            keep = labels >= 0
            pred = {"scores": pred["scores"][keep], "labels": labels[keep], "boxes": pred["boxes"][keep]}
        if records is not None:  # the annotations, without reading the image again
            rec = records[index]
            gt = Sample(np.zeros((0, 0, 3), np.uint8), rec.labels, rec.boxes_xyxy, rec.image_id,
                        rec.ignored_labels, rec.ignored_xyxy)
        else:
            gt = stored.sample(index)
        out.append(match_image(gt.labels, gt.boxes_xyxy, pred["scores"], pred["labels"], pred["boxes"], threshold,
                               gt.ignored_labels, gt.ignored_xyxy, index))
    return out


def dataset_errors(
    model: nn.Module, dataset: DetectionDataset, stored: DetectionDataset, threshold: float,
    label_map: list[int] | None = None, batch_size: int = 8, progress: Progress | None = None,
) -> list[ImageErrors]:
    """:func:`predict_images` on ``dataset`` then :func:`match_predictions` against ``stored``."""
    ids, predictions = predict_images(model, dataset, batch_size, progress)
    return match_predictions(stored, ids, predictions, threshold, label_map)
