"""COCO-style evaluation with pycocotools: AP, AP50, AP75 and per-class AP.

Every query's prediction is submitted with its score (no threshold, no NMS), as DETR is evaluated.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor, nn

from detr_core.analysis.predict import batches, evaluating, forward
from detr_core.box_ops import normalized_cxcywh_to_pixel_xyxy
from detr_core.cancel import Progress
from detr_core.config import ToyDataConfig
from detr_core.data.toy import HELDOUT_SEED, ToyShapes
from detr_core.model.postprocess import detections


def coco_evaluate(
    predictions: list[dict[str, Tensor]],
    ground_truth: list[dict[str, Tensor]],
    class_names: list[str],
    image_sizes: list[tuple[int, int]],
) -> dict[str, float]:
    """predictions / ground_truth: per image {labels [N], boxes [N, 4] xyxy pixels} (+ scores [N])
    for N detections, {labels [M], boxes [M, 4]} for M true objects.

    Returns {"AP", "AP50", "AP75", "AP/<class>"..., "images"}; values in [0, 1].
    """
    images, annotations, results = [], [], []
    ann_id = 1
    for img_id, (gt, pred, (h, w)) in enumerate(zip(ground_truth, predictions, image_sizes), start=1):
        images.append({"id": img_id, "height": int(h), "width": int(w)})
        for label, box in zip(gt["labels"].tolist(), gt["boxes"].tolist()):
            x0, y0, x1, y1 = box
            annotations.append({
                "id": ann_id, "image_id": img_id, "category_id": label + 1, "iscrowd": 0,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
            })
            ann_id += 1
        for label, box, score in zip(pred["labels"].tolist(), pred["boxes"].tolist(), pred["scores"].tolist()):
            x0, y0, x1, y1 = box
            results.append({
                "image_id": img_id, "category_id": label + 1, "score": score,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
            })
    metrics: dict[str, float] = {"images": float(len(images))}
    if not annotations or not results:
        metrics.update({"AP": 0.0, "AP50": 0.0, "AP75": 0.0})
        metrics.update({f"AP/{name}": 0.0 for name in class_names})
        return metrics
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api = COCO()
        gt_api.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(class_names)],
        }
        gt_api.createIndex()
        dt_api = gt_api.loadRes(results)
        ev = COCOeval(gt_api, dt_api, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics.update({"AP": float(ev.stats[0]), "AP50": float(ev.stats[1]), "AP75": float(ev.stats[2])})
    precision = ev.eval["precision"]  # pycocotools: [IoU thresholds, recall, class, area, max dets]
    for k, name in enumerate(class_names):
        p = precision[:, :, k, 0, -1]
        valid = p[p > -1]
        metrics[f"AP/{name}"] = float(np.mean(valid)) if valid.size else math.nan
    return metrics


def collect_predictions(
    model: nn.Module,
    dataset: ToyShapes,
    num_images: int,
    batch_size: int = 50,
    device: torch.device | None = None,
    layer: int = -1,
    progress: Progress | None = None,
) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """Predictions of decoder layer ``layer`` (-1 = last) and ground truth (both xyxy pixels) for
    the first ``num_images`` images. ``progress`` as in :func:`collect_predictions_by_layer`."""
    per_layer, gts = collect_predictions_by_layer(model, dataset, num_images, batch_size, device, [layer], progress)
    return per_layer[0], gts


def collect_predictions_by_layer(
    model: nn.Module,
    dataset: ToyShapes,
    num_images: int,
    batch_size: int = 50,
    device: torch.device | None = None,
    layers: list[int] | None = None,
    progress: Progress | None = None,
) -> tuple[list[list[dict[str, Tensor]]], list[dict[str, Tensor]]]:
    """One forward pass per batch; the detections of the decoder layers ``layers`` (indices, -1 =
    last; None = every layer, first to last) as one list per chosen layer of per-image
    {scores [Q], labels [Q], boxes [Q, 4] xyxy pixels}, and the ground truth per image
    {labels [M], boxes [M, 4] xyxy pixels}.

    ``progress(done, total)`` is called before the first batch and after each one (done and
    total in images); it cancels by raising :class:`~detr_core.cancel.Cancelled`.
    """
    classifier = model.config.classifier  # type: ignore[attr-defined]
    per_layer: list[list[dict[str, Tensor]]] = []
    gts: list[dict[str, Tensor]] = []
    with evaluating(model):
        for idx in batches(num_images, batch_size, progress):
            images, targets = dataset.batch(idx)
            out = forward(model, images, device)
            all_layers = out["aux_outputs"] + [{"pred_logits": out["pred_logits"], "pred_boxes": out["pred_boxes"]}]
            chosen = all_layers if layers is None else [all_layers[i] for i in layers]
            if not per_layer:
                per_layer = [[] for _ in chosen]
            sizes = torch.stack([t["orig_size"] for t in targets])  # [B, 2] (H, W)
            for preds, lay in zip(per_layer, chosen):
                found = detections(lay["pred_logits"], lay["pred_boxes"], classifier, sizes)
                preds += [{k: v.cpu() for k, v in d.items()} for d in found]
            for t in targets:
                h, w = t["orig_size"].tolist()
                gts.append({"labels": t["labels"], "boxes": normalized_cxcywh_to_pixel_xyxy(t["boxes"], h, w)})
    return per_layer, gts


def heldout_split(dataset_config: ToyDataConfig | None = None, size: int = 500) -> ToyShapes:
    """The fixed held-out toy split (never trained on)."""
    return ToyShapes(dataset_config, seed=HELDOUT_SEED, split="heldout", length=size)


def evaluate_model(
    model: nn.Module,
    dataset: ToyShapes,
    num_images: int,
    batch_size: int = 50,
    device: torch.device | None = None,
    progress: Progress | None = None,
) -> dict[str, float]:
    """COCO metrics of the last decoder layer on the first ``num_images`` images of ``dataset``
    (see :func:`coco_evaluate`); ``progress`` as in :func:`collect_predictions_by_layer`."""
    preds, gts = collect_predictions(model, dataset, num_images, batch_size, device, progress=progress)
    size = dataset.config.image_size
    return coco_evaluate(preds, gts, dataset.class_names, [(size, size)] * len(preds))
