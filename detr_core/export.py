"""Export a model to another library's format: the official reference file or a Hugging Face
``save_pretrained`` folder, for the models those formats can express (plain learned-query DETRs
with a ResNet backbone), a ``torch.export`` program (``pt2``: any model, run by torch alone) or an
ONNX file (``onnx``: any model, for onnxruntime and the other ONNX runtimes).
:func:`export_problems` names the options a target cannot hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from detr_core.checkpoint import Checkpoint, SaveError, write_atomically
from detr_core.config import DETRConfig
from detr_core.model.registry import export_problem

if TYPE_CHECKING:
    from detr_core.formats.onnx import OnnxExport

FORMATS = ("reference", "hf", "pt2", "onnx")
FORMAT_NAMES = {"reference": "the official DETR format", "hf": "the Hugging Face format",
                "pt2": "a torch.export program", "onnx": "an ONNX file"}


def export_problems(config: DETRConfig, fmt: str) -> list[str]:
    """The model options ``fmt`` cannot hold (empty when the export is exact)."""
    if fmt in ("pt2", "onnx"):
        return []  # a traced program holds whatever the model computes
    problems = []
    if export_problem(config):
        problems.append(export_problem(config))
    if config.backbone == "tiny":
        problems.append("the toy 'tiny' backbone (both formats hold ResNets only)")
    if config.query_type != "learned":
        problems.append("anchor-box queries (query_type='anchor')")
    if config.classifier != "softmax":
        problems.append("the focal (sigmoid) classifier")
    if config.dn_groups > 0:
        problems.append("denoising queries (dn_groups)")
    if config.dense_aux:
        problems.append("the dense auxiliary head (dense_aux)")
    if not config.decoder_self_attention:
        problems.append("a decoder without self-attention")
    if config.position_embedding != "sine":
        problems.append("a learned position encoding (position_embedding='learned')")
    if config.position_added != "every_layer":
        problems.append("the position encoding added at the input only (position_added='input')")
    if fmt == "reference" and config.decoder_norm_between_layers:
        problems.append("a decoder normalised between layers (Hugging Face's auxiliary_loss=True)")
    if fmt == "reference" and config.backbone == "resnet":
        problems.append("a ResNet of non-standard size (the reference builds resnet18/34/50/101 only)")
    if fmt == "hf":
        if config.pre_norm:
            problems.append("pre-norm layers (Hugging Face DETR is post-norm only)")
        if config.dilation:
            problems.append("a dilated (DC5) backbone (Hugging Face's ResNet backbone has no dilation)")
    return problems


def _exportable_state(ckpt: Checkpoint, fmt: str) -> dict[str, torch.Tensor]:
    config = ckpt.model_config
    problems = export_problems(config, fmt)
    if problems:
        raise ValueError(f"{FORMAT_NAMES[fmt]} cannot hold this model's " + "; ".join(problems))
    problem = ckpt.problem()
    if problem:
        raise ValueError(problem)
    state = dict(ckpt.state_dict)
    # Group DETR's extra query groups are training-only: inference uses the first group alone
    state["query_embed.weight"] = state["query_embed.weight"][: config.num_queries]
    return state


def export(ckpt: Checkpoint, fmt: str, out: str | Path) -> Path:
    """Write ``ckpt`` as ``fmt`` ("reference": one ``.pth`` file; "hf": a folder with
    ``config.json``, ``model.safetensors`` and the ``preprocessor_config.json`` of its size; "pt2": a ``torch.export`` program, see
    :mod:`detr_core.formats.pt2`, which :func:`export_pt2` also checks; "onnx": an ONNX file, see
    :mod:`detr_core.formats.onnx`, checked by :func:`export_onnx`). Raises ValueError naming
    what the format cannot hold, SaveError when the files cannot be written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if fmt == "pt2":
        return export_pt2(ckpt, out)[0]
    if fmt == "onnx":
        return export_onnx(ckpt, out)[0]
    state = _exportable_state(ckpt, fmt)
    out = Path(out)
    if fmt == "reference":
        from detr_core.formats.reference import reference_payload

        payload = reference_payload(ckpt.model_config, state)
        return write_atomically(out, lambda f: torch.save(payload, f))
    from safetensors.torch import save

    from detr_core.formats.hf import detr_to_hf_state, hf_config
    from detr_core.formats.hf_processor import PROCESSOR_NAME, processor_for

    if out.exists() and not out.is_dir():
        raise SaveError(f"cannot save {out}: a file is in the way (a Hugging Face model is a folder)")
    data = save(detr_to_hf_state(state), metadata={"format": "pt"})
    config = hf_config(ckpt.model_config, ckpt.class_names)
    write_atomically(out / "model.safetensors", lambda f: f.write(data))
    write_atomically(out / "config.json", lambda f: f.write(json.dumps(config, indent=2).encode()))
    cfg = ckpt.model_config  # and the image processor that resizes as the model was made for
    processor = processor_for(cfg.image_min_size, cfg.image_max_size, cfg.fixed_input_size)
    write_atomically(out / PROCESSOR_NAME, lambda f: f.write(json.dumps(processor, indent=2).encode()))
    return out


def export_pt2(ckpt: Checkpoint, out: str | Path) -> tuple[Path, float, tuple[int, int] | None, int | None]:
    """Write ``ckpt``'s model as a ``torch.export`` program and check it: returns the path, the
    largest difference between the reloaded program's outputs and the eager model's, the
    program's fixed (height, width) or None when its size is dynamic, and its fixed batch size or
    None when dynamic (ValueError
    when over :data:`detr_core.formats.pt2.TOLERANCE` or when torch.export cannot trace it)."""
    from detr_core.formats.pt2 import write_pt2

    out = Path(out)
    return out, *write_pt2(ckpt.build_model(), out)  # (CheckpointError is a ValueError)


def export_onnx(ckpt: Checkpoint, out: str | Path, postprocess: bool = False,
                exporter: str | None = None) -> tuple[Path, OnnxExport]:
    """Write ``ckpt``'s model as an ONNX file (with the postprocessing outputs if ``postprocess``)
    and check it with onnxruntime: returns the path and what was written (the check's largest
    difference, the fixed size or None, the exporter: ``exporter``, or the family's where None).
    ValueError when onnx or onnxruntime is missing, when torch.onnx cannot export the model or the
    check's difference is over :data:`detr_core.formats.onnx.TOLERANCE`."""
    from detr_core.formats.onnx import write_onnx

    out = Path(out)
    model = ckpt.build_model()  # (CheckpointError is a ValueError)
    return out, write_onnx(model, out, ckpt.class_names, postprocess=postprocess, exporter=exporter)
