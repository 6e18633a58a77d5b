"""How fast can a training step get without changing what it computes? The convolution bound.

    uv run benchmarks/conv_bound.py [--preset r18] [--set bf16=off] [--threads 1] [--steps 6]

Counts the step's floating-point operations (``torch.utils.flop_counter``), profiles a few steps
(``torch.profiler``) and prints:
- ``step_ms``: one training step (forward, matching, losses, backward, clip, optimizer), the sum of
  the profiled operators' own times;
- ``conv_ms`` and ``conv_share``: the convolutions' part of it, forward and backward;
- ``conv_gflop`` and ``conv_gflop_per_s``: the work the convolutions do and the rate they do it at,
  to set beside the CPU's peak (a Zen 4 or Skylake-X core does 32 float32 flops per cycle with
  AVX-512 FMA: about 100 GFLOP/s at 3 GHz);
- ``bound``: step_ms / conv_ms, the speed-up a step could reach if everything but its
  convolutions took no time at all. With the convolutions already near the core's peak, only
  doing fewer multiplications (a different convolution algorithm) could go past it.

One thread by default: the per-thread rate is what compares with a core's peak, and CPU time
is not stretched by other processes as wall time is. One JSON line, with the CPU's model and
bf16 flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detr_core.data import ToyShapes  # noqa: E402
from detr_core.precision import cpu_description  # noqa: E402
from detr_core.presets import apply_overrides, preset  # noqa: E402
from detr_core.train.trainer import Trainer  # noqa: E402

CONV_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_slow_conv2d_forward",
            "aten::_slow_conv2d_backward", "aten::cudnn_convolution", "aten::_convolution")


def measure(preset_name: str, overrides: list[str], threads: int, steps: int) -> dict:
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    extra = [f"threads={threads}", "steps=100000", "max_seconds=none", "eval_every=0"]
    trainer = Trainer(*apply_overrides(*preset(preset_name), overrides + extra))
    bs = trainer.config.batch_size
    data = ToyShapes(trainer.config.data, seed=1)
    batches = [data.batch(range(i * bs, (i + 1) * bs)) for i in range(4)]
    for b in batches[:3]:  # warm-up
        trainer.train_step(*b)
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step(*batches[0])
    flops = counter.get_flop_counts()["Global"]
    conv_flops = sum(n for op, n in flops.items() if "convolution" in str(op))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            trainer.train_step(*batches[i % len(batches)])
    events = prof.key_averages()
    step_us = sum(e.self_cpu_time_total for e in events) / steps
    conv_us = sum(e.self_cpu_time_total for e in events if e.key in CONV_OPS) / steps
    return {
        "preset": preset_name, "overrides": overrides, "bf16": trainer.config.bf16, "batch_size": bs,
        "threads": threads,
        "step_ms": round(step_us / 1e3, 1),
        "conv_ms": round(conv_us / 1e3, 1),
        "conv_share": round(conv_us / step_us, 3),
        "conv_gflop": round(conv_flops / 1e9, 2),
        "all_counted_gflop": round(sum(flops.values()) / 1e9, 2),
        "conv_gflop_per_s": round(conv_flops / conv_us / 1e3, 1),
        "bound": round(step_us / conv_us, 3),
        **cpu_description(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="r18")
    ap.add_argument("--set", action="append", default=None, metavar="NAME=VALUE",
                    help="override (default: bf16=off, the float32 step)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6, help="profiled steps")
    args = ap.parse_args(argv)
    overrides = args.set if args.set is not None else ["bf16=off"]
    print(json.dumps(measure(args.preset, overrides, args.threads, args.steps)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
