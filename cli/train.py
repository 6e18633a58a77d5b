"""``main.py train``: train on toy shapes or a dataset folder, from a preset, a checkpoint to
fine-tune (``--init``) or a run to continue (``--resume``), and save a checkpoint. The run's policy
(periodic and final save, stop on a signal, resume) is :class:`detr_core.train.session.TrainingSession`;
this module turns the arguments into configs and the session's events into a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import CLIError, positive_float, positive_int


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="train on toy shapes and save a checkpoint")
    train.add_argument("--preset", default="fast", help="fast (default), vanilla, r18, deformable, dino or rt_detr")
    train.add_argument("--watch", action="store_true",
                       help="the doctor watches the run: no-object collapse, flat or diverging loss, ...")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=positive_int, help="number of optimizer steps")
    budget.add_argument("--minutes", type=positive_float, help="minutes of training")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    train.add_argument("--out", type=Path, default=None, help="checkpoint path (default runs/<preset>-seed<S>.pt)")
    train.add_argument("--eval-every", type=positive_int, default=None, help="evaluate every N steps")
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
    train.add_argument("--save-every", type=positive_int, default=None, metavar="N",
                       help="also write the checkpoint every N steps (a resumable run survives being killed)")
    train.add_argument("--save-minutes", type=positive_float, default=None, metavar="M",
                       help="also write the checkpoint every M minutes of training")


def run(args: argparse.Namespace) -> int:
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
    if dist is None:
        return _train(args, model_cfg, train_cfg, init, resumed, dist)
    from detr_core.train.distributed import shutdown

    try:
        code = _train(args, model_cfg, train_cfg, init, resumed, dist)
    except BaseException:
        shutdown(wait=False)
        raise
    shutdown()
    return code


def session_for(args: argparse.Namespace, model_cfg, train_cfg, init, resumed, dist):
    """The run's TrainingSession: its data opened, its model (fine-tuned or resumed) built, its
    checkpoint path checked writable; and that path."""
    from detr_core.checkpoint import SaveError, check_writable
    from detr_core.train.resume import PeriodicSave, ResumeError
    from detr_core.train.session import TrainingSession

    main_rank = dist is None or dist.is_main
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
        session = TrainingSession(model_cfg, train_cfg, model=model, datasets=datasets, dist=dist, resumed=resumed,
                                  out=out, periodic=PeriodicSave(args.save_every or 0, (args.save_minutes or 0) * 60))
    except ValueError as e:  # ResumeError too
        raise CLIError(f"{args.resume.name}: {e}" if isinstance(e, ResumeError) else str(e)) from None
    if resumed is not None and session.finished_budget:
        t = session.trainer
        raise CLIError(f"{args.resume.name} has finished its budget ({t.step} steps, {t.elapsed:.0f} s "
                       "of training); give a larger --steps or --minutes to train it further")
    return session, out


def _train(args: argparse.Namespace, model_cfg, train_cfg, init, resumed, dist) -> int:
    """run from the configs on: train, save (rank 0 only when distributed)."""
    import signal

    import torch
    from tqdm import tqdm

    from detr_core.train.session import SaveWarning, ThreadsEvent
    from detr_core.train.trainer import ErrorEvent, EvalEvent, FinishedEvent, StepEvent

    main_rank = dist is None or dist.is_main  # the one process that prints and writes
    quiet = args.quiet or not main_rank
    if not quiet:
        from detr_core.precision import precision_note

        print(_cuda_precision_note(train_cfg, dist) or precision_note(train_cfg.bf16), file=sys.stderr)
        if dist is not None:
            print(f"distributed: {dist.world_size} processes ({dist.backend}), a global batch of "
                  f"{train_cfg.batch_size} ({train_cfg.batch_size // dist.world_size} per process)", file=sys.stderr)
    session, out = session_for(args, model_cfg, train_cfg, init, resumed, dist)
    trainer = session.trainer
    threads_said = session.threads_changed().reason  # type: ignore[union-attr]
    if not quiet:
        print(f"threads: {threads_said}", file=sys.stderr)
    session.stop_on_signals()  # Ctrl-C, and SIGTERM from schedulers and `timeout`, save the run
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
            from detr_core.doctor.watch import WatchWarning
        for event in session.events(watch=watch):
            if watch and isinstance(event, WatchWarning):
                bar.write(f"doctor: {event.text()}")
            elif isinstance(event, ThreadsEvent):
                if event.reason != threads_said and not quiet:
                    threads_said = event.reason
                    bar.write(f"threads: {threads_said}")
            elif isinstance(event, SaveWarning):
                bar.write(event.message)
            elif isinstance(event, StepEvent):
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
            elif isinstance(event, EvalEvent) and main_rank:
                bar.write(f"step {event.step}: AP {event.metrics['AP']:.3f}  AP50 {event.metrics['AP50']:.3f}")
            elif isinstance(event, ErrorEvent):  # every process stops; each says what it saw
                bar.write(event.message if main_rank else f"[rank {dist.rank}] {event.message}")
            elif isinstance(event, FinishedEvent):
                finished = event
    except KeyboardInterrupt:
        interrupted = True
    finally:
        session.hold_signals()  # from here on nothing interrupts the save
        if (session.signals or interrupted) and main_rank:
            how = "terminated (SIGTERM)" if session.signals[:1] == [signal.SIGTERM] else "interrupted"
            bar.write(f"{how}: saving what has been trained so far")
        bar.close()
    # every process takes part in gathering the random states, unless an interrupt broke the lockstep
    outcome = session.finish(gather=not interrupted)
    if outcome is None:  # not the main process
        return 1 if finished is not None and finished.reason == "error" else 0
    if outcome.path is None:
        raise CLIError(f"{outcome.failure}; nothing could be saved")
    what = f"{trainer.step} steps, {trainer.elapsed:.0f} s of training, {torch.get_num_threads()} threads"
    if outcome.failure:
        print(f"error: {outcome.failure}; saved to {outcome.path} instead ({what})", file=sys.stderr)
        return 1
    print(f"saved {out} ({what})")
    return 1 if finished is not None and finished.reason == "error" else 0


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
    from detr_core.data.dataset import DatasetError
    from detr_core.data.sources import describe_source, fit_to_data
    from detr_core.train.finetune import freeze, init_from_checkpoint

    if train_cfg.dataset.is_toy and init is None:
        return model_cfg, None, None
    sizes_set = any(o.split("=")[0].endswith(("image_min_size", "image_max_size")) for o in args.set)
    try:
        model_cfg, datasets = fit_to_data(model_cfg, train_cfg, keep_sizes=sizes_set)
    except (DatasetError, ValueError) as e:
        raise CLIError(str(e)) from None
    layout = describe_source(train_cfg.dataset.source)
    if layout and not quiet:
        print(f"layout: {layout}", file=sys.stderr)
    for d in (getattr(datasets[0], "dataset", datasets[0]), datasets[1]):
        if getattr(d, "problems", None) and not quiet:
            print(d.summary(), file=sys.stderr)
    model = None
    if init is not None:
        model, notes = init_from_checkpoint(init, model_cfg, seed=train_cfg.seed)  # the fresh parts, reproducibly
        frozen = freeze(model, args.freeze)
        for note in notes if not quiet else ():
            print(f"{args.init.name}: {note}")
        if frozen and not quiet:
            print(f"{args.freeze} frozen ({frozen:,} parameters)")
    return model_cfg, model, datasets
