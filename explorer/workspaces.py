"""Workspaces: the window organised by what the user is doing (issue 29).

Fourteen panels do not fit one laptop screen at once, so each task gets its own arrangement of
them: **Explore** (the image, its queries, attention and model), **Train** (the image with live
predictions over the training panel and the run queue), **Analyse** (the image beside the
analysis views), **Data** (the dataset browser and the doctor) and **Lesson** (the lesson, the
whole window). A bar of tabs (and View ▸ Workspace, Ctrl+1 … Ctrl+5) switches them.

Each workspace's dock layout is the user's to change; :class:`Workspaces` keeps one
``QMainWindow.saveState`` per workspace, in memory while the window is open and in the
settings when it closes, and View ▸ Reset Layout puts the current one back to its
:class:`Workspace` default. The image view (the window's central widget) is shown in the
workspaces where it is the subject, and keeps at least :data:`IMAGE_SHARE` of the window's
height there; where it is not (Data, Lesson), the docks fill the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QEvent, QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMenu, QScrollArea, QTabBar

from .settings import read_setting

if TYPE_CHECKING:
    from PySide6.QtWidgets import QMainWindow, QWidget

Area = Qt.DockWidgetArea
IMAGE_SHARE = 0.45  # the image view's least share of the window's height where it is shown
LAYOUT_VERSION = 5  # a layout saved by another version of the window is not restored


@dataclass(frozen=True)
class Group:
    """Docks tabbed together (the first in front) in one place of a workspace.

    ``area``: the dock area; ``below``: instead, split under the group whose first dock this
    names; ``share``: the group's share of the window's width (left and right areas) or height
    (top and bottom, and a group ``below`` another)."""

    docks: tuple[str, ...]
    area: Area = Area.RightDockWidgetArea
    share: float = 0.3
    below: str | None = None
    least: int = 120  # pixels: the share, but at least and at most these
    most: int = 100_000

    @property
    def vertical(self) -> bool:
        return self.below is not None or self.area in (Area.TopDockWidgetArea, Area.BottomDockWidgetArea)


@dataclass(frozen=True)
class Workspace:
    key: str
    title: str
    image: bool  # the image view is shown (it is the subject of this task)
    groups: tuple[Group, ...]
    tip: str = ""

    @property
    def docks(self) -> tuple[str, ...]:
        return tuple(d for g in self.groups for d in g.docks)


WORKSPACES: tuple[Workspace, ...] = (
    Workspace("explore", "Explore", True, (
        Group(("queries",), Area.RightDockWidgetArea, 0.31, least=340, most=440),
        Group(("attention", "model"), share=0.42, below="queries"),
        Group(("grid", "deformable", "query_selection"), Area.BottomDockWidgetArea, 0.44),
    ), "The image, each object query's box and where its attention reads the image"),
    Workspace("train", "Train", True, (
        Group(("training", "runs"), Area.BottomDockWidgetArea, 0.5),
    ), "Train a model and watch its live predictions; queue runs"),
    Workspace("analyse", "Analyse", True, (
        Group(("specialization", "matching", "denoising", "layers", "counting"), Area.RightDockWidgetArea, 0.58),
    ), "How the queries specialise, how matching assigns them, denoising, layer by layer, counting"),
    Workspace("data", "Data", False, (
        Group(("datasets",), Area.LeftDockWidgetArea, 0.56),
        Group(("doctor",), Area.RightDockWidgetArea, 0.44, least=420),
    ), "Browse a dataset and check it for what makes DETR learn nothing"),
    Workspace("lesson", "Lesson", False, (
        Group(("lesson",), Area.BottomDockWidgetArea, 1.0),
    ), "DETR block by block, live on the open model"),
)
BY_KEY = {w.key: w for w in WORKSPACES}


def workspace_of(dock: str) -> Workspace:
    """The workspace a dock belongs to by default (the first that has it)."""
    return next(w for w in WORKSPACES if dock in w.docks)


class Workspaces(QObject):
    """Switches the window between :data:`WORKSPACES`, each with its own remembered layout.

    ``docks`` maps the keys the workspaces name to the window's docks; ``central`` is the image
    view's widget (shown where a workspace has the image)."""

    switching = Signal(str)  # the key of the workspace about to be shown (before its layout)
    changed = Signal(str)  # the key of the workspace now shown

    def __init__(self, window: QMainWindow, docks: dict[str, QDockWidget], central: QWidget, image: QWidget,
                 settings: QSettings) -> None:
        super().__init__(window)
        self.window, self.docks, self.central, self.image, self.settings = window, docks, central, image, settings
        missing = {d for w in WORKSPACES for d in w.docks} - set(docks)
        if missing:
            raise ValueError(f"the workspaces name docks the window does not have: {sorted(missing)}")
        self.current = ""
        self._layouts: dict[str, QByteArray] = {}  # a workspace's layout when it was last left
        for w in WORKSPACES:
            saved = read_setting(settings, f"workspaces/{w.key}", None, kind=QByteArray)
            if isinstance(saved, QByteArray) and not saved.isEmpty():
                self._layouts[w.key] = saved
        self.bar = QTabBar()
        self.bar.setObjectName("workspace_bar")
        self.bar.setDrawBase(False)
        self.bar.setExpanding(False)
        self.actions = QActionGroup(self)
        for i, w in enumerate(WORKSPACES):
            self.bar.addTab(w.title)
            self.bar.setTabToolTip(i, f"{w.tip} (Ctrl+{i + 1})")
            action = QAction(w.title, window)
            action.setCheckable(True)
            action.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            action.setStatusTip(w.tip)
            action.triggered.connect(lambda _=False, k=w.key: self.show(k))
            self.actions.addAction(action)
        self.bar.currentChanged.connect(lambda i: self.show(WORKSPACES[i].key))
        # after a resize or a font change (presentation mode), once laid out: see settle
        self._settle_timer = QTimer(self)
        self._settle_timer.setSingleShot(True)
        self._settle_timer.setInterval(0)
        self._settle_timer.timeout.connect(self.settle)
        self._settle_rounds = 0
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if watched is self.window and event.type() in (QEvent.Type.Resize, QEvent.Type.FontChange):
            self._settle_timer.start()
        return False

    def menu(self, parent: QWidget) -> QMenu:
        menu = QMenu("&Workspace", parent)
        menu.addActions(self.actions.actions())
        return menu

    # --- switching ------------------------------------------------------------------------------
    def show(self, key: str) -> None:
        """Show workspace ``key``: the current one's layout is kept for when the user returns."""
        if key == self.current:
            return
        workspace = BY_KEY[key]
        if self.current:
            self._layouts[self.current] = self.window.saveState(LAYOUT_VERSION)
        self.current = key
        self.switching.emit(key)
        saved = self._layouts.get(key)
        self.window.setUpdatesEnabled(False)
        try:
            # the image first: the docks' saved sizes are laid out around it (restored without it,
            # they would take its room and leave it its minimum height)
            self.central.setVisible(workspace.image)
            if saved is None or not self.window.restoreState(saved, LAYOUT_VERSION):
                self.arrange(workspace)
        finally:
            self.window.setUpdatesEnabled(True)
        index = WORKSPACES.index(workspace)
        self.bar.blockSignals(True)
        self.bar.setCurrentIndex(index)
        self.bar.blockSignals(False)
        self.actions.actions()[index].setChecked(True)
        self.unelide_tabs()
        self._settle_timer.start()
        self.changed.emit(key)

    def show_dock(self, dock: str) -> QDockWidget:
        """Bring the dock ``dock`` to the front: in the current workspace when it is there, else
        in the workspace it belongs to."""
        widget = self.docks[dock]
        if not widget.isVisible() and dock not in BY_KEY[self.current or "explore"].docks:
            self.show(workspace_of(dock).key)
        widget.show()
        widget.raise_()
        return widget

    def arrange(self, workspace: Workspace) -> None:
        """Put ``workspace``'s docks in their default places and sizes; hide every other dock."""
        w = self.window
        for dock in self.docks.values():
            dock.setFloating(False)
            dock.hide()
        for group in workspace.groups:
            first = self.docks[group.docks[0]]
            if group.below is not None:
                w.splitDockWidget(self.docks[group.below], first, Qt.Orientation.Vertical)
            else:
                w.addDockWidget(group.area, first)
            first.show()
            for key in group.docks[1:]:
                w.tabifyDockWidget(first, self.docks[key])
                self.docks[key].show()
            first.raise_()
        w.layout().activate()  # the docks' and the image's sizes in this arrangement, for size_docks
        self.size_docks(workspace)
        QTimer.singleShot(0, lambda: self.current == workspace.key and self.size_docks(workspace))

    def size_docks(self, workspace: Workspace) -> None:
        """Give each group its share of the window (the image view keeps the rest)."""
        w = self.window
        width, height = w.width(), w.height()
        for group in workspace.groups:
            dock = self.docks[group.docks[0]]
            size = min(max(int((height if group.vertical else width) * group.share), group.least), group.most)
            if group.vertical and workspace.image and group.below is None and self.central.isVisible():
                # under the image: the image (below its banners) keeps its share of the height
                banners = self.central.height() - self.image.height()
                room = dock.height() + self.central.height()
                size = min(size, room - int(height * IMAGE_SHARE) - banners - 4)
            w.resizeDocks([dock], [max(size, 100)],
                          Qt.Orientation.Vertical if group.vertical else Qt.Orientation.Horizontal)

    def settle(self) -> None:
        """Keep the current layout usable at the window's size and font: a side dock that would
        scroll sideways is widened (up to half the window), and docks under the image give it
        back its share of the height. The user's arrangement stays; only sizes change."""
        w = self.window
        for layout in (w.layout(), self.central.layout()):  # the sizes of the layouts as they now are
            if layout is not None:
                layout.activate()
        # one width per side column: the widest any of its shown panels needs (a panel behind another
        # tab keeps a stale width, and resizing the column for it would undo the others)
        widths: dict[Area, tuple[int, QDockWidget]] = {}
        for dock in self.docks.values():
            area = dock.widget()
            if (not dock.isVisible() or dock.isFloating() or dock.visibleRegion().isEmpty()
                    or not isinstance(area, QScrollArea)):
                continue
            side = w.dockWidgetArea(dock)
            sideways = area.horizontalScrollBar().maximum()
            if sideways and side in (Area.LeftDockWidgetArea, Area.RightDockWidgetArea):
                wider = min(dock.width() + sideways + 2, w.width() // 2)
                if wider > dock.width() and wider > widths.get(side, (0, dock))[0]:
                    widths[side] = (wider, dock)
        for wider, dock in widths.values():
            w.resizeDocks([dock], [wider], Qt.Orientation.Horizontal)
        if self.central.isVisible():
            deficit = int(w.height() * IMAGE_SHARE) + 1 - self.image.height()
            below = [d for d in self.docks.values() if d.isVisible() and not d.isFloating()
                     and w.dockWidgetArea(d) in (Area.BottomDockWidgetArea, Area.TopDockWidgetArea)]
            if deficit > 0 and below:
                dock = max(below, key=lambda d: d.height())
                w.resizeDocks([dock], [max(dock.height() - deficit, 100)], Qt.Orientation.Vertical)
                # a layout just restored takes the new sizes on a later pass: look again then
                self._settle_rounds += 1
                if self._settle_rounds < 4:
                    QTimer.singleShot(30, self.settle)
                    return
        self._settle_rounds = 0

    def reset(self) -> None:
        """View ▸ Reset Layout: the current workspace back to its default."""
        self._layouts.pop(self.current, None)
        self.central.setVisible(BY_KEY[self.current].image)
        self.arrange(BY_KEY[self.current])
        self.unelide_tabs()

    def unelide_tabs(self) -> None:
        """Dock tabs keep their whole titles and scroll when they do not fit (elided to "Trai…"
        they were unreadable on a 1366-pixel screen). New tab bars come with every rearrangement."""
        for bar in self.window.findChildren(QTabBar):
            if bar is not self.bar:
                bar.setElideMode(Qt.TextElideMode.ElideNone)
                bar.setUsesScrollButtons(True)

    # --- persistence ----------------------------------------------------------------------------
    def save(self) -> None:
        """Every workspace's layout (the current one as it is now) and which one is shown."""
        if self.current:
            self._layouts[self.current] = self.window.saveState(LAYOUT_VERSION)
        for key, state in self._layouts.items():
            self.settings.setValue(f"workspaces/{key}", state)
        self.settings.setValue("workspace", self.current)

    def restore(self) -> None:
        """Show the workspace shown when the window last closed (Explore the first time)."""
        key = read_setting(self.settings, "workspace", "explore", valid=lambda k: k in BY_KEY,
                           expect="a workspace's name")
        self.show(key)


__all__ = ["IMAGE_SHARE", "WORKSPACES", "Group", "Workspace", "Workspaces", "workspace_of"]
