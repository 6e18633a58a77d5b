"""Data loading against training: images per second of the loader (with augmentation at the
default sizes) next to the training step's, from a COCO folder and from the in-memory generator.

    uv run benchmarks/data_throughput.py [--data coco:PATH] [--threads 2] [--workers 1] [--seconds 20]

Without ``--data`` it first writes a COCO folder of toy images (``make-dataset``) to a temporary
folder. One JSON object per line:
  loader        the augmented stream in this process (decode, augment, normalize, pad), images/s
  loader_workers  the same through ``--workers`` DataLoader processes, images/s
  train_toy     the ``fast`` preset trained from the in-memory generator, images/s
  train_folder  the same training from the folder (``--workers`` loader processes), images/s
and a summary with the ratio train_folder / train_toy (target: >= 0.9 on 2 cores) and the mean
padded pixels per image of each (augmented images are not all 128x128).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from detr_core.data.export import write_toy_dataset
from detr_core.data.sources import fit_to_data
from detr_core.data.stream import batches
from detr_core.presets import apply_overrides, preset
from detr_core.train.trainer import StepEvent, Trainer


def configs(data: str, args: argparse.Namespace):
    model_cfg, train_cfg = apply_overrides(*preset("fast"), [
        f"threads={args.threads}", "steps=0", f"max_seconds={args.seconds}", "eval_every=0",
        f"dataset.source={data}", f"num_workers={args.workers if data != 'toy' else 0}", *args.set,
    ])
    return fit_to_data(model_cfg, train_cfg) + (train_cfg,)


def loader_rate(stream, batch_size: int, workers: int, seconds: float) -> tuple[float, float]:
    """images/s and mean padded pixels per image over ``seconds`` (after one batch of warm-up)."""
    it = batches(stream, batch_size, 0, workers)
    next(it)
    n = pixels = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        images, targets = next(it)
        tensors = images.tensors if hasattr(images, "tensors") else images
        n += len(targets)
        pixels += tensors.shape[-2] * tensors.shape[-1] * len(targets)
    rate = n / (time.perf_counter() - t0)
    it.close()
    return rate, pixels / max(n, 1)


def train_rate(model_cfg, train_cfg, datasets) -> float:
    """Training images/s, from the third step on (the first steps warm up)."""
    trainer = Trainer(model_cfg, train_cfg, datasets=datasets)
    marks = [(e.step, e.elapsed) for e in trainer.events() if isinstance(e, StepEvent)]
    (s0, t0), (s1, t1) = marks[min(2, len(marks) - 2)], marks[-1]
    return (s1 - s0) * train_cfg.batch_size / max(t1 - t0, 1e-9)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="coco:PATH (default: a temporary folder of toy images)")
    ap.add_argument("--images", type=int, default=512, help="training images to write without --data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            write_toy_dataset(Path(tmp) / "coco", args.images, 50, "coco")
            data = f"coco:{Path(tmp) / 'coco'}"
        model_cfg, (stream, _), train_cfg = configs(data, args)
        bs = train_cfg.batch_size
        rate, pixels = loader_rate(stream, bs, 0, args.seconds / 2)
        print(json.dumps({"measure": "loader", "images_per_sec": round(rate, 1), "pixels_per_image": round(pixels)}),
              flush=True)
        if args.workers:
            rate, _ = loader_rate(stream, bs, args.workers, args.seconds / 2)
            print(json.dumps({"measure": "loader_workers", "workers": args.workers, "images_per_sec": round(rate, 1)}),
                  flush=True)
        toy_model, toy_data, toy_train = configs("toy", args)
        toy = train_rate(toy_model, toy_train, toy_data)
        print(json.dumps({"measure": "train_toy", "images_per_sec": round(toy, 1), "pixels_per_image": 128 * 128}),
              flush=True)
        folder = train_rate(model_cfg, train_cfg, (stream, _))
        print(json.dumps({"measure": "train_folder", "workers": args.workers, "images_per_sec": round(folder, 1),
                          "pixels_per_image": round(pixels)}), flush=True)
        print(json.dumps({"summary": True, "data": data, "threads": args.threads, "workers": args.workers,
                          "train_folder_over_train_toy": round(folder / toy, 3), "target": 0.9}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
