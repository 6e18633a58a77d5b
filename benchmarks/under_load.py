"""Training speed on a busy machine: alone, beside busy processes, and two trainings at once.

    uv run benchmarks/under_load.py [--seconds 30] [--set threads=2] [--gui]

Each training is the ``fast`` preset in a fresh process (``Trainer.events``, data drawing and the
thread tuner included, no evaluation), timed over ``--seconds`` after its first 8 steps; its speed
is the images it trained divided by that wall time, so the steps spent trying thread counts count
against it. Three scenarios, one after the other:

- alone;
- beside one busy process per core minus one (plain Python loops at normal priority: the load a
  browser tab or a video call makes);
- two trainings started together.

Prints one JSON line per training and the ratios against alone. Goals on 2 cores: beside a busy
core at least 0.45 of the speed alone; two at once at least 0.4 each. ``--set threads=2`` gives
the fixed thread count of the code before the tuner, to compare; ``--wait-policy PASSIVE`` (or
``ACTIVE``) sets ``OMP_WAIT_POLICY`` for the trainings (libgomp's default otherwise).

With ``--gui``, also the window: a training in the Training panel (its own child process, at each
niceness of ``--nice``) with and without a busy process, printing the event loop's lateness (a
10 ms timer: p99 and max) and the training speed reported in the panel.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN_CODE = r"""
import json, sys, time
from detr_core.presets import apply_overrides, preset
from detr_core.train.trainer import StepEvent, Trainer
seconds, overrides = float(sys.argv[1]), json.loads(sys.argv[2])
model_cfg, train_cfg = apply_overrides(*preset("fast"), ["steps=1000000", "max_seconds=none", "eval_every=0", *overrides])
trainer = Trainer(model_cfg, train_cfg)
print(json.dumps({"threads_at_start": trainer.threads.reason}), flush=True)
t0 = None
steps = 0
counts = []
for event in trainer.events():
    if not isinstance(event, StepEvent):
        continue
    if event.step == 8:
        t0 = time.perf_counter()
    elif t0 is not None:
        steps += 1
        counts.append(event.threads)
        if time.perf_counter() - t0 >= seconds:
            break
wall = time.perf_counter() - t0
print(json.dumps({"images_per_s": round(steps * train_cfg.batch_size / wall, 1), "steps": steps,
                  "threads_at_end": trainer.threads.reason, "thread_changes": trainer.threads.changes,
                  "steps_on_each_count": {n: counts.count(n) for n in sorted(set(counts))}}), flush=True)
"""


def cpu_line() -> str:
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{model}; {os.cpu_count()} logical CPUs; flags {' '.join(wanted) or 'none of avx2/avx512/amx'}"


def start_training(seconds: float, overrides: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", TRAIN_CODE, str(seconds), json.dumps(overrides)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=600)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    result: dict = {}
    for line in lines:
        result.update(line)
    return result


def busy_processes(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        p.kill()
    for p in processes:
        p.wait()


def headless(args: argparse.Namespace, env: dict[str, str]) -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    alone = finish(start_training(args.seconds, args.set, env))
    print(json.dumps({"scenario": "alone", **alone}), flush=True)
    busy = busy_processes(max(1, cores - 1))
    time.sleep(1.0)
    try:
        loaded = finish(start_training(args.seconds, args.set, env))
    finally:
        stop(busy)
    print(json.dumps({"scenario": f"beside {len(busy)} busy process(es)", **loaded}), flush=True)
    pair = [start_training(args.seconds, args.set, env) for _ in range(2)]
    both = [finish(p) for p in pair]
    for k, r in enumerate(both):
        print(json.dumps({"scenario": f"two at once, training {k + 1}", **r}), flush=True)
    base = alone["images_per_s"]
    ratios = {"beside_busy_vs_alone": round(loaded["images_per_s"] / base, 3),
              "two_at_once_vs_alone": [round(r["images_per_s"] / base, 3) for r in both]}
    print(json.dumps({"ratios": ratios, "goals": {"beside_busy_vs_alone": 0.45, "two_at_once_vs_alone": 0.4}}),
          flush=True)
    return ratios


GUI_CODE = r"""
import json, os, statistics, sys, tempfile, time
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, sys.argv[3])
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
app = QApplication([])
import explorer.training_worker as tw
from benchmarks.gui_latency import LatenessProbe, percentile
from detr_core.train.live import warm_up
from explorer.main_window import MainWindow
tw.TRAINING_NICENESS = int(sys.argv[1])
seconds = float(sys.argv[2])
window = MainWindow(settings=QSettings(tempfile.mktemp(suffix=".ini"), QSettings.Format.IniFormat))
window.resize(1366, 768)
window.show()
deadline = time.time() + 120
while window.state.result is None and time.time() < deadline:
    app.processEvents(); time.sleep(0.005)
