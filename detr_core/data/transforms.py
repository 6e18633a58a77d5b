"""Augmentation and resizing of file-backed images with ``torchvision.transforms.v2``.

By default (``augment="light"``) training images get a random horizontal flip and the size the
model infers at; ``augment="reference"`` is the whole reference recipe below, for long runs.
The reference recipe (facebookresearch/detr ``datasets/coco.py``): a random horizontal flip,
then either a random resize of the shorter side among ``scales`` (longer side at most
``max_size``), or a random resize among ``crop_resize``, a random crop of side
``crop_min..crop_max`` and again the random resize among ``scales``. ``SanitizeBoundingBoxes``
drops boxes the crop left empty. Evaluation only resizes (shorter side to ``max(scales)``).

A transform maps ``(image [3, H, W] uint8, boxes [N, 4] xyxy pixels, labels [N])`` to the same
triple on the transformed image; randomness comes from torch's global generator, which the
training stream seeds per sample (:mod:`detr_core.data.stream`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from detr_core.config import DatasetConfig

Transform = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]


class RandomSizeCrop(v2.Transform):
    """A random crop of width in [min_size, min(W, max_size)] and height likewise (the
    reference's ``RandomSizeCrop``; torchvision has no exact equivalent)."""

    def __init__(self, min_size: int, max_size: int) -> None:
        super().__init__()
        self.min_size = min_size
        self.max_size = max_size

    def make_params(self, flat_inputs: list) -> dict:
        h, w = v2.query_size(flat_inputs)
        cw = int(torch.randint(min(self.min_size, w), min(w, self.max_size) + 1, ()).item())
        ch = int(torch.randint(min(self.min_size, h), min(h, self.max_size) + 1, ()).item())
        top = int(torch.randint(0, h - ch + 1, ()).item())
        left = int(torch.randint(0, w - cw + 1, ()).item())
        return {"top": top, "left": left, "height": ch, "width": cw}

    def transform(self, inpt, params: dict):
        return F.crop(inpt, **params)


class _Pipeline:
    """Wraps a v2 transform into the (image, boxes, labels) -> (image, boxes, labels) contract."""

    def __init__(self, transform: v2.Transform) -> None:
        self.transform = transform

    def __call__(self, image: Tensor, boxes_xyxy: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h, w = image.shape[-2:]
        img = tv_tensors.Image(image)
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes_xyxy.reshape(-1, 4), format="XYXY", canvas_size=(h, w)),
            "labels": labels,
        }
        img, target = self.transform(img, target)
        return img.as_subclass(Tensor), target["boxes"].as_subclass(Tensor), target["labels"]


def train_transform(config: DatasetConfig) -> Transform:
    """The training augmentation ``config.augment`` names (see DatasetConfig)."""
    if config.augment != "reference":
        steps = [v2.RandomHorizontalFlip(p=config.hflip)] if config.augment == "light" else []
        steps.append(v2.Resize(size=max(config.scales), max_size=config.max_size, antialias=True))
        return _Pipeline(v2.Compose(steps))
    scales = list(config.scales)
    resize = v2.RandomShortestSize(min_size=scales, max_size=config.max_size)
    return _Pipeline(v2.Compose([
        v2.RandomHorizontalFlip(p=config.hflip),
        v2.RandomChoice([
            resize,
            v2.Compose([
                v2.RandomShortestSize(min_size=list(config.crop_resize), max_size=config.max_size),
                RandomSizeCrop(config.crop_min, config.crop_max),
                v2.RandomShortestSize(min_size=scales, max_size=config.max_size),
            ]),
        ]),
        v2.ClampBoundingBoxes(),
        v2.SanitizeBoundingBoxes(min_size=1.0),
    ]))


def eval_transform(min_size: int, max_size: int, fixed: tuple[int, int] | None = None) -> Transform:
    """Shorter side to ``min_size``, longer at most ``max_size`` (the model's inference rule); or
    stretched to ``fixed`` (height, width), see ``DETRConfig.fixed_input_size``."""
    if fixed is not None:
        return _Pipeline(v2.Compose([v2.Resize(size=list(fixed), antialias=True)]))
    return _Pipeline(v2.Compose([v2.Resize(size=min_size, max_size=max_size, antialias=True)]))
