"""Loads models and images into the :class:`~explorer.state.AppState` and keeps its inference
result up to date: the model runs off the GUI thread (one :class:`~explorer.workers.WorkQueue`,
in order) whenever the model or the image changes; a newer request replaces one still waiting. It knows nothing of menus or dialogs; it says
what it is doing through ``busy`` and what went wrong through ``failed``."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PySide6.QtCore import QObject, Signal
from torch import nn

from detr_core.analysis.capture import InferenceResult, run_inference
from detr_core.checkpoint import Checkpoint, check_writable, load_model, save_checkpoint
from detr_core.data import ToyShapes
from detr_core.data.images import load_image
from detr_core.model.registry import build_model
from detr_core.presets import preset

from .state import AppState, LoadedModel
from .workers import Worker, WorkQueue, readable_error

if TYPE_CHECKING:
    from .dataset_session import OpenedDataset
    from .training_worker import TrainedModel

LARGE_IMAGE_PIXELS = 1_000_000  # after such an image is replaced, freed memory is handed back


def release_memory() -> None:
    """Hand freed heap memory back to the system. glibc keeps the pages of freed buffers in its
    arenas (a 2048-pixel image and its inference leave ~20 MB behind, more for a huge file decoded
    at full size first); ``malloc_trim`` returns them. A no-op off glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def model_name(loaded: LoadedModel) -> str:
    """How the window names a model: its file's name, else where it came from."""
    return loaded.path.name if loaded.path else loaded.source


@dataclass(frozen=True)
class CheckedExport:
    """A model written as a program or ONNX file and checked: its path, the check's largest
    difference from the model, and in words what it takes and gives."""

    path: Path
    difference: float
    summary: str


def write_checked(fmt: str, ckpt: Checkpoint, path: Path, postprocess: bool = False) -> CheckedExport:
    """(On a worker thread) write ``ckpt`` as ``fmt`` ("pt2" or "onnx") and check it."""
    from detr_core.export import export_onnx, export_pt2

    if fmt == "onnx":
        out, written = export_onnx(ckpt, path, postprocess)
        return CheckedExport(out, written.difference, written.summary())
    if fmt != "pt2":
        raise ValueError(f"no checked export to {fmt!r} (pt2 or onnx)")
    out, diff, size, batch = export_pt2(ckpt, path)
    shape = "B, H and W dynamic" if size is None else f"B dynamic at {size[0]}x{size[1]} (this family's size is fixed)" \
        if batch is None else f"one image at {size[0]}x{size[1]} (this family's batch and size are fixed)"
    return CheckedExport(out, diff, f"torch.export.load runs it: normalised float [B, 3, H, W], {shape}; "
                                    f"max abs difference from the model {diff:.3g}")


