"""DETR Explorer.

    uv run main.py                      open the explorer window
    uv run main.py train [options]      train on toy shapes (headless), save a checkpoint
    uv run main.py eval CKPT [--json]   COCO AP on the held-out toy split
    uv run main.py predict CKPT IMAGE   print the detections in an image
    uv run main.py info CKPT            describe a checkpoint
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage dump) and exits with 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class CLIError(Exception):
    """A problem to report in one line, exit status 1."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _threshold(text: str) -> float:
    value = _positive_float(text) if text not in ("0", "0.0") else 0.0
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="main.py", description="DETR Explorer: see and touch DETR.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    gui = sub.add_parser("gui", help="open the explorer window (the default)")
    gui.add_argument("paths", nargs="*", type=Path, help="an image and/or a checkpoint to open")

    train = sub.add_parser("train", help="train on toy shapes and save a checkpoint")
    train.add_argument("--preset", default="fast", help="fast (default), vanilla or r18")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=_positive_int, help="number of optimizer steps")
    budget.add_argument("--minutes", type=_positive_float, help="minutes of training")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for torch")
    train.add_argument("--out", type=Path, default=None, help="checkpoint path (default runs/<preset>-seed<S>.pt)")
    train.add_argument("--eval-every", type=_positive_int, default=None, help="evaluate every N steps")
    train.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                       help="override any setting, e.g. --set dn_groups=0 --set lr=2e-4 (repeatable)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    ev = sub.add_parser("eval", help="COCO AP of a checkpoint on the held-out toy split")
    ev.add_argument("checkpoint", type=Path)
    ev.add_argument("--images", type=_positive_int, default=500)
    ev.add_argument("--json", action="store_true", help="print one JSON object")

    pr = sub.add_parser("predict", help="detect objects in an image")
    pr.add_argument("checkpoint", type=Path)
    pr.add_argument("image", type=Path)
    pr.add_argument("--threshold", type=_threshold, default=0.5)
    pr.add_argument("--json", action="store_true", help="print one JSON object")

    info = sub.add_parser("info", help="describe a checkpoint")
    info.add_argument("checkpoint", type=Path)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    """Train and save. Once training has started, SIGINT and SIGTERM stop it and it is saved;
    from then on until the process exits they are held (a late second signal must not turn into
    a traceback while the interpreter shuts down)."""
    import dataclasses

    import torch
    from tqdm import tqdm

    from detr_core.checkpoint import SaveError, check_writable, save_checkpoint
    from detr_core.device import usable_cores
    from detr_core.presets import apply_overrides, preset
    from detr_core.train.trainer import ErrorEvent, EvalEvent, FinishedEvent, StepEvent, Trainer

    try:
        model_cfg, train_cfg = preset(args.preset)
        overrides = list(args.set)
        if args.steps:
            overrides += [f"steps={args.steps}", "max_seconds=none"]
        if args.minutes:
            overrides += ["steps=0", f"max_seconds={args.minutes * 60}"]
        if args.seed is not None:
            overrides.append(f"seed={args.seed}")
        if args.threads:
            overrides.append(f"threads={args.threads}")
        if args.eval_every:
            overrides.append(f"eval_every={args.eval_every}")
        model_cfg, train_cfg = apply_overrides(model_cfg, train_cfg, overrides)
    except ValueError as e:
        raise CLIError(str(e)) from None
    cores = usable_cores()
    if train_cfg.threads and train_cfg.threads > cores:
        print(f"note: {train_cfg.threads} threads asked for, this machine has {cores} cores; using {cores}",
              file=sys.stderr)
        train_cfg = dataclasses.replace(train_cfg, threads=cores)
    out = args.out or Path("runs") / f"{args.preset}-seed{train_cfg.seed}.pt"
    try:
        check_writable(out)  # before the first step, not after the whole run
    except SaveError as e:
        raise CLIError(str(e)) from None
    try:
        trainer = Trainer(model_cfg, train_cfg)
    except ValueError as e:
        raise CLIError(str(e)) from None
    stop_signal: list[int] = []
    _stop_on_signals(stop_signal)  # Ctrl-C, and SIGTERM from schedulers and `timeout`, save the run
    by_steps = bool(train_cfg.steps) and not train_cfg.max_seconds
    total = train_cfg.steps if by_steps else int(train_cfg.max_seconds or 0)
    bar = tqdm(total=total, unit="step" if by_steps else "s", disable=args.quiet, dynamic_ncols=True,
               desc=f"{args.preset}")
    shown = 0.0
    finished = None
    try:
        for event in trainer.events():
            if isinstance(event, StepEvent):
                now = event.step if by_steps else int(event.elapsed)
                bar.update(now - shown)
                shown = now
                if event.step % 5 == 0 or event.step == 1:
                    ls = event.losses
                    post = {"loss": f"{ls['loss']:.3f}", "ce": f"{ls['loss_ce']:.3f}",
                            "l1": f"{ls['loss_bbox']:.3f}", "giou": f"{ls['loss_giou']:.3f}"}
                    if "dn_loss_bbox" in ls:
                        post["dn_l1"] = f"{ls['dn_loss_bbox']:.3f}"
                    post["img/s"] = f"{event.images_per_sec:.0f}"
                    bar.set_postfix(post, refresh=False)
            elif isinstance(event, EvalEvent):
                bar.write(f"step {event.step}: AP {event.metrics['AP']:.3f}  AP50 {event.metrics['AP50']:.3f}")
            elif isinstance(event, ErrorEvent):
                bar.write(event.message)
            elif isinstance(event, FinishedEvent):
                finished = event
    except KeyboardInterrupt:
        how = "terminated (SIGTERM)" if stop_signal[:1] == [signal.SIGTERM] else "interrupted"
        bar.write(f"{how}: saving what has been trained so far")
    finally:
        _hold_signals_until_exit(stop_signal)  # from here on nothing interrupts the save
        bar.close()

    def save(path: Path) -> Path:
        return save_checkpoint(path, trainer.model, trainer.class_names, trainer.optimizer,
                               trainer.history.to_dict(), train_cfg, trainer.step)

    saved, failure = _save_somewhere(out, save)
    if saved is None:
        raise CLIError(f"{failure}; nothing could be saved")
    what = f"{trainer.step} steps, {trainer.elapsed:.0f} s of training, {torch.get_num_threads()} threads"
    if failure:
        print(f"error: {failure}; saved to {saved} instead ({what})", file=sys.stderr)
        return 1
    print(f"saved {out} ({what})")
    return 1 if finished is not None and finished.reason == "error" else 0


