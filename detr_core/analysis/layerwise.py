"""AP of every decoder layer's predictions, with and without NMS (DETR paper, Figure 4).

Each decoder layer has its own (shared) prediction heads, so every layer yields a full detection
set. Early layers still predict the same object from several queries; NMS removes those
duplicates and raises their AP. The last layer has learned, through the decoder's
self-attention, to suppress duplicates itself, so NMS stops helping there (or slightly hurts).

    rows = layerwise_ap(model, heldout_split(data_config), num_images=200)
    rows[-1].ap, rows[-1].ap_nms
    rows = layerwise_ap(model, coco_val_resized, num_images=200)   # a COCO / VOC split

Every layer is scored by pycocotools against the dataset's own ground truth, as
:func:`detr_core.analysis.evaluate.evaluate_model` scores the last layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn
from torchvision.ops import batched_nms

from detr_core.analysis.duplicates import find_duplicates
from detr_core.analysis.evaluate import (
    Predictions,
    coco_metrics,
    collect_predictions_by_layer,
    image_ids,
)
from detr_core.analysis.label_map import relabel
from detr_core.analysis.predict import image_count
from detr_core.cancel import Progress, report
from detr_core.data.dataset import DetectionDataset

NMS_IOU = 0.7  # the class-wise NMS a layer (and a run, detr_core/train/runs.py) is also scored with


@dataclass
class LayerAP:
    layer: int  # 1-based decoder layer (L1 is the first)
    ap: float  # COCO AP (IoU 0.5:0.95) in [0, 1], every query's prediction submitted
    ap50: float
    ap_nms: float  # the same after class-wise NMS on each image
    ap50_nms: float
    # kept predictions (score >= 0.3) repeating a better one of their class, IoU >= 0.5
    # (:func:`~detr_core.analysis.duplicates.find_duplicates`); nan when not measured
    duplicates: float = math.nan

    def as_dict(self) -> dict[str, float | int]:
        return {"layer": self.layer, "AP": self.ap, "AP50": self.ap50, "AP_nms": self.ap_nms,
                "AP50_nms": self.ap50_nms, "duplicates": self.duplicates}


def nms_predictions(predictions: Predictions, iou_threshold: float = NMS_IOU) -> Predictions:
    """Class-wise NMS (``torchvision.ops.batched_nms``) on each image's predictions.

    Keeps every prediction that no higher-scoring one of the same class overlaps by more than
    ``iou_threshold`` (IoU), with its score unchanged; the survivors come best first.
    """
    out = []
    for p in predictions:
        keep = batched_nms(p["boxes"].float(), p["scores"].float(), p["labels"], iou_threshold)
        out.append({k: v[keep] for k, v in p.items()})
    return out


def layerwise_ap(
    model: nn.Module,
    dataset: DetectionDataset,
    num_images: int,
    nms_iou: float = NMS_IOU,
    batch_size: int | None = None,
    progress: Progress | None = None,
    label_map: list[int] | None = None,
) -> list[LayerAP]:
    """AP and AP50 of every decoder layer on the first ``num_images`` images of ``dataset``
    (toy shapes, or a COCO / VOC / YOLO split resized as the model infers), with and without NMS
    at IoU ``nms_iou``, and the fraction of its kept predictions that are duplicates, scored as
    :func:`~detr_core.analysis.evaluate.evaluate_model` scores the last layer. One row per layer, first layer first. ``label_map``: the dataset label of each
    model label (see :func:`~detr_core.analysis.label_map.label_map_for`; None: the same labels).

    ``progress(done, total)`` counts work units: first the images run through the model, then
    one unit per layer evaluated (total = num_images + layers), from ``progress(0, total)`` on.
    It cancels by raising :class:`~detr_core.cancel.Cancelled`.
    """
    layers = int(model.config.num_decoder_layers)  # type: ignore[attr-defined]
    num_images = image_count(dataset, num_images)
    total = num_images + layers

    def images_done(done: int, _: int) -> None:
        report(progress, done, total)

    per_layer, gts = collect_predictions_by_layer(model, dataset, num_images, batch_size, progress=images_done)
    ids = image_ids(gts)
    rows = []
    for i, preds in enumerate(per_layer):
        if label_map is not None:
            preds = [relabel(p, label_map) for p in preds]
        plain = coco_metrics(dataset, ids, preds, num_images)
        nms = coco_metrics(dataset, ids, nms_predictions(preds, nms_iou), num_images)
        rows.append(LayerAP(i + 1, plain["AP"], plain["AP50"], nms["AP"], nms["AP50"], find_duplicates(preds).fraction))
        report(progress, num_images + i + 1, total)
    return rows
