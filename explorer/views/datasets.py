"""The dataset browser: the open dataset's images with their object counts and what the model
gets right and wrong on each, at IoU 0.5 (:mod:`detr_core.analysis.image_errors`).

The list can be sorted by how badly the model does (errors = false positives + missed objects,
or the image's AP50) and filtered by class. The selected image is drawn twice, side by side: its
ground truth (green: found, orange: missed) and the model's kept predictions (green: true
positive, red: false positive, grey: on an ignored crowd / difficult object). Class names come
from the dataset. The model runs over the split off the GUI thread whenever the dataset, the
split or the model changes (and the view is on screen); the threshold only re-matches.

The images show as a list (a table with the counts) or as thumbnails with their counts (the
toggle is kept in the settings). Thumbnails are made off the GUI thread, in small batches, only
in thumbnail mode and only while the view is on screen, the images first in the list first; they
are kept until the dataset or the split changes, so a 2000-image folder stays responsive.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QHeaderView,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from detr_core.analysis.image_errors import (
    FP,
    IGNORED,
    TP,
    ImageErrors,
    match_predictions,
    predict_images,
)
from detr_core.analysis.label_map import label_map_for
from detr_core.data.dataset import DatasetError, Sample
from detr_core.data.files import FileDataset, thumbnail
from detr_core.data.transforms import eval_transform

from ..dataset_session import OpenedDataset
from ..settings import read_setting
from ..stable_label import StableLabel, wrap_label
from ..state import AppState, LoadedModel
from ..workers import WorkContext, Worker
from .base import AnalysisView
from .flow import Fill, Flow, labelled, side_by_side

FOUND, MISSED = "#51cf66", "#ffa94d"
COLORS = {TP: "#51cf66", FP: "#ff6b6b", IGNORED: "#adb5bd"}
UNSCORED = "#4dabf7"  # predictions of a model whose classes are not the dataset's
SORTS = ("file order", "most errors first", "lowest AP50 first", "most objects first")
COLUMNS = ("image", "objects", "TP", "FP", "missed", "AP50")
ALL_CLASSES = "all classes"
THUMB_SIDE = 96  # pixels, the longer side of a thumbnail
THUMB_BATCH = 8  # thumbnails per signal to the GUI thread
VIEW_KEY = "datasetBrowser/view"  # "list" or "thumbnails", in the settings


class BoxPanel(pg.GraphicsLayoutWidget):
    """One image with coloured boxes and their class names; items made once, then updated."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("#202124")
        self.view = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.title = title
        self.image = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image)
        self.boxes: dict[str, pg.PlotDataItem] = {}
        self.texts: list[pg.TextItem] = []
        self.counts: dict[str, int] = {}  # boxes drawn per colour (what the tests read)

    def show_boxes(self, image: np.ndarray | None, boxes: list[tuple[np.ndarray, str, str]]) -> None:
        """``boxes``: (xyxy [4] pixels, colour, text)."""
        if image is None:
            self.image.clear()
        else:
            self.image.setImage(image, autoLevels=False, levels=(0, 255))
        for item in self.texts:
            self.view.removeItem(item)
        self.texts = []
        by_color: dict[str, list[np.ndarray]] = {}
        top = 0.08 * (image.shape[0] if image is not None else 0)
        for xyxy, color, text in boxes:
            by_color.setdefault(color, []).append(xyxy)
            # above the box, or inside it when it touches the top of the image
            label = pg.TextItem(text, color=color, anchor=(0, 0) if xyxy[1] < top else (0, 1))
            label.setPos(float(xyxy[0]), float(xyxy[1]))
            self.view.addItem(label)
            self.texts.append(label)
        self.counts = {c: len(b) for c, b in by_color.items()}
        for color in set(self.boxes) | set(by_color):
            if color not in self.boxes:
                self.boxes[color] = pg.PlotDataItem(pen=pg.mkPen(color, width=2), connect="finite")
                self.view.addItem(self.boxes[color])
            x, y = _outline(by_color.get(color, []))
            self.boxes[color].setData(x, y)
        if image is not None:  # the image, not its labels, sets the range: both panels show it alike
            h, w = image.shape[:2]
            self.view.setRange(QRectF(0, 0, w, h), padding=0.02)