def _stop_on_signals(received: list[int]) -> None:
    """SIGINT and SIGTERM stop training (as KeyboardInterrupt) so that it is saved; the first
    one switches both to being held, so a second one (a signal sent to the whole process group
    arrives twice, through uv and directly) cannot interrupt the save."""

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        _hold_signals_until_exit(received)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _hold_signals_until_exit(received: list[int]) -> None:
    def hold(signum: int, frame: object) -> None:
        received.append(signum)

    signal.signal(signal.SIGINT, hold)
    signal.signal(signal.SIGTERM, hold)


def _save_somewhere(out: Path, save: Callable[[Path], Path]) -> tuple[Path | None, str | None]:
    """Save to ``out``; if that fails, to the current folder, then the temporary folder.
    Returns (where it was saved or None, the one-line reason ``out`` failed or None)."""
    from detr_core.checkpoint import SaveError

    try:
        return save(out), None
    except SaveError as e:
        failure = str(e)
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        alternative = folder / out.name
        if alternative.exists() or alternative.resolve() == out.resolve():
            alternative = folder / f"{out.stem}-{time.strftime('%Y%m%d-%H%M%S')}{out.suffix}"
        try:
            return save(alternative), failure
        except SaveError:
            continue
    return None, failure


def _load(path: Path):  # noqa: ANN202
    from detr_core.checkpoint import CheckpointError, load_model

    try:
        return load_model(path)
    except CheckpointError as e:
        raise CLIError(str(e)) from None


