"""Overfit one batch on a tiny model: it passes on toy data and names the box loss when the
boxes are scrambled every step (a pipeline broken on purpose)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from detr_core.config import DETRConfig, LossConfig, ToyDataConfig, TrainConfig
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


def _watched_run(model: DETRConfig, train: TrainConfig, steps: int) -> list[str]:
    from detr_core.doctor.watch import TrainingWatch, WatchWarning, watched_events
    from detr_core.train.trainer import Trainer

    trainer = Trainer(model, dataclasses.replace(train, steps=steps, max_seconds=None, eval_images=4, eval_every=0,
                                                 bf16=False, data=ToyDataConfig(image_size=64, max_objects=2)))
    watch = TrainingWatch(train.clip_max_norm)
    return [e.key for e in watched_events(trainer, watch, probe_every=10) if isinstance(e, WatchWarning)]


def test_watch_probe_in_the_training_loop() -> None:
    """A run set up to collapse (no-object weight 1.0, lr 1e-2), watched as the window watches it:
    a probe called with the trainer every 10 steps."""
    from detr_core.doctor.watch import WatchProbe
    from detr_core.train.trainer import StepEvent, Trainer

    torch.set_num_threads(1)
    model = dataclasses.replace(tiny(), num_queries=20, dropout=0.0)
    train = TrainConfig(batch_size=4, lr=1e-2, lr_backbone=1e-2, schedule="constant", steps=30, eval_images=4, threads=1,
                        data=ToyDataConfig(image_size=64, max_objects=2), loss=LossConfig(no_object_weight=1.0))
    trainer, watch_probe = Trainer(model, train), WatchProbe()
    keys = [w.key for e in trainer.events() if isinstance(e, StepEvent) and (e.step == 1 or e.step % 10 == 0)
            for w in watch_probe(trainer)]
    assert "no_object_collapse" in keys
    assert len(watch_probe.watch.history) == 30


def test_watch_is_quiet_on_a_healthy_fast_preset_run() -> None:
    from detr_core.presets import preset

    torch.set_num_threads(1)
    model, train = preset("fast")
    model = dataclasses.replace(model, tiny_width=8, d_model=32, nheads=2, num_decoder_layers=2, dim_feedforward=64,
                                image_min_size=64, image_max_size=64, pretrained_backbone=False)
    assert _watched_run(model, dataclasses.replace(train, batch_size=4, warmup_steps=20), 60) == []


def test_watch_rules_on_recorded_numbers() -> None:
    from detr_core.doctor.watch import ProbeStats, TrainingWatch

    watch = TrainingWatch(clip_max_norm=0.1, window=20, min_steps=40)
    keys = [w.key for s in range(1, 101) for w in watch.on_step(s, {"loss": 5.0, "grad_norm": 30.0})]
    assert keys == ["loss_flat", "gradient_clipped"]
    diverging = TrainingWatch()
    assert [w.key for s in range(1, 41) for w in diverging.on_step(s, {"loss": 1.0 if s < 30 else 10.0})] == ["loss_diverging"]
    same = TrainingWatch(min_steps=0)
    assert [w.key for s in (10, 20) for w in same.on_probe(ProbeStats(s, 0.5, 0.5, 0.001))] == ["same_boxes"]


def test_watch_stays_quiet_on_a_falling_noisy_loss_clipped_every_step() -> None:
    """The fast preset's run: every step clipped (by design), the loss falling under noise as
    large as its fall over half a window. A healthy 120-second fast run once drew a false
    "gradient at the clip limit" from comparing two halves of one window."""
    from detr_core.doctor.watch import TrainingWatch

    watch = TrainingWatch(clip_max_norm=0.5)
    warnings = []
    for s in range(1, 901):
        noise = 1.0 if (s // 25) % 2 else -1.0  # alternating 25-step stretches above and below
        warnings += watch.on_step(s, {"loss": 20.0 - 0.015 * s + noise, "grad_norm": 30.0})
    assert warnings == []
    stalled = TrainingWatch(clip_max_norm=0.5)  # the same noise on a loss that stopped falling
    keys = [w.key for s in range(1, 901)
            for w in stalled.on_step(s, {"loss": 10.0 + (1.0 if (s // 25) % 2 else -1.0), "grad_norm": 30.0})]
    assert "gradient_clipped" in keys
