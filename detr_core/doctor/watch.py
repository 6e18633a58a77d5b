"""During training: a watch on the live run that warns, with the lever to pull, when it goes the
known wrong ways.

- no-object collapse: the matched queries' probability of their real class falls while every
  query's no-object probability rises toward 1 (levers: the no-object weight, the learning rate,
  the schedule);
- the loss is flat (nothing learned) or diverging;
- the gradient norm sits at the clip limit on nearly every step (every update is clipped);
- every image gets the same boxes (the queries ignore the image).

It reads the :class:`~detr_core.train.trainer.StepEvent` losses (``grad_norm`` among them) and,
every ``probe_every`` steps, the model's predictions on a few held-out images, between steps in
the training thread:

    watch = TrainingWatch(train_config.clip_max_norm)
    for item in watched_events(trainer, watch):   # trainer events, and WatchWarning
        ...
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from detr_core.model.postprocess import class_probabilities

COLLAPSE_NO_OBJECT = 0.9  # every query's no-object probability above this ...
COLLAPSE_FALL = 0.5  # ... while the matched queries' real-class probability fell below this share of its peak
SAME_BOXES_SPREAD = 0.01  # boxes move less than this (normalised) between images: the queries ignore them


@dataclass
class WatchWarning:
    step: int
    key: str  # "no_object_collapse", "loss_flat", "loss_diverging", "gradient_clipped", "same_boxes"
    title: str
    detail: str  # the numbers behind it
    lever: str  # what to change

    def text(self) -> str:
        return f"step {self.step}: {self.title}. {self.detail} Lever: {self.lever}"


@dataclass
class ProbeStats:
    step: int
    matched_class_prob: float  # mean probability of the true class over the matched queries
    no_object_prob: float  # mean no-object probability over all queries (focal: 1 - best class)
    box_spread: float  # mean over queries of the std of its box across the probe images (normalised)


@dataclass
class TrainingWatch:
    clip_max_norm: float = 0.0  # the run's clip (0: none)
    window: int = 50  # steps the loss and gradient rules look back over
    min_steps: int = 300  # no verdict on a flat loss, clipping or same boxes before this step
    history: list[dict[str, float]] = field(default_factory=list)
    probes: list[ProbeStats] = field(default_factory=list)
    warnings: list[WatchWarning] = field(default_factory=list)

    def _warn(self, step: int, key: str, title: str, detail: str, lever: str) -> list[WatchWarning]:
        if any(w.key == key for w in self.warnings):
            return []  # once per run is enough
        w = WatchWarning(step, key, title, detail, lever)
        self.warnings.append(w)
        return [w]

    def on_step(self, step: int, losses: dict[str, float]) -> list[WatchWarning]:
        self.history.append({"step": step, **losses})
        out: list[WatchWarning] = []
        loss = [h["loss"] for h in self.history]
        k = min(10, self.window)
        if len(loss) >= 2 * k:
            recent = statistics.fmean(loss[-k:])
            best = min(statistics.fmean(loss[i:i + k]) for i in range(0, len(loss) - k + 1, k))
            if not math.isfinite(recent) or recent > 2 * best:
                out += self._warn(step, "loss_diverging", "The loss is diverging",
                                  f"mean of the last {k} steps {recent:.3g}, best so far {best:.3g}.",
                                  "lower the learning rate, add warm-up steps, or clip the gradient harder")
        if step >= self.min_steps and len(loss) >= 40:
            first, last = statistics.fmean(loss[:20]), statistics.fmean(loss[-20:])
            if last >= 0.97 * first:
                out += self._warn(step, "loss_flat", "The loss is flat",
                                  f"mean {last:.3g} over the last 20 steps, {first:.3g} over the first 20.",
                                  "check the data (main.py doctor --overfit); then raise the learning rate")
        # DETR's gradient norm is above the usual clip (0.1) on most steps of a healthy run (the
        # fast preset's high learning rate is clipped on every step by design); it is a problem
        # when every step is clipped and the loss has not moved for several windows: the last
        # window against the one three windows earlier. (Two halves of one window, and then two
        # neighbouring windows, flagged healthy 120-second fast runs: noise there, and a slow but
        # steady fall late in the run.)
        norms = [h["grad_norm"] for h in self.history[-self.window:] if "grad_norm" in h]
        w = self.window
        if self.clip_max_norm > 0 and len(norms) >= w and len(loss) >= 4 * w and step >= self.min_steps:
            clipped = sum(n > self.clip_max_norm for n in norms) / len(norms)
            before, after = statistics.fmean(loss[-4 * w:-3 * w]), statistics.fmean(loss[-w:])
            if clipped >= 0.98 and after >= 0.98 * before:
                out += self._warn(step, "gradient_clipped", "The gradient norm sits at the clip limit",
                                  f"{clipped:.0%} of the last {len(norms)} steps clipped (median norm "
                                  f"{statistics.median(norms):.3g}, clip {self.clip_max_norm:g}) and the loss "
                                  f"stays at {after:.3g}: every update has the same small length.",
                                  "raise clip_max_norm, or lower the learning rate if the loss is noisy")
        return out

    def on_probe(self, stats: ProbeStats) -> list[WatchWarning]:
        self.probes.append(stats)
        out: list[WatchWarning] = []
        peak = max(p.matched_class_prob for p in self.probes)
        falling = [p.no_object_prob > COLLAPSE_NO_OBJECT and p.matched_class_prob < COLLAPSE_FALL * peak
                   for p in self.probes[-2:]]
        if len(falling) == 2 and all(falling) and self.probes[-1].no_object_prob >= self.probes[-2].no_object_prob - 0.02:
            out += self._warn(stats.step, "no_object_collapse", "No-object collapse",
                              f"the matched queries give their real class {stats.matched_class_prob:.2f} "
                              f"(peak {peak:.2f}) while all queries say no-object at {stats.no_object_prob:.2f}.",
                              "lower the no-object weight (no_object_weight, 0.1 in the paper), lower the "
                              "learning rate, or use warm-up / a gentler schedule")
        same = [p.box_spread < SAME_BOXES_SPREAD for p in self.probes[-2:] if p.step >= self.min_steps]
        if len(same) == 2 and all(same):
            out += self._warn(stats.step, "same_boxes", "Every image gets the same boxes",
                              f"a query's box moves {stats.box_spread:.3f} (of the image) from image to image: "
                              "the queries ignore the image.",
                              "check that images and targets belong together; train longer, or lower the learning rate")
        return out


@torch.no_grad()
def probe(model: torch.nn.Module, matcher, images: Tensor, targets: list[dict[str, Tensor]], step: int) -> ProbeStats:
    """The watch's view of the model on a few fixed images (eval mode, no gradients)."""
    from detr_core.analysis.predict import evaluating

    device = next(model.parameters()).device
    with evaluating(model):
        out = model(images.to(device))
    out = {"pred_logits": out["pred_logits"].float().cpu(), "pred_boxes": out["pred_boxes"].float().cpu()}
    probs = class_probabilities(out["pred_logits"], model.config.classifier)  # [B, Q, K + 1]
    cpu_targets = [{"labels": t["labels"].cpu(), "boxes": t["boxes"].cpu().float()} for t in targets]
    matched = []
    for b, (rows, cols) in enumerate(matcher(out, cpu_targets)):
        matched += probs[b, rows, cpu_targets[b]["labels"][cols]].tolist()
    spread = out["pred_boxes"].std(0).mean().item() if len(targets) > 1 else float("nan")  # [Q, 4] -> []
    return ProbeStats(step, statistics.fmean(matched) if matched else float("nan"),
                      probs[..., -1].mean().item(), spread)


