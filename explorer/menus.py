"""The window's menus, toolbar and help boxes: File, Train, Data, View, Help.

Every command is a menu entry (with its shortcut where it has one); the toolbar repeats the
common ones and carries the workspace bar. The actions stay on the window (``window.act_…``)
for the views and tests that trigger them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QMessageBox, QToolBar, QWhatsThis

from .help import QUICK_START

if TYPE_CHECKING:
    from .main_window import MainWindow


def _action(window: MainWindow, text: str, slot, shortcut=None, tip: str = "") -> QAction:  # noqa: ANN001
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setStatusTip(tip)
    action.triggered.connect(slot)
    return action


def build_menus(w: MainWindow) -> None:
    files, keys = w.files, QKeySequence.StandardKey
    bar = w.menuBar()
    file = bar.addMenu("&File")
    w.act_open_image = _action(w, "Open &Image…", files.choose_image, keys.Open, "Open an image file")
    w.act_paste = _action(w, "&Paste Image", files.paste_image, keys.Paste, "Use the image on the clipboard")
    w.act_sample = _action(w, "New &Toy Sample", w.new_toy_sample, "Ctrl+T", "Generate a new toy-shapes image")
    w.act_open_ckpt = _action(w, "Open &Checkpoint…", files.choose_checkpoint, "Ctrl+Shift+O",
                              "Open a DETR Explorer, official DETR or Hugging Face checkpoint")
    w.act_open_dataset = _action(w, "Open &Dataset…", files.choose_dataset, "Ctrl+D",
                                 "Open a COCO folder, a VOC devkit or a YOLO folder")
    w.act_open_coco_json = _action(w, "Open COCO &Annotations…", files.choose_coco_annotations, None,
                                   "Open a COCO annotation .json (images in the folder it names)")
    w.act_save_ckpt = _action(w, "&Save Checkpoint…", files.choose_save_checkpoint, keys.Save,
                              "Save the current model")
    w.act_export = _action(w, "&Export View as PNG…", files.choose_export, "Ctrl+E", "Save what the image view shows")
    export_menu = QMenu("Export &Model", w)
    export_menu.setStatusTip("Write the model for another library or runtime")
    w.act_export_reference = _action(w, "&Official DETR (.pth)…", lambda: files.choose_export_model("reference"),
                                     None, "Write the model for facebookresearch/detr")
    w.act_export_hf = _action(w, "&Hugging Face Folder…", lambda: files.choose_export_model("hf"), None,
                              "Write the model for Hugging Face transformers (save_pretrained)")
    w.act_export_pt2 = _action(w, "&PyTorch Program (.pt2)…", lambda: files.choose_export_model("pt2"), None,
                               "A torch.export program: runs where only torch is installed; checked after writing")
    w.act_export_onnx = _action(w, "O&NNX…", lambda: files.choose_export_model("onnx"), None,
                                "An ONNX file for onnxruntime, TensorRT …; checked with onnxruntime after writing")
    export_menu.addActions([w.act_export_reference, w.act_export_hf, w.act_export_pt2, w.act_export_onnx])
    w.act_export_model = export_menu.menuAction()
    w.act_back = _action(w, "&Back to the Model Before Training", w.back_to_previous_model, "Ctrl+B",
                         "Show the model the last training run replaced (the trained one can come back)")
    w.act_back.setEnabled(False)
    w.act_quit = _action(w, "&Quit", w.close, keys.Quit)
    file.addActions([w.act_open_image, w.act_paste, w.act_sample, w.act_open_dataset, w.act_open_coco_json])
    file.addSeparator()
    file.addActions([w.act_open_ckpt, w.act_save_ckpt, w.act_export_model])
    file.addMenu(files.recent_menu)
    file.addAction(w.act_back)
    file.addSeparator()
    file.addAction(w.act_export)
    file.addSeparator()
    file.addAction(w.act_quit)

    train = bar.addMenu("&Train")
    w.act_train_start = _action(w, "&Start Training", lambda: w.training.start(), "Ctrl+Return",
                                "Train a new model with the Training panel's settings")
    w.act_train_pause = _action(w, "&Pause / Resume", lambda: w.training.toggle_pause(), "Ctrl+P")
    w.act_train_step = _action(w, "One S&tep", lambda: w.training.step_once(), "Ctrl+Shift+Return",
                               "One training step, then pause")
    w.act_train_stop = _action(w, "St&op Training", lambda: w.training.stop(), "Ctrl+.",
                               "Stop; the trained model replaces the one shown (File ▸ Back to … returns)")
    train.addActions([w.act_train_start, w.act_train_pause, w.act_train_step, w.act_train_stop])

    data = bar.addMenu("&Data")
    w.act_check_dataset = _action(w, "&Check Dataset", w.check_dataset, None,
                                  "Check the open dataset (or the toy data) for what makes DETR learn nothing")
    data.addAction(w.act_check_dataset)

    view = bar.addMenu("&View")
    view.addMenu(w.workspaces.menu(view))
    w.act_fit = _action(w, "&Fit Image", lambda: w.canvas.fit(), "Ctrl+0", "Show the whole image (also: double-click it)")
    w.act_reset_layout = _action(w, "&Reset Layout", w.reset_layout, None,
                                 "Put this workspace's panels back where they were at first launch")
    view.addActions([w.act_fit, w.act_reset_layout])
    view.addSeparator()
    panels = view.addMenu("&Panels")
    for dock in w.docks.values():
        panels.addAction(dock.toggleViewAction())
    w.view_menu = view

    help_menu = bar.addMenu("&Help")
    w.act_quick_start = _action(w, "&Quick Start", lambda: show_quick_start(w), keys.HelpContents)
    w.act_shortcuts = _action(w, "&Keyboard Shortcuts", lambda: show_shortcuts(w), "Ctrl+/")
    w.act_whats_this = QWhatsThis.createAction(w)
    w.act_whats_this.setText("&What Am I Looking At?")
    w.act_whats_this.setShortcut(QKeySequence("Shift+F1"))
    w.act_show_hint = _action(w, "Show the &Start Hint", w.show_hint)
    help_menu.addActions([w.act_quick_start, w.act_shortcuts, w.act_whats_this, w.act_show_hint])
    help_menu.addSeparator()
    help_menu.addAction(_action(w, "&About DETR Explorer", lambda: about(w)))

    toolbar = QToolBar("Main")
    toolbar.setObjectName("main_toolbar")
    toolbar.addActions([w.act_open_image, w.act_sample, w.act_open_ckpt, w.act_save_ckpt, w.act_export])
    w.addToolBar(toolbar)
    workspace_bar = QToolBar("Workspaces")  # stays in presentation mode: the teacher switches with it
    workspace_bar.setObjectName("workspace_toolbar")
    workspace_bar.addWidget(w.workspaces.bar)
    w.addToolBar(workspace_bar)
    files.rebuild_recent()


def shortcut_rows(w: MainWindow) -> list[tuple[str, str]]:
    """(action, keys) for every menu action with a shortcut, submenus included."""
    rows = []

    def walk(actions: list[QAction]) -> None:
        for a in actions:
            if a.menu() is not None:
                walk(a.menu().actions())
            elif not a.shortcut().isEmpty():
                rows.append((a.text().replace("&", ""), a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)))

    walk(w.menuBar().actions())
    return rows + [("Zoom the image around the cursor", "mouse wheel"), ("Fit the image", "double-click"),
                   ("Encoder attention of a point inside a box", "Shift+click")]


def _box(w: MainWindow, title: str, text: str) -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.NoIcon, title, text, QMessageBox.StandardButton.Close, w)
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setWindowModality(Qt.WindowModality.NonModal)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def show_quick_start(w: MainWindow) -> QMessageBox:
    return _box(w, "Quick start", QUICK_START)


def show_shortcuts(w: MainWindow) -> QMessageBox:
    rows = "".join(f"<tr><td>{name}</td><td>&nbsp;&nbsp;<b>{keys}</b></td></tr>" for name, keys in shortcut_rows(w))
    return _box(w, "Keyboard shortcuts", f"<table>{rows}</table>")


def about(w: MainWindow) -> None:
    QMessageBox.about(w, "About DETR Explorer",
                      "DETR Explorer: see and touch DETR (Carion et al., 2020).\n"
                      "Train a small DETR live, toggle every object query's box, and watch where its "
                      "decoder cross-attention reads the image.")


__all__ = ["build_menus", "shortcut_rows", "show_quick_start", "show_shortcuts"]
