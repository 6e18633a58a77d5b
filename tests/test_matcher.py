"""Hungarian matching: optimal, permutation-equivariant, robust to empty and crowded images."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detr_core.model.matcher import HungarianMatcher


def _random_case(seed, n_queries, n_targets, num_classes=4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, n_queries, num_classes + 1, generator=g)
    boxes = torch.rand(1, n_queries, 4, generator=g) * 0.5 + 0.25
    boxes[..., 2:] = boxes[..., 2:] * 0.5 + 0.05
    target = {
        "labels": torch.randint(num_classes, (n_targets,), generator=g),
        "boxes": torch.cat([torch.rand(n_targets, 2, generator=g) * 0.6 + 0.2,
                            torch.rand(n_targets, 2, generator=g) * 0.3 + 0.05], dim=1),
    }
    return {"pred_logits": logits, "pred_boxes": boxes}, [target]


def _brute_force_min(cost: np.ndarray) -> float:
    n, m = cost.shape
    best = np.inf
    if m <= n:
        for perm in itertools.permutations(range(n), m):
            best = min(best, sum(cost[perm[j], j] for j in range(m)))
    else:
        for perm in itertools.permutations(range(m), n):
            best = min(best, sum(cost[i, perm[i]] for i in range(n)))
    return best


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n_queries=st.integers(1, 6), n_targets=st.integers(0, 5),
       classifier=st.sampled_from(["softmax", "focal"]))
def test_assignment_is_the_brute_force_minimum(seed, n_queries, n_targets, classifier):
    outputs, targets = _random_case(seed, n_queries, n_targets)
    if classifier == "focal":
        outputs["pred_logits"] = outputs["pred_logits"][..., :-1]
    matcher = HungarianMatcher(classifier=classifier)
    (rows, cols), = matcher(outputs, targets)
    assert len(rows) == len(cols) == min(n_queries, n_targets)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    cost = matcher.cost_parts(outputs["pred_logits"][0], outputs["pred_boxes"][0],
                              targets[0]["labels"], targets[0]["boxes"])["total"].numpy()
    achieved = float(cost[rows.numpy(), cols.numpy()].sum()) if len(rows) else 0.0
    expected = _brute_force_min(cost) if n_targets else 0.0
    assert achieved == pytest.approx(expected, abs=1e-4)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_queries=st.integers(2, 8), n_targets=st.integers(1, 4))
def test_permuting_predictions_permutes_the_assignment(seed, n_queries, n_targets):
    outputs, targets = _random_case(seed, n_queries, n_targets)
    matcher = HungarianMatcher()
    (rows, cols), = matcher(outputs, targets)
    perm = torch.randperm(n_queries, generator=torch.Generator().manual_seed(seed))
    permuted = {k: v[:, perm] for k, v in outputs.items()}
    (rows_p, cols_p), = matcher(permuted, targets)
    # query perm[i] of the permuted order is query i of the original: same pairs either way
    pairs = {(int(r), int(c)) for r, c in zip(rows, cols)}
    pairs_p = {(int(perm[r]), int(c)) for r, c in zip(rows_p, cols_p)}
    assert pairs == pairs_p


def test_cost_is_the_weighted_sum_of_its_parts():
    outputs, targets = _random_case(3, 5, 3)
    m = HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2)
    parts = m.cost_parts(outputs["pred_logits"][0], outputs["pred_boxes"][0], targets[0]["labels"], targets[0]["boxes"])
    torch.testing.assert_close(parts["total"], parts["class"] + 5 * parts["bbox"] + 2 * parts["giou"])
    probs = outputs["pred_logits"][0].softmax(-1)
    torch.testing.assert_close(parts["class"], -probs[:, targets[0]["labels"]])
    assert (parts["giou"] >= -1).all() and (parts["giou"] <= 1).all()


def test_handles_empty_images_and_more_objects_than_queries():
    g = torch.Generator().manual_seed(0)
    outputs = {"pred_logits": torch.randn(3, 2, 4, generator=g), "pred_boxes": torch.rand(3, 2, 4, generator=g) * 0.5 + 0.1}
    targets = [
        {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)},
        {"labels": torch.tensor([0, 1, 2, 1]), "boxes": torch.rand(4, 4, generator=g) * 0.5 + 0.1},
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])},
    ]
    indices = HungarianMatcher()(outputs, targets)
    assert [len(r) for r, _ in indices] == [0, 2, 1]  # 4 objects, 2 queries: 2 get matched
    all_empty = [targets[0], targets[0], targets[0]]
    assert [len(r) for r, _ in HungarianMatcher()(outputs, all_empty)] == [0, 0, 0]


def test_groups_are_matched_independently():
    outputs, targets = _random_case(7, 6, 2)  # 2 groups of 3 queries
    (rows, cols), = HungarianMatcher()(outputs, targets, groups=2)
    assert len(rows) == 4
    assert sorted(cols.tolist()) == [0, 0, 1, 1]
    assert sum(r < 3 for r in rows.tolist()) == 2  # each target matched once in each group


@pytest.mark.parametrize("classifier", ["softmax", "focal"])
def test_batched_cost_equals_each_images_pairwise_block(classifier):
    """The training path costs each image against its own targets only; it must give the same
    numbers as the pairwise cost matrix the inspector shows, image by image."""
    g = torch.Generator().manual_seed(0)
    counts = [3, 0, 6, 1]
    logits = torch.randn(len(counts), 7, 4 if classifier == "focal" else 5, generator=g)
    boxes = torch.rand(len(counts), 7, 4, generator=g) * 0.4 + 0.1
    targets = [{"labels": torch.randint(3, (m,), generator=g), "boxes": torch.rand(m, 4, generator=g) * 0.4 + 0.1}
               for m in counts]
    matcher = HungarianMatcher(classifier=classifier)
    cost = matcher.batched_cost(logits, boxes, targets)
    assert cost.shape == (len(counts), 7, max(counts))
    for i, t in enumerate(targets):
        block = matcher.cost_parts(logits[i], boxes[i], t["labels"], t["boxes"])["total"]
        torch.testing.assert_close(cost[i, :, : len(t["labels"])], block, atol=1e-5, rtol=1e-5)


def test_matching_layers_at_once_equals_one_at_a_time():
    g = torch.Generator().manual_seed(1)
    layers = [(torch.randn(3, 8, 5, generator=g), torch.rand(3, 8, 4, generator=g) * 0.5 + 0.2) for _ in range(3)]
    targets = [{"labels": torch.randint(4, (m,), generator=g), "boxes": torch.rand(m, 4, generator=g) * 0.4 + 0.1}
               for m in (2, 0, 5)]
    matcher = HungarianMatcher()
    together = matcher.match_layers(layers, targets, groups=2)
    for (logits, boxes), indices in zip(layers, together):
        alone = matcher({"pred_logits": logits, "pred_boxes": boxes}, targets, groups=2)
        for (r1, c1), (r2, c2) in zip(indices, alone):
            assert r1.tolist() == r2.tolist() and c1.tolist() == c2.tolist()
        # two groups of 4 queries: each group matches min(4, M) objects on its own
        assert [len(r) for r, _ in indices] == [4, 0, 8]
