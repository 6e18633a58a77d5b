"""Expected errors stay short (pytest-qt, offscreen): the training process prints one line for a
refused input (a dataset folder that vanished) and a traceback only for a bug, and a long message
in a panel wraps: it never widens its dock or squeezes the Queries column."""

import multiprocessing
import pickle
import signal

import pytest
from conftest import shown_window

from detr_core.config import DatasetConfig, DETRConfig, TrainConfig
from detr_core.train.live import LiveJob, _child_main

pytestmark = pytest.mark.usefixtures("no_blocking_questions")

SMALL = DETRConfig(backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
                   num_decoder_layers=2, dim_feedforward=64, num_queries=6, num_classes=3, dropout=0.0,
                   image_min_size=64, image_max_size=64)


class _Bug:
    """A job with a bug in it."""

    def run(self, send, control, inbox):
        return {}["missing key"]


def _run_child_main(job) -> tuple[str, str]:
    """``_child_main`` (the training process's body) run here: (its failure message, stderr is
    read by the caller)."""
    events_recv, events_send = multiprocessing.Pipe(duplex=False)
    commands_recv, commands_send = multiprocessing.Pipe(duplex=False)
    previous = signal.getsignal(signal.SIGINT)
    try:
        _child_main(events_send, commands_recv, job, 0)
    finally:
        signal.signal(signal.SIGINT, previous)
        commands_send.close()  # its command listener ends
    kind, message = pickle.loads(events_recv.recv_bytes())
    assert kind == "failed"
    return message


def test_a_dataset_folder_that_vanished_is_one_line_from_the_training_process(tmp_path, capfd):
    folder = tmp_path / "coco"
    folder.mkdir()
    folder.rmdir()  # gone before the run reads it
    train = TrainConfig(batch_size=2, steps=2, threads=1, dataset=DatasetConfig(source=f"coco:{folder}"))
    message = _run_child_main(LiveJob(SMALL, train))
    err = capfd.readouterr().err
    assert str(folder) in message and "no such folder" in message
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"detr-training: {message}"]


def test_a_bug_in_the_training_process_still_prints_its_traceback(capfd):
    message = _run_child_main(_Bug())
    err = capfd.readouterr().err
    assert "unexpected error" in message and "KeyError" in message
    assert "Traceback" in err and "missing key" in err


# --- a long message wraps ---------------------------------------------------------------------------
LONG = ("Training could not go on: /data/gone/" + "very_long_folder_name_" * 6 + "train2017: no such folder. "
        + "The dataset was moved or deleted while the run was reading it; open it again. " * 30)[:2000]


@pytest.fixture
def window(qtbot, settings):
    w = shown_window(qtbot, settings)
    w.build_views()
    yield w
    w.controller.wait(10000)


def _widths(qtbot, window, dock, panel):
    qtbot.wait(250)  # the layouts settle (a workspace just shown settles its docks in a few passes)
    return window.minimumSizeHint().width(), window.queries_dock.width(), dock.width(), panel.width()


@pytest.mark.parametrize("where", ["training", "datasets", "counting", "specialization"])
def test_a_2000_character_error_wraps_and_widens_nothing(qtbot, window, where):
    assert len(LONG) == 2000
    dock, panel = window.workspaces.show_dock(where), getattr(window, where)
    before = _widths(qtbot, window, dock, panel)
    if where == "training":
        panel.failed.emit(LONG)
        label = panel.error_label
    else:
        panel.show_error(LONG)
        label = panel.progress_label
    after = _widths(qtbot, window, dock, panel)
    assert after[0] <= before[0], "the window's minimum width grew"
    assert after[1:3] == before[1:3], "a dock changed width"
    assert after[3] <= before[3], "the panel widened"  # (narrower by a scroll bar, where the dock is short)
    assert label.text() == LONG and label.isVisibleTo(window) and label.wordWrap()
    assert label.height() > 3 * label.fontMetrics().height()  # wrapped over lines, not cut off
