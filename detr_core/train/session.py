"""A training session: one run of the :class:`~detr_core.train.trainer.Trainer` with its policy
(fine-tuning start, periodic and final save, resume, stop on a signal), the same for the command
line, the window's training process and the Runs queue.

    session = TrainingSession(model_config, train_config, model=model_from_weights(...),
                              out=Path("runs/x.pt"), periodic=PeriodicSave(steps=500))
    session.stop_on_signals()            # the command line: SIGINT/SIGTERM stop the run, it is saved
    try:
        for event in session.events():  # the trainer's events, plus ThreadsEvent and SaveWarning
            ...
    finally:
        session.hold_signals()
    outcome = session.finish()           # the final save (elsewhere if ``out`` cannot be written)

Events beyond the trainer's: :class:`ThreadsEvent` when the run's CPU threads (or why) change,
:class:`SaveWarning` when a periodic save failed (training goes on), and with ``watch`` the
doctor's ``WatchWarning``.
"""

from __future__ import annotations

import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from detr_core.checkpoint import Checkpoint, SaveError, save_checkpoint
from detr_core.config import DETRConfig, TrainConfig
from detr_core.data.dataset import DetectionDataset
from detr_core.train.distributed import Distributed
from detr_core.train.resume import PeriodicSave
from detr_core.train.trainer import StepEvent, TrainControl, Trainer


@dataclass
class ThreadsEvent:
    """The run's CPU threads and why, at the start and whenever either changes."""

    count: int
    reason: str


@dataclass
class SaveWarning:
    """A periodic save failed; training goes on (the final save tries other places)."""

    message: str


@dataclass
class SaveOutcome:
    """Where the final checkpoint went (None: nowhere), and why ``out`` failed (None: it did not)."""

    path: Path | None
    failure: str | None


class TrainingSession:
    """One run: the trainer (on a fine-tuning ``model`` or a new one, continuing ``resumed``
    when given) and what it does around the steps. Raises ValueError (ResumeError too) when the
    configs, data or checkpoint do not fit."""

    def __init__(
        self,
        model_config: DETRConfig,
        train_config: TrainConfig,
        *,
        model: nn.Module | None = None,
        datasets: tuple[DetectionDataset, DetectionDataset] | None = None,  # (train, held-out); None: the config's
        dist: Distributed | None = None,  # under torchrun
        control: TrainControl | None = None,
        resumed: Checkpoint | None = None,  # a checkpoint holding a run's resume state
        out: Path | None = None,
        periodic: PeriodicSave | None = None,
    ) -> None:
        self.trainer = Trainer(model_config, train_config, control=control, model=model, datasets=datasets, dist=dist)
        if resumed is not None:
            self.trainer.restore(resumed)
        self.out = out
        self.periodic = periodic or PeriodicSave()
        self.main_rank = dist is None or dist.is_main  # the one process that writes
        self.signals: list[int] = []  # the stop signals received (with stop_on_signals)
        self._handles_signals = False
        self._threads_said: tuple[int, str] | None = None

    @property
    def finished_budget(self) -> bool:
        return self.trainer.progress() >= 1.0

    # --- events ------------------------------------------------------------------------------
    def threads_changed(self) -> ThreadsEvent | None:
        """The thread count and reason if either changed since last asked (first call: always)."""
        now = (self.trainer.threads.count, self.trainer.threads.reason)
        if now == self._threads_said:
            return None
        self._threads_said = now
        return ThreadsEvent(*now)

    def events(self, watch: bool = False) -> Iterator:
        """The trainer's events; after a step, a ThreadsEvent if the threads changed and the
        periodic save when due (every process decides alike; only the main one writes)."""
        trainer = self.trainer
        self.periodic.start(trainer.step, trainer.elapsed)
        if watch:
            from detr_core.doctor.watch import watched_events
        for event in watched_events(trainer) if watch else trainer.events():
            yield event
            if not isinstance(event, StepEvent):
                continue
            threads = self.threads_changed()
            if threads is not None:
                yield threads
            if self.periodic.due(event.step, event.elapsed):
                state = trainer.resume_state()
                if self.main_rank and self.out is not None:
                    try:
                        self.save(self.out, state)
                    except SaveError as e:
                        yield SaveWarning(f"warning: {e}; training goes on")

    # --- saving ------------------------------------------------------------------------------
    def save(self, path: Path, resume_state: dict | None = None, extra: dict | None = None) -> Path:
        """The checkpoint: weights, history and configs; with ``resume_state`` also the optimizer
        and what continues the run. ``extra`` replaces the dataset's category ids and source."""
        t = self.trainer
        if extra is None:
            extra = {"category_ids": t.dataset.category_ids, "dataset": t.config.dataset.source}
        if resume_state is not None:
            extra = {**extra, "resume": resume_state}
        return save_checkpoint(path, t.model, t.class_names, t.optimizer if resume_state is not None else None,
                               t.history.to_dict(), t.config, t.step, extra=extra)

    def finish(self, gather: bool = True) -> SaveOutcome | None:
        """The final save of a resumable checkpoint to ``out`` (else the current folder, else the
        temporary folder). Every process of a distributed run calls it (the random states are
        gathered unless ``gather`` is False: an interrupt broke the lockstep); only the main one
        saves, the others get None. After it, stop signals are ignored."""
        state = self.trainer.resume_state(gather=gather)
        if not self.main_rank or self.out is None:
            return None
        path, failure = save_somewhere(self.out, lambda p: self.save(p, state))
        if self._handles_signals:
            # Saved: from here signals are ignored, not held. Python puts its own handlers back to
            # the default while the interpreter shuts down, and a late second signal would then
            # kill the exiting process (exit -2) after a good save; an ignored one stays ignored.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return SaveOutcome(path, failure)

    # --- signals (main thread only) ----------------------------------------------------------
    def stop_on_signals(self) -> None:
        """SIGINT and SIGTERM stop training at the end of the step under way, so the checkpoint
        can resume the run exactly (and all the processes of a distributed run stop at the same
        step). The first one switches both to being held, so a second one (a signal sent to the
        whole process group arrives twice, through uv and directly) cannot interrupt the save."""
        self._handles_signals = True
        control = self.trainer.control

        def stop(signum: int, frame: object) -> None:
            self.signals.append(signum)
            self.hold_signals()
            control.stop()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    def hold_signals(self) -> None:
        """From now until the process exits, SIGINT and SIGTERM are only recorded."""

        def hold(signum: int, frame: object) -> None:
            self.signals.append(signum)

        signal.signal(signal.SIGINT, hold)
        signal.signal(signal.SIGTERM, hold)


def save_somewhere(out: Path, save: Callable[[Path], Path]) -> tuple[Path | None, str | None]:
    """Save to ``out``; if that fails, to the current folder, then the temporary folder.
    Returns (where it was saved or None, the one-line reason ``out`` failed or None)."""
    try:
        return save(out), None
    except SaveError as e:
        failure = str(e)
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        alternative = folder / out.name
        if alternative.exists() or alternative.resolve() == out.resolve():
            alternative = folder / f"{out.stem}-{time.strftime('%Y%m%d-%H%M%S')}{out.suffix}"
        try:
            return save(alternative), failure
        except SaveError:
            continue
    return None, failure
