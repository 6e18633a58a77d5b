"""Datasets in the window: File > Open Dataset (off the GUI thread), the dataset browser (counts,
TP / FP / missed at IoU 0.5, sort by errors, filter by class), bad input that leaves the window as
it was, and training on the open dataset."""

import json

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings

from detr_core.analysis.image_errors import FP, IGNORED, TP, match_image
from detr_core.data.export import write_toy_dataset
from explorer.dataset_session import open_path, source_for_path
from explorer.main_window import BUNDLED_CHECKPOINT, MainWindow
from explorer.views.datasets import COLORS, FOUND, MISSED

pytestmark = pytest.mark.usefixtures("no_blocking_questions")


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("coco") / "toy", train=6, val=6, fmt="coco")


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("voc") / "toy", train=3, val=3, fmt="voc")



@pytest.fixture
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, checkpoint=BUNDLED_CHECKPOINT, runs_folder=tmp_path / "runs")
    qtbot.addWidget(w)
    w.resize(1366, 768)
    w.show()
    qtbot.waitUntil(lambda: w.state.result is not None, timeout=20000)
    yield w
    if w.views_built:  # (asking for a view builds them all: a second or so, for nothing)
        if w.training.is_running:
            w.training.stop(wait_ms=30000)
        w.datasets.cancel_job()
        w.datasets.wait_job(10000)
    w.controller.wait(10000)


def _open(qtbot, window, path):
    with qtbot.waitSignal(window.state.datasetChanged, timeout=20000):
        assert window.open_dataset(path)
    qtbot.waitUntil(lambda: bool(window.datasets.errors), timeout=20000)  # the model ran over the split


# --- the core's per-image matching --------------------------------------------------------------
def test_match_image_against_brute_force():
    gt_labels = np.array([0, 0, 1])
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.1, 0.95])
    labels = torch.tensor([0, 0, 1, 0, 1, 2])
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60], [41, 41, 50, 50],
                          [0, 0, 10, 10], [40, 40, 50, 50]], dtype=torch.float32)
    e = match_image(gt_labels, gt, scores, labels, boxes, threshold=0.5,
                    ignored_labels=np.array([0]), ignored_xyxy=np.array([[40, 40, 50, 50]], np.float32))
    # by score: class 2 (no such object: FP), the first class-0 box (TP), its near copy (duplicate:
    # FP), class 1 far away (FP), the box on the ignored region (neither); the 0.1 box is not kept
    assert e.status.tolist() == [FP, TP, FP, FP, IGNORED]
    assert e.gt_found.tolist() == [True, False, False]
    assert (e.tp, e.fp, e.missed, e.errors) == (1, 3, 2, 5)
    # AP50 over all queries: class 0 finds 1 of 2 at precision 1 (0.5); class 1 finds its object
    # at rank 2 (precision 1/2, recall 1): 0.5
    assert e.ap50 == pytest.approx(0.5)


def test_source_for_path(coco_root, voc_root, tmp_path):
    assert source_for_path(coco_root) == f"coco:{coco_root}"
    assert source_for_path(voc_root) == f"voc:{voc_root}"
    ann = coco_root / "annotations" / "instances_val2017.json"
    assert source_for_path(ann) == f"coco:{coco_root / 'val2017'},{ann}"
    assert len(open_path(ann).splits["val"]) == 6


