"""Checkpoints: one file holding everything needed to rebuild, inspect and continue a model.

Format (a dict, saved with ``torch.save``): ``format``, ``format_version``, ``model_config``,
``class_names``, ``model`` (state dict), ``optimizer``, ``history``, ``train_config``,
``step``. Only tensors and plain containers: loading uses ``torch.load(weights_only=True)`` and
never unpickles arbitrary objects. Saving is atomic (a temporary file renamed into place), so an
interrupted save never destroys the previous file; the temporary files of saves that were killed
are removed by the next save to the same place; SIGINT and SIGTERM wait until a save (on the main
thread) has finished; a full disk is named as such, with the space the file needed.

The official facebookresearch/detr files (``{"model": state_dict, "args": Namespace}``) load too:
their config is read off the weight shapes; so do the authors' RT-DETR and D-FINE files
(:mod:`detr_core.formats.official_rt_detr`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import pickle
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from detr_core.checkpoint_types import Checkpoint, CheckpointError
from detr_core.config import DETRConfig, TrainConfig, config_from_dict, to_saved_dict
from detr_core.data.coco_names import COCO_CLASS_NAMES
from detr_core.formats import hf, official_rt_detr
from detr_core.formats.resnet_layout import resnet_layout
from detr_core.model.detr import DETR

FORMAT = "detr-explorer-checkpoint"
FORMAT_VERSION = 1


class SaveError(OSError):
    """A file that could not be written; the message (``str(e)``) says where and why in one line."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


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
        "model_config": to_saved_dict(model.config),  # settings at their defaults left out: see there
        "class_names": list(class_names),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history,
        "train_config": to_saved_dict(train_config) if train_config is not None else None,
        "step": int(step),
        "extra": extra or {},
    }
    return write_atomically(path, lambda f: torch.save(payload, f), size_hint=_tensor_bytes(payload))


def _tensor_bytes(obj: Any) -> int:
    """Roughly how many bytes ``torch.save`` writes for ``obj`` (its tensors dominate)."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values()) + 64 * len(obj)
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj) + 16 * len(obj)
    return 16


def write_atomically(path: str | Path, write: Callable[[BinaryIO], Any], size_hint: int = 0) -> Path:
    """``write(f)`` into a temporary file next to ``path``, then rename it over ``path``: a
    reader never sees a half-written file, and a failed write leaves the old one in place.

    Temporary files of earlier saves to the same ``path`` whose process is gone (a killed save)
    are removed first. On the main thread SIGINT and SIGTERM are held until the file is in place
    (then delivered). A failure raises :class:`SaveError` with a one-line message (a full disk
    says so, with about how much space was needed: ``size_hint`` bytes, if given)."""
    path = Path(path)
    with hold_signals():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SaveError(f"cannot save {path}: {_reason(e)}", e.errno) from None
        if path.is_dir():
            raise SaveError(f"cannot save {path}: it is a folder", errno.EISDIR)
        remove_stale_temporaries(path)
        tmp = _temporary_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        except OSError as e:
            raise SaveError(f"cannot save {path}: {_reason(e)}", e.errno) from None
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, SaveError):
                raise _save_error(path, e, size_hint) from None
            raise
    return path


def _temporary_name(path: Path) -> Path:
    """``.NAME.<pid>.<random>.tmp`` next to ``path``: the pid tells a later save whether the
    process that wrote it is gone."""
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


STALE_SECONDS = 600  # a temporary file without a pid this old is stale (older versions wrote those)


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files that killed saves to ``path`` left behind; returns them."""
    path = Path(path)
    removed = []
    prefix, now = f".{path.name}.", time.time()
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return removed
    for p in candidates:
        middle = p.name[len(prefix) : -len(".tmp")].split(".")
        try:
            if len(middle) == 2 and middle[0].isdigit():
                if _process_alive(int(middle[0])):
                    continue
            elif now - p.stat().st_mtime < STALE_SECONDS:
                continue
            p.unlink()
            removed.append(p)
        except OSError:
            continue
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror[0].lower() + e.strerror[1:]
    return _first_line(e)


def _disk_full(e: BaseException, folder: Path, size_hint: int) -> bool:
    chain: BaseException | None = e
    while chain is not None:
        if isinstance(chain, OSError) and chain.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        chain = chain.__context__ or chain.__cause__
    # torch's zip writer reports a short write as "[enforce fail ...] unexpected pos": the disk
    # is full when less space is left than the file needs
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return False
    return free < max(size_hint, 1) * 1.05 + 1024 * 1024


def _save_error(path: Path, e: BaseException, size_hint: int) -> SaveError:
    if _disk_full(e, path.parent, size_hint):
        needed = f" (needed about {max(1, math.ceil(size_hint / 1e6))} MB)" if size_hint else ""
        return SaveError(f"cannot save {path}: no space left on the device{needed}", errno.ENOSPC)
    return SaveError(f"cannot save {path}: {_reason(e)}", getattr(e, "errno", None))


def check_writable(path: str | Path) -> Path:
    """Raise :class:`SaveError` now (one line) if a file cannot be saved at ``path`` later:
    ``path`` is a folder, lies under a file, or its folder is read-only. Creates the folder."""
    path = Path(path)
    if path.is_dir():
        raise SaveError(f"cannot save {path}: it is a folder", errno.EISDIR)
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise SaveError(f"cannot save {path}: {ancestor} is a file, not a folder", errno.ENOTDIR)
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temporary_name(path)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        tmp.unlink()
    except OSError as e:
        raise SaveError(f"cannot save {path}: {_reason(e)}", e.errno) from None
    if path.exists() and not os.access(path, os.W_OK) and not os.access(path.parent, os.W_OK):
        raise SaveError(f"cannot save {path}: permission denied", errno.EACCES)
    return path


