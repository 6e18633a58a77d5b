"""Training on several processes: ``torchrun`` starts them, this module joins them up.

    torchrun --nproc_per_node=N main.py train ...         one machine, N processes
    torchrun --nnodes=M --nproc_per_node=N --rdzv-backend c10d --rdzv-endpoint HOST:PORT main.py train ...

torchrun tells each process its place in the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`setup` reads it and opens the process
group: NCCL with one GPU per process (``cuda:LOCAL_RANK``) when CUDA is present, gloo on CPUs.
Without torchrun it returns None and training runs in one process, exactly as before.

How the work is split, so that N processes train the run one process would (the same global
batch, the same schedule, the same clipping):

- **Data.** ``batch_size`` is the global batch. The training stream is a pure function of (seed,
  position): the toy generator draws image ``p`` from (seed, p); a COCO or VOC folder shows
  ``perm_e[p mod n]`` of an epoch permutation seeded by (seed, e), the shuffle a
  ``DistributedSampler`` would make with ``set_epoch(e)`` (see :mod:`detr_core.data.stream`).
  Process ``r`` of ``W`` takes the ``r``-th slice of each global batch (:class:`RankShard`):
  disjoint across processes, together exactly the batch one process would take, and a run
  resumed on a different number of processes continues the same stream.
- **Loss.** The number of target boxes is summed over the processes and divided by ``W`` before
  the losses are normalized (:meth:`Distributed.mean_count`, as the reference does); so are the
  dense head's assigned tokens and class_error's matched queries. With DDP's gradient mean, the
  gradient is the one of the whole batch in one process. Gradient clipping then sees that same
  (all-reduced) gradient.
- **Agreement.** Whatever ends a run (a stop request, an unreadable batch, a non-finite loss)
  is agreed by all processes at the same step, so none waits forever in a collective.
- **Evaluation.** Process ``r`` predicts images ``r, r + W, ...``; the predictions are gathered
  and pycocotools runs once on all of them (:func:`evaluate_sharded`).

BatchNorm (only the toy backbone trains it; the ResNets' is frozen, as in the reference)
normalizes over each process's share of the batch on CPUs; on GPUs it becomes SyncBatchNorm.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from detr_core.data.dataset import DetectionDataset, Sample
from detr_core.model.nested_tensor import NestedTensor

ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """A process group that cannot be set up; the message says why in one line."""


def launched_by_torchrun() -> bool:
    """True in a process that torchrun (or any launcher setting its variables) started."""
    return all(name in os.environ for name in ENVIRONMENT)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the group, and the few collectives training needs."""

    rank: int
    world_size: int
    local_rank: int
    backend: str  # "nccl" or "gloo"
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, logs and writes checkpoints."""
        return self.rank == 0

    def _all_reduce(self, values: Sequence[float], op: dist.ReduceOp.RedOpType) -> list[float]:
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=op)
        return t.tolist()

    def any(self, *flags: bool) -> list[bool]:
        """For each flag: is it set in any process?"""
        return [v > 0 for v in self._all_reduce([float(f) for f in flags], dist.ReduceOp.MAX)]

    def mean(self, values: Sequence[float]) -> list[float]:
        """The mean of each value over the processes (the same result in every process)."""
        return [v / self.world_size for v in self._all_reduce(values, dist.ReduceOp.SUM)]

    def mean_count(self, count: int) -> float:
        """The mean over the processes of a count (the criterion's number of target boxes)."""
        return self.mean([count])[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in rank order, in every process."""
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj``, in every process."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        dist.barrier()


def setup(device: str = "auto", timeout: timedelta = timedelta(minutes=30)) -> Distributed | None:
    """Join the process group torchrun set up the environment for; None without torchrun.
    ``device``: the training config's (``auto`` / ``cuda``: NCCL on GPU ``LOCAL_RANK`` when CUDA
    is present; ``cpu``, or no CUDA: gloo). Raises :class:`DistributedError`."""
    if not launched_by_torchrun():
        return None
    try:
        rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        raise DistributedError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers") from None
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise DistributedError(f"distributed training runs on CUDA or on CPUs, not on {device!r}")
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device.startswith("cuda") and not use_cuda:
        raise DistributedError("CUDA was asked for but no CUDA device is available")
    if use_cuda:
        count = torch.cuda.device_count()
        if local >= count:
            raise DistributedError(f"process {local} of this node has no GPU of its own: the node has {count}; "
                                   f"start at most {count} processes per node (--nproc_per_node)")
        where = torch.device("cuda", local)
        torch.cuda.set_device(where)
        backend = "nccl"
    else:
        where = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend, timeout=timeout, device_id=where if use_cuda else None)
        except (RuntimeError, ValueError) as e:
            text = str(e).strip().splitlines()
            raise DistributedError(f"cannot join the process group ({backend}): "
                                   f"{text[0][:200] if text else type(e).__name__}") from None
    return Distributed(rank, world, local, backend, where)


def shutdown(wait: bool = True) -> None:
    """Leave the process group once nothing uses it any more (``wait``: after every process has
    come here too; not when leaving on an error, where another may never come). The models
    wrapped in DistributedDataParallel hold the group too: they are freed first (``gc``), or the
    group outlives ``destroy_process_group`` and is torn down with the interpreter, where gloo's
    threads can end the process with SIGABRT ("terminate called without an active exception")."""
    if dist.is_initialized():
        gc.collect()
        if wait:  # no process tears its connections down while another still talks
            dist.barrier()
        dist.destroy_process_group()


def wrap_model(model: nn.Module, d: Distributed, find_unused: bool) -> nn.Module:
    """``model`` in DistributedDataParallel (BatchNorm synchronized on GPUs). DDP broadcasts
    rank 0's parameters and buffers, so every process starts from the same weights."""
    if d.device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place where the module is not the BN itself
    ids = [d.device.index] if d.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


class RankShard(DetectionDataset):
    """Process ``rank``'s share of an endless training stream: its local batch ``k`` (local
    positions ``k * b`` .. ``(k + 1) * b - 1``, ``b = global_batch / world_size``) is the slice
    ``rank * b`` .. ``(rank + 1) * b - 1`` of the stream's global batch ``k``."""

    def __init__(self, stream: DetectionDataset, rank: int, world_size: int, global_batch: int) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch_size {global_batch} (the global batch) does not split evenly over "
                             f"{world_size} processes; make it a multiple of {world_size}")
        self.stream = stream
        self.rank = rank
        self.local_batch = global_batch // world_size
        self.global_batch = global_batch
        self.name = stream.name

    @property
    def class_names(self) -> list[str]:
        return self.stream.class_names

    @property
    def category_ids(self) -> list[int]:
        return self.stream.category_ids

    @property
    def skipped(self) -> list[str]:
        return self.stream.skipped

    def __len__(self) -> int:
        raise TypeError("an endless training stream has no length")

    def position(self, index: int) -> int:
        """The stream position of this process's local position ``index``."""
        step, offset = divmod(index, self.local_batch)
        return step * self.global_batch + self.rank * self.local_batch + offset

    def sample(self, index: int) -> Sample:
        return self.stream.sample(self.position(index))

    def item(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self.stream.item(self.position(index))

    def batch(self, indices: Sequence[int]) -> tuple[Tensor | NestedTensor, list[dict[str, Tensor]]]:
        return self.stream.batch([self.position(i) for i in indices])


class _Subset:
    """Items ``indices`` of a dataset, as far as the prediction helpers use one (``batch``)."""

    def __init__(self, dataset: DetectionDataset, indices: list[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def batch(self, idx: Sequence[int]):
        return self.dataset.batch([self.indices[i] for i in idx])


def evaluate_sharded(model: nn.Module, dataset: DetectionDataset, num_images: int | None, d: Distributed,
                     device: torch.device | None = None) -> dict[str, float]:
    """:func:`detr_core.analysis.evaluate.evaluate_model` with the images shared out: process
    ``r`` predicts images ``r, r + W, ...``; the predictions are gathered in the images' order and
    scored by pycocotools once (the numbers one process gets). Every process returns rank 0's
    metrics. Not cancellable part-way (every process must take part to the end)."""
    from detr_core.analysis.evaluate import coco_metrics, collect_predictions, image_ids
    from detr_core.analysis.voc_map import voc_map50
    from detr_core.data.files import FileDataset

    n = len(dataset) if num_images is None else min(num_images, len(dataset))
    mine = list(range(d.rank, n, d.world_size))
    view = _Subset(dataset, mine)
    preds, gts = collect_predictions(model, view, len(mine), dataset.eval_batch_size, device) \
        if mine else ([], [])  # type: ignore[arg-type]
    shares = d.gather((image_ids(gts), preds))
    metrics = None
    if d.is_main:
        position = {image_id: k for k, image_id in enumerate(r.image_id for r in dataset.records)} \
            if isinstance(dataset, FileDataset) else {}
        rows = sorted(((i, p) for ids, ps in shares for i, p in zip(ids, ps)),
                      key=lambda r: position.get(r[0], r[0]))
        ids, preds = [i for i, _ in rows], [p for _, p in rows]
        metrics = coco_metrics(dataset, ids, preds, n)
        if isinstance(dataset, FileDataset) and dataset.format == "voc":
            metrics["mAP50_voc"] = voc_map50(dataset, ids, preds)
    return d.broadcast(metrics)
