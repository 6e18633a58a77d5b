"""A ``torch.export`` program of the model (``.pt2``, written by ``torch.export.save``): it loads
with ``torch.export.load`` and runs where only torch is installed, no detr_core needed.

The program takes one argument, ``images``: a float32 [B, 3, H, W] batch normalised as
:func:`detr_core.data.images.to_tensor` does (ImageNet mean and std) and resized as
:func:`detr_core.data.images.prepare` does; every image fills the whole tensor, so there is no
padding mask (pad a batch of unequal sizes yourself only if you accept padding's small effect).
It returns ``(logits [B, Q, C], boxes [B, Q, 4])``: the last decoder layer's class logits (C is
K + 1 with the softmax classifier, K with the focal one) and boxes as cxcywh in [0, 1] of the
input. B, H and W are dynamic (:func:`dynamic_range` gives the range of H and W) where torch.export
manages it; else B alone, at :func:`fixed_size`; else (the RT-DETR family wrapped from
transformers) a batch of one at that size (the export says which)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from detr_core.checkpoint import write_atomically
from detr_core.formats.agreement import matched_difference, pairwise
from detr_core.model.registry import traced_size_dynamic

TOLERANCE = 1e-4  # the self-check's bound on |program - eager|


class Predictions(nn.Module):
    """The model's final logits and boxes as a tuple (the program's outputs are plain tensors)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(images)
        return out["pred_logits"], out["pred_boxes"]


def dynamic_range(model: nn.Module) -> tuple[int, int]:
    """Heights and widths the program accepts: from two feature cells (a one-cell side is a size
    torch.export specialises) to twice the model's ``image_max_size`` (its resize rule never
    gives more than once)."""
    stride = int(model.stride)
    return 2 * stride, max(2 * model.config.image_max_size, 4 * stride)


def fixed_size(model: nn.Module) -> tuple[int, int]:
    """The one height and width of a program whose size could not be left dynamic: the size every
    image is stretched to where the model has one (``DETRConfig.fixed_input_size``: RT-DETR's
    640 x 640), else the model's ``image_max_size`` square (pad or resize into it)."""
    fixed = model.config.fixed_input_size
    return fixed if fixed else (model.config.image_max_size, model.config.image_max_size)


def export_program(model: nn.Module) -> tuple[torch.export.ExportedProgram, bool, int | None]:
    """Trace ``model`` (in eval mode) with a dynamic batch, height and width; where torch.export
    cannot keep height and width dynamic, with a dynamic batch at :func:`fixed_size`. A family that
    says its traced size is fixed (:func:`~detr_core.model.registry.traced_size_dynamic`: the
    deformable family, whose sampling grid's sizes are Python ints) goes straight to the fixed size:
    the dynamic attempt would fail after as long again; where the batch cannot stay dynamic either,
    with a batch of one. Returns the program, whether its size is dynamic and its fixed batch size
    (None: dynamic)."""
    lo, hi = dynamic_range(model)
    size = model.config.image_min_size
    batch = torch.export.Dim("batch", min=1, max=1024)
    dims = {0: batch, 2: torch.export.Dim("height", min=lo, max=hi), 3: torch.export.Dim("width", min=lo, max=hi)}
    wrapper = Predictions(model.eval())
    with torch.no_grad():
        if traced_size_dynamic(model.config):
            try:
                example = torch.zeros(2, 3, size, size + model.stride)
                return torch.export.export(wrapper, (example,), dynamic_shapes={"images": dims}), True, None
            except Exception:  # torch.export raises many kinds (constraint violations, guards)
                pass
        example = torch.zeros(2, 3, *fixed_size(model))
        try:
            return torch.export.export(wrapper, (example,), dynamic_shapes={"images": {0: batch}}), False, None
        except Exception:
            # the batch fixed too: transformers' RT-DETR, RT-DETRv2, D-FINE and DEIMv2 forwards take
            # len() of a tensor (``batch_size = len(source_flatten)``), which torch.export specialises
            return torch.export.export(wrapper, (example[:1],)), False, 1


def check_inputs(model: nn.Module, dynamic: bool, batch: int | None = None) -> list[Tensor]:
    """Two batches for the self-check: of different sizes (neither the export's example size) when
    the program's size is dynamic, else two different batches of its one size (of ``batch``
    images each where the program's batch is fixed)."""
    gen = torch.Generator().manual_seed(0)
    lo, hi = dynamic_range(model)
    cfg = model.config
    if not dynamic:
        h, w = fixed_size(model)
        return [torch.randn(batch or 1, 3, h, w, generator=gen), torch.randn(batch or 3, 3, h, w, generator=gen)]
    return [torch.randn(1, 3, cfg.image_max_size, cfg.image_min_size, generator=gen),
            torch.randn(2, 3, lo + model.stride, cfg.image_max_size, generator=gen)]


def max_difference(program_path: Path, model: nn.Module, dynamic: bool, batch: int | None = None) -> float:
    """The largest |program - eager| over :func:`check_inputs`, the program read back from disk,
    queries matched as a set (:func:`~detr_core.formats.agreement.matched_difference`)."""
    program = torch.export.load(str(program_path)).module()
    worst = 0.0
    with torch.no_grad():
        for images in check_inputs(model, dynamic, batch):
            eager = Predictions(model.eval())(images)
            got = program(images)
            worst = max(worst, matched_difference([pairwise(g, e) for g, e in zip(got, eager)]))
    return worst


def write_pt2(model: nn.Module, out: Path) -> tuple[float, tuple[int, int] | None, int | None]:
    """Export ``model`` to ``out`` and check the file: returns the max abs difference from the eager
    model, the program's fixed (height, width), None when its size is dynamic, and its fixed batch
    size, None when dynamic. Raises ValueError when torch.export cannot trace the model or the
    file's outputs differ by more than :data:`TOLERANCE` (the file is then removed); SaveError when
    it cannot be written."""
    model = model.cpu().eval()
    try:
        program, dynamic, batch = export_program(model)
    except Exception as e:  # torch.export raises many kinds (unsupported ops, guards, constraints)
        raise ValueError(f"torch.export cannot trace this model: {str(e).splitlines()[0]}") from e
    with warnings.catch_warnings():
        # torch.export.save warns that CPU weights share no "complete" storage: harmless here
        warnings.filterwarnings("ignore", message="No complete tensor found")
        write_atomically(out, lambda f: torch.export.save(program, f))
    diff = max_difference(out, model, dynamic, batch)
    if not diff <= TOLERANCE:  # (a NaN difference fails too)
        out.unlink(missing_ok=True)  # no file left that a user might take for a good one
        raise ValueError(f"the exported program's outputs differ from the model's by {diff:.3g} "
                         f"(more than {TOLERANCE:g}); {out} was removed")
    return diff, None if dynamic else fixed_size(model), batch
