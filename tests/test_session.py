"""The training session (detr_core/train/session.py) on its own: thread notices, periodic saves
that can be resumed, a failing periodic save that training survives, and a final save that goes
elsewhere when its path cannot be written."""

from __future__ import annotations

import pytest

from detr_core.checkpoint import load_checkpoint
from detr_core.presets import apply_overrides, preset
from detr_core.train.resume import PeriodicSave
from detr_core.train.session import SaveWarning, ThreadsEvent, TrainingSession
from detr_core.train.trainer import FinishedEvent, StepEvent

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["d_model=32", "dim_feedforward=64", "num_decoder_layers=2", "tiny_width=8", "batch_size=2", "threads=1",
        "eval_every=0", "max_seconds=none"]


def configs(steps: int):
    return apply_overrides(*preset("fast"), [*TINY, f"steps={steps}"])


def test_periodic_saves_resume_where_they_were_written(tmp_path):
    out = tmp_path / "run.pt"
    session = TrainingSession(*configs(5), out=out, periodic=PeriodicSave(steps=2))
    first = session.threads_changed()
    assert isinstance(first, ThreadsEvent) and first.count == 1 and session.threads_changed() is None
    saved_at = []
    for event in session.events():
        if isinstance(event, StepEvent) and out.exists():
            saved_at.append(load_checkpoint(out).step)
    assert saved_at == [2, 2, 4]  # (seen at steps 3, 4, 5) written right after steps 2 and 4
    ckpt = load_checkpoint(out)
    assert ckpt.step == 4 and ckpt.extra["resume"]["step"] == 4 and ckpt.optimizer_state is not None
    outcome = session.finish()
    assert outcome is not None and (outcome.path, outcome.failure) == (out, None)
    assert load_checkpoint(out).step == 5

    resumed = TrainingSession(*configs(7), resumed=load_checkpoint(out), out=out)
    assert resumed.trainer.step == 5 and not resumed.finished_budget
    steps = [e.step for e in resumed.events() if isinstance(e, StepEvent)]
    assert steps == [6, 7]


def test_a_failing_periodic_save_warns_and_the_final_save_goes_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "run.pt"  # cannot be written: its folder is a file
    session = TrainingSession(*configs(3), out=out, periodic=PeriodicSave(steps=1))
    events = list(session.events())
    warnings = [e for e in events if isinstance(e, SaveWarning)]
    assert len(warnings) == 3 and all(w.message.endswith("training goes on") for w in warnings)
    assert isinstance(events[-1], FinishedEvent) and events[-1].reason == "completed"
    outcome = session.finish()
    assert outcome.path == tmp_path / "run.pt" and "a-file" in outcome.failure
    assert load_checkpoint(outcome.path).step == 3
