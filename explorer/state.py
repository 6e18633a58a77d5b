"""The explorer's one application state: what is loaded, what is shown, what is selected.

Views read it and render; what a user does in a view becomes a call to one of its setters.
Every field has its own changed-signal, emitted on the GUI thread and only when the value really
changed, so a view that both sets a field and follows it never loops (ndv's model, napari's layer
events). A setter may keep the state consistent (a new image's result selects its best query,
moving the threshold ticks the queries it lets through, selecting a query shows its
cross-attention); it assigns every field first and then emits, so each signal's listeners see the
whole new state.

    state.modelChanged.connect(view.on_model)  # the view then reads state.model, state.data_source
    state.set_selected_query(3)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Signal, SignalInstance

from detr_core.analysis.capture import CROSS_FULL, CROSS_PARTS, InferenceResult
from detr_core.analysis.matching import training_stream
from detr_core.checkpoint import Checkpoint
from detr_core.config import DETRConfig, LossConfig, ToyDataConfig, TrainConfig
from detr_core.data.toy import ToyShapes
from detr_core.model.detr import DETR

if TYPE_CHECKING:
    from detr_core.train.live import Probe

    from .dataset_session import OpenedDataset
    from .training_worker import TrainedModel

MODE_NONE, MODE_CROSS, MODE_ENCODER = "none", "cross", "encoder"  # what the heatmap shows
TICK_AUTO = -1  # a query's row that the threshold ticks (the user has not ticked or unticked it)
# the state's one-value signals and their fields, in the order a new listener is told them
REPLAYED = (
    ("modelChanged", "_model"), ("dataSourceChanged", "_data_source"), ("datasetChanged", "_dataset"),
    ("imageChanged", "_image"), ("resultChanged", "_result"), ("selectedQueryChanged", "_selected_query"),
    ("visibleQueriesChanged", "_visible_queries"), ("thresholdChanged", "_threshold"),
    ("showDimmedChanged", "_show_dimmed"), ("attentionModeChanged", "_attention_mode"),
    ("layerChanged", "_layer"), ("headChanged", "_head"), ("crossPartChanged", "_cross_part"),
    ("encoderPointChanged", "_encoder_point"),
    ("heatmapStyleChanged", "_heatmap_style"), ("trainingChanged", "_training"),
)


class _RecordingSignal:
    """A signal instance that also notes who connects to it (see replaying_to_new_listeners)."""

    def __init__(self, signal: SignalInstance, record: list) -> None:
        self._signal = signal
        self._record = record

    def connect(self, slot: Callable, *args: Any, **kwargs: Any) -> Any:
        self._record.append((slot, args, kwargs))
        return self._signal.connect(slot, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._signal, name)


class LoadedModel:
    """The model shown in the explorer and where it came from."""

    def __init__(self, model: DETR, class_names: list[str], source: str, path: Path | None = None,
                 checkpoint: Checkpoint | None = None, trained: TrainedModel | None = None) -> None:
        self.model = model
        self.class_names = list(class_names)
        self.source = source
        self.path = path
        self.checkpoint = checkpoint
        self.trained = trained  # set when the weights come from a run in this session
        self.unsaved = trained is not None

    @property
    def config(self) -> DETRConfig:
        return self.model.config

    @property
    def train_config(self) -> TrainConfig | None:
        """How the weights were trained, when known (a run of this session or a checkpoint)."""
        if self.trained is not None:
            return self.trained.train_config
        return self.checkpoint.train_config if self.checkpoint is not None else None


@dataclass(frozen=True)
class DataSource:
    """The data the analyses use with the current model.

    ``data_config``: the toy data the model was trained on (None: unknown, the views use the
    default toy data); ``loss_config``: its matching costs; ``training_stream``: its training
    samples, which the matching view matches (None: the default training stream)."""

    data_config: ToyDataConfig | None = None
    loss_config: LossConfig | None = None
    training_stream: ToyShapes | None = None

    @classmethod
    def for_model(cls, loaded: LoadedModel) -> DataSource:
        """The data a model was trained on, when its classes are the toy data's."""
        tc = loaded.train_config
        if tc is None:
            return cls()
        data = tc.data if list(tc.data.classes) == loaded.class_names else None
        return cls(data, tc.loss, training_stream(tc) if data is not None else None)


@dataclass(frozen=True)
class HeatmapStyle:
    colormap: str = "inferno"
    opacity: float = 0.55  # 0 to 1
    smooth: bool = True  # bilinear upsampling of the attention grid


