"""The official facebookresearch/detr file: ``{"model": state_dict, "args": Namespace}`` with
the reference's argument names (``hidden_dim``, ``enc_layers``, ``dilation`` ...), so its
``main.py --resume`` and ``hubconf`` loaders read what we write. Reading is in
:mod:`detr_core.checkpoint` (``official_config``)."""

from __future__ import annotations

import argparse

import torch

from detr_core.config import DETRConfig


def reference_args(config: DETRConfig, loss: object | None = None) -> argparse.Namespace:
    """The reference's ``main.py`` arguments for a model of this config (its defaults elsewhere)."""
    get = (lambda name, default: getattr(loss, name, default)) if loss is not None else (lambda n, d: d)
    return argparse.Namespace(
        lr=1e-4, lr_backbone=1e-5 if config.train_backbone else 0.0, batch_size=2, weight_decay=1e-4,
        epochs=300, lr_drop=200, clip_max_norm=0.1, frozen_weights=None,
        backbone=config.backbone, dilation=config.dilation, position_embedding="sine",
        enc_layers=config.num_encoder_layers, dec_layers=config.num_decoder_layers,
        dim_feedforward=config.dim_feedforward, hidden_dim=config.d_model, dropout=config.dropout,
        nheads=config.nheads, num_queries=config.num_queries, pre_norm=config.pre_norm, masks=False,
        aux_loss=config.aux_loss,
        set_cost_class=get("cost_class", 1.0), set_cost_bbox=get("cost_bbox", 5.0),
        set_cost_giou=get("cost_giou", 2.0), mask_loss_coef=1.0, dice_loss_coef=1.0,
        bbox_loss_coef=get("weight_bbox", 5.0), giou_loss_coef=get("weight_giou", 2.0),
        eos_coef=get("no_object_weight", 0.1), dataset_file="coco", coco_path=None, coco_panoptic_path=None,
        remove_difficult=False, output_dir="", device="cuda", seed=42, resume="", start_epoch=0,
        eval=False, num_workers=2, world_size=1, dist_url="env://", distributed=False,
    )


def reference_payload(config: DETRConfig, state: dict[str, torch.Tensor]) -> dict:
    return {"model": {k: v.detach().cpu() for k, v in state.items()}, "args": reference_args(config)}