class Controller(QObject):
    busy = Signal(object)  # what is running ("Running the model…"), or None once idle
    failed = Signal(str, str)  # title, readable message
    inference_started = Signal(int)  # the number of the request the model now runs on (from its thread)
    backChanged = Signal(str)  # the name of the model "Back to" would show again, or "" (none)

    def __init__(self, state: AppState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.queue = WorkQueue(self)  # model loading and inference, one at a time, in order
        self.toy = ToyShapes(seed=12345, split="explorer")
        self.toy_index = 0
        self._request = 0
        self.dataset_job: Worker | None = None  # opening a dataset (its own thread: may take a while)
        self.export_job: Worker | None = None  # a checked export (pt2, ONNX): its own thread, seconds
        self._large_image = False  # the last image run was large: release memory after the next
        # the newest inference request not yet started, (number, model, image, large), and whether
        # a queued job will pick it up: a newer request replaces an older one that has not started
        self._inference_lock = threading.Lock()
        self._next_inference: tuple[int, LoadedModel, np.ndarray, bool, str] | None = None
        self._inference_waiting = False
        self._started_request = 0  # the request the model last started on
        self.inference_superseded = 0  # requests replaced before they ran (for tests and benchmarks)
        self._preview_request = 0  # the newest request when a training preview was last shown
        # asked before trained weights that were never saved are replaced: (the model shown, what
        # replaces it in words: "Opening small.pt") -> go on? The window's Save / Discard / Cancel.
        self.confirm_replace: Callable[[LoadedModel, str], bool] | None = None
        # what the last training run's model replaced, to go back to; and the model going back
        # would replace (so it can come back in turn)
        self.previous_model: LoadedModel | None = None
        self._back_from: LoadedModel | None = None
        state.modelChanged.connect(self.run_inference)
        state.imageChanged.connect(self.run_inference)
        state.modelChanged.connect(self._forget_back_to)

    # --- models ----------------------------------------------------------------------------
    def may_replace_model(self, replacing: str) -> bool:
        """Whether the model shown may be replaced (``replacing`` says by what: "Opening
        small.pt"). True unless its weights were trained in this session and never saved and
        ``confirm_replace`` says no (the user cancelled, or chose Save and did not save)."""
        loaded = self.state.model
        if loaded is None or not loaded.unsaved or self.confirm_replace is None:
            return True
        return self.confirm_replace(loaded, replacing)

    def set_model(self, loaded: LoadedModel, replacing: str) -> bool:
        """Show ``loaded`` instead of the model shown: the one way a model is replaced, so unsaved
        trained weights are never let go of without the question of :meth:`may_replace_model`,
        whatever replaces them. False (nothing changed) when the user keeps them."""
        if loaded is not self.state.model and not self.may_replace_model(replacing):
            return False
        self.state.set_model(loaded)
        return True

    def use_untrained_model(self) -> None:
        model_cfg, _ = preset("fast")
        torch.manual_seed(0)
        model = build_model(model_cfg).eval()
        self.set_model(LoadedModel(model, list(ToyShapes().class_names), "untrained model"),
                       "The untrained model")

    def open_checkpoint(self, path: Path, on_opened: Callable[[Path, Checkpoint], None] | None = None) -> None:
        """Load a checkpoint off the GUI thread; its model becomes the state's, then
        ``on_opened(path, checkpoint)`` runs. A file that cannot make a working model (not a
        checkpoint, damaged, weights that do not fit, NaN or infinite weights) is refused with a
        message naming the file and the problem, and the model shown stays."""
        path = Path(path)
        self.busy.emit(f"Loading {path.name}…")

        def load() -> tuple[Checkpoint, nn.Module]:
            model, ckpt = load_model(path)  # checks the weights (shapes, NaN, inf) first
            return ckpt, model

        def done(payload: tuple[Checkpoint, nn.Module]) -> None:
            ckpt, model = payload
            self.busy.emit(None)
            loaded = LoadedModel(model, ckpt.class_names, ckpt.source, path, ckpt)
            if not self.set_model(loaded, f"Opening {path.name}"):
                return  # the unsaved trained model stays
            if on_opened is not None:
                on_opened(path, ckpt)

        def failed(message: str) -> None:
            self.busy.emit(None)
            if self.state.model is None:
                self.use_untrained_model()
            self.failed.emit("Cannot open checkpoint", message)

        self.queue.submit(load, on_result=done, on_error=failed, subject=path.name)

    def reopen_with(self, settings: dict, on_opened: Callable[[Checkpoint], None] | None = None) -> bool:
        """The open checkpoint's weights rebuilt with some architecture settings replaced, for what
        its file did not say (``{"nheads": 4}`` for a weights-only file), off the GUI thread; the
        model becomes the state's. False (nothing started) when the model has no checkpoint."""
        from .model_info import ASSUMED_SETTINGS_KEY

        loaded = self.state.model
        if loaded is None or loaded.checkpoint is None:
            return False
        ckpt, path, source = loaded.checkpoint, loaded.path, loaded.source
        name = path.name if path is not None else source
        set_before = dict(ckpt.extra.get(ASSUMED_SETTINGS_KEY, {}))
        self.busy.emit(f"Reopening {name}…")

        def build() -> tuple[Checkpoint, nn.Module]:
            changed = ckpt.with_settings(**settings)  # CheckpointError (a ValueError) on a bad setting
            changed.extra = {**changed.extra, ASSUMED_SETTINGS_KEY: {**set_before, **settings}}
            return changed, changed.build_model()

        def done(payload: tuple[Checkpoint, nn.Module]) -> None:
            changed, model = payload
            self.busy.emit(None)
            if not self.set_model(LoadedModel(model, changed.class_names, source, path, changed),
                                  f"Reopening {name}"):
                return
            if on_opened is not None:
                on_opened(changed)

        def failed(message: str) -> None:
            self.busy.emit(None)
            self.failed.emit("Cannot reopen the model", message)

        self.queue.submit(build, on_result=done, on_error=failed, subject=name)
        return True

    def save_checkpoint(self, path: Path) -> None:
        """Write the current model (raises OSError, ValueError or RuntimeError)."""
        loaded = self.state.model
        if loaded is None:
            raise ValueError("no model to save")
        check_writable(path)  # a folder, a path under a file, a read-only folder: said in words
        t = loaded.trained
        if t is not None:
            save_checkpoint(path, loaded.model, loaded.class_names, None, t.history.to_dict(), t.train_config,
                            t.step, extra={"optimizer_state_saved": False})
        else:
            ckpt = loaded.checkpoint
            save_checkpoint(path, loaded.model, loaded.class_names, None,
                            ckpt.history if ckpt else None, ckpt.train_config if ckpt else None,
                            ckpt.step if ckpt else 0)
        self.state.mark_saved(Path(path))

    def export_model(self, fmt: str, path: Path) -> Path:
        """Write the current model as ``fmt`` ("reference" file or "hf" folder). Raises ValueError
        naming the options the format cannot hold, OSError when it cannot be written."""
        from detr_core.export import export

        loaded = self.state.model
        if loaded is None:
            raise ValueError("no model to export")
        state = {k: v.detach().cpu() for k, v in loaded.model.state_dict().items()}
        ckpt = Checkpoint(loaded.model.config, loaded.class_names, state)
        return export(ckpt, fmt, path)

    def export_checked(self, fmt: str, path: Path, on_done: Callable[[CheckedExport], None],
                       postprocess: bool = False) -> bool:
        """Write the current model as ``fmt`` ("pt2" program or "onnx" file) off the GUI thread and
        check the file against the model (seconds to minutes): ``on_done`` gets what was written;
        ``failed`` says why it was not. The weights are copied first, so training or inference may
        go on meanwhile. False (nothing started) while another export runs; ValueError when there
        is no model."""
        if self.export_job is not None and self.export_job.is_running:
            return False
        loaded = self.state.model
        if loaded is None:
            raise ValueError("no model to export")
        state = {k: v.detach().to("cpu", copy=True) for k, v in loaded.model.state_dict().items()}
        ckpt = Checkpoint(loaded.model.config, loaded.class_names, state)
        path = Path(path)
        job = Worker(write_checked, fmt, ckpt, path, postprocess, context=False, parent=self, subject=path.name)

        def done(written: CheckedExport) -> None:
            self.busy.emit(None)
            on_done(written)

        def failed(message: str) -> None:
            self.busy.emit(None)
            self.failed.emit("Cannot export model", message)

        job.result.connect(done)
        job.error.connect(failed)
        self.export_job = job
        self.busy.emit(f"Exporting the model to {path.name} and checking it…")
        job.start()
        return True

    def use_trained(self, trained: TrainedModel) -> None:
        """The model a training run of this session handed back. Not asked here: the question
        came when the run started (the panel's ``confirm_start``), and a run that has ended is
        not kept waiting; the model it replaces stays, to go back to (:meth:`back_to_previous`)."""
        previous = self.state.model
        self.state.set_model(LoadedModel(trained.model, trained.class_names, "trained in this session", None,
                                         trained=trained))
        self._set_back(previous, self.state.model)

    def back_to_previous(self) -> str | None:
        """Show the model the last training run replaced; the model it replaces can come back in
        turn. Its name, or None when there is none (or the user kept unsaved weights)."""
        previous, current = self.previous_model, self.state.model
        if previous is None:
            return None
        name = model_name(previous)
        if not self.set_model(previous, f"Going back to {name}"):
            return None  # the unsaved trained model stays
        self._set_back(current, previous)
        return name

    def _set_back(self, previous: LoadedModel | None, replaced_by: LoadedModel | None) -> None:
        self.previous_model, self._back_from = previous, replaced_by
        self.backChanged.emit(model_name(previous) if previous is not None else "")

    def _forget_back_to(self, loaded: LoadedModel | None) -> None:
        """Another model was opened: "Back to" no longer applies, and keeps no model alive."""
        if self.previous_model is not None and loaded is not self._back_from and loaded is not self.previous_model:
            self._set_back(None, None)

    # --- images ----------------------------------------------------------------------------
    def new_toy_sample(self) -> None:
        sample = self.toy.sample(self.toy_index)
        self.state.set_image(sample.image, f"toy sample #{self.toy_index}")
        self.toy_index += 1

    def open_image(self, path: Path, on_opened: Callable[[Path], None] | None = None) -> None:
        """Read an image off the GUI thread; it becomes the state's, after ``on_opened(path)``."""
        path = Path(path)

        def done(rgb: np.ndarray) -> None:
            self.busy.emit(None)
            if on_opened is not None:
                on_opened(path)
            self.state.set_image(rgb, path.name)

        def failed(message: str) -> None:
            self.busy.emit(None)
            self.failed.emit("Cannot open image", message)

        self.busy.emit(f"Reading {path.name}…")
        self.queue.submit(load_image, path, on_result=done, on_error=failed, subject=path.name)

    # --- datasets --------------------------------------------------------------------------
    def open_dataset(self, path: Path, on_opened: Callable[[OpenedDataset], None] | None = None) -> bool:
        """Open a COCO or VOC dataset off the GUI thread; it becomes the state's, then
        ``on_opened(dataset)`` runs. On failure the state keeps what it had and ``failed`` says
        why. False (nothing started) while another dataset is still opening."""
        if self.dataset_job is not None and self.dataset_job.is_running:
            return False
        path = Path(path)
        from .dataset_session import open_path  # datasets bring pycocotools and torchvision

        job = Worker(open_path, path, context=False, parent=self)

        def done(opened: OpenedDataset) -> None:
            self.busy.emit(None)
            self.state.set_dataset(opened)
            if on_opened is not None:
                on_opened(opened)

        def failed(message: str) -> None:
            self.busy.emit(None)
            self.failed.emit("Cannot open dataset", message)

        job.result.connect(done)
        job.error.connect(failed)
        self.dataset_job = job
        self.busy.emit(f"Opening the dataset {path.name}…")
        job.start()
        return True

    # --- inference ---------------------------------------------------------------------------
    def run_inference(self) -> None:
        """Run the model on the image off the GUI thread. The newest request wins: a request
        that has not started yet is replaced by a newer one (it never runs), the running one
        finishes but its result is dropped, and the result shown stays until the newest one
        arrives. ``busy`` says "Running the model…" until then."""
        loaded, image = self.state.model, self.state.image
        if loaded is None or image is None:
            return
        self._request += 1
        large = self._large_image or image.shape[0] * image.shape[1] > LARGE_IMAGE_PIXELS
        self._large_image = image.shape[0] * image.shape[1] > LARGE_IMAGE_PIXELS
        subject = f"Running {model_name(loaded)} on {self.state.image_name or 'the image'}"
        self.busy.emit("Running the model…")
        with self._inference_lock:
            self._next_inference = (self._request, loaded, image, large, subject)
            if self._inference_waiting:
                self.inference_superseded += 1
                return  # the waiting job runs this request instead of the one it was queued for
            self._inference_waiting = True
        self.queue.submit(self._infer_newest, on_result=self._inference_done, on_error=self._inference_failed)

    def _infer_newest(self) -> tuple[int, bool, InferenceResult] | None:
        """On the worker thread: run the newest request (the one waiting when this job starts)."""
        with self._inference_lock:
            request = self._next_inference
            self._next_inference, self._inference_waiting = None, False
            if request is None:
                return None
            number, loaded, image, large, subject = request
            self._started_request = number
        self.inference_started.emit(number)
        try:
            return number, large, run_inference(loaded.model, image, loaded.class_names, capture=True)
        except Exception as e:  # noqa: BLE001 - said in words, naming the model and image of this request
            raise ValueError(readable_error(e, subject)) from None

    def _inference_done(self, payload: tuple[int, bool, InferenceResult] | None) -> None:
        if payload is None:
            return
        number, large, result = payload
        if number != self._request:
            return  # a newer image or model superseded this one: its request runs next
        self.busy.emit(None)
        self.state.set_result(result)  # the previous result (and image) are let go here
        if large:
            release_memory()

    def _inference_failed(self, message: str) -> None:
        with self._inference_lock:
            newest = self._started_request == self._request
        if newest:  # else a newer request is on its way: still busy
            self.busy.emit(None)
        self.failed.emit("Inference failed", message)

    def accept_preview(self, result: InferenceResult, image_id: object) -> None:
        """A live result from a training run, tagged with the id of the image it was computed on
        (``AppState.image_id``): shown only if that is the current image."""
        if self.state.image is not None and image_id == self.state.image_id:
            self.state.set_result(result, preview=True)
            self._preview_request = self._request

    def training_ended(self) -> None:
        """A training run has ended. If a live result of its weights is still shown and no newer
        request will replace it (a run killed before it handed back a model: nothing replaced
        the model), the model the explorer keeps runs on the image again, so the view shows
        that model's own result, not the dead run's last preview."""
        if self.state.result_is_preview and self._request == self._preview_request:
            self.run_inference()

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the running load or inference has returned (True) or ``msecs`` passed."""
        return self.queue.wait(msecs)

    def shutdown(self, msecs: int = 30000) -> bool:
        """Drop the waiting work, cancel the running one and wait for it (before closing)."""
        self.queue.cancel_all()
        with self._inference_lock:
            self._next_inference, self._inference_waiting = None, False
        for job in (self.dataset_job, self.export_job):  # neither can stop halfway: waited for
            if job is not None:
                job.wait(msecs)
        return self.queue.wait(msecs)
