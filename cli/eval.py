"""``main.py eval CKPT``: COCO AP of a checkpoint on the held-out toy split or a dataset's split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.common import CLIError, add_model_settings, load_model, positive_int


def add_parser(sub) -> None:
    ev = sub.add_parser("eval", help="COCO AP of a checkpoint on the held-out toy split")
    ev.add_argument("checkpoint", type=Path)
    ev.add_argument("--images", type=positive_int, default=None, help="first N images (toy default 500)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--data", default=None, metavar="coco:PATH|voc:PATH|yolo:PATH", help="evaluate on this dataset")
    ev.add_argument("--split", default="", metavar="NAME", help="the dataset's split (default: validation)")
    add_model_settings(ev)


def run(args: argparse.Namespace) -> int:
    from detr_core.analysis.evaluate import evaluate_model
    from detr_core.config import ToyDataConfig
    from detr_core.data.toy import heldout_split

    if args.data:
        return _eval_dataset(args)
    args.images = args.images or 500
    model, ckpt = load_model(args.checkpoint, args.model_set)
    data = ckpt.train_config.data if ckpt.train_config is not None else ToyDataConfig()
    if list(data.classes) != ckpt.class_names:
        raise CLIError(
            f"{args.checkpoint.name}: its classes ({', '.join(ckpt.class_names[:5])}...) are not the toy "
            "shapes, so the toy held-out split cannot evaluate it"
        )
    metrics = evaluate_model(model, heldout_split(data, args.images), args.images)
    if args.json:
        print(json.dumps({"AP": round(metrics["AP"], 4), "AP50": round(metrics["AP50"], 4),
                          "AP75": round(metrics["AP75"], 4), "images": int(metrics["images"])}))
    else:
        print(f"{args.checkpoint.name} on {int(metrics['images'])} held-out toy images:")
        print(f"  AP {metrics['AP']:.3f}   AP50 {metrics['AP50']:.3f}   AP75 {metrics['AP75']:.3f}")
        for name in ckpt.class_names:
            print(f"  AP {name:<12s} {metrics['AP/' + name]:.3f}")
    return 0


def _eval_dataset(args: argparse.Namespace) -> int:
    """COCO AP (and VOC mAP@0.5) of a checkpoint on a dataset's validation split."""
    from detr_core.analysis.evaluate import COCO_STATS, evaluate_model
    from detr_core.analysis.label_map import label_map_for
    from detr_core.data.dataset import DatasetError
    from detr_core.data.sources import describe_source, open_dataset
    from detr_core.data.transforms import eval_transform

    model, ckpt = load_model(args.checkpoint, args.model_set)
    try:
        dataset = open_dataset(args.data, args.split, "val")
        label_map = label_map_for(ckpt.class_names, dataset.class_names)
    except (DatasetError, ValueError) as e:
        raise CLIError(f"{args.checkpoint.name} on {args.data}: {e}" if not isinstance(e, DatasetError) else str(e)) \
            from None
    if layout := describe_source(args.data):
        print(f"layout: {layout}", file=sys.stderr)
    if dataset.problems:
        print(dataset.summary(), file=sys.stderr)
    cfg = model.config
    dataset = dataset.with_transform(eval_transform(cfg.image_min_size, cfg.image_max_size, cfg.fixed_input_size))
    try:
        metrics = evaluate_model(model, dataset, args.images, label_map=label_map)
    except DatasetError as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps({k: (round(v, 4) if k != "images" else int(v)) for k, v in metrics.items()}))
        return 0
    print(f"{args.checkpoint.name} on {int(metrics['images'])} images of {dataset.name}:")
    print("  " + "   ".join(f"{k} {metrics[k]:.3f}" for k in COCO_STATS))
    if "mAP50_voc" in metrics:
        print(f"  VOC mAP@0.5 {metrics['mAP50_voc']:.3f}")
    for name in dataset.class_names:
        print(f"  AP {name:<16s} {metrics['AP/' + name]:.3f}")
    return 0
