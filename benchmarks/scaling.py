"""Training throughput on 1, 2, ... processes (torchrun, gloo on CPUs / NCCL on GPUs) and the
scaling efficiency.

    uv run benchmarks/scaling.py [--procs 1,2] [--preset fast] [--batch 8] [--threads 1] [--steps 20]

Each process keeps ``--batch`` images per step (the global batch grows with the processes, as
when GPUs are added) and ``--threads`` torch threads. One process runs plainly (no torchrun: the
baseline); N > 1 run under ``torchrun --standalone --nproc_per_node=N``. Every run trains through
``Trainer.events()`` (data generation included), drops ``--warmup`` steps, and times the next
``--steps``; rank 0 reports. Printed: one JSON line per process count, then a table of images/s
and efficiency = images/s(N) / (N * images/s(1)). On CPUs, keep N * threads within the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
from detr_core.presets import apply_overrides, preset
from detr_core.train.distributed import setup, shutdown
from detr_core.train.trainer import StepEvent, Trainer
spec = json.loads(sys.argv[2])
torch.set_num_threads(spec["threads"])
d = setup("auto")
world = d.world_size if d is not None else 1
m, t = apply_overrides(*preset(spec["preset"]), spec["set"] + [
    f"threads={spec['threads']}", f"batch_size={spec['batch'] * world}", f"steps={spec['warmup'] + spec['steps']}",
    "max_seconds=none", "eval_every=0", "seed=0"])
trainer = Trainer(m, t, dist=d)
start = None
for event in trainer.events():
    if isinstance(event, StepEvent) and event.step == spec["warmup"]:
        if d is not None:
            d.barrier()
        start = time.perf_counter()
seconds = time.perf_counter() - start
if d is not None:
    seconds = max(d.gather(seconds))
if d is None or d.is_main:
    print(json.dumps({"processes": world, "backend": d.backend if d else "none", "device": str(trainer.device),
                      "global_batch": t.batch_size, "threads_per_process": torch.get_num_threads(),
                      "bf16": t.bf16, "steps": spec["steps"], "seconds": round(seconds, 3),
                      "images_per_sec": round(spec["steps"] * t.batch_size / seconds, 2)}), flush=True)
shutdown()
"""


def run(n: int, spec: dict, worker: Path) -> dict:
    args = [sys.executable, str(worker), str(ROOT), json.dumps(spec)]
    if n > 1:
        args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", *args[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
    r = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=3600)
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    if r.returncode != 0 or not lines:
        sys.exit(f"{n} processes failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", default="1,2", help="process counts, e.g. 1,2,4 (default 1,2)")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--batch", type=int, default=8, help="images per process per step (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (default 3)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a setting")
    args = parser.parse_args()
    procs = [int(p) for p in args.procs.split(",")]
    if 1 not in procs:
        procs = [1, *procs]  # the baseline of the efficiency
    spec = {"preset": args.preset, "batch": args.batch, "threads": args.threads, "steps": args.steps,
            "warmup": args.warmup, "set": args.set}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        worker = Path(tmp) / "worker.py"
        worker.write_text(WORKER)
        results = []
        for n in procs:
            if n * args.threads > cores:
                print(f"note: {n} processes x {args.threads} threads > {cores} cores: they share cores",
                      file=sys.stderr)
            results.append(run(n, spec, worker))
            print(json.dumps(results[-1]), flush=True)
    base = results[0]["images_per_sec"]
    print(f"\n{'processes':>9}  {'global batch':>12}  {'images/s':>9}  {'speed-up':>8}  {'efficiency':>10}")
    for r in results:
        n, rate = r["processes"], r["images_per_sec"]
        print(f"{n:>9}  {r['global_batch']:>12}  {rate:>9.1f}  {rate / base:>7.2f}x  {rate / (n * base):>9.0%}")


if __name__ == "__main__":
    main()
