"""Overfit one batch: the first test of any detection pipeline.

A model that cannot memorise 2 to 4 images (loss near zero, every object found with a tight box)
will not learn from thousands: the data, the targets, the matching or the loss is broken. When it
fails, the loss part that would not go down says where to look.

    result = overfit_one_batch(model_config, train_config, dataset, num_images=4, max_steps=300)
    print(result.message)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torchvision.ops import box_iou

from detr_core.box_ops import cxcywh_to_xyxy
from detr_core.config import DETRConfig, TrainConfig
from detr_core.data.dataset import DetectionDataset
from detr_core.model.losses import LOSS_PARTS
from detr_core.model.nested_tensor import NestedTensor
from detr_core.model.postprocess import class_probabilities, scores_and_labels

FOUND_IOU = 0.7  # a box "sits on" its object at this IoU or more
FOUND_SCORE = 0.5  # ... with the right class at this probability or more
STUCK_RATIO = 0.3  # a loss part still above this fraction of its start did not go down
LOSS_NAMES = {"loss_ce": "classification (loss_ce)", "loss_bbox": "box L1 (loss_bbox)", "loss_giou": "box GIoU (loss_giou)"}
HINTS = {
    "loss_ce": "check that labels are 0-based contiguous class indices and num_classes fits them",
    "loss_bbox": "check that target boxes are cxcywh normalised to the image as fed (after resizing and "
                 "augmentation), not pixels or xyxy, and that augmentation moves the boxes with the image",
    "loss_giou": "check that target boxes are cxcywh normalised to the image as fed (after resizing and "
                 "augmentation), not pixels or xyxy, and that augmentation moves the boxes with the image",
}

TargetHook = Callable[[list[dict[str, Tensor]], int], list[dict[str, Tensor]]]


@dataclass
class OverfitResult:
    success: bool
    steps: int  # optimizer steps taken
    seconds: float
    found: float  # fraction of objects with a right-class query on them (see FOUND_IOU, FOUND_SCORE)
    first_losses: dict[str, float]  # LOSS_PARTS and "loss", mean of the first steps
    last_losses: dict[str, float]  # the same, mean of the last steps
    stuck: list[str]  # loss parts that did not go down, worst first
    message: str
    history: list[dict[str, float]] = field(default_factory=list)  # per step: step, loss, LOSS_PARTS

    def ratio(self, part: str) -> float:
        return self.last_losses[part] / max(self.first_losses[part], 1e-12)


class FixedBatch(DetectionDataset):
    """The first ``n`` images of ``dataset``, as every batch (no augmentation, no shuffling)."""

    def __init__(self, dataset: DetectionDataset, n: int) -> None:
        self.base = dataset
        self.indices = list(range(n))
        self.name = f"{n} images of {dataset.name}"
        self.fixed = dataset.batch(self.indices)

    @property
    def class_names(self) -> list[str]:
        return self.base.class_names

    def __len__(self) -> int:
        return len(self.indices)

    def sample(self, index: int):
        return self.base.sample(self.indices[index % len(self.indices)])

    def batch(self, indices: Sequence[int]):
        return self.fixed


def overfit_config(model_config: DETRConfig, train_config: TrainConfig, lr: float = 1e-3) -> tuple[DETRConfig, TrainConfig]:
    """The run's model without dropout, trained at a constant ``lr`` without warm-up or evaluation."""
    model = dataclasses.replace(model_config, dropout=0.0)
    train = dataclasses.replace(train_config, lr=lr, lr_backbone=lr, schedule="constant", warmup_steps=0,
                                eval_every=0, steps=10**9, max_seconds=None, weight_decay=0.0)
    return model, train


def overfit_one_batch(
    model_config: DETRConfig, train_config: TrainConfig, dataset: DetectionDataset, num_images: int = 4,
    max_steps: int = 400, target_ratio: float = 0.1, check_every: int = 20, lr: float = 1e-3,
    targets_hook: TargetHook | None = None, stop: Callable[[], bool] | None = None,
) -> OverfitResult:
    """Train on the first ``num_images`` images of ``dataset`` until the total loss is under
    ``target_ratio`` of its start and every object is found, or ``max_steps``. ``targets_hook``
    may change the targets of each step (to break the pipeline on purpose, see :func:`scramble_boxes`)."""
    result = None
    for result in overfit_steps(model_config, train_config, dataset, num_images, max_steps, target_ratio,
                                check_every, lr, targets_hook, stop):
        pass
    assert isinstance(result, OverfitResult)
    return result