def _outline(boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rectangles as one polyline with NaN breaks."""
    xs, ys = [], []
    for x0, y0, x1, y1 in boxes:
        xs += [x0, x1, x1, x0, x0, np.nan]
        ys += [y0, y0, y1, y1, y0, np.nan]
    return np.asarray(xs, float), np.asarray(ys, float)


def _make_thumbnails(ctx: WorkContext, todo: list[tuple[int, Path]], side: int,
                     ) -> Iterator[list[tuple[int, np.ndarray | None]]]:
    """Worker: (dataset index, [h, w, 3] uint8 thumbnail or None if unreadable), a few at a time."""
    batch: list[tuple[int, np.ndarray | None]] = []
    for index, path in todo:
        batch.append((index, thumbnail(path, side)))
        if len(batch) == THUMB_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _icon(rgb: np.ndarray) -> QIcon:
    """A [h, w, 3] uint8 array as an icon (made on the GUI thread: QPixmap lives there)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()  # owns its pixels
    return QIcon(QPixmap.fromImage(image))


def _placeholder(color: str) -> QIcon:
    pixmap = QPixmap(THUMB_SIDE, THUMB_SIDE)
    pixmap.fill(QColor(color))
    return QIcon(pixmap)


class DatasetBrowser(AnalysisView):
    """Emits ``showImage(rgb, name)`` to open the selected image in the main image view.
    ``settings`` keeps the list / thumbnails choice (None: not kept)."""

    showImage = Signal(object, str)

    def __init__(self, state: AppState, parent: QWidget | None = None, settings: QSettings | None = None) -> None:
        super().__init__("Dataset", parent)
        self.state = state
        self.settings = settings
        self.thumb_job: Worker | None = None
        self.thumb_icons: dict[int, QIcon] = {}  # dataset index -> its thumbnail, for the shown split
        self._thumb_items: dict[int, QListWidgetItem] = {}
        self._thumb_generation = 0  # bumped when the split changes: older thumbnails are dropped
        self._thumb_restart = False
        self._thumb_timer = QTimer(self)
        self._thumb_timer.setSingleShot(True)
        self._thumb_timer.timeout.connect(lambda: self.when_visible("thumbnails", self._start_thumbnails))
        self._waiting_icon = _placeholder("#3c4043")
        self._unreadable_icon = _placeholder("#7f1d1d")
        self.errors: dict[int, ImageErrors] = {}  # dataset index -> its errors at the threshold
        self.predictions: tuple[list[int], list] | None = None  # (image ids, raw predictions)
        self.comparable = True  # the model's classes map onto the dataset's
        self.model_note = ""
        self.data_used = ""
        self._rerun = False
        self.label_map: list[int] | None = None

        self.header = QLabel("No dataset open: File ▸ Open Dataset… (a COCO folder or annotation .json, or a VOC "
                             "devkit), or drop one on the window.")
        self.header.setWordWrap(True)
        self.split = QComboBox()
        self.class_filter = QComboBox()
        self.sort = QComboBox()
        self.sort.addItems(SORTS)
        self.show_button = QPushButton("Show in image view")
        self.show_button.setToolTip("Open the selected image in the main image view (attention, queries)")
        controls = Flow()  # wraps in a narrow dock
        for text, widget in (("Split", self.split), ("Class", self.class_filter), ("Sort", self.sort)):
            controls.addWidget(labelled(text, widget))
        self.class_filter.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.class_filter.setMinimumContentsLength(12)  # a long class name must not widen the dock
        self.list_button = QToolButton()
        self.list_button.setText("List")
        self.thumbs_button = QToolButton()
        self.thumbs_button.setText("Thumbnails")
        self.view_buttons = QButtonGroup(self)
        for button in (self.list_button, self.thumbs_button):
            button.setCheckable(True)
            self.view_buttons.addButton(button)
        self.list_button.setToolTip("The images as a table: counts and errors")
        self.thumbs_button.setToolTip("The images as thumbnails with their counts")
        controls.addWidget(side_by_side(self.list_button, self.thumbs_button, spacing=0))
        controls.addWidget(self.show_button)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setTextElideMode(Qt.TextElideMode.ElideLeft)  # file names differ at their end
        self.table.setMinimumWidth(240)
        self.thumbs = QListWidget()
        self.thumbs.setViewMode(QListView.ViewMode.IconMode)
        self.thumbs.setIconSize(QSize(THUMB_SIDE, THUMB_SIDE))
        self.thumbs.setGridSize(QSize(THUMB_SIDE + 34, THUMB_SIDE + 44))
        self.thumbs.setResizeMode(QListView.ResizeMode.Adjust)
        self.thumbs.setMovement(QListView.Movement.Static)
        self.thumbs.setUniformItemSizes(True)
        self.thumbs.setWordWrap(True)
        self.thumbs.setTextElideMode(Qt.TextElideMode.ElideLeft)
        self.thumbs.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.thumbs.setMinimumWidth(240)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.table)
        self.pages.addWidget(self.thumbs)
        self.ground_truth = BoxPanel("Ground truth")
        self.prediction = BoxPanel("Predictions")
        self.prediction.view.setXLink(self.ground_truth.view)  # zoom and pan the two together
        self.prediction.view.setYLink(self.ground_truth.view)
        for panel in (self.ground_truth, self.prediction):
            panel.setMinimumSize(160, 110)
        self.gt_title = StableLabel("Ground truth")  # elided: a long title must not widen the dock
        self.pred_title = StableLabel("Predictions")
        self.legend = wrap_label(QLabel(
            f"<span style='color:{FOUND}'>■</span> found / true positive &nbsp; "
            f"<span style='color:{MISSED}'>■</span> missed &nbsp; "
            f"<span style='color:{COLORS[FP]}'>■</span> false positive &nbsp; (IoU ≥ 0.5, score ≥ threshold)"))
        # the ground truth over the predictions: the dock is taller than it is wide
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(2)
        for title, panel in ((self.gt_title, self.ground_truth), (self.pred_title, self.prediction)):
            rl.addWidget(title)
            rl.addWidget(panel, 1)
        rl.addWidget(self.legend)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        split.addWidget(self.pages)
        split.addWidget(right)
        split.setSizes([500, 500])  # half each: the pictures, one over the other, need no more width
        self.body.addWidget(self.header)
        self.body.addWidget(controls)
        self.body.addWidget(Fill(split), 1)

        self.split.currentTextChanged.connect(lambda _: self._split_changed())
        self.class_filter.currentTextChanged.connect(lambda _: self.refresh_list())
        self.sort.currentTextChanged.connect(lambda _: self.refresh_list())
        self.table.itemSelectionChanged.connect(self._show_selected)
        self.thumbs.currentItemChanged.connect(self._on_thumb)
        thumbnails = settings is not None and read_setting(
            settings, VIEW_KEY, "list", valid=lambda v: v in ("list", "thumbnails"), expect="list or thumbnails") == "thumbnails"
        (self.thumbs_button if thumbnails else self.list_button).setChecked(True)
        self.pages.setCurrentIndex(1 if thumbnails else 0)
        self.view_buttons.buttonToggled.connect(self._on_view_toggled)
        self.show_button.clicked.connect(self._show_in_image_view)
        state.datasetChanged.connect(self.on_dataset)
        state.modelChanged.connect(lambda _: self.evaluate())
        state.thresholdChanged.connect(lambda _: self._rematch())
        self.jobFinished.connect(lambda _: self._after_job())
        self.jobCancelled.connect(self._after_job)
        self.jobFailed.connect(lambda _: self._after_job())
        self.on_dataset(state.dataset)

    # --- what is shown -------------------------------------------------------------------------
    @property
    def dataset(self) -> FileDataset | None:
        opened = self.state.dataset
        return None if opened is None else opened.splits.get(self.split.currentText())

    def on_dataset(self, opened: OpenedDataset | None) -> None:
        self.cancel_job()
        self._forget_thumbnails()
        self.errors, self.predictions = {}, None
        for combo, items in ((self.split, list(opened.splits) if opened else []),
                             (self.class_filter, [ALL_CLASSES, *(opened.class_names if opened else [])])):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(items)
            combo.blockSignals(False)
        if opened is not None and "val" in opened.splits:
            self.split.setCurrentText("val")
        self._split_changed()

    def _split_changed(self) -> None:
        self.cancel_job()
        self._forget_thumbnails()
        self.errors, self.predictions = {}, None
        self._update_header()
        self.refresh_list()
        self.evaluate()

    def _update_header(self) -> None:
        opened, data = self.state.dataset, self.dataset
        if opened is None or data is None:
            self.header.setText("No dataset open: File ▸ Open Dataset… (a COCO folder or annotation .json, or a "
                                "VOC devkit), or drop one on the window.")
            return
        skipped = f" · {len(data.problems)} annotation problems skipped (Data: see the summary)" \
            if data.problems else ""
        self.data_used = f"{opened.name} · {self.split.currentText()} split ({data.name}), {len(data)} images"
        self.header.setText(f"<b>{self.data_used}</b>, {len(data.class_names)} classes{skipped}"
                            + (f"<br>{self.model_note}" if self.model_note else ""))
        self.header.setToolTip(opened.summary)

    def rows(self) -> list[int]:
        """Dataset indices in the list's order, after the class filter."""
        data = self.dataset
        if data is None:
            return []
        indices = list(range(len(data)))
        wanted = self.class_filter.currentText()
        if wanted and wanted != ALL_CLASSES:
            k = data.class_names.index(wanted)
            indices = [i for i in indices if (data.records[i].labels == k).any()
                       or (i in self.errors and (self.errors[i].labels == k).any())]
        sort = self.sort.currentText()
        if sort == "most errors first" and self.errors:
            indices.sort(key=lambda i: -self.errors[i].errors if i in self.errors else 1)
        elif sort == "lowest AP50 first" and self.errors:
            def ap(i: int) -> float:
                e = self.errors.get(i)
                return 2.0 if e is None or math.isnan(e.ap50) else e.ap50
            indices.sort(key=ap)
        elif sort == "most objects first":
            indices.sort(key=lambda i: -len(data.records[i].labels))
        return indices

    def refresh_list(self) -> None:
        data = self.dataset
        selected = self.selected_index()
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        if data is not None:
            order = self.rows()
            self.table.setRowCount(len(order))
            for row, i in enumerate(order):
                e = self.errors.get(i)
                scored = e is not None and self.comparable
                values = [data.records[i].path.name, str(len(data.records[i].labels)),
                          str(e.tp) if scored else "", str(e.fp) if scored else "",
                          str(e.missed) if scored else "",
                          "" if not scored or math.isnan(e.ap50) else f"{e.ap50:.2f}"]
                for col, value in enumerate(values):
                    item = QTableWidgetItem(value)
                    if col:
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    item.setData(Qt.ItemDataRole.UserRole, i)
                    self.table.setItem(row, col, item)
        self.table.blockSignals(False)
        self._fill_thumbs()
        if self.table.rowCount():
            self.select_index(selected if selected is not None and selected in self.rows() else None)
        else:
            self.ground_truth.show_boxes(None, [])
            self.prediction.show_boxes(None, [])

    # --- thumbnails --------------------------------------------------------------------------------
    @property
    def thumbnail_mode(self) -> bool:
        return self.thumbs_button.isChecked()

    def set_thumbnail_mode(self, on: bool) -> None:
        (self.thumbs_button if on else self.list_button).setChecked(True)

    def _on_view_toggled(self, _button: QToolButton, checked: bool) -> None:
        if not checked:
            return
        on = self.thumbnail_mode
        self.pages.setCurrentIndex(1 if on else 0)
        if self.settings is not None:
            self.settings.setValue(VIEW_KEY, "thumbnails" if on else "list")
        index = self.selected_index()
        self._fill_thumbs()
        if on and index is not None and index in self._thumb_items:
            item = self._thumb_items[index]
            self.thumbs.blockSignals(True)
            self.thumbs.setCurrentItem(item)
            self.thumbs.blockSignals(False)
            self.thumbs.scrollToItem(item)

    def _thumb_text(self, data: FileDataset, index: int) -> str:
        record = data.records[index]
        n = len(record.labels)
        text = f"{record.path.name}\n{n} object{'s' if n != 1 else ''}"
        e = self.errors.get(index)
        if e is not None and self.comparable:
            text += f" · {e.errors} err"
        return text

    def _fill_thumbs(self) -> None:
        """One item per row of the list, in its order; thumbnails already made are reused. In
        list mode nothing is made (toggling to thumbnails fills it)."""
        self.thumbs.blockSignals(True)
        self.thumbs.clear()
        self._thumb_items = {}
        data = self.dataset
        if data is not None and self.thumbnail_mode:
            for index in self.rows():
                item = QListWidgetItem(self.thumb_icons.get(index, self._waiting_icon), self._thumb_text(data, index))
                item.setData(Qt.ItemDataRole.UserRole, index)
                self.thumbs.addItem(item)
                self._thumb_items[index] = item
        self.thumbs.blockSignals(False)
        if self.thumbnail_mode:
            self._thumb_timer.start(0)  # once the list has settled (opening refreshes it twice)

    def _start_thumbnails(self) -> None:
        """Make the missing thumbnails off the GUI thread, in the list's order."""
        data = self.dataset
        if data is None or not self.thumbnail_mode:
            return
        if self.thumb_job is not None and self.thumb_job.is_running:
            self._thumb_restart = True  # once it has stopped (it may be of another split)
            return
        todo = [(i, data.records[i].path) for i in self.rows() if i not in self.thumb_icons]
        if not todo:
            return
        generation = self._thumb_generation
        job = Worker(_make_thumbnails, todo, THUMB_SIDE, parent=self, subject="thumbnails")
        job.yielded.connect(lambda batch: self._thumbs_made(batch, generation))
        job.finished.connect(self._thumbs_finished)
        self.thumb_job = job
        job.start()

    def _thumbs_made(self, batch: list[tuple[int, np.ndarray | None]], generation: int) -> None:
        if generation != self._thumb_generation:
            return  # of the previous split
        for index, rgb in batch:
            icon = self._unreadable_icon if rgb is None else _icon(rgb)
            self.thumb_icons[index] = icon
            item = self._thumb_items.get(index)
            if item is not None:
                item.setIcon(icon)

    def _thumbs_finished(self) -> None:
        if self._thumb_restart:
            self._thumb_restart = False
            self._start_thumbnails()

    def _forget_thumbnails(self) -> None:
        """The split changed: its thumbnails are made again."""
        self._thumb_generation += 1
        self.thumb_icons = {}
        if self.thumb_job is not None:
            self.thumb_job.cancel()

    def _on_thumb(self, item: QListWidgetItem | None, _previous: QListWidgetItem | None = None) -> None:
        if item is not None:
            self.select_index(int(item.data(Qt.ItemDataRole.UserRole)))

    def cancel_job(self) -> None:
        """Cancel the model's run over the split and the thumbnails being made."""
        super().cancel_job()
        if self.thumb_job is not None:
            self.thumb_job.cancel()

    def wait_job(self, msecs: int = 60000) -> bool:
        done = super().wait_job(msecs)
        return (self.thumb_job.wait(msecs) if self.thumb_job is not None else True) and done

    def selected_index(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return int(self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole))

    def select_index(self, index: int | None) -> None:
        """Select dataset image ``index`` (None: the first row)."""
        for row in range(self.table.rowCount()):
            if index is None or self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == index:
                self.table.selectRow(row)
                item = self._thumb_items.get(self.table.item(row, 0).data(Qt.ItemDataRole.UserRole))
                if item is not None and self.thumbs.currentItem() is not item:
                    self.thumbs.blockSignals(True)
                    self.thumbs.setCurrentItem(item)
                    self.thumbs.blockSignals(False)
                self._show_selected()
                return

    def _sample(self, index: int) -> Sample | None:
        data = self.dataset
        try:
            return data.sample(index) if data is not None else None
        except DatasetError as e:
            self.show_error(str(e))
            return None

    def _show_selected(self) -> None:
        index, data = self.selected_index(), self.dataset
        if index is None or data is None:
            return
        smp = self._sample(index)
        image = None if smp is None else smp.image
        names = data.class_names
        rec = data.records[index]
        e = self.errors.get(index)
        gt = []
        for k, (label, box) in enumerate(zip(rec.labels.tolist(), rec.boxes_xyxy)):
            color = (FOUND if e.gt_found[k] else MISSED) if e is not None and self.comparable else "#ffffff"
            gt.append((box, color, names[label]))
        self.gt_title.setText(f"Ground truth: {len(gt)} objects"
                              + (f", {e.missed} missed" if e is not None and self.comparable else ""))
        preds = []
        if e is not None:
            model_names = self.state.class_names
            for label, score, box, status in zip(e.labels.tolist(), e.scores.tolist(), e.boxes_xyxy, e.status):
                if self.comparable:
                    preds.append((box, COLORS[int(status)], f"{names[label]} {score:.2f}"))
                else:
                    name = model_names[label] if label < len(model_names) else str(label)
                    preds.append((box, UNSCORED, f"{name} {score:.2f}"))
            self.pred_title.setText(f"Predictions ≥ {self.state.threshold:.2f}: "
                                    + (f"{e.tp} TP, {e.fp} FP" if self.comparable
                                       else f"{len(preds)} (not scored: other classes)"))
        else:
            self.pred_title.setText("Predictions: the model is running…"
                                    if self.busy else "Predictions: none (no model, or unreadable)")
        self.pred_title.setToolTip(rec.path.name)
        self.gt_title.setToolTip(str(rec.path))
        self.ground_truth.show_boxes(image, gt)
        self.prediction.show_boxes(image, preds)

    def _show_in_image_view(self) -> None:
        index = self.selected_index()
        smp = None if index is None else self._sample(index)
        if smp is not None and self.dataset is not None:
            self.showImage.emit(smp.image, self.dataset.records[index].path.name)

    # --- running the model -----------------------------------------------------------------------
    def evaluate(self) -> None:
        """Run the model over the split (once the view is on screen)."""
        self.when_visible("evaluate", self._start_evaluation)

    def _start_evaluation(self) -> None:
        data, loaded = self.dataset, self.state.model
        if data is None or loaded is None:
            return
        if self.busy:
            self._rerun = True
            super().cancel_job()  # the model's run only: the thumbnails go on
            return
        self._set_model_note(loaded, data)
        model = loaded.model
        cfg = model.config
        resized = data.with_transform(eval_transform(cfg.image_min_size, cfg.image_max_size, cfg.fixed_input_size))
        self.errors, self.predictions = {}, None
        self.run_job(self._predict, model, resized, on_done=self._predictions_done)

    @staticmethod
    def _predict(ctx: Any, model: Any, dataset: FileDataset) -> tuple[list[int], list]:
        return predict_images(model, dataset, progress=ctx.core_progress)

    def _set_model_note(self, loaded: LoadedModel, data: FileDataset) -> None:
        try:
            self.label_map = label_map_for(loaded.class_names, data.class_names)
            self.comparable, self.model_note = True, ""
        except ValueError as e:
            self.label_map = None
            self.comparable = False
            self.model_note = (f"Predictions are not scored: {e}. Train on this dataset in the Train workspace "
                               "(from scratch or from the open model).")
        self._update_header()

    def _predictions_done(self, predictions: tuple[list[int], list]) -> None:
        self.predictions = predictions
        self._rematch()

    def _rematch(self) -> None:
        data = self.dataset
        if data is None or self.predictions is None:
            return
        ids, preds = self.predictions
        label_map = self.label_map if self.comparable else None
        self.errors = {e.index: e for e in match_predictions(data, ids, preds, self.state.threshold, label_map)}
        self.refresh_list()

    def _after_job(self) -> None:
        if self._rerun:
            self._rerun = False
            self.evaluate()

    # --- export ----------------------------------------------------------------------------------
    def export_data(self) -> list[dict[str, Any]] | None:
        data = self.dataset
        if data is None:
            return None
        rows = []
        for i in self.rows():
            e = self.errors.get(i)
            row: dict[str, Any] = {"image": str(data.records[i].path), "image_id": data.records[i].image_id,
                                   "objects": len(data.records[i].labels)}
            if e is not None and self.comparable:
                row.update({"tp": e.tp, "fp": e.fp, "missed": e.missed, "ap50": e.ap50})
            rows.append(row)
        return rows
