"""DETR Explorer.

    uv run main.py                      open the explorer window
    uv run main.py train [options]      train on toy shapes (or --data coco:PATH | voc:PATH | yolo:PATH), save a checkpoint
    torchrun --nproc_per_node=N main.py train [options]   the same on N processes (GPUs or CPUs)
    uv run main.py train --resume CKPT  continue a run from its last checkpoint
    uv run main.py eval CKPT [--json]   COCO AP on the held-out toy split (or --data's validation split)
    uv run main.py predict CKPT IMAGE   print the detections in an image (or a folder; --coco-results)
    uv run main.py info CKPT            describe a checkpoint (a file, or a Hugging Face model folder)
    uv run main.py export CKPT --format reference|hf OUT   write it for the reference or transformers
    uv run main.py make-dataset OUT     write toy shapes as a COCO, VOC or YOLO folder
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
    train.add_argument("--preset", default="fast", help="fast (default), vanilla, r18 or deformable")
    train.add_argument("--watch", action="store_true",
                       help="the doctor watches the run: no-object collapse, flat or diverging loss, ...")
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
    train.add_argument("--data", default=None, metavar="coco:PATH|voc:PATH|yolo:PATH",
                       help="train on a COCO, VOC or YOLO folder instead of the toy generator")
    train.add_argument("--train-split", default="", metavar="NAME", help="e.g. train2017 (COCO), trainval (VOC), a data.yaml key (YOLO)")
    train.add_argument("--val-split", default="", metavar="NAME", help="e.g. val2017 (COCO), val or test (VOC)")
    train.add_argument("--workers", type=int, default=None, help="DataLoader worker processes (0: none)")
    train.add_argument("--init", type=Path, default=None, metavar="CKPT",
                       help="fine-tune from an official DETR .pth or an explorer checkpoint")
    train.add_argument("--freeze", choices=("none", "backbone", "transformer"), default="none",
                       help="with --init: keep the backbone or the whole transformer fixed")
    train.add_argument("--resume", type=Path, default=None, metavar="CKPT",
                       help="continue the run this checkpoint was saved from (its settings, step, optimizer, "
                            "random states and data position); --steps/--minutes set a new total budget")
    train.add_argument("--save-every", type=_positive_int, default=None, metavar="N",
                       help="also write the checkpoint every N steps (a resumable run survives being killed)")
    train.add_argument("--save-minutes", type=_positive_float, default=None, metavar="M",
                       help="also write the checkpoint every M minutes of training")

    ev = sub.add_parser("eval", help="COCO AP of a checkpoint on the held-out toy split")
    ev.add_argument("checkpoint", type=Path)
    ev.add_argument("--images", type=_positive_int, default=None, help="first N images (toy default 500)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--data", default=None, metavar="coco:PATH|voc:PATH|yolo:PATH", help="evaluate on this dataset")
    ev.add_argument("--split", default="", metavar="NAME", help="the dataset's split (default: validation)")

    pr = sub.add_parser("predict", help="detect objects in an image or a folder of images")
    pr.add_argument("checkpoint", type=Path)
    pr.add_argument("image", type=Path, help="an image or a folder of images")
    pr.add_argument("--threshold", type=_threshold, default=None,
                    help="lowest score shown (default 0.5; 0 for --coco-results, as COCO evaluation wants)")
    pr.add_argument("--coco-results", type=Path, default=None, metavar="OUT.json",
                    help="also write the detections in the COCO results format")
    pr.add_argument("--json", action="store_true", help="print one JSON object")

    info = sub.add_parser("info", help="describe a checkpoint")
    info.add_argument("checkpoint", type=Path)
    exp = sub.add_parser("export", help="write a checkpoint in the official DETR or the Hugging Face format")
    exp.add_argument("checkpoint", type=Path)
    exp.add_argument("--format", choices=("reference", "hf"), required=True,
                     help="reference: one .pth file for facebookresearch/detr; hf: a save_pretrained folder")
    exp.add_argument("out", type=Path)
    for p in (info, exp, ev, pr):
        p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="model_set",
                       help="a model setting the file cannot say, e.g. --set nheads=4 (repeatable)")

    make = sub.add_parser("make-dataset", help="write toy shapes as a COCO, VOC or YOLO dataset folder")
    make.add_argument("out", type=Path)
    make.add_argument("--train", type=_positive_int, default=1000, help="training images")
    make.add_argument("--val", type=_positive_int, default=200, help="validation images")
    make.add_argument("--format", choices=("coco", "voc", "yolo"), default="coco")
    make.add_argument("--seed", type=int, default=0)

    doc = sub.add_parser("doctor", help="check a dataset before training; --overfit checks the pipeline")
    doc.add_argument("--data", default="toy", help="toy (default), coco:PATH, voc:PATH, yolo:PATH or a folder")
    doc.add_argument("--split", default="", help="split to check (default: the training split)")
    doc.add_argument("--checkpoint", type=Path, default=None, help="check for this model (queries, stride, size)")
    doc.add_argument("--preset", default="fast", help="else for this preset's model (default fast)")
    doc.add_argument("--overfit", action="store_true", help="also overfit one batch of the data")
    doc.add_argument("--images", type=_positive_int, default=4, help="images in the overfit batch (default 4)")
    doc.add_argument("--steps", type=_positive_int, default=400, help="most overfit steps (default 400)")
    doc.add_argument("--report", type=Path, default=None, metavar="OUT.md",
                     help="write the findings as Markdown (.html: a page)")
    doc.add_argument("--json", action="store_true", help="print the data findings as one JSON object")
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    """Train and save. Once training has started, SIGINT and SIGTERM stop it and it is saved;
    from then on until the process exits they are held (a late second signal must not turn into
    a traceback while the interpreter shuts down)."""
    import dataclasses

    from detr_core.device import usable_cores
    from detr_core.presets import apply_overrides

    resumed = _resume_checkpoint(args) if args.resume is not None else None
    try:
        if resumed is None:
            model_cfg, train_cfg, init = _base_configs(args)
            overrides = _data_overrides(args) + list(args.set)
        else:  # the run's own settings; only how and how long it runs may change
            model_cfg, train_cfg, init = resumed.model_config, resumed.train_config, None
            overrides = _resume_overrides(args)
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
    dist = _join_process_group(train_cfg)  # None without torchrun
    try:
        return _train(args, model_cfg, train_cfg, init, resumed, dist)
    finally:
        if dist is not None:
            from detr_core.train.distributed import shutdown

            shutdown()


def _train(args: argparse.Namespace, model_cfg, train_cfg, init, resumed, dist) -> int:
    """cmd_train from the configs on: train, save (rank 0 only when distributed)."""
    import torch
    from tqdm import tqdm

    from detr_core.checkpoint import SaveError, check_writable, save_checkpoint
    from detr_core.train.resume import PeriodicSave, ResumeError
    from detr_core.train.trainer import ErrorEvent, EvalEvent, FinishedEvent, StepEvent, Trainer

    main_rank = dist is None or dist.is_main  # the one process that prints and writes
    quiet = args.quiet or not main_rank
    if not quiet:
        from detr_core.precision import precision_note

        print(_cuda_precision_note(train_cfg, dist) or precision_note(train_cfg.bf16), file=sys.stderr)
        if dist is not None:
            print(f"distributed: {dist.world_size} processes ({dist.backend}), a global batch of "
                  f"{train_cfg.batch_size} ({train_cfg.batch_size // dist.world_size} per process)", file=sys.stderr)
    name = "finetune" if init is not None else args.preset
    out = args.out or args.resume or Path("runs") / f"{name}-seed{train_cfg.seed}.pt"
    if main_rank:
        try:
            check_writable(out)  # before the first step, not after the whole run
        except SaveError as e:
            raise CLIError(str(e)) from None
    if resumed is None:
        model_cfg, model, datasets = _training_data(args, model_cfg, train_cfg, init, quiet=not main_rank)
    else:
        model_cfg, model, datasets = _resumed_data(resumed, train_cfg)
    try:
        trainer = Trainer(model_cfg, train_cfg, model=model, datasets=datasets, dist=dist)
        if resumed is not None:
            trainer.restore(resumed)
    except ValueError as e:  # ResumeError too
        raise CLIError(f"{args.resume.name}: {e}" if isinstance(e, ResumeError) else str(e)) from None
    if resumed is not None and trainer.progress() >= 1.0:
        raise CLIError(f"{args.resume.name} has finished its budget ({trainer.step} steps, {trainer.elapsed:.0f} s "
                       "of training); give a larger --steps or --minutes to train it further")

    def save(path: Path, state: dict) -> Path:
        return save_checkpoint(path, trainer.model, trainer.class_names, trainer.optimizer,
                               trainer.history.to_dict(), train_cfg, trainer.step,
                               extra={"category_ids": trainer.dataset.category_ids,
                                      "dataset": train_cfg.dataset.source, "resume": state})

    if not quiet:
        print(f"threads: {trainer.threads.reason}", file=sys.stderr)
    threads_said = trainer.threads.reason
    periodic = PeriodicSave(args.save_every or 0, (args.save_minutes or 0) * 60)
    periodic.start(trainer.step, trainer.elapsed)
    stop_signal: list[int] = []
    _stop_on_signals(stop_signal, trainer.control)  # Ctrl-C, and SIGTERM from schedulers and `timeout`, save the run
    by_steps = bool(train_cfg.steps) and not train_cfg.max_seconds
    total = train_cfg.steps if by_steps else int(train_cfg.max_seconds or 0)
    shown = float(trainer.step) if by_steps else float(int(trainer.elapsed))
    bar = tqdm(total=total, initial=shown, unit="step" if by_steps else "s", disable=quiet, dynamic_ncols=True,
               desc=f"{args.preset}")
    finished = None
    interrupted = False
    try:
        watch = args.watch and main_rank
        if watch:
            from detr_core.doctor.watch import WatchWarning, watched_events
        for event in watched_events(trainer) if watch else trainer.events():
            if watch and isinstance(event, WatchWarning):
                bar.write(f"doctor: {event.text()}")
            elif isinstance(event, StepEvent):
                now = event.step if by_steps else int(event.elapsed)
                bar.update(now - shown)
                shown = now
                if trainer.threads.reason != threads_said and not quiet:
                    threads_said = trainer.threads.reason
                    bar.write(f"threads: {threads_said}")
                if periodic.due(event.step, event.elapsed):  # the same answer in every process
                    state = trainer.resume_state()
                    if main_rank:
                        _save_during_training(out, lambda path, state=state: save(path, state), bar)
                if event.step % 5 == 0 or event.step == 1:
                    ls = event.losses
                    post = {"loss": f"{ls['loss']:.3f}", "ce": f"{ls['loss_ce']:.3f}",
                            "l1": f"{ls['loss_bbox']:.3f}", "giou": f"{ls['loss_giou']:.3f}"}
                    if "dn_loss_bbox" in ls:
                        post["dn_l1"] = f"{ls['dn_loss_bbox']:.3f}"
                    post["img/s"] = f"{event.images_per_sec:.0f}"
                    bar.set_postfix(post, refresh=False)
            elif isinstance(event, EvalEvent) and main_rank:
                bar.write(f"step {event.step}: AP {event.metrics['AP']:.3f}  AP50 {event.metrics['AP50']:.3f}")
            elif isinstance(event, ErrorEvent):  # every process stops; each says what it saw
                bar.write(event.message if main_rank else f"[rank {dist.rank}] {event.message}")
            elif isinstance(event, FinishedEvent):
                finished = event
    except KeyboardInterrupt:
        interrupted = True
    finally:
        _hold_signals_until_exit(stop_signal)  # from here on nothing interrupts the save
        if (stop_signal or interrupted) and main_rank:
            how = "terminated (SIGTERM)" if stop_signal[:1] == [signal.SIGTERM] else "interrupted"
            bar.write(f"{how}: saving what has been trained so far")
        bar.close()
    # every process takes part in gathering the random states, unless an interrupt broke the lockstep
    state = trainer.resume_state(gather=not interrupted)
    if not main_rank:
        return 1 if finished is not None and finished.reason == "error" else 0
    saved, failure = _save_somewhere(out, lambda path: save(path, state))
    # Saved: from here signals are ignored, not held. Python puts its own handlers back to the
    # default while the interpreter shuts down, and a late second signal would then kill the
    # exiting process (exit -2) after a good save; an ignored one stays ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if saved is None:
        raise CLIError(f"{failure}; nothing could be saved")
    what = f"{trainer.step} steps, {trainer.elapsed:.0f} s of training, {torch.get_num_threads()} threads"
    if failure:
        print(f"error: {failure}; saved to {saved} instead ({what})", file=sys.stderr)
        return 1
    print(f"saved {out} ({what})")
    return 1 if finished is not None and finished.reason == "error" else 0


def _stop_on_signals(received: list[int], control=None) -> None:
    """SIGINT and SIGTERM stop training so that it is saved: with ``control``, at the end of the
    step under way (so the checkpoint can resume the run exactly, and all the processes of a
    distributed run stop at the same step); without, at once (as KeyboardInterrupt). The first
    one switches both to being held, so a second one (a signal sent to the whole process group
    arrives twice, through uv and directly) cannot interrupt the save."""

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        _hold_signals_until_exit(received)
        if control is None:
            raise KeyboardInterrupt
        control.stop()

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


def _save_during_training(out: Path, save: Callable[[Path], Path], bar) -> None:
    """A periodic checkpoint; a failure is reported and training goes on (the final save tries
    other places)."""
    from detr_core.checkpoint import SaveError

    try:
        save(out)
    except SaveError as e:
        bar.write(f"warning: {e}; training goes on")


def _resume_checkpoint(args: argparse.Namespace):
    """The checkpoint --resume names, checked to hold a run's training state."""
    from detr_core.checkpoint import CheckpointError, load_checkpoint
    from detr_core.train.resume import ResumeError, resume_info

    clashes = [flag for flag, given in (("--init", args.init is not None), ("--data", bool(args.data)),
                                        ("--seed", args.seed is not None), ("--freeze", args.freeze != "none"),
                                        ("--train-split", bool(args.train_split)),
                                        ("--val-split", bool(args.val_split))) if given]
    if clashes:
        raise CLIError(f"--resume continues a run with its own settings; {', '.join(clashes)} cannot change them")
    try:
        ckpt = load_checkpoint(args.resume)
        resume_info(ckpt.extra, args.resume.name)
    except (CheckpointError, ResumeError) as e:
        raise CLIError(str(e)) from None
    if ckpt.train_config is None:
        raise CLIError(f"{args.resume.name} holds no training settings to resume with")
    return ckpt


