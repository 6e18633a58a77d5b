"""The doctor in the window: check a dataset, overfit one batch, diagnose missed objects, export
a report. Findings list example image ids; clicking one shows the image with its boxes as
declared, and (with a model loaded) why the model misses any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)

from detr_core.doctor.data_checks import DataReport, check_dataset, model_figures
from detr_core.doctor.missed import MissedDiagnosis, diagnose_missed
from detr_core.doctor.overfit import OverfitResult, open_for_overfit, overfit_steps
from detr_core.doctor.report import markdown_report, write_report
from detr_core.doctor.watch import WatchProbe, WatchWarning

from ..state import AppState
from ..workers import WorkContext
from .base import AnalysisView

WATCH_PROBE = "doctor watch"
OVERFIT_STEPS = 400  # most steps of overfit one batch
WATCH_EVERY = 25  # steps between the watch's looks at the live model
GT_PEN = pg.mkPen("#34a853", width=2)
QUERY_PEN = pg.mkPen("#fbbc04", width=2, style=Qt.PenStyle.DashLine)


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
        self.source.setToolTip("toy, coco:FOLDER, voc:FOLDER or a folder")
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        self.check_button = QPushButton("Check dataset")
        self.check_button.clicked.connect(self.check)
        self.overfit_button = QPushButton("Overfit one batch")
        self.overfit_button.clicked.connect(self.run_overfit)
        self.report_button = QPushButton("Export report…")
        self.report_button.clicked.connect(self._choose_report)
        row = QHBoxLayout()
        for w in (QLabel("Data:"), self.source, browse, self.check_button, self.overfit_button, self.report_button):
            row.addWidget(w)
        self.body.addLayout(row)

        self.findings = QTreeWidget()
        self.findings.setHeaderLabels(["Finding", "Images", "Objects"])
        self.findings.itemClicked.connect(self._clicked)
        self.plot = pg.PlotWidget()
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image_item)
        self.verdicts = QLabel("Check a dataset, then click an example image.")
        self.verdicts.setWordWrap(True)
        self.verdicts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.plot)
        right.addWidget(self.verdicts)
        split = QSplitter()
        split.addWidget(self.findings)
        split.addWidget(right)
        self.body.addWidget(split, 1)

    # --- data checks ---------------------------------------------------------------------
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder")
        if folder:
            self.source.setText(folder)

    def _figures(self) -> dict[str, int]:
        loaded = self.state.model
        if loaded is None:
            return {}
        return model_figures(loaded.model.config)

    def check(self, source: str | None = None) -> bool:
        if source is not None:
            self.source.setText(source)
        figures = self._figures()

        def work(ctx: WorkContext, src: str) -> DataReport:
            ctx.progress(0, 0, "reading the annotations")
            return check_dataset(src, **figures)

        return self.run_job(work, self.source.text().strip() or "toy", on_done=self.show_report,
                            button=self.check_button)

    def show_report(self, report: DataReport) -> None:
        self.report = report
        self.findings.clear()
        head = QTreeWidgetItem([f"{report.name}: {report.images} images, {report.objects} objects",
                                str(report.images), str(report.objects)])
        self.findings.addTopLevelItem(head)
        if not report.findings:
            head.addChild(QTreeWidgetItem(["No problems found."]))
        for f in report.findings:
            item = QTreeWidgetItem([f.title, str(f.images), str(f.objects)])
            item.setToolTip(0, f"Why: {f.cause}\nFix: {f.fix}")
            item.addChild(QTreeWidgetItem([f"Fix: {f.fix}"]))
            for image_id in f.examples:
                child = QTreeWidgetItem([f"image {image_id}"])
                child.setData(0, Qt.ItemDataRole.UserRole, str(image_id))
                item.addChild(child)
            head.addChild(item)
        self.findings.expandAll()
        self.findings.resizeColumnToContents(0)

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
            self._draw([])
            return
        self.image_item.setImage(rgb)
        self._draw(boxes)
        self.verdicts.setText(f"Image {image_id}: {len(labels)} objects as declared (green).")
        if self.state.model is not None and len(labels) and (labels >= 0).all():
            self.diagnose(rgb, labels, boxes)

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

        def work(ctx: WorkContext) -> list[MissedDiagnosis]:
            result = run_inference(model, rgb, names)
            return [diagnose_missed(result, labels, boxes, k, loss, model.config.classifier) for k in range(len(labels))]

        def done(found: list[MissedDiagnosis]) -> None:
            self.missed = [d for d in found if d.verdict != "detected"]
            self._draw(boxes, [d.layer_boxes_xyxy[-1] for d in self.missed])
            lines = [f"{len(found) - len(self.missed)} of {len(found)} objects found by the model."]
            lines += [f"Object {d.object_index} ({d.class_name}), query {d.query}: {d.explanation}" for d in self.missed]
            self.verdicts.setText("\n".join(lines))

        return self.run_job(work, on_done=done)

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
        self.errorShown.emit(f"Doctor: {self.warnings[-1].title.lower()} (see the Doctor tab)")

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
