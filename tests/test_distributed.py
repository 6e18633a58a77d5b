"""Scale-out (issue 13): two processes launched by torchrun on CPUs (gloo) train the run one
process trains with the same global batch; a one-process checkpoint resumes on two processes;
every logged loss part, the dense head's included, is the one of one process (issue 26).

One torchrun launch (two worker processes, one thread each) does all, to pay torch's import
once: part A trains with the Trainer API and each rank writes its weights; part C trains one step
with the dense head; part B runs ``main.py train --resume`` through ``main.main``. The
one-process references run in this process.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detr_core.checkpoint import load_checkpoint, save_checkpoint
from detr_core.config import DETRConfig, LossConfig, ToyDataConfig, TrainConfig, to_dict
from detr_core.presets import preset
from detr_core.train.trainer import StepEvent, Trainer

ROOT = Path(__file__).resolve().parents[1]
STEPS = 6
MIDDLE = 3  # the one-process run is also saved here, for part B

pytestmark = pytest.mark.usefixtures("one_thread")

_WORKER = r'''
import json, sys
import torch
sys.path.insert(0, sys.argv[1])
from detr_core.analysis.evaluate import evaluate_model
from detr_core.config import DETRConfig, TrainConfig, config_from_dict
from detr_core.train.distributed import setup
from detr_core.train.trainer import StepEvent, Trainer

out = sys.argv[2]
configs = json.load(open(f"{out}/configs.json"))
torch.set_num_threads(1)
d = setup("cpu")
# part A: a run from scratch with the Trainer API
trainer = Trainer(config_from_dict(DETRConfig, configs["model"]), config_from_dict(TrainConfig, configs["train"]),
                  dist=d)
losses = [e.losses for e in trainer.events() if isinstance(e, StepEvent)]
sharded = trainer.evaluate()  # shared out over the two processes
whole = evaluate_model(trainer.model, trainer.heldout, trainer.config.eval_images)  # this process alone
torch.save({"model": trainer.model.state_dict(), "losses": losses, "sharded": sharded, "whole": whole,
            "rank": d.rank, "world": d.world_size, "backend": d.backend}, f"{out}/rank{d.rank}.pt")
# part C: one step with the dense head (and the fast preset's other levers)
step = Trainer(config_from_dict(DETRConfig, configs["step_model"]),
               config_from_dict(TrainConfig, configs["step_train"]), dist=d)
step_losses = [e.losses for e in step.events() if isinstance(e, StepEvent)]
if d.is_main:
    json.dump(step_losses, open(f"{out}/step.json", "w"))
# part B: the command line resumes a one-process checkpoint on these two processes (and leaves
# the group at its end: the models of parts A and C, which hold it too, go first)
del trainer, step
import main
sys.exit(main.main(["train", "--resume", f"{out}/middle.pt", "--out", f"{out}/two.pt", "--quiet",
                    "--threads", "1"]))
'''


def configs() -> tuple[DETRConfig, TrainConfig]:
    """A small model whose BatchNorm is frozen (a ResNet's, as in the reference), so one and two
    processes compute the same function; fp32, no dropout, no denoising noise."""
    model = DETRConfig(backbone="resnet", resnet_block="basic", resnet_depths=(1, 1, 1, 1),
                       resnet_widths=(8, 8, 16, 16, 32), pretrained_backbone=False, d_model=32, nheads=4,
                       num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=64, num_queries=8,
                       num_classes=3, dropout=0.0, classifier="focal", image_min_size=64, image_max_size=64)
    train = TrainConfig(lr=1e-3, lr_backbone=1e-3, batch_size=4, clip_max_norm=0.1, steps=STEPS, schedule="step",
                        lr_drop=0.5, bf16=False, threads=1, eval_images=10, data=ToyDataConfig(image_size=64),
                        loss=LossConfig())
    return model, train


def fast_levers_configs() -> tuple[DETRConfig, TrainConfig]:
    """The fast preset's levers (anchor queries, Group DETR, the dense head, query selection, the
    preset's loss weights) on the frozen-BatchNorm model of :func:`configs`, one step."""
    model, train = configs()
    fast_model, fast_train = preset("fast")
    levers = ("query_type", "look_forward_twice", "num_query_groups", "dn_groups", "classifier", "dense_aux",
              "query_select")
    model = dataclasses.replace(model, **{name: getattr(fast_model, name) for name in levers})
    assert model.dense_aux
    return model, dataclasses.replace(train, steps=1, loss=fast_train.loss)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The one-process run (saved at step MIDDLE too), and the two-process launch's outputs."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("distributed")
    model_cfg, train_cfg = configs()
    one = Trainer(model_cfg, train_cfg)
    losses = []
    for event in one.events():
        if isinstance(event, StepEvent):
            losses.append(event.losses)
            if event.step == MIDDLE:
                save_checkpoint(out / "middle.pt", one.model, one.class_names, one.optimizer, one.history.to_dict(),
                                train_cfg, one.step, extra={"resume": one.resume_state()})
    step_model, step_train = fast_levers_configs()
    step = [e.losses for e in Trainer(step_model, step_train).events() if isinstance(e, StepEvent)]
    (out / "configs.json").write_text(json.dumps({"model": to_dict(model_cfg), "train": to_dict(train_cfg),
                                                  "step_model": to_dict(step_model), "step_train": to_dict(step_train)}))
    (out / "worker.py").write_text(_WORKER)
    launch = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(out / "worker.py"), str(ROOT), str(out)],
        capture_output=True, text=True, timeout=600, cwd=out, check=False,
    )
    assert launch.returncode == 0, launch.stdout[-3000:] + launch.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    return {"one": one, "losses": losses, "ranks": ranks, "out": out, "stdout": launch.stdout,
            "step": (step, json.loads((out / "step.json").read_text()))}


