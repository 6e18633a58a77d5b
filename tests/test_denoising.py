"""Denoising queries as the papers have them: DN-DETR's attention mask (written out by hand for a
small case), label flips that always change the class, and DINO's contrastive negatives."""

import torch
from torch import nn

from detr_core.model.denoising import DenoisingMeta, build_denoising_queries, query_visibility


def _meta(valid: list[list[bool]], groups: int) -> DenoisingMeta:
    v = torch.tensor(valid)
    return DenoisingMeta(groups=groups, group_size=v.shape[1], valid=v)


def test_mask_is_dn_detrs_table():
    """Two denoising groups of two slots (d0 d1 | d2 d3), then three matching queries m0 m1 m2.
    DN-DETR: a matching query sees no denoising query; a denoising group sees itself and every
    matching query, never the other group. Image 1 has one object, so d1 and d3 are padding:
    nobody sees them (a row always sees itself)."""
    mask = query_visibility(3, 1, _meta([[True, True], [True, False]], groups=2), torch.device("cpu"))
    assert mask is not None and mask.shape == (2, 1, 7, 7)
    #            d0 d1 d2 d3 m0 m1 m2
    image0 = [[1, 1, 0, 0, 1, 1, 1],  # d0
              [1, 1, 0, 0, 1, 1, 1],  # d1
              [0, 0, 1, 1, 1, 1, 1],  # d2
              [0, 0, 1, 1, 1, 1, 1],  # d3
              [0, 0, 0, 0, 1, 1, 1],  # m0
              [0, 0, 0, 0, 1, 1, 1],  # m1
              [0, 0, 0, 0, 1, 1, 1]]  # m2
    image1 = [[1, 0, 0, 0, 1, 1, 1],
              [1, 1, 0, 0, 1, 1, 1],
              [0, 0, 1, 0, 1, 1, 1],
              [0, 0, 1, 1, 1, 1, 1],
              [0, 0, 0, 0, 1, 1, 1],
              [0, 0, 0, 0, 1, 1, 1],
              [0, 0, 0, 0, 1, 1, 1]]
    assert mask[0, 0].int().tolist() == image0
    assert mask[1, 0].int().tolist() == image1


def test_mask_with_query_groups():
    """Group DETR's groups (m0 m1 | m2 m3) see only themselves; the denoising group d0 sees the
    first matching group, the one inference keeps."""
    mask = query_visibility(4, 2, _meta([[True]], groups=1), torch.device("cpu"))
    #                        d0 m0 m1 m2 m3
    assert mask[0, 0].int().tolist() == [[1, 1, 1, 0, 0],
                                         [0, 1, 1, 0, 0],
                                         [0, 1, 1, 0, 0],
                                         [0, 0, 0, 1, 1],
                                         [0, 0, 0, 1, 1]]
    assert query_visibility(4, 1, None, torch.device("cpu")) is None


def _many_objects(n: int = 100) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"labels": torch.randint(0, 3, (n,), generator=g),
             "boxes": torch.rand(n, 2, generator=g).mul(0.5).add(0.25).repeat(1, 2) * torch.tensor([1, 1, 0.3, 0.3])}]


def test_flip_rate_is_the_rate_set():
    """A flipped label is another class: with 3 classes and 20% set, 20% of labels change (drawing
    from all classes kept a third of the flips on the true class: 13%)."""
    torch.manual_seed(0)
    targets = _many_objects()
    for contrastive in (False, True):
        built = build_denoising_queries(targets, nn.Embedding(3, 4), 3, groups=200, label_noise=0.2, box_noise=0.4,
                                        contrastive=contrastive)
        assert built is not None
        meta = built[2]
        true = targets[0]["labels"].repeat(meta.num_queries // 100)
        rate = (meta.input_labels[0] != true).float().mean().item()
        assert abs(rate - 0.2) < 0.015, rate  # 20000 draws or more: the standard error is 0.003
    one_class = build_denoising_queries([{"labels": torch.zeros(5, dtype=torch.long), "boxes": torch.rand(5, 4)}],
                                        nn.Embedding(1, 4), 1, groups=3, label_noise=0.5, box_noise=0.0)
    assert (one_class[2].input_labels == 0).all()  # nothing to flip to


def test_contrastive_negatives_are_noised_further_and_captured():
    torch.manual_seed(0)
    targets = [{"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.2]])},
               {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.6, 0.4, 0.2, 0.3]])}]
    content, boxes, meta = build_denoising_queries(targets, nn.Embedding(3, 8), 3, groups=3, label_noise=0.0,
                                                   box_noise=0.4, contrastive=True)
    assert meta.group_size == 4 and meta.objects == 2 and boxes.shape == (2, 12, 4) and content.shape == (2, 12, 8)
    cap = meta.capture(torch.zeros(2, 2, 12, 3), torch.zeros(2, 2, 12, 4))
    assert cap.positive[0].tolist() == [True, True, False, False] * 3
    assert cap.target_index[1].tolist() == [0, -1, 0, -1] * 3
    assert cap.group.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # how far each copy moved, in units of its noise scale: positives under 1, negatives 1 to 2
    truth = torch.stack([torch.cat([t["boxes"], t["boxes"][:1].expand(2 - len(t["boxes"]), 4)]) for t in targets])
    truth = truth.repeat(1, 6, 1)
    spread = torch.cat([truth[..., 2:] / 2, truth[..., 2:]], -1) * 0.4
    moved = ((boxes - truth).abs() / spread).amax(-1)  # [B, P]; clamping at 0 and 1 only shortens a move
    pos, neg = cap.positive & (cap.target_index >= 0), ~cap.positive & (cap.target_index >= 0)
    assert (moved[pos] < 1).all() and (moved[neg] > 1 - 1e-5).all() and (moved[neg] < 2).all()
    assert [len(s) for s, _ in meta.negative_indices()] == [6, 3]
    assert meta.negative_indices()[0][0][:2].tolist() == [2, 3]  # the negative slots of group 0