def overfit_steps(
    model_config: DETRConfig, train_config: TrainConfig, dataset: DetectionDataset, num_images: int = 4,
    max_steps: int = 400, target_ratio: float = 0.1, check_every: int = 20, lr: float = 1e-3,
    targets_hook: TargetHook | None = None, stop: Callable[[], bool] | None = None,
) -> Iterator[dict[str, float] | OverfitResult]:
    """The same as :func:`overfit_one_batch`, one record per step (step, loss, loss parts, found),
    then the :class:`OverfitResult` (for a window that plots as it goes)."""
    from detr_core.train.trainer import Trainer

    if not 1 <= num_images <= len(dataset):
        raise ValueError(f"num_images must be between 1 and {len(dataset)}, got {num_images}")
    model_cfg, train_cfg = overfit_config(model_config, train_config, lr)
    fixed = FixedBatch(dataset, num_images)
    trainer = Trainer(model_cfg, train_cfg, datasets=(fixed, fixed))
    images, targets = fixed.fixed
    history: list[dict[str, float]] = []
    found = 0.0
    t0 = time.perf_counter()
    success = False
    while trainer.step < max_steps and not (stop and stop()):
        step_targets = targets_hook(targets, trainer.step) if targets_hook else targets
        losses = trainer.train_step(images, step_targets)
        record = {"step": trainer.step, "loss": losses["loss"], **{p: losses[p] for p in LOSS_PARTS if p in losses}}
        if trainer.step % check_every == 0 or trainer.step == max_steps:
            found = objects_found(trainer.model, images, targets, model_cfg.classifier)
            record["found"] = found
        history.append(record)
        yield record
        start = _mean(history[:5], "loss")
        if "found" in record and found >= 1.0 and _mean(history[-5:], "loss") <= target_ratio * start:
            success = True
            break
    seconds = time.perf_counter() - t0
    keys = ["loss", *(p for p in LOSS_PARTS if p in history[0])] if history else []
    first = {k: _mean(history[:5], k) for k in keys}
    last = {k: _mean(history[-5:], k) for k in keys}
    stuck = sorted((p for p in keys if p != "loss" and last[p] > STUCK_RATIO * max(first[p], 1e-12)),
                   key=lambda p: -last[p] / max(first[p], 1e-12))
    if success:
        message = (f"Overfit one batch: passed in {trainer.step} steps ({seconds:.0f} s): the loss fell to "
                   f"{last['loss'] / max(first['loss'], 1e-12):.0%} of its start and every object of the "
                   f"{num_images} images has a box on it. The pipeline can learn.")
    elif stuck:
        worst = stuck[0]
        message = (f"Overfit one batch: FAILED after {trainer.step} steps: the {LOSS_NAMES.get(worst, worst)} loss will "
                   f"not go down (still {last[worst] / max(first[worst], 1e-12):.0%} of its start"
                   + (", and " + ", ".join(LOSS_NAMES.get(p, p) for p in stuck[1:]) if len(stuck) > 1 else "")
                   + f"); {found:.0%} of the objects found. The pipeline is broken: {HINTS.get(worst, 'check the targets')}.")
    else:
        message = (f"Overfit one batch: not finished in {trainer.step} steps: the loss is at "
                   f"{last['loss'] / max(first['loss'], 1e-12):.0%} of its start and {found:.0%} of the objects "
                   "are found. Every loss part goes down: give it more steps or a higher learning rate.")
    yield OverfitResult(success, trainer.step, seconds, found, first, last, stuck, message, history)


def _mean(records: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in records if key in r]
    return sum(values) / len(values) if values else float("nan")


@torch.no_grad()
def objects_found(model: torch.nn.Module, images: Tensor | NestedTensor, targets: list[dict[str, Tensor]],
                  classifier: str) -> float:
    """Fraction of target objects with a query of their class (score >= FOUND_SCORE) at IoU >= FOUND_IOU."""
    from detr_core.analysis.predict import evaluating

    device = next(model.parameters()).device
    with evaluating(model):
        out = model(images.to(device))
    probs = class_probabilities(out["pred_logits"].float().cpu(), classifier)  # [B, Q, K + 1]
    scores, labels = scores_and_labels(probs)  # [B, Q]
    boxes = cxcywh_to_xyxy(out["pred_boxes"].float().cpu())  # [B, Q, 4] normalised
    hits = total = 0
    for b, t in enumerate(targets):
        if len(t["labels"]) == 0:
            continue
        iou = box_iou(cxcywh_to_xyxy(t["boxes"].float().cpu()), boxes[b])  # [M, Q]
        ok = (iou >= FOUND_IOU) & (labels[b][None] == t["labels"].cpu()[:, None]) & (scores[b][None] >= FOUND_SCORE)
        hits += int(ok.any(1).sum())
        total += len(t["labels"])
    return hits / max(total, 1)


def scramble_boxes(seed: int = 0) -> TargetHook:
    """A pipeline broken on purpose: every step each object gets a new random box (as when an
    augmentation moves the image but not its boxes). Labels stay right."""
    gen = torch.Generator().manual_seed(seed)

    def hook(targets: list[dict[str, Tensor]], step: int) -> list[dict[str, Tensor]]:
        out = []
        for t in targets:
            n = len(t["boxes"])
            centre = torch.rand(n, 2, generator=gen) * 0.6 + 0.2
            size = torch.rand(n, 2, generator=gen) * 0.3 + 0.1
            out.append({**t, "boxes": torch.cat([centre, size], 1)})
        return out

    return hook


def open_for_overfit(source: str, model_config: DETRConfig, split: str = "") -> tuple[DetectionDataset, DETRConfig]:
    """The images of ``source`` ("toy" or a folder) as the model sees them at inference, and the
    model config with the dataset's class count."""
    from detr_core.data.sources import open_dataset
    from detr_core.data.toy import ToyShapes
    from detr_core.data.transforms import eval_transform

    if source == "toy":
        data: DetectionDataset = ToyShapes(seed=0, split="train", length=16)
    else:
        data = open_dataset(source, split, "train").with_transform(
            eval_transform(model_config.image_min_size, model_config.image_max_size,
                           model_config.fixed_input_size))
    return data, dataclasses.replace(model_config, num_classes=len(data.class_names))
