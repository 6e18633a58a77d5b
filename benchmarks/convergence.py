"""How fast does a preset learn toy shapes? AP / AP50 on a fixed held-out split against
seconds of training.

    uv run benchmarks/convergence.py --preset fast --seconds 120 [--seed K | --seeds 0 1 2] [--plot out.png]
    uv run benchmarks/convergence.py --presets vanilla fast deformable --seconds 120 --threads 2
    uv run benchmarks/convergence.py --data coco:PATH ...   (the same on a COCO or VOC folder)
    uv run benchmarks/convergence.py --presets all --seeds 0 1 2 --precision fp32 bf16 --seconds 120 --steps 600
        (the issue's table: every toy preset, three seeds, both precisions, AP at 120 s and at 600 steps)

A budget is seconds of training (``--seconds``, the CPU's speed counts) or a number of steps
(``--steps``: sample efficiency, the same on any CPU); given both, each preset, seed and
precision runs once per budget (the learning-rate schedule ends with each budget). ``--precision``
forces fp32 or bf16 autocast (default: the preset's own choice, bf16 where the CPU has it).

Every ~10 s of training it evaluates with pycocotools on the 500-image held-out toy split
(never trained on) and prints one JSON line (seconds, steps, AP, AP50). Evaluation time is not
counted as training time. The last line is a summary object with the keys preset, seconds,
steps, AP, AP50 and seconds_to_AP50_0.9 (null if never reached). With ``--seeds``, one run per seed (each printing
its lines and summary), then one more object over the seeds: the mean, standard deviation, min and
max of AP and AP50 (key ``over_seeds``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from detr_core.analysis.evaluate import evaluate_model
from detr_core.data.sources import fit_to_data
from detr_core.presets import apply_overrides, preset
from detr_core.train.trainer import ErrorEvent, StepEvent, Trainer

TOY_PRESETS = ("vanilla", "fast", "deformable", "dino", "rt_detr")  # --presets all


def run(args: argparse.Namespace) -> dict:
    model_cfg, train_cfg = preset(args.preset)
    budget = [f"max_seconds={args.seconds}", "steps=0"] if args.budget == "seconds" else \
        ["max_seconds=none", f"steps={args.steps}"]
    overrides = [f"seed={args.seed}", *budget, f"threads={args.threads}",
                 "eval_every=0", f"eval_images={args.eval_images}"] + args.set
    if args.precision_now:
        overrides.append(f"bf16={args.precision_now == 'bf16'}")
    if args.data:
        overrides.append(f"dataset.source={args.data}")
    model_cfg, train_cfg = apply_overrides(model_cfg, train_cfg, overrides)
    torch.set_num_threads(args.threads)
    model_cfg, datasets = fit_to_data(model_cfg, train_cfg)  # the toy generator unless --data
    trainer = Trainer(model_cfg, train_cfg, datasets=datasets)
    heldout = trainer.heldout  # the toy held-out split, or the folder's validation split
    points = []
    next_eval = args.every
    reached = None
    wall0 = time.perf_counter()

    def evaluate(ev_step: int, elapsed: float) -> None:
        nonlocal reached
        m = evaluate_model(trainer.model, heldout, args.eval_images, device=trainer.device)
        point = {"seconds": round(elapsed, 1), "steps": ev_step, "AP": round(m["AP"], 4), "AP50": round(m["AP50"], 4)}
        points.append(point)
        if reached is None and m["AP50"] >= 0.9:
            reached = point["seconds"]
        print(json.dumps(point), flush=True)

    last = None
    for event in trainer.events():
        if isinstance(event, StepEvent):
            last = event
            if event.elapsed >= next_eval:
                evaluate(event.step, event.elapsed)
                next_eval += args.every
        elif isinstance(event, ErrorEvent):
            print(json.dumps({"error": event.message}), flush=True)
    if last is not None and (not points or points[-1]["steps"] != last.step):
        evaluate(last.step, last.elapsed)
    final = points[-1] if points else {"seconds": 0, "steps": 0, "AP": 0.0, "AP50": 0.0}
    summary = {
        "preset": args.preset,
        "data": args.data or "toy",
        "seconds": final["seconds"],
        "steps": final["steps"],
        "AP": final["AP"],
        "AP50": final["AP50"],
        "seconds_to_AP50_0.9": reached,
        "seed": args.seed,
        "budget": f"{args.seconds:g} s" if args.budget == "seconds" else f"{args.steps} steps",
        "precision": "bf16" if train_cfg.bf16 else "fp32",
        "images_per_sec": round(last.images_per_sec, 1) if last else None,
        "wall_seconds": round(time.perf_counter() - wall0, 1),
        "overrides": args.set,
        "curve": points,
    }
    return summary


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    """AP50 against seconds, one line per run, drawn with PySide6's QPainter (no extra deps)."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QPointF, QRectF, Qt
    from PySide6.QtGui import QColor, QFont, QGuiApplication, QImage, QPainter, QPen

    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 - fonts need an app
    w, h, margin = 900, 520, 70
    img = QImage(w, h, QImage.Format.Format_ARGB32)
    img.fill(QColor("white"))
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    xmax = max((pt["seconds"] for c in curves.values() for pt in c), default=1.0) or 1.0
    plot_rect = QRectF(margin, 30, w - margin - 30, h - margin - 30)

    def to_px(sec: float, ap: float) -> QPointF:
        return QPointF(plot_rect.left() + sec / xmax * plot_rect.width(), plot_rect.bottom() - ap * plot_rect.height())

    p.setPen(QPen(QColor("#888"), 1))
    p.drawRect(plot_rect)
    p.setFont(QFont("Sans", 10))
    for i in range(0, 11, 2):
        y = i / 10
        pt = to_px(0, y)
        p.drawText(QPointF(margin - 30, pt.y() + 4), f"{y:.1f}")
        p.setPen(QPen(QColor("#eee"), 1))
        p.drawLine(to_px(0, y), to_px(xmax, y))
        p.setPen(QPen(QColor("#888"), 1))
    for k in range(6):
        sec = xmax * k / 5
        pt = to_px(sec, 0)
        p.drawText(QPointF(pt.x() - 15, plot_rect.bottom() + 20), f"{sec:.0f}")
    p.drawText(QPointF(w / 2 - 60, h - 15), "seconds of training")
    p.save()
    p.translate(22, h / 2 + 50)
    p.rotate(-90)
    p.drawText(QPointF(0, 0), "AP50 (held-out)")
    p.restore()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    for n, (label, pts) in enumerate(curves.items()):
        colour = QColor(palette[n % len(palette)])
        p.setPen(QPen(colour, 2.5))
        for a, b in zip(pts, pts[1:]):
            p.drawLine(to_px(a["seconds"], a["AP50"]), to_px(b["seconds"], b["AP50"]))
        # the legend sits right of centre, away from a fast curve's rise and a slow one's floor
        p.drawText(QPointF(plot_rect.left() + plot_rect.width() * 0.45, plot_rect.top() + plot_rect.height() * 0.45
                           + 20 * n), label)
    p.setPen(QPen(QColor("#444"), 1, Qt.PenStyle.DashLine))
    p.drawLine(to_px(0, 0.9), to_px(xmax, 0.9))
    p.end()
    img.save(str(path))


