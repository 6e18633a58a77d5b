"""Batches of images of different sizes: padded to a common size, with a mask of the padding.

Same contract as the reference implementation's ``NestedTensor``: ``mask`` is True on padded
pixels, so a model never mistakes padding for image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class NestedTensor:
    tensors: Tensor  # [B, C, H, W] images, zero-padded at the bottom and right
    mask: Tensor  # [B, H, W] bool, True on padding

    def to(self, device: torch.device | str, non_blocking: bool = False) -> NestedTensor:
        return NestedTensor(self.tensors.to(device, non_blocking=non_blocking),
                            self.mask.to(device, non_blocking=non_blocking))

    def decompose(self) -> tuple[Tensor, Tensor]:
        return self.tensors, self.mask


def nested_tensor_from_tensor_list(images: list[Tensor] | Tensor) -> NestedTensor:
    """Pad [C, H_i, W_i] images to the batch's largest H and W (bottom/right)."""
    if isinstance(images, Tensor) and images.dim() == 4:
        b, _, h, w = images.shape
        return NestedTensor(images, torch.zeros(b, h, w, dtype=torch.bool, device=images.device))
    if len(images) == 0:
        raise ValueError("cannot batch an empty list of images")
    if any(img.dim() != 3 for img in images):
        raise ValueError("each image must be a [C, H, W] tensor")
    c = images[0].shape[0]
    h = max(img.shape[1] for img in images)
    w = max(img.shape[2] for img in images)
    first = images[0]
    tensors = first.new_zeros((len(images), c, h, w))
    mask = torch.ones((len(images), h, w), dtype=torch.bool, device=first.device)
    for img, pad_img, m in zip(images, tensors, mask):
        pad_img[:, : img.shape[1], : img.shape[2]].copy_(img)
        m[: img.shape[1], : img.shape[2]] = False
    return NestedTensor(tensors, mask)
