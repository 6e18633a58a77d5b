"""The window's lazily built views: the training panel and the analysis views.

Their docks exist from the start (so the workspaces can place them and a remembered layout can
be restored), each holding a "Loading…" placeholder; the panels themselves are built after the
first result is on screen, or when first needed (a tab brought up, ``window.matching`` asked
for): their modules pull in scipy, pycocotools and torchvision, which the first picture does not
need and which would double the time to it. :meth:`ViewRegistry.warm_up` imports those modules
on a :class:`~explorer.workers.Worker` (the window's one way off the GUI thread), then builds
the views on the GUI thread.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QDockWidget, QFrame, QLabel, QScrollArea, QSizePolicy, QWidget

from .help import VIEW_HELP
from .state import TrainingSession
from .wheel_guard import guard_wheel
from .workers import Worker

if TYPE_CHECKING:
    from .main_window import MainWindow


@dataclass(frozen=True)
class ViewSpec:
    attr: str  # the window's attribute (window.matching) and the workspaces' dock key
    title: str  # the dock's title
    module: str
    cls: str
    scroll: bool = True  # shown in a scroll area (the dataset browser sizes its own pictures)


ANALYSIS_VIEWS = (
    ViewSpec("specialization", "Query specialization", "explorer.views.specialization", "SpecializationView"),
    ViewSpec("matching", "Matching", "explorer.views.matching", "MatchingView"),
    ViewSpec("denoising", "Denoising", "explorer.views.denoising", "DenoisingView"),
    ViewSpec("layers", "Layer by layer", "explorer.views.layers", "LayerView"),
    ViewSpec("counting", "Counting", "explorer.views.counting", "CountingView"),
    ViewSpec("runs", "Runs", "explorer.views.runs", "RunsView"),
    ViewSpec("datasets", "Dataset", "explorer.views.datasets", "DatasetBrowser", scroll=False),
    ViewSpec("doctor", "Doctor", "explorer.views.doctor", "DoctorView"),
    ViewSpec("deformable", "Deformable attention", "explorer.views.deformable", "DeformableView"),
    ViewSpec("query_selection", "Query selection", "explorer.views.query_selection", "QuerySelectionView"),
)
TRAINING = ViewSpec("training", "Training", "explorer.training_panel", "TrainingPanel")
LAZY_NAMES = frozenset({"views", "dataset_views", TRAINING.attr} | {v.attr for v in ANALYSIS_VIEWS})
# what building the views imports, warmed off the GUI thread first
VIEW_IMPORTS = ("torchvision", "scipy.optimize", "pycocotools.coco", "explorer.dataset_views", TRAINING.module,
                *(v.module for v in ANALYSIS_VIEWS))


class AtLeastMinimum(QWidget):
    """Holds a panel in a scroll area, asking for the panel's *minimum* height at the area's
    width. A word-wrapped label makes a layout answer height-for-width at every plot's preferred
    height, and the scroll area then scrolls a panel that would fit: this answers with the
    layout's minimum height for the width instead, so the area scrolls only a panel that cannot
    fit."""

    def __init__(self, panel: QWidget) -> None:
        super().__init__()
        self.panel = panel
        panel.setParent(self)

    def _minimum_height(self, width: int) -> int:
        layout = self.panel.layout()
        least = self.panel.minimumSizeHint().height()
        if layout is not None and layout.hasHeightForWidth():
            least = max(least, layout.minimumHeightForWidth(width))
        return max(least, self.panel.minimumHeight())

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        hint = self.panel.minimumSizeHint()
        return QSize(max(hint.width(), self.panel.minimumWidth()), max(hint.height(), self.panel.minimumHeight()))

    def sizeHint(self) -> QSize:  # noqa: N802
        return self.minimumSizeHint()

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return self._minimum_height(width)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        self.panel.setGeometry(self.rect())
        super().resizeEvent(event)


def scrolled(widget: QWidget) -> QScrollArea:
    """``widget`` in a resizable, frameless scroll area: a dock smaller than the widget's
    minimum size scrolls instead of pushing the window off the screen (and only then)."""
    area = QScrollArea()
    holder = AtLeastMinimum(widget)
    policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
    policy.setHeightForWidth(True)  # the area asks heightForWidth: the minimum at its width
    holder.setSizePolicy(policy)
    area.setWidget(holder)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    return area


def placeholder() -> QLabel:
    label = QLabel("Loading…")
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    return label


class ViewRegistry(QObject):
    """Makes the lazy views' docks at once and the views in them when they are first needed."""

    built = Signal()

    def __init__(self, window: MainWindow, runs_folder: Path | None, deformable_reference: Path) -> None:
        super().__init__(window)
        self.window = window
        self.runs_folder = runs_folder
        self.deformable_reference = deformable_reference  # the dense model the deformable view compares with
        self.is_built = False
        self._warming: Worker | None = None
        self.docks: dict[str, QDockWidget] = {}
        for spec in (TRAINING, *ANALYSIS_VIEWS):
            dock = QDockWidget(spec.title, window)
            dock.setObjectName(spec.title.replace(" ", "_"))
            dock.setWidget(placeholder())
            window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
            dock.visibilityChanged.connect(self._on_dock_shown)
            self.docks[spec.attr] = dock

    def _on_dock_shown(self, seen: bool) -> None:
        # a view's tab brought up before the views were built: build them now (after the first
        # result, so a tab remembered from the last session does not delay the first picture)
        if seen and not self.is_built and self.window.state.result is not None:
            QTimer.singleShot(0, self.build)

    def warm_up(self) -> None:
        """Import the views' modules off the GUI thread, then build the views on it. Called once
        the first result is on screen; the window stays usable meanwhile."""
        if self.is_built or self._warming is not None:
            return
        self._warming = Worker(self._import_modules, context=False, parent=self, subject="the analysis views")
        self._warming.finished.connect(self.build)
        self._warming.start()

    @staticmethod
    def _import_modules() -> None:
        for module in VIEW_IMPORTS:
            try:
                importlib.import_module(module)
            except ImportError:
                pass  # build raises it on the GUI thread, where it is reported

    def build(self) -> None:
        """Build every view into its dock (once)."""
        if self.is_built:
            return
        self.is_built = True
        with self.window.state.replaying_to_new_listeners():
            self._build_training()
            self._build_analysis()
        for dock in self.docks.values():
            guard_wheel(dock.widget())
        self.built.emit()

    def _put(self, spec: ViewSpec, view: QWidget) -> None:
        dock = self.docks[spec.attr]
        old = dock.widget()
        dock.setWidget(scrolled(view) if spec.scroll else view)
        old.deleteLater()
        if spec.title in VIEW_HELP:
            view.setWhatsThis(VIEW_HELP[spec.title])
        setattr(self.window, spec.attr, view)

    def _build_training(self) -> None:
        """The training panel runs its own worker; the state gets its session, model and previews."""
        w = self.window
        panel = getattr(importlib.import_module(TRAINING.module), TRAINING.cls)()
        self._put(TRAINING, panel)
        panel.workerCreated.connect(lambda worker: w.state.set_training(TrainingSession(worker)))
        panel.confirm_start = lambda: w.controller.may_replace_model("The new training run's model")
        panel.trained.connect(w.on_trained)
        panel.preview.connect(w.controller.accept_preview)
        panel.failed.connect(lambda msg: w.show_error("Training", msg))
        panel.running.connect(w.on_training_running)
        panel.status.connect(w.activity.setText)
        w.state.imageChanged.connect(lambda image: panel.set_preview_image(image, w.state.image_id))
        w.state.datasetChanged.connect(panel.set_dataset)
        w.state.modelChanged.connect(panel.set_open_model)

    def _build_analysis(self) -> None:
        w = self.window
        views: dict[str, Any] = {}
        for spec in ANALYSIS_VIEWS:
            view_class = getattr(importlib.import_module(spec.module), spec.cls)
            if spec.attr == "runs":
                view = view_class(self.runs_folder)
            elif spec.attr == "datasets":
                view = view_class(w.state, settings=w.settings)
            elif spec.attr == "deformable":  # beside a dense model's heatmap: the bundled one by default
                view = view_class(w.state, self.deformable_reference)
            else:
                view = view_class(w.state)
            views[spec.attr] = view
            self._put(spec, view)
            view.errorShown.connect(w.notify)
            view.add_help(spec.title)
            if spec.attr != "doctor":
                self.docks[spec.attr].visibilityChanged.connect(lambda seen, v=view: seen and v.flush_deferred())
        w.views = tuple(views[a] for a in ("specialization", "matching", "layers", "counting", "runs", "datasets",
                                            "deformable", "query_selection", "denoising"))
        views["deformable"].openRequested.connect(lambda: w.files.choose_checkpoint())
        views["deformable"].trainRequested.connect(w.train_deformable)
        views["runs"].openCheckpoint.connect(lambda p: w.open_checkpoint(Path(p)))
        views["datasets"].showImage.connect(lambda rgb, name: w.state.set_image(rgb, name))
        from .dataset_views import DatasetViews

        w.dataset_views = DatasetViews(w.state, {
            "Query specialization": views["specialization"], "Matching": views["matching"],
            "Layer by layer": views["layers"], "Counting": views["counting"]})


__all__ = ["ANALYSIS_VIEWS", "LAZY_NAMES", "TRAINING", "VIEW_IMPORTS", "ViewRegistry", "ViewSpec", "scrolled"]