def cmd_eval(args: argparse.Namespace) -> int:
    from detr_core.analysis.evaluate import evaluate_model, heldout_split
    from detr_core.config import ToyDataConfig

    model, ckpt = _load(args.checkpoint)
    data = ckpt.train_config.data if ckpt.train_config is not None else ToyDataConfig()
    if list(data.classes) != ckpt.class_names:
        raise CLIError(
            f"{args.checkpoint.name}: its classes ({', '.join(ckpt.class_names[:5])}...) are not the toy "
            "shapes, so the toy held-out split cannot evaluate it"
        )
    metrics = evaluate_model(model, heldout_split(data, args.images), args.images)
    if args.json:
        print(json.dumps({"AP": round(metrics["AP"], 4), "AP50": round(metrics["AP50"], 4),
                          "AP75": round(metrics["AP75"], 4), "images": int(metrics["images"])}))
    else:
        print(f"{args.checkpoint.name} on {int(metrics['images'])} held-out toy images:")
        print(f"  AP {metrics['AP']:.3f}   AP50 {metrics['AP50']:.3f}   AP75 {metrics['AP75']:.3f}")
        for name in ckpt.class_names:
            print(f"  AP {name:<12s} {metrics['AP/' + name]:.3f}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from detr_core.analysis.capture import run_inference
    from detr_core.data.images import ImageLoadError, read_image

    try:
        loaded = read_image(args.image)  # a large image is downscaled while decoding
    except ImageLoadError as e:
        raise CLIError(str(e)) from None
    model, ckpt = _load(args.checkpoint)
    result = run_inference(model, loaded.array, ckpt.class_names, capture=False)
    kept = result.kept(args.threshold)
    scale = loaded.scale  # boxes in the file's own pixels
    rows = [
        {
            "query": i,
            "class": ckpt.class_names[int(result.labels[i])],
            "score": round(float(result.scores[i]), 4),
            "box_xyxy": [round(float(v) * scale, 1) for v in result.boxes_xyxy[i]],
        }
        for i in kept
    ]
    width, height = loaded.original_size
    if args.json:
        print(json.dumps({"image": str(args.image), "width": width, "height": height,
                          "threshold": args.threshold, "detections": rows}))
    else:
        print(f"{args.image.name} ({width}x{height}): {len(rows)} detections "
              f"with score >= {args.threshold}")
        for r in rows:
            x0, y0, x1, y1 = r["box_xyxy"]
            print(f"  query {r['query']:3d}  {r['class']:<12s} {r['score']:.3f}  "
                  f"box ({x0:.0f}, {y0:.0f}) - ({x1:.0f}, {y1:.0f})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from detr_core.checkpoint import CheckpointError, load_checkpoint
    from detr_core.config import to_dict

    try:
        ckpt = load_checkpoint(args.checkpoint)
    except CheckpointError as e:
        raise CLIError(str(e)) from None
    problem = ckpt.problem()
    if problem:
        raise CLIError(f"{args.checkpoint.name}: {problem}")
    n = sum(v.numel() for v in ckpt.state_dict.values())
    print(json.dumps({"source": ckpt.source, "step": ckpt.step, "classes": ckpt.class_names,
                      "parameters_and_buffers": n, "model_config": to_dict(ckpt.model_config)}, indent=2))
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    try:
        from explorer.app import run_app
    except ImportError as e:
        raise CLIError(f"the explorer window cannot start: {e} (the command line still works: main.py --help)") from None
    return run_app([str(p) for p in args.paths])


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "info": cmd_info, "gui": cmd_gui}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or (argv[0] not in COMMANDS and not argv[0].startswith("-")):
        argv = ["gui", *argv]  # `main.py` and `main.py photo.jpg` open the window
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
