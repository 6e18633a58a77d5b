"""Pascal VOC's metric: mAP at IoU 0.5 with all-point interpolation, what VOC users quote."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou

from detr_core.data.files import FileDataset


def voc_map50(dataset: FileDataset, image_ids: list[int], predictions: list[dict[str, Tensor]]) -> float:
    """VOC mAP at IoU 0.5 (all-point interpolation, VOC2010+): a detection matching a
    ``difficult`` object is neither right nor wrong; classes without objects are left out."""
    records = {r.image_id: r for r in dataset.records}
    aps = []
    for k in range(len(dataset.class_names)):
        scored: list[tuple[float, bool | None]] = []  # (score, true positive; None = ignored)
        positives = 0
        for image_id, pred in zip(image_ids, predictions):
            r = records[image_id]
            gt = torch.as_tensor(np.concatenate([r.boxes_xyxy[r.labels == k], r.ignored_xyxy[r.ignored_labels == k]]))
            hard = torch.zeros(len(gt), dtype=torch.bool)
            hard[int((r.labels == k).sum()):] = True
            positives += int((~hard).sum())
            mine = pred["labels"] == k
            scores, boxes = pred["scores"][mine], pred["boxes"][mine]
            order = scores.argsort(descending=True)
            taken = torch.zeros(len(gt), dtype=torch.bool)
            iou = box_iou(boxes[order], gt.float()) if len(gt) else None
            for row, i in enumerate(order.tolist()):
                if iou is None:
                    scored.append((float(scores[i]), False))
                    continue
                best, j = iou[row].max(0)
                if best < 0.5:
                    scored.append((float(scores[i]), False))
                elif hard[j]:
                    scored.append((float(scores[i]), None))
                elif not taken[j]:
                    taken[j] = True
                    scored.append((float(scores[i]), True))
                else:
                    scored.append((float(scores[i]), False))
        if positives == 0:
            continue
        scored = sorted((s for s in scored if s[1] is not None), key=lambda s: -s[0])
        aps.append(all_point_ap(np.array([s[1] for s in scored], dtype=bool), positives))
    return float(np.mean(aps)) if aps else 0.0


def all_point_ap(true_positive: np.ndarray, positives: int) -> float:
    """All-point interpolated AP (VOC2010+) of predictions in score order, best first:
    ``true_positive`` [N] bool, ``positives`` the objects there were to find (> 0)."""
    tp = np.cumsum(true_positive, dtype=np.float64)
    fp = np.cumsum(~true_positive, dtype=np.float64)
    recall = np.concatenate([[0.0], tp / positives, [1.0]])
    precision = np.concatenate([[0.0], tp / np.maximum(tp + fp, 1e-12), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))
