"""The window's file commands: open, save and export, Open Recent, paste, drag and drop.

Each command is a file dialog (``choose_…``) over a plain method that takes a path (what
menus, drops, Open Recent, other views and the tests call). The work itself is the
:class:`~explorer.controller.Controller`'s, off the GUI thread; these say what happened in the
window (a notice, an error box), remember the file in Open Recent and the folder for the next
dialog."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QApplication, QFileDialog, QInputDialog, QMenu, QMessageBox

from detr_core.checkpoint import Checkpoint
from detr_core.data.images import MAX_SIDE

from .saving import save_png
from .settings import RecentFiles, read_setting
from .workers import readable_error

if TYPE_CHECKING:
    from .controller import CheckedExport
    from .dataset_session import OpenedDataset
    from .main_window import MainWindow

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CHECKPOINT = ROOT / "checkpoints" / "toy_shapes.pt"
CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt"}
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.gif *.tif *.tiff);;All files (*)"
CHECKPOINT_FILTER = ("Checkpoints (*.pt *.pth *.ckpt *.safetensors *.bin config.json);;"
                     "Hugging Face DETR (config.json *.safetensors *.bin);;All files (*)")
EXPORT_FORMATS = {"Official DETR (.pth, facebookresearch/detr)": "reference",
                  "Hugging Face folder (save_pretrained)": "hf",
                  "PyTorch program (.pt2, torch.export)": "pt2",
                  "ONNX (.onnx, onnxruntime)": "onnx"}
# file formats: (suffix, dialog title, filter name)
EXPORT_FILES = {"reference": (".pth", "Export for facebookresearch/detr", "DETR"),
                "pt2": (".pt2", "Export a PyTorch program", "PyTorch program"),
                "onnx": (".onnx", "Export ONNX", "ONNX")}
CHECKED_EXPORTS = ("pt2", "onnx")  # written off the GUI thread and checked against the model
# the window's names for the commands (window.open_checkpoint ...): menus, views and tests call them
COMMANDS = ("open_checkpoint", "open_image", "open_dataset", "open_path", "paste_image", "save_checkpoint",
            "export_model", "export_checked", "export_png", "reopen_with", "recent_files", "choose_checkpoint",
            "choose_save_checkpoint")


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


class FileCommands(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.settings = window.settings
        self.controller = window.controller
        self.recent = RecentFiles(self.settings)
        self.recent_menu = QMenu("Open &Recent", window)
        self.dataset_box: QMessageBox | None = None
        self.last_export: CheckedExport | None = None

    def _start(self, key: str, fallback: Path) -> str:
        return read_setting(self.settings, key, str(fallback))

    # --- models -------------------------------------------------------------------------------
    def open_checkpoint(self, path: Path, remember: bool = True) -> None:
        def opened(path: Path, ckpt: Checkpoint) -> None:
            if remember:
                self._remember(path)
                self.settings.setValue("lastCheckpointDir", str(path.parent))
            assumed = "".join(
                f" The file does not say its {k}: assumed {v} ("
                f"{'set it in the Model panel or ' if k == 'nheads' else ''}main.py --set {k}=… changes it)."
                for k, v in ckpt.assumptions.items())
            self.window.notify(f"Opened {path.name}: {len(ckpt.class_names)} classes ({ckpt.source}).{assumed}")
            if "nheads" in ckpt.assumptions:  # the Model panel says so and sets it
                self.window.workspaces.show_dock("model")

        self.controller.open_checkpoint(Path(path), on_opened=opened)

    def reopen_with(self, settings: dict) -> bool:
        """Reopen the model's checkpoint with ``settings`` (e.g. the head count the file lacked)."""
        said = ", ".join(f"{k} = {v}" for k, v in settings.items())
        return self.controller.reopen_with(
            settings, on_opened=lambda ckpt: self.window.notify(f"Reopened the model with {said}."))

    def choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open checkpoint",
                                              self._start("lastCheckpointDir", ROOT / "checkpoints"),
                                              CHECKPOINT_FILTER)
        if path:
            self.open_checkpoint(Path(path))

    def save_checkpoint(self, path: Path) -> bool:
        if self.window.state.model is None:
            return False
        try:
            self.controller.save_checkpoint(Path(path))
        except Exception as e:  # noqa: BLE001 - the model stays; the message says why
            message = readable_error(e, str(path))
            self.window.show_error("Cannot save checkpoint", message if message.startswith("cannot save")
                                   else f"cannot save {message}")
            return False
        self._remember(Path(path))
        self.settings.setValue("lastCheckpointDir", str(Path(path).parent))
        self.window.notify(f"Saved the model to {path}.")
        return True

    def choose_save_checkpoint(self) -> bool:
        start = Path(self._start("lastCheckpointDir", Path.home()))
        loaded = self.window.state.model
        name = loaded.path.name if loaded and loaded.path else "trained.pt"
        path, _ = QFileDialog.getSaveFileName(self.window, "Save checkpoint", str(start / name), CHECKPOINT_FILTER)
        return bool(path) and self.save_checkpoint(Path(path))

    def export_model(self, fmt: str, path: Path) -> bool:
        try:
            out = self.controller.export_model(fmt, path)
        except (OSError, ValueError, RuntimeError) as e:
            self.window.show_error("Cannot export model", str(e))
            return False
        self.window.notify(f"Exported the model to {out}.")
        return True

    def export_checked(self, fmt: str, path: Path, postprocess: bool = False) -> bool:
        """Write the model as a torch.export program ("pt2") or an ONNX file ("onnx") off the GUI
        thread, the status bar busy meanwhile; then say where, and by how much the file's outputs
        differ from the model's (the check after writing), or why it failed. False when nothing
        started (no model, or another export still running)."""
        if self.window.state.model is None:
            return False
        if not self.controller.export_checked(fmt, Path(path), self._exported, postprocess):
            self.window.notify("Another export is still running.")
            return False
        return True

    def _exported(self, written: CheckedExport) -> None:
        self.settings.setValue("lastExportDir", str(written.path.parent))
        text = (f"Exported the model to {written.path} and checked it: its outputs differ from the "
                f"model's by at most {written.difference:.2g}.")
        self.window.statusBar().showMessage(text, 15000)
        self.window.notify(text, msecs=10000)
        self.last_export = written  # (the tests read it)

    def choose_export_model(self, fmt: str = "") -> None:
        """File ▸ Export Model ▸ …: a file (or folder) dialog for ``fmt``, then the export. Without
        ``fmt``, a list of the formats first."""
        if self.window.state.model is None:
            return
        if not fmt:
            label, ok = QInputDialog.getItem(self.window, "Export model", "Format:", list(EXPORT_FORMATS), 0, False)
            if not ok:
                return
            fmt = EXPORT_FORMATS[label]
        loaded = self.window.state.model
        stem = loaded.path.stem if loaded.path else "model"
        start = Path(self._start("lastExportDir", self._start("lastCheckpointDir", str(ROOT / "checkpoints"))))
        if fmt == "hf":
            path = QFileDialog.getExistingDirectory(self.window, "Export to folder", str(start))
        else:
            suffix, title, kind = EXPORT_FILES[fmt]
            path, _ = QFileDialog.getSaveFileName(self.window, title, str(start / f"{stem}{suffix}"),
                                                  f"{kind} (*{suffix})")
        if not path:
            return
        if fmt in CHECKED_EXPORTS:
            self.export_checked(fmt, Path(path))
        else:
            self.export_model(fmt, Path(path))

    # --- images -------------------------------------------------------------------------------
    def open_image(self, path: Path) -> None:
        def opened(path: Path) -> None:
            self._remember(path)
            self.settings.setValue("lastImageDir", str(path.parent))

        self.controller.open_image(Path(path), on_opened=opened)

    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open image", self._start("lastImageDir", Path.home()),
                                              IMAGE_FILTER)
        if path:
            self.open_image(Path(path))

    def paste_image(self) -> None:
        clipboard = QApplication.clipboard()
        image = clipboard.image()
        if image.isNull():
            mime = clipboard.mimeData()
            if mime is not None and mime.hasUrls() and mime.urls() and mime.urls()[0].isLocalFile():
                self.open_path(Path(mime.urls()[0].toLocalFile()))
                return
            self.window.show_error("Paste", "The clipboard holds no image (nor an image file) to paste.")
            return
        self.window.state.set_image(qimage_to_rgb(image), "pasted image")

    def export_png(self, path: Path) -> bool:
        try:  # a temporary file renamed into place: a failure keeps the old file, and says why
            save_png(path, self.window.canvas.grab())
        except OSError as e:
            self.window.show_error("Export", readable_error(e, str(path)))
            return False
        self.window.notify(f"Exported the image view to {path}.")
        return True

    def choose_export(self) -> None:
        start = Path(self._start("lastImageDir", Path.home()))
        path, _ = QFileDialog.getSaveFileName(self.window, "Export view", str(start / "detr_view.png"), "PNG (*.png)")
        if path:
            self.export_png(Path(path))

    # --- datasets -----------------------------------------------------------------------------
    def open_dataset(self, path: Path) -> bool:
        """Open a dataset off the GUI thread; the browser shows it. A dataset that fails to open
        leaves the open one (and everything else) as it was."""
        if not self.controller.open_dataset(Path(path), on_opened=self._on_dataset_opened):
            self.window.notify("Another dataset is still opening.")
            return False
        return True

    def _on_dataset_opened(self, opened: OpenedDataset) -> None:
        self._remember(opened.path)
        self.settings.setValue("lastDatasetDir", str(opened.path.parent))
        self.window.workspaces.show_dock("datasets")
        layout = f"; its layout: {opened.layout}" if opened.layout else ""  # which folder layout was found
        self.window.notify(f"Opened the dataset {opened.short()}{layout}.")
        if opened.problems or opened.failed:
            box = QMessageBox(QMessageBox.Icon.Information, "Dataset opened; some of it was skipped",
                              f"{opened.name} opened with what could be used. Left out, and why:",
                              QMessageBox.StandardButton.Ok, self.window)
            box.setInformativeText(opened.summary)
            box.setWindowModality(Qt.WindowModality.WindowModal)
            box.open()
            self.dataset_box = box

    def choose_dataset(self) -> None:
        path = QFileDialog.getExistingDirectory(
            self.window, "Open dataset: a COCO folder, a VOC devkit or a YOLO folder",
            self._start("lastDatasetDir", Path.home()))
        if path:
            self.open_dataset(Path(path))

    def choose_coco_annotations(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open COCO annotations",
                                              self._start("lastDatasetDir", Path.home()),
                                              "COCO annotations (*.json);;All files (*)")
        if path:
            self.open_dataset(Path(path))

    # --- any file -----------------------------------------------------------------------------
    def open_path(self, path: Path) -> None:
        """Open a dropped or recent file: a checkpoint by its suffix (or a Hugging Face folder or
        file), a folder or .json as a dataset, anything else as an image."""
        from detr_core.formats.hf import is_hf_checkpoint

        from .dataset_session import looks_like_dataset

        if path.suffix.lower() in CHECKPOINT_SUFFIXES or is_hf_checkpoint(path):
            self.open_checkpoint(path)
        elif looks_like_dataset(path):
            self.open_dataset(path)
        else:
            self.open_image(path)

    def _remember(self, path: Path) -> None:
        self.recent.add(path)  # merged with what other windows stored meanwhile
        self.rebuild_recent()

    def recent_files(self) -> list[str]:
        return self.recent.entries()

    def rebuild_recent(self) -> None:
        """Open Recent: the files of this and earlier sessions, then the bundled model (the way
        back to the first picture, whatever was opened since)."""
        self.recent_menu.clear()
        for entry in self.recent_files():
            action = QAction(Path(entry).name, self.recent_menu)
            action.setToolTip(entry)
            action.triggered.connect(lambda _=False, p=entry: self.open_path(Path(p)))
            self.recent_menu.addAction(action)
        if BUNDLED_CHECKPOINT.exists():
            self.recent_menu.addSeparator()
            bundled = QAction(f"{BUNDLED_CHECKPOINT.name} (bundled toy model)", self.recent_menu)
            bundled.setToolTip(str(BUNDLED_CHECKPOINT))
            bundled.triggered.connect(lambda: self.open_checkpoint(BUNDLED_CHECKPOINT, remember=False))
            self.recent_menu.addAction(bundled)
        self.recent_menu.setEnabled(not self.recent_menu.isEmpty())

    # --- drag and drop ------------------------------------------------------------------------
    @staticmethod
    def accepts(event: QDragEnterEvent) -> bool:
        mime = event.mimeData()
        return mime.hasUrls() or mime.hasImage()

    def drop(self, event: QDropEvent) -> None:
        mime = event.mimeData()
        if mime.hasUrls():
            for url in mime.urls():
                if url.isLocalFile():
                    self.open_path(Path(url.toLocalFile()))
                else:
                    self.window.show_error("Drop", f"{url.toString()}: not a file on this computer; save it "
                                                   "first, then open the file")
            event.acceptProposedAction()
        elif mime.hasImage():
            image = QImage(mime.imageData())
            if image.isNull():
                self.window.show_error("Drop", "The dropped data is not an image this app can read.")
            else:
                self.window.state.set_image(qimage_to_rgb(image), "dropped image")
            event.acceptProposedAction()


__all__ = ["BUNDLED_CHECKPOINT", "COMMANDS", "FileCommands", "qimage_to_rgb"]
