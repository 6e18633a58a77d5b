"""Fine-tuning: a model for a dataset, started from an official DETR ``.pth`` or an explorer
checkpoint.

Every tensor whose name and shape fit the new model is kept; the rest start fresh. So with a
different class count the class heads are re-initialized and everything else is kept; with a
different number of queries (only when asked for: the checkpoint's is the default) the query
embeddings start fresh too.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from detr_core.checkpoint import Checkpoint
from detr_core.config import DETRConfig, TrainConfig
from detr_core.model.registry import build_model
from detr_core.presets import cpu_has_fast_bf16

FREEZE = ("none", "backbone", "transformer")


def finetune_config(ckpt: Checkpoint, num_classes: int, **changes: object) -> DETRConfig:
    """The checkpoint's architecture for ``num_classes`` classes (and any other ``changes``)."""
    values = {**dataclasses.asdict(ckpt.model_config), "num_classes": num_classes, "pretrained_backbone": False}
    values.update(changes)
    return DETRConfig(**values)


def finetune_train_config(**changes: object) -> TrainConfig:
    """The reference's fine-tuning optimisation: AdamW at 1e-4, backbone 1e-5, clip 0.1; small
    batches for CPUs."""
    return TrainConfig(lr=1e-4, lr_backbone=1e-5, weight_decay=1e-4, batch_size=4, clip_max_norm=0.1,
                       steps=1000, schedule="step", bf16=cpu_has_fast_bf16(), **changes)  # type: ignore[arg-type]


def model_from_weights(config: DETRConfig, weights: dict[str, torch.Tensor],
                       seed: int | None = None) -> tuple[nn.Module, list[str]]:
    """A model of ``config`` holding every tensor of ``weights`` whose name and shape fit it (the
    rest initialized from ``seed``, reproducibly); and the names of the tensors that start fresh."""
    if seed is not None:
        torch.manual_seed(seed)
    model = build_model(config)
    own = model.state_dict()
    fitting = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    return model, sorted(k for k in own if k not in fitting and not k.endswith("num_batches_tracked"))


def init_from_checkpoint(ckpt: Checkpoint, config: DETRConfig, seed: int | None = None) -> tuple[nn.Module, list[str]]:
    """A model of ``config`` holding every checkpoint tensor that fits it; and notes on what
    was re-initialized (empty when everything was kept)."""
    model, fresh = model_from_weights(config, ckpt.state_dict, seed)
    own = model.state_dict()
    notes = []
    old = ckpt.model_config
    if old.num_classes != config.num_classes:
        notes.append(f"class head re-initialized ({old.num_classes} -> {config.num_classes} classes)")
    if old.num_queries != config.num_queries:
        notes.append(f"queries re-initialized ({old.num_queries} -> {config.num_queries})")
    modules = sorted({k.rsplit(".", 1)[0] for k in fresh})
    if modules:
        shown = ", ".join(modules[:6]) + (f" and {len(modules) - 6} more" if len(modules) > 6 else "")
        notes.append(f"{len(fresh)} of {len(own)} tensors start fresh: {shown}")
    return model, notes


def freeze(model: nn.Module, part: str) -> int:
    """Stop training ``part`` ("none", "backbone" or "transformer": encoder, decoder and the
    input projection). Returns how many parameters are frozen."""
    if part not in FREEZE:
        raise ValueError(f"unknown part {part!r} to freeze; choose one of {', '.join(FREEZE)}")
    prefixes = {"none": (), "backbone": ("backbone.",), "transformer": ("transformer.", "input_proj.")}[part]
    frozen = 0
    for name, p in model.named_parameters():
        if name.startswith(prefixes):
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen
