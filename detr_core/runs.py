"""Training runs that can be compared: the classic DETR ablations, their records and a store.

    specs = ablation_specs(base="fast", seed=0, seconds=120)   # baseline + four ablations
    store = RunStore(folder)
    for spec in specs:
        record = execute_run(spec, store)                      # trains, evaluates, saves
        print(record.name, record.ap, record.ap50, record.duplicate_rate)

A :class:`RunSpec` names a preset plus overrides, a seed and a budget (seconds of training time
or steps). :func:`execute_run` trains it with :class:`~detr_core.train.Trainer`, evaluates on
the held-out toy split every ``eval_every_seconds`` of training time (evaluation time is not
counted), measures the final AP, AP50 and :func:`duplicate_rate`, and saves a checkpoint and a
:class:`RunRecord` (JSON) in a folder of the :class:`RunStore`.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import box_iou

from .checkpoint import save_checkpoint, write_atomically
from .config import DETRConfig, TrainConfig, to_dict
from .evaluate import coco_evaluate, collect_predictions
from .live import apply_thread_commands
from .presets import apply_overrides, preset
from .train import ErrorEvent, EvalEvent, Event, FinishedEvent, StepEvent, TrainControl, Trainer

RECORD_FORMAT = "detr-explorer-run"
RECORD_VERSION = 1
STATUSES = ("queued", "running", "completed", "stopped", "failed")

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


# --- duplicates ------------------------------------------------------------------------------
@dataclass
class DuplicateStats:
    pairs: int  # unordered pairs of kept predictions, same class, IoU above the limit
    kept: int  # predictions with score >= threshold, over all images
    images: int  # images with at least one such pair

    @property
    def rate(self) -> float:
        return self.pairs / self.kept if self.kept else 0.0


def duplicate_stats(
    predictions: Sequence[dict[str, Tensor]], threshold: float = 0.5, iou: float = 0.7
) -> DuplicateStats:
    """Count duplicate pairs. predictions: per image {scores [Q], labels [Q], boxes [Q, 4] xyxy
    (any consistent unit)}; a prediction is kept when its score is >= ``threshold``."""
    pairs = kept = images = 0
    for p in predictions:
        keep = p["scores"] >= threshold  # [Q]
        boxes, labels = p["boxes"][keep].float(), p["labels"][keep]  # [N, 4], [N]
        kept += len(boxes)
        if len(boxes) < 2:
            continue
        overlap = box_iou(boxes, boxes) > iou  # [N, N]
        same_class = labels[:, None] == labels[None, :]  # [N, N]
        n = int(torch.triu(overlap & same_class, diagonal=1).sum())
        pairs += n
        images += n > 0
    return DuplicateStats(pairs, kept, images)


def duplicate_rate(
    predictions: Sequence[dict[str, Tensor]], threshold: float = 0.5, iou: float = 0.7
) -> float:
    """Duplicate pairs per kept prediction, over all images.

    A prediction is kept when its score is >= ``threshold``. A duplicate pair is an unordered
    pair of kept predictions in one image with the same class and box IoU > ``iou``. The rate is
    (number of such pairs) / (number of kept predictions): 0 when no two kept boxes of one class
    overlap that much, 0.5 when every object is found exactly twice, 1.0 when three times; 0 when
    nothing is kept.
    """
    return duplicate_stats(predictions, threshold, iou).rate


# --- records ---------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """One run's results: curves, final metrics, where its checkpoint is, how it ended.

    ``curves`` holds per-step columns of equal length: ``step``, ``elapsed`` (seconds of
    training), ``lr``, ``loss`` (weighted total) and the last decoder layer's unweighted parts
    (``loss_ce``, ``loss_bbox``, ``loss_giou``, ...), thinned to at most ``MAX_POINTS``.
    ``evals`` holds one dict per held-out evaluation: ``step``, ``elapsed``, ``AP``, ``AP50``,
    ``AP75``, ``duplicate_rate``. Metrics are fractions in [0, 1]; None when not measured.
    """

    spec: RunSpec
    run_id: str = ""
    status: str = "queued"
    step: int = 0
    elapsed: float = 0.0  # seconds of training, evaluation excluded
    wall_seconds: float = 0.0  # the whole run, evaluation and saving included
    curves: dict[str, list[float]] = field(default_factory=dict)
    evals: list[dict[str, float]] = field(default_factory=list)
    ap: float | None = None
    ap50: float | None = None
    ap75: float | None = None
    duplicate_rate: float | None = None
    checkpoint: str | None = None  # absolute path of the .pt file
    message: str = ""
    created: float = 0.0  # unix time
    config: dict[str, Any] = field(default_factory=dict)  # {"model": ..., "train": ...} as saved

    MAX_POINTS = 2000

    @property
    def name(self) -> str:
        return self.spec.name

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"format": RECORD_FORMAT, "format_version": RECORD_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        if not isinstance(d, dict) or d.get("format") != RECORD_FORMAT:
            raise ValueError("not a DETR Explorer run record")
        version = d.get("format_version")
        if not isinstance(version, int) or version > RECORD_VERSION:
            raise ValueError(f"a run record of format {version}; this version reads {RECORD_VERSION}")
        values = {k: v for k, v in d.items() if k not in ("format", "format_version")}
        try:
            values["spec"] = RunSpec(**values["spec"])
            record = cls(**values)
        except (KeyError, TypeError) as e:
            raise ValueError(f"incompatible run record ({e})") from None
        if record.status not in STATUSES:
            raise ValueError(f"unknown run status {record.status!r}")
        record.curves = {k: [float(x) for x in v] for k, v in record.curves.items()}
        return record

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON ({e})") from None

    def metric_curve(self, metric: str = "AP50", x: str = "elapsed") -> tuple[list[float], list[float]]:
        """(x, y) of one evaluation metric; x is ``elapsed`` (seconds) or ``step``."""
        points = [(e[x], e[metric]) for e in self.evals if x in e and metric in e]
        return [p[0] for p in points], [p[1] for p in points]

    def seconds_to(self, metric: str = "AP50", level: float = 0.5) -> float | None:
        """Training seconds until ``metric`` first reached ``level`` (None: never)."""
        for e in self.evals:
            if e.get(metric, -math.inf) >= level:
                return float(e["elapsed"])
        return None

    def summary(self) -> dict[str, Any]:
        """A flat dict of the run's headline numbers (one row of a table or a JSON line)."""
        return {
            "name": self.name,
            "status": self.status,
            "AP": self.ap,
            "AP50": self.ap50,
            "AP75": self.ap75,
            "duplicate_rate": self.duplicate_rate,
            "steps": self.step,
            "seconds": round(self.elapsed, 2),
            "seconds_to_AP50_0.5": self.seconds_to("AP50", 0.5),
            "seed": self.spec.seed,
            "base": self.spec.base,
            "overrides": " ".join(self.spec.overrides),
            "checkpoint": self.checkpoint,
        }


