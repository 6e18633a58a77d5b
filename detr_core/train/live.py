"""Live training in its own process, for a GUI that must stay smooth while it watches.

    session = LiveSession(LiveJob(model_config, train_config, preview_image=rgb))
    session.start()                      # the child process begins training
    for kind, *payload in session.messages():   # blocks; ends when the child has ended
        ...                              # "started", "progress", "evaluated", "preview",
                                         # "probed", "failed", and last "done"
                                         # (a reader may break early: the session still ends)
    session.pause() / resume() / step_once() / stop()    # from any thread, never blocks

Why a process and not a thread: a training thread and a GUI thread in one interpreter share the
GIL. Every Python call the GUI makes (painting, Qt's virtual calls) waits for the trainer to hand
it over, the hand-offs cost both sides, and on two cores training in a thread of the window ran
at about half of its headless speed with an event loop late by up to 100 ms. In a child process
each side has its own interpreter; only small pickled messages cross.

The child is forked from a forkserver that has already imported torch and this module (call
:func:`warm_up` early, for example once the window is shown), so a run starts in well under a
second instead of the ~8 s a fresh interpreter needs to import torch and torchvision. Where there
is no forkserver (Windows) it is spawned.

A session runs a *job*: any picklable object with ``run(send, control, inbox) -> result``.
Its messages are ``(kind, *payload)`` tuples of plain, picklable CPU data, and the last one is
``("done", result)``. :class:`LiveJob` (the training panel's run) sends:

- ``("started", info)``: the trainer exists; ``info`` has ``parameters`` and ``device``.
- ``("progress", [StepEvent, ...])``: the steps since the last message, about 10 per second.
- ``("evaluated", EvalEvent)``, ``("probed", name, result)``.
- ``("preview", InferenceResult, image_id)``: the preview image's prediction, tagged with the
  ``image_id`` that was sent with that image (``preview_image_id``, or ``set_preview_image``), so
  a reader can tell which image it is of even when two images have the same size.
- ``("failed", message)``: a readable message (a non-finite loss, an exception).
- ``("done", TrainedState)``: once, last, when the run ends for any reason.

``detr_core.train.runs.RunJob`` (a queued comparison run) sends ``("event", Event)`` per trainer
event and ends with ``("done", RunRecord)``.

Commands to the child: pause, resume, step, stop, a new preview image, attribute updates for a
probe (``update_probe``), and a thread limit. Each run picks its threads from the cores free to it
and keeps re-checking (:mod:`detr_core.train.threads`); sessions of one process that run at the
same time also share the CPU: each is limited to an equal part of :attr:`LiveSession.cpu_budget`
threads, and a run that is left alone gets its threads back. (Two runs with two threads each on
two cores ran 26 times slower than one, as their OpenMP threads spun against each other; with one
thread each, both ran at 80% of the lone run's speed.) A :class:`LiveJob` reports its thread count
and why as ``("threads", n, reason)`` at the start and at each change. A probe is any picklable
callable ``probe(trainer) -> result``; it runs in the child between steps, so it may read the
live model.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from detr_core.analysis.capture import run_inference
from detr_core.config import DETRConfig, TrainConfig
from detr_core.device import usable_cores
from detr_core.model.registry import build_model
from detr_core.train.finetune import model_from_weights
from detr_core.train.session import TrainingSession
from detr_core.train.threads import limit_threads
from detr_core.train.trainer import (
    ErrorEvent,
    EvalEvent,
    FinishedEvent,
    History,
    StepEvent,
    TrainControl,
    Trainer,
)

Probe = Callable[[Trainer], Any]

EMIT_INTERVAL = 0.1  # seconds between progress messages: what the eye sees


@dataclass
class LiveJob:
    """Everything the child needs; pickled once when the process starts."""

    model_config: DETRConfig
    train_config: TrainConfig
    preview_image: np.ndarray | None = None  # [H, W, 3] uint8, predicted every ``preview_every`` s
    preview_every: float = 3.0
    start_paused: bool = False
    preview_image_id: Any = None  # sent back with each preview: which image it was computed on
    probes: list[tuple[str, Probe, int]] = field(default_factory=list)  # (name, probe, every_steps)
    # fine-tuning: start from these weights (every tensor whose name and shape fit; the rest fresh)
    initial_weights: dict[str, torch.Tensor] | None = None

    def run(self, send: Callable[..., None], control: TrainControl,
            inbox: queue.SimpleQueue | None = None) -> TrainedState:
        return run_job(self, send, control, inbox)


@dataclass
class TrainedState:
    """What a finished (or stopped) run sends back: weights as a CPU state dict, not a module."""

    state_dict: dict[str, torch.Tensor]
    class_names: list[str]
    history: History
    step: int
    reason: str  # "completed", "stopped" or "error"
    elapsed: float

    def build_model(self, model_config: DETRConfig) -> nn.Module:
        model = build_model(model_config)
        model.load_state_dict(self.state_dict)
        return model.eval()


# --- the child ----------------------------------------------------------------------------------


def run_job(job: LiveJob, send: Callable[..., None], control: TrainControl,
            inbox: queue.SimpleQueue | None = None) -> TrainedState:
    """Train ``job``, reporting through ``send(kind, *payload)``; return the final state. Runs in
    the child process (and can run in a plain thread). Commands other than pause, resume, step
    and stop arrive in ``inbox`` and are applied between steps."""
    probes = {name: probe for name, probe, _ in job.probes}
    model = None
    if job.initial_weights is not None:
        model, _ = model_from_weights(job.model_config, job.initial_weights, seed=job.train_config.seed)
    session = TrainingSession(job.model_config, job.train_config, control=control, model=model)
    trainer = session.trainer
    send("started", {"parameters": sum(p.numel() for p in trainer.model.parameters()),
                     "device": str(trainer.device)})

    def say_threads() -> None:
        # called before each event is handled, so a change (a limit applied before the step, or
        # the tuner's after it) is reported ahead of that step's progress; the session's own
        # ThreadsEvent, asked after the step, then finds nothing new and is not needed here
        changed = session.threads_changed()
        if changed is not None:
            send("threads", changed.count, changed.reason)

    def apply_commands() -> None:
        trainer.threads.follow_limit()
        say_threads()
        while inbox is not None and not inbox.empty():
            command, *args = inbox.get_nowait()
            if command == "preview_image":
                job.preview_image = args[0]
                job.preview_image_id = args[1] if len(args) > 1 else None
            elif command == "probe" and args[0] in probes:
                for key, value in args[1].items():
                    setattr(probes[args[0]], key, value)

    def run_probes(force: bool) -> None:
        for name, probe, every in job.probes:
            if force or trainer.step % max(1, every) == 0:
                send("probed", name, probe(trainer))

    def preview() -> None:
        if job.preview_image is not None:
            image, image_id = job.preview_image, job.preview_image_id  # one image and its id, together
            send("preview", run_inference(trainer.model, image, trainer.class_names, capture=True), image_id)

    pending: list[StepEvent] = []
    last_emit = last_preview = time.perf_counter()
    reason = "completed"
    apply_commands()  # a thread count sent at start applies from the first step
    preview()
    for event in session.events():
        apply_commands()
        now = time.perf_counter()
        if isinstance(event, StepEvent):
            pending.append(event)
            run_probes(force=event.step == 1 or control.paused)
            if now - last_emit >= EMIT_INTERVAL or control.paused:
                send("progress", pending)
                pending = []
                last_emit = now
            if now - last_preview >= job.preview_every or control.paused:
                preview()
                last_preview = time.perf_counter()
        elif isinstance(event, EvalEvent):
            send("evaluated", event)
        elif isinstance(event, ErrorEvent):
            send("failed", event.message)
        elif isinstance(event, FinishedEvent):
            reason = event.reason
    apply_commands()
    if pending:
        send("progress", pending)
    run_probes(force=True)
    preview()
    trainer.model.eval()
    return TrainedState(
        state_dict={k: v.detach().cpu() for k, v in trainer.model.state_dict().items()},
        class_names=list(trainer.class_names),
        history=trainer.history,
        step=trainer.step,
        reason=reason,
        elapsed=trainer.elapsed,
    )


def _listen(commands: Any, control: TrainControl, inbox: queue.SimpleQueue) -> None:
    """Child side: apply commands as they arrive. The parent going away stops training."""
    while True:
        try:
            command = pickle.loads(commands.recv_bytes())
        except (EOFError, OSError):
            control.stop()
            return
        name = command[0]
        if name == "pause":
            control.pause()
        elif name == "resume":
            control.resume()
        elif name == "step":
            control.step_once()
        elif name == "stop":
            control.stop()
        elif name == "threads":
            limit_threads(command[1])
        else:
            inbox.put(command)


def expected_failure(e: BaseException) -> bool:
    """A failure of the input, not of the program: a refused setting or a dataset that cannot be
    read (ValueError, DatasetError, OSError such as FileNotFoundError), or too little memory."""
    return isinstance(e, (ValueError, OSError, MemoryError))


def failure_message(e: BaseException) -> str:
    """One line for a run that raised: the problem in words for a refused setting or input
    (ValueError, OSError), else an unexpected error with its type (its traceback goes to stderr)."""
    text = (str(e).strip().splitlines() or [""])[0]
    if isinstance(e, (ValueError, OSError)) and text:
        return f"Training could not go on: {text}"
    if isinstance(e, MemoryError):
        return "Training stopped: not enough memory (try a smaller batch or model)"
    return f"Training stopped by an unexpected error in the training process ({type(e).__name__}{': ' + text if text else ''})"


def _child_main(events: Any, commands: Any, job: Any, nice: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in the terminal is the parent's to handle
    if nice and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError:
            pass
    control = TrainControl()
    if getattr(job, "start_paused", False):
        control.pause()
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_listen, args=(commands, control, inbox), daemon=True).start()
    lock = threading.Lock()

    def send(kind: str, *payload: Any) -> None:
        data = pickle.dumps((kind, *payload), protocol=pickle.HIGHEST_PROTOCOL)
        with lock:
            events.send_bytes(data)

    try:
        result = job.run(send, control, inbox)
        send("done", result)
    except (BrokenPipeError, EOFError, ConnectionResetError):
        pass  # the parent has gone: nobody to report to
    except Exception as e:  # noqa: BLE001 - every failure becomes a readable message
        if expected_failure(e):  # a refused setting or input (a dataset folder that vanished): one line
            print(f"detr-training: {failure_message(e)}", file=sys.stderr, flush=True)
        else:  # a bug: its traceback, for a report
            traceback.print_exc()
        try:
            send("failed", failure_message(e))
        except OSError:
            pass
    finally:
        events.close()


# --- the parent ---------------------------------------------------------------------------------


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _ready() -> None:
    pass


def warm_up(wait: bool = False) -> None:
    """Start the forkserver now (it imports torch and this module in the background), so the
    first run starts at once. Cheap to call again; does nothing where there is no forkserver.
    With ``wait``, return only once it is ready to fork (after its imports)."""
    ctx = _context()
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    forkserver.set_forkserver_preload([__name__])
    forkserver.ensure_running()
    if wait:
        probe = ctx.Process(target=_ready, daemon=True)
        probe.start()
        probe.join()


class LiveSession:
    """The parent's handle on one training process. ``messages()`` is read by one thread (a
    GUI's reader thread); the control methods may be called from any thread and never block."""

    cpu_budget: int = usable_cores()  # threads shared by the sessions that run at once
    _running: ClassVar[list[LiveSession]] = []
    _running_lock = threading.Lock()

    def __init__(self, job: Any, nice: int = 0) -> None:
        self.job = job
        self.nice = nice
        self._ctx = _context()
        self._events_recv, self._events_send = self._ctx.Pipe(duplex=False)
        self._commands_recv, self._commands_send = self._ctx.Pipe(duplex=False)
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.process: multiprocessing.process.BaseProcess | None = None
        self.finished = False  # the child sent "done"
        self.exitcode: int | None = None
        self._commands_thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the child (may wait for the forkserver's imports: call it off the GUI thread)."""
        warm_up()
        process = self._ctx.Process(
            target=_child_main, args=(self._events_send, self._commands_recv, self.job, self.nice),
            name="detr-training", daemon=True)
        process.start()
        self.process = process
        self._events_send.close()  # the child holds its own copies; EOF when the child ends
        self._commands_recv.close()
        self._commands_thread = threading.Thread(
            target=self._forward_commands, name="detr-training-commands", daemon=True)
        self._commands_thread.start()
        with LiveSession._running_lock:
            LiveSession._running.append(self)
        LiveSession.share_threads()

    @classmethod
    def share_threads(cls) -> None:
        """Limit each running session to its part of :attr:`cpu_budget` (no limit when alone)."""
        with cls._running_lock:
            running = list(cls._running)
        for session in running:
            session.send("threads", max(1, cls.cpu_budget // len(running)) if len(running) > 1 else None)

    def _forward_commands(self) -> None:
        while True:
            command = self._outbox.get()
            if command is None:
                break
            try:
                self._commands_send.send_bytes(pickle.dumps(command, protocol=pickle.HIGHEST_PROTOCOL))
            except OSError:
                break  # the child has ended
        try:
            self._commands_send.close()
        except OSError:
            pass

    def messages(self) -> Iterator[tuple]:
        """The child's messages until it ends; if it dies without a word, a last ``failed``.

        However reading ends (the child's end, an error, or a reader that stops early and closes
        this generator), the session is cleaned up: it leaves the running sessions (the others get
        their threads back), its command thread ends, and the child is joined (stopped and, if it
        does not end in time, killed)."""
        reported = False
        try:
            while True:
                try:
                    message = pickle.loads(self._events_recv.recv_bytes())
                except (EOFError, OSError):
                    break
                if message[0] == "done":
                    self.finished = True
                elif message[0] == "failed":
                    reported = True
                yield message
        finally:
            self._end()
        if self.process is not None and not self.finished and not (reported and self.exitcode == 0):
            code = self.exitcode
            how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            yield ("failed", f"The training process {how} before it finished.")

    def _end(self, timeout: float = 10.0) -> None:
        """After the last message was read: leave the running sessions, end the command thread
        and join the child. A child still running (its reader stopped early) is asked to stop;
        its next message then fails on the closed pipe, which ends it too."""
        with LiveSession._running_lock:
            if self in LiveSession._running:
                LiveSession._running.remove(self)
        LiveSession.share_threads()
        if self.alive:
            self.stop()
        self._outbox.put(None)  # the command thread closes the pipe and ends
        self._events_recv.close()
        if self._commands_thread is not None:
            self._commands_thread.join(timeout)
        if self.process is not None:
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout)
            self.exitcode = self.process.exitcode

    def send(self, *command: Any) -> None:
        self._outbox.put(command)

    def pause(self) -> None:
        self.send("pause")

    def resume(self) -> None:
        self.send("resume")

    def step_once(self) -> None:
        self.send("step")

    def stop(self) -> None:
        self.send("stop")

    def set_preview_image(self, image: np.ndarray | None, image_id: Any = None) -> None:
        """For a LiveJob: predict on ``image`` from now on; its previews carry ``image_id``."""
        self.send("preview_image", image, image_id)

    def update_probe(self, name: str, **attributes: Any) -> None:
        self.send("probe", name, attributes)

    def kill(self) -> None:
        """End the child at once (its unsaved progress is lost); for a stop that timed out."""
        if self.process is not None and self.process.is_alive():
            self.process.kill()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    @property
    def suspended(self) -> bool:
        """The child is stopped by a signal (SIGSTOP, Ctrl+Z, a debugger): it cannot answer
        until it is continued. From /proc (Linux); False where that cannot be read."""
        pid = self.process.pid if self.process is not None else None
        if pid is None or not self.alive:
            return False
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state in ("T", "t")

