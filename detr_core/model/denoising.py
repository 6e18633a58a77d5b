"""Denoising queries (training only): DN-DETR's, and DINO's contrastive kind.

Each ground-truth box is copied into ``groups`` groups, its label randomly flipped to another
class and its box jittered; the decoder learns to reconstruct the originals (Li et al.,
"DN-DETR", 2022). With ``contrastive`` (Zhang et al., "DINO", 2022) every group also holds one
negative copy of each object, jittered further (between one and two noise scales), which the
decoder learns to call "no object".

The self-attention mask follows DN-DETR: the matching queries never see a denoising query (the
answers would leak into the Hungarian-matched part), denoising groups never see each other, and a
denoising query sees its own group and the matching queries (as at inference, where those are
all there is).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from detr_core.model.capture_protocol import DenoisingCapture


@dataclass
class DenoisingMeta:
    """Where the denoising queries are: ``groups`` groups of ``group_size`` slots each. A group
    holds ``objects`` positive slots (slot j copies object j of the image) and, when
    ``contrastive``, then ``objects`` negative slots (slot objects + j copies object j too)."""

    groups: int
    group_size: int  # slots per group: the batch's largest object count (twice that when contrastive)
    valid: Tensor  # [B, group_size] bool: the slot copies a real object of that image
    input_labels: Tensor | None = None  # [B, P] long: the (possibly flipped) labels fed
    input_boxes: Tensor | None = None  # [B, P, 4] cxcywh: the jittered boxes fed
    contrastive: bool = False

    @property
    def num_queries(self) -> int:
        return self.groups * self.group_size

    @property
    def objects(self) -> int:
        """Object slots per group: the batch's largest object count."""
        return self.group_size // 2 if self.contrastive else self.group_size

    def slot_positive(self) -> Tensor:
        """[group_size] bool: True for a positive slot, False for a negative one."""
        slot = torch.arange(self.group_size, device=self.valid.device)
        return slot < self.objects

    def capture(self, layer_logits: Tensor, layer_boxes: Tensor) -> DenoisingCapture:
        """What the views see of these queries, given their outputs after every decoder layer
        (``layer_logits`` [L, B, P, C], ``layer_boxes`` [L, B, P, 4])."""
        assert self.input_labels is not None and self.input_boxes is not None
        device = self.valid.device
        slot = torch.arange(self.group_size, device=device) % self.objects
        target = torch.where(self.valid, slot[None], torch.full_like(slot[None], -1))  # [B, group_size]
        positive = self.slot_positive()[None].expand_as(self.valid)  # [B, group_size]
        return DenoisingCapture(
            input_boxes=self.input_boxes,
            input_labels=self.input_labels,
            target_index=target.repeat(1, self.groups),
            positive=positive.repeat(1, self.groups),
            group=torch.arange(self.num_queries, device=device) // self.group_size,
            layer_logits=layer_logits,
            layer_boxes=layer_boxes,
        )

    def _pairs(self, first_slot: int) -> list[tuple[Tensor, Tensor]]:
        out = []
        offsets = torch.arange(self.groups, device=self.valid.device) * self.group_size + first_slot  # [G]
        for valid in self.valid:
            n = int(valid[: self.objects].sum())
            tgt = torch.arange(n, device=self.valid.device)
            src = (offsets[:, None] + tgt[None, :]).flatten()  # [G * n]
            out.append((src, tgt.repeat(self.groups)))
        return out

    def indices(self) -> list[tuple[Tensor, Tensor]]:
        """Per image, (positive denoising query index, target index) pairs over all groups."""
        return self._pairs(0)

    def negative_indices(self) -> list[tuple[Tensor, Tensor]]:
        """Per image, (negative query index, index of the object it copies); empty lists of pairs
        without ``contrastive``."""
        if not self.contrastive:
            empty = torch.zeros(0, dtype=torch.long, device=self.valid.device)
            return [(empty, empty) for _ in range(self.valid.shape[0])]
        return self._pairs(self.objects)


def flip_labels(labels: Tensor, num_classes: int, rate: float) -> Tensor:
    """Each label, with probability ``rate``, replaced by a *different* class drawn uniformly
    (with one class nothing can flip). labels: any shape, long in [0, num_classes)."""
    if rate <= 0 or num_classes < 2:
        return labels
    flip = torch.rand(labels.shape, device=labels.device) < rate
    shift = torch.randint_like(labels, 1, num_classes)  # 1 .. K-1: never the same class
    return torch.where(flip, (labels + shift) % num_classes, labels)


