"""The one reader of a training child process (:mod:`detr_core.train.live`): a
:class:`TrainingWorker` starts the child and reads its messages on an
:class:`explorer.workers.Worker` thread, and turns them into typed signals on the GUI thread.
Only signals leave this object, carrying detached CPU data (step events, trainer events,
inference results, the finished model or run record). The training panel runs a
:class:`~detr_core.train.live.LiveJob` through it and the runs panel a
:class:`~detr_core.train.runs.RunJob`; both see a ``failed`` message the same way: ``failed`` is
emitted and reading goes on until the child has ended (``finished``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from detr_core.config import DETRConfig, TrainConfig
from detr_core.model.detr import DETR
from detr_core.train.live import LiveJob, LiveSession, Probe, TrainedState
from detr_core.train.trainer import History

from .workers import Worker, readable_error

# The training process runs at the window's priority. A lower one (niceness 10) bought a few ms of
# event-loop lateness and starved training whenever other programs kept the cores busy. Measured
# with benchmarks/under_load.py --gui on 2 cores (fast preset, training picking its own threads),
# p99 lateness and training images/s at niceness 0 / 5 / 10: idle 9 / 8 / 5 ms and 300 / 306 /
# 310; one busy process 10 / 9 / 5 ms and 270 / 227 / 243; two busy processes 11 / 9 / 8 ms and
# 182 / 64 / 19. The window's goal is p99 <= 20 ms: niceness 0 meets it and keeps training going.
TRAINING_NICENESS = 0


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


class TrainingWorker(QObject):
    """One training run in a child process. ``start()`` starts the child and its reader; the run
    is over when ``finished`` is emitted: the child has ended, been joined, and every message
    was delivered as a signal (last ``trained``, or ``failed`` if the child died without a result).

    Built from configs it runs a :class:`LiveJob` (the training panel's run); with ``job=`` any
    other session job, e.g. a :class:`~detr_core.train.runs.RunJob` whose trainer events arrive as
    ``event`` and whose :class:`~detr_core.train.run_store.RunRecord` arrives as ``trained``."""

    trainingStarted = Signal(dict)  # {"parameters", "device"}: the child has built its trainer
    progress = Signal(list)  # [StepEvent], batched to about 10 updates per second
    evaluated = Signal(object)  # EvalEvent
    preview = Signal(object, object)  # (InferenceResult of the preview image with the current
    # weights, the id given with that image: see set_preview_image)
    failed = Signal(str)  # a readable message; the run may still end with a result
    trained = Signal(object)  # once, when the run ends for any reason: a TrainedModel (LiveJob)
    # or the job's own result (a RunRecord for a RunJob)
    probed = Signal(str, object)  # (probe name, its result), see add_probe
    threadsChanged = Signal(int, str)  # the run's CPU threads and why (fewer while other work runs)
    event = Signal(object)  # a trainer Event, from a job that forwards them (RunJob)
    finished = Signal()  # the reader has ended (last, however the run ended)

    def __init__(
        self,
        model_config: DETRConfig | None = None,
        train_config: TrainConfig | None = None,
        preview_image: np.ndarray | None = None,
        preview_every: float = 3.0,
        start_paused: bool = False,
        parent: QObject | None = None,
        *,
        job: Any = None,
        initial_weights: dict | None = None,
        preview_image_id: Any = None,
    ) -> None:
        super().__init__(parent)
        if job is None:
            if model_config is None or train_config is None:
                raise TypeError("TrainingWorker needs a model and a train config, or a job")
            job = LiveJob(model_config, train_config, preview_image, preview_every, start_paused,
                          initial_weights=initial_weights, preview_image_id=preview_image_id)
        self.model_config = model_config
        self.train_config = train_config
        self.job = job
        self.session = LiveSession(job, nice=TRAINING_NICENESS)
        self._paused = start_paused
        self.info: dict | None = None  # set by trainingStarted
        self.result: Any = None  # what ``trained`` carried, once it has (until ``release``)
        self.ended = False  # ``finished`` has been emitted: every message was delivered
        self.last_heard = time.monotonic()  # when the child's last message arrived (or the start)
        self.reader = Worker(self._read, context=False, parent=self)
        self.reader.yielded.connect(self._dispatch)
        self.reader.error.connect(self.failed)  # a bug in the reader itself, still reported
        self.reader.finished.connect(self._on_reader_finished)

    @property
    def paused(self) -> bool:
        """Whether the run is (or is about to be) paused, as last asked from here."""
        return self._paused

    @property
    def started_training(self) -> bool:
        return self.info is not None

    @property
    def is_running(self) -> bool:
        """Started and its reader not yet ended (the child may still be running)."""
        return self.reader.is_running

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the reader has ended (True; the child has been joined) or ``msecs``."""
        return self.reader.wait(msecs)

    def add_probe(self, name: str, probe: Probe, every_steps: int = 1) -> None:
        """Before ``start()``: call the picklable ``probe(trainer)`` in the training process every
        ``every_steps`` steps (and after the first, every paused and the last step) and emit
        ``probed(name, result)``. For a LiveJob."""
        self.job.probes.append((name, probe, max(1, every_steps)))

    def update_probe(self, name: str, **attributes: Any) -> None:
        """Set attributes of a probe, here and in the running process (between its steps)."""
        for probe_name, probe, _ in getattr(self.job, "probes", ()):
            if probe_name == name:
                for key, value in attributes.items():
                    setattr(probe, key, value)
        self.session.update_probe(name, **attributes)

    def set_preview_image(self, image: np.ndarray | None, image_id: Any = None) -> None:
        """Predict on ``image`` from now on; its previews come back with ``image_id`` (e.g. the
        state's image id), so a preview of an earlier image can be told apart and dropped."""
        self.job.preview_image = image
        self.job.preview_image_id = image_id
        self.session.set_preview_image(image, image_id)

    def start(self) -> None:
        self.last_heard = time.monotonic()
        self.reader.start()

    def release(self) -> None:
        """Once the run has ended (``ended``): let go of what it handed over or started from,
        its result (the trained model, delivered as ``trained``: whoever took it keeps it) and
        its job's preview image and initial weights, so a finished run keeps no model alive.
        Its session (ended, joined) stays, with its exit code."""
        if not self.ended:
            raise RuntimeError("release() before the run has ended")
        self.result = None
        if isinstance(self.job, LiveJob):
            self.job.preview_image = None
            self.job.initial_weights = None

    # --- on the reader's thread ------------------------------------------------------------
    def _read(self) -> Iterator[tuple]:
        """Start the child and yield its messages, the final result already converted (a
        model is built here, off the GUI thread)."""
        try:
            self.session.start()
        except Exception as e:  # noqa: BLE001 - reported, never fatal to the app
            yield ("failed", f"Could not start the training process: {readable_error(e)}")
            return
        try:
            with closing(self.session.messages()) as messages:
                for kind, *payload in messages:
                    self.last_heard = time.monotonic()
                    if kind == "done":
                        payload = [self._result(payload[0])]
                    yield (kind, *payload)
        except Exception as e:  # noqa: BLE001
            self.session.kill()
            yield ("failed", f"Training stopped: reading the training process failed with {readable_error(e)}")

    def _result(self, result: Any) -> Any:
        if not isinstance(result, TrainedState):
            return result
        assert self.model_config is not None and self.train_config is not None
        return TrainedModel(
            model=result.build_model(self.model_config),
            class_names=result.class_names,
            model_config=self.model_config,
            train_config=self.train_config,
            history=result.history,
            step=result.step,
            reason=result.reason,
            elapsed=result.elapsed,
        )

    # --- on the GUI thread -----------------------------------------------------------------
    def _on_reader_finished(self) -> None:
        self.ended = True
        self.finished.emit()

    def _dispatch(self, message: tuple) -> None:
        kind, *payload = message
        if kind == "progress":
            self.progress.emit(payload[0])
        elif kind == "event":
            self.event.emit(payload[0])
        elif kind == "preview":
            self.preview.emit(payload[0], payload[1] if len(payload) > 1 else None)
        elif kind == "probed":
            self.probed.emit(payload[0], payload[1])
        elif kind == "evaluated":
            self.evaluated.emit(payload[0])
        elif kind == "failed":
            self.failed.emit(payload[0])
        elif kind == "threads":
            self.threadsChanged.emit(payload[0], payload[1])
        elif kind == "started":
            self.info = payload[0]
            self.trainingStarted.emit(payload[0])
        elif kind == "done":
            self.result = payload[0]
            self.trained.emit(payload[0])

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
