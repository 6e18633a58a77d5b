"""Which class of a dataset each class of a model is: the label map between a model trained on
one list of classes and a dataset with another (or the same names in another order)."""

from __future__ import annotations

import torch
from torch import Tensor


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


def checkpoint_category_ids(class_names: list[str], source: str, extra: dict) -> list[int]:
    """The category id of each model label: as saved with the checkpoint (trained on a COCO
    folder); the label itself for official DETR files (their labels are COCO ids); else 1..K."""
    saved = extra.get("category_ids")
    if isinstance(saved, list) and len(saved) == len(class_names):
        return [int(c) for c in saved]
    if source == "facebookresearch/detr":
        return list(range(len(class_names)))
    return list(range(1, len(class_names) + 1))
