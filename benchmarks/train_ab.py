"""Interleaved A/B of training throughput: a git revision's ``detr_core`` against the working tree.

    uv run benchmarks/train_ab.py [--base HEAD] [--preset r18] [--set bf16=off] [--rounds 8]

On a shared or noisy machine, two benchmark runs minutes apart measure the neighbours as much as
the code. This runs the two versions side by side instead: ``git archive`` exports the base
revision's ``detr_core`` to a temporary folder, and two long-lived worker processes (base and
working tree) build the same preset and the same pre-generated toy batches, warm up, then take
turns timing one window of ``--steps`` training steps each (A, B, B, A, ... so neither always goes
first), one process running at a time. It prints one JSON line per round and a summary: the
median images/s of each side and the median of the per-round ratios (new / base), with the CPU
model and its bf16 flags.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detr_core.precision import cpu_description  # noqa: E402

WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
import detr_core
from detr_core.data import ToyShapes
from detr_core.presets import apply_overrides, preset
try:
    from detr_core.train.trainer import Trainer
except ImportError:  # revisions before detr_core/train/ became a package
    from detr_core.train import Trainer
spec = json.loads(sys.argv[2])
torch.set_num_threads(spec["threads"])
m, t = apply_overrides(*preset(spec["preset"]), spec["set"] + [f"threads={spec['threads']}", "steps=100000",
                                                                "max_seconds=none", "eval_every=0", "seed=0"])
trainer = Trainer(m, t)
bs = t.batch_size
data = ToyShapes(t.data, seed=1)
batches = [data.batch(range(i * bs, (i + 1) * bs)) for i in range(8)]
for b in batches[:spec["warmup"]]:
    trainer.train_step(*b)
print(json.dumps({"ready": detr_core.__file__, "batch_size": bs}), flush=True)
i = 0
for line in sys.stdin:
    n = int(line)
    t0 = time.perf_counter()
    for _ in range(n):
        trainer.train_step(*batches[i % len(batches)])
        i += 1
    print(json.dumps({"images_per_sec": n * bs / (time.perf_counter() - t0)}), flush=True)
"""


def export_revision(rev: str, dest: Path) -> None:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "detr_core"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def start(path: Path, spec: dict) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(path), json.dumps(spec)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=str(path))
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def window(proc: subprocess.Popen, steps: int) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{steps}\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())["images_per_sec"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="HEAD", help="git revision to compare the working tree against")
    ap.add_argument("--preset", default="r18")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6, help="training steps per timing window")
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args(argv)
    spec = {"preset": args.preset, "set": args.set, "threads": args.threads, "warmup": args.warmup}
    with tempfile.TemporaryDirectory() as tmp:
        export_revision(args.base, Path(tmp))
        base, _ = start(Path(tmp), spec)
        new, _ = start(ROOT, spec)
        try:
            rows = []
            for r in range(args.rounds):
                order = [("base", base), ("new", new)] if r % 2 == 0 else [("new", new), ("base", base)]
                row = {name: window(proc, args.steps) for name, proc in order}
                row["ratio"] = row["new"] / row["base"]
                rows.append(row)
                print(json.dumps({"round": r, **{k: round(v, 3) for k, v in row.items()}}), flush=True)
        finally:
            for proc in (base, new):
                proc.kill()
    summary = {
        "preset": args.preset, "set": args.set, "threads": args.threads, "base": args.base,
        "base_images_per_sec": round(statistics.median(r["base"] for r in rows), 1),
        "new_images_per_sec": round(statistics.median(r["new"] for r in rows), 1),
        "ratio_median": round(statistics.median(r["ratio"] for r in rows), 3),
        "ratio_min": round(min(r["ratio"] for r in rows), 3),
        "ratio_max": round(max(r["ratio"] for r in rows), 3),
        **cpu_description(),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
