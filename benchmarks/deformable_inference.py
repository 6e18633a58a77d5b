"""Toy inference with attention capture: Deformable DETR against plain DETR (the explorer's cost
of showing one image). Issue 19's goal: the deformable model within 2x of the plain one.

    uv run benchmarks/deformable_inference.py [--plain checkpoints/toy_shapes.pt] [--deformable D.pt]
                                             [--runs 30] [--threads 2]

Without checkpoints, the ``fast`` and ``deformable`` presets' models with random weights (the
cost does not depend on the weights). Prints one JSON object: median and best milliseconds per
image of ``run_inference(..., capture=True)`` (forward pass plus moving the captured tensors to
the result), for each model, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from detr_core.analysis.capture import run_inference
from detr_core.checkpoint import load_checkpoint
from detr_core.data.toy import ToyShapes
from detr_core.model.registry import build_model
from detr_core.presets import preset


def _model(path: Path | None, name: str) -> tuple[nn.Module, list[str]]:
    if path is not None:
        ckpt = load_checkpoint(path)
        return ckpt.build_model().eval(), ckpt.class_names
    torch.manual_seed(0)
    return build_model(preset(name)[0]).eval(), ["rectangle", "ellipse", "triangle"]


def _time(model: nn.Module, names: list[str], images: list, runs: int) -> list[float]:
    for img in images[:3]:
        run_inference(model, img, names, capture=True)  # warm-up
    ms = []
    for k in range(runs):
        t0 = time.perf_counter()
        run_inference(model, images[k % len(images)], names, capture=True)
        ms.append((time.perf_counter() - t0) * 1000)
    return ms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plain", type=Path, default=None, help="a dense DETR checkpoint (default: fast preset)")
    ap.add_argument("--deformable", type=Path, default=None, help="a deformable checkpoint (default: preset)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = ToyShapes(seed=7, split="val", length=10)
    images = [data.sample(i).image for i in range(10)]
    out: dict = {"threads": args.threads, "runs": args.runs}
    for key, path, name in (("plain", args.plain, "fast"), ("deformable", args.deformable, "deformable")):
        model, names = _model(path, name)
        ms = _time(model, names, images, args.runs)
        out[key] = {"model": str(path) if path else f"preset {name}", "median_ms": round(statistics.median(ms), 2),
                    "best_ms": round(min(ms), 2)}
    out["ratio_median"] = round(out["deformable"]["median_ms"] / out["plain"]["median_ms"], 2)
    out["ratio_best"] = round(out["deformable"]["best_ms"] / out["plain"]["best_ms"], 2)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
