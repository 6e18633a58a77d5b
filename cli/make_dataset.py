"""``main.py make-dataset OUT``: write toy shapes as a COCO, VOC or YOLO folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import CLIError, positive_int


def add_parser(sub) -> None:
    make = sub.add_parser("make-dataset", help="write toy shapes as a COCO, VOC or YOLO dataset folder")
    make.add_argument("out", type=Path)
    make.add_argument("--train", type=positive_int, default=1000, help="training images")
    make.add_argument("--val", type=positive_int, default=200, help="validation images")
    make.add_argument("--format", choices=("coco", "voc", "yolo"), default="coco")
    make.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from detr_core.data.export import write_toy_dataset

    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise CLIError(f"{args.out}: already exists and is not an empty folder; choose a new one")
    try:
        root = write_toy_dataset(args.out, args.train, args.val, args.format, seed=args.seed)
    except OSError as e:
        raise CLIError(f"{args.out}: cannot write ({e.strerror or e})") from None
    print(f"wrote {args.train} training and {args.val} validation toy images as {args.format.upper()} to {root}")
    print(f"train on it: uv run main.py train --data {args.format}:{args.out}")
    return 0
