"""The explorer's main window: the assembly of menus, docks and views around one
:class:`~explorer.state.AppState`. Views read and change the state; the
:class:`~explorer.controller.Controller` loads models and images into it and runs the model off
the GUI thread; the window turns menus, files and messages into calls to them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QImage, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QToolBar,
)

from detr_core.checkpoint import Checkpoint, check_writable, model_summary
from detr_core.data.images import MAX_SIDE
from detr_core.device import device_summary

from .attention_grid import AttentionGrid
from .attention_panel import AttentionPanel
from .canvas import ImageView
from .controller import Controller
from .query_panel import QueryPanel
from .stable_label import StableLabel
from .state import AppState, LoadedModel, TrainingSession
from .training_panel import TrainingPanel
from .training_worker import TrainedModel
from .views.counting import CountingView
from .views.layers import LayerView
from .views.matching import MatchingView
from .views.runs import RunsView
from .views.specialization import SpecializationView
from .workers import readable_error

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CHECKPOINT = ROOT / "checkpoints" / "toy_shapes.pt"
CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt"}
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.gif *.tif *.tiff);;All files (*)"
CHECKPOINT_FILTER = "Checkpoints (*.pt *.pth *.ckpt);;All files (*)"
MAX_RECENT = 10


def qimage_to_rgb(image: QImage, max_side: int | None = MAX_SIDE) -> np.ndarray:
    """QImage (any format) -> [H, W, 3] uint8, at most ``max_side`` on its longer side (as
    opened files are: a huge pasted image is not kept at full size)."""
    if max_side and max(image.width(), image.height()) > max_side:
        image = image.scaled(max_side, max_side, Qt.AspectRatioMode.KeepAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    buf = np.frombuffer(image.constBits(), dtype=np.uint8, count=stride * h).reshape(h, stride)
    return buf[:, : w * 3].reshape(h, w, 3).copy()


class MainWindow(QMainWindow):
    errorShown = Signal(str)

    def __init__(self, settings: QSettings | None = None, checkpoint: Path | None = BUNDLED_CHECKPOINT,
                 sample_seed: int = 0, runs_folder: Path | None = None) -> None:
        super().__init__()
        self.settings = settings or QSettings("DETR Explorer", "DETR Explorer")
        self.setWindowTitle("DETR Explorer")
        self.setAcceptDrops(True)
        self.last_error = ""
        self._error_box: QMessageBox | None = None
        self.state = AppState(self)
        self.controller = Controller(self.state, self)
        self.controller.toy_index = sample_seed

        # the image, the query table, the attention controls and grid, training
        self.canvas = ImageView(self.state)
        self.setCentralWidget(self.canvas)
        self.queries = QueryPanel(self.state)
        self.attention = AttentionPanel(self.state)
        self.grid = AttentionGrid(self.state)
        self.training = TrainingPanel()
        self.queries_dock = self._dock("Queries", self.queries, Qt.DockWidgetArea.RightDockWidgetArea)
        self.attention_dock = self._dock("Attention", self.attention, Qt.DockWidgetArea.RightDockWidgetArea)
        self.grid_dock = self._dock("Attention grid", self.grid, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.training_dock = self._dock("Training", self.training, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.tabifyDockWidget(self.grid_dock, self.training_dock)
        # the analysis views of "Seeing inside"
        self.specialization = SpecializationView(self.state)
        self.matching = MatchingView(self.state)
        self.layers = LayerView(self.state)
        self.counting = CountingView(self.state)
        self.runs = RunsView(runs_folder)
        self.views = (self.specialization, self.matching, self.layers, self.counting, self.runs)
        for title, view in (("Query specialization", self.specialization), ("Matching", self.matching),
                            ("Layer by layer", self.layers), ("Counting", self.counting), ("Runs", self.runs)):
            dock = self._dock(title, view, Qt.DockWidgetArea.BottomDockWidgetArea)
            self.tabifyDockWidget(self.grid_dock, dock)
            dock.visibilityChanged.connect(lambda seen, v=view: seen and v.flush_deferred())
            view.errorShown.connect(lambda m: self.statusBar().showMessage(m, 8000))
        self.grid_dock.raise_()
        # the right column (queries, attention controls) runs the full height of the window
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)

        # the training panel runs its own worker; the state gets its session, model and previews
        self.training.workerCreated.connect(lambda worker: self.state.set_training(TrainingSession(worker)))
        self.training.trained.connect(self._on_trained)
        self.training.preview.connect(self.controller.accept_preview)
        self.training.failed.connect(lambda msg: self.show_error("Training", msg))
        self.training.running.connect(self._on_training_running)
        self.training.status.connect(self._set_activity)
        self.state.imageChanged.connect(lambda image: self.training.set_preview_image(image, self.state.image_id))
        self.runs.openCheckpoint.connect(lambda p: self.open_checkpoint(Path(p)))

        self.state.modelChanged.connect(self._update_model_label)
        for signal in (self.state.modelChanged, self.state.modelSaved, self.state.imageChanged):
            signal.connect(self._update_title)
        self.controller.busy.connect(self._set_busy)
        self.controller.failed.connect(self.show_error)

        self._build_menus()
        self._build_status_bar()
        self._restore_settings()

        if checkpoint is not None and Path(checkpoint).exists():
            self.open_checkpoint(Path(checkpoint), remember=False)
        else:
            self.controller.use_untrained_model()
            self.statusBar().showMessage(
                "No bundled checkpoint found: this model is untrained. Train one in the Training panel.", 15000)
        self.new_toy_sample()

    # --- construction --------------------------------------------------------------------
    def _dock(self, title: str, widget, area) -> QDockWidget:  # noqa: ANN001
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_"))
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:  # noqa: ANN001
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self.act_open_image = self._action("Open &Image…", self.choose_image, QKeySequence.StandardKey.Open,
                                           "Open an image file")
        self.act_paste = self._action("&Paste Image", self.paste_image, QKeySequence.StandardKey.Paste,
                                      "Use the image on the clipboard")
        self.act_sample = self._action("New &Toy Sample", self.new_toy_sample, "Ctrl+T",
                                       "Generate a new toy-shapes image")
        self.act_open_ckpt = self._action("Open &Checkpoint…", self.choose_checkpoint, "Ctrl+Shift+O",
                                          "Open a DETR Explorer or official DETR checkpoint")
        self.act_save_ckpt = self._action("&Save Checkpoint…", self.choose_save_checkpoint,
                                          QKeySequence.StandardKey.Save, "Save the current model")
        self.act_export = self._action("&Export View as PNG…", self.choose_export, "Ctrl+E",
                                       "Save what the image view shows")
        self.recent_menu = file.addMenu("Open &Recent")
        self.act_quit = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        for a in (self.act_open_image, self.act_paste, self.act_sample):
            file.addAction(a)
        file.addSeparator()
        file.addAction(self.act_open_ckpt)
        file.addAction(self.act_save_ckpt)
        file.addMenu(self.recent_menu)
        file.addSeparator()
        file.addAction(self.act_export)
        file.addSeparator()
        file.addAction(self.act_quit)
        view = bar.addMenu("&View")
        for dock in self.findChildren(QDockWidget):
            view.addAction(dock.toggleViewAction())
        self.view_menu = view
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self._action("&About DETR Explorer", self._about))
        toolbar = QToolBar("Main")
        toolbar.setObjectName("main_toolbar")
        for a in (self.act_open_image, self.act_sample, self.act_open_ckpt, self.act_save_ckpt, self.act_export):
            toolbar.addAction(a)
        self.addToolBar(toolbar)
        self._rebuild_recent()

    def _build_status_bar(self) -> None:
        self.activity = StableLabel("Ready")
        self.busy = QProgressBar()
        self.busy.setMaximumWidth(120)
        self.busy.setRange(0, 0)
        self.busy.setVisible(False)
        self.model_label = QLabel("")
        sb = self.statusBar()
        # all permanent: transient messages (showMessage) then never overlap the activity text
        sb.addPermanentWidget(self.activity, 1)
        sb.addPermanentWidget(self.busy)
        sb.addPermanentWidget(self.model_label)

    def _restore_settings(self) -> None:
        geometry = self.settings.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 900)
        state = self.settings.value("windowState")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        else:
            QTimer.singleShot(0, self._default_dock_sizes)  # once the window has its real size
        self.state.set_threshold(round(float(self.settings.value("threshold", 0.5)), 2))
        cmap = str(self.settings.value("colormap", "inferno"))
        if self.attention.colormap.findText(cmap) < 0:
            cmap = self.state.heatmap_style.colormap
        self.state.set_heatmap_style(colormap=cmap, opacity=int(self.settings.value("opacity", 55)) / 100)

    def _default_dock_sizes(self) -> None:
        self.resizeDocks([self.queries_dock, self.attention_dock], [self.height() - 330, 300], Qt.Orientation.Vertical)
        self.resizeDocks([self.grid_dock], [max(320, int(self.height() * 0.42))], Qt.Orientation.Vertical)
        self.resizeDocks([self.queries_dock], [430], Qt.Orientation.Horizontal)

    def _save_settings(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("windowState", self.saveState())
        style = self.state.heatmap_style
        self.settings.setValue("threshold", self.state.threshold)
        self.settings.setValue("colormap", style.colormap)
        self.settings.setValue("opacity", round(style.opacity * 100))
        self.settings.sync()

    # --- messages and status ---------------------------------------------------------------
    def show_error(self, title: str, message: str) -> None:
        """A readable, non-blocking message; the app keeps its state."""
        self.last_error = message
        self.statusBar().showMessage(message, 8000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)  # a closed box is not kept as a child
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()
        self._error_box = box
        self.errorShown.emit(message)

    def _set_activity(self, text: str) -> None:
        self.activity.setText(text)

    def _set_busy(self, text: str | None) -> None:
        self.busy.setVisible(text is not None)
        if text is not None:
            self.activity.setText(text)
        elif not self.training.is_running:
            self.activity.setText("Ready")

    def _update_title(self, *_: object) -> None:
        parts = ["DETR Explorer"]
        loaded = self.state.model
        if loaded is not None:
            name = loaded.path.name if loaded.path else loaded.source
            parts.append(name + (" *" if loaded.unsaved else ""))
        if self.state.image_name:
            parts.append(self.state.image_name)
        self.setWindowTitle(" — ".join(parts))

    def _update_model_label(self, loaded: LoadedModel | None) -> None:
        if loaded is None:
            self.model_label.setText("no model")
            return
        s = model_summary(loaded.model)
        device = device_summary(next(loaded.model.parameters()).device)
        self.model_label.setText(
            f"{s['backbone']} · {s['queries']} queries · {s['classes']} classes · "
            f"{s['parameters'] / 1e6:.2f} M params · {device}")

    # --- models and images -------------------------------------------------------------------
    def open_checkpoint(self, path: Path, remember: bool = True) -> None:
        def opened(path: Path, ckpt: Checkpoint) -> None:
            if remember:
                self._remember(path, "checkpoint")
                self.settings.setValue("lastCheckpointDir", str(path.parent))
            self._on_checkpoint_opened(path, ckpt)

        self.controller.open_checkpoint(Path(path), on_opened=opened)

    def _on_checkpoint_opened(self, path: Path, ckpt: Checkpoint) -> None:
        self.statusBar().showMessage(f"Opened {path.name} ({ckpt.source}, {len(ckpt.class_names)} classes)", 6000)

    def save_checkpoint(self, path: Path) -> bool:
        if self.state.model is None:
            return False
        try:
            self.controller.save_checkpoint(Path(path))
        except Exception as e:  # noqa: BLE001 - the model stays; the message says why
            message = readable_error(e, str(path))
            self.show_error("Cannot save checkpoint", message if message.startswith("cannot save")
                            else f"cannot save {message}")
            return False
        self._remember(Path(path), "checkpoint")
        self.settings.setValue("lastCheckpointDir", str(Path(path).parent))
        self.statusBar().showMessage(f"Saved {path}", 6000)
        return True

    def _on_trained(self, trained: TrainedModel) -> None:
        self.controller.use_trained(trained)
        self.statusBar().showMessage(
            f"Training {trained.reason} at step {trained.step}: the trained model is now in the explorer "
            "(File ▸ Save Checkpoint to keep it).", 10000)

    def new_toy_sample(self) -> None:
        self.controller.new_toy_sample()

    def open_image(self, path: Path) -> None:
        self.controller.open_image(Path(path), on_opened=self._on_image_opened)

    def _on_image_opened(self, path: Path) -> None:
        self._remember(path, "image")
        self.settings.setValue("lastImageDir", str(path.parent))

    def paste_image(self) -> None:
        clipboard = QApplication.clipboard()
        image = clipboard.image()
        if image.isNull():
            mime = clipboard.mimeData()
            if mime is not None and mime.hasUrls() and mime.urls() and mime.urls()[0].isLocalFile():
                self.open_path(Path(mime.urls()[0].toLocalFile()))
                return
            self.show_error("Paste", "The clipboard holds no image (nor an image file) to paste.")
            return
        self.state.set_image(qimage_to_rgb(image), "pasted image")

    def open_path(self, path: Path) -> None:
        """Open a dropped or recent file: a checkpoint by its suffix, anything else as an image."""
        if path.suffix.lower() in CHECKPOINT_SUFFIXES:
            self.open_checkpoint(path)
        else:
            self.open_image(path)

    def _on_training_running(self, running: bool) -> None:
        self.act_open_ckpt.setEnabled(not running)
        if running:
            self.training_dock.raise_()
            if self.training_dock.height() < self.height() * 0.4:  # room for the live plots
                self.resizeDocks([self.training_dock], [int(self.height() * 0.45)], Qt.Orientation.Vertical)

    # --- files -------------------------------------------------------------------------------
    def choose_image(self) -> None:
        start = str(self.settings.value("lastImageDir", str(Path.home())))
        path, _ = QFileDialog.getOpenFileName(self, "Open image", start, IMAGE_FILTER)
        if path:
            self.open_image(Path(path))

    def choose_checkpoint(self) -> None:
        start = str(self.settings.value("lastCheckpointDir", str(ROOT / "checkpoints")))
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", start, CHECKPOINT_FILTER)
        if path:
            self.open_checkpoint(Path(path))

    def choose_save_checkpoint(self) -> bool:
        start = Path(str(self.settings.value("lastCheckpointDir", str(Path.home()))))
        loaded = self.state.model
        name = loaded.path.name if loaded and loaded.path else "trained.pt"
        path, _ = QFileDialog.getSaveFileName(self, "Save checkpoint", str(start / name), CHECKPOINT_FILTER)
        if not path:
            return False
        return self.save_checkpoint(Path(path))

    def choose_export(self) -> None:
        start = Path(str(self.settings.value("lastImageDir", str(Path.home()))))
        path, _ = QFileDialog.getSaveFileName(self, "Export view", str(start / "detr_view.png"), "PNG (*.png)")
        if path:
            self.export_png(Path(path))

    def export_png(self, path: Path) -> bool:
        try:
            check_writable(path)  # says why a file cannot be written there (QImage.save does not)
            ok = self.canvas.grab().save(str(path), "PNG")
        except OSError as e:
            self.show_error("Export", readable_error(e, str(path)))
            return False
        if not ok:
            self.show_error("Export", f"cannot save {path}: the PNG could not be written")
        else:
            self.statusBar().showMessage(f"Exported {path}", 5000)
        return ok

    def _remember(self, path: Path, kind: str) -> None:
        entries = [e for e in self.recent_files() if e != str(path)]
        entries.insert(0, str(path))
        self.settings.setValue("recentFiles", entries[:MAX_RECENT])
        self._rebuild_recent()

    def recent_files(self) -> list[str]:
        value = self.settings.value("recentFiles", [])
        if isinstance(value, str):
            return [value]
        return [str(v) for v in (value or [])]

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        entries = self.recent_files()
        for entry in entries:
            action = QAction(Path(entry).name, self)
            action.setToolTip(entry)
            action.triggered.connect(lambda _=False, p=entry: self.open_path(Path(p)))
            self.recent_menu.addAction(action)
        self.recent_menu.setEnabled(bool(entries))

    # --- drag and drop -------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        mime = event.mimeData()
        if mime.hasUrls():
            for url in mime.urls():
                if url.isLocalFile():
                    self.open_path(Path(url.toLocalFile()))
                else:
                    self.show_error("Drop", f"{url.toString()}: not a file on this computer; save it "
                                            "first, then open the file")
            event.acceptProposedAction()
        elif mime.hasImage():
            image = QImage(mime.imageData())
            if image.isNull():
                self.show_error("Drop", "The dropped data is not an image this app can read.")
            else:
                self.state.set_image(qimage_to_rgb(image), "dropped image")
            event.acceptProposedAction()

    # --- analysis views ---------------------------------------------------------------------
    def add_view(self, title: str, widget, area=Qt.DockWidgetArea.BottomDockWidgetArea) -> QDockWidget:  # noqa: ANN001
        """Add an analysis view as a dock, tabbed with the attention grid and training panel."""
        dock = self._dock(title, widget, area)
        self.tabifyDockWidget(self.grid_dock, dock)
        self.view_menu.addAction(dock.toggleViewAction())
        return dock

    # --- closing -------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self.training.is_running:
            answer = QMessageBox.question(
                self, "Training is running", "Stop training and quit?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.training.stop(wait_ms=60000)
            QApplication.processEvents()  # deliver the finished run (its model) to this window
        if self.state.model is not None and self.state.model.unsaved:
            answer = QMessageBox.question(
                self, "Unsaved trained weights",
                "The model trained in this session has not been saved. Save it before quitting?",
                QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Save)
            if answer == QMessageBox.StandardButton.Cancel:
                event.ignore()
                return
            if answer == QMessageBox.StandardButton.Save and not self.choose_save_checkpoint():
                event.ignore()
                return
        self.runs.shutdown()
        self.matching.shutdown()
        self.layers.shutdown()
        for view in self.views:
            view.cancel_job()
            view.wait_job(10000)
        self.controller.shutdown(30000)
        self._save_settings()
        event.accept()

    def _about(self) -> None:
        QMessageBox.about(self, "About DETR Explorer",
                          "DETR Explorer: see and touch DETR (Carion et al., 2020).\n"
                          "Train a small DETR live, toggle every object query's box, and watch where its "
                          "decoder cross-attention reads the image.")


__all__ = ["MainWindow", "BUNDLED_CHECKPOINT", "QTimer"]