def _resume_overrides(args: argparse.Namespace) -> list[str]:
    """--set and --workers for a resumed run: only settings that do not change what it learns."""
    from detr_core.train.resume import CHANGEABLE

    fixed = [pair.partition("=")[0] for pair in args.set if pair.partition("=")[0].split(".")[-1] not in CHANGEABLE]
    if fixed:
        raise ValueError(f"--resume keeps the run's settings; {', '.join(fixed)} cannot change "
                         f"(these can: {', '.join(sorted(CHANGEABLE))})")
    return list(args.set) + ([f"num_workers={args.workers}"] if args.workers is not None else [])


def _resumed_data(ckpt, train_cfg):
    """The model (with the checkpoint's weights) and datasets of a resumed run."""
    from detr_core.checkpoint import CheckpointError
    from detr_core.data.dataset import DatasetError
    from detr_core.data.sources import training_datasets

    try:
        model = ckpt.build_model()
    except CheckpointError as e:
        raise CLIError(str(e)) from None
    datasets = None
    if not train_cfg.dataset.is_toy:
        try:
            datasets = training_datasets(train_cfg, model.config)
        except (DatasetError, ValueError) as e:
            raise CLIError(str(e)) from None
    return model.config, model, datasets


def _join_process_group(train_cfg):
    """Under torchrun: this process's place in the group (NCCL on GPUs, gloo on CPUs); else None."""
    from detr_core.train.distributed import DistributedError, setup

    try:
        return setup(train_cfg.device)
    except DistributedError as e:
        raise CLIError(str(e)) from None


