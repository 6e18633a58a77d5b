"""Resumable runs (issue 13): a run stopped by SIGTERM and resumed with ``main.py train --resume``
ends with the weights of the uninterrupted run, bit for bit (one process, CPU); a folder
dataset's stream continues across an epoch boundary; bad resumes are refused in one line."""

import os
import signal
import threading
import time

import pytest
import torch

from detr_core.checkpoint import load_checkpoint, save_checkpoint
from detr_core.train.trainer import StepEvent, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["--quiet", "--threads", "1", "--set", "d_model=32", "--set", "dim_feedforward=64",
         "--set", "num_decoder_layers=2", "--set", "tiny_width=8", "--set", "batch_size=2"]
STEPS = 24


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_then_resume_equals_the_uninterrupted_run(tmp_path, run_cli):
    whole = run_cli("train", "--steps", STEPS, "--out", tmp_path / "whole.pt", *SMALL)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "run.pt"

    def terminate_after_first_save():  # SIGTERM once the first periodic checkpoint is on disk
        deadline = time.monotonic() + 120
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate_after_first_save)
    killer.start()
    try:
        stopped = run_cli("train", "--steps", STEPS, "--out", out, "--save-every", 3, *SMALL)
    finally:
        killer.join()
    assert stopped.returncode == 0, stopped.stderr
    assert "terminated (SIGTERM): saving what has been trained so far" in stopped.stdout
    at = load_checkpoint(out).step
    assert 3 <= at < STEPS  # stopped part-way, at the end of a step
    resumed = run_cli("train", "--resume", out, "--threads", 1, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert f"saved {out}" in resumed.stdout  # by default back into the file it resumed from
    a, b = load_checkpoint(tmp_path / "whole.pt"), load_checkpoint(out)
    assert b.step == STEPS
    assert _same_weights(a.state_dict, b.state_dict)  # bit for bit
    for k, v in a.optimizer_state["state"].items():
        assert all(torch.equal(v[n], b.optimizer_state["state"][k][n]) for n in v)
    assert a.history["steps"]["loss"] == b.history["steps"]["loss"]  # the whole loss history, once


def test_folder_dataset_resumes_across_an_epoch(tmp_path, tiny_config):
    """The data position of a COCO folder: 6 images, batches of 4, stopped at step 2 (position
    8, in the second epoch's shuffle) and resumed in a new Trainer."""
    import dataclasses

    from detr_core.config import DatasetConfig, TrainConfig
    from detr_core.data.export import write_toy_dataset
    from detr_core.data.sources import fit_to_data

    root = write_toy_dataset(tmp_path / "coco", 6, 2, "coco", seed=1)
    train_cfg = TrainConfig(batch_size=4, steps=4, bf16=False, threads=1, eval_images=2,
                            dataset=DatasetConfig(source=f"coco:{root}", scales=(64,), max_size=96,
                                                  crop_resize=(64,), crop_min=48, crop_max=64, augment="reference"))
    model_cfg = dataclasses.replace(tiny_config, dropout=0.1)  # random: the RNG states must come back too

    def trainer():
        cfg, datasets = fit_to_data(model_cfg, train_cfg)
        return Trainer(cfg, train_cfg, datasets=datasets)

    whole = trainer()
    for _ in whole.events():
        pass
    first = trainer()
    for event in first.events():
        if isinstance(event, StepEvent) and event.step == 2:
            save_checkpoint(tmp_path / "mid.pt", first.model, first.class_names, first.optimizer,
                            first.history.to_dict(), train_cfg, first.step, extra={"resume": first.resume_state()})
            break
    second = trainer()
    second.restore(load_checkpoint(tmp_path / "mid.pt"))
    assert second.step == 2
    for _ in second.events():
        pass
    assert second.step == 4
    assert _same_weights(whole.model.state_dict(), second.model.state_dict())
    assert second.history.steps["loss"] == whole.history.steps["loss"]


def test_bad_resumes_are_refused_in_one_line(tmp_path, run_cli, tiny_config):
    from detr_core.model.detr import DETR

    plain = tmp_path / "plain.pt"  # weights without a run's state (as the window's saves are)
    save_checkpoint(plain, DETR(tiny_config), ["rectangle", "ellipse", "triangle"])
    done = tmp_path / "done.pt"
    assert run_cli("train", "--steps", 2, "--out", done, *SMALL).returncode == 0
    cases = [
        (("--resume", plain), "plain.pt holds no training state to resume"),
        (("--resume", tmp_path / "missing.pt"), "missing.pt: no such file"),
        (("--resume", done, "--set", "lr=0.1"), "lr cannot change"),
        (("--resume", done, "--data", "coco:/nowhere"), "--data cannot change them"),
        (("--resume", done), "has finished its budget (2 steps"),
    ]
    for args, message in cases:
        r = run_cli("train", *args, "--quiet")
        lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
        assert message in lines[0], lines[0]
    # a finished run goes on with a larger budget (its schedule is then the new budget's)
    more = run_cli("train", "--resume", done, "--steps", 3, "--quiet", "--threads", 1)
    assert more.returncode == 0, more.stderr
    assert load_checkpoint(done).step == 3