def _label(summary: dict) -> str:
    label = f"{summary['preset']} (seed {summary.get('seed')})"
    if summary.get("overrides"):
        label += " " + " ".join(summary["overrides"])
    return label


def over_seeds(summaries: list[dict]) -> dict:
    """Mean, standard deviation (0 for one run), min and max of AP and AP50 over runs."""
    out: dict = {"over_seeds": True, "preset": summaries[0]["preset"], "seeds": [s["seed"] for s in summaries],
                 "seconds_mean": round(statistics.fmean(s["seconds"] for s in summaries), 1), "overrides": summaries[0]["overrides"],
                 "steps_mean": round(statistics.fmean(s["steps"] for s in summaries), 1)}
    for key in ("AP", "AP50"):
        values = [s[key] for s in summaries]
        out[f"{key}_mean"] = round(statistics.fmean(values), 4)
        out[f"{key}_std"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
        out[f"{key}_min"] = min(values)
        out[f"{key}_max"] = max(values)
    return out


def table(summaries: list[dict]) -> str:
    """A Markdown table: one row per preset, budget and precision, AP and AP50 as the mean over
    seeds (with min..max when there are several)."""
    rows: dict[tuple, list[dict]] = {}
    for s in summaries:
        rows.setdefault((s["preset"], s["budget"], s["precision"]), []).append(s)
    lines = ["| preset | budget | precision | seeds | steps | AP | AP50 |", "|---|---|---|---|---|---|---|"]
    for (name, budget, precision), runs in rows.items():
        cells = []
        for key in ("AP", "AP50"):
            values = [r[key] for r in runs]
            cell = f"{statistics.fmean(values):.3f}"
            if len(values) > 1:
                cell += f" ({min(values):.3f}..{max(values):.3f})"
            cells.append(cell)
        steps = round(statistics.fmean(r["steps"] for r in runs))
        lines.append(f"| {name} | {budget} | {precision} | {len(runs)} | {steps} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--presets", nargs="+", metavar="NAME",
                    help="several presets one after another in this run (same seconds, threads and "
                         "evaluation), then one comparison object (key compare)")
    ap.add_argument("--seconds", type=float, default=None, help="a time budget (default 120 without --steps)")
    ap.add_argument("--steps", type=int, default=None, help="a step budget (sample efficiency)")
    ap.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=[],
                    help="run in each of these (default: the preset's own choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", metavar="K",
                    help="run once per seed and report the mean and spread of AP and AP50")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--every", type=float, default=10.0, help="seconds of training between evaluations")
    ap.add_argument("--eval-images", type=int, default=500)
    ap.add_argument("--data", default=None, metavar="coco:PATH|voc:PATH", help="train on a dataset folder")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a setting")
    ap.add_argument("--plot", type=Path, help="write a PNG of AP50 against seconds")
    ap.add_argument("--compare", type=Path, nargs="*", default=[],
                    help="summary JSON files of earlier runs to draw on the same plot")
    ap.add_argument("--save-summary", type=Path, help="also write the summary object to this file")
    ap.add_argument("--plot-only", action="store_true",
                    help="train nothing: draw the --compare summaries into --plot")
    args = ap.parse_args(argv)
    if args.seconds is None and args.steps is None:
        args.seconds = 120.0
    if args.presets == ["all"]:
        args.presets = list(TOY_PRESETS)
    if args.plot_only:
        if not args.plot or not args.compare:
            ap.error("--plot-only needs --plot and --compare")
        runs = [one for f in args.compare for one in json.loads(f.read_text()).get("runs", [json.loads(f.read_text())])]
        plot({_label(one): one["curve"] for one in runs}, args.plot)
        return 0
    curves: dict[str, list[dict]] = {}
    summaries = []
    budgets = (["seconds"] if args.seconds is not None else []) + (["steps"] if args.steps is not None else [])
    runs = [(name, seed, precision, budget) for budget in budgets for name in (args.presets or [args.preset])
            for precision in (args.precision or [None]) for seed in (args.seeds or [args.seed])]
    for name, seed, precision, budget in runs:
        args.preset, args.seed, args.precision_now, args.budget = name, seed, precision, budget
        summary = run(args)
        curve = summary.pop("curve")
        print(json.dumps(summary), flush=True)
        summaries.append({**summary, "curve": curve})
        curves[_label(summary)] = curve
    if args.seeds and not args.presets and len(budgets) == 1 and len(args.precision) < 2:
        print(json.dumps(over_seeds(summaries)), flush=True)
    if args.presets or len(budgets) > 1 or len(args.precision) > 1:
        keys = ("preset", "seed", "budget", "precision", "seconds", "steps", "AP", "AP50", "seconds_to_AP50_0.9",
                "images_per_sec")
        print(json.dumps({"compare": [{k: s.get(k) for k in keys} for s in summaries],
                          "threads": args.threads}), flush=True)
        print(table(summaries), flush=True)
    if args.save_summary:
        saved = summaries[0] if len(summaries) == 1 else {**over_seeds(summaries), "runs": summaries}
        args.save_summary.write_text(json.dumps(saved))
    if args.plot:
        for f in args.compare:
            other = json.loads(f.read_text())
            for one in other.get("runs", [other]):
                curves[_label(one)] = one["curve"]
        plot(curves, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
