"""Training on a background thread. The worker owns its model; only signals leave it, carrying
detached CPU copies (loss dicts, inference results, the finished model)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PySide6.QtCore import QThread, Signal

from detr_core.config import DETRConfig, TrainConfig
from detr_core.detr import DETR
from detr_core.inspect import run_inference
from detr_core.train import (
    ErrorEvent,
    EvalEvent,
    FinishedEvent,
    History,
    StepEvent,
    TrainControl,
    Trainer,
)


@dataclass
class TrainedModel:
    """What a finished (or stopped) run hands back to the window."""

    model: DETR
    class_names: list[str]
    model_config: DETRConfig
    train_config: TrainConfig
    optimizer_state: dict
    history: History
    step: int
    reason: str
    elapsed: float = 0.0
    extra: dict = field(default_factory=dict)


class TrainingWorker(QThread):
    progress = Signal(list)  # [StepEvent], batched to about 10 updates per second
    evaluated = Signal(object)  # EvalEvent
    preview = Signal(object)  # InferenceResult of the preview image with the current weights
    failed = Signal(str)
    trained = Signal(object)  # TrainedModel, once, when the run ends for any reason
    probed = Signal(str, object)  # (probe name, its result), see add_probe

    EMIT_INTERVAL = 0.1

    def __init__(
        self,
        model_config: DETRConfig,
        train_config: TrainConfig,
        preview_image: np.ndarray | None = None,
        preview_every: float = 3.0,
        start_paused: bool = False,
        parent=None,  # noqa: ANN001
    ) -> None:
        super().__init__(parent)
        self.model_config = model_config
        self.train_config = train_config
        self.preview_image = preview_image
        self.preview_every = preview_every
        self.control = TrainControl()
        if start_paused:
            self.control.pause()
        self.trainer: Trainer | None = None
        self._probes: list[tuple[str, Callable[[Trainer], Any], int]] = []

    def add_probe(self, name: str, fn: Callable[[Trainer], Any], every_steps: int = 1) -> None:
        """Call ``fn(trainer)`` on the training thread every ``every_steps`` steps (and after the
        first and last step) and emit ``probed(name, result)``. ``fn`` may read the live model:
        it runs between steps, on the thread that owns it. Return detached CPU data only."""
        self._probes.append((name, fn, max(1, every_steps)))

    def _run_probes(self, trainer: Trainer, force: bool = False) -> None:
        for name, fn, every in self._probes:
            if force or trainer.step % every == 0:
                self.probed.emit(name, fn(trainer))

    def set_preview_image(self, image: np.ndarray | None) -> None:
        self.preview_image = image  # read by the worker thread between steps (a reference swap)

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - reported, never fatal to the app
            self.failed.emit(f"Training failed: {type(e).__name__}: {e}")

    def _run(self) -> None:
        threads = self.train_config.threads
        torch.set_num_threads(threads or max(1, torch.get_num_threads()))
        trainer = Trainer(self.model_config, self.train_config, control=self.control)
        self.trainer = trainer
        pending: list[StepEvent] = []
        last_emit = last_preview = time.perf_counter()
        reason = "completed"
        self._preview(trainer)
        for event in trainer.events():
            now = time.perf_counter()
            if isinstance(event, StepEvent):
                pending.append(event)
                self._run_probes(trainer, force=event.step == 1 or self.control.paused)
                if now - last_emit >= self.EMIT_INTERVAL or self.control.paused:
                    self.progress.emit(pending)
                    pending = []
                    last_emit = now
                if now - last_preview >= self.preview_every or self.control.paused:
                    self._preview(trainer)
                    last_preview = time.perf_counter()
            elif isinstance(event, EvalEvent):
                self.evaluated.emit(event)
            elif isinstance(event, ErrorEvent):
                self.failed.emit(event.message)
            elif isinstance(event, FinishedEvent):
                reason = event.reason
        if pending:
            self.progress.emit(pending)
        self._run_probes(trainer, force=True)
        self._preview(trainer)
        trainer.model.eval()
        self.trained.emit(TrainedModel(
            model=trainer.model.cpu(),
            class_names=trainer.class_names,
            model_config=self.model_config,
            train_config=self.train_config,
            optimizer_state=trainer.optimizer.state_dict(),
            history=trainer.history,
            step=trainer.step,
            reason=reason,
            elapsed=trainer.elapsed,
        ))

    def _preview(self, trainer: Trainer) -> None:
        image = self.preview_image
        if image is None:
            return
        result = run_inference(trainer.model, image, trainer.class_names, capture=True)
        self.preview.emit(result)

    # --- control, from the GUI thread ------------------------------------------------------
    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def step_once(self) -> None:
        self.control.step_once()

    def stop(self) -> None:
        self.control.stop()
