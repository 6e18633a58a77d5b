"""Issue 29: the analysis and data views fit the docks the workspaces give them, empty and with
content, at a small window's size and a laptop's (/tmp/sizes.md of the issue's plan): no
sideways scrolling at either, no vertical scrolling at the laptop size, and no control drawn
smaller than it needs or cut off by the view's edge (a splitter cannot shrink a pane below its
minimum, but a flow of controls inside one could be squeezed)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QRect  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QAbstractButton,
    QAbstractScrollArea,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QSlider,
    QWidget,
)

from explorer.state import AppState, LoadedModel  # noqa: E402
from tests.fit import fit_in, shown_in_area  # noqa: E402

BUNDLED = Path(__file__).parents[1] / "checkpoints" / "toy_shapes.pt"
# (small window, laptop) dock sizes of each workspace
ANALYSE = ((600, 560), (800, 630))
DATA = ((600, 600), (800, 630))
DOCTOR = ((420, 600), (560, 630))
EXPLORE_BOTTOM = ((680, 260), (930, 300))
CONTROLS = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QSlider)


def squeezed(view: QWidget, width: int, height: int) -> list[str]:
    """Controls of ``view``, shown in a ``width`` x ``height`` dock, that are smaller than their
    minimum or reach past the view's edge (text panes that scroll their own text are skipped)."""
    bad = []
    with shown_in_area(view, width, height):
        for w in view.findChildren(QWidget):
            if not isinstance(w, CONTROLS) or not w.isVisibleTo(view) or _in_inner_scroll_area(w, view):
                continue
            need = w.minimumSizeHint()
            rect = QRect(w.mapTo(view, QPoint(0, 0)), w.size())
            if w.width() < need.width() or w.height() < need.height() or not view.rect().contains(rect):
                bad.append(f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r} at {rect.getRect()} "
                           f"(needs {need.width()}x{need.height()})")
    return bad


def _in_inner_scroll_area(w: QWidget, view: QWidget) -> bool:
    """Inside a pane that scrolls its own content, or a part of another control (a spin box's
    line edit)."""
    parent = w.parentWidget()
    while parent is not None and parent is not view:
        if isinstance(parent, (QAbstractScrollArea, *CONTROLS)):
            return True
        parent = parent.parentWidget()
    return False


def assert_fits(view: QWidget, sizes: tuple[tuple[int, int], tuple[int, int]], state: str) -> None:
    for (width, height), laptop in zip(sizes, (False, True)):
        fit = fit_in(view, width, height)
        assert fit.sideways == 0, f"{state}: scrolls {fit.sideways} px sideways at {width}x{height}"
        if laptop:
            assert fit.down == 0, f"{state}: scrolls {fit.down} px down at {width}x{height}"
        assert squeezed(view, width, height) == [], f"{state} at {width}x{height}"