def _cuda_precision_note(train_cfg, dist) -> str | None:
    """The precision line for a CUDA run (None on other devices)."""
    import torch

    from detr_core.device import pick_device
    from detr_core.train.trainer import autocast_dtype

    device = dist.device if dist is not None else pick_device(train_cfg.device)
    if device.type != "cuda":
        return None
    dtype = autocast_dtype(device, train_cfg.bf16)
    if dtype is None:
        return "precision: float32 on CUDA (--set bf16=true for mixed precision)"
    if dtype == torch.float16:
        return "precision: float16 autocast with a gradient scaler on CUDA (this GPU has no bfloat16)"
    return "precision: bfloat16 autocast on CUDA"


def _base_configs(args: argparse.Namespace):
    """The preset's configs, or with --init the checkpoint's model and the fine-tuning recipe."""
    from detr_core.presets import preset
    from detr_core.train.finetune import finetune_train_config

    if args.init is None:
        if args.freeze != "none":
            raise ValueError("--freeze needs --init (a model to start from)")
        return (*preset(args.preset), None)
    from detr_core.checkpoint import CheckpointError, load_checkpoint

    try:
        init = load_checkpoint(args.init)
    except CheckpointError as e:
        raise CLIError(str(e)) from None
    return init.model_config, finetune_train_config(), init


