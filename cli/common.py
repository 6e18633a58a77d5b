"""What the subcommands share: the one-line error, argument types, opening a checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage dump) and exits with 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class CLIError(Exception):
    """A problem to report in one line, exit status 1."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def threshold(text: str) -> float:
    value = positive_float(text) if text not in ("0", "0.0") else 0.0
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def add_model_settings(parser: argparse.ArgumentParser) -> None:
    """``--set NAME=VALUE`` for a command that opens a checkpoint (stored as ``model_set``)."""
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="model_set",
                        help="a model setting the file cannot say, e.g. --set nheads=4 (repeatable)")


def model_settings(pairs: list[str]) -> dict:
    """``["nheads=4", "dilation=true"]`` -> ``{"nheads": 4, "dilation": True}``."""
    settings = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise CLIError(f"--set {pair}: expected NAME=VALUE")
        try:
            value = json.loads(text.lower() if text.lower() in ("true", "false") else text)
        except ValueError:
            value = text
        settings[name.strip()] = value
    return settings


def open_checkpoint(path: Path, pairs: list[str] | None = None):
    """The checkpoint at ``path`` with the --set settings applied; assumptions are printed."""
    from detr_core.checkpoint import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(path)
        if pairs:
            ckpt = ckpt.with_settings(**model_settings(pairs))
    except CheckpointError as e:
        raise CLIError(f"{path.name}: {e}" if not str(e).startswith(path.name) else str(e)) from None
    for name, value in ckpt.assumptions.items():
        print(f"note: {path.name} does not say its {name}; assumed {value} (change it with --set {name}=...)",
              file=sys.stderr)
    return ckpt


def load_model(path: Path, pairs: list[str] | None = None):
    """The model of the checkpoint at ``path``, and the checkpoint."""
    from detr_core.checkpoint import CheckpointError

    ckpt = open_checkpoint(path, pairs)
    try:
        return ckpt.build_model(), ckpt
    except CheckpointError as e:
        raise CLIError(f"{path.name}: {e}") from None