# --- the window ----------------------------------------------------------------------------------
def test_open_browse_sort_filter(qtbot, window, coco_root):
    _open(qtbot, window, coco_root)
    browser = window.datasets
    opened = window.state.dataset
    assert set(opened.splits) == {"train", "val"} and browser.split.currentText() == "val"
    assert str(coco_root) in window.recent_files()
    assert browser.table.rowCount() == 6
    data = browser.dataset
    counts = {browser.table.item(r, 0).text(): int(browser.table.item(r, 1).text()) for r in range(6)}
    assert counts == {r.path.name: len(r.labels) for r in data.records}
    assert browser.class_filter.count() == 1 + len(opened.class_names)  # names from the dataset

    # each image: the boxes drawn are the matcher's TP / FP / missed, and the bundled model finds shapes
    total_tp = 0
    for index in range(6):
        browser.select_index(index)
        e = browser.errors[index]
        assert e.tp + e.missed == len(data.records[index].labels)
        assert browser.prediction.counts.get(COLORS[TP], 0) == e.tp
        assert browser.prediction.counts.get(COLORS[FP], 0) == e.fp
        assert browser.ground_truth.counts.get(MISSED, 0) == e.missed
        assert browser.ground_truth.counts.get(FOUND, 0) == e.tp
        total_tp += e.tp
    assert total_tp >= 6  # a trained model: most shapes found

    browser.sort.setCurrentText("most errors first")
    errors = [browser.errors[browser.table.item(r, 0).data(256)].errors for r in range(6)]
    assert errors == sorted(errors, reverse=True)
    assert int(browser.table.item(0, 3).text()) + int(browser.table.item(0, 4).text()) == errors[0]

    name = opened.class_names[0]
    browser.class_filter.setCurrentText(name)
    shown = [browser.table.item(r, 0).data(256) for r in range(browser.table.rowCount())]
    assert shown == [i for i in browser.rows()]
    assert all((data.records[i].labels == 0).any() or (browser.errors[i].labels == 0).any() for i in shown)

    # the threshold re-matches without running the model again
    window.state.set_threshold(0.99)
    assert sum(e.fp for e in browser.errors.values()) <= sum(1 for _ in browser.errors)
    browser.select_index(shown[0])
    with qtbot.waitSignal(window.state.imageChanged, timeout=5000):
        browser.show_button.click()
    assert window.state.image_name == data.records[shown[0]].path.name

    # a model of other classes: its predictions are drawn but not scored, and the view says why
    from explorer.state import LoadedModel

    loaded = window.state.model
    window.state.set_model(LoadedModel(loaded.model, ["cat", "dog", "bird"], "other classes"))
    qtbot.waitUntil(lambda: not browser.comparable and bool(browser.errors), timeout=20000)
    assert "not scored" in browser.header.text() and browser.table.item(0, 2).text() == ""


def test_voc_and_broken_datasets(qtbot, window, voc_root, coco_root, tmp_path):
    """A broken dataset shows a message and keeps the open one; a partly broken one opens."""
    with qtbot.waitSignal(window.state.datasetChanged, timeout=20000):
        window.open_path(voc_root)  # what dropping the folder and Open Recent do
    qtbot.waitUntil(lambda: bool(window.datasets.errors), timeout=20000)
    before = window.state.dataset
    assert window.datasets.table.rowCount() == 3
    broken = tmp_path / "broken"
    (broken / "annotations").mkdir(parents=True)
    (broken / "train2017").mkdir()
    (broken / "annotations" / "instances_train2017.json").write_text('{"images": [}')
    with qtbot.waitSignal(window.errorShown, timeout=10000) as blocker:
        window.open_dataset(broken)
    assert "instances_train2017.json" in blocker.args[0]
    assert window.state.dataset is before and window.datasets.table.rowCount() == 3
    with qtbot.waitSignal(window.errorShown, timeout=10000) as blocker:
        window.open_dataset(tmp_path)  # neither layout
    assert "neither a COCO folder" in blocker.args[0]
    assert window.state.dataset is before

    # a partly broken dataset opens with what is usable and says what was skipped
    import shutil

    root = tmp_path / "partly"
    shutil.copytree(coco_root, root)
    ann = root / "annotations" / "instances_val2017.json"
    data = json.loads(ann.read_text())
    data["annotations"][0]["bbox"][2] = -3  # negative width
    data["annotations"].append({**data["annotations"][1], "id": 999, "category_id": 77})  # unknown class
    ann.write_text(json.dumps(data))
    (root / "val2017" / data["images"][-1]["file_name"]).unlink()  # a missing image
    with qtbot.waitSignal(window.state.datasetChanged, timeout=20000):
        window.open_dataset(root)
    qtbot.waitUntil(lambda: window.files.dataset_box is not None, timeout=5000)
    text = window.files.dataset_box.informativeText()
    assert "instances_val2017.json" in text or "val2017" in text
    assert "negative" in text and "77" in text
    assert window.datasets.split.currentText() == "val" and len(window.datasets.dataset) == 5
    window.files.dataset_box.close()


