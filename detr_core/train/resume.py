"""Resumable runs: what a checkpoint holds, beyond the weights, to continue a run exactly.

Every checkpoint ``main.py train`` writes (every N steps or minutes, on Ctrl-C / SIGTERM, at the
end) is a normal checkpoint (it opens in the window, ``info``, ``eval``...) whose model,
optimizer, history and step fields are the run's, plus ``extra["resume"]``:

    step, elapsed      where the run is in its budget; the learning rate is a function of both
    position           stream positions consumed (step * batch_size): the data position. The
                       training stream is a pure function of (seed, position), so this says
                       everything (for a folder: epoch = position // images, offset = the rest)
    batch_size         the global batch (the position counts in it)
    world_size         processes that trained it
    rng                per process: torch (CPU and CUDA), numpy and Python random states
    scaler             the float16 gradient scaler's state (CUDA without bfloat16), else None
    eval_step          the step of the last evaluation (the next comes eval_every steps later)

``main.py train --resume CKPT`` rebuilds the trainer from the file's configs and
:meth:`Trainer.restore` puts all of it back. On one process with the same settings the resumed
run's weights equal the uninterrupted run's bit for bit on a CPU; on a different number of
processes the data is the same (global batches) and the weights agree within float tolerance.
Only plain tensors and containers are stored (checkpoints load with ``weights_only=True``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

RESUME_KEY = "resume"
RESUME_VERSION = 1
# settings a resumed run may change (--set NAME=VALUE): how and how long it runs, not what it learns
CHANGEABLE = frozenset({"steps", "max_seconds", "eval_every", "eval_images", "threads", "device", "bf16",
                        "num_workers"})


def rng_state() -> dict:
    """This process's random states (torch CPU and CUDA, numpy's global one, Python's)."""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda = list(state["cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)
    n = state.get("numpy")
    if n:
        np.random.set_state({"bit_generator": "MT19937",
                             "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
                             "has_gauss": int(n["has_gauss"]), "gauss": float(n["gauss"])})
    if state.get("python") is not None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))


def seed_fresh(seed: int, rank: int, step: int) -> None:
    """Random states for a process the checkpoint has none for (more processes than saved)."""
    s = (seed * 1_000_003 + step * 7919 + rank) & 0x7FFF_FFFF_FFFF_FFFF
    torch.manual_seed(s)
    np.random.seed(s & 0xFFFF_FFFF)
    random.seed(s)


class ResumeError(ValueError):
    """A checkpoint that cannot continue a run; the message says why in one line."""


def resume_info(extra: dict, name: str) -> dict:
    """The resume state of a checkpoint's ``extra``; ResumeError when it has none."""
    state = extra.get(RESUME_KEY) if isinstance(extra, dict) else None
    if not isinstance(state, dict) or "step" not in state:
        raise ResumeError(f"{name} holds no training state to resume (only checkpoints written by main.py "
                          "train have it); to start a new run from its weights, use --init")
    if int(state.get("version", 0)) > RESUME_VERSION:
        raise ResumeError(f"{name}: its training state was written by a newer DETR Explorer")
    return state


@dataclass
class PeriodicSave:
    """When to write a checkpoint during training: every ``steps`` optimizer steps and/or every
    ``seconds`` of training time (both 0: never). Decided from the step and the training time,
    which all processes agree on, so every process decides alike."""

    steps: int = 0
    seconds: float = 0.0
    _last_step: int = 0
    _last_elapsed: float = 0.0

    def start(self, step: int, elapsed: float) -> None:
        self._last_step, self._last_elapsed = step, elapsed

    def due(self, step: int, elapsed: float) -> bool:
        hit = (self.steps > 0 and step - self._last_step >= self.steps) or \
              (self.seconds > 0 and elapsed - self._last_elapsed >= self.seconds)
        if hit:
            self.start(step, elapsed)
        return hit