def _curves(steps: dict[str, list[float]], max_points: int) -> dict[str, list[float]]:
    """Keep the per-step columns of the last layer (drop ``<part>_<layer>``), thinned evenly."""
    keep = {k: v for k, v in steps.items() if not re.search(r"_\d+$", k)}
    n = len(keep.get("step", []))
    stride = max(1, math.ceil(n / max_points))
    index = list(range(0, n, stride))
    if n and index[-1] != n - 1:
        index.append(n - 1)
    return {k: [float(v[i]) for i in index] for k, v in keep.items()}


# --- the store -------------------------------------------------------------------------------
class RunStore:
    """A folder of runs, one sub-folder each: ``run.json`` (the record) and ``checkpoint.pt``."""

    RECORD = "run.json"
    CHECKPOINT = "checkpoint.pt"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.errors: list[str] = []  # unreadable runs met by the last list()

    def folder(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
            raise ValueError(f"bad run id {run_id!r}")
        return self.root / run_id

    def checkpoint_path(self, run_id: str) -> Path:
        return self.folder(run_id) / self.CHECKPOINT

    def new_id(self, name: str) -> str:
        """A fresh folder name: ``<yyyymmdd-hhmmss>-<name>`` (+ ``-2``, ``-3``... if taken)."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "run"
        stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"
        run_id, n = stem, 1
        while (self.root / run_id).exists():
            n += 1
            run_id = f"{stem}-{n}"
        (self.root / run_id).mkdir(parents=True)  # claim it
        return run_id

    def save(self, record: RunRecord) -> Path:
        """Write the record (atomically); gives it an id first if it has none."""
        if not record.run_id:
            record.run_id = self.new_id(record.name)
        return write_atomically(self.folder(record.run_id) / self.RECORD,
                                lambda f: f.write(record.to_json().encode("utf-8")))

    def load(self, run_id: str) -> RunRecord:
        """Read one run; ValueError if it is missing or unreadable."""
        path = self.folder(run_id) / self.RECORD
        try:
            record = RunRecord.from_json(path.read_text())
        except OSError as e:
            raise ValueError(f"{run_id}: cannot read {self.RECORD} ({e.strerror or e})") from None
        except ValueError as e:
            raise ValueError(f"{run_id}: {e}") from None
        record.run_id = run_id
        ckpt = self.checkpoint_path(run_id)
        record.checkpoint = str(ckpt) if ckpt.exists() else None  # follows the folder if moved
        return record

    def list(self) -> list[RunRecord]:
        """Every readable run, oldest first; unreadable ones are skipped and named in ``errors``."""
        self.errors = []
        records = []
        if not self.root.is_dir():
            return records
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and (p / self.RECORD).exists()):
            try:
                records.append(self.load(folder.name))
            except ValueError as e:
                self.errors.append(str(e))
        records.sort(key=lambda r: (r.created, r.run_id))
        return records

    def delete(self, run_id: str) -> None:
        """Remove a run's folder (record and checkpoint)."""
        folder = self.folder(run_id)
        if folder.resolve().parent != self.root.resolve():
            raise ValueError(f"{run_id}: not a run of this store")
        if folder.exists():
            shutil.rmtree(folder)


# --- running ---------------------------------------------------------------------------------
def _evaluate(trainer: Trainer, control: TrainControl) -> tuple[dict[str, float], float] | None:
    """AP, AP50, AP75 and the duplicate rate of the current weights on the held-out split.
    None when stopped midway."""
    n = trainer.config.eval_images
    preds, gts = collect_predictions(
        trainer.model, trainer.heldout, n, device=trainer.device,
        progress=lambda done, total: not control.stopped,
    )
    if control.stopped and len(preds) < n:
        return None
    size = trainer.heldout.config.image_size
    metrics = coco_evaluate(preds, gts, trainer.class_names, [(size, size)] * len(preds))
    return {k: metrics[k] for k in ("AP", "AP50", "AP75")}, duplicate_rate(preds)


def execute_run(
    spec: RunSpec,
    store: RunStore,
    on_event: Callable[[Event], None] | None = None,
    control: TrainControl | None = None,
) -> RunRecord:
    """Train ``spec``, evaluate it, save its checkpoint and record in ``store``; return the record.

    ``on_event`` receives the trainer's StepEvents and ErrorEvents, an EvalEvent per held-out
    evaluation (metrics AP, AP50, AP75, duplicate_rate), and last a FinishedEvent once the
    record is saved. ``control.stop()`` ends the run early: it is saved with status "stopped"
    and no final metrics (not saved at all if it had not made a step). A bad spec raises
    ValueError before anything is written; a failure during training gives a record with status
    "failed" and the message (and a checkpoint of the last good weights).
    """
    model_cfg, train_cfg = spec.configs()
    control = control or TrainControl()
    emit = on_event or (lambda event: None)
    wall0 = time.perf_counter()
    record = RunRecord(
        spec, run_id=store.new_id(spec.name), status="running", created=time.time(),
        config={"model": to_dict(model_cfg), "train": to_dict(train_cfg)},
    )
    trainer: Trainer | None = None
    reason = "completed"
    try:
        trainer = Trainer(model_cfg, train_cfg, control=control)
        next_eval_seconds = spec.eval_every_seconds or math.inf
        last_eval_step = 0

        def evaluate_now() -> bool:
            nonlocal last_eval_step
            t0 = time.perf_counter()
            result = _evaluate(trainer, control)
            if result is None:
                return False
            metrics, dup = result
            point = {"step": trainer.step, "elapsed": trainer.elapsed, **metrics, "duplicate_rate": dup}
            if trainer.history.evals and trainer.history.evals[-1]["step"] == trainer.step:
                trainer.history.evals[-1] = point
            else:
                trainer.history.evals.append(point)
            last_eval_step = trainer.step
            seconds = time.perf_counter() - t0
            emit(EvalEvent(trainer.step, trainer.elapsed, {**metrics, "duplicate_rate": dup}, seconds))
            return True

        for event in trainer.events():
            if isinstance(event, FinishedEvent):
                reason = event.reason
                continue
            if isinstance(event, ErrorEvent):
                record.message = event.message
            emit(event)
            if isinstance(event, StepEvent) and event.progress < 1.0:
                if spec.eval_every_steps:
                    due = event.step - last_eval_step >= spec.eval_every_steps
                else:
                    due = event.elapsed >= next_eval_seconds
                if due:
                    evaluate_now()
                    while next_eval_seconds <= event.elapsed:
                        next_eval_seconds += spec.eval_every_seconds or math.inf
        if reason != "stopped" and trainer.step > 0:
            # the final weights: AP, AP50 and duplicates from the same predictions
            if evaluate_now():
                final = trainer.history.evals[-1]
                record.ap, record.ap50, record.ap75 = final["AP"], final["AP50"], final["AP75"]
                record.duplicate_rate = final["duplicate_rate"]
            else:
                reason = "stopped"
        record.status = {"completed": "completed", "stopped": "stopped"}.get(reason, "failed")
    except Exception as e:  # noqa: BLE001 - the run fails, the caller (and the next run) go on
        record.status = "failed"
        record.message = f"{type(e).__name__}: {e}"
        reason = "error"
    if trainer is not None:
        record.step = trainer.step
        record.elapsed = trainer.elapsed
        record.curves = _curves(trainer.history.steps, RunRecord.MAX_POINTS)
        record.evals = [dict(e) for e in trainer.history.evals]
        if trainer.step > 0:
            try:
                path = save_checkpoint(
                    store.checkpoint_path(record.run_id), trainer.model, trainer.class_names, None,
                    trainer.history.to_dict(), train_cfg, trainer.step,
                    extra={"run": spec.name, "run_id": record.run_id, "AP": record.ap, "AP50": record.ap50,
                           "duplicate_rate": record.duplicate_rate},
                )
                record.checkpoint = str(path)
            except (OSError, RuntimeError, ValueError) as e:
                record.message = " ".join(filter(None, [record.message, f"Checkpoint not saved: {e}"]))
    record.wall_seconds = time.perf_counter() - wall0
    if record.status == "stopped" and record.step == 0:
        store.delete(record.run_id)  # stopped before its first step: nothing worth keeping
        record.run_id = ""
    else:
        store.save(record)
    emit(FinishedEvent(record.step, record.elapsed, reason))
    return record


@dataclass
class RunJob:
    """:func:`execute_run` as a job for :class:`detr_core.live.LiveSession`, so a queued run
    trains in its own process: it sends ``("event", Event)`` for every trainer event and returns
    the saved :class:`RunRecord`."""

    spec: RunSpec
    store_root: str

    @property
    def threads(self) -> int | None:
        return self.spec.configs()[1].threads

    def run(self, send: Callable[..., None], control: TrainControl, inbox: Any = None) -> RunRecord:
        def on_event(event: Event) -> None:
            apply_thread_commands(inbox, send)  # on the training thread, between steps
            send("event", event)

        apply_thread_commands(inbox, send)
        return execute_run(self.spec, RunStore(self.store_root), on_event=on_event, control=control)
