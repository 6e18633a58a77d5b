"""CPU inference time of an exported ONNX file in onnxruntime against the eager PyTorch model:
the bundled toy model and an R50-size DETR (DETRConfig's defaults: ResNet-50, 6 + 6 layers, 100
queries, random weights built from the config, nothing downloaded), on the same image with the
same number of intra-op threads in both.

    uv run benchmarks/export.py [--runs 10] [--threads 2] [--only toy|r50] [--image-size 800]

The image is a toy-shapes sample, resized as the explorer resizes for each model (the toy model:
its 128-256 px; the R50 model: shorter side ``--image-size``, 800 as DETR's own default). Each
model is exported with :func:`detr_core.formats.onnx.write_onnx` (so the file is checked against
the model first), warmed up with two runs, then timed ``--runs`` times each. Prints the CPU and one
JSON line per model: median and best milliseconds of each, and eager / onnxruntime.

On a machine other work keeps busy, torch's intra-op threads wait on each other (its OpenMP
barriers) far more than onnxruntime's (run here without spinning): at ``--threads 2`` with a load
average of 10 on 2 cores the toy model's eager median was 2.4 s against 13 ms at ``--threads 1``.
Compare at one thread there. Seen on an AMD EPYC (Zen 4, 2 cores, load average 10-13), one thread:
toy 13.1 ms eager / 1.7 ms onnxruntime; R50 DETR at 800x800 5.37 s / 4.53 s (medians of 10).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _times(run, runs: int) -> list[float]:  # noqa: ANN001 - a no-argument callable
    for _ in range(2):
        run()  # warm-up
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        ms.append((time.perf_counter() - t0) * 1000)
    return ms


def _summary(ms: list[float]) -> dict:
    return {"median_ms": round(statistics.median(ms), 1), "best_ms": round(min(ms), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of torch and of onnxruntime")
    ap.add_argument("--only", choices=("toy", "r50"), default=None)
    ap.add_argument("--image-size", type=int, default=800, help="the R50 model's shorter side (DETR: 800)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    from detr_core.checkpoint import load_checkpoint
    from detr_core.config import DETRConfig
    from detr_core.data.images import prepare
    from detr_core.data.toy import ToyShapes
    from detr_core.formats.onnx import session, write_onnx
    from detr_core.model.registry import build_model
    from detr_core.precision import cpu_description

    print(json.dumps({**cpu_description(), "threads": args.threads, "runs": args.runs,
                      "torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__}), flush=True)
    image = ToyShapes(seed=7, split="val", length=1).sample(0).image  # [128, 128, 3] uint8
    models = []
    if args.only in (None, "toy"):
        models.append(("toy (checkpoints/toy_shapes.pt)", load_checkpoint(ROOT / "checkpoints" / "toy_shapes.pt")
                       .build_model()))
    if args.only in (None, "r50"):
        torch.manual_seed(0)
        config = dataclasses.replace(DETRConfig(pretrained_backbone=False), image_min_size=args.image_size)
        models.append(("R50 DETR (random weights)", build_model(config)))
    with tempfile.TemporaryDirectory() as folder:
        for name, model in models:
            model = model.eval()
            cfg = model.config
            images = prepare(image, cfg.image_min_size, cfg.image_max_size)[None]  # [1, 3, H, W]
            path = Path(folder) / "model.onnx"
            t0 = time.perf_counter()
            written = write_onnx(model, path)
            export_s = time.perf_counter() - t0
            runner = session(path, threads=args.threads)
            feed = {"images": images.numpy()}
            with torch.no_grad():
                eager = _times(lambda: model(images), args.runs)
            ort = _times(lambda: runner.run(None, feed), args.runs)
            print(json.dumps({"model": name, "input": list(images.shape), "params_m": round(
                sum(p.numel() for p in model.parameters()) / 1e6, 1), "export_and_check_s": round(export_s, 1),
                "check_max_diff": float(f"{written.difference:.3g}"), "eager": _summary(eager),
                "onnxruntime": _summary(ort),
                "eager_over_onnxruntime": round(statistics.median(eager) / statistics.median(ort), 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
