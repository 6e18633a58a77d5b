"""DN-DETR denoising queries (training only).

Each ground-truth box is copied into ``groups`` groups, its label randomly flipped and its box
jittered; the decoder learns to reconstruct the originals. An attention mask keeps the groups from
seeing each other and keeps the matching queries from seeing any of them, so no answer leaks into
the Hungarian-matched part (Li et al., "DN-DETR", 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from detr_core.model.capture_protocol import DenoisingCapture


@dataclass
class DenoisingMeta:
    groups: int
    group_size: int  # the batch's largest object count; every group is padded to it
    valid: Tensor  # [B, group_size] bool: slot j of a group holds object j of that image
    input_labels: Tensor | None = None  # [B, P] long: the (possibly flipped) labels fed
    input_boxes: Tensor | None = None  # [B, P, 4] cxcywh: the jittered boxes fed

    @property
    def num_queries(self) -> int:
        return self.groups * self.group_size

    def capture(self, layer_logits: Tensor, layer_boxes: Tensor) -> DenoisingCapture:
        """What the views see of these queries, given their outputs after every decoder layer
        (``layer_logits`` [L, B, P, C], ``layer_boxes`` [L, B, P, 4])."""
        assert self.input_labels is not None and self.input_boxes is not None
        device = self.valid.device
        slot = torch.arange(self.group_size, device=device)
        target = torch.where(self.valid, slot[None], torch.full_like(slot[None], -1))  # [B, group_size]
        return DenoisingCapture(
            input_boxes=self.input_boxes,
            input_labels=self.input_labels,
            target_index=target.repeat(1, self.groups),
            positive=torch.ones_like(self.input_labels, dtype=torch.bool),  # DN-DETR: no negatives
            group=torch.arange(self.num_queries, device=device) // self.group_size,
            layer_logits=layer_logits,
            layer_boxes=layer_boxes,
        )

    def indices(self) -> list[tuple[Tensor, Tensor]]:
        """Per image, (denoising query index, target index) pairs over all groups."""
        out = []
        offsets = torch.arange(self.groups, device=self.valid.device) * self.group_size  # [G]
        for valid in self.valid:
            n = int(valid.sum())
            tgt = torch.arange(n, device=self.valid.device)
            src = (offsets[:, None] + tgt[None, :]).flatten()  # [G * n]
            out.append((src, tgt.repeat(self.groups)))
        return out


def build_denoising_queries(
    targets: list[dict[str, Tensor]],
    label_embed: nn.Embedding,
    num_classes: int,
    groups: int,
    label_noise: float,
    box_noise: float,
) -> tuple[Tensor, Tensor, DenoisingMeta] | None:
    """Noised copies of the targets as decoder queries.

    Returns (content [B, P, D], refpoints [B, P, 4] cxcywh in [0, 1], meta) with
    P = groups * max objects, or None if no image in the batch has an object.
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
    labels = labels.repeat(1, groups)  # [B, P]
    boxes = boxes.repeat(1, groups, 1)  # [B, P, 4]
    if label_noise > 0:
        flip = torch.rand(labels.shape, device=device) < label_noise
        labels = torch.where(flip, torch.randint_like(labels, num_classes), labels)
    if box_noise > 0:
        wh = boxes[..., 2:]
        spread = torch.cat([wh / 2, wh], dim=-1)  # centre moves up to half a side, sides up to 100%
        boxes = boxes + (torch.rand_like(boxes) * 2 - 1) * spread * box_noise
        boxes = boxes.clamp(min=0.0, max=1.0)
    content = label_embed(labels) * valid.repeat(1, groups)[..., None]  # [B, P, D]
    return content, boxes, DenoisingMeta(groups, size, valid, labels, boxes)


def query_visibility(
    num_matching: int, query_groups: int, dn: DenoisingMeta | None, device: torch.device
) -> Tensor | None:
    """Which decoder queries may attend to which: [B or 1, 1, Q, Q] bool (True = visible),
    Q = every decoder query.

    Query order: the denoising queries first (group by group), then the matching queries (group
    by group). Every group sees only itself; padded denoising slots are hidden from everyone.
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
    key_ok = torch.ones(dn.valid.shape[0], total, dtype=torch.bool, device=device)
    key_ok[:, :pad] = dn.valid.repeat(1, dn.groups)
    allowed = allowed[None] & key_ok[:, None, :]  # [B, Q, Q]
    allowed |= torch.eye(total, dtype=torch.bool, device=device)  # a row is never empty
    return allowed[:, None]