def test_two_processes_train_as_one(runs):
    r0, r1 = runs["ranks"]
    assert (r0["rank"], r1["rank"], r0["world"], r0["backend"]) == (0, 1, 2, "gloo")
    # both ranks end with identical weights (DDP's all-reduced gradients, one optimizer step each)
    assert all(torch.equal(r0["model"][k], r1["model"][k]) for k in r0["model"])
    # the loss trajectory is the one-process run's with the same global batch: each rank saw half
    # of every batch, the box count was all-reduced before normalizing, and the logged losses are
    # the mean over the ranks
    one_losses = runs["losses"]
    assert len(r0["losses"]) == len(one_losses) == STEPS
    for two, one in zip(r0["losses"], one_losses):
        for name in ("loss", "loss_ce", "loss_bbox", "loss_giou"):
            assert two[name] == pytest.approx(one[name], rel=1e-4, abs=1e-6), name
        assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-3)  # clipped on the same gradient
    one_state = runs["one"].model.state_dict()
    worst = max((r0["model"][k].float() - one_state[k].float()).abs().max().item() for k in one_state)
    assert worst < 1e-4, worst


def test_sharded_evaluation_equals_one_process(runs):
    r0, r1 = runs["ranks"]
    assert r0["sharded"]["images"] == 10
    assert r0["sharded"] == r0["whole"]  # the same pycocotools result from two halves
    assert r1["sharded"] == r0["sharded"]  # every rank gets rank 0's numbers


def test_one_process_checkpoint_resumes_on_two(runs):
    assert runs["stdout"].count("saved ") == 1  # one process reports (and writes)
    ckpt = load_checkpoint(runs["out"] / "two.pt")  # rank 0 wrote it, in the usual format
    assert ckpt.step == STEPS
    ckpt.build_model()  # opens like any other checkpoint
    state = ckpt.extra["resume"]
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["position"] == STEPS * 4
    history = ckpt.history["steps"]
    assert history["step"] == list(range(1, STEPS + 1))  # the loss history of the whole run
    for step, one in enumerate(runs["losses"][MIDDLE:], start=MIDDLE):
        assert history["loss"][step] == pytest.approx(one["loss"], rel=1e-4)
    one_state = runs["one"].model.state_dict()
    worst = max((ckpt.state_dict[k].float() - one_state[k].float()).abs().max().item() for k in one_state)
    assert worst < 1e-4, worst


def test_every_loss_part_of_two_processes_is_one_process(runs):
    """Step 1 (the same weights, the same global batch): every logged part of the loss, the dense
    head's and class_error included, is the one of one process, so both optimise the same objective."""
    (one,), (two,) = runs["step"]
    assert set(two) == set(one) and {"dense_loss_ce", "dense_loss_bbox", "dense_loss_giou"} <= set(one)
    differ = {name: (two[name], one[name]) for name in one
              if two[name] != pytest.approx(one[name], rel=1e-4, abs=1e-6)}
    assert not differ, differ