def test_training_panel_and_views_on_the_open_dataset(qtbot, window, coco_root):
    """The panel's run on the open dataset, two steps in this process (the child process adds only
    its start-up, which the live tests cover): the train split, held-out AP on the val split,
    fine-tuning from the open model. The analysis views say which data they use."""
    import dataclasses

    from detr_core.train.live import LiveJob, run_job
    from detr_core.train.trainer import TrainControl

    assert window.counting.data_note.text().startswith("Data: toy shapes drawn")
    with qtbot.waitSignal(window.state.datasetChanged, timeout=20000):
        window.open_dataset(coco_root)
    for view in (window.counting, window.matching, window.layers):
        assert coco_root.name in view.data_note.text() and view.source.currentIndex() == 1
    spec = window.specialization
    assert coco_root.name in spec.data_note.text() and spec.source.currentIndex() == 1
    spec.num_images.setValue(4)
    with qtbot.waitSignal(spec.jobFinished, timeout=30000):
        assert spec.run()
    assert spec.predictions is not None and spec.predictions.scores.shape[0] == 4

    panel = window.training
    assert coco_root.name in panel.data_label.text()
    for widget, value in ((panel.batch, 2), (panel.queries, 8), (panel.enc_layers, 1), (panel.dec_layers, 1),
                          (panel.eval_every, 2)):
        widget.setValue(value)
    panel.d_model.setCurrentText("32")
    model_cfg, train_cfg, weights = panel._run_configs()  # from scratch: the panel's model
    assert (model_cfg.d_model, model_cfg.num_queries, weights) == (32, 8, None)
    assert train_cfg.dataset.source == f"coco:{coco_root}"
    assert model_cfg.num_classes == len(window.state.dataset.class_names)
    panel.start_from.setCurrentIndex(1)
    assert "Fine-tuning from toy_shapes.pt" in panel.data_label.text()
    model_cfg, train_cfg, weights = panel._run_configs()
    assert model_cfg.d_model == window.state.model.config.d_model  # the open model's architecture
    start = window.state.model.model.state_dict()
    assert weights.keys() == start.keys() and all(torch.equal(weights[k], start[k]) for k in start)
    sent = []
    job = LiveJob(model_cfg, dataclasses.replace(train_cfg, steps=2, max_seconds=None), initial_weights=weights)
    state = run_job(job, lambda kind, *payload: sent.append((kind, payload)), TrainControl())
    assert state.step == 2 and state.class_names == window.state.dataset.class_names
    evaluated = [p[0] for k, p in sent if k == "evaluated"]
    assert evaluated and "AP" in evaluated[-1].metrics


def test_matching_layers_and_counting_run_on_the_open_dataset(qtbot, window, coco_root):
    """Each view runs on the open dataset and shows data only it has: the matched image's file,
    id and boxes; AP per layer scored against its annotations; its images grouped by count."""
    from detr_core.analysis.evaluate import evaluate_model

    with qtbot.waitSignal(window.state.datasetChanged, timeout=20000):
        window.open_dataset(coco_root)
    opened = window.state.dataset
    train, val = opened.splits["train"], opened.splits["val"]

    # matching: images of the training split, the picker walks them
    m = window.matching
    assert m.on_open_dataset and f"{coco_root.name} · train" in m.data_note.text()
    assert m.sample_spin.maximum() == len(train) - 1
    m.set_sample_index(3)
    record = train.records[3]
    # (a compute asked for while one ran follows it: wait until the view has settled on sample 3)
    qtbot.waitUntil(lambda: m.snapshot is not None and m.snapshot.sample_index == 3 and not m.busy
                    and record.path.name in m.status.text(), timeout=20000)
    s = m.snapshot
    assert (s.image_name, s.image_id) == (record.path.name, record.image_id)
    assert s.target_labels.tolist() == record.labels.tolist()
    h, w = s.image_size  # resized as evaluation does: the same boxes, relative to the image
    scale = np.array([record.width, record.height] * 2, np.float32)
    assert np.allclose(s.target_boxes_xyxy() / np.array([w, h, w, h]), record.boxes_xyxy / scale, atol=0.02)
    m.source.setCurrentIndex(0)
    assert m.data_note.text().startswith("Data: toy shapes") and m.sample_spin.maximum() > len(train)
    qtbot.waitUntil(lambda: not m.busy, timeout=20000)

    # layer by layer: AP of every layer on the validation split, its last layer what evaluation says
    layers = window.layers
    assert layers.on_open_dataset and f"{coco_root.name} · val" in layers.data_note.text()
    layers.images_spin.setValue(6)
    with qtbot.waitSignal(layers.jobFinished, timeout=60000):
        assert layers.run_ap()
    rows = layers.ap_rows
    assert len(rows) == window.state.model.config.num_decoder_layers
    assert f"6 images of {coco_root.name}" in layers.ap_summary.text()
    assert rows[-1].ap == pytest.approx(evaluate_model(window.state.model.model, layers.file_dataset)["AP"], abs=1e-6)
    assert rows[-1].ap > 0  # the bundled model finds the shapes

    # counting: the validation images grouped by their ground-truth count
    counting = window.counting
    assert counting.on_open_dataset and "grouped by their ground-truth object count" in counting.data_note.text()
    assert counting.dataset_images.isVisibleTo(counting) and not counting.max_count.isVisibleTo(counting)
    with qtbot.waitSignal(counting.jobFinished, timeout=60000):
        assert counting.run()
    r = counting.result
    assert r.grouped and r.data_name.endswith("val")
    assert sorted((row.image_id, row.true_count) for row in r.rows) == sorted(
        (rec.image_id, len(rec.labels)) for rec in val.records)
    assert r.train_max_objects == max(len(rec.labels) for rec in train.records)
    assert [m.true_count for m in r.means()] == sorted({len(rec.labels) for rec in val.records})
    assert "grouped by their ground-truth object count" in counting.summary.text()
    assert all(row["data"].endswith("val") and "image_id" in row for row in counting.export_data())


