"""What COCO, VOC and YOLO folders share: image records checked on opening, loading, resizing, and the
list of what was left out and why.

Images are read as stored (no EXIF rotation), as the annotation tools and pycocotools see them.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from detr_core.data.dataset import Annotations, DatasetError, DetectionDataset, Sample, target_dict
from detr_core.data.images import to_tensor
from detr_core.data.transforms import Transform
from detr_core.model.nested_tensor import NestedTensor, nested_tensor_from_tensor_list

if TYPE_CHECKING:  # pycocotools is imported where it is used, not at startup
    from pycocotools.coco import COCO


@dataclass
class ImageRecord:
    path: Path
    image_id: int
    width: int
    height: int
    labels: np.ndarray  # [N] int64 contiguous labels
    boxes_xyxy: np.ndarray  # [N, 4] float32 pixels
    ignored_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [M] crowd / difficult
    ignored_xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # [M, 4]


@dataclass
class Problem:
    kind: str  # a short key that groups problems in the summary, e.g. "missing image"
    message: str  # names the file and the problem


def image_size(path: Path) -> tuple[int, int] | str:
    """(width, height) read from the file's header, or why it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        return "no such file"
    except UnidentifiedImageError:
        return "not an image format Pillow reads"
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return f"unreadable ({e})"


def read_rgb(path: Path) -> np.ndarray:
    """[H, W, 3] uint8 as stored. Raises DatasetError naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise DatasetError(f"{path}: unreadable image ({e})") from None


def thumbnail(path: Path, side: int = 96) -> np.ndarray | None:
    """[h, w, 3] uint8 RGB, the image as stored shrunk to fit ``side`` x ``side`` (aspect kept),
    or None if it cannot be read. JPEGs decode at a reduced scale (``draft``): a few ms each."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (side, side))
            img = img.convert("RGB")
            img.thumbnail((side, side))
            return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError):
        return None


def clip_box(box: Sequence[float], width: int, height: int) -> tuple[list[float] | None, str]:
    """An xyxy box clipped to the image: (box, "") if fine, (box, "clipped") or (None, why)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return None, "a coordinate is not a finite number"
    if x1 <= x0 or y1 <= y0:
        return None, "zero or negative size"
    c = [min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width), min(max(y1, 0.0), height)]
    if c[2] - c[0] <= 0 or c[3] - c[1] <= 0:
        return None, "outside the image"
    return c, "clipped" if c != [x0, y0, x1, y1] else ""


def record_arrays(items: list[tuple[int, list[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """[(label, xyxy box)] -> labels [N] int64, boxes [N, 4] float32."""
    if not items:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    return np.array([i[0] for i in items], np.int64), np.array([i[1] for i in items], np.float32)


class FileDataset(DetectionDataset):
    """Images on disk with their boxes; ``transform`` resizes or augments (None: as stored)."""

    def __init__(
        self,
        name: str,
        class_names: list[str],
        category_ids: list[int],
        records: list[ImageRecord],
        problems: list[Problem],
        ground_truth: COCO | None = None,
        transform: Transform | None = None,
        format: str = "coco",
    ) -> None:
        if not records:
            raise DatasetError(f"{name}: no usable images" + (f" ({problems[0].message})" if problems else ""))
        self.name = name
        self._class_names = list(class_names)
        self._category_ids = list(category_ids)
        self.records = records
        self.problems = problems
        self._ground_truth = ground_truth
        self.transform = transform
        self.format = format  # "coco", "voc" or "yolo"

    @property
    def class_names(self) -> list[str]:
        return self._class_names

    @property
    def category_ids(self) -> list[int]:
        return self._category_ids

    @property
    def skipped(self) -> list[str]:
        return [p.message for p in self.problems]

    def summary(self, examples: int = 3) -> str:
        """One line for the dataset, then one per kind of problem with a few examples."""
        counts = Counter(len(r.labels) for r in self.records)
        objects = sum(n * c for n, c in counts.items())
        lines = [(f"{self.name}: {len(self.records)} images, {objects} objects of {len(self.class_names)} "
                  f"classes ({counts.get(0, 0)} images without objects)")]
        by_kind: dict[str, list[str]] = {}
        for p in self.problems:
            by_kind.setdefault(p.kind, []).append(p.message)
        for kind, messages in by_kind.items():
            lines.append(f"  {kind}: {len(messages)}, e.g. " + "; ".join(messages[:examples]))
        return "\n".join(lines)

    def with_transform(self, transform: Transform | None) -> FileDataset:
        """The same images and records (shared), fed through another transform."""
        other = copy.copy(self)
        other.transform = transform
        return other

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, index: int) -> Sample:
        r = self.records[index]
        image = read_rgb(r.path)
        if image.shape[:2] != (r.height, r.width):
            raise DatasetError(f"{r.path}: the image is {image.shape[1]}x{image.shape[0]} pixels, "
                               f"the annotations say {r.width}x{r.height}")
        return Sample(image, r.labels, r.boxes_xyxy, r.image_id, r.ignored_labels, r.ignored_xyxy)

    def item(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        smp = self.sample(index)
        h, w = smp.image.shape[:2]
        if self.transform is None:
            return to_tensor(smp.image), target_dict(smp, (h, w), (h, w))
        chw = torch.from_numpy(smp.image).permute(2, 0, 1)  # [3, H, W] uint8
        image, boxes, labels = self.transform(chw, torch.from_numpy(smp.boxes_xyxy), torch.from_numpy(smp.labels))
        size = (int(image.shape[-2]), int(image.shape[-1]))
        image = to_tensor(image.permute(1, 2, 0).numpy())  # [3, H', W'] normalized
        return image, target_dict(smp, size, (h, w), boxes, labels)

    def batch(self, indices: Sequence[int]) -> tuple[Tensor | NestedTensor, list[dict[str, Tensor]]]:
        return padded_batch(self, indices, self.problems)

    def annotations(self, index: int) -> Annotations:
        r = self.records[index]
        return Annotations(r.image_id, r.height, r.width, r.labels, r.boxes_xyxy, r.ignored_labels,
                           r.ignored_xyxy, r.path.name)

    def coco_ground_truth(self, count: int | None = None) -> COCO:
        """The annotations file's own pycocotools object when it was kept as read, else the
        kept annotations of every image (see :meth:`DetectionDataset.coco_ground_truth`);
        ignored objects (crowd, difficult) are ``iscrowd`` regions, which COCOeval neither
        rewards nor punishes."""
        if self._ground_truth is None:
            self._ground_truth = super().coco_ground_truth()
        return self._ground_truth


def padded_batch(
    dataset: DetectionDataset, indices: Sequence[int], problems: list[Problem],
) -> tuple[NestedTensor, list[dict[str, Tensor]]]:
    """Images padded to the largest (with a mask) and targets. An image that fails to load is
    left out of the batch, its problem added to ``problems``, rather than stopping the run."""
    items = []
    for i in indices:
        try:
            items.append(dataset.item(i))
        except DatasetError as e:
            note_problem(problems, Problem("unreadable image", str(e)))
    if not items:
        raise DatasetError(f"{dataset.name}: no image of the batch could be read ({problems[-1].message})")
    return nested_tensor_from_tensor_list([img for img, _ in items]), [t for _, t in items]


def note_problem(problems: list[Problem], problem: Problem) -> bool:
    """Add ``problem`` unless the same one is listed already (an unreadable image is met again
    every epoch); True if it was added."""
    if any(p.kind == problem.kind and p.message == problem.message for p in problems):
        return False
    problems.append(problem)
    return True
