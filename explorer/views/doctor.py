"""The doctor in the window: check a dataset, overfit one batch, diagnose missed objects, export
a report. Findings list example image ids; clicking one shows the image with its boxes as
declared, and (with a model loaded) why the model misses any of them.

For a missed object the view shows the query the Hungarian matching (with the training costs)
assigns to it, followed through the decoder: its IoU with the object and its probability of the
object's class at every layer (a plot), its class probabilities at the chosen layer (bars: each
real class and no-object; for a model of many classes, such as COCO's 80, the object's class, the
likeliest others, no-object and one bar for the rest), its box at every layer on the image, and its
cross-attention there.
"Show in the image view" opens the image in the main view with that query and layer selected."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from detr_core.analysis.heatmaps import cross_attention_map
from detr_core.doctor.data_checks import DataReport, check_dataset, model_figures
from detr_core.doctor.missed import FOUND_IOU, MissedDiagnosis, diagnose_missed
from detr_core.doctor.overfit import OverfitResult, open_for_overfit, overfit_steps
from detr_core.doctor.report import markdown_report, write_report
from detr_core.doctor.watch import WatchProbe, WatchWarning

from ..dataset_session import OpenedDataset
from ..state import AppState
from ..workers import WorkContext
from .base import AnalysisView
from .flow import Fill, Flow, labelled, side_by_side, text_pane

WATCH_PROBE = "doctor watch"
OVERFIT_STEPS = 400  # most steps of overfit one batch
WATCH_EVERY = 25  # steps between the watch's looks at the live model
GT_PEN = pg.mkPen("#34a853", width=2)
QUERY_PEN = pg.mkPen("#fbbc04", width=2, style=Qt.PenStyle.DashLine)
LAYER_COLOR = (251, 188, 4)  # the matched query's boxes, one per decoder layer, fainter for earlier layers
TRUE_CLASS_BRUSH = pg.mkBrush("#34a853")
OTHER_CLASS_BRUSH = pg.mkBrush("#8ab4f8")
NO_OBJECT_BRUSH = pg.mkBrush("#9aa0a6")
REST_BRUSH = pg.mkBrush("#5f6368")
MOST_CLASS_BARS = 10  # more classes than fit a half-dock plot: the likeliest ones and the rest in one bar
PLOT_TITLE_SIZE = "9pt"  # the two plots share a 420 px dock: their titles must fit half of it
FAILED_PART = {  # the diagnosis' verdict -> the part of DETR that failed
    "no_object": "classification (the query finds and places the object, then calls it no-object)",
    "wrong_class": "classification (the query finds and places the object, then names another class)",
    "lost_between_layers": "the later decoder layers (an earlier layer had the object; the last lost it)",
    "misplaced": "localization (the query names the right class but its box is off)",
    "nobody_looks": "attention (no query looks at the object: neither a box nor a class near it)",
    "detected": "nothing (the object is found)",
}


def _short(name: str, most: int = 12) -> str:
    """A class name short enough for a plot title or axis in half a narrow dock."""
    return name if len(name) <= most else name[:most - 1] + "…"


@dataclass(frozen=True)
class ClassBar:
    label: str  # what the bar's axis says
    probability: float  # the bar's length
    kind: str  # "true" (the object's class), "other", "no_object" or "rest" (the classes not shown)


def class_bars(probs: np.ndarray, class_names: list[str], true_label: int, summed: bool = True,
               most: int = MOST_CLASS_BARS) -> list[ClassBar]:
    """The bars of a query's class probabilities ``probs`` [K + 1] (last = no object), top to bottom.

    Up to ``most`` bars: every class in order, then no object. More: the object's class
    (``true_label``, -1 if none), the likeliest other classes, no object, and one bar for the
    other classes, each labelled with its probability (a bar that short cannot be read). That bar
    is their sum (``summed``: a softmax's probabilities add up), else (independent sigmoids, a
    focal classifier) the largest of them, "≤" its value."""
    k = len(class_names)
    if k + 1 <= most:
        return [ClassBar(_short(name), float(p), "true" if i == true_label else "other")
                for i, (name, p) in enumerate(zip(class_names, probs[:k]))] + [
            ClassBar("no object", float(probs[k]), "no_object")]
    has_true = 0 <= true_label < k
    others = [int(i) for i in np.argsort(-probs[:k], kind="stable") if i != true_label]  # likeliest first
    room = most - 2 - has_true  # bars for other classes, beside no object and the rest's
    shown, rest = others[:room], others[room:]
    bars = [ClassBar(f"{_short(class_names[i])} {probs[i]:.2f}", float(probs[i]),
                     "true" if i == true_label else "other") for i in ([true_label] if has_true else []) + shown]
    bars.append(ClassBar(f"no object {probs[k]:.2f}", float(probs[k]), "no_object"))
    if rest:
        value = float(probs[rest].sum()) if summed else float(probs[rest].max())
        bars.append(ClassBar(f"{len(rest)} others {'' if summed else '≤ '}{value:.2f}", min(value, 1.0), "rest"))
    return bars


BAR_BRUSHES = {"true": TRUE_CLASS_BRUSH, "other": OTHER_CLASS_BRUSH, "no_object": NO_OBJECT_BRUSH, "rest": REST_BRUSH}


class DoctorView(AnalysisView):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__("Doctor", parent)
        self.state = state
        self.report: DataReport | None = None
        self.overfit: OverfitResult | None = None
        self.missed: list[MissedDiagnosis] = []
        self.warnings: list[WatchWarning] = []
        state.trainingChanged.connect(self._on_training)
        state.probed.connect(self._on_probed)
        self._boxes: list[pg.PlotDataItem] = []

        self.source = QLineEdit("toy")
        self.source.setToolTip("What to check: toy, coco:FOLDER, voc:FOLDER, yolo:FOLDER or a folder. It follows "
                               "File ▸ Open Dataset… unless you type or choose another.")
        self.source.textEdited.connect(lambda _: self._set_chosen(True))
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        self.check_button = QPushButton("Check dataset")
        self.check_button.clicked.connect(lambda: self.check())  # not check(checked)
        self.overfit_button = QPushButton("Overfit one batch")
        self.overfit_button.clicked.connect(self.run_overfit)
        self.report_button = QPushButton("Export report…")
        self.report_button.setToolTip("Export the findings, the overfit result and the training watch as "
                                      "Markdown or HTML")
        self.report_button.clicked.connect(self._choose_report)
        self._chosen = False  # the field holds a source the user typed or chose (kept when a dataset opens)
        state.datasetChanged.connect(self._on_dataset)
        row = Flow()  # wraps in a narrow dock: the data on one line, the actions on the next
        row.addWidget(labelled("Data:", self.source))
        row.addWidget(browse)
        row.addWidget(side_by_side(self.check_button, self.overfit_button, self.report_button))
        self.body.addWidget(row)

        self.findings = QTreeWidget()
        self.findings.setHeaderLabels(["Finding", "Images", "Objects"])
        header = self.findings.header()  # the finding takes the width the counts leave (its tooltip has it all)
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.findings.setMinimumHeight(70)
        self.findings.itemClicked.connect(self._clicked)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(120)
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image_item)
        self.heat_item = pg.ImageItem(axisOrder="row-major")  # the matched query's cross-attention
        self.heat_item.setZValue(5)
        self.heat_item.setOpacity(0.5)
        self.heat_item.setColorMap(pg.colormap.get("inferno"))
        self.heat_item.setVisible(False)
        self.plot.addItem(self.heat_item)
        self._show_axes(False)  # an empty picture has no pixels to measure: no axes until an image comes
        self._layer_boxes: list[pg.PlotDataItem] = []
        self.verdicts = QLabel("Check a dataset, then click an example image.")
        self.verdicts.setWordWrap(True)
        self.verdicts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._build_missed_panel()
        # a tall, narrow dock: findings, the image, the missed object's controls and plots, and
        # the words, one under the other; the words scroll inside their pane when they are long
        words_area = text_pane(self.verdicts, self.missed_text, min_height=50)
        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        for part in (self.findings, self.plot, self.missed_panel, words_area):
            split.addWidget(part)
        split.setSizes([120, 200, 200, 70])  # in proportion
        self.splitter = split
        self.body.addWidget(Fill(split), 1)
        self._on_dataset(state.dataset)

    # --- data checks ---------------------------------------------------------------------
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder")
        if folder:
            self.source.setText(folder)
            self._set_chosen(True)

    def _set_chosen(self, chosen: bool) -> None:
        self._chosen = chosen

    def _on_dataset(self, opened: OpenedDataset | None) -> None:
        """The field follows the open dataset (the toy data when none is open), unless the user
        typed or chose another source."""
        if not self._chosen:
            self.source.setText("toy" if opened is None else opened.source)

    def _figures(self) -> dict[str, int]:
        loaded = self.state.model
        if loaded is None:
            return {}
        return model_figures(loaded.model.config)

    def check(self, source: str | None = None) -> bool:
        """Check ``source`` (shown in the field), else what the field says; False if a job runs."""
        if source is not None:
            self.source.setText(source)
        figures = self._figures()

        def work(ctx: WorkContext, src: str) -> DataReport:
            ctx.progress(0, 0, "reading the annotations")
            return check_dataset(src, **figures)

        return self.run_job(work, self.source.text().strip() or "toy", on_done=self.show_report,
                            button=self.check_button)

    def check_open_dataset(self) -> bool:
        """What Data ▸ Check Dataset runs: check the dataset opened with File ▸ Open Dataset (the
        field then shows it and follows the open dataset again), or, with none open, the field."""
        opened = self.state.dataset
        if opened is None:
            return self.check()
        self._set_chosen(False)
        return self.check(opened.source)

    def show_report(self, report: DataReport) -> None:
        self.report = report
        self.findings.clear()
        head = QTreeWidgetItem([f"{report.name}: {report.images} images, {report.objects} objects",
                                str(report.images), str(report.objects)])
        head.setToolTip(0, head.text(0))
        self.findings.addTopLevelItem(head)
        if not report.findings:
            head.addChild(QTreeWidgetItem(["No problems found."]))
        for f in report.findings:
            item = QTreeWidgetItem([f.title, str(f.images), str(f.objects)])
            item.setToolTip(0, f"Why: {f.cause}\nFix: {f.fix}")
            fix = QTreeWidgetItem([f"Fix: {f.fix}"])
            fix.setToolTip(0, f.fix)  # elided in a narrow dock
            item.addChild(fix)
            for image_id in f.examples:
                child = QTreeWidgetItem([f"image {image_id}"])
                child.setData(0, Qt.ItemDataRole.UserRole, str(image_id))
                item.addChild(child)
            head.addChild(item)
        self.findings.expandAll()

    def _clicked(self, item: QTreeWidgetItem) -> None:
        image_id = item.data(0, Qt.ItemDataRole.UserRole)
        if image_id is not None:
            self.open_example(image_id)

    def open_example(self, image_id: str) -> None:
        """Show the image with its boxes as declared; with a model, diagnose what it misses."""
        assert self.report is not None
        try:
            rgb, labels, boxes = self.report.example(image_id)
        except Exception as e:  # noqa: BLE001 (an unreadable image is itself a finding)
            self.verdicts.setText(f"Image {image_id} cannot be shown: {e}")
            self.image_item.clear()
            self._show_axes(False)
            self._draw([])
            self._clear_missed()
            return
        self.open_image(rgb, labels, boxes, f"{self.report.name} image {image_id}")

    def open_image(self, rgb: np.ndarray, labels: np.ndarray, boxes: np.ndarray, name: str) -> bool:
        """Show ``rgb`` [H, W, 3] with its objects (``labels`` [M], ``boxes`` [M, 4] xyxy pixels);
        with a model, diagnose what it misses (True: a diagnosis started)."""
        self.image_item.setImage(rgb)
        self._show_axes(True)
        self.image_name = name
        self._draw(boxes)
        self._clear_missed()
        self.verdicts.setText(f"{name[:1].upper()}{name[1:]}: {len(labels)} objects as declared (green).")
        if self.state.model is not None and len(labels) and (labels >= 0).all():
            return self.diagnose(rgb, labels, boxes)
        return False

    def _show_axes(self, show: bool) -> None:
        """The picture's pixel axes, shown only with a picture."""
        for side in ("left", "bottom"):
            self.plot.getPlotItem().showAxis(side, show)

    def _draw(self, boxes: Any, dashed: Any = ()) -> None:
        for item in self._boxes:
            self.plot.removeItem(item)
        self._boxes = []
        for pen, group in ((GT_PEN, boxes), (QUERY_PEN, dashed)):
            for x0, y0, x1, y1 in np.asarray(group, dtype=np.float32).reshape(-1, 4):
                item = pg.PlotDataItem([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], pen=pen)
                self.plot.addItem(item)
                self._boxes.append(item)

    # --- missed objects ------------------------------------------------------------------
    def diagnose(self, rgb: np.ndarray, labels: np.ndarray, boxes: np.ndarray) -> bool:
        from detr_core.analysis.capture import run_inference

        loaded = self.state.model
        model, names = loaded.model, list(loaded.class_names)
        if int(labels.max()) >= len(names):
            self.verdicts.setText(self.verdicts.text() + " Their classes are not the model's: no diagnosis.")
            return False
        loss = loaded.train_config.loss if loaded.train_config is not None else None
        classifier = model.config.classifier

        def work(ctx: WorkContext) -> tuple[Any, list[MissedDiagnosis]]:
            result = run_inference(model, rgb, names)
            return result, [diagnose_missed(result, labels, boxes, k, loss, classifier)
                            for k in range(len(labels))]

        def done(payload: tuple[Any, list[MissedDiagnosis]]) -> None:
            result, found = payload
            self.missed = [d for d in found if d.verdict != "detected"]
            self._draw(boxes, [d.layer_boxes_xyxy[-1] for d in self.missed])
            lines = [f"{len(found) - len(self.missed)} of {len(found)} objects found by the model."]
            lines += [f"Object {d.object_index} ({d.class_name}), query {d.query}: {d.explanation}" for d in self.missed]
            self.verdicts.setText("\n".join(lines))
            self.missed_result, self.missed_image, self.missed_classifier = result, rgb, classifier
            self._fill_missed()

        return self.run_job(work, on_done=done)

    # --- one missed object, layer by layer ---------------------------------------------
    def _build_missed_panel(self) -> None:
        """``missed_panel``: which missed object and layer, over two plots side by side (its IoU
        and class probability by layer; its class probabilities at the layer); ``missed_text``."""
        self.missed_result: Any = None  # the InferenceResult the diagnoses were made on
        self.missed_image: np.ndarray | None = None
        self.missed_classifier = "softmax"  # the diagnosed model's ("softmax" or "focal")
        self.image_name = ""
        self.missed_pick = QComboBox()
        self.missed_pick.setToolTip("A ground-truth object the model missed")
        self.missed_pick.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.missed_pick.setMinimumContentsLength(14)  # long class names must not widen the dock
        self.missed_pick.currentIndexChanged.connect(lambda _: self.show_missed())
        self.layer_pick = QSpinBox()
        self.layer_pick.setToolTip("The decoder layer whose box, class probabilities and cross-attention are shown")
        self.layer_pick.valueChanged.connect(lambda _: self.show_missed())
        self.show_in_view = QPushButton("Show in the image view")
        self.show_in_view.setToolTip("Open this image in the main view with the matched query and layer selected")
        self.show_in_view.clicked.connect(self.show_in_image_view)
        self.missed_text = QLabel("")
        self.missed_text.setWordWrap(True)
        self.missed_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.iou_plot = pg.PlotWidget()
        self.iou_plot.setMinimumHeight(140)
        self.iou_plot.setYRange(0, 1, padding=0.05)
        self.iou_plot.setMouseEnabled(False, False)
        self.iou_plot.setLabel("bottom", "decoder layer")
        self.iou_curve = self.iou_plot.plot([], [], pen=pg.mkPen(LAYER_COLOR, width=2), symbol="o",
                                            symbolBrush=LAYER_COLOR, name="IoU with the object")
        self.prob_curve = self.iou_plot.plot([], [], pen=pg.mkPen("#34a853", width=2, style=Qt.PenStyle.DashLine),
                                             symbol="t", symbolBrush="#34a853", name="p(its class)")
        self.iou_plot.addItem(pg.InfiniteLine(FOUND_IOU, angle=0, pen=pg.mkPen("#9aa0a6", style=Qt.PenStyle.DotLine)))
        self.layer_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("w", width=1))
        self.iou_plot.addItem(self.layer_line)

        # horizontal bars: the class names on the left axis are never cut, however narrow the plot
        self.prob_plot = pg.PlotWidget()
        self.prob_plot.setMinimumHeight(140)
        self.prob_plot.setXRange(0, 1, padding=0.05)
        self.prob_plot.invertY(True)  # the first class on top
        self.prob_plot.setMouseEnabled(False, False)
        self.prob_plot.setLabel("bottom", "probability")
        self.prob_bars = pg.BarGraphItem(x0=[], y=[], width=[], height=0.7)
        self.prob_plot.addItem(self.prob_bars)
        self.shown_bars: list[ClassBar] = []
        self.prob_plot.getViewBox().sigResized.connect(lambda *_: self._on_class_plot_resized())
        for plot in (self.iou_plot, self.prob_plot):
            plot.setTitle(" ", size=PLOT_TITLE_SIZE)

        controls = Flow()
        controls.addWidget(labelled("Missed:", self.missed_pick))
        controls.addWidget(labelled("Layer:", self.layer_pick))
        controls.addWidget(self.show_in_view)
        self.missed_plots = QWidget()
        plots = QHBoxLayout(self.missed_plots)
        plots.setContentsMargins(0, 0, 0, 0)
        plots.addWidget(self.iou_plot, 1)
        plots.addWidget(self.prob_plot, 1)
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(controls)
        layout.addWidget(self.missed_plots, 1)
        self.missed_panel = panel
        panel.setVisible(False)

    def _clear_missed(self) -> None:
        self.missed, self.missed_result, self.missed_image = [], None, None
        self._fill_missed()

    def _fill_missed(self) -> None:
        self.missed_pick.blockSignals(True)
        self.missed_pick.clear()
        for d in self.missed:
            self.missed_pick.addItem(f"object {d.object_index} ({d.class_name}): {d.verdict.replace('_', ' ')}")
        self.missed_pick.blockSignals(False)
        self.missed_panel.setVisible(bool(self.missed) and self.missed_result is not None)
        if self.missed and self.missed_result is not None:
            layers = self.missed_result.num_layers
            self.layer_pick.blockSignals(True)
            self.layer_pick.setRange(1, layers)
            self.layer_pick.setValue(layers)
            self.layer_pick.blockSignals(False)
        self.show_missed()

    @property
    def shown_missed(self) -> MissedDiagnosis | None:
        i = self.missed_pick.currentIndex()
        return self.missed[i] if 0 <= i < len(self.missed) and self.missed_result is not None else None

    def show_missed(self) -> None:
        """Draw the chosen missed object's query: its IoU and class probability by layer, its class
        probabilities and cross-attention at the chosen layer, its boxes at every layer."""
        for item in self._layer_boxes:
            self.plot.removeItem(item)
        self._layer_boxes = []
        d, r = self.shown_missed, self.missed_result
        if d is None:
            self.heat_item.setVisible(False)
            self.iou_curve.setData([], [])
            self.prob_curve.setData([], [])
            self.prob_bars.setOpts(y=[], width=[])
            self.shown_bars = []
            self.missed_text.setText("")
            return
        layer = self.layer_pick.value() - 1  # 0-based
        n = len(d.layer_ious)
        layers = np.arange(1, n + 1)
        self.iou_plot.setTitle(f'Query {d.query}: <span style="color:#fbbc04">IoU</span>, '
                               f'<span style="color:#34a853">p({_short(d.class_name)})</span>', size=PLOT_TITLE_SIZE)
        self.iou_plot.setXRange(0.7, n + 0.3, padding=0)
        self.iou_curve.setData(layers, d.layer_ious)
        self.prob_curve.setData(layers, d.layer_class_probs)
        self.iou_plot.getAxis("bottom").setTicks([[(int(k), str(k)) for k in layers]])
        self.layer_line.setValue(layer + 1)
        probs = r.layer_probs[layer, d.query].numpy()  # [K + 1]
        self._draw_class_bars()
        for i, (x0, y0, x1, y1) in enumerate(d.layer_boxes_xyxy):
            alpha = 255 if i == layer else 70 + int(110 * (i + 1) / n)
            pen = pg.mkPen((*LAYER_COLOR, alpha), width=3 if i == layer else 1,
                           style=Qt.PenStyle.SolidLine if i == layer else Qt.PenStyle.DashLine)
            item = pg.PlotDataItem([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], pen=pen)
            item.setZValue(10)
            self.plot.addItem(item)
            self._layer_boxes.append(item)
        heat = cross_attention_map(r, d.query, layer, None, smooth=True)  # mean over heads
        eh, ew = r.grid_extent()
        self.heat_item.setImage(heat.astype(np.float32), levels=(0.0, max(float(heat.max()), 1e-12)))
        self.heat_item.setRect(0, 0, ew, eh)
        self.heat_item.setVisible(True)
        self.missed_text.setText(
            f"<b>What failed: {FAILED_PART.get(d.verdict, d.verdict)}.</b> Object {d.object_index} ({d.class_name}) "
            f"is matched to query {d.query} (Hungarian matching, training costs). At layer {layer + 1} its box "
            f"(yellow, solid; earlier layers dashed) has IoU {d.layer_ious[layer]:.2f} with the object and it says "
            f"{d.class_name} {d.layer_class_probs[layer]:.2f}, no object {probs[-1]:.2f}; "
            f"{d.attention_inside:.0%} of its last-layer cross-attention (the heatmap) falls inside the object.")

    def _class_bar_rows(self) -> int:
        """How many class bars the plot shows with readable labels: a line of text each, at
        least 5 (the object's class, two others, no object, the rest), at most MOST_CLASS_BARS."""
        line = QFontMetrics(self.prob_plot.font()).height()
        return max(5, min(MOST_CLASS_BARS, int(self.prob_plot.getViewBox().height() // max(line, 1))))

    def _draw_class_bars(self) -> None:
        """The shown missed object's query's class probabilities at the chosen layer (bars);
        with many classes, as many bars as the plot's height shows legibly."""
        d, r = self.shown_missed, self.missed_result
        if d is None:
            return
        layer = self.layer_pick.value() - 1
        probs = r.layer_probs[layer, d.query].numpy()  # [K + 1]
        label = d.class_names.index(d.class_name) if d.class_name in d.class_names else -1
        most = MOST_CLASS_BARS if len(d.class_names) + 1 <= MOST_CLASS_BARS else self._class_bar_rows()
        bars = class_bars(probs, d.class_names, label, summed=self.missed_classifier == "softmax", most=most)
        self.shown_bars = bars
        self.prob_bars.setOpts(x0=0, y=np.arange(len(bars)), width=[b.probability for b in bars], height=0.7,
                               brushes=[BAR_BRUSHES[b.kind] for b in bars])
        self.prob_plot.getAxis("left").setTicks([[(i, b.label) for i, b in enumerate(bars)]])
        self.prob_plot.setYRange(-0.5, len(bars) - 0.5, padding=0.02)
        # the labels with their values widen the axis: a shorter title and fewer probability ticks
        condensed = len(bars) != len(d.class_names) + 1
        self.prob_plot.getAxis("bottom").setTicks([[(v, f"{v:g}") for v in (0, 0.5, 1)]] if condensed else None)
        title = "Classes, layer" if condensed else "Its classes at layer"
        self.prob_plot.setTitle(f"{title} {layer + 1}", size=PLOT_TITLE_SIZE)

    def _on_class_plot_resized(self) -> None:
        d = self.shown_missed
        many = d is not None and len(d.class_names) + 1 > MOST_CLASS_BARS
        if many and len(self.shown_bars) != self._class_bar_rows():
            self._draw_class_bars()

    def show_in_image_view(self) -> bool:
        """The main image view shows this image, with the matched query and layer selected (its
        cross-attention on the canvas once the model has run on it)."""
        d = self.shown_missed
        if d is None or self.missed_image is None:
            return False
        self.state.set_image(self.missed_image, self.image_name or "doctor example")
        self.state.set_selected_query(d.query)
        self.state.set_layer(self.layer_pick.value() - 1)
        return True

    # --- the watch on a live run -------------------------------------------------------
    def _on_training(self, session: Any) -> None:
        """A training session, before its run starts: the watch runs in the training process."""
        if session is not None:
            session.add_probe(WATCH_PROBE, WatchProbe(), WATCH_EVERY)
            self.warnings = []

    def _on_probed(self, name: str, result: object) -> None:
        if name != WATCH_PROBE or not isinstance(result, list) or not result:
            return
        self.warnings += [w for w in result if isinstance(w, WatchWarning)]
        item = QTreeWidgetItem([f"Training watch: {len(self.warnings)} warnings"])
        for w in self.warnings:
            child = QTreeWidgetItem([w.title, f"step {w.step}"])
            child.setToolTip(0, f"{w.detail}\nLever: {w.lever}")
            child.addChild(QTreeWidgetItem([f"Lever: {w.lever}"]))
            item.addChild(child)
        old = self.findings.findItems("Training watch:", Qt.MatchFlag.MatchStartsWith)
        for o in old:
            self.findings.takeTopLevelItem(self.findings.indexOfTopLevelItem(o))
        self.findings.insertTopLevelItem(0, item)
        item.setExpanded(True)
        self.verdicts.setText("\n".join(w.text() for w in self.warnings))
        self.errorShown.emit(f"Doctor: {self.warnings[-1].title.lower()} (see the Doctor, in the Data workspace)")

    # --- overfit one batch ---------------------------------------------------------------
    def run_overfit(self) -> bool:
        from detr_core.presets import preset

        model_cfg, train_cfg = preset("fast")
        if self.state.model is not None:
            model_cfg = self.state.model.model.config
        source = self.source.text().strip() or "toy"

        def work(ctx: WorkContext) -> OverfitResult:
            data, cfg = open_for_overfit(source, model_cfg)
            result = None
            for result in overfit_steps(cfg, train_cfg, data, num_images=min(4, len(data)), max_steps=OVERFIT_STEPS,
                                        stop=lambda: ctx.cancelled):
                if isinstance(result, dict):
                    ctx.progress(int(result["step"]), OVERFIT_STEPS, f"overfitting: loss {result['loss']:.3g}")
            return result

        def done(result: OverfitResult) -> None:
            self.overfit = result
            self.verdicts.setText(result.message)

        return self.run_job(work, on_done=done, button=self.overfit_button)

    # --- report --------------------------------------------------------------------------
    def report_text(self) -> str:
        return markdown_report(self.report, self.overfit, self.warnings, self.missed)

    def _choose_report(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export report", "doctor.md", "Markdown (*.md);;HTML (*.html)")
        if path:
            try:
                write_report(Path(path), self.report_text())
            except OSError as e:
                self.show_error(f"{path}: cannot write ({e.strerror or e})")

    def export_data(self) -> dict[str, Any] | None:
        return None if self.report is None else self.report.as_dict()
