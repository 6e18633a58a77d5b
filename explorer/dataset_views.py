"""Which data each analysis view uses once a dataset is open, said in the view itself.

With a dataset open and a model loaded, each analysis view is offered the dataset next to its toy
data (its Source list) and chooses it:
  * query specialization, layer by layer (AP per decoder layer, pycocotools) and counting run on
    the validation split, resized as the model infers; counting groups those real images by their
    ground-truth object count, since a dataset cannot draw images with exactly N objects;
  * matching matches images of the training split, resized as evaluation does, with the model's
    training costs.
Each view's "Data: …" note names the data it uses.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel

from detr_core.data.files import FileDataset
from detr_core.data.transforms import eval_transform

from .dataset_session import OpenedDataset
from .stable_label import wrap_label
from .state import AppState
from .views.base import AnalysisView


def data_note(view: AnalysisView) -> QLabel:
    """A one-line "Data: …" label at the top of ``view``'s body (made once)."""
    label = getattr(view, "data_note", None)
    if label is None:
        label = wrap_label(QLabel(""))  # a long dataset path makes it taller, never the dock wider
        label.setObjectName("data_note")
        label.setStyleSheet("#data_note { color: #adb5bd; }")
        view.body.insertWidget(0, label)
        view.data_note = label  # type: ignore[attr-defined]
    return label


def split_of(opened: OpenedDataset, role: str) -> tuple[str, FileDataset]:
    """The split playing ``role`` ("train" or "val"), else the one there is: (name, split)."""
    name = role if role in opened.splits else next(iter(opened.splits))
    return name, opened.splits[name]


class DatasetViews:
    """Keeps the analysis views' data and their "Data: …" notes in step with the open dataset."""

    def __init__(self, state: AppState, views: dict[str, AnalysisView]) -> None:
        self.state = state
        self.views = views
        state.datasetChanged.connect(lambda _: self.update())
        state.modelChanged.connect(lambda _: self.update())
        for view in views.values():  # a Source chosen by hand changes the note too
            source = getattr(view, "source", None)
            if source is not None:
                source.currentIndexChanged.connect(lambda _, v=view: self._note(v))
        self.update()

    def update(self) -> None:
        opened: OpenedDataset | None = self.state.dataset
        loaded = self.state.model
        spec = self.views.get("Query specialization")
        if spec is not None:
            self._specialization(spec, opened)
        if opened is None or loaded is None:
            for title in ("Matching", "Layer by layer", "Counting"):
                view = self.views.get(title)
                if view is not None:
                    view.set_dataset(None)  # type: ignore[attr-defined]
                    self._note(view)
            return
        cfg = loaded.config
        resize = eval_transform(cfg.image_min_size, cfg.image_max_size, cfg.fixed_input_size)
        if (view := self.views.get("Matching")) is not None:
            name, split = split_of(opened, "train")
            view.set_dataset(split.with_transform(resize), f"{opened.name} · {name}")  # type: ignore[attr-defined]
            self._note(view)
        name, split = split_of(opened, "val")
        if (view := self.views.get("Layer by layer")) is not None:
            view.set_dataset(split.with_transform(resize), f"{opened.name} · {name}")  # type: ignore[attr-defined]
            self._note(view)
        if (view := self.views.get("Counting")) is not None:
            train = opened.splits.get("train")
            train_max = max((len(r.labels) for r in train.records), default=0) if train is not None else None
            view.set_dataset(split.with_transform(resize), f"{opened.name} · {name}",  # type: ignore[attr-defined]
                             train_max)
            self._note(view)

    def _note(self, view: AnalysisView) -> None:
        describe = getattr(view, "describe_data", None)
        if describe is not None:
            data_note(view).setText(describe())

    def _specialization(self, view: AnalysisView, opened: OpenedDataset | None) -> None:
        loaded = self.state.model
        split = None if opened is None else opened.splits.get("val") or next(iter(opened.splits.values()))
        if split is None or loaded is None:
            view.set_dataset(None)  # type: ignore[attr-defined]
            data_note(view).setText("Data: the toy held-out split (File ▸ Open Dataset… to use a dataset).")
            return
        cfg = loaded.config
        resized = split.with_transform(eval_transform(cfg.image_min_size, cfg.image_max_size, cfg.fixed_input_size))
        name = f"{opened.name} · {split.name}"
        view.set_dataset(resized, name)  # type: ignore[attr-defined]
        data_note(view).setText(f"Data: the one chosen in Source: {name} ({len(split)} images, as the model "
                                "infers) or the toy held-out split.")
