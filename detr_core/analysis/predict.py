"""Running a model for analysis: eval mode without gradients, in batches, under the one
cancellation rule of :mod:`detr_core.cancel`. Every analysis module runs its model this way.

    with evaluating(model):
        for idx in batches(num_images, batch_size, progress):   # progress(0, n), then after each
            images, targets = dataset.batch(idx)
            out = forward(model, images)

:func:`evaluating` switches the model to eval mode under ``torch.no_grad`` and restores the mode
it had on the way out, whether the work ends, fails or is cancelled. :func:`batches` reports
progress before the first batch and after each one; a callback that raises
:class:`~detr_core.cancel.Cancelled` ends the loop (and the ``with`` block) there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from detr_core.cancel import Progress, report
from detr_core.data.dataset import DetectionDataset
from detr_core.model.nested_tensor import NestedTensor


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode under ``torch.no_grad``; its previous mode comes back on exit."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def batches(total: int, batch_size: int, progress: Progress | None = None) -> Iterator[range]:
    """The item ranges of consecutive batches of at most ``batch_size`` out of ``total``.

    Calls ``progress(0, total)`` before the first batch and ``progress(stop, total)`` once the
    caller is done with each batch (when it asks for the next one or the loop ends).
    """
    report(progress, 0, total)
    for start in range(0, total, batch_size):
        idx = range(start, min(start + batch_size, total))
        yield idx
        report(progress, idx.stop, total)


def image_count(dataset: DetectionDataset, num_images: int | None) -> int:
    """How many images an analysis of the first ``num_images`` runs: all when None, never more
    than the dataset holds (an endless stream has no end to stop at)."""
    try:
        size = len(dataset)
    except TypeError:  # an endless stream
        if num_images is None:
            raise ValueError(f"{dataset.name} is endless: say how many images") from None
        return num_images
    return size if num_images is None else min(num_images, size)


def forward(model: nn.Module, images: Tensor | NestedTensor | list[Tensor], device: torch.device | None = None) -> dict:
    """``model`` on ``images`` ([B, 3, H, W], a padded NestedTensor, or a list of [3, H_i, W_i])
    moved to ``device`` (default: the model's). Run it inside :func:`evaluating`."""
    device = device or next(model.parameters()).device
    images = [im.to(device) for im in images] if isinstance(images, list) else images.to(device)
    return model(images)
