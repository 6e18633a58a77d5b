"""After training: why one ground-truth object was missed.

The object is matched to a query by the Hungarian matching with the training costs (what training
would have taught that query), then the query is followed through the decoder: its class
probabilities, its box and IoU at every layer, and where its cross-attention looks. The verdict:

- ``detected``: some query finds it (right class, score and IoU above the thresholds);
- ``no_object``: found and placed, but classified as no-object;
- ``wrong_class``: found and placed, but called another class;
- ``lost_between_layers``: an earlier decoder layer had it, the last one lost it;
- ``misplaced``: classified right but the box is off;
- ``nobody_looks``: no query's box or class is near it at any layer.

    result = run_inference(model, image, class_names)
    diagnosis = diagnose_missed(result, gt_labels, gt_boxes_xyxy, index=2, loss_config=LossConfig())
    print(diagnosis.verdict, diagnosis.explanation)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from detr_core.analysis.capture import InferenceResult
from detr_core.box_ops import xyxy_to_cxcywh
from detr_core.config import LossConfig
from detr_core.model.matcher import HungarianMatcher

FOUND_IOU = 0.5
FOUND_SCORE = 0.5


@dataclass
class MissedDiagnosis:
    object_index: int
    class_name: str
    box_xyxy: np.ndarray  # [4] pixels of the image
    query: int  # the query the matching assigns to the object
    probs: np.ndarray  # [K + 1] that query's class probabilities at the last layer, last = no object
    class_names: list[str]
    layer_ious: np.ndarray  # [L] IoU of the query's box with the object at each decoder layer
    layer_class_probs: np.ndarray  # [L] the query's probability of the object's class at each layer
    layer_boxes_xyxy: np.ndarray  # [L, 4] pixels
    attention: np.ndarray | None  # [h, w] the query's last-layer cross-attention, mean over heads
    attention_inside: float  # share of that attention inside the object's box (nan without capture)
    best_other_iou: float  # the best IoU any query's last-layer box has with the object
    verdict: str
    explanation: str

    def markdown(self) -> str:
        probs = ", ".join(f"{n} {p:.2f}" for n, p in zip([*self.class_names, "no object"], self.probs))
        ious = ", ".join(f"{v:.2f}" for v in self.layer_ious)
        return (f"### Object {self.object_index} ({self.class_name}): {self.verdict.replace('_', ' ')}\n\n"
                f"{self.explanation}\n\n- Matched query: {self.query}\n- Class probabilities: {probs}\n"
                f"- IoU by decoder layer: {ious}\n- Cross-attention inside the box: {self.attention_inside:.0%}")


def diagnose_missed(
    result: InferenceResult, labels: np.ndarray, boxes_xyxy: np.ndarray, index: int,
    loss_config: LossConfig | None = None, classifier: str = "softmax",
) -> MissedDiagnosis:
    """Diagnose object ``index`` of the image ``result`` was computed on; ``labels`` [M] and
    ``boxes_xyxy`` [M, 4] pixels are all its ground-truth objects (matching sees them all, as in
    training). ``classifier`` is the model's ("softmax" or "focal")."""
    lc = loss_config or LossConfig()
    labels_t = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    boxes_t = torch.as_tensor(boxes_xyxy, dtype=torch.float32).reshape(-1, 4)
    h, w = result.image_size
    scale = boxes_t.new_tensor([w, h, w, h])
    matcher = HungarianMatcher(lc.cost_class, lc.cost_bbox, lc.cost_giou, classifier, lc.focal_alpha, lc.focal_gamma)
    outputs = {"pred_logits": _logits(result.probs, classifier)[None], "pred_boxes": result.boxes_cxcywh[None]}
    (rows, cols), = matcher(outputs, [{"labels": labels_t, "boxes": xyxy_to_cxcywh(boxes_t / scale)}])
    query = int(rows[cols == index][0])

    label = int(labels_t[index])
    gt = boxes_t[index : index + 1]  # [1, 4]
    layer_ious = box_iou(gt, result.layer_boxes_xyxy[:, query]).numpy()[0]  # [L]
    layer_probs = result.layer_probs[:, query, label].numpy()  # [L]
    probs = result.probs[query].numpy()
    all_ious = box_iou(gt, result.boxes_xyxy)[0]  # [Q]
    found = (all_ious >= FOUND_IOU) & (result.labels == label) & (result.scores >= FOUND_SCORE)
    attention, inside = _attention(result, query, gt[0])
    name = result.class_names[label] if label < len(result.class_names) else str(label)

    iou, p = float(layer_ious[-1]), float(probs[label])
    best_layer = int(np.argmax(layer_ious))
    if bool(found.any()):
        verdict, text = "detected", (f"Not missed: query {int(torch.nonzero(found)[0])} finds it "
                                     f"({name} {float(result.scores[found].max()):.2f}).")
    elif iou >= FOUND_IOU:
        other = int(np.argmax(probs))
        if other == len(probs) - 1:
            verdict, text = "no_object", (f"Found and placed (IoU {iou:.2f}) but classified as no-object "
                                          f"({probs[-1]:.2f} against {name} {p:.2f}).")
        else:
            verdict, text = "wrong_class", (f"Found and placed (IoU {iou:.2f}) but called "
                                            f"{result.class_names[other]} ({probs[other]:.2f}; {name} {p:.2f}).")
    elif layer_ious[best_layer] >= FOUND_IOU:
        verdict, text = "lost_between_layers", (f"Lost between decoder layers: layer {best_layer + 1} had it at IoU "
                                                f"{layer_ious[best_layer]:.2f}, the last layer at {iou:.2f}.")
    elif p >= FOUND_SCORE:
        verdict, text = "misplaced", f"Classified ({name} {p:.2f}) but badly placed: IoU {iou:.2f} at best {layer_ious.max():.2f}."
    else:
        verdict, text = "nobody_looks", (f"No query looks there: the matched query's box reaches IoU {layer_ious.max():.2f} "
                                         f"at best, its {name} probability is {p:.2f}, and no query's box covers it "
                                         f"(best IoU {float(all_ious.max()):.2f}).")
    return MissedDiagnosis(index, name, boxes_t[index].numpy(), query, probs, list(result.class_names), layer_ious,
                           layer_probs, result.layer_boxes_xyxy[:, query].numpy(), attention, inside,
                           float(all_ious.max()), verdict, text)


def _logits(probs: torch.Tensor, classifier: str) -> torch.Tensor:
    """Logits that give back ``probs`` [Q, K + 1] under the classifier (what the matcher reads)."""
    p = probs.clamp(1e-6, 1 - 1e-6)
    if classifier == "softmax":
        return p.log()
    p = p[:, :-1]
    return (p / (1 - p)).log()


def _attention(result: InferenceResult, query: int, box_xyxy: torch.Tensor) -> tuple[np.ndarray | None, float]:
    if result.cross_attention is None:
        return None, float("nan")
    att = result.cross_attention[-1, :, query].mean(0)  # [h, w]
    fh, fw = att.shape
    eh, ew = result.grid_extent()
    ys = (torch.arange(fh) + 0.5) * eh / fh  # cell centres in image pixels
    xs = (torch.arange(fw) + 0.5) * ew / fw
    x0, y0, x1, y1 = box_xyxy.tolist()
    inside = ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
    return att.numpy(), float(att[inside].sum() / att.sum().clamp_min(1e-12))
