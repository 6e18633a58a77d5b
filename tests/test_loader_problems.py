"""Problems met while loading images in DataLoader worker processes reach the training process:
the summary of what was skipped is the same with 0 and 2 workers."""

import itertools

import pytest

from detr_core.config import DatasetConfig
from detr_core.data.export import write_toy_dataset
from detr_core.data.sources import open_dataset
from detr_core.data.stream import AugmentedStream, batches
from detr_core.data.transforms import train_transform


@pytest.fixture(scope="module")
def broken_root(tmp_path_factory):
    """A COCO folder of 4 training images, one cut short: its header reads (so opening keeps
    it), its pixels do not (so only loading finds out)."""
    root = write_toy_dataset(tmp_path_factory.mktemp("broken") / "toy", train=4, val=1, fmt="coco")
    image = root / "train2017" / f"{2:012d}.jpg"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    return root


def _summary_after(root, num_workers: int, steps: int) -> tuple[str, int]:
    cfg = DatasetConfig(source=f"coco:{root}", scales=(64,), max_size=96, crop_resize=(64,), crop_min=48,
                        crop_max=64)
    data = open_dataset(cfg.source, role="train")
    assert not data.problems  # nothing found on opening
    stream = AugmentedStream(data.with_transform(train_transform(cfg)), seed=0)
    loader = batches(stream, batch_size=2, num_workers=num_workers)
    images = sum(len(targets) for _, targets in itertools.islice(loader, steps))
    loader.close()  # stops the workers
    return data.summary(), images


def test_worker_problems_reach_the_training_process(broken_root):
    # 4 steps of 2 = two epochs: the unreadable image is met twice, listed once
    in_process, images0 = _summary_after(broken_root, 0, 4)
    with_workers, images2 = _summary_after(broken_root, 2, 4)
    assert "unreadable image: 1" in in_process and f"{2:012d}.jpg" in in_process
    assert with_workers == in_process
    assert images0 == images2 == 6  # 8 positions, the broken image twice left out
