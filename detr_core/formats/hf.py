"""Hugging Face DETR files: a ``save_pretrained`` folder (``config.json`` plus ``model.safetensors``
or ``pytorch_model.bin``) opened as a :class:`~detr_core.checkpoint_types.Checkpoint`, and written back.

The architecture comes from ``config.json`` (queries, d_model, heads, layers, FFN width, dilation,
``id2label``); parameter names are mapped onto this project's modules, which follow the
reference implementation one to one. Both backbone layouts Hugging Face writes are read: the
timm ResNet (``conv1``, ``layer1.0.conv1`` ..., torchvision's own names) and the transformers
``ResNetBackbone`` (``embedder``, ``encoder.stages.N.layers.M.layer.K`` ...). Attention weights
are split into ``q_proj``/``k_proj``/``v_proj`` there and packed into ``in_proj_weight`` here.

The folder's image processor (``preprocessor_config.json``) sets the input size; pixels other
than the ImageNet-normalized ones this project's models take are refused by name
(:mod:`detr_core.formats.hf_processor`, which every family's folder goes through).

Safetensors files are read with the ``safetensors`` package (it runs no code); ``.bin`` files
with ``torch.load(weights_only=True)``. Nothing here imports ``transformers``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import torch

from detr_core.checkpoint_types import Checkpoint, CheckpointError
from detr_core.config import DETRConfig
from detr_core.formats.hf_processor import open_processor
from detr_core.formats.resnet_layout import STANDARD_RESNETS, resnet_layout

CONFIG_NAME = "config.json"
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


def _error(message: str) -> Exception:
    return CheckpointError(message)


NATIVE_MODEL_TYPES = ("detr", "deformable_detr")  # read into this project's own modules


def _wrapped_families() -> dict[str, str]:
    """transformers' model_type -> the module of a family wrapped from transformers."""
    from detr_core.model.hf_families import FAMILIES

    return FAMILIES


