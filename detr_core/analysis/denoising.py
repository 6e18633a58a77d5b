"""Denoising made visible (DN-DETR, DINO): the noised ground-truth boxes a model is fed as
denoising queries in training, the box each became after every decoder layer, and which of them
the decoder repaired.

    snap = denoising_sample(model, dataset, index=3, step=trainer.step)   # None fields: see reason
    if snap.available:
        snap.iou                     # [L + 1, P] IoU with its object: the noised input, then each layer
        snap.repaired(layer=-1)      # [P] bool: positive queries whose IoU went up from the input
        snap.summary(layer=-1)       # the counts the view and the lesson print

The forward pass is a training forward as far as the denoising queries go (the model's top
module in training mode, so it builds them from the targets) but every submodule stays in eval
mode: no dropout, BatchNorm with its running statistics and none of them updated, so a probe
between training steps changes nothing of the run. The noise is drawn from a generator seeded by
the sample, inside a forked RNG: the same sample gets the same noised boxes at every step (one
watches the decoder learn to repair *these*), and the training run's random stream is untouched.
Everything returned is CPU numpy, safe to hand to another thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from detr_core.box_ops import cxcywh_to_xyxy, normalized_cxcywh_to_pixel_xyxy
from detr_core.data.dataset import DetectionDataset
from detr_core.data.images import to_uint8
from detr_core.model.capture_protocol import DenoisingCapture
from detr_core.model.denoising import build_denoising_queries
from detr_core.model.nested_tensor import NestedTensor
from detr_core.model.postprocess import class_probabilities, scores_and_labels

HOW_TO_TURN_ON = ("Turn denoising on with Denoising groups > 0 in the Train workspace's fast-convergence levers "
                  "(it needs anchor-box queries; the fast preset has them), or --set dn_groups=2 on the command line, "
                  "then train.")


def no_denoising_reason(model: nn.Module) -> str | None:
    """Why ``model`` has no denoising queries to show, in words, or None when it has some."""
    config = getattr(model, "config", None)
    groups = int(getattr(config, "dn_groups", 0) or 0)
    if groups <= 0:
        return f"This model has no denoising queries (dn_groups = 0). {HOW_TO_TURN_ON}"
    return None


@dataclass
class DenoisingSnapshot:
    """One sample's denoising queries, P = groups * group size (padding slots dropped), M objects,
    L decoder layers. ``available`` is False (and ``reason`` says why) for a model without them."""

    sample_index: int
    step: int | None  # training step of the weights, None outside training
    image: np.ndarray  # [H, W, 3] uint8 RGB as the model saw it
    target_boxes_cxcywh: np.ndarray  # [M, 4] float32 cxcywh in [0, 1]
    target_labels: np.ndarray  # [M] int64
    input_boxes_cxcywh: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # [P, 4]
    input_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [P] the labels fed
    target_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [P] the object copied
    positive: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # [P] False: a DINO negative
    group: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [P]
    layer_boxes_cxcywh: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 4), np.float32))  # [L, P, 4]
    layer_scores: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [L, P] best class prob.
    layer_labels: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))  # [L, P] best class
    class_names: list[str] = field(default_factory=list)
    reason: str = ""  # why there is nothing to show ("" when available)
    iou: np.ndarray = field(init=False)  # [L + 1, P] IoU with its object: the input, then each layer

    def __post_init__(self) -> None:
        self.iou = repair_iou(self.input_boxes_cxcywh, self.layer_boxes_cxcywh, self.target_boxes_cxcywh,
                              self.target_index)

    @property
    def available(self) -> bool:
        return not self.reason

    @property
    def num_queries(self) -> int:
        return int(self.input_labels.shape[0])

    @property
    def num_layers(self) -> int:
        return int(self.layer_boxes_cxcywh.shape[0])

    @property
    def num_groups(self) -> int:
        return int(self.group.max()) + 1 if self.num_queries else 0

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    def class_name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else str(label)

    def label_flipped(self) -> np.ndarray:
        """[P] bool: the label fed is not its object's."""
        return self.input_labels != self.target_labels[self.target_index] if self.num_queries else np.zeros(0, bool)

    def repaired(self, layer: int = -1) -> np.ndarray:
        """[P] bool: positive queries whose box after ``layer`` (0-based, -1 the last) overlaps its
        object more than the noised box fed in did."""
        if not self.num_queries or not self.num_layers:
            return np.zeros(self.num_queries, bool)
        return self.positive & (self.iou[1:][layer] > self.iou[0])

    def boxes_xyxy(self, stage: int) -> np.ndarray:
        """[P, 4] xyxy pixels: the noised inputs (``stage`` 0) or the boxes after layer ``stage``."""
        boxes = self.input_boxes_cxcywh if stage == 0 else self.layer_boxes_cxcywh[stage - 1]
        return normalized_cxcywh_to_pixel_xyxy(torch.from_numpy(boxes), *self.image_size).numpy()

    def target_boxes_xyxy(self) -> np.ndarray:
        """[M, 4] xyxy pixels of :attr:`image`."""
        return normalized_cxcywh_to_pixel_xyxy(torch.from_numpy(self.target_boxes_cxcywh), *self.image_size).numpy()

    def summary(self, layer: int = -1, group: int | None = None) -> DenoisingSummary:
        """The repair counts after ``layer`` over one group's queries (None: all groups)."""
        chosen = np.ones(self.num_queries, bool) if group is None else self.group == group
        pos, neg = chosen & self.positive, chosen & ~self.positive
        after = self.iou[1:][layer] if self.num_layers else np.zeros(self.num_queries, np.float32)
        flipped = self.label_flipped() & pos
        fixed = flipped & (self.layer_labels[layer] == self.target_labels[self.target_index]) if self.num_layers \
            else np.zeros(self.num_queries, bool)
        return DenoisingSummary(
            positives=int(pos.sum()), negatives=int(neg.sum()), repaired=int((self.repaired(layer) & chosen).sum()),
            iou_in=_mean(self.iou[0][pos]), iou_out=_mean(after[pos]),
            flipped=int(flipped.sum()), flips_fixed=int(fixed.sum()),
            positive_score=_mean(self.layer_scores[layer][pos]) if self.num_layers else float("nan"),
            negative_score=_mean(self.layer_scores[layer][neg]) if self.num_layers else float("nan"))

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per denoising query: its group, object, kind, the IoU at every stage."""
        out = []
        for p in range(self.num_queries):
            obj = int(self.target_index[p])
            row: dict[str, Any] = {
                "sample": self.sample_index, "step": self.step if self.step is not None else "", "query": p,
                "group": int(self.group[p]), "object": obj, "positive": bool(self.positive[p]),
                "object_class": self.class_name(int(self.target_labels[obj])),
                "label_fed": self.class_name(int(self.input_labels[p])), "iou_input": float(self.iou[0, p])}
            row.update({f"iou_layer_{i + 1}": float(self.iou[i + 1, p]) for i in range(self.num_layers)})
            row["repaired"] = bool(self.repaired()[p])
            out.append(row)
        return out


@dataclass
class DenoisingSummary:
    positives: int
    negatives: int
    repaired: int  # positives whose IoU with their object went up from the noised input
    iou_in: float  # mean IoU of the positives' noised boxes with their objects
    iou_out: float  # ... and of their boxes after the layer
    flipped: int  # positives fed a wrong label
    flips_fixed: int  # ... whose predicted class is their object's again
    positive_score: float  # mean best-class probability of the positives
    negative_score: float  # ... and of the negatives (trained towards "no object"); nan without any


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


def repair_iou(input_boxes_cxcywh: np.ndarray, layer_boxes_cxcywh: np.ndarray, target_boxes_cxcywh: np.ndarray,
               target_index: np.ndarray) -> np.ndarray:
    """IoU of each denoising query's box with the object it copies, before the decoder and after
    each layer: [L + 1, P] from inputs [P, 4], layers [L, P, 4], targets [M, 4] (all cxcywh) and
    target_index [P] (into the M objects)."""
    from torchvision.ops import box_iou  # imported on use: torchvision costs seconds at startup

    p = int(target_index.shape[0])
    stages = [torch.as_tensor(input_boxes_cxcywh, dtype=torch.float32).reshape(p, 4)]
    stages += [torch.as_tensor(b, dtype=torch.float32).reshape(p, 4) for b in layer_boxes_cxcywh]
    if p == 0:
        return np.zeros((len(stages), 0), np.float32)
    target = cxcywh_to_xyxy(torch.as_tensor(target_boxes_cxcywh, dtype=torch.float32)[torch.as_tensor(target_index)])
    rows = [box_iou(cxcywh_to_xyxy(s), target).diagonal() for s in stages]  # each [P]
    return torch.stack(rows).numpy().astype(np.float32)


@contextmanager
def denoising_mode(model: nn.Module, seed: int) -> Iterator[nn.Module]:
    """``model`` ready for a denoising forward without gradients: its top module in training mode
    (so it builds denoising queries from the targets), every submodule in eval mode (no dropout,
    BatchNorm statistics read, never updated), the noise drawn from ``seed`` inside a forked RNG.
    Every module's mode comes back on exit."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    model.training = True  # only the top module: DETR.forward asks ``self.training`` for its extras
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            yield model
    finally:
        for m, mode in modes:
            m.training = mode


