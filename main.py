"""DETR Explorer.

    uv run main.py                      open the explorer window
    uv run main.py train [options]      train on toy shapes (or --data coco:PATH | voc:PATH | yolo:PATH), save a checkpoint
    torchrun --nproc_per_node=N main.py train [options]   the same on N processes (GPUs or CPUs)
    uv run main.py train --resume CKPT  continue a run from its last checkpoint
    uv run main.py eval CKPT [--json]   COCO AP on the held-out toy split (or --data's validation split)
    uv run main.py predict CKPT IMAGE   print the detections in an image (or a folder; --coco-results)
    uv run main.py info CKPT            describe a checkpoint (a file, or a Hugging Face model folder)
    uv run main.py export CKPT --format reference|hf OUT   write it for the reference or transformers
    uv run main.py make-dataset OUT     write toy shapes as a COCO, VOC or YOLO folder
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from cli import doctor, eval, export, info, make_dataset, predict, train
from cli.common import CLIError, Parser

SUBCOMMANDS = (train, eval, predict, info, export, make_dataset, doctor)  # in --help's order, after gui


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="main.py", description="DETR Explorer: see and touch DETR.")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    gui = sub.add_parser("gui", help="open the explorer window (the default)")
    gui.add_argument("paths", nargs="*", type=Path, help="an image and/or a checkpoint to open")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def cmd_gui(args: argparse.Namespace) -> int:
    try:
        from explorer.app import run_app
    except ImportError as e:
        raise CLIError(f"the explorer window cannot start: {e} (the command line still works: main.py --help)") from None
    return run_app([str(p) for p in args.paths])


COMMANDS = {"train": train.run, "eval": eval.run, "predict": predict.run, "info": info.run, "gui": cmd_gui,
            "make-dataset": make_dataset.run, "export": export.run, "doctor": doctor.run}


def unknown_word(word: str) -> int:
    """A first word that is neither a subcommand nor a file: say so, the nearest subcommand, all of them."""
    close = difflib.get_close_matches(word, COMMANDS, n=1)
    guess = f" (did you mean {close[0]}?)" if close else ""
    print(f"main.py: error: {word!r} is neither a subcommand nor a file or folder here{guess}. "
          f"Subcommands: {', '.join(COMMANDS)}; main.py --help says more.", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or (argv[0] not in COMMANDS and not argv[0].startswith("-")):
        if argv and not Path(argv[0]).exists():  # `main.py trian`: not a file to open, a typo
            return unknown_word(argv[0])
        argv = ["gui", *argv]  # `main.py` and `main.py photo.jpg` open the window
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
