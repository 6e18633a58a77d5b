"""``main.py export CKPT --format reference|hf|pt2|onnx OUT``: write it for the reference,
transformers, torch alone (a ``torch.export`` program) or an ONNX runtime (an ``.onnx`` file); the
last two are checked against the model after writing."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import CLIError, add_model_settings, open_checkpoint


def add_parser(sub) -> None:
    exp = sub.add_parser("export", help="write a checkpoint in the official DETR or the Hugging Face format, "
                                             "as a torch.export program or as an ONNX file")
    exp.add_argument("checkpoint", type=Path)
    exp.add_argument("--format", choices=("reference", "hf", "pt2", "onnx"), required=True,
                     help="reference: one .pth file for facebookresearch/detr; hf: a save_pretrained folder; "
                          "pt2: a torch.export program (torch.export.load; input a normalised float "
                          "[B, 3, H, W] batch, B, H and W dynamic, no padding mask; output (logits "
                          "[B, Q, C], boxes [B, Q, 4] cxcywh in [0, 1])), checked against the model; "
                          "onnx: the same inputs and outputs as an ONNX file, checked with onnxruntime "
                          "(needs: uv sync --extra onnx)")
    exp.add_argument("out", type=Path)
    exp.add_argument("--postprocess", action="store_true",
                     help="onnx only: a second input sizes [B, 2] int64 (each original image's height, width) "
                          "and three more outputs: scores [B, Q], labels [B, Q] int64 (each query's best class) "
                          "and boxes_xyxy [B, Q, 4] in pixels of that size")
    exp.add_argument("--exporter", choices=("torchscript", "dynamo"), default=None,
                     help="onnx only: torch.onnx's tracing exporter (default: seconds; deprecated in torch) or "
                          "its torch.export-based one (tens of seconds; the default for RF-DETR, which the "
                          "tracing one cannot write); either is checked after writing")
    add_model_settings(exp)


def run(args: argparse.Namespace) -> int:
    from detr_core.checkpoint import SaveError
    from detr_core.export import export, export_pt2

    if args.format != "onnx" and (args.postprocess or args.exporter is not None):
        raise CLIError("--postprocess and --exporter are for --format onnx only")
    ckpt = open_checkpoint(args.checkpoint, args.model_set)
    try:
        if args.format == "onnx":
            from detr_core.export import export_onnx

            out, onnx_export = export_onnx(ckpt, args.out, args.postprocess, args.exporter)
        elif args.format == "pt2":
            from detr_core.formats.pt2 import TOLERANCE

            out, diff, size, batch = export_pt2(ckpt, args.out)
        else:
            out = export(ckpt, args.format, args.out)
    except (ValueError, SaveError) as e:
        raise CLIError(f"{args.checkpoint.name}: {e}") from None
    print(f"wrote {out}")
    if args.format == "pt2":
        shape = "[B, 3, H, W], B, H and W dynamic" if size is None else \
            f"[B, 3, {size[0]}, {size[1]}], B dynamic (torch.export could not keep H and W dynamic: a fixed size)" \
            if batch is None else f"[{batch}, 3, {size[0]}, {size[1]}] (torch.export could keep neither the batch " \
            "nor H and W dynamic: one image of a fixed size)"
        print(f"reloaded it and ran it and the model on two batches: max abs difference {diff:.3g} "
              f"(<= {TOLERANCE:g}); input: normalised float {shape}")
    if args.format == "onnx":
        print(onnx_export.summary())
    return 0