def denoising_forward(model: nn.Module, images: Tensor | NestedTensor, targets: list[dict[str, Tensor]],
                      seed: int = 0) -> DenoisingCapture | None:
    """The denoising queries of one forward pass on a batch ([B, 3, H, W] normalized; targets with
    "labels" [M] and "boxes" [M, 4] cxcywh in [0, 1]), or None when the model built none."""
    device = next(model.parameters()).device
    images = images.to(device)
    targets = [{"labels": t["labels"].to(device), "boxes": t["boxes"].to(device)} for t in targets]
    with denoising_mode(model, seed):
        out = model(images, targets, capture=True)
    capture = out.get("capture")
    return capture.denoising if capture is not None else None


def capture_denoising(model: nn.Module, image: Tensor, target: dict[str, Tensor], sample_index: int = -1,
                      step: int | None = None, class_names: Sequence[str] = ()) -> DenoisingSnapshot:
    """The denoising snapshot of one image ([3, H, W] normalized) and its objects; the noise is
    seeded by ``sample_index``. A model without denoising gives a snapshot with a ``reason``."""
    labels = target["labels"].cpu().long()
    boxes = target["boxes"].cpu().float()
    base = dict(sample_index=int(sample_index), step=step, image=to_uint8(image),
                target_boxes_cxcywh=boxes.numpy().astype(np.float32), target_labels=labels.numpy().astype(np.int64),
                class_names=list(class_names))
    reason = no_denoising_reason(model)
    if reason is None and len(labels) == 0:
        reason = "This sample has no objects: no denoising queries are built for it. Choose another sample."
    if reason is not None:
        return DenoisingSnapshot(**base, reason=reason)
    dn = denoising_forward(model, image[None], [{"labels": labels, "boxes": boxes}], seed=max(0, int(sample_index)))
    if dn is None:
        return DenoisingSnapshot(**base, reason=f"This model family ({type(model).__name__}) does not report its "
                                                "denoising queries.")
    return snapshot_from_capture(dn, 0, base, getattr(model.config, "classifier", "softmax"))


