"""``main.py export CKPT --format reference|hf OUT``: write it for the reference or transformers."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import CLIError, add_model_settings, open_checkpoint


def add_parser(sub) -> None:
    exp = sub.add_parser("export", help="write a checkpoint in the official DETR or the Hugging Face format")
    exp.add_argument("checkpoint", type=Path)
    exp.add_argument("--format", choices=("reference", "hf"), required=True,
                     help="reference: one .pth file for facebookresearch/detr; hf: a save_pretrained folder")
    exp.add_argument("out", type=Path)
    add_model_settings(exp)


def run(args: argparse.Namespace) -> int:
    from detr_core.checkpoint import SaveError
    from detr_core.export import export

    ckpt = open_checkpoint(args.checkpoint, args.model_set)
    try:
        out = export(ckpt, args.format, args.out)
    except (ValueError, SaveError) as e:
        raise CLIError(f"{args.checkpoint.name}: {e}") from None
    print(f"wrote {out}")
    return 0
