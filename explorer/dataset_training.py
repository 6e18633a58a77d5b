"""Training on the open dataset: the training panel's configs pointed at it, from scratch or
fine-tuning from the model shown (every tensor that fits is kept; the class head starts fresh when
the class count differs, see :mod:`detr_core.train.finetune`)."""

from __future__ import annotations

import dataclasses

import torch

from detr_core.config import DatasetConfig, DETRConfig, TrainConfig
from detr_core.data.sources import model_sizes

from .dataset_session import OpenedDataset
from .state import LoadedModel


def dataset_configs(
    model_config: DETRConfig, train_config: TrainConfig, opened: OpenedDataset, start_from: LoadedModel | None = None,
) -> tuple[DETRConfig, TrainConfig, dict[str, torch.Tensor] | None]:
    """The run's model and train configs on ``opened`` (its train split, held-out AP on its val
    split), and the initial weights when fine-tuning ``start_from``. Raises ValueError when the
    dataset cannot be trained on."""
    if not opened.can_train:
        raise ValueError(f"{opened.name} needs a train and a val split to train on (it has: "
                         f"{', '.join(opened.splits)}); open the dataset's folder rather than one annotation file")
    data = DatasetConfig(source=opened.source)
    base = start_from.config if start_from is not None else model_config
    changes = {"pretrained_backbone": False} if start_from is not None else {}
    model_config = dataclasses.replace(base, num_classes=len(opened.class_names), **model_sizes(data), **changes)
    train_config = dataclasses.replace(train_config, dataset=data,
                                       eval_images=min(train_config.eval_images, len(opened.splits["val"])))
    weights = None
    if start_from is not None:
        weights = {k: v.detach().cpu().clone() for k, v in start_from.model.state_dict().items()}
    return model_config, train_config, weights


def describe(opened: OpenedDataset | None, start_from: LoadedModel | None) -> str:
    """What the next run trains on and from, for the panel."""
    if opened is None:
        data = "Data: toy shapes (File ▸ Open Dataset… to train on a COCO, VOC or YOLO dataset)."
    elif not opened.can_train:
        data = f"Data: {opened.short()} cannot be trained on (no train + val splits)."
    else:
        data = (f"Data: {opened.name}: train split ({len(opened.splits['train'])} images), held-out AP on the "
                f"val split ({len(opened.splits['val'])} images), {len(opened.class_names)} classes.")
    if start_from is not None:
        data += f" Fine-tuning from {start_from.path.name if start_from.path else start_from.source}."
    return data