def snapshot_from_capture(dn: DenoisingCapture, b: int, base: dict[str, Any], classifier: str) -> DenoisingSnapshot:
    """Image ``b`` of a :class:`DenoisingCapture` as a snapshot (its padding slots dropped)."""
    keep = dn.target_index[b] >= 0  # [P_all]
    probs = class_probabilities(dn.layer_logits[:, b][:, keep].detach().float().cpu(), classifier)  # [L, P, K + 1]
    scores, labels = scores_and_labels(probs)
    return DenoisingSnapshot(
        **base,
        input_boxes_cxcywh=dn.input_boxes[b][keep].detach().float().cpu().numpy(),
        input_labels=dn.input_labels[b][keep].cpu().numpy().astype(np.int64),
        target_index=dn.target_index[b][keep].cpu().numpy().astype(np.int64),
        positive=dn.positive[b][keep].cpu().numpy().astype(bool),
        group=dn.group[keep.cpu()].cpu().numpy().astype(np.int64),
        layer_boxes_cxcywh=dn.layer_boxes[:, b][:, keep].detach().float().cpu().numpy(),
        layer_scores=scores.numpy().astype(np.float32),
        layer_labels=labels.numpy().astype(np.int64),
    )


def denoising_sample(model: nn.Module, dataset: DetectionDataset, index: int, step: int | None = None) -> DenoisingSnapshot:
    """:func:`capture_denoising` on sample ``index`` of a dataset (the toy training stream)."""
    images, targets = dataset.batch([index])
    image = images.tensors[0] if isinstance(images, NestedTensor) else images[0]
    return capture_denoising(model, image, targets[0], index, step, dataset.class_names)


def noised_inputs(image: Tensor, target: dict[str, Tensor], num_classes: int, groups: int = 2,
                  label_noise: float = 0.2, box_noise: float = 0.4, sample_index: int = 0,
                  class_names: Sequence[str] = ()) -> DenoisingSnapshot:
    """What a model with ``groups`` denoising groups would be fed for this image, without a model
    (no layers): the noised boxes alone, drawn as :func:`capture_denoising` draws them."""
    labels, boxes = target["labels"].cpu().long(), target["boxes"].cpu().float()
    base = dict(sample_index=int(sample_index), step=None, image=to_uint8(image),
                target_boxes_cxcywh=boxes.numpy().astype(np.float32), target_labels=labels.numpy().astype(np.int64),
                class_names=list(class_names))
    embedding = nn.Embedding(num_classes, 2)  # before seeding: its initialisation draws from the RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(max(0, int(sample_index)))
        built = build_denoising_queries([{"labels": labels, "boxes": boxes}], embedding,
                                        num_classes, groups, label_noise, box_noise)
    if built is None:
        return DenoisingSnapshot(**base, reason="This sample has no objects: nothing to noise.")
    _, _, meta = built
    dn = meta.capture(torch.zeros(0, 1, meta.num_queries, num_classes + 1), torch.zeros(0, 1, meta.num_queries, 4))
    return snapshot_from_capture(dn, 0, base, "softmax")


class DenoisingProbe:
    """A training probe (see :mod:`detr_core.train.live`): the denoising snapshot of one sample of
    the training stream with the live model. Picklable; ``sample_index`` and ``active`` can be
    changed while it runs."""

    def __init__(self, sample_index: int = 0) -> None:
        self.sample_index = sample_index
        self.active = True

    def __call__(self, trainer: Any) -> DenoisingSnapshot | None:
        if not self.active:
            return None
        return denoising_sample(trainer.model, trainer.dataset, self.sample_index, trainer.step)


__all__ = ["DenoisingProbe", "DenoisingSnapshot", "DenoisingSummary", "HOW_TO_TURN_ON", "capture_denoising",
           "denoising_forward", "denoising_mode", "denoising_sample", "no_denoising_reason", "noised_inputs",
           "repair_iou", "snapshot_from_capture"]