@pytest.fixture(scope="module")
def bundled():
    from detr_core.checkpoint import load_model

    return load_model(BUNDLED)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small COCO folder with a long path (the views' Source lists and notes name it)."""
    from detr_core.data.export import write_toy_dataset
    from explorer.dataset_session import open_path

    root = tmp_path_factory.mktemp("data") / "a_dataset_folder_with_a_rather_long_name_as_real_ones_have"
    return open_path(write_toy_dataset(root, train=2, val=2, fmt="coco"))


def _state(bundled) -> AppState:
    model, ckpt = bundled
    state = AppState()
    state.set_model(LoadedModel(model, ckpt.class_names, "bundled", BUNDLED, ckpt))
    return state


def _analysis_views(qtbot, state: AppState) -> dict:
    """The three Analyse views as the window builds them: a "?" button, the "Data: …" notes."""
    from explorer.dataset_views import DatasetViews
    from explorer.views.counting import CountingView
    from explorer.views.matching import MatchingView
    from explorer.views.specialization import SpecializationView

    views = {"Query specialization": SpecializationView(state), "Matching": MatchingView(state),
             "Counting": CountingView(state)}
    for title, view in views.items():
        qtbot.addWidget(view)
        view.add_help(title)
    views["notes"] = DatasetViews(state, {k: v for k, v in views.items()})
    return views


def test_the_analyse_views_fit_empty_and_with_results(qtbot, bundled, dataset) -> None:
    state = AppState()
    views = _analysis_views(qtbot, state)
    spec, matching, counting = views["Query specialization"], views["Matching"], views["Counting"]
    for title in ("Query specialization", "Matching", "Counting"):
        assert_fits(views[title], ANALYSE, f"{title}, no model")

    state.set_model(_state(bundled).model)
    state.set_dataset(dataset)
    qtbot.waitUntil(lambda: matching.snapshot is not None, timeout=20000)  # matches on its own
    spec.source.setCurrentIndex(0)  # the toy split: 20 slots, every square titled
    spec.num_images.setValue(8)
    with qtbot.waitSignal(spec.jobFinished, timeout=20000):
        assert spec.run()
    counting.source.setCurrentIndex(0)
    counting.max_count.setValue(4)
    counting.images_per_count.setValue(1)
    with qtbot.waitSignal(counting.jobFinished, timeout=20000):
        assert counting.run()
    assert len(spec.cells) == 20 and counting.result is not None
    for title in ("Query specialization", "Matching", "Counting"):
        assert_fits(views[title], ANALYSE, f"{title}, with results and a dataset open")


def test_the_dataset_browser_fits_empty_and_with_a_dataset(qtbot, bundled, dataset) -> None:
    from explorer.views.datasets import DatasetBrowser

    state = _state(bundled)
    browser = DatasetBrowser(state)
    qtbot.addWidget(browser)
    browser.add_help("Dataset")
    assert_fits(browser, DATA, "Dataset, none open")
    browser.show()
    with qtbot.waitSignal(browser.jobFinished, timeout=20000):
        state.set_dataset(dataset)
    browser.select_index(0)
    assert browser.errors and browser.table.rowCount() == 2
    assert_fits(browser, DATA, "Dataset, open and evaluated")


def test_the_doctor_fits_empty_and_with_a_missed_object(qtbot, bundled, dataset) -> None:
    from detr_core.data.toy import heldout_split
    from explorer.views.doctor import DoctorView

    state = _state(bundled)
    view = DoctorView(state)
    qtbot.addWidget(view)
    view.add_help("Doctor")
    assert_fits(view, DOCTOR, "Doctor, nothing checked")
    state.set_dataset(dataset)
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        assert view.check_open_dataset()
    smp = heldout_split(size=2).sample(1)  # object 4 is missed: the controls and two plots show
    with qtbot.waitSignal(view.jobFinished, timeout=20000):
        assert view.open_image(smp.image, smp.labels, smp.boxes_xyxy, "held-out image 1")
    assert view.missed and not view.missed_panel.isHidden()
    assert_fits(view, DOCTOR, "Doctor, a dataset checked and a missed object diagnosed")


def test_the_deformable_view_fits_for_a_dense_and_a_deformable_model(qtbot, bundled) -> None:
    from detr_core.analysis.capture import run_inference
    from detr_core.data.toy import heldout_split
    from detr_core.model.registry import build_model
    from detr_core.presets import preset
    from explorer.views.deformable import DeformableView

    state = _state(bundled)
    view = DeformableView(state, BUNDLED)
    qtbot.addWidget(view)
    view.add_help("Deformable attention")
    assert view.pages.currentIndex() == 0
    assert_fits(view, EXPLORE_BOTTOM, "Deformable attention, a dense model open")

    model = build_model(preset("deformable")[0]).eval()  # what "Train a deformable model" trains
    names = bundled[1].class_names
    image = heldout_split(size=2).sample(1).image
    state.set_model(LoadedModel(model, names, "deformable preset"))
    state.set_image(image, "held-out image 1")
    state.set_result(run_inference(model, image, names, capture=True))
    state.set_selected_query(3)
    view.show()
    qtbot.waitUntil(lambda: not view.busy and "Dense DETR" in view.dense_caption.text(), timeout=20000)
    assert view.pages.currentIndex() == 1 and len(view.level_boxes) == 4
    assert_fits(view, EXPLORE_BOTTOM, "Deformable attention, its points beside the dense heatmap")


def test_the_denoising_view_fits_with_and_without_denoising(qtbot):
    """Issue 28: the Denoising view in the Analyse dock, with a denoising model's snapshot shown and
    with the note a model without denoising gets."""
    import dataclasses

    import torch

    from detr_core.config import DETRConfig, LossConfig, ToyDataConfig
    from detr_core.data.toy import ToyShapes
    from detr_core.model.registry import build_model
    from explorer.state import DataSource
    from explorer.views.denoising import DenoisingView

    dn = DETRConfig(backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
                    num_decoder_layers=2, dim_feedforward=64, num_queries=6, num_classes=3, dropout=0.0,
                    image_min_size=64, image_max_size=64, query_type="anchor", dn_groups=3)
    data = ToyDataConfig(image_size=64, min_objects=4, max_objects=5)
    source = DataSource(data, LossConfig(), ToyShapes(data, seed=0, split="train"))
    names = ["rectangle", "ellipse", "triangle"]
    state = AppState()
    view = DenoisingView(state)
    qtbot.addWidget(view)
    view.add_help("Denoising")
    assert_fits(view, ANALYSE, "Denoising, no model")
    torch.manual_seed(0)
    state.set_model(LoadedModel(build_model(dn).eval(), names, "tiny"), source)
    qtbot.waitUntil(lambda: view.snapshot is not None, timeout=60000)
    assert_fits(view, ANALYSE, "Denoising, 3 groups of a crowded sample shown")
    assert view.table.rowCount() >= 12  # drawn once shown
    state.set_model(LoadedModel(build_model(dataclasses.replace(dn, dn_groups=0)).eval(), names, "tiny"), source)
    qtbot.waitUntil(lambda: not view.notice.isHidden(), timeout=5000)
    assert_fits(view, ANALYSE, "Denoising, a model without denoising")
    view.shutdown()
