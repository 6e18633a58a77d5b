"""What a checkpoint is once read, whatever file it came from: :class:`Checkpoint` (config, class
names, weights and what the file could not say) and :class:`CheckpointError`. The readers of every
format (:mod:`detr_core.checkpoint` for this project's files and the official ones,
:mod:`detr_core.formats.hf` for Hugging Face folders) build these; none of them imports another."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from detr_core.config import DETRConfig, TrainConfig, to_dict
from detr_core.model.registry import build_model


class CheckpointError(ValueError):
    """A file that cannot be used as a checkpoint; the message says why."""


@dataclass
class Checkpoint:
    model_config: DETRConfig
    class_names: list[str]
    state_dict: dict[str, torch.Tensor]
    optimizer_state: dict | None = None
    history: dict | None = None
    train_config: TrainConfig | None = None
    step: int = 0
    source: str = "detr-explorer"  # or "facebookresearch/detr"
    extra: dict[str, Any] = field(default_factory=dict)
    # settings the file does not hold and that were guessed, e.g. {"nheads": 8} for a weights-only
    # file (the head count cannot be read off the shapes); the window and ``main.py info`` say so
    assumptions: dict[str, Any] = field(default_factory=dict)
    # how a reader that infers the architecture from the weights rereads them with settings the
    # file could not say (``with_settings`` calls it): for files whose config is more than a
    # DETRConfig (e.g. the authors' RT-DETR files, detr_core.formats.official_rt_detr)
    settings_hook: Callable[..., Checkpoint] | None = field(default=None, repr=False, compare=False)

    def with_settings(self, **settings: Any) -> Checkpoint:
        """The same weights with some architecture settings replaced (e.g. ``nheads=4``): for what
        a file could not say. Raises CheckpointError on a setting the model does not have."""
        if self.settings_hook is not None:
            return self.settings_hook(self, **settings)
        known = set(to_dict(self.model_config))
        unknown = sorted(set(settings) - known)
        if unknown:
            raise CheckpointError(f"unknown model setting(s): {', '.join(unknown)}")
        values = {**to_dict(self.model_config), **settings}
        sizes, fixed = {"image_min_size", "image_max_size"} & set(settings), {"image_height", "image_width"} & set(settings)
        if sizes and not fixed:
            values.update(image_height=0, image_width=0)  # a size asked for replaces a fixed (stretched) one
        elif fixed and not sizes and values["image_height"] and values["image_width"]:
            pair = sorted((int(values["image_height"]), int(values["image_width"])))
            values.update(image_min_size=pair[0], image_max_size=pair[1])  # as DETRConfig says they are then
        try:
            config = DETRConfig(**values)
        except (TypeError, ValueError) as e:
            raise CheckpointError(str(e)) from None
        assumptions = {k: v for k, v in self.assumptions.items() if k not in settings}
        return dataclasses.replace(self, model_config=config, assumptions=assumptions)

    def _buildable_config(self) -> DETRConfig:
        config = self.model_config
        if config.backbone != "tiny":
            # the file brings its own weights; never look for ImageNet ones
            config = DETRConfig(**{**to_dict(config), "pretrained_backbone": False})
        return config

    def problem(self, model: nn.Module | None = None) -> str | None:
        """Why these weights cannot make a working model (None when they can), in one line:
        names missing, unexpected or wrongly shaped weights (the first of them, with both shapes)
        and weights that are NaN or infinite. ``model``: the model the file describes, when
        already built (else one is built on the CPU: laying it out on the meta device instead
        would run PyTorch's Python meta kernels, whose import costs seconds at the app's start)."""
        if model is None:
            model = build_model(self._buildable_config())
        expected = model.state_dict()
        missing = [k for k in expected if k not in self.state_dict]
        unexpected = [k for k in self.state_dict if k not in expected]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
            return "the weights do not fit the model described in the file: " + "; ".join(parts)
        for k, v in expected.items():
            if tuple(self.state_dict[k].shape) != tuple(v.shape):
                return (f"the weights do not fit the model described in the file: {k} has shape "
                        f"{tensor_shape(self.state_dict[k])} in the file but the model needs {tensor_shape(v)}")
        for k, v in self.state_dict.items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                what = "NaN" if bool(torch.isnan(v).any()) else "infinite"
                return (f"the weights are not usable: {k} holds {what} values (the training that "
                        "made this file diverged)")
        return None

    def build_model(self, device: torch.device | str = "cpu") -> nn.Module:
        """A model with these weights, in eval mode. Raises CheckpointError on a mismatch or on
        non-finite weights."""
        model = build_model(self._buildable_config())
        problem = self.problem(model)
        if problem:
            raise CheckpointError(problem)
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()


def tensor_shape(t: torch.Tensor) -> str:
    """"[2, 3]": a tensor's shape as the messages write it."""
    return "[" + ", ".join(str(d) for d in t.shape) + "]"