def _data_overrides(args: argparse.Namespace) -> list[str]:
    overrides = []
    if args.data:
        overrides.append(f"dataset.source={args.data}")
    if args.train_split:
        overrides.append(f"train_split={args.train_split}")
    if args.val_split:
        overrides.append(f"val_split={args.val_split}")
    if args.workers is not None:
        overrides.append(f"num_workers={args.workers}")
    if (args.train_split or args.val_split) and not args.data:
        raise ValueError("--train-split and --val-split need --data")
    return overrides


def _training_data(args: argparse.Namespace, model_cfg, train_cfg, init, quiet: bool = False):
    """Open the datasets once, fit the model config to their classes (and the augmentation's
    sizes), and with --init build the model from the checkpoint."""
    import torch

    from detr_core.data.dataset import DatasetError
    from detr_core.data.sources import fit_to_data
    from detr_core.train.finetune import freeze, init_from_checkpoint

    if train_cfg.dataset.is_toy and init is None:
        return model_cfg, None, None
    sizes_set = any(o.split("=")[0].endswith(("image_min_size", "image_max_size")) for o in args.set)
    try:
        model_cfg, datasets = fit_to_data(model_cfg, train_cfg, keep_sizes=sizes_set)
    except (DatasetError, ValueError) as e:
        raise CLIError(str(e)) from None
    for d in (getattr(datasets[0], "dataset", datasets[0]), datasets[1]):
        if getattr(d, "problems", None) and not quiet:
            print(d.summary(), file=sys.stderr)
    model = None
    if init is not None:
        torch.manual_seed(train_cfg.seed)  # the re-initialized parts, reproducibly
        model, notes = init_from_checkpoint(init, model_cfg)
        frozen = freeze(model, args.freeze)
        for note in notes if not quiet else ():
            print(f"{args.init.name}: {note}")
        if frozen and not quiet:
            print(f"{args.freeze} frozen ({frozen:,} parameters)")
    return model_cfg, model, datasets


