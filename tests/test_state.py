"""The application state on its own: signals only on real change, the rules a setter keeps."""

import numpy as np
import pytest
import torch
from PySide6.QtCore import QObject, Signal

from detr_core.analysis.capture import run_inference
from detr_core.config import DETRConfig, LossConfig, TrainConfig
from detr_core.data.toy import ToyShapes
from detr_core.model.detr import DETR
from explorer.state import (
    MODE_CROSS,
    MODE_ENCODER,
    AppState,
    DataSource,
    LoadedModel,
    TrainingSession,
)

SMALL = DETRConfig(backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
                   num_decoder_layers=2, dim_feedforward=64, num_queries=8, num_classes=3, dropout=0.0,
                   image_min_size=128, image_max_size=256)
NAMES = ["rectangle", "ellipse", "triangle"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DETR(SMALL).eval()


@pytest.fixture(scope="module")
def image():
    return ToyShapes(seed=1).sample(0).image


@pytest.fixture(scope="module")
def result(model, image):
    return run_inference(model, image, NAMES, capture=True)


def _record(state):
    """Every signal the state emits, in order, as (name, value)."""
    seen = []
    for name in ("modelChanged", "dataSourceChanged", "imageChanged", "resultChanged", "selectedQueryChanged",
                 "visibleQueriesChanged", "thresholdChanged", "showDimmedChanged", "attentionModeChanged",
                 "layerChanged", "headChanged", "encoderPointChanged", "heatmapStyleChanged", "trainingChanged"):
        getattr(state, name).connect(lambda value, n=name: seen.append((n, value)))
    return seen


def test_setters_emit_only_on_a_real_change(qtbot):
    state = AppState()
    seen = _record(state)
    state.set_threshold(0.5)  # the default
    state.set_show_dimmed(False)
    state.set_attention_mode(MODE_CROSS)
    state.set_heatmap_style(opacity=0.55)
    assert seen == []
    state.set_threshold(0.3)
    state.set_threshold(0.3)
    assert seen == [("thresholdChanged", 0.3)]


def test_a_view_that_sets_what_it_follows_does_not_loop(qtbot):
    state = AppState()
    calls = []

    def follow(query):  # a view showing the selection and setting it back, as a careless one would
        calls.append(query)
        state.set_selected_query(query)

    state.selectedQueryChanged.connect(follow)
    state.set_selected_query(3)
    assert calls == [3]


def test_a_new_model_sets_its_data_source_first(qtbot, model):
    state = AppState()
    order = []
    state.dataSourceChanged.connect(lambda _: order.append(("data", state.model)))
    state.modelChanged.connect(lambda _: order.append(("model", state.data_source)))
    train = TrainConfig()
    loaded = LoadedModel(model, list(train.data.classes), "test")
    loaded.checkpoint = type("Ckpt", (), {"train_config": train})()
    state.set_model(loaded)
    assert order[0][0] == "data" and order[1] == ("model", state.data_source)
    assert state.data_source.data_config == train.data and state.data_source.loss_config == train.loss
    assert state.data_source.training_stream is not None
    # other classes than the toy data's: the data is unknown
    other = LoadedModel(model, ["a", "b", "c"], "test")
    other.checkpoint = loaded.checkpoint
    assert DataSource.for_model(other).data_config is None
    state.set_model(LoadedModel(model, NAMES, "explicit"), DataSource(loss_config=LossConfig(cost_class=3.0)))
    assert state.data_source.loss_config.cost_class == 3.0 and state.class_names == NAMES


def test_a_result_keeps_or_fixes_the_selection_ticks_and_layer(qtbot, model, image, result):
    state = AppState()
    state.set_image(image, "toy")
    seen = _record(state)
    state.set_result(result)
    names = [n for n, _ in seen]
    assert names[0] == "resultChanged"  # then what the result made consistent
    assert {"visibleQueriesChanged", "selectedQueryChanged", "layerChanged"} <= set(names)
    assert state.visible_queries.tolist() == (result.scores.numpy() >= state.threshold).tolist()  # ticked: drawn
    assert state.layer == result.num_layers - 1  # the last layer by default
    assert state.selected_query == int(result.scores.argmax())  # nothing above 0.5 yet
    state.set_selected_query(5)
    state.set_query_visible(2, False)
    state.set_layer(0)
    seen.clear()
    state.set_result(run_inference(model, image, NAMES, capture=True))  # e.g. a training preview
    assert [n for n, _ in seen] == ["resultChanged"]  # the same queries: nothing else moves
    assert state.selected_query == 5 and state.layer == 0 and not state.visible_queries[2]
    state.set_selected_query(SMALL.num_queries)  # not a query of this result: ignored
    state.set_layer(7)
    state.set_head(SMALL.nheads)
    assert state.selected_query == 5 and state.layer == 0 and state.head is None


def test_selecting_a_query_shows_its_attention_and_a_point_the_encoders(qtbot, result, image):
    state = AppState()
    state.set_image(image)
    state.set_result(result)
    state.set_encoder_point((10.0, 20.0))
    assert state.attention_mode == MODE_ENCODER and state.encoder_point == (10.0, 20.0)
    assert state.layer_count == SMALL.num_encoder_layers and state.layer == 0
    state.set_selected_query(state.selected_query)  # the same query, clicked again
    assert state.attention_mode == MODE_CROSS and state.layer_count == SMALL.num_decoder_layers
    state.set_image(image.copy())
    assert state.encoder_point is None  # a point of the old image means nothing


def test_shown_and_dimmed(qtbot, result, image):
    state = AppState()
    state.set_image(image)
    state.set_result(result)
    scores = result.scores.numpy()
    t = float(np.median(scores))
    state.set_threshold(t)
    state.set_query_visible(0, False)
    shown, dimmed = state.shown_and_dimmed()
    above = scores >= t
    assert shown.tolist() == (above & (np.arange(len(scores)) != 0)).tolist() and not dimmed.any()
    state.set_show_dimmed(True)
    shown, dimmed = state.shown_and_dimmed()
    assert shown.tolist() == [False] + [True] * (len(scores) - 1)
    assert dimmed.tolist() == (shown & ~above).tolist()
    assert state.kept_queries() == [q for q in result.kept(t) if q != 0]


class _FakeWorker(QObject):
    probed = Signal(str, object)

    def __init__(self):
        super().__init__()
        self.probes, self.updates, self.is_running, self.started_training = [], [], True, False

    def add_probe(self, name, probe, every):
        self.probes.append((name, probe, every))

    def update_probe(self, name, **attributes):
        self.updates.append((name, attributes))


def test_the_training_session_relays_probes_and_updates(qtbot):
    state = AppState()

    def add_probe(session):  # what a view does: before the run starts
        if session is not None:
            session.add_probe("p", object(), 3)

    state.trainingChanged.connect(add_probe)
    results = []
    state.probed.connect(lambda name, value: results.append((name, value)))
    first, second = _FakeWorker(), _FakeWorker()
    state.set_training(TrainingSession(first))
    assert [p[0] for p in first.probes] == ["p"] and state.training_running
    first.probed.emit("p", 1)
    state.update_probe("p", sample_index=4)
    assert first.updates == [("p", {"sample_index": 4})]
    state.set_training(TrainingSession(second))
    first.probed.emit("p", 2)  # the old run is no longer followed
    second.probed.emit("p", 3)
    assert results == [("p", 1), ("p", 3)]
    second.is_running = False
    assert not state.training_running
    state.set_training(None)
    state.update_probe("p", active=False)  # nothing to update: no error
    assert second.updates == []
