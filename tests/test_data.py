import numpy as np
import pytest
import torch

from detr_core.config import ToyDataConfig
from detr_core.data import ToyShapes
from detr_core.data.images import to_uint8


def test_deterministic_under_a_seed():
    a = ToyShapes(seed=5).sample(17)
    b = ToyShapes(seed=5).sample(17)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.boxes_xyxy, b.boxes_xyxy)
    c = ToyShapes(seed=6).sample(17)
    assert not np.array_equal(a.image, c.image)
    # the same index of another split is another image
    assert not np.array_equal(a.image, ToyShapes(seed=5, split="heldout").sample(17).image)


def test_defaults_match_the_spec():
    ds = ToyShapes()
    assert ds.class_names == ["rectangle", "ellipse", "triangle"]
    counts = []
    for i in range(200):
        s = ds.sample(i)
        assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
        counts.append(len(s.labels))
        w = s.boxes_xyxy[:, 2] - s.boxes_xyxy[:, 0]
        h = s.boxes_xyxy[:, 3] - s.boxes_xyxy[:, 1]
        assert (w >= 0.12 * 128 - 2).all() and (w <= 0.42 * 128 + 2).all()
        assert (h >= 0.12 * 128 - 2).all() and (h <= 0.42 * 128 + 2).all()
        assert (s.boxes_xyxy >= 0).all() and (s.boxes_xyxy <= 128).all()
    assert min(counts) >= 1 and max(counts) == 6
    assert len(set(counts)) >= 5


def test_boxes_are_tight_around_the_drawn_shapes():
    """Each box's edges touch pixels of the object's colour (the shape is drawn inside its box)."""
    ds = ToyShapes(ToyDataConfig(noise=0.0, max_objects=1, min_objects=1), seed=3)
    for i in range(30):
        s = ds.sample(i)
        x0, y0, x1, y1 = s.boxes_xyxy[0].astype(int)
        inside = s.image[y0:y1, x0:x1].reshape(-1, 3)
        colours, counts = np.unique(inside, axis=0, return_counts=True)
        colour = colours[counts.argmax()] if s.labels[0] == 0 else None
        if colour is None:  # ellipse / triangle: find the colour that differs from the corners
            corners = {tuple(s.image[0, 0]), tuple(s.image[-1, -1]), tuple(s.image[0, -1]), tuple(s.image[-1, 0])}
            cand = [tuple(c) for c in colours if tuple(c) not in corners]
            colour = np.array(max(cand, key=lambda c: counts[[tuple(x) for x in colours].index(c)]))
        mask = (s.image == colour).all(-1)
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)


def test_targets_are_normalized_cxcywh():
    ds = ToyShapes(seed=1)
    image, target = ds[4]
    s = ds.sample(4)
    assert image.shape == (3, 128, 128)
    assert np.array_equal(to_uint8(image), s.image)
    x0, y0, x1, y1 = (s.boxes_xyxy[0] / 128).tolist()
    torch.testing.assert_close(target["boxes"][0], torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]))
    assert target["orig_size"].tolist() == [128, 128]


def test_configurable():
    cfg = ToyDataConfig(image_size=64, min_objects=2, max_objects=2, classes=("ellipse",), min_side=0.2, max_side=0.3)
    ds = ToyShapes(cfg, seed=0)
    s = ds.sample(0)
    assert s.image.shape == (64, 64, 3)
    assert len(s.labels) == 2 and set(s.labels.tolist()) == {0}
    with pytest.raises(ValueError):
        ToyDataConfig(classes=("hexagon",))
    with pytest.raises(ValueError):
        ToyDataConfig(min_objects=3, max_objects=2)


def test_batch_equals_items():
    ds = ToyShapes(seed=2)
    images, targets = ds.batch(range(3))
    for i in range(3):
        img, t = ds[i]
        torch.testing.assert_close(images[i], img)
        torch.testing.assert_close(targets[i]["boxes"], t["boxes"])
