"""The one dataset interface: what the trainer, evaluation, the analysis modules and the window use.

A :class:`DetectionDataset` is a map from an index to a :class:`Sample` (the image as people see
it, with its boxes in pixels) and to model input (``batch``). The toy generator
(:class:`~detr_core.data.toy.ToyShapes`), COCO, Pascal VOC and YOLO folders
(:mod:`detr_core.data.coco`, :mod:`detr_core.data.voc`, :mod:`detr_core.data.yolo`) and the augmented training stream
(:mod:`detr_core.data.stream`) implement it. Its ground truth, without the pixels, is
:meth:`~DetectionDataset.annotations` per image and :meth:`~DetectionDataset.coco_ground_truth` as
one pycocotools object, which every evaluation scores against.

Targets, one dict per image, are what the losses and evaluation read:
    labels [N] int64 contiguous class indices into ``class_names``;
    boxes [N, 4] cxcywh normalized to the image as fed to the model (not the padding);
    orig_size [2] (h, w) of the image on disk, to turn predictions back into its pixels;
    image_id [] the dataset's own image id (COCO's ``id``; an index for toy, VOC and YOLO).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from detr_core.model.nested_tensor import NestedTensor, nested_tensor_from_tensor_list

if TYPE_CHECKING:  # pycocotools is imported where it is used, not at startup
    from pycocotools.coco import COCO


@dataclass
class Sample:
    """One image and its annotations, as stored (no resizing, no augmentation)."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    labels: np.ndarray  # [N] int64 class indices into class_names
    boxes_xyxy: np.ndarray  # [N, 4] float32, pixels of ``image``
    image_id: int = 0
    # objects that are neither targets nor errors: COCO ``iscrowd``, VOC ``difficult``
    ignored_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [M]
    ignored_xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # [M, 4]


@dataclass
class Annotations:
    """One image's ground truth without its pixels: what evaluation and counting compare with."""

    image_id: int
    height: int  # of the image as stored
    width: int
    labels: np.ndarray  # [N] int64 class indices into class_names
    boxes_xyxy: np.ndarray  # [N, 4] float32, pixels of the stored image
    ignored_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [M] crowd / difficult
    ignored_xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # [M, 4]
    file_name: str = ""  # "" for a drawn image


class DatasetError(ValueError):
    """A dataset that cannot be opened at all; the message names the file and the problem."""


class DetectionDataset(ABC):
    """Images with boxes of ``len(class_names)`` classes, indexed 0..len-1 (or endless)."""

    name: str = "dataset"
    eval_batch_size: int = 8  # images per batch when the analyses run a model over it

    @property
    @abstractmethod
    def class_names(self) -> list[str]: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def sample(self, index: int) -> Sample:
        """The stored image and annotations of ``index`` (for people and the window)."""

    @property
    def category_ids(self) -> list[int]:
        """The dataset's own id of each class (COCO results use them); default 1..K."""
        return list(range(1, len(self.class_names) + 1))

    @property
    def skipped(self) -> list[str]:
        """What opening the dataset left out and why, one line per problem (empty: nothing)."""
        return []

    def item(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Model input of one image: [3, H, W] normalized and its target (see the module doc)."""
        from detr_core.data.images import to_tensor

        smp = self.sample(index)
        h, w = smp.image.shape[:2]
        return to_tensor(smp.image), target_dict(smp, (h, w), (h, w))

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self.item(index)

    def batch(self, indices: Sequence[int]) -> tuple[Tensor | NestedTensor, list[dict[str, Tensor]]]:
        """Images of one batch, [B, 3, H, W] or padded to the largest with a mask, and targets."""
        items = [self.item(i) for i in indices]
        images = [img for img, _ in items]
        if all(img.shape == images[0].shape for img in images):
            return torch.stack(images), [t for _, t in items]
        return nested_tensor_from_tensor_list(images), [t for _, t in items]

    def annotations(self, index: int) -> Annotations:
        """The ground truth of ``index`` in the pixels of the stored image (default: from
        :meth:`sample`; a dataset that knows it without reading the image says so quicker)."""
        return self.annotations_of(self.sample(index))

    @staticmethod
    def annotations_of(smp: Sample) -> Annotations:
        """The ground truth of a sample, without its pixels."""
        h, w = smp.image.shape[:2]
        return Annotations(smp.image_id, h, w, smp.labels, smp.boxes_xyxy, smp.ignored_labels, smp.ignored_xyxy)

    def coco_ground_truth(self, count: int | None = None) -> COCO:
        """The ground truth of (at least) the first ``count`` images (None: all) as a pycocotools
        object in the dataset's own image and category ids, made once by
        :func:`~detr_core.data.ground_truth.build_coco` from :meth:`annotations`; ignored objects
        are ``iscrowd`` regions."""
        from detr_core.data.ground_truth import build_coco

        n = len(self) if count is None else count
        made: tuple[int, COCO] | None = getattr(self, "_coco_truth", None)
        if made is None or made[0] < n:
            made = (n, build_coco([self.annotations(i) for i in range(n)], self.class_names, self.category_ids))
            self._coco_truth = made
        return made[1]


def target_dict(
    smp: Sample, size: tuple[int, int], orig_size: tuple[int, int], boxes_xyxy: np.ndarray | Tensor | None = None,
    labels: np.ndarray | Tensor | None = None,
) -> dict[str, Tensor]:
    """Target of an image fed at ``size`` (h, w); boxes in pixels of that size (default the sample's)."""
    from detr_core.box_ops import xyxy_to_cxcywh

    h, w = size
    xyxy = torch.as_tensor(smp.boxes_xyxy if boxes_xyxy is None else boxes_xyxy, dtype=torch.float32).reshape(-1, 4)
    lab = torch.as_tensor(smp.labels if labels is None else labels, dtype=torch.int64).reshape(-1)
    boxes = xyxy_to_cxcywh(xyxy / xyxy.new_tensor([w, h, w, h])) if len(xyxy) else torch.zeros(0, 4)
    return {
        "labels": lab,
        "boxes": boxes,  # [N, 4] cxcywh normalized
        "orig_size": torch.tensor(orig_size),
        "image_id": torch.tensor(smp.image_id),
    }
