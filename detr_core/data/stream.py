"""The endless, augmented training stream over a file dataset, and batches from worker processes.

A problem met while loading (an unreadable image) is noted in the worker's copy of the dataset;
each batch carries the problems noted while it was built back to the training process, which
adds them to its own list, so what was skipped reads the same with or without workers.

Position ``p`` of the stream is image ``perm_e[p mod n]`` of epoch ``e = p // n`` (a permutation
seeded by (seed, e)), augmented under a generator seeded by (seed, p). So batch ``k`` is a pure
function of the seed and ``k``, like the toy generator's: the same seed gives the same batches
with any number of DataLoader workers, and a resumed run continues the same stream.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from detr_core.data.dataset import DetectionDataset, Sample
from detr_core.data.files import FileDataset, Problem, note_problem, padded_batch
from detr_core.model.nested_tensor import NestedTensor


class AugmentedStream(DetectionDataset):
    """Endless shuffled epochs of ``dataset`` (through its transform, seeded per position)."""

    def __init__(self, dataset: FileDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.name = f"{dataset.name} (augmented)"
        self._epoch = -1
        self._order: list[int] = []

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    @property
    def category_ids(self) -> list[int]:
        return self.dataset.category_ids

    @property
    def skipped(self) -> list[str]:
        return self.dataset.skipped

    @property
    def problems(self) -> list[Problem]:
        """The dataset's list of what was left out (shared: loading adds to it)."""
        return self.dataset.problems

    def __len__(self) -> int:
        raise TypeError("an endless training stream has no length")

    def index_of(self, position: int) -> int:
        """The dataset index shown at stream position ``position``."""
        n = len(self.dataset)
        epoch = position // n
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(n, generator=g).tolist()
            self._epoch = epoch
        return self._order[position % n]

    def sample(self, index: int) -> Sample:
        return self.dataset.sample(self.index_of(index))

    def item(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed also queues CUDA seeding, 3 ms a call
            torch.default_generator.manual_seed((self.seed * 1_000_003 + index) & 0x7FFF_FFFF_FFFF_FFFF)
            return self.dataset.item(self.index_of(index))

    def batch(self, indices: Sequence[int]) -> tuple[Tensor | NestedTensor, list[dict[str, Tensor]]]:
        return padded_batch(self, indices, self.dataset.problems)


class _StepBatches(Dataset):
    """Batch ``k`` of a stream: positions ``k * batch_size`` .. ``(k + 1) * batch_size - 1``."""

    def __init__(self, stream: DetectionDataset, batch_size: int) -> None:
        self.stream = stream
        self.batch_size = batch_size

    def __getitem__(self, step: int) -> tuple[Tensor | NestedTensor, list[dict[str, Tensor]], list[Problem]]:
        """The batch and the problems noted while building it (in a worker, they would stay in
        the worker's copy of the dataset otherwise)."""
        problems: list[Problem] = getattr(self.stream, "problems", [])
        before = len(problems)
        images, targets = self.stream.batch(range(step * self.batch_size, (step + 1) * self.batch_size))
        return images, targets, problems[before:]


def _as_is(batch):
    return batch


def batches(stream: DetectionDataset, batch_size: int, start_step: int = 0, num_workers: int = 0,
            pin_memory: bool = False) -> Iterator[tuple[Tensor | NestedTensor, list[dict[str, Tensor]]]]:
    """Batches ``start_step``, ``start_step + 1``, ... : in this process with ``num_workers=0``,
    else built ahead by that many worker processes (same batches either way; ``pin_memory``: the
    workers' batches are page-locked in a background thread, for non-blocking copies to a GPU)."""
    if num_workers == 0:
        for step in itertools.count(start_step):
            yield stream.batch(range(step * batch_size, (step + 1) * batch_size))
        return
    loader = DataLoader(_StepBatches(stream, batch_size), batch_size=None, sampler=itertools.count(start_step),
                        num_workers=num_workers, collate_fn=_as_is, prefetch_factor=4,
                        pin_memory=pin_memory)
    problems: list[Problem] | None = getattr(stream, "problems", None)
    for images, targets, noted in loader:
        if problems is not None:
            for problem in noted:
                note_problem(problems, problem)
        yield images, targets
