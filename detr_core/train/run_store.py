"""Run records (one run's curves, metrics and checkpoint) and the folder that keeps them."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detr_core.checkpoint import write_atomically
from detr_core.train.ablations import RunSpec

RECORD_FORMAT = "detr-explorer-run"
RECORD_VERSION = 1
QUEUE_FORMAT = "detr-explorer-run-queue"
QUEUE_VERSION = 1
STATUSES = ("queued", "running", "completed", "stopped", "failed")


@dataclass
class RunRecord:
    """One run's results: curves, final metrics, where its checkpoint is, how it ended.

    ``curves`` holds per-step columns of equal length: ``step``, ``elapsed`` (seconds of
    training), ``lr``, ``loss`` (weighted total) and the last decoder layer's unweighted parts
    (``loss_ce``, ``loss_bbox``, ``loss_giou``, ...), thinned to at most ``MAX_POINTS``.
    ``evals`` holds one dict per held-out evaluation: ``step``, ``elapsed``, ``AP``, ``AP50``,
    ``AP75``, ``AP50_nms``, ``duplicates``, ``duplicate_rate`` (runs saved before ``duplicates``
    and ``AP50_nms`` were measured lack them). Metrics are fractions in [0, 1]; None when not measured.
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
    duplicate_rate: float | None = None  # older measure: overlapping pairs per kept (score >= 0.5, IoU > 0.7)
    duplicates: float | None = None  # kept (score >= 0.3) repeating a better one, IoU >= 0.5 (find_duplicates)
    ap50_nms: float | None = None  # AP50 after class-wise NMS at IoU 0.7 (None in runs saved before it)
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
        # a later version's new measurements (as ``duplicates`` and ``ap50_nms`` were added) are
        # left out, not refused: the curves and metrics this version knows still open
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
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

    def seconds_to(self, metric: str = "AP50", level: float = 0.5) -> float | None:
        """Training seconds until ``metric`` first reached ``level`` (None: never)."""
        for e in self.evals:
            if e.get(metric, -math.inf) >= level:
                return float(e["elapsed"])
        return None

    def metric_at(self, x_key: str, x: float, metric: str = "AP") -> float | None:
        """``metric`` when this run had trained ``x`` steps (``x_key="step"``) or seconds
        (``"elapsed"``), linearly between the two held-out evaluations around it. None when the
        run did not get that far, or had no evaluation at or before ``x``."""
        points = [(float(e[x_key]), float(e[metric])) for e in self.evals if x_key in e and metric in e]
        points.sort()
        tolerance = 1e-6 * max(1.0, abs(x))
        if not points or x < points[0][0] - tolerance or x > points[-1][0] + tolerance:
            return None
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if x0 - tolerance <= x <= x1 + tolerance:
                return y0 if x1 <= x0 else y0 + (y1 - y0) * min(max((x - x0) / (x1 - x0), 0.0), 1.0)
        return points[-1][1]  # x is the last evaluation's

    def summary(self) -> dict[str, Any]:
        """A flat dict of the run's headline numbers (one row of a table or a JSON line)."""
        return {
            "name": self.name,
            "status": self.status,
            "AP": self.ap,
            "AP50": self.ap50,
            "AP75": self.ap75,
            "duplicate_rate": self.duplicate_rate,
            "duplicates": self.duplicates,
            "AP50_nms": self.ap50_nms,
            "steps": self.step,
            "seconds": round(self.elapsed, 2),
            "seconds_to_AP50_0.5": self.seconds_to("AP50", 0.5),
            "seed": self.spec.seed,
            "base": self.spec.base,
            "overrides": " ".join(self.spec.overrides),
            "checkpoint": self.checkpoint,
        }


def equal_marks(records: list[RunRecord]) -> tuple[int, float] | None:
    """Where runs compare on equal terms: the fewest steps and the fewest training seconds any of
    them reached at its last held-out evaluation (so each has a measured AP there or after it).
    None when no run has an evaluation."""
    last = [r.evals[-1] for r in records if r.evals and "step" in r.evals[-1] and "elapsed" in r.evals[-1]]
    if not last:
        return None
    return int(min(e["step"] for e in last)), float(min(e["elapsed"] for e in last))


# --- the store -------------------------------------------------------------------------------
class RunStore:
    """A folder of runs, one sub-folder each: ``run.json`` (the record) and ``checkpoint.pt``;
    and ``queue.json``, the specs of the runs queued but not started (kept across a quit)."""

    RECORD = "run.json"
    CHECKPOINT = "checkpoint.pt"
    QUEUE = "queue.json"

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

    def save_queue(self, specs: list[RunSpec]) -> None:
        """Keep the queued runs' specs (atomically); an empty queue removes the file."""
        path = self.root / self.QUEUE
        if not specs:
            path.unlink(missing_ok=True)
            return
        text = json.dumps({"format": QUEUE_FORMAT, "format_version": QUEUE_VERSION,
                           "runs": [asdict(spec) for spec in specs]}, indent=1)
        write_atomically(path, lambda f: f.write(text.encode("utf-8")))

    def load_queue(self) -> list[RunSpec]:
        """The queued runs' specs kept by :meth:`save_queue` (none if there is no file). An
        unreadable queue gives none and is named in ``errors``; the file stays, for a person to
        look at, until a queue is saved again."""
        path = self.root / self.QUEUE
        if not path.exists():
            return []
        try:
            d = json.loads(path.read_text())
            if not isinstance(d, dict) or d.get("format") != QUEUE_FORMAT:
                raise ValueError("not a DETR Explorer run queue")
            if not isinstance(d.get("format_version"), int) or d["format_version"] > QUEUE_VERSION:
                raise ValueError(f"a queue of format {d.get('format_version')}; this version reads {QUEUE_VERSION}")
            return [RunSpec(**spec) for spec in d["runs"]]
        except OSError as e:
            self.errors.append(f"{self.QUEUE}: cannot read it ({e.strerror or e})")
        except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
            self.errors.append(f"{self.QUEUE}: {e}")
        return []