def _model_settings(pairs: list[str]) -> dict:
    """``["nheads=4", "dilation=true"]`` -> ``{"nheads": 4, "dilation": True}``."""
    settings = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise CLIError(f"--set {pair}: expected NAME=VALUE")
        try:
            value = json.loads(text.lower() if text.lower() in ("true", "false") else text)
        except ValueError:
            value = text
        settings[name.strip()] = value
    return settings


def _open(path: Path, pairs: list[str] | None = None):
    """The checkpoint at ``path`` with the --set settings applied; assumptions are printed."""
    from detr_core.checkpoint import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(path)
        if pairs:
            ckpt = ckpt.with_settings(**_model_settings(pairs))
    except CheckpointError as e:
        raise CLIError(f"{path.name}: {e}" if not str(e).startswith(path.name) else str(e)) from None
    for name, value in ckpt.assumptions.items():
        print(f"note: {path.name} does not say its {name}; assumed {value} (change it with --set {name}=...)",
              file=sys.stderr)
    return ckpt


def _load(path: Path, pairs: list[str] | None = None):
    from detr_core.checkpoint import CheckpointError

    ckpt = _open(path, pairs)
    try:
        return ckpt.build_model(), ckpt
    except CheckpointError as e:
        raise CLIError(f"{path.name}: {e}") from None


