"""Training in a child process (:mod:`detr_core.train.live`), followed by a reader thread that turns
the child's messages into signals. Only signals leave this object, carrying detached CPU data
(step events, inference results, the finished model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QThread, Signal

from detr_core.config import DETRConfig, TrainConfig
from detr_core.model.detr import DETR
from detr_core.train.live import LiveJob, LiveSession, Probe, TrainedState
from detr_core.train.trainer import History

# The training process runs at a lower priority than the window. When the window needs the CPU
# (a repaint, a preview) it gets it at once; when it is idle, training has both cores anyway.
# Measured with benchmarks/gui_latency.py on 2 cores: event-loop lateness p99 10 ms and max 27 ms
# at niceness 10, against 23 ms and 83 ms at 0, for the same training speed.
TRAINING_NICENESS = 10


@dataclass
class TrainedModel:
    """What a finished (or stopped) run hands back to the window."""

    model: DETR
    class_names: list[str]
    model_config: DETRConfig
    train_config: TrainConfig
    history: History
    step: int
    reason: str
    elapsed: float = 0.0
    extra: dict = field(default_factory=dict)


class TrainingWorker(QThread):
    """One training run. ``start()`` starts the child process; the thread ends when it has ended
    and ``trained`` has been emitted (or ``failed``, if the process died without a result)."""

    trainingStarted = Signal(dict)  # {"parameters", "device"}: the child has built its trainer
    progress = Signal(list)  # [StepEvent], batched to about 10 updates per second
    evaluated = Signal(object)  # EvalEvent
    preview = Signal(object)  # InferenceResult of the preview image with the current weights
    failed = Signal(str)
    trained = Signal(object)  # TrainedModel, once, when the run ends for any reason
    probed = Signal(str, object)  # (probe name, its result), see add_probe
    threadsChanged = Signal(int)  # the run's CPU threads (fewer while another run trains too)

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
        self.job = LiveJob(model_config, train_config, preview_image, preview_every, start_paused)
        self.session = LiveSession(self.job, nice=TRAINING_NICENESS)
        self._paused = start_paused
        self.info: dict | None = None  # set by trainingStarted

    @property
    def paused(self) -> bool:
        """Whether the run is (or is about to be) paused, as last asked from here."""
        return self._paused

    @property
    def started_training(self) -> bool:
        return self.info is not None

    def add_probe(self, name: str, probe: Probe, every_steps: int = 1) -> None:
        """Before ``start()``: call the picklable ``probe(trainer)`` in the training process every
        ``every_steps`` steps (and after the first, every paused and the last step) and emit
        ``probed(name, result)``."""
        self.job.probes.append((name, probe, max(1, every_steps)))

    def update_probe(self, name: str, **attributes: Any) -> None:
        """Set attributes of a probe, here and in the running process (between its steps)."""
        for probe_name, probe, _ in self.job.probes:
            if probe_name == name:
                for key, value in attributes.items():
                    setattr(probe, key, value)
        self.session.update_probe(name, **attributes)

    def set_preview_image(self, image: np.ndarray | None) -> None:
        self.job.preview_image = image
        self.session.set_preview_image(image)

    def run(self) -> None:
        try:
            self.session.start()
        except Exception as e:  # noqa: BLE001 - reported, never fatal to the app
            self.failed.emit(f"Could not start the training process: {type(e).__name__}: {e}")
            return
        try:
            for kind, *payload in self.session.messages():
                self._dispatch(kind, payload)
        except Exception as e:  # noqa: BLE001
            self.session.kill()
            self.failed.emit(f"Training failed: {type(e).__name__}: {e}")

    def _dispatch(self, kind: str, payload: list) -> None:
        if kind == "progress":
            self.progress.emit(payload[0])
        elif kind == "preview":
            self.preview.emit(payload[0])
        elif kind == "probed":
            self.probed.emit(payload[0], payload[1])
        elif kind == "evaluated":
            self.evaluated.emit(payload[0])
        elif kind == "failed":
            self.failed.emit(payload[0])
        elif kind == "threads":
            self.threadsChanged.emit(payload[0])
        elif kind == "started":
            self.info = payload[0]
            self.trainingStarted.emit(payload[0])
        elif kind == "done":
            state: TrainedState = payload[0]
            self.trained.emit(TrainedModel(
                model=state.build_model(self.model_config),
                class_names=state.class_names,
                model_config=self.model_config,
                train_config=self.train_config,
                history=state.history,
                step=state.step,
                reason=state.reason,
                elapsed=state.elapsed,
            ))

    # --- control, from the GUI thread (never blocks) ---------------------------------------
    def pause(self) -> None:
        self._paused = True
        self.session.pause()

    def resume(self) -> None:
        self._paused = False
        self.session.resume()

    def step_once(self) -> None:
        self._paused = True
        self.session.step_once()

    def stop(self) -> None:
        self.session.stop()

    def kill(self) -> None:
        """End the training process at once; its progress since the last message is lost."""
        self.session.kill()
