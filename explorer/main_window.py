"""The explorer's main window: the assembly of menus, docks and views around one
:class:`~explorer.state.AppState`. Views read and change the state; the
:class:`~explorer.controller.Controller` loads models and images into it and runs the model off
the GUI thread; the window turns menus, files and messages into calls to them."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QByteArray, QRect, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QImage, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QTabBar,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWhatsThis,
    QWidget,
)

from detr_core.checkpoint import Checkpoint, model_summary
from detr_core.data.images import MAX_SIDE
from detr_core.device import device_summary

from .attention_grid import AttentionGrid
from .attention_panel import AttentionPanel
from .canvas import ImageView
from .closing import CloseGuard
from .controller import Controller
from .gc_policy import GuiThreadCollector
from .help import FIRST_LAUNCH_HINT, QUICK_START, VIEW_HELP
from .lesson import install_lesson
from .model_info import ModelInfoPanel, distribution_warning
from .notice import Notice
from .query_panel import QueryPanel
from .saving import save_png
from .settings import RecentFiles, read_setting
from .stable_label import StableLabel
from .state import AppState, LoadedModel, TrainingSession
from .unsaved import ask_to_save, replace_question
from .wheel_guard import guard_wheel
from .workers import readable_error

if TYPE_CHECKING:
    from .dataset_session import OpenedDataset
    from .training_worker import TrainedModel

# The analysis views, built after the first result is on screen (or when first needed): their
# modules pull in scipy, pycocotools and torchvision, which the first picture does not need and
# which would double the time to it. (attribute, dock title, module, class, in a scroll area)
ANALYSIS_VIEWS = (
    ("specialization", "Query specialization", "explorer.views.specialization", "SpecializationView", True),
    ("matching", "Matching", "explorer.views.matching", "MatchingView", True),
    ("layers", "Layer by layer", "explorer.views.layers", "LayerView", True),
    ("counting", "Counting", "explorer.views.counting", "CountingView", True),
    ("runs", "Runs", "explorer.views.runs", "RunsView", True),
    ("datasets", "Dataset", "explorer.views.datasets", "DatasetBrowser", False),
    ("doctor", "Doctor", "explorer.views.doctor", "DoctorView", True),
    ("deformable", "Deformable attention", "explorer.views.deformable", "DeformableView", True),
)
# what building the views imports, warmed off the GUI thread first
VIEW_IMPORTS = ("torchvision", "scipy.optimize", "pycocotools.coco", "explorer.dataset_views", "explorer.training_panel",
                *(module for _, _, module, _, _ in ANALYSIS_VIEWS))

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CHECKPOINT = ROOT / "checkpoints" / "toy_shapes.pt"
CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt"}
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.gif *.tif *.tiff);;All files (*)"
CHECKPOINT_FILTER = ("Checkpoints (*.pt *.pth *.ckpt *.safetensors *.bin config.json);;"
                     "Hugging Face DETR (config.json *.safetensors *.bin);;All files (*)")
DEFAULT_SIZE = QSize(1400, 900)  # on screens with room for it
MIN_SIZE = QSize(800, 560)  # every dock stays usable down to a 1024x700 screen
SETTINGS_VERSION = 2  # a saved dock layout from another version of the window is not restored


def window_geometry(available: QRect, preferred: QSize = DEFAULT_SIZE) -> QRect:
    """The window's first geometry (client area, logical pixels) on a screen whose available
    geometry (without task bars) is ``available``: the preferred size where it fits, else the
    available size less room for the window frame, centred."""
    frame_w, frame_h = 16, 40  # the window manager's border and title bar
    w = max(min(preferred.width(), available.width() - frame_w), min(MIN_SIZE.width(), available.width()))
    h = max(min(preferred.height(), available.height() - frame_h), min(MIN_SIZE.height(), available.height()))
    title = frame_h - 8  # the title bar sits above the client area
    x = available.x() + (available.width() - w) // 2
    y = available.y() + title + max((available.height() - title - h) // 2, 0)
    if y + h > available.y() + available.height():
        y = available.y()
    return QRect(x, y, w, h)


def fits_inside(geometry: QRect, available: QRect) -> bool:
    return available.contains(geometry)


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
    viewsImported = Signal()  # emitted by the import thread of warm_up_views
    viewsBuilt = Signal()

    def __init__(self, settings: QSettings | None = None, checkpoint: Path | None = BUNDLED_CHECKPOINT,
                 sample_seed: int = 0, runs_folder: Path | None = None) -> None:
        super().__init__()
        # cyclic garbage is collected on this (the GUI) thread only, while the window is open:
        # never Qt objects destroyed by a worker thread's allocation (see gc_policy)
        self._collector = GuiThreadCollector(self)
        self.settings = settings or QSettings("DETR Explorer", "DETR Explorer")
        self.recent = RecentFiles(self.settings)
        self.setWindowTitle("DETR Explorer")
        self.setAcceptDrops(True)
        self.last_error = ""
        self._error_box: QMessageBox | None = None
        self.state = AppState(self)
        self.controller = Controller(self.state, self)
        self.controller.toy_index = sample_seed

        # the image (with the first-launch hint and the training-data warning above it), the query
        # table, the attention controls and grid, training
        self.canvas = ImageView(self.state)
        self.canvas.setMinimumHeight(180)
        self.canvas.setWhatsThis(VIEW_HELP["Image"])
        self.setCentralWidget(self._build_centre())
        self.notice = Notice(self.centralWidget())
        self.queries = QueryPanel(self.state)
        self.attention = AttentionPanel(self.state)
        self.grid = AttentionGrid(self.state)
        self.queries_dock = self._dock("Queries", self.queries, Qt.DockWidgetArea.RightDockWidgetArea)
        self.attention_dock = self._dock("Attention", self.attention, Qt.DockWidgetArea.RightDockWidgetArea)
        # (the grid lays its cells out to the dock's size: it does not scroll)
        self.grid_dock = self._dock("Attention grid", self.grid, Qt.DockWidgetArea.BottomDockWidgetArea, scroll=False)
        # the training panel and the analysis views of "Seeing inside": their docks (tabs) now,
        # the panels themselves once the first result is on screen (see build_views)
        self._runs_folder = runs_folder
        self._views_built = False
        self._view_docks: dict[str, QDockWidget] = {}
        for attr, title, *_ in (("training", "Training"), *ANALYSIS_VIEWS):
            placeholder = QLabel("Loading…")
            placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
            dock = QDockWidget(title, self)
            dock.setObjectName(title.replace(" ", "_"))
            dock.setWidget(placeholder)
            self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
            self.tabifyDockWidget(self.grid_dock, dock)
            dock.visibilityChanged.connect(self._on_view_dock_shown)
            self._view_docks[attr] = dock
        self.training_dock = self._view_docks["training"]
        self.datasets_dock = self._view_docks["datasets"]
        self.doctor_dock = self._view_docks["doctor"]
        self.deformable_dock = self._view_docks["deformable"]
        # what the model is, and what its file did not say (a weights-only file's head count)
        self.model_info = ModelInfoPanel(self.state)
        self.model_info_dock = self._dock("Model", self.model_info, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.attention_dock, self.model_info_dock)
        self.attention_dock.raise_()
        self.model_info.reopenRequested.connect(self.reopen_with)
        self.grid_dock.raise_()
        # the right column (queries, attention controls) runs the full height of the window
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self._previous_model: LoadedModel | None = None  # what Stop replaced, to go back to
        self._back_from: LoadedModel | None = None  # the model "Back to" would replace

        self.state.modelChanged.connect(self._update_model_label)
        self.state.modelChanged.connect(self._forget_back_to)
        self.state.modelChanged.connect(self._update_warning)
        self.state.imageChanged.connect(self._update_warning)
        for signal in (self.state.modelChanged, self.state.modelSaved, self.state.imageChanged):
            signal.connect(self._update_title)
        self.controller.busy.connect(self._set_busy)
        self.controller.failed.connect(self.show_error)
        self.controller.confirm_replace = self._confirm_replace
        self.close_guard = CloseGuard(self)

        self._build_menus()
        self._build_status_bar()
        self.lesson = install_lesson(self)  # View > Lesson, presentation mode, File > Export Lesson
        self._default_layout = self.saveState(SETTINGS_VERSION)
        self._restore_settings()
        guard_wheel(self)

        if checkpoint is not None and Path(checkpoint).exists():
            self.open_checkpoint(Path(checkpoint), remember=False)
        else:
            self.controller.use_untrained_model()
            self.notify("No bundled checkpoint found: this model is untrained. Train one in the Training tab.",
                        msecs=15000)
        self.new_toy_sample()

    # --- construction --------------------------------------------------------------------
    def __getattr__(self, name: str):  # noqa: ANN204
        """An analysis view (``window.matching`` ...) asked for before it was built builds them all."""
        if name in {"views", "dataset_views", "training"} | {attr for attr, *_ in ANALYSIS_VIEWS} and not self.__dict__.get("_views_built", True):
            self.build_views()
            return getattr(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def build_views(self) -> None:
        """Build the analysis views into their docks (once). Imports their modules on first call."""
        if self._views_built:
            return
        self._views_built = True
        with self.state.replaying_to_new_listeners():
            self._build_views()
        self.viewsBuilt.emit()

    def _build_views(self) -> None:
        from .training_panel import TrainingPanel

        # the training panel runs its own worker; the state gets its session, model and previews
        self.training = TrainingPanel()
        self._view_docks["training"].widget().deleteLater()
        self._view_docks["training"].setWidget(self._scrolled(self.training))
        self.training.setWhatsThis(VIEW_HELP.get("Training", ""))
        self.training.workerCreated.connect(lambda worker: self.state.set_training(TrainingSession(worker)))
        self.training.confirm_start = lambda: self.controller.may_replace_model("The new training run's model")
        self.training.trained.connect(self._on_trained)
        self.training.preview.connect(self.controller.accept_preview)
        self.training.failed.connect(lambda msg: self.show_error("Training", msg))
        self.training.running.connect(self._on_training_running)
        self.training.status.connect(self._set_activity)
        self.state.imageChanged.connect(lambda image: self.training.set_preview_image(image, self.state.image_id))
        self.state.datasetChanged.connect(self.training.set_dataset)
        self.state.modelChanged.connect(self.training.set_open_model)

        views = {}
        for attr, title, module, cls, scroll in ANALYSIS_VIEWS:
            view_class = getattr(importlib.import_module(module), cls)
            if attr == "runs":
                view = view_class(self._runs_folder)
            elif attr == "datasets":
                view = view_class(self.state, settings=self.settings)
            elif attr == "deformable":  # beside a dense model's heatmap: the bundled one by default
                view = view_class(self.state, BUNDLED_CHECKPOINT)
            else:
                view = view_class(self.state)
            views[attr] = view
            setattr(self, attr, view)
            dock = self._view_docks[attr]
            old = dock.widget()
            dock.setWidget(self._scrolled(view) if scroll else view)
            old.deleteLater()
            if title in VIEW_HELP:
                view.setWhatsThis(VIEW_HELP[title])
            view.errorShown.connect(self.notify)
            view.add_help(title)
            if attr != "doctor":
                dock.visibilityChanged.connect(lambda seen, v=view: seen and v.flush_deferred())
        self.views = tuple(views[a] for a in ("specialization", "matching", "layers", "counting", "runs", "datasets",
                                               "deformable"))
        self.deformable.openRequested.connect(lambda: self.choose_checkpoint())
        self.deformable.trainRequested.connect(self._train_deformable)
        self.runs.openCheckpoint.connect(lambda p: self.open_checkpoint(Path(p)))
        self.datasets.showImage.connect(lambda rgb, name: self.state.set_image(rgb, name))
        from .dataset_views import DatasetViews

        self.dataset_views = DatasetViews(self.state, {
            "Query specialization": self.specialization, "Matching": self.matching,
            "Layer by layer": self.layers, "Counting": self.counting})
        for dock in self._view_docks.values():
            guard_wheel(dock.widget())
        self.unelide_tabs()

    def unelide_tabs(self) -> None:
        """Dock tabs keep their whole titles and scroll when they do not fit (elided to "Trai…",
        "R…", eleven of them were unreadable on a 1366-pixel screen)."""
        for bar in self.findChildren(QTabBar):
            bar.setElideMode(Qt.TextElideMode.ElideNone)
            bar.setUsesScrollButtons(True)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        self.unelide_tabs()

    def _on_view_dock_shown(self, seen: bool) -> None:
        # a view's tab brought up before the views were built: build them now (after the first
        # result, so a tab remembered from the last session does not delay the first picture)
        if seen and not self._views_built and self.state.result is not None:
            QTimer.singleShot(0, self.build_views)

    def warm_up_views(self) -> None:
        """Import the analysis views' modules off the GUI thread, then build the views on it.
        Called once the first result is on screen; the window stays usable meanwhile."""
        if self._views_built or getattr(self, "_warming", False):
            return
        self._warming = True

        def imports() -> None:
            for module in VIEW_IMPORTS:
                try:
                    importlib.import_module(module)
                except ImportError:
                    pass  # build_views raises it on the GUI thread, where it is reported
            self.viewsImported.emit()

        self.viewsImported.connect(self.build_views, type=Qt.ConnectionType.QueuedConnection)
        self._import_thread = threading.Thread(target=imports, name="import views", daemon=True)
        self._import_thread.start()

    def _scrolled(self, widget: QWidget) -> QScrollArea:
        area_widget = QScrollArea()
        area_widget.setWidget(widget)
        area_widget.setWidgetResizable(True)
        area_widget.setFrameShape(QFrame.Shape.NoFrame)
        return area_widget

    def _dock(self, title: str, widget, area, scroll: bool = True) -> QDockWidget:  # noqa: ANN001
        """A dock holding ``widget`` in a scroll area: a dock narrower or shorter than the widget's
        minimum size scrolls instead of pushing the window off the screen."""
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_"))
        if scroll:
            dock.setWidget(self._scrolled(widget))
        else:
            dock.setWidget(widget)
        if title in VIEW_HELP:
            widget.setWhatsThis(VIEW_HELP[title])
        self.addDockWidget(area, dock)
        return dock

    def dock_of(self, widget: QWidget) -> QDockWidget:
        """The dock that holds ``widget``."""
        parent = widget.parentWidget()
        while not isinstance(parent, QDockWidget):
            parent = parent.parentWidget()
        return parent

    def _build_centre(self) -> QWidget:
        """The image view under two banners: the first-launch hint (until dismissed) and the
        warning that the image is far from the model's training data."""
        self.hint = QFrame()
        self.hint.setObjectName("first_launch_hint")
        self.hint.setStyleSheet("#first_launch_hint { background: #1e3a5f; } #first_launch_hint QLabel { color: #e8f0fe; }")
        self.hint_label = QLabel(FIRST_LAUNCH_HINT)
        self.hint_label.setWordWrap(True)
        self.hint_close = QToolButton()
        self.hint_close.setText("Got it ✕")
        self.hint_close.setToolTip("Hide this hint for good (Help ▸ Quick Start has it all)")
        self.hint_close.clicked.connect(self.dismiss_hint)
        row = QHBoxLayout(self.hint)
        row.setContentsMargins(8, 4, 4, 4)
        row.addWidget(self.hint_label, 1)
        row.addWidget(self.hint_close)
        self.hint.setVisible(not self._settings_bool("hintDismissed"))
        self.warning = QLabel("")
        self.warning.setObjectName("distribution_warning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("#distribution_warning { background: #5c3b00; color: #ffe8b3; padding: 4px 8px; }")
        self.warning.setVisible(False)
        centre = QWidget()
        layout = QVBoxLayout(centre)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.hint)
        layout.addWidget(self.warning)
        layout.addWidget(self.canvas, 1)
        return centre

    def _settings_bool(self, key: str) -> bool:
        return read_setting(self.settings, key, False)

    def dismiss_hint(self) -> None:
        """Hide the first-launch hint; it does not come back."""
        self.hint.setVisible(False)
        self.settings.setValue("hintDismissed", True)
        self.settings.sync()

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
        self.act_open_dataset = self._action("Open &Dataset…", self.choose_dataset, "Ctrl+D",
                                             "Open a COCO folder, a VOC devkit or a YOLO folder")
        self.act_open_coco_json = self._action("Open COCO &Annotations…", self.choose_coco_annotations, None,
                                               "Open a COCO annotation .json (images in the folder it names)")
        self.act_save_ckpt = self._action("&Save Checkpoint…", self.choose_save_checkpoint,
                                          QKeySequence.StandardKey.Save, "Save the current model")
        self.act_export = self._action("&Export View as PNG…", self.choose_export, "Ctrl+E",
                                       "Save what the image view shows")
        self.act_export_model = self._action("Export &Model…", self.choose_export_model, None,
                                             "Write the model for facebookresearch/detr or Hugging Face transformers")
        self.recent_menu = file.addMenu("Open &Recent")
        self.act_quit = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        for a in (self.act_open_image, self.act_paste, self.act_sample, self.act_open_dataset,
                  self.act_open_coco_json):
            file.addAction(a)
        file.addSeparator()
        file.addAction(self.act_open_ckpt)
        file.addAction(self.act_save_ckpt)
        file.addAction(self.act_export_model)
        file.addMenu(self.recent_menu)
        file.addSeparator()
        file.addAction(self.act_export)
        file.addSeparator()
        file.addAction(self.act_quit)
        train = bar.addMenu("&Train")
        self.act_train_start = self._action("&Start Training", lambda: self.training.start(), "Ctrl+Return",
                                            "Train a new model with the Training tab's settings")
        self.act_train_pause = self._action("&Pause / Resume", lambda: self.training.toggle_pause(), "Ctrl+P")
        self.act_train_step = self._action("One S&tep", lambda: self.training.step_once(), "Ctrl+Shift+Return",
                                           "One training step, then pause")
        self.act_train_stop = self._action("St&op Training", lambda: self.training.stop(), "Ctrl+.",
                                           "Stop; the trained model replaces the one shown (you can go back)")
        for a in (self.act_train_start, self.act_train_pause, self.act_train_step, self.act_train_stop):
            train.addAction(a)
        data = bar.addMenu("&Data")
        self.act_check_dataset = self._action("&Check Dataset", self._check_dataset, None,
                                              "Check the Doctor tab's dataset for what makes DETR learn nothing")
        data.addAction(self.act_check_dataset)
        view = bar.addMenu("&View")
        self.act_fit = self._action("&Fit Image", lambda: self.canvas.fit(), "Ctrl+0",
                                    "Show the whole image (also: double-click it)")
        self.act_reset_layout = self._action("&Reset Layout", lambda: self.reset_layout(), None,
                                             "Put every panel back where it was at first launch")
        view.addAction(self.act_fit)
        view.addAction(self.act_reset_layout)
        view.addSeparator()
        for dock in self.findChildren(QDockWidget):
            view.addAction(dock.toggleViewAction())
        self.view_menu = view
        help_menu = bar.addMenu("&Help")
        self.act_quick_start = self._action("&Quick Start", lambda: self.show_quick_start(), QKeySequence.StandardKey.HelpContents)
        self.act_shortcuts = self._action("&Keyboard Shortcuts", lambda: self.show_shortcuts(), "Ctrl+/")
        self.act_whats_this = QWhatsThis.createAction(self)
        self.act_whats_this.setText("&What Am I Looking At?")
        self.act_whats_this.setShortcut(QKeySequence("Shift+F1"))
        self.act_show_hint = self._action("Show the &Start Hint", lambda: self.show_hint())
        for a in (self.act_quick_start, self.act_shortcuts, self.act_whats_this, self.act_show_hint):
            help_menu.addAction(a)
        help_menu.addSeparator()
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

    def available_geometry(self) -> QRect:
        screen = self.screen() or QApplication.primaryScreen()
        return screen.availableGeometry() if screen is not None else QRect(0, 0, 1400, 900)

    def fit_to_screen(self, available: QRect | None = None) -> None:
        """Open at a size that fits the screen's available geometry (see :func:`window_geometry`)."""
        self.setGeometry(window_geometry(available or self.available_geometry()))

    def _restore_settings(self) -> None:
        self.setMinimumSize(MIN_SIZE)
        # the last size and place, if they still fit this screen; else the size that fits it
        available = self.available_geometry()
        saved = read_setting(self.settings, "windowRect", None, kind=QRect)
        if isinstance(saved, QRect) and saved.width() <= available.width() and saved.height() <= available.height() \
                and available.intersects(saved):
            x = min(max(saved.x(), available.x()), available.right() + 1 - saved.width())
            y = min(max(saved.y(), available.y()), available.bottom() + 1 - saved.height())
            self.setGeometry(QRect(x, y, saved.width(), saved.height()))
        else:
            self.fit_to_screen(available)
        if self._settings_bool("maximized"):
            self.setWindowState(self.windowState() | Qt.WindowState.WindowMaximized)
        state = read_setting(self.settings, "windowState", None, kind=QByteArray)
        if not (isinstance(state, QByteArray) and self.restoreState(state, SETTINGS_VERSION)):
            QTimer.singleShot(0, self._default_dock_sizes)  # once the window has its real size
        threshold = read_setting(self.settings, "threshold", 0.5, valid=lambda t: 0 <= t <= 1,
                                 expect="a number from 0 to 1")
        self.state.set_threshold(round(threshold, 2))
        cmap = read_setting(self.settings, "colormap", self.state.heatmap_style.colormap,
                            valid=lambda c: self.attention.colormap.findText(c) >= 0, expect="a colormap's name")
        opacity = read_setting(self.settings, "opacity", 55, valid=lambda o: 0 <= o <= 100,
                               expect="a whole number from 0 to 100")
        self.state.set_heatmap_style(colormap=cmap, opacity=opacity / 100)

    def _default_dock_sizes(self) -> None:
        """The right column a third of the width at most; the tabs under the image about a third
        of the height, so the image keeps the larger share."""
        h, w = self.height(), self.width()
        self.resizeDocks([self.queries_dock, self.attention_dock], [max(h - 360, 200), 330], Qt.Orientation.Vertical)
        self.resizeDocks([self.grid_dock], [max(190, int(h * 0.36))], Qt.Orientation.Vertical)
        self.resizeDocks([self.queries_dock], [min(430, max(340, w // 3))], Qt.Orientation.Horizontal)

    def reset_layout(self) -> None:
        """Every dock back in its place and shown, default sizes, the window fitted to the screen."""
        self.restoreState(self._default_layout, SETTINGS_VERSION)
        for dock in self.findChildren(QDockWidget):
            dock.setFloating(False)
            dock.show()
        self.grid_dock.raise_()
        if self.isMaximized() or self.isFullScreen():
            self.showNormal()
        self.fit_to_screen()
        QTimer.singleShot(0, self._default_dock_sizes)
        self.notify("Layout reset: every panel is back in its place.")

    def _save_settings(self) -> None:
        maximized = self.isMaximized() or self.isFullScreen()
        self.settings.setValue("maximized", maximized)
        if not maximized:
            self.settings.setValue("windowRect", self.geometry())
        self.settings.setValue("windowState", self.saveState(SETTINGS_VERSION))
        style = self.state.heatmap_style
        self.settings.setValue("threshold", self.state.threshold)
        self.settings.setValue("colormap", style.colormap)
        self.settings.setValue("opacity", round(style.opacity * 100))
        self.settings.sync()
        self.recent.store()  # this window's files, merged into what other windows stored

    # --- help --------------------------------------------------------------------------------
    def show_quick_start(self) -> QMessageBox:
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Quick start", QUICK_START, QMessageBox.StandardButton.Close, self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return box

    def shortcuts(self) -> list[tuple[str, str]]:
        """(action, keys) for every menu action with a shortcut."""
        rows = []
        for menu_action in self.menuBar().actions():
            menu = menu_action.menu()
            for a in menu.actions() if menu is not None else []:
                if not a.shortcut().isEmpty():
                    rows.append((a.text().replace("&", ""),
                                 a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)))
        rows += [("Zoom the image around the cursor", "mouse wheel"), ("Fit the image", "double-click"),
                 ("Encoder attention of a point inside a box", "Shift+click")]
        return rows

    def show_shortcuts(self) -> QMessageBox:
        rows = "".join(f"<tr><td>{name}</td><td>&nbsp;&nbsp;<b>{keys}</b></td></tr>" for name, keys in self.shortcuts())
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts", f"<table>{rows}</table>",
                          QMessageBox.StandardButton.Close, self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return box

    def show_hint(self) -> None:
        self.hint.setVisible(True)
        self.settings.setValue("hintDismissed", False)

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

    def notify(self, text: str, action_text: str = "", action=None, msecs: int | None = None) -> None:  # noqa: ANN001
        """Say what happened where the eye is: a notice over the image for a few seconds."""
        self.notice.show_message(text, action_text, action, msecs)

    def _update_warning(self, *_: object) -> None:
        text = distribution_warning(self.state.model, self.state.image)
        self.warning.setText(text)
        self.warning.setVisible(bool(text))

    def _set_activity(self, text: str) -> None:
        self.activity.setText(text)

    def _set_busy(self, text: str | None) -> None:
        self.busy.setVisible(text is not None)
        if text is not None:
            self.activity.setText(text)
        elif not self.training_running:
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
        assumed = "".join(f" The file does not say its {k}: assumed {v} ("
                          f"{'set it in the Model panel or ' if k == 'nheads' else ''}main.py --set {k}=… changes it)."
                          for k, v in ckpt.assumptions.items())
        self.notify(f"Opened {path.name}: {len(ckpt.class_names)} classes ({ckpt.source}).{assumed}")
        if "nheads" in ckpt.assumptions:  # the Model panel says so and sets it
            self.model_info_dock.show()
            self.model_info_dock.raise_()

    def reopen_with(self, settings: dict) -> bool:
        """Reopen the model's checkpoint with ``settings`` (e.g. the head count the file lacked)."""
        said = ", ".join(f"{k} = {v}" for k, v in settings.items())
        return self.controller.reopen_with(
            settings, on_opened=lambda ckpt: self.notify(f"Reopened the model with {said}."))

    EXPORT_FORMATS = {"Official DETR (.pth, facebookresearch/detr)": "reference",
                      "Hugging Face folder (save_pretrained)": "hf"}

    def choose_export_model(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        if self.state.model is None:
            return
        label, ok = QInputDialog.getItem(self, "Export model", "Format:", list(self.EXPORT_FORMATS), 0, False)
        if not ok:
            return
        fmt = self.EXPORT_FORMATS[label]
        start = read_setting(self.settings, "lastCheckpointDir", str(ROOT / "checkpoints"))
        if fmt == "hf":
            path = QFileDialog.getExistingDirectory(self, "Export to folder", start)
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export model", start, "DETR (*.pth)")
        if path:
            self.export_model(fmt, Path(path))

    def export_model(self, fmt: str, path: Path) -> bool:
        try:
            out = self.controller.export_model(fmt, path)
        except (OSError, ValueError, RuntimeError) as e:
            self.show_error("Cannot export model", str(e))
            return False
        self.notify(f"Exported the model to {out}.")
        return True

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
        self.notify(f"Saved the model to {path}.")
        return True

    def _on_trained(self, trained: TrainedModel) -> None:
        """A run ended: its model replaces the one shown, and a notice offers to go back."""
        previous = self.state.model
        self.controller.use_trained(trained)
        self._previous_model, self._back_from = previous, self.state.model
        back = None if previous is None else self.back_to_previous_model
        name = "" if previous is None else (previous.path.name if previous.path else previous.source)
        self.notify(f"Training {trained.reason} at step {trained.step}: the explorer now shows the trained "
                    "model (not saved yet: File ▸ Save Checkpoint).",
                    f"Back to {name}" if back else "", back)

    def back_to_previous_model(self) -> None:
        """Show the model the last training run replaced (the trained one can come back)."""
        previous, current = self._previous_model, self.state.model
        if previous is None:
            return
        name = previous.path.name if previous.path else previous.source
        if not self.controller.set_model(previous, f"Going back to {name}"):
            return  # the unsaved trained model stays
        self._previous_model, self._back_from = current, previous
        self.notify(f"Back to {name}.", "Use the trained model again", self.back_to_previous_model)

    def _confirm_replace(self, loaded: LoadedModel, replacing: str) -> bool:
        """The controller's guard: Save / Discard / Cancel before unsaved trained weights go."""
        return ask_to_save(self, replace_question(loaded, replacing), self.choose_save_checkpoint)

    def _forget_back_to(self, loaded: LoadedModel | None) -> None:
        """Another model was opened: "Back to" no longer applies, and keeps no model alive."""
        if loaded is not self._back_from and loaded is not self._previous_model:
            self._previous_model = self._back_from = None

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
        """Open a dropped or recent file: a checkpoint by its suffix (or a Hugging Face folder or
        file), a folder or .json as a dataset, anything else as an image."""
        from detr_core.formats.hf import is_hf_checkpoint

        if path.suffix.lower() in CHECKPOINT_SUFFIXES or is_hf_checkpoint(path):
            self.open_checkpoint(path)
        elif self._looks_like_dataset(path):
            self.open_dataset(path)
        else:
            self.open_image(path)

    @staticmethod
    def _looks_like_dataset(path: Path) -> bool:
        from .dataset_session import looks_like_dataset

        return looks_like_dataset(path)

    def open_dataset(self, path: Path) -> bool:
        """Open a dataset off the GUI thread; the browser shows it. A dataset that fails to open
        leaves the open one (and everything else) as it was."""
        if not self.controller.open_dataset(Path(path), on_opened=self._on_dataset_opened):
            self.notify("Another dataset is still opening.")
            return False
        return True

    def _on_dataset_opened(self, opened: OpenedDataset) -> None:
        self._remember(opened.path, "dataset")
        self.settings.setValue("lastDatasetDir", str(opened.path.parent))
        self.datasets_dock.raise_()
        if self.datasets_dock.height() < self.height() * 0.45:  # room for the two pictures
            self.resizeDocks([self.datasets_dock], [int(self.height() * 0.5)], Qt.Orientation.Vertical)
        self.notify(f"Opened the dataset {opened.short()}.")
        if opened.problems or opened.failed:
            box = QMessageBox(QMessageBox.Icon.Information, "Dataset opened; some of it was skipped",
                              f"{opened.name} opened with what could be used. Left out, and why:",
                              QMessageBox.StandardButton.Ok, self)
            box.setInformativeText(opened.summary)
            box.setWindowModality(Qt.WindowModality.WindowModal)
            box.open()
            self.dataset_box = box

    def _on_training_running(self, running: bool) -> None:
        self.act_open_ckpt.setEnabled(not running)
        if not running:
            self.controller.training_ended()  # a killed run's last live result does not stay
        else:
            self.training_dock.raise_()
            if self.training_dock.height() < self.height() * 0.4:  # room for the live plots
                self.resizeDocks([self.training_dock], [int(self.height() * 0.45)], Qt.Orientation.Vertical)

    # --- files -------------------------------------------------------------------------------
    def choose_image(self) -> None:
        start = read_setting(self.settings, "lastImageDir", str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self, "Open image", start, IMAGE_FILTER)
        if path:
            self.open_image(Path(path))

    def choose_dataset(self) -> None:
        start = read_setting(self.settings, "lastDatasetDir", str(Path.home()))
        path = QFileDialog.getExistingDirectory(self, "Open dataset: a COCO folder, a VOC devkit or a YOLO folder",
                                                start)
        if path:
            self.open_dataset(Path(path))

    def choose_coco_annotations(self) -> None:
        start = read_setting(self.settings, "lastDatasetDir", str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self, "Open COCO annotations", start,
                                              "COCO annotations (*.json);;All files (*)")
        if path:
            self.open_dataset(Path(path))

    def choose_checkpoint(self) -> None:
        start = read_setting(self.settings, "lastCheckpointDir", str(ROOT / "checkpoints"))
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", start, CHECKPOINT_FILTER)
        if path:
            self.open_checkpoint(Path(path))

    def choose_save_checkpoint(self) -> bool:
        start = Path(read_setting(self.settings, "lastCheckpointDir", str(Path.home())))
        loaded = self.state.model
        name = loaded.path.name if loaded and loaded.path else "trained.pt"
        path, _ = QFileDialog.getSaveFileName(self, "Save checkpoint", str(start / name), CHECKPOINT_FILTER)
        if not path:
            return False
        return self.save_checkpoint(Path(path))

    def choose_export(self) -> None:
        start = Path(read_setting(self.settings, "lastImageDir", str(Path.home())))
        path, _ = QFileDialog.getSaveFileName(self, "Export view", str(start / "detr_view.png"), "PNG (*.png)")
        if path:
            self.export_png(Path(path))

    def export_png(self, path: Path) -> bool:
        try:  # a temporary file renamed into place: a failure keeps the old file, and says why
            save_png(path, self.canvas.grab())
        except OSError as e:
            self.show_error("Export", readable_error(e, str(path)))
            return False
        self.notify(f"Exported the image view to {path}.")
        return True

    def _remember(self, path: Path, kind: str) -> None:
        self.recent.add(path)  # merged with what other windows stored meanwhile
        self._rebuild_recent()

    def recent_files(self) -> list[str]:
        return self.recent.entries()

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
    def _train_deformable(self) -> None:
        """The training panel with the deformable preset, in front (the user presses Start)."""
        self.training.preset.setCurrentText("deformable")
        self.training_dock.show()
        self.training_dock.raise_()

    def _check_dataset(self) -> None:
        self.doctor_dock.show()
        self.doctor_dock.raise_()
        self.doctor.check()

    def add_view(self, title: str, widget, area=Qt.DockWidgetArea.BottomDockWidgetArea) -> QDockWidget:  # noqa: ANN001
        """Add an analysis view as a dock, tabbed with the attention grid and training panel."""
        dock = self._dock(title, widget, area)
        self.tabifyDockWidget(self.grid_dock, dock)
        self.view_menu.addAction(dock.toggleViewAction())
        return dock

    # --- closing -------------------------------------------------------------------------------
    @property
    def training_running(self) -> bool:
        return self._views_built and self.training.is_running

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.close_guard.may_close():  # asks; waits for runs to stop, then closes again
            event.ignore()
            return
        if self._views_built:
            self.runs.stop_keeping_queue()  # (has ended: may_close waited for it)
            self.matching.shutdown()
            self.layers.shutdown()
            for view in self.views:
                view.cancel_job()
                view.wait_job(10000)
        self.lesson.shutdown()
        self.controller.shutdown(30000)
        self._save_settings()
        self._collector.stop()  # the last window closed gives automatic collection back
        event.accept()

    def _about(self) -> None:
        QMessageBox.about(self, "About DETR Explorer",
                          "DETR Explorer: see and touch DETR (Carion et al., 2020).\n"
                          "Train a small DETR live, toggle every object query's box, and watch where its "
                          "decoder cross-attention reads the image.")


__all__ = ["MainWindow", "BUNDLED_CHECKPOINT", "QTimer"]
