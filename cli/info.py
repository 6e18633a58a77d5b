"""``main.py info CKPT``: describe a checkpoint (a file, or a Hugging Face model folder)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import CLIError, add_model_settings, open_checkpoint


def add_parser(sub) -> None:
    info = sub.add_parser("info", help="describe a checkpoint")
    info.add_argument("checkpoint", type=Path)
    add_model_settings(info)


def run(args: argparse.Namespace) -> int:
    from detr_core.checkpoint import CheckpointError, model_summary
    from detr_core.config import to_dict

    ckpt = open_checkpoint(args.checkpoint, args.model_set)
    try:
        summary = model_summary(ckpt.build_model())  # raises on weights that do not fit
    except CheckpointError as e:
        raise CLIError(f"{args.checkpoint.name}: {e}") from None
    n = sum(v.numel() for v in ckpt.state_dict.values())
    model = {k: summary[k] for k in ("family", "paper", "backbone", "queries", "classes", "parameters")}
    print(json.dumps({"model": model, "source": ckpt.source, "step": ckpt.step, "classes": ckpt.class_names,
                      "assumed": ckpt.assumptions,
                      "parameters_and_buffers": n, "model_config": to_dict(ckpt.model_config)}, indent=2))
    return 0
