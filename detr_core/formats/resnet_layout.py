"""A torchvision-style ResNet read off its weights (official DETR files and Hugging Face folders alike)."""

from __future__ import annotations

from typing import Any

import torch

from detr_core.checkpoint_types import CheckpointError

STANDARD_RESNETS = {  # name: (block, depths, widths: stem then each stage's output)
    "resnet18": ("basic", (2, 2, 2, 2), (64, 64, 128, 256, 512)),
    "resnet34": ("basic", (3, 4, 6, 3), (64, 64, 128, 256, 512)),
    "resnet50": ("bottleneck", (3, 4, 6, 3), (64, 256, 512, 1024, 2048)),
    "resnet101": ("bottleneck", (3, 4, 23, 3), (64, 256, 512, 1024, 2048)),
}



def resnet_layout(state: dict[str, torch.Tensor], prefix: str = "backbone.0.body.") -> dict[str, Any]:
    """Backbone settings read off a torchvision-style ResNet's weights: a named ResNet when the
    shapes are a standard one's, else ``backbone="resnet"`` with its depths and widths."""

    def count(p: str) -> int:
        idx = {int(k[len(p):].split(".")[0]) for k in state if k.startswith(p)}
        return max(idx) + 1 if idx else 0

    depths = tuple(count(f"{prefix}layer{i}.") for i in range(1, 5))
    if 0 in depths or f"{prefix}conv1.weight" not in state:
        raise CheckpointError(f"unrecognised backbone (blocks per stage: {depths})")
    block = "bottleneck" if f"{prefix}layer1.0.conv3.weight" in state else "basic"
    last = "conv3" if block == "bottleneck" else "conv2"
    widths = (int(state[f"{prefix}conv1.weight"].shape[0]),) + tuple(
        int(state[f"{prefix}layer{i}.0.{last}.weight"].shape[0]) for i in range(1, 5)
    )
    for name, layout in STANDARD_RESNETS.items():
        if layout == (block, depths, widths):
            return {"backbone": name}
    return {"backbone": "resnet", "resnet_block": block, "resnet_depths": depths, "resnet_widths": widths}
