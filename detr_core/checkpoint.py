"""Checkpoints: one file holding everything needed to rebuild, inspect and continue a model.

Format (a dict, saved with ``torch.save``): ``format``, ``format_version``, ``model_config``,
``class_names``, ``model`` (state dict), ``optimizer``, ``history``, ``train_config``,
``step``. Only tensors and plain containers: loading uses ``torch.load(weights_only=True)`` and
never unpickles arbitrary objects. Saving is atomic (a temporary file renamed into place), so an
interrupted save never destroys the previous file.

The official facebookresearch/detr files (``{"model": state_dict, "args": Namespace}``) load too:
their config is read off the weight shapes.
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from detr_core.config import DETRConfig, TrainConfig, config_from_dict, to_dict
from detr_core.data.coco_names import COCO_CLASS_NAMES
from detr_core.model.detr import DETR

FORMAT = "detr-explorer-checkpoint"
FORMAT_VERSION = 1


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

    def build_model(self, device: torch.device | str = "cpu") -> DETR:
        """A model with these weights, in eval mode. Raises CheckpointError on a mismatch."""
        config = self.model_config
        if config.backbone != "tiny":
            # the file brings its own weights; never look for ImageNet ones
            config = DETRConfig(**{**to_dict(config), "pretrained_backbone": False})
        model = DETR(config)
        missing, unexpected = model.load_state_dict(self.state_dict, strict=False)
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
            raise CheckpointError("the weights do not fit the model described in the file: " + "; ".join(parts))
        return model.to(device).eval()


def save_checkpoint(
    path: str | Path,
    model: DETR,
    class_names: list[str],
    optimizer: torch.optim.Optimizer | None = None,
    history: dict | None = None,
    train_config: TrainConfig | None = None,
    step: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    path = Path(path)
    if len(class_names) != model.config.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {model.config.num_classes} classes")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": to_dict(model.config),
        "class_names": list(class_names),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history,
        "train_config": to_dict(train_config) if train_config is not None else None,
        "step": int(step),
        "extra": extra or {},
    }
    return write_atomically(path, lambda f: torch.save(payload, f))


def write_atomically(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """``write(f)`` into a temporary file next to ``path``, then rename it over ``path``: a
    reader never sees a half-written file, and a failed write leaves the old one in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a DETR Explorer checkpoint or an official DETR file. Raises CheckpointError."""
    path = Path(path)
    name = path.name
    if not path.exists():
        raise CheckpointError(f"{name}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{name}: is a folder, not a checkpoint file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError(
                f"{name}: refused to load, the file holds Python objects that are not plain data "
                f"({_unsupported(e)})"
            ) from None
        raise CheckpointError(f"{name}: not a readable PyTorch checkpoint; is it corrupt or truncated?") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{name}: not a readable PyTorch checkpoint; is it corrupt or truncated? ({_first_line(e)})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{name}: not a DETR checkpoint (it holds a {type(raw).__name__}, not a dict)")
    if raw.get("format") == FORMAT:
        return _from_explorer(raw, name)
    if isinstance(raw.get("model"), dict) and "class_embed.weight" in raw["model"]:
        return _from_official(raw, name)
    raise CheckpointError(f"{name}: not a DETR checkpoint (no DETR weights inside)")


def _unsupported(e: BaseException) -> str:
    for line in str(e).splitlines():
        if "Unsupported global" in line or "GLOBAL" in line:
            return line.strip()[:200]
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _from_explorer(raw: dict, name: str) -> Checkpoint:
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{name}: made by a newer DETR Explorer (format {version}); this version reads format {FORMAT_VERSION}"
        )
    try:
        model_config = config_from_dict(DETRConfig, raw["model_config"])
        train_config = config_from_dict(TrainConfig, raw["train_config"]) if raw.get("train_config") else None
        class_names = [str(c) for c in raw["class_names"]]
        state = raw["model"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{name}: incompatible checkpoint contents ({e})") from None
    if len(class_names) != model_config.num_classes:
        raise CheckpointError(f"{name}: {len(class_names)} class names for {model_config.num_classes} classes")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{name}: the weights are not a state dict of tensors")
    return Checkpoint(
        model_config, class_names, state, raw.get("optimizer"), raw.get("history"), train_config,
        int(raw.get("step", 0)), "detr-explorer", dict(raw.get("extra") or {}),
    )


def official_config(state: dict[str, torch.Tensor], args: Any = None) -> DETRConfig:
    """The DETRConfig of an official DETR state dict, read off its shapes."""

    def count(prefix: str) -> int:
        idx = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
        return max(idx) + 1 if idx else 0

    layer3_blocks = count("backbone.0.body.layer3.")
    bottleneck = "backbone.0.body.layer1.0.conv3.weight" in state
    if bottleneck:
        backbone = {6: "resnet50", 23: "resnet101"}.get(layer3_blocks)
    else:
        backbone = {2: "resnet18", 6: "resnet34"}.get(layer3_blocks)
    if backbone is None:
        raise CheckpointError(f"unrecognised backbone ({layer3_blocks} blocks in layer3)")
    if "backbone.0.body.layer4.0.conv2.weight" in state and getattr(args, "dilation", False):
        raise CheckpointError("dilated (DC5) backbones are not supported yet")
    num_queries, d_model = state["query_embed.weight"].shape
    return DETRConfig(
        backbone=backbone,
        pretrained_backbone=False,
        d_model=int(d_model),
        nheads=int(getattr(args, "nheads", 8)),
        num_encoder_layers=count("transformer.encoder.layers."),
        num_decoder_layers=count("transformer.decoder.layers."),
        dim_feedforward=int(state["transformer.encoder.layers.0.linear1.weight"].shape[0])
        if "transformer.encoder.layers.0.linear1.weight" in state
        else int(state["transformer.decoder.layers.0.linear1.weight"].shape[0]),
        dropout=0.0,
        num_queries=int(num_queries),
        num_classes=int(state["class_embed.weight"].shape[0]) - 1,
        pre_norm="transformer.encoder.norm.weight" in state,
    )


def _from_official(raw: dict, name: str) -> Checkpoint:
    state = {k: v for k, v in raw["model"].items() if isinstance(v, torch.Tensor)}
    try:
        config = official_config(state, raw.get("args"))
    except CheckpointError as e:
        raise CheckpointError(f"{name}: {e}") from None
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{name}: an official DETR file with unexpected contents ({e})") from None
    if config.num_classes == len(COCO_CLASS_NAMES):
        names = list(COCO_CLASS_NAMES)
    else:
        names = [f"class {i}" for i in range(config.num_classes)]
    return Checkpoint(config, names, state, source="facebookresearch/detr")


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[DETR, Checkpoint]:
    ckpt = load_checkpoint(path)
    try:
        return ckpt.build_model(device), ckpt
    except CheckpointError as e:
        raise CheckpointError(f"{Path(path).name}: {e}") from None


def model_summary(model: nn.Module) -> dict[str, Any]:
    cfg: DETRConfig = model.config  # type: ignore[assignment]
    return {
        "backbone": cfg.backbone,
        "queries": cfg.num_queries,
        "classes": cfg.num_classes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "d_model": cfg.d_model,
        "layers": f"{cfg.num_encoder_layers}+{cfg.num_decoder_layers}",
    }