def watched_events(trainer, watch: TrainingWatch | None = None, probe_images: int = 4,
                   probe_every: int = 25) -> Iterator:
    """``trainer.events()``, with a :class:`WatchWarning` after the step that raised it."""
    from detr_core.analysis.matching import matcher_for
    from detr_core.train.trainer import StepEvent

    watch = watch or TrainingWatch(trainer.config.clip_max_norm)
    n = min(probe_images, len(trainer.heldout))
    images, targets = trainer.heldout.batch(range(n))
    matcher = matcher_for(trainer.model, trainer.config.loss)
    for event in trainer.events():
        yield event
        if not isinstance(event, StepEvent):
            continue
        yield from watch.on_step(event.step, event.losses)
        if event.step % probe_every == 0 or event.step == 1:
            yield from watch.on_probe(probe(trainer.model, matcher, images, targets, event.step))


class WatchProbe:
    """The watch as a training-process probe (see :mod:`detr_core.train.live`): called with the
    trainer every few steps, it reads the steps since its last call from ``trainer.history``,
    probes the model, and returns the warnings raised since then (a list, often empty)."""

    def __init__(self, probe_images: int = 4) -> None:
        self.probe_images = probe_images
        self.watch: TrainingWatch | None = None
        self._seen = 0
        self._batch = None
        self._matcher = None

    def __call__(self, trainer) -> list[WatchWarning]:  # noqa: ANN001 (a Trainer)
        from detr_core.analysis.matching import matcher_for

        if self.watch is None:
            self.watch = TrainingWatch(trainer.config.clip_max_norm)
            self._batch = trainer.heldout.batch(range(min(self.probe_images, len(trainer.heldout))))
            self._matcher = matcher_for(trainer.model, trainer.config.loss)
        new: list[WatchWarning] = []
        columns = trainer.history.steps
        for i in range(self._seen, len(trainer.history)):
            row = {k: v[i] for k, v in columns.items()}
            new += self.watch.on_step(int(row["step"]), row)
        self._seen = len(trainer.history)
        new += self.watch.on_probe(probe(trainer.model, self._matcher, *self._batch, trainer.step))
        return new
