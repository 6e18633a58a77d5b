"""The explorer's main window: an image with every query's box, attention heatmaps, the query
table, the attention grid and live training. It drives ``detr_core`` through its API only;
the model runs off the GUI thread (inference tasks, the training worker)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
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

from detr_core.analysis.capture import InferenceResult, run_inference
from detr_core.analysis.heatmaps import cross_attention_map, encoder_attention_map
from detr_core.checkpoint import (
    Checkpoint,
    load_checkpoint,
    model_summary,
    save_checkpoint,
)
from detr_core.config import DETRConfig, TrainConfig
from detr_core.data import ToyShapes
from detr_core.data.images import load_image
from detr_core.device import device_summary
from detr_core.model.detr import DETR
from detr_core.presets import preset

from .attention_grid import AttentionGrid
from .attention_panel import MODE_CROSS, MODE_ENCODER, AttentionPanel
from .canvas import ImageCanvas
from .colors import query_color
from .query_panel import QueryPanel
from .stable_label import StableLabel
from .training_panel import TrainingPanel
from .training_worker import TrainedModel
from .views.counting import CountingView
from .views.layers import LayerView
from .views.matching import MatchingView, training_stream
from .views.runs import RunsView
from .views.specialization import SpecializationView
from .workers import WorkQueue

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CHECKPOINT = ROOT / "checkpoints" / "toy_shapes.pt"
CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt"}
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.gif *.tif *.tiff);;All files (*)"
CHECKPOINT_FILTER = "Checkpoints (*.pt *.pth *.ckpt);;All files (*)"
MAX_RECENT = 10


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """QImage (any format) -> [H, W, 3] uint8."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    buf = np.frombuffer(image.constBits(), dtype=np.uint8, count=stride * h).reshape(h, stride)
    return buf[:, : w * 3].reshape(h, w, 3).copy()


class LoadedModel:
    """The model shown in the explorer and where it came from."""

    def __init__(self, model: DETR, class_names: list[str], source: str, path: Path | None = None,
                 checkpoint: Checkpoint | None = None, trained: TrainedModel | None = None) -> None:
        self.model = model
        self.class_names = class_names
        self.source = source
        self.path = path
        self.checkpoint = checkpoint
        self.trained = trained  # set when the weights come from a run in this session
        self.unsaved = trained is not None

    @property
    def config(self) -> DETRConfig:
        return self.model.config