@contextlib.contextmanager
def hold_signals(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM until the block ends, then hand each that arrived to the handler
    that was in place (so Ctrl-C still stops the program, after the file is safe). Yields the
    list of held signals. A no-op off the main thread (signals are only delivered there)."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous = {}
    try:
        for s in signums:
            previous[s] = signal.signal(s, lambda signum, frame: held.append(signum))
    except (ValueError, OSError):  # an embedded interpreter: leave signals alone
        for s, h in previous.items():
            signal.signal(s, h)
        yield held
        return
    try:
        yield held
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        for s in dict.fromkeys(held):
            handler = previous.get(s)
            if callable(handler):
                handler(s, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(s)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a DETR Explorer checkpoint, an official DETR, RT-DETR or D-FINE file, or a Hugging Face
    folder. Raises CheckpointError."""
    path = Path(path)
    name = path.name
    if not path.exists():
        raise CheckpointError(f"{name}: no such file")
    if hf.is_hf_checkpoint(path):
        return hf.load_hf_checkpoint(path)
    if path.is_dir():
        raise CheckpointError(f"{name}: is a folder, not a checkpoint file (nor a Hugging Face model folder "
                              "with config.json)")
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
    except MemoryError:
        raise CheckpointError(f"{name}: not a readable PyTorch checkpoint (too large for the memory left)") from None
    except Exception as e:  # noqa: BLE001 - torch.load fails on damaged files in many ways
        # (RuntimeError, EOFError, BadZipFile, IndexError, KeyError...): all mean the same thing
        raise CheckpointError(f"{name}: not a readable PyTorch checkpoint; is it corrupt or truncated? ({_first_line(e)})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{name}: not a DETR checkpoint (it holds a {type(raw).__name__}, not a dict)")
    try:
        if raw.get("format") == FORMAT:
            return _from_explorer(raw, name)
        if isinstance(raw.get("model"), dict) and _detection_part(raw["model"]) is not None:
            return _from_official(raw, name)
        if _detection_part(raw) is not None:  # a bare state dict: weights only
            return _from_official({"model": raw}, name)
        if official_rt_detr.is_official(raw):  # lyuwenyu/RT-DETR, Peterande/D-FINE
            return official_rt_detr.load_official(raw, name)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - plain data in an unexpected layout
        raise CheckpointError(f"{name}: incompatible checkpoint contents ({_first_line(e)})") from None
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


def _detection_part(state: dict) -> dict[str, torch.Tensor] | None:
    """The detector's weights of an official file: the state itself, or for a panoptic model
    (``detr.`` + the detector, plus ``bbox_attention`` and ``mask_head``) its ``detr.`` part."""
    if not isinstance(state, dict):
        return None
    if "class_embed.weight" in state:
        return state
    if "detr.class_embed.weight" in state:
        return {k[len("detr."):]: v for k, v in state.items() if isinstance(k, str) and k.startswith("detr.")}
    return None


def official_config(state: dict[str, torch.Tensor], args: Any = None, nheads: int | None = None) -> DETRConfig:
    """The DETRConfig of an official DETR state dict, read off its shapes; the head count and
    DC5 dilation come from ``args`` (the shapes cannot tell), else ``nheads`` and no dilation."""

    def count(prefix: str) -> int:
        idx = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
        return max(idx) + 1 if idx else 0

    num_queries, d_model = state["query_embed.weight"].shape
    heads = getattr(args, "nheads", None) or nheads or 8
    return DETRConfig(
        **resnet_layout(state),
        dilation=bool(getattr(args, "dilation", False)),
        pretrained_backbone=False,
        d_model=int(d_model),
        nheads=int(heads),
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


DEFAULT_NHEADS = 8  # the reference's default: assumed for weights-only files


def _from_official(raw: dict, name: str) -> Checkpoint:
    full = raw["model"]
    state = {k: v for k, v in (_detection_part(full) or {}).items() if isinstance(v, torch.Tensor)}
    args = raw.get("args")
    assumptions: dict[str, Any] = {}
    if getattr(args, "nheads", None) is None:
        assumptions["nheads"] = DEFAULT_NHEADS
    if args is None and "dc5" in name.lower():
        args = argparse.Namespace(dilation=True, nheads=None)  # the official files' names say DC5
        assumptions["dilation"] = True
    try:
        config = official_config(state, args, DEFAULT_NHEADS)
    except CheckpointError as e:
        raise CheckpointError(f"{name}: {e}") from None
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{name}: an official DETR file with unexpected contents ({e})") from None
    if config.num_classes == len(COCO_CLASS_NAMES):
        names = list(COCO_CLASS_NAMES)
    else:
        names = [f"class {i}" for i in range(config.num_classes)]
    extra = {"panoptic": True} if "detr.class_embed.weight" in full else {}
    return Checkpoint(config, names, state, source="facebookresearch/detr", extra=extra, assumptions=assumptions)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[DETR, Checkpoint]:
    ckpt = load_checkpoint(path)
    try:
        return ckpt.build_model(device), ckpt
    except CheckpointError as e:
        raise CheckpointError(f"{Path(path).name}: {e}") from None


def model_summary(model: nn.Module) -> dict[str, Any]:
    """The family (and its paper), backbone, sizes and parameter count of a built model."""
    from detr_core.model.registry import describe

    cfg: DETRConfig = model.config  # type: ignore[assignment]
    family = describe(cfg)
    return {
        "family": family["family"],
        "paper": family["paper"],
        "backbone": family["backbone"] if cfg.backbone == "transformers" else cfg.backbone,
        "queries": cfg.num_queries,
        "classes": cfg.num_classes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "d_model": cfg.d_model,
        "layers": f"{cfg.num_encoder_layers}+{cfg.num_decoder_layers}",
    }