def cmd_eval(args: argparse.Namespace) -> int:
    from detr_core.analysis.evaluate import evaluate_model
    from detr_core.config import ToyDataConfig
    from detr_core.data.toy import heldout_split

    if args.data:
        return _eval_dataset(args)
    args.images = args.images or 500
    model, ckpt = _load(args.checkpoint, args.model_set)
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


def _eval_dataset(args: argparse.Namespace) -> int:
    """COCO AP (and VOC mAP@0.5) of a checkpoint on a dataset's validation split."""
    from detr_core.analysis.evaluate import COCO_STATS, evaluate_model
    from detr_core.analysis.label_map import label_map_for
    from detr_core.data.dataset import DatasetError
    from detr_core.data.sources import open_dataset
    from detr_core.data.transforms import eval_transform

    model, ckpt = _load(args.checkpoint, args.model_set)
    try:
        dataset = open_dataset(args.data, args.split, "val")
        label_map = label_map_for(ckpt.class_names, dataset.class_names)
    except (DatasetError, ValueError) as e:
        raise CLIError(f"{args.checkpoint.name} on {args.data}: {e}" if not isinstance(e, DatasetError) else str(e)) \
            from None
    if dataset.problems:
        print(dataset.summary(), file=sys.stderr)
    cfg = model.config
    dataset = dataset.with_transform(eval_transform(cfg.image_min_size, cfg.image_max_size))
    try:
        metrics = evaluate_model(model, dataset, args.images, label_map=label_map)
    except DatasetError as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps({k: (round(v, 4) if k != "images" else int(v)) for k, v in metrics.items()}))
        return 0
    print(f"{args.checkpoint.name} on {int(metrics['images'])} images of {dataset.name}:")
    print("  " + "   ".join(f"{k} {metrics[k]:.3f}" for k in COCO_STATS))
    if "mAP50_voc" in metrics:
        print(f"  VOC mAP@0.5 {metrics['mAP50_voc']:.3f}")
    for name in dataset.class_names:
        print(f"  AP {name:<16s} {metrics['AP/' + name]:.3f}")
    return 0


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def _predict_many(args: argparse.Namespace) -> int:
    """Every image of a folder (or one image): detections printed, and with --coco-results
    written in the COCO results format (image_id: the file name's number, else its position)."""
    from detr_core.analysis.capture import run_inference
    from detr_core.analysis.label_map import checkpoint_category_ids
    from detr_core.checkpoint import write_atomically
    from detr_core.data.images import ImageLoadError, load_image

    if args.image.is_dir():
        files = sorted(p for p in args.image.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise CLIError(f"{args.image}: no images in this folder ({', '.join(IMAGE_SUFFIXES)})")
    elif args.image.exists():
        files = [args.image]
    else:
        raise CLIError(f"{args.image}: no such file or folder")
    model, ckpt = _load(args.checkpoint, args.model_set)
    category_ids = checkpoint_category_ids(ckpt.class_names, ckpt.source, ckpt.extra)
    threshold = args.threshold if args.threshold is not None else (0.0 if args.coco_results else 0.5)
    results, failed = [], 0
    for position, path in enumerate(files, start=1):
        try:
            image = load_image(path)
        except ImageLoadError as e:
            print(f"skipped {e}", file=sys.stderr)
            failed += 1
            continue
        r = run_inference(model, image, ckpt.class_names, capture=False)
        image_id = int(path.stem) if path.stem.isdigit() else position
        kept = r.kept(threshold)
        for i in kept:
            x0, y0, x1, y1 = (float(v) for v in r.boxes_xyxy[i])
            results.append({"image_id": image_id, "category_id": category_ids[int(r.labels[i])],
                            "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                            "score": round(float(r.scores[i]), 5)})
        if not args.json:
            print(f"{path.name} ({image.shape[1]}x{image.shape[0]}): {len(kept)} detections with score >= {threshold}")
    if args.json:
        print(json.dumps({"threshold": threshold, "images": len(files) - failed, "detections": results}))
    if args.coco_results:
        write_atomically(args.coco_results, lambda f: f.write(json.dumps(results).encode()))
        print(f"wrote {len(results)} detections of {len(files) - failed} images to {args.coco_results}",
              file=sys.stderr if args.json else sys.stdout)
    if failed:
        print(f"{failed} of {len(files)} images could not be read", file=sys.stderr)
    return 1 if failed == len(files) else 0


def cmd_predict(args: argparse.Namespace) -> int:
    from detr_core.analysis.capture import run_inference
    from detr_core.data.images import ImageLoadError, read_image

    if args.image.is_dir() or args.coco_results:
        return _predict_many(args)
    args.threshold = 0.5 if args.threshold is None else args.threshold
    try:
        loaded = read_image(args.image)  # a large image is downscaled while decoding
    except ImageLoadError as e:
        raise CLIError(str(e)) from None
    model, ckpt = _load(args.checkpoint, args.model_set)
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
    from detr_core.config import to_dict

    ckpt = _open(args.checkpoint, args.model_set)
    problem = ckpt.problem()
    if problem:
        raise CLIError(f"{args.checkpoint.name}: {problem}")
    n = sum(v.numel() for v in ckpt.state_dict.values())
    print(json.dumps({"source": ckpt.source, "step": ckpt.step, "classes": ckpt.class_names,
                      "assumed": ckpt.assumptions,
                      "parameters_and_buffers": n, "model_config": to_dict(ckpt.model_config)}, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from detr_core.checkpoint import SaveError
    from detr_core.export import export

    ckpt = _open(args.checkpoint, args.model_set)
    try:
        out = export(ckpt, args.format, args.out)
    except (ValueError, SaveError) as e:
        raise CLIError(f"{args.checkpoint.name}: {e}") from None
    print(f"wrote {out}")
    return 0


def cmd_make_dataset(args: argparse.Namespace) -> int:
    from detr_core.data.export import write_toy_dataset

    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise CLIError(f"{args.out}: already exists and is not an empty folder; choose a new one")
    try:
        root = write_toy_dataset(args.out, args.train, args.val, args.format, seed=args.seed)
    except OSError as e:
        raise CLIError(f"{args.out}: cannot write ({e.strerror or e})") from None
    print(f"wrote {args.train} training and {args.val} validation toy images as {args.format.upper()} to {root}")
    print(f"train on it: uv run main.py train --data {args.format}:{args.out}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from detr_core.data.dataset import DatasetError
    from detr_core.doctor.data_checks import check_dataset, model_figures
    from detr_core.doctor.overfit import open_for_overfit, overfit_one_batch
    from detr_core.doctor.report import markdown_report, write_report
    from detr_core.presets import preset

    try:
        model_cfg, train_cfg = preset(args.preset)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.checkpoint is not None:
        model_cfg = _load(args.checkpoint)[0].config
    figures = model_figures(model_cfg)
    if args.checkpoint is None:
        figures.pop("num_classes")  # a new model takes the dataset's classes
    try:
        report = check_dataset(args.data, args.split, **figures)
    except DatasetError as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        print(report.text())
    overfit = None
    if args.overfit:
        try:
            data, model_cfg = open_for_overfit(args.data, model_cfg, args.split)
        except DatasetError as e:
            raise CLIError(str(e)) from None
        images = min(args.images, len(data))
        print(f"overfitting {images} images (at most {args.steps} steps) ...", flush=True)
        overfit = overfit_one_batch(model_cfg, train_cfg, data, num_images=images, max_steps=args.steps)
        print(overfit.message)
    if args.report is not None:
        try:
            print(f"report written to {write_report(args.report, markdown_report(report, overfit))}")
        except OSError as e:
            raise CLIError(f"{args.report}: cannot write ({e.strerror or e})") from None
    return 1 if overfit is not None and not overfit.success else 0


def cmd_gui(args: argparse.Namespace) -> int:
    try:
        from explorer.app import run_app
    except ImportError as e:
        raise CLIError(f"the explorer window cannot start: {e} (the command line still works: main.py --help)") from None
    return run_app([str(p) for p in args.paths])


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "info": cmd_info, "gui": cmd_gui,
            "make-dataset": cmd_make_dataset, "export": cmd_export, "doctor": cmd_doctor}


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
