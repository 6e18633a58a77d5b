"""Inference-time changes to a model, as context managers that hook modules and restore them.

They find the modules by type and place (not by editing the model's code), so they keep working
while the model's files change, and they leave the model exactly as it was on the way out,
however the block ends. Use them on a model no other thread runs at the same time (the explorer
runs its experiments on a copy).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from detr_core.model.position_encoding import PositionEmbeddingLearned, PositionEmbeddingSine


@contextmanager
def _hooked(modules: list[nn.Module], hook: Any) -> Iterator[int]:
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


def position_modules(model: nn.Module) -> list[nn.Module]:
    """The model's positional encodings of the image tokens, sine or learned (one for DETR)."""
    return [m for m in model.modules() if isinstance(m, (PositionEmbeddingSine, PositionEmbeddingLearned))]


def decoder_self_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every decoder layer that has one."""
    transformer = getattr(model, "transformer", None)
    decoder = getattr(transformer, "decoder", None)
    layers = getattr(decoder, "layers", None) or []
    return [layer.self_attn for layer in layers if isinstance(getattr(layer, "self_attn", None), nn.Module)]


@contextmanager
def positional_encoding_off(model: nn.Module) -> Iterator[int]:
    """Inside the block the positional encoding is all zeros: keys and queries of the encoder and
    the memory keys of the decoder carry no position. Yields how many encodings were switched off
    (raises ValueError when the model has none)."""
    modules = position_modules(model)
    if not modules:
        raise ValueError("this model has no positional encoding to switch off")

    def zero(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(output)

    with _hooked(modules, zero) as n:
        yield n


@contextmanager
def decoder_self_attention_off(model: nn.Module) -> Iterator[int]:
    """Inside the block every decoder self-attention adds nothing (its output is zero, so the
    residual passes each query through unchanged): queries no longer see one another. Yields how
    many layers were changed (raises ValueError when the decoder has no self-attention)."""
    modules = decoder_self_attention_modules(model)
    if not modules:
        raise ValueError("this model's decoder has no self-attention to drop")

    def drop(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        if isinstance(output, tuple):  # (attention output, captured weights)
            return (torch.zeros_like(output[0]),) + (None,) * (len(output) - 1)
        return torch.zeros_like(output)

    with _hooked(modules, drop) as n:
        yield n
