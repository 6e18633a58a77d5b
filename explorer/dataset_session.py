"""The dataset opened in the window: what a path means (a COCO folder or annotation file, a VOC
devkit, a YOLO folder or its data.yaml), opening its splits off the GUI thread, and what opening
left out.

    opened = open_path(Path("data/coco"))     # on a worker thread; raises DatasetError
    opened.summary                            # one line per split, then what was skipped
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from detr_core.data import coco
from detr_core.data.dataset import DatasetError
from detr_core.data.files import FileDataset
from detr_core.data.sources import detect_format, open_dataset


@dataclass
class OpenedDataset:
    """A dataset's splits as stored (no transform), by name ("train", "val"); at least one."""

    source: str  # what DatasetConfig.source takes: "coco:PATH", "voc:PATH", "yolo:PATH" or "coco:IMAGES,JSON"
    path: Path  # what the user opened
    splits: dict[str, FileDataset]
    failed: dict[str, str] = field(default_factory=dict)  # split -> why it could not be opened
    layout: str = ""  # a COCO folder's layout and splits, e.g. "Roboflow export, splits train, valid, test"

    @property
    def name(self) -> str:
        if self.path.suffix.lower() in (".yaml", ".yml"):  # a YOLO data.yaml: its dataset folder
            return self.path.parent.name or str(self.path)
        return self.path.name or str(self.path)

    @property
    def class_names(self) -> list[str]:
        return next(iter(self.splits.values())).class_names

    @property
    def can_train(self) -> bool:
        """Both a training and a validation split (held-out AP needs the second)."""
        return "train" in self.splits and "val" in self.splits and not self.single_file

    @property
    def single_file(self) -> bool:
        return "," in self.source

    @property
    def problems(self) -> int:
        return sum(len(d.problems) for d in self.splits.values())

    @property
    def summary(self) -> str:
        """One paragraph per split (with what was skipped and why), then the splits that failed."""
        parts = [f"layout: {self.layout}"] if self.layout else []
        parts += [f"{split}: {d.summary()}" for split, d in self.splits.items()]
        parts += [f"{split}: not opened: {why}" for split, why in self.failed.items()]
        return "\n".join(parts)

    def short(self) -> str:
        """E.g. "coco (train 40 images, val 10 images, 3 classes)"."""
        sizes = ", ".join(f"{s} {len(d)} images" for s, d in self.splits.items())
        return f"{self.name} ({sizes}, {len(self.class_names)} classes)"


def source_for_path(path: Path) -> str:
    """The dataset source a dropped or chosen path names. A COCO annotation file (.json) pairs with
    the images folder its name gives (``annotations/instances_NAME.json`` -> ``NAME/``), else the
    folder it is in. A YOLO data.yaml names its folder. Raises DatasetError for anything else."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return f"yolo:{path}"
    if path.is_file() and path.suffix.lower() == ".json":
        name = path.stem.removeprefix("instances_")
        images = path.parent.parent / name if path.parent.name == "annotations" else path.parent
        if not images.is_dir():
            images = path.parent
        return f"coco:{images},{path}"
    if path.is_file():
        raise DatasetError(f"{path}: not a dataset (open a COCO folder or annotation .json, a VOC devkit, "
                           "or a YOLO folder or its data.yaml)")
    return f"{detect_format(path)}:{path}"


def open_path(path: Path) -> OpenedDataset:
    """Open a dataset's train and val splits (one split for a single annotation file). A split
    that fails is reported, not fatal, as long as one opens; raises DatasetError when none does,
    with the first split's reason."""
    source = source_for_path(path)
    if "," in source:
        return OpenedDataset(source, Path(path), {"val": open_dataset(source, role="val")})
    layout = coco.detect_layout(Path(path)) if source.startswith("coco:") else None
    if layout is not None and layout.kind == "images + one JSON":  # one split, as a file opened
        _, images, annotations = layout.split("", "val")
        return OpenedDataset(f"coco:{images},{annotations}", Path(path), {"val": open_dataset(source, role="val")},
                             layout=layout.describe())
    splits, failed = {}, {}
    for role in ("train", "val"):
        try:
            splits[role] = open_dataset(source, role=role)
        except DatasetError as e:
            failed[role] = str(e)
    if not splits:
        raise DatasetError(failed["train"] if failed["train"] == failed["val"]
                           else f"{failed['train']}\n{failed['val']}")
    return OpenedDataset(source, Path(path), splits, failed, layout.describe() if layout is not None else "")


def looks_like_dataset(path: Path) -> bool:
    """Whether a dropped path is meant as a dataset (a folder, a .json or a YOLO .yaml), not an
    image or a checkpoint."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in (".json", ".yaml", ".yml")
