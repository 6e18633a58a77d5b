"""Crowded toy images: a dataset drawn with exactly N objects per image, for counting beyond
training (the paper's Figures 5 and 12).

    data = CrowdedShapes(train_config.data, counts=[1, 10, 30], images_per_count=10)
    data.asked(i), data.image_number(i)   # image i was drawn with that many objects, the n-th of them

Object sides shrink just enough that the largest count fits (:func:`crowded_config`), and the
same sizes serve every count, so the count is the only thing that changes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from detr_core.config import ToyDataConfig
from detr_core.data.dataset import Annotations, DetectionDataset, Sample
from detr_core.data.toy import ToyShapes

# Objects per image area that a crowded image aims at: n objects of side s with n * s^2 <= 0.4
# still leave the random placement room to put every one of them down.
CROWD_DENSITY = 0.4
PLACEMENT_ATTEMPTS = 20  # images drawn per wanted image until one holds every asked object


def crowded_config(base: ToyDataConfig | None, max_count: int) -> ToyDataConfig:
    """The toy config of the counting images: ``base`` (the training data) with object sides
    shrunk just enough that ``max_count`` objects fit, and at most the training's largest side.
    The same sizes serve every count, so the count is the only thing that changes."""
    base = base or ToyDataConfig()
    max_side = min(base.max_side, math.sqrt(CROWD_DENSITY / max(max_count, 1)))
    max_side = max(max_side, 4 / base.image_size)  # at least a few pixels wide
    return ToyDataConfig(
        image_size=base.image_size,
        min_objects=0,
        max_objects=max(max_count, 0),
        classes=base.classes,
        min_side=min(base.min_side, max_side),
        max_side=max_side,
        max_overlap=base.max_overlap,
        noise=base.noise,
    )


def draw_count(dataset: ToyShapes, count: int, image: int) -> Sample:
    """Image number ``image`` with exactly ``count`` objects if the placement allows: draws up to
    PLACEMENT_ATTEMPTS samples of ``dataset`` and keeps the first full one (else the fullest)."""
    best: Sample | None = None
    for attempt in range(PLACEMENT_ATTEMPTS):
        sample = dataset.sample(image * PLACEMENT_ATTEMPTS + attempt)
        if best is None or len(sample.labels) > len(best.labels):
            best = sample
        if len(sample.labels) >= count:
            break
    assert best is not None
    return best


class CrowdedShapes(DetectionDataset):
    """``images_per_count`` toy images for each of ``counts``, in that order; image ``i`` has
    :meth:`asked` objects (fewer only if they did not fit) and its index as image id."""

    name = "crowded toy shapes"
    eval_batch_size = ToyShapes.eval_batch_size

    def __init__(self, base: ToyDataConfig | None, counts: Sequence[int], images_per_count: int = 10,
                 seed: int = 0) -> None:
        counts = [int(c) for c in counts]
        if not counts or min(counts) < 0 or images_per_count < 1:
            raise ValueError("counting needs non-negative counts and at least one image per count")
        self.config = crowded_config(base, max(counts))
        self.jobs = [(c, j) for c in counts for j in range(images_per_count)]  # (asked count, image number)
        self._streams = {
            c: ToyShapes(dataclasses.replace(self.config, min_objects=c, max_objects=c), seed, split=f"counting-{c}")
            for c in sorted(set(counts))
        }
        self._drawn: dict[int, Annotations] = {}

    @property
    def class_names(self) -> list[str]:
        return list(self.config.classes)

    def __len__(self) -> int:
        return len(self.jobs)

    def asked(self, index: int) -> int:
        """The objects image ``index`` was drawn with."""
        return self.jobs[index][0]

    def image_number(self, index: int) -> int:
        """Image ``index``'s number among the images of its count."""
        return self.jobs[index][1]

    def sample(self, index: int) -> Sample:
        count, image = self.jobs[index]
        drawn = dataclasses.replace(draw_count(self._streams[count], count, image), image_id=index)
        self._drawn[index] = self.annotations_of(drawn)
        return drawn

    def annotations(self, index: int) -> Annotations:
        """As drawn by :meth:`sample` (an image may take up to PLACEMENT_ATTEMPTS draws)."""
        return self._drawn[index] if index in self._drawn else super().annotations(index)
