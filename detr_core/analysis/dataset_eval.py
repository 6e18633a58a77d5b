"""Evaluation on any dataset: COCO AP against the dataset's own ground truth, and VOC mAP@0.5.

For toy data this is :func:`detr_core.analysis.evaluate.evaluate_model` (unchanged). For a COCO
or VOC dataset the predictions, in the pixels of the stored images and the dataset's own image
and category ids, are scored by COCOeval against :meth:`DetectionDataset.coco_ground_truth`, so
``iscrowd`` regions count as COCO counts them. VOC datasets also get the VOC metric (mAP at IoU
0.5, all-point interpolation, ``difficult`` objects ignored), which is what VOC users quote.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import torch
from pycocotools.cocoeval import COCOeval
from torch import Tensor, nn
from torchvision.ops import box_iou

from detr_core.analysis.evaluate import evaluate_model
from detr_core.analysis.predict import batches, evaluating, forward
from detr_core.cancel import Progress
from detr_core.data.dataset import DetectionDataset
from detr_core.data.files import FileDataset
from detr_core.data.toy import ToyShapes
from detr_core.model.postprocess import detections

COCO_STATS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


def evaluate_on(
    model: nn.Module,
    dataset: DetectionDataset,
    num_images: int | None = None,
    batch_size: int = 8,
    device: torch.device | None = None,
    progress: Progress | None = None,
    label_map: list[int] | None = None,
) -> dict[str, float]:
    """{"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AP/<class>"..., "images"},
    plus "mAP50_voc" for VOC folders; values in [0, 1]. ``num_images`` None: the whole set.
    ``label_map``: the dataset label of each model label (-1: not in the dataset; None: the
    same labels), see :func:`label_map_for`."""
    if isinstance(dataset, ToyShapes):
        n = num_images or len(dataset)
        return evaluate_model(model, dataset, n, device=device, progress=progress)
    n = len(dataset) if num_images is None else min(num_images, len(dataset))
    image_ids, predictions = predict_dataset(model, dataset, n, batch_size, device, progress)
    if label_map is not None:
        predictions = [relabel(p, label_map) for p in predictions]
    metrics = coco_metrics(dataset, image_ids, predictions)
    if isinstance(dataset, FileDataset) and dataset.format == "voc":
        metrics["mAP50_voc"] = voc_map50(dataset, image_ids, predictions)
    return metrics


def label_map_for(model_classes: list[str], dataset_classes: list[str]) -> list[int] | None:
    """None when the model's classes are the dataset's; else each model label's dataset label by
    name (-1 where the dataset has no such class). Raises ValueError when a dataset class is
    missing from the model (it could never be detected)."""
    if list(model_classes) == list(dataset_classes):
        return None
    missing = [c for c in dataset_classes if c not in model_classes]
    if missing:
        raise ValueError(f"the model does not know the dataset's class(es) {', '.join(missing[:5])}"
                         f"{'...' if len(missing) > 5 else ''}")
    index = {c: i for i, c in enumerate(dataset_classes)}
    return [index.get(c, -1) for c in model_classes]


def relabel(pred: dict[str, Tensor], label_map: list[int]) -> dict[str, Tensor]:
    """One image's predictions in the dataset's labels; those of classes it lacks are dropped."""
    labels = torch.as_tensor(label_map)[pred["labels"]]
    keep = labels >= 0
    return {"scores": pred["scores"][keep], "labels": labels[keep], "boxes": pred["boxes"][keep]}


def predict_dataset(
    model: nn.Module, dataset: DetectionDataset, num_images: int, batch_size: int = 8,
    device: torch.device | None = None, progress: Progress | None = None,
) -> tuple[list[int], list[dict[str, Tensor]]]:
    """Image ids and per-image {scores [Q], labels [Q], boxes [Q, 4] xyxy pixels of the stored
    image} for the first ``num_images`` (fewer if an image cannot be read). ``progress`` may
    cancel (see :mod:`detr_core.cancel`)."""
    ids: list[int] = []
    preds: list[dict[str, Tensor]] = []
    with evaluating(model):
        for idx in batches(num_images, batch_size, progress):
            images, targets = dataset.batch(idx)
            out = forward(model, images, device)
            sizes = torch.stack([t["orig_size"] for t in targets])  # [B, 2] (h, w)
            found = detections(out["pred_logits"], out["pred_boxes"], model.config.classifier, sizes)  # type: ignore[attr-defined]
            preds += [{k: v.cpu() for k, v in d.items()} for d in found]
            ids += [int(t["image_id"]) for t in targets]
    return ids, preds


def coco_results(image_ids: list[int], predictions: list[dict[str, Tensor]], category_ids: list[int],
                 min_score: float = 0.0) -> list[dict]:
    """The COCO results format: one {image_id, category_id, bbox [x, y, w, h], score} per query."""
    results = []
    for image_id, pred in zip(image_ids, predictions):
        for label, (x0, y0, x1, y1), score in zip(pred["labels"].tolist(), pred["boxes"].tolist(),
                                                  pred["scores"].tolist()):
            if score >= min_score:
                results.append({"image_id": image_id, "category_id": category_ids[label],
                                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                                "score": round(score, 5)})
    return results


def coco_metrics(dataset: DetectionDataset, image_ids: list[int], predictions: list[dict[str, Tensor]]) -> dict[str, float]:
    metrics: dict[str, float] = {"images": float(len(image_ids))}
    results = coco_results(image_ids, predictions, dataset.category_ids)
    gt = dataset.coco_ground_truth()
    if gt is None:
        raise ValueError(f"{dataset.name} has no COCO ground truth")
    if not results or not gt.getAnnIds(imgIds=image_ids):
        metrics.update({k: 0.0 for k in COCO_STATS})
        metrics.update({f"AP/{name}": math.nan for name in dataset.class_names})
        return metrics
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        ev.params.imgIds = sorted(image_ids)
        ev.params.catIds = list(dataset.category_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics.update({k: max(0.0, float(v)) for k, v in zip(COCO_STATS, ev.stats)})
    precision = ev.eval["precision"]  # [T, R, K, A, M]: IoU thresholds, recall, class, area, max dets
    for k, name in enumerate(dataset.class_names):
        p = precision[:, :, k, 0, -1]
        valid = p[p > -1]
        metrics[f"AP/{name}"] = float(np.mean(valid)) if valid.size else math.nan
    return metrics


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
        tp = np.cumsum([s[1] for s in scored], dtype=np.float64)
        fp = np.cumsum([not s[1] for s in scored], dtype=np.float64)
        recall = tp / positives
        precision = tp / np.maximum(tp + fp, 1e-12)
        mrec = np.concatenate([[0.0], recall, [1.0]])
        mpre = np.concatenate([[0.0], precision, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        aps.append(float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1])))
    return float(np.mean(aps)) if aps else 0.0


def checkpoint_category_ids(class_names: list[str], source: str, extra: dict) -> list[int]:
    """The category id of each model label: as saved with the checkpoint (trained on a COCO
    folder); the label itself for official DETR files (their labels are COCO ids); else 1..K."""
    saved = extra.get("category_ids")
    if isinstance(saved, list) and len(saved) == len(class_names):
        return [int(c) for c in saved]
    if source == "facebookresearch/detr":
        return list(range(len(class_names)))
    return list(range(1, len(class_names) + 1))