def test_thumbnails_with_counts_and_the_toggle_kept(qtbot, window, coco_root):
    """Thumbnail mode: one thumbnail per image (made off the GUI thread) with its object count;
    clicking one selects the image; the list / thumbnails choice is kept in the settings."""
    from explorer.views.datasets import DatasetBrowser

    _open(qtbot, window, coco_root)
    browser = window.datasets
    data = browser.dataset
    assert not browser.thumbnail_mode and browser.pages.currentWidget() is browser.table
    assert not browser.thumb_icons  # none made in list mode
    browser.thumbs_button.click()
    assert browser.pages.currentWidget() is browser.thumbs
    assert window.settings.value("datasetBrowser/view") == "thumbnails"
    qtbot.waitUntil(lambda: len(browser.thumb_icons) == len(data), timeout=20000)
    assert browser.thumbs.count() == len(data)
    for index, record in enumerate(data.records):
        item = browser._thumb_items[index]
        assert record.path.name in item.text() and f"\n{len(record.labels)} object" in item.text()
        assert f"{browser.errors[index].errors} err" in item.text()
    # the thumbnail is the image, shrunk: its mean colour is the stored image's
    image = browser.thumb_icons[2].pixmap(96, 96).toImage()
    assert (image.width(), image.height()) == (96, 96)  # the toy images are square
    ptr = image.convertToFormat(image.Format.Format_RGB888)
    thumb = np.frombuffer(ptr.constBits(), np.uint8).reshape(96, ptr.bytesPerLine())[:, : 96 * 3].reshape(96, 96, 3)
    stored = data.sample(2).image
    assert np.abs(thumb.reshape(-1, 3).mean(0) - stored.reshape(-1, 3).mean(0)).max() < 8

    browser.thumbs.setCurrentItem(browser._thumb_items[3])
    assert browser.selected_index() == 3
    assert browser.gt_title.text().startswith(f"Ground truth: {len(data.records[3].labels)} objects")
    browser.sort.setCurrentText("most objects first")  # the thumbnails follow the list's order
    order = [browser.thumbs.item(r).data(256) for r in range(browser.thumbs.count())]
    assert order == browser.rows() and browser.thumbs.currentItem().data(256) == 3

    other = DatasetBrowser(window.state, settings=window.settings)  # as the next start would
    qtbot.addWidget(other)
    assert other.thumbnail_mode and other.pages.currentWidget() is other.thumbs
    other.list_button.click()
    assert window.settings.value("datasetBrowser/view") == "list"


def test_views_say_when_the_model_does_not_know_the_datasets_classes(qtbot, window, coco_root):
    from explorer.state import LoadedModel

    with qtbot.waitSignal(window.state.datasetChanged, timeout=20000):
        window.open_dataset(coco_root)
    qtbot.waitUntil(lambda: not window.matching.busy, timeout=20000)
    loaded = window.state.model
    window.state.set_model(LoadedModel(loaded.model, ["cat", "dog", "bird"], "other classes"))
    m = window.matching
    qtbot.waitUntil(lambda: not m.busy, timeout=20000)
    with qtbot.waitSignal(m.errorShown, timeout=5000) as blocker:
        assert not m.compute()
    assert "does not know the dataset's class" in blocker.args[0]
    for view, run in ((window.layers, window.layers.run_ap), (window.counting, window.counting.run)):
        assert view.on_open_dataset
        with qtbot.waitSignal(view.jobFailed, timeout=20000) as blocker:
            assert run()
        assert "does not know the dataset's class" in blocker.args[0]
