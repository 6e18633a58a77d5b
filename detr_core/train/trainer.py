"""The training loop: Qt-free, a generator of small events.

    trainer = Trainer(model_config, train_config)
    for event in trainer.events():      # StepEvent, EvalEvent, ErrorEvent, FinishedEvent
        ...

Between steps it honours a :class:`TrainControl` (pause, resume, single step, stop), so a GUI
thread can drive it without touching the model. Under a seed it is reproducible. Non-finite
predictions (caught before matching), a non-finite loss or gradient stop training with an
``ErrorEvent`` before the optimizer step, so the model keeps the last good weights.

Scale-out: with ``dist`` (from :func:`detr_core.train.distributed.setup`, under torchrun) the
model trains in DistributedDataParallel, each process on its slice of the global batch, and the
processes agree on every stop (see :mod:`detr_core.train.distributed`). :meth:`Trainer.resume_state`
and :meth:`Trainer.restore` save and put back a run's position (see :mod:`detr_core.train.resume`).
On CUDA, ``bf16`` trains under bfloat16 autocast, or float16 with a gradient scaler on GPUs
without bfloat16; batches come through pinned memory with non-blocking copies.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Container, Generator, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from detr_core.analysis.evaluate import evaluate_model
from detr_core.cancel import Cancelled, Progress, check_stop
from detr_core.config import DETRConfig, TrainConfig
from detr_core.data.dataset import DatasetError, DetectionDataset
from detr_core.data.sources import training_datasets
from detr_core.data.stream import batches
from detr_core.device import pick_device
from detr_core.model.losses import SetCriterion
from detr_core.model.nested_tensor import NestedTensor
from detr_core.model.registry import build_model, train_problem
from detr_core.train.distributed import Distributed, RankShard, evaluate_sharded, wrap_model
from detr_core.train.resume import (
    RESUME_VERSION,
    ResumeError,
    resume_info,
    rng_state,
    seed_fresh,
    set_rng_state,
)
from detr_core.train.threads import ThreadTuner


@dataclass
class StepEvent:
    step: int  # optimizer steps completed so far (1-based)
    losses: dict[str, float]  # every named loss part, unweighted, plus "loss" (weighted total)
    lr: float
    images_per_sec: float  # smoothed over recent steps
    elapsed: float  # seconds of training so far, excluding evaluation and pauses
    progress: float  # fraction of the budget (steps or seconds) used, in [0, 1]
    threads: int = 0  # CPU threads this step ran on (see detr_core.train.threads)


@dataclass
class EvalEvent:
    step: int
    elapsed: float
    metrics: dict[str, float]  # AP, AP50, AP75, AP/<class>, images
    seconds: float  # time the evaluation took (not counted in ``elapsed``)


@dataclass
class ErrorEvent:
    step: int
    message: str


@dataclass
class FinishedEvent:
    step: int
    elapsed: float
    reason: str  # "completed", "stopped" or "error"


Event = StepEvent | EvalEvent | ErrorEvent | FinishedEvent


class TrainControl:
    """Thread-safe pause / resume / single-step / stop flags, checked between steps."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._paused = False
        self._stopped = False
        self._step_tokens = 0

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def stopped(self) -> bool:
        return self._stopped

    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def step_once(self) -> None:
        """Allow exactly one more step, then stay paused."""
        with self._cond:
            self._paused = True
            self._step_tokens += 1
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def wait_for_go(self) -> bool:
        """Block while paused; True when the next step may run, False when stopped."""
        with self._cond:
            while True:
                if self._stopped:
                    return False
                if not self._paused:
                    return True
                if self._step_tokens > 0:
                    self._step_tokens -= 1
                    return True
                self._cond.wait(timeout=0.1)


