"""The runs panel: any preset with any changes, the classic DETR ablations and the study
questions one click each, and a comparison of training runs.

A run is "preset + the changes" and is named by them ("fast + dn_groups=2"). "Queue runs" queues
the checked experiments (classic ablations and study questions, each with its sentence in its
tooltip and beside the boxes) on top of the chosen preset and the changes typed beside it (none
checked: that run alone), with one seed and time budget; they train one at a time (the :class:`~explorer.run_queue.RunQueue` this tab shows), each in
its own process read by a :class:`~explorer.training_worker.TrainingWorker` (the training panel's reader too), with the
current run's progress in the progress bar. Cancel stops the current run (it is kept as "stopped") and drops the queue. The
queued runs are kept in the store as they change, so quitting (or a crash) does not lose them:
the next view over the store shows them, held, with Resume and Drop. The
table lists every run with its final AP, AP50, duplicates and NMS gain, its AP at equal steps and at
equal training seconds (the fewest any compared run reached: the selected runs, or all), and its
checkpoint; the plots overlay the loss and a held-out metric of the selected runs (all runs when
none is selected).
Runs live in a :class:`~detr_core.train.run_store.RunStore` folder and are reloaded when the view is made.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QItemSelectionModel, QObject, QSize, QStandardPaths, Qt, Signal
from PySide6.QtGui import QCloseEvent, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from detr_core.config import TrainConfig
from detr_core.presets import PRESETS
from detr_core.train.ablations import (
    EXPERIMENTS,
    RunSpec,
    experiment_specs,
    explain_bad_changes,
    parse_changes,
)
from detr_core.train.run_store import RunRecord, RunStore, equal_marks
from detr_core.train.trainer import EvalEvent, Event, StepEvent

from ..run_queue import RunQueue
from ..stable_label import StableLabel
from ..training_panel import set_title
from ..training_worker import TrainingWorker
from .base import AnalysisView

COLUMNS = ("Run", "Status", "AP", "AP50", "AP @ steps", "AP @ s", "Duplicates", "NMS gain", "Steps", "Seconds",
           "Seed", "Trained for", "Checkpoint")
RUN_COLUMN_MAX = 200  # px: the Run column's widest by itself (names elide; tooltips have them whole)
COLUMN_TIPS = {
    "Duplicates": "Kept predictions (score >= 0.3) that repeat a higher-scoring one of their class (IoU >= 0.5), "
                  "as a fraction of the kept ones, last decoder layer, held-out images. Without decoder "
                  "self-attention the copies of an object share its score, so most fall below 0.5.",
    "NMS gain": "AP50 after class-wise NMS (IoU 0.7) minus AP50: what NMS would add. About 0 when the decoder "
                "suppresses its own duplicates (DETR paper, section 4.2).",
}
AT_STEPS, AT_SECONDS = 4, 5  # the columns of AP at equal steps and at equal training seconds
GROUPS = {"ablation": "Ablations", "study": "Study"}
PALETTE = ("#4dabf7", "#ff6b6b", "#51cf66", "#ffd43b", "#cc5de8", "#ff922b", "#20c997", "#f06595",
           "#748ffc", "#adb5bd")
# Last-layer, unweighted parts compare across runs; the weighted total counts the auxiliary
# layers too, so it drops when the auxiliary loss is off without the model being better.
LOSS_KEYS = {"loss_giou": "GIoU loss (last layer)", "loss_bbox": "L1 box loss (last layer)",
             "loss_ce": "class loss (last layer)", "loss": "total loss (weighted, all layers)"}
METRIC_KEYS = {"AP50": "AP50", "AP": "AP (0.5:0.95)", "AP75": "AP75", "AP50_nms": "AP50 after NMS",
               "duplicates": "duplicates (score >= 0.3, IoU >= 0.5)",
               "duplicate_rate": "duplicate pairs (score >= 0.5, IoU > 0.7)"}
X_KEYS = {"elapsed": "training time (s)", "step": "training step"}
LIVE_INTERVAL = 0.2  # seconds between live updates of the running run's curves
CURRENT = "__current__"


def default_store_folder() -> Path:
    """``<AppDataLocation>/runs``, e.g. ~/.local/share/DETR Explorer/DETR Explorer/runs."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".detr-explorer") / "runs"


def smooth(values: np.ndarray, beta: float = 0.9) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's), skipping NaNs. [N] -> [N]."""
    out = np.empty_like(values, dtype=float)
    avg, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isfinite(v):
            avg = beta * avg + (1 - beta) * v
            weight = beta * weight + (1 - beta)
        out[i] = avg / weight if weight > 0 else math.nan
    return out


