"""The training loop: learns, is reproducible, obeys its controls, survives a NaN."""

import threading
from dataclasses import replace

import pytest
import torch
from torchvision.ops import box_convert, box_iou

from detr_core.config import DETRConfig, LossConfig, ToyDataConfig, TrainConfig
from detr_core.train.trainer import (
    ErrorEvent,
    EvalEvent,
    FinishedEvent,
    StepEvent,
    TrainControl,
    Trainer,
)

SMALL = DETRConfig(
    backbone="tiny", tiny_width=16, tiny_stride=16, d_model=64, nheads=4, num_encoder_layers=1,
    num_decoder_layers=2, dim_feedforward=128, num_queries=8, num_classes=3, dropout=0.0,
    image_min_size=64, image_max_size=64,
)
DATA = ToyDataConfig(image_size=64, max_objects=3, noise=0.0)


def _train_config(**kw):
    base = dict(lr=1e-3, lr_backbone=1e-3, batch_size=4, steps=20, schedule="constant", seed=0, data=DATA,
                clip_max_norm=1.0)
    base.update(kw)
    return TrainConfig(**base)


def _fits(trainer, images, targets) -> str | None:
    """Why the model does not fit the batch yet (None once it does): every matched box within
    IoU 0.8 of its target, with its class."""
    trainer.model.eval()
    with torch.no_grad():
        out = trainer.model(images)
    trainer.model.train()
    indices = trainer.criterion.matcher(out, targets)
    for i, (rows, cols) in enumerate(indices):
        pred = box_convert(out["pred_boxes"][i, rows], "cxcywh", "xyxy")
        tgt = box_convert(targets[i]["boxes"][cols], "cxcywh", "xyxy")
        ious = box_iou(pred, tgt).diag()
        if not (ious > 0.8).all():
            return f"image {i}: IoUs {ious.tolist()}"
        if not (out["pred_logits"][i, rows].argmax(-1) == targets[i]["labels"][cols]).all():
            return f"image {i}: a matched box has the wrong class"
    return None


def test_overfits_one_batch():
    """At most 400 steps on one fixed batch: the loss falls and every matched box fits its
    target with IoU > 0.8. Checked every 25 steps from step 50, and the run ends once both hold
    (about step 100; training on after that proves nothing more)."""
    trainer = Trainer(SMALL, _train_config(steps=400, batch_size=2))
    images, targets = trainer.dataset.batch(range(2))
    first = trainer.train_step(images, targets)["loss"]
    problem = "not checked"
    for step in range(2, 401):
        last = trainer.train_step(images, targets)["loss"]
        if step % 25 == 0 and step >= 50 and last < first / 4:
            problem = _fits(trainer, images, targets)
            if problem is None:
                break
    assert last < first / 4
    assert problem is None, problem


def _run(trainer):
    return [e for e in trainer.events()]


def test_reproducible_under_a_seed():
    a = Trainer(SMALL, _train_config(steps=6))
    b = Trainer(SMALL, _train_config(steps=6))
    la = [e.losses["loss"] for e in _run(a) if isinstance(e, StepEvent)]
    lb = [e.losses["loss"] for e in _run(b) if isinstance(e, StepEvent)]
    assert la == lb
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    c = Trainer(SMALL, _train_config(steps=6, seed=1))
    lc = [e.losses["loss"] for e in _run(c) if isinstance(e, StepEvent)]
    assert lc != la


def test_events_and_evaluation():
    trainer = Trainer(SMALL, _train_config(steps=6, eval_every=3, eval_images=8))
    events = _run(trainer)
    steps = [e for e in events if isinstance(e, StepEvent)]
    evals = [e for e in events if isinstance(e, EvalEvent)]
    assert [e.step for e in steps] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in evals] == [3, 6]
    assert {"AP", "AP50", "AP75", "AP/rectangle"} <= evals[0].metrics.keys()
    assert isinstance(events[-1], FinishedEvent) and events[-1].reason == "completed"
    e = steps[-1]
    assert {"loss", "loss_ce", "loss_bbox", "loss_giou", "loss_ce_0"} <= e.losses.keys()
    assert e.images_per_sec > 0 and e.elapsed > 0 and e.progress == 1.0 and e.lr > 0
    assert len(trainer.history) == 6 and len(trainer.history.evals) == 2


def test_stop_and_single_steps_from_another_thread():
    control = TrainControl()
    trainer = Trainer(SMALL, _train_config(steps=1000), control=control)
    control.pause()
    seen = []
    done = threading.Event()

    def consume():
        for e in trainer.events():
            seen.append(e)
        done.set()

    thread = threading.Thread(target=consume)
    thread.start()
    control.step_once()
    control.step_once()
    deadline = 50
    while len([e for e in seen if isinstance(e, StepEvent)]) < 2 and deadline:
        threading.Event().wait(0.1)
        deadline -= 1
    threading.Event().wait(0.3)
    assert len([e for e in seen if isinstance(e, StepEvent)]) == 2  # paused after exactly two steps
    control.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert isinstance(seen[-1], FinishedEvent) and seen[-1].reason == "stopped"


def test_non_finite_loss_stops_and_keeps_the_last_good_weights():
    trainer = Trainer(SMALL, _train_config(steps=10))
    real = trainer.criterion.forward
    calls = {"n": 0}

    def sometimes_nan(outputs, targets):
        losses = real(outputs, targets)
        calls["n"] += 1
        if calls["n"] == 4:
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    trainer.criterion.forward = sometimes_nan
    snapshots = []
    events = []
    for e in trainer.events():
        events.append(e)
        if isinstance(e, StepEvent):
            snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and "nan" in errors[0].message.lower()
    assert isinstance(events[-1], FinishedEvent) and events[-1].reason == "error"
    assert trainer.step == 3
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, snapshots[-1][k])
        assert torch.isfinite(v.float()).all()


def test_time_budget_and_cosine_schedule():
    trainer = Trainer(SMALL, _train_config(steps=0, max_seconds=1.5, schedule="cosine", warmup_steps=2))
    events = _run(trainer)
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert steps and steps[-1].elapsed >= 1.5 and steps[-1].progress == 1.0
    lrs = [e.lr for e in steps]
    assert lrs[0] < lrs[1]  # warm-up
    assert lrs[-1] < max(lrs)  # decayed


def test_fast_levers_train(tmp_path):
    cfg = replace(SMALL, query_type="anchor", dn_groups=2, num_query_groups=2, classifier="focal", dense_aux=True)
    trainer = Trainer(cfg, _train_config(steps=3, loss=LossConfig(cost_class=2, weight_class=2)))
    events = _run(trainer)
    last = [e for e in events if isinstance(e, StepEvent)][-1]
    assert {"dn_loss_bbox", "dense_loss_ce", "loss_giou_0"} <= last.losses.keys()
    assert all(v == v for v in last.losses.values())  # no NaN


def test_class_count_mismatch_is_reported():
    with pytest.raises(ValueError, match="classes"):
        Trainer(replace(SMALL, num_classes=5), _train_config())