window.training_dock.raise_()
panel = window.training
panel.load_preset("fast")
panel.minutes.setValue(seconds / 60 + 1)
panel.eval_every.setValue(0)
warm_up(wait=True)
rates, started = [], [False]
def on_progress(events):
    started[0] = True
    rates.extend(e.images_per_sec for e in events)
panel.running.connect(lambda running: running and panel.worker.progress.connect(on_progress))
panel.start()
while not started[0]:
    app.processEvents(); time.sleep(0.001)
probe = LatenessProbe()
probe.start()
t_end = time.perf_counter() + seconds
while time.perf_counter() < t_end:
    app.processEvents(); time.sleep(0.001)
probe.stop()
panel.stop(wait_ms=60000)
app.processEvents()
late = probe.lateness[20:]
skip = max(1, len(rates) // 4)
print(json.dumps({"lateness_ms_p99": round(percentile(late, 99), 1), "lateness_ms_max": round(max(late), 1),
                  "train_images_per_s_in_app": round(statistics.median(rates[skip:]), 1),
                  "threads": panel._threads.strip(" ·")}), flush=True)
window.state.model.unsaved = False
window.close()
"""


def gui(args: argparse.Namespace, env: dict[str, str]) -> None:
    env = {**env, "QT_QPA_PLATFORM": env.get("QT_QPA_PLATFORM", "offscreen")}
    if "DISPLAY" in os.environ:
        env.pop("QT_QPA_PLATFORM")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for nice in args.nice:
        for load in args.gui_busy or (0, max(1, cores - 1)):
            busy = busy_processes(load)
            try:
                out = subprocess.run([sys.executable, "-c", GUI_CODE, str(nice), str(args.gui_seconds), str(ROOT)],
                                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
            finally:
                stop(busy)
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            result = json.loads(lines[-1]) if lines else {"error": out.stderr.strip().splitlines()[-1:]}
            print(json.dumps({"scenario": "window", "training_niceness": nice, "busy_processes": load, **result}),
                  flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="timed seconds of each headless training")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a setting")
    ap.add_argument("--wait-policy", default=None, help="OMP_WAIT_POLICY for the trainings (default: unset)")
    ap.add_argument("--gui", action="store_true", help="also measure the window")
    ap.add_argument("--gui-only", action="store_true", help="only the window")
    ap.add_argument("--gui-seconds", type=float, default=20.0)
    ap.add_argument("--nice", type=int, nargs="+", default=[10], help="training niceness values for --gui")
    ap.add_argument("--gui-busy", type=int, nargs="+", default=None,
                    help="busy processes beside the window (default: none, then one per core minus one)")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    if args.wait_policy:
        env["OMP_WAIT_POLICY"] = args.wait_policy
    print(json.dumps({"cpu": cpu_line(), "overrides": args.set, "wait_policy": env.get("OMP_WAIT_POLICY", "libgomp's default")}),
          flush=True)
    if not args.gui_only:
        headless(args, env)
    if args.gui or args.gui_only:
        gui(args, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