def duration_text(seconds: float) -> str:
    """About how long ``seconds`` is, in words: "about 10 minutes"."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 100:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    hours = f"{seconds / 3600:.1f}".removesuffix(".0")
    return f"about {hours} hours"


class _LiveRun:
    """The running run's curves, as far as they have come (GUI thread only)."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.curves: dict[str, list[float]] = {"step": [], "elapsed": [], **{k: [] for k in LOSS_KEYS}}
        self.evals: list[dict[str, float]] = []
        self.progress = 0.0
        self.message = ""

    def add(self, step: int, elapsed: float, losses: dict[str, float]) -> None:
        self.curves["step"].append(float(step))
        self.curves["elapsed"].append(elapsed)
        for k in LOSS_KEYS:
            self.curves[k].append(losses.get(k, math.nan))


class _LogAxis(pg.AxisItem):
    """A logarithmic axis that labels 1, 2 and 5 times a power of ten (over more than two
    decades, the powers only): pyqtgraph labels every tick from 1 to 9, on top of each other in
    a short plot."""

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:  # noqa: N802
        strings = super().tickStrings(values, scale, spacing)
        if not self.logMode:
            return strings
        low, high = sorted(self.range)  # in decades
        keep = (1,) if high - low > 2 else (1, 2, 5)
        return [text if round(10 ** (v - math.floor(v + 1e-9))) in keep else "" for v, text in zip(values, strings)]


class _Compact(QWidget):
    """A container that asks for no more room than its minimum. Once a wrapping label shows
    text (the progress, an error), a dock's scroll area wants the height every part of the view
    prefers, and the plots prefer 480 px: the view would scroll in a short dock."""

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return self.minimumSizeHint()


