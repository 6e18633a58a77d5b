"""Matching instability, counted as DN-DETR does (Li et al., 2022, section 3): between two
consecutive training steps, how many queries of a fixed batch are matched to a different
ground-truth object (or to one where they had none, or to none where they had one).

    before = query_targets(model, matcher, images, targets)   # per image [Q]: object index, -1 = none
    ... one training step ...
    changes = matching_changes(before, query_targets(model, matcher, images, targets))

    comparison = denoising_instability_experiment(model_config, train_config, steps=40)
    comparison.off.changes, comparison.on.changes     # [steps] per step, without and with denoising

The paper's claim: denoising queries give the decoder an easy, stable target (reconstruct a
known box), which steadies what the matching queries learn, so fewer of them switch objects from
one step to the next. Here both runs start from the same weights and see the same batches; only
the denoising groups differ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from detr_core.analysis.matching import _eval_outputs
from detr_core.cancel import Progress, report
from detr_core.config import DETRConfig, TrainConfig
from detr_core.data.dataset import DetectionDataset
from detr_core.data.toy import ToyShapes
from detr_core.model.matcher import HungarianMatcher
from detr_core.model.nested_tensor import NestedTensor
from detr_core.model.registry import build_model


def query_targets(model: nn.Module, matcher: HungarianMatcher, images: Tensor | NestedTensor,
                  targets: Sequence[dict[str, Tensor]]) -> list[np.ndarray]:
    """Per image, [Q] int64: the ground-truth object each query is matched to by the Hungarian
    matcher on the model's eval-mode predictions, -1 for a query matched to nothing."""
    out = _eval_outputs(model, images)
    plain = [{"labels": t["labels"].cpu(), "boxes": t["boxes"].cpu().float()} for t in targets]
    q = out["pred_logits"].shape[1]
    result = []
    for rows, cols in matcher(out, plain):
        per_query = np.full(q, -1, dtype=np.int64)
        per_query[rows.cpu().numpy()] = cols.cpu().numpy()
        result.append(per_query)
    return result


def matching_changes(previous: Sequence[np.ndarray], current: Sequence[np.ndarray]) -> int:
    """How many queries' matched object differs between two assignments of the same batch (each
    per image [Q] from :func:`query_targets`)."""
    if len(previous) != len(current) or any(a.shape != b.shape for a, b in zip(previous, current)):
        raise ValueError("the two assignments are not of the same batch and queries")
    return int(sum(int((a != b).sum()) for a, b in zip(previous, current)))


@dataclass
class InstabilityCurve:
    """One run's matching changes per step on a fixed batch."""

    dn_groups: int
    steps: np.ndarray  # [N] int64, the step after which each count was taken (1 ... N)
    changes: np.ndarray  # [N] int64, queries whose matched object changed during that step
    queries: int  # queries x images of the fixed batch: the most that can change in one step
    objects: int  # ground-truth objects in the fixed batch

    @property
    def mean_changes(self) -> float:
        return float(self.changes.mean()) if self.changes.size else float("nan")

    @property
    def total_changes(self) -> int:
        return int(self.changes.sum())


@dataclass
class InstabilityComparison:
    off: InstabilityCurve  # dn_groups = 0
    on: InstabilityCurve  # dn_groups > 0
    batch_size: int
    probe_images: int


def instability_run(model: nn.Module, model_config: DETRConfig, train_config: TrainConfig, dataset: DetectionDataset,
                    probe: Sequence[int], steps: int, progress: Progress | None = None,
                    done_before: int = 0, total: int | None = None) -> InstabilityCurve:
    """Train ``model`` for ``steps`` steps on the dataset's batches 0, 1, ... (as a run does) and
    count, after each, the queries of the fixed batch ``probe`` whose matched object changed."""
    from detr_core.train.trainer import Trainer  # the trainer pulls in evaluation: imported on use

    config = dataclasses.replace(train_config, threads=torch.get_num_threads(), eval_every=0, steps=steps,
                                 max_seconds=None)
    trainer = Trainer(model_config, config, datasets=(dataset, dataset), model=model)
    images, targets = dataset.batch(list(probe))
    matcher = trainer.criterion.matcher
    previous = query_targets(trainer.model, matcher, images, targets)
    changes = []
    total = total if total is not None else steps
    bs = config.batch_size
    for step in range(steps):
        report(progress, done_before + step, total)
        batch_images, batch_targets = dataset.batch(list(range(step * bs, (step + 1) * bs)))
        trainer.train_step(batch_images, batch_targets)
        current = query_targets(trainer.model, matcher, images, targets)
        changes.append(matching_changes(previous, current))
        previous = current
    report(progress, done_before + steps, total)
    return InstabilityCurve(
        dn_groups=model_config.dn_groups, steps=np.arange(1, steps + 1, dtype=np.int64),
        changes=np.asarray(changes, dtype=np.int64), queries=sum(len(p) for p in previous),
        objects=sum(len(t["labels"]) for t in targets))


def denoising_instability_experiment(model_config: DETRConfig, train_config: TrainConfig, steps: int = 40,
                                     probe_images: int = 8, dn_groups: int = 2, batch_size: int | None = None,
                                     progress: Progress | None = None) -> InstabilityComparison:
    """Two short runs from the same initial weights on the same batches of the toy training
    stream, without and with ``dn_groups`` denoising groups, each counting its matching changes
    per step on the stream's first ``probe_images`` images. ``model_config`` needs anchor queries
    (denoising does); its own ``dn_groups`` is ignored."""
    if model_config.query_type != "anchor":
        raise ValueError("denoising needs anchor-box queries (query_type='anchor'), as the fast preset has")
    if dn_groups < 1:
        raise ValueError("dn_groups must be at least 1 for the run with denoising")
    train = dataclasses.replace(train_config, batch_size=batch_size or train_config.batch_size)
    dataset = ToyShapes(train.data, seed=train.seed, split="train")
    with_dn = dataclasses.replace(model_config, dn_groups=dn_groups)
    without = dataclasses.replace(model_config, dn_groups=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed)
        model_on = build_model(with_dn)
        model_off = build_model(without)
        # the same starting weights: the denoising label embedding is the only extra module
        model_off.load_state_dict({k: v for k, v in model_on.state_dict().items() if k in model_off.state_dict()})
        probe = list(range(probe_images))
        off = instability_run(model_off, without, train, dataset, probe, steps, progress, 0, 2 * steps)
        on = instability_run(model_on, with_dn, train, dataset, probe, steps, progress, steps, 2 * steps)
    return InstabilityComparison(off=off, on=on, batch_size=train.batch_size, probe_images=probe_images)


__all__ = ["InstabilityComparison", "InstabilityCurve", "denoising_instability_experiment", "instability_run",
           "matching_changes", "query_targets"]