def build_denoising_queries(
    targets: list[dict[str, Tensor]],
    label_embed: nn.Embedding,
    num_classes: int,
    groups: int,
    label_noise: float,
    box_noise: float,
    contrastive: bool = False,
) -> tuple[Tensor, Tensor, DenoisingMeta] | None:
    """Noised copies of the targets as decoder queries.

    Returns (content [B, P, D], refpoints [B, P, 4] cxcywh in [0, 1], meta) with
    P = groups * max objects (times 2 with ``contrastive``), or None if no image in the batch has
    an object. Box noise: each centre coordinate moves by up to ``box_noise`` x half the side,
    each side changes by up to ``box_noise`` x itself; a negative moves between one and two times
    that far (DINO's two noise scales).
    """
    counts = [len(t["labels"]) for t in targets]
    size = max(counts, default=0)
    if size == 0 or groups == 0:
        return None
    device = label_embed.weight.device
    b = len(targets)
    labels = torch.zeros(b, size, dtype=torch.long, device=device)
    boxes = torch.full((b, size, 4), 0.5, device=device)
    valid = torch.zeros(b, size, dtype=torch.bool, device=device)
    for i, (t, n) in enumerate(zip(targets, counts)):
        labels[i, :n] = t["labels"]
        boxes[i, :n] = t["boxes"]
        valid[i, :n] = True
    copies = 2 if contrastive else 1  # a positive and a negative copy of each object per group
    slot_valid = valid.repeat(1, copies)  # [B, group_size]
    negative = torch.arange(size * copies, device=device) >= size  # [group_size]
    labels = flip_labels(labels.repeat(1, groups * copies), num_classes, label_noise)  # [B, P]
    boxes = boxes.repeat(1, groups * copies, 1)  # [B, P, 4]
    if box_noise > 0:
        wh = boxes[..., 2:]
        spread = torch.cat([wh / 2, wh], dim=-1)  # centre moves up to half a side, sides up to 100%
        magnitude = torch.rand_like(boxes) + negative.repeat(groups)[None, :, None]  # [0, 1) or [1, 2)
        sign = torch.randint_like(boxes, 0, 2) * 2 - 1
        boxes = boxes + sign * magnitude * spread * box_noise
        boxes = boxes.clamp(min=0.0, max=1.0)
    content = label_embed(labels) * slot_valid.repeat(1, groups)[..., None]  # [B, P, D]
    meta = DenoisingMeta(groups, size * copies, slot_valid, labels, boxes, contrastive)
    return content, boxes, meta


def query_visibility(
    num_matching: int, query_groups: int, dn: DenoisingMeta | None, device: torch.device
) -> Tensor | None:
    """Which decoder queries may attend to which: [B or 1, 1, Q, Q] bool (True = visible; row:
    the query attending, column: the query seen), Q = every decoder query.

    Query order: the denoising queries first (group by group), then the matching queries (group
    by group). Matching groups see only themselves; a denoising group sees itself and the first
    matching group (the queries inference has), never another denoising group, and no matching
    query sees a denoising one (DN-DETR's mask). Padded denoising slots are hidden from everyone.
    """
    if query_groups == 1 and dn is None:
        return None
    pad = dn.num_queries if dn is not None else 0
    total = pad + num_matching
    group_of = torch.empty(total, dtype=torch.long, device=device)
    per_group = num_matching // query_groups
    group_of[pad:] = torch.arange(num_matching, device=device) // per_group
    if dn is not None:
        group_of[:pad] = query_groups + torch.arange(pad, device=device) // dn.group_size
    allowed = group_of[:, None] == group_of[None, :]  # [Q, Q]
    if dn is None:
        return allowed[None, None]
    allowed[:pad, pad:pad + per_group] = True  # denoising queries see the first matching group
    key_ok = torch.ones(dn.valid.shape[0], total, dtype=torch.bool, device=device)
    key_ok[:, :pad] = dn.valid.repeat(1, dn.groups)
    allowed = allowed[None] & key_ok[:, None, :]  # [B, Q, Q]
    allowed |= torch.eye(total, dtype=torch.bool, device=device)  # a row is never empty
    return allowed[:, None]