def _is_detr_config(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    kind = str(data.get("model_type", "")) if isinstance(data, dict) else ""
    return kind in NATIVE_MODEL_TYPES or kind in _wrapped_families()


def hub_snapshot(path: Path) -> Path:
    """The snapshot folder of a Hugging Face Hub cache entry (``models--org--name``, holding
    ``snapshots/<hash>/``): the one ``refs/main`` names, else the newest. Other paths unchanged."""
    snapshots = path / "snapshots"
    if not (path.is_dir() and path.name.startswith("models--") and snapshots.is_dir()):
        return path
    try:
        ref = (path / "refs" / "main").read_text().strip()
    except OSError:
        ref = ""
    if ref and (snapshots / ref).is_dir():
        return snapshots / ref
    found = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not found:
        raise _error(f"{path.name}: a Hugging Face cache entry without any snapshot inside")
    return found[-1]


def is_hf_checkpoint(path: str | Path) -> bool:
    """A Hugging Face DETR-family folder (or Hub cache entry), or one of its files (``config.json``,
    the weights)."""
    path = Path(path)
    if path.is_dir() and path.name.startswith("models--") and (path / "snapshots").is_dir():
        return True
    if path.is_dir():
        return (path / CONFIG_NAME).is_file()
    if path.suffix == ".safetensors" or path.suffix == ".json":
        return True
    return path.suffix == ".bin" and _is_detr_config(path.with_name(CONFIG_NAME))


def _files(path: Path) -> tuple[Path, Path]:
    """(config.json, weights) for a folder or for one of its files picked on its own."""
    folder = path if path.is_dir() else path.parent
    config = path if path.suffix == ".json" else folder / CONFIG_NAME
    if path.is_file() and path.suffix in (".safetensors", ".bin"):
        weights = path
    else:
        found = [folder / n for n in WEIGHT_NAMES if (folder / n).is_file()]
        if not found:
            raise _error(f"{path.name}: no {' or '.join(WEIGHT_NAMES)} next to {CONFIG_NAME}")
        weights = found[0]
    if not config.is_file():
        raise _error(f"{weights.name}: no {CONFIG_NAME} next to it (Hugging Face files need both; the "
                     "architecture is read from the config)")
    return config, weights


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` (no code runs) or ``.bin`` (``weights_only=True``)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - damaged files fail in many ways
        raise _error(f"{path.name}: not a readable weights file; is it corrupt or truncated? ({e})") from None
    if not isinstance(state, dict):
        raise _error(f"{path.name}: not a state dict")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


# --- names ---------------------------------------------------------------------------------------

_BACKBONE_PREFIXES = ("model.backbone.conv_encoder.model.", "model.backbone.model.")
_HF_RESNET = [  # transformers ResNetBackbone -> torchvision names
    (r"^embedder\.embedder\.convolution\.", "conv1."),
    (r"^embedder\.embedder\.normalization\.", "bn1."),
    (r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.", lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.0."),
    (r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.", lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.1."),
    (r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.", lambda m: f"layer{int(m[1]) + 1}.{m[2]}.conv{int(m[3]) + 1}."),
    (r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\.", lambda m: f"layer{int(m[1]) + 1}.{m[2]}.bn{int(m[3]) + 1}."),
]
_ENCODER_LAYER = {"self_attn_layer_norm": "norm1", "final_layer_norm": "norm2", "fc1": "linear1",
                  "fc2": "linear2", "mlp.fc1": "linear1", "mlp.fc2": "linear2"}
_DECODER_LAYER = {"self_attn_layer_norm": "norm1", "encoder_attn_layer_norm": "norm2", "final_layer_norm": "norm3",
                  "fc1": "linear1", "fc2": "linear2", "mlp.fc1": "linear1", "mlp.fc2": "linear2",
                  "encoder_attn": "multihead_attn", "self_attn": "self_attn"}


def hf_to_detr_state(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face DETR parameter names -> this project's (the reference's). Unknown names
    (a segmentation head, ``num_batches_tracked``) are dropped."""
    if any(k.startswith("detr.") for k in hf):  # DetrForSegmentation: its detection part
        hf = {k[len("detr."):]: v for k, v in hf.items() if k.startswith("detr.")}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in hf.items():
        if key.endswith("num_batches_tracked"):
            continue
        new = None
        for prefix in _BACKBONE_PREFIXES:
            if key.startswith(prefix):
                rest = key[len(prefix):]
                rest = rest.removeprefix("_backbone.")
                for pattern, repl in _HF_RESNET:
                    rest = re.sub(pattern, repl, rest)
                new = "backbone.0.body." + rest
        if new is None:
            m = re.match(r"^model\.(encoder|decoder)\.layers\.(\d+)\.(.+)$", key)
            if m:
                part, i, rest = m[1], m[2], m[3]
                table = _ENCODER_LAYER if part == "encoder" else _DECODER_LAYER
                a = re.match(r"^(self_attn|encoder_attn)\.(q|k|v|o|out)_proj\.(weight|bias)$", rest)
                if a:
                    attn = f"transformer.{part}.layers.{i}.{table.get(a[1], a[1])}"
                    if a[2] in ("o", "out"):
                        new = f"{attn}.out_proj.{a[3]}"
                    else:
                        qkv.setdefault(f"{attn}.in_proj_{a[3]}", {})[a[2]] = value
                        continue
                else:
                    module, param = rest.rsplit(".", 1)
                    if module in table:
                        new = f"transformer.{part}.layers.{i}.{table[module]}.{param}"
            elif key.startswith("model.decoder.layernorm."):
                new = "transformer.decoder.norm." + key.rsplit(".", 1)[1]
            elif key.startswith("model.input_projection."):
                new = "input_proj." + key.rsplit(".", 1)[1]
            elif key == "model.query_position_embeddings.weight":
                new = "query_embed.weight"
            elif key.startswith("class_labels_classifier."):
                new = "class_embed." + key.rsplit(".", 1)[1]
            elif key.startswith("bbox_predictor.layers."):
                new = "bbox_embed." + key[len("bbox_predictor."):]
        if new is not None:
            out[new] = value
    for name, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise _error(f"incomplete attention weights for {name} (found {sorted(parts)})")
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def detr_to_hf_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This project's names -> the names ``save_pretrained`` writes (a transformers
    ``ResNetBackbone``, as ``backbone_config`` in :func:`hf_config` describes)."""
    out: dict[str, torch.Tensor] = {}
    enc = {v: k for k, v in _ENCODER_LAYER.items() if "." not in k}
    dec = {v: k for k, v in _DECODER_LAYER.items() if "." not in k}
    for key, value in state.items():
        value = value.detach().cpu().contiguous()
        if key.startswith("backbone.0.body."):
            rest = key[len("backbone.0.body."):]
            if key.startswith("backbone.0.body.conv1."):
                rest = "embedder.embedder.convolution." + rest.split(".", 1)[1]
            elif key.startswith("backbone.0.body.bn1."):
                rest = "embedder.embedder.normalization." + rest.split(".", 1)[1]
            else:
                m = re.match(r"^layer(\d)\.(\d+)\.(conv|bn|downsample\.)(\d)\.(.+)$", rest)
                if m is None:
                    raise _error(f"no Hugging Face name for {key}")
                stage, block = int(m[1]) - 1, m[2]
                base = f"encoder.stages.{stage}.layers.{block}"
                if m[3] == "downsample.":
                    kind = "convolution" if m[4] == "0" else "normalization"
                    rest = f"{base}.shortcut.{kind}.{m[5]}"
                else:
                    kind = "convolution" if m[3] == "conv" else "normalization"
                    rest = f"{base}.layer.{int(m[4]) - 1}.{kind}.{m[5]}"
            out["model.backbone.conv_encoder.model." + rest] = value
            continue
        m = re.match(r"^transformer\.(encoder|decoder)\.layers\.(\d+)\.(.+)\.(\w+)$", key)
        if m:
            part, i, module, param = m[1], m[2], m[3], m[4]
            table = enc if part == "encoder" else dec
            prefix = f"model.{part}.layers.{i}"
            if module in ("self_attn", "multihead_attn"):
                name = "self_attn" if module == "self_attn" else "encoder_attn"
                for j, p in enumerate("qkv"):
                    out[f"{prefix}.{name}.{p}_proj.{param[len('in_proj_'):]}"] = value.chunk(3, dim=0)[j].clone()
                continue
            if module.endswith("out_proj"):
                name = "self_attn" if module.startswith("self_attn") else "encoder_attn"
                out[f"{prefix}.{name}.out_proj.{param}"] = value
                continue
            out[f"{prefix}.{table[module]}.{param}"] = value
            continue
        simple = {"transformer.decoder.norm.": "model.decoder.layernorm.", "input_proj.": "model.input_projection.",
                  "query_embed.": "model.query_position_embeddings.", "class_embed.": "class_labels_classifier.",
                  "bbox_embed.": "bbox_predictor."}
        for ours, theirs in simple.items():
            if key.startswith(ours):
                out[theirs + key[len(ours):]] = value
                break
        else:
            raise _error(f"no Hugging Face name for {key}")
    return out


# --- configs -------------------------------------------------------------------------------------

def _shared_config_fields(hf: dict[str, Any], state: dict[str, torch.Tensor], model: str,
                          ffn_default: int) -> dict[str, Any]:
    """The DETRConfig fields DETR and Deformable DETR configs spell alike (backbone from the
    weights, transformer sizes), after refusing what this app cannot run."""
    if hf.get("position_embedding_type", "sine") != "sine":
        raise _error(f"position_embedding_type {hf['position_embedding_type']!r} (only sine is supported)")
    if hf.get("activation_function", "relu") != "relu":
        raise _error(f"activation_function {hf['activation_function']!r} ({model} uses relu)")
    heads = {hf.get("encoder_attention_heads", 8), hf.get("decoder_attention_heads", 8)}
    ffn = {hf.get("encoder_ffn_dim", ffn_default), hf.get("decoder_ffn_dim", ffn_default)}
    if len(heads) > 1 or len(ffn) > 1:
        raise _error("different encoder and decoder head counts or FFN widths are not supported")
    backbone = hf.get("backbone_config") or {}
    return {
        **resnet_layout(state),
        # transformers dilates only through the backbone config: ``dilation`` counts only where it
        # builds that config itself (none in the file), and is ignored beside a ResNet config
        "dilation": backbone.get("output_stride") == 16 if backbone else bool(hf.get("dilation")),
        "pretrained_backbone": False,
        "d_model": int(hf.get("d_model", 256)),
        "nheads": int(heads.pop()),
        "num_encoder_layers": int(hf.get("encoder_layers", 6)),
        "num_decoder_layers": int(hf.get("decoder_layers", 6)),
        "dim_feedforward": int(ffn.pop()),
        "dropout": 0.0,
    }


# Every field of transformers' DetrConfig (beyond PretrainedConfig's generic ones) is in exactly
# one of these three tables, so a field that changes transformers' forward pass is either followed
# or refused by name, never silently ignored (tests/test_hf_checkpoints.py walks DetrConfig's
# fields against them). Fields older transformers versions wrote are listed too.
HF_DETR_FOLLOWED = {
    # field -> the DETRConfig field it sets (or how it is followed)
    "d_model": "d_model",
    "encoder_layers": "num_encoder_layers",
    "num_hidden_layers": "num_encoder_layers",  # transformers' alias of encoder_layers
    "decoder_layers": "num_decoder_layers",
    "encoder_attention_heads": "nheads",
    "decoder_attention_heads": "nheads (must equal encoder_attention_heads)",
    "encoder_ffn_dim": "dim_feedforward",
    "decoder_ffn_dim": "dim_feedforward (must equal encoder_ffn_dim)",
    "num_queries": "num_queries",
    "dilation": "dilation (as transformers: only where it builds the backbone itself, i.e. no backbone_config)",
    "auxiliary_loss": "decoder_norm_between_layers",
    "backbone_config": "the ResNet's layout is read off the weights; output_stride 16 sets dilation; "
                       "a last feature map other than stage 4 is refused",
    "use_timm_backbone": "either backbone layout is read off the weights",
    "backbone": "the ResNet's size is read off the weights",
}
# field -> (the value this app runs, why another is refused)
HF_DETR_REFUSED = {
    "activation_function": ("relu", "the explorer's transformer layers use relu"),
    "position_embedding_type": ("sine", "the explorer's position encoding is the sine one"),
    "num_channels": (3, "the explorer feeds RGB images to the backbone"),
}
HF_DETR_NO_EFFECT = {  # do not change the forward pass of a model in eval mode
    "dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop", "decoder_layerdrop",
    "classifier_dropout",  # training only
    "init_std", "init_xavier_std", "use_pretrained_backbone",  # initialisation only
    "class_cost", "bbox_cost", "giou_cost", "mask_loss_coefficient", "dice_loss_coefficient",
    "bbox_loss_coefficient", "giou_loss_coefficient", "eos_coefficient",  # the loss
    "scale_embedding", "max_position_embeddings",  # written by older versions, read by none
}


def _refused(hf: dict[str, Any], table: dict[str, tuple[Any, str]]) -> list[str]:
    """The fields of ``table`` whose value in ``hf`` is not the one this app runs, in words."""
    problems = [f"{name}={hf[name]!r} is not supported ({why}; only {runs!r})"
                for name, (runs, why) in table.items() if name in hf and hf[name] != runs]
    backbone = hf.get("backbone_config") or {}
    if backbone.get("output_stride") not in (None, 16, 32):
        problems.append(f"backbone_config.output_stride={backbone['output_stride']!r} is not supported (only 16 or 32)")
    return problems


def refused_hf_fields(hf: dict[str, Any]) -> list[str]:
    """What in a DETR ``config.json`` this app cannot follow, each naming its field and value."""
    problems = _refused(hf, HF_DETR_REFUSED)
    backbone = hf.get("backbone_config") or {}
    # transformers projects the backbone's last selected feature map; the explorer the last stage's
    last = {"out_features": "stage4", "out_indices": 4}
    for key, want in last.items():
        chosen = backbone.get(key)
        if chosen and chosen[-1] != want:
            problems.append(f"backbone_config.{key}={chosen!r} is not supported (the explorer reads the "
                            f"last stage's features; only a list ending in {want!r})")
    return problems


def detr_config_from_hf(hf: dict[str, Any], state: dict[str, torch.Tensor]) -> DETRConfig:
    """The DETRConfig a Hugging Face ``config.json`` describes (backbone read off the weights)."""
    problems = refused_hf_fields(hf)
    if problems:
        raise _error("; ".join(problems))
    return DETRConfig(
        **_shared_config_fields(hf, state, "DETR", 2048),
        num_queries=int(hf.get("num_queries", 100)),
        num_classes=int(state["class_embed.weight"].shape[0]) - 1,
        pre_norm=False,  # Hugging Face DETR is post-norm only (no encoder norm to hold pre-norm)
        # transformers runs its decoder differently when auxiliary_loss is set (see DETRConfig)
        decoder_norm_between_layers=bool(hf.get("auxiliary_loss", False)),
    )


def with_processor_size(config: DETRConfig, folder: Path) -> DETRConfig:
    """``config`` resizing as the folder's image processor does (its ``size``); CheckpointError on
    a processor field the explorer's own DETR cannot follow, e.g. pixels other than ImageNet-normalized
    (:mod:`detr_core.formats.hf_processor`)."""
    size, _pixels = open_processor(folder, own_normalization=True)
    if size is None:
        return config
    return dataclasses.replace(config, **size.config_fields())


def class_names_from_hf(hf: dict[str, Any], num_classes: int) -> list[str]:
    id2label = {int(k): str(v) for k, v in (hf.get("id2label") or {}).items()}
    return [id2label.get(i, f"class {i}") for i in range(num_classes)]


def load_hf_checkpoint(path: str | Path):
    """A Hugging Face DETR-family folder (or Hub cache entry, or its config.json or weights file)
    as a Checkpoint. DETR and Deformable DETR are read into this project's modules; the families
    in :mod:`detr_core.model.hf_families` are opened by wrapping transformers' own."""
    path = hub_snapshot(Path(path))
    config_path, weights_path = _files(path)
    try:
        hf = json.loads(config_path.read_text())
    except (OSError, ValueError) as e:
        raise _error(f"{config_path.name}: not readable JSON ({e})") from None
    if isinstance(hf, dict) and hf.get("model_type") == "deformable_detr":
        return load_hf_deformable(hf, config_path, weights_path)
    wrapped = _wrapped_families()
    if isinstance(hf, dict) and hf.get("model_type") in wrapped:
        from detr_core.model.hf_families import family_module
        from detr_core.model.hf_families.base import open_folder

        return open_folder(family_module(hf["model_type"]).build, hf, config_path, weights_path)
    if not isinstance(hf, dict) or hf.get("model_type") != "detr":
        kind = hf.get("model_type") if isinstance(hf, dict) else None
        known = ", ".join(repr(k) for k in (*NATIVE_MODEL_TYPES, *wrapped))
        raise _error(f"{config_path.name}: not a DETR-family config (model_type {kind!r}; this app opens {known})")
    raw = read_weights(weights_path)
    state = hf_to_detr_state(raw)
    if "class_embed.weight" not in state:
        raise _error(f"{weights_path.name}: no DETR detection head inside")
    try:
        config = detr_config_from_hf(hf, state)
    except ValueError as e:
        raise _error(f"{config_path.name}: {e}") from None
    config = with_processor_size(config, config_path.parent)
    names = class_names_from_hf(hf, config.num_classes)
    extra = {"panoptic": True} if any(k.startswith("detr.") for k in raw) else {}
    return Checkpoint(config, names, state, source="huggingface/transformers", extra=extra)


def hf_config(config: DETRConfig, class_names: list[str]) -> dict[str, Any]:
    """The ``config.json`` of a DETRConfig, for transformers' ``DetrForObjectDetection``."""
    if config.backbone == "resnet":
        block, depths, widths = config.resnet_block, config.resnet_depths, config.resnet_widths
    else:
        block, depths, widths = STANDARD_RESNETS[config.backbone]
    return {
        "model_type": "detr",
        "architectures": ["DetrForObjectDetection"],
        "use_timm_backbone": False,
        "use_pretrained_backbone": False,
        "backbone_config": {
            "model_type": "resnet",
            "embedding_size": widths[0],
            "hidden_sizes": list(widths[1:]),
            "depths": list(depths),
            "layer_type": block,
            "hidden_act": "relu",
            "downsample_in_first_stage": False,
            "downsample_in_bottleneck": False,
            "out_features": ["stage4"],
        },
        "num_channels": 3,
        "d_model": config.d_model,
        "encoder_layers": config.num_encoder_layers,
        "decoder_layers": config.num_decoder_layers,
        "encoder_attention_heads": config.nheads,
        "decoder_attention_heads": config.nheads,
        "encoder_ffn_dim": config.dim_feedforward,
        "decoder_ffn_dim": config.dim_feedforward,
        "num_queries": config.num_queries,
        "dropout": config.dropout,
        "activation_function": "relu",
        "position_embedding_type": "sine",
        "dilation": False,
        # transformers reads this flag as a change to the decoder's forward pass, not as a loss option
        "auxiliary_loss": config.decoder_norm_between_layers,
        "id2label": {str(i): n for i, n in enumerate(class_names)},
        "label2id": {n: i for i, n in enumerate(class_names)},
    }


# --- Deformable DETR -----------------------------------------------------------------------------

_DEF_ENCODER_LAYER = {"self_attn_layer_norm": "norm1", "final_layer_norm": "norm2", "fc1": "linear1",
                      "fc2": "linear2", "mlp.fc1": "linear1", "mlp.fc2": "linear2", "self_attn": "self_attn"}
_DEF_DECODER_LAYER = {"encoder_attn": "cross_attn", "encoder_attn_layer_norm": "norm1", "self_attn_layer_norm": "norm2",
                      "final_layer_norm": "norm3", "fc1": "linear1", "fc2": "linear2", "mlp.fc1": "linear1",
                      "mlp.fc2": "linear2"}
_DEF_TRANSFORMER = ("level_embed", "reference_points.", "enc_output.", "enc_output_norm.", "pos_trans.",
                    "pos_trans_norm.")


def hf_deformable_to_state(hf: dict[str, torch.Tensor], num_pred: int) -> dict[str, torch.Tensor]:
    """Hugging Face ``DeformableDetrForObjectDetection`` names -> this project's (the authors').

    Per-layer heads Hugging Face ties (and so writes once) are filled from the one written: a
    head ``i`` missing from the file is ``model.decoder``'s copy, else head 0."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    heads: dict[str, dict[int, torch.Tensor]] = {}
    for key, value in hf.items():
        if key.endswith("num_batches_tracked"):
            continue
        new = None
        for prefix in _BACKBONE_PREFIXES:
            if key.startswith(prefix):
                rest = key[len(prefix):].removeprefix("_backbone.")
                for pattern, repl in _HF_RESNET:
                    rest = re.sub(pattern, repl, rest)
                new = "backbone.0.body." + rest
        m = re.match(r"^model\.(encoder|decoder)\.layers\.(\d+)\.(.+)$", key)
        h = re.match(r"^(?:model\.decoder\.)?(class_embed|bbox_embed)\.(\d+)\.(.+)$", key)
        if new is not None:
            pass
        elif m:
            part, i, rest = m[1], m[2], m[3]
            table = _DEF_ENCODER_LAYER if part == "encoder" else _DEF_DECODER_LAYER
            base = f"transformer.{part}.layers.{i}"
            a = re.match(r"^self_attn\.(q|k|v|o|out)_proj\.(weight|bias)$", rest)
            d = re.match(r"^(self_attn|encoder_attn)\.(sampling_offsets|attention_weights|value_proj|output_proj)\.(\w+)$", rest)
            if d:
                new = f"{base}.{table[d[1]]}.{d[2]}.{d[3]}"
            elif a and part == "decoder":
                if a[1] in ("o", "out"):
                    new = f"{base}.self_attn.out_proj.{a[2]}"
                else:
                    qkv.setdefault(f"{base}.self_attn.in_proj_{a[2]}", {})[a[1]] = value
                    continue
            else:
                module, param = rest.rsplit(".", 1)
                if module in table:
                    new = f"{base}.{table[module]}.{param}"
        elif h:
            # the top-level head wins over model.decoder's copy (they are the same tensors when tied)
            slot = heads.setdefault(f"{h[1]}.{{}}.{h[3]}", {})
            if int(h[2]) not in slot or not key.startswith("model.decoder."):
                slot[int(h[2])] = value
            continue
        elif key.startswith("model.input_proj."):
            new = "input_proj." + key[len("model.input_proj."):]
        elif key == "model.query_position_embeddings.weight":
            new = "query_embed.weight"
        elif key.startswith("model.") and key[len("model."):].startswith(_DEF_TRANSFORMER):
            new = "transformer." + key[len("model."):]
        if new is not None:
            out[new] = value
    for name, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise _error(f"incomplete attention weights for {name} (found {sorted(parts)})")
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    for pattern, by_layer in heads.items():
        if 0 not in by_layer:
            raise _error(f"no {pattern.format(0)} in the file")
        for i in range(num_pred):
            out[pattern.format(i)] = by_layer.get(i, by_layer[0])
    return out


# Every field of transformers' DeformableDetrConfig (beyond PretrainedConfig's generic ones) is in
# exactly one of these three tables, as for DETR above (tests/test_deformable.py walks the class).
HF_DEFORMABLE_FOLLOWED = {
    # field -> the DETRConfig field it sets (or how it is followed)
    "d_model": "d_model",
    "encoder_layers": "num_encoder_layers",
    "decoder_layers": "num_decoder_layers",
    "encoder_attention_heads": "nheads",
    "decoder_attention_heads": "nheads (must equal encoder_attention_heads)",
    "encoder_ffn_dim": "dim_feedforward",
    "decoder_ffn_dim": "dim_feedforward (must equal encoder_ffn_dim)",
    "num_queries": "num_queries (without two_stage)",
    "two_stage_num_proposals": "num_queries (with two_stage)",
    "two_stage": "two_stage",
    "with_box_refine": "with_box_refine",
    "num_feature_levels": "num_feature_levels",
    "encoder_n_points": "enc_n_points",
    "decoder_n_points": "dec_n_points",
    "dilation": "dilation (as transformers: only where it builds the backbone itself, i.e. no backbone_config)",
    "backbone_config": "the ResNet's layout is read off the weights; output_stride 16 sets dilation; stages "
                       "other than the last num_feature_levels of stage2..stage4 are refused",
    "use_timm_backbone": "either backbone layout is read off the weights",
    "backbone": "the ResNet's size is read off the weights",
    # transformers ties the per-layer heads to head 0 unless the file holds them apart: the loader
    # reads every head the file holds and fills a missing one from head 0, as from_pretrained does
    "tie_word_embeddings": "per-layer heads: those in the file as written, missing ones from head 0",
}
# field -> (the value this app runs, why another is refused)
HF_DEFORMABLE_REFUSED = HF_DETR_REFUSED  # the same three: both families share those layers
HF_DEFORMABLE_NO_EFFECT = {  # do not change the forward pass of a model in eval mode
    "dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop",  # training only
    "init_std", "init_xavier_std", "use_pretrained_backbone",  # initialisation only
    "class_cost", "bbox_cost", "giou_cost", "mask_loss_coefficient", "dice_loss_coefficient",
    "bbox_loss_coefficient", "giou_loss_coefficient", "eos_coefficient", "focal_alpha",  # the loss
    "auxiliary_loss",  # Deformable DETR's decoder runs the same with it (unlike DETR's): the loss only
    "return_intermediate",  # read by no transformers code: every layer's output is always returned
    "disable_custom_kernels",  # which kernel computes the same sampling (the custom one is CUDA only)
    "max_position_embeddings",  # read by no transformers code
}


def refused_deformable_fields(hf: dict[str, Any]) -> list[str]:
    """What in a Deformable DETR ``config.json`` this app cannot follow, each naming its field."""
    problems = _refused(hf, HF_DEFORMABLE_REFUSED)
    backbone = hf.get("backbone_config") or {}
    levels = int(hf.get("num_feature_levels", 4))
    read = min(levels, 3)  # the backbone stages the explorer reads: the last ``read`` of 2..4
    for key, names in (("out_features", ["stage2", "stage3", "stage4"]), ("out_indices", [2, 3, 4])):
        chosen = backbone.get(key)
        if chosen and list(chosen) != names[-read:]:
            problems.append(f"backbone_config.{key}={chosen!r} is not supported with num_feature_levels={levels} "
                            f"(the explorer reads the last {read} of stage2..stage4: {names[-read:]!r})")
    return problems


def deformable_config_from_hf(hf: dict[str, Any], state: dict[str, torch.Tensor]) -> DETRConfig:
    """The DETRConfig a Hugging Face Deformable DETR ``config.json`` describes."""
    problems = refused_deformable_fields(hf)
    if problems:
        raise _error("; ".join(problems))
    shared = _shared_config_fields(hf, state, "Deformable DETR", 1024)
    levels = int(hf.get("num_feature_levels", 4))
    two_stage = bool(hf.get("two_stage", False))
    return DETRConfig(
        **shared,
        attention="deformable",
        classifier="focal",
        num_queries=int(hf.get("two_stage_num_proposals", 300) if two_stage else hf.get("num_queries", 300)),
        num_classes=int(state["class_embed.0.weight"].shape[0]),
        num_feature_levels=levels,
        enc_n_points=int(hf.get("encoder_n_points", 4)),
        dec_n_points=int(hf.get("decoder_n_points", 4)),
        with_box_refine=bool(hf.get("with_box_refine", False)),
        two_stage=two_stage,
    )


def load_hf_deformable(hf: dict[str, Any], config_path: Path, weights_path: Path):
    """A Hugging Face ``DeformableDetrForObjectDetection`` folder as a Checkpoint."""
    raw = read_weights(weights_path)
    num_pred = int(hf.get("decoder_layers", 6)) + (1 if hf.get("two_stage") else 0)
    state = hf_deformable_to_state(raw, num_pred)
    if "class_embed.0.weight" not in state:
        raise _error(f"{weights_path.name}: no Deformable DETR detection head inside")
    try:
        config = deformable_config_from_hf(hf, state)
    except ValueError as e:
        raise _error(f"{config_path.name}: {e}") from None
    config = with_processor_size(config, config_path.parent)
    names = class_names_from_hf(hf, config.num_classes)
    return Checkpoint(config, names, state, source="huggingface/transformers")