class RunsView(AnalysisView):
    """Queue, run, compare and keep training runs. See the module docstring."""

    openCheckpoint = Signal(str)  # path of a run's checkpoint the user wants to open
    runFinished = Signal(object)  # RunRecord of a run that ended (completed, failed or stopped)
    queueFinished = Signal()  # the queue ran dry: every run done, or cancelled

    def __init__(
        self,
        store: RunStore | str | Path | None = None,
        common_overrides: Sequence[str] = (),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Runs", parent)
        self.store = store if isinstance(store, RunStore) else RunStore(store or default_store_folder())
        self.common_overrides = list(common_overrides)  # into every ablation run (e.g. threads=2)
        self.records: list[RunRecord] = []
        self.runs = RunQueue(self.store, parent=self)  # the queue this tab shows
        self.runs.event.connect(self._on_event)
        self.runs.ended.connect(self._on_run_ended)
        self.live: _LiveRun | None = None
        self._batch: list[tuple[int, float, dict[str, float]]] = []  # steps not yet drawn
        self._batch_progress = 0.0  # fraction of the budget used at the batch's last step
        self._last_drawn = 0.0
        self._rows: list[tuple[str, RunRecord | RunSpec]] = []  # (key, what) per table row
        self._items: dict[str, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        self.jobFailed.connect(self._on_run_failed)
        self.jobCancelled.connect(self._on_cancelled)
        self._build()
        # the run's progress text shares the top row with its bar rather than wrap in a sliver of it
        self._top.setStretchFactor(self.progress_label, 1)
        self.reload()
        self._restore_queue()

    # --- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.kept_bar = QWidget()  # the queue kept from the last session: Resume / Drop
        kept = QHBoxLayout(self.kept_bar)
        kept.setContentsMargins(0, 0, 0, 0)
        self.kept_label = QLabel("")
        self.kept_label.setWordWrap(True)
        self.resume_button = QPushButton("Resume queue")
        self.resume_button.setToolTip("Train the kept runs, one at a time")
        self.resume_button.clicked.connect(self.resume_queue)
        self.drop_button = QPushButton("Drop queue")
        self.drop_button.setToolTip("Forget the kept runs (nothing was trained for them yet)")
        self.drop_button.clicked.connect(self.drop_queue)
        kept.addWidget(self.kept_label, 1)
        kept.addWidget(self.resume_button)
        kept.addWidget(self.drop_button)
        self.kept_bar.setVisible(False)
        self.body.addWidget(self.kept_bar)

        setup = QHBoxLayout()
        self.base_combo = QComboBox()
        self.base_combo.addItems(list(PRESETS))  # whatever detr_core.presets lists
        self.base_combo.setCurrentText("fast")
        self.base_combo.setToolTip("The recipe every run starts from (--preset)")
        self.changes_edit = QLineEdit()
        self.changes_edit.setPlaceholderText("changes, e.g. dn_groups=2 lr=1e-3")
        self.changes_edit.setToolTip(
            "Settings changed in every run of the batch, name=value separated by spaces (as the CLI's "
            "--set); the runs are named by the preset and these.\nWith no experiment checked, Queue runs "
            "queues this one run.")
        self.changes_edit.setClearButtonEnabled(True)
        self.changes_edit.returnPressed.connect(self.run_checked)
        self.changes_edit.textChanged.connect(self._update_estimate)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 999_999)
        self.seed_spin.setValue(TrainConfig().seed)  # the presets' seed, as in the Training tab and the CLI
        self.seed_spin.setToolTip("The same seed for every run of the batch (--seed)")
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.1, 600)
        self.minutes_spin.setDecimals(1)
        self.minutes_spin.setSingleStep(0.5)
        self.minutes_spin.setValue(2.0)
        self.minutes_spin.setToolTip("Training time of each run, evaluation not counted (--minutes)")
        self.run_button = QPushButton("Queue runs")
        self.run_button.setToolTip("Queue the checked experiments on the preset and changes; they train one at a time")
        self.run_button.clicked.connect(self.run_checked)
        # what Run would queue, and how long it and the queue before it take, before anything runs
        self.estimate_label = QLabel("")
        self.estimate_label.setToolTip("Training time: each run's held-out evaluations and its start add a little")
        setup.addWidget(QLabel("Preset"))
        setup.addWidget(self.base_combo)
        setup.addWidget(QLabel("+"))
        setup.addWidget(self.changes_edit, 1)
        for label, widget in (("Seed", self.seed_spin), ("Minutes", self.minutes_spin)):
            setup.addWidget(QLabel(label))
            setup.addWidget(widget)
        setup.addWidget(self.estimate_label)
        setup.addWidget(self.run_button)
        self.body.addLayout(setup)

        # the one-click experiments: a row per group; the sentence of the last one pointed at beside them
        self.experiment_checks: dict[str, QCheckBox] = {}
        # one line beside the first row (the dock is short): elided, the whole sentence in its tooltip
        self.explanation_label = StableLabel("Point at an experiment to read the question it asks.")
        for group, title in GROUPS.items():
            row = QHBoxLayout()
            heading = QLabel(title)
            heading.setMinimumWidth(heading.fontMetrics().horizontalAdvance("Ablations") + 6)
            row.addWidget(heading)
            for key, experiment in EXPERIMENTS.items():
                if experiment.group != group:
                    continue
                box = QCheckBox(key)
                box.setChecked(group == "ablation")
                changes = "\n".join(" ".join(run) or "(no change)" for run in experiment.runs)
                why = experiment.unavailable()
                box.setToolTip(f"{experiment.explanation}\n{changes}" + (f"\n\nUnavailable: {why}" if why else ""))
                if why:
                    box.setChecked(False)
                    box.setEnabled(False)
                    box.setText(f"{key} (no weights)")
                box.toggled.connect(self._update_estimate)
                box.toggled.connect(lambda _on, k=key: self.explain(k))
                box.installEventFilter(self)
                self.experiment_checks[key] = box
                row.addWidget(box)
            if group == "ablation":
                row.addSpacing(12)
                row.addWidget(self.explanation_label, 1)
            else:
                row.addStretch(1)
            self.body.addLayout(row)
        self.ablation_checks = self.experiment_checks  # (the older name)
        self.minutes_spin.valueChanged.connect(self._update_estimate)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        for col, name in enumerate(COLUMNS):
            if name in COLUMN_TIPS:
                self.table.horizontalHeaderItem(col).setToolTip(COLUMN_TIPS[name])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # a run's name ("fast + decoder_self_attention=off") would push the metrics out of sight: at
        # most RUN_COLUMN_MAX wide, elided (the whole name is the row's tooltip), widened by hand if wished
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.table.setWordWrap(False)  # (wrapped, a name elides after its first word: "fast + …")
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # "fast + dec…ention=off": preset and change
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_selected_checkpoint())

        actions = QHBoxLayout()
        self.open_button = QPushButton("Open checkpoint")
        self.open_button.setToolTip("Open the selected run's checkpoint in the main window (or double-click)")
        self.open_button.clicked.connect(self.open_selected_checkpoint)
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the selected runs (record and checkpoint), or drop queued ones")
        self.delete_button.clicked.connect(self.delete_selected)
        actions.addWidget(self.open_button)
        actions.addWidget(self.delete_button)
        actions.addStretch(1)

        shown = QHBoxLayout()  # what the plots show
        self.loss_combo = QComboBox()
        for key, label in LOSS_KEYS.items():
            self.loss_combo.addItem(label, key)
        self.metric_combo = QComboBox()
        for key, label in METRIC_KEYS.items():
            self.metric_combo.addItem(label, key)
        self.x_combo = QComboBox()
        for key, label in X_KEYS.items():
            self.x_combo.addItem(label, key)
        self.smooth_check = QCheckBox("Smooth")
        self.smooth_check.setChecked(True)
        self.smooth_check.setToolTip("Exponential moving average of the per-step loss")
        for w, chars in ((self.loss_combo, 17), (self.metric_combo, 9), (self.x_combo, 12)):
            w.currentIndexChanged.connect(self._replot)
            # as wide as a usual entry, not the longest: the plots beside the table need the room
            # (the list that drops down is as wide as it needs)
            w.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            w.setMinimumContentsLength(chars)
            w.view().setMinimumWidth(w.view().sizeHintForColumn(0) + 8)
        self.smooth_check.toggled.connect(self._replot)
        for label, widget, stretch in (("Loss", self.loss_combo, 4), ("Metric", self.metric_combo, 2),
                                       ("x", self.x_combo, 2)):
            shown.addWidget(QLabel(label))
            shown.addWidget(widget, stretch)
        shown.addWidget(self.smooth_check)

        self.loss_plot = self._make_plot(_LogAxis("left"))
        self.loss_plot.setLogMode(y=True)
        self.metric_plot = self._make_plot()
        self.metric_plot.setXLink(self.loss_plot)
        # AP, AP50, AP75 and the duplicate rate are fractions: the axis always spans 0 to 1, so
        # noise between two runs never looks like a trend
        self.metric_plot.setYRange(0, 1, padding=0.05)
        # faint guides rather than the y grid, with which pyqtgraph drops the labels at 0 and 1 of a short plot
        self.metric_plot.showGrid(x=True, y=False, alpha=0.2)
        for y in (0.25, 0.5, 0.75, 1.0):
            self.metric_plot.addItem(pg.InfiniteLine(y, angle=0, pen=pg.mkPen(255, 255, 255, 40)))
        self.metric_plot.setMouseEnabled(x=True, y=False)
        self.metric_plot.enableAutoRange(y=False)
        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.metric_plot)

        # the table beside the plots, not above them: a dock along the bottom of a laptop screen
        # is wide and short
        runs = QWidget()
        runs_layout = QVBoxLayout(runs)
        runs_layout.setContentsMargins(0, 0, 0, 0)
        runs_layout.addWidget(self.table, 1)
        runs_layout.addLayout(actions)
        curves = QWidget()
        curves_layout = QVBoxLayout(curves)
        curves_layout.setContentsMargins(0, 0, 0, 0)
        curves_layout.addLayout(shown)
        curves_layout.addWidget(plots, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(runs)
        split.addWidget(curves)
        split.setSizes([2500, 2500])  # the table (and its comparison) as wide as the two plots
        main = _Compact()
        main_layout = QVBoxLayout(main)
        main_layout.setContentsMargins(0, 0, 0, 0)
        main_layout.addWidget(split)
        self.body.addWidget(main, 1)
        self._update_axes()
        self._update_estimate()

    @staticmethod
    def _make_plot(left: pg.AxisItem | None = None) -> pg.PlotWidget:
        plot = pg.PlotWidget(axisItems={"left": left} if left is not None else None)
        plot.setBackground("#202124")
        plot.showGrid(x=True, y=True, alpha=0.2)
        legend = plot.addLegend(offset=(-5, 5), labelTextSize="8pt")
        legend.setBrush(pg.mkBrush(32, 33, 36, 210))  # readable over the curves it covers
        plot.setMinimumHeight(120)
        for side in ("left", "bottom"):
            plot.getAxis(side).enableAutoSIPrefix(False)  # no "(x0.001)" on AP or loss axes
        return plot

    # --- queue ---------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self.live is not None

    def queue_seconds_left(self) -> tuple[float, bool]:
        """Training time left in the queue: the running run's rest and the queued runs' budgets;
        and whether that is all (a run with a step budget only has no time to count)."""
        runs = [(spec, 0.0) for spec in self.pending]
        if self.live is not None:
            runs.append((self.live.spec, self.live.progress))
        left = sum(spec.seconds * (1 - done) for spec, done in runs if spec.seconds)
        return left, all(spec.seconds for spec, _ in runs)

    def estimate_text(self) -> str:
        """What Run queues and about how long it trains; and what is left of the queue."""
        keys = self.checked_ablations()
        n = sum(len(EXPERIMENTS[k].runs) for k in keys) or int(bool(self.changes_edit.text().strip()))
        if n:
            text = f"{n} run{'s' if n != 1 else ''} · {duration_text(n * self.minutes_spin.value() * 60)}"
        else:
            text = "No run checked"
        if self.live is not None or self.pending:
            left, known = self.queue_seconds_left()
            text += f" · queue: {duration_text(left)}{'' if known else ' and some steps'} left"
        return text

    def _update_estimate(self) -> None:
        text = self.estimate_text()
        if text != self.estimate_label.text():  # (it changes about once a minute while a run goes)
            self.estimate_label.setText(text)

    def checked_ablations(self) -> list[str]:
        """The checked experiments (classic ablations and study questions), in EXPERIMENTS order."""
        return [k for k, box in self.experiment_checks.items() if box.isChecked() and box.isEnabled()]

    def explain(self, key: str) -> None:
        """Show the sentence of experiment ``key`` under the boxes."""
        experiment = EXPERIMENTS[key]
        why = experiment.unavailable()
        text = experiment.explanation + (f" Unavailable here: it {why}." if why else "")
        if text != self.explanation_label.text():
            self.explanation_label.setText(text)
            self.explanation_label.setToolTip(f"{key}: {text}")

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Enter:  # the pointer on an experiment: its sentence
            for key, box in self.experiment_checks.items():
                if box is watched:
                    self.explain(key)
        return super().eventFilter(watched, event)

    def run_checked(self) -> None:
        """Queue the checked experiments on the chosen preset + changes, with one seed and budget;
        with none checked, the preset + changes alone. A bad change is said, nothing queued."""
        keys = self.checked_ablations()
        text = self.changes_edit.text()
        try:
            changes = parse_changes(text)
        except ValueError as e:
            self.show_error(f"Changes {text.strip()!r}: {e}")
            return
        if not keys and not changes:
            self.show_error("Check at least one experiment, or write the changes of a run beside the preset.")
            return
        seconds = round(self.minutes_spin.value() * 60, 3)
        try:
            specs = experiment_specs(
                keys or ["baseline"], base=self.base_combo.currentText(), seed=self.seed_spin.value(),
                seconds=seconds, common=self.common_overrides, changes=changes,
                eval_every_seconds=max(2.0, seconds / 12),  # about a dozen points on each AP curve
            )
        except ValueError as e:
            self.show_error(str(e))
            return
        self.queue(specs)

    def queue(self, specs: Sequence[RunSpec]) -> None:
        """Append runs to the queue; they start one at a time as soon as the view is free."""
        for spec in specs:
            try:
                spec.configs()  # a bad override is named now, not when its turn comes
            except ValueError as e:
                self.show_error(f"{spec.name}: {explain_bad_changes(e)}")
                return
        self._keep_queue(lambda: self.runs.add(specs))
        self._refresh_table()
        self._start_next()

    # --- the queue kept across sessions (the RunQueue keeps it in the store) --------------------
    def _keep_queue(self, change: Callable[[], None]) -> None:
        """Apply a change of the queue; a queue that cannot be kept for next time is said."""
        try:
            change()
        except OSError as e:
            self.show_error(f"The queue could not be kept for next time: {e}")
        self._show_held()

    def _restore_queue(self) -> None:
        """The runs queued when the app last closed: shown as queued, held until Resume."""
        known = len(self.store.errors)
        kept = self.runs.restore()
        if self.store.errors[known:]:
            self.show_error("The kept queue could not be read: " + "; ".join(self.store.errors[known:]))
        if kept:
            self._show_held()
            self._refresh_table()

    @property
    def queue_held(self) -> bool:
        return self.runs.held

    def _show_held(self) -> None:
        n = len(self.pending)
        self.kept_label.setText(f"{n} run{'s' if n != 1 else ''} queued when DETR Explorer last closed "
                                f"{'are' if n != 1 else 'is'} kept: resume to train {'them' if n != 1 else 'it'}.")
        self.kept_bar.setVisible(self.runs.held)

    def resume_queue(self) -> None:
        """Train the kept runs (one at a time, as queued)."""
        self.runs.resume()
        self._show_held()
        self._start_next()

    def drop_queue(self) -> None:
        """Forget the kept runs."""
        self._keep_queue(self.runs.drop)
        self._refresh_table()

    def stop_keeping_queue(self) -> None:
        """For quitting: stop the running run (its process saves it, as "stopped") and start no
        other; the queued runs stay in the store, for the next session. Does not wait."""
        self.runs.stop_keeping_queue()

    def quit_cancelled(self) -> None:
        """Quitting was cancelled after :meth:`stop_keeping_queue`: the queue stays, held."""
        self.runs.quit_cancelled()
        self._show_held()
        self._refresh_table()

    @property
    def pending(self) -> list[RunSpec]:
        return self.runs.pending

    @property
    def worker(self) -> TrainingWorker | None:
        return self.runs.worker

    @property
    def busy(self) -> bool:
        return self.runs.busy

    def _start_next(self) -> None:
        if self.live is not None or self.busy:
            return
        spec = self.runs.start_next()
        if spec is None:
            self.queueFinished.emit()
            return
        self.live = _LiveRun(spec)
        self._batch, self._last_drawn = [], 0.0
        self._job_started()
        self._refresh_table()
        self._replot()

    def _on_event(self, event: Event) -> None:
        """A trainer event of the current run: its curves and the progress row, redrawn at most
        every LIVE_INTERVAL seconds."""
        live = self.live
        if live is None:
            return
        if isinstance(event, StepEvent):
            losses = {k: event.losses[k] for k in LOSS_KEYS if k in event.losses}
            self._batch.append((event.step, event.elapsed, losses))
            self._batch_progress = event.progress
            now = time.perf_counter()
            if now - self._last_drawn >= LIVE_INTERVAL:
                self._last_drawn = now
                self._flush_steps()
                spec = live.spec
                text = (f"{spec.name}: step {event.step}, {event.elapsed:.0f} s "
                        f"({event.progress:.0%} of {spec.budget_text})")
                if self.pending:
                    text += f", {len(self.pending)} queued"
                if not self.runs.cancelled:
                    self._job_progress(round(event.progress * 1000), 1000, text)
        elif isinstance(event, EvalEvent):
            self._flush_steps()
            self._on_live_eval({"step": event.step, "elapsed": event.elapsed, **event.metrics})
        else:  # an error or the end: show the last steps now
            self._flush_steps()

    def _flush_steps(self) -> None:
        if self._batch and self.live is not None:
            batch, self._batch = self._batch, []
            self._on_live_steps(batch, self._batch_progress)

    def _on_run_ended(self, record: RunRecord | None, failure: str, cancelled: bool) -> None:
        self._flush_steps()
        if cancelled:
            self._job_cancelled()  # the stopped run was saved by its process
        elif record is not None:
            self._job_succeeded(record, self._on_run_done)
        else:
            self._job_failed(failure)

    def cancel_job(self) -> None:
        """Stop the current run (it is kept, as "stopped") and drop the queue."""
        self._keep_queue(self.runs.cancel)
        self._refresh_table()

    def wait_job(self, msecs: int = 60000) -> bool:
        return self.runs.wait(msecs)

    def shutdown(self, msecs: int = 30000) -> bool:
        """Cancel everything and wait for the run's process and reader; True when they have
        ended."""
        self.cancel_job()
        return self.wait_job(msecs)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

    def _job_done(self) -> None:
        self.live = None

    def _on_run_done(self, record: RunRecord) -> None:
        self._job_done()
        if record.run_id:
            self.records.append(record)
        self.progress_label.setText(f"{record.name}: {record.status}")
        if record.status == "failed" and record.message:
            self.show_error(f"{record.name}: {record.message}")
        self._refresh_table()
        self._replot()
        self.runFinished.emit(record)
        self._start_next()

    def _on_run_failed(self, message: str) -> None:
        self._job_done()
        self._refresh_table()
        self._replot()
        self._start_next()

    def _on_cancelled(self) -> None:
        self._job_done()
        if not self.runs.closing:  # (quitting keeps the queue)
            self._keep_queue(self.runs.drop)
        self.reload()  # the stopped run was saved by its process
        self.queueFinished.emit()

    # --- live ----------------------------------------------------------------------------------
    def _on_live_steps(self, batch: list[tuple[int, float, dict[str, float]]], progress: float) -> None:
        if self.live is None:
            return
        for step, elapsed, losses in batch:
            self.live.add(step, elapsed, losses)
        self.live.progress = progress
        self._refresh_current_row()
        self._update_estimate()
        self._plot_run(CURRENT, self.live.spec.name + " (running)", self.live.curves, self.live.evals,
                       self._color(len(self.records)))

    def _on_live_eval(self, point: dict[str, float]) -> None:
        if self.live is None:
            return
        self.live.evals.append(point)
        self._plot_run(CURRENT, self.live.spec.name + " (running)", self.live.curves, self.live.evals,
                       self._color(len(self.records)))

    # --- store ---------------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the runs from the store again."""
        self.records = self.store.list()
        if self.store.errors:
            self.show_error("Some runs could not be read: " + "; ".join(self.store.errors))
        self._refresh_table()
        self._replot()

    def selected(self) -> list[tuple[str, RunRecord | RunSpec]]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self._rows[r] for r in rows if r < len(self._rows)]

    def selected_records(self) -> list[RunRecord]:
        return [what for _, what in self.selected() if isinstance(what, RunRecord)]

    def open_selected_checkpoint(self) -> None:
        records = [r for r in self.selected_records() if r.checkpoint]
        if not records:
            self.show_error("Select a finished run with a checkpoint.")
            return
        self.openCheckpoint.emit(records[0].checkpoint)

    def delete_selected(self) -> None:
        """Delete the selected stored runs (after a question) and drop selected queued runs."""
        chosen = self.selected()
        queued = [what for _, what in chosen if isinstance(what, RunSpec)]
        records = [what for _, what in chosen if isinstance(what, RunRecord)]
        if queued:
            self._keep_queue(lambda: self.runs.remove(queued))
        if records:
            names = ", ".join(r.name for r in records)
            answer = QMessageBox.question(
                self, "Delete runs", f"Delete {len(records)} run(s) and their checkpoints?\n{names}",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            )
            if answer == QMessageBox.StandardButton.Yes:
                for record in records:
                    try:
                        self.store.delete(record.run_id)
                    except (OSError, ValueError) as e:
                        self.show_error(f"Could not delete {record.name}: {e}")
                self.reload()
                return
        self._refresh_table()

    # --- table ---------------------------------------------------------------------------------
    def _color(self, index: int) -> str:
        return PALETTE[index % len(PALETTE)]

    def _refresh_table(self) -> None:
        keep = {key for key, _ in self.selected()}
        rows: list[tuple[str, RunRecord | RunSpec]] = [(r.run_id, r) for r in self.records]
        if self.live is not None:
            rows.append((CURRENT, self.live.spec))
        rows += [(f"queued-{id(s)}", s) for s in self.pending]
        self._rows = rows
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for row, (key, what) in enumerate(rows):
            if isinstance(what, RunRecord):
                cells = self._record_cells(what)
                lines = [what.name, what.spec.description, " ".join(what.spec.overrides), what.message, what.checkpoint]
                tip = "\n".join(line for line in lines if line)
            else:
                cells = self._spec_cells(what, running=key == CURRENT)
                tip = "\n".join(line for line in (what.name, what.description, " ".join(what.overrides)) if line)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                if 2 <= col <= 10:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
            if isinstance(what, RunRecord) or key == CURRENT:
                self.table.item(row, 0).setData(Qt.ItemDataRole.DecorationRole, QColor(self._color(row)))
        wanted = min(max(self.table.sizeHintForColumn(0), self.fontMetrics().horizontalAdvance(COLUMNS[0]) + 24),
                     RUN_COLUMN_MAX)
        if self.table.columnWidth(0) < wanted:  # grows with the names up to the cap; never undoes a user's widening
            self.table.setColumnWidth(0, wanted)
        self.table.clearSelection()
        select = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for row, (key, _) in enumerate(rows):
            if key in keep:
                self.table.selectionModel().select(self.table.model().index(row, 0), select)
        self.table.blockSignals(False)
        self._refresh_comparison()
        self._update_buttons()
        self._update_estimate()

    def compared_records(self) -> list[RunRecord]:
        """The runs the "AP @" columns compare: the selected stored runs, or all of them."""
        chosen = self.selected_records()
        return chosen or list(self.records)

    def _refresh_comparison(self) -> None:
        """AP at equal steps and at equal training seconds: the fewest any compared run reached at
        its last evaluation, interpolated between each run's evaluations around it."""
        compared = self.compared_records()
        # a run stopped early would pull every mark down to it: it counts when selected
        counted = ("completed", "stopped") if self.selected_records() else ("completed",)
        marks = equal_marks([r for r in compared if r.status in counted])
        headers = ("AP @ steps", "AP @ s") if marks is None else (f"AP @ {marks[0]} steps",
                                                                   f"AP @ {self._seconds(marks[1])} s")
        for col, text in zip((AT_STEPS, AT_SECONDS), headers):
            item = self.table.horizontalHeaderItem(col)
            if item is not None and item.text() != text:
                item.setText(text)
            if item is not None:
                item.setToolTip(
                    "AP (0.5:0.95) of each compared run (the selected, or all) after as many "
                    + ("steps" if col == AT_STEPS else "seconds of training")
                    + " as the shortest of them had at its last evaluation, between the two evaluations around it")
        ids = {r.run_id for r in compared}
        for row, (key, what) in enumerate(self._rows):
            for col, x_key in ((AT_STEPS, "step"), (AT_SECONDS, "elapsed")):
                text = ""
                if isinstance(what, RunRecord) and marks is not None and what.run_id in ids:
                    x = marks[0] if x_key == "step" else marks[1]
                    value = what.metric_at(x_key, x, "AP")
                    text = self._fmt(value)
                item = self.table.item(row, col)
                if item is not None and item.text() != text:
                    item.setText(text)

    def _refresh_current_row(self) -> None:
        for row, (key, what) in enumerate(self._rows):
            if key == CURRENT and isinstance(what, RunSpec):
                for col, text in enumerate(self._spec_cells(what, running=True)):
                    item = self.table.item(row, col)
                    if item is not None and item.text() != text:
                        item.setText(text)

    @staticmethod
    def _fmt(value: float | None) -> str:
        return "—" if value is None or not math.isfinite(value) else f"{value:.3f}"

    @staticmethod
    def _gain(before: float | None, after: float | None) -> str:
        if before is None or after is None or not math.isfinite(before) or not math.isfinite(after):
            return "—"
        return f"{after - before:+.3f}"

    @staticmethod
    def _seconds(elapsed: float) -> str:
        return f"{elapsed:.1f}" if elapsed < 10 else f"{elapsed:.0f}"

    def _checkpoint_text(self, path: str | None) -> str:
        if not path:
            return "—"
        try:
            return str(Path(path).relative_to(self.store.root))  # the full path is in the tooltip
        except ValueError:
            return path

    def _record_cells(self, r: RunRecord) -> list[str]:
        return [
            r.name, r.status, self._fmt(r.ap), self._fmt(r.ap50), "", "", self._fmt(r.duplicates),
            self._gain(r.ap50, r.ap50_nms), str(r.step), self._seconds(r.elapsed), str(r.spec.seed), r.spec.budget_text,
            self._checkpoint_text(r.checkpoint),
        ]

    def _spec_cells(self, spec: RunSpec, running: bool) -> list[str]:
        status, steps, seconds = "queued", "", ""
        if running and self.live is not None:
            status = f"running {self.live.progress:.0%}"
            if self.live.curves["step"]:
                steps = str(int(self.live.curves["step"][-1]))
                seconds = self._seconds(self.live.curves["elapsed"][-1])
        return [spec.name, status, "", "", "", "", "", "", steps, seconds, str(spec.seed), spec.budget_text, ""]

    def _on_selection(self) -> None:
        self._refresh_comparison()
        self._update_buttons()
        self._replot()

    def _update_buttons(self) -> None:
        chosen = self.selected()
        self.open_button.setEnabled(any(isinstance(w, RunRecord) and w.checkpoint for _, w in chosen))
        self.delete_button.setEnabled(any(k != CURRENT for k, _ in chosen))

    # --- plots ---------------------------------------------------------------------------------
    def shown_keys(self) -> list[str]:
        """Keys of the runs on the plots: the selected ones, or all when none is selected."""
        chosen = [k for k, w in self.selected() if isinstance(w, RunRecord) or k == CURRENT]
        if chosen:
            return chosen
        return [r.run_id for r in self.records] + ([CURRENT] if self.live is not None else [])

    def _update_axes(self) -> None:
        x_label = X_KEYS[self.x_combo.currentData()]
        # what is plotted up in the titles, across: a vertical label is cut in a short plot
        self.loss_plot.setLabel("bottom", x_label)
        set_title(self.loss_plot.getPlotItem(), LOSS_KEYS[self.loss_combo.currentData()])
        self.metric_plot.setLabel("bottom", x_label)
        set_title(self.metric_plot.getPlotItem(), METRIC_KEYS[self.metric_combo.currentData()] + " (held-out, 0 to 1)")

    def _replot(self) -> None:
        self._update_axes()
        shown = self.shown_keys()
        for key in list(self._items):
            if key not in shown:
                loss_item, metric_item = self._items.pop(key)
                self.loss_plot.removeItem(loss_item)
                self.metric_plot.removeItem(metric_item)
        by_id = {r.run_id: (i, r) for i, r in enumerate(self.records)}
        for key in shown:
            if key == CURRENT and self.live is not None:
                self._plot_run(CURRENT, self.live.spec.name + " (running)", self.live.curves, self.live.evals,
                               self._color(len(self.records)))
            elif key in by_id:
                index, record = by_id[key]
                self._plot_run(key, record.name, record.curves, record.evals, self._color(index))

    def _plot_run(self, key: str, name: str, curves: dict[str, list[float]], evals: list[dict[str, float]],
                  color: str) -> None:
        """Draw (or update) one run's loss and metric curves."""
        if key not in self.shown_keys():
            return
        x_key = self.x_combo.currentData()
        loss_key = self.loss_combo.currentData()
        metric_key = self.metric_combo.currentData()
        x = np.asarray(curves.get(x_key, []), dtype=float)  # [N]
        y = np.asarray(curves.get(loss_key, [math.nan] * len(x)), dtype=float)  # [N]
        if self.smooth_check.isChecked() and len(y):
            y = smooth(y)
        ok = np.isfinite(y) & (y > 0)  # the loss axis is logarithmic
        points = [(e[x_key], e[metric_key]) for e in evals if x_key in e and metric_key in e]
        mx = np.asarray([p[0] for p in points], dtype=float)
        my = np.asarray([p[1] for p in points], dtype=float)
        if key not in self._items:
            loss_item = self.loss_plot.plot(pen=pg.mkPen(color, width=2), name=name)
            metric_item = self.metric_plot.plot(pen=pg.mkPen(color, width=2), symbol="o", symbolSize=5,
                                                symbolBrush=color, symbolPen=None, name=name)
            self._items[key] = (loss_item, metric_item)
        loss_item, metric_item = self._items[key]
        for item in (loss_item, metric_item):
            item.setPen(pg.mkPen(color, width=2))
            item.opts["name"] = name
        metric_item.setSymbolBrush(color)
        loss_item.setData(x[ok], y[ok])
        metric_item.setData(mx, my)
        for plot, item in ((self.loss_plot, loss_item), (self.metric_plot, metric_item)):
            legend = plot.getPlotItem().legend
            if legend is not None:
                label = legend.getLabel(item)
                if label is not None and label.text != name:
                    label.setText(name)

    # --- export --------------------------------------------------------------------------------
    def export_data(self) -> list[dict[str, Any]] | None:
        """One flat row per stored run (RunRecord.summary); None when there are no runs."""
        if not self.records:
            return None
        return [r.summary() for r in self.records]

    def export_data_to(self, path: Path) -> bool:
        """CSV: the table. JSON: every run's full record, curves included."""
        path = Path(path)
        if path.suffix.lower() != ".json":
            return super().export_data_to(path)
        if not self.records:
            self.show_error("Nothing to export yet.")
            return False
        text = json.dumps({"runs": [r.to_dict() for r in self.records]}, indent=1)
        return self.write_file(path, text)
