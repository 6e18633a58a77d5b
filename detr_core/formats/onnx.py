"""An ONNX file of the model (``.onnx``), for onnxruntime, TensorRT and the other ONNX runtimes.

Its input ``images`` is a float32 [B, 3, H, W] batch normalised as
:func:`detr_core.data.images.to_tensor` does (ImageNet mean and std) and resized as
:func:`detr_core.data.images.prepare` does; every image fills the whole tensor (no padding mask).
Its outputs are ``logits`` [B, Q, C] (the last decoder layer's class logits: C is K + 1 with the
softmax classifier, K with the focal one) and ``boxes`` [B, Q, 4] cxcywh in [0, 1] of the input.

With ``postprocess`` a second input ``sizes`` [B, 2] int64, each original image's (height, width)
in pixels, adds three outputs: ``scores`` [B, Q] and ``labels`` [B, Q] int64 (each query's best
real class, as :func:`detr_core.model.postprocess.scores_and_labels` gives them: no threshold, no
NMS, DETR's rule) and ``boxes_xyxy`` [B, Q, 4] in pixels of that size.

B is dynamic; H and W too where the family allows it (the plain DETR family; see
:func:`detr_core.model.registry.traced_size_dynamic`); else the file has one size,
:func:`detr_core.formats.pt2.fixed_size` (the export says which). The deformable family's levers
export with it (the ``dino`` and ``rt_detr`` recipes: query selection's top-k, the hybrid encoder,
content from the encoder); denoising and query groups are training-only, so not in the file. The file's
``metadata_props`` hold the class names, the classifier and the input's normalisation.

Two exporters: ``torchscript`` (torch.onnx's tracing exporter, ``dynamo=False``: deprecated in
torch but about ten times faster, a second or two for a small model; the default) and ``dynamo``
(the ``torch.export``-based one, torch's default: tens of seconds; the default for a family the
tracing exporter cannot write, RF-DETR). Either way the file is checked
after writing: onnxruntime runs it on two batches of different sizes and batch sizes and must give
the eager model's outputs to :data:`TOLERANCE`; a dynamic-size file that fails that check (a size
frozen into the graph) is exported again at one fixed size, as :mod:`pt2` does. The queries are
compared as a set; where the file's query selection (top-k of encoder scores) differs from the
model's only between tokens whose scores tie (two runtimes may rank them either way), the model
is run again with the file's selection and the two compared exactly: the summary says how many
selections that was (:mod:`detr_core.formats.agreement`).

The families wrapped from transformers export too: Conditional and DAB-DETR with H and W
dynamic; RT-DETR, RT-DETRv2 and D-FINE where the check passes at other sizes, else at their
processor's size (``DETRConfig.fixed_input_size``, 640 x 640); DEIMv2, LW-DETR and RF-DETR at one
size (their graphs pad and lay out with Python numbers). RF-DETR takes the ``dynamo`` exporter.

onnx and onnxruntime are an optional extra (``uv sync --extra onnx``)."""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert

from detr_core.checkpoint import write_atomically
from detr_core.formats.agreement import TopkForced, matched_difference, pairwise
from detr_core.formats.pt2 import Predictions, dynamic_range, fixed_size
from detr_core.model.postprocess import class_probabilities, scores_and_labels
from detr_core.model.registry import describe, torchscript_problem, traced_size_dynamic

TOLERANCE = 1e-4  # the self-check's bound on |onnxruntime - eager| (pixel boxes: as a fraction of the size)
OPSET = 18  # grid_sample (the deformable family's sampling) needs 16, LayerNormalization 17
EXPORTERS = ("torchscript", "dynamo")
INSTALL = "uv sync --extra onnx"


def require_onnx() -> None:
    """Raise ValueError naming the command that installs what an ONNX export needs (onnx writes
    the file's metadata, onnxruntime runs the check) when either is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ValueError(f"ONNX export needs the onnx and onnxruntime packages ({e}); install them "
                         f"with: {INSTALL}") from None


class PostProcessed(nn.Module):
    """:class:`~detr_core.formats.pt2.Predictions` plus each query's score, label and box in pixels."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.predictions = Predictions(model)
        self.classifier = model.config.classifier

    def forward(self, images: Tensor, sizes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """images [B, 3, H, W] normalised; sizes [B, 2] int64 (height, width) in pixels."""
        logits, boxes = self.predictions(images)  # [B, Q, C], [B, Q, 4] cxcywh in [0, 1]
        scores, labels = scores_and_labels(class_probabilities(logits, self.classifier))  # [B, Q], [B, Q]
        hw = sizes.to(boxes.dtype)  # [B, 2] (height, width)
        scale = torch.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], dim=-1)[:, None]  # [B, 1, 4]
        boxes_xyxy = box_convert(boxes, "cxcywh", "xyxy") * scale  # [B, Q, 4] xyxy in pixels
        return logits, boxes, scores, labels, boxes_xyxy


def output_names(postprocess: bool) -> list[str]:
    return ["logits", "boxes", "scores", "labels", "boxes_xyxy"] if postprocess else ["logits", "boxes"]


