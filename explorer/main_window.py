"""The explorer's main window: the assembly of panels, workspaces and menus around one
:class:`~explorer.state.AppState`.

Views read and change the state; the :class:`~explorer.controller.Controller` loads models and
images into it and runs the model off the GUI thread. The window puts the panels in docks
(the analysis views built lazily by :class:`~explorer.view_registry.ViewRegistry`), arranges
them by task (:mod:`explorer.workspaces`), and turns menus (:mod:`explorer.menus`) and files
(:mod:`explorer.file_commands`) into calls to them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QShowEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from detr_core.checkpoint import model_summary
from detr_core.device import device_summary

from .attention_grid import AttentionGrid
from .attention_panel import AttentionPanel
from .canvas import ImageView
from .closing import CloseGuard
from .controller import Controller, model_name
from .file_commands import BUNDLED_CHECKPOINT, COMMANDS, FileCommands, qimage_to_rgb
from .gc_policy import GuiThreadCollector
from .help import FIRST_LAUNCH_HINT, VIEW_HELP
from .lesson import Lesson
from .menus import build_menus, shortcut_rows, show_quick_start, show_shortcuts
from .model_info import ModelInfoPanel, distribution_warning
from .notice import Notice
from .query_panel import QueryPanel
from .screen_fit import available_geometry, restore_geometry, save_geometry, window_geometry
from .settings import read_setting
from .stable_label import StableLabel
from .state import AppState, LoadedModel
from .unsaved import ask_to_save, replace_question
from .view_registry import LAZY_NAMES, ViewRegistry, scrolled
from .wheel_guard import guard_wheel
from .workspaces import Workspaces

if TYPE_CHECKING:
    from .training_worker import TrainedModel


class MainWindow(QMainWindow):
    errorShown = Signal(str)
    viewsBuilt = Signal()

    def __init__(self, settings: QSettings | None = None, checkpoint: Path | None = BUNDLED_CHECKPOINT,
                 sample_seed: int = 0, runs_folder: Path | None = None) -> None:
        super().__init__()
        # cyclic garbage is collected on this (the GUI) thread only, while the window is open:
        # never Qt objects destroyed by a worker thread's allocation (see gc_policy)
        self._collector = GuiThreadCollector(self)
        self.settings = settings or QSettings("DETR Explorer", "DETR Explorer")
        self.setWindowTitle("DETR Explorer")
        self.setAcceptDrops(True)
        self.last_error = ""
        self._error_box: QMessageBox | None = None
        self.state = AppState(self)
        self.controller = Controller(self.state, self)
        self.controller.toy_index = sample_seed
        self.controller.confirm_replace = lambda loaded, replacing: ask_to_save(
            self, replace_question(loaded, replacing), self.files.choose_save_checkpoint)
        self.files = FileCommands(self)
        for name in COMMANDS:  # window.open_checkpoint(...) and the rest, as menus and views call them
            setattr(self, name, getattr(self.files, name))

        # the image (under the first-launch hint and the training-data warning): the central widget
        self.canvas = ImageView(self.state)
        self.canvas.setMinimumHeight(180)
        self.canvas.setWhatsThis(VIEW_HELP["Image"])
        self.setCentralWidget(self._build_centre())
        self.notice = Notice(self.centralWidget())
        # the panels about the image: made now (the first picture needs them)
        self.queries = QueryPanel(self.state)
        self.attention = AttentionPanel(self.state)
        self.grid = AttentionGrid(self.state)
        self.model_info = ModelInfoPanel(self.state)
        self.model_info.reopenRequested.connect(self.reopen_with)
        self.queries_dock = self._dock("Queries", scrolled(self.queries), self.queries)
        self.attention_dock = self._dock("Attention", scrolled(self.attention), self.attention)
        self.model_info_dock = self._dock("Model", scrolled(self.model_info), self.model_info)
        self.grid_dock = self._dock("Attention grid", self.grid, self.grid)  # lays its cells out to its size
        # the training panel and analysis views: their docks now, the panels after the first picture
        self.registry = ViewRegistry(self, runs_folder, BUNDLED_CHECKPOINT)
        self.registry.built.connect(self.viewsBuilt)
        self.lesson = Lesson(self)  # its dock (the lesson built on demand), presentation mode
        self.docks: dict[str, QDockWidget] = {
            "queries": self.queries_dock, "attention": self.attention_dock, "model": self.model_info_dock,
            "grid": self.grid_dock, **self.registry.docks, "lesson": self.lesson.dock}
        self.training_dock, self.datasets_dock = self.docks["training"], self.docks["datasets"]
        self.doctor_dock, self.deformable_dock = self.docks["doctor"], self.docks["deformable"]
        # the right column runs the full height of the window (beside the tabs under the image)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.workspaces = Workspaces(self, self.docks, self.centralWidget(), self.canvas, self.settings)
        self.workspaces.switching.connect(lambda _: self._show_hint_where_it_applies())

        self.state.modelChanged.connect(self._update_model_label)
        self.state.modelChanged.connect(self._update_warning)
        self.state.imageChanged.connect(self._update_warning)
        for signal in (self.state.modelChanged, self.state.modelSaved, self.state.imageChanged):
            signal.connect(self._update_title)
        self.controller.busy.connect(self._set_busy)
        self.controller.failed.connect(self.show_error)
        self.controller.backChanged.connect(self._update_back_action)
        self.close_guard = CloseGuard(self)

        build_menus(self)
        self.lesson.add_to_window()  # View ▸ Lesson, presentation mode, File ▸ Export Lesson
        self._build_status_bar()
        self._restore_settings()
        guard_wheel(self)

        if checkpoint is not None and Path(checkpoint).exists():
            self.open_checkpoint(Path(checkpoint), remember=False)
        else:
            self.controller.use_untrained_model()
            self.notify("No bundled checkpoint found: this model is untrained. Train one in the Train workspace.",
                        msecs=15000)
        self.new_toy_sample()

    # --- construction --------------------------------------------------------------------
    def __getattr__(self, name: str):  # noqa: ANN204
        """A lazy view (``window.matching`` ...) asked for before it was built builds them all."""
        registry = self.__dict__.get("registry")
        if name in LAZY_NAMES and registry is not None and not registry.is_built:
            registry.build()
            return getattr(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def build_views(self) -> None:
        self.registry.build()

    def warm_up_views(self) -> None:
        """Import the lazy views' modules off the GUI thread, then build them (after the first picture)."""
        self.registry.warm_up()

    @property
    def views_built(self) -> bool:
        return self.registry.is_built

    def _dock(self, title: str, content: QWidget, panel: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_"))
        dock.setWidget(content)
        if title in VIEW_HELP:
            panel.setWhatsThis(VIEW_HELP[title])
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        return dock

    def add_view(self, title: str, widget: QWidget) -> QDockWidget:
        """A dock for a view that is not one of the registry's (the lesson); the workspaces place it."""
        return self._dock(title, widget, widget)

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
        self.hint.setVisible(False)  # in Explore, until dismissed (see _show_hint_where_it_applies)
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

    def _show_hint_where_it_applies(self) -> None:
        """The first-launch hint is about Explore (click a box, change the layer): shown there only."""
        explore = self.workspaces.current == "explore"
        self.hint.setVisible(explore and not read_setting(self.settings, "hintDismissed", False))

    def dismiss_hint(self) -> None:
        """Hide the first-launch hint; it does not come back."""
        self.hint.setVisible(False)
        self.settings.setValue("hintDismissed", True)
        self.settings.sync()

    def show_hint(self) -> None:
        self.settings.setValue("hintDismissed", False)
        self.workspaces.show("explore")
        self._show_hint_where_it_applies()

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

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        self.workspaces.unelide_tabs()

    # --- layout and settings -------------------------------------------------------------------
    def fit_to_screen(self, available=None) -> None:  # noqa: ANN001
        """Open at a size that fits the screen's available geometry (see :func:`window_geometry`)."""
        self.setGeometry(window_geometry(available or self.available_geometry()))

    def available_geometry(self):  # noqa: ANN201
        return available_geometry(self)

    def _restore_settings(self) -> None:
        restore_geometry(self, self.settings, self.available_geometry())
        self.workspaces.restore()
        threshold = read_setting(self.settings, "threshold", 0.5, valid=lambda t: 0 <= t <= 1,
                                 expect="a number from 0 to 1")
        self.state.set_threshold(round(threshold, 2))
        cmap = read_setting(self.settings, "colormap", self.state.heatmap_style.colormap,
                            valid=lambda c: self.attention.colormap.findText(c) >= 0, expect="a colormap's name")
        opacity = read_setting(self.settings, "opacity", 55, valid=lambda o: 0 <= o <= 100,
                               expect="a whole number from 0 to 100")
        self.state.set_heatmap_style(colormap=cmap, opacity=opacity / 100)

    def reset_layout(self) -> None:
        """The current workspace's panels back in their places and sizes, the window fitted to the screen."""
        if self.isMaximized() or self.isFullScreen():
            self.showNormal()
        self.fit_to_screen()
        self.workspaces.reset()
        self.notify("Layout reset: every panel of this workspace is back in its place.")

    def _save_settings(self) -> None:
        save_geometry(self, self.settings)
        self.workspaces.save()
        style = self.state.heatmap_style
        self.settings.setValue("threshold", self.state.threshold)
        self.settings.setValue("colormap", style.colormap)
        self.settings.setValue("opacity", round(style.opacity * 100))
        self.settings.sync()
        self.files.recent.store()  # this window's files, merged into what other windows stored

    # --- help --------------------------------------------------------------------------------
    def show_quick_start(self) -> QMessageBox:
        return show_quick_start(self)

    def show_shortcuts(self) -> QMessageBox:
        return show_shortcuts(self)

    def shortcuts(self) -> list[tuple[str, str]]:
        return shortcut_rows(self)

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
            parts.append(model_name(loaded) + (" *" if loaded.unsaved else ""))
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

    # --- models, images and training -------------------------------------------------------
    def new_toy_sample(self) -> None:
        self.controller.new_toy_sample()

    def on_trained(self, trained: TrainedModel) -> None:
        """A run ended: its model replaces the one shown; File ▸ Back to … (and a notice) go back."""
        self.controller.use_trained(trained)
        back = self.controller.previous_model
        self.notify(f"Training {trained.reason} at step {trained.step}: the explorer now shows the trained "
                    "model (not saved yet: File ▸ Save Checkpoint).",
                    f"Back to {model_name(back)}" if back else "", self.back_to_previous_model if back else None)

    def back_to_previous_model(self) -> None:
        """Show the model the last training run replaced (the trained one can come back)."""
        name = self.controller.back_to_previous()
        if name is not None:
            self.notify(f"Back to {name}.", "Use the trained model again", self.back_to_previous_model)

    def _update_back_action(self, name: str) -> None:
        self.act_back.setEnabled(bool(name))
        self.act_back.setText(f"&Back to {name}" if name else "&Back to the Model Before Training")

    def on_training_running(self, running: bool) -> None:
        self.act_open_ckpt.setEnabled(not running)
        if not running:
            self.controller.training_ended()  # a killed run's last live result does not stay
        elif not self.training_dock.isVisible():
            self.workspaces.show_dock("training")

    def train_deformable(self) -> None:
        """The training panel with the deformable preset, in front (the user presses Start)."""
        self.workspaces.show_dock("training")
        self.training.show_preset("deformable")

    def check_dataset(self) -> None:
        """Data ▸ Check Dataset: the doctor on the open dataset (or the toy data)."""
        self.workspaces.show_dock("doctor")
        self.doctor.check_open_dataset()

    # --- drag and drop -------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if self.files.accepts(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self.files.drop(event)

    # --- closing -------------------------------------------------------------------------------
    @property
    def training_running(self) -> bool:
        return self.registry.is_built and self.training.is_running

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.close_guard.may_close():  # asks; waits for runs to stop, then closes again
            event.ignore()
            return
        if self.registry.is_built:
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


__all__ = ["MainWindow", "BUNDLED_CHECKPOINT", "QTimer", "qimage_to_rgb", "window_geometry"]
