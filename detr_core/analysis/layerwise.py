"""AP of every decoder layer's predictions, with and without NMS (DETR paper, Figure 4).

Each decoder layer has its own (shared) prediction heads, so every layer yields a full detection
set. Early layers still predict the same object from several queries; NMS removes those
duplicates and raises their AP. The last layer has learned, through the decoder's
self-attention, to suppress duplicates itself, so NMS stops helping there (or slightly hurts).

    rows = layerwise_ap(model, heldout_split(data_config), num_images=200)
    rows[-1].ap, rows[-1].ap_nms
    rows = layerwise_ap_on(model, coco_val_resized, num_images=200)   # a COCO / VOC split

On a COCO or VOC split every layer is scored by pycocotools against the dataset's own ground
truth, as :func:`detr_core.analysis.dataset_eval.evaluate_on` scores the last layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from detr_core.analysis.dataset_eval import coco_metrics, relabel
from detr_core.analysis.evaluate import coco_evaluate, collect_predictions_by_layer
from detr_core.analysis.predict import batches, evaluating, forward
from detr_core.cancel import Progress, report
from detr_core.data.dataset import DetectionDataset
from detr_core.data.toy import ToyShapes
from detr_core.model.postprocess import detections

Predictions = list[dict[str, Tensor]]  # per image: scores [N], labels [N], boxes [N, 4] xyxy pixels


@dataclass
class LayerAP:
    layer: int  # 1-based decoder layer (L1 is the first)
    ap: float  # COCO AP (IoU 0.5:0.95) in [0, 1], every query's prediction submitted
    ap50: float
    ap_nms: float  # the same after class-wise NMS on each image
    ap50_nms: float

    def as_dict(self) -> dict[str, float | int]:
        return {"layer": self.layer, "AP": self.ap, "AP50": self.ap50, "AP_nms": self.ap_nms,
                "AP50_nms": self.ap50_nms}


def nms_predictions(predictions: Predictions, iou_threshold: float = 0.7) -> Predictions:
    """Class-wise NMS (``torchvision.ops.batched_nms``) on each image's predictions.

    Keeps every prediction that no higher-scoring one of the same class overlaps by more than
    ``iou_threshold`` (IoU), with its score unchanged; the survivors come best first.
    """
    out = []
    for p in predictions:
        keep = batched_nms(p["boxes"].float(), p["scores"].float(), p["labels"], iou_threshold)
        out.append({k: v[keep] for k, v in p.items()})
    return out


def collect_layer_predictions(
    model: nn.Module,
    dataset: ToyShapes,
    num_images: int,
    batch_size: int = 50,
    progress: Progress | None = None,
) -> tuple[list[Predictions], Predictions]:
    """One forward pass per batch, every decoder layer's detections at once.

    Returns (per layer, per image {scores [Q], labels [Q], boxes [Q, 4] xyxy pixels}) and the
    ground truth per image {labels [M], boxes [M, 4] xyxy pixels}. ``progress(done, total)`` is
    called before the first batch and after each one; it cancels by raising
    :class:`~detr_core.cancel.Cancelled`.
    """
    return collect_predictions_by_layer(model, dataset, num_images, batch_size, progress=progress)


def layerwise_ap(
    model: nn.Module,
    dataset: ToyShapes,
    num_images: int,
    nms_iou: float = 0.7,
    batch_size: int = 50,
    progress: Progress | None = None,
) -> list[LayerAP]:
    """AP and AP50 of every decoder layer on the first ``num_images`` images of ``dataset``,
    with and without NMS at IoU ``nms_iou``. One row per layer, first layer first.

    ``progress(done, total)`` counts work units: first the images run through the model, then
    one unit per layer evaluated (total = num_images + layers), from ``progress(0, total)`` on.
    It cancels by raising :class:`~detr_core.cancel.Cancelled`.
    """
    layers = int(model.config.num_decoder_layers)  # type: ignore[attr-defined]
    total = num_images + layers

    def images_done(done: int, _: int) -> None:
        report(progress, done, total)

    per_layer, gts = collect_layer_predictions(model, dataset, num_images, batch_size, images_done)
    size = dataset.config.image_size
    sizes = [(size, size)] * len(gts)
    rows = []
    for i, preds in enumerate(per_layer):
        plain = coco_evaluate(preds, gts, dataset.class_names, sizes)
        nms = coco_evaluate(nms_predictions(preds, nms_iou), gts, dataset.class_names, sizes)
        rows.append(LayerAP(i + 1, plain["AP"], plain["AP50"], nms["AP"], nms["AP50"]))
        report(progress, len(gts) + i + 1, len(gts) + len(per_layer))
    return rows


def predict_dataset_by_layer(
    model: nn.Module, dataset: DetectionDataset, num_images: int, batch_size: int = 8,
    progress: Progress | None = None,
) -> tuple[list[int], list[Predictions]]:
    """Image ids, and per decoder layer (first to last) per image {scores [Q], labels [Q],
    boxes [Q, 4] xyxy pixels of the stored image}, for the first ``num_images`` of a file dataset
    (an unreadable image is left out). ``progress`` as in :func:`collect_layer_predictions`."""
    classifier = model.config.classifier  # type: ignore[attr-defined]
    ids: list[int] = []
    per_layer: list[Predictions] = []
    with evaluating(model):
        for idx in batches(num_images, batch_size, progress):
            images, targets = dataset.batch(idx)
            out = forward(model, images)
            layers = out["aux_outputs"] + [{"pred_logits": out["pred_logits"], "pred_boxes": out["pred_boxes"]}]
            if not per_layer:
                per_layer = [[] for _ in layers]
            sizes = torch.stack([t["orig_size"] for t in targets])  # [B, 2] (h, w) on disk
            for preds, lay in zip(per_layer, layers):
                found = detections(lay["pred_logits"], lay["pred_boxes"], classifier, sizes)
                preds += [{k: v.cpu() for k, v in d.items()} for d in found]
            ids += [int(t["image_id"]) for t in targets]
    return ids, per_layer


def layerwise_ap_on(
    model: nn.Module,
    dataset: DetectionDataset,
    num_images: int,
    nms_iou: float = 0.7,
    batch_size: int = 8,
    progress: Progress | None = None,
    label_map: list[int] | None = None,
) -> list[LayerAP]:
    """:func:`layerwise_ap` on a COCO or VOC split (resized as the model infers): COCOeval
    against :meth:`DetectionDataset.coco_ground_truth` in the dataset's own ids. ``label_map``:
    the dataset label of each model label (see
    :func:`~detr_core.analysis.dataset_eval.label_map_for`; None: the same labels)."""
    layers = int(model.config.num_decoder_layers)  # type: ignore[attr-defined]
    num_images = min(num_images, len(dataset))
    total = num_images + layers

    def images_done(done: int, _: int) -> None:
        report(progress, done, total)

    ids, per_layer = predict_dataset_by_layer(model, dataset, num_images, batch_size, images_done)
    rows = []
    for i, preds in enumerate(per_layer):
        if label_map is not None:
            preds = [relabel(p, label_map) for p in preds]
        plain = coco_metrics(dataset, ids, preds)
        nms = coco_metrics(dataset, ids, nms_predictions(preds, nms_iou))
        rows.append(LayerAP(i + 1, plain["AP"], plain["AP50"], nms["AP"], nms["AP50"]))
        report(progress, num_images + i + 1, total)
    return rows
