"""Experiments as runs that can be compared: a preset plus changes, with one seed and budget.

    specs = ablation_specs(base="fast", seed=0, seconds=120)          # baseline + four ablations
    specs = experiment_specs(["greedy-matching"], base="fast", seconds=120)
    spec = custom_spec("fast", "dn_groups=2 lr=1e-3", seconds=120)     # "fast + dn_groups=2, lr=1e-3"

A :class:`RunSpec` names a preset plus overrides, a seed and a budget (seconds of training time
or steps); :func:`detr_core.train.runs.execute_run` trains one. A run is named by its preset and
its changes (:func:`run_name`), so two runs that differ say how in their names.

:data:`EXPERIMENTS` holds the one-click items: the classic ablations of the DETR paper and the
study questions (greedy matching, a learned or input-only positional encoding, no L1 or no GIoU
loss, a pretrained backbone), each with the sentence that says what it asks.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from detr_core.config import DatasetConfig, DETRConfig, LossConfig, ToyDataConfig, TrainConfig
from detr_core.presets import apply_overrides, preset


def pretrained_weights_missing(backbone: str = "resnet18") -> str:
    """Why ``backbone``'s ImageNet weights cannot be used ("" when they are in the local torch
    cache: the explorer never downloads them)."""
    from detr_core.model.backbone import _cached_imagenet_weights

    if _cached_imagenet_weights(backbone) is not None:
        return ""
    import torch
    import torchvision

    url = torchvision.models.get_model_weights(backbone).IMAGENET1K_V1.url
    folder = f"{torch.hub.get_dir()}/checkpoints"
    return (f"needs ImageNet weights for {backbone} in the local torch cache ({folder}/{url.rsplit('/', 1)[-1]}); "
            "the explorer never downloads them")


@dataclass(frozen=True)
class Experiment:
    """A one-click item of the Runs tab: what it asks (one sentence) and the changes of each of its
    runs (most have one run, compared with the baseline; a comparison of two has two)."""

    key: str
    group: str  # "ablation" (the DETR paper's classic exercises) or "study" (a study question)
    explanation: str
    runs: tuple[tuple[str, ...], ...]  # the overrides of each run
    missing: Callable[[], str] | None = None  # why it cannot run here ("" or None: it can)

    def unavailable(self) -> str:
        """Why this experiment cannot run on this machine ("" when it can)."""
        return self.missing() if self.missing is not None else ""


_PRETRAINED = ("backbone=resnet18",)  # stride 32 (a 4x4 grid on 128 px): ResNet-18 cannot be dilated

EXPERIMENTS: dict[str, Experiment] = {e.key: e for e in (
    # The classic exercises of the DETR paper, on the toy data.
    Experiment("baseline", "ablation", "The preset (and the changes) as it is: what every other run is compared with.",
               ((),)),
    Experiment("one-query", "ablation", "One query has to cover every object of an image.", (("num_queries=1",),)),
    Experiment("ten-queries", "ablation", "Ten queries on images with up to six objects: barely enough slots.",
               (("num_queries=10", "data.max_objects=6"),)),
    Experiment("no-self-attention", "ablation",
               "No decoder self-attention: queries cannot see each other, so one object gets several boxes, "
               "each less sure (duplicates at score 0.3; NMS raises AP50).",
               (("decoder_self_attention=off",),)),
    Experiment("no-aux-loss", "ablation",
               "No auxiliary decoding losses: only the last decoder layer is supervised.", (("aux_loss=off",),)),
    # The study questions.
    Experiment("greedy-matching", "study",
               "Greedy instead of Hungarian matching: cheapest pair first, so of two objects that want one query, "
               "one gets a worse one.", (("loss.matcher=greedy",),)),
    Experiment("learned-position", "study",
               "Learned instead of sine positional encoding: a trained vector per grid row and column, learned "
               "before attention can use it.", (("position_embedding=learned",),)),
    Experiment("position-at-input", "study",
               "The positional encoding added once, to the encoder's input, instead of to every attention layer's "
               "queries and keys.", (("position_added=input",),)),
    Experiment("no-l1-loss", "study",
               "No L1 box loss: boxes learn from GIoU alone (matching keeps its L1 cost); the DETR paper lost 0.7 AP.",
               (("loss.weight_bbox=0",),)),
    Experiment("no-giou-loss", "study",
               "No GIoU loss: boxes learn from L1 alone, blind to box size; the DETR paper lost 4.8 AP.",
               (("loss.weight_giou=0",),)),
    Experiment("pretrained-backbone", "study",
               "A ResNet-18 with ImageNet weights against the same one from random weights (two runs): what "
               "pretraining gives.",
               ((*_PRETRAINED, "pretrained_backbone=on"), (*_PRETRAINED, "pretrained_backbone=off")),
               missing=pretrained_weights_missing),
)}

# key -> (description, overrides): the classic ablations (the older form of their EXPERIMENTS entries)
ABLATIONS: dict[str, tuple[str, list[str]]] = {
    k: (e.explanation, list(e.runs[0])) for k, e in EXPERIMENTS.items() if e.group == "ablation"
}


def run_name(base: str, changes: Sequence[str]) -> str:
    """A run's name: its preset and its changes, "fast + dn_groups=2, lr=1e-3" ("fast": none)."""
    return f"{base} + {', '.join(changes)}" if changes else base