def _wrapper(model: nn.Module, postprocess: bool) -> nn.Module:
    return (PostProcessed(model) if postprocess else Predictions(model)).eval()


def _example(model: nn.Module, dynamic: bool, postprocess: bool) -> tuple[Tensor, ...]:
    size = model.config.image_min_size
    hw = (size, size + model.stride) if dynamic else fixed_size(model)
    images = torch.zeros(2, 3, *hw)  # batch 2: the check's batches of 1 and 3 differ from it
    return (images, torch.tensor([[480, 640], [640, 480]])) if postprocess else (images,)


def _export_bytes(model: nn.Module, dynamic: bool, postprocess: bool, exporter: str) -> bytes:
    """The ONNX model proto, serialised, with a dynamic batch (and height and width if ``dynamic``)."""
    wrapper = _wrapper(model, postprocess)
    args = _example(model, dynamic, postprocess)
    names = output_names(postprocess)
    inputs = ["images", "sizes"] if postprocess else ["images"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's and the deprecation's warnings: the check decides
        if exporter == "torchscript":
            image_axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
            axes = {"images": image_axes, **{n: {0: "batch"} for n in inputs[1:] + names}}
            buffer = io.BytesIO()
            torch.onnx.export(wrapper, args, buffer, dynamo=False, opset_version=OPSET, input_names=inputs,
                              output_names=names, dynamic_axes=axes)
            return buffer.getvalue()
        lo, hi = dynamic_range(model)
        batch = torch.export.Dim("batch", min=1, max=1024)
        image_dims = {0: batch, 2: torch.export.Dim("height", min=lo, max=hi),
                      3: torch.export.Dim("width", min=lo, max=hi)} if dynamic else {0: batch}
        shapes = {"images": image_dims, **({"sizes": {0: batch}} if postprocess else {})}
        program = torch.onnx.export(wrapper, args, dynamo=True, opset_version=OPSET, input_names=inputs,
                                    output_names=names, dynamic_shapes=shapes, verbose=False)
        return program.model_proto.SerializeToString()


def _with_metadata(proto_bytes: bytes, model: nn.Module, class_names: list[str], dynamic: bool) -> bytes:
    import onnx

    proto = onnx.load_model_from_string(proto_bytes)
    size = "dynamic" if dynamic else "x".join(map(str, fixed_size(model)))
    meta = {"class_names": json.dumps(list(class_names)), "classifier": model.config.classifier,
            "image_size": size, "normalisation": "ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225) "
                                                  "on RGB in [0, 1]", "producer": "DETR Explorer"}
    onnx.helper.set_model_props(proto, meta)
    return proto.SerializeToString()


def check_inputs(model: nn.Module, dynamic: bool, postprocess: bool) -> list[tuple[Tensor, ...]]:
    """Two batches for the self-check, of batch sizes 1 and 3 (the export's example has 2): of
    different heights and widths, neither the example's, when the size is dynamic."""
    gen = torch.Generator().manual_seed(0)
    lo, _ = dynamic_range(model)
    cfg = model.config
    if dynamic:
        shapes = [(1, 3, cfg.image_max_size, cfg.image_min_size), (3, 3, lo + model.stride, cfg.image_max_size)]
    else:
        shapes = [(1, 3, *fixed_size(model)), (3, 3, *fixed_size(model))]
    batches = []
    for shape in shapes:
        images = torch.randn(*shape, generator=gen)
        sizes = torch.randint(64, 1333, (shape[0], 2), generator=gen)  # original images' (height, width)
        batches.append((images, sizes) if postprocess else (images,))
    return batches


def session(model: str | Path | bytes, threads: int | None = None):
    """An onnxruntime CPU session of a file (or a serialised model: ``bytes``), with ``threads``
    intra-op threads (torch's count if None)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 4  # a failing run is an exception here; not also a red log line
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def selection_outputs(path: Path) -> tuple[bytes, int]:
    """The file's model with the indices of each 2-D ``TopK`` (a query selection: [B, k]) as extra
    outputs after its own, serialised, and how many there are."""
    import onnx

    proto = onnx.load(str(path))
    extra = []
    for node in proto.graph.node:
        if node.op_type == "TopK" and len(node.output) > 1:
            extra.append(onnx.helper.make_tensor_value_info(node.output[1], onnx.TensorProto.INT64, None))
    proto.graph.output.extend(extra)
    return proto.SerializeToString(), len(extra)


def max_difference(path: Path, model: nn.Module, dynamic: bool, postprocess: bool) -> tuple[float, int]:
    """The largest |onnxruntime - eager| over :func:`check_inputs`, the file read back from disk
    (pixel boxes divided by their image's size; a label that differs counts as 1), queries matched
    as a set; and how many of the eager model's query selections (top-k of encoder scores) were
    given the file's where the two broke a tie differently (:mod:`detr_core.formats.agreement`).
    Raises what onnxruntime raises when the file cannot run on them (a size frozen into it, say)."""
    data, _ = selection_outputs(path)  # the file read back, its selections as extra outputs
    runner = session(data)
    wrapper = _wrapper(model, postprocess)
    names = output_names(postprocess)
    worst, forced = 0.0, 0
    with torch.no_grad():
        for args in check_inputs(model, dynamic, postprocess):
            got = runner.run(None, {name: a.numpy() for name, a in zip(("images", "sizes"), args)})
            selections = [torch.from_numpy(i) for i in got[len(names):] if i.ndim == 2]
            with TopkForced(selections) as force:
                eager = wrapper(*args)
            forced += force.forced
            costs = []
            for name, g, e in zip(names, got, eager):
                g = torch.from_numpy(g)
                if name == "boxes_xyxy":
                    size = args[1].flip(-1).repeat(1, 2)[:, None].to(e.dtype)  # [B, 1, 4] (w, h, w, h)
                    g, e = g.to(e.dtype) / size, e / size
                costs.append(pairwise(g, e, exact=name == "labels"))
            worst = max(worst, matched_difference(costs))
    return worst, forced


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`write_onnx` wrote: the check's max difference, the file's fixed (height, width)
    (None when dynamic), the exporter used and whether the postprocessing outputs are in."""

    difference: float
    size: tuple[int, int] | None
    exporter: str
    postprocess: bool
    tied: int = 0  # query selections (top-k) the check gave the file's tie-breaking (see agreement.py)

    def summary(self) -> str:
        """How the file was checked and what it takes and gives, in two lines (CLI and window)."""
        size = ("H and W dynamic" if self.size is None else
                f"fixed {self.size[0]}x{self.size[1]} (this family's size cannot stay dynamic in ONNX)")
        hw = "H, W" if self.size is None else f"{self.size[0]}, {self.size[1]}"
        inputs = f"images [B, 3, {hw}] normalised float" + (
            ", sizes [B, 2] int64 (height, width)" if self.postprocess else "")
        tied = (f"; in {self.tied} of the check's query selections onnxruntime broke a tie of encoder scores the "
                f"other way: the model was compared with the file's selection" if self.tied else "")
        return (f"onnxruntime ran it and the model on two batches: max abs difference {self.difference:.3g} "
                f"(<= {TOLERANCE:g}; {self.exporter} exporter{tied})\n"
                f"inputs: {inputs}; batch dynamic, {size}; outputs: {', '.join(output_names(self.postprocess))}")


def choose_exporter(model: nn.Module, exporter: str | None) -> str:
    """``exporter``, or where None the family's: ``torchscript`` unless the family names why that
    one cannot write it (:func:`~detr_core.model.registry.torchscript_problem`), then ``dynamo``.
    ValueError, before any tracing, when ``torchscript`` is asked of such a family."""
    problem = torchscript_problem(model.config)
    if exporter is None:
        return "dynamo" if problem else "torchscript"
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown ONNX exporter {exporter!r}; choose one of {EXPORTERS}")
    if exporter == "torchscript" and problem:
        raise ValueError(f"torch.onnx's torchscript exporter cannot write {describe(model.config)['family']}: "
                         f"{problem}; use the dynamo exporter (the default for it)")
    return exporter


def write_onnx(model: nn.Module, out: Path, class_names: list[str] | None = None, postprocess: bool = False,
               exporter: str | None = None) -> OnnxExport:
    """Export ``model`` to ``out`` and check the file (see the module's docstring); ``exporter``:
    see :func:`choose_exporter`. Raises ValueError when onnx or onnxruntime is missing (naming the
    command that installs them), when torch.onnx cannot export the model, or when the file's
    outputs differ by more than :data:`TOLERANCE` (the file is then removed); SaveError when it
    cannot be written."""
    exporter = choose_exporter(model, exporter)
    require_onnx()
    model = model.cpu().eval()
    names = class_names if class_names is not None else [f"class {i}" for i in range(model.config.num_classes)]
    out = Path(out)
    failure = ""
    # a dynamic size first where the family allows it; one fixed size where it cannot be
    for dynamic in (True, False) if traced_size_dynamic(model.config) else (False,):
        try:
            data = _export_bytes(model, dynamic, postprocess, exporter)
        except Exception as e:  # torch.onnx raises many kinds (unsupported ops, guards, constraints)
            failure = f"torch.onnx ({exporter}) cannot export this model: {str(e).strip().splitlines()[0]}"
            continue
        data = _with_metadata(data, model, names, dynamic)
        write_atomically(out, lambda f: f.write(data), size_hint=len(data))
        try:
            diff, tied = max_difference(out, model, dynamic, postprocess)
        except Exception as e:  # onnxruntime cannot run it at the check's sizes: a size was frozen in
            diff, failure = float("nan"), f"onnxruntime cannot run the exported file: {str(e).strip().splitlines()[0]}"
        if diff <= TOLERANCE:
            return OnnxExport(diff, None if dynamic else fixed_size(model), exporter, postprocess, tied)
        if diff == diff:  # not NaN: it ran, and differs
            failure = (f"the exported file's outputs differ from the model's by {diff:.3g} "
                       f"(more than {TOLERANCE:g}); {out} was removed")
        out.unlink(missing_ok=True)  # no file left that a user might take for a good one
    raise ValueError(failure)
