"""``main.py doctor``: check a dataset before training; ``--overfit`` checks the pipeline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.common import CLIError, load_model, positive_int


def add_parser(sub) -> None:
    doc = sub.add_parser("doctor", help="check a dataset before training; --overfit checks the pipeline")
    doc.add_argument("--data", default="toy", help="toy (default), coco:PATH, voc:PATH, yolo:PATH or a folder")
    doc.add_argument("--split", default="", help="split to check (default: the training split)")
    doc.add_argument("--checkpoint", type=Path, default=None, help="check for this model (queries, stride, size)")
    doc.add_argument("--preset", default="fast", help="else for this preset's model (default fast)")
    doc.add_argument("--overfit", action="store_true", help="also overfit one batch of the data")
    doc.add_argument("--images", type=positive_int, default=4, help="images in the overfit batch (default 4)")
    doc.add_argument("--steps", type=positive_int, default=400, help="most overfit steps (default 400)")
    doc.add_argument("--report", type=Path, default=None, metavar="OUT.md",
                     help="write the findings as Markdown (.html: a page)")
    doc.add_argument("--json", action="store_true", help="print the data findings as one JSON object")


def run(args: argparse.Namespace) -> int:
    from detr_core.data.dataset import DatasetError
    from detr_core.data.sources import describe_source
    from detr_core.doctor.data_checks import check_dataset, model_figures
    from detr_core.doctor.overfit import open_for_overfit, overfit_one_batch
    from detr_core.doctor.report import markdown_report, write_report
    from detr_core.presets import preset

    try:
        model_cfg, train_cfg = preset(args.preset)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.checkpoint is not None:
        model_cfg = load_model(args.checkpoint)[0].config
    figures = model_figures(model_cfg)
    if args.checkpoint is None:
        figures.pop("num_classes")  # a new model takes the dataset's classes
    try:
        report = check_dataset(args.data, args.split, **figures)
    except DatasetError as e:
        raise CLIError(str(e)) from None
    if layout := describe_source(args.data):
        print(f"layout: {layout}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        print(report.text())
    overfit = None
    if args.overfit:
        try:
            data, model_cfg = open_for_overfit(args.data, model_cfg, args.split)
        except DatasetError as e:
            raise CLIError(str(e)) from None
        images = min(args.images, len(data))
        print(f"overfitting {images} images (at most {args.steps} steps) ...", flush=True)
        overfit = overfit_one_batch(model_cfg, train_cfg, data, num_images=images, max_steps=args.steps)
        print(overfit.message)
    if args.report is not None:
        try:
            print(f"report written to {write_report(args.report, markdown_report(report, overfit))}")
        except OSError as e:
            raise CLIError(f"{args.report}: cannot write ({e.strerror or e})") from None
    return 1 if overfit is not None and not overfit.success else 0
