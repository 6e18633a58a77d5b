"""Fine-tuning from the window and from the command line use one recipe (issue 25): the Training
panel with an open model and "fine-tune" chosen trains the same parameter groups at the same
learning rates as ``main.py train --init`` (the backbone at the reference's 1e-5, not at the
panel's rate)."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import call_main

from detr_core.checkpoint import load_checkpoint
from detr_core.train.live import LiveJob, run_job
from detr_core.train.trainer import TrainControl
from explorer.main_window import BUNDLED_CHECKPOINT
from explorer.state import LoadedModel
from explorer.training_panel import TrainingPanel


def optimizer_groups(trainer) -> list[dict]:
    """Each parameter group of the run's optimizer: its parameters' names, sizes and learning rate."""
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    return [{"names": [names[id(p)] for p in g["params"]], "numel": [p.numel() for p in g["params"]],
             "base_lr": g["base_lr"]} for g in trainer.optimizer.param_groups]


def test_window_and_cli_fine_tune_the_same_groups_at_the_same_rates(qtbot, tmp_path):
    ckpt = load_checkpoint(BUNDLED_CHECKPOINT)

    # the window's path: the panel's configs and initial weights, trained by the training child's job
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.set_open_model(LoadedModel(ckpt.build_model(), ckpt.class_names, ckpt.source, BUNDLED_CHECKPOINT, ckpt))
    assert panel.lr_backbone.value() == panel.lr.value() == 5e-3  # a new model: the fast preset's rates
    assert "lr_backbone" in panel.lr_backbone.toolTip()
    panel.start_from.setCurrentIndex(1)
    assert panel.fine_tuning
    assert (panel.lr.value(), panel.lr_backbone.value()) == (1e-4, 1e-5)  # shown, and editable
    assert panel.lr_backbone.isEnabled()
    model_cfg, train_cfg, weights = panel._run_configs()
    assert weights is not None and (train_cfg.lr, train_cfg.lr_backbone) == (1e-4, 1e-5)
    job = LiveJob(model_cfg, dataclasses.replace(train_cfg, steps=2, max_seconds=None), initial_weights=weights)
    job.probes.append(("groups", optimizer_groups, 1000))
    sent = []
    state = run_job(job, lambda kind, *payload: sent.append((kind, payload)), TrainControl())
    assert state.step == 2
    window = next(payload[1] for kind, payload in sent if kind == "probed")

    # the command line's path: the optimizer it saved (parameter indices, their Adam moments, lr)
    out = tmp_path / "finetuned.pt"
    assert call_main("train", "--init", BUNDLED_CHECKPOINT, "--steps", "2", "--out", out, "--quiet") == 0
    saved = load_checkpoint(out).optimizer_state
    cli = [{"numel": [saved["state"][i]["exp_avg"].numel() for i in g["params"]], "base_lr": g["base_lr"]}
           for g in saved["param_groups"]]

    assert [g["base_lr"] for g in window] == [g["base_lr"] for g in cli] == [1e-4, 1e-5]
    assert [g["numel"] for g in window] == [g["numel"] for g in cli]
    rest, backbone = window
    assert backbone["names"] and all(n.startswith("backbone.") for n in backbone["names"])
    assert not any(n.startswith("backbone.") for n in rest["names"])


def test_switching_fine_tune_off_gives_back_the_presets_rates(qtbot):
    ckpt = load_checkpoint(BUNDLED_CHECKPOINT)
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.set_open_model(LoadedModel(ckpt.build_model(), ckpt.class_names, ckpt.source, BUNDLED_CHECKPOINT, ckpt))
    panel.start_from.setCurrentIndex(1)
    panel.lr_backbone.setValue(2e-5)  # the user's own rate is what trains
    assert panel.configs()[1].lr_backbone == pytest.approx(2e-5)
    panel.start_from.setCurrentIndex(0)
    assert (panel.lr.value(), panel.lr_backbone.value()) == (5e-3, 5e-3)
    panel.preset.setCurrentText("vanilla")
    assert panel.configs()[1].lr_backbone == 1e-4
    panel.set_open_model(None)  # nothing to fine-tune: the preset's rates stay
    panel.start_from.setCurrentIndex(1)
    assert not panel.fine_tuning and panel.lr_backbone.value() == 1e-4