@dataclass
class History:
    """Per-step records (columns of equal length) and evaluation records: the one place where step
    columns are kept (:meth:`add_step` pads a column that is new or missing with NaN) and thinned
    (:meth:`thinned`), for checkpoints, run records and the live plots alike."""

    steps: dict[str, list[float]] = field(default_factory=dict)
    evals: list[dict[str, float]] = field(default_factory=list)

    def add_step(self, record: dict[str, float]) -> None:
        n = len(self.steps.get("step", []))
        for key, value in record.items():
            column = self.steps.setdefault(key, [math.nan] * n)
            column.append(value)
        for key, column in self.steps.items():
            if len(column) < n + 1:
                column.append(math.nan)

    def __len__(self) -> int:
        return len(self.steps.get("step", []))

    def thinned(self, max_points: int, drop: Container[str] = ()) -> dict[str, list[float]]:
        """The step columns except ``drop``, thinned evenly to at most about ``max_points`` steps
        (every ``ceil(n / max_points)``-th, and always the last)."""
        n = len(self)
        stride = max(1, math.ceil(n / max_points))
        keep = list(range(0, n, stride))
        if n and keep[-1] != n - 1:
            keep.append(n - 1)
        return {k: [v[i] for i in keep] for k, v in self.steps.items() if k not in drop}

    def to_dict(self, max_points: int = 4000) -> dict:
        """Plain lists (for checkpoints), thinned evenly to at most ``max_points`` steps."""
        return {"steps": self.thinned(max_points), "evals": list(self.evals)}

    @classmethod
    def from_dict(cls, d: dict | None) -> History:
        if not d:
            return cls()
        return cls({k: list(map(float, v)) for k, v in d.get("steps", {}).items()}, list(d.get("evals", [])))


