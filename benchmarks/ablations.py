"""The classic DETR ablations, headless: the baseline and four variants with one seed and budget.

    uv run benchmarks/ablations.py --seconds 120 --seed 0 [--store DIR] [--base fast]

Runs, one after another: ``baseline`` (the base preset), ``one-query`` (num_queries = 1),
``ten-queries`` (num_queries = 10, up to 6 objects per image), ``no-self-attention`` (decoder
self-attention removed) and ``no-aux-loss`` (auxiliary decoding losses off). Each trains for
``--seconds`` of training time (evaluation not counted), is evaluated on the held-out toy split
every ``--every`` seconds, and ends with AP, AP50, the duplicates (the fraction of kept
predictions, score >= 0.3, that repeat a higher-scoring one of their class with IoU >= 0.5; see
``detr_core.analysis.duplicates.find_duplicates``), AP50 after class-wise NMS at IoU 0.7 (what NMS
would add) and the older duplicate rate (pairs per kept prediction, score >= 0.5, IoU > 0.7).

Without decoder self-attention the copies of an object share its score (each about half of
what one confident box gets), so most of them fall below 0.5: read the duplicates at score 0.3
and the NMS gain, not the pair rate at 0.5.

Prints one JSON line per run (name, AP, AP50, AP75, duplicate_rate, steps, seconds,
AP50_nms, NMS_gain, duplicates, seconds_to_AP50_<level>, the AP50 curve as [seconds, AP50] pairs, ...), then a summary line with
the three comparisons the ablations are for: duplicates with and without decoder
self-attention, AP by number of queries, convergence with and without the auxiliary loss.
Evaluation points go to stderr as they come. With ``--store`` the runs (records and
checkpoints) are kept in that folder, which the app's runs panel can open too.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

from detr_core.train.ablations import ABLATIONS, ablation_specs
from detr_core.train.run_store import RunRecord, RunStore
from detr_core.train.runs import execute_run
from detr_core.train.trainer import ErrorEvent, EvalEvent, Event

DUPLICATE_KEYS = ("duplicates", "NMS_gain", "duplicate_rate")


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def run_line(record: RunRecord, level: float) -> dict:
    """The JSON line of one run."""
    losses = record.curves.get("loss_giou", [])
    tail = [v for v in losses[-max(1, len(losses) // 10):] if math.isfinite(v)]
    return {
        "name": record.name,
        "status": record.status,
        "AP": _round(record.ap),
        "AP50": _round(record.ap50),
        "AP75": _round(record.ap75),
        "AP50_nms": _round(record.ap50_nms),
        "NMS_gain": _round(None if record.ap50 is None or record.ap50_nms is None else record.ap50_nms - record.ap50),
        "duplicates": _round(record.duplicates),
        "duplicate_rate": _round(record.duplicate_rate),
        "steps": record.step,
        "seconds": round(record.elapsed, 1),
        f"seconds_to_AP50_{level:g}": _round(record.seconds_to("AP50", level), 1),
        "final_loss_giou": _round(sum(tail) / len(tail)) if tail else None,  # mean of the last 10% of steps
        "num_queries": record.config.get("model", {}).get("num_queries"),
        "wall_seconds": round(record.wall_seconds, 1),
        "curve_AP50": [[round(e["elapsed"], 1), _round(e["AP50"])] for e in record.evals],
        "message": record.message or None,
    }


def summary(lines: dict[str, dict], args: argparse.Namespace) -> dict:
    """The comparisons the closing note of the issue asks for."""
    key = f"seconds_to_AP50_{args.level:g}"

    def get(name: str, field: str) -> float | None:
        return lines.get(name, {}).get(field)

    by_queries = {}
    for name in ("one-query", "ten-queries", "baseline"):
        if name in lines:
            label = str(lines[name]["num_queries"]) + (" (default)" if name == "baseline" else "")
            by_queries[label] = {"AP": get(name, "AP"), "AP50": get(name, "AP50")}
    return {
        "summary": True,
        "base": args.base,
        "seed": args.seed,
        "seconds": args.seconds,
        "duplicates": {"with_self_attention": {k: get("baseline", k) for k in DUPLICATE_KEYS},
                       "without_self_attention": {k: get("no-self-attention", k) for k in DUPLICATE_KEYS}},
        "AP_by_num_queries": by_queries,
        "convergence": {
            "with_aux_loss": {key: get("baseline", key), "AP50": get("baseline", "AP50"),
                              "final_loss_giou": get("baseline", "final_loss_giou")},
            "without_aux_loss": {key: get("no-aux-loss", key), "AP50": get("no-aux-loss", "AP50"),
                                 "final_loss_giou": get("no-aux-loss", "final_loss_giou")},
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0, help="training seconds per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base", default="fast", help="the preset every run starts from")
    ap.add_argument("--store", type=Path, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--only", nargs="+", choices=list(ABLATIONS), help="run only these")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--every", type=float, default=10.0, help="training seconds between evaluations")
    ap.add_argument("--eval-images", type=int, default=200, help="held-out images per evaluation")
    ap.add_argument("--level", type=float, default=0.5, help="AP50 level for the convergence time")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a setting in every run")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    common = [f"threads={args.threads}", f"eval_images={args.eval_images}", *args.set]
    specs = ablation_specs(base=args.base, seed=args.seed, seconds=args.seconds, common=common,
                           only=args.only, eval_every_seconds=args.every)
    with tempfile.TemporaryDirectory(prefix="detr-ablations-") as tmp:
        store = RunStore(args.store or tmp)
        lines: dict[str, dict] = {}
        for spec in specs:

            def on_event(event: Event, name: str = spec.name) -> None:
                if isinstance(event, EvalEvent):
                    point = {k: _round(v) for k, v in event.metrics.items()}
                    where = {"run": name, "step": event.step, "seconds": round(event.elapsed, 1)}
                    print(json.dumps({**where, **point}), file=sys.stderr, flush=True)
                elif isinstance(event, ErrorEvent):
                    print(json.dumps({"run": name, "error": event.message}), file=sys.stderr, flush=True)

            record = execute_run(spec, store, on_event=on_event)
            line = run_line(record, args.level)
            if args.store:
                line["checkpoint"] = record.checkpoint
            lines[spec.experiment or spec.name] = line  # keyed as ABLATIONS (the name says the changes)
            print(json.dumps(line), flush=True)
        print(json.dumps(summary(lines, args)), flush=True)
    return 0 if all(line["status"] == "completed" for line in lines.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