class TrainingSession(QObject):
    """The running training job as the views see it: probes that run with the live model in the
    training process and whose CPU results come back through ``probed``."""

    probed = Signal(str, object)  # (probe name, its result)

    def __init__(self, worker: Any, parent: QObject | None = None) -> None:  # a TrainingWorker
        super().__init__(parent)
        self._worker = worker
        worker.probed.connect(self.probed)

    @property
    def is_running(self) -> bool:
        return self._worker.is_running

    @property
    def started_training(self) -> bool:
        return bool(self._worker.started_training)

    def add_probe(self, name: str, probe: Probe, every_steps: int = 1) -> None:
        """Before the run starts (``trainingChanged`` is emitted before it does)."""
        self._worker.add_probe(name, probe, every_steps)

    def update_probe(self, name: str, **attributes: Any) -> None:
        """Change a probe here and in the running process (between its steps)."""
        self._worker.update_probe(name, **attributes)


def _same(a: object, b: object) -> bool:
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, (InferenceResult, LoadedModel)) or isinstance(b, (InferenceResult, LoadedModel)):
        return False  # compared by identity only
    return bool(a == b)


class AppState(QObject):
    """What the explorer shows. Read the properties; change them with the setters."""

    modelChanged = Signal(object)  # LoadedModel | None (the data source is already set)
    modelSaved = Signal(object)  # LoadedModel: its path or its unsaved mark changed
    dataSourceChanged = Signal(object)  # DataSource
    datasetChanged = Signal(object)  # OpenedDataset | None: the dataset opened with File > Open Dataset
    imageChanged = Signal(object)  # [H, W, 3] uint8 | None; image_name is set with it
    resultChanged = Signal(object)  # InferenceResult | None, of the current image
    selectedQueryChanged = Signal(object)  # int | None
    visibleQueriesChanged = Signal(object)  # [Q] bool: the queries ticked in the table, whose boxes are drawn
    thresholdChanged = Signal(float)
    showDimmedChanged = Signal(bool)  # also draw the queries below the threshold, dimmed
    attentionModeChanged = Signal(str)  # MODE_CROSS, MODE_ENCODER or MODE_NONE
    layerChanged = Signal(int)  # the layer whose attention is shown (decoder or encoder, by mode)
    headChanged = Signal(object)  # int | None (None = mean over heads)
    crossPartChanged = Signal(str)  # CROSS_FULL, CROSS_CONTENT or CROSS_SPATIAL: which cross-attention map
    encoderPointChanged = Signal(object)  # (y, x) image pixels | None
    heatmapStyleChanged = Signal(object)  # HeatmapStyle
    trainingChanged = Signal(object)  # TrainingSession | None, before the run starts
    probed = Signal(str, object)  # a probe's result from the current training session

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._model: LoadedModel | None = None
        self._data_source = DataSource()
        self._dataset: OpenedDataset | None = None
        self._image: np.ndarray | None = None
        self._image_name = ""
        self._image_id = 0
        self._result: InferenceResult | None = None
        self._result_is_preview = False
        self._selected_query: int | None = None
        # (image id, model number) of the last result and of the last query chosen: numbers, not
        # the models, so a model let go of is freed
        self._model_number = 0
        self._result_of: tuple[int, int] | None = None
        self._selection_for: tuple[int, int] | None = None
        # the ticks: a query's box is drawn iff its row is ticked. A row follows the threshold (and
        # "show the no-object slots") until the user ticks or unticks it; then it keeps the user's
        # choice until "Above threshold" or a new image: TICK_AUTO, else 1 (ticked) or 0.
        self._user_ticks = np.zeros(0, np.int8)
        self._visible_queries = np.zeros(0, bool)  # the ticks, derived from the above
        self._threshold = 0.5
        self._show_dimmed = False
        self._attention_mode = MODE_CROSS
        self._layer = -1  # -1: the last layer, once a result says how many there are
        self._head: int | None = None
        self._cross_part = CROSS_FULL
        self._encoder_point: tuple[float, float] | None = None
        self._heatmap_style = HeatmapStyle()
        self._training: TrainingSession | None = None
        self._initial = {field: getattr(self, field) for _, field in REPLAYED}

    # --- the mechanism ---------------------------------------------------------------------
    @contextmanager
    def replaying_to_new_listeners(self) -> Iterator[None]:
        """Views built inside this block are told the current state as they would have been had
        they existed from the start: each field that changed since then is sent, once, to each
        slot connected to its signal inside the block (only to those: the rest of the window
        already knows). Used to build views after the first result is on screen."""
        recorded: dict[str, list[tuple[Callable, tuple, dict]]] = {name: [] for name, _ in REPLAYED}
        for name, _ in REPLAYED:
            setattr(self, name, _RecordingSignal(getattr(self, name), recorded[name]))
        try:
            yield
        finally:
            for name, _ in REPLAYED:
                delattr(self, name)  # the class's signal shows through again
        for name, field in REPLAYED:
            value = getattr(self, field)
            if _same(value, self._initial[field]):
                continue
            for slot, _args, _kwargs in recorded[name]:
                slot(value)

    def _assign(self, field: str, value: object, signal: SignalInstance, pending: list) -> None:
        """Set a field; queue its signal if the value really changed."""
        if _same(getattr(self, field), value):
            return
        setattr(self, field, value)
        pending.append((signal, value))

    @staticmethod
    def _emit(pending: list) -> None:
        for signal, value in pending:
            signal.emit(value)

    def _set(self, field: str, value: object, signal: SignalInstance) -> None:
        pending: list = []
        self._assign(field, value, signal, pending)
        self._emit(pending)

    # --- the model and its data --------------------------------------------------------------
    @property
    def model(self) -> LoadedModel | None:
        return self._model

    @property
    def class_names(self) -> list[str]:
        return self._model.class_names if self._model is not None else []

    @property
    def data_source(self) -> DataSource:
        return self._data_source

    def set_model(self, loaded: LoadedModel | None, data_source: DataSource | None = None) -> None:
        """A new model (its data source: what it was trained on unless given)."""
        if data_source is None:
            data_source = DataSource.for_model(loaded) if loaded is not None else DataSource()
        pending: list = []
        self._assign("_data_source", data_source, self.dataSourceChanged, pending)
        if loaded is not self._model:
            self._model_number += 1
        self._assign("_model", loaded, self.modelChanged, pending)
        self._emit(pending)

    def set_data_source(self, data_source: DataSource) -> None:
        self._set("_data_source", data_source, self.dataSourceChanged)

    @property
    def dataset(self) -> OpenedDataset | None:
        """The open COCO or VOC dataset (None: the views use toy shapes)."""
        return self._dataset

    def set_dataset(self, dataset: OpenedDataset | None) -> None:
        if dataset is not self._dataset:
            self._dataset = dataset
            self.datasetChanged.emit(dataset)

    def mark_saved(self, path: Path) -> None:
        """The model was written to ``path``."""
        if self._model is None:
            return
        self._model.path = Path(path)
        self._model.unsaved = False
        self.modelSaved.emit(self._model)

    # --- the image and its result --------------------------------------------------------------
    @property
    def image(self) -> np.ndarray | None:
        """[H, W, 3] uint8."""
        return self._image

    @property
    def image_name(self) -> str:
        return self._image_name

    @property
    def image_id(self) -> int:
        """Which image this is: a new number for every image set, even one equal to the last (two
        toy images are the same size, so a result's size cannot tell them apart)."""
        return self._image_id

    def set_image(self, rgb: np.ndarray | None, name: str = "") -> None:
        """A new image (the previous result stays until the model has run on this one)."""
        if rgb is self._image and name == self._image_name:
            return
        pending: list = []
        self._image, self._image_name = rgb, name
        self._image_id += 1
        pending.append((self.imageChanged, rgb))
        self._assign("_encoder_point", None, self.encoderPointChanged, pending)
        self._emit(pending)

    @property
    def result(self) -> InferenceResult | None:
        return self._result

    @property
    def result_is_preview(self) -> bool:
        """The result comes from the weights of a training run, not the explorer's model."""
        return self._result_is_preview

    def set_result(self, result: InferenceResult | None, preview: bool = False) -> None:
        """A new result of the current image. The first result of a new image (or model) selects
        its best-scoring query (unless a query was chosen for this image before its result came,
        as the doctor's "show in image view" does) and lets the threshold tick every row: slot numbers of another
        image are other objects. A result of the same image (a training preview) keeps the
        selection and the user's ticks while the number of queries is unchanged."""
        if result is self._result:
            return
        self._result = result
        self._result_is_preview = preview
        pending: list = [(self.resultChanged, result)]
        if result is not None:
            n = result.num_queries
            new_image = self._result_of != (self._image_id, self._model_number)
            self._result_of = (self._image_id, self._model_number)
            if new_image or len(self._user_ticks) != n:
                self._user_ticks = np.full(n, TICK_AUTO, np.int8)
            self._assign_ticks(pending)
            chosen = self._selection_for == self._result_of  # picked for this image before its result
            if (new_image and not chosen) or self._selected_query is None or self._selected_query >= n:
                self._assign("_selected_query", int(result.scores.argmax()), self.selectedQueryChanged, pending)
            self._clamp_layer_and_head(pending)
            if not result.has_cross_parts:  # a model without the split shows the whole map
                self._assign("_cross_part", CROSS_FULL, self.crossPartChanged, pending)
        self._emit(pending)

    # --- selection -----------------------------------------------------------------------------
    @property
    def selected_query(self) -> int | None:
        return self._selected_query

    def set_selected_query(self, query: int | None) -> None:
        """Select a query and show its cross-attention; a query the result does not have is
        ignored."""
        if query is not None and self._result is not None and not 0 <= query < self._result.num_queries:
            return
        pending: list = []
        self._selection_for = (self._image_id, self._model_number)  # the image (and model) it was chosen for
        self._assign("_selected_query", None if query is None else int(query), self.selectedQueryChanged, pending)
        if query is not None:
            self._assign_mode(MODE_CROSS, pending)
        self._emit(pending)

    @property
    def visible_queries(self) -> np.ndarray:
        """[Q] bool: the ticked queries, whose boxes are drawn (a copy)."""
        return self._visible_queries.copy()

    @property
    def user_ticks(self) -> np.ndarray:
        """[Q] int8: the user's own tick of each query (1 or 0), or TICK_AUTO (a copy)."""
        return self._user_ticks.copy()

    def set_visible_queries(self, mask: np.ndarray) -> None:
        """Tick exactly ``mask`` ([Q] bool, e.g. All or None): the threshold no longer moves them."""
        mask = np.asarray(mask, dtype=bool)
        if self._result is not None and len(mask) != self._result.num_queries:
            return
        self._set_user_ticks(mask.astype(np.int8))

    def set_query_visible(self, query: int, visible: bool) -> None:
        """Tick or untick one query: its box is drawn (or not) whatever its score."""
        ticks = self.user_ticks
        if 0 <= query < len(ticks):
            ticks[query] = int(bool(visible))
            self._set_user_ticks(ticks)

    def tick_by_threshold(self) -> None:
        """Forget the user's ticks: the queries at or above the threshold are ticked."""
        self._set_user_ticks(np.full(len(self._user_ticks), TICK_AUTO, np.int8))

    def _set_user_ticks(self, ticks: np.ndarray) -> None:
        self._user_ticks = ticks
        pending: list = []
        self._assign_ticks(pending)
        self._emit(pending)

    def _assign_ticks(self, pending: list) -> None:
        """The ticks from the user's, the threshold and "show the no-object slots"."""
        if self._result is None or len(self._user_ticks) != self._result.num_queries:
            ticks = self._user_ticks == 1
        else:
            auto = self._above_threshold() | self._show_dimmed
            ticks = np.where(self._user_ticks == TICK_AUTO, auto, self._user_ticks == 1)
        self._assign("_visible_queries", ticks, self.visibleQueriesChanged, pending)

    def _above_threshold(self) -> np.ndarray:
        return self._result.scores.numpy() >= self._threshold if self._result is not None else np.zeros(0, bool)

    @property
    def threshold(self) -> float:
        return self._threshold

    def set_threshold(self, threshold: float) -> None:
        """Rows the user has not ticked or unticked follow the threshold."""
        pending: list = []
        self._assign("_threshold", float(threshold), self.thresholdChanged, pending)
        self._assign_ticks(pending)
        self._emit(pending)

    @property
    def show_dimmed(self) -> bool:
        return self._show_dimmed

    def set_show_dimmed(self, on: bool) -> None:
        """Also tick (and draw, dimmed) the queries below the threshold the user has not unticked."""
        pending: list = []
        self._assign("_show_dimmed", bool(on), self.showDimmedChanged, pending)
        self._assign_ticks(pending)
        self._emit(pending)

    def shown_and_dimmed(self) -> tuple[np.ndarray, np.ndarray]:
        """[Q] bool each: which boxes to draw (the ticked ones), and which of those faintly: the
        ones below the threshold that only "show the no-object slots" ticked."""
        if self._result is None:
            return np.zeros(0, bool), np.zeros(0, bool)
        shown = self._visible_queries.copy()
        return shown, shown & ~self._above_threshold() & (self._user_ticks != 1)

    def kept_queries(self) -> list[int]:
        """The queries drawn in full (ticked, and above the threshold or ticked by the user), best
        first."""
        if self._result is None:
            return []
        shown, dimmed = self.shown_and_dimmed()
        kept = np.flatnonzero(shown & ~dimmed).tolist()
        scores = self._result.scores
        return sorted(kept, key=lambda q: -float(scores[q]))

    # --- what the heatmap shows ----------------------------------------------------------------
    @property
    def attention_mode(self) -> str:
        return self._attention_mode

    def set_attention_mode(self, mode: str) -> None:
        pending: list = []
        self._assign_mode(mode, pending)
        self._emit(pending)

    def _assign_mode(self, mode: str, pending: list) -> None:
        if mode not in (MODE_CROSS, MODE_ENCODER, MODE_NONE):
            raise ValueError(f"unknown attention mode {mode!r}")
        self._assign("_attention_mode", mode, self.attentionModeChanged, pending)
        self._clamp_layer_and_head(pending)

    @property
    def layer_count(self) -> int:
        """Layers to choose from: the result's encoder layers in encoder mode, else its decoder
        layers (0 without a result)."""
        r = self._result
        if r is None:
            return 0
        if self._attention_mode == MODE_ENCODER:
            return 0 if r.encoder_queries is None else int(r.encoder_queries.shape[0])
        return r.num_layers

    @property
    def layer(self) -> int:
        """The layer shown (0-based); -1 before the first result (then: the last layer)."""
        return self._layer

    def set_layer(self, layer: int) -> None:
        if self._result is not None and not 0 <= layer < self.layer_count:
            return
        self._set("_layer", int(layer), self.layerChanged)

    @property
    def head(self) -> int | None:
        """The attention head shown; None = mean over heads."""
        return self._head

    def set_head(self, head: int | None) -> None:
        if head is not None and self._result is not None and not 0 <= head < self._result.num_heads:
            return
        self._set("_head", None if head is None else int(head), self.headChanged)

    @property
    def cross_part(self) -> str:
        """Which decoder cross-attention map is shown: the whole map (CROSS_FULL), or, for models
        whose attention splits so (Conditional DETR, DAB-DETR), its content or spatial-query map."""
        return self._cross_part

    def set_cross_part(self, part: str) -> None:
        if part not in CROSS_PARTS:
            raise ValueError(f"unknown part of the cross-attention {part!r}")
        if part != CROSS_FULL and self._result is not None and not self._result.has_cross_parts:
            return
        self._set("_cross_part", part, self.crossPartChanged)

    def _clamp_layer_and_head(self, pending: list) -> None:
        """Keep the layer and head choices when they still exist; else the last layer, the mean."""
        if self._result is None:
            return
        n = self.layer_count
        if n and not 0 <= self._layer < n:
            self._assign("_layer", n - 1, self.layerChanged, pending)
        if self._head is not None and self._head >= self._result.num_heads:
            self._assign("_head", None, self.headChanged, pending)

    @property
    def encoder_point(self) -> tuple[float, float] | None:
        """(y, x) image pixels of the encoder token whose self-attention is shown."""
        return self._encoder_point

    def set_encoder_point(self, point: tuple[float, float] | None) -> None:
        """Show the encoder self-attention at ``point`` (switches the heatmap to it)."""
        pending: list = []
        self._assign("_encoder_point", None if point is None else (float(point[0]), float(point[1])),
                     self.encoderPointChanged, pending)
        if point is not None:
            self._assign_mode(MODE_ENCODER, pending)
        self._emit(pending)

    @property
    def heatmap_style(self) -> HeatmapStyle:
        return self._heatmap_style

    def set_heatmap_style(self, **changes: Any) -> None:
        """Change some of colormap, opacity, smooth."""
        self._set("_heatmap_style", replace(self._heatmap_style, **changes), self.heatmapStyleChanged)

    # --- training --------------------------------------------------------------------------------
    @property
    def training(self) -> TrainingSession | None:
        """The latest training session (running or finished), if any."""
        return self._training

    @property
    def training_running(self) -> bool:
        return self._training is not None and self._training.is_running

    def set_training(self, session: TrainingSession | None) -> None:
        """A new training session, before its run starts: views add their probes on
        ``trainingChanged``; its probe results are re-emitted as ``probed``."""
        if session is self._training:
            return
        old, self._training = self._training, session
        if old is not None:
            old.probed.disconnect(self.probed)
            old.deleteLater()  # the state owns its sessions
        if session is not None:
            session.setParent(self)
            session.probed.connect(self.probed)
        self.trainingChanged.emit(session)

    def update_probe(self, name: str, **attributes: Any) -> None:
        """Change a probe of the current training session (nothing without one)."""
        if self._training is not None:
            self._training.update_probe(name, **attributes)
