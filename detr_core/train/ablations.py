"""The classic DETR ablations as runs that can be compared: what to train, with one seed and budget.

    specs = ablation_specs(base="fast", seed=0, seconds=120)   # baseline + four ablations

A :class:`RunSpec` names a preset plus overrides, a seed and a budget (seconds of training time
or steps); :func:`detr_core.train.runs.execute_run` trains one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from detr_core.config import DETRConfig, TrainConfig
from detr_core.presets import apply_overrides, preset

# key -> (description, overrides). The classic exercises of the DETR paper, on the toy data.
ABLATIONS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("the base preset, unchanged", []),
    "one-query": ("num_queries = 1: a single query has to cover every object", ["num_queries=1"]),
    "ten-queries": (
        "num_queries = 10 on images with up to 6 objects", ["num_queries=10", "data.max_objects=6"],
    ),
    "no-self-attention": (
        "decoder self-attention removed: queries cannot see each other, so duplicates appear",
        ["decoder_self_attention=off"],
    ),
    "no-aux-loss": (
        "auxiliary decoding losses off: only the last decoder layer is supervised", ["aux_loss=off"],
    ),
}


@dataclass
class RunSpec:
    """What to train: a preset, overrides on top, a seed and a budget.

    The budget is ``seconds`` of training time (evaluation excluded) and/or ``steps``; training
    stops at whichever comes first, so at least one must be set. ``seed`` and the budget are
    applied after ``overrides`` and always win, so runs built with the same seed and budget are
    comparable. Held-out evaluation happens every ``eval_every_steps`` steps if that is set,
    otherwise every ``eval_every_seconds`` of training time (None: only at the end).
    """

    name: str
    description: str = ""
    base: str = "fast"
    overrides: list[str] = field(default_factory=list)
    seed: int = 0
    seconds: float | None = 120.0
    steps: int = 0
    eval_every_seconds: float | None = 10.0
    eval_every_steps: int = 0

    def __post_init__(self) -> None:
        self.overrides = list(self.overrides)
        if not self.name.strip():
            raise ValueError("a run needs a name")
        if not self.seconds and not self.steps:
            raise ValueError(f"run {self.name!r} has no budget: set seconds or steps")
        if self.steps < 0 or (self.seconds is not None and self.seconds < 0):
            raise ValueError("the budget cannot be negative")

    def configs(self) -> tuple[DETRConfig, TrainConfig]:
        """The model and training configs of this run (validated; ValueError on a bad override)."""
        model, train = preset(self.base)
        budget = [
            f"seed={self.seed}",
            f"max_seconds={self.seconds if self.seconds else 'none'}",
            f"steps={self.steps}",
            "eval_every=0",  # execute_run evaluates on its own clock
        ]
        return apply_overrides(model, train, [*self.overrides, *budget])

    @property
    def budget_text(self) -> str:
        parts = []
        if self.seconds:
            parts.append(f"{self.seconds:g} s")
        if self.steps:
            parts.append(f"{self.steps} steps")
        return " or ".join(parts)


def ablation_specs(
    base: str = "fast",
    seed: int = 0,
    seconds: float | None = 120.0,
    steps: int = 0,
    common: Sequence[str] = (),
    only: Sequence[str] | None = None,
    eval_every_seconds: float | None = 10.0,
    eval_every_steps: int = 0,
) -> list[RunSpec]:
    """The baseline and the four ablations (see ``ABLATIONS``), all with one seed and budget.

    ``common`` overrides go into every run (e.g. ``threads=2`` or a smaller model for tests),
    before each ablation's own. ``only`` picks a subset by key, in ``ABLATIONS`` order.
    """
    keys = list(ABLATIONS) if only is None else [k for k in ABLATIONS if k in set(only)]
    unknown = sorted(set(only or ()) - set(ABLATIONS))
    if unknown:
        raise ValueError(f"unknown ablation(s) {', '.join(unknown)}; choose from {', '.join(ABLATIONS)}")
    specs = []
    for key in keys:
        description, overrides = ABLATIONS[key]
        specs.append(RunSpec(
            name=key, description=description, base=base, overrides=[*common, *overrides], seed=seed,
            seconds=seconds, steps=steps, eval_every_seconds=eval_every_seconds,
            eval_every_steps=eval_every_steps,
        ))
    return specs
