"""Which data each analysis view uses once a dataset is open, said in the view itself.

Query specialization runs on the open dataset's validation split (resized as the model infers;
its Source list offers the toy split too). Matching and layer-by-layer AP stay on toy shapes and
counting draws toy images with N objects by construction, so those say that the open dataset is
not used rather than pretending otherwise.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel

from detr_core.data.transforms import eval_transform

from .dataset_session import OpenedDataset
from .state import AppState
from .views.base import AnalysisView

TOY_ONLY = {
    "Matching": "matches samples of the model's toy training stream",
    "Layer by layer": "measures AP per layer on the toy held-out split",
    "Counting": "draws toy images with exactly N objects, which a dataset cannot provide",
}


def data_note(view: AnalysisView) -> QLabel:
    """A one-line "Data: …" label at the top of ``view``'s body (made once)."""
    label = getattr(view, "data_note", None)
    if label is None:
        label = QLabel("")
        label.setObjectName("data_note")
        label.setWordWrap(True)
        label.setStyleSheet("#data_note { color: #adb5bd; }")
        view.body.insertWidget(0, label)
        view.data_note = label  # type: ignore[attr-defined]
    return label


class DatasetViews:
    """Keeps the analysis views' data and their "Data: …" notes in step with the open dataset."""

    def __init__(self, state: AppState, views: dict[str, AnalysisView]) -> None:
        self.state = state
        self.views = views
        state.datasetChanged.connect(lambda _: self.update())
        state.modelChanged.connect(lambda _: self.update())
        self.update()

    def update(self) -> None:
        opened: OpenedDataset | None = self.state.dataset
        for title, what in TOY_ONLY.items():
            view = self.views.get(title)
            if view is None:
                continue
            text = "Data: toy shapes."
            if opened is not None:
                text = f"Data: toy shapes, not the open dataset {opened.name}: this view {what}."
            data_note(view).setText(text)
        spec = self.views.get("Query specialization")
        if spec is not None:
            self._specialization(spec, opened)

    def _specialization(self, view: AnalysisView, opened: OpenedDataset | None) -> None:
        loaded = self.state.model
        split = None if opened is None else opened.splits.get("val") or next(iter(opened.splits.values()))
        if split is None or loaded is None:
            view.set_dataset(None)  # type: ignore[attr-defined]
            data_note(view).setText("Data: the toy held-out split (File ▸ Open Dataset… to use a dataset).")
            return
        cfg = loaded.config
        resized = split.with_transform(eval_transform(cfg.image_min_size, cfg.image_max_size))
        name = f"{opened.name} · {split.name}"
        view.set_dataset(resized, name)  # type: ignore[attr-defined]
        data_note(view).setText(f"Data: the one chosen in Source: {name} ({len(split)} images, as the model "
                                "infers) or the toy held-out split.")