def parse_changes(text: str) -> list[str]:
    """``name=value`` overrides from text, separated by spaces (a trailing comma or semicolon is
    dropped: "dn_groups=2, lr=1e-3" reads as two). ValueError names what is not a setting."""
    changes = []
    for word in text.replace(";", " ").split():
        word = word.rstrip(",")
        if not word:
            continue
        name, eq, value = word.partition("=")
        if not eq or not name or not value:
            raise ValueError(f"{word!r} is not a change: write name=value, e.g. dn_groups=2")
        changes.append(f"{name}={value}")
    return changes


def _setting_names() -> list[str]:
    names = []
    for prefix, cls in (("", DETRConfig), ("", TrainConfig), ("loss.", LossConfig), ("data.", ToyDataConfig),
                        ("dataset.", DatasetConfig)):
        names += [prefix + f.name for f in dataclasses.fields(cls) if f.name not in ("loss", "data", "dataset")]
    return names


def explain_bad_changes(error: ValueError) -> str:
    """The error of a bad override, with the closest setting names for an unknown one."""
    text = str(error)
    if text.startswith("unknown setting "):
        wrong = text.removeprefix("unknown setting ").strip("'\"")
        close = difflib.get_close_matches(wrong, _setting_names(), n=3, cutoff=0.6)
        close += [n for n in _setting_names() if n.endswith("." + wrong) and n not in close]
        if close:
            text += f"; did you mean {' or '.join(close)}?"
    return text


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
    experiment: str = ""  # the EXPERIMENTS key it was queued for ("": a run of its own)

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


def experiment_specs(
    keys: Sequence[str],
    base: str = "fast",
    seed: int = 0,
    seconds: float | None = 120.0,
    steps: int = 0,
    common: Sequence[str] = (),
    eval_every_seconds: float | None = 10.0,
    eval_every_steps: int = 0,
    changes: Sequence[str] = (),
) -> list[RunSpec]:
    """The runs of the experiments ``keys`` (in ``EXPERIMENTS`` order), all with one seed and
    budget, each named by its base preset and its changes (:func:`run_name`).

    ``changes`` go into every run and its name: the experiments vary "preset + changes" (the
    baseline is that alone). ``common`` overrides go into every run too, first, but not into the
    names (e.g. ``threads=2`` or a smaller model for tests). ValueError on an unknown key or an
    experiment that cannot run here (its reason)."""
    unknown = sorted(set(keys) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    specs = []
    for key in [k for k in EXPERIMENTS if k in set(keys)]:
        experiment = EXPERIMENTS[key]
        why = experiment.unavailable()
        if why:
            raise ValueError(f"{key} {why}")
        for own in experiment.runs:
            specs.append(RunSpec(
                name=run_name(base, [*changes, *own]), description=experiment.explanation, base=base,
                overrides=[*common, *changes, *own], seed=seed, seconds=seconds, steps=steps,
                eval_every_seconds=eval_every_seconds, eval_every_steps=eval_every_steps, experiment=key,
            ))
    return specs


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
    unknown = sorted(set(only or ()) - set(ABLATIONS))
    if unknown:
        raise ValueError(f"unknown ablation(s) {', '.join(unknown)}; choose from {', '.join(ABLATIONS)}")
    keys = list(ABLATIONS) if only is None else [k for k in ABLATIONS if k in set(only)]
    return experiment_specs(keys, base, seed, seconds, steps, common, eval_every_seconds, eval_every_steps)


def custom_spec(
    base: str,
    changes: str | Sequence[str],
    seed: int = 0,
    seconds: float | None = 120.0,
    steps: int = 0,
    common: Sequence[str] = (),
    eval_every_seconds: float | None = 10.0,
    eval_every_steps: int = 0,
) -> RunSpec:
    """A run of any preset with any changes (text as :func:`parse_changes` reads it, or a list),
    named by them. Checked now: ValueError says what is wrong (an unknown preset, a setting that
    does not exist, with the closest names, or a value it cannot take)."""
    listed = parse_changes(changes) if isinstance(changes, str) else list(changes)
    spec = RunSpec(
        name=run_name(base, listed), description="", base=base, overrides=[*common, *listed], seed=seed,
        seconds=seconds, steps=steps, eval_every_seconds=eval_every_seconds, eval_every_steps=eval_every_steps,
    )
    try:
        spec.configs()
    except ValueError as e:
        raise ValueError(explain_bad_changes(e)) from None
    return spec
