"""COCO evaluation of a detector on any :class:`~detr_core.data.dataset.DetectionDataset` with
pycocotools: AP, AP50, AP75, AP by object size and per class (VOC folders also get VOC mAP@0.5).

Every query's prediction is submitted with its score (no threshold, no NMS), as DETR is evaluated,
in the pixels of the stored images and the dataset's own image and category ids, and scored by
COCOeval against :meth:`DetectionDataset.coco_ground_truth`, so ``iscrowd`` regions count as
COCO counts them. Toy shapes are one dataset among others:

    metrics = evaluate_model(model, heldout_split(data_config, 200))        # toy shapes
    metrics = evaluate_model(model, coco_val_resized, label_map=label_map)  # a COCO / VOC / YOLO split
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from detr_core.analysis.label_map import relabel
from detr_core.analysis.predict import batches, evaluating, forward, image_count
from detr_core.box_ops import normalized_cxcywh_to_pixel_xyxy
from detr_core.cancel import Progress
from detr_core.data.dataset import Annotations, DetectionDataset
from detr_core.data.files import FileDataset
from detr_core.data.ground_truth import build_coco
from detr_core.model.postprocess import detections

if TYPE_CHECKING:  # pycocotools is imported where it is used, not at startup
    from pycocotools.coco import COCO

COCO_STATS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")
Predictions = list[dict[str, Tensor]]  # per image: scores [N], labels [N], boxes [N, 4] xyxy pixels


def collect_predictions_by_layer(
    model: nn.Module,
    dataset: DetectionDataset,
    num_images: int,
    batch_size: int | None = None,
    device: torch.device | None = None,
    layers: list[int] | None = None,
    progress: Progress | None = None,
) -> tuple[list[Predictions], Predictions]:
    """One forward pass per batch over the first ``num_images`` images; the detections of the
    decoder layers ``layers`` (indices, -1 = last; None = every layer, first to last) as one list
    per chosen layer of per-image {scores [Q], labels [Q], boxes [Q, 4] xyxy pixels of the stored
    image}, and the ground truth per image {labels [M], boxes [M, 4] xyxy pixels, image_id []}.
    An image that cannot be read is left out. ``batch_size`` None: the dataset's
    ``eval_batch_size``.

    ``progress(done, total)`` is called before the first batch and after each one (done and
    total in images); it cancels by raising :class:`~detr_core.cancel.Cancelled`.
    """
    classifier = model.config.classifier  # type: ignore[attr-defined]
    per_layer: list[Predictions] = []
    gts: Predictions = []
    with evaluating(model):
        for idx in batches(num_images, batch_size or dataset.eval_batch_size, progress):
            images, targets = dataset.batch(idx)
            out = forward(model, images, device)
            all_layers = out["aux_outputs"] + [{"pred_logits": out["pred_logits"], "pred_boxes": out["pred_boxes"]}]
            chosen = all_layers if layers is None else [all_layers[i] for i in layers]
            if not per_layer:
                per_layer = [[] for _ in chosen]
            sizes = torch.stack([t["orig_size"] for t in targets])  # [B, 2] (h, w) on disk
            for preds, lay in zip(per_layer, chosen):
                found = detections(lay["pred_logits"], lay["pred_boxes"], classifier, sizes)
                preds += [{k: v.cpu() for k, v in d.items()} for d in found]
            for t in targets:
                h, w = t["orig_size"].tolist()
                gts.append({"labels": t["labels"], "boxes": normalized_cxcywh_to_pixel_xyxy(t["boxes"], h, w),
                            "image_id": t["image_id"]})
    return per_layer, gts


def collect_predictions(
    model: nn.Module,
    dataset: DetectionDataset,
    num_images: int,
    batch_size: int | None = None,
    device: torch.device | None = None,
    layer: int = -1,
    progress: Progress | None = None,
) -> tuple[Predictions, Predictions]:
    """Predictions of decoder layer ``layer`` (-1 = last) and ground truth, as
    :func:`collect_predictions_by_layer` gives them."""
    per_layer, gts = collect_predictions_by_layer(model, dataset, num_images, batch_size, device, [layer], progress)
    return (per_layer[0] if per_layer else []), gts


def image_ids(ground_truth: Predictions) -> list[int]:
    """The image id of each image of :func:`collect_predictions`' ground truth."""
    return [int(g["image_id"]) for g in ground_truth]


