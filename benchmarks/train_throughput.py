"""Training throughput (images per second) on the CPU.

    uv run benchmarks/train_throughput.py [--threads 2] [--seconds 20]

The configuration of the foundation issue: ResNet-18 backbone, d_model 128, 4 heads, 2 encoder +
2 decoder layers, FFN 512, 20 queries, 128x128 images, batch 16, AdamW, gradient clip 0.1 — the
paper's recipe, as in the reference implementation. It reports full training steps (forward,
matching, losses, backward, clip, optimizer) on pre-generated toy batches, in float32 and with
bfloat16 autocast when the CPU has fast bf16 (AMX / AVX512-BF16), then the same for the ``tiny``
backbone and for the ``fast`` preset. One JSON object per line; the median of several timing
windows, after warm-up steps. Last, the ``fast`` preset through the training loop itself
(``measured: training loop``), data drawing included, as a run gets it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from detr_core.data import ToyShapes
from detr_core.presets import apply_overrides, cpu_has_fast_bf16, preset
from detr_core.train.trainer import StepEvent, Trainer


def _trainer(preset_name: str, overrides: list[str], threads: int) -> Trainer:
    """The preset with ``overrides``, on ``threads`` threads, with no end and no evaluation."""
    extra = [f"threads={threads}", "steps=100000", "max_seconds=none", "eval_every=0"]
    return Trainer(*apply_overrides(*preset(preset_name), overrides + extra))


def measure(preset_name: str, overrides: list[str], seconds: float, threads: int) -> dict:
    trainer = _trainer(preset_name, overrides, threads)
    model_cfg, train_cfg = trainer.model_config, trainer.config
    bs = train_cfg.batch_size
    data = ToyShapes(train_cfg.data, seed=1)
    batches = [data.batch(range(i * bs, (i + 1) * bs)) for i in range(8)]
    t = time.perf_counter()
    data.batch(range(10_000, 10_000 + 4 * bs))
    data_seconds_per_image = (time.perf_counter() - t) / (4 * bs)
    for b in batches[:3]:  # warm-up
        trainer.train_step(*b)
    windows = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline or len(windows) < 3:
        t0 = time.perf_counter()
        for _ in range(4):
            trainer.train_step(*batches[i % len(batches)])
            i += 1
        windows.append(4 * bs / (time.perf_counter() - t0))
    ips = statistics.median(windows)
    return {
        "config": preset_name,
        "backbone": model_cfg.backbone,
        "bf16": train_cfg.bf16,
        "batch_size": bs,
        "threads": torch.get_num_threads(),
        "images_per_sec": round(ips, 1),
        "images_per_sec_min_window": round(min(windows), 1),
        "images_per_sec_max_window": round(max(windows), 1),
        "images_per_sec_with_data_generation": round(1 / (1 / ips + data_seconds_per_image), 1),
        "steps_timed": i,
    }


def measure_loop(preset_name: str, overrides: list[str], seconds: float, threads: int) -> dict:
    """Images per second through the training loop itself (``Trainer.events``): the toy batches
    are drawn as training draws them, so this is the rate
    a run gets, data included."""
    trainer = _trainer(preset_name, overrides, threads)
    train_cfg = trainer.config
    events = trainer.events()
    steps, t0, deadline = -5, 0.0, 0.0  # five warm-up steps
    for event in events:
        if not isinstance(event, StepEvent):
            continue
        steps += 1
        if steps == 0:
            t0 = time.perf_counter()
            deadline = t0 + seconds
        elif steps > 0 and time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - t0
    events.close()
    return {
        "config": preset_name,
        "measured": "training loop (data included)",
        "bf16": train_cfg.bf16,
        "batch_size": train_cfg.batch_size,
        "threads": torch.get_num_threads(),
        "images_per_sec": round(steps * train_cfg.batch_size / elapsed, 1),
        "steps_timed": steps,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0, help="timing per configuration")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = [("r18", ["bf16=off"])]
    if cpu_has_fast_bf16():
        runs.append(("r18", ["bf16=on"]))
    runs += [("r18", ["backbone=tiny", "bf16=off"])]
    if cpu_has_fast_bf16():
        runs.append(("r18", ["backbone=tiny", "bf16=on"]))
    runs.append(("fast", ["bf16=off"]))
    if cpu_has_fast_bf16():
        runs.append(("fast", ["bf16=on"]))
    for name, overrides in runs:
        print(json.dumps({**measure(name, overrides, args.seconds, args.threads), "overrides": overrides}), flush=True)
    for overrides in (["bf16=off"], ["bf16=on"]) if cpu_has_fast_bf16() else (["bf16=off"],):
        print(json.dumps({**measure_loop("fast", overrides, args.seconds, args.threads), "overrides": overrides}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