# Deformable DETR's sampling offsets and reference points train at lr * lr_linear_proj_mult (the
# authors' lr_linear_proj_names); plain DETR has no such parameters
LINEAR_PROJ_NAMES = ("sampling_offsets", "reference_points")


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with the reference's two groups: the backbone at ``lr_backbone``, the rest at ``lr``;
    for Deformable DETR a third, its sampling offsets and reference points at ``lr *
    lr_linear_proj_mult``, as in the authors' code."""
    backbone, proj, rest = [], [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            group = backbone if n.startswith("backbone.") else proj if any(k in n for k in LINEAR_PROJ_NAMES) else rest
            group.append(p)
    groups = [{"params": rest, "lr": config.lr}]
    if backbone and config.lr_backbone > 0:
        groups.append({"params": backbone, "lr": config.lr_backbone})
    elif backbone:
        for p in backbone:
            p.requires_grad_(False)
    if proj:  # last, so plain DETR's optimizer state keeps its two groups in the same order
        groups.append({"params": proj, "lr": config.lr * config.lr_linear_proj_mult})
    for g in groups:
        g["base_lr"] = g["lr"]
    device_type = next(model.parameters()).device.type
    fused = device_type in ("cpu", "cuda")  # one kernel per step instead of a loop over tensors
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def lr_factor(config: TrainConfig, step: int, progress: float) -> float:
    """Multiplier on each group's base lr: warm-up by steps, then the schedule over progress."""
    warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps > 0 else 1.0
    if config.schedule == "constant":
        factor = 1.0
    elif config.schedule == "step":
        factor = 1.0 if progress < config.lr_drop else 0.1
    elif config.schedule == "wsd":
        start = 1.0 - config.decay_fraction
        t = 0.0 if progress <= start else (min(progress, 1.0) - start) / max(config.decay_fraction, 1e-9)
        factor = 1.0 - (1.0 - config.min_lr_ratio) * t
    else:
        floor = config.min_lr_ratio
        factor = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return warm * factor


def autocast_dtype(device: torch.device, bf16: bool) -> torch.dtype | None:
    """The autocast type of a training step: None (float32) unless ``bf16``; else bfloat16, or
    float16 on a CUDA GPU without bfloat16 (then with a gradient scaler)."""
    if not bf16:
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _pinned(x: torch.Tensor | NestedTensor) -> torch.Tensor | NestedTensor:
    """``x`` in page-locked memory (a CUDA copy from it can be non-blocking)."""
    if isinstance(x, NestedTensor):
        return NestedTensor(_pinned(x.tensors), _pinned(x.mask))  # type: ignore[arg-type]
    return x if x.is_pinned() else x.pin_memory()


class Trainer:
    """Owns the model, criterion and optimizer of one training run (on one thread)."""

    def __init__(
        self,
        model_config: DETRConfig,
        train_config: TrainConfig,
        control: TrainControl | None = None,
        datasets: tuple[DetectionDataset, DetectionDataset] | None = None,
        model: nn.Module | None = None,
        dist: Distributed | None = None,
    ) -> None:
        problem = train_problem(model_config)
        if problem:
            raise ValueError(problem)
        self.model_config = model_config
        self.config = train_config
        self.control = control or TrainControl()
        self.dist = dist
        torch.manual_seed(train_config.seed)
        self.device = dist.device if dist is not None else pick_device(train_config.device)
        self.threads = ThreadTuner.for_run(train_config.threads, self.device, tune=dist is None)
        # the toy generator by default; a COCO or VOC folder when train_config.dataset names one
        self.dataset, self.heldout = datasets or training_datasets(train_config, model_config)
        names = self.dataset.class_names
        if model_config.num_classes != len(names):
            raise ValueError(
                f"the model has {model_config.num_classes} classes but {self.dataset.name} has "
                f"{len(names)} ({', '.join(names[:10])}{'...' if len(names) > 10 else ''})"
            )
        self.model = (model or build_model(model_config)).to(self.device)  # a model to fine-tune, or a new one
        self.criterion = SetCriterion(model_config, train_config.loss).to(self.device)
        self.optimizer = build_optimizer(self.model, train_config)
        self.history = History()
        self.step = 0
        self.elapsed = 0.0
        self.eval_step: int | None = None  # the step of the last evaluation (None: none yet this run)
        self.amp_dtype = autocast_dtype(self.device, train_config.bf16)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        if self.device.type == "cuda" and train_config.dataset.is_toy:
            torch.backends.cudnn.benchmark = True  # toy images all have one size: pick the fastest kernels once
        self.stream: DetectionDataset = self.dataset  # what this process's batches are drawn from
        self.net: nn.Module = self.model  # what the training step calls: the model, or DDP around it
        if dist is not None:
            self.stream = RankShard(self.dataset, dist.rank, dist.world_size, train_config.batch_size)
            self.criterion.box_count = dist.mean_count  # counts over all processes, as the reference
            # the denoising embedding sits out a step whose slice of the batch has no objects
            self.net = wrap_model(self.model, dist, find_unused=model_config.dn_groups > 0)
            if dist.rank:
                torch.manual_seed(train_config.seed + dist.rank)  # dropout and noise of its own

    @property
    def batch_per_process(self) -> int:
        return self.config.batch_size // (self.dist.world_size if self.dist is not None else 1)

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    def progress(self, step: int | None = None, elapsed: float | None = None) -> float:
        cfg = self.config
        step = self.step if step is None else step
        elapsed = self.elapsed if elapsed is None else elapsed
        fractions = []
        if cfg.steps:
            fractions.append(step / cfg.steps)
        if cfg.max_seconds:
            fractions.append(elapsed / cfg.max_seconds)
        return min(1.0, max(fractions)) if fractions else 0.0

    def train_step(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """One optimizer step. Raises FloatingPointError (weights untouched) on a non-finite loss."""
        self.model.train()
        cuda = self.device.type == "cuda"
        if cuda:
            images = _pinned(images)
        images = images.to(self.device, non_blocking=True)
        targets = [{k: v.to(self.device, non_blocking=cuda) for k, v in t.items()} for t in targets]
        factor = lr_factor(self.config, self.step, self.progress())
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * factor
        # BatchNorm statistics change during the forward pass: keep them to undo a failed step
        buffers = [(b, b.clone()) for b in self.model.buffers()]
        amp = self.amp_dtype
        with torch.autocast(self.device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            outputs = self.net(images, targets)
        failure = None
        try:  # the matcher refuses non-finite predictions (a diverged model) before matching
            losses = self.criterion(outputs, targets)
        except FloatingPointError as e:
            failure = f"{e} at step {self.step + 1}"
        else:
            total = losses["loss"]
            if not torch.isfinite(total):
                failure = f"the loss is {total.item()} at step {self.step + 1}"
        if self.dist is not None and self.dist.any(failure is not None)[0] and failure is None:
            failure = f"the loss of another process is not finite at step {self.step + 1}"
        if failure is not None:  # every process stops here, before any gradient is exchanged
            self._restore(buffers)
            raise FloatingPointError(failure)
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(total) if self.scaler is not None else total).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradient
        max_norm = self.config.clip_max_norm if self.config.clip_max_norm > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if self.scaler is not None:  # float16: an overflowing step is skipped and the scale lowered
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self._restore(buffers)
            raise FloatingPointError(f"the gradient is {grad_norm.item()} at step {self.step + 1}")
        else:
            self.optimizer.step()
        self.step += 1
        # every logged number in one conversion instead of one per loss part
        values = torch.stack([v.detach().float() for v in losses.values()] + [grad_norm.detach().float()]).tolist()
        return dict(zip([*losses, "grad_norm"], values))

    @staticmethod
    @torch.no_grad()
    def _restore(buffers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        for live, saved in buffers:
            live.copy_(saved)

    def evaluate(self, progress: Progress | None = None) -> dict[str, float]:
        """COCO metrics on the held-out split; ``progress`` may cancel (see :mod:`detr_core.cancel`).
        Distributed: shared out over the processes, and not cancellable part-way."""
        if self.dist is not None:
            return evaluate_sharded(self.model, self.heldout, self.config.eval_images, self.dist, self.device)
        return evaluate_model(self.model, self.heldout, self.config.eval_images, device=self.device,
                              progress=progress)

    # --- resuming ------------------------------------------------------------------------
    def resume_state(self, gather: bool = True) -> dict:
        """What a checkpoint needs beyond model, optimizer and history to continue this run (see
        :mod:`detr_core.train.resume`). Distributed, every process must call it (the random
        states are gathered) unless ``gather`` is False (then only this process's)."""
        rngs = [rng_state()]
        if self.dist is not None and gather:
            rngs = self.dist.gather(rngs[0])
        return {
            "version": RESUME_VERSION,
            "step": self.step,
            "elapsed": self.elapsed,
            "position": self.step * self.config.batch_size,
            "batch_size": self.config.batch_size,
            "world_size": self.dist.world_size if self.dist is not None else 1,
            "rng": rngs,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "eval_step": self.eval_step,
        }

    def restore(self, checkpoint) -> None:
        """Continue the run ``checkpoint`` was saved from: weights, optimizer, history, step,
        training time, random states and data position. Raises ResumeError when it cannot."""
        state = resume_info(checkpoint.extra, "the checkpoint")
        if int(state["batch_size"]) != self.config.batch_size:
            raise ResumeError(f"the run's batch size was {state['batch_size']}, not {self.config.batch_size}: "
                              "its data position counts in its own batches")
        try:
            self.model.load_state_dict(checkpoint.state_dict)
            if checkpoint.optimizer_state is not None:
                self.optimizer.load_state_dict(checkpoint.optimizer_state)
        except (RuntimeError, ValueError, KeyError) as e:
            raise ResumeError(f"the checkpoint does not fit this run: {str(e).strip().splitlines()[0][:200]}") from None
        self.history = History.from_dict(checkpoint.history)
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed"])
        self.eval_step = state.get("eval_step")
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rngs = list(state.get("rng") or [])
        rank = self.dist.rank if self.dist is not None else 0
        if rank < len(rngs):
            set_rng_state(rngs[rank])
        else:
            seed_fresh(self.config.seed, rank, self.step)

    def events(self) -> Iterator[Event]:
        cfg = self.config
        rate = 0.0
        last_eval_step = self.step if self.eval_step is None else self.eval_step
        # batch k is a pure function of (seed, k), the same here or from DataLoader workers (which
        # stop when this generator ends and drops ``stream``); distributed, this process's slice of it
        stream = batches(self.stream, self.batch_per_process, self.step, cfg.dataset.num_workers,
                         pin_memory=self.device.type == "cuda")
        while self.progress() < 1.0:
            if self.dist is None and not self.control.wait_for_go():
                yield FinishedEvent(self.step, self.elapsed, "stopped")
                return
            self.threads.follow_limit()
            t0 = time.perf_counter()
            try:
                images, targets = next(stream)
                unreadable = None
            except DatasetError as e:  # every image of a batch unreadable: say which, keep the weights
                unreadable = f"Training stopped: {str(e).strip().splitlines()[-1]}"
            except RuntimeError:
                if not self.control.stopped:
                    raise
                # Ctrl-C in a terminal reaches the DataLoader workers too, and they quit
                yield FinishedEvent(self.step, self.elapsed, "stopped")
                return
            if self.dist is not None:  # all processes stop at the same step, or none does
                stop, failed = self.dist.any(self.control.stopped, unreadable is not None)
                if failed:
                    unreadable = unreadable or "Training stopped: another process could not read its batch"
                elif stop:
                    yield FinishedEvent(self.step, self.elapsed, "stopped")
                    return
            if unreadable is not None:
                yield ErrorEvent(self.step, unreadable)
                yield FinishedEvent(self.step, self.elapsed, "error")
                return
            try:
                losses = self.train_step(images, targets)
            except FloatingPointError as e:
                yield ErrorEvent(
                    self.step,
                    f"Training stopped: {e}. The model keeps the weights of step {self.step}. "
                    "A lower learning rate or a stronger gradient clip usually helps.",
                )
                yield FinishedEvent(self.step, self.elapsed, "error")
                return
            dt = time.perf_counter() - t0
            self.elapsed += dt
            threads = self.threads.count
            self.threads.record(dt)  # may change the count for the next step
            if self.dist is not None:  # the logged losses of the whole batch; one clock for all processes
                names = list(losses)
                self.elapsed, *values = self.dist.mean([self.elapsed, *losses.values()])
                losses = dict(zip(names, values))
            rate = cfg.batch_size / dt if rate == 0 else 0.9 * rate + 0.1 * cfg.batch_size / dt
            lr = self.optimizer.param_groups[0]["lr"]
            self.history.add_step({"step": self.step, "elapsed": self.elapsed, "lr": lr, **losses})
            yield StepEvent(self.step, losses, lr, rate, self.elapsed, self.progress(), threads)
            if cfg.eval_every and self.step - last_eval_step >= cfg.eval_every:
                last_eval_step = self.eval_step = self.step
                if (yield from self._evaluate_or_stop()):
                    return
        if cfg.eval_every and last_eval_step != self.step:
            self.eval_step = self.step
            if (yield from self._evaluate_or_stop()):
                return
        yield FinishedEvent(self.step, self.elapsed, "completed")

    def _evaluate_or_stop(self) -> Generator[Event, None, bool]:
        """Yield the EvalEvent, or FinishedEvent "stopped" (and return True) when
        ``control.stop()`` cancelled the evaluation."""
        evaluated = self._eval_event()
        yield evaluated if evaluated is not None else FinishedEvent(self.step, self.elapsed, "stopped")
        return evaluated is None

    def _eval_event(self) -> EvalEvent | None:
        """Evaluate and record it; None when ``control.stop()`` cancelled the evaluation."""
        t0 = time.perf_counter()
        try:
            metrics = self.evaluate(check_stop(lambda: self.control.stopped))
        except Cancelled:
            return None
        seconds = time.perf_counter() - t0
        self.history.evals.append({"step": self.step, "elapsed": self.elapsed, **metrics})
        return EvalEvent(self.step, self.elapsed, metrics, seconds)