def coco_results(image_ids: list[int], predictions: Predictions, category_ids: list[int]) -> list[dict]:
    """The COCO results format: one {image_id, category_id, bbox [x, y, w, h], score} per query,
    as predicted (not rounded, as the reference DETR scores them)."""
    results = []
    for image_id, pred in zip(image_ids, predictions):
        for label, (x0, y0, x1, y1), score in zip(pred["labels"].tolist(), pred["boxes"].tolist(),
                                                  pred["scores"].tolist()):
            results.append({"image_id": image_id, "category_id": category_ids[label],
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    return results


def coco_metrics(dataset: DetectionDataset, image_ids: list[int], predictions: Predictions,
                 num_images: int | None = None) -> dict[str, float]:
    """{"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AP/<class>"..., "images"} of
    per-image ``predictions`` (in the dataset's labels) of the images ``image_ids`` among the
    first ``num_images`` of ``dataset`` (None: any); values in [0, 1], a class without objects nan."""
    gt = dataset.coco_ground_truth(num_images)
    results = coco_results(image_ids, predictions, dataset.category_ids)
    return score(gt, image_ids, results, dataset.class_names, dataset.category_ids)


def score(gt: COCO, image_ids: list[int], results: list[dict], class_names: list[str],
          category_ids: list[int]) -> dict[str, float]:
    """COCOeval of ``results`` (COCO results format) on the images ``image_ids`` of ``gt``."""
    from pycocotools.cocoeval import COCOeval

    metrics: dict[str, float] = {"images": float(len(image_ids))}
    if not results or not gt.getAnnIds(imgIds=image_ids):
        metrics.update({k: 0.0 for k in COCO_STATS})
        metrics.update({f"AP/{name}": math.nan for name in class_names})
        return metrics
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        ev.params.imgIds = sorted(image_ids)
        ev.params.catIds = list(category_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics.update({k: max(0.0, float(v)) for k, v in zip(COCO_STATS, ev.stats)})
    precision = ev.eval["precision"]  # [T, R, K, A, M]: IoU thresholds, recall, class, area, max dets
    for k, name in enumerate(class_names):
        p = precision[:, :, k, 0, -1]
        valid = p[p > -1]
        metrics[f"AP/{name}"] = float(np.mean(valid)) if valid.size else math.nan
    return metrics


def coco_evaluate(
    predictions: Predictions,
    ground_truth: Predictions,
    class_names: list[str],
    image_sizes: list[tuple[int, int]],
) -> dict[str, float]:
    """:func:`coco_metrics` of predictions against ground truth given image by image rather than
    as a dataset: per image {labels [N], boxes [N, 4] xyxy pixels, scores [N]} and {labels [M],
    boxes [M, 4] xyxy pixels}, and its (height, width). Category ids are 1..K."""
    truth = [Annotations(i, int(h), int(w), g["labels"].numpy(), g["boxes"].float().numpy())
             for i, (g, (h, w)) in enumerate(zip(ground_truth, image_sizes), start=1)]
    category_ids = list(range(1, len(class_names) + 1))
    ids = [a.image_id for a in truth]
    return score(build_coco(truth, class_names, category_ids), ids,
                 coco_results(ids, predictions, category_ids), class_names, category_ids)


def evaluate_model(
    model: nn.Module,
    dataset: DetectionDataset,
    num_images: int | None = None,
    batch_size: int | None = None,
    device: torch.device | None = None,
    progress: Progress | None = None,
    label_map: list[int] | None = None,
) -> dict[str, float]:
    """COCO metrics of the last decoder layer on the first ``num_images`` images of ``dataset``
    (None: all; see :func:`coco_metrics`), plus "mAP50_voc" for VOC folders.
    ``label_map``: the dataset label of each model label (-1: not in the dataset; None: the same
    labels), see :func:`~detr_core.analysis.label_map.label_map_for`. ``progress`` as in
    :func:`collect_predictions_by_layer`."""
    n = image_count(dataset, num_images)
    preds, gts = collect_predictions(model, dataset, n, batch_size, device, progress=progress)
    if label_map is not None:
        preds = [relabel(p, label_map) for p in preds]
    ids = image_ids(gts)
    metrics = coco_metrics(dataset, ids, preds, n)
    if isinstance(dataset, FileDataset) and dataset.format == "voc":
        from detr_core.analysis.voc_map import voc_map50

        metrics["mAP50_voc"] = voc_map50(dataset, ids, preds)
    return metrics
