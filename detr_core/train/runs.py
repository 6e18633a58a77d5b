"""Running comparable training runs: train a :class:`RunSpec`, evaluate it, save it in a store.

    specs = ablation_specs(base="fast", seed=0, seconds=120)   # baseline + four ablations
    store = RunStore(folder)
    for spec in specs:
        record = execute_run(spec, store)                      # trains, evaluates, saves
        print(record.name, record.ap, record.ap50, record.duplicate_rate)

:func:`execute_run` trains a spec with :class:`~detr_core.train.trainer.Trainer`, evaluates on
the held-out toy split every ``eval_every_seconds`` of training time (evaluation time is not
counted), measures the final AP, AP50, the duplicates and what NMS would add, and saves a checkpoint and a
:class:`~detr_core.train.run_store.RunRecord` (JSON) in a folder of the
:class:`~detr_core.train.run_store.RunStore`. :class:`RunJob` runs the same in a child process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detr_core.analysis.duplicates import duplicate_rate, find_duplicates
from detr_core.analysis.evaluate import coco_metrics, collect_predictions, image_ids
from detr_core.analysis.layerwise import NMS_IOU, nms_predictions
from detr_core.cancel import Cancelled, check_stop
from detr_core.config import to_dict
from detr_core.train.ablations import RunSpec
from detr_core.train.run_store import RunRecord, RunStore
from detr_core.train.session import ThreadsEvent, TrainingSession
from detr_core.train.trainer import (
    ErrorEvent,
    EvalEvent,
    Event,
    FinishedEvent,
    StepEvent,
    TrainControl,
    Trainer,
)


def _evaluate(trainer: Trainer, control: TrainControl) -> dict[str, float] | None:
    """The held-out metrics of the current weights (last decoder layer): AP, AP50, AP75,
    ``duplicates`` (the fraction of kept predictions, score >= 0.3, that repeat a better one of
    their class, IoU >= 0.5: :func:`~detr_core.analysis.duplicates.find_duplicates`), ``AP50_nms``
    (AP50 after class-wise NMS at IoU 0.7: what NMS would add) and the older ``duplicate_rate``
    (overlapping pairs per kept prediction, score >= 0.5, IoU > 0.7). None when stopped midway."""
    try:
        preds, gts = collect_predictions(
            trainer.model, trainer.heldout, trainer.config.eval_images, device=trainer.device,
            progress=check_stop(lambda: control.stopped),
        )
    except Cancelled:
        return None
    ids, n = image_ids(gts), trainer.config.eval_images
    metrics = coco_metrics(trainer.heldout, ids, preds, n)
    nms = coco_metrics(trainer.heldout, ids, nms_predictions(preds, NMS_IOU), n)
    return {**{k: metrics[k] for k in ("AP", "AP50", "AP75")}, "AP50_nms": nms["AP50"],
            "duplicates": find_duplicates(preds).fraction, "duplicate_rate": duplicate_rate(preds)}


def execute_run(
    spec: RunSpec,
    store: RunStore,
    on_event: Callable[[Event], None] | None = None,
    control: TrainControl | None = None,
) -> RunRecord:
    """Train ``spec``, evaluate it, save its checkpoint and record in ``store``; return the record.

    ``on_event`` receives the trainer's StepEvents and ErrorEvents, an EvalEvent per held-out
    evaluation (metrics AP, AP50, AP75, AP50_nms, duplicates, duplicate_rate), and last a FinishedEvent once the
    record is saved. ``control.stop()`` ends the run early: it is saved with status "stopped"
    and no final metrics (not saved at all if it had not made a step). A bad spec raises
    ValueError before anything is written; a failure during training gives a record with status
    "failed" and the message (and a checkpoint of the last good weights).
    """
    model_cfg, train_cfg = spec.configs()
    control = control or TrainControl()
    emit = on_event or (lambda event: None)
    wall0 = time.perf_counter()
    record = RunRecord(
        spec, run_id=store.new_id(spec.name), status="running", created=time.time(),
        config={"model": to_dict(model_cfg), "train": to_dict(train_cfg)},
    )
    session: TrainingSession | None = None
    trainer: Trainer | None = None
    reason = "completed"
    try:
        session = TrainingSession(model_cfg, train_cfg, control=control)
        trainer = session.trainer
        next_eval_seconds = spec.eval_every_seconds or math.inf
        last_eval_step = 0

        def evaluate_now() -> bool:
            nonlocal last_eval_step
            t0 = time.perf_counter()
            metrics = _evaluate(trainer, control)
            if metrics is None:
                return False
            point = {"step": trainer.step, "elapsed": trainer.elapsed, **metrics}
            if trainer.history.evals and trainer.history.evals[-1]["step"] == trainer.step:
                trainer.history.evals[-1] = point
            else:
                trainer.history.evals.append(point)
            last_eval_step = trainer.step
            seconds = time.perf_counter() - t0
            emit(EvalEvent(trainer.step, trainer.elapsed, dict(metrics), seconds))
            return True

        for event in session.events():
            if isinstance(event, ThreadsEvent):
                continue  # the Runs tab shows no thread count
            if isinstance(event, FinishedEvent):
                reason = event.reason
                continue
            if isinstance(event, ErrorEvent):
                record.message = event.message
            emit(event)
            if isinstance(event, StepEvent) and event.progress < 1.0:
                if spec.eval_every_steps:
                    due = event.step - last_eval_step >= spec.eval_every_steps
                else:
                    due = event.elapsed >= next_eval_seconds
                if due:
                    evaluate_now()
                    while next_eval_seconds <= event.elapsed:
                        next_eval_seconds += spec.eval_every_seconds or math.inf
        if reason != "stopped" and trainer.step > 0:
            # the final weights: AP, AP50 and duplicates from the same predictions
            if evaluate_now():
                final = trainer.history.evals[-1]
                record.ap, record.ap50, record.ap75 = final["AP"], final["AP50"], final["AP75"]
                record.duplicate_rate = final["duplicate_rate"]
                record.duplicates, record.ap50_nms = final["duplicates"], final["AP50_nms"]
            else:
                reason = "stopped"
        record.status = {"completed": "completed", "stopped": "stopped"}.get(reason, "failed")
    except Exception as e:  # noqa: BLE001 - the run fails, the caller (and the next run) go on
        record.status = "failed"
        record.message = f"{type(e).__name__}: {e}"
        reason = "error"
    if session is not None and trainer is not None:
        record.step = trainer.step
        record.elapsed = trainer.elapsed
        earlier_layers = {name for name, term in trainer.criterion.terms.items() if term.layer is not None}
        curves = trainer.history.thinned(RunRecord.MAX_POINTS, drop=earlier_layers)
        record.curves = {k: [float(x) for x in v] for k, v in curves.items()}
        record.evals = [dict(e) for e in trainer.history.evals]
        if trainer.step > 0:
            try:
                path = session.save(
                    store.checkpoint_path(record.run_id),
                    extra={"run": spec.name, "run_id": record.run_id, "AP": record.ap, "AP50": record.ap50,
                           "duplicate_rate": record.duplicate_rate, "duplicates": record.duplicates,
                           "AP50_nms": record.ap50_nms},
                )
                record.checkpoint = str(path)
            except (OSError, RuntimeError, ValueError) as e:
                record.message = " ".join(filter(None, [record.message, f"Checkpoint not saved: {e}"]))
    record.wall_seconds = time.perf_counter() - wall0
    if record.status == "stopped" and record.step == 0:
        store.delete(record.run_id)  # stopped before its first step: nothing worth keeping
        record.run_id = ""
    else:
        store.save(record)
    emit(FinishedEvent(record.step, record.elapsed, reason))
    return record


@dataclass
class RunJob:
    """:func:`execute_run` as a job for :class:`detr_core.train.live.LiveSession`, so a queued run
    trains in its own process: it sends ``("event", Event)`` for every trainer event and returns
    the saved :class:`RunRecord`."""

    spec: RunSpec
    store_root: str

    def run(self, send: Callable[..., None], control: TrainControl, inbox: Any = None) -> RunRecord:
        def on_event(event: Event) -> None:
            send("event", event)

        return execute_run(self.spec, RunStore(self.store_root), on_event=on_event, control=control)
