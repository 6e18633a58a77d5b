"""``main.py predict CKPT IMAGE``: the detections in an image, or every image of a folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.common import CLIError, add_model_settings, load_model, threshold


def add_parser(sub) -> None:
    pr = sub.add_parser("predict", help="detect objects in an image or a folder of images")
    pr.add_argument("checkpoint", type=Path)
    pr.add_argument("image", type=Path, help="an image or a folder of images")
    pr.add_argument("--threshold", type=threshold, default=None,
                    help="lowest score shown (default 0.5; 0 for --coco-results, as COCO evaluation wants)")
    pr.add_argument("--coco-results", type=Path, default=None, metavar="OUT.json",
                    help="also write the detections in the COCO results format")
    pr.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_settings(pr)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def _predict_many(args: argparse.Namespace) -> int:
    """Every image of a folder (or one image): detections printed, and with --coco-results
    written in the COCO results format (image_id: the file name's number, else its position)."""
    from detr_core.analysis.capture import run_inference
    from detr_core.analysis.label_map import checkpoint_category_ids
    from detr_core.checkpoint import write_atomically
    from detr_core.data.images import ImageLoadError, load_image

    if args.image.is_dir():
        files = sorted(p for p in args.image.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise CLIError(f"{args.image}: no images in this folder ({', '.join(IMAGE_SUFFIXES)})")
    elif args.image.exists():
        files = [args.image]
    else:
        raise CLIError(f"{args.image}: no such file or folder")
    model, ckpt = load_model(args.checkpoint, args.model_set)
    category_ids = checkpoint_category_ids(ckpt.class_names, ckpt.source, ckpt.extra)
    threshold = args.threshold if args.threshold is not None else (0.0 if args.coco_results else 0.5)
    results, failed = [], 0
    for position, path in enumerate(files, start=1):
        try:
            image = load_image(path)
        except ImageLoadError as e:
            print(f"skipped {e}", file=sys.stderr)
            failed += 1
            continue
        r = run_inference(model, image, ckpt.class_names, capture=False)
        image_id = int(path.stem) if path.stem.isdigit() else position
        kept = r.kept(threshold)
        for i in kept:
            x0, y0, x1, y1 = (float(v) for v in r.boxes_xyxy[i])
            results.append({"image_id": image_id, "category_id": category_ids[int(r.labels[i])],
                            "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                            "score": round(float(r.scores[i]), 5)})
        if not args.json:
            print(f"{path.name} ({image.shape[1]}x{image.shape[0]}): {len(kept)} detections with score >= {threshold}")
    if args.json:
        print(json.dumps({"threshold": threshold, "images": len(files) - failed, "detections": results}))
    if args.coco_results:
        write_atomically(args.coco_results, lambda f: f.write(json.dumps(results).encode()))
        print(f"wrote {len(results)} detections of {len(files) - failed} images to {args.coco_results}",
              file=sys.stderr if args.json else sys.stdout)
    if failed:
        print(f"{failed} of {len(files)} images could not be read", file=sys.stderr)
    return 1 if failed == len(files) else 0


def run(args: argparse.Namespace) -> int:
    from detr_core.analysis.capture import run_inference
    from detr_core.data.images import ImageLoadError, read_image

    if args.image.is_dir() or args.coco_results:
        return _predict_many(args)
    args.threshold = 0.5 if args.threshold is None else args.threshold
    try:
        loaded = read_image(args.image)  # a large image is downscaled while decoding
    except ImageLoadError as e:
        raise CLIError(str(e)) from None
    model, ckpt = load_model(args.checkpoint, args.model_set)
    result = run_inference(model, loaded.array, ckpt.class_names, capture=False)
    kept = result.kept(args.threshold)
    scale = loaded.scale  # boxes in the file's own pixels
    rows = [
        {
            "query": i,
            "class": ckpt.class_names[int(result.labels[i])],
            "score": round(float(result.scores[i]), 4),
            "box_xyxy": [round(float(v) * scale, 1) for v in result.boxes_xyxy[i]],
        }
        for i in kept
    ]
    width, height = loaded.original_size
    if args.json:
        print(json.dumps({"image": str(args.image), "width": width, "height": height,
                          "threshold": args.threshold, "detections": rows}))
    else:
        print(f"{args.image.name} ({width}x{height}): {len(rows)} detections "
              f"with score >= {args.threshold}")
        for r in rows:
            x0, y0, x1, y1 = r["box_xyxy"]
            print(f"  query {r['query']:3d}  {r['class']:<12s} {r['score']:.3f}  "
                  f"box ({x0:.0f}, {y0:.0f}) - ({x1:.0f}, {y1:.0f})")
    return 0