class MainWindow(QMainWindow):
    modelChanged = Signal()
    resultShown = Signal()  # a new inference result is on screen
    errorShown = Signal(str)

    def __init__(self, settings: QSettings | None = None, checkpoint: Path | None = BUNDLED_CHECKPOINT,
                 sample_seed: int = 0, runs_folder: Path | None = None) -> None:
        super().__init__()
        self.settings = settings or QSettings("DETR Explorer", "DETR Explorer")
        self.setWindowTitle("DETR Explorer")
        self.setAcceptDrops(True)
        self.loaded: LoadedModel | None = None
        self.image: np.ndarray | None = None
        self.image_name = ""
        self.result: InferenceResult | None = None
        self.selected: int | None = None
        self.encoder_point: tuple[float, float] | None = None
        self._encoder_cache: dict[tuple[float, float], torch.Tensor] = {}
        self._request = 0
        self._showing_preview = False
        self.last_error = ""
        self._error_box: QMessageBox | None = None
        self.toy = ToyShapes(seed=12345, split="explorer")
        self.toy_index = sample_seed
        self.tasks = WorkQueue(self)  # model loading and inference, one at a time, in order
        self.redraw_seconds: list[float] = []

        self.canvas = ImageCanvas()
        self.setCentralWidget(self.canvas)
        self.queries = QueryPanel()
        self.attention = AttentionPanel()
        self.grid = AttentionGrid()
        self.training = TrainingPanel()
        self.queries_dock = self._dock("Queries", self.queries, Qt.DockWidgetArea.RightDockWidgetArea)
        self.attention_dock = self._dock("Attention", self.attention, Qt.DockWidgetArea.RightDockWidgetArea)
        self.grid_dock = self._dock("Attention grid", self.grid, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.training_dock = self._dock("Training", self.training, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.tabifyDockWidget(self.grid_dock, self.training_dock)
        # the analysis views of "Seeing inside"
        self.specialization = SpecializationView()
        self.matching = MatchingView()
        self.layers = LayerView()
        self.counting = CountingView()
        self.runs = RunsView(runs_folder)
        self.views = (self.specialization, self.matching, self.layers, self.counting, self.runs)
        for title, view in (("Query specialization", self.specialization), ("Matching", self.matching),
                            ("Layer by layer", self.layers), ("Counting", self.counting), ("Runs", self.runs)):
            dock = self._dock(title, view, Qt.DockWidgetArea.BottomDockWidgetArea)
            self.tabifyDockWidget(self.grid_dock, dock)
            dock.visibilityChanged.connect(lambda seen, v=view: seen and v.flush_deferred())
            view.errorShown.connect(lambda m: self.statusBar().showMessage(m, 8000))
        for view in (self.specialization, self.matching, self.layers):
            view.querySelected.connect(self.select_query)
        self.training.workerCreated.connect(self.matching.attach)
        self.runs.openCheckpoint.connect(lambda p: self.open_checkpoint(Path(p)))
        self.grid_dock.raise_()
        # the right column (queries, attention controls) runs the full height of the window
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)

        self.canvas.querySelected.connect(self.select_query)
        self.grid.querySelected.connect(self.select_query)
        self.canvas.pointClicked.connect(self._on_point)
        self.queries.changed.connect(self.refresh)
        self.queries.querySelected.connect(self.select_query)
        self.attention.changed.connect(self._on_attention_controls)
        self.attention.opacityChanged.connect(self._on_opacity)
        self.training.trained.connect(self._on_trained)
        self.training.preview.connect(self._on_preview)
        self.training.failed.connect(lambda msg: self.show_error("Training", msg))
        self.training.running.connect(self._on_training_running)
        self.training.status.connect(self._set_activity)

        self._build_menus()
        self._build_status_bar()
        self._restore_settings()

        if checkpoint is not None and Path(checkpoint).exists():
            self.open_checkpoint(Path(checkpoint), remember=False)
        else:
            self._use_untrained_model()
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
        self.queries.set_threshold(float(self.settings.value("threshold", 0.5)))
        cmap = str(self.settings.value("colormap", "inferno"))
        if self.attention.colormap.findText(cmap) >= 0:
            self.attention.colormap.setCurrentText(cmap)
        self.attention.opacity.setValue(int(self.settings.value("opacity", 55)))

    def _default_dock_sizes(self) -> None:
        self.resizeDocks([self.queries_dock, self.attention_dock], [self.height() - 330, 300], Qt.Orientation.Vertical)
        self.resizeDocks([self.grid_dock], [max(320, int(self.height() * 0.42))], Qt.Orientation.Vertical)
        self.resizeDocks([self.queries_dock], [430], Qt.Orientation.Horizontal)

    def _save_settings(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("windowState", self.saveState())
        self.settings.setValue("threshold", self.queries.threshold)
        self.settings.setValue("colormap", self.attention.colormap.currentText())
        self.settings.setValue("opacity", self.attention.opacity.value())
        self.settings.sync()

    # --- messages and status ---------------------------------------------------------------
    def show_error(self, title: str, message: str) -> None:
        """A readable, non-blocking message; the app keeps its state."""
        self.last_error = message
        self.statusBar().showMessage(message, 8000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
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

    def _update_title(self) -> None:
        parts = ["DETR Explorer"]
        if self.loaded is not None:
            name = self.loaded.path.name if self.loaded.path else self.loaded.source
            parts.append(name + (" *" if self.loaded.unsaved else ""))
        if self.image_name:
            parts.append(self.image_name)
        self.setWindowTitle(" — ".join(parts))

    def _update_model_label(self) -> None:
        if self.loaded is None:
            self.model_label.setText("no model")
            return
        s = model_summary(self.loaded.model)
        device = device_summary(next(self.loaded.model.parameters()).device)
        self.model_label.setText(
            f"{s['backbone']} · {s['queries']} queries · {s['classes']} classes · "
            f"{s['parameters'] / 1e6:.2f} M params · {device}")

    # --- models ----------------------------------------------------------------------------
    def _use_untrained_model(self) -> None:
        model_cfg, _ = preset("fast")
        torch.manual_seed(0)
        model = DETR(model_cfg).eval()
        self._set_model(LoadedModel(model, list(ToyShapes().class_names), "untrained model"))
        self.statusBar().showMessage(
            "No bundled checkpoint found: this model is untrained. Train one in the Training panel.", 15000)

    def _set_model(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self._encoder_cache.clear()
        self._update_model_label()
        self._update_title()
        self._update_views(loaded)
        self.modelChanged.emit()
        self.run_inference()

    def _update_views(self, loaded: LoadedModel) -> None:
        """Hand the new model to the analysis views (each runs it off the GUI thread)."""
        tc = loaded.trained.train_config if loaded.trained else (
            loaded.checkpoint.train_config if loaded.checkpoint else None)
        data = tc.data if tc is not None and list(tc.data.classes) == loaded.class_names else None
        self.specialization.set_model(loaded.model, loaded.class_names, data)
        self.counting.set_model(loaded.model, loaded.class_names, data)
        self.layers.set_model(loaded.model, loaded.class_names, data)
        self.matching.set_model(loaded.model, loaded.class_names, tc.loss if tc is not None else None,
                                training_stream(tc) if tc is not None and data is not None else None)

    def open_checkpoint(self, path: Path, remember: bool = True) -> None:
        path = Path(path)
        self._set_busy(f"Loading {path.name}…")

        def load() -> tuple[Checkpoint, DETR]:
            ckpt = load_checkpoint(path)
            return ckpt, ckpt.build_model()

        def done(payload: tuple[Checkpoint, DETR]) -> None:
            ckpt, model = payload
            self._set_busy(None)
            if remember:
                self._remember(path, "checkpoint")
                self.settings.setValue("lastCheckpointDir", str(path.parent))
            self._set_model(LoadedModel(model, ckpt.class_names, ckpt.source, path, ckpt))
            self.statusBar().showMessage(f"Opened {path.name} ({ckpt.source}, {len(ckpt.class_names)} classes)", 6000)

        def failed(message: str) -> None:
            self._set_busy(None)
            if self.loaded is None:
                self._use_untrained_model()
            self.show_error("Cannot open checkpoint", message)

        self.tasks.submit(load, on_result=done, on_error=failed)

    def save_checkpoint(self, path: Path) -> bool:
        if self.loaded is None:
            return False
        loaded = self.loaded
        t = loaded.trained
        try:
            if t is not None:
                save_checkpoint(path, loaded.model, loaded.class_names, None, t.history.to_dict(), t.train_config,
                                t.step, extra={"optimizer_state_saved": False})
            else:
                ckpt = loaded.checkpoint
                save_checkpoint(path, loaded.model, loaded.class_names, None,
                                ckpt.history if ckpt else None, ckpt.train_config if ckpt else None,
                                ckpt.step if ckpt else 0)
        except (OSError, ValueError, RuntimeError) as e:
            self.show_error("Cannot save checkpoint", f"{path}: {e}")
            return False
        loaded.unsaved = False
        loaded.path = Path(path)
        self._remember(Path(path), "checkpoint")
        self.settings.setValue("lastCheckpointDir", str(Path(path).parent))
        self._update_title()
        self.statusBar().showMessage(f"Saved {path}", 6000)
        return True

    def _on_trained(self, trained: TrainedModel) -> None:
        self._set_model(LoadedModel(trained.model, trained.class_names, "trained in this session", None,
                                    trained=trained))
        self.statusBar().showMessage(
            f"Training {trained.reason} at step {trained.step}: the trained model is now in the explorer "
            "(File ▸ Save Checkpoint to keep it).", 10000)

    # --- images ----------------------------------------------------------------------------
    def set_image(self, rgb: np.ndarray, name: str) -> None:
        self.image = rgb
        self.image_name = name
        self.encoder_point = None
        self._encoder_cache.clear()
        self.canvas.set_image(rgb)
        self.canvas.set_marker(None)
        self.training.set_preview_image(rgb)
        self._update_title()
        self.run_inference()

    def new_toy_sample(self) -> None:
        sample = self.toy.sample(self.toy_index)
        self.set_image(sample.image, f"toy sample #{self.toy_index}")
        self.toy_index += 1

    def open_image(self, path: Path) -> None:
        path = Path(path)

        def done(rgb: np.ndarray) -> None:
            self._set_busy(None)
            self._remember(path, "image")
            self.settings.setValue("lastImageDir", str(path.parent))
            self.set_image(rgb, path.name)

        def failed(message: str) -> None:
            self._set_busy(None)
            self.show_error("Cannot open image", message)

        self._set_busy(f"Reading {path.name}…")
        self.tasks.submit(load_image, path, on_result=done, on_error=failed)

    def paste_image(self) -> None:
        clipboard = QApplication.clipboard()
        image = clipboard.image()
        if image.isNull():
            mime = clipboard.mimeData()
            if mime is not None and mime.hasUrls() and mime.urls() and mime.urls()[0].isLocalFile():
                self.open_path(Path(mime.urls()[0].toLocalFile()))
                return
            self.show_error("Paste", "The clipboard holds no image.")
            return
        self.set_image(qimage_to_rgb(image), "pasted image")

    def open_path(self, path: Path) -> None:
        """Open a dropped or recent file: a checkpoint by its suffix, anything else as an image."""
        if path.suffix.lower() in CHECKPOINT_SUFFIXES:
            self.open_checkpoint(path)
        else:
            self.open_image(path)

    # --- inference ---------------------------------------------------------------------------
    def run_inference(self) -> None:
        if self.loaded is None or self.image is None:
            return
        self._request += 1
        request = self._request
        loaded, image = self.loaded, self.image

        def infer() -> InferenceResult:
            return run_inference(loaded.model, image, loaded.class_names, capture=True)

        def done(result: InferenceResult) -> None:
            if request != self._request:
                return  # a newer image or model superseded this one
            self._set_busy(None)
            self._show_result(result, preview=False)

        def failed(message: str) -> None:
            self._set_busy(None)
            self.show_error("Inference failed", message)

        self._set_busy("Running the model…")
        self.tasks.submit(infer, on_result=done, on_error=failed)

    def _on_preview(self, result: InferenceResult) -> None:
        if result.image_size == (self.image.shape[:2] if self.image is not None else None):
            self._show_result(result, preview=True)

    def _show_result(self, result: InferenceResult, preview: bool) -> None:
        same_queries = self.result is not None and self.result.num_queries == result.num_queries
        self.result = result
        self._showing_preview = preview
        self._encoder_cache.clear()
        labels = [result.class_names[int(i)] for i in result.labels]
        self.queries.set_predictions(labels, result.scores.numpy(), result.boxes_xyxy.numpy(), keep_checks=same_queries)
        texts = [f"{q}: {labels[q]} {float(result.scores[q]):.2f}" for q in range(result.num_queries)]
        self.canvas.set_boxes(result.boxes_xyxy.numpy(), texts, [query_color(q) for q in range(result.num_queries)])
        enc_layers = 0 if result.encoder_queries is None else int(result.encoder_queries.shape[0])
        self.attention.set_structure(result.num_layers, enc_layers, result.num_heads)
        if self.selected is None or self.selected >= result.num_queries:
            kept = result.kept(self.queries.threshold)
            self.selected = kept[0] if kept else int(result.scores.argmax())
        self.queries.select(self.selected)
        self.layers.set_result(result, self.image)
        self.refresh()
        self.resultShown.emit()

    # --- drawing from the cached result -------------------------------------------------------
    def refresh(self) -> None:
        """Redraw boxes, heatmap and grid from the cached result (never runs the model)."""
        t0 = time.perf_counter()
        r = self.result
        if r is None:
            return
        shown, dimmed = self.queries.shown_and_dimmed()
        self.canvas.style_boxes(shown, dimmed, self.selected)
        self._draw_heatmap()
        self._draw_grid()
        self.redraw_seconds.append(time.perf_counter() - t0)

    def _draw_heatmap(self) -> None:
        r = self.result
        panel = self.attention
        if r is None or r.cross_attention is None:
            self.canvas.set_heatmap(None)
            return
        opacity = panel.opacity.value() / 100
        cmap = panel.colormap.currentText()
        if panel.mode == MODE_CROSS and self.selected is not None:
            heat = cross_attention_map(r, self.selected, panel.layer_index, panel.head_index, panel.smooth.isChecked())
            self.canvas.set_heatmap(heat, r.grid_extent(), cmap, opacity)
            label = r.class_names[int(r.labels[self.selected])]
            panel.info.setText(f"Query {self.selected} ({label}, {float(r.scores[self.selected]):.2f}): where it "
                               f"reads the image in decoder layer {panel.layer_index + 1}.")
        elif panel.mode == MODE_ENCODER and self.encoder_point is not None:
            maps = self._encoder_maps(self.encoder_point)
            heat = encoder_attention_map(maps, r, panel.layer_index, panel.head_index, panel.smooth.isChecked())
            self.canvas.set_heatmap(heat, r.grid_extent(), cmap, opacity)
            y, x = self.encoder_point
            panel.info.setText(f"Where the encoder token at ({x:.0f}, {y:.0f}) attends in encoder layer "
                               f"{panel.layer_index + 1}. Click elsewhere to move it.")
        else:
            self.canvas.set_heatmap(None)
            if panel.mode == MODE_ENCODER:
                panel.info.setText("Click a point on the image (Shift+click on a box).")

    def _encoder_maps(self, point: tuple[float, float]) -> torch.Tensor:
        assert self.result is not None
        if point not in self._encoder_cache:
            self._encoder_cache[point] = self.result.encoder_attention_at(*point)
        return self._encoder_cache[point]

    def _draw_grid(self) -> None:
        r = self.result
        if not self.grid_dock.isVisible() or r is None:
            return
        panel = self.attention
        kept = [q for q in r.kept(self.queries.threshold) if self.queries.model.checked[q]]
        layer = min(panel.layer_index, r.num_layers - 1) if panel.mode != MODE_ENCODER else r.num_layers - 1
        self.grid.update_grid(r, self.image, kept, layer, panel.head_index, panel.colormap.currentText(),
                              panel.opacity.value() / 100, smooth=panel.smooth.isChecked())

    # --- interaction ---------------------------------------------------------------------------
    def select_query(self, query: int) -> None:
        if self.result is None or not 0 <= query < self.result.num_queries:
            return
        if self.attention.mode != MODE_CROSS:
            self.attention.set_mode(MODE_CROSS)
        self.selected = query
        self.queries.select(query)
        self.specialization.select_query(query)  # these never re-emit querySelected: no loop
        self.matching.set_selected_query(query)
        self.layers.set_selected_query(query)
        self.refresh()

    def _on_point(self, y: float, x: float) -> None:
        self.encoder_point = (y, x)
        self.canvas.set_marker((y, x))
        if self.attention.mode != MODE_ENCODER:
            self.attention.set_mode(MODE_ENCODER)  # emits changed -> redraw
        else:
            self.refresh()

    def _on_attention_controls(self) -> None:
        r = self.result
        if r is not None:
            enc_layers = 0 if r.encoder_queries is None else int(r.encoder_queries.shape[0])
            self.attention.set_structure(r.num_layers, enc_layers, r.num_heads)
        if self.attention.mode != MODE_ENCODER:
            self.canvas.set_marker(None)
        elif self.encoder_point is not None:
            self.canvas.set_marker(self.encoder_point)
        self.refresh()

    def _on_opacity(self, opacity: float) -> None:
        self.canvas.set_opacity(opacity)

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
        name = self.loaded.path.name if self.loaded and self.loaded.path else "trained.pt"
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
        ok = self.canvas.grab().save(str(path), "PNG")
        if not ok:
            self.show_error("Export", f"Could not write {path}")
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
            event.acceptProposedAction()
        elif mime.hasImage():
            self.set_image(qimage_to_rgb(QImage(mime.imageData())), "dropped image")
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
        if self.loaded is not None and self.loaded.unsaved:
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
        self.tasks.wait(30000)
        self._save_settings()
        event.accept()

    def _about(self) -> None:
        QMessageBox.about(self, "About DETR Explorer",
                          "DETR Explorer: see and touch DETR (Carion et al., 2020).\n"
                          "Train a small DETR live, toggle every object query's box, and watch where its "
                          "decoder cross-attention reads the image.")


def default_train_config() -> TrainConfig:
    return preset("fast")[1]


__all__ = ["MainWindow", "BUNDLED_CHECKPOINT", "QTimer"]
