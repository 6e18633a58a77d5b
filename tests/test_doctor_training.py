"""Overfit one batch on a tiny model: it passes on toy data and names the box loss when the
boxes are scrambled every step (a pipeline broken on purpose)."""

from __future__ import annotations

import pytest
import torch

from detr_core.config import DETRConfig, ToyDataConfig, TrainConfig
from detr_core.data.toy import ToyShapes
from detr_core.doctor.overfit import overfit_one_batch, scramble_boxes


def tiny(classifier: str = "softmax") -> DETRConfig:
    return DETRConfig(backbone="tiny", tiny_stride=16, tiny_width=8, pretrained_backbone=False, d_model=32, nheads=2,
                      num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=64, num_queries=8, num_classes=3,
                      classifier=classifier, image_min_size=64, image_max_size=64)


@pytest.fixture
def toy() -> tuple[TrainConfig, ToyShapes]:
    torch.set_num_threads(1)
    train = TrainConfig(batch_size=2, steps=1, data=ToyDataConfig(image_size=64, max_objects=2))
    return train, ToyShapes(train.data, seed=0, split="train", length=4)


def test_overfit_one_batch_passes_on_toy_data(toy) -> None:
    train, data = toy
    result = overfit_one_batch(tiny(), train, data, num_images=2, max_steps=200, lr=3e-3, check_every=10)
    assert result.success, result.message
    assert result.found == 1.0 and result.steps < 200
    assert result.last_losses["loss"] <= 0.1 * result.first_losses["loss"]
    assert "passed" in result.message


def test_overfit_names_the_box_loss_when_boxes_are_scrambled(toy) -> None:
    train, data = toy
    result = overfit_one_batch(tiny(), train, data, num_images=2, max_steps=60, lr=3e-3, check_every=20,
                               targets_hook=scramble_boxes())
    assert not result.success
    assert result.stuck[0] in ("loss_giou", "loss_bbox"), result.stuck
    assert "FAILED" in result.message and "will not go down" in result.message and "augmentation" in result.message
